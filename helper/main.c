/*
 * main.c: pam_spotify_helper. Owns the process: hardening before anything is read, --version,
 * --help, and the choice of a role from argv (roles.h): --pam and keeper as the user at a login,
 * login/logout/refresh as the user for spotify-token, service as the system service, the one
 * process that holds the client secret.
 */
#include <config.h> /* autoconf; "config.h" could be taken for common/config.h */

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/request.h"
#include "common/util.h"
#include "helper/roles.h"
#include "helper/service.h"
#include "helper/service_start.h"

/* Non-dumpable, no core files, private file modes: before anything secret is in memory. */
static int harden(void)
{
	struct rlimit none = {0, 0};

	umask(077);
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0 || setrlimit(RLIMIT_CORE, &none) < 0)
		return -1;
	/* with CURLOPT_NOSIGNAL curl does not ignore SIGPIPE itself; a dead peer must not kill us */
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

/*
 * Tell whoever started us (the module, or a keeper's starter) that we are hardened: it writes
 * the request, which may hold the client secret, only after this line (common/request.h).
 */
static void say_hardened(void)
{
	ps_write_all(STDOUT_FILENO, PS_HELPER_HELLO "\n", strlen(PS_HELPER_HELLO "\n"));
}

static bool running_as_root(void)
{
	return getuid() == 0 || geteuid() == 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: " PS_HELPER_PROG " --pam | keeper | service | login|logout|refresh "
		"[--config=PATH] [--timeout=N]\n"
		"       " PS_HELPER_PROG " --version | --help\n"
		"\n"
		"The helper of pam_spotify.so: run by the PAM module as the logging-in user, it\n"
		"starts the user's keeper, which obtains the Spotify access token, stores it in\n"
		"the kernel keyring and keeps it fresh. spotify-token runs it for login, logout\n"
		"and refresh. As the system service (systemd's pam_spotify.socket, or started by\n"
		"the module) it holds the client secret. It is not meant to be run by hand; see "
		"pam_spotify_helper(8).\n");
}

int main(int argc, char **argv)
{
	bool pam_mode = argc == 2 && strcmp(argv[1], "--pam") == 0;
	bool keeper_mode = argc == 2 && strcmp(argv[1], "keeper") == 0;
	bool service_mode = argc == 2 && strcmp(argv[1], "service") == 0;
	bool user_mode = argc >= 2 && ps_role_is_user_cmd(argv[1]);

	if (harden() < 0) {
		ps_role_answer(PS_HELPER_PROG ": cannot make the process non-dumpable");
		return PS_EXIT_CONFIG;
	}
	if (argc == 2 && strcmp(argv[1], "--version") == 0) {
		printf(PS_HELPER_PROG " " PACKAGE_VERSION "\n");
		return PS_EXIT_OK;
	}
	if (argc == 2 && strcmp(argv[1], "--help") == 0) {
		usage(stdout);
		return PS_EXIT_OK;
	}
	if (service_mode)
		return ps_service_main(); /* root (then the app user), or systemd's app user */
	if (argc == 3 && !strcmp(argv[1], "service") && !strcmp(argv[2], "--start")) {
		say_hardened();		   /* the request follows on stdin (pam/spawn.h) */
		return ps_service_start(); /* root: the module starts the service */
	}
	if (!pam_mode && !user_mode && !keeper_mode) {
		usage(stderr);
		return PS_EXIT_USAGE;
	}
	if (running_as_root()) {
		if (pam_mode)
			ps_role_answer(PS_HELPER_PROG ": refusing to run as root");
		else
			fprintf(stderr,
				"spotify-token: %s: not as root: root gets no Spotify "
				"token; run it as the user\n",
				argv[1]);
		return PS_EXIT_CONFIG;
	}
	if (pam_mode || keeper_mode)
		say_hardened(); /* before anything is read from stdin */
	if (keeper_mode)
		return ps_role_keeper(argv[1]);
	return pam_mode ? ps_role_pam() : ps_role_user(argc, argv);
}
