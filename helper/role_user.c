/*
 * role_user.c: login, logout and refresh, run by spotify-token as the user (roles.h). Messages
 * go to stderr, each one line that says what to do; nothing secret anywhere.
 */
#include <config.h> /* autoconf; "config.h" could be taken for common/config.h */

#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/paths.h"
#include "common/util.h"
#include "helper/app_token.h"
#include "helper/curl_load.h"
#include "helper/keeper.h"
#include "helper/roles.h"
#include "helper/user_token.h"

#define ANSWER_MAX PS_ERR_MAX

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
	cmd->timeout_s = PS_LOGIN_TIMEOUT_S;
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
int ps_role_user(int argc, char **argv)
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

bool ps_role_is_user_cmd(const char *arg)
{
	return !strcmp(arg, "login") || !strcmp(arg, "logout") || !strcmp(arg, "refresh");
}
