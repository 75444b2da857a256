/*
 * reader_opts.c: the command line of spotify-token. Pure parsing, no I/O: each mistake becomes one
 * message for the caller to print.
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <stdio.h>
#include <string.h>

#include "keyring/reader_opts.h"
#include "common/util.h"

#define ARG_SHOWN 64 /* how much of a bad argument a message repeats */
#define SEE_HELP  "; see 'spotify-token --help'"

static const struct {
	const char *name;
	enum ps_reader_mode mode;
} modes[] = {
	{"--header", PS_MODE_HEADER},
	{"--json", PS_MODE_JSON},
	{"--env", PS_MODE_ENV},
	{"--status", PS_MODE_STATUS},
};

static const struct {
	const char *name;
	enum ps_reader_cmd cmd;
} commands[] = {
	{"login", PS_CMD_LOGIN},
	{"logout", PS_CMD_LOGOUT},
	{"refresh", PS_CMD_REFRESH},
};

/* Parser state beyond the result: what has been given, for "twice" and "together" errors. */
struct parse {
	struct ps_reader_opts *opts;
	bool mode_set;
	bool help;
	bool version;
	bool command_set;
	char *err;
	size_t errlen;
};

const char *ps_reader_mode_option(enum ps_reader_mode mode)
{
	size_t i;

	for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		if (modes[i].mode == mode)
			return modes[i].name;
	return "";
}

const char *ps_reader_cmd_name(enum ps_reader_cmd cmd)
{
	size_t i;

	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (commands[i].cmd == cmd)
			return commands[i].name;
	return NULL;
}

/* An argument as a message may show it: printable ASCII, at most ARG_SHOWN bytes. */
static const char *shown(char *buf, size_t buflen, const char *arg, size_t len)
{
	ps_sanitize_text(buf, buflen, arg, len);
	return buf;
}

/* "spotify-token: <before>'<arg>'<after>" */
static int fail_arg(struct parse *ps, const char *before, const char *arg, size_t len,
		    const char *after)
{
	char a[ARG_SHOWN + 1];

	snprintf(ps->err, ps->errlen, "spotify-token: %s'%s'%s", before,
		 shown(a, sizeof(a), arg, len), after);
	return -1;
}

static int set_mode(struct parse *ps, enum ps_reader_mode mode)
{
	if (ps->mode_set && ps->opts->mode != mode) {
		snprintf(ps->err, ps->errlen,
			 "spotify-token: %s and %s cannot be used together; choose one output mode",
			 ps_reader_mode_option(ps->opts->mode), ps_reader_mode_option(mode));
		return -1;
	}
	ps->mode_set = true;
	ps->opts->mode = mode;
	return 0;
}

static int set_min_valid(struct parse *ps, const char *value)
{
	unsigned long v;

	if (ps->opts->min_valid_set) {
		snprintf(ps->err, ps->errlen, "spotify-token: --min-valid given twice");
		return -1;
	}
	if (!value || !*value) {
		snprintf(ps->err, ps->errlen,
			 "spotify-token: --min-valid needs a number of seconds, e.g. "
			 "--min-valid=60");
		return -1;
	}
	if (ps_parse_ulong(value, 0, PS_MIN_VALID_MAX, &v) < 0)
		return fail_arg(ps,
				"--min-valid needs a whole number of seconds from 0 to "
				"2147483647, not ",
				value, strlen(value), "");
	ps->opts->min_valid = v;
	ps->opts->min_valid_set = true;
	return 0;
}

static int set_config(struct parse *ps, const char *value)
{
	if (ps->opts->config_path) {
		snprintf(ps->err, ps->errlen, "spotify-token: --config given twice");
		return -1;
	}
	if (!value || !*value) {
		snprintf(ps->err, ps->errlen,
			 "spotify-token: --config needs a file, e.g. --config=/etc/security/"
			 "pam_spotify.conf");
		return -1;
	}
	ps->opts->config_path = value;
	return 0;
}

static int set_timeout(struct parse *ps, const char *value)
{
	unsigned long v;

	if (ps->opts->timeout_set) {
		snprintf(ps->err, ps->errlen, "spotify-token: --timeout given twice");
		return -1;
	}
	if (!value || ps_parse_ulong(value, 1, 3600, &v) < 0)
		return fail_arg(ps,
				"--timeout needs a whole number of seconds from 1 to 3600, not ",
				value ? value : "", value ? strlen(value) : 0, "");
	ps->opts->timeout_s = v;
	ps->opts->timeout_set = true;
	return 0;
}

/*
 * An option that takes a value, as --name=VALUE or --name VALUE. Returns 1 when arg is not
 * that option, else 0 or -1 from set. *i moves past a separate value.
 */
static int valued(struct parse *ps, const char *name, int (*set)(struct parse *, const char *),
		  int argc, char *const argv[], int *i)
{
	const char *arg = argv[*i];
	size_t n = strlen(name);

	if (strncmp(arg, name, n) != 0)
		return 1;
	if (arg[n] == '=')
		return set(ps, arg + n + 1);
	if (arg[n] != '\0')
		return 1;
	if (*i + 1 >= argc)
		return set(ps, NULL);
	*i += 1;
	return set(ps, argv[*i]);
}

static int long_option(struct parse *ps, int argc, char *const argv[], int *i)
{
	const char *arg = argv[*i];
	size_t k;
	int rc;

	for (k = 0; k < sizeof(modes) / sizeof(modes[0]); k++)
		if (strcmp(arg, modes[k].name) == 0)
			return set_mode(ps, modes[k].mode);
	if (strcmp(arg, "--help") == 0) {
		ps->help = true;
		return 0;
	}
	if (strcmp(arg, "--version") == 0) {
		ps->version = true;
		return 0;
	}
	rc = valued(ps, "--min-valid", set_min_valid, argc, argv, i);
	if (rc <= 0)
		return rc;
	rc = valued(ps, "--config", set_config, argc, argv, i);
	if (rc <= 0)
		return rc;
	rc = valued(ps, "--timeout", set_timeout, argc, argv, i);
	if (rc <= 0)
		return rc;
	/* Name the option without its value: a mistyped --token=... must not echo a secret. */
	return fail_arg(ps, "unknown option ", arg, strcspn(arg, "="), SEE_HELP);
}

static int command(struct parse *ps, const char *arg)
{
	size_t k;

	if (ps->command_set)
		return fail_arg(ps, "unexpected argument ", arg, strlen(arg), SEE_HELP);
	for (k = 0; k < sizeof(commands) / sizeof(commands[0]); k++) {
		if (strcmp(arg, commands[k].name) == 0) {
			ps->opts->cmd = commands[k].cmd;
			ps->command_set = true;
			return 0;
		}
	}
	return fail_arg(ps, "unknown command ", arg, strlen(arg), SEE_HELP);
}

static int one_arg(struct parse *ps, int argc, char *const argv[], int *i, bool *options_done)
{
	const char *arg = argv[*i];

	if (*options_done || arg[0] != '-' || arg[1] == '\0')
		return command(ps, arg);
	if (strcmp(arg, "--") == 0) {
		*options_done = true;
		return 0;
	}
	if (arg[1] != '-')
		return fail_arg(ps, "unknown option ", arg, strlen(arg), SEE_HELP);
	return long_option(ps, argc, argv, i);
}

/* login, logout and refresh take --config (and login --timeout), not the reading options. */
static int command_check(struct parse *ps)
{
	const char *name = ps_reader_cmd_name(ps->opts->cmd);

	if (ps->mode_set || ps->opts->min_valid_set) {
		snprintf(ps->err, ps->errlen,
			 "spotify-token: %s takes no output option or --min-valid%s", name,
			 SEE_HELP);
		return -1;
	}
	if (ps->opts->timeout_set && ps->opts->cmd != PS_CMD_LOGIN) {
		snprintf(ps->err, ps->errlen, "spotify-token: --timeout goes with login only%s",
			 SEE_HELP);
		return -1;
	}
	return 0;
}

int ps_reader_opts_parse(struct ps_reader_opts *opts, int argc, char *const argv[], char *err,
			 size_t errlen)
{
	struct parse ps = {.opts = opts, .err = err, .errlen = errlen};
	bool options_done = false;
	int i;

	memset(opts, 0, sizeof(*opts));
	if (errlen)
		err[0] = '\0';
	for (i = 1; i < argc; i++)
		if (one_arg(&ps, argc, argv, &i, &options_done) < 0)
			return -1;
	if (ps.help)
		opts->cmd = PS_CMD_HELP;
	else if (ps.version)
		opts->cmd = PS_CMD_VERSION;
	else if (ps.command_set)
		return command_check(&ps);
	else if (opts->timeout_set) {
		snprintf(err, errlen, "spotify-token: --timeout goes with login only%s", SEE_HELP);
		return -1;
	}
	return 0;
}
