/*
 * test_token_info.c: the spotify:token_info payload round-trips, escapes what JSON needs, and the
 * parser refuses everything but exactly the object the serializer writes.
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "keyring/token_info.h"

#define GOOD                                                                                       \
	"{\"token_type\":\"Bearer\",\"scope\":\"user-read-private user-read-email\","              \
	"\"expires_at\":1767225600,\"flow\":\"client_credentials\",\"client_id\":\"abc123\"}"

/* Copy a test string into a fixed field (strcpy is banned even here). */
#define SET(field, str) snprintf((field), sizeof(field), "%s", (str))

static void fill(struct ps_token_info *info)
{
	memset(info, 0, sizeof(*info));
	SET(info->token_type, "Bearer");
	SET(info->scope, "user-read-private user-read-email");
	info->expires_at = 1767225600;
	SET(info->flow, "client_credentials");
	SET(info->client_id, "abc123");
}

static void assert_info_equal(const struct ps_token_info *a, const struct ps_token_info *b)
{
	assert_string_equal(a->token_type, b->token_type);
	assert_string_equal(a->scope, b->scope);
	assert_true(a->expires_at == b->expires_at);
	assert_string_equal(a->flow, b->flow);
	assert_string_equal(a->client_id, b->client_id);
}

static int parse(struct ps_token_info *info, const char *s)
{
	return ps_token_info_parse(info, s, strlen(s));
}

static void test_format_is_the_documented_object(void **state)
{
	struct ps_token_info info;
	char buf[PS_TOKEN_INFO_MAX];

	(void)state;
	fill(&info);
	assert_int_equal(ps_token_info_format(&info, buf, sizeof(buf)), strlen(GOOD));
	assert_string_equal(buf, GOOD);
}

static void test_round_trip(void **state)
{
	struct ps_token_info in, out;
	char buf[PS_TOKEN_INFO_MAX];
	int n;

	(void)state;
	fill(&in);
	n = ps_token_info_format(&in, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(ps_token_info_parse(&out, buf, (size_t)n), 0);
	assert_info_equal(&in, &out);
}

static void test_round_trip_escapes(void **state)
{
	struct ps_token_info in, out;
	char buf[PS_TOKEN_INFO_MAX];
	int n;

	(void)state;
	fill(&in);
	SET(in.scope, "a\"b\\c\nd\te\x01\x1f\x7f/\xc3\xa9");
	n = ps_token_info_format(&in, buf, sizeof(buf));
	assert_true(n > 0);
	assert_non_null(strstr(buf, "\"scope\":\"a\\\"b\\\\c\\u000ad\\u0009e\\u0001\\u001f\\u007f/"
				    "\xc3\xa9\""));
	assert_int_equal(ps_token_info_parse(&out, buf, (size_t)n), 0);
	assert_info_equal(&in, &out);
}

static void test_round_trip_longest_fields(void **state)
{
	struct ps_token_info in, out;
	char buf[PS_TOKEN_INFO_MAX];
	int n;

	(void)state;
	fill(&in);
	memset(in.scope, 's', sizeof(in.scope) - 1);
	memset(in.client_id, 'c', sizeof(in.client_id) - 1);
	memset(in.token_type, 't', sizeof(in.token_type) - 1);
	memset(in.flow, 'f', sizeof(in.flow) - 1);
	in.expires_at = 253402300799LL;
	n = ps_token_info_format(&in, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(ps_token_info_parse(&out, buf, (size_t)n), 0);
	assert_info_equal(&in, &out);
}

static void test_format_refuses_what_does_not_fit(void **state)
{
	struct ps_token_info info;
	char buf[PS_TOKEN_INFO_MAX];

	(void)state;
	fill(&info);
	assert_int_equal(ps_token_info_format(&info, buf, strlen(GOOD)), -1);
	assert_int_equal(ps_token_info_format(&info, buf, strlen(GOOD) + 1), (int)strlen(GOOD));
	assert_int_equal(ps_token_info_format(&info, buf, 0), -1);
	info.expires_at = -1;
	assert_int_equal(ps_token_info_format(&info, buf, sizeof(buf)), -1);
	fill(&info);
	memset(info.scope, 'x', sizeof(info.scope)); /* not terminated */
	assert_int_equal(ps_token_info_format(&info, buf, sizeof(buf)), -1);
}

static void test_parse_any_order_and_whitespace(void **state)
{
	struct ps_token_info info;

	(void)state;
	assert_int_equal(parse(&info,
			       " {\n\t\"client_id\" : \"abc123\",\"flow\":\"pkce\" ,"
			       "\"expires_at\": 0 ,\"scope\":\"\",\"token_type\":\"Bearer\"}\r\n"),
			 0);
	assert_string_equal(info.client_id, "abc123");
	assert_string_equal(info.flow, "pkce");
	assert_int_equal(info.expires_at, 0);
	assert_string_equal(info.scope, "");
	assert_string_equal(info.token_type, "Bearer");
}

static void test_parse_escapes(void **state)
{
	struct ps_token_info info;

	(void)state;
	assert_int_equal(parse(&info, "{\"token_type\":\"Bearer\",\"scope\":\"\\\"\\\\\\/\\b\\f\\n"
				      "\\r\\t\\u00e9\\u20ac\\ud83c\\udfb5\",\"expires_at\":1,"
				      "\"flow\":\"x\",\"client_id\":\"y\"}"),
			 0);
	assert_string_equal(info.scope, "\"\\/\b\f\n\r\t\xc3\xa9\xe2\x82\xac\xf0\x9f\x8e\xb5");
}

/* Every way the input can be wrong; each must be refused and leave info zeroed. */
static const char *const malformed[] = {
	"",
	" ",
	"null",
	"[]",
	"{}",
	"{",
	"}",
	GOOD "x",
	GOOD "{}",
	GOOD ",",
	"x" GOOD,
	/* a member missing */
	"{\"token_type\":\"Bearer\",\"scope\":\"\",\"expires_at\":1,\"flow\":\"x\"}",
	"{\"scope\":\"\",\"expires_at\":1,\"flow\":\"x\",\"client_id\":\"y\"}",
	/* a member twice */
	"{\"token_type\":\"a\",\"token_type\":\"a\",\"scope\":\"\",\"expires_at\":1,\"flow\":\"x\","
	"\"client_id\":\"y\"}",
	/* an unknown member, or a known one with the wrong case */
	"{\"token_type\":\"a\",\"scope\":\"\",\"expires_at\":1,\"flow\":\"x\",\"client_id\":\"y\","
	"\"refresh_token\":\"z\"}",
	"{\"Token_type\":\"a\",\"scope\":\"\",\"expires_at\":1,\"flow\":\"x\",\"client_id\":\"y\"}",
	"{\"token_type_and_more\":\"a\",\"scope\":\"\",\"expires_at\":1,\"flow\":\"x\","
	"\"client_id\":\"y\"}",
	/* separators */
	"{\"token_type\":\"a\" \"scope\":\"\",\"expires_at\":1,\"flow\":\"x\",\"client_id\":\"y\"}",
	"{\"token_type\" \"a\",\"scope\":\"\",\"expires_at\":1,\"flow\":\"x\",\"client_id\":\"y\"}",
	"{\"token_type\":\"a\",,\"scope\":\"\",\"expires_at\":1,\"flow\":\"x\",\"client_id\":"
	"\"y\"}",
	"{\"token_type\":\"a\",\"scope\":\"\",\"expires_at\":1,\"flow\":\"x\",\"client_id\":\"y\","
	"}",
	"{'token_type':'a','scope':'','expires_at':1,'flow':'x','client_id':'y'}",
	"{token_type:\"a\",\"scope\":\"\",\"expires_at\":1,\"flow\":\"x\",\"client_id\":\"y\"}",
	/* wrong types */
	"{\"token_type\":1,\"scope\":\"\",\"expires_at\":1,\"flow\":\"x\",\"client_id\":\"y\"}",
	"{\"token_type\":null,\"scope\":\"\",\"expires_at\":1,\"flow\":\"x\",\"client_id\":\"y\"}",
	"{\"token_type\":\"a\",\"scope\":[],\"expires_at\":1,\"flow\":\"x\",\"client_id\":\"y\"}",
	"{\"token_type\":\"a\",\"scope\":{},\"expires_at\":1,\"flow\":\"x\",\"client_id\":\"y\"}",
	"{\"token_type\":\"a\",\"scope\":\"\",\"expires_at\":\"1\",\"flow\":\"x\",\"client_id\":"
	"\"y\"}",
	"{\"token_type\":\"a\",\"scope\":\"\",\"expires_at\":true,\"flow\":\"x\",\"client_id\":"
	"\"y\"}",
	/* numbers that are not plain non-negative integers, or out of range */
	"{\"token_type\":\"a\",\"scope\":\"\",\"expires_at\":-1,\"flow\":\"x\",\"client_id\":"
	"\"y\"}",
	"{\"token_type\":\"a\",\"scope\":\"\",\"expires_at\":+1,\"flow\":\"x\",\"client_id\":"
	"\"y\"}",
	"{\"token_type\":\"a\",\"scope\":\"\",\"expires_at\":01,\"flow\":\"x\",\"client_id\":"
	"\"y\"}",
	"{\"token_type\":\"a\",\"scope\":\"\",\"expires_at\":1.0,\"flow\":\"x\",\"client_id\":"
	"\"y\"}",
	"{\"token_type\":\"a\",\"scope\":\"\",\"expires_at\":1e3,\"flow\":\"x\",\"client_id\":"
	"\"y\"}",
	"{\"token_type\":\"a\",\"scope\":\"\",\"expires_at\":,\"flow\":\"x\",\"client_id\":\"y\"}",
	"{\"token_type\":\"a\",\"scope\":\"\",\"expires_at\":253402300800,\"flow\":\"x\","
	"\"client_id\":\"y\"}",
	"{\"token_type\":\"a\",\"scope\":\"\",\"expires_at\":99999999999999999999999,\"flow\":"
	"\"x\","
	"\"client_id\":\"y\"}",
	/* strings: raw control characters, bad escapes, bad UTF-8, unterminated */
	"{\"token_type\":\"a\nb\",\"scope\":\"\",\"expires_at\":1,\"flow\":\"x\",\"client_id\":"
	"\"y\"}",
	"{\"token_type\":\"a\tb\",\"scope\":\"\",\"expires_at\":1,\"flow\":\"x\",\"client_id\":"
	"\"y\"}",
	"{\"token_type\":\"\\x41\",\"scope\":\"\",\"expires_at\":1,\"flow\":\"x\",\"client_id\":"
	"\"y\"}",
	"{\"token_type\":\"\\u00\",\"scope\":\"\",\"expires_at\":1,\"flow\":\"x\",\"client_id\":"
	"\"y\"}",
	"{\"token_type\":\"\\u00g0\",\"scope\":\"\",\"expires_at\":1,\"flow\":\"x\",\"client_id\":"
	"\"y\"}",
	"{\"token_type\":\"\\u0000\",\"scope\":\"\",\"expires_at\":1,\"flow\":\"x\",\"client_id\":"
	"\"y\"}",
	"{\"token_type\":\"\\ud83c\",\"scope\":\"\",\"expires_at\":1,\"flow\":\"x\",\"client_id\":"
	"\"y\"}",
	"{\"token_type\":\"\\udfb5\",\"scope\":\"\",\"expires_at\":1,\"flow\":\"x\",\"client_id\":"
	"\"y\"}",
	"{\"token_type\":\"\\ud83c\\u0041\",\"scope\":\"\",\"expires_at\":1,\"flow\":\"x\","
	"\"client_id\":\"y\"}",
	"{\"token_type\":\"\xff\",\"scope\":\"\",\"expires_at\":1,\"flow\":\"x\",\"client_id\":"
	"\"y\"}",
	"{\"token_type\":\"\xc3\",\"scope\":\"\",\"expires_at\":1,\"flow\":\"x\",\"client_id\":"
	"\"y\"}",
	"{\"token_type\":\"\xc0\xaf\",\"scope\":\"\",\"expires_at\":1,\"flow\":\"x\",\"client_id\":"
	"\"y\"}",
	"{\"token_type\":\"\xed\xa0\x80\",\"scope\":\"\",\"expires_at\":1,\"flow\":\"x\","
	"\"client_id\":\"y\"}",
	"{\"token_type\":\"\xf4\x90\x80\x80\",\"scope\":\"\",\"expires_at\":1,\"flow\":\"x\","
	"\"client_id\":\"y\"}",
	"{\"token_type\":\"a",
	"{\"token_type\":\"a\\",
	/* a value longer than its field (token_type holds 31 bytes) */
	"{\"token_type\":\"0123456789012345678901234567890123\",\"scope\":\"\",\"expires_at\":1,"
	"\"flow\":\"x\",\"client_id\":\"y\"}",
	/* nesting is never part of this object */
	"{\"token_type\":\"a\",\"scope\":\"\",\"expires_at\":1,\"flow\":\"x\",\"client_id\":\"y\","
	"\"x\":{\"y\":[1]}}",
	"[" GOOD "]",
};

static void test_parse_refuses_malformed(void **state)
{
	static const struct ps_token_info zero;
	struct ps_token_info info;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
		memset(&info, 0xa5, sizeof(info));
		if (parse(&info, malformed[i]) != -1)
			fail_msg("accepted malformed[%zu]: %s", i, malformed[i]);
		assert_memory_equal(&info, &zero, sizeof(info));
	}
}

static void test_parse_refuses_embedded_nul_and_oversize(void **state)
{
	struct ps_token_info info;
	char big[PS_TOKEN_INFO_MAX + 2];
	size_t n = strlen(GOOD);

	(void)state;
	/* the NUL the C string ends with is not part of a JSON document */
	assert_int_equal(ps_token_info_parse(&info, GOOD, n + 1), -1);
	assert_int_equal(ps_token_info_parse(&info, GOOD, n - 1), -1);
	assert_int_equal(ps_token_info_parse(&info, NULL, 0), -1);
	/* valid JSON padded with whitespace past PS_TOKEN_INFO_MAX */
	memset(big, ' ', sizeof(big));
	memcpy(big, GOOD, n);
	assert_int_equal(ps_token_info_parse(&info, big, PS_TOKEN_INFO_MAX), 0);
	assert_int_equal(ps_token_info_parse(&info, big, PS_TOKEN_INFO_MAX + 1), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format_is_the_documented_object),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_round_trip_escapes),
		cmocka_unit_test(test_round_trip_longest_fields),
		cmocka_unit_test(test_format_refuses_what_does_not_fit),
		cmocka_unit_test(test_parse_any_order_and_whitespace),
		cmocka_unit_test(test_parse_escapes),
		cmocka_unit_test(test_parse_refuses_malformed),
		cmocka_unit_test(test_parse_refuses_embedded_nul_and_oversize),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
