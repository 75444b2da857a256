/*
 * pam_session.c: drive a real PAM stack from a private configuration directory
 * (pam_start_confdir), as sshd or login would, and report what happened.
 *
 *   pam_session CONFDIR SERVICE USER [-- COMMAND ARGS...]
 *
 * Opens a session for USER, runs COMMAND as USER inside it (if given), closes the session, and
 * prints "open=<PAM code> ms=<elapsed> (<text>)", "command=<exit code>", "close=<PAM code> (<text>)".
 * The environment variable PS_HOLD_OPEN=N keeps the session open N seconds before closing (SIGUSR1
 * ends the hold early, so a test closes the session when it is done rather than on a timer), and
 * PS_CONV_ANSWER=COMMAND answers an echo-on prompt (see conv).
 * Log lines the PAM stack sends to syslog are appended to $PS_SYSLOG_FILE (the driver interposes
 * syslog), so tests can read exactly what the module logged.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include <security/pam_appl.h>

/* syslog interposition: libpam's pam_syslog lands here (fortified builds call __syslog_chk). */
void __syslog_chk(int pri, int flag, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void log_line(int pri, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void log_line(int pri, const char *fmt, va_list ap)
{
	const char *path = getenv("PS_SYSLOG_FILE");
	char line[2048];
	int n, fd;

	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	fd = path ? open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600) : STDERR_FILENO;
	if (fd < 0)
		return;
	dprintf(fd, "<%d> ", pri);
	(void)!write(fd, line, (size_t)n);
	if (path)
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

/* The PAM_TEXT_INFO text so far: what a user would have on screen when prompted. */
static char conv_screen[16384];

/* Answer a prompt by running $PS_CONV_ANSWER (sh -c) with the screen on its stdin. */
static int conv_answer(const char *prompt, char **answer)
{
	const char *cmd = getenv("PS_CONV_ANSWER");
	char path[] = "/tmp/pam_session-screen.XXXXXX", line[8192], *full;
	FILE *p;
	int fd;

	printf("conv prompt: %s\n", prompt);
	if (!cmd)
		return PAM_CONV_ERR;
	fd = mkstemp(path);
	if (fd < 0)
		return PAM_CONV_ERR;
	(void)!write(fd, conv_screen, strlen(conv_screen));
	close(fd);
	if (asprintf(&full, "(%s) < %s", cmd, path) < 0)
		return PAM_CONV_ERR;
	fflush(stdout);
	p = popen(full, "r");
	free(full);
	line[0] = '\0';
	if (p && !fgets(line, sizeof(line), p))
		line[0] = '\0';
	if (p)
		pclose(p);
	unlink(path);
	line[strcspn(line, "\n")] = '\0';
	*answer = strdup(line);
	return *answer ? PAM_SUCCESS : PAM_BUF_ERR;
}

/*
 * The conversation: prints info and error text; answers an echo-on prompt through
 * $PS_CONV_ANSWER when that is set (a user pasting), and fails any other prompt.
 */
static int conv(int n, const struct pam_message **msg, struct pam_response **resp, void *data)
{
	struct pam_response *r = calloc((size_t)n, sizeof(*r));
	int i;

	(void)data;
	if (!r)
		return PAM_BUF_ERR;
	for (i = 0; i < n; i++) {
		switch (msg[i]->msg_style) {
		case PAM_TEXT_INFO:
		case PAM_ERROR_MSG:
			printf("conv: %s\n", msg[i]->msg);
			strncat(conv_screen, msg[i]->msg,
				sizeof(conv_screen) - strlen(conv_screen) - 2);
			strcat(conv_screen, "\n");
			break;
		case PAM_PROMPT_ECHO_ON:
			if (conv_answer(msg[i]->msg, &r[i].resp) == PAM_SUCCESS)
				break;
			/* fall through */
		default:
			while (i-- > 0)
				free(r[i].resp);
			free(r);
			return PAM_CONV_ERR;
		}
	}
	*resp = r;
	return PAM_SUCCESS;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static volatile sig_atomic_t released;

static void on_release(int sig)
{
	(void)sig;
	released = 1;
}

/* Wait SECONDS s or until SIGUSR1, whichever is first. A SIGUSR1 before the block is caught by
 * on_release; one after it stays pending for sigtimedwait: none is lost. */
static void hold_open(unsigned long seconds)
{
	struct timespec end, now, left;
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, NULL);
	clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += (time_t)seconds;
	while (!released) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		left.tv_sec = end.tv_sec - now.tv_sec;
		left.tv_nsec = end.tv_nsec - now.tv_nsec;
		if (left.tv_nsec < 0) {
			left.tv_sec--;
			left.tv_nsec += 1000000000L;
		}
		if (left.tv_sec < 0)
			break;
		if (sigtimedwait(&set, NULL, &left) == SIGUSR1)
			released = 1;
		else if (errno == EAGAIN)
			break;
	}
	sigprocmask(SIG_UNBLOCK, &set, NULL);
}

/* Run argv as the user inside the session (same session keyring), return its exit code. */
static int run_as_user(const char *user, char **argv)
{
	struct passwd *pw = getpwnam(user);
	int status;
	pid_t pid;

	if (!pw)
		return 127;
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		if (initgroups(pw->pw_name, pw->pw_gid) < 0 ||
		    setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) < 0 ||
		    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) < 0)
			_exit(126);
		execvp(argv[0], argv);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		return 127;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/*
 * The peak RSS of the children reaped so far (RUSAGE_CHILDREN): 0 while the module has run no
 * process (the helper it starts is always reaped; a nowait helper is not our child), so a test
 * can tell a session that started no helper (with no COMMAND, at close too). PS_SHOW_CHILDREN=1
 * prints it after the open and after the close, and after the open our uids (real, effective,
 * saved) and dumpable flag, which a module must leave as they were.
 */
static long children_kb(void)
{
	struct rusage ru;

	return getrusage(RUSAGE_CHILDREN, &ru) == 0 ? ru.ru_maxrss : -1;
}

int main(int argc, char **argv)
{
	struct pam_conv c = {conv, NULL};
	pam_handle_t *pamh = NULL;
	const char *hold = getenv("PS_HOLD_OPEN");
	struct sigaction sa = {.sa_handler = on_release}; /* no SA_RESTART: sleep() returns */
	long long t0;
	int rc;

	sigaction(SIGUSR1, &sa, NULL);
	if (argc < 4 || (argc > 4 && strcmp(argv[4], "--") != 0)) {
		fprintf(stderr, "usage: pam_session CONFDIR SERVICE USER [-- COMMAND ARGS...]\n");
		return 2;
	}
	rc = pam_start_confdir(argv[2], argv[3], &c, argv[1], &pamh);
	if (rc != PAM_SUCCESS) {
		printf("start=%s\n", pam_strerror(pamh, rc));
		return 1;
	}
	t0 = now_ms();
	rc = pam_open_session(pamh, 0);
	printf("open=%d ms=%lld (%s)\n", rc, now_ms() - t0, pam_strerror(pamh, rc));
	if (getenv("PS_SHOW_CHILDREN")) {
		uid_t r, e, su;

		getresuid(&r, &e, &su);
		printf("open_children_kb=%ld\n", children_kb());
		printf("open_uids=%u/%u/%u dumpable=%d\n", (unsigned)r, (unsigned)e, (unsigned)su,
		       prctl(PR_GET_DUMPABLE));
	}
	if (rc == PAM_SUCCESS || rc == PAM_IGNORE || rc == PAM_SESSION_ERR) {
		if (argc > 5)
			printf("command=%d\n", run_as_user(argv[3], argv + 5));
		fflush(stdout); /* a test waiting for these lines sees them during the hold */
		if (hold)
			hold_open(strtoul(hold, NULL, 10));
		rc = pam_close_session(pamh, 0);
		printf("close=%d (%s)\n", rc, pam_strerror(pamh, rc));
		if (getenv("PS_SHOW_CHILDREN"))
			printf("close_children_kb=%ld\n", children_kb());
	}
	pam_end(pamh, rc);
	return 0;
}
