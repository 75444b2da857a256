/* test_request.c: the module->helper request: round trip, version check and hostile input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "common/request.h"

static void sample_config(struct ps_config *cfg)
{
	char err[PS_ERR_MAX];

	ps_config_init(cfg);
	assert_int_equal(ps_config_set(cfg, "client_id", "cid123", err, sizeof(err)), 0);
	assert_int_equal(ps_config_set(cfg, "client_secret_file", "/s", err, sizeof(err)), 0);
	assert_int_equal(ps_config_set(cfg, "scopes", "a b", err, sizeof(err)), 0);
	assert_int_equal(
		ps_config_set(cfg, "accounts_url", "https://127.0.0.1:4443", err, sizeof(err)), 0);
	assert_int_equal(ps_config_set(cfg, "keyring", "session", err, sizeof(err)), 0);
	assert_int_equal(ps_config_set(cfg, "timeout", "7", err, sizeof(err)), 0);
	assert_int_equal(ps_config_set(cfg, "ca_file", "/tmp/ca.pem", err, sizeof(err)), 0);
	assert_int_equal(ps_config_finish(cfg, err, sizeof(err)), 0);
	cfg->interactive = true;
}

static void test_round_trip(void **state)
{
	char buf[PS_REQUEST_MAX], err[PS_ERR_MAX];
	struct ps_config cfg;
	struct ps_request req;
	int len;

	(void)state;
	sample_config(&cfg);
	len = ps_request_format(&cfg, PS_OP_OPEN, buf, sizeof(buf));
	assert_true(len > 0);
	assert_int_equal(ps_request_parse(&req, buf, (size_t)len, err, sizeof(err)), 0);
	assert_int_equal(req.op, PS_OP_OPEN);
	assert_string_equal(req.cfg.client_id, "cid123");
	assert_string_equal(req.cfg.scopes, "a b");
	assert_string_equal(req.cfg.token_url, "https://127.0.0.1:4443/api/token");
	assert_int_equal(req.cfg.keyring, PS_KEYRING_SESSION);
	assert_int_equal(req.cfg.timeout, 7);
	assert_string_equal(req.cfg.ca_file, "/tmp/ca.pem");
	assert_string_equal(req.cfg.authorize_url, "https://127.0.0.1:4443/authorize");
	assert_string_equal(req.cfg.redirect_uri, "http://127.0.0.1/callback");
	assert_true(req.cfg.interactive);
	assert_string_equal(req.cfg.client_secret_file, "/s"); /* the path names the app token */
	assert_string_equal(req.cfg.app_user, "_pam_spotify");
	assert_int_equal(req.cfg.app_uid, 0);
	assert_string_equal(req.cfg.service, "");

	assert_null(strstr(buf, "\nsecret")); /* a request never carries the secret */
}

/* app_uid and service: request only; the system service's uid (1 to 2^32-2) and its socket. */
static void test_app_uid(void **state)
{
	static const char zero[] = "pam_spotify-request 1\nop = open\napp_uid = 0\nend\n";
	char buf[PS_REQUEST_MAX], err[PS_ERR_MAX];
	struct ps_config cfg;
	struct ps_request req;
	int len;

	(void)state;
	sample_config(&cfg);
	cfg.app_uid = 999;
	snprintf(cfg.service, sizeof(cfg.service), "%s/service-0123abcd.sock", PS_RUNDIR);
	len = ps_request_format(&cfg, PS_OP_OPEN, buf, sizeof(buf));
	assert_true(len > 0);
	assert_non_null(strstr(buf, "app_uid = 999\n"));
	assert_int_equal(ps_request_parse(&req, buf, (size_t)len, err, sizeof(err)), 0);
	assert_int_equal(req.cfg.app_uid, 999);
	assert_string_equal(req.cfg.service, cfg.service);
	assert_int_equal(ps_request_parse(&req, zero, sizeof(zero) - 1, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "app_uid must be a user ID other than 0"));
}

static void test_format_overflow(void **state)
{
	char buf[64];
	struct ps_config cfg;

	(void)state;
	sample_config(&cfg);
	assert_int_equal(ps_request_format(&cfg, PS_OP_OPEN, buf, sizeof(buf)), -1);
}

struct bad_req {
	const char *text;
	const char *expect;
};

static const struct bad_req bad_reqs[] = {
	{"", "truncated"},
	{"hello\n", "not a pam_spotify request"},
	{"pam_spotify-request 2\nop = open\nend\n", "request version '2' is not 1"},
	{"pam_spotify-request 1\nop = open\n", "truncated"},
	{"pam_spotify-request 1\nop = open\nend", "unterminated"},
	{"pam_spotify-request 1\nop = open\nend\nextra\n", "data after 'end'"},
	{"pam_spotify-request 1\nend\n", "no op"},
	{"pam_spotify-request 1\nop = jump\nend\n", "op must be open"},
	{"pam_spotify-request 1\nop = close\nend\n", "op must be open"},
	{"pam_spotify-request 1\nop = open\nop = open\nend\n", "op is repeated"},
	{"pam_spotify-request 1\nop = open\ntimeout=3\nend\n", "not 'key = value'"},
	{"pam_spotify-request 1\nop = open\ntimeout = 3\ntimeout = 4\nend\n", "duplicate key"},
	{"pam_spotify-request 1\nop = open\nflow = implicit\nend\n", "implicit"},
	/* an old module's secret is refused, not taken */
	{"pam_spotify-request 1\nop = open\nsecret = a\nend\n", "unknown key 'secret'"},
	{"pam_spotify-request 1\nop = open\nservice = /tmp/x.sock\nend\n",
	 "service must be a socket in"},
	{"pam_spotify-request 1\nop = open\nservice = " PS_RUNDIR "/../x\nend\n",
	 "service must be a socket in"},
	{"pam_spotify-request 1\nop = open\nwhat = ever\nend\n", "unknown key 'what'"},
	{"pam_spotify-request 1\nop = open\ninteractive = maybe\nend\n",
	 "interactive must be yes or no"},
	/* a carriage return cannot smuggle a second setting into one line */
	{"pam_spotify-request 1\nop = open\nredirect_uri = http://127.0.0.1/cb\rca_file = "
	 "/x\nend\n",
	 "request: the value of 'redirect_uri' holds a control character (0x0d)"},
	{"pam_spotify-request 1\nop = open\nclient_secret_file = /s\x1b[2J\nend\n",
	 "request: the value of 'client_secret_file' holds a control character (0x1b)"},
};

static void test_bad_requests(void **state)
{
	char err[PS_ERR_MAX];
	struct ps_request req;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad_reqs) / sizeof(bad_reqs[0]); i++) {
		err[0] = '\0';
		if (ps_request_parse(&req, bad_reqs[i].text, strlen(bad_reqs[i].text), err,
				     sizeof(err)) == 0)
			fail_msg("accepted: %s", bad_reqs[i].text);
		if (!strstr(err, bad_reqs[i].expect))
			fail_msg("for %s: got '%s', want '%s'", bad_reqs[i].text, err,
				 bad_reqs[i].expect);
	}
}

static void test_nul_and_long_line(void **state)
{
	static const char nul[] = "pam_spotify-request 1\nop = open\0\nend\n";
	char big[PS_REQUEST_MAX], err[PS_ERR_MAX];
	struct ps_request req;
	int n;

	(void)state;
	assert_int_equal(ps_request_parse(&req, nul, sizeof(nul) - 1, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "NUL"));
	n = snprintf(big, sizeof(big), "pam_spotify-request 1\nop = open\nscopes = ");
	memset(big + n, 'a', 6000);
	memcpy(big + n + 6000, "\nend\n", 5);
	assert_int_equal(ps_request_parse(&req, big, (size_t)n + 6005, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "too long"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),	  cmocka_unit_test(test_app_uid),
		cmocka_unit_test(test_format_overflow),	  cmocka_unit_test(test_bad_requests),
		cmocka_unit_test(test_nul_and_long_line),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
