/*
 * test_token_response.c: the token endpoint's answers. A good Spotify response parses; every
 * malformed, mistyped, missing, out-of-range or trailing-garbage answer is refused with a
 * one-line reason that never quotes the token; error answers map to advice and exit codes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "helper/oauth_error.h"
#include "helper/token_response.h"
#include "common/config.h"
#include "common/util.h"

/* A token that must never show up in an error message. */
#define TOKEN "BQDxSENTINELtokenVALUE-._~+/0123456789abcdef=="

/* Spotify's documented client credentials answer. */
#define GOOD "{\"access_token\":\"" TOKEN "\",\"token_type\":\"Bearer\",\"expires_in\":3600}"

static int parse(const char *body, size_t len, struct ps_token_response *out, char *err,
		 size_t errlen)
{
	err[0] = '\0';
	return ps_token_response_parse(body, len, out, err, errlen);
}

static void test_good_spotify_response(void **state)
{
	struct ps_token_response r;
	char err[PS_ERR_MAX];

	(void)state;
	assert_int_equal(parse(GOOD, strlen(GOOD), &r, err, sizeof(err)), 0);
	assert_string_equal(r.access_token, TOKEN);
	assert_int_equal(r.access_token_len, strlen(TOKEN));
	assert_string_equal(r.token_type, "Bearer");
	assert_int_equal(r.expires_in, 3600);
	assert_string_equal(r.scope, "");
	assert_null(r.refresh_token);
	ps_token_response_clear(&r);
	assert_null(r.access_token);
	assert_int_equal(r.access_token_len, 0);
}

static void test_good_full_response(void **state)
{
	static const char body[] =
		" {\"access_token\":\"" TOKEN "\",\"token_type\":\"bearer\",\"expires_in\":1,"
		"\"scope\":\"user-read-email  playlist-read-private\",\"refresh_token\":\"AQ r~!\","
		"\"unknown\":{\"nested\":[1,2,{\"x\":null}]}}\r\n\t ";
	struct ps_token_response r;
	char err[PS_ERR_MAX];

	(void)state;
	assert_int_equal(parse(body, strlen(body), &r, err, sizeof(err)), 0);
	assert_string_equal(r.token_type, "bearer");
	assert_int_equal(r.expires_in, 1);
	assert_string_equal(r.scope, "user-read-email  playlist-read-private");
	assert_string_equal(r.refresh_token, "AQ r~!");
	assert_int_equal(r.refresh_token_len, 6);
	ps_token_response_clear(&r);
	assert_null(r.refresh_token);
}

static void test_limits_accepted(void **state)
{
	static const char head[] =
		"{\"token_type\":\"BEARER\",\"expires_in\":604800,\"access_token\":\"";
	char body[8192], err[PS_ERR_MAX];
	struct ps_token_response r;
	size_t n = strlen(head);

	(void)state;
	memcpy(body, head, n);
	memset(body + n, 'a', 4096);
	memcpy(body + n + 4096, "\"}", 3);
	assert_int_equal(parse(body, strlen(body), &r, err, sizeof(err)), 0);
	assert_int_equal(r.access_token_len, 4096);
	assert_int_equal(r.expires_in, 604800);
	ps_token_response_clear(&r);
}

struct bad_case {
	const char *name;
	const char *body;
	size_t len;	  /* 0: strlen(body) */
	const char *want; /* substring of the message */
};

#define T_(x)  "\"access_token\":\"" TOKEN "\",\"token_type\":\"Bearer\"" x
#define OBJ(x) "{" T_(x) "}"

/* RFC 6749 5.1: expires_in is RECOMMENDED; some servers send it as a string; over a week is capped */
static void test_expires_in_forms(void **state)
{
	static const struct {
		const char *body;
		long want;
		bool capped;
	} cases[] = {
		{OBJ(""), 0, false},
		{OBJ(",\"expires_in\":\"3600\""), 3600, false},
		{OBJ(",\"expires_in\":604800"), 604800, false},
		{OBJ(",\"expires_in\":604801"), 604800, true},
		{OBJ(",\"expires_in\":99999999999"), 604800, true},
		/* json-c reads it as INT64_MAX */
		{OBJ(",\"expires_in\":99999999999999999999999"), 604800, true},
		{OBJ(",\"expires_in\":\"9999999999\""), 604800, true},
	};
	struct ps_token_response r;
	char err[PS_ERR_MAX];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (parse(cases[i].body, strlen(cases[i].body), &r, err, sizeof(err)) != 0)
			fail_msg("%s: %s", cases[i].body, err);
		assert_int_equal(r.expires_in, cases[i].want);
		assert_int_equal(r.expires_capped, cases[i].capped);
		ps_token_response_clear(&r);
	}
}

static const struct bad_case bad_cases[] = {
	{"empty", "", 0, "empty"},
	{"not json", "access_token=" TOKEN, 0, "not valid JSON"},
	{"html", "<html><body>Oops</body></html>", 0, "not valid JSON"},
	{"truncated", "{\"access_token\": \"" TOKEN "\", ", 0, "truncated"},
	{"trailing garbage", OBJ(",\"expires_in\":3600") "x", 0, "data after"},
	{"two objects", OBJ(",\"expires_in\":3600") OBJ(",\"expires_in\":3600"), 0, "data after"},
	{"trailing comma", OBJ(",\"expires_in\":3600,"), 0, "not valid JSON"},
	{"single quotes", "{'access_token':'abc','token_type':'Bearer','expires_in':3600}", 0,
	 "not valid JSON"},
	{"comment", "{/* c */" T_(",\"expires_in\":3600") "}", 0, "not valid JSON"},
	{"array", "[" OBJ(",\"expires_in\":3600") "]", 0, "not a JSON object"},
	{"string", "\"" TOKEN "\"", 0, "not a JSON object"},
	{"number", "3600 ", 0, "not a JSON object"},
	{"null", "null\n", 0, "not a JSON object"},
	{"bare null", "null", 0, ""},
	{"bare number", "3600", 0, ""},
	{"raw NUL", "{\"access_token\":\"BQabc\0def\",\"token_type\":\"Bearer\",\"expires_in\":1}",
	 64, "NUL"},
	{"NUL after object", OBJ(",\"expires_in\":3600") "\0", sizeof(OBJ(",\"expires_in\":3600")),
	 "NUL"},
	{"escaped NUL in token",
	 "{\"access_token\":\"BQabc\\u0000def\",\"token_type\":\"Bearer\","
	 "\"expires_in\":1}",
	 0, "RFC 6750"},
	{"non UTF-8",
	 "{\"access_token\":\"BQabc\xff\xfe"
	 "def\",\"token_type\":\"Bearer\","
	 "\"expires_in\":1}",
	 0, "UTF-8"},
	{"deep nesting", "{\"a\":[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]," T_(",\"expires_in\":1") "}", 0,
	 "nests too deeply"},
	{"deep array",
	 "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
	 "]]]]]]]]]]]]]]]]]]]",
	 0, "nests too deeply"},
	{"no access_token", "{\"token_type\":\"Bearer\",\"expires_in\":3600}", 0,
	 "has no access_token"},
	{"no token_type", "{\"access_token\":\"" TOKEN "\",\"expires_in\":3600}", 0,
	 "has no token_type"},
	{"access_token number",
	 "{\"access_token\":12345,\"token_type\":\"Bearer\",\"expires_in\":1}", 0,
	 "access_token is an integer, not a string"},
	{"access_token null", "{\"access_token\":null,\"token_type\":\"Bearer\",\"expires_in\":1}",
	 0, "access_token is null"},
	{"access_token object",
	 "{\"access_token\":{\"t\":\"" TOKEN "\"},\"token_type\":\"Bearer\","
	 "\"expires_in\":1}",
	 0, "access_token is an object"},
	{"empty token", "{\"access_token\":\"\",\"token_type\":\"Bearer\",\"expires_in\":1}", 0,
	 "access_token is empty"},
	{"token with space",
	 "{\"access_token\":\"BQ abc\",\"token_type\":\"Bearer\","
	 "\"expires_in\":1}",
	 0, "RFC 6750"},
	{"token with quote",
	 "{\"access_token\":\"BQ\\\"abc\",\"token_type\":\"Bearer\","
	 "\"expires_in\":1}",
	 0, "RFC 6750"},
	{"token with newline",
	 "{\"access_token\":\"BQ\\nabc\",\"token_type\":\"Bearer\","
	 "\"expires_in\":1}",
	 0, "RFC 6750"},
	{"token padding inside",
	 "{\"access_token\":\"BQ=abc\",\"token_type\":\"Bearer\","
	 "\"expires_in\":1}",
	 0, "RFC 6750"},
	{"token only padding",
	 "{\"access_token\":\"==\",\"token_type\":\"Bearer\","
	 "\"expires_in\":1}",
	 0, "RFC 6750"},
	{"token_type mac",
	 "{\"access_token\":\"" TOKEN "\",\"token_type\":\"mac\","
	 "\"expires_in\":1}",
	 0, "token_type is 'mac', not Bearer"},
	{"token_type bearerx",
	 "{\"access_token\":\"" TOKEN "\",\"token_type\":\"bearerx\","
	 "\"expires_in\":1}",
	 0, "not Bearer"},
	{"token_type number", "{\"access_token\":\"" TOKEN "\",\"token_type\":1,\"expires_in\":1}",
	 0, "token_type is an integer"},
	{"expires_in string", OBJ(",\"expires_in\":\"36a0\""), 0,
	 "expires_in is a string, not a number of seconds"},
	{"expires_in empty string", OBJ(",\"expires_in\":\"\""), 0,
	 "expires_in is a string, not a number of seconds"},
	{"expires_in string too long", OBJ(",\"expires_in\":\"12345678901\""), 0,
	 "expires_in is a string, not a number of seconds"},
	{"expires_in double", OBJ(",\"expires_in\":3600.0"), 0, "expires_in is a fractional"},
	{"expires_in exponent", OBJ(",\"expires_in\":1e3"), 0, "expires_in is a fractional"},
	{"expires_in boolean", OBJ(",\"expires_in\":true"), 0, "expires_in is a boolean"},
	{"expires_in null", OBJ(",\"expires_in\":null"), 0, "expires_in is null"},
	{"expires_in zero", OBJ(",\"expires_in\":0"), 0, "expires_in is 0 s, less than 1"},
	{"expires_in zero string", OBJ(",\"expires_in\":\"0\""), 0,
	 "expires_in is 0 s, less than 1"},
	{"expires_in negative", OBJ(",\"expires_in\":-5"), 0, "expires_in is -5 s, less than 1"},
	{"scope number", OBJ(",\"expires_in\":1,\"scope\":7"), 0, "scope is an integer"},
	{"scope control", OBJ(",\"expires_in\":1,\"scope\":\"a\\tb\""), 0, "scope has characters"},
	{"scope quote", OBJ(",\"expires_in\":1,\"scope\":\"a\\\"b\""), 0, "scope has characters"},
	{"refresh number", OBJ(",\"expires_in\":1,\"refresh_token\":5"), 0,
	 "refresh_token is an integer"},
	{"refresh empty", OBJ(",\"expires_in\":1,\"refresh_token\":\"\""), 0,
	 "refresh_token is empty"},
	{"refresh control", OBJ(",\"expires_in\":1,\"refresh_token\":\"a\\u0001\""), 0,
	 "refresh_token is empty"},
};

/* Every bad body is refused, with the expected reason, one line, and without the token. */
static void test_bad_responses(void **state)
{
	struct ps_token_response r;
	char err[PS_ERR_MAX];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *c = &bad_cases[i];
		size_t len = c->len ? c->len : strlen(c->body);

		memset(&r, 0x5a, sizeof(r));
		if (parse(c->body, len, &r, err, sizeof(err)) != -1)
			fail_msg("case '%s': accepted", c->name);
		if (!strstr(err, c->want))
			fail_msg("case '%s': message '%s' lacks '%s'", c->name, err, c->want);
		if (!err[0] || strchr(err, '\n') || strstr(err, "SENTINEL"))
			fail_msg("case '%s': bad message '%s'", c->name, err);
		if (r.access_token || r.refresh_token)
			fail_msg("case '%s': a token was kept after a refusal", c->name);
	}
}

static void test_too_long_fields(void **state)
{
	char *body = malloc(16384), err[PS_ERR_MAX];
	struct ps_token_response r;
	int n;

	(void)state;
	assert_non_null(body);
	n = snprintf(body, 16384,
		     "{\"access_token\":\"%0*d\",\"token_type\":\"Bearer\",\"expires_in\":1}", 4097,
		     0);
	assert_int_equal(parse(body, (size_t)n, &r, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "access_token is 4097 bytes, longer than 4096"));

	n = snprintf(body, 16384, OBJ(",\"expires_in\":1,\"scope\":\"%0*d\""), PS_SCOPES_MAX, 0);
	assert_int_equal(parse(body, (size_t)n, &r, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "scope is 1024 bytes, longer than 1023"));

	n = snprintf(body, 16384, OBJ(",\"expires_in\":1,\"refresh_token\":\"%0*d\""), 4097, 0);
	assert_int_equal(parse(body, (size_t)n, &r, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "refresh_token"));
	free(body);
}

static void test_oversized_body(void **state)
{
	size_t len = 64 * 1024 + 1;
	char *body = malloc(len), err[PS_ERR_MAX];
	struct ps_token_response r;

	(void)state;
	assert_non_null(body);
	memset(body, ' ', len);
	memcpy(body, GOOD, strlen(GOOD));
	assert_int_equal(parse(body, len, &r, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "larger than 64 KiB"));
	free(body);
}

/* A short message buffer truncates, never overflows. */
static void test_short_error_buffer(void **state)
{
	struct ps_token_response r;
	char err[8];

	(void)state;
	assert_int_equal(parse("[]", 2, &r, err, sizeof(err)), -1);
	assert_int_equal(strlen(err), sizeof(err) - 1);
}

struct error_case {
	long status;
	const char *content_type;
	const char *body;
	long retry_after;
	int exit_code;
	const char *want;
};

#define OAUTH(code, desc) "{\"error\":\"" code "\",\"error_description\":\"" desc "\"}"

static const struct error_case error_cases[] = {
	{400, "application/json", OAUTH("invalid_client", "Invalid client secret"), -1,
	 PS_EXIT_CONFIG,
	 "token endpoint refused the client (invalid_client: Invalid client secret): check "
	 "client_id and the client secret file"},
	{401, "application/json", OAUTH("invalid_client", "Invalid client"), -1, PS_EXIT_CONFIG,
	 "check client_id and the client secret file"},
	{400, "application/json", OAUTH("invalid_grant", "Invalid refresh token"), -1,
	 PS_EXIT_REAUTH, "(invalid_grant: Invalid refresh token): re-authorize"},
	{400, "application/json", OAUTH("invalid_request", "code must be supplied"), -1,
	 PS_EXIT_CONFIG, "(invalid_request: code must be supplied)"},
	{400, "application/json", OAUTH("unauthorized_client", ""), -1, PS_EXIT_CONFIG,
	 "(unauthorized_client): enable the grant type for this app in the Spotify developer "
	 "dashboard"},
	{400, "application/json", OAUTH("unsupported_grant_type", "grant_type missing"), -1,
	 PS_EXIT_CONFIG, "unsupported_grant_type"},
	{400, "application/json", OAUTH("invalid_scope", "Invalid scope"), -1, PS_EXIT_CONFIG,
	 "(invalid_scope: Invalid scope): check scopes"},
	{400, "application/json; charset=utf-8", "{\"error\":\"weird_error\"}", -1, PS_EXIT_NETWORK,
	 "token endpoint error (HTTP 400, weird_error)"},
	{400, "", "{\"error\":\"invalid_client\"}\n", -1, PS_EXIT_CONFIG, "(invalid_client)"},
	{429, "application/json",
	 "{\"error\":{\"status\":429,\"message\":\"API rate limit "
	 "exceeded\"}}",
	 30, PS_EXIT_NETWORK,
	 "accounts server is rate limiting (HTTP 429, API rate limit exceeded): retry after 30 s"},
	{429, "text/plain", "slow down", -1, PS_EXIT_NETWORK,
	 "rate limiting (HTTP 429): try again later"},
	{500, "application/json", OAUTH("server_error", "Unexpected status: 500"), -1,
	 PS_EXIT_NETWORK,
	 "accounts server error (HTTP 500, server_error: Unexpected status: 500): "
	 "try again later"},
	{502, "text/html", "<html>502 Bad Gateway</html>", -1, PS_EXIT_NETWORK,
	 "accounts server error (HTTP 502): try again later"},
	{503, "text/html", "<html>503</html>", 120, PS_EXIT_NETWORK, "retry after 120 s"},
	{302, "text/html", "<html>302</html>", -1, PS_EXIT_CONFIG,
	 "token endpoint answered with a redirect (HTTP 302): check token_url; redirects are not "
	 "followed"},
	{301, "", NULL, -1, PS_EXIT_CONFIG, "redirect (HTTP 301)"},
	{404, "text/html", "<html>Not found</html>", -1, PS_EXIT_CONFIG,
	 "unexpected answer (HTTP 404, text/html): check token_url"},
	{404, "application/json", "{\"error\":{\"status\":404,\"message\":\"Service not found\"}}",
	 -1, PS_EXIT_CONFIG, "unexpected answer (HTTP 404, application/json, Service not found)"},
	{401, "", NULL, -1, PS_EXIT_CONFIG,
	 "token endpoint refused access (HTTP 401, no content type) without an OAuth error"},
	{403, "text/html; charset=UTF-8", "<html>Forbidden</html>", -1, PS_EXIT_CONFIG,
	 "(HTTP 403, text/html) without an OAuth error"},
	{405, "text/plain", "nope", -1, PS_EXIT_CONFIG, "unexpected answer (HTTP 405, text/plain)"},
	{204, "", "", -1, PS_EXIT_NETWORK, "unexpected answer (HTTP 204, no content type)"},
	{200, "text/html", "<html>Something went wrong</html>", -1, PS_EXIT_NETWORK,
	 "unexpected answer (HTTP 200, text/html)"},
	/* server text is cut to printable ASCII and a bounded length */
	{400, "text/\x01html", OAUTH("invalid_client", "bad\\nline\\u0007 \\u00e9"), -1,
	 PS_EXIT_CONFIG,
	 "(invalid_client: bad?line? ?"
	 "?): check client_id"},
	/* a body that is JSON but not strict JSON is not trusted for its error code */
	{400, "application/json", "{\"error\":\"invalid_grant\"} trailing", -1, PS_EXIT_CONFIG,
	 "unexpected answer (HTTP 400, application/json)"},
	{400, "application/json", "{\"error\":\"invalid_grant\",\"x\":[[[[[[[[[[[[]]]]]]]]]]]]}",
	 -1, PS_EXIT_CONFIG, "unexpected answer (HTTP 400"},
};

static void test_oauth_errors(void **state)
{
	char msg[PS_ERR_MAX];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]); i++) {
		const struct error_case *c = &error_cases[i];
		size_t len = c->body ? strlen(c->body) : 0;
		int rc;

		msg[0] = '\0';
		rc = ps_oauth_error_describe(c->status, c->content_type, c->body, len,
					     c->retry_after, msg, sizeof(msg));
		if (rc != c->exit_code)
			fail_msg("HTTP %ld case %zu: exit %d, want %d (%s)", c->status, i, rc,
				 c->exit_code, msg);
		if (!strstr(msg, c->want))
			fail_msg("HTTP %ld case %zu: message '%s' lacks '%s'", c->status, i, msg,
				 c->want);
		if (strchr(msg, '\n'))
			fail_msg("HTTP %ld case %zu: message has a newline", c->status, i);
	}
}

static void test_oauth_error_text_bounded(void **state)
{
	char body[2048], msg[PS_ERR_MAX];
	int n;

	(void)state;
	n = snprintf(body, sizeof(body),
		     "{\"error\":\"invalid_client\",\"error_description\":\"%0*d\"}", 1000, 0);
	assert_int_equal(ps_oauth_error_describe(400, "application/json", body, (size_t)n, -1, msg,
						 sizeof(msg)),
			 PS_EXIT_CONFIG);
	assert_true(strlen(msg) < 300);
	assert_non_null(strstr(msg, "check client_id"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_spotify_response),
		cmocka_unit_test(test_good_full_response),
		cmocka_unit_test(test_limits_accepted),
		cmocka_unit_test(test_expires_in_forms),
		cmocka_unit_test(test_bad_responses),
		cmocka_unit_test(test_too_long_fields),
		cmocka_unit_test(test_oversized_body),
		cmocka_unit_test(test_short_error_buffer),
		cmocka_unit_test(test_oauth_errors),
		cmocka_unit_test(test_oauth_error_text_bounded),
	};

	return cmocka_run_group_tests_name("token_response", tests, NULL, NULL);
}
