/*
 * keeper.c: the user's keeper (see keeper.h): its start by the helper at a login, the calls of
 * the user's own commands, and the keeper itself: one poll(2) over its socket, its renewal
 * timer, its signals, the renewal under way and its sessions' pidfds.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <keyutils.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "common/child.h"
#include "common/frame.h"
#include "common/paths.h"
#include "common/util.h"
#include "helper/curl_load.h"
#include "helper/grant.h"
#include "helper/keeper.h"
#include "helper/service.h"
#include "helper/user_token.h"
#include "keyring/keys.h"

#define CONN_WAIT_MS  1000  /* a peer has this long to send its message */
#define FIRST_WAIT_MS 10000 /* a new keeper waits this long for the login that started it */
#define BACKOFF_MAX_S 60
#define MSG_MAX	      1024
#define REPLY_MAX     (PS_TOKEN_INFO_MAX + PS_TOKEN_MAX + PS_ERR_MAX + 256)
#define NEVER	      (-1LL)
#define YEAR_MS	      (365LL * 86400 * 1000)

/* --- the start, at a login (the helper, as the user) */

/*
 * Read one line of the form WANT[ ...] from fd by the deadline (a monotonic time in ms): true when
 * it came. One byte at a time, so nothing after the line is taken from the pipe.
 */
static bool line_within(int fd, const char *want, long long deadline)
{
	char line[64];
	size_t len = 0;

	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		long long left = deadline - ps_mono_ms();

		if (left <= 0 || poll(&p, 1, (int)left) != 1 || read(fd, line + len, 1) != 1)
			return false;
		if (line[len] == '\n' || ++len == sizeof(line) - 1)
			break;
	}
	line[len] = '\0';
	len = strlen(want);
	return strncmp(line, want, len) == 0 && (line[len] == '\0' || line[len] == ' ');
}

/* Listen at path; a socket left there by a killed keeper goes (the caller holds the lock). */
static int listen_at(const char *path, char *line, size_t linelen)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ps_strlcpy(a.sun_path, path, sizeof(a.sun_path));
	unlink(path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 128) < 0) {
		ps_errf(line, linelen, "cannot listen at %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/*
 * Exec `pam_spotify_helper keeper` in a session of its own, with the socket and the lock; once it
 * says it is hardened, the request on its stdin; then wait for its "ready" until the deadline.
 * 0 when it said so; -1 when no keeper runs (one not hardened by then is killed); 1 when it has
 * its request and still starts (a slow machine): it listens soon, and serves the next login.
 */
static int spawn(const struct ps_request *req, int lfd, int lockfd, long long deadline, char *line,
		 size_t linelen)
{
	char buf[PS_REQUEST_MAX];
	int in[2], out[2], len, err, keep[2] = {lfd, lockfd};
	bool ok = false;
	pid_t pid;

	len = ps_request_format(&req->cfg, PS_OP_OPEN, buf, sizeof(buf));
	if (len < 0 || pipe2(in, O_CLOEXEC) < 0) {
		ps_errf(line, linelen, "cannot start the keeper: %s",
			len < 0 ? "the request is too large" : strerror(errno));
		return -1;
	}
	if (pipe2(out, O_CLOEXEC) < 0) {
		ps_errf(line, linelen, "cannot start the keeper: %s", strerror(errno));
		close(in[0]);
		close(in[1]);
		return -1;
	}
	pid = fork();
	err = errno;
	if (pid == 0) {
		ps_child_fds(in[0], out[1], keep, 2); /* the socket at 3, the lock at 4 */
		setsid();
		execl(PS_HELPER_PATH, "pam_spotify_helper", "keeper", (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	if (pid > 0 && line_within(out[0], PS_HELPER_HELLO, deadline)) {
		ps_write_all(in[1], buf, (size_t)len);
		ok = true;
	} else if (pid > 0) { /* it has no request, so nothing to finish: it goes */
		kill(pid, SIGKILL);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		ps_errf(line, linelen, "the keeper did not start%s",
			ps_mono_ms() >= deadline ? " before the login's deadline"
						 : ": see the system log");
		pid = 0;
	}
	close(in[1]);
	ok = ok && line_within(out[0], "ready", deadline);
	close(out[0]);
	explicit_bzero(buf, sizeof(buf));
	if (ok)
		return 0;
	if (pid <= 0) { /* pid < 0: a su caller's RLIMIT_NPROC, say */
		if (pid < 0)
			ps_errf(line, linelen, "cannot start the keeper: fork: %s", strerror(err));
		return -1;
	}
	/* it has its request: while it runs it is only slow, and serves the next login */
	if (waitpid(pid, NULL, WNOHANG) == 0) {
		ps_errf(line, linelen,
			"the keeper (pid %ld) is still starting: it serves the next login; if it "
			"does not, see the system log",
			(long)pid);
		return 1;
	}
	ps_errf(line, linelen, "the keeper did not start: see the system log");
	return -1;
}

int ps_keeper_start(const struct ps_request *req, long long deadline, char *line, size_t linelen)
{
	char sock[PS_SERVICE_PATH_MAX], lock[PS_SERVICE_PATH_MAX];
	int lockfd, lfd, fd, rc, started;

	ps_keeper_path(&req->cfg, getuid(), ".sock", sock, sizeof(sock));
	ps_keeper_path(&req->cfg, getuid(), ".lock", lock, sizeof(lock));
	lockfd = ps_child_inherited_lock(lock, false); /* the module took it for us */
	if (lockfd < 0)
		lockfd = open(lock, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (lockfd < 0) {
		ps_errf(line, linelen, "cannot open %s: %s", lock, strerror(errno));
		return PS_EXIT_CONFIG;
	}
	/* whoever holds the lock is the keeper, or one on its way out: it frees it at once */
	while (flock(lockfd, LOCK_EX | LOCK_NB) < 0) {
		fd = ps_frame_connect(sock);
		if (fd >= 0) {
			close(fd);
			close(lockfd);
			snprintf(line, linelen, "ok the keeper runs");
			return PS_EXIT_OK;
		}
		if (ps_mono_ms() >= deadline) {
			ps_errf(line, linelen,
				"the keeper's lock %s is held, but nothing listens at %s: end "
				"the process that holds it (fuser %s)",
				lock, sock, lock);
			close(lockfd);
			return PS_EXIT_NETWORK;
		}
		usleep(10000);
	}
	lfd = listen_at(sock, line, linelen);
	started = lfd >= 0 ? spawn(req, lfd, lockfd, deadline, line, linelen) : -1;
	rc = started == 0 ? PS_EXIT_OK : started > 0 ? PS_EXIT_NETWORK : PS_EXIT_CONFIG;
	if (started < 0 && lfd >= 0)
		unlink(sock); /* nothing will listen there: leave no socket file (we hold the lock) */
	if (lfd >= 0)
		close(lfd);
	close(lockfd);
	if (rc == PS_EXIT_OK)
		snprintf(line, linelen, "ok the keeper started");
	return rc;
}

/* --- the user's own calls */

int ps_keeper_ask(const struct ps_config *cfg, const char *op, long long deadline,
		  struct ps_app_token *t, char *line, size_t linelen)
{
	char path[PS_SERVICE_PATH_MAX], msg[64], info[PS_TOKEN_INFO_MAX + 1], *reply;
	struct ps_buf b = {.buf = msg, .cap = sizeof(msg)};
	const char *body;
	size_t n = 0, blen = 0;
	int rc;

	ps_keeper_path(cfg, getuid(), ".sock", path, sizeof(path));
	ps_msg_add(&b, "op", op);
	ps_msg_end(&b);
	reply = malloc(REPLY_MAX + 1);
	if (!reply) {
		ps_errf(line, linelen, "out of memory");
		return PS_EXIT_NETWORK;
	}
	rc = ps_msg_call(path, getuid(), false, msg, b.len, -1, deadline, reply, REPLY_MAX, &n);
	if (rc == -2)
		ps_errf(line, linelen, "the keeper at %s did not answer in time: %s", path,
			strerror(errno));
	if (rc < 0) {
		ps_free_secret(reply, REPLY_MAX + 1);
		return rc == -1 ? -1 : PS_EXIT_NETWORK;
	}
	rc = ps_msg_status(reply, n, "the keeper", line, linelen);
	if (rc == PS_EXIT_OK && t) {
		body = ps_msg_body(reply, n, &blen);
		if (ps_msg_get(reply, n, "info", info, sizeof(info)) < 0 || !body ||
		    ps_app_token_parse(t, cfg, info, body, blen) < 0) {
			ps_errf(line, linelen, "the keeper's token is malformed");
			rc = PS_EXIT_NETWORK;
		}
	}
	ps_free_secret(reply, REPLY_MAX + 1);
	return rc;
}

/* --- the keeper */

struct session {
	long pid;
	int pidfd;
};

enum want { WANT_OPEN, WANT_REFRESH, WANT_TOKEN };

struct waiter {
	int fd;
	enum want want; /* op open, refresh-now, token (whose answer carries the token) */
};

struct keeper {
	struct ps_config cfg;
	char *argv1; /* our "keeper" argument: a renewal's own name is "renew" (ps, pgrep) */
	char who[32];
	char sock[PS_SERVICE_PATH_MAX];
	int lfd, lockfd, tfd, sfd, jobfd;
	pid_t jobpid;
	struct session *sessions;
	int nsessions, scap;
	struct waiter *waiters;
	int nwaiters, wcap;
	struct ps_app_token tok; /* the token held, as stored */
	long long next_ms;	 /* wall clock (ms) of the next renewal, or NEVER */
	long long not_before_ms; /* wall clock (ms): the end of the backoff window, or 0 */
	unsigned failures;	 /* renewals that failed in a row */
	long long idle_ms;	 /* monotonic: since when no session is counted */
	bool ever, stop;
};

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* refresh_margin before expires_at, but no later than half the remaining life; now if past. */
static long long renew_at(long long expires_at, unsigned margin_s)
{
	long long now = now_ms(), life = expires_at * 1000 - now;
	long long margin = (long long)margin_s * 1000;

	if (margin > life / 2)
		margin = life / 2;
	return life - margin > 0 ? now + life - margin : now;
}

/* Send an answer (status, message, and the token when t) on fd, and close it. */
static void reply(int fd, int rc, const char *message, const struct ps_app_token *t)
{
	char head[PS_ERR_MAX + PS_TOKEN_INFO_MAX + 64], num[8], *msg;
	struct ps_buf b = {.buf = head, .cap = sizeof(head)};
	size_t blen = t ? t->token_len : 0;

	snprintf(num, sizeof(num), "%d", rc);
	ps_msg_add(&b, "status", num);
	ps_msg_add(&b, "message", message);
	if (t)
		ps_msg_add(&b, "info", t->info_json);
	ps_msg_end(&b);
	msg = b.full ? NULL : malloc(b.len + blen);
	if (msg) {
		memcpy(msg, head, b.len);
		if (blen)
			memcpy(msg + b.len, t->token, blen);
		ps_frame_send(fd, msg, b.len + blen, -1, ps_mono_ms() + CONN_WAIT_MS);
		ps_free_secret(msg, b.len + blen);
	}
	close(fd);
}

/* "ok token still valid ...": the answer when the token held is fresh. */
static void reply_fresh(struct keeper *k, int fd, bool token, const char *how)
{
	char line[PS_ERR_MAX];

	snprintf(line, sizeof(line), "ok token still valid keyring=%s expires_in=%lld (%s)",
		 ps_keyring_name(k->cfg.keyring), k->tok.info.expires_at - (long long)time(NULL),
		 how);
	reply(fd, PS_EXIT_OK, line, token ? &k->tok : NULL);
}

static void waiter_add(struct keeper *k, int fd, enum want want)
{
	if (k->nwaiters == k->wcap) {
		int cap = k->wcap ? k->wcap * 2 : 16;
		struct waiter *more = realloc(k->waiters, (size_t)cap * sizeof(*more));

		if (!more) {
			reply(fd, PS_EXIT_NETWORK, "the keeper is out of memory", NULL);
			return;
		}
		k->waiters = more;
		k->wcap = cap;
	}
	k->waiters[k->nwaiters++] = (struct waiter){.fd = fd, .want = want};
}

/* --- the renewal: a child that makes the request and hands the token back */

/* In the child: the token request of k's flow. */
static void renewal_child(struct keeper *k, int out)
{
	char line[PS_ERR_MAX] = "", head[PS_ERR_MAX + PS_TOKEN_INFO_MAX + 128], num[32], *msg;
	struct ps_buf b = {.buf = head, .cap = sizeof(head)};
	struct ps_config cfg = k->cfg;
	struct ps_app_token t;
	long retry = -1;
	int rc;

	memset(&t, 0, sizeof(t));
	if (cfg.timeout < PS_REQUEST_TIMEOUT_S)
		cfg.timeout = PS_REQUEST_TIMEOUT_S; /* never the login's: see keeper.h */
	if (cfg.flow == PS_FLOW_CLIENT_CREDENTIALS) {
		rc = ps_service_app_token(&cfg, ps_mono_ms() + cfg.timeout * 1000LL + 5000, &t,
					  &retry, line, sizeof(line));
	} else {
		rc = ps_user_token_renew(&cfg, &t, line, sizeof(line));
		retry = ps_grant_retry_after();
	}
	snprintf(num, sizeof(num), "%d", rc);
	ps_msg_add(&b, "status", num);
	ps_msg_add(&b, "message", line);
	snprintf(num, sizeof(num), "%ld", retry);
	ps_msg_add(&b, "retry_after", num);
	if (rc == PS_EXIT_OK)
		ps_msg_add(&b, "info", t.info_json);
	ps_msg_end(&b);
	msg = b.full ? NULL : malloc(b.len + t.token_len);
	if (msg) {
		memcpy(msg, head, b.len);
		memcpy(msg + b.len, t.token, rc == PS_EXIT_OK ? t.token_len : 0);
		ps_frame_send(out, msg, b.len + (rc == PS_EXIT_OK ? t.token_len : 0), -1,
			      ps_mono_ms() + 5000);
		ps_free_secret(msg, b.len + t.token_len);
	}
	ps_app_token_clear(&t);
	ps_curl_unload();
}

/* Start a renewal. 0, or -1 with line. */
static int renewal_start(struct keeper *k, char *line, size_t linelen)
{
	int sv[2], i;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		ps_errf(line, linelen, "cannot start a renewal: %s", strerror(errno));
		return -1;
	}
	pid = fork();
	if (pid == 0) {
		sigset_t none;

		/* the lock stays: no other keeper may start while this request is under way */
		close(sv[0]);
		close(k->lfd);
		close(k->tfd);
		close(k->sfd);
		for (i = 0; i < k->nsessions; i++)
			close(k->sessions[i].pidfd);
		for (i = 0; i < k->nwaiters; i++)
			close(k->waiters[i].fd);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		if (k->argv1 && strlen(k->argv1) >= 5)
			memcpy(k->argv1, "renew", 6);
		renewal_child(k, sv[1]);
		_exit(0);
	}
	close(sv[1]);
	if (pid < 0) {
		close(sv[0]);
		ps_errf(line, linelen, "cannot start a renewal: %s", strerror(errno));
		return -1;
	}
	k->jobfd = sv[0];
	k->jobpid = pid;
	return 0;
}

/* The renewal's report: its code, its line, its token (t) and the server's Retry-After. */
static int renewal_report(struct keeper *k, struct ps_app_token *t, long *retry, char *line,
			  size_t linelen)
{
	char *msg = malloc(REPLY_MAX + 1), info[PS_TOKEN_INFO_MAX + 1], num[32];
	const char *body;
	size_t n = 0, blen = 0;
	int rc = PS_EXIT_NETWORK;

	*retry = -1;
	memset(t, 0, sizeof(*t));
	if (!msg || ps_frame_recv(k->jobfd, msg, REPLY_MAX, &n, NULL, ps_mono_ms() + 2000) < 0) {
		ps_errf(line, linelen, "the renewal ended without an answer");
	} else {
		rc = ps_msg_status(msg, n, "the renewal", line, linelen);
		if (ps_msg_get(msg, n, "retry_after", num, sizeof(num)) == 0)
			*retry = strtol(num, NULL, 10);
		body = ps_msg_body(msg, n, &blen);
		if (rc == PS_EXIT_OK &&
		    (ps_msg_get(msg, n, "info", info, sizeof(info)) < 0 || !body ||
		     ps_app_token_parse(t, &k->cfg, info, body, blen) < 0)) {
			ps_errf(line, linelen, "the renewal's token is malformed");
			rc = PS_EXIT_NETWORK;
		}
	}
	if (msg)
		ps_free_secret(msg, REPLY_MAX + 1);
	return rc;
}

static void keys_again(struct keeper *k);

/* A renewal ended: keep its token, plan the next one, answer whoever waited. */
static void renewal_done(struct keeper *k)
{
	struct ps_app_token t;
	char line[PS_ERR_MAX] = "", note[PS_ERR_MAX];
	long retry;
	int rc = renewal_report(k, &t, &retry, line, sizeof(line)), i;

	close(k->jobfd);
	k->jobfd = -1;
	while (waitpid(k->jobpid, NULL, 0) < 0 && errno == EINTR)
		;
	/* client credentials: the service renews the host's token for everyone; the same token
	 * again is the current one, or, when it is due, one the service could not renew */
	if (rc == PS_EXIT_OK && ps_app_token_same(&t, &k->tok) &&
	    !ps_app_token_fresh(&k->tok, k->cfg.refresh_margin)) {
		ps_strlcpy(note, line, sizeof(note));
		ps_errf(line, sizeof(line), "the system service has no newer token yet%s%s",
			note[0] ? ": " : "", note);
		rc = PS_EXIT_NETWORK;
	} else if (rc == PS_EXIT_OK && ps_app_token_same(&t, &k->tok)) {
		snprintf(line, sizeof(line),
			 "the client_credentials token is the app's, shared by this host and "
			 "renewed for every user %u s before it expires: your keyring holds the "
			 "current one (it lives %lld s more)",
			 k->cfg.refresh_margin, t.info.expires_at - (long long)time(NULL));
	}
	if (rc == PS_EXIT_OK && k->cfg.keyring != PS_KEYRING_SESSION &&
	    ps_app_token_same(&t, &k->tok))
		keys_again(k); /* the one held: the note above stands */
	else if (rc == PS_EXIT_OK && k->cfg.keyring != PS_KEYRING_SESSION)
		rc = ps_app_token_store(&k->cfg, &t, line, sizeof(line));
	if (rc == PS_EXIT_OK) {
		memcpy(&k->tok, &t, sizeof(t));
		k->failures = 0;
		k->not_before_ms = 0;
		k->next_ms = renew_at(k->tok.info.expires_at, k->cfg.refresh_margin);
	} else {
		syslog(LOG_WARNING, "%s: renewal failed: %s", k->who, line);
		if (rc == PS_EXIT_REAUTH) {
			k->next_ms = NEVER; /* the store is marked: the user must log in */
		} else if (k->cfg.flow == PS_FLOW_CLIENT_CREDENTIALS && retry > 0) {
			/* the system service made the request and keeps the backoff: ask again when
			 * its window ends (backing off on top of it would double every wait) */
			k->failures = 0;
			k->not_before_ms = k->next_ms = now_ms() + retry * 1000;
		} else {
			k->failures++;
			k->not_before_ms =
				now_ms() + ps_backoff_ms(k->failures - 1, BACKOFF_MAX_S, retry);
			k->next_ms = k->not_before_ms;
		}
	}
	ps_app_token_clear(&t);
	for (i = 0; i < k->nwaiters; i++) {
		struct waiter *w = &k->waiters[i];

		if (rc != PS_EXIT_OK && ps_app_token_fresh(&k->tok, 0) && w->want == WANT_OPEN) {
			/* the token held still lives: the session has one */
			snprintf(note, sizeof(note),
				 "ok token valid %lld s more; its renewal failed: %s",
				 k->tok.info.expires_at - (long long)time(NULL), line);
			reply(w->fd, PS_EXIT_OK, note, NULL);
		} else {
			reply(w->fd, rc, line,
			      rc == PS_EXIT_OK && w->want == WANT_TOKEN ? &k->tok : NULL);
		}
	}
	k->nwaiters = 0;
}

/* The window's end, for messages. */
static void window_text(const struct keeper *k, char *out, size_t outlen)
{
	time_t t = (time_t)((k->not_before_ms + 999) / 1000);
	struct tm tm;

	if (!gmtime_r(&t, &tm) || !strftime(out, outlen, "%Y-%m-%d %H:%M:%S UTC", &tm))
		snprintf(out, outlen, "%lld (Unix time)", (long long)t);
}

/* A peer wants a token that is not fresh: the renewal under way, or a new one. */
static void want_renewal(struct keeper *k, int fd, enum want want)
{
	char line[PS_ERR_MAX], when[48];
	long long now = now_ms();

	if (k->jobfd >= 0) {
		waiter_add(k, fd, want);
		return;
	}
	if (now < k->not_before_ms) {
		window_text(k, when, sizeof(when));
		if (want == WANT_OPEN && ps_app_token_fresh(&k->tok, 0)) {
			snprintf(line, sizeof(line),
				 "ok token valid %lld s more; the keeper renews it after its "
				 "Retry-After/backoff window, at %s",
				 k->tok.info.expires_at - (long long)time(NULL), when);
			reply(fd, PS_EXIT_OK, line, NULL);
			return;
		}
		snprintf(line, sizeof(line),
			 "the keeper is inside a Retry-After/backoff window until %s: no request "
			 "made; it retries then by itself, or try again after it",
			 when);
		reply(fd, PS_EXIT_NETWORK, line, NULL);
		return;
	}
	if (renewal_start(k, line, sizeof(line)) < 0) {
		reply(fd, PS_EXIT_NETWORK, line, NULL);
		return;
	}
	waiter_add(k, fd, want);
}

/* --- sessions */

static void session_add(struct keeper *k, long pid, int pidfd)
{
	int i;

	for (i = 0; i < k->nsessions; i++)
		if (k->sessions[i].pid == pid) {
			close(pidfd); /* counted already */
			return;
		}
	if (k->nsessions == k->scap) {
		int cap = k->scap ? k->scap * 2 : 16;
		struct session *more = realloc(k->sessions, (size_t)cap * sizeof(*more));

		if (!more) {
			close(pidfd);
			return;
		}
		k->sessions = more;
		k->scap = cap;
	}
	k->sessions[k->nsessions++] = (struct session){.pid = pid, .pidfd = pidfd};
	k->ever = true;
}

static void session_remove(struct keeper *k, int i)
{
	close(k->sessions[i].pidfd);
	k->sessions[i] = k->sessions[--k->nsessions];
	if (k->nsessions == 0)
		k->idle_ms = ps_mono_ms();
}

/*
 * Hold the token in the keyring when it is of our flow and client (one a login stored when it
 * connected the account, or an earlier keeper's), and plan its renewal. True when one is held.
 */
static bool reload(struct keeper *k)
{
	struct ps_keys_found found;
	char err[PS_ERR_MAX], info[PS_TOKEN_INFO_MAX + 1];
	struct ps_app_token t;
	bool held = false;

	memset(&found, 0, sizeof(found));
	if (k->cfg.keyring != PS_KEYRING_SESSION &&
	    ps_keys_read(k->cfg.keyring == PS_KEYRING_PERSISTENT, &found, err, sizeof(err)) == 0 &&
	    found.token && found.info && found.info_len < sizeof(info)) {
		memcpy(info, found.info, found.info_len);
		info[found.info_len] = '\0';
		held = ps_app_token_parse(&t, &k->cfg, info, found.token, found.token_len) == 0;
	}
	ps_keys_found_free(&found);
	if (held) {
		memcpy(&k->tok, &t, sizeof(t));
		k->failures = 0;
		k->not_before_ms = 0;
		k->next_ms = renew_at(k->tok.info.expires_at, k->cfg.refresh_margin);
	}
	ps_app_token_clear(&t);
	return held;
}

/* --- messages */
/* spotify-token logout: the token held goes, and nothing is renewed until a login asks. */
static void forget(struct keeper *k, int fd)
{
	ps_app_token_clear(&k->tok);
	k->next_ms = NEVER;
	reply(fd, PS_EXIT_OK, "ok the keeper holds no token now", NULL);
}

/*
 * The token held is fresh: make sure the keyring still holds it (a user may have removed the
 * keys by hand): stored again when not.
 */
static void keys_again(struct keeper *k)
{
	struct ps_keys_found found;
	char err[PS_ERR_MAX];
	bool there;

	if (k->cfg.keyring == PS_KEYRING_SESSION)
		return;
	memset(&found, 0, sizeof(found));
	there = ps_keys_read(k->cfg.keyring == PS_KEYRING_PERSISTENT, &found, err, sizeof(err)) ==
			0 &&
		found.token && found.token_len == k->tok.token_len &&
		memcmp(found.token, k->tok.token, found.token_len) == 0;
	ps_keys_found_free(&found);
	if (!there && ps_app_token_store(&k->cfg, &k->tok, err, sizeof(err)) != PS_EXIT_OK)
		syslog(LOG_WARNING, "%s: %s", k->who, err);
}

static void op_open(struct keeper *k, int fd, const char *msg, size_t n, int pidfd)
{
	unsigned long pid, margin;
	char num[32];

	if (ps_msg_get(msg, n, "pid", num, sizeof(num)) < 0 ||
	    ps_parse_ulong(num, 1, 0x7fffffff, &pid) < 0) {
		if (pidfd >= 0)
			close(pidfd);
		reply(fd, PS_EXIT_CONFIG, "open: no pid", NULL);
		return;
	}
	if (pidfd < 0)
		pidfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
	if (pidfd >= 0)
		session_add(k, (long)pid, pidfd);
	/* the login's refresh_margin: another file may ask more of the token than ours */
	if (ps_msg_get(msg, n, "margin", num, sizeof(num)) < 0 ||
	    ps_parse_ulong(num, 0, 0x7fffffff, &margin) < 0)
		margin = k->cfg.refresh_margin;
	if (ps_app_token_fresh(&k->tok, (unsigned)margin)) {
		keys_again(k);
		reply_fresh(k, fd, false, "held by the keeper");
	} else
		want_renewal(k, fd, WANT_OPEN);
}

static void op_close(struct keeper *k, int fd, const char *msg, size_t n)
{
	char num[32];
	unsigned long pid;
	int i;

	if (ps_msg_get(msg, n, "pid", num, sizeof(num)) == 0 &&
	    ps_parse_ulong(num, 1, 0x7fffffff, &pid) == 0)
		for (i = 0; i < k->nsessions; i++)
			if (k->sessions[i].pid == (long)pid) {
				session_remove(k, i);
				break;
			}
	reply(fd, PS_EXIT_OK, "ok session closed", NULL);
}

static void op_status(struct keeper *k, int fd)
{
	char head[256], num[32];
	struct ps_buf b = {.buf = head, .cap = sizeof(head)};

	ps_msg_add(&b, "status", "0");
	ps_msg_add(&b, "message", "ok");
	snprintf(num, sizeof(num), "%d", k->nsessions);
	ps_msg_add(&b, "sessions", num);
	snprintf(num, sizeof(num), "%lld", k->tok.token_len ? k->tok.info.expires_at : 0);
	ps_msg_add(&b, "expires_at", num);
	snprintf(num, sizeof(num), "%lld", (k->not_before_ms + 999) / 1000);
	ps_msg_add(&b, "not_before", num);
	ps_msg_add(&b, "renewing", k->jobfd >= 0 ? "1" : "0");
	ps_msg_end(&b);
	ps_frame_send(fd, head, b.len, -1, ps_mono_ms() + CONN_WAIT_MS);
	close(fd);
}

/* One connection: its message, from root (the module) or the user. */
static void on_conn(struct keeper *k, int fd)
{
	char msg[MSG_MAX + 1], op[32];
	int pidfd = -1;
	size_t n;
	uid_t uid;
	bool root;

	if (ps_frame_peer_uid(fd, &uid, NULL) < 0 || (uid != 0 && uid != getuid()) ||
	    ps_frame_recv(fd, msg, MSG_MAX, &n, &pidfd, ps_mono_ms() + CONN_WAIT_MS) < 0 ||
	    ps_msg_get(msg, n, "op", op, sizeof(op)) < 0) {
		if (pidfd >= 0)
			close(pidfd);
		close(fd);
		return;
	}
	root = uid == 0;
	if (pidfd >= 0 && (!root || strcmp(op, "open") != 0)) {
		close(pidfd);
		pidfd = -1;
	}
	if (root && !strcmp(op, "open"))
		op_open(k, fd, msg, n, pidfd);
	else if (root && !strcmp(op, "close"))
		op_close(k, fd, msg, n);
	else if (!strcmp(op, "refresh-now"))
		want_renewal(k, fd, WANT_REFRESH);
	else if (!strcmp(op, "token") && ps_app_token_fresh(&k->tok, k->cfg.refresh_margin))
		reply_fresh(k, fd, true, "held by the keeper");
	else if (!strcmp(op, "token"))
		want_renewal(k, fd, WANT_TOKEN);
	else if (!strcmp(op, "status"))
		op_status(k, fd);
	else if (!strcmp(op, "forget"))
		forget(k, fd);
	else if (!strcmp(op, "reload"))
		reply(fd, reload(k) ? PS_EXIT_OK : PS_EXIT_NO_TOKEN,
		      "reload: the keyring's token is held", NULL);
	else
		reply(fd, PS_EXIT_USAGE, "unknown or forbidden op", NULL);
}

/* --- the loop */

/* The timer at the next renewal (a year away when none is due, or one runs): it also tells a
 * clock step, TFD_TIMER_CANCEL_ON_SET. */
static void timer_arm(struct keeper *k)
{
	long long at = k->next_ms;
	struct itimerspec its;

	if (at != NEVER && at < k->not_before_ms)
		at = k->not_before_ms;
	if (at == NEVER || k->jobfd >= 0)
		at = now_ms() + YEAR_MS;
	if (at <= 0)
		at = 1;
	memset(&its, 0, sizeof(its));
	its.it_value.tv_sec = (time_t)(at / 1000);
	its.it_value.tv_nsec = (long)(at % 1000) * 1000000;
	timerfd_settime(k->tfd, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &its, NULL);
}

/* The timer fired, or the clock was set (which moves every key's expiry): renew now. */
static void on_timer(struct keeper *k)
{
	unsigned long long n;
	char line[PS_ERR_MAX];

	if (read(k->tfd, &n, sizeof(n)) < 0 && errno == ECANCELED) {
		syslog(LOG_INFO, "%s: the clock was set: renewing", k->who);
		k->next_ms = now_ms();
	}
	if (k->jobfd < 0 && k->next_ms != NEVER && now_ms() >= k->next_ms &&
	    now_ms() >= k->not_before_ms && renewal_start(k, line, sizeof(line)) < 0) {
		syslog(LOG_WARNING, "%s: %s", k->who, line);
		k->failures++;
		k->not_before_ms = k->next_ms =
			now_ms() + ps_backoff_ms(k->failures - 1, BACKOFF_MAX_S, -1);
	}
}

static void on_signal(struct keeper *k)
{
	struct signalfd_siginfo si;

	if (read(k->sfd, &si, sizeof(si)) == sizeof(si))
		k->stop = true; /* SIGTERM, SIGINT, SIGHUP: the renewal under way ends first */
}

/* Time to go: no session, no renewal under way, and the login that started us came (or not). */
static bool done(const struct keeper *k)
{
	if (k->jobfd >= 0)
		return false;
	if (k->stop)
		return true;
	return k->nsessions == 0 &&
	       ps_mono_ms() - k->idle_ms >= (k->ever ? 0 : (long long)FIRST_WAIT_MS);
}

static void loop_once(struct keeper *k)
{
	struct pollfd p[4 + 1024];
	int n = 0, i, first, timeout = -1;

	p[n++] = (struct pollfd){.fd = k->lfd, .events = POLLIN};
	p[n++] = (struct pollfd){.fd = k->tfd, .events = POLLIN};
	p[n++] = (struct pollfd){.fd = k->sfd, .events = POLLIN};
	p[n++] = (struct pollfd){.fd = k->jobfd, .events = POLLIN}; /* -1: ignored */
	first = n;
	for (i = 0; i < k->nsessions && n < (int)(sizeof(p) / sizeof(p[0])); i++)
		p[n++] = (struct pollfd){.fd = k->sessions[i].pidfd, .events = POLLIN};
	if (k->nsessions == 0 && k->jobfd < 0 && !k->ever)
		timeout = (int)(FIRST_WAIT_MS - (ps_mono_ms() - k->idle_ms) + 1);
	if (timeout < -1)
		timeout = 0;
	if (poll(p, (nfds_t)n, timeout) <= 0)
		return;
	if (p[2].revents)
		on_signal(k);
	if (p[3].revents)
		renewal_done(k);
	for (i = n - 1; i >= first; i--)
		if (p[i].revents) /* the session's process ended without a close */
			session_remove(k, i - first);
	if (p[1].revents)
		on_timer(k);
	for (i = 0; p[0].revents && i < 64; i++) {
		int fd = accept4(k->lfd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0)
			break;
		on_conn(k, fd);
	}
}

/* Become the keeper: the socket and lock from our starter, a timer, signals, the token held. */
static int keeper_setup(struct keeper *k)
{
	struct stat st;
	sigset_t set;

	keyctl_join_session_keyring(NULL); /* hold no reference to the login's session keyring */
	k->lfd = 3;
	k->lockfd = 4;
	k->jobfd = -1;
	k->next_ms = NEVER;
	k->idle_ms = ps_mono_ms();
	snprintf(k->who, sizeof(k->who), "user %u", (unsigned)getuid());
	ps_keeper_path(&k->cfg, getuid(), ".sock", k->sock, sizeof(k->sock));
	/* the socket and the lock, which our starter holds for us (flock again: the same lock) */
	if (fstat(k->lfd, &st) < 0 || !S_ISSOCK(st.st_mode) || fstat(k->lockfd, &st) < 0 ||
	    !S_ISREG(st.st_mode) || flock(k->lockfd, LOCK_EX | LOCK_NB) < 0 ||
	    fcntl(k->lfd, F_SETFD, FD_CLOEXEC) < 0 || fcntl(k->lockfd, F_SETFD, FD_CLOEXEC) < 0 ||
	    fcntl(k->lfd, F_SETFL, O_NONBLOCK) < 0)
		return -1;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGUSR1, SIG_IGN);
	k->sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	k->tfd = timerfd_create(CLOCK_REALTIME, TFD_CLOEXEC | TFD_NONBLOCK);
	if (k->sfd < 0 || k->tfd < 0)
		return -1;
	/* a token already in the keyring (another keeper's, before a restart) is the one held */
	reload(k);
	return 0;
}

int ps_keeper_run(struct ps_request *req, char *argv1)
{
	struct keeper k;
	char err[PS_ERR_MAX];
	int null, i;

	memset(&k, 0, sizeof(k));
	memcpy(&k.cfg, &req->cfg, sizeof(k.cfg));
	k.argv1 = argv1;
	openlog("pam_spotify_helper[keeper]", LOG_PID, LOG_AUTHPRIV);
	if (keeper_setup(&k) < 0) {
		syslog(LOG_ERR, "user %u: the keeper cannot start: %s", (unsigned)getuid(),
		       strerror(errno));
		return PS_EXIT_CONFIG;
	}
	(void)!write(STDOUT_FILENO, "ready\n", 6);
	null = open("/dev/null", O_RDWR | O_CLOEXEC);
	dup2(null, STDIN_FILENO);
	dup2(null, STDOUT_FILENO);
	while (!done(&k)) {
		timer_arm(&k);
		loop_once(&k);
	}
	/* first out of reach (a login now starts a new keeper, which waits for our lock), then
	 * the keys */
	unlink(k.sock);
	close(k.lfd);
	for (i = 0; i < k.nwaiters; i++)
		close(k.waiters[i].fd);
	if (k.cfg.remove_on_close && k.cfg.keyring != PS_KEYRING_SESSION)
		ps_keys_remove(k.cfg.keyring, err, sizeof(err));
	for (i = 0; i < k.nsessions; i++)
		close(k.sessions[i].pidfd);
	free(k.sessions);
	free(k.waiters);
	ps_app_token_clear(&k.tok);
	close(k.lockfd);
	return PS_EXIT_OK;
}
