/*
 * config.c: pam_spotify.conf, module arguments and the request's settings. One table of keys
 * and one setter serve all three, so a value is checked the same way wherever it comes from.
 * Also the one parser of redirect_uri, which the helper's listener and paste check share.
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/config.h"
#include "common/util.h"

#define LINE_MAX_LEN 4096
#define FILE_MAX_LEN (64 * 1024)
#define SHOW_MAX     64 /* characters of a bad value quoted in a message */

typedef int (*setter_fn)(struct ps_config *cfg, const char *value, char *err, size_t errlen);

struct key_def {
	const char *name;
	unsigned bit;
	setter_fn set;
};

/*
 * A value as quoted in a message: printable ASCII ('?' for any other byte), at most SHOW_MAX
 * characters and "..." when cut, so that a long value cannot push the advice after it out of
 * the one-line error.
 */
struct shown {
	char text[SHOW_MAX + 4];
};

static const char *show(struct shown *s, const char *v)
{
	size_t n = strlen(v);

	ps_sanitize_text(s->text, SHOW_MAX + 1, v, n);
	if (n > SHOW_MAX)
		memcpy(s->text + SHOW_MAX, "...", 4);
	return s->text;
}

static int set_string(char *dst, size_t dstlen, const char *value, const char *what, char *err,
		      size_t errlen)
{
	if (strlen(value) >= dstlen) {
		ps_errf(err, errlen, "%s is longer than %zu characters", what, dstlen - 1);
		return -1;
	}
	ps_strlcpy(dst, value, dstlen);
	return 0;
}

static int set_flow(struct ps_config *cfg, const char *v, char *err, size_t errlen)
{
	if (strcmp(v, "client_credentials") == 0) {
		cfg->flow = PS_FLOW_CLIENT_CREDENTIALS;
		return 0;
	}
	if (strcmp(v, "implicit") == 0) {
		ps_errf(err, errlen,
			"flow 'implicit' is refused: Spotify removed the implicit grant; "
			"use flow = pkce");
		return -1;
	}
	if (strcmp(v, "pkce") == 0) {
		cfg->flow = PS_FLOW_PKCE;
		return 0;
	}
	if (strcmp(v, "authorization_code") == 0) {
		cfg->flow = PS_FLOW_AUTHORIZATION_CODE;
		return 0;
	}
	struct shown sh;

	ps_errf(err, errlen,
		"flow must be client_credentials, pkce or authorization_code, not '%s'",
		show(&sh, v));
	return -1;
}

static int set_client_id(struct ps_config *cfg, const char *v, char *err, size_t errlen)
{
	const char *s;

	for (s = v; *s; s++) {
		if (!isalnum((unsigned char)*s) && !strchr("-._~", *s)) {
			ps_errf(err, errlen,
				"client_id may hold only letters, digits and -._~ "
				"(copy it from the Spotify developer dashboard)");
			return -1;
		}
	}
	if (v[0] == '.' || strlen(v) > 240) {
		ps_errf(err, errlen,
			"client_id may not start with '.' or be longer than 240 characters "
			"(it names the refresh-token file)");
		return -1;
	}
	return set_string(cfg->client_id, sizeof(cfg->client_id), v, "client_id", err, errlen);
}

static int set_path(char *dst, size_t dstlen, const char *v, const char *what, char *err,
		    size_t errlen)
{
	struct shown sh;

	if (v[0] != '/') {
		ps_errf(err, errlen, "%s must be an absolute path, not '%s'", what, show(&sh, v));
		return -1;
	}
	return set_string(dst, dstlen, v, what, err, errlen);
}

static int set_secret_file(struct ps_config *cfg, const char *v, char *err, size_t errlen)
{
	return set_path(cfg->client_secret_file, sizeof(cfg->client_secret_file), v,
			"client_secret_file", err, errlen);
}

static int set_ca_file(struct ps_config *cfg, const char *v, char *err, size_t errlen)
{
	return set_path(cfg->ca_file, sizeof(cfg->ca_file), v, "ca_file", err, errlen);
}

/* Space-separated RFC 6749 scope tokens (NQCHAR: %x21 / %x23-5B / %x5D-7E); runs of spaces fold. */
static int set_scopes(struct ps_config *cfg, const char *v, char *err, size_t errlen)
{
	char out[PS_SCOPES_MAX];
	size_t n = 0;
	const char *s;

	for (s = v; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == ' ' || c == '\t') {
			if (n && out[n - 1] != ' ' && n + 1 < sizeof(out))
				out[n++] = ' ';
			continue;
		}
		if (c < 0x21 || c > 0x7e || c == '"' || c == '\\') {
			ps_errf(err, errlen,
				"scopes must be scope names separated by spaces "
				"(no quotes, backslashes or control characters)");
			return -1;
		}
		if (n + 1 >= sizeof(out)) {
			ps_errf(err, errlen, "scopes is longer than %zu characters",
				sizeof(out) - 1);
			return -1;
		}
		out[n++] = (char)c;
	}
	while (n && out[n - 1] == ' ')
		n--;
	out[n] = '\0';
	memcpy(cfg->scopes, out, n + 1);
	return 0;
}

static int set_url(char *dst, size_t dstlen, const char *v, const char *what, char *err,
		   size_t errlen)
{
	struct shown sh;
	char why[128];

	if (strlen(v) >= dstlen) /* first: a long host would read as "no host" */
		return set_string(dst, dstlen, v, what, err, errlen);
	if (ps_url_check(v, why, sizeof(why)) < 0) {
		ps_errf(err, errlen, "%s '%s': %s", what, show(&sh, v), why);
		return -1;
	}
	return set_string(dst, dstlen, v, what, err, errlen);
}

static int set_accounts_url(struct ps_config *cfg, const char *v, char *err, size_t errlen)
{
	return set_url(cfg->accounts_url, sizeof(cfg->accounts_url), v, "accounts_url", err,
		       errlen);
}

static int set_token_url(struct ps_config *cfg, const char *v, char *err, size_t errlen)
{
	return set_url(cfg->token_url, sizeof(cfg->token_url), v, "token_url", err, errlen);
}

static int set_authorize_url(struct ps_config *cfg, const char *v, char *err, size_t errlen)
{
	return set_url(cfg->authorize_url, sizeof(cfg->authorize_url), v, "authorize_url", err,
		       errlen);
}

/* The host literal after "http://": sets r->family and r->host; the rest of the URI, or NULL. */
static const char *redirect_host(const char *p, struct ps_redirect *r)
{
	/* strchr finds the terminator too: the host may end the URI (the path check refuses it) */
	if (strncmp(p, "127.0.0.1", 9) == 0 && strchr(":/?#", p[9])) {
		r->family = AF_INET;
		r->host = "127.0.0.1";
		return p + 9;
	}
	if (strncmp(p, "[::1]", 5) == 0 && strchr(":/?#", p[5])) {
		r->family = AF_INET6;
		r->host = "[::1]";
		return p + 5;
	}
	return NULL; /* and 127.0.0.1.evil.example, 127.0.0.1@evil.example */
}

/* ":port" (1 to 65535, no leading zero, then the path) if present; the rest, or NULL. */
static const char *redirect_port(const char *p, struct ps_redirect *r)
{
	char digits[8];
	size_t n;

	if (*p != ':')
		return p;
	p++;
	n = strspn(p, "0123456789");
	if (n == 0 || n >= sizeof(digits) || *p == '0' || (p[n] && !strchr("/?#", p[n])))
		return NULL;
	memcpy(digits, p, n);
	digits[n] = '\0';
	if (ps_parse_ulong(digits, 1, 65535, &r->port) < 0)
		return NULL;
	r->has_port = true;
	return p + n;
}

int ps_redirect_parse(const char *uri, struct ps_redirect *r, char *err, size_t errlen)
{
	const char *host = uri + 7, *rest, *s;
	struct shown sh;

	memset(r, 0, sizeof(*r));
	for (s = uri; *s; s++) {
		if (!isgraph((unsigned char)*s)) {
			ps_errf(err, errlen,
				"redirect_uri may not hold spaces, control or non-ASCII "
				"characters; use e.g. http://127.0.0.1/callback");
			return -1;
		}
	}
	if (strncmp(uri, "http://", 7) != 0) {
		ps_errf(err, errlen,
			"redirect_uri must be http://127.0.0.1[:port]/path or "
			"http://[::1][:port]/path, not '%s'",
			show(&sh, uri));
		return -1;
	}
	if (strncasecmp(host, "localhost", 9) == 0) {
		ps_errf(err, errlen,
			"redirect_uri may not use localhost: Spotify refuses it; use "
			"http://127.0.0.1/callback (and register that in the app settings)");
		return -1;
	}
	rest = redirect_host(host, r);
	if (!rest) {
		ps_errf(err, errlen,
			"redirect_uri must point at the loopback address 127.0.0.1 or "
			"[::1], not '%s'",
			show(&sh, uri));
		return -1;
	}
	rest = redirect_port(rest, r);
	if (!rest) {
		ps_errf(err, errlen,
			"redirect_uri '%s' has a bad port: it must be a number from 1 to 65535",
			show(&sh, uri));
		return -1;
	}
	if (*rest != '/' || strpbrk(rest, "?#")) {
		ps_errf(err, errlen,
			"redirect_uri '%s' needs a path such as /callback and no query "
			"or fragment",
			show(&sh, uri));
		return -1;
	}
	r->path = rest;
	return 0;
}

static int set_redirect_uri(struct ps_config *cfg, const char *v, char *err, size_t errlen)
{
	struct ps_redirect r;

	if (ps_redirect_parse(v, &r, err, errlen) < 0)
		return -1;
	return set_string(cfg->redirect_uri, sizeof(cfg->redirect_uri), v, "redirect_uri", err,
			  errlen);
}

static int set_enroll(struct ps_config *cfg, const char *v, char *err, size_t errlen)
{
	if (strcmp(v, "prompt") == 0)
		cfg->enroll = PS_ENROLL_PROMPT;
	else if (strcmp(v, "never") == 0)
		cfg->enroll = PS_ENROLL_NEVER;
	else {
		struct shown sh;

		ps_errf(err, errlen, "enroll must be prompt or never, not '%s'", show(&sh, v));
		return -1;
	}
	return 0;
}

static int set_keyring(struct ps_config *cfg, const char *v, char *err, size_t errlen)
{
	if (strcmp(v, "user") == 0)
		cfg->keyring = PS_KEYRING_USER;
	else if (strcmp(v, "session") == 0)
		cfg->keyring = PS_KEYRING_SESSION;
	else if (strcmp(v, "persistent") == 0)
		cfg->keyring = PS_KEYRING_PERSISTENT;
	else {
		struct shown sh;

		ps_errf(err, errlen, "keyring must be user, session or persistent, not '%s'",
			show(&sh, v));
		return -1;
	}
	return 0;
}

/* A whole number of seconds from lo to hi (hi_note says what hi is, or ""). */
static int set_seconds_in(unsigned *dst, const char *v, const char *what, unsigned long lo,
			  unsigned long hi, const char *hi_note, char *err, size_t errlen)
{
	struct shown sh;
	unsigned long n;

	if (ps_parse_ulong(v, lo, hi, &n) < 0) {
		ps_errf(err, errlen,
			"%s must be a whole number of seconds from %lu to %lu%s, not '%s'", what,
			lo, hi, hi_note, show(&sh, v));
		return -1;
	}
	*dst = (unsigned)n;
	return 0;
}

static int set_seconds(unsigned *dst, const char *v, const char *what, char *err, size_t errlen)
{
	return set_seconds_in(dst, v, what, 1, 300, "", err, errlen);
}

static int set_timeout(struct ps_config *cfg, const char *v, char *err, size_t errlen)
{
	return set_seconds(&cfg->timeout, v, "timeout", err, errlen);
}

static int set_connect_timeout(struct ps_config *cfg, const char *v, char *err, size_t errlen)
{
	return set_seconds(&cfg->connect_timeout, v, "connect_timeout", err, errlen);
}

static int set_refresh_margin(struct ps_config *cfg, const char *v, char *err, size_t errlen)
{
	return set_seconds_in(&cfg->refresh_margin, v, "refresh_margin", 1, 3600, "", err, errlen);
}

static int set_default_expires_in(struct ps_config *cfg, const char *v, char *err, size_t errlen)
{
	return set_seconds_in(&cfg->default_expires_in, v, "default_expires_in", 60, 604800,
			      " (a week)", err, errlen);
}

static int parse_bool(bool *dst, const char *v, const char *what, char *err, size_t errlen)
{
	if (!strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "1"))
		*dst = true;
	else if (!strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "0"))
		*dst = false;
	else {
		struct shown sh;

		ps_errf(err, errlen, "%s must be yes or no, not '%s'", what, show(&sh, v));
		return -1;
	}
	return 0;
}

/* A system user name: letters, digits, '_', '.', '-' (not first); the system service runs as it. */
static int set_app_user(struct ps_config *cfg, const char *v, char *err, size_t errlen)
{
	struct shown sh;
	const char *s;

	for (s = v; *s; s++) {
		if (!isalnum((unsigned char)*s) && !strchr("_.-", *s)) {
			ps_errf(err, errlen,
				"app_user must be a user name (letters, digits, _ . -), not '%s'",
				show(&sh, v));
			return -1;
		}
	}
	if (v[0] == '-' || !strcmp(v, "root")) {
		ps_errf(err, errlen,
			"app_user '%s' is refused: name a dedicated unprivileged system user "
			"such as %s",
			show(&sh, v), PS_DEFAULT_APP_USER);
		return -1;
	}
	return set_string(cfg->app_user, sizeof(cfg->app_user), v, "app_user", err, errlen);
}

static int set_remove_on_close(struct ps_config *cfg, const char *v, char *err, size_t errlen)
{
	return parse_bool(&cfg->remove_on_close, v, "remove_on_close", err, errlen);
}

static const struct key_def keys[] = {
	{"flow", PS_SET_FLOW, set_flow},
	{"client_id", PS_SET_CLIENT_ID, set_client_id},
	{"client_secret_file", PS_SET_SECRET_FILE, set_secret_file},
	{"scopes", PS_SET_SCOPES, set_scopes},
	{"accounts_url", PS_SET_ACCOUNTS_URL, set_accounts_url},
	{"token_url", PS_SET_TOKEN_URL, set_token_url},
	{"keyring", PS_SET_KEYRING, set_keyring},
	{"timeout", PS_SET_TIMEOUT, set_timeout},
	{"connect_timeout", PS_SET_CONNECT_TIMEOUT, set_connect_timeout},
	{"remove_on_close", PS_SET_REMOVE_ON_CLOSE, set_remove_on_close},
	{"ca_file", PS_SET_CA_FILE, set_ca_file},
	{"authorize_url", PS_SET_AUTHORIZE_URL, set_authorize_url},
	{"redirect_uri", PS_SET_REDIRECT_URI, set_redirect_uri},
	{"enroll", PS_SET_ENROLL, set_enroll},
	{"refresh_margin", PS_SET_REFRESH_MARGIN, set_refresh_margin},
	{"app_user", PS_SET_APP_USER, set_app_user},
	{"default_expires_in", PS_SET_DEFAULT_EXPIRES_IN, set_default_expires_in},
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static const struct key_def *key_find(const char *name)
{
	size_t i;

	for (i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

const char *ps_config_key_name(size_t i)
{
	return i < NKEYS ? keys[i].name : NULL;
}

/* An unknown key, with a hint for the likely mistakes. */
static void unknown_key(const char *key, char *err, size_t errlen)
{
	struct shown sh;

	if (!strcmp(key, "client_secret"))
		ps_errf(err, errlen,
			"unknown key 'client_secret': the secret never goes in this file; "
			"put it in a root-only file and name it with client_secret_file");
	else if (!strcmp(key, "scope"))
		ps_errf(err, errlen, "unknown key 'scope' (did you mean 'scopes'?)");
	else
		ps_errf(err, errlen, "unknown key '%s'; see pam_spotify.conf(5)", show(&sh, key));
}

void ps_config_init(struct ps_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->flow = PS_FLOW_CLIENT_CREDENTIALS;
	ps_strlcpy(cfg->accounts_url, PS_DEFAULT_ACCOUNTS_URL, sizeof(cfg->accounts_url));
	ps_strlcpy(cfg->redirect_uri, PS_DEFAULT_REDIRECT_URI, sizeof(cfg->redirect_uri));
	cfg->keyring = PS_KEYRING_USER;
	cfg->timeout = 10;
	cfg->connect_timeout = 5;
	cfg->remove_on_close = true;
	cfg->refresh_margin = 300;
	cfg->default_expires_in = 3600;
	ps_strlcpy(cfg->app_user, PS_DEFAULT_APP_USER, sizeof(cfg->app_user));
	ps_strlcpy(cfg->config_path, PS_CONFIG_PATH, sizeof(cfg->config_path));
}

/*
 * A byte below 0x20 other than tab, or DEL: no value has a use for one, and a newline or a
 * carriage return in a value would start a line of its own in the helper's request.
 */
static bool control_char(const char *v, unsigned *bad)
{
	for (; *v; v++) {
		unsigned char c = (unsigned char)*v;

		if ((c < 0x20 && c != '\t') || c == 0x7f) {
			*bad = c;
			return true;
		}
	}
	return false;
}

/* Set one key; *bit gets its bit. Empty values and control characters are refused. */
static int config_set(struct ps_config *cfg, const char *key, const char *value, unsigned *bit,
		      char *err, size_t errlen)
{
	const struct key_def *def = key_find(key);
	unsigned bad;

	if (!def) {
		unknown_key(key, err, errlen);
		return -1;
	}
	if (!*value) {
		ps_errf(err, errlen, "empty value for '%s'; remove the line to use the default",
			key);
		return -1;
	}
	if (control_char(value, &bad)) {
		ps_errf(err, errlen,
			"the value of '%s' holds a control character (0x%02x); write it on one "
			"line "
			"without control characters",
			key, bad);
		return -1;
	}
	if (def->set(cfg, value, err, errlen) < 0)
		return -1;
	cfg->set |= def->bit;
	*bit = def->bit;
	return 0;
}

int ps_config_set(struct ps_config *cfg, const char *key, const char *value, char *err,
		  size_t errlen)
{
	unsigned bit;

	return config_set(cfg, key, value, &bit, err, errlen);
}

static char *trim(char *s)
{
	char *end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		end--;
	*end = '\0';
	return s;
}

/* Split "key = value" in place. 0 or -1. */
static int split_line(char *line, char **key, char **value)
{
	char *eq = strchr(line, '=');

	if (!eq)
		return -1;
	*eq = '\0';
	*key = trim(line);
	*value = trim(eq + 1);
	return **key ? 0 : -1;
}

/* Duplicate detection for one source: the line each key was first set on. */
struct seen_keys {
	unsigned mask;
	unsigned line[32];
};

static int seen_check(struct seen_keys *seen, unsigned bit, unsigned lineno, const char *key,
		      char *err, size_t errlen)
{
	unsigned i = (unsigned)__builtin_ctz(bit);

	if (seen->mask & bit) {
		ps_errf(err, errlen, "duplicate key '%s' (first set on line %u); keep one", key,
			seen->line[i]);
		return -1;
	}
	seen->mask |= bit;
	seen->line[i] = lineno;
	return 0;
}

static int parse_line(struct ps_config *cfg, char *line, unsigned lineno, struct seen_keys *seen,
		      char *err, size_t errlen)
{
	char *key, *value, *s = trim(line);
	unsigned bit;

	if (*s == '\0' || *s == '#')
		return 0;
	if (split_line(s, &key, &value) < 0) {
		ps_errf(err, errlen, "expected 'key = value'");
		return -1;
	}
	if (config_set(cfg, key, value, &bit, err, errlen) < 0)
		return -1;
	return seen_check(seen, bit, lineno, key, err, errlen);
}

int ps_config_parse_text(struct ps_config *cfg, const char *name, const char *text, size_t len,
			 char *err, size_t errlen)
{
	struct seen_keys seen = {0};
	char line[LINE_MAX_LEN + 1], why[PS_ERR_MAX];
	struct ps_config next = *cfg; /* applied only when the whole text is good */
	unsigned lineno = 0;
	size_t pos = 0;

	if (memchr(text, '\0', len)) {
		ps_errf(err, errlen, "%s: contains a NUL byte; is it a text file?", name);
		return -1;
	}
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;

		lineno++;
		if (n > LINE_MAX_LEN) {
			ps_errf(err, errlen, "%s:%u: line longer than %d characters", name, lineno,
				LINE_MAX_LEN);
			return -1;
		}
		memcpy(line, text + pos, n);
		line[n] = '\0';
		pos += n + (nl ? 1 : 0);
		if (parse_line(&next, line, lineno, &seen, why, sizeof(why)) < 0) {
			ps_errf(err, errlen, "%s:%u: %s", name, lineno, why);
			return -1;
		}
	}
	*cfg = next;
	return 0;
}

/* Could someone other than root and the caller have written (or renamed) what st describes? */
static bool others_may_write(const struct stat *st)
{
	if (st->st_uid != 0 && st->st_uid != getuid())
		return true;
	if (S_ISDIR(st->st_mode) && (st->st_mode & S_ISVTX))
		return false; /* /tmp: others add names, but cannot replace ours */
	return (st->st_mode & S_IWOTH) || ((st->st_mode & S_IWGRP) && st->st_gid != 0);
}

/*
 * The directory that holds path, and each one above it (links resolved): whoever may write one
 * of them could put a file of their choosing in the configuration's place.
 */
static int dirs_check(const char *path, char *err, size_t errlen)
{
	char dir[PATH_MAX], real[PATH_MAX];
	struct stat st;
	char *slash;

	if (ps_strlcpy(dir, path, sizeof(dir)) >= sizeof(dir)) {
		ps_errf(err, errlen, "%s: path too long", path);
		return -1;
	}
	slash = strrchr(dir, '/');
	if (!slash)
		ps_strlcpy(dir, ".", sizeof(dir));
	else
		slash[slash == dir] = '\0'; /* "/x" -> "/" */
	if (!realpath(dir, real)) {
		ps_errf(err, errlen, "%s: cannot resolve its directory (%s)", path,
			strerror(errno));
		return -1;
	}
	for (;;) {
		if (stat(real, &st) < 0) {
			ps_errf(err, errlen, "%s: cannot examine directory %s (%s)", path, real,
				strerror(errno));
			return -1;
		}
		if (others_may_write(&st)) {
			ps_errf(err, errlen,
				"%s: directory %s (mode %04o, uid %u) lets others replace the "
				"file; "
				"chown root:root and chmod 755 it, or move the file",
				path, real, (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid);
			return -1;
		}
		if (strcmp(real, "/") == 0)
			return 0;
		slash = strrchr(real, '/');
		slash[slash == real] = '\0';
	}
}

/* Read a whole config file, refusing one that others can write. */
static int config_read(const char *path, char *buf, size_t cap, size_t *len, char *err,
		       size_t errlen)
{
	struct stat st;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		ps_errf(err, errlen, "%s: cannot open (%s); create it, see pam_spotify.conf(5)",
			path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		ps_errf(err, errlen, "%s: not a regular file", path);
		close(fd);
		return -1;
	}
	if (others_may_write(&st)) {
		ps_errf(err, errlen,
			"%s: writable by others or owned by another user; "
			"chown root:root and chmod 644 it",
			path);
		close(fd);
		return -1;
	}
	if (dirs_check(path, err, errlen) < 0) {
		close(fd);
		return -1;
	}
	rc = ps_read_all(fd, buf, cap, len);
	close(fd);
	if (rc != 0) {
		ps_errf(err, errlen, rc < 0 ? "%s: cannot read" : "%s: larger than 64 KiB", path);
		return -1;
	}
	return 0;
}

int ps_config_load(struct ps_config *cfg, const char *path, char *err, size_t errlen)
{
	char *buf;
	size_t len;
	int rc;

	buf = malloc(FILE_MAX_LEN);
	if (!buf) {
		ps_errf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	rc = config_read(path, buf, FILE_MAX_LEN, &len, err, errlen);
	if (rc == 0)
		rc = ps_config_parse_text(cfg, path, buf, len, err, errlen);
	free(buf);
	return rc;
}

const char *ps_config_arg_path(int argc, const char **argv)
{
	int i;

	for (i = 0; i < argc; i++)
		if (strncmp(argv[i], "config=", 7) == 0)
			return argv[i] + 7;
	return NULL;
}

int ps_config_from_args(struct ps_config *cfg, int argc, const char **argv, char *err,
			size_t errlen)
{
	struct seen_keys seen = {0};
	char arg[LINE_MAX_LEN + 1], why[PS_ERR_MAX];
	struct ps_config next = *cfg; /* applied only when every argument is good */
	struct shown sh;
	int i;

	for (i = 0; i < argc; i++) {
		char *key, *value;
		unsigned bit;

		if (!strcmp(argv[i], "debug")) {
			next.debug = true;
			continue;
		}
		if (!strcmp(argv[i], "nowait")) {
			next.nowait = true;
			continue;
		}
		if (!strncmp(argv[i], "config=", 7))
			continue; /* read before the file: ps_config_arg_path */
		if (ps_strlcpy(arg, argv[i], sizeof(arg)) >= sizeof(arg)) {
			ps_errf(err, errlen, "module argument '%s' is longer than %d characters",
				show(&sh, argv[i]), LINE_MAX_LEN);
			return -1;
		}
		if (split_line(arg, &key, &value) < 0) {
			ps_errf(err, errlen,
				"module argument '%s': expected debug, nowait, config=PATH "
				"or key=value",
				show(&sh, argv[i]));
			return -1;
		}
		if (config_set(&next, key, value, &bit, why, sizeof(why)) < 0 ||
		    seen_check(&seen, bit, (unsigned)i + 1, key, why, sizeof(why)) < 0) {
			ps_errf(err, errlen, "module argument '%s': %s", show(&sh, argv[i]), why);
			return -1;
		}
	}
	*cfg = next;
	return 0;
}

/* base (without trailing slashes) + path into out. 0 or -1 when it does not fit. */
static int derive_url(char *out, size_t outlen, const char *base, const char *path)
{
	size_t n = strlen(base);

	while (n && base[n - 1] == '/')
		n--;
	return snprintf(out, outlen, "%.*s%s", (int)n, base, path) >= (int)outlen ? -1 : 0;
}

int ps_config_finish(struct ps_config *cfg, char *err, size_t errlen)
{
	if (!cfg->client_id[0]) {
		ps_errf(err, errlen,
			"%s: client_id is not set; add client_id = <your app's client ID>",
			cfg->config_path);
		return -1;
	}
	if (cfg->flow != PS_FLOW_PKCE && !cfg->client_secret_file[0]) {
		ps_errf(err, errlen,
			"%s: flow %s needs client_secret_file = <path of a root-only file holding "
			"the client secret>",
			cfg->config_path, ps_flow_name(cfg->flow));
		return -1;
	}
	/* the default is the smaller of 5 s and timeout; only a connect_timeout set is refused */
	if (cfg->connect_timeout > cfg->timeout && !(cfg->set & PS_SET_CONNECT_TIMEOUT))
		cfg->connect_timeout = cfg->timeout;
	if (cfg->connect_timeout > cfg->timeout) {
		ps_errf(err, errlen,
			"%s: connect_timeout (%u s) is longer than timeout (%u s): lower it, or "
			"raise timeout",
			cfg->config_path, cfg->connect_timeout, cfg->timeout);
		return -1;
	}
	if ((!(cfg->set & PS_SET_TOKEN_URL) && derive_url(cfg->token_url, sizeof(cfg->token_url),
							  cfg->accounts_url, "/api/token") < 0) ||
	    (!(cfg->set & PS_SET_AUTHORIZE_URL) &&
	     derive_url(cfg->authorize_url, sizeof(cfg->authorize_url), cfg->accounts_url,
			"/authorize") < 0)) {
		ps_errf(err, errlen, "%s: accounts_url is too long", cfg->config_path);
		return -1;
	}
	return 0;
}

const char *ps_flow_name(enum ps_flow flow)
{
	switch (flow) {
	case PS_FLOW_CLIENT_CREDENTIALS:
		return "client_credentials";
	case PS_FLOW_PKCE:
		return "pkce";
	case PS_FLOW_AUTHORIZATION_CODE:
		return "authorization_code";
	}
	return "unknown";
}

const char *ps_keyring_name(enum ps_keyring where)
{
	switch (where) {
	case PS_KEYRING_USER:
		return "user";
	case PS_KEYRING_SESSION:
		return "session";
	case PS_KEYRING_PERSISTENT:
		return "persistent";
	}
	return "unknown";
}
