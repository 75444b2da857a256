/* cfg_check.c: the contract of a parsed configuration (see cfg_check.h). */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "tests/fuzz/cfg_check.h"
#include "tests/fuzz/fuzz.h"

#define CHECK(cond, what)                                                                          \
	do {                                                                                       \
		if (!(cond))                                                                       \
			ps_fuzz_fail(what);                                                        \
	} while (0)

static bool client_id_ok(const char *s)
{
	const char *p;

	for (p = s; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("-._~", *p))
			return false;
	return s[0] != '.' && strlen(s) <= 240;
}

/* Scope names (RFC 6749 NQCHAR) separated by single spaces, none at either end. */
static bool scopes_ok(const char *s)
{
	const char *p;

	if (s[0] == ' ')
		return false;
	for (p = s; *p; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == ' ' && (p[1] == ' ' || p[1] == '\0'))
			return false;
		if (c != ' ' && (c < 0x21 || c > 0x7e || c == '"' || c == '\\'))
			return false;
	}
	return true;
}

static bool url_ok(const char *url)
{
	char why[128];

	return ps_url_check(url, why, sizeof(why)) == 0;
}

static bool redirect_ok(const char *uri)
{
	const char *p;

	for (p = uri; *p; p++)
		if (!isgraph((unsigned char)*p))
			return false;
	return (strncmp(uri, "http://127.0.0.1", 16) == 0 ||
		strncmp(uri, "http://[::1]", 12) == 0) &&
	       !strpbrk(uri, "?#");
}

void ps_fuzz_check_config(const struct ps_config *cfg, bool finished)
{
	ps_fuzz_check_cstr(cfg->client_id, sizeof(cfg->client_id), "client_id unterminated");
	ps_fuzz_check_cstr(cfg->client_secret_file, sizeof(cfg->client_secret_file),
			   "client_secret_file unterminated");
	ps_fuzz_check_cstr(cfg->scopes, sizeof(cfg->scopes), "scopes unterminated");
	ps_fuzz_check_cstr(cfg->accounts_url, sizeof(cfg->accounts_url),
			   "accounts_url unterminated");
	ps_fuzz_check_cstr(cfg->token_url, sizeof(cfg->token_url), "token_url unterminated");
	ps_fuzz_check_cstr(cfg->authorize_url, sizeof(cfg->authorize_url),
			   "authorize_url unterminated");
	ps_fuzz_check_cstr(cfg->redirect_uri, sizeof(cfg->redirect_uri),
			   "redirect_uri unterminated");
	ps_fuzz_check_cstr(cfg->ca_file, sizeof(cfg->ca_file), "ca_file unterminated");
	CHECK((unsigned)cfg->flow <= PS_FLOW_AUTHORIZATION_CODE, "flow out of range");
	CHECK((unsigned)cfg->keyring <= PS_KEYRING_PERSISTENT, "keyring out of range");
	CHECK((unsigned)cfg->enroll <= PS_ENROLL_NEVER, "enroll out of range");
	CHECK(cfg->timeout >= 1 && cfg->timeout <= 300, "timeout out of range");
	CHECK(cfg->connect_timeout >= 1 && cfg->connect_timeout <= 300,
	      "connect_timeout out of range");
	CHECK(cfg->refresh_margin >= 1 && cfg->refresh_margin <= 3600,
	      "refresh_margin out of range");
	CHECK(cfg->default_expires_in >= 60 && cfg->default_expires_in <= 604800,
	      "default_expires_in out of range");
	CHECK(client_id_ok(cfg->client_id), "client_id has a bad character or length");
	CHECK(scopes_ok(cfg->scopes), "scopes are not single-space separated scope names");
	CHECK(!cfg->client_secret_file[0] || cfg->client_secret_file[0] == '/',
	      "client_secret_file is not absolute");
	CHECK(!cfg->ca_file[0] || cfg->ca_file[0] == '/', "ca_file is not absolute");
	CHECK(url_ok(cfg->accounts_url), "accounts_url fails ps_url_check");
	CHECK(!cfg->token_url[0] || url_ok(cfg->token_url), "token_url fails ps_url_check");
	CHECK(!cfg->authorize_url[0] || url_ok(cfg->authorize_url),
	      "authorize_url fails ps_url_check");
	CHECK(redirect_ok(cfg->redirect_uri), "redirect_uri is not a loopback http:// URI");
	if (!finished)
		return;
	CHECK(cfg->client_id[0], "finished without client_id");
	CHECK(cfg->flow == PS_FLOW_PKCE || cfg->client_secret_file[0],
	      "finished without client_secret_file");
	CHECK(cfg->connect_timeout <= cfg->timeout, "finished with connect_timeout > timeout");
	CHECK(cfg->token_url[0] && cfg->authorize_url[0], "finished without the endpoint URLs");
}

/*
 * The settings the request carries: not the module's debug, nowait, config_path and set, nor
 * the request-only app_uid and service (checked by their own parser).
 */
#define SAME_NUM(f) CHECK(a->f == b->f, "request round trip changed " #f)
#define SAME_STR(f) CHECK(!strcmp(a->f, b->f), "request round trip changed " #f)

static void check_same_settings(const struct ps_config *a, const struct ps_config *b)
{
	SAME_NUM(flow);
	SAME_STR(client_id);
	SAME_STR(scopes);
	SAME_STR(accounts_url);
	SAME_STR(token_url);
	SAME_STR(authorize_url);
	SAME_STR(redirect_uri);
	SAME_NUM(enroll);
	SAME_NUM(refresh_margin);
	SAME_NUM(default_expires_in);
	SAME_NUM(interactive);
	SAME_NUM(session_pid);
	SAME_NUM(keyring);
	SAME_NUM(timeout);
	SAME_NUM(connect_timeout);
	SAME_NUM(remove_on_close);
	SAME_STR(ca_file);
	SAME_NUM(app_uid);
	SAME_STR(service);
}

void ps_fuzz_request_round_trip(const struct ps_config *cfg, enum ps_op op)
{
	char *buf = malloc(PS_REQUEST_MAX), err[PS_ERR_MAX];
	struct ps_request *req = malloc(sizeof(*req));
	int len;

	if (!buf || !req)
		abort();
	len = ps_request_format(cfg, op, buf, PS_REQUEST_MAX);
	CHECK(len > 0, "a finished configuration does not fit in a request");
	if (ps_request_parse(req, buf, (size_t)len, err, sizeof(err)) < 0)
		ps_fuzz_fail("a formatted request does not parse back");
	CHECK(req->op == op, "request round trip changed op");
	check_same_settings(cfg, &req->cfg);
	ps_fuzz_check_config(&req->cfg, false);

	free(buf);
	free(req);
}
