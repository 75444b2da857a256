/*
 * app_token.h: a token as the keyring's two keys hold it: the spotify:token_info JSON (token_type,
 * scope, expires_at, flow, client_id) and the access token. The host's app token (client
 * credentials) travels so from the system service (service.h) to each user's keeper, and every
 * keeper's renewal (keeper.h) hands its new token so to the keeper, which stores it.
 */
#ifndef PS_APP_TOKEN_H
#define PS_APP_TOKEN_H

#include <stdbool.h>
#include <stddef.h>

#include "keyring/keys.h"
#include "keyring/token_info.h"
#include "common/config.h"

struct ps_app_token {
	char token[PS_TOKEN_MAX + 1];
	size_t token_len;
	char info_json[PS_TOKEN_INFO_MAX + 1];
	struct ps_token_info info;
};

/*
 * Check and take a token the service answered: info (the JSON), token (token_len bytes). It must
 * be a token of cfg's flow and client. 0, or -1 (t cleared).
 */
int ps_app_token_parse(struct ps_app_token *t, const struct ps_config *cfg, const char *info,
		       const char *token, size_t token_len);

/* True when t lives more than margin_s seconds from now: the one test of a token's freshness. */
bool ps_app_token_fresh(const struct ps_app_token *t, unsigned margin_s);

/* Store t in cfg's keyring, with a timeout that ends before the token does. */
int ps_app_token_store(const struct ps_config *cfg, const struct ps_app_token *t, char *line,
		       size_t linelen);

/* True when a and b hold the same token and expiry. */
bool ps_app_token_same(const struct ps_app_token *a, const struct ps_app_token *b);

/* Zero the token. */
void ps_app_token_clear(struct ps_app_token *t);

#endif
