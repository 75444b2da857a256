/*
 * pam_spotify.c: the PAM session module. At session open it reads the configuration, makes sure
 * the system service that holds the client secret runs (service.h; not for pkce), runs the
 * unprivileged helper as the user to obtain a Spotify access token into the user's keyring, and
 * logs one line. At session close it has the helper count the session and remove the keys. It
 * links libpam only: the network, TLS and JSON live in the helper; it never reads the secret.
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <syslog.h>
#include <security/pam_ext.h>
#include <security/pam_modules.h>
#include <security/pam_modutil.h>

#include "common/config.h"
#include "common/request.h"
#include "pam/service.h"
#include "pam/spawn.h"
#include "common/util.h"
#include "pam/warm.h"

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

/* Map the helper's answer to a PAM code and log it: one line, never a secret. */
static int report(pam_handle_t *pamh, const struct ps_config *cfg, const struct passwd *pw,
		  const char *what, const struct ps_spawn_result *res)
{
	if (res->timed_out) {
		pam_syslog(pamh, LOG_ERR,
			   "user %s: %s: helper killed after the %u s timeout; "
			   "is the accounts server at %s reachable?",
			   pw->pw_name, what, cfg->timeout, cfg->token_url);
		return PAM_SESSION_ERR;
	}
	switch (res->exit_code) {
	case PS_EXIT_OK:
		if (cfg->debug || strcmp(what, "open") == 0)
			pam_syslog(pamh, LOG_INFO, "user %s: %s: %s", pw->pw_name, what,
				   res->message);
		return PAM_SUCCESS;
	case PS_EXIT_NO_TOKEN: /* e.g. not enrolled */
	case PS_EXIT_REAUTH:   /* the refresh token was refused: the user must log in again */
		pam_syslog(pamh, LOG_NOTICE, "user %s: %s: %s", pw->pw_name, what, res->message);
		if (cfg->interactive)
			pam_info(pamh, "Spotify: %s", res->message);
		return PAM_IGNORE;
	default:
		pam_syslog(pamh, LOG_ERR, "user %s: %s: %s (helper exit %d)", pw->pw_name, what,
			   res->message[0] ? res->message : "helper failed without a message",
			   res->exit_code);
		return PAM_SESSION_ERR;
	}
}

/* The fast path's open (warm.h): one log line, as the helper's answer would give. */
static int warm_report(pam_handle_t *pamh, const struct passwd *pw, const char *message)
{
	pam_syslog(pamh, LOG_INFO, "user %s: open: %s", pw->pw_name, message);
	return PAM_SUCCESS;
}

/* The flows whose token requests need the client secret go through the system service. */
static bool needs_service(const struct ps_config *cfg)
{
	return cfg->flow != PS_FLOW_PKCE;
}

/* Run the helper for op, one deadline for it all (and for the system service before it). */
static int run_helper(pam_handle_t *pamh, struct ps_config *cfg, const struct passwd *pw,
		      enum ps_op op, bool detached)
{
	const char *what = op == PS_OP_OPEN ? "open" : "close";
	struct ps_spawn_opts o = {.mode = "--pam", .interactive = cfg->interactive && !detached};
	char request[PS_REQUEST_MAX];
	struct ps_spawn_result res;
	int len, rc, ulock = -1;
	bool waited = false;

	o.deadline_ms = ps_spawn_deadline(cfg->timeout);
	if (op == PS_OP_OPEN && needs_service(cfg)) {
		memset(&res, 0, sizeof(res));
		res.exit_code = ps_service_open(pamh, cfg, pw, o.deadline_ms, res.message,
						sizeof(res.message));
		if (res.exit_code != PS_EXIT_OK)
			return report(pamh, cfg, pw, what, &res);
	}
	if (op == PS_OP_OPEN && ps_warm_open(cfg, pw, true, res.message, sizeof(res.message)))
		return warm_report(pamh, pw, res.message);
	/* one helper at a time per user: a login that waited for another may need none */
	if (op == PS_OP_OPEN && (ulock = ps_warm_login_lock(cfg, pw, &waited)) >= 0 && waited &&
	    ps_warm_open(cfg, pw, true, res.message, sizeof(res.message))) {
		close(ulock);
		return warm_report(pamh, pw, res.message);
	}
	len = ps_request_format(cfg, op, request, sizeof(request));
	if (len < 0) {
		pam_syslog(pamh, LOG_ERR, "user %s: request to the helper is too large",
			   pw->pw_name);
		rc = PAM_SESSION_ERR;
	} else if (ps_spawn_helper(pamh, pw, request, (size_t)len, &o, &res) < 0) {
		pam_syslog(pamh, LOG_ERR, "user %s: %s: %s", pw->pw_name, what, res.message);
		rc = PAM_SESSION_ERR;
	} else {
		rc = report(pamh, cfg, pw, what, &res);
	}
	if (ulock >= 0)
		close(ulock); /* the next login of the user goes on */
	return rc;
}

/* Open: with nowait, in a detached process that logs the outcome and ends. */
static int run_open(pam_handle_t *pamh, struct ps_config *cfg, const struct passwd *pw)
{
	char line[PS_ERR_MAX];
	int detached = 0, rc;

	/* nowait: a token that needs nothing is there at once, without a detached process (when
	 * no system service must count the session: run_helper); this check never waits for
	 * another login's lock */
	if (cfg->nowait && !needs_service(cfg) && ps_warm_open(cfg, pw, false, line, sizeof(line)))
		return warm_report(pamh, pw, line);
	if (cfg->nowait) {
		detached = ps_spawn_detach();
		if (detached < 0)
			pam_syslog(pamh, LOG_ERR, "user %s: cannot fork for nowait", pw->pw_name);
		else if (detached == 0 && cfg->debug)
			pam_syslog(pamh, LOG_DEBUG, "user %s: helper started (nowait)",
				   pw->pw_name);
		if (detached <= 0)
			return detached < 0 ? PAM_SESSION_ERR : PAM_IGNORE;
	}
	rc = run_helper(pamh, cfg, pw, PS_OP_OPEN, detached);
	if (detached)
		_exit(0); /* the nowait waiter never returns into the application */
	return rc;
}

/*
 * Close: the system service forgets the session, then the user's side: at once when the user's
 * keeper runs (it sees the change and acts), else the helper counts the session.
 */
static int run_close(pam_handle_t *pamh, struct ps_config *cfg, const struct passwd *pw)
{
	if (needs_service(cfg))
		ps_service_close(pamh, cfg, pw);
	if (ps_warm_close(cfg, pw)) {
		if (cfg->debug)
			pam_syslog(pamh, LOG_DEBUG,
				   "user %s: close: left the running keeper's registry",
				   pw->pw_name);
		return PAM_SUCCESS;
	}
	return run_helper(pamh, cfg, pw, PS_OP_CLOSE, false);
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
