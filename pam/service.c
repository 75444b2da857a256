/*
 * service.c: the module's side of the system service (see service.h). Runs as root inside the
 * PAM application, which under su or sudo the user can signal and limit: nothing here holds a
 * lock, and nothing waits past the login's deadline.
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>
#include <security/pam_ext.h>
#include <security/pam_modutil.h>

#include "common/frame.h"
#include "common/request.h"
#include "common/paths.h"
#include "pam/service.h"
#include "pam/spawn.h"
#include "common/util.h"

#define REPLY_MAX 1024

/* --- starting it: pam_spotify_helper service --start (helper/service_start.h) */

/*
 * The child: root in full at once (a su caller's real uid may signal us until then; it can no
 * longer after), the request on stdin, the status pipe on stdout, no other descriptor, an empty
 * environment. The helper takes a clean context and forks the service off to init.
 */
static void __attribute__((noreturn)) child_start(int in, int status)
{
	static const char failed[] = "fail 7 cannot execute " PS_HELPER_PATH "\n";
	char *const argv[] = {(char *)"pam_spotify_helper", (char *)"service", (char *)"--start",
			      NULL};
	char *const envp[] = {NULL};

	if (setresuid(0, 0, 0) < 0 || setresgid(0, 0, 0) < 0)
		_exit(127);
	ps_spawn_child_fds(in, status);
	execve(PS_HELPER_PATH, argv, envp);
	(void)!write(STDOUT_FILENO, failed, sizeof(failed) - 1);
	_exit(127);
}

/*
 * Reap the child, which ends once it has forked the service unless the login's caller (who may
 * signal it until it is root in full) stopped it: then it is killed at the deadline, never waited
 * for past.
 */
static void reap_within(pid_t pid, long long deadline)
{
	long us = 100;
	pid_t r;

	for (;;) {
		r = waitpid(pid, NULL, WNOHANG);
		if (r != 0 && !(r < 0 && errno == EINTR))
			return;
		if (ps_mono_ms() >= deadline) {
			kill(pid, SIGKILL);
			while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
				;
			return;
		}
		usleep((useconds_t)us);
		us = us < 10000 ? us * 2 : us;
	}
}

/* Read the service's status line ("ready", "busy", "fail CODE TEXT") until deadline. */
static void read_status(int fd, long long deadline, char *buf, size_t buflen)
{
	size_t len = 0;

	buf[0] = '\0';
	while (len + 1 < buflen && !memchr(buf, '\n', len)) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		long long left = deadline - ps_mono_ms();
		ssize_t n;

		if (left <= 0)
			break;
		n = poll(&p, 1, (int)(left > 60000 ? 60000 : left));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		n = read(fd, buf + len, buflen - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		buf[len] = '\0';
	}
	buf[strcspn(buf, "\n")] = '\0';
}

/*
 * Start the service for cfg and read how its start went. PS_EXIT_OK when it serves (or another
 * one does), else an exit code with line.
 */
static int service_start(struct ps_config *cfg, long long deadline, char *line, size_t linelen)
{
	char req[PS_REQUEST_MAX], status[PS_ERR_MAX + 32];
	struct sigaction dfl = {.sa_handler = SIG_DFL}, old;
	int in[2], st[2], len, w;
	unsigned long code;
	pid_t pid;

	if (ps_spawn_check_helper(line, linelen) < 0)
		return PS_EXIT_CONFIG; /* it would run as root, and hold the secret */
	len = ps_request_format(cfg, PS_OP_OPEN, req, sizeof(req));
	if (len < 0) {
		ps_errf(line, linelen, "the request to the system service is too large");
		return PS_EXIT_CONFIG;
	}
	if (pipe2(in, O_CLOEXEC) < 0)
		goto fail;
	if (pipe2(st, O_CLOEXEC) < 0) {
		close(in[0]);
		close(in[1]);
		goto fail;
	}
	/* the request fits in the pipe: nothing waits for the service to read it */
	w = ps_write_all(in[1], req, (size_t)len);
	close(in[1]);
	sigaction(SIGCHLD, &dfl, &old);
	pid = w < 0 ? -1 : fork();
	if (pid == 0)
		child_start(in[0], st[1]);
	close(in[0]);
	close(st[1]);
	if (pid > 0)
		reap_within(pid, deadline);
	sigaction(SIGCHLD, &old, NULL);
	if (pid < 0) {
		close(st[0]);
		goto fail;
	}
	read_status(st[0], deadline, status, sizeof(status));
	close(st[0]);
	if (!strcmp(status, "ready") || !strcmp(status, "busy"))
		return PS_EXIT_OK;
	if (!strncmp(status, "fail ", 5) && strlen(status) > 7 && status[6] == ' ') {
		char num[2] = {status[5], '\0'};

		if (ps_parse_ulong(num, 1, 7, &code) == 0) {
			ps_strlcpy(line, status + 7, linelen);
			return (int)code;
		}
	}
	ps_errf(line, linelen,
		"the system service did not start within the %u s timeout: see the system log "
		"(pam_spotify_helper[service])",
		cfg->timeout);
	return PS_EXIT_NETWORK;
fail:
	ps_errf(line, linelen, "cannot start the system service: %s", strerror(errno));
	return PS_EXIT_NETWORK;
}

/* --- talking to it */

/* Connect to path and check that the service at the other end is the app user's. */
static int service_connect(const char *path, uid_t app_uid)
{
	uid_t uid;
	int fd = ps_frame_connect(path);

	if (fd < 0)
		return -1;
	if (ps_frame_peer_uid(fd, &uid, NULL) < 0 || (uid != app_uid && uid != 0)) {
		close(fd);
		errno = EPERM;
		return -1;
	}
	return fd;
}

/*
 * One exchange: the message (with passfd), then the reply's status and message. PS_EXIT_OK, the
 * service's code, or PS_EXIT_NETWORK when it did not answer in time.
 */
static int exchange(int fd, const char *msg, size_t len, int passfd, long long deadline, char *line,
		    size_t linelen)
{
	char reply[REPLY_MAX + 1];
	size_t n;

	if (ps_msg_exchange(fd, msg, len, passfd, deadline, reply, REPLY_MAX, &n) < 0) {
		ps_errf(line, linelen, "the system service did not answer: %s", strerror(errno));
		return PS_EXIT_NETWORK;
	}
	return ps_msg_status(reply, n, "the system service", line, linelen);
}

/* The open message: the session (uid, pid, and its pidfd alongside), and which service. */
static int format_session(const struct ps_config *cfg, const struct passwd *pw, const char *op,
			  char *buf, size_t buflen)
{
	struct ps_buf b = {.buf = buf, .cap = buflen};
	char num[32], name[PS_SERVICE_NAME_MAX];

	ps_msg_add(&b, "op", op);
	ps_service_name(cfg, "", name, sizeof(name));
	ps_msg_add(&b, "service", name);
	snprintf(num, sizeof(num), "%u", (unsigned)pw->pw_uid);
	ps_msg_add(&b, "uid", num);
	snprintf(num, sizeof(num), "%ld", cfg->session_pid);
	ps_msg_add(&b, "pid", num);
	ps_msg_end(&b);
	return b.full ? -1 : (int)b.len;
}

/* Open the session at the service at path. PS_EXIT_OK; -1 when nothing serves there. */
static int open_at(const struct ps_config *cfg, const struct passwd *pw, const char *path,
		   uid_t app_uid, long long deadline, char *line, size_t linelen)
{
	char msg[512];
	int fd, pidfd, len, rc;

	fd = service_connect(path, app_uid);
	if (fd < 0)
		return -1;
	len = format_session(cfg, pw, "open", msg, sizeof(msg));
	pidfd = cfg->session_pid > 0 ? (int)syscall(SYS_pidfd_open, (pid_t)cfg->session_pid, 0)
				     : -1;
	rc = len < 0 ? PS_EXIT_CONFIG
		     : exchange(fd, msg, (size_t)len, pidfd, deadline, line, linelen);
	if (pidfd >= 0)
		close(pidfd);
	close(fd);
	return rc;
}

/* The app user: it exists and is not root. */
static const struct passwd *app_user(pam_handle_t *pamh, const struct ps_config *cfg, char *line,
				     size_t linelen)
{
	const struct passwd *app = pam_modutil_getpwnam(pamh, cfg->app_user);

	if (!app)
		ps_errf(line, linelen,
			"app_user %s does not exist: create the system service's user "
			"(useradd --system %s)",
			cfg->app_user, cfg->app_user);
	else if (app->pw_uid == 0)
		ps_errf(line, linelen, "app_user %s is root; the system service never is",
			cfg->app_user);
	return app && app->pw_uid != 0 ? app : NULL;
}

/* The systemd socket serves this configuration (it answers a configuration error if not). */
static int open_systemd(const struct ps_config *cfg, const struct passwd *pw, uid_t app_uid,
			long long deadline, char *line, size_t linelen)
{
	char why[PS_ERR_MAX];
	int rc = open_at(cfg, pw, PS_RUNDIR "/" PS_SERVICE_SYSTEMD, app_uid, deadline, why,
			 sizeof(why));

	if (rc == PS_EXIT_OK)
		return rc;
	if (rc > 0)
		ps_strlcpy(line, why, linelen);
	return -1;
}

int ps_service_open(pam_handle_t *pamh, struct ps_config *cfg, const struct passwd *pw,
		    long long deadline, char *line, size_t linelen)
{
	const struct passwd *app = app_user(pamh, cfg, line, linelen);
	char path[PS_SERVICE_PATH_MAX];
	bool started = false;
	int rfd, rc;

	if (!app)
		return PS_EXIT_CONFIG;
	cfg->app_uid = (long)app->pw_uid;
	rfd = ps_rundir_open(true, line, linelen);
	if (rfd < 0)
		return PS_EXIT_CONFIG;
	close(rfd);
	ps_service_path(cfg, ".sock", path, sizeof(path));
	for (;;) {
		rc = open_at(cfg, pw, path, app->pw_uid, deadline, line, linelen);
		if (rc >= 0)
			break;
		if (open_systemd(cfg, pw, app->pw_uid, deadline, line, linelen) == PS_EXIT_OK) {
			ps_strlcpy(path, PS_RUNDIR "/" PS_SERVICE_SYSTEMD, sizeof(path));
			rc = PS_EXIT_OK;
			break;
		}
		if (!started) {
			rc = service_start(cfg, deadline, line, linelen);
			if (rc != PS_EXIT_OK)
				return rc;
			started = true;
			continue;
		}
		if (ps_mono_ms() >= deadline) {
			ps_errf(line, linelen,
				"the system service at %s did not answer within the %u s "
				"timeout: see the system log (pam_spotify_helper[service])",
				path, cfg->timeout);
			return PS_EXIT_NETWORK;
		}
		usleep(5000); /* another login's service is binding its socket */
	}
	if (rc == PS_EXIT_OK)
		ps_strlcpy(cfg->service, path, sizeof(cfg->service));
	return rc;
}

void ps_service_close(pam_handle_t *pamh, const struct ps_config *cfg, const struct passwd *pw)
{
	const struct passwd *app = pam_modutil_getpwnam(pamh, cfg->app_user);
	long long deadline = ps_mono_ms() + 1000;
	char path[PS_SERVICE_PATH_MAX], msg[512], line[PS_ERR_MAX];
	int fd, len;

	if (!app || app->pw_uid == 0)
		return;
	ps_service_path(cfg, ".sock", path, sizeof(path));
	fd = service_connect(path, app->pw_uid);
	if (fd < 0)
		fd = service_connect(PS_RUNDIR "/" PS_SERVICE_SYSTEMD, app->pw_uid);
	if (fd < 0)
		return; /* no service: nothing counts this session */
	len = format_session(cfg, pw, "close", msg, sizeof(msg));
	if (len > 0 && exchange(fd, msg, (size_t)len, -1, deadline, line, sizeof(line)) != 0 &&
	    cfg->debug)
		pam_syslog(pamh, LOG_DEBUG, "user %s: close: system service: %s", pw->pw_name,
			   line);
	close(fd);
}
