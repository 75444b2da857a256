/*
 * fuzz_config.c: libFuzzer target for the configuration parser. The input is read twice: as the
 * text of pam_spotify.conf (ps_config_parse_text), and line by line as PAM module arguments
 * (ps_config_from_args); each accepted result is finished as the module does.
 *
 * Contract: on failure, one non-empty line of text, the file's starting with "NAME:"; on
 * success, every setting within its buffer and its range, and after ps_config_finish a
 * configuration that survives the module->helper request unchanged.
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "tests/fuzz/cfg_check.h"
#include "tests/fuzz/fuzz.h"

#define NAME	 "fuzz.conf"
#define MAX_ARGS 64

/* Finish an accepted configuration and check what comes out. */
static void finish(struct ps_config *cfg)
{
	char err[PS_ERR_MAX];

	ps_fuzz_check_config(cfg, false);
	if (ps_config_finish(cfg, err, sizeof(err)) < 0) {
		ps_fuzz_check_err(err, sizeof(err));
		return;
	}
	ps_fuzz_check_config(cfg, true);
	ps_fuzz_request_round_trip(cfg, PS_OP_OPEN);
}

static void as_file(const uint8_t *data, size_t size)
{
	struct ps_config *cfg = malloc(sizeof(*cfg));
	char *text = ps_fuzz_copy(data, size), err[PS_ERR_MAX];

	if (!cfg)
		abort();
	ps_config_init(cfg);
	if (ps_config_parse_text(cfg, NAME, text, size, err, sizeof(err)) == 0) {
		finish(cfg);
	} else {
		ps_fuzz_check_err(err, sizeof(err));
		if (strncmp(err, NAME ":", sizeof(NAME)) != 0)
			ps_fuzz_fail("config file error does not start with the file name");
	}
	ps_fuzz_free(text, size);
	free(cfg);
}

/* Each line (up to MAX_ARGS) is one module argument; a NUL ends an argument early. */
static void as_args(const uint8_t *data, size_t size)
{
	struct ps_config *cfg = malloc(sizeof(*cfg));
	char *text = ps_fuzz_cstring(data, size), *line, *next, err[PS_ERR_MAX];
	const char *argv[MAX_ARGS];
	int argc = 0;

	if (!cfg)
		abort();
	for (line = text; line && argc < MAX_ARGS; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		argv[argc++] = line;
	}
	ps_config_init(cfg);
	if (ps_config_from_args(cfg, argc, argv, err, sizeof(err)) == 0)
		finish(cfg);
	else
		ps_fuzz_check_err(err, sizeof(err));
	ps_fuzz_free(text, size + 1);
	free(cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	as_file(data, size);
	as_args(data, size);
	return 0;
}
