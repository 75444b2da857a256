/*
 * token_response.h: strict parse of a successful token endpoint answer (RFC 6749 5.1).
 * access_token: non-empty string of RFC 6750 b64token characters; token_type: "bearer" in any
 * case; expires_in: optional, an integer or a string of digits, at least PS_EXPIRES_MIN, capped
 * at PS_EXPIRES_MAX (0 when absent: the caller applies default_expires_in); scope: optional string;
 * refresh_token: optional string. Other members are ignored; wrong types are errors.
 */
#ifndef PS_TOKEN_RESPONSE_H
#define PS_TOKEN_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/config.h"

#define PS_EXPIRES_MIN 1L
#define PS_EXPIRES_MAX 604800L /* one week */
#define PS_JSON_DEPTH  8

struct ps_token_response {
	char *access_token; /* zeroed and freed by ps_token_response_clear */
	size_t access_token_len;
	char *refresh_token; /* NULL when absent */
	size_t refresh_token_len;
	char token_type[32];
	long expires_in;     /* 0: the response had none */
	bool expires_capped; /* it was over PS_EXPIRES_MAX */
	char scope[PS_SCOPES_MAX];
};

/* 0, or -1 with a one-line reason in err (never quoting the token). */
int ps_token_response_parse(const char *body, size_t len, struct ps_token_response *out, char *err,
			    size_t errlen);

void ps_token_response_clear(struct ps_token_response *resp);

#endif
