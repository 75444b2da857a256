/*
 * warm.h: the module's fast path. A session opened while the user already holds a token of this
 * flow and client that outlives refresh_margin, and while the user's keeper runs, needs no
 * helper: the module checks the keyring and registers the session with the keeper itself, with
 * no process started and no network request. The close of a session whose keeper runs only
 * leaves the registry; the keeper sees that and acts. A login that meets another login of the
 * same user at work (the store lock held) waits for it, bounded, and looks again. Anything else
 * (no token, a short-lived one, no keeper, a store that is not as the helper leaves it) takes the
 * slow path:
 * the helper, which deals with it and says what is wrong.
 */
#ifndef PS_WARM_H
#define PS_WARM_H

#include <pwd.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/config.h"

/*
 * At open: 1 when the session is registered with the user's running keeper and the token in
 * the keyring is fresh (line says so, for the log), else 0 and nothing is changed. may_wait:
 * wait (bounded) for another login of the user that holds the store lock; false for nowait.
 */
int ps_warm_open(const struct ps_config *cfg, const struct passwd *pw, bool may_wait, char *line,
		 size_t linelen);

/* At close: 1 when the session left the registry of the user's running keeper, else 0. */
int ps_warm_close(const struct ps_config *cfg, const struct passwd *pw);

/*
 * Before a session open runs the helper: the user's login lock, RUNDIR/login-UID.lock (root's),
 * held until the helper is done, so that concurrent logins of one user run one helper: the others
 * wait for it (bounded as for the store lock; *waited says they did) and then find the token and
 * the keeper for the fast path. The fd (close it to release), or -1: go on without.
 */
int ps_warm_login_lock(const struct ps_config *cfg, const struct passwd *pw, bool *waited);

#endif
