/*
 * main.c: pam_spotify_helper. As the user, run by pam_spotify.so (--pam, then keeper) and by
 * spotify-token (login, logout, refresh); as the system service (service: helper/service.h), the
 * one process that holds the client secret. Owns the process (hardening, modes, the one answer
 * line). In --pam mode the answer is exactly one line on stdout (the module logs it) and the exit
 * code is a PS_EXIT_* value; nothing goes to stderr. No secret, token or response body is ever
 * printed.
 */
#include <config.h> /* autoconf; "config.h" could be taken for common/config.h */

#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "helper/app_token.h"
#include "helper/curl_load.h"
#include "helper/http.h"
#include "helper/oauth_error.h"
#include "helper/grant.h"
#include "helper/keeper.h"
#include "helper/service.h"
#include "helper/store.h"
#include "helper/token_response.h"
#include "helper/user_token.h"
#include "keyring/keys.h"
#include "keyring/token_info.h"
#include "common/request.h"
#include "common/paths.h"
#include "common/util.h"

#define PROG		"pam_spotify_helper"
#define ANSWER_MAX	PS_ERR_MAX /* the answer line; the module reads fewer than 512 bytes */
#define LOGIN_TIMEOUT_S 300	   /* the design brief: 5 minutes for the user to authorize */

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

/* The answer: one line, written at once, never longer than the module reads. */
static void answer(const char *line)
{
	char out[ANSWER_MAX];
	size_t n = ps_strlcpy(out, line, sizeof(out) - 1);

	if (n > sizeof(out) - 2)
		n = sizeof(out) - 2;
	out[n] = '\n';
	ps_write_all(STDOUT_FILENO, out, n + 1);
}

/* Read the request from stdin: until EOF or the "end" line, at most PS_REQUEST_MAX bytes. */
static int read_request(struct ps_request *req, char *line, size_t linelen)
{
	char buf[PS_REQUEST_MAX + 1];
	size_t len = 0;
	int rc = PS_EXIT_CONFIG;

	while (len < sizeof(buf)) {
		ssize_t n = read(STDIN_FILENO, buf + len, sizeof(buf) - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(line, linelen, "cannot read the request: %s", strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len >= 5 && memcmp(buf + len - 5, "\nend\n", 5) == 0)
			break;
	}
	if (len > PS_REQUEST_MAX)
		snprintf(line, linelen, "request is larger than %d bytes", PS_REQUEST_MAX);
	else if (ps_request_parse(req, buf, len, line, linelen) == 0)
		rc = PS_EXIT_OK;
out:
	explicit_bzero(buf, sizeof(buf));
	return rc;
}

/* Settings the module always sends for a token request; a mismatch means mixed versions. */
static int check_open_request(const struct ps_request *req, char *line, size_t linelen)
{
	if (!req->cfg.client_id[0] || !(req->cfg.set & PS_SET_TOKEN_URL)) {
		snprintf(line, linelen,
			 "request has no client_id or token_url: the module and the "
			 "helper come from different versions; reinstall pam_spotify");
		return PS_EXIT_CONFIG;
	}
	if (req->cfg.flow != PS_FLOW_PKCE && (!req->cfg.service[0] || req->cfg.app_uid <= 0)) {
		snprintf(line, linelen,
			 "request names no system service: the module and the helper come from "
			 "different versions; reinstall pam_spotify");
		return PS_EXIT_CONFIG;
	}
	return PS_EXIT_OK;
}

/* Whether this login may enroll: a user flow, a conversation, enroll = prompt. */
static bool may_enroll(const struct ps_config *cfg)
{
	return cfg->flow != PS_FLOW_CLIENT_CREDENTIALS && cfg->interactive &&
	       cfg->enroll == PS_ENROLL_PROMPT;
}

/*
 * --pam, op open: enroll through the PAM conversation when the user has no refresh token and may,
 * then make sure the user's keeper runs (it gets and keeps the token; the module asks it next).
 * keyring = session: the keeper cannot reach the login's session keyring, so its token is
 * copied there from here.
 */
static int op_open(const struct ps_request *req, char *line, size_t linelen)
{
	long long deadline;
	struct ps_app_token t;
	int rc = check_open_request(req, line, linelen);

	if (rc == PS_EXIT_OK && may_enroll(&req->cfg) && !ps_user_token_enrolled(&req->cfg))
		rc = ps_user_token_enroll(&req->cfg, PS_VIA_PAM, LOGIN_TIMEOUT_S, line, linelen);
	/* the module's deadline, less a margin for our answer; after an enrollment it starts anew */
	deadline = ps_mono_ms() + (req->cfg.timeout > 1 ? req->cfg.timeout * 1000 - 500 : 500);
	if (rc == PS_EXIT_OK)
		rc = ps_keeper_start(req, deadline, line, linelen);
	if (rc != PS_EXIT_OK || req->cfg.keyring != PS_KEYRING_SESSION)
		return rc;
	rc = ps_keeper_ask(&req->cfg, "token", deadline, &t, line, linelen);
	if (rc < 0) {
		snprintf(line, linelen, "the keeper went away before it answered");
		rc = PS_EXIT_NETWORK;
	}
	if (rc == PS_EXIT_OK)
		rc = ps_app_token_store(&req->cfg, &t, line, linelen);
	ps_app_token_clear(&t);
	return rc;
}

/* keeper: the request on stdin (from the helper that starts it), then keep the token fresh. */
static int run_keeper(char *argv1)
{
	struct ps_request req;
	char line[ANSWER_MAX];
	int rc;

	memset(&req, 0, sizeof(req));
	rc = read_request(&req, line, sizeof(line));
	if (rc != PS_EXIT_OK)
		return rc;
	return ps_keeper_run(&req, argv1);
}

/* --pam: one request on stdin, one answer line on stdout. */
static int run_pam(void)
{
	struct ps_request req;
	char line[ANSWER_MAX];
	int rc;

	memset(&req, 0, sizeof(req));
	rc = read_request(&req, line, sizeof(line));
	if (rc == PS_EXIT_OK) {
		rc = op_open(&req, line, sizeof(line));
		ps_curl_unload();
	}
	answer(line);
	return rc;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: " PROG " --pam | keeper | service | login|logout|refresh "
		"[--config=PATH] [--timeout=N]\n"
		"       " PROG " --version | --help\n"
		"\n"
		"The helper of pam_spotify.so: run by the PAM module as the logging-in user, it\n"
		"reads a request on stdin, obtains a Spotify access token and stores it in the\n"
		"kernel keyring. spotify-token runs it for login, logout and refresh. As the\n"
		"system service (systemd's pam_spotify.socket, or started by the module) it holds\n"
		"the client secret. It is not meant to be run by hand; see "
		"pam_spotify_helper(8).\n");
}

struct user_cmd {
	const char *name; /* login, logout, refresh */
	const char *config_path;
	unsigned long timeout_s;
};

/* login|logout|refresh [--config=PATH] [--timeout=N]; 0, or -1 with a message printed. */
static int user_cmd_parse(int argc, char **argv, struct user_cmd *cmd)
{
	int i;

	cmd->name = argv[1];
	cmd->config_path = PS_CONFIG_PATH;
	cmd->timeout_s = LOGIN_TIMEOUT_S;
	for (i = 2; i < argc; i++) {
		if (!strncmp(argv[i], "--config=", 9) && argv[i][9]) {
			cmd->config_path = argv[i] + 9;
		} else if (!strncmp(argv[i], "--timeout=", 10) &&
			   ps_parse_ulong(argv[i] + 10, 1, 3600, &cmd->timeout_s) == 0) {
		} else {
			fprintf(stderr, "spotify-token: %s: unknown or bad argument '%.64s'\n",
				cmd->name, argv[i]);
			return -1;
		}
	}
	return 0;
}

/* The configuration of a user-run command; only the pkce flow can act without root. */
static int user_config(const struct user_cmd *cmd, struct ps_config *cfg, char *line,
		       size_t linelen)
{
	ps_config_init(cfg);
	ps_strlcpy(cfg->config_path, cmd->config_path, sizeof(cfg->config_path));
	if (ps_config_load(cfg, cmd->config_path, line, linelen) < 0 ||
	    ps_config_finish(cfg, line, linelen) < 0)
		return PS_EXIT_CONFIG;
	if (cfg->flow == PS_FLOW_PKCE || strcmp(cmd->name, "login") != 0)
		return PS_EXIT_OK;
	if (cfg->flow == PS_FLOW_CLIENT_CREDENTIALS)
		snprintf(line, linelen,
			 "flow client_credentials has no user login: the app token "
			 "arrives at every session open");
	else
		snprintf(line, linelen,
			 "flow authorization_code needs the client secret, which only "
			 "root can read: you connect your account at the login prompt");
	return PS_EXIT_CONFIG;
}

/* Where a user's command finds the system service of cfg: its own socket, else systemd's. */
static void user_service(struct ps_config *cfg)
{
	struct passwd *pw = getpwnam(cfg->app_user);
	struct stat st;

	if (!pw || pw->pw_uid == 0)
		return;
	cfg->app_uid = (long)pw->pw_uid;
	ps_service_path(cfg, ".sock", cfg->service, sizeof(cfg->service));
	if (stat(cfg->service, &st) < 0)
		ps_strlcpy(cfg->service, PS_RUNDIR "/" PS_SERVICE_SYSTEMD, sizeof(cfg->service));
}

/*
 * spotify-token refresh: the user's keeper renews (it owns the store and every request) and
 * answers when done. With no keeper (no session open), pkce refreshes here; the other flows need
 * a login.
 */
static int user_refresh(struct ps_config *cfg, char *line, size_t linelen)
{
	long long deadline = ps_mono_ms() + (PS_REQUEST_TIMEOUT_S + 10) * 1000LL;
	int rc = ps_keeper_ask(cfg, "refresh-now", deadline, NULL, line, linelen);
	struct ps_app_token t;

	/* keyring = session: the keeper cannot reach ours; we are in it, so we copy its token */
	if (rc == PS_EXIT_OK && cfg->keyring == PS_KEYRING_SESSION) {
		rc = ps_keeper_ask(cfg, "token", deadline, &t, line, linelen);
		if (rc == PS_EXIT_OK)
			rc = ps_app_token_store(cfg, &t, line, linelen);
		ps_app_token_clear(&t);
	}
	if (rc >= 0)
		return rc;
	if (cfg->timeout < PS_REQUEST_TIMEOUT_S)
		cfg->timeout = PS_REQUEST_TIMEOUT_S; /* a refresh given up in flight may lose a
							rotated refresh token */
	if (cfg->flow == PS_FLOW_PKCE)
		return ps_user_token_refresh(cfg, line, linelen);
	snprintf(line, linelen,
		 "no keeper runs for you (no open session with this configuration): log in "
		 "again for a new token");
	return PS_EXIT_NO_TOKEN;
}

/* spotify-token login|logout|refresh: messages on stderr, nothing secret anywhere. */
static int run_user(int argc, char **argv)
{
	struct user_cmd cmd;
	struct ps_config cfg;
	char line[ANSWER_MAX];
	int rc;

	if (user_cmd_parse(argc, argv, &cmd) < 0)
		return PS_EXIT_USAGE;
	/*
	 * At session open the helper runs with the module's minimal environment, which has no
	 * XDG_STATE_HOME: so must we, or a login would store the refresh token where the session
	 * open never looks. The store is always ~/.local/state/spotify-token.
	 */
	unsetenv("XDG_STATE_HOME");
	rc = user_config(&cmd, &cfg, line, sizeof(line));
	if (rc == PS_EXIT_OK && cfg.flow != PS_FLOW_PKCE)
		user_service(&cfg);
	if (rc == PS_EXIT_OK) {
		if (!strcmp(cmd.name, "login")) {
			rc = ps_user_token_enroll(&cfg, PS_VIA_TERMINAL, (unsigned)cmd.timeout_s,
						  line, sizeof(line));
		} else if (!strcmp(cmd.name, "logout"))
			rc = ps_user_token_logout(&cfg, line, sizeof(line));
		else
			rc = user_refresh(&cfg, line, sizeof(line));
		ps_curl_unload();
	}
	if (rc == PS_EXIT_OK && !strcmp(cmd.name, "login"))
		fprintf(stderr, "spotify-token: connected to Spotify (%s)\n", line);
	else if (rc == PS_EXIT_OK && !strcmp(cmd.name, "refresh") && strncmp(line, "ok", 2) != 0)
		fprintf(stderr, "spotify-token: refresh: %s\n", line); /* a note, not an error */
	else if (rc != PS_EXIT_OK)
		fprintf(stderr, "spotify-token: %s: %s\n", cmd.name, line);
	return rc;
}

static bool is_user_cmd(const char *arg)
{
	return !strcmp(arg, "login") || !strcmp(arg, "logout") || !strcmp(arg, "refresh");
}

int main(int argc, char **argv)
{
	bool pam_mode = argc == 2 && strcmp(argv[1], "--pam") == 0;
	bool keeper_mode = argc == 2 && strcmp(argv[1], "keeper") == 0;
	bool service_mode = argc == 2 && strcmp(argv[1], "service") == 0;
	bool user_mode = argc >= 2 && is_user_cmd(argv[1]);

	if (harden() < 0) {
		answer(PROG ": cannot make the process non-dumpable");
		return PS_EXIT_CONFIG;
	}
	if (argc == 2 && strcmp(argv[1], "--version") == 0) {
		printf(PROG " " PACKAGE_VERSION "\n");
		return PS_EXIT_OK;
	}
	if (argc == 2 && strcmp(argv[1], "--help") == 0) {
		usage(stdout);
		return PS_EXIT_OK;
	}
	if (service_mode)
		return ps_service_main(); /* root (then the app user), or systemd's app user */
	if (!pam_mode && !user_mode && !keeper_mode) {
		usage(stderr);
		return PS_EXIT_USAGE;
	}
	if (running_as_root()) {
		if (pam_mode)
			answer(PROG ": refusing to run as root");
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
		return run_keeper(argv[1]);
	return pam_mode ? run_pam() : run_user(argc, argv);
}
