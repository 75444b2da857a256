/* util.c: small string, number, URL and I/O helpers shared by the module, the helper and the reader. */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"

size_t ps_strlcpy(char *dst, const char *src, size_t size)
{
	size_t len = strlen(src);

	if (size) {
		size_t n = len < size - 1 ? len : size - 1;
		memcpy(dst, src, n);
		dst[n] = '\0';
	}
	return len;
}

int ps_parse_ulong(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
	unsigned long v = 0;

	if (!s || !*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		if (v > (max - (unsigned long)(*s - '0')) / 10)
			return -1; /* above max, and no overflow */
		v = v * 10 + (unsigned long)(*s - '0');
	}
	if (v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

/* Copy the host part of an http(s) URL (without brackets or port) into host. 0 or -1. */
static int url_host(const char *url, char *host, size_t hostlen, bool *is_https)
{
	const char *p, *end;

	if (strncmp(url, "https://", 8) == 0) {
		*is_https = true;
		p = url + 8;
	} else if (strncmp(url, "http://", 7) == 0) {
		*is_https = false;
		p = url + 7;
	} else {
		return -1;
	}
	if (*p == '[') {
		end = strchr(p, ']');
		if (!end)
			return -1;
		p++;
	} else {
		end = p + strcspn(p, ":/?#");
	}
	if (end == p || (size_t)(end - p) >= hostlen || memchr(p, '@', (size_t)(end - p)))
		return -1;
	memcpy(host, p, (size_t)(end - p));
	host[end - p] = '\0';
	return 0;
}

bool ps_host_is_loopback(const char *host)
{
	char inner[64];
	size_t n = strlen(host);
	struct in_addr a4;
	struct in6_addr a6;

	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
		if (n - 2 >= sizeof(inner))
			return false;
		memcpy(inner, host + 1, n - 2);
		inner[n - 2] = '\0';
		host = inner;
	}
	return inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

bool ps_url_host_is_loopback(const char *url)
{
	char host[256];
	bool https;

	return url_host(url, host, sizeof(host), &https) == 0 && ps_host_is_loopback(host);
}

int ps_url_check(const char *url, char *err, size_t errlen)
{
	char host[256];
	bool https;
	const char *s;

	for (s = url; *s; s++) {
		if (!isgraph((unsigned char)*s)) {
			ps_strlcpy(err, "URL contains a space or control character", errlen);
			return -1;
		}
	}
	if (url_host(url, host, sizeof(host), &https) < 0) {
		ps_strlcpy(err, "not an absolute https:// URL with a host", errlen);
		return -1;
	}
	if (!https && !ps_host_is_loopback(host)) {
		ps_strlcpy(err, "plain http:// is only allowed to a loopback address; use https://",
			   errlen);
		return -1;
	}
	return 0;
}

void ps_free_secret(void *p, size_t len)
{
	if (!p)
		return;
	explicit_bzero(p, len);
	free(p);
}

int ps_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int ps_read_all(int fd, char *buf, size_t cap, size_t *len)
{
	*len = 0;
	while (*len < cap) {
		ssize_t n = read(fd, buf + *len, cap - *len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			return 0;
		*len += (size_t)n;
	}
	return 1;
}

void ps_errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	char *p;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	/* one line: a value quoted from a file, an argument or a request may hold control bytes */
	for (p = err; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
}

void ps_buf_printf(struct ps_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->full)
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= b->cap - b->len) {
		b->full = true;
		b->buf[b->len] = '\0';
		return;
	}
	b->len += (size_t)n;
}

void ps_buf_puts(struct ps_buf *b, const char *s)
{
	size_t n = strlen(s);

	if (b->full)
		return;
	if (n >= b->cap - b->len) {
		b->full = true;
		b->buf[b->len] = '\0';
		return;
	}
	memcpy(b->buf + b->len, s, n + 1);
	b->len += n;
}

void ps_buf_json_string(struct ps_buf *b, const char *s)
{
	ps_buf_printf(b, "\"");
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			ps_buf_printf(b, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			ps_buf_printf(b, "\\u%04x", c);
		else
			ps_buf_printf(b, "%c", c);
	}
	ps_buf_printf(b, "\"");
}

static bool b64token_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/';
}

bool ps_b64token_valid(const char *s, size_t len)
{
	size_t i = 0;

	while (i < len && b64token_char(s[i]))
		i++;
	if (i == 0)
		return false;
	while (i < len && s[i] == '=')
		i++;
	return i == len;
}

void ps_sanitize_text(char *out, size_t outlen, const char *msg, size_t msglen)
{
	size_t i, n = 0;

	if (!outlen)
		return;
	for (i = 0; i < msglen && n + 1 < outlen; i++) {
		unsigned char c = (unsigned char)msg[i];
		out[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	out[n] = '\0';
}

long long ps_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int ps_flock_within(int fd, long wait_ms, bool *waited)
{
	struct timespec nap = {0, PS_FLOCK_POLL_FIRST_NS};
	long long deadline = ps_mono_ms() + wait_ms, left;

	if (waited)
		*waited = false;
	while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK && errno != EINTR)
			return -1;
		left = deadline - ps_mono_ms();
		if (left <= 0) {
			errno = EWOULDBLOCK;
			return -1;
		}
		if (waited)
			*waited = true;
		if (nap.tv_nsec > left * 1000000)
			nap.tv_nsec = left * 1000000;
		nanosleep(&nap, NULL);
		nap.tv_nsec = nap.tv_nsec * 2 < PS_FLOCK_POLL_MAX_NS ? nap.tv_nsec * 2
								     : PS_FLOCK_POLL_MAX_NS;
	}
	return 0;
}

bool ps_flock_busy(int fd)
{
	return flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK;
}

long long ps_backoff_ms(unsigned failures, unsigned max_s, long retry_after)
{
	long long base = 1000LL << (failures > 8 ? 8 : failures), cap = max_s * 1000LL;
	unsigned short r = 0;

	if (base > cap)
		base = cap;
	(void)!getrandom(&r, sizeof(r), 0);
	base = base * 8 / 10 + (base * 4 / 10) * r / 65535;
	if (retry_after >= 0 && retry_after * 1000LL > base)
		base = retry_after * 1000LL;
	return base;
}
