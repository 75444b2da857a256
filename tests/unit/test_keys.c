/*
 * test_keys.c: the keyring contract against the real kernel keyring. Stored keys carry exactly
 * PS_KEY_PERM and a timeout, update in place, can be stored and read by a process that does not
 * possess the user keyring, are removed, and each failure gets its own advice.
 *
 * Isolation: the group setup moves into a new user namespace when the kernel allows it, which
 * gives this process a user keyring (and persistent keyring) of its own, then joins a fresh
 * anonymous session keyring, which does not link the user keyring. Without a user namespace the
 * tests use the real user keyring, holding /tmp/pam_spotify-tests.lock (the shell tests that
 * plant keys take it too), and skip when it already holds a Spotify token.
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <keyutils.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "keyring/keys.h"
#include "keyring/token_info.h"
#include "common/util.h"

#define TOKEN  "BQD-test_token.1~+/=="
#define TOKEN2 "BQD-second-token"
#define INFO                                                                                       \
	"{\"token_type\":\"Bearer\",\"scope\":\"\",\"expires_at\":1,\"flow\":\"x\",\"client_id\":" \
	"\"y\"}"
#define PROBE_ID    3999971 /* an unused uid for the quota probe */
#define LEAK_ID	    3999972 /* and another for the leak probe */
#define LEAK_CYCLES 100

static bool isolated;	/* in a user namespace of our own */
static bool user_ok;	/* the user and persistent keyrings are ours to use */
static bool persist_ok; /* the kernel has persistent keyrings */
static bool quota_ran;	/* the EDQUOT probe ran (as root, before isolating) */
static int quota_rc;
static char quota_err[PS_ERR_MAX];
static bool leak_ran; /* the quota leak probe ran (as root, before isolating) */
static int leak_rc;
static long leak_before, leak_after;
static char leak_err[PS_ERR_MAX + 64];

/* --- helpers */

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	int rc;

	if (fd < 0)
		return -1;
	rc = ps_write_all(fd, text, strlen(text));
	close(fd);
	return rc;
}

/* A user namespace mapping just our own uid and gid: a user keyring nobody else touches. */
static bool isolate(void)
{
	char map[64];
	uid_t uid = getuid();
	gid_t gid = getgid();

	if (unshare(CLONE_NEWUSER) < 0)
		return false;
	snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)uid, (unsigned)uid);
	if (write_file("/proc/self/uid_map", map) < 0)
		return false;
	(void)write_file("/proc/self/setgroups", "deny\n");
	snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)gid, (unsigned)gid);
	return write_file("/proc/self/gid_map", map) == 0;
}

/* The permission mask of a key, from keyctl_describe ("type;uid;gid;perm;description"). */
static unsigned long key_perm(key_serial_t id)
{
	char *desc, *p;
	unsigned long perm;

	assert_true(keyctl_describe_alloc(id, &desc) > 0);
	p = strchr(desc, ';');
	assert_non_null(p);
	p = strchr(p + 1, ';');
	assert_non_null(p);
	p = strchr(p + 1, ';');
	assert_non_null(p);
	perm = strtoul(p + 1, NULL, 16);
	free(desc);
	return perm;
}

static key_serial_t find(key_serial_t ring, const char *name)
{
	long id = keyctl_search(ring, "user", name, 0);

	if (id < 0)
		fail_msg("%s not found: %s", name, strerror(errno));
	return (key_serial_t)id;
}

static void assert_payload(key_serial_t id, const char *want)
{
	char buf[PS_TOKEN_INFO_MAX];
	long n = keyctl_read(id, buf, sizeof(buf));

	assert_int_equal(n, strlen(want));
	assert_memory_equal(buf, want, strlen(want));
}

/* How many `user` keys called name ring links directly. */
static int count_in(key_serial_t ring, const char *name)
{
	key_serial_t *ids;
	long n, i;
	int count = 0;
	char want[128];

	snprintf(want, sizeof(want), ";%s", name);
	n = keyctl_read_alloc(ring, (void **)&ids);
	assert_true(n >= 0);
	for (i = 0; i < n / (long)sizeof(*ids); i++) {
		char *desc;
		size_t len;

		if (keyctl_describe_alloc(ids[i], &desc) < 0)
			continue;
		len = strlen(desc);
		if (strncmp(desc, "user;", 5) == 0 && len > strlen(want) &&
		    strcmp(desc + len - strlen(want), want) == 0)
			count++;
		free(desc);
	}
	free(ids);
	return count;
}

/* Whether ring links the user keyring directly. */
static bool links_user_keyring(key_serial_t ring)
{
	key_serial_t u = keyctl_get_keyring_ID(KEY_SPEC_USER_KEYRING, 1), *ids;
	long n, i;
	bool found = false;

	n = keyctl_read_alloc(ring, (void **)&ids);
	if (n < 0)
		return false;
	for (i = 0; i < n / (long)sizeof(*ids); i++)
		found |= ids[i] == u;
	free(ids);
	return found;
}

/* Gone for sure, even when expired (add_key updates and revives it in place, then unlink). */
static void purge(key_serial_t ring, const char *name)
{
	key_serial_t id = add_key("user", name, "-", 1, ring);

	if (id >= 0)
		keyctl_unlink(id, ring);
}

static int store(enum ps_keyring where, const char *token, unsigned timeout)
{
	char err[PS_ERR_MAX] = "";
	int rc = ps_keys_store(where, token, strlen(token), INFO, timeout, err, sizeof(err));

	if (rc != PS_EXIT_OK)
		print_message("# store: %s\n", err);
	return rc;
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

#define NEED_USER_KEYRING() SKIP_UNLESS(user_ok, "the user keyring already holds a Spotify token")

/* --- the quota probe: a child as an unused uid fills its quota, then stores */

static void quota_child(int fd)
{
	static char big[1000];
	char name[32], err[PS_ERR_MAX] = "", out[PS_ERR_MAX + 16];
	int i, rc, len;

	if (setgroups(0, NULL) < 0 || setresgid(PROBE_ID, PROBE_ID, PROBE_ID) < 0 ||
	    setresuid(PROBE_ID, PROBE_ID, PROBE_ID) < 0 || keyctl_join_session_keyring(NULL) < 0)
		_exit(2);
	memset(big, 'q', sizeof(big));
	for (i = 0; i < 10000; i++) {
		snprintf(name, sizeof(name), "fill:%d", i);
		if (add_key("user", name, big, i < 5000 ? sizeof(big) : 1,
			    KEY_SPEC_SESSION_KEYRING) < 0) {
			if (errno != EDQUOT)
				_exit(3);
			if (i >= 5000)
				break;
			i = 4999; /* bytes are used up: fill what is left with small keys */
		}
	}
	rc = ps_keys_store(PS_KEYRING_SESSION, TOKEN, strlen(TOKEN), INFO, 60, err, sizeof(err));
	len = snprintf(out, sizeof(out), "%d %s", rc, err);
	(void)ps_write_all(fd, out, (size_t)len);
	_exit(0);
}

/* Run child(fd) in a forked process; what it writes to fd goes into out. False if it could not. */
static bool probe(void (*child)(int fd), char *out, size_t outlen)
{
	size_t len = 0;
	int fds[2], status;
	pid_t pid;

	if (getuid() != 0 || pipe(fds) < 0)
		return false;
	pid = fork();
	if (pid < 0)
		return false;
	if (pid == 0) {
		close(fds[0]);
		child(fds[1]);
	}
	close(fds[1]);
	(void)ps_read_all(fds[0], out, outlen - 1, &len);
	close(fds[0]);
	out[len] = '\0';
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return len > 0;
}

static void quota_probe(void)
{
	char buf[PS_ERR_MAX + 16];

	if (probe(quota_child, buf, sizeof(buf)) && sscanf(buf, "%d", &quota_rc) == 1) {
		ps_strlcpy(quota_err, strchr(buf, ' ') ? strchr(buf, ' ') + 1 : "",
			   sizeof(quota_err));
		quota_ran = true;
	}
}

/*
 * --- the leak probe: a child as another unused uid stores and removes the token LEAK_CYCLES
 * times in its user keyring, which lives until reboot. Every byte of key quota must come back:
 * the kernel does not return a link's 4 bytes when its garbage collector, not an unlink, takes
 * a dead key out of a keyring (see drop() in keyring/keys.c).
 */

/* The bytes of key quota uid uses, from /proc/key-users; -1 if it has no entry. */
static long quota_bytes(unsigned uid)
{
	char line[256];
	unsigned u;
	long bytes = -1, b;
	FILE *f = fopen("/proc/key-users", "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, " %u: %*d %*d/%*d %*d/%*d %ld/%*d", &u, &b) == 2 && u == uid)
			bytes = b;
	fclose(f);
	return bytes;
}

static void leak_child(int fd)
{
	char err[PS_ERR_MAX] = "", out[PS_ERR_MAX + 64];
	long before = -1, after = -1;
	int i, rc, len;

	if (setgroups(0, NULL) < 0 || setresgid(LEAK_ID, LEAK_ID, LEAK_ID) < 0 ||
	    setresuid(LEAK_ID, LEAK_ID, LEAK_ID) < 0 || keyctl_join_session_keyring(NULL) < 0)
		_exit(2);
	/* One cycle first: the thread keyring it creates stays, and is charged once. The collector
	 * frees unlinked keys (and their quota) soon after: measure once two reads agree. */
	rc = ps_keys_store(PS_KEYRING_USER, TOKEN, strlen(TOKEN), INFO, 60, err, sizeof(err));
	if (rc == 0)
		rc = ps_keys_remove(PS_KEYRING_USER, err, sizeof(err));
	for (i = 0; i < 30 && (before < 0 || before != after); i++) {
		usleep(100000);
		before = after;
		after = quota_bytes(LEAK_ID);
	}
	for (i = 0; i < LEAK_CYCLES && rc == 0; i++) {
		rc = ps_keys_store(PS_KEYRING_USER, TOKEN, strlen(TOKEN), INFO, 60, err,
				   sizeof(err));
		if (rc == 0)
			rc = ps_keys_remove(PS_KEYRING_USER, err, sizeof(err));
		usleep(5000); /* unlinked keys count against maxkeys until the collector frees them */
	}
	for (i = 0; i < 30 && rc == 0; i++) {
		after = quota_bytes(LEAK_ID);
		if (after == before)
			break;
		usleep(100000);
	}
	len = snprintf(out, sizeof(out), "%d %ld %ld %s", rc, before, after, err);
	(void)ps_write_all(fd, out, (size_t)len);
	_exit(0);
}

static void leak_probe(void)
{
	char buf[PS_ERR_MAX + 64];

	if (probe(leak_child, buf, sizeof(buf)) &&
	    sscanf(buf, "%d %ld %ld", &leak_rc, &leak_before, &leak_after) == 3) {
		ps_strlcpy(leak_err, buf, sizeof(leak_err));
		leak_ran = true;
	}
}

/* --- setup */

static int lock_keyring(void)
{
	int fd;

	fd = open("/tmp/pam_spotify-tests.lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return 0; /* no build tree here: run unlocked */
	return flock(fd, LOCK_EX);
}

static bool holds_spotify_key(key_serial_t ring)
{
	return keyctl_search(ring, "user", PS_KEY_TOKEN, 0) >= 0 || errno != ENOKEY ||
	       keyctl_search(ring, "user", PS_KEY_INFO, 0) >= 0 || errno != ENOKEY;
}

static int group_setup(void **state)
{
	long p;

	(void)state;
	quota_probe();
	leak_probe();
	isolated = !getenv("PS_TEST_NO_USERNS") && isolate(); /* the knob tests the fallback */
	if (!isolated && lock_keyring() < 0)
		return -1;
	if (keyctl_join_session_keyring(NULL) < 0)
		return -1;
	p = keyctl_get_persistent(-1, KEY_SPEC_SESSION_KEYRING);
	persist_ok = p >= 0;
	user_ok = !holds_spotify_key(KEY_SPEC_USER_KEYRING) &&
		  !(persist_ok && holds_spotify_key((key_serial_t)p));
	if (persist_ok)
		keyctl_unlink((key_serial_t)p, KEY_SPEC_SESSION_KEYRING);
	print_message("# %s user keyring%s%s\n",
		      isolated ? "a private (user namespace)" : "the real",
		      user_ok ? "" : " holds a Spotify token: user keyring tests skipped",
		      persist_ok ? "" : "; no persistent keyrings");
	return 0;
}

static void clean(enum ps_keyring where, key_serial_t ring)
{
	char err[PS_ERR_MAX];

	(void)ps_keys_remove(where, err, sizeof(err));
	purge(ring, PS_KEY_TOKEN);
	purge(ring, PS_KEY_INFO);
}

static int teardown(void **state)
{
	long p;

	(void)state;
	keyctl_setperm(KEY_SPEC_SESSION_KEYRING, 0x3f3f0000);
	keyctl_unlink(KEY_SPEC_USER_KEYRING, KEY_SPEC_SESSION_KEYRING);
	clean(PS_KEYRING_SESSION, KEY_SPEC_SESSION_KEYRING);
	if (!user_ok)
		return 0;
	clean(PS_KEYRING_USER, KEY_SPEC_USER_KEYRING);
	if (persist_ok) {
		p = keyctl_get_persistent(-1, KEY_SPEC_SESSION_KEYRING);
		if (p >= 0) {
			clean(PS_KEYRING_PERSISTENT, (key_serial_t)p);
			keyctl_unlink((key_serial_t)p, KEY_SPEC_SESSION_KEYRING);
		}
	}
	return 0;
}

/* --- pure functions */

static void test_skew(void **state)
{
	static const struct {
		unsigned long in;
		unsigned out;
	} rows[] = {
		{0, 0},	   {9, 0},     {10, 1},	    {100, 10},	     {299, 29},
		{300, 30}, {3600, 30}, {86400, 30}, {ULONG_MAX, 30},
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		assert_int_equal(ps_keys_skew(rows[i].in), rows[i].out);
}

static void test_token_valid(void **state)
{
	static const char *const good[] = {"a", "BQD-abc_123.xyz~+/", "abc=", "abc==", "A+/="};
	static const char *const bad[] = {"",	 "=",  "==abc", "a=b", "a b",	   "a\n",
					  "a\"", "a'", "a,b",	"a;b", "\xc3\xa9", "a=\n"};
	char big[PS_TOKEN_MAX + 1];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_true(ps_keys_token_valid(good[i], strlen(good[i])));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (ps_keys_token_valid(bad[i], strlen(bad[i])))
			fail_msg("accepted '%s'", bad[i]);
	assert_false(ps_keys_token_valid("ab\0c", 4));
	assert_false(ps_keys_token_valid(NULL, 0));
	memset(big, 'a', sizeof(big));
	assert_true(ps_keys_token_valid(big, PS_TOKEN_MAX));
	assert_false(ps_keys_token_valid(big, PS_TOKEN_MAX + 1));
}

/* --- store */

static void test_store_session_sets_perm_payload(void **state)
{
	key_serial_t t, i;

	(void)state;
	assert_int_equal(store(PS_KEYRING_SESSION, TOKEN, 60), PS_EXIT_OK);
	t = find(KEY_SPEC_SESSION_KEYRING, PS_KEY_TOKEN);
	i = find(KEY_SPEC_SESSION_KEYRING, PS_KEY_INFO);
	assert_int_equal(key_perm(t), PS_KEY_PERM);
	assert_int_equal(key_perm(i), PS_KEY_PERM);
	assert_payload(t, TOKEN);
	assert_payload(i, INFO);
}

/* The possession subtlety: the session does not link @u, yet perms and timeout get set. */
static void test_store_user_without_possession(void **state)
{
	key_serial_t t, i, thread;

	(void)state;
	NEED_USER_KEYRING();
	assert_false(links_user_keyring(KEY_SPEC_SESSION_KEYRING));
	assert_int_equal(store(PS_KEYRING_USER, TOKEN, 60), PS_EXIT_OK);
	t = find(KEY_SPEC_USER_KEYRING, PS_KEY_TOKEN);
	i = find(KEY_SPEC_USER_KEYRING, PS_KEY_INFO);
	assert_int_equal(key_perm(t), PS_KEY_PERM);
	assert_int_equal(key_perm(i), PS_KEY_PERM);
	/* not possessed now, and still readable through the user permissions */
	assert_payload(t, TOKEN);
	assert_payload(i, INFO);
	/* the thread keyring no longer links @u */
	thread = keyctl_get_keyring_ID(KEY_SPEC_THREAD_KEYRING, 0);
	if (thread >= 0)
		assert_false(links_user_keyring(thread));
	assert_int_equal(count_in(KEY_SPEC_SESSION_KEYRING, PS_KEY_TOKEN), 0);
}

static void test_store_user_with_session_link(void **state)
{
	(void)state;
	NEED_USER_KEYRING();
	assert_int_equal(keyctl_link(KEY_SPEC_USER_KEYRING, KEY_SPEC_SESSION_KEYRING), 0);
	assert_int_equal(store(PS_KEYRING_USER, TOKEN, 60), PS_EXIT_OK);
	assert_int_equal(key_perm(find(KEY_SPEC_USER_KEYRING, PS_KEY_TOKEN)), PS_KEY_PERM);
	assert_int_equal(count_in(KEY_SPEC_SESSION_KEYRING, PS_KEY_TOKEN), 0);
	assert_int_equal(count_in(KEY_SPEC_USER_KEYRING, PS_KEY_TOKEN), 1);
}

static void test_store_updates_in_place(void **state)
{
	key_serial_t first, second;

	(void)state;
	NEED_USER_KEYRING();
	assert_int_equal(store(PS_KEYRING_USER, TOKEN, 60), PS_EXIT_OK);
	first = find(KEY_SPEC_USER_KEYRING, PS_KEY_TOKEN);
	assert_int_equal(store(PS_KEYRING_USER, TOKEN2, 60), PS_EXIT_OK);
	second = find(KEY_SPEC_USER_KEYRING, PS_KEY_TOKEN);
	assert_int_equal(first, second);
	assert_payload(second, TOKEN2);
	assert_int_equal(count_in(KEY_SPEC_USER_KEYRING, PS_KEY_TOKEN), 1);
	assert_int_equal(count_in(KEY_SPEC_USER_KEYRING, PS_KEY_INFO), 1);
	assert_int_equal(key_perm(second), PS_KEY_PERM);
}

static void test_store_replaces_unwritable_key(void **state)
{
	key_serial_t old, now;

	(void)state;
	old = add_key("user", PS_KEY_TOKEN, "old", 3, KEY_SPEC_SESSION_KEYRING);
	assert_true(old > 0);
	assert_int_equal(keyctl_setperm(old, 0x3b000000), 0); /* possessor: no write */
	assert_int_equal(store(PS_KEYRING_SESSION, TOKEN, 60), PS_EXIT_OK);
	now = find(KEY_SPEC_SESSION_KEYRING, PS_KEY_TOKEN);
	assert_int_not_equal(now, old);
	assert_payload(now, TOKEN);
	assert_int_equal(key_perm(now), PS_KEY_PERM);
	assert_int_equal(count_in(KEY_SPEC_SESSION_KEYRING, PS_KEY_TOKEN), 1);
}

/*
 * A key of our name planted with other permissions, in the ring where we store: the helper puts
 * a key of its own there (PS_KEY_PERM, the token, a timeout), and never writes the token into the
 * planted key: a holder keyring keeps the old one alive to look at afterwards.
 */
static void replaces_planted(key_serial_t ring, enum ps_keyring where, unsigned long perm,
			     bool old_visible)
{
	key_serial_t old, now, holder;
	char buf[16];

	holder = add_key("keyring", "ps-test-holder", NULL, 0, KEY_SPEC_SESSION_KEYRING);
	assert_true(holder > 0);
	old = add_key("user", PS_KEY_TOKEN, "old", 3, ring);
	assert_true(old > 0);
	assert_int_equal(keyctl_link(old, holder), 0);
	assert_int_equal(keyctl_set_timeout(old, 600), 0);
	assert_int_equal(keyctl_setperm(old, (key_perm_t)perm), 0);
	if (store(where, TOKEN, 60) != PS_EXIT_OK)
		fail_msg("perm %08lx: not replaced", perm);
	now = find(ring, PS_KEY_TOKEN);
	assert_int_not_equal(now, old);
	assert_payload(now, TOKEN);
	assert_int_equal(key_perm(now), PS_KEY_PERM);
	assert_int_equal(count_in(ring, PS_KEY_TOKEN), 1);
	if (old_visible) /* the token never went into it */
		assert_int_equal(keyctl_read(old, buf, sizeof(buf)), 3);
	else /* written into (we could not see it), then revoked */
		assert_int_equal(keyctl_read(old, buf, sizeof(buf)), -1);
	keyctl_unlink(old, ring);
	keyctl_unlink(holder, KEY_SPEC_SESSION_KEYRING);
}

static void test_store_replaces_planted_keys(void **state)
{
	(void)state;
	/* possessor: all but setattr, so no timeout could be set on it */
	replaces_planted(KEY_SPEC_SESSION_KEYRING, PS_KEYRING_SESSION, 0x1f000000, true);
	/* readable by everyone */
	replaces_planted(KEY_SPEC_SESSION_KEYRING, PS_KEYRING_SESSION, 0x3f3f3f3f, true);
	/* possessor all only: right but for the user bits */
	replaces_planted(KEY_SPEC_SESSION_KEYRING, PS_KEYRING_SESSION, 0x3f000000, true);
	/* write only: we cannot see it, so it is written, then revoked and replaced */
	replaces_planted(KEY_SPEC_SESSION_KEYRING, PS_KEYRING_SESSION, 0x04000000, false);
}

static void test_store_replaces_planted_user_key(void **state)
{
	key_serial_t old;

	(void)state;
	NEED_USER_KEYRING();
	/* planted in @u by the user, possessor-only, no setattr; the helper does not possess @u */
	assert_int_equal(keyctl_link(KEY_SPEC_USER_KEYRING, KEY_SPEC_SESSION_KEYRING), 0);
	old = add_key("user", PS_KEY_TOKEN, "garbage", 7, KEY_SPEC_USER_KEYRING);
	assert_true(old > 0);
	assert_int_equal(keyctl_setperm(old, 0x1f000000), 0);
	assert_int_equal(keyctl_unlink(KEY_SPEC_USER_KEYRING, KEY_SPEC_SESSION_KEYRING), 0);
	assert_int_equal(store(PS_KEYRING_USER, TOKEN, 60), PS_EXIT_OK);
	assert_int_equal(keyctl_link(KEY_SPEC_USER_KEYRING, KEY_SPEC_SESSION_KEYRING), 0);
	assert_int_not_equal(find(KEY_SPEC_USER_KEYRING, PS_KEY_TOKEN), old);
	assert_int_equal(key_perm(find(KEY_SPEC_USER_KEYRING, PS_KEY_TOKEN)), PS_KEY_PERM);
	assert_payload(find(KEY_SPEC_USER_KEYRING, PS_KEY_TOKEN), TOKEN);
	assert_int_equal(count_in(KEY_SPEC_USER_KEYRING, PS_KEY_TOKEN), 1);
	assert_int_equal(keyctl_unlink(KEY_SPEC_USER_KEYRING, KEY_SPEC_SESSION_KEYRING), 0);
}

/* A planted key nobody may view or write cannot be replaced: say how to remove it. */
static void test_store_unreplaceable_key_explained(void **state)
{
	char err[PS_ERR_MAX] = "";
	key_serial_t old;

	(void)state;
	old = add_key("user", PS_KEY_TOKEN, "old", 3, KEY_SPEC_SESSION_KEYRING);
	assert_true(old > 0);
	assert_int_equal(keyctl_setperm(old, 0), 0);
	assert_int_equal(
		ps_keys_store(PS_KEYRING_SESSION, TOKEN, strlen(TOKEN), INFO, 60, err, sizeof(err)),
		PS_EXIT_KEYRING);
	assert_string_equal(err, "storing spotify:access_token in the session keyring: permission "
				 "denied (EACCES): the keyring, or an old key of that name, is "
				 "not writable by you; find it with keyctl show, remove it with "
				 "keyctl unlink, then log in again");
	assert_int_equal(keyctl_unlink(old, KEY_SPEC_SESSION_KEYRING), 0);
}

static void test_store_refuses_bad_input(void **state)
{
	char err[PS_ERR_MAX];

	(void)state;
	assert_int_equal(ps_keys_store(PS_KEYRING_SESSION, "a b", 3, INFO, 60, err, sizeof(err)),
			 PS_EXIT_KEYRING);
	assert_non_null(strstr(err, "malformed access token"));
	assert_int_equal(ps_keys_store(PS_KEYRING_SESSION, TOKEN, 0, INFO, 60, err, sizeof(err)),
			 PS_EXIT_KEYRING);
	assert_int_equal(
		ps_keys_store(PS_KEYRING_SESSION, TOKEN, strlen(TOKEN), INFO, 0, err, sizeof(err)),
		PS_EXIT_KEYRING);
	assert_non_null(strstr(err, "no lifetime"));
	assert_int_equal(
		ps_keys_store(PS_KEYRING_SESSION, TOKEN, strlen(TOKEN), "", 60, err, sizeof(err)),
		PS_EXIT_KEYRING);
	assert_int_equal(keyctl_search(KEY_SPEC_SESSION_KEYRING, "user", PS_KEY_TOKEN, 0), -1);
}

/* --- timeouts */

static void test_timeout_expires_key(void **state)
{
	key_serial_t t;
	char buf[64];

	(void)state;
	assert_int_equal(store(PS_KEYRING_SESSION, TOKEN, 1), PS_EXIT_OK);
	t = find(KEY_SPEC_SESSION_KEYRING, PS_KEY_TOKEN);
	sleep(2);
	assert_int_equal(keyctl_read(t, buf, sizeof(buf)), -1);
	assert_true(errno == EKEYEXPIRED || errno == ENOKEY);
}

/* add_key's update clears the timeout: the store must set it again. */
static void test_update_sets_timeout_again(void **state)
{
	key_serial_t t;
	char buf[64];

	(void)state;
	assert_int_equal(store(PS_KEYRING_SESSION, TOKEN, 1), PS_EXIT_OK);
	assert_int_equal(store(PS_KEYRING_SESSION, TOKEN2, 1), PS_EXIT_OK);
	t = find(KEY_SPEC_SESSION_KEYRING, PS_KEY_TOKEN);
	sleep(2);
	assert_int_equal(keyctl_read(t, buf, sizeof(buf)), -1);
	/* and an expired key is revived with its new timeout */
	assert_int_equal(store(PS_KEYRING_SESSION, TOKEN, 60), PS_EXIT_OK);
	assert_payload(find(KEY_SPEC_SESSION_KEYRING, PS_KEY_TOKEN), TOKEN);
}

/* --- remove */

static void test_remove(void **state)
{
	char err[PS_ERR_MAX];

	(void)state;
	NEED_USER_KEYRING();
	assert_int_equal(store(PS_KEYRING_USER, TOKEN, 60), PS_EXIT_OK);
	assert_int_equal(ps_keys_remove(PS_KEYRING_USER, err, sizeof(err)), PS_EXIT_OK);
	assert_int_equal(keyctl_search(KEY_SPEC_USER_KEYRING, "user", PS_KEY_TOKEN, 0), -1);
	assert_int_equal(keyctl_search(KEY_SPEC_USER_KEYRING, "user", PS_KEY_INFO, 0), -1);
	/* absent is fine */
	assert_int_equal(ps_keys_remove(PS_KEYRING_USER, err, sizeof(err)), PS_EXIT_OK);
	assert_int_equal(ps_keys_remove(PS_KEYRING_SESSION, err, sizeof(err)), PS_EXIT_OK);
}

/* Keys that expired are still taken out of the keyring by the process that stored them: a
 * look-up by name misses them, and a link the collector removes costs quota until reboot. */
static void test_remove_takes_expired_keys(void **state)
{
	char err[PS_ERR_MAX];
	key_serial_t t, ids[64];
	long n, i;
	int tries;

	(void)state;
	assert_int_equal(store(PS_KEYRING_SESSION, TOKEN, 1), PS_EXIT_OK);
	t = find(KEY_SPEC_SESSION_KEYRING, PS_KEY_TOKEN);
	for (tries = 0; tries < 60 && !(keyctl_describe(t, NULL, 0) < 0 && errno == EKEYEXPIRED);
	     tries++)
		usleep(50000); /* at most 3 s for the 1 s timeout */
	assert_int_equal(keyctl_describe(t, NULL, 0), -1);
	assert_int_equal(errno, EKEYEXPIRED);
	assert_int_equal(ps_keys_remove(PS_KEYRING_SESSION, err, sizeof(err)), PS_EXIT_OK);
	n = keyctl_read(KEY_SPEC_SESSION_KEYRING, (char *)ids, sizeof(ids));
	assert_true(n >= 0);
	for (i = 0; i < n / (long)sizeof(ids[0]); i++)
		if (ids[i] == t)
			fail_msg("the expired token key %d is still linked in the session keyring",
				 (int)t);
}

/* Removing from the session touches only the session's own keys, not the linked @u. */
static void test_remove_session_leaves_user_keyring(void **state)
{
	char err[PS_ERR_MAX];

	(void)state;
	NEED_USER_KEYRING();
	assert_int_equal(keyctl_link(KEY_SPEC_USER_KEYRING, KEY_SPEC_SESSION_KEYRING), 0);
	assert_int_equal(store(PS_KEYRING_USER, TOKEN, 60), PS_EXIT_OK);
	assert_int_equal(ps_keys_remove(PS_KEYRING_SESSION, err, sizeof(err)), PS_EXIT_OK);
	assert_payload(find(KEY_SPEC_USER_KEYRING, PS_KEY_TOKEN), TOKEN);
	assert_int_equal(store(PS_KEYRING_SESSION, TOKEN2, 60), PS_EXIT_OK);
	assert_int_equal(ps_keys_remove(PS_KEYRING_SESSION, err, sizeof(err)), PS_EXIT_OK);
	assert_int_equal(count_in(KEY_SPEC_SESSION_KEYRING, PS_KEY_TOKEN), 0);
	assert_payload(find(KEY_SPEC_USER_KEYRING, PS_KEY_TOKEN), TOKEN);
}

/* --- read */

static void test_read_user_without_possession(void **state)
{
	struct ps_keys_found f;
	char err[PS_ERR_MAX];

	(void)state;
	NEED_USER_KEYRING();
	assert_int_equal(store(PS_KEYRING_USER, TOKEN, 60), PS_EXIT_OK);
	assert_int_equal(ps_keys_read(false, &f, err, sizeof(err)), PS_EXIT_OK);
	assert_int_equal(f.place, PS_PLACE_USER);
	assert_int_equal(f.token_len, strlen(TOKEN));
	assert_string_equal(f.token, TOKEN);
	assert_non_null(f.info);
	assert_string_equal(f.info, INFO);
	ps_keys_found_free(&f);
	assert_null(f.token);
	ps_keys_found_free(&f); /* twice is fine */
}

static void test_read_places(void **state)
{
	struct ps_keys_found f;
	char err[PS_ERR_MAX];

	(void)state;
	NEED_USER_KEYRING();
	/* through the session's link to @u: still the user keyring */
	assert_int_equal(keyctl_link(KEY_SPEC_USER_KEYRING, KEY_SPEC_SESSION_KEYRING), 0);
	assert_int_equal(store(PS_KEYRING_USER, TOKEN, 60), PS_EXIT_OK);
	assert_int_equal(ps_keys_read(false, &f, err, sizeof(err)), PS_EXIT_OK);
	assert_int_equal(f.place, PS_PLACE_USER);
	ps_keys_found_free(&f);
	/* a key of the session's own comes first */
	assert_int_equal(store(PS_KEYRING_SESSION, TOKEN2, 60), PS_EXIT_OK);
	assert_int_equal(ps_keys_read(false, &f, err, sizeof(err)), PS_EXIT_OK);
	assert_int_equal(f.place, PS_PLACE_SESSION);
	assert_string_equal(f.token, TOKEN2);
	ps_keys_found_free(&f);
	assert_string_equal(ps_key_place_name(PS_PLACE_SESSION), "session");
}

static void test_read_missing(void **state)
{
	struct ps_keys_found f;
	char err[PS_ERR_MAX];

	(void)state;
	NEED_USER_KEYRING();
	assert_int_equal(ps_keys_read(false, &f, err, sizeof(err)), PS_EXIT_NO_TOKEN);
	assert_string_equal(err, "no Spotify token in your keyring: log in again (pam_spotify "
				 "stores one at session open)");
	assert_null(f.token);
}

static void test_read_without_info(void **state)
{
	struct ps_keys_found f;
	char err[PS_ERR_MAX];

	(void)state;
	NEED_USER_KEYRING();
	assert_int_equal(store(PS_KEYRING_USER, TOKEN, 60), PS_EXIT_OK);
	assert_int_equal(
		keyctl_unlink(find(KEY_SPEC_USER_KEYRING, PS_KEY_INFO), KEY_SPEC_USER_KEYRING), 0);
	assert_int_equal(ps_keys_read(false, &f, err, sizeof(err)), PS_EXIT_OK);
	assert_string_equal(f.token, TOKEN);
	assert_null(f.info);
	assert_int_equal(f.info_errno, ENOKEY);
	ps_keys_found_free(&f);
}

/* Plant a key in @u with perm; possession (a session link) is needed to set it. */
static key_serial_t plant_user(const char *payload, size_t len, unsigned long perm)
{
	key_serial_t id;

	assert_int_equal(keyctl_link(KEY_SPEC_USER_KEYRING, KEY_SPEC_SESSION_KEYRING), 0);
	id = add_key("user", PS_KEY_TOKEN, payload, len, KEY_SPEC_USER_KEYRING);
	assert_true(id > 0);
	assert_int_equal(keyctl_setperm(id, (key_perm_t)perm), 0);
	assert_int_equal(keyctl_unlink(KEY_SPEC_USER_KEYRING, KEY_SPEC_SESSION_KEYRING), 0);
	return id;
}

static void test_read_unreadable_key(void **state)
{
	struct ps_keys_found f;
	char err[PS_ERR_MAX];

	(void)state;
	NEED_USER_KEYRING();
	plant_user(TOKEN, strlen(TOKEN), 0x3f010000); /* user: view only */
	assert_int_equal(ps_keys_read(false, &f, err, sizeof(err)), PS_EXIT_NO_TOKEN);
	assert_non_null(strstr(err, "not readable by you (wrong permissions)"));
	assert_non_null(strstr(err, "user keyring"));
}

static void test_read_oversize_is_cut(void **state)
{
	static char big[PS_TOKEN_MAX + 100];
	struct ps_keys_found f;
	char err[PS_ERR_MAX];

	(void)state;
	NEED_USER_KEYRING();
	memset(big, 'a', sizeof(big));
	plant_user(big, sizeof(big), PS_KEY_PERM);
	assert_int_equal(ps_keys_read(false, &f, err, sizeof(err)), PS_EXIT_OK);
	assert_int_equal(f.token_len, PS_TOKEN_MAX + 1);
	assert_int_equal(strlen(f.token), 0); /* no bytes of an oversized payload */
	assert_false(ps_keys_token_valid(f.token, f.token_len));
	ps_keys_found_free(&f);
}

static void test_read_revoked_and_expired(void **state)
{
	struct ps_keys_found f;
	char err[PS_ERR_MAX];

	(void)state;
	NEED_USER_KEYRING();
	assert_int_equal(store(PS_KEYRING_USER, TOKEN, 60), PS_EXIT_OK);
	/* revoking needs WRITE: possess the key through the session for a moment */
	assert_int_equal(keyctl_link(KEY_SPEC_USER_KEYRING, KEY_SPEC_SESSION_KEYRING), 0);
	assert_int_equal(keyctl_revoke(find(KEY_SPEC_USER_KEYRING, PS_KEY_TOKEN)), 0);
	assert_int_equal(keyctl_unlink(KEY_SPEC_USER_KEYRING, KEY_SPEC_SESSION_KEYRING), 0);
	assert_int_equal(ps_keys_read(false, &f, err, sizeof(err)), PS_EXIT_EXPIRED);
	assert_non_null(strstr(err, "revoked"));
	/* a revoked key cannot be updated: the store replaces it */
	assert_int_equal(store(PS_KEYRING_USER, TOKEN, 1), PS_EXIT_OK);
	sleep(2);
	assert_int_equal(ps_keys_read(false, &f, err, sizeof(err)), PS_EXIT_EXPIRED);
	assert_string_equal(err,
			    "the Spotify token in your user keyring has expired: log in again");
}

static void test_persistent(void **state)
{
	struct ps_keys_found f;
	char err[PS_ERR_MAX];

	(void)state;
	NEED_USER_KEYRING();
	SKIP_UNLESS(persist_ok, "the kernel has no persistent keyrings");
	assert_int_equal(store(PS_KEYRING_PERSISTENT, TOKEN, 60), PS_EXIT_OK);
	/* not found in the default places, found when asked */
	if (ps_keys_read(false, &f, err, sizeof(err)) != PS_EXIT_NO_TOKEN)
		fail_msg("default places: %s", err);
	assert_int_equal(ps_keys_read(true, &f, err, sizeof(err)), PS_EXIT_OK);
	assert_int_equal(f.place, PS_PLACE_PERSISTENT);
	assert_string_equal(f.token, TOKEN);
	assert_string_equal(f.info, INFO);
	ps_keys_found_free(&f);
	assert_int_equal(ps_keys_remove(PS_KEYRING_PERSISTENT, err, sizeof(err)), PS_EXIT_OK);
	assert_int_equal(ps_keys_read(true, &f, err, sizeof(err)), PS_EXIT_NO_TOKEN);
}

/* --- errors and their advice */

static void test_eacces_advice(void **state)
{
	char err[PS_ERR_MAX];

	(void)state;
	/* a session keyring we may no longer write to */
	assert_int_equal(keyctl_setperm(KEY_SPEC_SESSION_KEYRING, 0x3b3b0000), 0);
	assert_int_equal(
		ps_keys_store(PS_KEYRING_SESSION, TOKEN, strlen(TOKEN), INFO, 60, err, sizeof(err)),
		PS_EXIT_KEYRING);
	assert_non_null(strstr(err, "storing spotify:access_token in the session keyring: "
				    "permission denied (EACCES)"));
	assert_non_null(strstr(err, "keyctl unlink"));
}

/* In a child: keyctl and add_key fail with ENOSYS, as without CONFIG_KEYS or under seccomp. */
static int enosys_child(void)
{
	struct sock_filter filter[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_add_key, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_keyctl, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
	};
	struct sock_fprog prog = {sizeof(filter) / sizeof(filter[0]), filter};
	struct ps_keys_found f;
	char err[PS_ERR_MAX];

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
		return 10;
	if (ps_keys_store(PS_KEYRING_USER, TOKEN, strlen(TOKEN), INFO, 60, err, sizeof(err)) !=
		    PS_EXIT_KEYRING ||
	    !strstr(err, "kernel keyring unavailable (ENOSYS): the kernel lacks CONFIG_KEYS or a "
			 "seccomp filter blocks keyctl"))
		return 11;
	if (ps_keys_remove(PS_KEYRING_SESSION, err, sizeof(err)) != PS_EXIT_KEYRING ||
	    !strstr(err, "(ENOSYS)"))
		return 12;
	if (ps_keys_read(false, &f, err, sizeof(err)) != PS_EXIT_KEYRING ||
	    !strstr(err, "(ENOSYS)"))
		return 13;
	return 0;
}

static void test_enosys_advice(void **state)
{
	int status;
	pid_t pid;

	(void)state;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(enosys_child());
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_edquot_advice(void **state)
{
	(void)state;
	SKIP_UNLESS(quota_ran, "the quota probe needs root (to become an unused uid)");
	assert_int_equal(quota_rc, PS_EXIT_KEYRING);
	assert_non_null(strstr(
		quota_err, "keyring quota exceeded (EDQUOT): remove unused keys (keyctl show @u) "
			   "or raise /proc/sys/kernel/keys/maxkeys / maxbytes"));
}

static void test_remove_gives_back_quota(void **state)
{
	(void)state;
	SKIP_UNLESS(leak_ran, "the leak probe needs root (to become an unused uid)");
	if (leak_rc != 0)
		fail_msg("store and remove in the user keyring: %s", leak_err);
	if (leak_before < 0 || leak_after != leak_before)
		fail_msg("%d store and remove cycles in the user keyring kept %ld bytes of the "
			 "user's key quota (%ld before, %ld after)",
			 LEAK_CYCLES, leak_after - leak_before, leak_before, leak_after);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_skew),
		cmocka_unit_test(test_token_valid),
		cmocka_unit_test_teardown(test_store_session_sets_perm_payload, teardown),
		cmocka_unit_test_teardown(test_remove_takes_expired_keys, teardown),
		cmocka_unit_test_teardown(test_store_user_without_possession, teardown),
		cmocka_unit_test_teardown(test_store_user_with_session_link, teardown),
		cmocka_unit_test_teardown(test_store_updates_in_place, teardown),
		cmocka_unit_test_teardown(test_store_replaces_unwritable_key, teardown),
		cmocka_unit_test_teardown(test_store_replaces_planted_keys, teardown),
		cmocka_unit_test_teardown(test_store_replaces_planted_user_key, teardown),
		cmocka_unit_test_teardown(test_store_unreplaceable_key_explained, teardown),
		cmocka_unit_test_teardown(test_store_refuses_bad_input, teardown),
		cmocka_unit_test_teardown(test_timeout_expires_key, teardown),
		cmocka_unit_test_teardown(test_update_sets_timeout_again, teardown),
		cmocka_unit_test_teardown(test_remove, teardown),
		cmocka_unit_test_teardown(test_remove_session_leaves_user_keyring, teardown),
		cmocka_unit_test_teardown(test_read_user_without_possession, teardown),
		cmocka_unit_test_teardown(test_read_places, teardown),
		cmocka_unit_test_teardown(test_read_missing, teardown),
		cmocka_unit_test_teardown(test_read_without_info, teardown),
		cmocka_unit_test_teardown(test_read_unreadable_key, teardown),
		cmocka_unit_test_teardown(test_read_oversize_is_cut, teardown),
		cmocka_unit_test_teardown(test_read_revoked_and_expired, teardown),
		cmocka_unit_test_teardown(test_persistent, teardown),
		cmocka_unit_test_teardown(test_eacces_advice, teardown),
		cmocka_unit_test(test_enosys_advice),
		cmocka_unit_test(test_edquot_advice),
		cmocka_unit_test(test_remove_gives_back_quota),
	};

	return cmocka_run_group_tests(tests, group_setup, NULL);
}
