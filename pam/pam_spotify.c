/*
 * pam_spotify.c: the PAM session module. At session open it reads the configuration, checks the
 * user, makes sure the system service that holds the client secret runs (service.h; not for
 * pkce), asks the user's keeper for a token (starting the helper, which becomes the keeper, when
 * none runs), and logs one line. At close it tells them the session ended. It links libpam only:
 * the network, TLS and JSON live in the helper; it never reads the secret, never opens anything
 * in a home directory, never waits on a lock, and never waits past its deadline.
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <errno.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <syslog.h>
#include <security/pam_ext.h>
#include <security/pam_modules.h>
#include <security/pam_modutil.h>

#include "common/child.h"
#include "common/config.h"
#include "common/frame.h"
#include "common/paths.h"
#include "common/request.h"
#include "pam/service.h"
#include "pam/spawn.h"
#include "common/util.h"

#define PS_EXPORT __attribute__((visibility("default")))

#define PS_DATA_CONFIG_ERROR "pam_spotify_config_error"

static void free_data(pam_handle_t *pamh, void *data, int error_status)
{
	(void)pamh;
	(void)error_status;
	free(data);
}

/*
 * A configuration error is logged once per session: the open logs it and remembers the text, and
 * the close of that session stays quiet when it meets the very same error.
 */
static void config_error(pam_handle_t *pamh, bool opening, const char *err)
{
	const void *said = NULL;
	char *copy;

	if (!opening && pam_get_data(pamh, PS_DATA_CONFIG_ERROR, &said) == PAM_SUCCESS && said &&
	    strcmp(said, err) == 0)
		return;
	pam_syslog(pamh, LOG_ERR, "%s", err);
	if (opening && (copy = strdup(err)) &&
	    pam_set_data(pamh, PS_DATA_CONFIG_ERROR, copy, free_data) != PAM_SUCCESS)
		free(copy);
}

/* Configuration: the file (config= or the default path), then the module arguments over it. */
static int load_config(pam_handle_t *pamh, int argc, const char **argv, bool opening,
		       struct ps_config *cfg)
{
	const char *path = ps_config_arg_path(argc, argv);
	char err[PS_ERR_MAX];

	ps_config_init(cfg);
	if (path)
		ps_strlcpy(cfg->config_path, path, sizeof(cfg->config_path));
	if (ps_config_load(cfg, cfg->config_path, err, sizeof(err)) < 0 ||
	    ps_config_from_args(cfg, argc, argv, err, sizeof(err)) < 0 ||
	    ps_config_finish(cfg, err, sizeof(err)) < 0) {
		config_error(pamh, opening, err);
		return -1;
	}
	return 0;
}

/* The session's user; root and unknown users are not ours. */
static const struct passwd *session_user(pam_handle_t *pamh, int *pam_rc)
{
	const struct passwd *pw;
	const char *user = NULL;

	if (pam_get_user(pamh, &user, NULL) != PAM_SUCCESS || !user || !*user) {
		pam_syslog(pamh, LOG_ERR, "no user name in this PAM session");
		*pam_rc = PAM_SESSION_ERR;
		return NULL;
	}
	pw = pam_modutil_getpwnam(pamh, user);
	if (!pw) {
		pam_syslog(pamh, LOG_ERR, "user %s: not found in the password database", user);
		*pam_rc = PAM_USER_UNKNOWN;
		return NULL;
	}
	if (pw->pw_uid == 0) {
		pam_syslog(pamh, LOG_NOTICE,
			   "user %s: root gets no Spotify token "
			   "(the helper never runs as root)",
			   user);
		*pam_rc = PAM_IGNORE;
		return NULL;
	}
	return pw;
}

/* Map an answer (a PS_EXIT code and its line) to a PAM code and log it: one line, no secret. */
static int report(pam_handle_t *pamh, const struct ps_config *cfg, const struct passwd *pw,
		  const char *what, int rc, const char *line)
{
	switch (rc) {
	case PS_EXIT_OK:
		if (cfg->debug || strcmp(what, "open") == 0)
			pam_syslog(pamh, LOG_INFO, "user %s: %s: %s", pw->pw_name, what, line);
		return PAM_SUCCESS;
	case PS_EXIT_NO_TOKEN: /* e.g. not enrolled */
	case PS_EXIT_REAUTH:   /* the refresh token was refused: the user must log in again */
		pam_syslog(pamh, LOG_NOTICE, "user %s: %s: %s", pw->pw_name, what, line);
		if (cfg->interactive)
			pam_info(pamh, "Spotify: %s", line);
		return PAM_IGNORE;
	default:
		pam_syslog(pamh, LOG_ERR, "user %s: %s: %s (exit %d)", pw->pw_name, what,
			   line[0] ? line : "failed without a message", rc);
		return PAM_SESSION_ERR;
	}
}

/* The flows whose token requests need the client secret go through the system service. */
static bool needs_service(const struct ps_config *cfg)
{
	return cfg->flow != PS_FLOW_PKCE;
}

/*
 * One call on the user's keeper (helper/keeper.h), which must be the user's (SO_PEERCRED): a
 * socket the user planted hurts only this user's session, and only until the deadline.
 */
static int keeper_call(const struct ps_config *cfg, const struct passwd *pw, const char *op,
		       long long deadline, bool wait, char *line, size_t linelen)
{
	char path[PS_SERVICE_PATH_MAX];
	int rc;

	ps_keeper_path(cfg, pw->pw_uid, ".sock", path, sizeof(path));
	rc = ps_session_call(cfg, pw, path, pw->pw_uid, false, op, deadline, wait, line, linelen);
	if (rc == PS_EXIT_OK && !wait)
		snprintf(line, linelen, "ok the keeper was told%s",
			 strcmp(op, "open") ? "" : " (nowait: it gets the token)");
	else if (rc == PS_EXIT_NETWORK && strcmp(op, "open") == 0 && ps_mono_ms() >= deadline)
		ps_errf(line, linelen,
			"no token within the %u s timeout: the keeper goes on and stores it "
			"when it comes; is the accounts server at %s reachable?",
			cfg->timeout, cfg->token_url);
	return rc;
}

/*
 * Start the helper as the user (spawn.h), with the keeper's start lock when we took it: it
 * enrolls through the conversation when it must and may, and makes sure the user's keeper runs;
 * for keyring = session it copies the token there.
 */
static int start_helper(pam_handle_t *pamh, struct ps_config *cfg, const struct passwd *pw,
			int lock, long long deadline, char *line, size_t linelen)
{
	struct ps_spawn_opts o = {.mode = "--pam",
				  .interactive = cfg->interactive,
				  .deadline_ms = deadline,
				  .lock_fd = lock};
	char request[PS_REQUEST_MAX];
	struct ps_spawn_result res;
	int len = ps_request_format(cfg, PS_OP_OPEN, request, sizeof(request));

	if (len < 0) {
		ps_errf(line, linelen, "the request to the helper is too large");
		return PS_EXIT_CONFIG;
	}
	if (ps_spawn_helper(pamh, pw, request, (size_t)len, &o, &res) < 0) {
		ps_strlcpy(line, res.message, linelen);
		return PS_EXIT_CONFIG;
	}
	if (res.timed_out) {
		ps_errf(line, linelen, "helper killed after the %u s timeout", cfg->timeout);
		return PS_EXIT_NETWORK;
	}
	ps_strlcpy(line, res.message[0] ? res.message : "helper failed without a message", linelen);
	return res.exit_code;
}

/* The keeper says the user has no refresh token, and this login may connect the account. */
static bool enroll_here(const struct ps_config *cfg, int rc)
{
	return (rc == PS_EXIT_NO_TOKEN || rc == PS_EXIT_REAUTH) && cfg->interactive &&
	       cfg->flow != PS_FLOW_CLIENT_CREDENTIALS && cfg->enroll == PS_ENROLL_PROMPT;
}

/*
 * No keeper answers (rc -1), or the account must be connected first: start the helper, which
 * starts one; but while another login's start is under way (it holds the keeper's start lock),
 * wait for that keeper instead (-1: ask it again).
 */
static int start_keeper(pam_handle_t *pamh, struct ps_config *cfg, const struct passwd *pw, int rc,
			long long *deadline, bool wait, char *line, size_t linelen)
{
	char lockpath[PS_SERVICE_PATH_MAX], sock[PS_SERVICE_PATH_MAX];
	bool busy;
	int lock, dfd = ps_user_dir_open(pw->pw_uid, pw->pw_gid, true, line, linelen);

	if (dfd < 0)
		return PS_EXIT_CONFIG;
	ps_keeper_path(cfg, pw->pw_uid, ".lock", lockpath, sizeof(lockpath));
	lock = ps_child_start_lock(dfd, lockpath, pw->pw_uid, pw->pw_gid);
	busy = lock < 0 && errno == EWOULDBLOCK;
	close(dfd);
	if (busy && rc < 0 && cfg->keyring != PS_KEYRING_SESSION) {
		if (ps_mono_ms() < *deadline) {
			usleep(5000);
			return -1;
		}
		ps_keeper_path(cfg, pw->pw_uid, ".sock", sock, sizeof(sock));
		ps_errf(line, linelen,
			"the keeper's lock %s is held, but nothing listens at %s: end the process "
			"that holds it (fuser %s)",
			lockpath, sock, lockpath);
		return PS_EXIT_NETWORK;
	}
	rc = start_helper(pamh, cfg, pw, lock, *deadline, line, linelen);
	if (lock >= 0)
		close(lock);
	/* a conversation gives the user minutes (spawn.h): the token's wait starts after it */
	if (cfg->interactive && ps_mono_ms() >= *deadline)
		*deadline = ps_spawn_deadline(cfg->timeout);
	if (rc == PS_EXIT_OK)
		rc = keeper_call(cfg, pw, "open", *deadline, wait, line, linelen);
	if (rc < 0) {
		ps_errf(line, linelen, "the keeper went away before it answered");
		rc = PS_EXIT_NETWORK;
	}
	return rc;
}

/*
 * Open: the system service (for the flows that need the secret), then the user's keeper; when
 * none runs (or the account must be connected first), the helper, which starts one. One deadline
 * for it all; past it we return, and the keeper goes on.
 */
static int run_open(pam_handle_t *pamh, struct ps_config *cfg, const struct passwd *pw)
{
	long long deadline = ps_spawn_deadline(cfg->timeout);
	bool wait = !cfg->nowait || cfg->keyring == PS_KEYRING_SESSION;
	char line[PS_ERR_MAX] = "";
	int rc = -1;

	if (needs_service(cfg)) {
		rc = ps_service_open(pamh, cfg, pw, deadline, line, sizeof(line));
		if (rc != PS_EXIT_OK)
			return report(pamh, cfg, pw, "open", rc, line);
		rc = -1;
	}
	do {
		if (cfg->keyring != PS_KEYRING_SESSION)
			rc = keeper_call(cfg, pw, "open", deadline, wait, line, sizeof(line));
		if (rc < 0 || enroll_here(cfg, rc))
			rc = start_keeper(pamh, cfg, pw, rc, &deadline, wait, line, sizeof(line));
	} while (rc < 0);
	return report(pamh, cfg, pw, "open", rc, line);
}

/* Close: the system service and the keeper forget the session (both also see its process end).
 * The keeper is not waited for: it reads connections in turn, so a next open comes after this. */
static int run_close(pam_handle_t *pamh, struct ps_config *cfg, const struct passwd *pw)
{
	char line[PS_ERR_MAX] = "no keeper runs";
	int rc;

	if (needs_service(cfg))
		ps_service_close(pamh, cfg, pw);
	rc = keeper_call(cfg, pw, "close", ps_spawn_deadline(1), false, line, sizeof(line));
	if (rc > 0)
		pam_syslog(pamh, LOG_ERR, "user %s: close: %s (exit %d)", pw->pw_name, line, rc);
	else if (cfg->debug)
		pam_syslog(pamh, LOG_DEBUG, "user %s: close: %s", pw->pw_name, line);
	return rc <= 0 ? PAM_SUCCESS : PAM_SESSION_ERR;
}

#define PS_DATA_SESSION "pam_spotify_session_pid"

/* The process this session belongs to: the one that opened it, remembered for the close. */
static long session_pid(pam_handle_t *pamh, bool opening)
{
	const void *data = NULL;

	if (opening) {
		pam_set_data(pamh, PS_DATA_SESSION, (void *)(long)getpid(), NULL);
		return (long)getpid();
	}
	if (pam_get_data(pamh, PS_DATA_SESSION, &data) == PAM_SUCCESS && data)
		return (long)data;
	return (long)getpid();
}

/* The conversation may prompt: not PAM_SILENT, not nowait, and the application gave one. */
static bool conversation_usable(pam_handle_t *pamh, int flags, const struct ps_config *cfg)
{
	const void *conv = NULL;

	return !(flags & PAM_SILENT) && !cfg->nowait &&
	       pam_get_item(pamh, PAM_CONV, &conv) == PAM_SUCCESS && conv;
}

static int session_open(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	const struct passwd *pw;
	struct ps_config cfg;
	int rc = PAM_SESSION_ERR;

	if (load_config(pamh, argc, argv, true, &cfg) < 0)
		return PAM_SESSION_ERR;
	cfg.interactive = conversation_usable(pamh, flags, &cfg);
	cfg.session_pid = session_pid(pamh, true);
	pw = session_user(pamh, &rc);
	if (!pw)
		return rc;
	return run_open(pamh, &cfg, pw);
}

static int session_close(pam_handle_t *pamh, int argc, const char **argv)
{
	const struct passwd *pw;
	struct ps_config cfg;
	int rc = PAM_SESSION_ERR;

	if (load_config(pamh, argc, argv, false, &cfg) < 0)
		return PAM_SESSION_ERR;
	cfg.session_pid = session_pid(pamh, false);
	pw = session_user(pamh, &rc);
	if (!pw)
		return rc;
	return run_close(pamh, &cfg, pw);
}

PS_EXPORT int pam_sm_open_session(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	return session_open(pamh, flags, argc, argv);
}

PS_EXPORT int pam_sm_close_session(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	(void)flags;
	return session_close(pamh, argc, argv);
}
