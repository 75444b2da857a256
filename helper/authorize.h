/*
 * authorize.h: the authorization request URL, and the strict parsing of what comes back: the
 * query of the redirect our listener receives, or the whole redirected URL a user pastes.
 */
#ifndef PS_AUTHORIZE_H
#define PS_AUTHORIZE_H

#include <stddef.h>

#include "common/config.h"

#define PS_CODE_MAX	  1024 /* longest authorization code accepted */
#define PS_CALLBACK_Q_MAX 4096 /* longest query string accepted */

struct ps_callback {
	char code[PS_CODE_MAX]; /* a secret: ps_callback_clear zeroes it */
	char state[128];
	char error[64];
	char error_description[256]; /* printable ASCII only */
};

/* Percent-encode everything but RFC 3986 unreserved characters. Length, or -1 if it won't fit. */
int ps_url_encode(const char *in, char *out, size_t outlen);

/*
 * authorize_url?client_id=..&response_type=code&redirect_uri=..&scope=..&state=..
 * &code_challenge_method=S256&code_challenge=..  (scope omitted when scopes is empty).
 * Returns the length, or -1 when it does not fit.
 */
int ps_authorize_url(const char *authorize_url, const char *client_id, const char *redirect_uri,
		     const char *scopes, const char *state, const char *challenge, char *out,
		     size_t outlen);

/*
 * Parse a query string (no leading '?'; a '#fragment' is not part of it). Strict: each of code,
 * state, error, error_description at most once (a repeat is an error), other parameters ignored,
 * bad percent-encoding, NUL or control bytes after decoding, and oversized values are errors.
 * Needs state, and either code or error. 0, or -1 with a one-line reason in err.
 */
int ps_callback_parse_query(const char *query, size_t len, struct ps_callback *cb, char *err,
			    size_t errlen);

/*
 * Parse the URL a browser was redirected to, as pasted by a user (surrounding white space is
 * trimmed): scheme, host and path must be those of redirect_uri; the port must match when
 * redirect_uri names one (any port otherwise: Spotify allows a dynamic port on loopback).
 * 0, or -1 with a one-line reason in err.
 */
int ps_callback_parse_url(const char *url, const char *redirect_uri, struct ps_callback *cb,
			  char *err, size_t errlen);

void ps_callback_clear(struct ps_callback *cb);

#endif
