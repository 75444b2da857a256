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

#include "common/config.h"

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
	{"redirect_uri = http://127.0.0.1/a b\n", "redirect_uri may not hold spaces, control or"},
	/* found by tests/fuzz/fuzz_callback: the pasted-URL error quoted it */
	{"redirect_uri = http://127.0.0.1/a\rb\n", "'redirect_uri' holds a control character (0x0d)"},
	/* a control byte in a value is refused and named by its code, never echoed */
	{"keyring = us\x1b[2Jer\n", "'keyring' holds a control character (0x1b)"},
	{"flow = pk\rce\n", "'flow' holds a control character (0x0d)"},
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
	/* quoted as every other bad value: printable ASCII only, at most 64 characters */
	{"app_user = a\xc3\xa9" "b\n",
	 "test.conf:1: app_user must be a user name (letters, digits, _ . -), not 'a??b'"},
	{"app_user = -xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n",
	 "app_user '-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...' is refused"},
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

/* ---- hostile values: every key x {empty, overlong, wrong type, control characters, NUL} ---- */

#define LONG_LEN 5000 /* longer than any field, and than a line of the file */

struct key_case {
	const char *key;
	const char *good;      /* a valid value */
	const char *wrong;     /* a value of the wrong kind */
	const char *wrong_err; /* the exact error for it */
	const char *long_head; /* the overlong value: this, then fill up to LONG_LEN characters */
	char fill;
	const char *long_err; /* the exact error; @V@ is the value as quoted (64 chars + "...") */
};

#define SECONDS_300  "must be a whole number of seconds from 1 to 300, not "
#define URL_NO_HOST  ": not an absolute https:// URL with a host"
#define LONGER(k, n) k " is longer than " #n " characters"

static const struct key_case key_cases[] = {
	{"flow", "pkce", "42",
	 "flow must be client_credentials, pkce or authorization_code, not '42'", "", 'a',
	 "flow must be client_credentials, pkce or authorization_code, not '@V@'"},
	{"client_id", "abc", "abc/def",
	 "client_id may hold only letters, digits and -._~ (copy it from the Spotify developer "
	 "dashboard)",
	 "", 'a',
	 "client_id may not start with '.' or be longer than 240 characters (it names the "
	 "refresh-token file)"},
	{"client_secret_file", "/etc/s", "secret.txt",
	 "client_secret_file must be an absolute path, not 'secret.txt'", "/", 'a',
	 LONGER("client_secret_file", 4095)},
	{"scopes", "a\tb", "a \"b\"",
	 "scopes must be scope names separated by spaces (no quotes, backslashes or control "
	 "characters)",
	 "", 'a', LONGER("scopes", 1023)},
	{"accounts_url", "https://127.0.0.1:4443", "42", "accounts_url '42'" URL_NO_HOST,
	 "https://", 'a', LONGER("accounts_url", 1023)},
	{"token_url", "https://a.example/t", "yes", "token_url 'yes'" URL_NO_HOST, "https://", 'a',
	 LONGER("token_url", 1023)},
	{"keyring", "session", "1", "keyring must be user, session or persistent, not '1'", "", 'a',
	 "keyring must be user, session or persistent, not '@V@'"},
	{"timeout", "7", "ten", "timeout " SECONDS_300 "'ten'", "", '9',
	 "timeout " SECONDS_300 "'@V@'"},
	{"connect_timeout", "3", "1.5", "connect_timeout " SECONDS_300 "'1.5'", "", '9',
	 "connect_timeout " SECONDS_300 "'@V@'"},
	{"remove_on_close", "no", "2", "remove_on_close must be yes or no, not '2'", "", 'y',
	 "remove_on_close must be yes or no, not '@V@'"},
	{"ca_file", "/etc/ca.pem", "ca.pem", "ca_file must be an absolute path, not 'ca.pem'", "/",
	 'a', LONGER("ca_file", 4095)},
	{"authorize_url", "https://a.example/auth", "/authorize",
	 "authorize_url '/authorize'" URL_NO_HOST, "https://", 'a', LONGER("authorize_url", 1023)},
	{"redirect_uri", "http://[::1]:8080/cb", "8080",
	 "redirect_uri must be http://127.0.0.1[:port]/path or http://[::1][:port]/path, not "
	 "'8080'",
	 "http://127.0.0.1/", 'a', LONGER("redirect_uri", 1023)},
	{"enroll", "never", "yes", "enroll must be prompt or never, not 'yes'", "", 'a',
	 "enroll must be prompt or never, not '@V@'"},
	{"refresh_margin", "600", "-1",
	 "refresh_margin must be a whole number of seconds from 1 to 3600, not '-1'", "", '9',
	 "refresh_margin must be a whole number of seconds from 1 to 3600, not '@V@'"},
	{"default_expires_in", "7200", "59",
	 "default_expires_in must be a whole number of seconds from 60 to 604800 (a week), not '59'",
	 "", '9',
	 "default_expires_in must be a whole number of seconds from 60 to 604800 (a week), not "
	 "'@V@'"},
	{"app_user", "svc_spotify", "a/b",
	 "app_user must be a user name (letters, digits, _ . -), not 'a/b'", "", 'a',
	 LONGER("app_user", 63)},
};

#define NCASES (sizeof(key_cases) / sizeof(key_cases[0]))

static const struct key_case *key_case_find(const char *key)
{
	size_t i;

	for (i = 0; i < NCASES; i++)
		if (!strcmp(key_cases[i].key, key))
			return &key_cases[i];
	return NULL;
}

/* A valid configuration with every key set, so that any change would show. */
static void base_config(struct ps_config *cfg)
{
	static const char text[] = "flow = authorization_code\nclient_id = base\n"
				   "client_secret_file = /base/secret\nscopes = base\n"
				   "accounts_url = https://base.example\nkeyring = persistent\n"
				   "timeout = 20\nconnect_timeout = 4\nremove_on_close = yes\n"
				   "ca_file = /base/ca.pem\nredirect_uri = http://127.0.0.1/base\n"
				   "enroll = prompt\nrefresh_margin = 100\n"
				   "default_expires_in = 900\n";
	char err[PS_ERR_MAX];

	ps_config_init(cfg);
	if (ps_config_parse_text(cfg, "base.conf", text, strlen(text), err, sizeof(err)) < 0)
		fail_msg("base config: %s", err);
}

/* s with every "@V@" replaced by v, into out. */
static void fill_in(char *out, size_t outlen, const char *s, const char *v)
{
	const char *at = strstr(s, "@V@");

	if (!at)
		snprintf(out, outlen, "%s", s);
	else
		snprintf(out, outlen, "%.*s%s%s", (int)(at - s), s, v, at + 3);
}

/* The overlong value of a case (LONG_LEN characters) and how messages quote it. */
static void long_value(const struct key_case *c, char *v, char *shown)
{
	size_t h = strlen(c->long_head);

	memcpy(v, c->long_head, h);
	memset(v + h, c->fill, LONG_LEN - h);
	v[LONG_LEN] = '\0';
	snprintf(shown, 68, "%.64s...", v);
}

/* Expect ps_config_set(key, value) to fail with exactly want, leaving cfg as it was. */
static void expect_set_refused(const char *key, const char *value, const char *want)
{
	struct ps_config cfg, before;
	char err[PS_ERR_MAX] = "";

	base_config(&cfg);
	before = cfg;
	if (ps_config_set(&cfg, key, value, err, sizeof(err)) == 0)
		fail_msg("%s: accepted '%.40s'", key, value);
	if (strcmp(err, want) != 0)
		fail_msg("%s: got '%s', want '%s'", key, err, want);
	assert_true(strlen(err) < sizeof(err) - 1); /* nothing cut off the end */
	if (memcmp(&cfg, &before, sizeof(cfg)) != 0)
		fail_msg("%s: a refused value changed the configuration", key);
}

/* Expect a file text to fail with exactly want, leaving a loaded configuration as it was. */
static void expect_text_refused(const char *text, size_t len, const char *want)
{
	struct ps_config cfg, before;
	char err[PS_ERR_MAX] = "";

	base_config(&cfg);
	before = cfg;
	if (ps_config_parse_text(&cfg, "test.conf", text, len, err, sizeof(err)) == 0)
		fail_msg("accepted: %.60s", text);
	if (strcmp(err, want) != 0)
		fail_msg("for '%.60s': got '%s', want '%s'", text, err, want);
	if (memcmp(&cfg, &before, sizeof(cfg)) != 0)
		fail_msg("'%.60s': the lines before the bad one were applied", text);
}

/* Expect module arguments to fail with exactly want, leaving the configuration as it was. */
static void expect_args_refused(int argc, const char **argv, const char *want)
{
	struct ps_config cfg, before;
	char err[PS_ERR_MAX] = "";

	base_config(&cfg);
	before = cfg;
	if (ps_config_from_args(&cfg, argc, argv, err, sizeof(err)) == 0)
		fail_msg("accepted argument %.60s", argv[argc - 1]);
	if (strcmp(err, want) != 0)
		fail_msg("for '%.60s': got '%s', want '%s'", argv[argc - 1], err, want);
	if (memcmp(&cfg, &before, sizeof(cfg)) != 0)
		fail_msg("'%.60s': the arguments before the bad one were applied", argv[argc - 1]);
}

/* Every key of the table in config.c has a case, and each case's good value is accepted. */
static void test_every_key_has_a_case(void **state)
{
	struct ps_config cfg;
	char err[PS_ERR_MAX];
	unsigned all = 0;
	size_t i;

	(void)state;
	for (i = 0; ps_config_key_name(i); i++) {
		const struct key_case *c = key_case_find(ps_config_key_name(i));

		if (!c)
			fail_msg("key '%s' has no row in key_cases", ps_config_key_name(i));
		ps_config_init(&cfg);
		if (ps_config_set(&cfg, c->key, c->good, err, sizeof(err)) < 0)
			fail_msg("%s = %s: %s", c->key, c->good, err);
		assert_int_equal(all & cfg.set, 0);
		all |= cfg.set;
	}
	assert_int_equal(i, NCASES);
	assert_int_equal(all, (1u << NCASES) - 1);
}

static void test_every_key_empty(void **state)
{
	char text[128], want[2 * PS_ERR_MAX], arg[64], why[PS_ERR_MAX];
	const char *argv[2] = {"timeout=9"};
	size_t i;

	(void)state;
	for (i = 0; i < NCASES; i++) {
		const char *k = key_cases[i].key;

		snprintf(why, sizeof(why),
			 "empty value for '%s'; remove the line to use the default", k);
		expect_set_refused(k, "", why);
		snprintf(text, sizeof(text), "timeout = 9\n%s =  \t \n", k);
		snprintf(want, sizeof(want), "test.conf:2: %s", why);
		expect_text_refused(text, strlen(text), want);
		snprintf(arg, sizeof(arg), "%s=", k);
		argv[1] = arg;
		snprintf(want, sizeof(want), "module argument '%s': %s", arg, why);
		expect_args_refused(2, argv, want);
	}
}

static void test_every_key_wrong_type(void **state)
{
	char text[256], want[PS_ERR_MAX], arg[128];
	const char *argv[2] = {"timeout=9"};
	size_t i;

	(void)state;
	for (i = 0; i < NCASES; i++) {
		const struct key_case *c = &key_cases[i];

		expect_set_refused(c->key, c->wrong, c->wrong_err);
		snprintf(text, sizeof(text), "timeout = 9\n%s = %s\n", c->key, c->wrong);
		snprintf(want, sizeof(want), "test.conf:2: %s", c->wrong_err);
		expect_text_refused(text, strlen(text), want);
		snprintf(arg, sizeof(arg), "%s=%s", c->key, c->wrong);
		argv[1] = arg;
		snprintf(want, sizeof(want), "module argument '%s': %s", arg, c->wrong_err);
		expect_args_refused(2, argv, want);
	}
}

/* 5000 characters: each source says what is too long; the advice is never cut off. */
static void test_every_key_overlong(void **state)
{
	static char v[LONG_LEN + 1], text[LONG_LEN + 64], arg[LONG_LEN + 64];
	char shown[68], want[PS_ERR_MAX];
	const char *argv[2] = {"timeout=9"};
	size_t i;

	(void)state;
	for (i = 0; i < NCASES; i++) {
		const struct key_case *c = &key_cases[i];

		long_value(c, v, shown);
		fill_in(want, sizeof(want), c->long_err, shown);
		expect_set_refused(c->key, v, want);
		snprintf(text, sizeof(text), "timeout = 9\n%s = %s\n", c->key, v);
		expect_text_refused(text, strlen(text),
				    "test.conf:2: line longer than 4096 characters");
		snprintf(arg, sizeof(arg), "%s=%s", c->key, v);
		argv[1] = arg;
		snprintf(want, sizeof(want),
			 "module argument '%.64s...' is longer than 4096 characters", arg);
		expect_args_refused(2, argv, want);
	}
}

/*
 * A newline or carriage return inside a value would start a line of its own in the request the
 * module writes for the helper: refused in every key, from every source. So is any other
 * control character but tab, and a NUL byte anywhere in a file.
 */
static void test_every_key_control_characters(void **state)
{
	static const char bad[] = {'\n', '\r', '\x1b', '\x7f', '\x01'};
	char v[256], text[512], want[2 * PS_ERR_MAX], why[PS_ERR_MAX], arg[300], quoted[300];
	const char *argv[2] = {"timeout=9"};
	size_t i, j, n;

	(void)state;
	for (i = 0; i < NCASES; i++) {
		const struct key_case *c = &key_cases[i];

		for (j = 0; j < sizeof(bad); j++) {
			snprintf(v, sizeof(v), "%s%cecret = x", c->good, bad[j]);
			snprintf(why, sizeof(why),
				 "the value of '%s' holds a control character (0x%02x); write it "
				 "on one line without control characters",
				 c->key, (unsigned char)bad[j]);
			expect_set_refused(c->key, v, why);
			snprintf(arg, sizeof(arg), "%s=%s", c->key, v);
			argv[1] = arg;
			snprintf(quoted, sizeof(quoted), "%s=%s?ecret = x", c->key, c->good);
			for (n = 0; quoted[n]; n++) /* quoted as printable ASCII */
				if ((unsigned char)quoted[n] < 0x20)
					quoted[n] = '?';
			snprintf(want, sizeof(want), "module argument '%.64s%s': %s", quoted,
				 strlen(quoted) > 64 ? "..." : "", why);
			expect_args_refused(2, argv, want);
			if (bad[j] == '\n')
				continue; /* in a file, a newline ends the line: a line of its own */
			snprintf(text, sizeof(text), "timeout = 9\n%s = %s\n", c->key, v);
			snprintf(want, sizeof(want), "test.conf:2: %s", why);
			expect_text_refused(text, strlen(text), want);
		}
		/* a NUL byte: the whole file is refused, whatever the line */
		n = (size_t)snprintf(text, sizeof(text), "timeout = 9\n%s = %s", c->key, c->good);
		memcpy(text + n, "\0x\n", 3);
		expect_text_refused(text, n + 3,
				    "test.conf: contains a NUL byte; is it a text file?");
	}
	/* a newline in a file starts a new line, which must stand on its own */
	snprintf(text, sizeof(text),
		 "timeout = 9\nredirect_uri = http://127.0.0.1/cb\nsecret = x\n");
	expect_text_refused(text, strlen(text),
			    "test.conf:3: unknown key 'secret'; see pam_spotify.conf(5)");
	/* an unknown key is quoted without its control bytes */
	snprintf(text, sizeof(text), "\x1b[31mred = 1\n");
	expect_text_refused(text, strlen(text),
			    "test.conf:1: unknown key '?[31mred'; see pam_spotify.conf(5)");
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
	assert_non_null(strstr(err, "connect_timeout (5 s) is longer than timeout (2 s): lower"));
}

/* connect_timeout unset: the smaller of 5 s and timeout, so timeout = 4 alone is a configuration */
static void test_connect_timeout_default(void **state)
{
	struct ps_config cfg;
	char err[PS_ERR_MAX];

	(void)state;
	assert_int_equal(parse(&cfg, "client_id = a\nclient_secret_file = /s\ntimeout = 4\n", err),
			 0);
	assert_int_equal(ps_config_finish(&cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.connect_timeout, 4);
	assert_int_equal(parse(&cfg, "client_id = a\nclient_secret_file = /s\ntimeout = 30\n", err),
			 0);
	assert_int_equal(ps_config_finish(&cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.connect_timeout, 5);
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

/* Load path into a configuration that already holds base; on refusal it must stay as it was. */
static int load_over_base(const char *path, char *err, size_t errlen)
{
	struct ps_config cfg, before;
	int rc;

	base_config(&cfg);
	before = cfg;
	err[0] = '\0';
	rc = ps_config_load(&cfg, path, err, errlen);
	if (rc < 0 && memcmp(&cfg, &before, sizeof(cfg)) != 0)
		fail_msg("%s: refused, but the configuration changed", path);
	return rc;
}

/*
 * The directories above the file count too: whoever may write one of them can put a file of
 * their own in its place. World- (or non-root group-) writable is refused unless sticky (/tmp).
 */
static void test_load_dir_checks(void **state)
{
	char dir[] = "/tmp/ps-conf-XXXXXX", sub[64], path[96], err[PS_ERR_MAX], want[PS_ERR_MAX];
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(sub, sizeof(sub), "%s/etc", dir);
	snprintf(path, sizeof(path), "%s/p.conf", sub);
	assert_int_equal(mkdir(sub, 0755), 0);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("client_id = abc\n", f);
	fclose(f);
	chmod(path, 0644);
	chmod(dir, 0755);
	assert_int_equal(load_over_base(path, err, sizeof(err)), 0);
	/* the file's own directory, world-writable */
	chmod(sub, 0777);
	snprintf(want, sizeof(want),
		 "%s: directory %s (mode 0777, uid %u) lets others replace the file; chown "
		 "root:root and chmod 755 it, or move the file",
		 path, sub, (unsigned)getuid());
	assert_int_equal(load_over_base(path, err, sizeof(err)), -1);
	assert_string_equal(err, want);
	/* sticky, like /tmp: others cannot replace what is not theirs */
	chmod(sub, 01777);
	assert_int_equal(load_over_base(path, err, sizeof(err)), 0);
	/* a directory higher up */
	chmod(sub, 0755);
	chmod(dir, 0757);
	assert_int_equal(load_over_base(path, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "directory /tmp/ps-conf-"));
	assert_non_null(strstr(err, "(mode 0757, uid"));
	assert_null(strstr(err, "/etc ("));
	chmod(dir, 0755);
	/* group-writable: fine for group root, not for another group */
	if (geteuid() == 0) {
		chmod(sub, 0775);
		assert_int_equal(chown(sub, 0, 0), 0);
		assert_int_equal(load_over_base(path, err, sizeof(err)), 0);
		assert_int_equal(chown(sub, 0, 3999972), 0);
		assert_int_equal(load_over_base(path, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "(mode 0775, uid 0) lets others replace the file"));
		/* owned by another user */
		assert_int_equal(chown(sub, 3999972, 0), 0);
		chmod(sub, 0755);
		assert_int_equal(load_over_base(path, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "(mode 0755, uid 3999972) lets others"));
		assert_int_equal(chown(sub, 0, 0), 0);
	} else {
		print_message("# skipped the other-owner cases: needs root\n");
	}
	/* a file others may write is refused before its directories are looked at */
	chmod(path, 0666);
	assert_int_equal(load_over_base(path, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "writable by others or owned by another user"));
	unlink(path);
	rmdir(sub);
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
		cmocka_unit_test(test_every_key_has_a_case),
		cmocka_unit_test(test_every_key_empty),
		cmocka_unit_test(test_every_key_wrong_type),
		cmocka_unit_test(test_every_key_overlong),
		cmocka_unit_test(test_every_key_control_characters),
		cmocka_unit_test(test_finish_errors),
		cmocka_unit_test(test_connect_timeout_default),
		cmocka_unit_test(test_module_args),
		cmocka_unit_test(test_load_file_checks),
		cmocka_unit_test(test_load_dir_checks),
		cmocka_unit_test(test_example_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
