/*
 * child.c: a forked child's set-up before it execs the helper (see child.h).
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/child.h"
#include "common/util.h"

int ps_child_check_helper(char *why, size_t whylen)
{
	const char *path = PS_HELPER_PATH;
	struct stat st;

	if (stat(path, &st) < 0) {
		ps_errf(why, whylen, "cannot use the helper %s: %s; reinstall pam_spotify", path,
			strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		ps_errf(why, whylen,
			"refusing the helper %s: not a regular file; reinstall pam_spotify", path);
		return -1;
	}
	if (st.st_uid != 0) {
		ps_errf(why, whylen,
			"refusing the helper %s: not owned by root; run: chown root %s", path,
			path);
		return -1;
	}
	if (st.st_mode & (S_IRGRP | S_IWGRP | S_IROTH | S_IWOTH)) {
		ps_errf(why, whylen,
			"refusing the helper %s: mode %04o lets group or others read or write it, "
			"so a user could trace it before it hardens; run: chmod 0711 %s",
			path, (unsigned)(st.st_mode & 07777), path);
		return -1;
	}
	return 0;
}

void ps_child_reset_signals(void)
{
	struct sigaction sa;
	sigset_t none;
	int sig;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (sig = 1; sig < NSIG; sig++)
		if (sigaction(sig, NULL, &sa) == 0 && !(sa.sa_flags & SA_SIGINFO) &&
		    sa.sa_handler == SIG_IGN)
			signal(sig, SIG_DFL);
}

/* Close every descriptor from `from` on but those in keep: one close_range between each two. */
static void close_but(int from, const int *keep, int n)
{
	int f = from, i;

	for (;;) {
		int next = -1;

		for (i = 0; i < n; i++)
			if (keep[i] >= f && (next < 0 || keep[i] < next))
				next = keep[i];
		if (next < 0)
			break;
		if (next > f)
			close_range((unsigned)f, (unsigned)next - 1, 0);
		f = next + 1;
	}
	closefrom((unsigned)f);
}

void ps_child_fds(int in_fd, int out_fd, const int *keep, int nkeep)
{
	int fds[2 + PS_CHILD_KEEP_MAX], n = 2 + nkeep, top = 3 + nkeep, i, null, err;

	if (nkeep < 0 || nkeep > PS_CHILD_KEEP_MAX)
		_exit(127);
	fds[0] = in_fd;
	fds[1] = out_fd;
	memcpy(fds + 2, keep, sizeof(int) * (size_t)nkeep);
	/* first room for the copies below: a login with a low RLIMIT_NOFILE (a su caller sets it)
	 * and many descriptors open would leave none */
	close_but(3, fds, n);
	for (i = 0; i < n; i++)
		if ((fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, top)) < 0)
			_exit(127);
	null = open("/dev/null", O_RDWR | O_CLOEXEC);
	err = null < 0 ? -1 : fcntl(null, F_DUPFD_CLOEXEC, top);
	if (err < 0 || dup2(fds[0], STDIN_FILENO) < 0 || dup2(fds[1], STDOUT_FILENO) < 0 ||
	    dup2(err, STDERR_FILENO) < 0)
		_exit(127);
	for (i = 0; i < nkeep; i++)
		if (dup2(fds[2 + i], 3 + i) < 0)
			_exit(127);
	closefrom((unsigned)top);
}

int ps_child_start_lock(int dirfd, const char *path, uid_t owner, gid_t group)
{
	const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	int flags = O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, fd, e;
	struct stat st;

	fd = openat(dirfd, name, flags | O_CREAT | O_EXCL, 0600);
	if (fd >= 0 && fchown(fd, owner, group) < 0) {
		close(fd);
		return -1;
	}
	if (fd < 0 && errno == EEXIST)
		fd = openat(dirfd, name, flags);
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != owner || st.st_nlink != 1) {
		close(fd);
		errno = EPERM;
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

int ps_child_inherited_lock(const char *path, bool ofd)
{
	struct stat a, b;

	if (fstat(3, &a) < 0 || stat(path, &b) < 0 || !S_ISREG(a.st_mode) || a.st_dev != b.st_dev ||
	    a.st_ino != b.st_ino || fcntl(3, F_SETFD, FD_CLOEXEC) < 0 ||
	    (ofd ? ps_child_ofd_lock(3, 0) : flock(3, LOCK_EX | LOCK_NB)) < 0)
		return -1;
	return 3;
}

const char *ps_child_drop(uid_t uid, gid_t gid, const gid_t *groups, int ngroups)
{
	uid_t ru, eu, su;
	gid_t rg, eg, sg;

	if (setgroups((size_t)ngroups, groups) < 0)
		return "setgroups";
	if (setresgid(gid, gid, gid) < 0)
		return "setresgid";
	if (setresuid(uid, uid, uid) < 0)
		return "setresuid";
	errno = EPERM;
	if (setuid(0) != -1 || seteuid(0) != -1)
		return "root could be regained after the privilege drop";
	if (gid != 0 && (setgid(0) != -1 || setegid(0) != -1))
		return "group root could be regained after the privilege drop";
	if (getresuid(&ru, &eu, &su) < 0 || ru != uid || eu != uid || su != uid ||
	    getresgid(&rg, &eg, &sg) < 0 || rg != gid || eg != gid || sg != gid)
		return "uids or gids are not the user's after the privilege drop";
	/* Nor can an exec bring privileges back (a setuid file, file capabilities) */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return "set no_new_privs";
	return NULL;
}

int ps_child_groups(const struct passwd *pw, gid_t **groups, int *ngroups)
{
	int cap = 64;

	for (;;) {
		int n = cap;
		gid_t *g = calloc((size_t)cap, sizeof(*g));

		if (!g)
			return -1;
		if (getgrouplist(pw->pw_name, pw->pw_gid, g, &n) >= 0) {
			*groups = g;
			*ngroups = n;
			return 0;
		}
		free(g);
		if (n <= cap || n > 65536)
			return -1;
		cap = n;
	}
}

bool ps_child_lock_held(const char *path)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	bool held;

	if (fd < 0)
		return false;
	held = fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
	close(fd);
	return held;
}

int ps_child_ofd_lock(int fd, long wait_ms)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	long long end = ps_mono_ms() + wait_ms;

	while (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
		if (errno == EACCES)
			errno = EAGAIN;
		if (errno != EAGAIN || ps_mono_ms() >= end)
			return -1;
		usleep(10000);
	}
	return 0;
}

int ps_child_ofd_start_lock(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600), e;

	if (fd >= 0 && ps_child_ofd_lock(fd, 0) < 0) {
		e = errno;
		close(fd);
		errno = e;
		fd = -1;
	}
	return fd;
}
