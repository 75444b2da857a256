/*
 * service.h: the system service, `pam_spotify_helper service`: the one process that holds the
 * client secret. It runs as the system user app_user (_pam_spotify), which no person owns, listens
 * on a root-owned Unix socket in RUNDIR (common/paths.h) and checks each peer with SO_PEERCRED.
 *
 * It obtains and renews the host's app token (client_credentials) and hands it to any local user's
 * helper or keeper, and it makes the token requests that need client authentication on behalf of
 * users (authorization_code: the user's side sends the form with its code or refresh token, the
 * service adds HTTP Basic with the secret, posts it to its own token_url and returns the answer;
 * it keeps nothing of the user's). It honours Retry-After for everybody (no request inside the
 * window, whoever asks), backs off after failures, and limits each uid's requests.
 *
 * Started by systemd (pam_spotify.socket: the socket is fd 3, LISTEN_FDS; the secret is the
 * credential client_secret in $CREDENTIALS_DIRECTORY), or by the module as root through
 * `service --start` (helper/service_start.h: a clean context) with its configuration on stdin:
 * then, as root, it takes RUNDIR/SERVICE.lock (held for its whole life; busy: another service
 * runs, it ends), reads and checks client_secret_file, binds RUNDIR/SERVICE.sock (0666), drops to
 * app_user for good and writes "ready" (or "busy", or "fail CODE TEXT") on stdout. It ends when
 * no session it counts is open, no request is under way, and no Retry-After window is running.
 *
 * Messages (common/frame.h), each answered with "status CODE" (a PS_EXIT_* value) and, on failure,
 * "message TEXT":
 *   op open|close, service NAME, uid, pid (+ the session's pidfd)   root only: count a session
 *   op token, service NAME   -> info JSON, body: the app token      client_credentials
 *   op grant, service NAME, body: the form -> http, content_type, retry_after, body: the answer
 *                                                                   authorization_code
 */
#ifndef PS_SERVICE_H
#define PS_SERVICE_H

#include <stddef.h>

#include "helper/app_token.h"
#include "helper/http.h"
#include "common/config.h"

/* The service role: main() has parsed the command line; run until the end. An exit code. */
int ps_service_main(void);

/*
 * A user's side: the host's app token from cfg->service, waiting at most until deadline (ms,
 * ps_mono_ms). PS_EXIT_OK with *t, or an exit code with line. On success line is empty, or says
 * why the service has no newer token (its renewal failed; the one it has still lives). Either
 * way *retry_s is the seconds until the service's request window ends (its backoff after a
 * failed request, or the server's Retry-After) when it gave them, else -1.
 */
int ps_service_app_token(const struct ps_config *cfg, long long deadline, struct ps_app_token *t,
			 long *retry_s, char *line, size_t linelen);

/*
 * A user's side: post form (grant_type authorization_code or refresh_token, without client
 * authentication) through the service, which adds it. PS_EXIT_OK with resp as ps_http_post_form
 * gives it, or an exit code with line.
 */
int ps_service_post(const struct ps_config *cfg, const char *form, struct ps_http_response *resp,
		    char *line, size_t linelen);

/* Closed once the service has said how its start went: what its starter waits for (-1: none). */
extern int ps_service_announce_fd;

#endif
