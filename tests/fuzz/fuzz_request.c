/*
 * fuzz_request.c: libFuzzer target for the module->helper request parser (ps_request_parse),
 * what the helper reads on its standard input.
 *
 * Contract: on failure, one non-empty line of text; on success, an op, settings within their
 * buffers and ranges, a service path within RUNDIR, and, once finished, a request that formats
 * and parses back to the same. A request carries no secret.
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <stdlib.h>
#include <string.h>

#include "common/request.h"
#include "tests/fuzz/cfg_check.h"
#include "tests/fuzz/fuzz.h"

static void check_accepted(struct ps_request *req)
{
	char err[PS_ERR_MAX];

	if (req->op != PS_OP_OPEN)
		ps_fuzz_fail("request accepted without an op");
	ps_fuzz_check_cstr(req->cfg.service, sizeof(req->cfg.service), "service unterminated");
	if (req->cfg.service[0] && strncmp(req->cfg.service, PS_RUNDIR "/", sizeof(PS_RUNDIR)))
		ps_fuzz_fail("service outside RUNDIR");
	ps_fuzz_check_config(&req->cfg, false);
	/* the module formats a finished configuration: so does the round trip */
	if (ps_config_finish(&req->cfg, err, sizeof(err)) < 0) {
		ps_fuzz_check_err(err, sizeof(err));
		return;
	}
	ps_fuzz_check_config(&req->cfg, true);
	ps_fuzz_request_round_trip(&req->cfg, req->op);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ps_request *req = malloc(sizeof(*req));
	char *buf = ps_fuzz_copy(data, size), err[PS_ERR_MAX];

	if (!req)
		abort();
	if (ps_request_parse(req, buf, size, err, sizeof(err)) == 0) {
		check_accepted(req);
	} else {
		ps_fuzz_check_err(err, sizeof(err));
	}
	ps_fuzz_free(buf, size);
	free(req);
	return 0;
}
