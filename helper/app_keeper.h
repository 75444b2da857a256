/*
 * app_keeper.h: `pam_spotify_helper app-keeper`, the host's one keeper of a client credentials
 * token (one per app token, pam/rundir.h). The module starts it as the app user (app_user, never
 * root) when a client credentials session opens and none runs, with the request and the client
 * secret on stdin. It forks: the child becomes the app keeper (its own session, stdio on
 * /dev/null, flock on RUNDIR/APP.app/keeper holding its pid), obtains the app token (or takes a
 * valid one its predecessor left in the cache), writes it to the cache RUNDIR/APP.app/token, and
 * tells the parent, which answers the module with one line and exits:
 *   exit 0  "ok expires_in=N": the cache holds a token (or another app keeper runs)
 *   exit 1  the app keeper cannot serve here (e.g. /proc hides the sessions' processes): the
 *           module falls back to a token request of the user's own
 *   other   the token request failed (the PS_EXIT_* code and the reason)
 * The app keeper then renews the token refresh_margin seconds before it expires (the keepers'
 * loop: backoff, Retry-After), watches the host's session registry RUNDIR/APP.sessions, and when
 * no session is left host-wide removes the cache and ends. A refused renewal (invalid_client:
 * the secret changed) ends it too: the next login starts one with the current configuration.
 */
#ifndef PS_APP_KEEPER_H
#define PS_APP_KEEPER_H

#include <stddef.h>

#include "pam/request.h"

/* Start the app keeper for req; its one-line answer in line, a PS_EXIT_* code back. */
int ps_app_keeper_start(struct ps_request *req, char *line, size_t linelen);

#endif
