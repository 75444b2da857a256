/*
 * fuzz_callback.c: libFuzzer target for what comes back from the browser: the callback query our
 * listener receives (ps_callback_parse_query) and the redirected URL a user pastes
 * (ps_callback_parse_url). Every input is tried as a query and as a pasted URL against three
 * redirect URIs; an input "R:URI\nURL" pastes URL against URI, when the configuration would
 * accept URI as redirect_uri.
 *
 * Contract: on success, a non-empty state and exactly one of code and error, all terminated
 * within their fields and free of control bytes, error and error_description printable ASCII;
 * on failure, one non-empty line that quotes neither code nor state, and a zeroed callback.
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helper/authorize.h"
#include "common/config.h"
#include "common/util.h"
#include "tests/fuzz/fuzz.h"

/* Shorter values could match the fixed text of a message. */
#define VALUE_MIN 20

static void check_accepted(const struct ps_callback *cb)
{
	ps_fuzz_check_text(cb->code, sizeof(cb->code), "code unterminated or with control bytes");
	ps_fuzz_check_text(cb->state, sizeof(cb->state),
			   "state unterminated or with control bytes");
	ps_fuzz_check_cstr(cb->error, sizeof(cb->error), "error unterminated");
	ps_fuzz_check_cstr(cb->error_description, sizeof(cb->error_description),
			   "error_description unterminated");
	if (!ps_fuzz_printable(cb->error, strlen(cb->error)) ||
	    !ps_fuzz_printable(cb->error_description, strlen(cb->error_description)))
		ps_fuzz_fail("error or error_description is not printable ASCII");
	if (!cb->state[0])
		ps_fuzz_fail("accepted a callback without state");
	if (!cb->code[0] == !cb->error[0])
		ps_fuzz_fail("accepted a callback without exactly one of code and error");
}

/* Overwrite each occurrence of needle[0..n) in s with 0x01 bytes. */
static void mask(char *s, const char *needle, size_t n)
{
	char *p;

	if (!n)
		return;
	for (p = s; (p = memmem(p, strlen(p), needle, n)) != NULL; p += n)
		memset(p, 0x01, n);
}

/*
 * err with the redirect URI's parts masked: the pasted-URL error quotes them
 * ("http://HOST[:PORT]", then the path), and a value may span one and the fixed text after it.
 */
static void mask_redirect(char *shown, size_t cap, const char *err, const char *redirect)
{
	const char *path = strncmp(redirect, "http://", 7) ? NULL : strchr(redirect + 7, '/');

	ps_strlcpy(shown, err, cap);
	if (!path)
		return;
	mask(shown, path, strlen(path));
	mask(shown, redirect, (size_t)(path - redirect));
}

/* The raw values of code= and state= in text must not show up in err. */
static void check_not_quoted(const char *text, size_t len, const char *redirect, const char *err)
{
	static const char *const names[] = {"code=", "state="};
	char value[PS_CALLBACK_Q_MAX + 1], shown[PS_ERR_MAX];
	size_t i, k;

	mask_redirect(shown, sizeof(shown), err, redirect);
	for (i = 0; i < len; i++) {
		if (i > 0 && text[i - 1] != '&' && text[i - 1] != '?')
			continue;
		for (k = 0; k < 2; k++) {
			size_t nl = strlen(names[k]), n;

			if (len - i < nl || memcmp(text + i, names[k], nl) != 0)
				continue;
			for (n = 0; i + nl + n < len && !strchr("&# +\t\r\n", text[i + nl + n]);
			     n++)
				;
			if (n < VALUE_MIN || n >= sizeof(value))
				continue;
			memcpy(value, text + i + nl, n);
			value[n] = '\0';
			if (strstr(shown, value)) {
				fprintf(stderr, "value: %s\nerror: %s\n", value, err);
				ps_fuzz_fail("a callback error quotes the code or the state");
			}
		}
	}
}

static void check_refused(const struct ps_callback *cb, const char *err, size_t errlen)
{
	ps_fuzz_check_err(err, errlen);
	if (!ps_fuzz_zeroed(cb, sizeof(*cb)))
		ps_fuzz_fail("a refused callback left data behind");
}

static void paste(const char *url, size_t len, const char *redirect)
{
	struct ps_callback cb;
	char err[PS_ERR_MAX];

	if (ps_callback_parse_url(url, redirect, &cb, err, sizeof(err)) == 0) {
		check_accepted(&cb);
	} else {
		check_refused(&cb, err, sizeof(err));
		check_not_quoted(url, len, redirect, err);
	}
	ps_callback_clear(&cb);
}

static void query(const char *q, size_t len)
{
	struct ps_callback cb;
	char err[PS_ERR_MAX];

	if (ps_callback_parse_query(q, len, &cb, err, sizeof(err)) == 0) {
		check_accepted(&cb);
	} else {
		check_refused(&cb, err, sizeof(err));
		check_not_quoted(q, len, "", err);
	}
	ps_callback_clear(&cb);
}

/* "R:URI\nURL": the pasted URL against a redirect_uri the configuration accepts. */
static void paste_against(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	struct ps_config *cfg;
	char *uri, *url, err[PS_ERR_MAX];
	size_t urilen, urllen;

	if (!nl)
		return;
	urilen = (size_t)(nl - data) - 2;
	urllen = size - urilen - 3;
	uri = ps_fuzz_cstring(data + 2, urilen);
	cfg = malloc(sizeof(*cfg));
	if (!cfg)
		abort();
	ps_config_init(cfg);
	if (ps_config_set(cfg, "redirect_uri", uri, err, sizeof(err)) == 0) {
		url = ps_fuzz_cstring(nl + 1, urllen);
		paste(url, urllen, cfg->redirect_uri);
		ps_fuzz_free(url, urllen + 1);
	}
	free(cfg);
	ps_fuzz_free(uri, urilen + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const redirects[] = {"http://127.0.0.1:8080/callback",
						"http://127.0.0.1/callback", "http://[::1]/cb"};
	char *text;
	size_t i;

	if (size >= 2 && data[0] == 'R' && data[1] == ':') {
		paste_against(data, size);
		return 0;
	}
	text = ps_fuzz_copy(data, size);
	query(text, size);
	ps_fuzz_free(text, size);
	text = ps_fuzz_cstring(data, size);
	for (i = 0; i < sizeof(redirects) / sizeof(redirects[0]); i++)
		paste(text, size, redirects[i]);
	ps_fuzz_free(text, size + 1);
	return 0;
}
