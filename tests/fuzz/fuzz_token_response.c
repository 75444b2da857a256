/*
 * fuzz_token_response.c: libFuzzer target for what the token endpoint sends back: the token
 * response parser (ps_token_response_parse) and the error-answer describer
 * (ps_oauth_error_describe), both on the same body.
 *
 * Contract: on success, an access token of 1..PS_TOKEN_MAX b64token characters (its length
 * right, terminated), token_type bearer, expires_in in range, scope names only, a refresh token
 * of printable ASCII when there is one, and a clear that zeroes everything; on failure, one
 * non-empty line that does not quote the access or refresh token. The describer always says one
 * line and picks a failure exit code.
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

#include "helper/oauth_error.h"
#include "helper/store.h"
#include "helper/token_response.h"
#include "keyring/keys.h"
#include "common/util.h"
#include "tests/fuzz/fuzz.h"

/* Shorter secrets could match the fixed text of a message. */
#define SECRET_MIN 20

static bool is_scope_text(const char *s)
{
	for (; *s; s++)
		if (*s != ' ' && (*s < 0x21 || *s > 0x7e || *s == '"' || *s == '\\'))
			return false;
	return true;
}

static void check_accepted(const struct ps_token_response *r)
{
	if (!r->access_token || r->access_token_len < 1 || r->access_token_len > PS_TOKEN_MAX ||
	    strlen(r->access_token) != r->access_token_len ||
	    !ps_b64token_valid(r->access_token, r->access_token_len))
		ps_fuzz_fail("accepted an access token that is not 1..PS_TOKEN_MAX b64token bytes");
	ps_fuzz_check_cstr(r->token_type, sizeof(r->token_type), "token_type unterminated");
	if (strcasecmp(r->token_type, "bearer") != 0)
		ps_fuzz_fail("accepted a token_type other than bearer");
	if ((r->expires_in != 0 && r->expires_in < PS_EXPIRES_MIN) ||
	    r->expires_in > PS_EXPIRES_MAX)
		ps_fuzz_fail("accepted expires_in out of range (0 only when absent)");
	if (r->expires_capped && r->expires_in != PS_EXPIRES_MAX)
		ps_fuzz_fail("a capped expires_in is not PS_EXPIRES_MAX");
	ps_fuzz_check_cstr(r->scope, sizeof(r->scope), "scope unterminated");
	if (!is_scope_text(r->scope))
		ps_fuzz_fail("accepted a scope with characters outside scope names");
	if (r->refresh_token &&
	    (r->refresh_token_len < 1 || r->refresh_token_len > PS_REFRESH_TOKEN_MAX ||
	     strlen(r->refresh_token) != r->refresh_token_len ||
	     !ps_fuzz_printable(r->refresh_token, r->refresh_token_len)))
		ps_fuzz_fail("accepted a refresh token that is not 1..max printable bytes");
	if (!r->refresh_token && r->refresh_token_len)
		ps_fuzz_fail("refresh_token_len without a refresh token");
}

/* How many strings (member names and values) anywhere in v contain needle. */
static int mentions(struct json_object *v, const char *needle)
{
	int n = 0;
	size_t i;

	switch (json_object_get_type(v)) {
	case json_type_string:
		return strstr(json_object_get_string(v), needle) != NULL;
	case json_type_array:
		for (i = 0; i < json_object_array_length(v); i++)
			n += mentions(json_object_array_get_idx(v, i), needle);
		return n;
	case json_type_object: {
		json_object_object_foreach(v, key, val)
		{
			n += strstr(key, needle) != NULL;
			n += mentions(val, needle);
		}
		return n;
	}
	default:
		return 0;
	}
}

/*
 * msg must not quote the body's access_token or refresh_token: checked when the body is JSON
 * (read leniently), the secret is long enough and without spaces, and no other string of the
 * body contains it (a message may quote those).
 */
static void check_not_quoted(const char *body, size_t len, const char *msg)
{
	static const char *const secrets[] = {"access_token", "refresh_token"};
	struct json_tokener *tok = json_tokener_new();
	struct json_object *root, *v;
	size_t i;

	if (!tok)
		abort();
	root = json_tokener_parse_ex(tok, body, (int)len);
	json_tokener_free(tok);
	if (!root)
		return;
	for (i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
		const char *s;

		if (!json_object_is_type(root, json_type_object) ||
		    !json_object_object_get_ex(root, secrets[i], &v) ||
		    !json_object_is_type(v, json_type_string))
			continue;
		s = json_object_get_string(v);
		if (strlen(s) >= SECRET_MIN && !strchr(s, ' ') && mentions(root, s) == 1 &&
		    strstr(msg, s))
			ps_fuzz_fail("a message quotes the token");
	}
	json_object_put(root);
}

static void parse_token(const char *body, size_t size)
{
	struct ps_token_response r;
	char err[PS_ERR_MAX];

	if (ps_token_response_parse(body, size, &r, err, sizeof(err)) == 0) {
		check_accepted(&r);
	} else {
		ps_fuzz_check_err(err, sizeof(err));
		check_not_quoted(body, size, err);
		if (!ps_fuzz_zeroed(&r, sizeof(r)))
			ps_fuzz_fail("a refused token response left data behind");
	}
	ps_token_response_clear(&r);
	if (!ps_fuzz_zeroed(&r, sizeof(r)))
		ps_fuzz_fail("ps_token_response_clear left data behind");
}

/* The describer with a status, content type and Retry-After picked by the input's length. */
static void describe_error(const char *body, size_t size)
{
	static const long statuses[] = {400, 401, 403, 404, 429, 500, 502, 503, 200, 302, 418, 0};
	static const char *const types[] = {"application/json", "", "text/html; charset=utf-8",
					    "\x01\x7f\xff; x"};
	long status = statuses[size % (sizeof(statuses) / sizeof(statuses[0]))];
	char msg[PS_ERR_MAX];
	int code;

	code = ps_oauth_error_describe(status, types[size % 4], body, size,
				       size % 3 ? -1 : (long)size, msg, sizeof(msg));
	if (code != PS_EXIT_CONFIG && code != PS_EXIT_NETWORK && code != PS_EXIT_REAUTH)
		ps_fuzz_fail("an error answer maps to an unexpected exit code");
	ps_fuzz_check_err(msg, sizeof(msg));
	/* the 400 answer is where RFC 6749 error codes are read */
	code = ps_oauth_error_describe(400, "application/json", body, size, -1, msg, sizeof(msg));
	if (code != PS_EXIT_CONFIG && code != PS_EXIT_NETWORK && code != PS_EXIT_REAUTH)
		ps_fuzz_fail("an error answer maps to an unexpected exit code");
	ps_fuzz_check_err(msg, sizeof(msg));
	check_not_quoted(body, size, msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *body = ps_fuzz_copy(data, size);

	parse_token(body, size);
	describe_error(body, size);
	ps_fuzz_free(body, size);
	return 0;
}
