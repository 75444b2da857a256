/*
 * child.h: what a forked child does before it execs pam_spotify_helper, shared by the module (the
 * helper as the user, the system service as root) and the helper (the user's keeper, the
 * service's clean context). libc only.
 */
#ifndef PS_CHILD_H
#define PS_CHILD_H

#include <stddef.h>

/*
 * The helper file must be root's, a regular file, and neither readable nor writable by group or
 * others (0711): the kernel makes a process non-dumpable from the exec of a file its user cannot
 * read, so nothing of the user's can ptrace it, take its fds or read its memory before the
 * helper's own PR_SET_DUMPABLE. 0, or -1 with one line in why that names the path and the fix.
 */
int ps_child_check_helper(char *why, size_t whylen);

/*
 * An empty mask, and the default for every ignored signal: an exec resets caught ones, but keeps
 * ignored ones and the mask. Handlers (a sanitizer's) stay, for a child that does not exec.
 */
void ps_child_reset_signals(void);

/*
 * in_fd as stdin, out_fd as stdout, /dev/null as stderr, and every descriptor from `from` on
 * closed (3, or more to keep some); it _exits when it cannot. The others go first, so that a low
 * RLIMIT_NOFILE leaves room for the copies. Each source is then moved above 2
 * (so no dup2 is a no-op that keeps its close-on-exec flag), and the rest goes with one
 * closefrom (close_range): pam_modutil_sanitize_helper_fds closes every number up to the hard
 * RLIMIT_NOFILE one call at a time, 65535 system calls under a systemd service.
 */
void ps_child_fds(int in_fd, int out_fd, int from);

#endif
