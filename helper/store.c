/*
 * store.c: the refresh-token store (see store.h). Owns where the store lives, how its directory
 * is reached without following links, the file format, atomic replacement, the reauth mark and
 * the per-client lock. Messages name the file and what to do, never the token.
 *
 * Links: the base directory ($XDG_STATE_HOME, else $HOME) is opened the ordinary way, following
 * links, because home directories legitimately are links (/home -> /var/home on OSTree systems,
 * automounted homes), and whoever controls the path above the base controls the user's files
 * anyway. Below the base, each component (.local, state, spotify-token) is the store's own: it is
 * opened with O_NOFOLLOW relative to its parent, so no link there can send a refresh token to a
 * place someone else chose; and the last directory must belong to the user and be closed to group
 * and others, whoever made the path above it. Files are opened relative to that directory with
 * O_NOFOLLOW; a new token is written to a fresh O_EXCL file and renamed over the old one, so a
 * link planted as CLIENT.refresh is replaced, never written through.
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "helper/store.h"
#include "common/paths.h"
#include "common/util.h"

#define STORE_MAGIC    "pam_spotify-refresh 1\n"
#define STORE_FILE_MAX (8 * 1024)
#define TMP_SUFFIX     ".refresh.XXXXXX"
#define TMP_RANDOM     6
#define TMP_TRIES      100
#define REAUTH_TEXT    "re-authorization needed: run spotify-token login\n"
#define RELOGIN	       "run spotify-token logout, then spotify-token login"
/* The longest client ID whose temporary file name (CLIENT.refresh.XXXXXX) fits NAME_MAX. */
#define CLIENT_NAME_MAX (NAME_MAX - (sizeof(TMP_SUFFIX) - 1))

/* Letters, digits and -._~, not starting with '.', short enough to name every store file. */
static bool client_id_valid(const char *id)
{
	size_t n = strlen(id), i;

	if (n == 0 || n > CLIENT_NAME_MAX || id[0] == '.')
		return false;
	for (i = 0; i < n; i++) {
		char c = id[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '.' || c == '_' || c == '~'))
			return false;
	}
	return true;
}

/* --- opening the directory */

/* The base directory, following links; $XDG_STATE_HOME is created when absent (not $HOME). */
static int open_base(const char *base, const char *rel, char *err, size_t errlen)
{
	const char *what = strcmp(rel, PS_STORE_REL_XDG) == 0 ? "XDG_STATE_HOME" : "home directory";
	int fd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0 && errno == ENOENT && strcmp(rel, PS_STORE_REL_XDG) == 0 &&
	    (mkdir(base, 0700) == 0 || errno == EEXIST))
		fd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		ps_errf(err, errlen, "cannot open %s %s for the refresh-token store: %s", what,
			base, strerror(errno));
	return fd;
}

/* Why name (at path) could not be opened as a directory; e is the errno of the attempt. */
static void component_error(int parent, const char *name, const char *path, int e, char *err,
			    size_t errlen)
{
	struct stat st;

	if ((e == ELOOP || e == ENOTDIR) && fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		if (S_ISLNK(st.st_mode)) {
			ps_errf(err, errlen,
				"refresh-token store path %s is a symbolic link, which the store "
				"never follows: replace it with a directory",
				path);
			return;
		}
		if (!S_ISDIR(st.st_mode)) {
			ps_errf(err, errlen,
				"refresh-token store path %s is not a directory: move it away so "
				"the "
				"store can create a directory there",
				path);
			return;
		}
	}
	ps_errf(err, errlen, "cannot open refresh-token store directory %s: %s", path, strerror(e));
}

/* One component below parent, created 0700 when absent; a link is refused, not followed. */
static int open_component(int parent, const char *name, const char *path, char *err, size_t errlen)
{
	const int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
	int fd = openat(parent, name, flags);

	if (fd < 0 && errno == ENOENT) {
		if (mkdirat(parent, name, 0700) < 0 && errno != EEXIST) {
			ps_errf(err, errlen, "cannot create refresh-token store directory %s: %s",
				path, strerror(errno));
			return -1;
		}
		fd = openat(parent, name, flags);
	}
	if (fd < 0)
		component_error(parent, name, path, errno, err, errlen);
	return fd;
}

/*
 * Walk rel ("a/b/c") below the open base directory; consumes basefd. full is base/rel, for
 * messages. The fd of the last component or -1.
 */
static int walk(int basefd, const char *full, const char *rel, char *err, size_t errlen)
{
	const size_t skip = strlen(full) - strlen(rel); /* where rel starts in full */
	char path[PATH_MAX], name[NAME_MAX + 1];
	const char *p = rel;
	int fd = basefd;

	while (*p) {
		size_t n = strcspn(p, "/");
		int next;

		memcpy(name, p, n); /* rel is one of our constants: n <= NAME_MAX */
		name[n] = '\0';
		p += n;
		ps_strlcpy(path, full, skip + (size_t)(p - rel) + 1); /* up to this component */
		p += *p == '/';
		next = open_component(fd, name, path, err, errlen);
		close(fd);
		if (next < 0)
			return -1;
		fd = next;
	}
	return fd;
}

/* The store directory itself: the user's, and closed to group and others. */
static int check_dir(int fd, const char *path, char *err, size_t errlen)
{
	struct stat st;

	if (fstat(fd, &st) < 0) {
		ps_errf(err, errlen, "cannot stat refresh-token store %s: %s", path,
			strerror(errno));
		return -1;
	}
	if (st.st_uid != getuid()) {
		ps_errf(err, errlen,
			"refresh-token store %s belongs to uid %u, not to you (uid %u): remove it, "
			"then run spotify-token login",
			path, (unsigned)st.st_uid, (unsigned)getuid());
		return -1;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		ps_errf(err, errlen, "refresh-token store %s has mode %04o: run chmod 700 %s", path,
			(unsigned)(st.st_mode & 07777), path);
		return -1;
	}
	return 0;
}

int ps_store_open(struct ps_store *s, const char *client_id, char *err, size_t errlen)
{
	char base[PATH_MAX];
	const char *rel;
	int fd;

	s->dirfd = -1;
	s->lockfd = -1;
	s->dir[0] = '\0';
	s->client_id[0] = '\0';
	if (!client_id || !client_id_valid(client_id)) {
		ps_errf(err, errlen,
			"client_id cannot name a refresh-token store file: it must be 1 to %zu "
			"letters, digits or -._~ and not start with '.'",
			(size_t)CLIENT_NAME_MAX);
		return PS_EXIT_CONFIG;
	}
	if (ps_store_base(base, sizeof(base), &rel) < 0) {
		ps_errf(err, errlen,
			"cannot place the refresh-token store: no usable XDG_STATE_HOME or HOME, "
			"and "
			"no home directory in the password database");
		return PS_EXIT_CONFIG;
	}
	if (ps_path_join(s->dir, sizeof(s->dir), base, rel) < 0) {
		ps_errf(err, errlen, "the refresh-token store path under %s is too long", base);
		return PS_EXIT_CONFIG;
	}
	fd = open_base(base, rel, err, errlen);
	if (fd >= 0)
		fd = walk(fd, s->dir, rel, err, errlen);
	if (fd < 0)
		return PS_EXIT_CONFIG;
	if (check_dir(fd, s->dir, err, errlen) < 0) {
		close(fd);
		return PS_EXIT_CONFIG;
	}
	s->dirfd = fd;
	ps_strlcpy(s->client_id, client_id, sizeof(s->client_id));
	return PS_EXIT_OK;
}

void ps_store_close(struct ps_store *s)
{
	ps_store_unlock(s);
	if (s->dirfd >= 0)
		close(s->dirfd);
	s->dirfd = -1;
}

/* --- the files */

/* CLIENT + suffix. It fits (client_id_valid bounds the length); were it not to, "" names nothing. */
static void file_name(const struct ps_store *s, const char *suffix, char name[NAME_MAX + 1])
{
	int n = snprintf(name, NAME_MAX + 1, "%s%s", s->client_id, suffix);

	if (n < 0 || n > NAME_MAX)
		name[0] = '\0';
}

/* "refresh-token store file DIR/NAME <what>: <advice>" */
static void file_error(const struct ps_store *s, const char *name, const char *what,
		       const char *advice, char *err, size_t errlen)
{
	ps_errf(err, errlen, "refresh-token store file %s/%s %s: %s", s->dir, name, what, advice);
}

/*
 * Why name could not be opened (e, not ENOENT): a link, a file of another owner (which we may not
 * open), or the system's reason; with what to do about it.
 */
static void open_error(const struct ps_store *s, const char *name, int e, const char *advice,
		       char *err, size_t errlen)
{
	char what[96];
	struct stat st;

	if (e == ELOOP)
		snprintf(what, sizeof(what), "is a symbolic link");
	else if (fstatat(s->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_uid != getuid())
		snprintf(what, sizeof(what), "belongs to uid %u, not to you (uid %u)",
			 (unsigned)st.st_uid, (unsigned)getuid());
	else
		snprintf(what, sizeof(what), "cannot be opened (%s)", strerror(e));
	file_error(s, name, what, advice, err, errlen);
}

/* fsync of the directory, so a rename or unlink survives a crash. */
static int sync_dir(const struct ps_store *s, char *err, size_t errlen)
{
	if (fsync(s->dirfd) < 0) {
		ps_errf(err, errlen, "cannot sync refresh-token store %s: %s", s->dir,
			strerror(errno));
		return -1;
	}
	return 0;
}

/* Unlink CLIENT+suffix; absent is fine. 1 when removed, 0 when absent, -1 on error. */
static int remove_file(const struct ps_store *s, const char *suffix, char *err, size_t errlen)
{
	char name[NAME_MAX + 1];

	file_name(s, suffix, name);
	if (unlinkat(s->dirfd, name, 0) == 0)
		return 1;
	if (errno == ENOENT)
		return 0;
	file_error(s, name, "cannot be removed", strerror(errno), err, errlen);
	return -1;
}

/* The refresh file open for reading, checked: a regular file of ours, private, not too large. */
static int refresh_open(const struct ps_store *s, int *fdp, char *err, size_t errlen)
{
	char name[NAME_MAX + 1], what[96];
	struct stat st;
	int fd;

	file_name(s, ".refresh", name);
	fd = openat(s->dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return PS_EXIT_NO_TOKEN;
		open_error(s, name, errno, RELOGIN, err, errlen);
		return PS_EXIT_CONFIG;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(what, sizeof(what), "cannot be examined (%s)", strerror(errno));
	} else if (!S_ISREG(st.st_mode)) {
		snprintf(what, sizeof(what), "is not a regular file");
	} else if (st.st_uid != getuid()) {
		snprintf(what, sizeof(what), "belongs to uid %u, not to you (uid %u)",
			 (unsigned)st.st_uid, (unsigned)getuid());
	} else if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		snprintf(what, sizeof(what), "has mode %04o (open to group or others)",
			 (unsigned)(st.st_mode & 07777));
	} else if (st.st_size > STORE_FILE_MAX) {
		snprintf(what, sizeof(what), "is too large (%jd bytes, at most %d)",
			 (intmax_t)st.st_size, STORE_FILE_MAX);
	} else {
		*fdp = fd;
		return PS_EXIT_OK;
	}
	close(fd);
	file_error(s, name, what, RELOGIN, err, errlen);
	return PS_EXIT_CONFIG;
}

/*
 * Check a store file's text: STORE_MAGIC, then 1..PS_REFRESH_TOKEN_MAX bytes of 0x21..0x7e, then
 * one newline and nothing more. NULL with the token's place, or why the text is malformed.
 */
static const char *store_parse(const char *buf, size_t len, const char **tok, size_t *toklen)
{
	const size_t hlen = sizeof(STORE_MAGIC) - 1;
	size_t i;

	if (len == 0)
		return "empty";
	if (memcmp(buf, STORE_MAGIC, len < hlen ? len : hlen) != 0)
		return "unknown header";
	if (len < hlen)
		return "truncated";
	buf += hlen;
	len -= hlen;
	for (i = 0; i < len && buf[i] != '\n'; i++) {
		unsigned char c = (unsigned char)buf[i];

		if (c < 0x21 || c > 0x7e)
			return "the token holds a byte outside printable ASCII";
		if (i == PS_REFRESH_TOKEN_MAX)
			return "the token is longer than 4096 bytes";
	}
	if (i == len)
		return "truncated";
	if (i == 0)
		return "no token";
	if (i + 1 != len)
		return "data after the token";
	*tok = buf;
	*toklen = i;
	return NULL;
}

/* Read fd (at most STORE_FILE_MAX bytes) and copy out the token. */
static int refresh_parse(const struct ps_store *s, int fd, char **token, size_t *len, char *err,
			 size_t errlen)
{
	char buf[STORE_FILE_MAX + 1], name[NAME_MAX + 1], what[96];
	const char *tok = NULL, *why;
	size_t n = 0, toklen = 0;
	int rc = PS_EXIT_CONFIG, r;

	file_name(s, ".refresh", name);
	r = ps_read_all(fd, buf, sizeof(buf), &n);
	if (r < 0) {
		file_error(s, name, "cannot be read", strerror(errno), err, errlen);
		goto out;
	}
	why = r > 0 ? "larger than 8 KiB" : store_parse(buf, n, &tok, &toklen);
	if (why) {
		snprintf(what, sizeof(what), "is malformed (%s)", why);
		file_error(s, name, what, RELOGIN, err, errlen);
		goto out;
	}
	*token = malloc(toklen + 1);
	if (!*token) {
		ps_errf(err, errlen, "out of memory reading the refresh token");
		goto out;
	}
	memcpy(*token, tok, toklen);
	(*token)[toklen] = '\0';
	*len = toklen;
	rc = PS_EXIT_OK;
out:
	explicit_bzero(buf, sizeof(buf));
	return rc;
}

bool ps_store_needs_reauth(struct ps_store *s)
{
	char name[NAME_MAX + 1];
	struct stat st;

	file_name(s, ".reauth", name);
	/* Anything there, or anything but a clean "absent", counts as marked: fail closed. */
	return fstatat(s->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT;
}

int ps_store_read(struct ps_store *s, char **token, size_t *len, char *err, size_t errlen)
{
	int fd = -1, rc;

	*token = NULL;
	*len = 0;
	if (ps_store_needs_reauth(s)) {
		ps_errf(err, errlen, "re-authorization needed: run spotify-token login");
		return PS_EXIT_REAUTH;
	}
	rc = refresh_open(s, &fd, err, errlen);
	if (rc == PS_EXIT_NO_TOKEN)
		ps_errf(err, errlen, "no refresh token in %s: run spotify-token login", s->dir);
	if (rc != PS_EXIT_OK)
		return rc;
	rc = refresh_parse(s, fd, token, len, err, errlen);
	close(fd);
	return rc;
}

/* A new file CLIENT.refresh.XXXXXX (random suffix, O_EXCL, 0600); its name goes to name. */
static int temp_create(const struct ps_store *s, char name[NAME_MAX + 1], char *err, size_t errlen)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
	unsigned char rnd[TMP_RANDOM];
	size_t base, i;
	int tries, fd;

	file_name(s, ".refresh.", name);
	base = strlen(name);
	for (tries = 0; tries < TMP_TRIES; tries++) {
		if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (i = 0; i < TMP_RANDOM; i++)
			name[base + i] = alphabet[rnd[i] % (sizeof(alphabet) - 1)];
		name[base + TMP_RANDOM] = '\0';
		fd = openat(s->dirfd, name,
			    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC, 0600);
		if (fd >= 0)
			return fd;
		if (errno != EEXIST)
			break;
	}
	ps_errf(err, errlen, "cannot create a temporary file in refresh-token store %s: %s", s->dir,
		strerror(errno));
	return -1;
}

/* Write the whole text to a new temporary file and flush it to disk. 0 or -1 (file removed). */
static int temp_write(const struct ps_store *s, const char *text, size_t len,
		      char name[NAME_MAX + 1], char *err, size_t errlen)
{
	int fd = temp_create(s, name, err, errlen);

	if (fd < 0)
		return -1;
	if (ps_write_all(fd, text, len) < 0 || fsync(fd) < 0) {
		ps_errf(err, errlen, "cannot write refresh-token store file %s/%s: %s", s->dir,
			name, strerror(errno));
		close(fd);
		unlinkat(s->dirfd, name, 0);
		return -1;
	}
	if (close(fd) < 0) {
		ps_errf(err, errlen, "cannot write refresh-token store file %s/%s: %s", s->dir,
			name, strerror(errno));
		unlinkat(s->dirfd, name, 0);
		return -1;
	}
	return 0;
}

/* What ps_store_read accepts: 1..PS_REFRESH_TOKEN_MAX bytes of 0x21..0x7e. */
static bool token_storable(const char *token, size_t len)
{
	size_t i;

	if (!token || len == 0 || len > PS_REFRESH_TOKEN_MAX)
		return false;
	for (i = 0; i < len; i++) {
		if ((unsigned char)token[i] < 0x21 || (unsigned char)token[i] > 0x7e)
			return false;
	}
	return true;
}

int ps_store_write(struct ps_store *s, const char *token, size_t len, char *err, size_t errlen)
{
	const size_t hlen = sizeof(STORE_MAGIC) - 1;
	char text[sizeof(STORE_MAGIC) + PS_REFRESH_TOKEN_MAX], tmp[NAME_MAX + 1],
		name[NAME_MAX + 1];
	int rc = PS_EXIT_CONFIG;

	if (!token_storable(token, len)) {
		ps_errf(err, errlen,
			"refusing to store a refresh token of %zu bytes: it must be 1 to %d bytes "
			"of printable ASCII without spaces",
			len, PS_REFRESH_TOKEN_MAX);
		return PS_EXIT_CONFIG;
	}
	memcpy(text, STORE_MAGIC, hlen);
	memcpy(text + hlen, token, len);
	text[hlen + len] = '\n';
	if (temp_write(s, text, hlen + len + 1, tmp, err, errlen) < 0)
		goto out;
	file_name(s, ".refresh", name);
	if (renameat(s->dirfd, tmp, s->dirfd, name) < 0) {
		file_error(s, name, "cannot be replaced", strerror(errno), err, errlen);
		unlinkat(s->dirfd, tmp, 0);
		goto out;
	}
	if (sync_dir(s, err, errlen) < 0)
		goto out;
	switch (remove_file(s, ".reauth", err, errlen)) {
	case 1:
		if (sync_dir(s, err, errlen) < 0)
			goto out;
		break;
	case -1:
		goto out;
	}
	rc = PS_EXIT_OK;
out:
	explicit_bzero(text, sizeof(text));
	return rc;
}

int ps_store_mark_reauth(struct ps_store *s, char *err, size_t errlen)
{
	const int flags =
		O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
	char name[NAME_MAX + 1];
	int fd;

	file_name(s, ".reauth", name);
	fd = openat(s->dirfd, name, flags, 0600);
	if (fd < 0) {
		file_error(s, name, errno == ELOOP ? "is a symbolic link" : "cannot be created",
			   errno == ELOOP ? RELOGIN : strerror(errno), err, errlen);
		return PS_EXIT_CONFIG;
	}
	if (ps_write_all(fd, REAUTH_TEXT, sizeof(REAUTH_TEXT) - 1) < 0 || fsync(fd) < 0) {
		file_error(s, name, "cannot be written", strerror(errno), err, errlen);
		close(fd);
		return PS_EXIT_CONFIG;
	}
	close(fd);
	return sync_dir(s, err, errlen) < 0 ? PS_EXIT_CONFIG : PS_EXIT_OK;
}

/* The lock file stays: removing it would let two processes lock two different files. */
int ps_store_remove(struct ps_store *s, char *err, size_t errlen)
{
	if (remove_file(s, ".refresh", err, errlen) < 0 ||
	    remove_file(s, ".reauth", err, errlen) < 0 || sync_dir(s, err, errlen) < 0)
		return PS_EXIT_CONFIG;
	return PS_EXIT_OK;
}

/* --- the lock */

int ps_store_lock(struct ps_store *s, unsigned timeout_s, char *err, size_t errlen)
{
	const int flags = O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
	char name[NAME_MAX + 1];
	int fd;

	if (s->lockfd >= 0)
		return PS_EXIT_OK;
	file_name(s, ".lock", name);
	fd = openat(s->dirfd, name, flags, 0600);
	if (fd < 0) {
		open_error(s, name, errno, "remove it", err, errlen);
		return PS_EXIT_CONFIG;
	}
	if (ps_flock_within(fd, (long)timeout_s * 1000, NULL) < 0) {
		if (errno == EWOULDBLOCK)
			ps_errf(err, errlen,
				"another login of this user is refreshing the token and did not "
				"finish within %u s",
				timeout_s);
		else
			file_error(s, name, "cannot be locked", strerror(errno), err, errlen);
		close(fd);
		return PS_EXIT_CONFIG;
	}
	s->lockfd = fd;
	return PS_EXIT_OK;
}

void ps_store_unlock(struct ps_store *s)
{
	if (s->lockfd < 0)
		return;
	flock(s->lockfd, LOCK_UN);
	close(s->lockfd);
	s->lockfd = -1;
}
