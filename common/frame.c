/*
 * frame.c: framed messages over a Unix socket (see frame.h). Sockets are non-blocking and every
 * wait is a poll(2) bounded by the caller's deadline.
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/config.h"
#include "common/frame.h"

/* Wait for events on fd until deadline. 0, or -1 with errno ETIMEDOUT (or poll's). */
static int wait_for(int fd, short events, long long deadline)
{
	for (;;) {
		struct pollfd p = {.fd = fd, .events = events};
		long long left = deadline - ps_mono_ms();
		int n;

		if (left <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		n = poll(&p, 1, left > 60000 ? 60000 : (int)left);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -1;
	}
}

static int send_some(int fd, const char *p, size_t n, int passfd, ssize_t *sent)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = {.iov_base = (void *)p, .iov_len = n};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};

	if (passfd >= 0) {
		struct cmsghdr *c;

		memset(&u, 0, sizeof(u));
		m.msg_control = u.buf;
		m.msg_controllen = sizeof(u.buf);
		c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &passfd, sizeof(int));
	}
	*sent = sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
	return *sent < 0 ? -1 : 0;
}

int ps_frame_send(int fd, const char *buf, size_t len, int passfd, long long deadline)
{
	char hdr[4];
	size_t off = 0;
	uint32_t n = (uint32_t)len;

	if (len > PS_FRAME_MAX) {
		errno = EMSGSIZE;
		return -1;
	}
	hdr[0] = (char)(n >> 24);
	hdr[1] = (char)(n >> 16);
	hdr[2] = (char)(n >> 8);
	hdr[3] = (char)n;
	while (off < 4 + len) {
		const char *p = off < 4 ? hdr + off : buf + (off - 4);
		size_t chunk = off < 4 ? 4 - off : len - (off - 4);
		ssize_t sent;

		if (send_some(fd, p, chunk, off == 0 ? passfd : -1, &sent) == 0) {
			off += (size_t)sent;
			continue;
		}
		if (errno == EINTR)
			continue;
		if ((errno != EAGAIN && errno != EWOULDBLOCK) ||
		    wait_for(fd, POLLOUT, deadline) < 0)
			return -1;
	}
	return 0;
}

/* Keep the first descriptor that came with a message (in *passfd, or closed), close the rest. */
static void take_fds(struct msghdr *m, int *passfd)
{
	struct cmsghdr *c;

	for (c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
		size_t i, nfd;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < nfd; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (passfd && *passfd < 0)
				*passfd = fd;
			else
				close(fd);
		}
	}
}

/* Exactly n bytes into p; a descriptor with the first of them. 0, or -1 with errno. */
static int recv_exact(int fd, char *p, size_t n, int *passfd, long long deadline)
{
	size_t off = 0;

	while (off < n) {
		union {
			char buf[CMSG_SPACE(sizeof(int) * 4)];
			struct cmsghdr align;
		} u;
		struct iovec iov = {.iov_base = p + off, .iov_len = n - off};
		struct msghdr m = {.msg_iov = &iov,
				   .msg_iovlen = 1,
				   .msg_control = u.buf,
				   .msg_controllen = sizeof(u.buf)};
		ssize_t got = recvmsg(fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

		if (got > 0) {
			take_fds(&m, passfd);
			off += (size_t)got;
			continue;
		}
		if (got == 0) {
			errno = ECONNRESET;
			return -1;
		}
		if (errno == EINTR)
			continue;
		if ((errno != EAGAIN && errno != EWOULDBLOCK) || wait_for(fd, POLLIN, deadline) < 0)
			return -1;
	}
	return 0;
}

int ps_frame_recv(int fd, char *buf, size_t cap, size_t *len, int *passfd, long long deadline)
{
	unsigned char hdr[4];
	uint32_t n;

	*len = 0;
	if (passfd)
		*passfd = -1;
	if (recv_exact(fd, (char *)hdr, 4, passfd, deadline) < 0)
		return -1;
	n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
	if (n > PS_FRAME_MAX || n > cap) {
		errno = EMSGSIZE;
		return -1;
	}
	if (recv_exact(fd, buf, n, NULL, deadline) < 0)
		return -1;
	buf[n] = '\0';
	*len = n;
	return 0;
}

void ps_msg_add(struct ps_buf *b, const char *key, const char *value)
{
	const char *p;

	for (p = value; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			b->full = true;
			return;
		}
	ps_buf_printf(b, "%s %s\n", key, value);
}

void ps_msg_end(struct ps_buf *b)
{
	ps_buf_puts(b, "\n");
}

/* The length of the header (up to and including its empty line), or 0 when it has none. */
static size_t header_len(const char *msg, size_t len)
{
	size_t i;

	if (len > 0 && msg[0] == '\n')
		return 1;
	for (i = 1; i < len; i++)
		if (msg[i] == '\n' && msg[i - 1] == '\n')
			return i + 1;
	return 0;
}

int ps_msg_get(const char *msg, size_t len, const char *key, char *out, size_t outlen)
{
	size_t hlen = header_len(msg, len), klen = strlen(key), pos = 0;

	while (pos < hlen) {
		const char *line = msg + pos, *nl = memchr(line, '\n', hlen - pos);
		size_t llen = nl ? (size_t)(nl - line) : hlen - pos;

		if (llen > klen && memcmp(line, key, klen) == 0 && line[klen] == ' ') {
			size_t vlen = llen - klen - 1;

			if (vlen >= outlen)
				return -1;
			memcpy(out, line + klen + 1, vlen);
			out[vlen] = '\0';
			return 0;
		}
		pos += llen + 1;
	}
	return -1;
}

const char *ps_msg_body(const char *msg, size_t len, size_t *bodylen)
{
	size_t hlen = header_len(msg, len);

	if (!hlen)
		return NULL;
	*bodylen = len - hlen;
	return msg + hlen;
}

int ps_msg_exchange(int fd, const char *msg, size_t len, int passfd, long long deadline,
		    char *reply, size_t cap, size_t *replylen)
{
	if (ps_frame_send(fd, msg, len, passfd, deadline) < 0)
		return -1;
	return ps_frame_recv(fd, reply, cap, replylen, NULL, deadline);
}

int ps_frame_connect(const char *path)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int fd;

	if (ps_strlcpy(a.sun_path, path, sizeof(a.sun_path)) >= sizeof(a.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	/* a Unix stream connect completes at once, or fails (EAGAIN: the backlog is full) */
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

int ps_frame_peer_uid(int fd, uid_t *uid, pid_t *pid)
{
	struct ucred cred;
	socklen_t n = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &n) < 0)
		return -1;
	*uid = cred.uid;
	if (pid)
		*pid = cred.pid;
	return 0;
}

int ps_msg_status(const char *reply, size_t len, const char *who, char *line, size_t linelen)
{
	char code[8];
	unsigned long rc;

	if (ps_msg_get(reply, len, "status", code, sizeof(code)) < 0 ||
	    ps_parse_ulong(code, 0, 7, &rc) < 0) {
		ps_errf(line, linelen, "the answer of %s is malformed", who);
		return PS_EXIT_NETWORK;
	}
	if (ps_msg_get(reply, len, "message", line, linelen) < 0) {
		if (rc == PS_EXIT_OK)
			line[0] = '\0';
		else
			ps_errf(line, linelen, "%s refused (code %lu)", who, rc);
	} else {
		/* printable ASCII only: the peer may be anybody's program, and this goes to a log */
		char raw[PS_ERR_MAX];

		ps_strlcpy(raw, line, sizeof(raw));
		ps_sanitize_text(line, linelen, raw, strlen(raw));
	}
	return (int)rc;
}

int ps_msg_call(const char *path, uid_t peer, bool or_root, const char *msg, size_t len, int passfd,
		long long deadline, char *reply, size_t cap, size_t *replylen)
{
	uid_t uid;
	int fd = ps_frame_connect(path), rc = -1;

	*replylen = 0;
	if (fd < 0)
		return -1;
	if (ps_frame_peer_uid(fd, &uid, NULL) < 0 || (uid != peer && !(or_root && uid == 0))) {
		close(fd);
		errno = EPERM;
		return -1;
	}
	if (reply ? ps_msg_exchange(fd, msg, len, passfd, deadline, reply, cap, replylen) == 0
		  : ps_frame_send(fd, msg, len, passfd, deadline) == 0)
		rc = 0;
	else if (errno == ECONNRESET || errno == EPIPE)
		errno = ECONNREFUSED; /* it went away before it answered: as if it never ran */
	if (rc < 0 && errno != ECONNREFUSED)
		rc = -2;
	close(fd);
	return rc;
}
