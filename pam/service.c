/*
 * service.c: the module's side of the system service (see service.h). Runs as root inside the
 * PAM application, which under su or sudo the user can signal and limit: nothing here holds a
 * lock, and nothing waits past the login's deadline.
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
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

/* --- the clean context of a service the module starts */

/* init's resource limits (read in the child with open, read and a parser that allocates nothing). */
struct limits {
	int n;
	int resource[RLIM_NLIMITS];
	struct rlimit value[RLIM_NLIMITS];
	rlim_t need[RLIM_NLIMITS];
};

/*
 * Each limit in /proc/1/limits, and the least the service needs of it where root cannot raise it
 * back to init's (no CAP_SYS_RESOURCE: a container): a caller's lower limit below that keeps the
 * service from starting; UNLIMITED: init's or nothing (a CPU limit would end it some day).
 */
#define UNLIMITED RLIM_INFINITY
static const struct {
	const char *name;
	int resource;
	rlim_t need;
} limit_names[] = {
	{"Max cpu time", RLIMIT_CPU, UNLIMITED},
	{"Max file size", RLIMIT_FSIZE, 0},
	{"Max data size", RLIMIT_DATA, 1024UL * 1024 * 1024},
	{"Max stack size", RLIMIT_STACK, 8UL * 1024 * 1024},
	{"Max core file size", RLIMIT_CORE, 0},
	{"Max resident set", RLIMIT_RSS, 0},
	{"Max processes", RLIMIT_NPROC, 256},
	{"Max open files", RLIMIT_NOFILE, 1024},
	{"Max locked memory", RLIMIT_MEMLOCK, 0},
	{"Max address space", RLIMIT_AS, 1024UL * 1024 * 1024},
	{"Max file locks", RLIMIT_LOCKS, 0},
	{"Max pending signals", RLIMIT_SIGPENDING, 64},
	{"Max msgqueue size", RLIMIT_MSGQUEUE, 0},
	{"Max nice priority", RLIMIT_NICE, 0},
	{"Max realtime priority", RLIMIT_RTPRIO, 0},
	{"Max realtime timeout", RLIMIT_RTTIME, 0},
};

/* "unlimited" or a decimal number; the end of the token in *end. 0 or -1. */
static int limit_value(const char *s, rlim_t *v, const char **end)
{
	unsigned long long n = 0;

	s += strspn(s, " ");
	if (!strncmp(s, "unlimited", 9)) {
		*v = RLIM_INFINITY;
		*end = s + 9;
		return 0;
	}
	if (*s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++)
		n = n * 10 + (unsigned long long)(*s - '0');
	*v = (rlim_t)n;
	*end = s;
	return 0;
}

/* /proc/1/limits: the limits every process starts with, before a login changes any. */
static void limits_of_init(struct limits *l)
{
	char buf[4096], *line, *save = NULL;
	size_t len = 0;
	int fd = open("/proc/1/limits", O_RDONLY | O_CLOEXEC);

	l->n = 0;
	if (fd < 0)
		return;
	if (ps_read_all(fd, buf, sizeof(buf) - 1, &len) < 0)
		len = 0;
	close(fd);
	buf[len] = '\0';
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		size_t i;

		for (i = 0; i < sizeof(limit_names) / sizeof(limit_names[0]); i++) {
			size_t n = strlen(limit_names[i].name);
			const char *p = line + n;
			struct rlimit r;

			if (strncmp(line, limit_names[i].name, n) || p[0] != ' ' ||
			    l->n >= RLIM_NLIMITS)
				continue;
			if (limit_value(p, &r.rlim_cur, &p) == 0 &&
			    limit_value(p, &r.rlim_max, &p) == 0) {
				l->resource[l->n] = limit_names[i].resource;
				l->need[l->n] = limit_names[i].need;
				l->value[l->n++] = r;
			}
			break;
		}
	}
}

/* In the child: nothing but async-signal-safe calls from here on. */
/* In the child: tell the module why the service cannot start, and end. */
static void __attribute__((noreturn)) child_refuse(const char *why)
{
	static const char head[] = "fail 6 the system service was not started from this login: ";
	static const char tail[] = "; the next login that can starts it\n";

	(void)!write(STDOUT_FILENO, head, sizeof(head) - 1);
	(void)!write(STDOUT_FILENO, why, strlen(why));
	(void)!write(STDOUT_FILENO, tail, sizeof(tail) - 1);
	_exit(127);
}

/*
 * The context every process of the host starts with, whatever the login's caller set: init's
 * resource limits, nice 0, every CPU, oom_score_adj 0, default signals, umask 022, /. A limit the
 * caller lowered below what the service needs (limit_names) or a priority, which cannot be raised
 * again (root without CAP_SYS_RESOURCE or CAP_SYS_NICE), is not carried into the host's service:
 * it is not started from this login.
 */
static void child_clean_context(const struct limits *l)
{
	static const char zero[] = "0\n";
	cpu_set_t all;
	sigset_t none;
	struct rlimit now;
	int i, fd;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (i = 1; i < NSIG; i++)
		if (i != SIGKILL && i != SIGSTOP)
			signal(i, SIG_DFL);
	if (l->n == 0)
		child_refuse("cannot read init's resource limits in /proc/1/limits");
	for (i = 0; i < l->n; i++) {
		rlim_t cur = l->value[i].rlim_cur, max = l->value[i].rlim_max;

		setrlimit(l->resource[i], &l->value[i]);
		cur = cur < l->need[i] ? cur : l->need[i];
		max = max < l->need[i] ? max : l->need[i];
		if (getrlimit(l->resource[i], &now) < 0 || now.rlim_cur < cur || now.rlim_max < max)
			child_refuse("a resource limit of the login is below init's and cannot be "
				     "raised");
	}
	errno = 0;
	if (setpriority(PRIO_PROCESS, 0, 0) < 0 || getpriority(PRIO_PROCESS, 0) != 0)
		child_refuse("the login's nice value cannot be reset to 0");
	CPU_ZERO(&all);
	for (i = 0; i < CPU_SETSIZE; i++)
		CPU_SET(i, &all);
	sched_setaffinity(0, sizeof(all), &all); /* the kernel keeps the CPUs that exist */
	fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		(void)!write(fd, zero, sizeof(zero) - 1);
		close(fd);
	}
	umask(022);
	(void)!chdir("/");
}

/* In the child: the request on stdin, the status pipe on stdout, /dev/null on stderr. */
static void child_fds(int in, int status)
{
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);

	in = fcntl(in, F_DUPFD_CLOEXEC, 3);
	status = fcntl(status, F_DUPFD_CLOEXEC, 3);
	null = null < 0 ? -1 : fcntl(null, F_DUPFD_CLOEXEC, 3);
	if (in < 0 || status < 0 || null < 0 || dup2(in, STDIN_FILENO) < 0 ||
	    dup2(status, STDOUT_FILENO) < 0 || dup2(null, STDERR_FILENO) < 0)
		_exit(127);
	closefrom(3);
}

/*
 * The child: root in full at once (a su caller's real uid may signal us until then; it can no
 * longer after), a new session, and a grandchild that init adopts runs the service.
 */
static void __attribute__((noreturn)) child_run(int in, int status)
{
	static const char failed[] = "fail 7 cannot execute " PS_HELPER_PATH "\n";
	char *const argv[] = {(char *)"pam_spotify_helper", (char *)"service", NULL};
	char *const envp[] = {(char *)"PATH=/usr/bin:/bin", NULL};
	struct rlimit files;
	struct limits l;
	pid_t pid;

	if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0 || setsid() < 0)
		_exit(127);
	pid = fork();
	if (pid != 0)
		_exit(pid < 0 ? 127 : 0);
	/* descriptors first, with room to move them: the caller may have left us very few (the
	 * soft limit only: a hard one lowered here could not be raised again without
	 * CAP_SYS_RESOURCE) */
	if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < 1024) {
		files.rlim_cur = files.rlim_max < 1024 ? files.rlim_max : 1024;
		setrlimit(RLIMIT_NOFILE, &files);
	}
	child_fds(in, status);
	limits_of_init(&l); /* open, read and parse only: safe after fork */
	child_clean_context(&l);
	if (setgroups(0, NULL) < 0)
		_exit(127);
	execve(PS_HELPER_PATH, argv, envp);
	(void)!write(STDOUT_FILENO, failed, sizeof(failed) - 1);
	_exit(127);
}

/*
 * Reap the intermediate child, which ends at once unless the login's caller (who may signal it
 * until it is root in full) stopped it: then it is killed at the deadline, never waited for past.
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
 * Start the service for cfg in a clean context and read how its start went. PS_EXIT_OK when it
 * serves (or another one does), else an exit code with line.
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
		child_run(in[0], st[1]);
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

	if (ps_msg_call(fd, msg, len, passfd, deadline, reply, REPLY_MAX, &n) < 0) {
		ps_errf(line, linelen, "the system service did not answer: %s", strerror(errno));
		return PS_EXIT_NETWORK;
	}
	return ps_msg_status(reply, n, line, linelen);
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
