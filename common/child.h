/*
 * child.h: what a forked child does before it execs pam_spotify_helper, shared by the module (the
 * helper as the user, the system service as root) and the helper (the user's keeper, the
 * service's clean context). libc only.
 */
#ifndef PS_CHILD_H
#define PS_CHILD_H

#include <pwd.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

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

#define PS_CHILD_KEEP_MAX 2

/*
 * in_fd as stdin, out_fd as stdout, /dev/null as stderr, keep[0..nkeep) as descriptors 3, 4
 * (nkeep at most PS_CHILD_KEEP_MAX), and every other descriptor closed; it _exits when it cannot.
 * The others go first, so that a low RLIMIT_NOFILE leaves room for the copies. Each source is
 * then moved above its target (so no dup2 is a no-op that keeps its close-on-exec flag), and the
 * rest goes with one closefrom (close_range): pam_modutil_sanitize_helper_fds closes every
 * number up to the hard RLIMIT_NOFILE one call at a time, 65535 system calls under a systemd
 * service.
 */
void ps_child_fds(int in_fd, int out_fd, const int *keep, int nkeep);

/* pw's supplementary groups, looked up before fork (NSS is not for a forked child): an array
 * to free in *groups. 0, or -1. */
int ps_child_groups(const struct passwd *pw, gid_t **groups, int *ngroups);

/*
 * Drop to uid, gid and the supplementary groups for good, then prove that root cannot come back
 * and set no_new_privs. NULL, or what failed (errno says why).
 */
const char *ps_child_drop(uid_t uid, gid_t gid, const gid_t *groups, int ngroups);

/*
 * The start lock of a user's keeper: the file at path in the directory dirfd (its last
 * component), locked (flock, exclusive) without waiting, for the helper the login starts next,
 * which inherits it as descriptor 3 and hands it to the keeper, which keeps it for its life
 * (ps_child_inherited_lock). So concurrent logins start one, and the others wait for its socket
 * instead. (A login the user stops while it holds it delays only that user's logins.) A file that is missing is made (mode 0600, given to owner); one that is there
 * must be owner's regular file with one link. The descriptor (close-on-exec), or -1 with errno:
 * EWOULDBLOCK when another process holds the lock (it runs, or is being started).
 */
int ps_child_start_lock(int dirfd, const char *path, uid_t owner, gid_t group);

/*
 * Whether a process holds the lock of the file at path (in a directory of root's) that
 * ps_child_ofd_lock takes (an open file description lock, which fcntl can ask about without
 * taking it). A query only: a login that is stopped in it holds nothing. false also when the
 * file cannot be opened.
 */
bool ps_child_lock_held(const char *path);

/* Take that lock on fd (opened for writing), waiting at most wait_ms. 0, or -1 with errno
 * (EAGAIN: another process holds it). */
int ps_child_ofd_lock(int fd, long wait_ms);

/* The system service's start lock at path (RUNDIR, root's), taken at once by the child that
 * will exec its starter, root in full: the descriptor, or -1 with errno (EAGAIN: held). */
int ps_child_ofd_start_lock(const char *path);

/* In the started process: descriptor 3, when it holds the lock of the file at path (made
 * close-on-exec), else -1; ofd: the lock of ps_child_ofd_lock, else the flock. */
int ps_child_inherited_lock(const char *path, bool ofd);

#endif
