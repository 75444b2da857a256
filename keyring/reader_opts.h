/*
 * reader_opts.h: the command line of spotify-token, parsed without I/O so it can be tested.
 *
 *   spotify-token [--header|--json|--env|--status] [--min-valid=N] [--config=PATH]
 *   spotify-token --help | --version
 *   spotify-token login [--config=PATH] [--timeout=N] | logout | refresh [--config=PATH]
 */
#ifndef PS_READER_OPTS_H
#define PS_READER_OPTS_H

#include <stdbool.h>
#include <stddef.h>

/* The largest --min-valid: about 68 years, so expires_at - now - N cannot overflow. */
#define PS_MIN_VALID_MAX 2147483647UL

enum ps_reader_cmd {
	PS_CMD_READ = 0, /* print the token in one of the output modes */
	PS_CMD_HELP,
	PS_CMD_VERSION,
	PS_CMD_LOGIN, /* the subcommands: the reader execs the helper for these */
	PS_CMD_LOGOUT,
	PS_CMD_REFRESH,
};

enum ps_reader_mode {
	PS_MODE_TOKEN = 0, /* the token and a newline */
	PS_MODE_HEADER,	   /* Authorization: Bearer <token> */
	PS_MODE_JSON,	   /* {"access_token":..,"token_type":..,"expires_at":..,...} */
	PS_MODE_ENV,	   /* export SPOTIFY_ACCESS_TOKEN='<token>' */
	PS_MODE_STATUS,	   /* a human summary that never shows the token */
};

struct ps_reader_opts {
	enum ps_reader_cmd cmd;
	enum ps_reader_mode mode;
	unsigned long min_valid; /* seconds; 0 when not given */
	bool min_valid_set;
	const char *config_path; /* points into argv; NULL for the default */
	unsigned long timeout_s; /* login: seconds to wait for the authorization */
	bool timeout_set;
};

/*
 * Parse argv (argv[0] is the program). Returns 0, or -1 with a one-line message in err that
 * starts with "spotify-token: " and says what to do (the caller prints it and exits 2).
 */
int ps_reader_opts_parse(struct ps_reader_opts *opts, int argc, char *const argv[], char *err,
			 size_t errlen);

/* "--header", "--json", ... ("" for the default mode). */
const char *ps_reader_mode_option(enum ps_reader_mode mode);

/* "login", "logout", "refresh"; NULL for the others. */
const char *ps_reader_cmd_name(enum ps_reader_cmd cmd);

#endif
