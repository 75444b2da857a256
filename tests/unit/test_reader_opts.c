/*
 * test_reader_opts.c: spotify-token's command line, as a table of argv -> result or message.
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "keyring/reader_opts.h"
#include "common/config.h"

#define MAX_ARGS 6

struct row {
	const char *argv[MAX_ARGS]; /* after the program name, NULL-terminated */
	int rc;
	enum ps_reader_cmd cmd;
	enum ps_reader_mode mode;
	unsigned long min_valid;
	bool min_valid_set;
	const char *config; /* expected config_path, NULL for the default */
	const char *err;    /* expected message when rc is -1 */
};

#define SEE  "; see 'spotify-token --help'"
#define MINV "spotify-token: --min-valid needs a whole number of seconds from 0 to 2147483647, not "

static const struct row rows[] = {
	/* the output modes */
	{{NULL}, 0, PS_CMD_READ, PS_MODE_TOKEN, 0, false, NULL, NULL},
	{{"--header"}, 0, PS_CMD_READ, PS_MODE_HEADER, 0, false, NULL, NULL},
	{{"--json"}, 0, PS_CMD_READ, PS_MODE_JSON, 0, false, NULL, NULL},
	{{"--env"}, 0, PS_CMD_READ, PS_MODE_ENV, 0, false, NULL, NULL},
	{{"--status"}, 0, PS_CMD_READ, PS_MODE_STATUS, 0, false, NULL, NULL},
	{{"--json", "--json"}, 0, PS_CMD_READ, PS_MODE_JSON, 0, false, NULL, NULL},
	{{"--json", "--header"},
	 -1,
	 0,
	 0,
	 0,
	 false,
	 NULL,
	 "spotify-token: --json and --header cannot be used together; choose one output mode"},
	{{"--status", "--env"},
	 -1,
	 0,
	 0,
	 0,
	 false,
	 NULL,
	 "spotify-token: --status and --env cannot be used together; choose one output mode"},
	/* --min-valid */
	{{"--min-valid=60"}, 0, PS_CMD_READ, PS_MODE_TOKEN, 60, true, NULL, NULL},
	{{"--min-valid", "60", "--header"}, 0, PS_CMD_READ, PS_MODE_HEADER, 60, true, NULL, NULL},
	{{"--json", "--min-valid=0"}, 0, PS_CMD_READ, PS_MODE_JSON, 0, true, NULL, NULL},
	{{"--min-valid=2147483647"}, 0, PS_CMD_READ, PS_MODE_TOKEN, 2147483647UL, true, NULL, NULL},
	{{"--min-valid=2147483648"}, -1, 0, 0, 0, false, NULL, MINV "'2147483648'"},
	{{"--min-valid=-1"}, -1, 0, 0, 0, false, NULL, MINV "'-1'"},
	{{"--min-valid=+1"}, -1, 0, 0, 0, false, NULL, MINV "'+1'"},
	{{"--min-valid=1s"}, -1, 0, 0, 0, false, NULL, MINV "'1s'"},
	{{"--min-valid= 1"}, -1, 0, 0, 0, false, NULL, MINV "' 1'"},
	{{"--min-valid=0x10"}, -1, 0, 0, 0, false, NULL, MINV "'0x10'"},
	{{"--min-valid=99999999999999999999999"},
	 -1,
	 0,
	 0,
	 0,
	 false,
	 NULL,
	 MINV "'99999999999999999999999'"},
	{{"--min-valid", "--json"}, -1, 0, 0, 0, false, NULL, MINV "'--json'"},
	{{"--min-valid="},
	 -1,
	 0,
	 0,
	 0,
	 false,
	 NULL,
	 "spotify-token: --min-valid needs a number of seconds, e.g. --min-valid=60"},
	{{"--min-valid"},
	 -1,
	 0,
	 0,
	 0,
	 false,
	 NULL,
	 "spotify-token: --min-valid needs a number of seconds, e.g. --min-valid=60"},
	{{"--min-valid=1", "--min-valid=2"},
	 -1,
	 0,
	 0,
	 0,
	 false,
	 NULL,
	 "spotify-token: --min-valid given twice"},
	{{"--min-validity=1"},
	 -1,
	 0,
	 0,
	 0,
	 false,
	 NULL,
	 "spotify-token: unknown option '--min-validity'" SEE},
	/* --config */
	{{"--config=/etc/x.conf"}, 0, PS_CMD_READ, PS_MODE_TOKEN, 0, false, "/etc/x.conf", NULL},
	{{"--config", "rel.conf", "--status"},
	 0,
	 PS_CMD_READ,
	 PS_MODE_STATUS,
	 0,
	 false,
	 "rel.conf",
	 NULL},
	{{"--config="},
	 -1,
	 0,
	 0,
	 0,
	 false,
	 NULL,
	 "spotify-token: --config needs a file, e.g. --config=/etc/security/pam_spotify.conf"},
	{{"--config"},
	 -1,
	 0,
	 0,
	 0,
	 false,
	 NULL,
	 "spotify-token: --config needs a file, e.g. --config=/etc/security/pam_spotify.conf"},
	{{"--config=a", "--config=b"},
	 -1,
	 0,
	 0,
	 0,
	 false,
	 NULL,
	 "spotify-token: --config given twice"},
	/* help and version win once the line parses */
	{{"--help"}, 0, PS_CMD_HELP, PS_MODE_TOKEN, 0, false, NULL, NULL},
	{{"--json", "--help"}, 0, PS_CMD_HELP, PS_MODE_JSON, 0, false, NULL, NULL},
	{{"--version"}, 0, PS_CMD_VERSION, PS_MODE_TOKEN, 0, false, NULL, NULL},
	{{"--version", "--help"}, 0, PS_CMD_HELP, PS_MODE_TOKEN, 0, false, NULL, NULL},
	{{"login", "--help"}, 0, PS_CMD_HELP, PS_MODE_TOKEN, 0, false, NULL, NULL},
	{{"--help", "--foo"},
	 -1,
	 0,
	 0,
	 0,
	 false,
	 NULL,
	 "spotify-token: unknown option '--foo'" SEE},
	{{"--help=x"}, -1, 0, 0, 0, false, NULL, "spotify-token: unknown option '--help'" SEE},
	/* unknown options: named without their value, never echoing it */
	{{"--foo"}, -1, 0, 0, 0, false, NULL, "spotify-token: unknown option '--foo'" SEE},
	{{"--token=BQDsecret"},
	 -1,
	 0,
	 0,
	 0,
	 false,
	 NULL,
	 "spotify-token: unknown option '--token'" SEE},
	{{"-h"}, -1, 0, 0, 0, false, NULL, "spotify-token: unknown option '-h'" SEE},
	{{"--JSON"}, -1, 0, 0, 0, false, NULL, "spotify-token: unknown option '--JSON'" SEE},
	{{"--json=yes"}, -1, 0, 0, 0, false, NULL, "spotify-token: unknown option '--json'" SEE},
	{{"--\x1b[31m"}, -1, 0, 0, 0, false, NULL, "spotify-token: unknown option '--?[31m'" SEE},
	/* subcommands: the helper runs them; they take --config, and login --timeout */
	{{"login"}, 0, PS_CMD_LOGIN, 0, 0, false, NULL, NULL},
	{{"logout", "--config=/c"}, 0, PS_CMD_LOGOUT, 0, 0, false, "/c", NULL},
	{{"login", "--timeout=30"}, 0, PS_CMD_LOGIN, 0, 0, false, NULL, NULL},
	{{"--json", "refresh"},
	 -1,
	 PS_CMD_REFRESH,
	 PS_MODE_JSON,
	 0,
	 false,
	 NULL,
	 "spotify-token: refresh takes no output option or --min-valid" SEE},
	{{"refresh", "--timeout=3"},
	 -1,
	 PS_CMD_REFRESH,
	 0,
	 0,
	 false,
	 NULL,
	 "spotify-token: --timeout goes with login only" SEE},
	{{"--timeout=3"},
	 -1,
	 0,
	 0,
	 0,
	 false,
	 NULL,
	 "spotify-token: --timeout goes with login only" SEE},
	{{"login", "--timeout=0"},
	 -1,
	 PS_CMD_LOGIN,
	 0,
	 0,
	 false,
	 NULL,
	 "spotify-token: --timeout needs a whole number of seconds from 1 to 3600, not '0'"},
	{{"--", "login"}, 0, PS_CMD_LOGIN, 0, 0, false, NULL, NULL},
	{{"token"}, -1, 0, 0, 0, false, NULL, "spotify-token: unknown command 'token'" SEE},
	{{"-"}, -1, 0, 0, 0, false, NULL, "spotify-token: unknown command '-'" SEE},
	{{"--", "--json"}, -1, 0, 0, 0, false, NULL, "spotify-token: unknown command '--json'" SEE},
	{{"login", "logout"},
	 -1,
	 PS_CMD_LOGIN,
	 0,
	 0,
	 false,
	 NULL,
	 "spotify-token: unexpected argument 'logout'" SEE},
};

static int argv_of(const struct row *r, char **argv)
{
	int argc = 0, k;

	argv[argc++] = (char *)"spotify-token";
	for (k = 0; k < MAX_ARGS - 1 && r->argv[k]; k++)
		argv[argc++] = (char *)r->argv[k];
	argv[argc] = NULL;
	return argc;
}

static void check_row(size_t i, const struct row *r)
{
	struct ps_reader_opts opts;
	char *argv[MAX_ARGS + 1];
	char err[PS_ERR_MAX];
	int argc = argv_of(r, argv), rc;

	memset(err, 'x', sizeof(err));
	rc = ps_reader_opts_parse(&opts, argc, argv, err, sizeof(err));
	if (rc != r->rc)
		fail_msg("row %zu (%s ...): rc %d, want %d (%s)", i, argc > 1 ? argv[1] : "", rc,
			 r->rc, rc ? err : "");
	if (rc < 0) {
		if (strcmp(err, r->err) != 0)
			fail_msg("row %zu: message\n  got  %s\n  want %s", i, err, r->err);
		if (r->cmd != PS_CMD_READ)
			assert_int_equal(opts.cmd, r->cmd);
		return;
	}
	assert_string_equal(err, "");
	assert_int_equal(opts.cmd, r->cmd);
	assert_int_equal(opts.mode, r->mode);
	assert_int_equal(opts.min_valid, r->min_valid);
	assert_int_equal(opts.min_valid_set, r->min_valid_set);
	if (r->config)
		assert_string_equal(opts.config_path, r->config);
	else
		assert_null(opts.config_path);
}

static void test_table(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		check_row(i, &rows[i]);
}

static void test_long_argument_is_cut_in_message(void **state)
{
	char arg[300], *argv[3] = {(char *)"spotify-token", arg, NULL};
	struct ps_reader_opts opts;
	char err[PS_ERR_MAX];

	(void)state;
	memset(arg, 'a', sizeof(arg) - 1);
	arg[sizeof(arg) - 1] = '\0';
	assert_int_equal(ps_reader_opts_parse(&opts, 2, argv, err, sizeof(err)), -1);
	assert_true(strlen(err) < 150);
}

static void test_small_error_buffer_is_terminated(void **state)
{
	char *argv[3] = {(char *)"spotify-token", (char *)"--nope", NULL};
	struct ps_reader_opts opts;
	char err[16];

	(void)state;
	assert_int_equal(ps_reader_opts_parse(&opts, 2, argv, err, sizeof(err)), -1);
	assert_string_equal(err, "spotify-token: ");
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(ps_reader_mode_option(PS_MODE_JSON), "--json");
	assert_string_equal(ps_reader_mode_option(PS_MODE_TOKEN), "");
	assert_string_equal(ps_reader_cmd_name(PS_CMD_REFRESH), "refresh");
	assert_null(ps_reader_cmd_name(PS_CMD_READ));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_long_argument_is_cut_in_message),
		cmocka_unit_test(test_small_error_buffer_is_terminated),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
