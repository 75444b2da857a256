/*
 * spawn.h: run the helper as the user. The module forks; the child sets up its fds, drops to the
 * user irreversibly (and proves it), and execs the helper from the path fixed at configure time
 * with a minimal environment. The helper first says it is hardened (PS_HELPER_HELLO, common/request.h)
 * on its stdout; only then does the request go on its stdin; its one-line answer comes back on its
 * stdout. The parent waits with a deadline and kills the helper past it. A helper file that others
 * can read or write, or that is not root's, is refused before anything is forked.
 */
#ifndef PS_SPAWN_H
#define PS_SPAWN_H

#include <pwd.h>
#include <stdbool.h>
#include <stddef.h>
#include <security/pam_modules.h>

#include "common/config.h"

#define PS_HELPER_LINE_MAX 512

struct ps_spawn_result {
	int exit_code;			  /* the helper's exit code; -1 when killed or not run */
	bool timed_out;			  /* killed at the deadline */
	char message[PS_HELPER_LINE_MAX]; /* the helper's answer line, printable ASCII only */
};

struct ps_spawn_opts {
	const char *mode;      /* the helper's one argument: "--pam" */
	long long deadline_ms; /* when to kill it: ps_spawn_deadline() */
	bool interactive;      /* see ps_spawn_helper */
	int lock_fd;	       /* a start lock (common/child.h) the helper gets as fd 3, or -1 */
	const char *lock_path; /* pw NULL: the service's lock, taken in the child (service.h) */
};

/* The deadline timeout_s seconds from now, for ps_spawn_opts (a monotonic clock, in ms). */
long long ps_spawn_deadline(unsigned timeout_s);

/*
 * Run the helper for pw with request on its stdin, killing it at o->deadline_ms; with pw NULL,
 * as root with an empty environment and "--start" after the mode (the system service's start,
 * pam/service.h). When
 * o->interactive, the helper may ask for the PAM conversation with "conv-info TEXT" and
 * "conv-prompt TEXT" lines on its stdout; the module shows them (pam_info, pam_prompt with echo
 * on), answers each prompt with "answer TEXT" (or "cancel") on the helper's stdin, and gives the
 * user 300 s from the last such line.
 * Returns 0 when the helper ran (see res), -1 when it could not be started (reason in
 * res->message, also when ps_child_check_helper refused the file).
 */
int ps_spawn_helper(pam_handle_t *pamh, const struct passwd *pw, const char *request, size_t reqlen,
		    const struct ps_spawn_opts *o, struct ps_spawn_result *res);

#endif
