/*
 * token_info.c: the spotify:token_info payload. A serializer that escapes what JSON requires, and
 * a strict parser for exactly the object it writes. No JSON library: the reader links libc and
 * libkeyutils only.
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "keyring/token_info.h"
#include "common/util.h"

/* 9999-12-31T23:59:59Z: any later expires_at is nonsense, and gmtime handles all before it. */
#define EXPIRES_AT_MAX 253402300799LL

/* --- format */

/* A JSON string from a field of size max; one not terminated inside its field does not fit. */
static void put_string(struct ps_buf *o, const char *s, size_t max)
{
	if (strnlen(s, max) == max)
		o->full = true;
	else
		ps_buf_json_string(o, s);
}

int ps_token_info_format(const struct ps_token_info *info, char *buf, size_t buflen)
{
	struct ps_buf o = {.buf = buf, .cap = buflen};

	if (!buflen || info->expires_at < 0 || info->expires_at > EXPIRES_AT_MAX)
		return -1;
	buf[0] = '\0';
	ps_buf_printf(&o, "{\"token_type\":");
	put_string(&o, info->token_type, sizeof(info->token_type));
	ps_buf_printf(&o, ",\"scope\":");
	put_string(&o, info->scope, sizeof(info->scope));
	ps_buf_printf(&o, ",\"expires_at\":%lld,\"flow\":", info->expires_at);
	put_string(&o, info->flow, sizeof(info->flow));
	ps_buf_printf(&o, ",\"client_id\":");
	put_string(&o, info->client_id, sizeof(info->client_id));
	ps_buf_printf(&o, "}");
	if (o.full) {
		buf[0] = '\0';
		return -1;
	}
	return (int)o.len;
}

/* --- parse */

struct in {
	const unsigned char *p;
	const unsigned char *end;
};

static void skip_ws(struct in *in)
{
	while (in->p < in->end &&
	       (*in->p == ' ' || *in->p == '\t' || *in->p == '\n' || *in->p == '\r'))
		in->p++;
}

/* Skip whitespace, then consume c. */
static bool eat(struct in *in, unsigned char c)
{
	skip_ws(in);
	if (in->p == in->end || *in->p != c)
		return false;
	in->p++;
	return true;
}

/* Bounded output of a decoded string: always leaves room for the NUL. */
struct sbuf {
	char *s;
	size_t cap;
	size_t len;
};

static int emit(struct sbuf *b, const unsigned char *bytes, size_t n)
{
	if (n >= b->cap - b->len)
		return -1;
	memcpy(b->s + b->len, bytes, n);
	b->len += n;
	b->s[b->len] = '\0';
	return 0;
}

static int hex4(struct in *in, uint32_t *v)
{
	int i;

	*v = 0;
	if (in->end - in->p < 4)
		return -1;
	for (i = 0; i < 4; i++) {
		unsigned char c = *in->p++;

		*v <<= 4;
		if (c >= '0' && c <= '9')
			*v |= (uint32_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			*v |= (uint32_t)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			*v |= (uint32_t)(c - 'A' + 10);
		else
			return -1;
	}
	return 0;
}

static int emit_utf8(struct sbuf *b, uint32_t cp)
{
	unsigned char u[4];
	size_t n;

	if (cp < 0x80) {
		u[0] = (unsigned char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (unsigned char)(0xc0 | (cp >> 6));
		u[1] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (unsigned char)(0xe0 | (cp >> 12));
		u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (unsigned char)(0xf0 | (cp >> 18));
		u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
		u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		u[3] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	return emit(b, u, n);
}

/* After the `\u`: one code point, or a surrogate pair written as two escapes. No NUL. */
static int unicode_escape(struct in *in, struct sbuf *b)
{
	uint32_t hi, lo;

	if (hex4(in, &hi) < 0 || hi == 0 || (hi >= 0xdc00 && hi <= 0xdfff))
		return -1;
	if (hi < 0xd800 || hi > 0xdbff)
		return emit_utf8(b, hi);
	if (in->end - in->p < 2 || in->p[0] != '\\' || in->p[1] != 'u')
		return -1;
	in->p += 2;
	if (hex4(in, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
		return -1;
	return emit_utf8(b, 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00));
}

/* After the backslash. */
static int escape(struct in *in, struct sbuf *b)
{
	static const char from[] = "\"\\/bfnrt";
	static const char to[] = "\"\\/\b\f\n\r\t";
	const char *hit;
	unsigned char c;

	if (in->p == in->end)
		return -1;
	c = *in->p++;
	if (c == 'u')
		return unicode_escape(in, b);
	hit = c ? strchr(from, c) : NULL;
	if (!hit)
		return -1;
	c = (unsigned char)to[hit - from];
	return emit(b, &c, 1);
}

/* One well-formed UTF-8 sequence starting at a byte >= 0x80 (no overlongs, no surrogates). */
static int utf8_sequence(struct in *in, struct sbuf *b)
{
	const unsigned char *s = in->p;
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n, i;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4;
	else
		return -1;
	if (s[0] == 0xe0)
		lo = 0xa0;
	else if (s[0] == 0xed)
		hi = 0x9f;
	else if (s[0] == 0xf0)
		lo = 0x90;
	else if (s[0] == 0xf4)
		hi = 0x8f;
	if ((size_t)(in->end - s) < n || s[1] < lo || s[1] > hi)
		return -1;
	for (i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return -1;
	in->p += n;
	return emit(b, s, n);
}

/* A JSON string into out (outlen bytes with the NUL); too long is an error. */
static int parse_string(struct in *in, char *out, size_t outlen)
{
	struct sbuf b = {.s = out, .cap = outlen};

	out[0] = '\0';
	if (!eat(in, '"'))
		return -1;
	while (in->p < in->end) {
		unsigned char c = *in->p;
		int rc;

		if (c == '"') {
			in->p++;
			return 0;
		}
		if (c < 0x20)
			return -1;
		if (c == '\\') {
			in->p++;
			rc = escape(in, &b);
		} else if (c >= 0x80) {
			rc = utf8_sequence(in, &b);
		} else {
			in->p++;
			rc = emit(&b, &c, 1);
		}
		if (rc < 0)
			return -1;
	}
	return -1;
}

/* A JSON integer in [0, EXPIRES_AT_MAX]: digits only, no sign, fraction, exponent or leading 0. */
static int parse_expires_at(struct in *in, long long *v)
{
	const unsigned char *start;

	skip_ws(in);
	start = in->p;
	*v = 0;
	while (in->p < in->end && *in->p >= '0' && *in->p <= '9') {
		*v = *v * 10 + (*in->p - '0');
		if (*v > EXPIRES_AT_MAX)
			return -1;
		in->p++;
	}
	if (in->p == start || (*start == '0' && in->p - start > 1))
		return -1;
	return 0;
}

enum member {
	M_TOKEN_TYPE,
	M_SCOPE,
	M_EXPIRES_AT,
	M_FLOW,
	M_CLIENT_ID,
	M_COUNT,
};

static const char *const member_names[M_COUNT] = {
	[M_TOKEN_TYPE] = "token_type", [M_SCOPE] = "scope",
	[M_EXPIRES_AT] = "expires_at", [M_FLOW] = "flow",
	[M_CLIENT_ID] = "client_id",
};

static int member_value(struct in *in, struct ps_token_info *info, enum member m)
{
	switch (m) {
	case M_TOKEN_TYPE:
		return parse_string(in, info->token_type, sizeof(info->token_type));
	case M_SCOPE:
		return parse_string(in, info->scope, sizeof(info->scope));
	case M_EXPIRES_AT:
		return parse_expires_at(in, &info->expires_at);
	case M_FLOW:
		return parse_string(in, info->flow, sizeof(info->flow));
	case M_CLIENT_ID:
		return parse_string(in, info->client_id, sizeof(info->client_id));
	case M_COUNT:
		break;
	}
	return -1;
}

/* One `"name": value`; a name seen before or not ours is an error. */
static int member(struct in *in, struct ps_token_info *info, unsigned *seen)
{
	char name[16];
	int m;

	if (parse_string(in, name, sizeof(name)) < 0 || !eat(in, ':'))
		return -1;
	for (m = 0; m < M_COUNT; m++)
		if (strcmp(name, member_names[m]) == 0)
			break;
	if (m == M_COUNT || (*seen & (1u << m)))
		return -1;
	*seen |= 1u << m;
	return member_value(in, info, (enum member)m);
}

static int parse_object(struct in *in, struct ps_token_info *info)
{
	unsigned seen = 0;

	if (!eat(in, '{'))
		return -1;
	do {
		if (member(in, info, &seen) < 0)
			return -1;
	} while (eat(in, ','));
	if (!eat(in, '}'))
		return -1;
	skip_ws(in);
	if (in->p != in->end)
		return -1; /* trailing garbage */
	return seen == (1u << M_COUNT) - 1 ? 0 : -1;
}

int ps_token_info_parse(struct ps_token_info *info, const char *buf, size_t len)
{
	struct in in = {(const unsigned char *)buf, (const unsigned char *)buf + len};

	memset(info, 0, sizeof(*info));
	if (!buf || len > PS_TOKEN_INFO_MAX || parse_object(&in, info) < 0) {
		memset(info, 0, sizeof(*info));
		return -1;
	}
	return 0;
}
