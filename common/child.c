/*
 * child.c: a forked child's set-up before it execs the helper (see child.h).
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
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

/* Close every descriptor from `from` on but a and b: one close_range either side of each. */
static void close_but(int from, int a, int b)
{
	int lo = a < b ? a : b, hi = a < b ? b : a, f = from;

	if (lo >= f) {
		if (lo > f)
			close_range((unsigned)f, (unsigned)lo - 1, 0);
		f = lo + 1;
	}
	if (hi >= f) {
		if (hi > f)
			close_range((unsigned)f, (unsigned)hi - 1, 0);
		f = hi + 1;
	}
	closefrom(f);
}

void ps_child_fds(int in_fd, int out_fd, int from)
{
	int in, out, null, err;

	/* first room for the copies below: a login with a low RLIMIT_NOFILE (a su caller sets it)
	 * and many descriptors open would leave none */
	close_but(from, in_fd, out_fd);
	in = fcntl(in_fd, F_DUPFD_CLOEXEC, 3);
	out = fcntl(out_fd, F_DUPFD_CLOEXEC, 3);
	null = open("/dev/null", O_RDWR | O_CLOEXEC);
	err = null < 0 ? -1 : fcntl(null, F_DUPFD_CLOEXEC, 3);
	if (in < 0 || out < 0 || err < 0 || dup2(in, STDIN_FILENO) < 0 ||
	    dup2(out, STDOUT_FILENO) < 0 || dup2(err, STDERR_FILENO) < 0)
		_exit(127);
	closefrom((unsigned)from);
}
