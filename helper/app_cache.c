/*
 * app_cache.c: the host's app token cache (see app_cache.h): its format, the checks a reader
 * makes before it trusts the file, the atomic replacement, and the copy into a keyring.
 */
#include <config.h>

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "helper/app_cache.h"
#include "helper/grant.h"
#include "pam/rundir.h"
#include "pam/util.h"

#define CACHE_MAGIC "pam_spotify-app-token 1"
#define CACHE_MAX   (sizeof(CACHE_MAGIC) + PS_TOKEN_INFO_MAX + PS_TOKEN_MAX + 3)
#define CACHE_TMP   PS_APP_TOKEN_FILE ".tmp"

int ps_app_dir_open(const struct ps_config *cfg, uid_t owner, char *line, size_t linelen)
{
	int rfd = ps_rundir_open(false, line, linelen), fd;

	if (rfd < 0)
		return -1;
	fd = ps_rundir_subdir(rfd, cfg, ".app", false, 0, owner, 0, line, linelen);
	close(rfd);
	return fd;
}

/* Seconds the keyring may keep a token that expires at expires_at; 0 when it has expired. */
static unsigned keyring_timeout(long long expires_at)
{
	long long left = expires_at - (long long)time(NULL);

	if (left <= 0)
		return 0;
	if (left > 0x7fffffffLL)
		left = 0x7fffffffLL;
	return (unsigned)left - ps_keys_skew((unsigned long)left);
}

/* Open the cache and check who may have written it. The fd, or -1 with rc and a line. */
static int cache_open(int appfd, const char *path, uid_t owner, int *rc, char *line, size_t linelen)
{
	struct stat st;
	int fd = openat(appfd, PS_APP_TOKEN_FILE, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

	*rc = PS_EXIT_CONFIG;
	if (fd < 0 && errno == ENOENT) {
		*rc = PS_EXIT_NO_TOKEN;
		ps_errf(line, linelen, "the app keeper has no app token yet");
		return -1;
	}
	if (fd < 0) {
		ps_errf(line, linelen, "refusing the app token cache %s: %s", path,
			errno == ELOOP ? "it is a symbolic link" : strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != owner ||
	    (st.st_mode & (S_IWGRP | S_IWOTH))) {
		ps_errf(line, linelen,
			"refusing the app token cache %s: it must be a regular file owned by the "
			"app user (uid %u) and not writable by others; remove it (the app keeper "
			"writes it again)",
			path, (unsigned)owner);
		close(fd);
		return -1;
	}
	*rc = PS_EXIT_OK;
	return fd;
}

/* The next line of buf (from *pos) into out, NUL-terminated. 0, or -1 when too long or absent. */
static int next_line(const char *buf, size_t len, size_t *pos, char *out, size_t outlen)
{
	const char *nl = *pos < len ? memchr(buf + *pos, '\n', len - *pos) : NULL;
	size_t n;

	if (!nl)
		return -1;
	n = (size_t)(nl - (buf + *pos));
	if (n >= outlen)
		return -1;
	memcpy(out, buf + *pos, n);
	out[n] = '\0';
	*pos += n + 1;
	return (int)n;
}

/* Parse the cache's text into t. 0, or -1. */
static int cache_parse(const char *buf, size_t len, const struct ps_config *cfg,
		       struct ps_app_token *t)
{
	char magic[sizeof(CACHE_MAGIC)];
	size_t pos = 0;
	int n;

	if (memchr(buf, '\0', len) || next_line(buf, len, &pos, magic, sizeof(magic)) < 0 ||
	    strcmp(magic, CACHE_MAGIC) != 0)
		return -1;
	n = next_line(buf, len, &pos, t->info_json, sizeof(t->info_json));
	if (n <= 0 || ps_token_info_parse(&t->info, t->info_json, (size_t)n) < 0)
		return -1;
	n = next_line(buf, len, &pos, t->token, sizeof(t->token));
	if (n <= 0 || pos != len)
		return -1;
	t->token_len = (size_t)n;
	if (!ps_keys_token_valid(t->token, t->token_len) ||
	    strcmp(t->info.flow, ps_flow_name(PS_FLOW_CLIENT_CREDENTIALS)) != 0 ||
	    strcmp(t->info.client_id, cfg->client_id) != 0)
		return -1;
	return 0;
}

int ps_app_cache_read(int appfd, const struct ps_config *cfg, uid_t owner, struct ps_app_token *t,
		      char *line, size_t linelen)
{
	char buf[CACHE_MAX + 1], path[PATH_MAX];
	size_t len = 0;
	int rc, fd;

	memset(t, 0, sizeof(*t));
	ps_app_path(cfg, ".app/" PS_APP_TOKEN_FILE, path, sizeof(path));
	fd = cache_open(appfd, path, owner, &rc, line, linelen);
	if (fd < 0)
		return rc;
	rc = ps_read_all(fd, buf, sizeof(buf), &len);
	close(fd);
	if (rc != 0 || cache_parse(buf, len, cfg, t) < 0) {
		ps_app_token_clear(t);
		rc = PS_EXIT_CONFIG;
		ps_errf(line, linelen,
			"refusing the app token cache %s: it is malformed or another client's",
			path);
	} else if (keyring_timeout(t->info.expires_at) == 0) {
		ps_app_token_clear(t);
		rc = PS_EXIT_EXPIRED;
		ps_errf(line, linelen, "the app token in the cache has expired");
	} else {
		rc = PS_EXIT_OK;
	}
	explicit_bzero(buf, sizeof(buf));
	return rc;
}

int ps_app_cache_wait(int appfd, const struct ps_config *cfg, uid_t owner, struct ps_app_token *t,
		      unsigned wait_ms, char *line, size_t linelen)
{
	long long deadline = ps_mono_ms() + wait_ms;
	char path[64], ev[1024];
	int ifd, rc;

	/* watch first, then read: a token that arrives in between is not missed */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", appfd);
	ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (ifd >= 0 && inotify_add_watch(ifd, path, IN_MOVED_TO | IN_CLOSE_WRITE) < 0) {
		close(ifd);
		ifd = -1;
	}
	for (;;) {
		long long left = deadline - ps_mono_ms();
		struct pollfd p = {.fd = ifd, .events = POLLIN};

		rc = ps_app_cache_read(appfd, cfg, owner, t, line, linelen);
		if (rc == PS_EXIT_OK || rc == PS_EXIT_CONFIG || left <= 0)
			break;
		/* without inotify, look again every 100 ms; with it, every second at least */
		if (poll(&p, ifd >= 0 ? 1 : 0,
			 (int)(left < 1000 ? left
			       : ifd >= 0  ? 1000
					   : 100)) > 0)
			while (read(ifd, ev, sizeof(ev)) > 0)
				;
	}
	if (ifd >= 0)
		close(ifd);
	if (rc != PS_EXIT_OK && rc != PS_EXIT_CONFIG) {
		ps_errf(line, linelen,
			"no valid app token within %u ms: the host's app keeper has none (it "
			"cannot reach the accounts server? see the system log)",
			wait_ms);
		rc = PS_EXIT_NETWORK;
	}
	return rc;
}

/* Write the cache's text to fd. PS_EXIT_OK or PS_EXIT_CONFIG with a line. */
static int cache_format(int fd, const struct ps_config *cfg, const struct ps_token_response *tok,
			time_t started, char *line, size_t linelen)
{
	char json[PS_TOKEN_INFO_MAX], buf[CACHE_MAX + 1];
	struct ps_buf b = {.buf = buf, .cap = sizeof(buf)};
	int rc = ps_grant_info(cfg, tok, started, json, sizeof(json), line, linelen);

	if (rc != PS_EXIT_OK)
		return rc;
	ps_buf_printf(&b, "%s\n%s\n%.*s\n", CACHE_MAGIC, json, (int)tok->access_token_len,
		      tok->access_token);
	if (b.full || ps_write_all(fd, buf, b.len) < 0) {
		ps_errf(line, linelen, "cannot write %s/%s: %s", PS_RUNDIR, CACHE_TMP,
			b.full ? "token too long" : strerror(errno));
		rc = PS_EXIT_CONFIG;
	}
	explicit_bzero(buf, sizeof(buf));
	return rc;
}

int ps_app_cache_write(int appfd, const struct ps_config *cfg, const struct ps_token_response *tok,
		       time_t started, char *line, size_t linelen)
{
	int fd, rc;

	unlinkat(appfd, CACHE_TMP, 0);
	fd = openat(appfd, CACHE_TMP, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0 || fchmod(fd, 0644) < 0) { /* 0644 whatever the umask: every user reads it */
		ps_errf(line, linelen, "cannot create %s/%s: %s", PS_RUNDIR, CACHE_TMP,
			strerror(errno));
		if (fd >= 0)
			close(fd);
		return PS_EXIT_CONFIG;
	}
	rc = cache_format(fd, cfg, tok, started, line, linelen);
	close(fd);
	if (rc == PS_EXIT_OK && renameat(appfd, CACHE_TMP, appfd, PS_APP_TOKEN_FILE) < 0) {
		ps_errf(line, linelen, "cannot replace the app token cache: %s", strerror(errno));
		rc = PS_EXIT_CONFIG;
	}
	if (rc != PS_EXIT_OK)
		unlinkat(appfd, CACHE_TMP, 0);
	else
		snprintf(line, linelen, "ok expires_in=%ld", tok->expires_in);
	return rc;
}

void ps_app_cache_remove(int appfd)
{
	unlinkat(appfd, PS_APP_TOKEN_FILE, 0);
}

int ps_app_token_store(const struct ps_config *cfg, const struct ps_app_token *t, char *line,
		       size_t linelen)
{
	unsigned timeout_s = keyring_timeout(t->info.expires_at);
	int rc;

	if (timeout_s == 0) {
		ps_errf(line, linelen, "the app token has expired");
		return PS_EXIT_EXPIRED;
	}
	rc = ps_keys_store(cfg->keyring, t->token, t->token_len, t->info_json, timeout_s, line,
			   linelen);
	if (rc == PS_EXIT_OK)
		snprintf(line, linelen, "ok expires_in=%lld keyring=%s app token",
			 t->info.expires_at - (long long)time(NULL), ps_keyring_name(cfg->keyring));
	return rc;
}

bool ps_app_token_same(const struct ps_app_token *a, const struct ps_app_token *b)
{
	return a->token_len == b->token_len && a->info.expires_at == b->info.expires_at &&
	       memcmp(a->token, b->token, a->token_len) == 0;
}

void ps_app_token_clear(struct ps_app_token *t)
{
	explicit_bzero(t, sizeof(*t));
}
