/*
 * user_token.h: tokens for the user's own Spotify account (flow pkce or authorization_code):
 * enrollment (authorization code with PKCE, through the loopback listener or a pasted URL, or
 * through the PAM conversation), refreshes from the stored refresh token, and logout.
 */
#ifndef PS_USER_TOKEN_H
#define PS_USER_TOKEN_H

#include <stddef.h>

#include "common/config.h"

enum ps_enroll_via {
	PS_VIA_TERMINAL, /* spotify-token login: listener + paste on stdin, text on stderr */
	PS_VIA_PAM,	 /* the module's conversation: conv-info / conv-prompt lines on stdout */
};

/*
 * At session open, in the keeper and for spotify-token refresh: refresh from the stored refresh
 * token under the per-user lock, unless the keyring already holds a token of this flow and
 * client that lives more than min_valid seconds (another login or the keeper stored it). With no refresh
 * token: enroll through the PAM conversation when allowed, else PS_EXIT_NO_TOKEN with a hint.
 * authorization_code's requests go through the system service (cfg->service), which holds the
 * client secret.
 */
int ps_user_token_refresh(const struct ps_config *cfg, bool may_enroll, unsigned min_valid,
			  char *line, size_t linelen);

/* Enroll: authorize, exchange the code, store the refresh token and the access token. */
int ps_user_token_enroll(const struct ps_config *cfg, enum ps_enroll_via via, unsigned timeout_s,
			 char *line, size_t linelen);

/* Forget the refresh token and remove the keys. */
int ps_user_token_logout(const struct ps_config *cfg, char *line, size_t linelen);

#endif
