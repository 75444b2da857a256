/*
 * test_listener.c: the loopback redirect listener over real sockets on 127.0.0.1 and [::1]. A
 * client thread plays the browser: the right callback yields the code; a wrong path, a wrong
 * state, a foreign Host, a bad method or an oversized request gets an error page and the wait
 * goes on; access_denied ends it cleanly; /start/HEX (random per listener) redirects once. Every
 * page carries Referrer-Policy: no-referrer and echoes nothing. redirect_uri parsing refuses
 * localhost and the like. A pasted URL on a pipe wins as well, and a silent client cannot hold it
 * up. The peer check: a connection of our own uid (IPv4, IPv6, IPv4-mapped) is ours by
 * NETLINK_SOCK_DIAG; the kernel's answers are read right (fixtures: a TIME_WAIT or listening
 * socket, other endpoints, errors, truncation); a client of another uid (root only: a child
 * that drops to 65534) gets 403 with nothing of the login, and the wait goes on.
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helper/authorize.h"
#include "helper/listener.h"
#include "common/config.h"
#include "common/util.h"

#define STATE	    "Zm9vYmFyYmF6cXV4MTIzNA" /* 22 characters, like ps_pkce_state's */
#define OTHER_STATE "QmFkQmFkQmFkQmFkQmFkQQ"
#define CODE	    "AQDsecretCODE-_.~0123456789"
#define GOOD	    "/callback?code=" CODE "&state=" STATE
#define EXCHANGES   14
#define RESP_MAX    8192

/* One request the client thread sends, and what came back. */
struct exchange {
	const char *target; /* sent as "GET target HTTP/1.1" with our Host; or */
	const char *raw;    /* sent as it is */
	char response[RESP_MAX];
	size_t len;
	int connect_errno;
};

/* The browser: connects once per exchange, in order, after delay_ms. */
struct client {
	int family;
	unsigned port;
	int delay_ms;
	int silent_ms;		   /* > 0: connect, send nothing, hold the socket this long; */
	bool silent_until_closed;  /* or until the listener closes it: */
	long long closed_after_ms; /* how long that took */
	struct exchange ex[EXCHANGES];
	pthread_t thread;
};

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int client_connect(const struct client *c)
{
	struct sockaddr_in a4 = {.sin_family = AF_INET};
	struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
	struct timeval tv = {.tv_sec = 10};
	int fd = socket(c->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int rc;

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (c->family == AF_INET6) {
		a6.sin6_addr = in6addr_loopback;
		a6.sin6_port = htons((uint16_t)c->port);
		rc = connect(fd, (struct sockaddr *)&a6, sizeof(a6));
	} else {
		a4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		a4.sin_port = htons((uint16_t)c->port);
		rc = connect(fd, (struct sockaddr *)&a4, sizeof(a4));
	}
	if (rc < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static void client_exchange(const struct client *c, struct exchange *ex)
{
	char req[1024];
	ssize_t n;
	int fd = client_connect(c);

	if (fd < 0) {
		ex->connect_errno = errno;
		return;
	}
	if (ex->raw) {
		ps_write_all(fd, ex->raw, strlen(ex->raw));
	} else {
		n = snprintf(req, sizeof(req),
			     "GET %s HTTP/1.1\r\nHost: %s:%u\r\nUser-Agent: test\r\n"
			     "Accept: text/html\r\n\r\n",
			     ex->target, c->family == AF_INET6 ? "[::1]" : "127.0.0.1", c->port);
		ps_write_all(fd, req, (size_t)n);
	}
	while (ex->len < sizeof(ex->response) - 1 &&
	       (n = read(fd, ex->response + ex->len, sizeof(ex->response) - 1 - ex->len)) > 0)
		ex->len += (size_t)n;
	ex->response[ex->len] = '\0';
	close(fd);
}

static void *client_main(void *arg)
{
	struct client *c = arg;
	int i;

	sleep_ms(c->delay_ms);
	if (c->silent_ms > 0) {
		int fd = client_connect(c);
		sleep_ms(c->silent_ms);
		if (fd >= 0)
			close(fd);
	}
	if (c->silent_until_closed) {
		long long start = now_ms();
		char byte;
		int fd = client_connect(c);

		if (fd >= 0 && read(fd, &byte, 1) == 0)
			c->closed_after_ms = now_ms() - start;
		if (fd >= 0)
			close(fd);
	}
	for (i = 0; i < EXCHANGES && (c->ex[i].target || c->ex[i].raw); i++)
		client_exchange(c, &c->ex[i]);
	return NULL;
}

static void client_start(struct client *c, const struct ps_listener *l)
{
	c->port = l->port;
	if (!c->family)
		c->family = AF_INET;
	assert_int_equal(pthread_create(&c->thread, NULL, client_main, c), 0);
}

/* Close the listener first, so a client still connecting is refused rather than left hanging. */
static void client_join(struct client *c, struct ps_listener *l)
{
	ps_listener_close(l);
	assert_int_equal(pthread_join(c->thread, NULL), 0);
}

static void open_ok(struct ps_listener *l, const char *uri)
{
	char err[PS_ERR_MAX] = "";

	if (ps_listener_open(l, uri, err, sizeof(err)) < 0)
		fail_msg("ps_listener_open(%s): %s", uri, err);
	assert_true(l->fd >= 0);
	assert_true(l->port > 0);
}

static enum ps_wait_result wait_on(struct ps_listener *l, int paste_fd, unsigned timeout_s,
				   struct ps_callback *cb, char *err, size_t errlen)
{
	err[0] = '\0';
	return ps_listener_wait(l, paste_fd, l ? l->redirect_uri : NULL, STATE, timeout_s, cb, err,
				errlen);
}

static bool ipv6_loopback_available(void)
{
	struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	if (fd < 0)
		return false;
	ok = bind(fd, (struct sockaddr *)&a6, sizeof(a6)) == 0;
	close(fd);
	return ok;
}

/* Status code of an HTTP response, 0 when there is none. */
static int status_of(const struct exchange *ex)
{
	if (ex->len < 12 || strncmp(ex->response, "HTTP/1.1 ", 9) != 0)
		return 0;
	return (ex->response[9] - '0') * 100 + (ex->response[10] - '0') * 10 +
	       (ex->response[11] - '0');
}

/* The headers every response must carry, a Content-Length that matches, and no echo. */
static void assert_response_well_formed(const struct exchange *ex)
{
	const char *body = strstr(ex->response, "\r\n\r\n");
	const char *cl = strstr(ex->response, "\r\nContent-Length: ");

	assert_non_null(body);
	assert_non_null(cl);
	assert_true(cl < body);
	assert_int_equal(strtoul(cl + 18, NULL, 10), strlen(body + 4));
	assert_non_null(strstr(ex->response, "\r\nReferrer-Policy: no-referrer\r\n"));
	assert_non_null(strstr(ex->response, "\r\nCache-Control: no-store\r\n"));
	assert_non_null(strstr(ex->response, "\r\nConnection: close\r\n"));
	assert_non_null(strstr(ex->response, "\r\nContent-Type: text/html; charset=utf-8\r\n"));
	assert_null(strstr(body, "http"));
	assert_null(strstr(ex->response, CODE));
	assert_null(strstr(ex->response, STATE));
	assert_null(strstr(ex->response, OTHER_STATE));
}

/* ---- redirect_uri ---- */

static void test_localhost_refused(void **state)
{
	static const char *const uris[] = {"http://localhost/callback",
					   "http://localhost:8080/callback",
					   "http://LocalHost/callback"};
	struct ps_listener l;
	char err[PS_ERR_MAX];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(uris) / sizeof(uris[0]); i++) {
		err[0] = '\0';
		assert_int_equal(ps_listener_open(&l, uris[i], err, sizeof(err)), -1);
		assert_int_equal(l.fd, -1);
		assert_string_equal(err, "redirect_uri may not use localhost: Spotify refuses it; "
					 "use http://127.0.0.1/callback (and register that in the "
					 "app settings)");
		ps_listener_close(&l);
	}
}

static void test_bad_redirect_uris_refused(void **state)
{
	static const char *const uris[] = {
		"https://127.0.0.1/callback", "http://127.0.0.1",
		"http://127.0.0.1:8080",      "http://[::1]",
		"http://0.0.0.0/callback",    "http://127.0.0.2/callback",
		"http://[::]/callback",	      "http://example.com/callback",
		"http://127.0.0.1:/cb",	      "http://127.0.0.1:0/cb",
		"http://127.0.0.1:65536/cb",  "http://127.0.0.1:080/cb",
		"http://127.0.0.1:8x/cb",     "http://127.0.0.1/cb?x=1",
		"http://127.0.0.1/cb#f",      "http://127.0.0.1/c b",
		"http://user@127.0.0.1/cb",   "http://127.0.0.1@evil/cb",
		"HTTP://127.0.0.1/cb",	      "",
	};
	struct ps_listener l;
	char err[PS_ERR_MAX];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(uris) / sizeof(uris[0]); i++) {
		err[0] = '\0';
		if (ps_listener_open(&l, uris[i], err, sizeof(err)) != -1)
			fail_msg("accepted %s", uris[i]);
		assert_int_equal(l.fd, -1);
		assert_true(strlen(err) > 10);
		ps_listener_close(&l);
	}
}

static void test_ephemeral_port_in_redirect_uri(void **state)
{
	struct ps_listener l;
	char want[PS_URL_MAX];

	(void)state;
	open_ok(&l, "http://127.0.0.1/callback");
	snprintf(want, sizeof(want), "http://127.0.0.1:%u/callback", l.port);
	assert_string_equal(l.redirect_uri, want);
	assert_string_equal(l.path, "/callback");
	ps_listener_close(&l);
	assert_int_equal(l.fd, -1);
	ps_listener_close(&l); /* twice is fine */
}

/* A port that was free a moment ago. */
static unsigned free_port(void)
{
	struct sockaddr_in a4 = {.sin_family = AF_INET};
	socklen_t len = sizeof(a4);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	a4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a4, sizeof(a4)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a4, &len), 0);
	close(fd);
	return ntohs(a4.sin_port);
}

static void test_fixed_port_honoured_and_busy_port_explained(void **state)
{
	struct ps_listener l, busy;
	char uri[PS_URL_MAX], err[PS_ERR_MAX] = "", port[16];

	(void)state;
	snprintf(uri, sizeof(uri), "http://127.0.0.1:%u/cb", free_port());
	open_ok(&l, uri);
	assert_string_equal(l.redirect_uri, uri);
	assert_string_equal(l.path, "/cb");
	assert_int_equal(ps_listener_open(&busy, uri, err, sizeof(err)), -1);
	assert_int_equal(busy.fd, -1);
	snprintf(port, sizeof(port), "port %u ", l.port);
	assert_non_null(strstr(err, port));
	assert_non_null(strstr(err, "without a port"));
	ps_listener_close(&l);
}

static void test_ipv6_loopback(void **state)
{
	struct client c = {.family = AF_INET6, .ex = {{.target = GOOD}}};
	struct ps_listener l;
	struct ps_callback cb;
	char err[PS_ERR_MAX], want[PS_URL_MAX];

	(void)state;
	if (!ipv6_loopback_available()) {
		printf("# skipped: IPv6 loopback [::1] is not available here\n");
		return;
	}
	open_ok(&l, "http://[::1]/callback");
	snprintf(want, sizeof(want), "http://[::1]:%u/callback", l.port);
	assert_string_equal(l.redirect_uri, want);
	client_start(&c, &l);
	assert_int_equal(wait_on(&l, -1, 10, &cb, err, sizeof(err)), PS_WAIT_CODE);
	client_join(&c, &l);
	assert_string_equal(cb.code, CODE);
	assert_int_equal(status_of(&c.ex[0]), 200);
	ps_callback_clear(&cb);
}

/* ---- the browser path ---- */

static void test_good_callback_gives_code(void **state)
{
	struct client c = {.ex = {{.target = GOOD}}};
	struct ps_listener l;
	struct ps_callback cb;
	char err[PS_ERR_MAX];

	(void)state;
	open_ok(&l, "http://127.0.0.1/callback");
	client_start(&c, &l);
	assert_int_equal(wait_on(&l, -1, 10, &cb, err, sizeof(err)), PS_WAIT_CODE);
	client_join(&c, &l);
	assert_string_equal(cb.code, CODE);
	assert_string_equal(cb.state, STATE);
	assert_int_equal(status_of(&c.ex[0]), 200);
	assert_non_null(strstr(c.ex[0].response, "pam_spotify has your authorization"));
	assert_response_well_formed(&c.ex[0]);
	ps_callback_clear(&cb);
}

static void test_wrong_path_404_then_code(void **state)
{
	struct client c = {.ex = {{.target = "/favicon.ico"},
				  {.target = "/callbackx?code=" CODE "&state=" STATE},
				  {.target = "/?code=" CODE "&state=" STATE},
				  {.target = GOOD}}};
	struct ps_listener l;
	struct ps_callback cb;
	char err[PS_ERR_MAX];
	int i;

	(void)state;
	open_ok(&l, "http://127.0.0.1/callback");
	client_start(&c, &l);
	assert_int_equal(wait_on(&l, -1, 10, &cb, err, sizeof(err)), PS_WAIT_CODE);
	client_join(&c, &l);
	for (i = 0; i < 3; i++) {
		assert_int_equal(status_of(&c.ex[i]), 404);
		assert_non_null(strstr(c.ex[i].response, "not the pam_spotify redirect"));
		assert_response_well_formed(&c.ex[i]);
	}
	assert_int_equal(status_of(&c.ex[3]), 200);
	assert_string_equal(cb.code, CODE);
	ps_callback_clear(&cb);
}

static void test_wrong_state_400_then_code(void **state)
{
	struct client c = {.ex = {{.target = "/callback?code=" CODE "&state=" OTHER_STATE},
				  {.target = "/callback?error=access_denied&state=" OTHER_STATE},
				  {.target = "/callback?code=" CODE},
				  {.target = GOOD}}};
	struct ps_listener l;
	struct ps_callback cb;
	char err[PS_ERR_MAX];
	int i;

	(void)state;
	open_ok(&l, "http://127.0.0.1/callback");
	client_start(&c, &l);
	assert_int_equal(wait_on(&l, -1, 10, &cb, err, sizeof(err)), PS_WAIT_CODE);
	client_join(&c, &l);
	for (i = 0; i < 2; i++) {
		assert_int_equal(status_of(&c.ex[i]), 400);
		assert_non_null(
			strstr(c.ex[i].response, "does not belong to the login in progress"));
		assert_response_well_formed(&c.ex[i]);
	}
	assert_int_equal(status_of(&c.ex[2]), 400); /* no state at all */
	assert_response_well_formed(&c.ex[2]);
	assert_int_equal(status_of(&c.ex[3]), 200);
	assert_string_equal(cb.code, CODE);
	ps_callback_clear(&cb);
}

static void test_access_denied(void **state)
{
	struct client c = {.ex = {{.target = "/callback?error=access_denied&state=" STATE}}};
	struct ps_listener l;
	struct ps_callback cb;
	char err[PS_ERR_MAX];

	(void)state;
	open_ok(&l, "http://127.0.0.1/callback");
	client_start(&c, &l);
	assert_int_equal(wait_on(&l, -1, 10, &cb, err, sizeof(err)), PS_WAIT_DENIED);
	client_join(&c, &l);
	assert_string_equal(cb.error, "access_denied");
	assert_string_equal(cb.code, "");
	assert_non_null(strstr(err, "access_denied"));
	assert_int_equal(status_of(&c.ex[0]), 200);
	assert_non_null(strstr(c.ex[0].response, "Spotify refused the authorization "
						 "(access_denied): you can close this tab"));
	assert_response_well_formed(&c.ex[0]);
	ps_callback_clear(&cb);
}

static void test_unknown_error_not_echoed(void **state)
{
	struct client c = {.ex = {{.target = "/callback?error=evil%3Cscript%3E&state=" STATE}}};
	struct ps_listener l;
	struct ps_callback cb;
	char err[PS_ERR_MAX];

	(void)state;
	open_ok(&l, "http://127.0.0.1/callback");
	client_start(&c, &l);
	assert_int_equal(wait_on(&l, -1, 10, &cb, err, sizeof(err)), PS_WAIT_DENIED);
	client_join(&c, &l);
	assert_null(strstr(c.ex[0].response, "evil"));
	assert_null(strstr(c.ex[0].response, "<script"));
	assert_non_null(strstr(c.ex[0].response, "Spotify refused the authorization"));
	ps_callback_clear(&cb);
}

static void test_deadline_times_out(void **state)
{
	struct ps_listener l;
	struct ps_callback cb;
	char err[PS_ERR_MAX];
	long long start = now_ms(), took;

	(void)state;
	open_ok(&l, "http://127.0.0.1/callback");
	assert_int_equal(wait_on(&l, -1, 1, &cb, err, sizeof(err)), PS_WAIT_TIMEOUT);
	took = now_ms() - start;
	assert_true(took >= 950 && took < 3000);
	assert_true(err[0] != '\0');
	ps_listener_close(&l);
}

/* A connection that never sends a request is closed after about 5 s; the wait goes on. */
static void test_silent_client_cut_off(void **state)
{
	struct client quiet = {.silent_until_closed = true};
	struct ps_listener l;
	struct ps_callback cb;
	char err[PS_ERR_MAX];

	(void)state;
	open_ok(&l, "http://127.0.0.1/callback");
	client_start(&quiet, &l);
	assert_int_equal(wait_on(&l, -1, 6, &cb, err, sizeof(err)), PS_WAIT_TIMEOUT);
	client_join(&quiet, &l);
	/* by the listener's per-connection deadline, not by the end of the wait at 6 s */
	assert_true(quiet.closed_after_ms >= 4500 && quiet.closed_after_ms < 5800);
}

static void on_alarm(int sig)
{
	(void)sig;
}

static void test_signals_do_not_end_the_wait(void **state)
{
	struct sigaction sa = {.sa_handler = on_alarm}, old; /* no SA_RESTART: poll gets EINTR */
	struct itimerval every = {{0, 100000}, {0, 100000}}, off = {{0, 0}, {0, 0}};
	struct client c = {.delay_ms = 700, .ex = {{.target = GOOD}}};
	struct ps_listener l;
	struct ps_callback cb;
	char err[PS_ERR_MAX];

	(void)state;
	open_ok(&l, "http://127.0.0.1/callback");
	assert_int_equal(sigaction(SIGALRM, &sa, &old), 0);
	assert_int_equal(setitimer(ITIMER_REAL, &every, NULL), 0);
	client_start(&c, &l);
	assert_int_equal(wait_on(&l, -1, 10, &cb, err, sizeof(err)), PS_WAIT_CODE);
	setitimer(ITIMER_REAL, &off, NULL);
	sigaction(SIGALRM, &old, NULL);
	client_join(&c, &l);
	assert_string_equal(cb.code, CODE);
	ps_callback_clear(&cb);
}

static void test_start_redirects_once(void **state)
{
	static const char location[] = "https://accounts.spotify.com/"
				       "authorize?client_id=abc&response_type=code&state=" STATE;
	struct client c = {.ex = {{.target = "/start"},
				  {.target = NULL},
				  {.target = NULL},
				  {.target = NULL},
				  {.target = GOOD}}};
	struct ps_listener l, other;
	struct ps_callback cb;
	char err[PS_ERR_MAX], near[PS_START_PATH_LEN + 1];
	const char *loc;
	size_t i;

	(void)state;
	open_ok(&l, "http://127.0.0.1/callback");
	open_ok(&other, "http://127.0.0.1/callback");
	/* "/start/" and 32 lower-case hex digits, new for each listener */
	assert_int_equal(strlen(l.start_path), PS_START_PATH_LEN);
	assert_int_equal(strncmp(l.start_path, "/start/", 7), 0);
	assert_int_equal(strspn(l.start_path + 7, "0123456789abcdef"), 32);
	assert_string_not_equal(l.start_path, other.start_path);
	ps_listener_close(&other);
	memcpy(near, l.start_path, sizeof(near)); /* one digit off */
	near[PS_START_PATH_LEN - 1] = near[PS_START_PATH_LEN - 1] == '0' ? '1' : '0';
	c.ex[1].target = near;
	c.ex[2].target = l.start_path;
	c.ex[3].target = l.start_path;
	ps_listener_set_start(&l, location);
	client_start(&c, &l);
	assert_int_equal(wait_on(&l, -1, 10, &cb, err, sizeof(err)), PS_WAIT_CODE);
	client_join(&c, &l);
	for (i = 0; i < 2; i++) { /* the bare /start and a path one digit off: not found */
		assert_int_equal(status_of(&c.ex[i]), 404);
		assert_response_well_formed(&c.ex[i]);
		assert_null(strstr(c.ex[i].response, "Location"));
	}
	assert_int_equal(status_of(&c.ex[2]), 302);
	loc = strstr(c.ex[2].response, "\r\nLocation: ");
	assert_non_null(loc);
	assert_int_equal(strncmp(loc + 12, location, strlen(location)), 0);
	assert_int_equal(strncmp(loc + 12 + strlen(location), "\r\n", 2), 0);
	assert_non_null(strstr(c.ex[2].response, "\r\nCache-Control: no-store\r\n"));
	assert_non_null(strstr(c.ex[2].response, "\r\nReferrer-Policy: no-referrer\r\n"));
	assert_int_equal(status_of(&c.ex[3]), 404); /* once */
	assert_null(strstr(c.ex[3].response, "Location"));
	assert_int_equal(status_of(&c.ex[4]), 200);
	assert_string_equal(l.start_location, "");
	ps_callback_clear(&cb);
}

static void test_start_refuses_header_breaking_location(void **state)
{
	struct ps_listener l;

	(void)state;
	open_ok(&l, "http://127.0.0.1/callback");
	ps_listener_set_start(&l, "https://a.example/x\r\nSet-Cookie: a=b");
	assert_string_equal(l.start_location, "");
	ps_listener_set_start(&l, "https://a.example/authorize?x=1");
	assert_string_equal(l.start_location, "https://a.example/authorize?x=1");
	ps_listener_close(&l);
	assert_string_equal(l.start_location, "");
}

/* ---- the peer check ---- */

/* Capture what the code under test writes to stderr. */
struct capture {
	int saved;
	int pipe[2];
	char text[4096];
};

static void capture_begin(struct capture *cap)
{
	fflush(stderr);
	cap->saved = dup(STDERR_FILENO);
	assert_true(cap->saved >= 0);
	assert_int_equal(pipe2(cap->pipe, O_CLOEXEC | O_NONBLOCK), 0);
	assert_true(dup2(cap->pipe[1], STDERR_FILENO) >= 0);
}

static void capture_end(struct capture *cap)
{
	ssize_t n;

	dup2(cap->saved, STDERR_FILENO);
	close(cap->saved);
	close(cap->pipe[1]);
	n = read(cap->pipe[0], cap->text, sizeof(cap->text) - 1);
	cap->text[n > 0 ? n : 0] = '\0';
	close(cap->pipe[0]);
}

/* Connect a socket of this process to the listener and accept it: sets *client and *server. */
static void connect_pair(const struct ps_listener *l, int family, bool mapped, int *client,
			 int *server)
{
	struct sockaddr_in a4 = {.sin_family = AF_INET};
	struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	if (family == AF_INET) {
		a4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		a4.sin_port = htons((uint16_t)l->port);
		assert_int_equal(connect(fd, (struct sockaddr *)&a4, sizeof(a4)), 0);
	} else {
		if (mapped) /* a dual-stack socket to the IPv4 listener: ::ffff:127.0.0.1 */
			assert_int_equal(inet_pton(AF_INET6, "::ffff:127.0.0.1", &a6.sin6_addr), 1);
		a6.sin6_port = htons((uint16_t)l->port);
		assert_int_equal(connect(fd, (struct sockaddr *)&a6, sizeof(a6)), 0);
	}
	*client = fd;
	/* the handshake is done once connect returns: the connection waits in the backlog */
	*server = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
	assert_true(*server >= 0);
}

static void assert_peer_is_us(const char *uri, int family, bool mapped)
{
	struct ps_listener l;
	uid_t uid = (uid_t)-2;
	int client, server, rc;

	open_ok(&l, uri);
	connect_pair(&l, family, mapped, &client, &server);
	rc = ps_peer_uid(server, &uid);
	if (rc != 0)
		fail_msg("ps_peer_uid (%s%s): %s", uri, mapped ? ", mapped" : "", strerror(-rc));
	assert_int_equal(uid, geteuid());
	uid = (uid_t)-2; /* and the other way round: the client's peer is the accepted socket */
	assert_int_equal(ps_peer_uid(client, &uid), 0);
	assert_int_equal(uid, geteuid());
	close(client);
	close(server);
	ps_listener_close(&l);
}

static void test_peer_of_own_connection_is_our_uid(void **state)
{
	(void)state;
	assert_peer_is_us("http://127.0.0.1/callback", AF_INET, false);
	if (!ipv6_loopback_available()) {
		printf("# skipped the [::1] cases: IPv6 loopback is not available here\n");
		return;
	}
	assert_peer_is_us("http://[::1]/callback", AF_INET6, false);
	assert_peer_is_us("http://127.0.0.1/callback", AF_INET6, true);
}

/* A gone peer: the lookup finds no established socket of that four-tuple. */
static void test_peer_gone_is_nobody(void **state)
{
	struct ps_listener l;
	struct linger rst = {.l_onoff = 1, .l_linger = 0};
	uid_t uid = 4242;
	int client, server;

	(void)state;
	open_ok(&l, "http://127.0.0.1/callback");
	connect_pair(&l, AF_INET, false, &client, &server);
	setsockopt(client, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));
	close(client); /* a reset: the client's socket is gone at once */
	assert_true(ps_peer_uid(server, &uid) < 0);
	assert_int_equal(uid, 4242);
	close(server);
	ps_listener_close(&l);
}

/* The kernel's answer, as it comes: a netlink header and an inet_diag_msg (or an nlmsgerr). */
struct diag_fixture {
	struct nlmsghdr h;
	union {
		struct inet_diag_msg m;
		struct nlmsgerr e;
	};
};

static void fixture_query(struct inet_diag_req_v2 *req)
{
	struct sockaddr_in ours = {.sin_family = AF_INET, .sin_port = htons(8080)};
	struct sockaddr_in theirs = {.sin_family = AF_INET, .sin_port = htons(40000)};

	ours.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	theirs.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(
		ps_peer_diag_query((struct sockaddr *)&ours, (struct sockaddr *)&theirs, req), 0);
}

/* The peer's entry, as the kernel answers for the connection fixture_query asks about. */
static void fixture_answer(struct diag_fixture *f, uint8_t state, uint32_t uid)
{
	memset(f, 0, sizeof(*f));
	f->h.nlmsg_len = NLMSG_LENGTH(sizeof(f->m));
	f->h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	f->h.nlmsg_seq = 7;
	f->m.idiag_family = AF_INET;
	f->m.idiag_state = state;
	f->m.id.idiag_sport = htons(40000);
	f->m.id.idiag_dport = htons(8080);
	f->m.id.idiag_src[0] = htonl(INADDR_LOOPBACK);
	f->m.id.idiag_dst[0] = htonl(INADDR_LOOPBACK);
	f->m.idiag_uid = uid;
	f->m.idiag_inode = 12345;
}

static int fixture_reply(const struct diag_fixture *f, size_t len,
			 const struct inet_diag_req_v2 *req, uid_t *uid)
{
	return ps_peer_diag_reply(f, len, req, 7, uid);
}

static void test_peer_diag_query_names_the_peer(void **state)
{
	struct sockaddr_in6 ours6 = {.sin6_family = AF_INET6,
				     .sin6_port = htons(8080),
				     .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	struct sockaddr_in6 theirs6 = {.sin6_family = AF_INET6,
				       .sin6_port = htons(40000),
				       .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	struct sockaddr_in ours4 = {.sin_family = AF_INET};
	struct {
		sa_family_t family;
		char path[108];
	} unix_sa = {.family = AF_UNIX};
	struct inet_diag_req_v2 req;

	(void)state;
	fixture_query(&req);
	assert_int_equal(req.sdiag_family, AF_INET);
	assert_int_equal(req.sdiag_protocol, IPPROTO_TCP);
	/* the peer's socket: its source is our remote end, its destination our local end */
	assert_int_equal(ntohs(req.id.idiag_sport), 40000);
	assert_int_equal(ntohs(req.id.idiag_dport), 8080);
	assert_int_equal(req.id.idiag_src[0], htonl(INADDR_LOOPBACK));
	assert_int_equal(req.id.idiag_dst[0], htonl(INADDR_LOOPBACK));
	assert_int_equal(req.id.idiag_cookie[0], INET_DIAG_NOCOOKIE);
	assert_int_equal(req.id.idiag_cookie[1], INET_DIAG_NOCOOKIE);
	assert_int_equal(
		ps_peer_diag_query((struct sockaddr *)&ours6, (struct sockaddr *)&theirs6, &req),
		0);
	assert_int_equal(req.sdiag_family, AF_INET6);
	assert_int_equal(ntohs(req.id.idiag_sport), 40000);
	assert_memory_equal(req.id.idiag_src, &in6addr_loopback, 16);
	assert_int_equal(
		ps_peer_diag_query((struct sockaddr *)&ours4, (struct sockaddr *)&theirs6, &req),
		-EAFNOSUPPORT);
	assert_int_equal(
		ps_peer_diag_query((struct sockaddr *)&unix_sa, (struct sockaddr *)&unix_sa, &req),
		-EAFNOSUPPORT);
}

static void test_peer_diag_reply_fixtures(void **state)
{
	struct inet_diag_req_v2 req;
	struct diag_fixture f;
	uid_t uid;

	(void)state;
	fixture_query(&req);

	/* the peer, established: its uid */
	fixture_answer(&f, TCP_ESTABLISHED, 1001);
	uid = 0;
	assert_int_equal(fixture_reply(&f, f.h.nlmsg_len, &req, &uid), 0);
	assert_int_equal(uid, 1001);

	/* a dual-stack IPv6 socket connected to ::ffff:127.0.0.1 */
	fixture_answer(&f, TCP_ESTABLISHED, 1002);
	f.m.idiag_family = AF_INET6;
	f.m.id.idiag_src[0] = f.m.id.idiag_dst[0] = 0;
	f.m.id.idiag_src[2] = f.m.id.idiag_dst[2] = htonl(0xffff);
	f.m.id.idiag_src[3] = f.m.id.idiag_dst[3] = htonl(INADDR_LOOPBACK);
	assert_int_equal(fixture_reply(&f, f.h.nlmsg_len, &req, &uid), 0);
	assert_int_equal(uid, 1002);
	f.m.id.idiag_src[2] = 0; /* ::127.0.0.1 is another address */
	assert_int_equal(fixture_reply(&f, f.h.nlmsg_len, &req, &uid), -ENOTCONN);

	/* a closed connection's TIME_WAIT entry (uid 0), its FIN_WAIT2 substate, a listener */
	fixture_answer(&f, TCP_TIME_WAIT, 0);
	uid = 4242;
	assert_int_equal(fixture_reply(&f, f.h.nlmsg_len, &req, &uid), -ENOTCONN);
	fixture_answer(&f, TCP_FIN_WAIT2, 0);
	assert_int_equal(fixture_reply(&f, f.h.nlmsg_len, &req, &uid), -ENOTCONN);
	fixture_answer(&f, TCP_LISTEN, 1003);
	f.m.id.idiag_dport = 0;
	f.m.id.idiag_dst[0] = 0;
	assert_int_equal(fixture_reply(&f, f.h.nlmsg_len, &req, &uid), -ENOTCONN);
	assert_int_equal(uid, 4242);

	/* established, but not the asked-for endpoints: our own side, another port or address */
	fixture_answer(&f, TCP_ESTABLISHED, 1004);
	f.m.id.idiag_sport = htons(8080);
	f.m.id.idiag_dport = htons(40000);
	assert_int_equal(fixture_reply(&f, f.h.nlmsg_len, &req, &uid), -ENOTCONN);
	fixture_answer(&f, TCP_ESTABLISHED, 1004);
	f.m.id.idiag_sport = htons(40001);
	assert_int_equal(fixture_reply(&f, f.h.nlmsg_len, &req, &uid), -ENOTCONN);
	fixture_answer(&f, TCP_ESTABLISHED, 1004);
	f.m.id.idiag_src[0] = htonl(0x7f000002);
	assert_int_equal(fixture_reply(&f, f.h.nlmsg_len, &req, &uid), -ENOTCONN);
	fixture_answer(&f, TCP_ESTABLISHED, 1004);
	f.m.id.idiag_dst[0] = htonl(0x7f000002);
	assert_int_equal(fixture_reply(&f, f.h.nlmsg_len, &req, &uid), -ENOTCONN);
	assert_int_equal(uid, 4242);

	/* the kernel's errors: no such socket; an ack is no answer */
	memset(&f, 0, sizeof(f));
	f.h.nlmsg_len = NLMSG_LENGTH(sizeof(f.e));
	f.h.nlmsg_type = NLMSG_ERROR;
	f.h.nlmsg_seq = 7;
	f.e.error = -ENOENT;
	assert_int_equal(fixture_reply(&f, f.h.nlmsg_len, &req, &uid), -ENOENT);
	f.e.error = 0;
	assert_int_equal(fixture_reply(&f, f.h.nlmsg_len, &req, &uid), -EBADMSG);
	f.h.nlmsg_len = NLMSG_LENGTH(2);
	assert_int_equal(fixture_reply(&f, f.h.nlmsg_len, &req, &uid), -EBADMSG);

	/* malformed: short, a length past the data, another sequence number, another type */
	fixture_answer(&f, TCP_ESTABLISHED, 1005);
	assert_int_equal(fixture_reply(&f, 4, &req, &uid), -EBADMSG);
	assert_int_equal(fixture_reply(&f, f.h.nlmsg_len - 1, &req, &uid), -EBADMSG);
	f.h.nlmsg_len = NLMSG_LENGTH(sizeof(f.m) - 1);
	assert_int_equal(fixture_reply(&f, sizeof(f), &req, &uid), -EBADMSG);
	fixture_answer(&f, TCP_ESTABLISHED, 1005);
	f.h.nlmsg_seq = 8;
	assert_int_equal(fixture_reply(&f, f.h.nlmsg_len, &req, &uid), -EBADMSG);
	fixture_answer(&f, TCP_ESTABLISHED, 1005);
	f.h.nlmsg_type = NLMSG_DONE;
	assert_int_equal(fixture_reply(&f, f.h.nlmsg_len, &req, &uid), -EBADMSG);
	assert_int_equal(uid, 4242);
}

/* What the attacker's child process (another uid) sent, and got back. */
struct intruder {
	int pipe_fd;	       /* the child's results arrive here */
	struct exchange ex[3]; /* as the child saw them */
	struct client own;     /* then the user's own browser */
	pthread_t thread;
};

/* The child: drop to uid and gid 65534, make the exchanges, send them up the pipe. */
static void intruder_child(struct client *c, int out)
{
	gid_t gid = 65534;
	int i;

	if (setgroups(1, &gid) < 0 || setresgid(gid, gid, gid) < 0 ||
	    setresuid(65534, 65534, 65534) < 0 || geteuid() != 65534)
		_exit(1);
	for (i = 0; i < 3; i++)
		client_exchange(c, &c->ex[i]);
	ps_write_all(out, c->ex, sizeof(c->ex[0]) * 3);
	_exit(0);
}

/* The user's browser waits for the intruder to be done, then takes its turn. */
static void *intruder_then_own(void *arg)
{
	struct intruder *in = arg;
	size_t got = 0;
	ssize_t n;

	while (got < sizeof(in->ex) &&
	       (n = read(in->pipe_fd, (char *)in->ex + got, sizeof(in->ex) - got)) > 0)
		got += (size_t)n;
	return client_main(&in->own);
}

static void assert_other_uid_refused(const char *uri, int family)
{
	struct ps_listener l;
	struct ps_callback cb;
	struct capture cap;
	struct client child = {.family = family};
	struct intruder in = {.own = {.family = family}};
	char err[PS_ERR_MAX], uidtext[64];
	int fds[2], status, i;
	pid_t pid;

	open_ok(&l, uri);
	ps_listener_set_start(&l, "https://accounts.example/authorize?state=" STATE);
	child.port = in.own.port = l.port;
	child.ex[0].target = "/start";
	child.ex[1].target = l.start_path; /* even knowing the path */
	child.ex[2].target = GOOD;	   /* even with the right state */
	in.own.ex[0].target = l.start_path;
	in.own.ex[1].target = GOOD;
	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		intruder_child(&child, fds[1]);
	}
	close(fds[1]);
	in.pipe_fd = fds[0];
	assert_int_equal(pthread_create(&in.thread, NULL, intruder_then_own, &in), 0);
	capture_begin(&cap);
	assert_int_equal(wait_on(&l, -1, 20, &cb, err, sizeof(err)), PS_WAIT_CODE);
	capture_end(&cap);
	ps_listener_close(&l);
	assert_int_equal(pthread_join(in.thread, NULL), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	close(fds[0]);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	for (i = 0; i < 3; i++) {
		if (status_of(&in.ex[i]) != 403)
			fail_msg("%s from uid 65534: status %d, want 403", child.ex[i].target,
				 status_of(&in.ex[i]));
		assert_response_well_formed(&in.ex[i]);
		assert_non_null(strstr(in.ex[i].response, "serves only the user who started it"));
		assert_null(strstr(in.ex[i].response, "Location"));
		assert_null(strstr(in.ex[i].response, "authorize"));
	}
	/* one line for all three, with the uid and nothing of the requests */
	snprintf(uidtext, sizeof(uidtext), "from another user (uid 65534); still waiting\n");
	assert_non_null(strstr(cap.text, uidtext));
	assert_null(strstr(strstr(cap.text, uidtext) + 1, uidtext));
	assert_null(strstr(cap.text, CODE));
	assert_null(strstr(cap.text, STATE));
	/* /start was not used up by the intruder: the user's own browser gets it, then the code */
	assert_int_equal(status_of(&in.own.ex[0]), 302);
	assert_int_equal(status_of(&in.own.ex[1]), 200);
	assert_string_equal(cb.code, CODE);
	ps_callback_clear(&cb);
}

static void test_other_uid_gets_403_and_the_wait_goes_on(void **state)
{
	(void)state;
	if (geteuid() != 0) {
		printf("# skipped: needs root (a child switches to uid 65534)\n");
		return;
	}
	assert_other_uid_refused("http://127.0.0.1/callback", AF_INET);
	if (!ipv6_loopback_available()) {
		printf("# skipped the [::1] case: IPv6 loopback is not available here\n");
		return;
	}
	assert_other_uid_refused("http://[::1]/callback", AF_INET6);
}

static void test_bad_requests_refused_then_code(void **state)
{
	struct client c = {
		.ex = {{.raw = "POST " GOOD " HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"},
		       {.raw = "GET " GOOD " HTTP/2.0\r\n\r\n"},
		       {.raw = "GET " GOOD " HTTP/1.1\r\nHost: evil.example:1234\r\n\r\n"},
		       {.raw = "GET " GOOD " HTTP/1.1\r\nUser-Agent: no-host\r\n\r\n"},
		       {.raw = NULL},
		       {.target = GOOD}}};
	struct ps_listener l;
	struct ps_callback cb;
	char err[PS_ERR_MAX];
	char twohosts[256];
	int i;

	(void)state;
	open_ok(&l, "http://127.0.0.1/callback");
	snprintf(twohosts, sizeof(twohosts),
		 "GET " GOOD " HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nHost: 127.0.0.1:%u\r\n\r\n",
		 l.port, l.port);
	c.ex[4].raw = twohosts;
	client_start(&c, &l);
	assert_int_equal(wait_on(&l, -1, 10, &cb, err, sizeof(err)), PS_WAIT_CODE);
	client_join(&c, &l);
	assert_int_equal(status_of(&c.ex[0]), 405);
	assert_int_equal(status_of(&c.ex[1]), 400);
	assert_int_equal(status_of(&c.ex[2]), 400); /* a DNS-rebinding page's request */
	assert_int_equal(status_of(&c.ex[3]), 400); /* no Host */
	assert_int_equal(status_of(&c.ex[4]), 400); /* two */
	for (i = 0; i < 5; i++)
		assert_response_well_formed(&c.ex[i]);
	assert_int_equal(status_of(&c.ex[5]), 200);
	assert_string_equal(cb.code, CODE);
	ps_callback_clear(&cb);
}

static void test_oversized_request_refused(void **state)
{
	static const char head[] = "GET " GOOD " HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ";
	struct client c = {.ex = {{.raw = NULL}, {.target = GOOD}}};
	struct ps_listener l;
	struct ps_callback cb;
	char err[PS_ERR_MAX], *big = malloc(9 * 1024 + 8);

	(void)state;
	assert_non_null(big);
	memcpy(big, head, sizeof(head) - 1);
	memset(big + sizeof(head) - 1, 'a', 9 * 1024 - (sizeof(head) - 1));
	memcpy(big + 9 * 1024, "\r\n\r\n", 5);
	c.ex[0].raw = big;
	open_ok(&l, "http://127.0.0.1/callback");
	client_start(&c, &l);
	assert_int_equal(wait_on(&l, -1, 10, &cb, err, sizeof(err)), PS_WAIT_CODE);
	client_join(&c, &l);
	assert_int_equal(status_of(&c.ex[0]), 431);
	assert_response_well_formed(&c.ex[0]);
	assert_int_equal(status_of(&c.ex[1]), 200);
	assert_string_equal(cb.code, CODE);
	ps_callback_clear(&cb);
	free(big);
}

/*
 * Hostile requests: each gets an error page that echoes nothing, and the wait goes on to the
 * right callback. Duplicated parameters are refused (not "first wins": a second code or state
 * could be someone else's login); other paths are 404; a Host naming another host, port or
 * address family, an absolute-form target, a NUL, and an oversized request line are refused.
 */
static void test_hostile_requests_refused_then_code(void **state)
{
	static const char *const targets[] = {
		"/callback?code=" CODE "&state=" STATE "&code=AQDother",
		"/callback?code=" CODE "&state=" STATE "&state=" STATE,
		"/callback?code=" CODE "&state=" STATE "&st%61te=" OTHER_STATE,
		"/callback?code=" CODE "&error=access_denied&state=" STATE,
		"/callback/?code=" CODE "&state=" STATE,
		"//callback?code=" CODE "&state=" STATE,
		"/CALLBACK?code=" CODE "&state=" STATE,
		"/callback%3Fcode=" CODE "&state=" STATE,
	};
	enum { NT = sizeof(targets) / sizeof(targets[0]), NRAW = 5 };
	static char raw[NRAW][10 * 1024];
	struct client c = {0};
	struct ps_listener l;
	struct ps_callback cb;
	char err[PS_ERR_MAX];
	size_t i, n;

	(void)state;
	open_ok(&l, "http://127.0.0.1/callback");
	for (i = 0; i < NT; i++)
		c.ex[i].target = targets[i];
	snprintf(raw[0], sizeof(raw[0]), "GET " GOOD " HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\n",
		 l.port == 65535 ? 1 : l.port + 1);
	snprintf(raw[1], sizeof(raw[1]), "GET " GOOD " HTTP/1.1\r\nHost: localhost:%u\r\n\r\n",
		 l.port);
	snprintf(raw[2], sizeof(raw[2]), "GET " GOOD " HTTP/1.1\r\nHost: [::1]:%u\r\n\r\n", l.port);
	snprintf(raw[3], sizeof(raw[3]),
		 "GET http://127.0.0.1:%u" GOOD " HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\n", l.port,
		 l.port);
	/* an oversized request line: no end of the head within the cap */
	n = (size_t)snprintf(raw[4], sizeof(raw[4]), "GET /callback?code=");
	memset(raw[4] + n, 'A', sizeof(raw[4]) - n - 1);
	raw[4][sizeof(raw[4]) - 1] = '\0';
	for (i = 0; i < NRAW; i++)
		c.ex[NT + i].raw = raw[i];
	c.ex[NT + NRAW].target = GOOD;
	client_start(&c, &l);
	assert_int_equal(wait_on(&l, -1, 20, &cb, err, sizeof(err)), PS_WAIT_CODE);
	client_join(&c, &l);
	for (i = 0; i < 4; i++) {
		if (status_of(&c.ex[i]) != 400)
			fail_msg("%s: status %d, want 400", targets[i], status_of(&c.ex[i]));
		assert_non_null(strstr(c.ex[i].response, "not a valid authorization response"));
	}
	for (i = 4; i < NT; i++) {
		if (status_of(&c.ex[i]) != 404)
			fail_msg("%s: status %d, want 404", targets[i], status_of(&c.ex[i]));
	}
	for (i = 0; i < 4; i++) {
		if (status_of(&c.ex[NT + i]) != 400)
			fail_msg("raw %zu: status %d, want 400", i, status_of(&c.ex[NT + i]));
	}
	assert_int_equal(status_of(&c.ex[NT + 4]), 431);
	for (i = 0; i < NT + NRAW; i++) {
		assert_response_well_formed(&c.ex[i]);
		assert_null(strstr(c.ex[i].response, "AQDother"));
	}
	assert_int_equal(status_of(&c.ex[NT + NRAW]), 200);
	assert_string_equal(cb.code, CODE);
	assert_string_equal(cb.state, STATE);
	ps_callback_clear(&cb);
}

/* A NUL byte in the request line: 400, and the wait goes on. */
static void test_nul_in_request_refused(void **state)
{
	static const char head[] = "GET /callback?code=" CODE;
	struct client c = {0};
	struct ps_listener l;
	struct ps_callback cb;
	char err[PS_ERR_MAX], req[256];
	int fd;
	size_t n;
	ssize_t got;

	(void)state;
	open_ok(&l, "http://127.0.0.1/callback");
	c.family = AF_INET;
	c.port = l.port;
	c.ex[0].target = GOOD;
	c.delay_ms = 300;
	memcpy(req, head, sizeof(head) - 1);
	n = sizeof(head) - 1;
	req[n++] = '\0';
	n += (size_t)snprintf(req + n, sizeof(req) - n,
			      "&state=" STATE " HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\n", l.port);
	client_start(&c, &l);
	fd = client_connect(&c);
	assert_true(fd >= 0);
	assert_int_equal(ps_write_all(fd, req, n), 0);
	assert_int_equal(wait_on(&l, -1, 10, &cb, err, sizeof(err)), PS_WAIT_CODE);
	got = read(fd, c.ex[1].response, sizeof(c.ex[1].response) - 1);
	close(fd);
	client_join(&c, &l);
	assert_true(got > 12);
	c.ex[1].len = (size_t)got;
	c.ex[1].response[got] = '\0';
	assert_int_equal(status_of(&c.ex[1]), 400);
	assert_int_equal(status_of(&c.ex[0]), 200);
	assert_string_equal(cb.code, CODE);
	ps_callback_clear(&cb);
}

static void test_silent_client_does_not_block_callback(void **state)
{
	struct client c = {.silent_ms = 0, .ex = {{.target = GOOD}}};
	struct client quiet = {.silent_ms = 2000};
	struct ps_listener l;
	struct ps_callback cb;
	char err[PS_ERR_MAX];
	long long start;

	(void)state;
	open_ok(&l, "http://127.0.0.1/callback");
	client_start(&quiet, &l);
	c.delay_ms = 200; /* after the quiet one is in */
	client_start(&c, &l);
	start = now_ms();
	assert_int_equal(wait_on(&l, -1, 10, &cb, err, sizeof(err)), PS_WAIT_CODE);
	assert_true(now_ms() - start < 1500);
	client_join(&c, &l);
	assert_int_equal(pthread_join(quiet.thread, NULL), 0);
	ps_callback_clear(&cb);
}

/* ---- the paste path ---- */

struct paster {
	int fd;
	int delay_ms;
	const char *parts[3];
	bool close_after;
	pthread_t thread;
};

static void *paster_main(void *arg)
{
	struct paster *p = arg;
	int i;

	for (i = 0; i < 3 && p->parts[i]; i++) {
		sleep_ms(p->delay_ms);
		ps_write_all(p->fd, p->parts[i], strlen(p->parts[i]));
	}
	if (p->close_after)
		close(p->fd);
	return NULL;
}

static void paste_url(char *out, size_t outlen, const struct ps_listener *l, const char *query)
{
	struct ps_buf b = {.buf = out, .cap = outlen};

	ps_buf_printf(&b, "  %s?%s  \n", l->redirect_uri, query);
	assert_false(b.full);
}

static void test_paste_good_url_paste_only(void **state)
{
	static const char uri[] = "http://127.0.0.1/callback";
	static const char line[] =
		"http://127.0.0.1:43123/callback?code=" CODE "&state=" STATE "\n";
	struct ps_callback cb;
	char err[PS_ERR_MAX] = "";
	int fds[2];

	(void)state;
	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	ps_write_all(fds[1], line, strlen(line));
	assert_int_equal(ps_listener_wait(NULL, fds[0], uri, STATE, 10, &cb, err, sizeof(err)),
			 PS_WAIT_CODE);
	assert_string_equal(cb.code, CODE);
	close(fds[0]);
	close(fds[1]);
	ps_callback_clear(&cb);
}

static void test_paste_wins_with_listener_open(void **state)
{
	struct ps_listener l;
	struct ps_callback cb;
	struct paster p = {.delay_ms = 100};
	char err[PS_ERR_MAX], line[PS_URL_MAX], head[32];
	int fds[2];

	(void)state;
	open_ok(&l, "http://127.0.0.1/callback");
	paste_url(line, sizeof(line), &l, "code=" CODE "&state=" STATE);
	ps_strlcpy(head, line, 21); /* in two writes: the listener must put them together */
	p.parts[0] = head;
	p.parts[1] = line + 20;
	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	p.fd = fds[1];
	assert_int_equal(pthread_create(&p.thread, NULL, paster_main, &p), 0);
	assert_int_equal(wait_on(&l, fds[0], 10, &cb, err, sizeof(err)), PS_WAIT_CODE);
	assert_int_equal(pthread_join(p.thread, NULL), 0);
	assert_string_equal(cb.code, CODE);
	assert_string_equal(cb.state, STATE);
	ps_listener_close(&l);
	close(fds[0]);
	close(fds[1]);
	ps_callback_clear(&cb);
}

static void test_paste_wrong_state_then_good(void **state)
{
	struct ps_listener l;
	struct ps_callback cb;
	struct capture cap;
	char err[PS_ERR_MAX], bad[PS_URL_MAX], good[PS_URL_MAX], text[3 * PS_URL_MAX];
	int fds[2];

	(void)state;
	open_ok(&l, "http://127.0.0.1/callback");
	paste_url(bad, sizeof(bad), &l, "code=" CODE "&state=" OTHER_STATE);
	paste_url(good, sizeof(good), &l, "code=" CODE "&state=" STATE);
	snprintf(text, sizeof(text), "\nnot a url at all\n%s%s", bad, good);
	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	ps_write_all(fds[1], text, strlen(text));
	capture_begin(&cap);
	assert_int_equal(wait_on(&l, fds[0], 10, &cb, err, sizeof(err)), PS_WAIT_CODE);
	capture_end(&cap);
	assert_string_equal(cb.code, CODE);
	assert_non_null(strstr(cap.text, "spotify-token: that is not the redirected URL: "));
	assert_non_null(strstr(cap.text, "does not belong to the login in progress"));
	assert_null(strstr(cap.text, CODE));
	assert_null(strstr(cap.text, OTHER_STATE));
	ps_listener_close(&l);
	close(fds[0]);
	close(fds[1]);
	ps_callback_clear(&cb);
}

static void test_paste_denied_and_last_line_without_newline(void **state)
{
	static const char line[] = "http://127.0.0.1:1/cb?error=access_denied&state=" STATE;
	struct ps_callback cb;
	char err[PS_ERR_MAX] = "";
	int fds[2];

	(void)state;
	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	ps_write_all(fds[1], line, strlen(line));
	close(fds[1]);
	assert_int_equal(ps_listener_wait(NULL, fds[0], "http://127.0.0.1/cb", STATE, 10, &cb, err,
					  sizeof(err)),
			 PS_WAIT_DENIED);
	assert_string_equal(cb.error, "access_denied");
	assert_non_null(strstr(err, "access_denied"));
	close(fds[0]);
	ps_callback_clear(&cb);
}

static void test_paste_too_long_line_then_good(void **state)
{
	static const char good[] = "http://127.0.0.1:1/cb?code=" CODE "&state=" STATE "\n";
	struct ps_callback cb;
	struct capture cap;
	struct paster p = {.delay_ms = 10};
	char err[PS_ERR_MAX] = "", *longline = malloc(6001);
	int fds[2];

	(void)state;
	assert_non_null(longline);
	memset(longline, 'x', 5999);
	longline[5999] = '\n';
	longline[6000] = '\0';
	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	p.fd = fds[1];
	p.parts[0] = longline;
	p.parts[1] = good;
	assert_int_equal(pthread_create(&p.thread, NULL, paster_main, &p), 0);
	capture_begin(&cap);
	assert_int_equal(ps_listener_wait(NULL, fds[0], "http://127.0.0.1/cb", STATE, 10, &cb, err,
					  sizeof(err)),
			 PS_WAIT_CODE);
	capture_end(&cap);
	assert_int_equal(pthread_join(p.thread, NULL), 0);
	assert_non_null(strstr(cap.text, "too long"));
	assert_string_equal(cb.code, CODE);
	close(fds[0]);
	close(fds[1]);
	free(longline);
	ps_callback_clear(&cb);
}

/*
 * Pasted lines that are not this login's redirect: duplicated code or state, another host, port,
 * path or scheme, a wrong state. Each gets one line on stderr that never quotes the code; the
 * wait goes on to the good one.
 */
static void test_paste_hostile_lines_then_good(void **state)
{
	static const char bad[] =
		"http://127.0.0.1:8080/cb?code=" CODE "&state=" STATE "&code=AQDother\n"
		"http://127.0.0.1:8080/cb?state=" STATE "&code=" CODE "&state=" STATE "\n"
		"http://127.0.0.2:8080/cb?code=" CODE "&state=" STATE "\n"
		"http://127.0.0.1:8081/cb?code=" CODE "&state=" STATE "\n"
		"http://127.0.0.1:8080/cb/x?code=" CODE "&state=" STATE "\n"
		"https://127.0.0.1:8080/cb?code=" CODE "&state=" STATE "\n"
		"http://evil.example/cb?code=" CODE "&state=" STATE "\n"
		"http://127.0.0.1:8080@evil.example/cb?code=" CODE "&state=" STATE "\n"
		"http://127.0.0.1:8080/cb?code=" CODE "&state=" OTHER_STATE "\n";
	static const char good[] = "http://127.0.0.1:8080/cb?code=" CODE "&state=" STATE "\n";
	struct ps_callback cb;
	struct capture cap;
	struct paster p = {.delay_ms = 10};
	char err[PS_ERR_MAX] = "", *s;
	int fds[2], lines = 0;

	(void)state;
	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	p.fd = fds[1];
	p.parts[0] = bad;
	p.parts[1] = good;
	assert_int_equal(pthread_create(&p.thread, NULL, paster_main, &p), 0);
	capture_begin(&cap);
	assert_int_equal(ps_listener_wait(NULL, fds[0], "http://127.0.0.1:8080/cb", STATE, 10, &cb,
					  err, sizeof(err)),
			 PS_WAIT_CODE);
	capture_end(&cap);
	assert_int_equal(pthread_join(p.thread, NULL), 0);
	for (s = cap.text; (s = strchr(s, '\n')); s++)
		lines++;
	assert_int_equal(lines, 9);
	assert_non_null(strstr(cap.text, "more than one code"));
	assert_non_null(strstr(cap.text, "more than one state"));
	assert_non_null(strstr(cap.text, "not the redirect"));
	assert_non_null(strstr(cap.text, "does not belong to the login in progress"));
	assert_null(strstr(cap.text, CODE));
	assert_null(strstr(cap.text, "AQDother"));
	assert_string_equal(cb.code, CODE);
	close(fds[0]);
	close(fds[1]);
	ps_callback_clear(&cb);
}

static void test_paste_eof_without_listener_fails(void **state)
{
	struct ps_callback cb;
	char err[PS_ERR_MAX] = "";
	int fds[2];

	(void)state;
	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	ps_write_all(fds[1], "\n\n", 2);
	close(fds[1]);
	assert_int_equal(ps_listener_wait(NULL, fds[0], "http://127.0.0.1/callback", STATE, 10, &cb,
					  err, sizeof(err)),
			 PS_WAIT_FAIL);
	assert_string_equal(err, "standard input closed before a URL was pasted");
	assert_string_equal(cb.code, "");
	close(fds[0]);
	assert_int_equal(ps_listener_wait(NULL, -1, "http://127.0.0.1/callback", STATE, 10, &cb,
					  err, sizeof(err)),
			 PS_WAIT_FAIL);
}

static void test_paste_eof_with_listener_keeps_waiting(void **state)
{
	struct client c = {.delay_ms = 300, .ex = {{.target = GOOD}}};
	struct ps_listener l;
	struct ps_callback cb;
	char err[PS_ERR_MAX];
	int fds[2];

	(void)state;
	open_ok(&l, "http://127.0.0.1/callback");
	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	close(fds[1]);
	client_start(&c, &l);
	assert_int_equal(wait_on(&l, fds[0], 10, &cb, err, sizeof(err)), PS_WAIT_CODE);
	client_join(&c, &l);
	assert_string_equal(cb.code, CODE);
	close(fds[0]);
	ps_callback_clear(&cb);
}

static void test_silent_client_does_not_block_paste(void **state)
{
	struct client quiet = {.silent_ms = 2000};
	struct ps_listener l;
	struct ps_callback cb;
	struct paster p = {.delay_ms = 300};
	char err[PS_ERR_MAX], line[PS_URL_MAX];
	long long start;
	int fds[2];

	(void)state;
	open_ok(&l, "http://127.0.0.1/callback");
	paste_url(line, sizeof(line), &l, "code=" CODE "&state=" STATE);
	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	p.fd = fds[1];
	p.parts[0] = line;
	client_start(&quiet, &l);
	assert_int_equal(pthread_create(&p.thread, NULL, paster_main, &p), 0);
	start = now_ms();
	assert_int_equal(wait_on(&l, fds[0], 20, &cb, err, sizeof(err)), PS_WAIT_CODE);
	assert_true(now_ms() - start < 1500); /* while the silent connection is still open */
	assert_string_equal(cb.code, CODE);
	assert_int_equal(pthread_join(p.thread, NULL), 0);
	client_join(&quiet, &l);
	close(fds[0]);
	close(fds[1]);
	ps_callback_clear(&cb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_localhost_refused),
		cmocka_unit_test(test_bad_redirect_uris_refused),
		cmocka_unit_test(test_ephemeral_port_in_redirect_uri),
		cmocka_unit_test(test_fixed_port_honoured_and_busy_port_explained),
		cmocka_unit_test(test_ipv6_loopback),
		cmocka_unit_test(test_good_callback_gives_code),
		cmocka_unit_test(test_wrong_path_404_then_code),
		cmocka_unit_test(test_wrong_state_400_then_code),
		cmocka_unit_test(test_access_denied),
		cmocka_unit_test(test_unknown_error_not_echoed),
		cmocka_unit_test(test_deadline_times_out),
		cmocka_unit_test(test_silent_client_cut_off),
		cmocka_unit_test(test_signals_do_not_end_the_wait),
		cmocka_unit_test(test_start_redirects_once),
		cmocka_unit_test(test_start_refuses_header_breaking_location),
		cmocka_unit_test(test_peer_of_own_connection_is_our_uid),
		cmocka_unit_test(test_peer_gone_is_nobody),
		cmocka_unit_test(test_peer_diag_query_names_the_peer),
		cmocka_unit_test(test_peer_diag_reply_fixtures),
		cmocka_unit_test(test_other_uid_gets_403_and_the_wait_goes_on),
		cmocka_unit_test(test_bad_requests_refused_then_code),
		cmocka_unit_test(test_oversized_request_refused),
		cmocka_unit_test(test_hostile_requests_refused_then_code),
		cmocka_unit_test(test_nul_in_request_refused),
		cmocka_unit_test(test_silent_client_does_not_block_callback),
		cmocka_unit_test(test_paste_good_url_paste_only),
		cmocka_unit_test(test_paste_wins_with_listener_open),
		cmocka_unit_test(test_paste_wrong_state_then_good),
		cmocka_unit_test(test_paste_denied_and_last_line_without_newline),
		cmocka_unit_test(test_paste_too_long_line_then_good),
		cmocka_unit_test(test_paste_hostile_lines_then_good),
		cmocka_unit_test(test_paste_eof_without_listener_fails),
		cmocka_unit_test(test_paste_eof_with_listener_keeps_waiting),
		cmocka_unit_test(test_silent_client_does_not_block_paste),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
