/*
 * token_response.c: strict parse of a successful token endpoint answer (see token_response.h).
 * Owns what counts as a usable token: JSON syntax, types, lengths, characters and ranges.
 * Messages name the member and the problem, never the token.
 *
 * json-c keeps its own copies of the parsed text (the tokener's buffer, the string objects).
 * The string objects holding tokens are zeroed before they are released (scrub_secrets); the
 * tokener's internal buffer is freed unzeroed, which json-c's API does not let us avoid. The
 * helper is non-dumpable and exits right after, which bounds that exposure.
 */
#include <config.h> /* autoconf; "config.h" could be taken for common/config.h */

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

#include "helper/token_response.h"
#include "keyring/keys.h"
#include "common/util.h"

#define PS_TOKEN_RESPONSE_MAX (64 * 1024)
#include "helper/store.h" /* PS_REFRESH_TOKEN_MAX */
#define HINT "check token_url points at the token endpoint"

/* Syntax errors, each with its one-line reason. */
static const char *tokener_reason(enum json_tokener_error jerr)
{
	switch (jerr) {
	case json_tokener_error_depth:
		return "token response nests too deeply (more than 8 levels): " HINT;
	case json_tokener_continue:
		return "token response is truncated JSON: " HINT;
	case json_tokener_error_parse_utf8_string:
		return "token response is not valid UTF-8: " HINT;
	default:
		return "token response is not valid JSON: " HINT;
	}
}

static bool json_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/*
 * Parse body as exactly one JSON object: strict syntax, UTF-8, depth limit, nothing but
 * whitespace after it. 0 with *root set, or -1 with a reason.
 */
static int json_load(const char *body, size_t len, struct json_object **root, char *err,
		     size_t errlen)
{
	struct json_tokener *tok;
	struct json_object *obj;
	enum json_tokener_error jerr;
	size_t end;

	*root = NULL;
	if (len == 0) {
		snprintf(err, errlen, "token response is empty: " HINT);
		return -1;
	}
	if (len > PS_TOKEN_RESPONSE_MAX) {
		snprintf(err, errlen, "token response is larger than 64 KiB: " HINT);
		return -1;
	}
	if (memchr(body, '\0', len)) {
		snprintf(err, errlen, "token response contains a NUL byte: " HINT);
		return -1;
	}
	tok = json_tokener_new_ex(PS_JSON_DEPTH);
	if (!tok) {
		snprintf(err, errlen, "cannot parse the token response (out of memory)");
		return -1;
	}
	/* trailing bytes are checked below, so that they get their own message */
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS |
					    JSON_TOKENER_VALIDATE_UTF8);
	obj = json_tokener_parse_ex(tok, body, (int)len);
	jerr = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	while (jerr == json_tokener_success && end < len && json_space(body[end]))
		end++;
	if (jerr != json_tokener_success)
		snprintf(err, errlen, "%s", tokener_reason(jerr));
	else if (end < len)
		snprintf(err, errlen, "token response has data after the JSON object: " HINT);
	else if (!json_object_is_type(obj, json_type_object))
		snprintf(err, errlen, "token response is not a JSON object: " HINT);
	else {
		*root = obj;
		return 0;
	}
	json_object_put(obj);
	return -1;
}

/* A JSON type as a reader would say it. */
static const char *type_name(struct json_object *v)
{
	switch (json_object_get_type(v)) {
	case json_type_null:
		return "null";
	case json_type_boolean:
		return "a boolean";
	case json_type_double:
		return "a fractional number";
	case json_type_int:
		return "an integer";
	case json_type_object:
		return "an object";
	case json_type_array:
		return "an array";
	case json_type_string:
		return "a string";
	}
	return "unknown";
}

/*
 * Look up member name of JSON type want. 0 with *v set, 1 when absent (with a reason in err, for
 * callers that require it), -1 when present with the wrong type.
 */
static int member(struct json_object *root, const char *name, enum json_type want,
		  struct json_object **v, char *err, size_t errlen)
{
	if (!json_object_object_get_ex(root, name, v)) {
		snprintf(err, errlen, "token response has no %s: " HINT, name);
		return 1;
	}
	if (!json_object_is_type(*v, want)) {
		snprintf(err, errlen, "token response %s is %s, not %s: " HINT, name, type_name(*v),
			 want == json_type_int ? "an integer" : "a string");
		return -1;
	}
	return 0;
}

/* RFC 6749 A.4: scope tokens of NQCHAR (%x21 / %x23-5B / %x5D-7E) separated by spaces. */
static bool is_scope_text(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c != ' ' && (c < 0x21 || c > 0x7e || c == '"' || c == '\\'))
			return false;
	}
	return true;
}

/* RFC 6749 A.17: refresh-token = 1*VSCHAR (%x20-7E). */
static bool is_vschar_text(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			return false;
	return len > 0;
}

/* A NUL-terminated heap copy, zeroed by ps_token_response_clear. */
static char *secret_dup(const char *s, size_t len)
{
	char *p = malloc(len + 1);

	if (p) {
		memcpy(p, s, len);
		p[len] = '\0';
	}
	return p;
}

static int take_access_token(struct json_object *root, struct ps_token_response *out, char *err,
			     size_t errlen)
{
	struct json_object *v;
	const char *s;
	size_t len;

	if (member(root, "access_token", json_type_string, &v, err, errlen) != 0)
		return -1;
	s = json_object_get_string(v);
	len = (size_t)json_object_get_string_len(v);
	if (len == 0) {
		snprintf(err, errlen, "token response access_token is empty: " HINT);
		return -1;
	}
	if (len > PS_TOKEN_MAX) {
		snprintf(err, errlen,
			 "token response access_token is %zu bytes, longer than %d: " HINT, len,
			 PS_TOKEN_MAX);
		return -1;
	}
	if (!ps_b64token_valid(s, len)) {
		snprintf(err, errlen,
			 "token response access_token has characters outside the "
			 "RFC 6750 token alphabet: " HINT);
		return -1;
	}
	out->access_token = secret_dup(s, len);
	if (!out->access_token) {
		snprintf(err, errlen, "cannot keep the access token (out of memory)");
		return -1;
	}
	out->access_token_len = len;
	return 0;
}

static int take_token_type(struct json_object *root, struct ps_token_response *out, char *err,
			   size_t errlen)
{
	struct json_object *v;
	const char *s;
	size_t len;
	char shown[24];

	if (member(root, "token_type", json_type_string, &v, err, errlen) != 0)
		return -1;
	s = json_object_get_string(v);
	len = (size_t)json_object_get_string_len(v);
	if (len != 6 || strncasecmp(s, "bearer", 6) != 0) {
		ps_sanitize_text(shown, sizeof(shown), s, len);
		snprintf(err, errlen,
			 "token response token_type is '%s', not Bearer: pam_spotify "
			 "handles bearer tokens only; " HINT,
			 shown);
		return -1;
	}
	memcpy(out->token_type, s, len + 1);
	return 0;
}

/*
 * RFC 6749 5.1 makes expires_in RECOMMENDED: absent, it is 0 (the caller takes its default). An
 * integer, or a string of up to 10 digits (some servers send "3600"); over a week, a week.
 */
static int take_expires_in(struct json_object *root, struct ps_token_response *out, char *err,
			   size_t errlen)
{
	struct json_object *v;
	const char *s;
	int64_t n;
	size_t len;

	if (!json_object_object_get_ex(root, "expires_in", &v))
		return 0;
	if (json_object_is_type(v, json_type_string)) {
		s = json_object_get_string(v);
		len = (size_t)json_object_get_string_len(v);
		if (len == 0 || len > 10 || strspn(s, "0123456789") != len) {
			snprintf(err, errlen,
				 "token response expires_in is a string, not a number of "
				 "seconds: " HINT);
			return -1;
		}
		n = strtoll(s, NULL, 10);
	} else if (member(root, "expires_in", json_type_int, &v, err, errlen) != 0) {
		return -1;
	} else {
		n = json_object_get_int64(v);
	}
	if (n < PS_EXPIRES_MIN) {
		snprintf(err, errlen, "token response expires_in is %lld s, less than %ld: " HINT,
			 (long long)n, PS_EXPIRES_MIN);
		return -1;
	}
	out->expires_capped = n > PS_EXPIRES_MAX;
	out->expires_in = out->expires_capped ? PS_EXPIRES_MAX : (long)n;
	return 0;
}

/* scope is optional; when present it must be a string of scope tokens that fits. */
static int take_scope(struct json_object *root, struct ps_token_response *out, char *err,
		      size_t errlen)
{
	struct json_object *v;
	const char *s;
	size_t len;
	int rc = member(root, "scope", json_type_string, &v, err, errlen);

	if (rc != 0)
		return rc > 0 ? 0 : -1;
	s = json_object_get_string(v);
	len = (size_t)json_object_get_string_len(v);
	if (len >= sizeof(out->scope)) {
		snprintf(err, errlen, "token response scope is %zu bytes, longer than %zu: " HINT,
			 len, sizeof(out->scope) - 1);
		return -1;
	}
	if (!is_scope_text(s, len)) {
		snprintf(err, errlen,
			 "token response scope has characters outside RFC 6749 scope "
			 "names: " HINT);
		return -1;
	}
	memcpy(out->scope, s, len + 1);
	return 0;
}

/* refresh_token is optional (client credentials has none; Spotify may not rotate it). */
static int take_refresh_token(struct json_object *root, struct ps_token_response *out, char *err,
			      size_t errlen)
{
	struct json_object *v;
	const char *s;
	size_t len;
	int rc = member(root, "refresh_token", json_type_string, &v, err, errlen);

	if (rc != 0)
		return rc > 0 ? 0 : -1;
	s = json_object_get_string(v);
	len = (size_t)json_object_get_string_len(v);
	if (len > PS_REFRESH_TOKEN_MAX || !is_vschar_text(s, len)) {
		snprintf(err, errlen,
			 "token response refresh_token is empty, longer than %d bytes "
			 "or not printable ASCII: " HINT,
			 PS_REFRESH_TOKEN_MAX);
		return -1;
	}
	out->refresh_token = secret_dup(s, len);
	if (!out->refresh_token) {
		snprintf(err, errlen, "cannot keep the refresh token (out of memory)");
		return -1;
	}
	out->refresh_token_len = len;
	return 0;
}

/*
 * Zero json-c's copy of a token before the object is released. The string object is ours (the
 * parser made it) and writable; json-c only hands out a const pointer to it.
 */
static void scrub_string(struct json_object *root, const char *name)
{
	struct json_object *v;

	if (json_object_object_get_ex(root, name, &v) && json_object_is_type(v, json_type_string))
		explicit_bzero((char *)json_object_get_string(v),
			       (size_t)json_object_get_string_len(v));
}

static void scrub_secrets(struct json_object *root)
{
	scrub_string(root, "access_token");
	scrub_string(root, "refresh_token");
}

int ps_token_response_parse(const char *body, size_t len, struct ps_token_response *out, char *err,
			    size_t errlen)
{
	struct json_object *root;
	int rc;

	memset(out, 0, sizeof(*out));
	if (json_load(body, len, &root, err, errlen) < 0)
		return -1;
	rc = take_access_token(root, out, err, errlen);
	if (rc == 0)
		rc = take_token_type(root, out, err, errlen);
	if (rc == 0)
		rc = take_expires_in(root, out, err, errlen);
	if (rc == 0)
		rc = take_scope(root, out, err, errlen);
	if (rc == 0)
		rc = take_refresh_token(root, out, err, errlen);
	scrub_secrets(root);
	json_object_put(root);
	if (rc < 0)
		ps_token_response_clear(out);
	return rc < 0 ? -1 : 0;
}

void ps_token_response_clear(struct ps_token_response *resp)
{
	ps_free_secret(resp->access_token, resp->access_token_len);
	ps_free_secret(resp->refresh_token, resp->refresh_token_len);
	explicit_bzero(resp, sizeof(*resp));
}
