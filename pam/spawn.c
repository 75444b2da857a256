/*
 * spawn.c: run the helper as the user (see spawn.h). Privilege separation after OpenSSH's
 * permanently_set_uid and Linux-PAM's helper idiom: default SIGCHLD while we wait, sanitized fds,
 * an explicit environment, waitpid retried on EINTR; and, unlike pam_unix, a deadline. The
 * request is written only once the helper has said it is hardened.
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <security/pam_ext.h>
#include <security/pam_modutil.h>

#include "common/child.h"
#include "common/request.h"
#include "pam/spawn.h"
#include "common/util.h"

struct child_ctx {
	pam_handle_t *pamh;
	const struct passwd *pw;
	gid_t *groups;
	int ngroups;
	int in_fd;		       /* becomes the helper's stdin */
	int out_fd;		       /* becomes the helper's stdout */
	const struct ps_spawn_opts *o; /* its argument, its start lock */
};

/* In the child: report on stdout (the module reads it) and end. */
static void __attribute__((noreturn)) child_fail(const char *what, int err)
{
	char line[PS_HELPER_LINE_MAX];
	int n = snprintf(line, sizeof(line), "cannot start the helper: %s (%s)\n", what,
			 strerror(err));

	if (n > 0)
		(void)!write(STDOUT_FILENO, line, (size_t)n);
	_exit(127);
}

static void __attribute__((noreturn)) child_exec(const struct child_ctx *c)
{
	char home[PATH_MAX + 8], user[300], logname[300];
	char *const argv[] = {(char *)"pam_spotify_helper", (char *)c->o->mode,
			      c->pw ? NULL : (char *)"--start", NULL};
	char *const envp[] = {(char *)"PATH=/usr/bin:/bin", home, user, logname, NULL};
	int lock = c->o->lock_fd;

	/* the system service's start: root in full at once (a su caller's real uid may signal us
	 * until then; it can no longer after), and an empty environment */
	if (!c->pw && (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0))
		_exit(127);
	ps_child_reset_signals();
	setsid();
	/* no longer stoppable by the caller: the service's lock, or "busy" when another holds it */
	if (c->o->lock_path && (lock = ps_child_ofd_start_lock(c->o->lock_path)) < 0 &&
	    errno == EAGAIN)
		_exit(write(c->out_fd, "busy\n", 5) == 5 ? 0 : 127);
	ps_child_fds(c->in_fd, c->out_fd, &lock, lock >= 0);
	if (c->pw) {
		const char *failed =
			ps_child_drop(c->pw->pw_uid, c->pw->pw_gid, c->groups, c->ngroups);

		if (failed) /* the helper and the keeper it starts run nothing that needs root */
			child_fail(failed, errno);
		snprintf(home, sizeof(home), "HOME=%s", c->pw->pw_dir);
		snprintf(user, sizeof(user), "USER=%s", c->pw->pw_name);
		snprintf(logname, sizeof(logname), "LOGNAME=%s", c->pw->pw_name);
	}
	if (chdir("/") < 0) /* never the home directory: one that hangs must not hang us */
		child_fail("chdir /", errno);
	execve(PS_HELPER_PATH, argv, c->pw ? envp : &envp[4]);
	child_fail("execute " PS_HELPER_PATH, errno);
}

long long ps_spawn_deadline(unsigned timeout_s)
{
	return ps_mono_ms() + (long long)timeout_s * 1000;
}

static pid_t waitpid_eintr(pid_t pid, int *status, int options)
{
	pid_t r;

	do
		r = waitpid(pid, status, options);
	while (r < 0 && errno == EINTR);
	return r;
}

/* How long the module waits once the helper has started a conversation with the user. */
#define PS_ENROLL_WAIT_S 300
#define PS_LINE_MAX	 8192 /* a conversation line carries an authorize URL */

struct waiter {
	pam_handle_t *pamh;
	int sock;	     /* the helper's stdin: the request, then answers to prompts */
	bool interactive;    /* prompts are answered on sock */
	bool hardened;	     /* the helper's first line was PS_HELPER_HELLO; the request is out */
	const char *request; /* what goes on sock once the helper is hardened */
	size_t reqlen;
	int in_fd; /* sock once the request is out and when interactive; else -1 */
	int out_fd;
	char line[PS_LINE_MAX];
	size_t len;
	bool overflow; /* the current line is too long and is dropped */
	long long deadline;
	struct ps_spawn_result *res;
};

/* Ask the user (echo on: a pasted URL) and hand the answer to the helper. */
static void conv_prompt(struct waiter *w, const char *prompt)
{
	char out[PS_LINE_MAX];
	char *resp = NULL;
	int n = -1;

	if (pam_prompt(w->pamh, PAM_PROMPT_ECHO_ON, &resp, "%s", prompt) == PAM_SUCCESS && resp) {
		resp[strcspn(resp, "\r\n")] = '\0';
		n = snprintf(out, sizeof(out), "answer %s\n", resp);
		if (n >= 0 && (size_t)n >= sizeof(out))
			n = snprintf(out, sizeof(out), "too-long\n"); /* the helper says so */
		explicit_bzero(resp, strlen(resp));
	}
	free(resp);
	if (n < 0)
		n = snprintf(out, sizeof(out), "cancel\n");
	(void)!send(w->in_fd, out, (size_t)n, MSG_NOSIGNAL);
	explicit_bzero(out, sizeof(out));
}

/*
 * The helper said it is hardened: now, and not before, hand it the request. The request fits in
 * the socket buffer; MSG_NOSIGNAL: a dead helper must not SIGPIPE us.
 */
static void hand_over(struct waiter *w)
{
	w->hardened = true;
	/* one that failed says why on its stdout: it may end before it reads (service --start) */
	(void)!send(w->sock, w->request, w->reqlen, MSG_NOSIGNAL);
	if (w->interactive)
		w->in_fd = w->sock; /* stays open for the answers to the helper's prompts */
	else
		shutdown(w->sock, SHUT_WR);
}

/*
 * One line from the helper. The first must be PS_HELPER_HELLO; any other first line is the
 * answer of a helper that failed before it was hardened, and the request is never written.
 * Then "conv-info TEXT" and "conv-prompt TEXT" ask for the PAM conversation (interactive
 * requests only, and they give the user PS_ENROLL_WAIT_S more); the first other line is the
 * helper's answer.
 */
static void on_line(struct waiter *w, const char *line)
{
	if (!w->hardened && !w->res->message[0] && strcmp(line, PS_HELPER_HELLO) == 0) {
		hand_over(w);
	} else if (!w->hardened && !w->res->message[0]) {
		shutdown(w->sock, SHUT_WR); /* no request for it: EOF */
		ps_sanitize_text(w->res->message, sizeof(w->res->message), line, strlen(line));
	} else if (w->in_fd >= 0 && strncmp(line, "conv-info ", 10) == 0) {
		pam_info(w->pamh, "%s", line + 10);
		w->deadline = ps_mono_ms() + PS_ENROLL_WAIT_S * 1000LL;
	} else if (w->in_fd >= 0 && strncmp(line, "conv-prompt ", 12) == 0) {
		conv_prompt(w, line + 12);
		w->deadline = ps_mono_ms() + PS_ENROLL_WAIT_S * 1000LL;
	} else if (!w->res->message[0]) {
		ps_sanitize_text(w->res->message, sizeof(w->res->message), line, strlen(line));
	}
}

enum read_state { READ_DATA, READ_NONE, READ_END };

/* Read what the helper wrote and act on each complete line: READ_END at EOF or error, READ_NONE
 * when nothing is there now. */
static enum read_state read_lines(struct waiter *w)
{
	char chunk[1024];
	ssize_t n = read(w->out_fd, chunk, sizeof(chunk));
	ssize_t i;

	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? READ_NONE : READ_END;
	if (n == 0) {
		if (w->len && !w->overflow) {
			w->line[w->len] = '\0';
			on_line(w, w->line);
		}
		w->len = 0;
		return READ_END;
	}
	for (i = 0; i < n; i++) {
		if (chunk[i] == '\n') {
			w->line[w->len] = '\0';
			if (!w->overflow)
				on_line(w, w->line);
			w->len = 0;
			w->overflow = false;
		} else if (w->len + 1 < sizeof(w->line)) {
			w->line[w->len++] = chunk[i];
		} else {
			w->overflow = true;
		}
	}
	return READ_DATA;
}

/*
 * Wait for the helper's exit and answer until the deadline; kill it past the deadline. A pidfd
 * makes the wait event-driven; without one (old kernels) we poll waitpid every 10 ms.
 */
static void wait_helper(pid_t pid, struct waiter *w)
{
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	bool open_out = true, exited = false;
	int status = 0;

	while (!exited) {
		struct pollfd p[2];
		long long left = w->deadline - ps_mono_ms();
		nfds_t n = 0;

		if (left <= 0) {
			kill(pid, SIGKILL);
			w->res->timed_out = true;
			break;
		}
		if (open_out)
			p[n++] = (struct pollfd){.fd = w->out_fd, .events = POLLIN};
		if (pidfd >= 0)
			p[n++] = (struct pollfd){.fd = pidfd, .events = POLLIN};
		if (poll(p, n, (int)(pidfd >= 0 ? left : (left < 10 ? left : 10))) < 0 &&
		    errno != EINTR)
			break;
		if (open_out && p[0].revents)
			open_out = read_lines(w) != READ_END;
		if (waitpid_eintr(pid, &status, WNOHANG) == pid)
			exited = true;
	}
	if (!exited && waitpid_eintr(pid, &status, 0) == pid)
		exited = !w->res->timed_out;
	/* what it wrote before it ended; not until EOF, which a process that holds a copy of its
	 * stdout (a child it left, or the user's, taken with pidfd_getfd) could put off forever */
	while (open_out && read_lines(w) == READ_DATA)
		;
	if (pidfd >= 0)
		close(pidfd);
	explicit_bzero(w->line, sizeof(w->line));
	w->res->exit_code = exited && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Fork and exec the helper; hand over the request; wait. SIGCHLD is default meanwhile. */
static int spawn_and_wait(struct child_ctx *c, const char *request, size_t reqlen,
			  const struct ps_spawn_opts *o, struct ps_spawn_result *res)
{
	struct waiter w = {.pamh = c->pamh,
			   .in_fd = -1,
			   .interactive = o->interactive,
			   .request = request,
			   .reqlen = reqlen,
			   .res = res};
	int sv[2], out[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	if (pipe2(out, O_CLOEXEC) < 0) {
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	c->in_fd = sv[1];
	c->out_fd = out[1];
	pid = fork();
	if (pid == 0)
		child_exec(c);
	close(sv[1]);
	close(out[1]);
	if (pid < 0) {
		close(sv[0]);
		close(out[0]);
		return -1;
	}
	/* the request goes out when the helper says it is hardened (on_line) */
	w.sock = sv[0];
	fcntl(out[0], F_SETFL, O_NONBLOCK);
	w.out_fd = out[0];
	w.deadline = o->deadline_ms;
	wait_helper(pid, &w);
	close(sv[0]);
	close(out[0]);
	return 0;
}

int ps_spawn_helper(pam_handle_t *pamh, const struct passwd *pw, const char *request, size_t reqlen,
		    const struct ps_spawn_opts *o, struct ps_spawn_result *res)
{
	struct child_ctx c = {.pamh = pamh, .pw = pw, .o = o};
	struct sigaction dfl = {.sa_handler = SIG_DFL}, old;
	int rc;

	memset(res, 0, sizeof(*res));
	res->exit_code = -1;
	if (ps_child_check_helper(res->message, sizeof(res->message)) < 0)
		return -1;
	if (pw && ps_child_groups(pw, &c.groups, &c.ngroups) < 0) {
		snprintf(res->message, sizeof(res->message), "cannot list the groups of %s",
			 pw->pw_name);
		return -1;
	}
	sigemptyset(&dfl.sa_mask);
	sigaction(SIGCHLD, &dfl, &old);
	rc = spawn_and_wait(&c, request, reqlen, o, res);
	sigaction(SIGCHLD, &old, NULL);
	free(c.groups);
	if (rc < 0)
		snprintf(res->message, sizeof(res->message), "cannot start the helper: %s",
			 strerror(errno));
	return rc;
}
