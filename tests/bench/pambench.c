/*
 * pambench.c: drive real PAM session stacks (pam_start_confdir, as sshd or login would) many
 * times in one process and time them, for tests/bench/run. Modes:
 *
 *   pambench loop CONFDIR USER N SERVICE [SERVICE...]
 *       N rounds; each round runs one whole session on each SERVICE in turn (interleaved:
 *       A B A B ...): pam_start_confdir, pam_open_session, pam_close_session, pam_end. Prints per
 *       session "SVC CYCLE_NS OPENCLOSE_NS OPEN_RC CLOSE_RC" (SVC: the service's index; CYCLE: the
 *       whole session, start to end; OPENCLOSE: the open and the close calls only).
 *   pambench cold CONFDIR SERVICE USER N HOOK
 *       N sessions one after the other; only pam_open_session is timed. After each close,
 *       `sh -c HOOK` runs (untimed; it restores the cold state: no keeper, no key). Prints per
 *       session "0 OPEN_NS OPEN_RC CLOSE_RC".
 *   pambench storm CONFDIR SERVICE N HOLD READER USER [USER...]
 *       N concurrent sessions (session i for USER[i mod users]), each in its own process: all
 *       start their PAM handle, then wait at a barrier; when all are ready they are released at
 *       once and open. Each then runs READER as its user inside its session (the way the user's
 *       programs read the token) and reports "open I USER OPEN_RC LATENCY_NS OPEN_NS READ_RC
 *       TOKEN" (LATENCY: from the release to the end of its open, so it includes waiting for a
 *       CPU; OPEN: the pam_open_session call alone; TOKEN: the reader's output, "-" if none).
 *       Then "opened N" once all have reported (or 120 s passed). The sessions stay open until
 *       SIGUSR1 or HOLD seconds, then close: "close I CLOSE_RC" each, and "closed".
 *
 * Syslog lines from the modules go to $PS_SYSLOG_FILE (appended; discarded when it is unset).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include <security/pam_appl.h>

#define STORM_MAX     1000
#define STORM_WAIT_MS 120000
#define TOKEN_MAX     512

/* --- syslog interposition (libpam's pam_syslog lands here; fortified builds call __syslog_chk) */
void __syslog_chk(int pri, int flag, const char *fmt, ...);

/* One write per line: concurrent sessions append to one file (O_APPEND keeps a write whole). */
static void log_line(int pri, const char *fmt, va_list ap)
{
	const char *path = getenv("PS_SYSLOG_FILE");
	char line[2048];
	int n, m, fd;

	if (!path)
		return;
	n = snprintf(line, sizeof(line), "<%d> [%d] ", pri, (int)getpid());
	if (n < 0 || (size_t)n >= sizeof(line))
		return;
	m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	if (m < 0)
		return;
	n += m;
	if ((size_t)n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	(void)!write(fd, line, (size_t)n);
	close(fd);
}

void vsyslog(int pri, const char *fmt, va_list ap)
{
	log_line(pri, fmt, ap);
}

void syslog(int pri, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_line(pri, fmt, ap);
	va_end(ap);
}

void __syslog_chk(int pri, int flag, const char *fmt, ...)
{
	va_list ap;

	(void)flag;
	va_start(ap, fmt);
	log_line(pri, fmt, ap);
	va_end(ap);
}

/* A conversation that shows nothing and answers no prompt (a non-interactive login). */
static int conv(int n, const struct pam_message **msg, struct pam_response **resp, void *data)
{
	(void)n;
	(void)msg;
	(void)resp;
	(void)data;
	return PAM_CONV_ERR;
}

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long count_arg(const char *s)
{
	char *end;
	long n = strtol(s, &end, 10);

	return *s && !*end && n > 0 ? n : -1;
}

/* --- loop: whole sessions, interleaved over services */

static int mode_loop(const char *confdir, const char *user, long n, int nsvc, char **svc)
{
	struct pam_conv c = {conv, NULL};
	long r;
	int i;

	for (r = 0; r < n; r++) {
		for (i = 0; i < nsvc; i++) {
			pam_handle_t *pamh = NULL;
			long long t0 = now_ns(), t1, t2, t3;
			int orc, crc = -1;

			if (pam_start_confdir(svc[i], user, &c, confdir, &pamh) != PAM_SUCCESS) {
				fprintf(stderr, "pambench: pam_start_confdir %s failed\n", svc[i]);
				return 1;
			}
			t1 = now_ns();
			orc = pam_open_session(pamh, 0);
			if (orc == PAM_SUCCESS)
				crc = pam_close_session(pamh, 0);
			t2 = now_ns();
			pam_end(pamh, orc);
			t3 = now_ns();
			printf("%d %lld %lld %d %d\n", i, t3 - t0, t2 - t1, orc, crc);
		}
	}
	return fflush(stdout) == 0 ? 0 : 1;
}

/* --- cold: one timed open at a time, the cold state restored between them by HOOK */

static int mode_cold(const char *confdir, const char *svc, const char *user, long n,
		     const char *hook)
{
	struct pam_conv c = {conv, NULL};
	long r;

	for (r = 0; r < n; r++) {
		pam_handle_t *pamh = NULL;
		long long t0;
		int orc, crc = -1;

		if (pam_start_confdir(svc, user, &c, confdir, &pamh) != PAM_SUCCESS) {
			fprintf(stderr, "pambench: pam_start_confdir %s failed\n", svc);
			return 1;
		}
		t0 = now_ns();
		orc = pam_open_session(pamh, 0);
		t0 = now_ns() - t0;
		if (orc == PAM_SUCCESS)
			crc = pam_close_session(pamh, 0);
		pam_end(pamh, orc);
		printf("0 %lld %d %d\n", t0, orc, crc);
		fflush(stdout);
		if (system(hook) != 0)
			fprintf(stderr, "pambench: the hook failed after session %ld\n", r);
	}
	return 0;
}

/* --- storm: concurrent sessions released together */

/* Run READER as pw inside this process's session; its first output line into tok. */
static int read_token(const struct passwd *pw, const char *reader, char *tok, size_t len)
{
	char *argv[] = {(char *)reader, NULL};
	int fds[2], status;
	ssize_t got = 0, k;
	pid_t pid;

	snprintf(tok, len, "-");
	if (pipe2(fds, O_CLOEXEC) < 0)
		return 127;
	pid = fork();
	if (pid == 0) {
		if (dup2(fds[1], STDOUT_FILENO) < 0 || initgroups(pw->pw_name, pw->pw_gid) < 0 ||
		    setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) < 0 ||
		    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) < 0)
			_exit(126);
		execv(reader, argv);
		_exit(127);
	}
	close(fds[1]);
	while ((size_t)got < len - 1 && (k = read(fds[0], tok + got, len - 1 - (size_t)got)) > 0)
		got += k;
	close(fds[0]);
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		return 127;
	if (got > 0) {
		tok[got] = '\0';
		tok[strcspn(tok, "\n ")] = '\0';
	}
	if (!tok[0])
		snprintf(tok, len, "-");
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static volatile sig_atomic_t released;

static void on_release(int sig)
{
	(void)sig;
	released = 1;
}

/* Wait for EOF on fd (or timeout_ms, -1 for ever). */
static void wait_eof(int fd, int timeout_ms)
{
	struct pollfd p = {fd, POLLIN, 0};
	char b;

	while (poll(&p, 1, timeout_ms) < 0 && errno == EINTR)
		;
	while (read(fd, &b, 1) < 0 && errno == EINTR)
		;
}

struct storm {
	const char *confdir, *svc, *reader;
	int ready[2], go[2], release[2], results[2];
	long long t_go; /* written by the parent before the release; children inherit nothing */
	int hold_s;
};

static void __attribute__((noreturn)) storm_child(struct storm *s, int idx, const char *user)
{
	struct pam_conv c = {conv, NULL};
	pam_handle_t *pamh = NULL;
	struct passwd *pw = getpwnam(user);
	char tok[TOKEN_MAX], line[TOKEN_MAX + 128];
	long long t0, t1;
	int orc = -1, rrc = -1, crc = -1, n;

	close(s->ready[0]);
	close(s->go[1]);
	close(s->release[1]);
	close(s->results[0]);
	snprintf(tok, sizeof(tok), "-");
	if (!pw || pam_start_confdir(s->svc, user, &c, s->confdir, &pamh) != PAM_SUCCESS)
		pamh = NULL;
	(void)!write(s->ready[1], "r", 1);
	close(s->ready[1]);
	wait_eof(s->go[0], -1);
	t0 = now_ns();
	if (pamh)
		orc = pam_open_session(pamh, 0);
	t1 = now_ns();
	if (orc == PAM_SUCCESS)
		rrc = read_token(pw, s->reader, tok, sizeof(tok));
	/* LATENCY is completed by the parent (it knows the release time): we send our end time */
	n = snprintf(line, sizeof(line), "open %d %s %d %lld %lld %d %s\n", idx, user, orc, t1,
		     t1 - t0, rrc, tok);
	(void)!write(s->results[1], line, (size_t)n);
	wait_eof(s->release[0], s->hold_s * 1000);
	if (orc == PAM_SUCCESS)
		crc = pam_close_session(pamh, 0);
	if (pamh)
		pam_end(pamh, orc);
	n = snprintf(line, sizeof(line), "close %d %d\n", idx, crc);
	(void)!write(s->results[1], line, (size_t)n);
	_exit(0);
}

/* Read result lines until `want` of them start with prefix (or the deadline); print them. */
static int collect(FILE *in, const char *prefix, int want, long long t_go, long long deadline_ns)
{
	char line[TOKEN_MAX + 128], user[64], tok[TOKEN_MAX];
	int got = 0, idx, orc, rrc, fd = fileno(in);
	long long t_end, open_ns;

	while (got < want) {
		struct pollfd p = {fd, POLLIN, 0};
		long long left = (deadline_ns - now_ns()) / 1000000;

		if (left <= 0)
			break;
		if (poll(&p, 1, (int)left) <= 0)
			continue;
		if (!fgets(line, sizeof(line), in))
			break;
		if (strncmp(line, prefix, strlen(prefix)) != 0)
			continue;
		got++;
		if (sscanf(line, "open %d %63s %d %lld %lld %d %511s", &idx, user, &orc, &t_end,
			   &open_ns, &rrc, tok) == 7)
			printf("open %d %s %d %lld %lld %d %s\n", idx, user, orc, t_end - t_go,
			       open_ns, rrc, tok);
		else
			fputs(line, stdout);
	}
	fflush(stdout);
	return got;
}

static int mode_storm(struct storm *s, int n, int nusers, char **users)
{
	struct sigaction sa = {.sa_handler = on_release};
	pid_t pids[STORM_MAX];
	sigset_t set, old;
	FILE *res;
	char b;
	int i, ready = 0;

	sigaction(SIGUSR1, &sa, NULL);
	if (pipe2(s->ready, O_CLOEXEC) < 0 || pipe2(s->go, O_CLOEXEC) < 0 ||
	    pipe2(s->release, O_CLOEXEC) < 0 || pipe2(s->results, O_CLOEXEC) < 0) {
		perror("pambench: pipe");
		return 1;
	}
	for (i = 0; i < n; i++) {
		pids[i] = fork();
		if (pids[i] == 0)
			storm_child(s, i, users[i % nusers]);
		if (pids[i] < 0) {
			perror("pambench: fork");
			n = i;
			break;
		}
	}
	close(s->ready[1]);
	close(s->go[0]);
	close(s->release[0]);
	close(s->results[1]);
	while (ready < n && read(s->ready[0], &b, 1) == 1)
		ready++;
	s->t_go = now_ns();
	close(s->go[1]); /* the release: every child's read returns 0 at once */
	res = fdopen(s->results[0], "r");
	if (!res)
		return 1;
	setvbuf(res, NULL, _IONBF, 0); /* collect polls the fd: no line may wait in a buffer */
	printf("opened %d\n",
	       collect(res, "open ", n, s->t_go, s->t_go + STORM_WAIT_MS * 1000000LL));
	fflush(stdout);
	/* hold until SIGUSR1 (or HOLD s) */
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, &old);
	if (!released) {
		struct timespec ts = {s->hold_s, 0};

		sigtimedwait(&set, NULL, &ts);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(s->release[1]);
	collect(res, "close ", n, 0, now_ns() + STORM_WAIT_MS * 1000000LL);
	for (i = 0; i < n; i++)
		while (waitpid(pids[i], NULL, 0) < 0 && errno == EINTR)
			;
	printf("closed\n");
	return fflush(stdout) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	long n;

	if (argc >= 6 && strcmp(argv[1], "loop") == 0 && (n = count_arg(argv[4])) > 0)
		return mode_loop(argv[2], argv[3], n, argc - 5, argv + 5);
	if (argc == 7 && strcmp(argv[1], "cold") == 0 && (n = count_arg(argv[5])) > 0)
		return mode_cold(argv[2], argv[3], argv[4], n, argv[6]);
	if (argc >= 8 && strcmp(argv[1], "storm") == 0 && (n = count_arg(argv[4])) > 0 &&
	    n <= STORM_MAX && count_arg(argv[5]) > 0) {
		struct storm s = {.confdir = argv[2],
				  .svc = argv[3],
				  .reader = argv[6],
				  .hold_s = (int)count_arg(argv[5])};

		return mode_storm(&s, (int)n, argc - 7, argv + 7);
	}
	fprintf(stderr, "usage: pambench loop CONFDIR USER N SERVICE [SERVICE...]\n"
			"       pambench cold CONFDIR SERVICE USER N HOOK\n"
			"       pambench storm CONFDIR SERVICE N HOLD READER USER [USER...]\n");
	return 2;
}
