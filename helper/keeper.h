/*
 * keeper.h: the user's keeper. One per user and configuration, `pam_spotify_helper keeper`, as
 * the user, owns everything about the user's token: the refresh-token store, every token request,
 * the keys, the sessions and the renewals. It listens on RUNDIR/user/UID/KEEPER.sock
 * (common/paths.h) and holds KEEPER.lock flocked for its whole life: whoever holds the lock binds
 * the socket, so a keeper never starts twice, and a socket left by a killed keeper is replaced.
 *
 * Messages (common/frame.h), each on a connection of its own, answered with "status N" (a PS_EXIT
 * code) and "message TEXT":
 *   op open, pid N, margin N
 *                       (root only, the session's pidfd alongside) count the session; answer
 *                       once a token is there: at once when the one held lives more than the
 *                       login's refresh_margin (stored again when the keys were removed), else
 *                       when the renewal it starts (or that runs) ends
 *   op close, pid N     (root only) the session ended
 *   op refresh-now      renew now and answer when done (see below)
 *   op token            the token itself ("info JSON", the token as the body), renewed first when
 *                       it is not fresh: for keyring = session, which only the login's helper
 *                       can reach
 *   op status           "sessions N", "expires_at N", "not_before N", "renewing 0|1"
 *   op forget           let go of the token held (spotify-token logout)
 *   op reload           hold the token in the keyring (a login just connected the account and
 *                       stored it) and renew it in time, also after an invalid_grant
 * Only root (the module) and the user may connect; the directory is the user's, 0700.
 *
 * Every token request runs in a child of the keeper ("the renewal"), which stores a rotated
 * refresh token before anything else and hands the access token back; the keeper stores it in the
 * keyring. Nothing the login does ends a renewal: a login that stops waiting at its deadline
 * leaves it to finish, and the next login finds its token. A request's total time is
 * PS_REQUEST_TIMEOUT_S, not the login's timeout.
 *
 * The next renewal is refresh_margin before the token expires (half its remaining life at most),
 * on a CLOCK_REALTIME timerfd with TFD_TIMER_CANCEL_ON_SET: after a suspend it fires as soon as
 * the machine resumes if its time has passed, and a clock step (which moves the kernel's key
 * expiry with it) renews at once. A failed renewal is retried with capped exponential backoff
 * and jitter, and never before a 429's or 503's Retry-After; inside that window nothing asks the
 * server, whatever asks the keeper; while a renewal runs, whoever asks waits for it (never a
 * second request). invalid_grant marks the store and stops renewing until a login or
 * refresh-now asks again.
 *
 * A session ends with its close or with its process (the pidfd). When the last one has ended and
 * no renewal runs, the keeper removes its socket, then the keys (remove_on_close), and exits.
 */
#ifndef PS_KEEPER_H
#define PS_KEEPER_H

#include <stdbool.h>
#include <stddef.h>

#include "common/request.h"
#include "helper/app_token.h"

/*
 * The helper at a login: make sure the user's keeper for req's configuration runs, starting it
 * (it daemonises) when none does. By deadline (ps_mono_ms). PS_EXIT_OK, or a code and a line.
 */
int ps_keeper_start(const struct ps_request *req, long long deadline, char *line, size_t linelen);

/*
 * Ask the calling user's running keeper for cfg: op "refresh-now", "reload", "token" (t filled,
 * unless NULL) or "status". The keeper's code with its message in line;
 * -1 when no keeper runs.
 */
int ps_keeper_ask(const struct ps_config *cfg, const char *op, long long deadline,
		  struct ps_app_token *t, char *line, size_t linelen);

/*
 * `pam_spotify_helper keeper`: the request on stdin, the socket at fd 3, its lock at fd 4. argv1
 * is the "keeper" of our argv, which a renewal overwrites with "renew", so that ps and pgrep tell
 * the keeper from its renewal.
 */
int ps_keeper_run(struct ps_request *req, char *argv1);

#endif
