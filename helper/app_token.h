/*
 * app_token.h: the host's app token (client credentials). The system service (service.h) obtains
 * and renews it; each user's helper and keeper ask the service for it and copy it into the user's
 * keyring. It travels as what the keyring's two keys hold: the spotify:token_info JSON (token_type,
 * scope, expires_at, flow, client_id) and the access token.
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
 * be a client credentials token of cfg's client. 0, or -1 (t cleared).
 */
int ps_app_token_parse(struct ps_app_token *t, const struct ps_config *cfg, const char *info,
		       const char *token, size_t token_len);

/* True when t lives more than margin_s seconds from now. */
bool ps_app_token_fresh(const struct ps_app_token *t, unsigned margin_s);

/* Store t in cfg's keyring, with a timeout that ends before the token does. */
int ps_app_token_store(const struct ps_config *cfg, const struct ps_app_token *t, char *line,
		       size_t linelen);

/* True when a and b hold the same token and expiry. */
bool ps_app_token_same(const struct ps_app_token *a, const struct ps_app_token *b);

/* Zero the token. */
void ps_app_token_clear(struct ps_app_token *t);

#endif
