/*
 * warm.c: the module's fast path (see warm.h). Runs as root inside the PAM application, and so,
 * like pam_keyinit, changes only its real uid to the user's while it asks the kernel about the
 * user keyring (KEY_SPEC_USER_KEYRING is the real uid's), and changes it back: the effective and
 * file-system uids stay root's, which leaves the application's dumpable flag alone. Raw keyctl
 * system calls, so the module still links libpam only. The keys are found among the user
 * keyring's own links, a bounded number of them (keyring/keylist.h), never by KEYCTL_SEARCH:
 * that walks every keyring the user links below, and a user can make it take seconds.
 *
 * The store directory (~/.local/state/spotify-token, as the helper makes it) is reached as root:
 * below the home directory every component is opened with O_NOFOLLOW relative to its parent, the
 * last must be the user's and closed to others, and every file is opened without following
 * links, without creating anything but the session's registry entry, which is created O_EXCL
 * and then given to the user. A home directory that root may not enter (NFS with root_squash)
 * simply takes the slow path.
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/keyctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "keyring/keylist.h"
#include "keyring/keys.h" /* the key names only: the calls below are raw keyctl */
#include "helper/store.h" /* PS_STORE_REL_HOME only: the module does not link the store */
#include "keyring/token_info.h"
#include "pam/registry.h"
#include "common/paths.h"
#include "common/util.h"
#include "pam/warm.h"

/* The payload of key id into buf (NUL-terminated); its length, or -1 (also when too long). */
static long keyctl_read(long id, char *buf, size_t buflen)
{
	long n = syscall(SYS_keyctl, KEYCTL_READ, id, buf, buflen - 1, 0L);

	if (n < 0 || (size_t)n > buflen - 1)
		return -1;
	buf[n] = '\0';
	return n;
}

/*
 * The info key's serial when the user keyring itself links both keys, as the user's own; else 0
 * (also when it links more than PS_KEYLIST_WARM_MAX keys: the helper's path, never a slower one).
 */
static long user_keys(uid_t uid)
{
	struct ps_key_link keys[2] = {{.name = PS_KEY_INFO}, {.name = PS_KEY_TOKEN}};
	size_t i;

	if (ps_keylist_find(KEY_SPEC_USER_KEYRING, keys, 2, PS_KEYLIST_WARM_MAX) < 0)
		return 0;
	for (i = 0; i < 2; i++) {
		if (keys[i].id <= 0 || keys[i].uid != (unsigned long)uid)
			return 0;
	}
	return keys[0].id;
}

/*
 * The user keyring holds a token of this flow and client that lives longer than refresh_margin
 * (what the helper would keep). *expires_in gets its remaining life. Real uid switched for the
 * look-up only; false when it cannot be switched back (the caller must then not go on as if
 * nothing happened: it never fails for root, which may always return to uid 0).
 */
static bool token_fresh(const struct ps_config *cfg, uid_t uid, long long *expires_in, bool *lost)
{
	char buf[PS_TOKEN_INFO_MAX + 1];
	struct ps_token_info info;
	uid_t ruid = getuid();
	long info_id, n = -1;
	bool fresh = false;

	*lost = false;
	if (setresuid(uid, (uid_t)-1, (uid_t)-1) < 0)
		return false;
	info_id = user_keys(uid);
	if (info_id > 0)
		n = keyctl_read(info_id, buf, sizeof(buf));
	if (setresuid(ruid, (uid_t)-1, (uid_t)-1) < 0) {
		*lost = true;
		return false;
	}
	if (n > 0 && ps_token_info_parse(&info, buf, (size_t)n) == 0 &&
	    strcmp(info.flow, ps_flow_name(cfg->flow)) == 0 &&
	    strcmp(info.client_id, cfg->client_id) == 0) {
		*expires_in = info.expires_at - (long long)time(NULL);
		fresh = *expires_in > (long long)cfg->refresh_margin;
	}
	explicit_bzero(buf, sizeof(buf));
	return fresh;
}

struct store {
	int dfd; /* the store directory */
	int lfd; /* CLIENT.lock, flocked */
	int sfd; /* CLIENT.sessions */
	uid_t uid;
};

static void store_close(struct store *s)
{
	if (s->sfd >= 0)
		close(s->sfd);
	if (s->lfd >= 0)
		close(s->lfd); /* releases the lock */
	if (s->dfd >= 0)
		close(s->dfd);
	s->dfd = s->lfd = s->sfd = -1;
}

/* fd is the user's (and, for a directory, closed to group and others) and of the type wanted. */
static bool owned(int fd, uid_t uid, mode_t type)
{
	struct stat st;

	return fstat(fd, &st) == 0 && st.st_uid == uid && (st.st_mode & S_IFMT) == type &&
	       (type != S_IFDIR || (st.st_mode & (S_IRWXG | S_IRWXO)) == 0);
}

static int open_name(int dfd, const char *prefix, const char *suffix, int flags)
{
	char name[PS_CLIENT_ID_MAX + 16];
	int n = snprintf(name, sizeof(name), "%s%s", prefix, suffix);

	if (n < 0 || (size_t)n >= sizeof(name) || prefix[0] == '.' || strchr(prefix, '/'))
		return -1;
	return openat(dfd, name, flags | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
}

/*
 * The store as the helper leaves it, and its lock, waiting at most wait_ms while another login
 * of the user holds it (that login is storing a token and starting the keeper: afterwards this
 * one may find both). 0, or -1 (store closed).
 */
static int store_lock(struct store *s, const struct ps_config *cfg, const struct passwd *pw,
		      long wait_ms, bool *waited)
{
	const char *rel = PS_STORE_REL_HOME, *slash;
	char name[NAME_MAX + 1];
	int fd, next;

	s->dfd = s->lfd = s->sfd = -1;
	s->uid = pw->pw_uid;
	*waited = false;
	if (!pw->pw_dir || pw->pw_dir[0] != '/')
		return -1;
	fd = open(pw->pw_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	/* each component of the store's path, never following a link */
	while (fd >= 0 && *rel) {
		slash = strchrnul(rel, '/');
		snprintf(name, sizeof(name), "%.*s", (int)(slash - rel), rel);
		next = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		close(fd);
		fd = next;
		rel = *slash ? slash + 1 : slash;
	}
	s->dfd = fd;
	if (fd < 0 || !owned(fd, s->uid, S_IFDIR))
		goto out;
	s->lfd = open_name(fd, cfg->client_id, ".lock", O_RDWR | O_NONBLOCK);
	if (s->lfd >= 0 && owned(s->lfd, s->uid, S_IFREG) &&
	    ps_flock_within(s->lfd, wait_ms, waited) == 0)
		return 0;
out:
	store_close(s);
	return -1;
}

/*
 * Under the store lock: the user's keeper runs (it cannot be half-way out meanwhile, see
 * helper/keeper.c), and its registry is open in s->sfd. 0 or -1.
 */
static int keeper_join(struct store *s, const struct ps_config *cfg)
{
	int fd = open_name(s->dfd, cfg->client_id, ".keeper", O_RDONLY | O_NONBLOCK);
	bool running = fd >= 0 && owned(fd, s->uid, S_IFREG) && ps_flock_busy(fd);

	if (fd >= 0)
		close(fd); /* a probe: a lock taken here is released at once */
	if (!running)
		return -1;
	s->sfd = open_name(s->dfd, cfg->client_id, ".sessions", O_RDONLY | O_DIRECTORY);
	return s->sfd >= 0 && owned(s->sfd, s->uid, S_IFDIR) ? 0 : -1;
}

/* How long to wait for another login of the user: a quarter of the deadline, 2 s at most. */
static long lock_wait_ms(const struct ps_config *cfg)
{
	long ms = (long)cfg->timeout * 250;

	return ms < 2000 ? ms : 2000;
}

/* This session's entry, new (O_EXCL) and then the user's, or already there and the user's. */
static int register_session(struct store *s, const struct passwd *pw, long pid)
{
	char name[PS_REGISTRY_NAME_MAX];
	struct stat st;
	int fd;

	if (ps_registry_name(-1, pid, name, sizeof(name)) < 0)
		return -1;
	fd = openat(s->sfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return errno == EEXIST && fstatat(s->sfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
				       S_ISREG(st.st_mode) && st.st_uid == pw->pw_uid
			       ? 0
			       : -1;
	if (fchown(fd, pw->pw_uid, pw->pw_gid) < 0) {
		close(fd);
		unlinkat(s->sfd, name, 0);
		return -1;
	}
	close(fd);
	return 0;
}

/* Only where the helper would count this session with a keeper, and only as root. */
static bool applies(const struct ps_config *cfg, const struct passwd *pw)
{
	return cfg->keyring == PS_KEYRING_USER && cfg->session_pid > 0 && geteuid() == 0 &&
	       pw->pw_uid != 0;
}

int ps_warm_open(const struct ps_config *cfg, const struct passwd *pw, bool may_wait, char *line,
		 size_t linelen)
{
	long long expires_in = 0;
	bool fresh, lost, waited;
	struct store s;
	int rc = 0;

	/* client credentials: only the host's app token (cfg->app_uid), which the keeper copies;
	 * without it every login asks for a token of its own */
	if (!applies(cfg, pw) || (cfg->flow == PS_FLOW_CLIENT_CREDENTIALS && cfg->app_uid <= 0))
		return 0;
	fresh = token_fresh(cfg, pw->pw_uid, &expires_in, &lost);
	if (lost)
		abort(); /* cannot happen with euid 0; never return with the user's real uid */
	if (store_lock(&s, cfg, pw, may_wait ? lock_wait_ms(cfg) : 0, &waited) < 0)
		return 0;
	/* no fresh token, but another login held the lock: it may have stored one meanwhile */
	if (!fresh && waited) {
		fresh = token_fresh(cfg, pw->pw_uid, &expires_in, &lost);
		if (lost)
			abort();
	}
	if (fresh && keeper_join(&s, cfg) == 0 && register_session(&s, pw, cfg->session_pid) == 0) {
		snprintf(line, linelen,
			 "ok token still valid keyring=%s expires_in=%lld (joined the running "
			 "keeper; no helper)",
			 ps_keyring_name(cfg->keyring), expires_in);
		rc = 1;
	}
	store_close(&s);
	return rc;
}

int ps_warm_close(const struct ps_config *cfg, const struct passwd *pw)
{
	struct store s;
	bool waited;
	int rc = 0;

	if (!applies(cfg, pw) || store_lock(&s, cfg, pw, lock_wait_ms(cfg), &waited) < 0)
		return 0;
	if (keeper_join(&s, cfg) == 0) {
		ps_registry_remove(s.sfd, -1, cfg->session_pid);
		rc = 1;
	}
	store_close(&s);
	return rc;
}

int ps_warm_login_lock(const struct ps_config *cfg, const struct passwd *pw, bool *waited)
{
	char name[48], why[PS_ERR_MAX];
	int rfd, fd;

	*waited = false;
	if (!applies(cfg, pw))
		return -1;
	rfd = ps_rundir_open(true, why, sizeof(why));
	if (rfd < 0)
		return -1;
	snprintf(name, sizeof(name), "login-%lu.lock", (unsigned long)pw->pw_uid);
	fd = openat(rfd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
	close(rfd);
	if (fd >= 0 &&
	    (!owned(fd, 0, S_IFREG) || ps_flock_within(fd, lock_wait_ms(cfg), waited) < 0)) {
		close(fd);
		fd = -1;
	}
	return fd;
}
