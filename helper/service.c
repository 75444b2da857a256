/*
 * service.c: the system service (see service.h): start-up in either way, the privilege drop, and
 * one poll(2) loop over the socket, the connections, the sessions' pidfds and the jobs. The loop
 * never waits on the network: each token request runs in a child of its own (a job), bounded by
 * the configured timeout, which reports back on a pipe; a slow accounts server delays nobody's
 * session count and no other user's request. One app token request at a time: the peers that
 * ask meanwhile wait for its answer.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <keyutils.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "helper/grant.h"
#include "helper/service.h"
#include "helper/token_response.h"
#include "common/child.h"
#include "common/frame.h"
#include "common/request.h"
#include "common/paths.h"
#include "common/secret.h"
#include "common/util.h"

#define MAX_CONNS	 256
#define MAX_UID_CONNS	 8 /* a user's open connections (the module, root, has no cap) */
#define MAX_SESSIONS	 4096
#define MAX_UID_SESSIONS 512
#define MAX_UIDS	 256
#define CONN_WAIT_MS	 5000  /* a peer has this long to send its request */
#define IDLE_EXIT_MS	 2000  /* nothing counted, nothing under way: end after this */
#define FIRST_WAIT_MS	 10000 /* ...but wait this long for the login that started us */
#define BACKOFF_MAX_S	 300
#define UID_BURST	 20   /* token requests a uid may make at once... */
#define UID_REFILL_MS	 3000 /* ...and one more each this long */
#define REQ_MAX		 (16 * 1024)
#define MAX_JOBS	 16
#define REPORT_MAX	 (PS_TOKEN_INFO_MAX + PS_TOKEN_MAX + PS_ERR_MAX + 64)

struct conn {
	int fd;
	uid_t uid;
	long long deadline;
	char *buf; /* REQ_MAX + 5: the frame and a NUL; zeroed when done (it may hold a code) */
	size_t have;
	int passfd;
	bool waiting; /* for the app token request under way */
};

/* A token request in a child: a fetch of the app token, or a user's grant. */
struct job {
	pid_t pid;
	int fd; /* the child's report */
	bool fetch;
	char *buf; /* REPORT_MAX + 1, zeroed when done (it may hold the token) */
	size_t have;
};

struct session {
	int pidfd; /* -1 when none came with it: then only its close ends it */
	uid_t uid;
	long pid;
};

struct uid_budget {
	uid_t uid;
	unsigned tokens;
	long long refilled_ms;
};

struct service {
	struct ps_config cfg;
	char name[PS_SERVICE_NAME_MAX]; /* ps_service_name(cfg): which configuration we serve */
	char secret[PS_SECRET_MAX];
	int lfd, lockfd, sigfd;
	struct conn conns[MAX_CONNS];
	int nconns;
	struct session *sessions;
	int nsessions;
	struct uid_budget budgets[MAX_UIDS];
	int nbudgets;
	struct job jobs[MAX_JOBS];
	int njobs;
	bool fetching;		 /* an app token job is under way */
	struct ps_app_token app; /* the host's app token (client_credentials) */
	long app_lifetime;	 /* its expires_in */
	long long not_before_ms; /* no token request before this: Retry-After or backoff */
	unsigned failures;
	long long idle_since_ms;
	bool stop;
};

/* --- answers */

static void reply(int fd, struct ps_buf *b)
{
	ps_frame_send(fd, b->buf, b->len, -1, ps_mono_ms() + 2000);
}

/* "status CODE", "message TEXT" and, when retry_s > 0, "retry_after": when the request window
 * ends (window_left_s). */
static void reply_error_retry(int fd, int code, const char *text, long long retry_s)
{
	char buf[PS_ERR_MAX + 96], num[24], clean[PS_ERR_MAX];
	struct ps_buf b = {.buf = buf, .cap = sizeof(buf)};

	snprintf(num, sizeof(num), "%d", code);
	ps_sanitize_text(clean, sizeof(clean), text, strlen(text));
	ps_msg_add(&b, "status", num);
	ps_msg_add(&b, "message", clean);
	if (retry_s > 0) {
		snprintf(num, sizeof(num), "%lld", retry_s);
		ps_msg_add(&b, "retry_after", num);
	}
	ps_msg_end(&b);
	reply(fd, &b);
}

static void reply_error(int fd, int code, const char *text)
{
	reply_error_retry(fd, code, text, 0);
}

/* --- the request window: Retry-After and backoff hold everybody's requests back */

static long long window_left_s(const struct service *s)
{
	long long left = s->not_before_ms - ps_mono_ms();

	return left > 0 ? (left + 999) / 1000 : 0;
}

/* After a failed request: capped exponential backoff with jitter, at least Retry-After. */
static void window_after_failure(struct service *s, long retry_after)
{
	s->not_before_ms = ps_mono_ms() + ps_backoff_ms(s->failures++, BACKOFF_MAX_S, retry_after);
}

/* 0 when a request may go out now; else -1 with the reason in line. */
static int window_check(const struct service *s, char *line, size_t linelen)
{
	long long left = window_left_s(s);

	if (!left)
		return 0;
	ps_errf(line, linelen,
		"the system service holds token requests back for %lld s more (the accounts "
		"server's Retry-After, or backoff after a failure): try again then",
		left);
	return -1;
}

/* A uid's budget of token requests (a token bucket). 0 when it may make one now. */
static int budget_take(struct service *s, uid_t uid, char *line, size_t linelen)
{
	long long now = ps_mono_ms();
	struct uid_budget *b = NULL;
	int i;

	for (i = 0; i < s->nbudgets && !b; i++)
		if (s->budgets[i].uid == uid)
			b = &s->budgets[i];
	if (!b) {
		i = s->nbudgets < MAX_UIDS ? s->nbudgets++ : (int)(now % MAX_UIDS);
		b = &s->budgets[i];
		*b = (struct uid_budget){.uid = uid, .tokens = UID_BURST, .refilled_ms = now};
	}
	while (b->tokens < UID_BURST && now - b->refilled_ms >= UID_REFILL_MS) {
		b->tokens++;
		b->refilled_ms += UID_REFILL_MS;
	}
	if (b->tokens == UID_BURST)
		b->refilled_ms = now;
	if (b->tokens == 0) {
		ps_errf(line, linelen,
			"too many token requests from uid %u: the system service takes one every "
			"%d s; try again later",
			(unsigned)uid, UID_REFILL_MS / 1000);
		return -1;
	}
	b->tokens--;
	return 0;
}

/* --- the app token */

/* Fresh: more of its life is left than the margin (half its life at most), as a keeper renews. */
static bool app_fresh(const struct service *s)
{
	unsigned margin = s->cfg.refresh_margin;

	if ((long)margin > s->app_lifetime / 2)
		margin = (unsigned)(s->app_lifetime / 2);
	return ps_app_token_fresh(&s->app, margin);
}

/*
 * Run fn in a child that reports on a pipe (a job). The child keeps what it needs (the secret,
 * the peer's socket) and ends when fn returns. 0, or -1 with line.
 */
static int job_start(struct service *s, bool fetch, void (*fn)(struct service *, void *, int),
		     void *arg, int keep_fd, char *line, size_t linelen)
{
	struct job *j;
	int p[2], i;
	pid_t pid;

	if (s->njobs == MAX_JOBS) {
		ps_errf(line, linelen,
			"the system service has %d token requests under way: try again shortly",
			MAX_JOBS);
		return -1;
	}
	if (pipe2(p, O_CLOEXEC) < 0 || (pid = fork()) < 0) {
		ps_errf(line, linelen, "the system service cannot start a request: %s",
			strerror(errno));
		return -1;
	}
	if (pid == 0) { /* the child needs only its peer's socket, if any, and the pipe */
		close(p[0]);
		close(s->lfd);
		close(s->sigfd);
		if (s->lockfd >= 0)
			close(s->lockfd); /* the flock is the parent's: a child outliving it must not
					     keep the next service from starting */
		for (i = 0; i < s->nconns; i++)
			if (s->conns[i].fd != keep_fd)
				close(s->conns[i].fd);
		for (i = 0; i < s->nsessions; i++)
			if (s->sessions[i].pidfd >= 0)
				close(s->sessions[i].pidfd);
		for (i = 0; i < s->njobs; i++)
			close(s->jobs[i].fd);
		fn(s, arg, p[1]);
		_exit(0);
	}
	close(p[1]);
	j = &s->jobs[s->njobs];
	*j = (struct job){.pid = pid, .fd = p[0], .fetch = fetch, .buf = malloc(REPORT_MAX + 1)};
	if (!j->buf) {
		close(p[0]);
		ps_errf(line, linelen, "the system service is out of memory");
		return -1; /* the child ends by itself; SIGCHLD is ignored: no zombie */
	}
	s->njobs++;
	return 0;
}

/* In the child: the app token request; "ok EXPIRES_IN\nINFO\nTOKEN" or "fail CODE RETRY\nTEXT". */
static void fetch_child(struct service *s, void *arg, int out)
{
	struct ps_token_response tok;
	char line[PS_ERR_MAX], info[PS_TOKEN_INFO_MAX], *buf = malloc(REPORT_MAX);
	struct ps_buf b = {.buf = buf, .cap = REPORT_MAX};
	time_t started = time(NULL);
	int rc;

	(void)arg;
	if (!buf)
		return;
	rc = ps_grant_client_credentials(&s->cfg, s->secret, &tok, line, sizeof(line));
	if (rc == PS_EXIT_OK) {
		rc = ps_grant_info(&s->cfg, &tok, started, info, sizeof(info), line, sizeof(line));
		if (rc == PS_EXIT_OK)
			ps_buf_printf(&b, "ok %ld\n%s\n%.*s", tok.expires_in, info,
				      (int)tok.access_token_len, tok.access_token);
		ps_token_response_clear(&tok);
	}
	if (rc != PS_EXIT_OK)
		ps_buf_printf(&b, "fail %d %ld\n%s", rc, ps_grant_retry_after(), line);
	ps_write_all(out, buf, b.len);
	ps_free_secret(buf, REPORT_MAX);
}

/* The answer to a peer that asked for the app token: the token, or why there is none. */
static void token_answer(struct service *s, struct conn *c, int rc, const char *why)
{
	char buf[PS_TOKEN_INFO_MAX + PS_TOKEN_MAX + 64];
	struct ps_buf b = {.buf = buf, .cap = sizeof(buf)};

	/* a failed renewal still serves the token it has while that lives; a failure carries the
	 * request window: a keeper asks again when it ends, no sooner */
	if (rc != PS_EXIT_OK && !ps_app_token_fresh(&s->app, 0)) {
		reply_error_retry(c->fd, rc, why, window_left_s(s));
		return;
	}
	ps_msg_add(&b, "status", "0");
	ps_msg_add(&b, "info", s->app.info_json);
	/* why there is no newer one: a keeper that asked to renew logs it */
	if (rc != PS_EXIT_OK) {
		char clean[PS_ERR_MAX], num[24];

		ps_sanitize_text(clean, sizeof(clean), why, strlen(why));
		ps_msg_add(&b, "note", clean);
		snprintf(num, sizeof(num), "%lld", window_left_s(s));
		ps_msg_add(&b, "retry_after", num);
	}
	ps_msg_end(&b);
	if (b.len + s->app.token_len <= b.cap) {
		memcpy(buf + b.len, s->app.token, s->app.token_len);
		b.len += s->app.token_len;
	}
	reply(c->fd, &b);
	explicit_bzero(buf, sizeof(buf));
}

static void conn_close(struct service *s, int i);

/* The app token job ended: keep its token (or its window), answer every peer that waits. */
static void fetch_done(struct service *s, struct job *j)
{
	char line[PS_ERR_MAX] = "the app token request ended without an answer: see the log";
	char *nl, *nl2;
	long retry = -1, n;
	int rc = PS_EXIT_NETWORK, i;

	s->fetching = false;
	j->buf[j->have] = '\0';
	nl = strchr(j->buf, '\n');
	if (nl && !strncmp(j->buf, "ok ", 3) && (nl2 = strchr(nl + 1, '\n'))) {
		*nl2 = '\0';
		n = strtol(j->buf + 3, NULL, 10);
		if (ps_app_token_parse(&s->app, &s->cfg, nl + 1, nl2 + 1,
				       j->have - (size_t)(nl2 + 1 - j->buf)) == 0) {
			s->app_lifetime = n;
			s->failures = 0;
			rc = PS_EXIT_OK;
			syslog(LOG_INFO, "app token obtained: expires_in=%ld", n);
		} else {
			ps_errf(line, sizeof(line),
				"the accounts server's token is not a usable bearer token");
		}
	} else if (nl && !strncmp(j->buf, "fail ", 5)) {
		rc = (int)strtol(j->buf + 5, &nl2, 10);
		retry = strtol(nl2, NULL, 10);
		ps_strlcpy(line, nl + 1, sizeof(line));
		if (rc <= 0 || rc > 7)
			rc = PS_EXIT_NETWORK;
	}
	if (rc != PS_EXIT_OK) {
		window_after_failure(s, retry);
		syslog(LOG_WARNING, "app token request failed: %s", line);
	}
	for (i = s->nconns - 1; i >= 0; i--)
		if (s->conns[i].waiting) {
			token_answer(s, &s->conns[i], rc, line);
			conn_close(s, i);
		}
}

/* op token: the app token when it is fresh, else after the request under way (or a new one). */
static bool op_token(struct service *s, struct conn *c)
{
	char line[PS_ERR_MAX];

	if (s->cfg.flow != PS_FLOW_CLIENT_CREDENTIALS) {
		reply_error(c->fd, PS_EXIT_CONFIG, "this service's flow has no app token");
		return true;
	}
	if (app_fresh(s)) {
		token_answer(s, c, PS_EXIT_OK, "");
		return true;
	}
	if (!s->fetching && window_check(s, line, sizeof(line)) < 0) {
		token_answer(s, c, PS_EXIT_NETWORK, line);
		return true;
	}
	if (!s->fetching) {
		if (job_start(s, true, fetch_child, NULL, -1, line, sizeof(line)) < 0) {
			token_answer(s, c, PS_EXIT_NETWORK, line);
			return true;
		}
		s->fetching = true;
	}
	c->waiting = true; /* answered by fetch_done */
	c->deadline = ps_mono_ms() + (long long)s->cfg.timeout * 1000 + 2000;
	return false;
}

/* --- token requests on behalf of users */

static bool form_value_ok(const char *v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		char ch = v[i];

		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		      (ch >= '0' && ch <= '9') || strchr("%-._~+", ch)))
			return false;
	}
	return n > 0;
}

/*
 * Only a code exchange or a refresh, with only their own fields, each once and urlencoded: the
 * service adds client authentication to nothing else (no scope, no client_id, no other grant).
 */
static bool form_allowed(const char *form, size_t len)
{
	static const char *const code_keys[] = {"grant_type", "code", "redirect_uri",
						"code_verifier", NULL};
	static const char *const refresh_keys[] = {"grant_type", "refresh_token", NULL};
	const char *const *keys;
	unsigned seen = 0;
	size_t pos = 0;

	if (!strncmp(form, "grant_type=authorization_code&", 30))
		keys = code_keys;
	else if (!strncmp(form, "grant_type=refresh_token&", 25))
		keys = refresh_keys;
	else
		return false;
	while (pos < len) {
		const char *pair = form + pos, *amp = memchr(pair, '&', len - pos);
		size_t plen = amp ? (size_t)(amp - pair) : len - pos;
		const char *eq = memchr(pair, '=', plen);
		size_t klen = eq ? (size_t)(eq - pair) : 0;
		int i, hit = -1;

		for (i = 0; eq && keys[i]; i++)
			if (strlen(keys[i]) == klen && !memcmp(pair, keys[i], klen))
				hit = i;
		if (hit < 0 || (seen & (1u << hit)) || !form_value_ok(eq + 1, plen - klen - 1))
			return false;
		seen |= 1u << hit;
		pos += plen + (amp ? 1 : 0);
		if (amp && pos == len)
			return false; /* a trailing '&' */
	}
	return keys == code_keys ? (seen & 0x7) == 0x7 : seen == 0x3;
}

/* The server's answer quoted the secret back: never pass that on. */
static void withhold_secret(const struct service *s, struct ps_http_response *resp)
{
	static const char withheld[] =
		"{\"error\":\"server_error\",\"error_description\":\"the accounts server's answer "
		"quoted the client secret and was withheld by the system service\"}";
	size_t n = strlen(s->secret);

	if (!resp->body || !n || !memmem(resp->body, resp->len, s->secret, n))
		return;
	explicit_bzero(resp->body, resp->len);
	resp->len = sizeof(withheld) - 1 < resp->len ? sizeof(withheld) - 1 : resp->len;
	memcpy(resp->body, withheld, resp->len);
	resp->body[resp->len] = '\0';
	ps_strlcpy(resp->content_type, "application/json", sizeof(resp->content_type));
}

struct grant {
	int fd; /* the peer's socket: the child answers on it */
	const char *form;
};

/* In the child: post the user's form with the secret; answer the peer; report "done RETRY". */
static void grant_child(struct service *s, void *arg, int out)
{
	const struct grant *g = arg;
	char line[PS_ERR_MAX], head[512], num[32], *msg;
	struct ps_buf b = {.buf = head, .cap = sizeof(head)};
	struct ps_http_response resp;
	long retry = -1;
	int rc;

	/* never given up early: a refresh abandoned in flight can lose a rotated refresh token
	 * (this is the child's copy of the configuration) */
	if (s->cfg.timeout < PS_REQUEST_TIMEOUT_S)
		s->cfg.timeout = PS_REQUEST_TIMEOUT_S;
	rc = ps_http_post_form(&s->cfg, s->cfg.token_url, g->form, s->cfg.client_id, s->secret,
			       &resp, line, sizeof(line));
	if (rc != PS_EXIT_OK) {
		reply_error(g->fd, rc, line);
		dprintf(out, "done -1\n");
		return;
	}
	if (resp.status == 429 || resp.status == 503)
		retry = resp.retry_after;
	withhold_secret(s, &resp);
	ps_msg_add(&b, "status", "0");
	snprintf(num, sizeof(num), "%ld", resp.status);
	ps_msg_add(&b, "http", num);
	ps_msg_add(&b, "content_type", resp.content_type);
	snprintf(num, sizeof(num), "%ld", resp.retry_after);
	ps_msg_add(&b, "retry_after", num);
	ps_msg_end(&b);
	msg = b.full ? NULL : malloc(b.len + resp.len);
	if (msg) {
		memcpy(msg, head, b.len);
		memcpy(msg + b.len, resp.body, resp.len);
		ps_frame_send(g->fd, msg, b.len + resp.len, -1, ps_mono_ms() + 2000);
		ps_free_secret(msg, b.len + resp.len);
	} else {
		reply_error(g->fd, PS_EXIT_NETWORK, "the system service is out of memory");
	}
	ps_http_response_clear(&resp);
	dprintf(out, "done %ld\n", retry);
}

/* op grant: checked here, posted by a job, which answers the peer. */
static void op_grant(struct service *s, struct conn *c, const char *form, size_t len)
{
	struct grant g = {.fd = c->fd, .form = form};
	char line[PS_ERR_MAX];

	if (s->cfg.flow != PS_FLOW_AUTHORIZATION_CODE) {
		reply_error(c->fd, PS_EXIT_CONFIG,
			    "this service's flow does not take token requests from users");
		return;
	}
	if (!form_allowed(form, len)) {
		reply_error(c->fd, PS_EXIT_CONFIG,
			    "the system service refuses this token request (only a code exchange "
			    "or a refresh, with their own fields)");
		return;
	}
	if (window_check(s, line, sizeof(line)) < 0 ||
	    budget_take(s, c->uid, line, sizeof(line)) < 0 ||
	    job_start(s, false, grant_child, &g, c->fd, line, sizeof(line)) < 0)
		reply_error(c->fd, PS_EXIT_NETWORK, line);
}

/* A job's report is in (EOF): act on it, and let the child go. */
static void job_done(struct service *s, int i)
{
	struct job *j = &s->jobs[i];
	long retry;

	if (j->fetch) {
		fetch_done(s, j);
	} else {
		j->buf[j->have] = '\0';
		retry = strncmp(j->buf, "done ", 5) ? -1 : strtol(j->buf + 5, NULL, 10);
		if (retry >= 0)
			window_after_failure(s, retry); /* a 429 or 503 with Retry-After */
	}
	close(j->fd);
	ps_free_secret(j->buf, REPORT_MAX + 1);
	s->jobs[i] = s->jobs[--s->njobs];
}

/* Read a job's report; true when it is complete (EOF). */
static bool job_read(struct job *j)
{
	ssize_t n = read(j->fd, j->buf + j->have, REPORT_MAX - j->have);

	if (n < 0)
		return errno != EAGAIN && errno != EINTR;
	j->have += (size_t)n;
	return n == 0 || j->have == REPORT_MAX;
}

/* --- sessions (from the module, as root) */

static void session_drop(struct service *s, int i)
{
	if (s->sessions[i].pidfd >= 0)
		close(s->sessions[i].pidfd);
	s->sessions[i] = s->sessions[--s->nsessions];
}

static void op_session(struct service *s, struct conn *c, bool open, const char *msg, size_t len)
{
	char num[32];
	unsigned long uid, pid;
	int i, per_uid = 0;

	if (c->uid != 0) {
		reply_error(c->fd, PS_EXIT_CONFIG, "only the PAM module (root) opens sessions");
		return;
	}
	if (ps_msg_get(msg, len, "uid", num, sizeof(num)) < 0 ||
	    ps_parse_ulong(num, 0, 4294967294UL, &uid) < 0 ||
	    ps_msg_get(msg, len, "pid", num, sizeof(num)) < 0 ||
	    ps_parse_ulong(num, 0, 4194304, &pid) < 0) {
		reply_error(c->fd, PS_EXIT_CONFIG, "a session needs uid and pid");
		return;
	}
	for (i = 0; i < s->nsessions; i++) {
		if (s->sessions[i].uid == (uid_t)uid && s->sessions[i].pid == (long)pid && !open) {
			session_drop(s, i);
			break;
		}
		per_uid += s->sessions[i].uid == (uid_t)uid;
	}
	if (open && s->nsessions < MAX_SESSIONS && per_uid < MAX_UID_SESSIONS) {
		s->sessions[s->nsessions++] =
			(struct session){.pidfd = c->passfd, .uid = (uid_t)uid, .pid = (long)pid};
		c->passfd = -1;
	}
	reply_error(c->fd, PS_EXIT_OK, "ok");
}

/* --- connections */

static void conn_close(struct service *s, int i)
{
	struct conn *c = &s->conns[i];

	close(c->fd);
	if (c->passfd >= 0)
		close(c->passfd);
	ps_free_secret(c->buf, REQ_MAX + 5);
	s->conns[i] = s->conns[--s->nconns];
}

/* Act on one message. false when the peer waits for a job's answer (keep the connection). */
static bool handle(struct service *s, struct conn *c, const char *msg, size_t len)
{
	char op[16], name[PS_SERVICE_NAME_MAX];
	size_t blen = 0;
	const char *body = ps_msg_body(msg, len, &blen);

	if (!body || ps_msg_get(msg, len, "op", op, sizeof(op)) < 0) {
		reply_error(c->fd, PS_EXIT_CONFIG, "malformed message");
		return true;
	}
	if (ps_msg_get(msg, len, "service", name, sizeof(name)) < 0 || strcmp(name, s->name)) {
		reply_error(c->fd, PS_EXIT_CONFIG,
			    "this system service serves another configuration (client_id, "
			    "token_url, scopes or client_secret_file differ): restart it "
			    "(systemctl restart pam_spotify.service)");
		return true;
	}
	if (!strcmp(op, "token"))
		return op_token(s, c);
	if (!strcmp(op, "grant"))
		op_grant(s, c, body, blen);
	else if (!strcmp(op, "open") || !strcmp(op, "close"))
		op_session(s, c, op[0] == 'o', msg, len);
	else
		reply_error(c->fd, PS_EXIT_CONFIG, "unknown op");
	return true;
}

/* Read what the peer sent; a whole frame is handled. true when the connection is done. */
static bool conn_read(struct service *s, struct conn *c)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * 4)];
		struct cmsghdr align;
	} u;
	struct iovec iov = {.iov_base = c->buf + c->have, .iov_len = REQ_MAX + 4 - c->have};
	struct msghdr m = {.msg_iov = &iov,
			   .msg_iovlen = 1,
			   .msg_control = u.buf,
			   .msg_controllen = sizeof(u.buf)};
	struct cmsghdr *cm;
	ssize_t n = recvmsg(c->fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	size_t need;

	if (n < 0)
		return errno != EAGAIN && errno != EINTR;
	if (n == 0)
		return true;
	for (cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm)) {
		size_t i, nfd = cm->cmsg_type == SCM_RIGHTS
					? (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int)
					: 0;

		for (i = 0; i < nfd; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (c->passfd < 0)
				c->passfd = fd;
			else
				close(fd);
		}
	}
	c->have += (size_t)n;
	if (c->have < 4)
		return false;
	need = (size_t)(unsigned char)c->buf[0] << 24 | (size_t)(unsigned char)c->buf[1] << 16 |
	       (size_t)(unsigned char)c->buf[2] << 8 | (unsigned char)c->buf[3];
	if (need > REQ_MAX)
		return true;
	if (c->have < 4 + need)
		return false;
	c->buf[4 + need] = '\0';
	return handle(s, c, c->buf + 4, need);
}

/* The connections a user has open (root's, the module's, are not counted). */
static int conns_of(const struct service *s, uid_t uid)
{
	int i, n = 0;

	for (i = 0; uid != 0 && i < s->nconns; i++)
		n += s->conns[i].uid == uid;
	return n;
}

static void conn_accept(struct service *s)
{
	struct conn *c;
	pid_t pid;
	int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0)
		return;
	c = &s->conns[s->nconns];
	*c = (struct conn){.fd = fd, .passfd = -1, .deadline = ps_mono_ms() + CONN_WAIT_MS};
	c->buf = malloc(REQ_MAX + 5);
	if (!c->buf || ps_frame_peer_uid(fd, &c->uid, &pid) < 0 ||
	    conns_of(s, c->uid) >= MAX_UID_CONNS) {
		free(c->buf);
		close(fd); /* a user holding connections open keeps nobody else out */
		return;
	}
	s->nconns++;
}

/* --- the loop */

static bool may_end(const struct service *s)
{
	return s->nsessions == 0 && s->nconns == 0 && s->njobs == 0 && !window_left_s(s) &&
	       ps_mono_ms() - s->idle_since_ms >= IDLE_EXIT_MS;
}

static int loop_timeout(const struct service *s)
{
	long long now = ps_mono_ms(), t = 60000;
	int i;

	for (i = 0; i < s->nconns; i++)
		if (s->conns[i].deadline - now < t)
			t = s->conns[i].deadline - now;
	if (s->nsessions == 0 && s->nconns == 0 && s->njobs == 0) {
		long long idle = s->idle_since_ms + IDLE_EXIT_MS - now;
		long long win = s->not_before_ms - now;

		t = idle > win ? idle : win;
	}
	return t < 0 ? 0 : t > 60000 ? 60000 : (int)t;
}

/* A peer's time is up: one that waits for the app token hears why. */
static void conn_expire(struct service *s, int i)
{
	char line[PS_ERR_MAX];

	if (s->conns[i].waiting) {
		ps_errf(line, sizeof(line),
			"the accounts server at %s did not answer within %u s (through the system "
			"service)",
			s->cfg.token_url, s->cfg.timeout);
		reply_error(s->conns[i].fd, PS_EXIT_NETWORK, line);
	}
	conn_close(s, i);
}

static void loop(struct service *s)
{
	struct pollfd *p = calloc(2 + MAX_CONNS + MAX_SESSIONS + MAX_JOBS, sizeof(*p));
	int i, n, nconns, nsessions;

	if (!p) {
		syslog(LOG_ERR, "out of memory");
		return;
	}
	s->idle_since_ms = ps_mono_ms() + FIRST_WAIT_MS - IDLE_EXIT_MS;
	while (!s->stop && !may_end(s)) {
		n = 0;
		nconns = s->nconns;
		nsessions = s->nsessions;
		p[n++] = (struct pollfd){.fd = s->sigfd, .events = POLLIN};
		p[n++] = (struct pollfd){.fd = s->nconns < MAX_CONNS ? s->lfd : -1,
					 .events = POLLIN};
		for (i = 0; i < nconns; i++) /* one that waits: only its hang-up matters */
			p[n++] = (struct pollfd){.fd = s->conns[i].fd,
						 .events = s->conns[i].waiting ? 0 : POLLIN};
		for (i = 0; i < nsessions; i++)
			p[n++] = (struct pollfd){.fd = s->sessions[i].pidfd, .events = POLLIN};
		for (i = 0; i < s->njobs; i++)
			p[n++] = (struct pollfd){.fd = s->jobs[i].fd, .events = POLLIN};
		if (poll(p, (nfds_t)n, loop_timeout(s)) < 0 && errno != EINTR)
			break;
		if (p[0].revents)
			s->stop = true;
		/* from the end: dropping one moves the last into its place */
		for (i = nsessions - 1; i >= 0; i--)
			if (p[2 + nconns + i].revents)
				session_drop(s, i);
		for (i = s->njobs - 1; i >= 0; i--)
			if (p[2 + nconns + nsessions + i].revents && job_read(&s->jobs[i]))
				job_done(s, i); /* may answer and close waiting peers */
		for (i = s->nconns - 1; i >= 0; i--) {
			if (i < nconns && p[2 + i].revents && p[2 + i].fd == s->conns[i].fd) {
				if (s->conns[i].waiting || conn_read(s, &s->conns[i]))
					conn_close(s, i);
			} else if (ps_mono_ms() >= s->conns[i].deadline) {
				conn_expire(s, i);
			}
		}
		if (p[1].revents & POLLIN)
			conn_accept(s);
		if (s->nconns || s->nsessions || s->njobs)
			s->idle_since_ms = ps_mono_ms();
	}
	free(p);
}

/* --- start-up */

/* Drop to the app user for good (ps_child_drop). 0 or -1. */
static int drop_privileges(const struct passwd *pw, char *line, size_t linelen)
{
	gid_t g = pw->pw_gid;
	const char *failed = ps_child_drop(pw->pw_uid, g, &g, 1);

	if (failed) {
		ps_errf(line, linelen, "cannot drop to app_user %s: %s", pw->pw_name, failed);
		return -1;
	}
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0); /* a uid change may have reset it */
	return 0;
}

/*
 * Bind RUNDIR/SERVICE.sock (a dead service's is replaced: we hold the lock). fd or -1. It listens
 * only after the privilege drop: peers see the credentials of listen() in SO_PEERCRED.
 */
static int bind_socket(const struct service *s, char *line, size_t linelen)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int fd;

	ps_service_path(&s->cfg, ".sock", a.sun_path, sizeof(a.sun_path));
	unlink(a.sun_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    chmod(a.sun_path, 0666) < 0) {
		ps_errf(line, linelen, "cannot listen on %s: %s", a.sun_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* Take RUNDIR/SERVICE.lock for good. 0; 1 when another service holds it; -1 with line. */
static int take_lock(struct service *s, char *line, size_t linelen)
{
	char path[PATH_MAX];
	int rfd = ps_rundir_open(true, line, linelen);

	if (rfd < 0)
		return -1;
	close(rfd);
	ps_service_path(&s->cfg, ".lock", path, sizeof(path));
	s->lockfd = ps_child_inherited_lock(path, true); /* the module's child took it for us */
	if (s->lockfd >= 0)
		return 0;
	s->lockfd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (s->lockfd < 0) {
		ps_errf(line, linelen, "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	/* a service that is ending still holds it for a moment; an open file description lock,
	 * which a login can ask about without taking it (ps_child_lock_held) */
	if (ps_child_ofd_lock(s->lockfd, 2000) == 0)
		return 0;
	return errno == EAGAIN ? 1 : -1;
}

/*
 * The module's request on stdin, until EOF, within REQUEST_WAIT_MS: we hold the start lock (the
 * module's child took it), and a login its su caller stopped would never send it, keeping every
 * other login from starting a service. 0, or -1.
 */
#define REQUEST_WAIT_MS 1000
static int read_request_within(char *buf, size_t cap, size_t *len)
{
	long long end = ps_mono_ms() + REQUEST_WAIT_MS;
	struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
	ssize_t n = 1;

	for (*len = 0; n > 0 && *len < cap; *len += (size_t)n) {
		long long left = end - ps_mono_ms();

		if (left <= 0 || poll(&p, 1, (int)left) != 1)
			return -1;
		do
			n = read(STDIN_FILENO, buf + *len, cap - *len);
		while (n < 0 && errno == EINTR);
		if (n < 0)
			return -1;
	}
	return 0;
}

/* Started by the module as root: the configuration on stdin, the status line on stdout. */
static int start_as_root(struct service *s, char *line, size_t linelen)
{
	char buf[PS_REQUEST_MAX + 1];
	struct ps_request req;
	struct passwd *pw;
	size_t len = 0;
	int rc;

	if (read_request_within(buf, sizeof(buf) - 1, &len) != 0) {
		ps_errf(line, linelen, "no request from the login within %d ms (it was stopped?)",
			REQUEST_WAIT_MS);
		return PS_EXIT_NETWORK;
	}
	if (ps_request_parse(&req, buf, len, line, linelen) < 0)
		return PS_EXIT_CONFIG;
	s->cfg = req.cfg;
	pw = getpwnam(s->cfg.app_user);
	if (!pw || pw->pw_uid == 0) {
		ps_errf(line, linelen, "app_user %s does not exist or is root", s->cfg.app_user);
		return PS_EXIT_CONFIG;
	}
	rc = take_lock(s, line, linelen);
	if (rc != 0)
		return rc > 0 ? -1 : PS_EXIT_CONFIG;
	if (s->cfg.flow != PS_FLOW_PKCE && ps_secret_read(s->cfg.client_secret_file, 0, s->secret,
							  sizeof(s->secret), line, linelen) < 0)
		return PS_EXIT_CONFIG;
	s->lfd = bind_socket(s, line, linelen);
	if (s->lfd < 0 || drop_privileges(pw, line, linelen) < 0)
		return PS_EXIT_CONFIG;
	if (listen(s->lfd, 128) < 0) {
		ps_errf(line, linelen, "cannot listen: %s", strerror(errno));
		return PS_EXIT_CONFIG;
	}
	return PS_EXIT_OK;
}

/* Started by systemd: the socket is fd 3; the default configuration; the secret a credential. */
static int start_by_systemd(struct service *s, char *line, size_t linelen)
{
	const char *dir = getenv("CREDENTIALS_DIRECTORY");
	char path[PATH_MAX];

	ps_config_init(&s->cfg);
	if (ps_config_load(&s->cfg, PS_CONFIG_PATH, line, linelen) < 0 ||
	    ps_config_finish(&s->cfg, line, linelen) < 0)
		return PS_EXIT_CONFIG;
	if (dir)
		snprintf(path, sizeof(path), "%s/client_secret", dir);
	if (s->cfg.flow != PS_FLOW_PKCE &&
	    ps_secret_read(dir ? path : s->cfg.client_secret_file, dir ? PS_SECRET_ANY_OWNER : 0,
			   s->secret, sizeof(s->secret), line, linelen) < 0)
		return PS_EXIT_CONFIG;
	s->lfd = 3;
	fcntl(s->lfd, F_SETFD, FD_CLOEXEC);
	fcntl(s->lfd, F_SETFL, O_NONBLOCK);
	return PS_EXIT_OK;
}

static bool socket_activated(void)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	unsigned long p, n;

	return pid && fds && ps_parse_ulong(pid, 1, 4194304, &p) == 0 && (pid_t)p == getpid() &&
	       ps_parse_ulong(fds, 1, 1, &n) == 0;
}

static int signals_open(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

/* Tell the module how the start went, then stdout is /dev/null. */
int ps_service_announce_fd = -1;

static void announce(const char *what)
{
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);

	ps_write_all(STDOUT_FILENO, what, strlen(what));
	if (ps_service_announce_fd >= 0) /* our starter waits for this, then ends */
		close(ps_service_announce_fd);
	ps_service_announce_fd = -1;
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		close(null);
	}
}

int ps_service_main(void)
{
	struct service s = {.lfd = -1, .lockfd = -1, .sigfd = -1};
	char line[PS_ERR_MAX] = "", status[PS_ERR_MAX + 16];
	bool systemd = socket_activated();
	int rc, i;

	openlog("pam_spotify_helper[service]", LOG_PID, LOG_AUTHPRIV);
	if (!systemd && geteuid() != 0) {
		fprintf(stderr, "pam_spotify_helper: service: run by pam_spotify.so as root, or by "
				"systemd (pam_spotify.socket)\n");
		return PS_EXIT_USAGE;
	}
	rc = systemd ? start_by_systemd(&s, line, sizeof(line))
		     : start_as_root(&s, line, sizeof(line));
	if (rc < 0) { /* another service holds the lock: it serves */
		announce("busy\n");
		return PS_EXIT_OK;
	}
	if (rc == PS_EXIT_OK) {
		ps_service_name(&s.cfg, "", s.name, sizeof(s.name));
		keyctl_join_session_keyring(NULL); /* no reference to a login's session keyring */
		signal(SIGCHLD, SIG_IGN);	   /* jobs' children: reaped by the kernel */
		s.sigfd = signals_open();
		s.sessions = calloc(MAX_SESSIONS, sizeof(*s.sessions));
		if (s.sigfd < 0 || !s.sessions) {
			ps_errf(line, sizeof(line), "cannot set up: %s", strerror(errno));
			rc = PS_EXIT_CONFIG;
		}
	}
	if (rc != PS_EXIT_OK) {
		syslog(LOG_ERR, "cannot start: %s", line);
		snprintf(status, sizeof(status), "fail %d %s\n", rc, line);
		announce(status);
		explicit_bzero(s.secret, sizeof(s.secret));
		return rc;
	}
	syslog(LOG_INFO, "serving %s for client %s (%s)", s.name, s.cfg.client_id,
	       ps_flow_name(s.cfg.flow));
	announce("ready\n");
	loop(&s);
	syslog(LOG_INFO, "ending: no session left");
	close(s.lfd); /* first: a login that connects now starts a new service... */
	for (i = s.nconns - 1; i >= 0; i--)
		conn_close(&s, i);
	for (i = s.nsessions - 1; i >= 0; i--)
		session_drop(&s, i);
	free(s.sessions);
	ps_app_token_clear(&s.app);
	explicit_bzero(s.secret, sizeof(s.secret));
	if (s.lockfd >= 0)
		close(s.lockfd); /* ...which takes the lock once we let it go */
	return PS_EXIT_OK;
}
