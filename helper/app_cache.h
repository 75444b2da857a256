/*
 * app_cache.h: the host's app token cache, RUNDIR/APP.app/token (pam/rundir.h). The app keeper
 * writes it; each user's helper and keeper copy it into the user's keyring. The file holds what
 * the keyring's two keys hold:
 *   pam_spotify-app-token 1
 *   <the spotify:token_info JSON: token_type, scope, expires_at, flow, client_id>
 *   <the access token>
 * It is readable by every local user (0644): a client credentials token is the app's, not a
 * user's, and every user with a session gets it anyway. It must belong to the app user and be
 * closed to writes by others, or it is refused: no user can plant a token for another.
 */
#ifndef PS_APP_CACHE_H
#define PS_APP_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include "helper/token_response.h"
#include "keyring/keys.h"
#include "keyring/token_info.h"
#include "pam/config.h"

struct ps_app_token {
	char token[PS_TOKEN_MAX + 1];
	size_t token_len;
	char info_json[PS_TOKEN_INFO_MAX + 1];
	struct ps_token_info info;
};

/*
 * Open the app keeper's directory for cfg, which must belong to owner (RUNDIR to root). The fd,
 * or -1 with a line (PS_EXIT_CONFIG).
 */
int ps_app_dir_open(const struct ps_config *cfg, uid_t owner, char *line, size_t linelen);

/*
 * Read and check the cache in the directory appfd. PS_EXIT_OK; PS_EXIT_NO_TOKEN when there is
 * none; PS_EXIT_EXPIRED when it has (nearly) expired; PS_EXIT_CONFIG when it is refused (not a
 * regular file, a link, not owned by owner, writable by others, malformed, another client's).
 */
int ps_app_cache_read(int appfd, const struct ps_config *cfg, uid_t owner, struct ps_app_token *t,
		      char *line, size_t linelen);

/*
 * ps_app_cache_read, waiting up to wait_ms for a valid token while there is none (or an expired
 * one). PS_EXIT_OK, PS_EXIT_CONFIG (refused), or PS_EXIT_NETWORK when none came in time.
 */
int ps_app_cache_wait(int appfd, const struct ps_config *cfg, uid_t owner, struct ps_app_token *t,
		      unsigned wait_ms, char *line, size_t linelen);

/* Replace the cache atomically with a token just obtained (started: when it was asked for). */
int ps_app_cache_write(int appfd, const struct ps_config *cfg, const struct ps_token_response *tok,
		       time_t started, char *line, size_t linelen);

/* Remove the cache (the app keeper, when it ends). */
void ps_app_cache_remove(int appfd);

/* Store t in cfg's keyring, with a timeout that ends before the token does. */
int ps_app_token_store(const struct ps_config *cfg, const struct ps_app_token *t, char *line,
		       size_t linelen);

/* True when a and b hold the same token and expiry. */
bool ps_app_token_same(const struct ps_app_token *a, const struct ps_app_token *b);

/* Zero the token. */
void ps_app_token_clear(struct ps_app_token *t);

#endif
