/*
 * warm.h: the module's fast path. A session opened while the user already holds a token of this
 * flow and client that outlives refresh_margin, and while the user's keeper runs, needs no
 * helper: the module checks the keyring and registers the session with the keeper itself, with
 * no process started and no network request. The close of a session whose keeper runs only
 * leaves the registry; the keeper sees that and acts. Anything else (no token, a short-lived
 * one, no keeper, a busy lock, a store that is not as the helper leaves it) takes the slow path:
 * the helper, which deals with it and says what is wrong.
 */
#ifndef PS_WARM_H
#define PS_WARM_H

#include <pwd.h>
#include <stddef.h>

#include "pam/config.h"

/*
 * At open: 1 when the session is registered with the user's running keeper and the token in
 * the keyring is fresh (line says so, for the log), else 0 and nothing is changed.
 */
int ps_warm_open(const struct ps_config *cfg, const struct passwd *pw, char *line, size_t linelen);

/* At close: 1 when the session left the registry of the user's running keeper, else 0. */
int ps_warm_close(const struct ps_config *cfg, const struct passwd *pw);

#endif
