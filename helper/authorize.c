/*
 * authorize.c: the authorization request URL and the strict parsing of the redirect that comes
 * back (see authorize.h). Owns what counts as a well-formed callback: one of each parameter we
 * read, clean percent-encoding, no control bytes, values that fit, and for a pasted URL the
 * scheme, host, port and path of redirect_uri. Messages say what is wrong and what to do; they
 * never quote a value from the callback (it may hold the code).
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "helper/authorize.h"
#include "common/util.h"

#define AGAIN "start the login again"
#define PASTE "copy the whole address from the browser's address bar"

static int fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* ---- the authorization request ---- */

static bool unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

static void buf_url_encode(struct ps_buf *b, const char *in)
{
	const unsigned char *p;

	for (p = (const unsigned char *)in; *p && !b->full; p++) {
		if (unreserved(*p))
			ps_buf_printf(b, "%c", *p);
		else
			ps_buf_printf(b, "%%%02X", *p);
	}
}

/* The length of a completed buffer, or -1 (and an empty string) when it did not fit. */
static int buf_result(struct ps_buf *b)
{
	if (b->full || b->len > INT_MAX) {
		b->buf[0] = '\0';
		return -1;
	}
	return (int)b->len;
}

int ps_url_encode(const char *in, char *out, size_t outlen)
{
	struct ps_buf b = {out, outlen, 0, false};

	if (!outlen)
		return -1;
	out[0] = '\0';
	buf_url_encode(&b, in);
	return buf_result(&b);
}

static void buf_param(struct ps_buf *b, const char *name, const char *value)
{
	ps_buf_printf(b, "&%s=", name);
	buf_url_encode(b, value);
}

/* '?' to start the query, '&' to extend the one authorize_url has, nothing after a bare '?'/'&'. */
static const char *query_separator(const char *authorize_url)
{
	size_t len = strlen(authorize_url);

	if (!strchr(authorize_url, '?'))
		return "?";
	if (authorize_url[len - 1] == '?' || authorize_url[len - 1] == '&')
		return "";
	return "&";
}

int ps_authorize_url(const char *authorize_url, const char *client_id, const char *redirect_uri,
		     const char *scopes, const char *state, const char *challenge, char *out,
		     size_t outlen)
{
	struct ps_buf b = {out, outlen, 0, false};

	if (!outlen)
		return -1;
	out[0] = '\0';
	/* a fragment would swallow every parameter we append */
	if (!*authorize_url || strchr(authorize_url, '#'))
		return -1;
	ps_buf_printf(&b, "%s%sclient_id=", authorize_url, query_separator(authorize_url));
	buf_url_encode(&b, client_id);
	buf_param(&b, "response_type", "code");
	buf_param(&b, "redirect_uri", redirect_uri);
	if (scopes && *scopes)
		buf_param(&b, "scope", scopes);
	buf_param(&b, "state", state);
	buf_param(&b, "code_challenge_method", "S256");
	buf_param(&b, "code_challenge", challenge);
	return buf_result(&b);
}

/* ---- the callback query ---- */

enum decode_result {
	DECODE_OK = 0,
	DECODE_BAD_PERCENT, /* '%' not followed by two hex digits */
	DECODE_CONTROL,	    /* a byte below 0x20, or 0x7f, after decoding */
	DECODE_TOO_LONG,    /* does not fit in out */
};

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * application/x-www-form-urlencoded decoding of s[0..n) into out (NUL-terminated; *outn gets
 * the length). With out NULL the text is only checked.
 */
static enum decode_result form_decode(const char *s, size_t n, char *out, size_t outsize,
				      size_t *outn)
{
	size_t i, o = 0;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '+') {
			c = ' ';
		} else if (c == '%') {
			int hi = n - i > 2 ? hex_value(s[i + 1]) : -1;
			int lo = hi >= 0 ? hex_value(s[i + 2]) : -1;

			if (lo < 0)
				return DECODE_BAD_PERCENT;
			c = (unsigned char)(hi << 4 | lo);
			i += 2;
		}
		if (c < 0x20 || c == 0x7f)
			return DECODE_CONTROL;
		if (out) {
			if (o + 1 >= outsize)
				return DECODE_TOO_LONG;
			out[o] = (char)c;
		}
		o++;
	}
	if (out)
		out[o] = '\0';
	if (outn)
		*outn = o;
	return DECODE_OK;
}

/* The parameters we read; each may appear at most once. */
enum field_bit {
	FIELD_CODE = 1u << 0,
	FIELD_STATE = 1u << 1,
	FIELD_ERROR = 1u << 2,
	FIELD_ERROR_DESCRIPTION = 1u << 3,
};

struct field {
	const char *name;
	unsigned bit;
	size_t offset; /* in struct ps_callback */
	size_t size;
	bool sanitize; /* shown to the user: printable ASCII only */
};

/* clang-format off */
#define FIELD(member, b, s) \
	{#member, b, offsetof(struct ps_callback, member), sizeof(((struct ps_callback *)0)->member), s}
/* clang-format on */

static const struct field fields[] = {
	FIELD(code, FIELD_CODE, false),
	FIELD(state, FIELD_STATE, false),
	FIELD(error, FIELD_ERROR, true),
	FIELD(error_description, FIELD_ERROR_DESCRIPTION, true),
};

static const struct field *field_find(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		if (strcmp(fields[i].name, name) == 0)
			return &fields[i];
	}
	return NULL;
}

static int decode_fail(enum decode_result r, const char *what, size_t size, char *err,
		       size_t errlen)
{
	switch (r) {
	case DECODE_BAD_PERCENT:
		return fail(err, errlen,
			    "the redirect has bad percent-encoding in %s (a %% not followed by two "
			    "hex digits); " PASTE " again, or " AGAIN,
			    what);
	case DECODE_CONTROL:
		return fail(
			err, errlen,
			"the redirect has a control character or NUL in %s; refusing it: " AGAIN,
			what);
	case DECODE_TOO_LONG:
		return fail(err, errlen,
			    "the redirect's %s is longer than %zu bytes; refusing it: " AGAIN, what,
			    size - 1);
	case DECODE_OK:
		break;
	}
	return 0;
}

/* Decode one of our parameters into its field of cb. */
static int field_store(const struct field *f, const char *value, size_t vlen,
		       struct ps_callback *cb, char *err, size_t errlen)
{
	char *dst = (char *)cb + f->offset;
	char tmp[sizeof(cb->error_description)]; /* the largest field that is sanitized */
	enum decode_result r;
	size_t n = 0;

	if (!f->sanitize)
		return decode_fail(form_decode(value, vlen, dst, f->size, NULL), f->name, f->size,
				   err, errlen);
	r = form_decode(value, vlen, tmp, f->size, &n);
	if (r == DECODE_OK)
		ps_sanitize_text(dst, f->size, tmp, n);
	explicit_bzero(tmp, sizeof(tmp));
	return decode_fail(r, f->name, f->size, err, errlen);
}

/* One name=value pair (value empty when there is no '='). */
static int query_pair(const char *pair, size_t len, unsigned *seen, struct ps_callback *cb,
		      char *err, size_t errlen)
{
	const char *eq = memchr(pair, '=', len);
	size_t namelen = eq ? (size_t)(eq - pair) : len;
	const char *value = eq ? eq + 1 : pair + len;
	size_t vlen = (size_t)(pair + len - value);
	const struct field *f = NULL;
	char name[32];
	enum decode_result r;

	r = form_decode(pair, namelen, NULL, 0, NULL);
	if (r != DECODE_OK)
		return decode_fail(r, "a parameter name", 0, err, errlen);
	if (form_decode(pair, namelen, name, sizeof(name), NULL) == DECODE_OK)
		f = field_find(name);
	if (!f) {
		r = form_decode(value, vlen, NULL, 0, NULL);
		return decode_fail(r, "a parameter", 0, err, errlen);
	}
	if (*seen & f->bit)
		return fail(err, errlen,
			    "the redirect has more than one %s parameter; refusing it (someone may "
			    "be trying to slip in their own login): " AGAIN,
			    f->name);
	*seen |= f->bit;
	return field_store(f, value, vlen, cb, err, errlen);
}

/* Needs state, and exactly one of code and error, none of them empty. */
static int query_complete(unsigned seen, const struct ps_callback *cb, char *err, size_t errlen)
{
	if (!(seen & FIELD_STATE) || !cb->state[0])
		return fail(err, errlen,
			    "the redirect has no state (or an empty one); " PASTE ", or " AGAIN);
	if ((seen & FIELD_CODE) && (seen & FIELD_ERROR))
		return fail(err, errlen,
			    "the redirect has both a code and an error; refusing it: " AGAIN);
	if (!(seen & (FIELD_CODE | FIELD_ERROR)))
		return fail(err, errlen,
			    "the redirect has neither a code nor an error; " PASTE ", or " AGAIN);
	if ((seen & FIELD_CODE) && !cb->code[0])
		return fail(err, errlen, "the redirect has an empty code; " AGAIN);
	if ((seen & FIELD_ERROR) && !cb->error[0])
		return fail(err, errlen, "the redirect has an empty error; " AGAIN);
	return 0;
}

static int query_parse(const char *query, size_t len, struct ps_callback *cb, char *err,
		       size_t errlen)
{
	const char *p = query, *end = query + len;
	unsigned seen = 0;

	if (len > PS_CALLBACK_Q_MAX)
		return fail(err, errlen,
			    "the redirect's query is longer than %d bytes; refusing it: " AGAIN,
			    PS_CALLBACK_Q_MAX);
	while (p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		size_t n = amp ? (size_t)(amp - p) : (size_t)(end - p);

		if (n && query_pair(p, n, &seen, cb, err, errlen) < 0)
			return -1;
		p += n + 1;
	}
	return query_complete(seen, cb, err, errlen);
}

int ps_callback_parse_query(const char *query, size_t len, struct ps_callback *cb, char *err,
			    size_t errlen)
{
	ps_callback_clear(cb);
	if (query_parse(query, len, cb, err, errlen) < 0) {
		ps_callback_clear(cb);
		return -1;
	}
	return 0;
}

/* ---- the pasted URL ---- */

/* The parts of an http:// URL that locate the redirect. Pointers into the URL, not terminated. */
struct url_parts {
	const char *host; /* the literal, with brackets for IPv6 */
	size_t hostlen;
	const char *port; /* NULL when absent */
	size_t portlen;
	const char *path; /* "" when absent: the same as "/" */
	size_t pathlen;
	const char *query; /* after '?', up to '#'; NULL when there is no '?' */
	size_t querylen;
};

/* Split an http:// URL of len bytes. 0, or -1 when it is not one. */
static int url_split(const char *url, size_t len, struct url_parts *u)
{
	const char *p, *end = url + len, *auth_end, *host_end, *q;

	memset(u, 0, sizeof(*u));
	if (len < 7 || strncasecmp(url, "http://", 7) != 0)
		return -1;
	p = url + 7;
	auth_end = p;
	while (auth_end < end && !strchr("/?#", *auth_end))
		auth_end++;
	if (p < auth_end && *p == '[') {
		host_end = memchr(p, ']', (size_t)(auth_end - p));
		if (!host_end)
			return -1;
		host_end++;
	} else {
		host_end = memchr(p, ':', (size_t)(auth_end - p));
		if (!host_end)
			host_end = auth_end;
	}
	u->host = p;
	u->hostlen = (size_t)(host_end - p);
	if (host_end < auth_end) {
		if (*host_end != ':')
			return -1;
		u->port = host_end + 1;
		u->portlen = (size_t)(auth_end - u->port);
	}
	u->path = auth_end;
	q = auth_end;
	while (q < end && *q != '?' && *q != '#')
		q++;
	u->pathlen = (size_t)(q - auth_end);
	if (q < end && *q == '?') {
		u->query = q + 1;
		u->querylen = (size_t)(end - u->query);
		q = memchr(u->query, '#', u->querylen);
		if (q)
			u->querylen = (size_t)(q - u->query);
	}
	return u->hostlen ? 0 : -1;
}

/* The port as a number: 80 when absent (a browser drops ":80"), 0 when malformed. */
static unsigned long url_port(const struct url_parts *u)
{
	char text[8];
	unsigned long port;

	if (!u->port)
		return 80;
	if (u->portlen == 0 || u->portlen >= sizeof(text))
		return 0;
	memcpy(text, u->port, u->portlen);
	text[u->portlen] = '\0';
	if (ps_parse_ulong(text, 1, 65535, &port) < 0)
		return 0;
	return port;
}

/* The pasted URL u against redirect_uri r: host literal, port when r names one, path. */
static int url_match(const struct url_parts *u, const struct ps_redirect *r)
{
	const char *path = u->pathlen ? u->path : "/";
	size_t pathlen = u->pathlen ? u->pathlen : 1;

	if (u->hostlen != strlen(r->host) || memcmp(u->host, r->host, u->hostlen) != 0)
		return -1;
	if (r->has_port && url_port(u) != r->port)
		return -1;
	if (!r->has_port && u->port && url_port(u) == 0)
		return -1;
	return pathlen == strlen(r->path) && memcmp(path, r->path, pathlen) == 0 ? 0 : -1;
}

static int not_the_redirect(const struct ps_redirect *r, char *err, size_t errlen)
{
	char port[8] = "";

	if (r->has_port)
		snprintf(port, sizeof(port), ":%lu", r->port);
	return fail(err, errlen,
		    "the pasted URL is not the redirect: it should start with http://%s%s and "
		    "have the path %s; " PASTE,
		    r->host, port, r->path);
}

static bool url_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

int ps_callback_parse_url(const char *url, const char *redirect_uri, struct ps_callback *cb,
			  char *err, size_t errlen)
{
	struct url_parts u;
	struct ps_redirect r;
	const char *p;
	size_t len;

	ps_callback_clear(cb);
	if (ps_redirect_parse(redirect_uri, &r, err, errlen) < 0)
		return -1;
	while (url_space(*url))
		url++;
	len = strlen(url);
	while (len && url_space(url[len - 1]))
		len--;
	for (p = url; p < url + len; p++) {
		if ((unsigned char)*p <= 0x20 || *p == 0x7f)
			return fail(err, errlen,
				    "the pasted URL has a space or control character inside "
				    "it; " PASTE);
	}
	if (url_split(url, len, &u) < 0 || url_match(&u, &r) < 0)
		return not_the_redirect(&r, err, errlen);
	if (!u.query)
		return fail(err, errlen,
			    "the pasted URL has no query (?code=...&state=...); " PASTE);
	return ps_callback_parse_query(u.query, u.querylen, cb, err, errlen);
}

void ps_callback_clear(struct ps_callback *cb)
{
	explicit_bzero(cb, sizeof(*cb));
}
