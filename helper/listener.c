/*
 * listener.c: the loopback redirect listener of the authorization code flow (see listener.h).
 * Owns the socket bound to redirect_uri (ps_redirect_parse of common/config.h reads it), the
 * check that a connection comes from the listener's own uid (NETLINK_SOCK_DIAG), the small
 * HTTP/1.x server that answers the browser (one request per connection, a static page, then
 * close), and the reading of a pasted redirected URL. Nothing a client sends is ever echoed
 * back; request buffers are zeroed because they may hold an authorization code.
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "helper/listener.h"
#include "helper/pkce.h"
#include "common/util.h"

#define PS_LISTEN_BACKLOG  8
#define PS_CONN_MAX	   4	 /* connections read at once: browsers open spare ones */
#define PS_CONN_TIMEOUT_MS 5000	 /* a client gets this long to send its request head */
#define PS_REQUEST_MAX	   8192	 /* request head cap */
#define PS_PASTE_MAX	   4096	 /* pasted line cap */
#define PS_DRAIN_MAX	   65536 /* bytes read and dropped before a close, so it is not a reset */
#define PS_RESPONSE_MAX	   (4 * PS_URL_MAX + 1024)
#define PS_DIAG_TIMEOUT_MS 1000 /* the kernel answers a sock_diag lookup at once */
#define PS_DIAG_REPLY_MAX  8192

/* One browser connection being read. */
struct conn {
	int fd; /* -1: free slot */
	long long deadline_ms;
	size_t len;
	char buf[PS_REQUEST_MAX];
};

/* The pasted-line reader. */
struct paste {
	int fd;		 /* -1: not polled (none, or closed) */
	bool discarding; /* the current line overflowed: drop it up to its newline */
	size_t len;
	char line[PS_PASTE_MAX + 1];
};

/* Everything one ps_listener_wait call works with. */
struct waiter {
	struct ps_listener *l;
	const char *redirect_uri;
	const char *state;
	struct ps_callback *cb;
	char *err;
	size_t errlen;
	long long deadline_ms;
	bool told_refused;	    /* the one stderr line about a refused connection is out */
	enum ps_wait_result result; /* valid once a step reports it is done */
	struct paste paste;
	struct conn conns[PS_CONN_MAX];
};

/* A page: status line and one sentence. Never any request data. */
struct page {
	int status;
	const char *reason;
	const char *text;
};

static const struct page page_code = {
	200, "OK", "pam_spotify has your authorization; you can close this tab."};
static const struct page page_not_found = {404, "Not Found",
					   "This is not the pam_spotify redirect."};
static const struct page page_bad_state = {
	400, "Bad Request", "This response does not belong to the login in progress."};
static const struct page page_bad_callback = {
	400, "Bad Request", "This is not a valid authorization response; the login goes on."};
static const struct page page_bad_request = {400, "Bad Request", "Bad request."};
static const struct page page_bad_method = {405, "Method Not Allowed", "Only GET is served here."};
static const struct page page_too_large = {431, "Request Header Fields Too Large",
					   "The request is too large."};
static const struct page page_start = {302, "Found", "Continuing to Spotify."};
static const struct page page_forbidden = {403, "Forbidden",
					   "This address serves only the user who started it."};

/* RFC 6749 4.1.2.1 error codes: the denied page names one of these, never the received bytes. */
static const char *const oauth_errors[] = {
	"access_denied", "invalid_request", "unauthorized_client",     "unsupported_response_type",
	"invalid_scope", "server_error",    "temporarily_unavailable",
};

/* ---- socket ---- */

static void bind_error(const struct ps_redirect *r, int errnum, char *err, size_t errlen)
{
	if (errnum == EADDRINUSE && r->has_port) {
		ps_errf(err, errlen,
			"port %lu on %s is already in use; stop what uses it, or use a "
			"redirect_uri without a port (e.g. http://%s%s) to get a free one",
			r->port, r->host, r->host, r->path);
	} else if (r->family == AF_INET6 && (errnum == EADDRNOTAVAIL || errnum == EAFNOSUPPORT)) {
		ps_errf(err, errlen,
			"cannot listen on [::1] (%s): IPv6 loopback is unavailable; use "
			"http://127.0.0.1%s",
			strerror(errnum), r->path);
	} else {
		ps_errf(err, errlen, "cannot listen on %s: %s", r->host, strerror(errnum));
	}
}

/* Socket bound to the loopback literal (never the wildcard address), listening. fd or -1. */
static int listen_socket(const struct ps_redirect *r, unsigned *port, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	int fd, one = 1;

	memset(&ss, 0, sizeof(ss));
	if (r->family == AF_INET6) {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
		a6->sin6_family = AF_INET6;
		a6->sin6_addr = in6addr_loopback;
		a6->sin6_port = htons((uint16_t)r->port);
		sslen = sizeof(*a6);
	} else {
		struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
		a4->sin_family = AF_INET;
		a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		a4->sin_port = htons((uint16_t)r->port);
		sslen = sizeof(*a4);
	}
	fd = socket(r->family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		bind_error(r, errno, err, errlen);
		return -1;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&ss, sslen) < 0 || listen(fd, PS_LISTEN_BACKLOG) < 0) {
		bind_error(r, errno, err, errlen);
		close(fd);
		return -1;
	}
	sslen = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sslen) < 0) {
		ps_errf(err, errlen, "cannot read the listening port: %s", strerror(errno));
		close(fd);
		return -1;
	}
	*port = ntohs(r->family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
					    : ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

/* "/start/" and 128 bits from getrandom(2) in hex: a path another uid cannot guess. 0 or -1. */
static int start_path_make(char out[PS_START_PATH_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char bits[16];
	size_t got = 0, i;

	while (got < sizeof(bits)) {
		ssize_t n = getrandom(bits + got, sizeof(bits) - got, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		got += (size_t)n;
	}
	memcpy(out, "/start/", 7);
	for (i = 0; i < sizeof(bits); i++) {
		out[7 + 2 * i] = hex[bits[i] >> 4];
		out[8 + 2 * i] = hex[bits[i] & 0xf];
	}
	out[PS_START_PATH_LEN] = '\0';
	explicit_bzero(bits, sizeof(bits));
	return 0;
}

int ps_listener_open(struct ps_listener *l, const char *redirect_uri, char *err, size_t errlen)
{
	struct ps_redirect r;
	int n;

	memset(l, 0, sizeof(*l));
	l->fd = -1;
	if (ps_redirect_parse(redirect_uri, &r, err, errlen) < 0)
		return -1;
	if (strlen(r.path) >= sizeof(l->path)) {
		ps_errf(err, errlen, "redirect_uri path is too long");
		return -1;
	}
	/* the configured form when it names a port; else the bound port goes in */
	if (r.has_port)
		n = snprintf(l->redirect_uri, sizeof(l->redirect_uri), "%s", redirect_uri);
	else
		n = snprintf(l->redirect_uri, sizeof(l->redirect_uri), "http://%s:65535%s", r.host,
			     r.path);
	if (n < 0 || (size_t)n >= sizeof(l->redirect_uri)) {
		ps_errf(err, errlen, "redirect_uri is too long");
		return -1;
	}
	ps_strlcpy(l->path, r.path, sizeof(l->path));
	if (start_path_make(l->start_path) < 0) {
		ps_errf(err, errlen, "cannot make the listener's /start path: getrandom: %s",
			strerror(errno));
		return -1;
	}
	l->fd = listen_socket(&r, &l->port, err, errlen);
	if (l->fd < 0)
		return -1;
	if (!r.has_port)
		snprintf(l->redirect_uri, sizeof(l->redirect_uri), "http://%s:%u%s", r.host,
			 l->port, r.path); /* fits: checked with the longest port above */
	return 0;
}

void ps_listener_set_start(struct ps_listener *l, const char *location)
{
	const char *s;

	explicit_bzero(l->start_location, sizeof(l->start_location));
	for (s = location; *s; s++) {
		if (*s <= ' ' || *s >= 0x7f)
			return; /* would break the Location header: no /start */
	}
	if (ps_strlcpy(l->start_location, location, sizeof(l->start_location)) >=
	    sizeof(l->start_location))
		explicit_bzero(l->start_location, sizeof(l->start_location)); /* never a cut URL */
}

void ps_listener_close(struct ps_listener *l)
{
	if (!l)
		return;
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
	explicit_bzero(l->start_location, sizeof(l->start_location));
	explicit_bzero(l->start_path, sizeof(l->start_path));
}

/* ---- the peer's owner ---- */

/* An inet_diag address in the IPv6 form: IPv4 as ::ffff:a.b.c.d, as a dual-stack socket has it. */
static void diag_addr_v6(int family, const uint32_t in[4], uint32_t out[4])
{
	if (family == AF_INET) {
		out[0] = 0;
		out[1] = 0;
		out[2] = htonl(0xffff);
		out[3] = in[0];
	} else {
		memcpy(out, in, 4 * sizeof(out[0]));
	}
}

static bool diag_addr_equal(int fa, const uint32_t a[4], int fb, const uint32_t b[4])
{
	uint32_t x[4], y[4];

	diag_addr_v6(fa, a, x);
	diag_addr_v6(fb, b, y);
	return memcmp(x, y, sizeof(x)) == 0;
}

/* One endpoint into an inet_diag address and port; the family must be want. */
static int diag_endpoint(const struct sockaddr *sa, int want, uint32_t addr[4], __be16 *port)
{
	if (sa->sa_family != want)
		return -EAFNOSUPPORT;
	memset(addr, 0, 4 * sizeof(addr[0]));
	if (want == AF_INET) {
		const struct sockaddr_in *a4 = (const struct sockaddr_in *)sa;

		memcpy(addr, &a4->sin_addr, sizeof(a4->sin_addr));
		*port = a4->sin_port;
	} else {
		const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)sa;

		memcpy(addr, &a6->sin6_addr, sizeof(a6->sin6_addr));
		*port = a6->sin6_port;
	}
	return 0;
}

/*
 * The peer's socket is the one whose source is our remote end and whose destination is our local
 * end. An exact lookup (no NLM_F_DUMP): the kernel finds that one socket, or says ENOENT; an IPv4
 * lookup also finds a dual-stack IPv6 socket connected to ::ffff:127.0.0.1.
 */
int ps_peer_diag_query(const struct sockaddr *ours, const struct sockaddr *theirs,
		       struct inet_diag_req_v2 *req)
{
	int family = ours->sa_family;

	memset(req, 0, sizeof(*req));
	if (family != AF_INET && family != AF_INET6)
		return -EAFNOSUPPORT;
	req->sdiag_family = (uint8_t)family;
	req->sdiag_protocol = IPPROTO_TCP;
	req->idiag_states = ~0U;
	req->id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
	req->id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
	if (diag_endpoint(theirs, family, req->id.idiag_src, &req->id.idiag_sport) < 0 ||
	    diag_endpoint(ours, family, req->id.idiag_dst, &req->id.idiag_dport) < 0)
		return -EAFNOSUPPORT;
	return 0;
}

/*
 * Only an established socket with exactly the endpoints asked for counts: a lookup that misses
 * the connection can land on a listener or a TIME_WAIT socket, whose uid (0 for TIME_WAIT) is not
 * the connecting user's.
 */
int ps_peer_diag_reply(const void *buf, size_t len, const struct inet_diag_req_v2 *req,
		       uint32_t seq, uid_t *uid)
{
	const unsigned char *p = buf;
	struct inet_diag_msg m;
	struct nlmsgerr e;
	struct nlmsghdr h;

	if (len < sizeof(h))
		return -EBADMSG;
	memcpy(&h, p, sizeof(h));
	if (h.nlmsg_len < sizeof(h) || h.nlmsg_len > len || h.nlmsg_seq != seq)
		return -EBADMSG;
	if (h.nlmsg_type == NLMSG_ERROR) {
		if (h.nlmsg_len < NLMSG_LENGTH(sizeof(e)))
			return -EBADMSG;
		memcpy(&e, p + NLMSG_HDRLEN, sizeof(e));
		return e.error < 0 && e.error > -4096 ? e.error : -EBADMSG;
	}
	if (h.nlmsg_type != SOCK_DIAG_BY_FAMILY || h.nlmsg_len < NLMSG_LENGTH(sizeof(m)))
		return -EBADMSG;
	memcpy(&m, p + NLMSG_HDRLEN, sizeof(m));
	if (m.idiag_state != TCP_ESTABLISHED || m.id.idiag_sport != req->id.idiag_sport ||
	    m.id.idiag_dport != req->id.idiag_dport ||
	    !diag_addr_equal(m.idiag_family, m.id.idiag_src, req->sdiag_family,
			     req->id.idiag_src) ||
	    !diag_addr_equal(m.idiag_family, m.id.idiag_dst, req->sdiag_family, req->id.idiag_dst))
		return -ENOTCONN;
	*uid = (uid_t)m.idiag_uid;
	return 0;
}

/* Send the lookup and read the kernel's one answer, within PS_DIAG_TIMEOUT_MS. */
static int diag_exchange(int nl, const struct inet_diag_req_v2 *req, uid_t *uid)
{
	static const uint32_t seq = 1;
	struct sockaddr_nl kernel = {.nl_family = AF_NETLINK}, from;
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 req;
	} msg;
	union {
		struct nlmsghdr align;
		unsigned char buf[PS_DIAG_REPLY_MAX];
	} reply;
	long long deadline = ps_mono_ms() + PS_DIAG_TIMEOUT_MS;

	memset(&msg, 0, sizeof(msg));
	msg.nlh.nlmsg_len = sizeof(msg);
	msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	msg.nlh.nlmsg_flags = NLM_F_REQUEST;
	msg.nlh.nlmsg_seq = seq;
	msg.req = *req;
	/* connected to the kernel: the socket then refuses what another process sends it */
	if (connect(nl, (struct sockaddr *)&kernel, sizeof(kernel)) < 0 ||
	    send(nl, &msg, sizeof(msg), 0) < 0)
		return -errno;
	for (;;) {
		struct pollfd pfd = {.fd = nl, .events = POLLIN};
		socklen_t fromlen = sizeof(from);
		long long left = deadline - ps_mono_ms();
		ssize_t n;

		if (left <= 0)
			return -ETIMEDOUT;
		if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR)
			return -errno;
		n = recvfrom(nl, reply.buf, sizeof(reply.buf), MSG_DONTWAIT | MSG_TRUNC,
			     (struct sockaddr *)&from, &fromlen);
		if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
			continue;
		if (n < 0)
			return -errno;
		if (fromlen < sizeof(from) || from.nl_family != AF_NETLINK || from.nl_pid != 0)
			continue; /* not from the kernel */
		if ((size_t)n > sizeof(reply.buf))
			return -EMSGSIZE;
		return ps_peer_diag_reply(reply.buf, (size_t)n, req, seq, uid);
	}
}

int ps_peer_uid(int fd, uid_t *uid)
{
	struct sockaddr_storage ours, theirs;
	socklen_t olen = sizeof(ours), tlen = sizeof(theirs);
	struct inet_diag_req_v2 req;
	int nl, rc;

	if (getsockname(fd, (struct sockaddr *)&ours, &olen) < 0 ||
	    getpeername(fd, (struct sockaddr *)&theirs, &tlen) < 0)
		return -errno;
	rc = ps_peer_diag_query((struct sockaddr *)&ours, (struct sockaddr *)&theirs, &req);
	if (rc < 0)
		return rc;
	nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (nl < 0)
		return -errno;
	rc = diag_exchange(nl, &req, uid);
	close(nl);
	return rc;
}

/* ---- responses ---- */

/* send(2) all of buf before deadline_ms; MSG_NOSIGNAL: a client that left must not kill us. */
static void send_all(int fd, const char *buf, size_t len, long long deadline_ms)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			struct pollfd p = {.fd = fd, .events = POLLOUT};
			long long left = deadline_ms - ps_mono_ms();

			if (left <= 0 || poll(&p, 1, (int)left) < 0)
				return;
			continue;
		}
		return;
	}
}

/* A page; location is the Location header of a redirect, or NULL. */
static void respond(const struct conn *c, const struct page *pg, const char *detail,
		    const char *location)
{
	char body[512], out[PS_RESPONSE_MAX];
	struct ps_buf b = {.buf = body, .cap = sizeof(body)};
	struct ps_buf h = {.buf = out, .cap = sizeof(out)};

	ps_buf_printf(
		&b,
		"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>pam_spotify</title>"
		"</head><body><p>%s</p></body></html>\n",
		detail ? detail : pg->text);
	ps_buf_printf(&h,
		      "HTTP/1.1 %d %s\r\nContent-Type: text/html; charset=utf-8\r\n"
		      "Content-Length: %zu\r\nReferrer-Policy: no-referrer\r\n"
		      "Cache-Control: no-store\r\nContent-Security-Policy: default-src 'none'\r\n"
		      "X-Content-Type-Options: nosniff\r\nConnection: close\r\n",
		      pg->status, pg->reason, b.len);
	if (location)
		ps_buf_printf(&h, "Location: %s\r\n", location);
	ps_buf_printf(&h, "\r\n%s", body);
	if (!h.full)
		send_all(c->fd, out, h.len, c->deadline_ms);
	explicit_bzero(out, sizeof(out)); /* a Location holds the state */
}

/* The denied page names the error only when it is one RFC 6749 defines: no echo. */
static void respond_denied(const struct conn *c, const char *error)
{
	static const struct page denied = {200, "OK", NULL};
	char text[160];
	size_t i;

	ps_strlcpy(text, "Spotify refused the authorization: you can close this tab.",
		   sizeof(text));
	for (i = 0; i < sizeof(oauth_errors) / sizeof(oauth_errors[0]); i++) {
		if (strcmp(error, oauth_errors[i]) == 0)
			snprintf(text, sizeof(text),
				 "Spotify refused the authorization (%s): you can close this tab.",
				 oauth_errors[i]);
	}
	respond(c, &denied, text, NULL);
}

/* ---- connections ---- */

/*
 * Half-close, drop what the client sent beyond what was read (so close() sends a FIN, not a
 * reset that could discard our page), close, and zero the slot.
 */
static void conn_close(struct conn *c)
{
	char junk[1024];
	size_t dropped = 0;
	ssize_t n;

	shutdown(c->fd, SHUT_WR);
	while (dropped < PS_DRAIN_MAX && (n = recv(c->fd, junk, sizeof(junk), MSG_DONTWAIT)) > 0)
		dropped += (size_t)n;
	close(c->fd);
	explicit_bzero(c->buf, c->len);
	explicit_bzero(junk, sizeof(junk));
	c->fd = -1;
	c->len = 0;
}

/* Length of the request head up to its empty line (which it includes), or 0 if incomplete. */
static size_t head_length(const struct conn *c)
{
	const char *crlf = memmem(c->buf, c->len, "\r\n\r\n", 4);
	const char *lf = memmem(c->buf, c->len, "\n\n", 2);

	if (lf && (!crlf || lf < crlf))
		return (size_t)(lf - c->buf) + 2;
	return crlf ? (size_t)(crlf - c->buf) + 4 : 0;
}

/* A request target in origin form: "/", then visible ASCII only. */
static bool target_valid(const char *t, size_t len)
{
	size_t i;

	if (len == 0 || t[0] != '/')
		return false;
	for (i = 0; i < len; i++) {
		if (t[i] <= ' ' || t[i] >= 0x7f)
			return false;
	}
	return true;
}

/* Is the header line "Host: <value>" with the listener's own authority? */
static int host_header(const char *line, size_t len, const char *authority, size_t alen)
{
	const char *v;
	size_t vlen;

	if (len < 5 || strncasecmp(line, "host:", 5) != 0)
		return -1; /* not a Host line */
	v = line + 5;
	vlen = len - 5;
	while (vlen && (*v == ' ' || *v == '\t')) {
		v++;
		vlen--;
	}
	while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
		vlen--;
	if (vlen == alen && strncasecmp(v, authority, alen) == 0)
		return 1;
	/* a browser leaves out the default port */
	if (alen > 3 && strncmp(authority + alen - 3, ":80", 3) == 0 && vlen == alen - 3 &&
	    strncasecmp(v, authority, vlen) == 0)
		return 1;
	return 0;
}

/*
 * Exactly one Host header naming our address and port. Refusing any other name keeps a web
 * page that rebinds its DNS name to 127.0.0.1 from talking to the listener.
 */
static bool host_valid(const struct waiter *w, const char *head, size_t len)
{
	const char *a = w->l->redirect_uri + 7; /* "http://" */
	size_t alen = strcspn(a, "/");
	const char *p = head, *end = head + len;
	int found = 0;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = (nl ? (size_t)(nl - p) : (size_t)(end - p));
		int r;

		if (n && p[n - 1] == '\r')
			n--;
		r = host_header(p, n, a, alen);
		if (r == 0)
			return false;
		if (r == 1)
			found++;
		if (!nl)
			break;
		p = nl + 1;
	}
	return found == 1;
}

/* Our redirect: check the state, then answer. True when the wait is over. */
static bool handle_callback(struct waiter *w, const struct conn *c, const char *query, size_t qlen)
{
	char perr[PS_ERR_MAX], error[sizeof(w->cb->error)];

	if (!query || ps_callback_parse_query(query, qlen, w->cb, perr, sizeof(perr)) < 0) {
		ps_callback_clear(w->cb);
		respond(c, &page_bad_callback, NULL, NULL);
		return false;
	}
	if (!ps_state_equal(w->state, w->cb->state)) {
		ps_callback_clear(w->cb);
		respond(c, &page_bad_state, NULL, NULL);
		return false;
	}
	if (w->cb->error[0]) {
		respond_denied(c, w->cb->error);
		ps_sanitize_text(error, sizeof(error), w->cb->error, strlen(w->cb->error));
		ps_errf(w->err, w->errlen, "Spotify refused the authorization (%s)", error);
		w->result = PS_WAIT_DENIED;
		return true;
	}
	respond(c, &page_code, NULL, NULL);
	w->result = PS_WAIT_CODE;
	return true;
}

/* Is the request path (plen bytes) the listener's start path? Compared in constant time. */
static bool start_path_equal(const char *start_path, const char *path, size_t plen)
{
	unsigned char diff = 0;
	size_t i;

	if (plen != PS_START_PATH_LEN || strlen(start_path) != PS_START_PATH_LEN)
		return false;
	for (i = 0; i < PS_START_PATH_LEN; i++)
		diff |= (unsigned char)(start_path[i] ^ path[i]);
	return diff == 0;
}

/* A complete request head of hlen bytes in c->buf. True when the wait is over. */
static bool handle_request(struct waiter *w, struct conn *c, size_t hlen)
{
	const char *line = c->buf, *eol = memchr(c->buf, '\n', hlen);
	const char *target, *sp, *q;
	size_t llen = (size_t)(eol - line), tlen, plen;

	if (llen && line[llen - 1] == '\r')
		llen--;
	if (llen < 4 || memcmp(line, "GET ", 4) != 0) {
		respond(c, memchr(line, ' ', llen) ? &page_bad_method : &page_bad_request, NULL,
			NULL);
		return false;
	}
	target = line + 4;
	sp = memchr(target, ' ', llen - 4);
	if (!sp || (size_t)(line + llen - sp) != 9 || memcmp(sp, " HTTP/1.", 8) != 0 ||
	    sp[8] < '0' || sp[8] > '9' || !target_valid(target, (size_t)(sp - target)) ||
	    !host_valid(w, eol + 1, hlen - (size_t)(eol + 1 - c->buf))) {
		respond(c, &page_bad_request, NULL, NULL);
		return false;
	}
	tlen = (size_t)(sp - target);
	q = memchr(target, '?', tlen);
	plen = q ? (size_t)(q - target) : tlen;
	if (plen == strlen(w->l->path) && memcmp(target, w->l->path, plen) == 0)
		return handle_callback(w, c, q ? q + 1 : NULL, q ? tlen - plen - 1 : 0);
	if (w->l->start_location[0] && start_path_equal(w->l->start_path, target, plen)) {
		respond(c, &page_start, NULL, w->l->start_location);
		explicit_bzero(w->l->start_location, sizeof(w->l->start_location)); /* once */
		return false;
	}
	respond(c, &page_not_found, NULL, NULL);
	return false;
}

/* Data on a connection. True when the wait is over. */
static bool conn_readable(struct waiter *w, struct conn *c)
{
	ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
	bool done = false;
	size_t hlen;

	if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
		return false;
	if (n <= 0) {
		conn_close(c); /* gone before a whole request: nothing to answer */
		return false;
	}
	c->len += (size_t)n;
	hlen = head_length(c);
	if (hlen)
		done = handle_request(w, c, hlen);
	else if (c->len < sizeof(c->buf))
		return false; /* more to come */
	else
		respond(c, &page_too_large, NULL, NULL);
	conn_close(c);
	return done;
}

/* The one line on stderr about refused connections (the first; never a request's content). */
static void tell_refused(struct waiter *w, int rc, uid_t uid)
{
	char line[PS_ERR_MAX];

	if (w->told_refused)
		return;
	w->told_refused = true;
	if (rc == 0)
		snprintf(line, sizeof(line),
			 "spotify-token: refused a connection to port %u from another user "
			 "(uid %u); still waiting\n",
			 w->l->port, (unsigned)uid);
	else
		snprintf(line, sizeof(line),
			 "spotify-token: refused a connection to port %u: cannot tell which user "
			 "made it (sock_diag: %s); still waiting, or paste the redirected URL "
			 "here\n",
			 w->l->port, strerror(-rc));
	ps_write_all(STDERR_FILENO, line, strlen(line));
}

/*
 * Serve the connection in slot c only if its peer socket is our own uid's; otherwise answer 403
 * at once, before reading anything, and free the slot. True when it is ours.
 */
static bool conn_ours(struct waiter *w, struct conn *c)
{
	uid_t uid = (uid_t)-1;
	int rc = ps_peer_uid(c->fd, &uid);

	if (rc == 0 && uid == geteuid())
		return true;
	respond(c, &page_forbidden, NULL, NULL);
	conn_close(c);
	tell_refused(w, rc, uid);
	return false;
}

/* Take one pending connection into a free slot (the caller polls only when one is free). */
static int conn_accept(struct waiter *w)
{
	int fd, i;

	fd = accept4(w->l->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0) {
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM ||
		    errno == EBADF || errno == EINVAL || errno == ENOTSOCK) {
			ps_errf(w->err, w->errlen, "cannot accept a connection on port %u: %s",
				w->l->port, strerror(errno));
			return -1;
		}
		return 0; /* EAGAIN, ECONNABORTED, EINTR, ...: the next poll tells */
	}
	for (i = 0; i < PS_CONN_MAX; i++) {
		if (w->conns[i].fd < 0) {
			w->conns[i].fd = fd;
			w->conns[i].len = 0;
			w->conns[i].deadline_ms = ps_mono_ms() + PS_CONN_TIMEOUT_MS;
			conn_ours(w, &w->conns[i]);
			return 0;
		}
	}
	close(fd); /* not reached: no free slot means the listener was not polled */
	return 0;
}

/* Close connections whose client was too slow; silent ones must not hold a slot for long. */
static void conns_expire(struct waiter *w, long long now)
{
	int i;

	for (i = 0; i < PS_CONN_MAX; i++) {
		if (w->conns[i].fd >= 0 && now >= w->conns[i].deadline_ms)
			conn_close(&w->conns[i]);
	}
}

static bool conn_slot_free(const struct waiter *w)
{
	int i;

	for (i = 0; i < PS_CONN_MAX; i++) {
		if (w->conns[i].fd < 0)
			return true;
	}
	return false;
}

/* ---- paste ---- */

/* One line on stderr about a bad paste: "spotify-token: what[: reason]; advice". */
static void paste_complain(const char *what, const char *reason, const char *advice)
{
	char line[PS_ERR_MAX + 256];
	struct ps_buf b = {.buf = line, .cap = sizeof(line)};

	ps_buf_printf(&b, "spotify-token: %s%s%s; %s\n", what, reason ? ": " : "",
		      reason ? reason : "", advice);
	if (!b.full)
		ps_write_all(STDERR_FILENO, line, b.len);
}

static bool blank(const char *s)
{
	return s[strspn(s, " \t\r\n\v\f")] == '\0';
}

/* One pasted line (NUL-terminated). True when the wait is over. */
static bool paste_line(struct waiter *w, const char *line)
{
	char perr[PS_ERR_MAX], reason[PS_ERR_MAX];

	if (blank(line))
		return false;
	if (ps_callback_parse_url(line, w->redirect_uri, w->cb, perr, sizeof(perr)) < 0) {
		ps_callback_clear(w->cb);
		ps_sanitize_text(reason, sizeof(reason), perr, strlen(perr));
		paste_complain("that is not the redirected URL", reason, "still waiting");
		return false;
	}
	if (!ps_state_equal(w->state, w->cb->state)) {
		ps_callback_clear(w->cb);
		paste_complain(
			"that URL does not belong to the login in progress (its state differs)",
			NULL, "paste the one this login redirected to");
		return false;
	}
	if (w->cb->error[0]) {
		ps_sanitize_text(reason, sizeof(reason), w->cb->error, strlen(w->cb->error));
		ps_errf(w->err, w->errlen, "Spotify refused the authorization (%s)", reason);
		w->result = PS_WAIT_DENIED;
		return true;
	}
	w->result = PS_WAIT_CODE;
	return true;
}

/* Hand each complete line in the buffer to paste_line, keeping a partial one. */
static bool paste_lines(struct waiter *w)
{
	struct paste *p = &w->paste;
	char *nl;

	while ((nl = memchr(p->line, '\n', p->len))) {
		size_t used = (size_t)(nl - p->line) + 1;
		bool done = false;

		*nl = '\0';
		if (!p->discarding)
			done = paste_line(w, p->line);
		p->discarding = false;
		memmove(p->line, nl + 1, p->len - used);
		explicit_bzero(p->line + p->len - used, used);
		p->len -= used;
		if (done)
			return true;
	}
	if (p->len == PS_PASTE_MAX) {
		if (!p->discarding)
			paste_complain("that line is too long to be the redirected URL", NULL,
				       "paste it again");
		p->discarding = true;
		explicit_bzero(p->line, sizeof(p->line));
		p->len = 0;
	}
	return false;
}

/* The paste stream ended: a last line without a newline still counts. True when over. */
static bool paste_eof(struct waiter *w)
{
	struct paste *p = &w->paste;
	bool done = false;

	if (p->len && !p->discarding) {
		p->line[p->len] = '\0';
		done = paste_line(w, p->line);
	}
	explicit_bzero(p->line, sizeof(p->line));
	p->len = 0;
	p->fd = -1; /* the caller's descriptor: not ours to close */
	if (!done && !w->l) {
		ps_errf(w->err, w->errlen, "standard input closed before a URL was pasted");
		w->result = PS_WAIT_FAIL;
		done = true;
	}
	return done;
}

/* Data (or the end) on paste_fd. True when the wait is over. */
static bool paste_readable(struct waiter *w)
{
	struct paste *p = &w->paste;
	ssize_t n = read(p->fd, p->line + p->len, PS_PASTE_MAX - p->len);

	if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
		return false;
	if (n < 0) {
		int errnum = errno;

		p->fd = -1;
		if (w->l)
			return false;
		ps_errf(w->err, w->errlen, "cannot read standard input: %s", strerror(errnum));
		w->result = PS_WAIT_FAIL;
		return true;
	}
	if (n == 0)
		return paste_eof(w);
	p->len += (size_t)n;
	return paste_lines(w);
}

/* ---- the wait ---- */

/* Milliseconds poll may sleep: until the deadline or the first connection's deadline. */
static int poll_timeout(const struct waiter *w, long long now)
{
	long long t = w->deadline_ms;
	int i;

	for (i = 0; i < PS_CONN_MAX; i++) {
		if (w->conns[i].fd >= 0 && w->conns[i].deadline_ms < t)
			t = w->conns[i].deadline_ms;
	}
	t -= now;
	if (t < 0)
		return 0;
	return t > INT_MAX ? INT_MAX : (int)t;
}

/* One poll and what it woke for. True when the wait is over (w->result says how). */
static bool wait_step(struct waiter *w)
{
	struct pollfd pfd[2 + PS_CONN_MAX];
	long long now = ps_mono_ms();
	int i, n;

	conns_expire(w, now);
	if (now >= w->deadline_ms) {
		w->result = PS_WAIT_TIMEOUT;
		return true;
	}
	pfd[0].fd = w->l && conn_slot_free(w) ? w->l->fd : -1;
	pfd[1].fd = w->paste.fd;
	for (i = 0; i < PS_CONN_MAX; i++)
		pfd[2 + i].fd = w->conns[i].fd;
	for (i = 0; i < 2 + PS_CONN_MAX; i++) {
		pfd[i].events = POLLIN;
		pfd[i].revents = 0;
	}
	n = poll(pfd, 2 + PS_CONN_MAX, poll_timeout(w, now));
	if (n < 0 && errno == EINTR)
		return false;
	if (n < 0) {
		ps_errf(w->err, w->errlen, "poll: %s", strerror(errno));
		w->result = PS_WAIT_FAIL;
		return true;
	}
	if (pfd[1].revents && paste_readable(w))
		return true;
	for (i = 0; i < PS_CONN_MAX; i++) {
		if (pfd[2 + i].revents && w->conns[i].fd >= 0 && conn_readable(w, &w->conns[i]))
			return true;
	}
	if (pfd[0].revents && conn_accept(w) < 0) {
		w->result = PS_WAIT_FAIL;
		return true;
	}
	return false;
}

static void waiter_end(struct waiter *w)
{
	int i;

	for (i = 0; i < PS_CONN_MAX; i++) {
		if (w->conns[i].fd >= 0)
			conn_close(&w->conns[i]);
	}
	explicit_bzero(w, sizeof(*w));
}

enum ps_wait_result ps_listener_wait(struct ps_listener *l, int paste_fd, const char *redirect_uri,
				     const char *state, unsigned timeout_s, struct ps_callback *cb,
				     char *err, size_t errlen)
{
	struct waiter w; /* ~40 KiB, zeroed before return */
	enum ps_wait_result result;
	int i;

	memset(&w, 0, sizeof(w));
	w.l = l && l->fd >= 0 ? l : NULL;
	w.redirect_uri = redirect_uri ? redirect_uri : (w.l ? w.l->redirect_uri : "");
	w.state = state;
	w.cb = cb;
	w.err = err;
	w.errlen = errlen;
	w.deadline_ms = ps_mono_ms() + (long long)timeout_s * 1000;
	w.paste.fd = paste_fd;
	for (i = 0; i < PS_CONN_MAX; i++)
		w.conns[i].fd = -1;
	ps_callback_clear(cb);
	if (!w.l && paste_fd < 0) {
		ps_errf(err, errlen, "nothing to wait on: no listener and no paste stream");
		return PS_WAIT_FAIL;
	}
	while (!wait_step(&w))
		;
	result = w.result;
	if (result == PS_WAIT_TIMEOUT)
		ps_errf(err, errlen, "no redirect arrived and no URL was pasted within %u seconds",
			timeout_s);
	if (result != PS_WAIT_CODE && result != PS_WAIT_DENIED)
		ps_callback_clear(cb);
	waiter_end(&w);
	return result;
}
