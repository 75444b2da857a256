/*
 * keeper.h: one keeper per user and client keeps the token fresh while the user has sessions.
 *
 * Sessions are files in the store, CLIENT.sessions/PID-START (the PAM application's process
 * and its start time), created at session open and removed at close, under the store lock.
 * The keeper, `pam_spotify_helper keeper`, holds an flock on CLIENT.keeper (which holds its
 * pid) for its whole life, watches the sessions directory with inotify and each session's
 * process with a pidfd (a session killed without close is dropped at once), sleeps until
 * refresh_margin seconds before the token expires, renews it by the configured flow, retries
 * network errors with capped exponential backoff and jitter (Retry-After on 429), stops renewing
 * on invalid_grant, and when the last session is gone removes the keys (remove_on_close) and
 * exits. It gets its request, with any client secret, on stdin: never argv or environment.
 */
#ifndef PS_KEEPER_H
#define PS_KEEPER_H

#include <stdbool.h>

#include "common/request.h"

/*
 * At session open, after the token is stored: register the session and start the keeper unless
 * one runs. Only for keyring = user or persistent (a keeper cannot reach session keyrings).
 */
int ps_keeper_attach(const struct ps_request *req, char *line, size_t linelen);

/*
 * At a session open that failed for a network or server reason: when a keeper already runs (for
 * another session of this user and client), count this session too, so that the token that
 * keeper keeps stays while this session is open. No keeper is started. lock_wait_s bounds the
 * wait for the store lock (0: one try). true when the session was counted.
 */
bool ps_keeper_join(const struct ps_config *cfg, unsigned lock_wait_s);

/*
 * At session close: unregister the session; with no keeper running and no session left, remove
 * the keys (remove_on_close). The keeper, when running, does that itself.
 */
int ps_keeper_detach(const struct ps_config *cfg, char *line, size_t linelen);

/* Ask the running keeper to renew now (SIGUSR1). 0, or -1 when none runs. */
int ps_keeper_poke(const struct ps_config *cfg);

/* `pam_spotify_helper keeper`, with the request read from stdin: keep the token fresh. */
int ps_keeper_run(struct ps_request *req);

#endif
