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
#include "helper/keeper_loop.h"
#include "helper/service.h"
#include "helper/service_start.h"
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

/*
 * The open failed for a network or server reason: when another session's keeper runs, this
 * session shares its token and is counted, or the other session's close would take the token
 * away from this one. The module's deadline comes first: wait for the store lock only when a
 * second is left before it (the transfer itself ends half a second before it).
 */
static void open_failed_join(const struct ps_config *cfg, long long started_ms, char *line,
			     size_t linelen)
{
	long long left_ms = (long long)cfg->timeout * 1000 - (ps_mono_ms() - started_ms) - 500;
	size_t n = strlen(line);

	if (ps_keeper_join(cfg, left_ms >= 1000 ? 1 : 0) && n < linelen)
		snprintf(line + n, linelen - n,
			 "; this session shares the token the user's other session keeps");
}

/* The time the token may take to arrive: the module's deadline, less a margin for our answer. */
static unsigned wait_ms(const struct ps_config *cfg)
{
	return cfg->timeout > 1 ? cfg->timeout * 1000 - 500 : 500;
}

/* op open, client_credentials: the host's app token from the system service into the keyring. */
static int op_open_app_token(const struct ps_request *req, char *line, size_t linelen)
{
	struct ps_app_token t;
	int rc = ps_service_app_token(&req->cfg, ps_mono_ms() + wait_ms(&req->cfg), &t, line,
				      linelen);

	if (rc == PS_EXIT_OK)
		rc = ps_app_token_store(&req->cfg, &t, line, linelen);
	ps_app_token_clear(&t);
	return rc;
}

static int op_open(const struct ps_request *req, char *line, size_t linelen)
{
	long long started_ms = ps_mono_ms();
	int rc = check_open_request(req, line, linelen);

	if (rc != PS_EXIT_OK)
		return rc;
	if (req->cfg.flow == PS_FLOW_CLIENT_CREDENTIALS)
		rc = op_open_app_token(req, line, linelen);
	else
		rc = ps_user_token_refresh(
			&req->cfg, req->cfg.interactive && req->cfg.enroll == PS_ENROLL_PROMPT,
			req->cfg.refresh_margin, line, linelen);
	if (rc == PS_EXIT_OK)
		rc = ps_keeper_attach(req, line, linelen);
	else if (rc == PS_EXIT_NETWORK)
		open_failed_join(&req->cfg, started_ms, line, linelen);
	return rc;
}

/* op close: this session is gone; the last one out (or the keeper) removes the keys. */
static int op_close(const struct ps_request *req, char *line, size_t linelen)
{
	return ps_keeper_detach(&req->cfg, line, linelen);
}

/* keeper: the request on stdin (from the helper that starts it), then keep the token fresh. */
static int run_keeper(void)
{
	struct ps_request req;
	char line[ANSWER_MAX];
	int rc;

	memset(&req, 0, sizeof(req));
	rc = read_request(&req, line, sizeof(line));
	if (rc != PS_EXIT_OK)
		return rc;
	return ps_keeper_run(&req);
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
		rc = req.op == PS_OP_OPEN ? op_open(&req, line, sizeof(line))
					  : op_close(&req, line, sizeof(line));
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

/* A copy of the token in the keyring (NULL when there is none); free with ps_free_secret. */
static char *token_copy(const struct ps_config *cfg, size_t *len)
{
	struct ps_keys_found found;
	char err[PS_ERR_MAX], *copy = NULL;

	memset(&found, 0, sizeof(found));
	*len = 0;
	if (ps_keys_read(cfg->keyring == PS_KEYRING_PERSISTENT, &found, err, sizeof(err)) == 0 &&
	    found.token && (copy = malloc(found.token_len + 1))) {
		memcpy(copy, found.token, found.token_len + 1);
		*len = found.token_len;
	}
	ps_keys_found_free(&found);
	return copy;
}

/* The keyring holds a token other than old (compared by value: renewals can share a second). */
static bool token_replaced(const struct ps_config *cfg, const char *old, size_t oldlen)
{
	size_t len;
	char *now = token_copy(cfg, &len);
	bool replaced = now && (!old || len != oldlen || memcmp(now, old, len) != 0);

	ps_free_secret(now, len + 1);
	return replaced;
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

/* The host's app token (client_credentials) from the system service: PS_EXIT_OK with *t. */
static int app_token_current(const struct ps_config *cfg, struct ps_app_token *t)
{
	char line[ANSWER_MAX];

	memset(t, 0, sizeof(*t));
	if (cfg->flow != PS_FLOW_CLIENT_CREDENTIALS || !cfg->service[0])
		return PS_EXIT_NO_TOKEN;
	return ps_service_app_token(cfg, ps_mono_ms() + 2000, t, line, sizeof(line));
}

/* The keyring holds the app token that the service holds now (it may have been renewed). */
static bool app_token_copied(const struct ps_config *cfg, struct ps_app_token *app)
{
	size_t len = 0;
	char *now;
	bool same;

	ps_app_token_clear(app);
	if (app_token_current(cfg, app) != PS_EXIT_OK)
		return false;
	now = token_copy(cfg, &len);
	same = now && len == app->token_len && memcmp(now, app->token, len) == 0;
	ps_free_secret(now, len + 1);
	return same;
}

/*
 * Wait up to 15 s for a token other than old (1) or, when the host shares an app token, for
 * that token in the keyring (2); 0 when neither came.
 */
static int token_wait(const struct ps_config *cfg, const char *old, size_t oldlen, bool shared,
		      struct ps_app_token *app)
{
	int i;

	for (i = 0; i < 150; i++) { /* 15 s: a renewal is bounded by the configured timeout */
		if (token_replaced(cfg, old, oldlen))
			return 1;
		if (shared && app_token_copied(cfg, app))
			return 2;
		usleep(100000);
	}
	return 0;
}

/*
 * When the user's keeper is inside a backoff window (after a failed renewal; at least the
 * server's Retry-After), it makes no request before the window ends, whatever it is sent: its
 * end in when (UTC), and true. See ps_loop_publish.
 */
static bool keeper_window(const struct ps_config *cfg, char *when, size_t whenlen)
{
	char err[PS_ERR_MAX];
	struct ps_store s;
	long long until = 0;
	struct tm tm;
	time_t t;

	if (ps_store_open(&s, cfg->client_id, err, sizeof(err)) == PS_EXIT_OK) {
		until = ps_loop_window_read(s.dirfd, cfg->client_id);
		ps_store_close(&s);
	}
	t = (time_t)until;
	if (until && (!gmtime_r(&t, &tm) || !strftime(when, whenlen, "%Y-%m-%d %H:%M:%S UTC", &tm)))
		snprintf(when, whenlen, "%lld (Unix time)", until);
	return until != 0;
}

/*
 * spotify-token refresh: pkce refreshes here (always a network refresh); the other flows renew
 * in the keeper (through the system service, which holds the client secret): ask it, and wait
 * for the new token. The client credentials token is the host's, renewed by the system service
 * for everyone before it expires: the keeper copies the current one, and we say so. A keeper
 * inside a backoff window makes no request before it ends (keeper_loop.h): we say until when
 * rather than wait for nothing.
 */
static int user_refresh(const struct ps_config *cfg, char *line, size_t linelen)
{
	struct ps_app_token app;
	char when[48];
	size_t oldlen;
	bool shared;
	char *old;
	int rc = PS_EXIT_NETWORK, got;

	if (cfg->flow == PS_FLOW_PKCE)
		return ps_user_token_refresh(cfg, false, UINT_MAX, line, linelen);
	shared = app_token_current(cfg, &app) == PS_EXIT_OK;
	old = token_copy(cfg, &oldlen);
	if (ps_keeper_poke(cfg) < 0) {
		snprintf(line, linelen,
			 "no keeper runs for you (no open session with keyring = "
			 "user or persistent): log in again for a new token");
		rc = PS_EXIT_NO_TOKEN;
	} else if (keeper_window(cfg, when, sizeof(when))) {
		snprintf(line, linelen,
			 "the keeper is inside a Retry-After/backoff window until %s: no request "
			 "made; it retries then by itself, or try again after it",
			 when);
	} else if ((got = token_wait(cfg, old, oldlen, shared, &app)) == 2) {
		snprintf(line, linelen,
			 "the client_credentials token is the app's, shared by this host and "
			 "renewed for every user %u s before it expires: your keyring holds the "
			 "current one (it lives %lld s more)",
			 cfg->refresh_margin, app.info.expires_at - (long long)time(NULL));
		rc = PS_EXIT_OK;
	} else if (got == 1) {
		snprintf(line, linelen, "ok renewed by the keeper");
		rc = PS_EXIT_OK;
	} else if (keeper_window(cfg, when, sizeof(when))) {
		snprintf(line, linelen,
			 "the keeper's renewal failed (see the log) and it waits in a "
			 "Retry-After/backoff window until %s: it retries then by itself",
			 when);
	} else {
		snprintf(line, linelen,
			 "the keeper did not renew the token within 15 s: see the log");
	}
	ps_free_secret(old, oldlen + 1);
	ps_app_token_clear(&app);
	return rc;
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
	if (argc == 3 && !strcmp(argv[1], "service") && !strcmp(argv[2], "--start"))
		return ps_service_start(); /* root: the module starts the service */
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
		return run_keeper();
	return pam_mode ? run_pam() : run_user(argc, argv);
}
