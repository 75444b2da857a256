/*
 * grant.h: requests to the token endpoint (RFC 6749 4.1.3, 4.4, 6) and storing what they bring
 * in the keyring. A public client (pkce) sends client_id in the form; a confidential one
 * authenticates with HTTP Basic: the system service with its secret (client credentials), a
 * user's side through the service, which adds it (authorization_code; helper/service.h).
 */
#ifndef PS_GRANT_H
#define PS_GRANT_H

#include <time.h>

#include "helper/token_response.h"
#include "common/config.h"

/* Each returns PS_EXIT_OK with tok filled in, or a PS_EXIT_* code with one line in line. */
int ps_grant_client_credentials(const struct ps_config *cfg, const char *secret,
				struct ps_token_response *tok, char *line, size_t linelen);
int ps_grant_code(const struct ps_config *cfg, const char *code, const char *redirect_uri,
		  const char *verifier, struct ps_token_response *tok, char *line, size_t linelen);
int ps_grant_refresh(const struct ps_config *cfg, const char *refresh_token,
		     struct ps_token_response *tok, char *line, size_t linelen);

/* Seconds of Retry-After on the last answer when it was a 429 or a 503, else -1. */
long ps_grant_retry_after(void);

/*
 * The spotify:token_info JSON of a token (keyring/token_info.h). started: when the request was
 * sent (expires_at = started + expires_in). PS_EXIT_OK, or PS_EXIT_CONFIG with a line.
 */
int ps_grant_info(const struct ps_config *cfg, const struct ps_token_response *tok, time_t started,
		  char *json, size_t jsonlen, char *line, size_t linelen);

/*
 * Put the access token and its info in the configured keyring. started: when the request was
 * sent (expires_at = started + expires_in). On success line is "ok expires_in=N keyring=K".
 */
int ps_grant_store(const struct ps_config *cfg, const struct ps_token_response *tok, time_t started,
		   char *line, size_t linelen);

#endif
