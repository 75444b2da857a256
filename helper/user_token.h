/*
 * user_token.h: tokens for the user's own Spotify account (flow pkce or authorization_code):
 * enrollment (authorization code with PKCE, through the loopback listener or a pasted URL, or
 * through the PAM conversation), refreshes from the stored refresh token, and logout.
 */
#ifndef PS_USER_TOKEN_H
#define PS_USER_TOKEN_H

#include <stddef.h>

#include "common/config.h"
#include "helper/app_token.h"

enum ps_enroll_via {
	PS_VIA_TERMINAL, /* spotify-token login: listener + paste on stdin, text on stderr */
	PS_VIA_PAM,	 /* the module's conversation: conv-info / conv-prompt lines on stdout */
};

/*
 * The keeper's renewal (keeper.h): refresh from the stored refresh token under the store's lock,
 * store a rotated refresh token first, and hand the access token back in t (not stored).
 * authorization_code's requests go through the system service (cfg->service), which holds the
 * client secret. With no refresh token: PS_EXIT_NO_TOKEN (PS_EXIT_REAUTH when refused earlier),
 * with what to do in line; invalid_grant marks the store (PS_EXIT_REAUTH).
 */
int ps_user_token_renew(const struct ps_config *cfg, struct ps_app_token *t, char *line,
			size_t linelen);

/* spotify-token refresh with no keeper running (pkce): renew, and store the token. */
int ps_user_token_refresh(const struct ps_config *cfg, char *line, size_t linelen);

/* The store holds a refresh token that was not refused: no enrollment is needed. */
bool ps_user_token_enrolled(const struct ps_config *cfg);

/* Enroll: authorize, exchange the code, store the refresh token and the access token. */
int ps_user_token_enroll(const struct ps_config *cfg, enum ps_enroll_via via, unsigned timeout_s,
			 char *line, size_t linelen);

/* Forget the refresh token and remove the keys. */
int ps_user_token_logout(const struct ps_config *cfg, char *line, size_t linelen);

#endif
