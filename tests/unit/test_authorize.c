/*
 * test_authorize.c: the authorization request URL and the callback parsers. URL encoding keeps
 * only RFC 3986 unreserved characters; the authorize URL is exact, with or without a query of
 * its own; a table of callback queries and one of pasted URLs are each accepted or refused
 * with a one-line reason that never quotes the code, and a refused callback leaves nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "helper/authorize.h"
#include "common/config.h"
#include "common/util.h"

/* Every code in the tables starts with this; no error message may contain it. */
#define SECRET "SECRETcode"

#define REDIRECT "http://127.0.0.1:8080/callback"

/* ---- URL encoding ---- */

static void test_url_encode(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{"", ""},
		{"abcXYZ019-._~", "abcXYZ019-._~"},
		{"a b", "a%20b"},
		{"user-read-email playlist-read-private",
		 "user-read-email%20playlist-read-private"},
		{"http://127.0.0.1:8080/callback", "http%3A%2F%2F127.0.0.1%3A8080%2Fcallback"},
		{"+&=?#%/[]@!$'()*,;", "%2B%26%3D%3F%23%25%2F%5B%5D%40%21%24%27%28%29%2A%2C%3B"},
		{"caf\xc3\xa9\t\x7f", "caf%C3%A9%09%7F"},
	};
	char out[256];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(ps_url_encode(cases[i].in, out, sizeof(out)),
				 strlen(cases[i].out));
		assert_string_equal(out, cases[i].out);
	}
}

static void test_url_encode_fits_or_fails(void **state)
{
	char out[8];

	(void)state;
	assert_int_equal(ps_url_encode("a b", out, 6), 5);
	assert_string_equal(out, "a%20b");
	assert_int_equal(ps_url_encode("a b", out, 5), -1);
	assert_string_equal(out, "");
	assert_int_equal(ps_url_encode("ab ", out, 5), -1); /* no half-written escape */
	assert_string_equal(out, "");
	assert_int_equal(ps_url_encode("", out, 1), 0);
	assert_int_equal(ps_url_encode("a", out, 0), -1);
}

/* ---- the authorize URL ---- */

#define CHALLENGE "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
#define PARAMS                                                                                     \
	"client_id=abc123&response_type=code"                                                      \
	"&redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Fcallback"                                   \
	"&scope=user-read-email%20playlist-read-private&state=St4te_-x"                            \
	"&code_challenge_method=S256&code_challenge=" CHALLENGE

static int authorize(const char *base, const char *scopes, char *out, size_t outlen)
{
	return ps_authorize_url(base, "abc123", REDIRECT, scopes, "St4te_-x", CHALLENGE, out,
				outlen);
}

static void test_authorize_url_exact(void **state)
{
	static const char want[] = "https://accounts.spotify.com/authorize?" PARAMS;
	char out[1024];

	(void)state;
	assert_int_equal(authorize("https://accounts.spotify.com/authorize",
				   "user-read-email playlist-read-private", out, sizeof(out)),
			 strlen(want));
	assert_string_equal(out, want);
}

static void test_authorize_url_with_query(void **state)
{
	static const char want[] = "http://127.0.0.1:9999/authorize?tenant=a%20b&" PARAMS;
	static const char bare[] = "https://auth.example/authorize?" PARAMS;
	char out[1024];

	(void)state;
	assert_int_equal(authorize("http://127.0.0.1:9999/authorize?tenant=a%20b",
				   "user-read-email playlist-read-private", out, sizeof(out)),
			 strlen(want));
	assert_string_equal(out, want);
	/* a bare '?' or '&' at the end is not doubled */
	assert_int_equal(authorize("https://auth.example/authorize?",
				   "user-read-email playlist-read-private", out, sizeof(out)),
			 strlen(bare));
	assert_string_equal(out, bare);
}

static void test_authorize_url_without_scope(void **state)
{
	static const char want[] =
		"https://accounts.spotify.com/authorize?client_id=abc123"
		"&response_type=code"
		"&redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Fcallback"
		"&state=St4te_-x&code_challenge_method=S256&code_challenge=" CHALLENGE;
	char out[1024];

	(void)state;
	assert_int_equal(authorize("https://accounts.spotify.com/authorize", "", out, sizeof(out)),
			 strlen(want));
	assert_string_equal(out, want);
	assert_int_equal(
		authorize("https://accounts.spotify.com/authorize", NULL, out, sizeof(out)),
		strlen(want));
	assert_string_equal(out, want);
}

static void test_authorize_url_fits_or_fails(void **state)
{
	static const char want[] = "https://accounts.spotify.com/authorize?" PARAMS;
	const char *scopes = "user-read-email playlist-read-private";
	char out[sizeof(want) + 16];

	(void)state;
	assert_int_equal(
		authorize("https://accounts.spotify.com/authorize", scopes, out, sizeof(want)),
		strlen(want));
	assert_int_equal(
		authorize("https://accounts.spotify.com/authorize", scopes, out, sizeof(want) - 1),
		-1);
	assert_string_equal(out, "");
	/* a fragment would hide every parameter from the server */
	assert_int_equal(
		authorize("https://accounts.spotify.com/authorize#x", scopes, out, sizeof(out)),
		-1);
}

/* ---- callbacks ---- */

struct callback_case {
	const char *input;
	const char *redirect; /* NULL: input is a query; else a pasted URL */
	const char *code;     /* NULL: refused, and err contains `reason` */
	const char *state;
	const char *error;
	const char *error_description;
	const char *reason;
};

/* clang-format off */
#define OK(in, c, s)		{in, NULL, c, s, "", "", NULL}
#define DENIED(in, e, d)	{in, NULL, "", "S", e, d, NULL}
#define REFUSED(in, why)	{in, NULL, NULL, NULL, NULL, NULL, why}
#define URL_OK(in, r)		{in, r, SECRET, "S", "", "", NULL}
#define URL_REFUSED(in, r, why)	{in, r, NULL, NULL, NULL, NULL, why}
/* clang-format on */

#define NOT_REDIRECT "not the redirect"

static const struct callback_case query_cases[] = {
	OK("code=" SECRET "&state=S", SECRET, "S"),
	OK("state=S&iss=https%3A%2F%2Faccounts.spotify.com&code=" SECRET, SECRET, "S"),
	OK("&&code=" SECRET "&&state=S&", SECRET, "S"),
	OK("code=" SECRET "=x==&state=S", SECRET "=x==", "S"),
	OK("code=" SECRET "+x&state=a+b%2Bc%7e%7E", SECRET " x", "a b+c~~"),
	OK("c%6Fde=" SECRET "&state=S", SECRET, "S"), /* names are decoded too */
	OK("code=" SECRET "&state=S&other=caf%C3%A9&flag", SECRET, "S"),
	DENIED("error=access_denied&state=S", "access_denied", ""),
	DENIED("error=access_denied&error_description=The+user+denied%20access%21&state=S",
	       "access_denied", "The user denied access!"),
	DENIED("error=access_denied&error_description=caf%C3%A9&state=S", "access_denied", "caf??"),
	DENIED("error=%C3%A9&state=S", "??", ""),

	REFUSED("code=" SECRET, "no state"),
	REFUSED("code=" SECRET "&state=", "no state"),
	REFUSED("code=" SECRET "&state", "no state"),
	REFUSED("error=access_denied", "no state"),
	REFUSED("state=S", "neither a code nor an error"),
	REFUSED("state=S&error_description=x", "neither a code nor an error"),
	REFUSED("", "no state"),
	REFUSED("code=" SECRET "&error=access_denied&state=S", "both a code and an error"),
	REFUSED("code=" SECRET "a&state=S&code=" SECRET "b", "more than one code"),
	REFUSED("code=" SECRET "a&state=S&c%6Fde=" SECRET "b", "more than one code"),
	REFUSED("code=&state=S&code=" SECRET, "more than one code"),
	REFUSED("code=" SECRET "&state=S&state=T", "more than one state"),
	REFUSED("state=S&code=" SECRET "&state=S", "more than one state"),
	REFUSED("error=a&error=b&state=S", "more than one error"),
	REFUSED("error=a&error_description=x&error_description=y&state=S",
		"more than one error_description"),
	REFUSED("code=&state=S", "empty code"),
	REFUSED("code&state=S", "empty code"),
	REFUSED("error=&state=S", "empty error"),
	REFUSED("code=" SECRET "%zz&state=S", "bad percent-encoding in code"),
	REFUSED("code=" SECRET "%4&state=S", "bad percent-encoding in code"),
	REFUSED("state=S&code=" SECRET "%4", "bad percent-encoding in code"),
	REFUSED("code=" SECRET "&state=S%", "bad percent-encoding in state"),
	REFUSED("code=" SECRET "%%41&state=S", "bad percent-encoding in code"),
	REFUSED("code=" SECRET "&state=S&x=%g1", "bad percent-encoding in a parameter"),
	REFUSED("code=" SECRET "&state=S&%zz=1", "bad percent-encoding in a parameter name"),
	REFUSED("code=" SECRET "%00x&state=S", "control character or NUL in code"),
	REFUSED("code=" SECRET "&state=S%00", "control character or NUL in state"),
	REFUSED("code=" SECRET "%0D%0A&state=S", "control character or NUL in code"),
	REFUSED("code=" SECRET "\tx&state=S", "control character or NUL in code"),
	REFUSED("code=" SECRET "%7F&state=S", "control character or NUL in code"),
	REFUSED("error=x&error_description=a%0Ab&state=S", "control character or NUL in error_"),
	REFUSED("error=x%1B&state=S", "control character or NUL in error"),
	REFUSED("code=" SECRET "&state=S&other=%01", "control character or NUL in a parameter"),
};

static const struct callback_case url_cases[] = {
	URL_OK(REDIRECT "?code=" SECRET "&state=S", REDIRECT),
	URL_OK("  " REDIRECT "?code=" SECRET "&state=S \r\n", REDIRECT),
	URL_OK("\t" REDIRECT "?code=" SECRET "&state=S\n", REDIRECT),
	URL_OK(REDIRECT "?code=" SECRET "&state=S#frag", REDIRECT),
	URL_OK(REDIRECT "?code=" SECRET "&state=S#&code=x&state=T", REDIRECT),
	URL_OK("HTTP://127.0.0.1:8080/callback?code=" SECRET "&state=S", REDIRECT),
	/* any port, or none, when redirect_uri has none */
	URL_OK("http://127.0.0.1:43127/callback?code=" SECRET "&state=S",
	       "http://127.0.0.1/callback"),
	URL_OK("http://127.0.0.1/callback?code=" SECRET "&state=S", "http://127.0.0.1/callback"),
	/* a browser shows port 80 as no port */
	URL_OK("http://127.0.0.1/callback?code=" SECRET "&state=S", "http://127.0.0.1:80/callback"),
	URL_OK("http://[::1]:5555/callback?code=" SECRET "&state=S", "http://[::1]/callback"),
	URL_OK("http://[::1]:8080/callback?code=" SECRET "&state=S", "http://[::1]:8080/callback"),
	URL_OK("http://127.0.0.1:8080?code=" SECRET "&state=S", "http://127.0.0.1:8080/"),

	URL_REFUSED("", REDIRECT, NOT_REDIRECT),
	URL_REFUSED("code=" SECRET "&state=S", REDIRECT, NOT_REDIRECT),
	URL_REFUSED("127.0.0.1:8080/callback?code=" SECRET "&state=S", REDIRECT, NOT_REDIRECT),
	URL_REFUSED("https://127.0.0.1:8080/callback?code=" SECRET "&state=S", REDIRECT,
		    NOT_REDIRECT),
	URL_REFUSED("http://localhost:8080/callback?code=" SECRET "&state=S", REDIRECT,
		    NOT_REDIRECT),
	URL_REFUSED("http://127.0.0.2:8080/callback?code=" SECRET "&state=S", REDIRECT,
		    NOT_REDIRECT),
	URL_REFUSED("http://evil.example:8080/callback?code=" SECRET "&state=S", REDIRECT,
		    NOT_REDIRECT),
	URL_REFUSED("http://127.0.0.1.evil.example:8080/callback?code=" SECRET "&state=S", REDIRECT,
		    NOT_REDIRECT),
	URL_REFUSED("http://evil.example@127.0.0.1:8080/callback?code=" SECRET "&state=S", REDIRECT,
		    NOT_REDIRECT),
	URL_REFUSED("http://127.0.0.1:8080@evil.example/callback?code=" SECRET "&state=S", REDIRECT,
		    NOT_REDIRECT),
	URL_REFUSED("http://127.0.0.1:8080/callbackx?code=" SECRET "&state=S", REDIRECT,
		    NOT_REDIRECT),
	URL_REFUSED("http://127.0.0.1:8080/Callback?code=" SECRET "&state=S", REDIRECT,
		    NOT_REDIRECT),
	URL_REFUSED("http://127.0.0.1:8080/callback/?code=" SECRET "&state=S", REDIRECT,
		    NOT_REDIRECT),
	URL_REFUSED("http://127.0.0.1:8080/call%62ack?code=" SECRET "&state=S", REDIRECT,
		    NOT_REDIRECT),
	URL_REFUSED("http://127.0.0.1:8080/?code=" SECRET "&state=S", REDIRECT, NOT_REDIRECT),
	URL_REFUSED("http://127.0.0.1:8081/callback?code=" SECRET "&state=S", REDIRECT,
		    NOT_REDIRECT),
	URL_REFUSED("http://127.0.0.1/callback?code=" SECRET "&state=S", REDIRECT, NOT_REDIRECT),
	URL_REFUSED("http://127.0.0.1:/callback?code=" SECRET "&state=S", REDIRECT, NOT_REDIRECT),
	URL_REFUSED("http://127.0.0.1:99999/callback?code=" SECRET "&state=S",
		    "http://127.0.0.1/callback", NOT_REDIRECT),
	URL_REFUSED("http://127.0.0.1:http/callback?code=" SECRET "&state=S",
		    "http://127.0.0.1/callback", NOT_REDIRECT),
	URL_REFUSED("http://127.0.0.1:5555/callback?code=" SECRET "&state=S",
		    "http://[::1]/callback", NOT_REDIRECT),
	URL_REFUSED("http://[::1]:5555/callback?code=" SECRET "&state=S",
		    "http://127.0.0.1/callback", NOT_REDIRECT),
	URL_REFUSED("http://[0:0:0:0:0:0:0:1]:5555/callback?code=" SECRET "&state=S",
		    "http://[::1]/callback", NOT_REDIRECT),
	URL_REFUSED("http://[::1:5555/callback?code=" SECRET "&state=S", "http://[::1]/callback",
		    NOT_REDIRECT),
	URL_REFUSED("http://[::1]:8081/callback?code=" SECRET "&state=S",
		    "http://[::1]:8080/callback", NOT_REDIRECT),
	/* other schemes, and other spellings of a loopback host than redirect_uri's */
	URL_REFUSED("ftp://127.0.0.1:8080/callback?code=" SECRET "&state=S", REDIRECT,
		    NOT_REDIRECT),
	URL_REFUSED("file:///callback?code=" SECRET "&state=S", REDIRECT, NOT_REDIRECT),
	URL_REFUSED("javascript:alert(1)//127.0.0.1:8080/callback?code=" SECRET "&state=S",
		    REDIRECT, NOT_REDIRECT),
	URL_REFUSED("http:/127.0.0.1:8080/callback?code=" SECRET "&state=S", REDIRECT,
		    NOT_REDIRECT),
	URL_REFUSED("http:///callback?code=" SECRET "&state=S", REDIRECT, NOT_REDIRECT),
	URL_REFUSED("http://2130706433:8080/callback?code=" SECRET "&state=S", REDIRECT,
		    NOT_REDIRECT),
	URL_REFUSED("http://0x7f.0.0.1:8080/callback?code=" SECRET "&state=S", REDIRECT,
		    NOT_REDIRECT),
	URL_REFUSED("http://127.1:8080/callback?code=" SECRET "&state=S", REDIRECT, NOT_REDIRECT),
	URL_REFUSED("http://127.0.0.1:8080\\@evil.example/callback?code=" SECRET "&state=S",
		    REDIRECT, NOT_REDIRECT),
	URL_REFUSED("http://[::ffff:127.0.0.1]:8080/callback?code=" SECRET "&state=S", REDIRECT,
		    NOT_REDIRECT),
	/* duplicated parameters are refused, not "first wins", wherever they come */
	URL_REFUSED(REDIRECT "?state=S&code=" SECRET "&state=S", REDIRECT, "more than one state"),
	URL_REFUSED(REDIRECT "?code=" SECRET "&state=S&error=access_denied", REDIRECT,
		    "both a code and an error"),
	URL_REFUSED(REDIRECT "?code=" SECRET " x&state=S", REDIRECT, "space or control"),
	URL_REFUSED(REDIRECT "?code=" SECRET "\r\n&state=S", REDIRECT, "space or control"),
	URL_REFUSED(REDIRECT, REDIRECT, "no query"),
	URL_REFUSED(REDIRECT "#code=" SECRET "&state=S", REDIRECT, "no query"),
	URL_REFUSED(REDIRECT "?code=" SECRET "a&code=" SECRET "b&state=S", REDIRECT,
		    "more than one code"),
	URL_REFUSED(REDIRECT "?code=" SECRET "&state=S%00", REDIRECT, "NUL in state"),
	URL_REFUSED(REDIRECT "?code=" SECRET, REDIRECT, "no state"),
	/* redirect_uri itself is wrong: a configuration error */
	URL_REFUSED(REDIRECT "?code=" SECRET "&state=S", "https://127.0.0.1:8080/callback",
		    "redirect_uri"),
	URL_REFUSED("http://localhost:8080/callback?code=" SECRET "&state=S",
		    "http://localhost:8080/callback", "redirect_uri"),
	URL_REFUSED("http://127.0.0.1:x/callback?code=" SECRET "&state=S",
		    "http://127.0.0.1:x/callback", "redirect_uri"),
	URL_REFUSED(REDIRECT "?code=" SECRET "&state=S", REDIRECT "?x=1", "redirect_uri"),
	URL_REFUSED("http://127.0.0.1:8080/?code=" SECRET "&state=S", "http://127.0.0.1:8080",
		    "needs a path"),
	URL_REFUSED(REDIRECT "?code=" SECRET "&state=S", REDIRECT "#f", "redirect_uri"),
	URL_REFUSED(REDIRECT "?code=" SECRET "&state=S", "http://127.0.0.1:08080/callback",
		    "has a bad port"),
	URL_REFUSED(REDIRECT "?code=" SECRET "&state=S", "HTTP://127.0.0.1:8080/callback",
		    "redirect_uri"),
};

static bool all_zero(const void *p, size_t len)
{
	const unsigned char *c = p;
	size_t i;

	for (i = 0; i < len; i++) {
		if (c[i])
			return false;
	}
	return true;
}

static int run_case(const struct callback_case *c, struct ps_callback *cb, char *err)
{
	memset(cb, 0x55, sizeof(*cb)); /* whatever was there must not survive */
	err[0] = '\0';
	if (c->redirect)
		return ps_callback_parse_url(c->input, c->redirect, cb, err, PS_ERR_MAX);
	return ps_callback_parse_query(c->input, strlen(c->input), cb, err, PS_ERR_MAX);
}

static void check_case(const struct callback_case *c)
{
	struct ps_callback cb;
	char err[PS_ERR_MAX];
	int rc = run_case(c, &cb, err);

	if (c->code) {
		if (rc != 0)
			print_error("accepted? %s -> %s\n", c->input, err);
		assert_int_equal(rc, 0);
		assert_string_equal(cb.code, c->code);
		assert_string_equal(cb.state, c->state);
		assert_string_equal(cb.error, c->error);
		assert_string_equal(cb.error_description, c->error_description);
		ps_callback_clear(&cb);
		assert_true(all_zero(&cb, sizeof(cb)));
		return;
	}
	if (rc != -1 || !strstr(err, c->reason))
		print_error("refused? %s -> rc %d, %s\n", c->input, rc, err);
	assert_int_equal(rc, -1);
	assert_non_null(strstr(err, c->reason));
	assert_null(strstr(err, SECRET));
	assert_null(strchr(err, '\n'));
	assert_true(all_zero(&cb, sizeof(cb)));
}

static void test_callback_queries(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(query_cases) / sizeof(query_cases[0]); i++)
		check_case(&query_cases[i]);
}

static void test_pasted_urls(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(url_cases) / sizeof(url_cases[0]); i++)
		check_case(&url_cases[i]);
}

static void test_not_the_redirect_message(void **state)
{
	struct ps_callback cb;
	char err[PS_ERR_MAX];

	(void)state;
	assert_int_equal(ps_callback_parse_url("http://localhost:8080/callback?code=" SECRET
					       "&state=S",
					       REDIRECT, &cb, err, sizeof(err)),
			 -1);
	assert_string_equal(err, "the pasted URL is not the redirect: it should start with "
				 "http://127.0.0.1:8080 and have the path /callback; copy the "
				 "whole address from the browser's address bar");
	assert_int_equal(ps_callback_parse_url("http://[::1]/cb?code=" SECRET "&state=S",
					       "http://127.0.0.1/callback", &cb, err, sizeof(err)),
			 -1);
	assert_string_equal(err, "the pasted URL is not the redirect: it should start with "
				 "http://127.0.0.1 and have the path /callback; copy the "
				 "whole address from the browser's address bar");
}

/* Values up to the field sizes fit; one byte more is refused, percent-encoded or not. */
static void test_oversized_values(void **state)
{
	static char q[PS_CALLBACK_Q_MAX + 64];
	struct ps_callback cb;
	char err[PS_ERR_MAX];
	struct ps_buf b = {q, sizeof(q), 0, false};
	size_t i;

	(void)state;
	ps_buf_printf(&b, "state=S&code=" SECRET);
	for (i = strlen(SECRET); i < PS_CODE_MAX - 1; i++)
		ps_buf_printf(&b, "%%41");
	assert_false(b.full);
	assert_int_equal(ps_callback_parse_query(q, b.len, &cb, err, sizeof(err)), 0);
	assert_int_equal(strlen(cb.code), PS_CODE_MAX - 1);
	ps_buf_printf(&b, "A");
	assert_int_equal(ps_callback_parse_query(q, b.len, &cb, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "code is longer than 1023 bytes"));
	assert_null(strstr(err, SECRET));
	assert_true(all_zero(&cb, sizeof(cb)));

	b.len = 0;
	ps_buf_printf(&b, "code=" SECRET "&state=");
	for (i = 0; i < sizeof(cb.state); i++)
		ps_buf_printf(&b, "s");
	assert_int_equal(ps_callback_parse_query(q, b.len - 1, &cb, err, sizeof(err)), 0);
	assert_int_equal(ps_callback_parse_query(q, b.len, &cb, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "state is longer than 127 bytes"));

	b.len = 0;
	ps_buf_printf(&b, "state=S&error=");
	for (i = 0; i < sizeof(cb.error); i++)
		ps_buf_printf(&b, "e");
	assert_int_equal(ps_callback_parse_query(q, b.len - 1, &cb, err, sizeof(err)), 0);
	assert_int_equal(ps_callback_parse_query(q, b.len, &cb, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "error is longer than 63 bytes"));

	b.len = 0;
	ps_buf_printf(&b, "state=S&error=x&error_description=");
	for (i = 0; i < sizeof(cb.error_description); i++)
		ps_buf_printf(&b, "+");
	assert_int_equal(ps_callback_parse_query(q, b.len - 1, &cb, err, sizeof(err)), 0);
	assert_int_equal(ps_callback_parse_query(q, b.len, &cb, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "error_description is longer than 255 bytes"));
}

static void test_query_length_limit(void **state)
{
	static char q[PS_CALLBACK_Q_MAX + 2];
	static const char head[] = "code=" SECRET "&state=S&pad=";
	struct ps_callback cb;
	char err[PS_ERR_MAX];

	(void)state;
	memset(q, 'p', sizeof(q) - 1);
	q[sizeof(q) - 1] = '\0';
	memcpy(q, head, strlen(head));
	assert_int_equal(ps_callback_parse_query(q, PS_CALLBACK_Q_MAX, &cb, err, sizeof(err)), 0);
	assert_string_equal(cb.code, SECRET);
	assert_int_equal(ps_callback_parse_query(q, PS_CALLBACK_Q_MAX + 1, &cb, err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "longer than 4096 bytes"));
	assert_true(all_zero(&cb, sizeof(cb)));
}

/* An oversized pasted URL: refused for its query's length, without quoting the code. */
static void test_oversized_pasted_url(void **state)
{
	static char url[8192];
	struct ps_callback cb;
	char err[PS_ERR_MAX];
	int n;

	(void)state;
	n = snprintf(url, sizeof(url), REDIRECT "?code=" SECRET "&state=S&pad=");
	memset(url + n, 'p', sizeof(url) - (size_t)n - 1);
	url[sizeof(url) - 1] = '\0';
	memset(&cb, 0x55, sizeof(cb));
	assert_int_equal(ps_callback_parse_url(url, REDIRECT, &cb, err, sizeof(err)), -1);
	assert_string_equal(err, "the redirect's query is longer than 4096 bytes; refusing it: "
				 "start the login again");
	assert_true(all_zero(&cb, sizeof(cb)));
}

/* The parser reads len bytes and no further: the listener hands it a slice of a request line. */
static void test_query_is_bounded_by_len(void **state)
{
	static const char line[] = "code=" SECRET "&state=S HTTP/1.1\r\n&code=other";
	struct ps_callback cb;
	char err[PS_ERR_MAX];

	(void)state;
	assert_int_equal(ps_callback_parse_query(line, strcspn(line, " "), &cb, err, sizeof(err)),
			 0);
	assert_string_equal(cb.code, SECRET);
	assert_string_equal(cb.state, "S");
	ps_callback_clear(&cb);
}

static void test_small_error_buffer(void **state)
{
	struct ps_callback cb;
	char err[8];

	(void)state;
	assert_int_equal(ps_callback_parse_query("state=S", 7, &cb, err, sizeof(err)), -1);
	assert_int_equal(strlen(err), sizeof(err) - 1);
	assert_int_equal(ps_callback_parse_query("state=S", 7, &cb, NULL, 0), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_encode),
		cmocka_unit_test(test_url_encode_fits_or_fails),
		cmocka_unit_test(test_authorize_url_exact),
		cmocka_unit_test(test_authorize_url_with_query),
		cmocka_unit_test(test_authorize_url_without_scope),
		cmocka_unit_test(test_authorize_url_fits_or_fails),
		cmocka_unit_test(test_callback_queries),
		cmocka_unit_test(test_pasted_urls),
		cmocka_unit_test(test_not_the_redirect_message),
		cmocka_unit_test(test_oversized_values),
		cmocka_unit_test(test_query_length_limit),
		cmocka_unit_test(test_oversized_pasted_url),
		cmocka_unit_test(test_query_is_bounded_by_len),
		cmocka_unit_test(test_small_error_buffer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
