/* util.h: small string, number, URL and I/O helpers shared by the module, the helper and the reader. */
#ifndef PS_UTIL_H
#define PS_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Copy src into dst (size bytes, always terminated); returns strlen(src) so truncation can be seen. */
size_t ps_strlcpy(char *dst, const char *src, size_t size);

/* Strict unsigned decimal: digits only, no sign, no spaces, within [min, max]. 0 or -1. */
int ps_parse_ulong(const char *s, unsigned long min, unsigned long max, unsigned long *out);

/*
 * Checks that url is an absolute https:// URL, or http:// to a loopback literal (127.0.0.0/8 or
 * [::1]). On failure writes a reason to err and returns -1.
 */
int ps_url_check(const char *url, char *err, size_t errlen);

/*
 * True when host is a loopback literal: IPv4 in 127.0.0.0/8, or ::1 (bare or in a URL's
 * brackets, any spelling). Names such as localhost are not literals: false.
 */
bool ps_host_is_loopback(const char *host);

/* True when the URL's host is a loopback literal (ps_host_is_loopback). */
bool ps_url_host_is_loopback(const char *url);

/* Zero len bytes at p (explicit_bzero) and free p. NULL is fine. */
void ps_free_secret(void *p, size_t len);

/* write(2) until done, retrying on EINTR. 0 or -1 with errno. */
int ps_write_all(int fd, const void *buf, size_t len);

/*
 * read(2) until EOF or cap bytes, retrying on EINTR. *len gets the count. Returns 0 at EOF,
 * 1 when cap was reached before EOF, -1 on error.
 */
int ps_read_all(int fd, char *buf, size_t cap, size_t *len);

/*
 * A bounded text buffer: appends stop at the first one that does not fit, and `full` says so.
 * The text is always NUL-terminated. Callers that put secrets in it zero buf themselves.
 */
struct ps_buf {
	char *buf;
	size_t cap;
	size_t len;
	bool full;
};

void ps_buf_printf(struct ps_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* s as it is: the reader's common path, without the printf machinery (and its pages). */
void ps_buf_puts(struct ps_buf *b, const char *s);

/* A JSON string: `"` and `\` escaped, control bytes (and DEL) as \u00XX. */
void ps_buf_json_string(struct ps_buf *b, const char *s);

/* RFC 6750 2.1 b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=" */
bool ps_b64token_valid(const char *s, size_t len);

/*
 * vsnprintf into err (a NULL err or errlen 0 is fine): the one-line error of a failing call.
 * Control bytes (below 0x20, and 0x7f) come out as '?', so a quoted value cannot break the line.
 */
void ps_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Copy msg into out replacing bytes outside printable ASCII with '?', at most outlen-1 bytes. */
void ps_sanitize_text(char *out, size_t outlen, const char *msg, size_t msglen);

/* Milliseconds on the monotonic clock: for deadlines and waits, which a clock change never moves. */
long long ps_mono_ms(void);

/*
 * Take an exclusive flock on fd, waiting at most wait_ms while another holds it. flock cannot
 * time out, so it polls: after 1 ms, then twice as long each time, up to 10 ms. 0; or -1 with
 * errno EWOULDBLOCK when the time ran out (wait_ms 0: one try), or flock's own error. *waited,
 * unless NULL, says whether it had to wait.
 */
#define PS_FLOCK_POLL_FIRST_NS (1L * 1000 * 1000)
#define PS_FLOCK_POLL_MAX_NS   (10L * 1000 * 1000)
int ps_flock_within(int fd, long wait_ms, bool *waited);

/*
 * Whether another process holds an exclusive lock on fd's file (a keeper's lock): a probe with a
 * shared lock, which the caller releases by closing fd at once (a probe must never keep it).
 */
bool ps_flock_busy(int fd);

/* Exit codes of spotify-token and of the helper (spotify-token(1) documents them). */
enum ps_exit {
	PS_EXIT_OK = 0,	      /* success */
	PS_EXIT_NO_TOKEN = 1, /* no token (helper: nothing to do for this user/flow) */
	PS_EXIT_USAGE = 2,    /* bad command line */
	PS_EXIT_EXPIRED = 3,  /* expired, or below --min-valid */
	PS_EXIT_REAUTH = 4,   /* re-authorization needed: run spotify-token login */
	PS_EXIT_KEYRING = 5,  /* keyring unavailable */
	PS_EXIT_NETWORK = 6,  /* network or server error */
	PS_EXIT_CONFIG = 7,   /* configuration error */
};

/*
 * How long to hold requests back after failures in a row (0 for the first): 1 s doubling up to
 * max_s, with +-20% jitter, and at least the server's Retry-After (seconds, -1 for none).
 */
long long ps_backoff_ms(unsigned failures, unsigned max_s, long retry_after);

#endif
