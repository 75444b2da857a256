/* test_config.c: the pam_spotify.conf parser, module arguments and their errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "pam/config.h"

static int parse(struct ps_config *cfg, const char *text, char *err)
{
	ps_config_init(cfg);
	return ps_config_parse_text(cfg, "test.conf", text, strlen(text), err, PS_ERR_MAX);
}

static void test_defaults(void **state)
{
	struct ps_config cfg;
	char err[PS_ERR_MAX];

	(void)state;
	assert_int_equal(parse(&cfg, "client_id = abc\nclient_secret_file = /etc/s\n", err), 0);
	assert_int_equal(ps_config_finish(&cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.flow, PS_FLOW_CLIENT_CREDENTIALS);
	assert_int_equal(cfg.keyring, PS_KEYRING_USER);
	assert_int_equal(cfg.timeout, 10);
	assert_int_equal(cfg.connect_timeout, 5);
	assert_true(cfg.remove_on_close);
	assert_string_equal(cfg.token_url, "https://accounts.spotify.com/api/token");
	assert_string_equal(cfg.scopes, "");
	assert_string_equal(cfg.app_user, "_pam_spotify");
	assert_int_equal(cfg.app_uid, 0);
	assert_int_equal(parse(&cfg, "app_user = svc-spotify_1.x\n", err), 0);
	assert_string_equal(cfg.app_user, "svc-spotify_1.x");
}

static void test_full_file(void **state)
{
	static const char text[] = "# pam_spotify.conf\n"
				   "\n"
				   "   flow = client_credentials\n"
				   "client_id=0123456789abcdef0123456789abcdef\n"
				   "client_secret_file = /etc/security/pam_spotify.secret\r\n"
				   "scopes =  user-read-email   playlist-read-private \n"
				   "accounts_url = https://127.0.0.1:8443/\n"
				   "keyring = session\n"
				   "timeout = 30\n"
				   "connect_timeout = 3\n"
				   "remove_on_close = no\n"
				   "\t# indented comment\n"
				   "ca_file = /etc/ssl/test-ca.pem"; /* no final newline */
	struct ps_config cfg;
	char err[PS_ERR_MAX];

	(void)state;
	assert_int_equal(parse(&cfg, text, err), 0);
	assert_int_equal(ps_config_finish(&cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg.client_id, "0123456789abcdef0123456789abcdef");
	assert_string_equal(cfg.client_secret_file, "/etc/security/pam_spotify.secret");
	assert_string_equal(cfg.scopes, "user-read-email playlist-read-private");
	assert_string_equal(cfg.token_url, "https://127.0.0.1:8443/api/token");
	assert_int_equal(cfg.keyring, PS_KEYRING_SESSION);
	assert_int_equal(cfg.timeout, 30);
	assert_int_equal(cfg.connect_timeout, 3);
	assert_false(cfg.remove_on_close);
	assert_string_equal(cfg.ca_file, "/etc/ssl/test-ca.pem");
}

static void test_user_flows(void **state)
{
	struct ps_config cfg;
	char err[PS_ERR_MAX];

	(void)state;
	/* pkce: a public client, no secret file; authorize_url derived; default redirect_uri */
	assert_int_equal(parse(&cfg, "flow = pkce\nclient_id = abc\nenroll = never\n", err), 0);
	assert_int_equal(ps_config_finish(&cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.flow, PS_FLOW_PKCE);
	assert_int_equal(cfg.enroll, PS_ENROLL_NEVER);
	assert_string_equal(cfg.authorize_url, "https://accounts.spotify.com/authorize");
	assert_string_equal(cfg.redirect_uri, "http://127.0.0.1/callback");
	/* authorization_code needs the secret */
	assert_int_equal(parse(&cfg, "flow = authorization_code\nclient_id = abc\n", err), 0);
	assert_int_equal(ps_config_finish(&cfg, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "flow authorization_code needs client_secret_file"));
	/* explicit URLs and a fixed port on [::1] */
	assert_int_equal(parse(&cfg,
			       "flow = authorization_code\nclient_id = abc\n"
			       "client_secret_file = /s\n"
			       "authorize_url = https://127.0.0.1:9/auth\n"
			       "redirect_uri = http://[::1]:8888/cb\n",
			       err),
			 0);
	assert_int_equal(ps_config_finish(&cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg.authorize_url, "https://127.0.0.1:9/auth");
	assert_string_equal(cfg.redirect_uri, "http://[::1]:8888/cb");
	assert_int_equal(cfg.enroll, PS_ENROLL_PROMPT);
}

static void test_token_url_overrides(void **state)
{
	struct ps_config cfg;
	char err[PS_ERR_MAX];

	(void)state;
	assert_int_equal(parse(&cfg,
			       "client_id = a\nclient_secret_file = /s\n"
			       "token_url = http://127.0.0.1:9/oauth/token\n",
			       err),
			 0);
	assert_int_equal(ps_config_finish(&cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg.token_url, "http://127.0.0.1:9/oauth/token");
}

/* Each bad file gives an error that names the file, the line and the problem. */
struct bad_case {
	const char *text;
	const char *expect; /* substring of the error */
};

static const struct bad_case bad_cases[] = {
	{"frobnicate = 1\n", "test.conf:1: unknown key 'frobnicate'"},
	{"\n\nscope = a\n", "test.conf:3: unknown key 'scope' (did you mean 'scopes'?)"},
	{"client_secret = hunter2\n", "the secret never goes in this file"},
	{"client_id = a\nclient_id = b\n",
	 "test.conf:2: duplicate key 'client_id' (first set on line 1)"},
	{"flow = implicit\n", "Spotify removed the implicit grant; use flow = pkce"},
	{"flow = password\n", "flow must be client_credentials, pkce or authorization_code"},
	{"redirect_uri = http://localhost:8888/callback\n",
	 "may not use localhost: Spotify refuses it"},
	{"redirect_uri = https://127.0.0.1/callback\n", "redirect_uri must be http://127.0.0.1"},
	{"redirect_uri = http://10.1.1.1/callback\n", "must point at the loopback address"},
	{"redirect_uri = http://127.0.0.1:99999/cb\n", "has a bad port"},
	{"redirect_uri = http://127.0.0.1:/cb\n", "has a bad port"},
	{"redirect_uri = http://127.0.0.1\n", "needs a path"},
	{"redirect_uri = http://127.0.0.1/cb?x=1\n", "needs a path"},
	{"enroll = always\n", "enroll must be prompt or never"},
	{"refresh_margin = 0\n", "refresh_margin must be a whole number of seconds from 1 to 3600"},
	{"client_id = a b\n", "client_id may hold only"},
	{"client_id =\n", "empty value for 'client_id'"},
	{"just some words\n", "test.conf:1: expected 'key = value'"},
	{"= value\n", "expected 'key = value'"},
	{"timeout = 0\n", "timeout must be a whole number of seconds from 1 to 300"},
	{"timeout = 301\n", "from 1 to 300"},
	{"timeout = -5\n", "from 1 to 300"},
	{"timeout = 10s\n", "not '10s'"},
	{"timeout = 99999999999999999999999\n", "from 1 to 300"},
	{"connect_timeout = x\n", "connect_timeout must be"},
	{"keyring = thread\n", "keyring must be user, session or persistent"},
	{"remove_on_close = maybe\n", "remove_on_close must be yes or no"},
	{"accounts_url = http://accounts.spotify.com\n",
	 "plain http:// is only allowed to a loopback"},
	{"accounts_url = http://10.0.0.1\n", "only allowed to a loopback"},
	{"token_url = ftp://127.0.0.1/\n", "not an absolute https:// URL"},
	{"token_url = https://user@evil/\n", "not an absolute https:// URL"},
	{"token_url = https://a b/\n", "space or control character"},
	{"client_secret_file = relative/path\n", "client_secret_file must be an absolute path"},
	{"ca_file = ca.pem\n", "ca_file must be an absolute path"},
	{"scopes = a \"b\"\n", "scopes must be scope names"},
	{"scopes = a\\b\n", "scopes must be scope names"},
	{"authorize_url = http://example.com/authorize\n", "only allowed to a loopback"},
	{"app_user = root\n", "app_user 'root' is refused"},
	{"app_user = -x\n", "app_user '-x' is refused"},
	{"app_user = a:b\n", "app_user must be a user name"},
	{"app_user = a b\n", "app_user must be a user name"},
};

static void test_bad_files(void **state)
{
	struct ps_config cfg;
	char err[PS_ERR_MAX];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		err[0] = '\0';
		if (parse(&cfg, bad_cases[i].text, err) == 0)
			fail_msg("accepted: %s", bad_cases[i].text);
		if (!strstr(err, bad_cases[i].expect))
			fail_msg("for %s: got '%s', want '%s'", bad_cases[i].text, err,
				 bad_cases[i].expect);
	}
}

static void test_nul_and_long_lines(void **state)
{
	struct ps_config cfg;
	char err[PS_ERR_MAX], text[8192];

	(void)state;
	ps_config_init(&cfg);
	assert_int_equal(
		ps_config_parse_text(&cfg, "n.conf", "client_id = a\0b\n", 15, err, sizeof(err)),
		-1);
	assert_non_null(strstr(err, "NUL byte"));
	memset(text, 'a', sizeof(text));
	memcpy(text, "scopes = ", 9);
	ps_config_init(&cfg);
	assert_int_equal(ps_config_parse_text(&cfg, "l.conf", text, sizeof(text), err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "l.conf:1: line longer than"));
	/* a long but legal line whose value does not fit the field */
	memset(text, 'a', 2000);
	memcpy(text, "scopes = ", 9);
	text[2000] = '\n';
	ps_config_init(&cfg);
	assert_int_equal(ps_config_parse_text(&cfg, "l.conf", text, 2001, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "scopes is longer than"));
}

static void test_finish_errors(void **state)
{
	struct ps_config cfg;
	char err[PS_ERR_MAX];

	(void)state;
	assert_int_equal(parse(&cfg, "client_secret_file = /s\n", err), 0);
	assert_int_equal(ps_config_finish(&cfg, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "client_id is not set"));

	assert_int_equal(parse(&cfg, "client_id = a\n", err), 0);
	assert_int_equal(ps_config_finish(&cfg, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "needs client_secret_file"));

	assert_int_equal(parse(&cfg,
			       "client_id = a\nclient_secret_file = /s\ntimeout = 2\n"
			       "connect_timeout = 5\n",
			       err),
			 0);
	assert_int_equal(ps_config_finish(&cfg, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "connect_timeout (5 s) is longer than timeout (2 s)"));
}

static void test_module_args(void **state)
{
	const char *args[] = {"config=/tmp/x.conf", "debug", "nowait", "timeout=3",
			      "keyring=persistent"};
	const char *dup[] = {"timeout=3", "timeout=4"};
	const char *bad[] = {"wibble"};
	struct ps_config cfg;
	char err[PS_ERR_MAX];

	(void)state;
	assert_string_equal(ps_config_arg_path(5, args), "/tmp/x.conf");
	assert_null(ps_config_arg_path(1, bad));
	/* the file says timeout = 20; the argument wins without a duplicate error */
	assert_int_equal(parse(&cfg, "timeout = 20\n", err), 0);
	assert_int_equal(ps_config_from_args(&cfg, 5, args, err, sizeof(err)), 0);
	assert_true(cfg.debug);
	assert_true(cfg.nowait);
	assert_int_equal(cfg.timeout, 3);
	assert_int_equal(cfg.keyring, PS_KEYRING_PERSISTENT);
	assert_int_equal(ps_config_from_args(&cfg, 2, dup, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "duplicate key 'timeout'"));
	assert_int_equal(ps_config_from_args(&cfg, 1, bad, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "module argument 'wibble'"));
}

static void test_load_file_checks(void **state)
{
	char dir[] = "/tmp/ps-conf-XXXXXX", path[64], err[PS_ERR_MAX];
	struct ps_config cfg;
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/p.conf", dir);
	ps_config_init(&cfg);
	assert_int_equal(ps_config_load(&cfg, path, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "cannot open"));
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("client_id = abc\n", f);
	fclose(f);
	chmod(path, 0644);
	ps_config_init(&cfg);
	assert_int_equal(ps_config_load(&cfg, path, err, sizeof(err)), 0);
	assert_string_equal(cfg.client_id, "abc");
	chmod(path, 0666);
	ps_config_init(&cfg);
	assert_int_equal(ps_config_load(&cfg, path, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "writable by others"));
	unlink(path);
	ps_config_init(&cfg);
	assert_int_equal(ps_config_load(&cfg, dir, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not a regular file"));
	rmdir(dir);
}

/* The example shipped with the package is a valid configuration. */
static void test_example_file(void **state)
{
	const char *top = getenv("top_srcdir");
	char path[4096], err[PS_ERR_MAX];
	struct ps_config cfg;

	(void)state;
	snprintf(path, sizeof(path), "%s/pam/pam_spotify.conf.example", top ? top : ".");
	ps_config_init(&cfg);
	if (ps_config_load(&cfg, path, err, sizeof(err)) < 0)
		fail_msg("%s", err);
	assert_int_equal(ps_config_finish(&cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg.token_url, "https://accounts.spotify.com/api/token");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_full_file),
		cmocka_unit_test(test_token_url_overrides),
		cmocka_unit_test(test_user_flows),
		cmocka_unit_test(test_bad_files),
		cmocka_unit_test(test_nul_and_long_lines),
		cmocka_unit_test(test_finish_errors),
		cmocka_unit_test(test_module_args),
		cmocka_unit_test(test_load_file_checks),
		cmocka_unit_test(test_example_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
