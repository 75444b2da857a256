/*
 * request.h: the versioned request that the module writes on the helper's stdin (and on the
 * system service's, when it starts one). It carries the resolved configuration and never a secret:
 * the client secret lives only in the system service (helper/service.h).
 *
 * Format (text, one item a line, no line longer than PS_REQUEST_LINE_MAX):
 *   pam_spotify-request 1
 *   op = open                  (the only one: a close goes to the keeper, helper/keeper.h)
 *   <config key> = <value>     (the same keys and checks as pam_spotify.conf)
 *   interactive, session, app_uid, service = <value>  (request only: see struct ps_config)
 *   end
 *
 * The helper writes PS_HELPER_HELLO and a newline on its stdout once it is hardened
 * (non-dumpable, no core files), before it reads anything; whoever starts it writes the request
 * only after that line, so nothing secret is ever in a pipe or socket of a process the user could
 * still ptrace. Any other first line is the helper's answer: it failed before it was hardened.
 */
#ifndef PS_REQUEST_H
#define PS_REQUEST_H

#include <stddef.h>

#include "common/config.h"

#define PS_REQUEST_VERSION 1
#define PS_REQUEST_MAGIC   "pam_spotify-request"
#define PS_REQUEST_MAX	   16384
#define PS_HELPER_HELLO	   "hardened"

enum ps_op {
	PS_OP_OPEN =
		0, /* make sure the keeper runs (and enroll first, when the user must and may) */
};

struct ps_request {
	enum ps_op op;
	struct ps_config cfg;
};

/* Format a request into buf. Returns the length, or -1 when it does not fit. */
int ps_request_format(const struct ps_config *cfg, enum ps_op op, char *buf, size_t buflen);

/* Parse a request. 0, or -1 with a reason in err. */
int ps_request_parse(struct ps_request *req, const char *buf, size_t len, char *err, size_t errlen);

#endif
