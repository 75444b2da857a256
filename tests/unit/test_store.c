/*
 * test_store.c: the refresh-token store on a real file system. The directory lands where XDG and
 * HOME say and is created private; tokens round-trip and are replaced atomically with no temporary
 * left behind; the reauth mark, logout and the lock behave; and every hostile or broken store
 * (malformed, oversized, open to others, a link, a file instead of a directory, another owner) is
 * refused with a clear one-line error that never quotes the token and never writes through a link.
 *
 * Each test runs in a fresh temporary directory: $XDG_STATE_HOME is ROOT/state, $HOME is
 * ROOT/home. Wrong-owner cases chown to another uid, so they need root; otherwise they say so and
 * pass.
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/paths.h"
#include "helper/store.h"
#include "common/util.h"

#define CLIENT	  "0123456789abcdef0123456789abcdef"
#define TOKEN	  "AQD-sentinel_REFRESH.token~!#$%&'()*+,/:;<=>?@[]^`{|}\"\\"
#define TOKEN2	  "AQCsecondSENTINELrefresh"
#define MAGIC	  "pam_spotify-refresh 1\n"
#define OTHER_UID 3999973 /* an unused uid for the wrong-owner cases */
#define USER_UID  3999974 /* another, to run as a user for whom root's rules do not bend */

struct fixture {
	char root[64];
	char state[128]; /* $XDG_STATE_HOME */
	char home[128];	 /* $HOME */
	char dir[256];	 /* the store directory under $XDG_STATE_HOME */
	char file[512];	 /* CLIENT.refresh in it */
};

static char saved_home[PATH_MAX], saved_xdg[PATH_MAX];
static bool had_home, had_xdg;

/* --- helpers */

static void save_env(const char *name, char *buf, size_t len, bool *had)
{
	const char *v = getenv(name);

	*had = v != NULL;
	if (v)
		ps_strlcpy(buf, v, len);
}

static void restore_env(const char *name, const char *buf, bool had)
{
	if (had)
		setenv(name, buf, 1);
	else
		unsetenv(name);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Put text (len bytes) in path with mode, replacing what was there. */
static void put_file(const char *path, const char *text, size_t len, mode_t mode)
{
	int fd;

	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	assert_true(fd >= 0);
	assert_int_equal(ps_write_all(fd, text, len), 0);
	assert_int_equal(fchmod(fd, mode), 0);
	assert_int_equal(close(fd), 0);
}

/* The whole of a small file as a string (static buffer); "" when absent. */
static const char *file_text(const char *path)
{
	static char buf[16384];
	size_t n = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	buf[0] = '\0';
	if (fd < 0)
		return buf;
	assert_true(ps_read_all(fd, buf, sizeof(buf) - 1, &n) >= 0);
	close(fd);
	buf[n] = '\0';
	return buf;
}

static bool exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

static int open_store(struct ps_store *s, char *err, size_t errlen)
{
	int rc;

	err[0] = '\0';
	rc = ps_store_open(s, CLIENT, err, errlen);
	if (rc != PS_EXIT_OK)
		print_message("# open: %s\n", err);
	return rc;
}

/* Open the store and write TOKEN. */
static void store_with_token(struct ps_store *s)
{
	char err[PS_ERR_MAX];

	assert_int_equal(open_store(s, err, sizeof(err)), PS_EXIT_OK);
	assert_int_equal(ps_store_write(s, TOKEN, strlen(TOKEN), err, sizeof(err)), PS_EXIT_OK);
}

/* Read refuses: PS_EXIT_CONFIG, one line holding want and the advice, no token, nothing out. */
static void assert_read_refused(struct ps_store *s, const char *want)
{
	char err[PS_ERR_MAX] = "", *tok = (char *)1;
	size_t len = 99;

	assert_int_equal(ps_store_read(s, &tok, &len, err, sizeof(err)), PS_EXIT_CONFIG);
	print_message("# %s\n", err);
	assert_null(tok);
	assert_int_equal(len, 0);
	assert_non_null(strstr(err, want));
	assert_non_null(strstr(err, "refresh-token store file"));
	assert_non_null(strstr(err, ": run spotify-token logout, then spotify-token login"));
	assert_null(strstr(err, "sentinel"));
	assert_null(strstr(err, "SENTINEL"));
	assert_null(strchr(err, '\n'));
}

static void assert_read_token(struct ps_store *s, const char *want)
{
	char err[PS_ERR_MAX] = "", *tok = NULL;
	size_t len = 0;

	assert_int_equal(ps_store_read(s, &tok, &len, err, sizeof(err)), PS_EXIT_OK);
	assert_non_null(tok);
	assert_int_equal(len, strlen(want));
	assert_string_equal(tok, want);
	ps_free_secret(tok, len + 1);
}

/* Names in dir, sorted, joined by ' '. */
static const char *dir_listing(const char *dir)
{
	static char out[1024];
	struct dirent **names;
	struct ps_buf b = {out, sizeof(out), 0, false};
	int n, i;

	out[0] = '\0';
	n = scandir(dir, &names, NULL, alphasort);
	assert_true(n >= 0);
	for (i = 0; i < n; i++) {
		if (strcmp(names[i]->d_name, ".") != 0 && strcmp(names[i]->d_name, "..") != 0)
			ps_buf_printf(&b, "%s%s", b.len ? " " : "", names[i]->d_name);
		free(names[i]);
	}
	free(names);
	return out;
}

/*
 * Not cmocka's skip(): cmocka 1.1.5 prints a skipped test as "not ok N # SKIP", which TAP (and
 * automake's tap-driver) counts as a failure. A test that cannot run says why and passes.
 */
#define SKIP_UNLESS(cond, why)                                                                     \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			print_message("# skipped: %s\n", why);                                     \
			return;                                                                    \
		}                                                                                  \
	} while (0)

/* --- setup */

static int group_setup(void **state)
{
	(void)state;
	save_env("HOME", saved_home, sizeof(saved_home), &had_home);
	save_env("XDG_STATE_HOME", saved_xdg, sizeof(saved_xdg), &had_xdg);
	umask(022);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	restore_env("HOME", saved_home, had_home);
	restore_env("XDG_STATE_HOME", saved_xdg, had_xdg);
	return 0;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	snprintf(f->root, sizeof(f->root), "/tmp/ps_store.XXXXXX");
	if (!mkdtemp(f->root)) {
		free(f);
		return -1;
	}
	snprintf(f->state, sizeof(f->state), "%s/state", f->root);
	snprintf(f->home, sizeof(f->home), "%s/home", f->root);
	snprintf(f->dir, sizeof(f->dir), "%s/spotify-token", f->state);
	snprintf(f->file, sizeof(f->file), "%s/" CLIENT ".refresh", f->dir);
	if (mkdir(f->state, 0700) < 0 || mkdir(f->home, 0700) < 0 ||
	    setenv("XDG_STATE_HOME", f->state, 1) < 0 || setenv("HOME", f->home, 1) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int rc;

	rc = nftw(f->root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return rc;
}

/* --- where the store lives */

static void test_dir_follows_xdg_state_home(void **state)
{
	struct fixture *f = *state;
	char dir[PATH_MAX];

	assert_int_equal(ps_store_dir(dir, sizeof(dir)), 0);
	assert_string_equal(dir, f->dir);
	assert_int_equal(ps_store_dir(dir, 10), -1);
}

static void test_relative_xdg_state_home_ignored(void **state)
{
	static const char *const ignored[] = {"relative/state", "", "./state"};
	struct fixture *f = *state;
	char dir[PATH_MAX], want[PATH_MAX], err[PS_ERR_MAX];
	struct ps_store s;
	struct stat st;
	size_t i;

	snprintf(want, sizeof(want), "%s/.local/state/spotify-token", f->home);
	for (i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++) {
		setenv("XDG_STATE_HOME", ignored[i], 1);
		assert_int_equal(ps_store_dir(dir, sizeof(dir)), 0);
		assert_string_equal(dir, want);
	}
	assert_int_equal(open_store(&s, err, sizeof(err)), PS_EXIT_OK);
	assert_string_equal(s.dir, want);
	ps_store_close(&s);
	assert_int_equal(lstat(want, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_false(exists("relative")); /* nothing made relative to the working directory */
}

static void test_home_from_password_database(void **state)
{
	struct passwd *pw = getpwuid(getuid());
	char dir[PATH_MAX], want[PATH_MAX];

	(void)state;
	SKIP_UNLESS(pw && pw->pw_dir && pw->pw_dir[0] == '/', "no home in the password database");
	snprintf(want, sizeof(want), "%s%s.local/state/spotify-token", pw->pw_dir,
		 strcmp(pw->pw_dir, "/") == 0 ? "" : "/");
	unsetenv("XDG_STATE_HOME");
	unsetenv("HOME");
	assert_int_equal(ps_store_dir(dir, sizeof(dir)), 0);
	assert_string_equal(dir, want);
	setenv("HOME", "not/absolute", 1);
	assert_int_equal(ps_store_dir(dir, sizeof(dir)), 0);
	assert_string_equal(dir, want);
}

static void test_open_creates_private_dir(void **state)
{
	struct fixture *f = *state;
	char err[PS_ERR_MAX], dir[PATH_MAX], slash[PATH_MAX + 2];
	struct ps_store s;
	struct stat st;

	assert_int_equal(open_store(&s, err, sizeof(err)), PS_EXIT_OK);
	assert_string_equal(s.dir, f->dir);
	assert_string_equal(s.client_id, CLIENT);
	assert_true(s.dirfd >= 0);
	assert_int_equal(s.lockfd, -1);
	ps_store_close(&s);
	assert_int_equal(s.dirfd, -1);
	assert_int_equal(lstat(f->dir, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_int_equal(st.st_uid, getuid());
	/* opening again finds it */
	assert_int_equal(open_store(&s, err, sizeof(err)), PS_EXIT_OK);
	ps_store_close(&s);
	/* a missing $XDG_STATE_HOME is created 0700; a trailing slash does not double */
	snprintf(dir, sizeof(dir), "%s/new-state", f->root);
	snprintf(slash, sizeof(slash), "%s/", dir);
	setenv("XDG_STATE_HOME", slash, 1);
	assert_int_equal(open_store(&s, err, sizeof(err)), PS_EXIT_OK);
	assert_int_equal(lstat(dir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_int_equal(strncmp(s.dir, dir, strlen(dir)), 0);
	assert_string_equal(s.dir + strlen(dir), "/spotify-token");
	ps_store_close(&s);
}

static void test_home_path_created_private(void **state)
{
	struct fixture *f = *state;
	char err[PS_ERR_MAX], path[PATH_MAX];
	struct ps_store s;
	struct stat st;

	unsetenv("XDG_STATE_HOME");
	assert_int_equal(open_store(&s, err, sizeof(err)), PS_EXIT_OK);
	ps_store_close(&s);
	snprintf(path, sizeof(path), "%s/.local", f->home);
	assert_int_equal(lstat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	snprintf(path, sizeof(path), "%s/.local/state", f->home);
	assert_int_equal(lstat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	/* an existing parent keeps its mode: the store never chmods what it did not create */
	assert_int_equal(chmod(path, 0755), 0);
	assert_int_equal(open_store(&s, err, sizeof(err)), PS_EXIT_OK);
	ps_store_close(&s);
	assert_int_equal(lstat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0755);
}

/* --- tokens */

static void test_write_read_round_trip(void **state)
{
	struct fixture *f = *state;
	struct ps_store s;
	struct stat st;

	store_with_token(&s);
	assert_read_token(&s, TOKEN);
	assert_string_equal(file_text(f->file), MAGIC TOKEN "\n");
	assert_int_equal(lstat(f->file, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);
	ps_store_close(&s);
}

static void test_longest_token_round_trip(void **state)
{
	char token[PS_REFRESH_TOKEN_MAX + 2], err[PS_ERR_MAX];
	struct ps_store s;

	(void)state;
	memset(token, 'x', sizeof(token) - 1);
	token[PS_REFRESH_TOKEN_MAX] = '\0';
	assert_int_equal(open_store(&s, err, sizeof(err)), PS_EXIT_OK);
	assert_int_equal(ps_store_write(&s, token, PS_REFRESH_TOKEN_MAX, err, sizeof(err)),
			 PS_EXIT_OK);
	assert_read_token(&s, token);
	ps_store_close(&s);
}

static void test_rewrite_is_atomic(void **state)
{
	struct fixture *f = *state;
	char err[PS_ERR_MAX], old[256];
	struct ps_store s;
	struct stat before, after;
	size_t n = 0;
	int fd, i;

	store_with_token(&s);
	assert_int_equal(lstat(f->file, &before), 0);
	fd = open(f->file, O_RDONLY | O_CLOEXEC); /* a reader in the middle of reading */
	assert_true(fd >= 0);
	for (i = 0; i < 20; i++) {
		const char *t = i % 2 ? TOKEN : TOKEN2;

		assert_int_equal(ps_store_write(&s, t, strlen(t), err, sizeof(err)), PS_EXIT_OK);
		assert_read_token(&s, t);
	}
	/* the file was replaced by rename, not rewritten: the reader still sees the old whole */
	assert_int_equal(lstat(f->file, &after), 0);
	assert_true(before.st_ino != after.st_ino);
	assert_int_equal(ps_read_all(fd, old, sizeof(old) - 1, &n), 0);
	old[n] = '\0';
	assert_string_equal(old, MAGIC TOKEN "\n");
	close(fd);
	/* no temporary file is left behind */
	assert_string_equal(dir_listing(f->dir), CLIENT ".refresh");
	ps_store_close(&s);
}

static void test_read_missing_is_no_token(void **state)
{
	char err[PS_ERR_MAX] = "", *tok = (char *)1;
	struct ps_store s;
	size_t len = 9;

	(void)state;
	assert_int_equal(open_store(&s, err, sizeof(err)), PS_EXIT_OK);
	assert_int_equal(ps_store_read(&s, &tok, &len, err, sizeof(err)), PS_EXIT_NO_TOKEN);
	assert_null(tok);
	assert_int_equal(len, 0);
	assert_non_null(strstr(err, "spotify-token login"));
	assert_false(ps_store_needs_reauth(&s));
	ps_store_close(&s);
}

static void test_write_refuses_bad_tokens(void **state)
{
	static const char *const bad[] = {"",	   "has space", "new\nline",
					  "tab\t", "del\x7f",	"high\xc3\xa9"};
	struct fixture *f = *state;
	char err[PS_ERR_MAX], big[PS_REFRESH_TOKEN_MAX + 2];
	struct ps_store s;
	size_t i;

	assert_int_equal(open_store(&s, err, sizeof(err)), PS_EXIT_OK);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(ps_store_write(&s, bad[i], strlen(bad[i]), err, sizeof(err)),
				 PS_EXIT_CONFIG);
		assert_non_null(strstr(err, "refusing to store"));
	}
	assert_int_equal(ps_store_write(&s, "nul\0inside", 10, err, sizeof(err)), PS_EXIT_CONFIG);
	memset(big, 'x', sizeof(big));
	assert_int_equal(ps_store_write(&s, big, PS_REFRESH_TOKEN_MAX + 1, err, sizeof(err)),
			 PS_EXIT_CONFIG);
	assert_int_equal(ps_store_write(&s, NULL, 0, err, sizeof(err)), PS_EXIT_CONFIG);
	assert_false(exists(f->file));
	assert_string_equal(dir_listing(f->dir), "");
	ps_store_close(&s);
}

/* --- reauth, logout, lock */

static void test_reauth_mark(void **state)
{
	struct fixture *f = *state;
	char err[PS_ERR_MAX] = "", *tok = (char *)1, mark[PATH_MAX];
	struct ps_store s;
	struct stat st;
	size_t len = 9;

	store_with_token(&s);
	assert_false(ps_store_needs_reauth(&s));
	assert_int_equal(ps_store_mark_reauth(&s, err, sizeof(err)), PS_EXIT_OK);
	assert_true(ps_store_needs_reauth(&s));
	snprintf(mark, sizeof(mark), "%s/" CLIENT ".reauth", f->dir);
	assert_int_equal(lstat(mark, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	/* marking twice is fine */
	assert_int_equal(ps_store_mark_reauth(&s, err, sizeof(err)), PS_EXIT_OK);
	assert_int_equal(ps_store_read(&s, &tok, &len, err, sizeof(err)), PS_EXIT_REAUTH);
	assert_null(tok);
	assert_int_equal(len, 0);
	assert_string_equal(err, "re-authorization needed: run spotify-token login");
	/* the token is kept for inspection */
	assert_string_equal(file_text(f->file), MAGIC TOKEN "\n");
	/* a new token clears the mark */
	assert_int_equal(ps_store_write(&s, TOKEN2, strlen(TOKEN2), err, sizeof(err)), PS_EXIT_OK);
	assert_false(ps_store_needs_reauth(&s));
	assert_false(exists(mark));
	assert_read_token(&s, TOKEN2);
	ps_store_close(&s);
}

static void test_remove(void **state)
{
	struct fixture *f = *state;
	char err[PS_ERR_MAX] = "", *tok = NULL;
	struct ps_store s;
	size_t len;

	store_with_token(&s);
	assert_int_equal(ps_store_mark_reauth(&s, err, sizeof(err)), PS_EXIT_OK);
	assert_int_equal(ps_store_remove(&s, err, sizeof(err)), PS_EXIT_OK);
	assert_false(ps_store_needs_reauth(&s));
	assert_int_equal(ps_store_read(&s, &tok, &len, err, sizeof(err)), PS_EXIT_NO_TOKEN);
	assert_string_equal(dir_listing(f->dir), "");
	/* absent files are fine */
	assert_int_equal(ps_store_remove(&s, err, sizeof(err)), PS_EXIT_OK);
	ps_store_close(&s);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_lock_is_exclusive(void **state)
{
	struct fixture *f = *state;
	char err[PS_ERR_MAX] = "", lock[PATH_MAX];
	struct ps_store a, b;
	struct stat st;
	double t;

	assert_int_equal(open_store(&a, err, sizeof(err)), PS_EXIT_OK);
	assert_int_equal(open_store(&b, err, sizeof(err)), PS_EXIT_OK);
	assert_int_equal(ps_store_lock(&a, 1, err, sizeof(err)), PS_EXIT_OK);
	assert_int_equal(ps_store_lock(&a, 1, err, sizeof(err)), PS_EXIT_OK); /* held: no-op */
	snprintf(lock, sizeof(lock), "%s/" CLIENT ".lock", f->dir);
	assert_int_equal(lstat(lock, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	t = now_s();
	assert_int_equal(ps_store_lock(&b, 1, err, sizeof(err)), PS_EXIT_CONFIG);
	t = now_s() - t;
	print_message("# waited %.2f s: %s\n", t, err);
	assert_true(t >= 0.95 && t < 2.0);
	assert_string_equal(err, "another login of this user is refreshing the token and did not "
				 "finish within 1 s");
	assert_int_equal(b.lockfd, -1);
	/* a zero timeout tries once */
	t = now_s();
	assert_int_equal(ps_store_lock(&b, 0, err, sizeof(err)), PS_EXIT_CONFIG);
	assert_true(now_s() - t < 0.5);
	/* unlock hands it over */
	ps_store_unlock(&a);
	assert_int_equal(ps_store_lock(&b, 1, err, sizeof(err)), PS_EXIT_OK);
	assert_int_equal(ps_store_lock(&a, 0, err, sizeof(err)), PS_EXIT_CONFIG);
	/* close releases it */
	ps_store_close(&b);
	assert_int_equal(ps_store_lock(&a, 0, err, sizeof(err)), PS_EXIT_OK);
	ps_store_close(&a);
	assert_int_equal(a.lockfd, -1);
}

/* ps_flock_within, which the store, the module's warm path and its host lock share. */
static void test_flock_within(void **state)
{
	struct fixture *f = *state;
	char path[PATH_MAX];
	bool waited = true;
	int a, b, go[2];
	double t;
	pid_t pid;

	snprintf(path, sizeof(path), "%s/flock", f->root);
	a = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	b = open(path, O_RDWR | O_CLOEXEC);
	assert_true(a >= 0 && b >= 0);
	/* free: taken at once, no wait */
	assert_int_equal(ps_flock_within(a, 0, &waited), 0);
	assert_false(waited);
	/* held by another open file: EWOULDBLOCK after the wait, and it says it waited */
	t = now_s();
	errno = 0;
	assert_int_equal(ps_flock_within(b, 200, &waited), -1);
	t = now_s() - t;
	assert_int_equal(errno, EWOULDBLOCK);
	assert_true(waited);
	assert_true(t >= 0.19 && t < 1.0);
	/* a zero wait tries once and does not wait */
	assert_int_equal(ps_flock_within(b, 0, &waited), -1);
	assert_int_equal(errno, EWOULDBLOCK);
	assert_false(waited);
	/* released while it waits: taken soon after, long before the wait ends */
	assert_int_equal(pipe(go), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char c;

		close(go[1]);
		(void)read(go[0], &c, 1);
		usleep(150000);
		_exit(0); /* closes a: the lock goes */
	}
	close(go[0]);
	close(a); /* the child's copy holds it now */
	close(go[1]);
	t = now_s();
	assert_int_equal(ps_flock_within(b, 5000, &waited), 0);
	t = now_s() - t;
	print_message("# released after 150 ms: taken after %.0f ms\n", t * 1000);
	assert_true(waited);
	assert_true(t >= 0.14 && t < 1.0);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	close(b);
	/* not a descriptor: flock's own error, at once */
	assert_int_equal(ps_flock_within(-1, 1000, NULL), -1);
	assert_int_equal(errno, EBADF);
	unlink(path);
}

/* --- hostile and broken stores */

static void test_malformed_files_refused(void **state)
{
	static char big[1024 * 1024];
	char longtok[sizeof(MAGIC) + PS_REFRESH_TOKEN_MAX + 2];
	const struct {
		const char *text;
		size_t len;
		const char *why;
	} cases[] = {
		{"pam_spotify-ref", 15, "truncated"},
		{MAGIC "AQDsentinel", sizeof(MAGIC) - 1 + 11, "truncated"},
		{"", 0, "empty"},
		{big, sizeof(big), "too large"},
		{"pam_spotify-refresh 2\nAQDsentinel\n", 34, "unknown header"},
		{"garbage\n", 8, "unknown header"},
		{"{\"refresh_token\":\"AQDsentinel\"}\n", 32, "unknown header"},
		{MAGIC "AQD\0sentinel\n", sizeof(MAGIC) - 1 + 13, "printable ASCII"},
		{MAGIC "AQD sentinel\n", sizeof(MAGIC) - 1 + 13, "printable ASCII"},
		{MAGIC "AQDsentinel\r\n", sizeof(MAGIC) - 1 + 13, "printable ASCII"},
		{MAGIC "\n", sizeof(MAGIC), "no token"},
		{MAGIC "AQDsentinel\nAQDsentinel\n", sizeof(MAGIC) - 1 + 24,
		 "data after the token"},
		{MAGIC "AQDsentinel\n\n", sizeof(MAGIC) - 1 + 13, "data after the token"},
		{"pam_spotify-refresh 1\r\nAQDsentinel\n", 35, "unknown header"},
		{longtok, sizeof(longtok) - 1, "longer than 4096"},
	};
	struct fixture *f = *state;
	char err[PS_ERR_MAX];
	struct ps_store s;
	size_t i;

	memset(big, 'A', sizeof(big));
	memcpy(big, MAGIC, sizeof(MAGIC) - 1);
	big[sizeof(big) - 1] = '\n';
	memcpy(longtok, MAGIC, sizeof(MAGIC) - 1);
	memset(longtok + sizeof(MAGIC) - 1, 's', PS_REFRESH_TOKEN_MAX + 1);
	longtok[sizeof(longtok) - 2] = '\n';
	longtok[sizeof(longtok) - 1] = '\0';
	assert_int_equal(open_store(&s, err, sizeof(err)), PS_EXIT_OK);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		put_file(f->file, cases[i].text, cases[i].len, 0600);
		assert_read_refused(&s, cases[i].why);
	}
	/* logout clears a malformed store, then login can write again */
	assert_int_equal(ps_store_remove(&s, err, sizeof(err)), PS_EXIT_OK);
	assert_int_equal(ps_store_write(&s, TOKEN, strlen(TOKEN), err, sizeof(err)), PS_EXIT_OK);
	assert_read_token(&s, TOKEN);
	ps_store_close(&s);
}

static void test_file_open_to_others_refused(void **state)
{
	struct fixture *f = *state;
	struct ps_store s;

	store_with_token(&s);
	assert_int_equal(chmod(f->file, 0644), 0);
	assert_read_refused(&s, "has mode 0644");
	assert_int_equal(chmod(f->file, 0620), 0);
	assert_read_refused(&s, "has mode 0620");
	assert_int_equal(chmod(f->file, 0400), 0); /* stricter is fine */
	assert_read_token(&s, TOKEN);
	ps_store_close(&s);
}

static void test_not_a_regular_file_refused(void **state)
{
	struct fixture *f = *state;
	char err[PS_ERR_MAX];
	struct ps_store s;

	assert_int_equal(open_store(&s, err, sizeof(err)), PS_EXIT_OK);
	assert_int_equal(mkfifo(f->file, 0600), 0); /* would block a plain open */
	assert_read_refused(&s, "is not a regular file");
	unlink(f->file);
	assert_int_equal(mkdir(f->file, 0700), 0);
	assert_read_refused(&s, "is not a regular file");
	assert_int_equal(ps_store_write(&s, TOKEN, strlen(TOKEN), err, sizeof(err)),
			 PS_EXIT_CONFIG);
	print_message("# %s\n", err);
	assert_non_null(strstr(err, "cannot be replaced"));
	assert_string_equal(dir_listing(f->dir), CLIENT ".refresh"); /* the temp file is gone */
	ps_store_close(&s);
}

static void test_symlinked_files_never_followed(void **state)
{
	static const char target_text[] = MAGIC "AQDtargetSENTINEL\n";
	struct fixture *f = *state;
	char err[PS_ERR_MAX], target[PATH_MAX], mark[PATH_MAX], lock[PATH_MAX], absent[PATH_MAX];
	struct ps_store s;
	struct stat st;

	snprintf(target, sizeof(target), "%s/target", f->root);
	snprintf(absent, sizeof(absent), "%s/absent", f->root);
	snprintf(mark, sizeof(mark), "%s/" CLIENT ".reauth", f->dir);
	snprintf(lock, sizeof(lock), "%s/" CLIENT ".lock", f->dir);
	put_file(target, target_text, sizeof(target_text) - 1, 0600);
	assert_int_equal(open_store(&s, err, sizeof(err)), PS_EXIT_OK);
	/* a link to a well-formed file is refused, not read */
	assert_int_equal(symlink(target, f->file), 0);
	assert_read_refused(&s, "is a symbolic link");
	/* a write replaces the link; the target is unchanged */
	assert_int_equal(ps_store_write(&s, TOKEN, strlen(TOKEN), err, sizeof(err)), PS_EXIT_OK);
	assert_string_equal(file_text(target), target_text);
	assert_int_equal(lstat(f->file, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_read_token(&s, TOKEN);
	/* the mark and the lock are never created through a link, dangling or not */
	assert_int_equal(symlink(absent, mark), 0);
	assert_int_equal(ps_store_mark_reauth(&s, err, sizeof(err)), PS_EXIT_CONFIG);
	assert_non_null(strstr(err, "is a symbolic link"));
	assert_false(exists(absent));
	unlink(mark);
	assert_int_equal(symlink(target, mark), 0);
	assert_int_equal(ps_store_mark_reauth(&s, err, sizeof(err)), PS_EXIT_CONFIG);
	assert_string_equal(file_text(target), target_text);
	unlink(mark);
	assert_int_equal(symlink(absent, lock), 0);
	assert_int_equal(ps_store_lock(&s, 0, err, sizeof(err)), PS_EXIT_CONFIG);
	assert_non_null(strstr(err, "is a symbolic link"));
	assert_false(exists(absent));
	/* logout removes links, not what they point at */
	assert_int_equal(symlink(target, mark), 0);
	assert_int_equal(ps_store_remove(&s, err, sizeof(err)), PS_EXIT_OK);
	assert_false(exists(mark));
	assert_string_equal(file_text(target), target_text);
	ps_store_close(&s);
}

static void assert_open_refused(const char *want)
{
	char err[PS_ERR_MAX] = "";
	struct ps_store s;

	assert_int_equal(ps_store_open(&s, CLIENT, err, sizeof(err)), PS_EXIT_CONFIG);
	print_message("# %s\n", err);
	assert_non_null(strstr(err, want));
	assert_null(strchr(err, '\n'));
	assert_int_equal(s.dirfd, -1);
	ps_store_close(&s); /* harmless after a failed open */
}

static void test_dir_replaced_by_file(void **state)
{
	struct fixture *f = *state;
	char path[PATH_MAX];

	put_file(f->dir, "x", 1, 0600);
	assert_open_refused("is not a directory");
	/* the same for a parent under $HOME */
	unsetenv("XDG_STATE_HOME");
	snprintf(path, sizeof(path), "%s/.local", f->home);
	put_file(path, "x", 1, 0600);
	assert_open_refused("/.local is not a directory");
}

static void test_dir_symlinks_never_followed(void **state)
{
	struct fixture *f = *state;
	char path[PATH_MAX], elsewhere[PATH_MAX], err[PS_ERR_MAX];
	struct ps_store s;

	snprintf(elsewhere, sizeof(elsewhere), "%s/elsewhere", f->root);
	assert_int_equal(mkdir(elsewhere, 0700), 0);
	/* the store directory itself as a link to a private directory */
	assert_int_equal(symlink(elsewhere, f->dir), 0);
	assert_open_refused("is a symbolic link");
	/* a link as a parent below $HOME: nothing is created through it */
	unsetenv("XDG_STATE_HOME");
	snprintf(path, sizeof(path), "%s/.local", f->home);
	assert_int_equal(symlink(elsewhere, path), 0);
	assert_open_refused("/.local is a symbolic link");
	assert_string_equal(dir_listing(elsewhere), "");
	/* the base itself may be a link */
	unlink(path);
	snprintf(path, sizeof(path), "%s/state-link", f->root);
	assert_int_equal(symlink(elsewhere, path), 0);
	setenv("XDG_STATE_HOME", path, 1);
	assert_int_equal(open_store(&s, err, sizeof(err)), PS_EXIT_OK);
	ps_store_close(&s);
	assert_string_equal(dir_listing(elsewhere), "spotify-token");
}

static void test_dir_open_to_others_refused(void **state)
{
	struct fixture *f = *state;
	char want[PATH_MAX * 2];

	assert_int_equal(mkdir(f->dir, 0700), 0);
	assert_int_equal(chmod(f->dir, 0755), 0);
	snprintf(want, sizeof(want), "refresh-token store %s has mode 0755: run chmod 700 %s",
		 f->dir, f->dir);
	assert_open_refused(want);
	assert_int_equal(chmod(f->dir, 0710), 0);
	assert_open_refused("has mode 0710");
}

static void test_bad_client_id_refused(void **state)
{
	static const char *const bad[] = {"../x", ".hidden", "a/b",	    "",	    ".", "..",
					  "a b",  "a\nb",    "caf\xc3\xa9", "a%2fb"};
	static const char *const good[] = {"a", "0123abcdef", "a.b-c_d~e", "a..b", "x."};
	struct fixture *f = *state;
	char err[PS_ERR_MAX], id[PS_CLIENT_ID_MAX];
	struct ps_store s;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(ps_store_open(&s, bad[i], err, sizeof(err)), PS_EXIT_CONFIG);
		assert_non_null(strstr(err, "client_id"));
		assert_int_equal(s.dirfd, -1);
	}
	assert_int_equal(ps_store_open(&s, NULL, err, sizeof(err)), PS_EXIT_CONFIG);
	assert_false(exists(f->dir)); /* refused before anything is created */
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		assert_int_equal(ps_store_open(&s, good[i], err, sizeof(err)), PS_EXIT_OK);
		assert_int_equal(ps_store_write(&s, TOKEN, strlen(TOKEN), err, sizeof(err)),
				 PS_EXIT_OK);
		ps_store_close(&s);
	}
	/* the longest ID still names its temporary file (NAME_MAX) */
	memset(id, 'i', sizeof(id));
	id[240] = '\0';
	assert_int_equal(ps_store_open(&s, id, err, sizeof(err)), PS_EXIT_OK);
	assert_int_equal(ps_store_write(&s, TOKEN, strlen(TOKEN), err, sizeof(err)), PS_EXIT_OK);
	assert_int_equal(ps_store_lock(&s, 0, err, sizeof(err)), PS_EXIT_OK);
	assert_int_equal(ps_store_mark_reauth(&s, err, sizeof(err)), PS_EXIT_OK);
	ps_store_close(&s);
	id[240] = 'i';
	id[241] = '\0';
	assert_int_equal(ps_store_open(&s, id, err, sizeof(err)), PS_EXIT_CONFIG);
}

static void test_wrong_owner_refused(void **state)
{
	struct fixture *f = *state;
	char err[PS_ERR_MAX];
	struct ps_store s;

	SKIP_UNLESS(geteuid() == 0, "needs root");
	store_with_token(&s);
	assert_int_equal(chown(f->file, OTHER_UID, OTHER_UID), 0);
	assert_read_refused(&s, "belongs to uid 3999973");
	ps_store_close(&s);
	assert_int_equal(chown(f->dir, OTHER_UID, OTHER_UID), 0);
	assert_open_refused("belongs to uid 3999973");
	/* a parent of another owner does not matter: the store directory is what must be ours */
	assert_int_equal(chown(f->dir, getuid(), getgid()), 0);
	assert_int_equal(chown(f->state, OTHER_UID, OTHER_UID), 0);
	assert_int_equal(open_store(&s, err, sizeof(err)), PS_EXIT_OK);
	ps_store_close(&s);
}

/*
 * As a plain user, a refresh file or lock of another owner cannot even be opened (root could):
 * the message still names the owner and says what to do, not just "Permission denied".
 */
static void test_other_owner_unopenable_as_user(void **state)
{
	struct fixture *f = *state;
	char lock[PATH_MAX];
	int status;
	pid_t pid;

	SKIP_UNLESS(geteuid() == 0, "needs root (to become a plain user)");
	snprintf(lock, sizeof(lock), "%s/" CLIENT ".lock", f->dir);
	assert_int_equal(mkdir(f->dir, 0700), 0);
	put_file(f->file, MAGIC "AQDsentinel\n", sizeof(MAGIC) + 11, 0600);
	put_file(lock, "", 0, 0600);
	assert_int_equal(chown(f->root, USER_UID, USER_UID), 0);
	assert_int_equal(chown(f->state, USER_UID, USER_UID), 0);
	assert_int_equal(chown(f->dir, USER_UID, USER_UID), 0);
	assert_int_equal(chown(f->file, OTHER_UID, OTHER_UID), 0);
	assert_int_equal(chown(lock, OTHER_UID, OTHER_UID), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char err[PS_ERR_MAX] = "", *tok = NULL;
		struct ps_store s;
		size_t len = 0;

		if (setgroups(0, NULL) < 0 || setresgid(USER_UID, USER_UID, USER_UID) < 0 ||
		    setresuid(USER_UID, USER_UID, USER_UID) < 0)
			_exit(10);
		if (ps_store_open(&s, CLIENT, err, sizeof(err)) != PS_EXIT_OK)
			_exit(11);
		if (ps_store_read(&s, &tok, &len, err, sizeof(err)) != PS_EXIT_CONFIG ||
		    !strstr(err,
			    CLIENT ".refresh belongs to uid 3999973, not to you (uid 3999974): "
				   "run spotify-token logout, then spotify-token login"))
			_exit(12);
		if (ps_store_lock(&s, 0, err, sizeof(err)) != PS_EXIT_CONFIG ||
		    !strstr(err, CLIENT ".lock belongs to uid 3999973, not to you (uid 3999974): "
					"remove it"))
			_exit(13);
		/* logout can remove them: the directory is the user's */
		if (ps_store_remove(&s, err, sizeof(err)) != PS_EXIT_OK)
			_exit(14);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_false(exists(f->file));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
		T(test_dir_follows_xdg_state_home),
		T(test_relative_xdg_state_home_ignored),
		T(test_home_from_password_database),
		T(test_open_creates_private_dir),
		T(test_home_path_created_private),
		T(test_write_read_round_trip),
		T(test_longest_token_round_trip),
		T(test_rewrite_is_atomic),
		T(test_read_missing_is_no_token),
		T(test_write_refuses_bad_tokens),
		T(test_reauth_mark),
		T(test_remove),
		T(test_lock_is_exclusive),
		T(test_flock_within),
		T(test_malformed_files_refused),
		T(test_file_open_to_others_refused),
		T(test_not_a_regular_file_refused),
		T(test_symlinked_files_never_followed),
		T(test_dir_replaced_by_file),
		T(test_dir_symlinks_never_followed),
		T(test_dir_open_to_others_refused),
		T(test_bad_client_id_refused),
		T(test_wrong_owner_refused),
		T(test_other_owner_unopenable_as_user),
#undef T
	};

	return cmocka_run_group_tests_name("store", tests, group_setup, group_teardown);
}
