/*
 * fuzz_token_info.c: libFuzzer target for the spotify:token_info payload parser
 * (ps_token_info_parse), which the reader runs on whatever a key of that name holds: the user
 * can plant one.
 *
 * Contract: on failure, a zeroed struct; on success, strings terminated within their fields,
 * well-formed UTF-8 without NUL, expires_at in 0..9999-12-31; and the round trip: the struct
 * formats (ps_token_info_format), and when that text fits PS_TOKEN_INFO_MAX it parses back to
 * the same struct and formats to the same text.
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <stdlib.h>
#include <string.h>

#include "keyring/token_info.h"
#include "tests/fuzz/fuzz.h"

#define EXPIRES_AT_MAX 253402300799LL
/* every byte of the longest field escaped as \u00XX, with room for the rest */
#define FORMAT_MAX (6 * PS_TOKEN_INFO_MAX + 256)

/* Well-formed UTF-8 (RFC 3629: no overlongs, surrogates or code points above U+10FFFF). */
static bool utf8_ok(const char *str)
{
	const unsigned char *s = (const unsigned char *)str;

	while (*s) {
		unsigned char lo = 0x80, hi = 0xbf;
		size_t n, i;

		if (*s < 0x80) {
			s++;
			continue;
		}
		if (*s >= 0xc2 && *s <= 0xdf)
			n = 2;
		else if (*s >= 0xe0 && *s <= 0xef)
			n = 3;
		else if (*s >= 0xf0 && *s <= 0xf4)
			n = 4;
		else
			return false;
		if (*s == 0xe0)
			lo = 0xa0;
		else if (*s == 0xed)
			hi = 0x9f;
		else if (*s == 0xf0)
			lo = 0x90;
		else if (*s == 0xf4)
			hi = 0x8f;
		if (s[1] < lo || s[1] > hi)
			return false;
		for (i = 2; i < n; i++)
			if (s[i] < 0x80 || s[i] > 0xbf)
				return false;
		s += n;
	}
	return true;
}

static void check_string(const char *s, size_t cap, const char *what)
{
	ps_fuzz_check_cstr(s, cap, what);
	if (!utf8_ok(s))
		ps_fuzz_fail(what);
}

static bool same(const struct ps_token_info *a, const struct ps_token_info *b)
{
	return !strcmp(a->token_type, b->token_type) && !strcmp(a->scope, b->scope) &&
	       a->expires_at == b->expires_at && !strcmp(a->flow, b->flow) &&
	       !strcmp(a->client_id, b->client_id);
}

static void round_trip(const struct ps_token_info *info)
{
	char *text = malloc(FORMAT_MAX), *again = malloc(FORMAT_MAX);
	struct ps_token_info back;
	int n, m;

	if (!text || !again)
		abort();
	n = ps_token_info_format(info, text, FORMAT_MAX);
	if (n < 0)
		ps_fuzz_fail("a parsed token_info does not format");
	/* \n, \t ... in the input come out as \u000a ...: longer, and then over the limit */
	if ((size_t)n <= PS_TOKEN_INFO_MAX) {
		if (ps_token_info_parse(&back, text, (size_t)n) < 0)
			ps_fuzz_fail("a formatted token_info does not parse back");
		if (!same(info, &back))
			ps_fuzz_fail("token_info round trip changed a field");
		m = ps_token_info_format(&back, again, FORMAT_MAX);
		if (m != n || memcmp(text, again, (size_t)n) != 0)
			ps_fuzz_fail("token_info formats differently after a round trip");
	}
	free(text);
	free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = ps_fuzz_copy(data, size);
	struct ps_token_info info;

	if (ps_token_info_parse(&info, buf, size) == 0) {
		check_string(info.token_type, sizeof(info.token_type),
			     "token_type is not a string");
		check_string(info.scope, sizeof(info.scope), "scope is not a string");
		check_string(info.flow, sizeof(info.flow), "flow is not a string");
		check_string(info.client_id, sizeof(info.client_id), "client_id is not a string");
		if (info.expires_at < 0 || info.expires_at > EXPIRES_AT_MAX)
			ps_fuzz_fail("expires_at out of range");
		round_trip(&info);
	} else if (!ps_fuzz_zeroed(&info, sizeof(info))) {
		ps_fuzz_fail("a refused token_info left data behind");
	}
	ps_fuzz_free(buf, size);
	return 0;
}
