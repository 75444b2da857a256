/*
 * app_token.h: the module's part of the host's app token (client credentials, pam/rundir.h).
 * A client credentials token is the app's, not the user's: one app keeper per host obtains and
 * renews it as the app user (app_user), and every user's helper copies it from the cache.
 *
 * At a client credentials open the module (root): makes RUNDIR and its directories, registers
 * the session in the host's registry (RUNDIR/APP.sessions/UID-PID-START), takes the host lock
 * (RUNDIR/APP.lock, never past the login's deadline), and when no app keeper runs starts one as
 * the app user with the request and the client secret on its stdin, and waits for its "ready"
 * (its first token is in the cache). Concurrent logins wait for that lock and find the app
 * keeper running: one token request for the host. Then the user's helper runs without the
 * secret and copies the cache. When the app user does not exist (or the app keeper cannot
 * serve here) the module logs one line and the login requests a token of its own, as before.
 */
#ifndef PS_APP_TOKEN_H
#define PS_APP_TOKEN_H

#include <pwd.h>
#include <security/pam_modules.h>

#include "pam/config.h"
#include "pam/spawn.h"

enum ps_app_outcome {
	PS_APP_READY,	 /* an app keeper serves the token: cfg->app_uid is set */
	PS_APP_FALLBACK, /* logged: the login requests a token of its own */
	PS_APP_FAILED,	 /* the app keeper's token request failed: res says how */
};

/*
 * At a client credentials open of pw's session (cfg->session_pid), before deadline; secret is
 * the client secret, which the module has read and checked (at every open), for the app keeper.
 */
enum ps_app_outcome ps_app_open(pam_handle_t *pamh, struct ps_config *cfg, const struct passwd *pw,
				const char *secret, long long deadline,
				struct ps_spawn_result *res);

/* At its close: the session leaves the host's registry (the last one ends the app keeper). */
void ps_app_close(pam_handle_t *pamh, const struct ps_config *cfg, const struct passwd *pw);

#endif
