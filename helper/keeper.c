/*
 * keeper.c: session counting and the keeper (see keeper.h). The store lock serialises every
 * change to the set of sessions with the keeper's start and exit, so a keeper never starts
 * twice and never exits under a session that just opened.
 */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <keyutils.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "helper/grant.h"
#include "helper/keeper.h"
#include "helper/store.h"
#include "helper/user_token.h"
#include "keyring/keys.h"
#include "keyring/token_info.h"
#include "pam/util.h"

#define SESSIONS_MAX  256
#define BACKOFF_MAX_S 60
#define READY_WAIT_MS 3000
#define NEVER	      (-1LL)
#define STORE_LOCK_S  10

/* --- session files: CLIENT.sessions/PID-START */

/* The start time of pid (field 22 of /proc/PID/stat); 0 when there is no such process. */
static unsigned long long proc_start(long pid)
{
	char path[64], buf[1024], *p;
	ssize_t n;
	int fd, field;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
	for (field = 2; p && field < 22; field++) {
		p = strchr(p + 1, ' ');
	}
	return p ? strtoull(p + 1, NULL, 10) : 0;
}

static int session_name(long pid, char *out, size_t outlen)
{
	unsigned long long start = proc_start(pid);

	if (!start)
		return -1;
	return snprintf(out, outlen, "%ld-%llu", pid, start) < (int)outlen ? 0 : -1;
}

/* The pid of a live session file, or 0 when its process is gone (or the name is not ours). */
static long session_alive(const char *name)
{
	unsigned long long start;
	char *end;
	long pid = strtol(name, &end, 10);

	if (pid <= 0 || *end != '-')
		return 0;
	start = strtoull(end + 1, &end, 10);
	if (*end || !start || proc_start(pid) != start)
		return 0;
	return pid;
}

static int sessions_dir_open(struct ps_store *s, char *line, size_t linelen)
{
	char name[PS_CLIENT_ID_MAX + 16];
	int fd;

	snprintf(name, sizeof(name), "%s.sessions", s->client_id);
	if (mkdirat(s->dirfd, name, 0700) < 0 && errno != EEXIST) {
		ps_errf(line, linelen, "cannot create %s/%s: %s", s->dir, name, strerror(errno));
		return -1;
	}
	fd = openat(s->dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		ps_errf(line, linelen, "cannot open %s/%s: %s", s->dir, name, strerror(errno));
	return fd;
}

/* Call fn for each live session (stale files are removed); returns the number of them. */
static int sessions_scan(int dfd, void (*fn)(void *ctx, const char *name, long pid), void *ctx)
{
	struct dirent *e;
	DIR *d;
	int fd = dup(dfd), n = 0;

	if (fd < 0 || !(d = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	rewinddir(d);
	while ((e = readdir(d))) {
		long pid;

		if (e->d_name[0] == '.')
			continue;
		pid = session_alive(e->d_name);
		if (!pid) {
			unlinkat(dfd, e->d_name, 0);
			continue;
		}
		n++;
		if (fn)
			fn(ctx, e->d_name, pid);
	}
	closedir(d);
	return n;
}

/* --- the keeper's lock file: CLIENT.keeper, flocked by the keeper, holding its pid */

/* 0: acquired (*fd holds it); 1: a keeper holds it; -1: error. */
static int keeper_lock_try(struct ps_store *s, int *fd)
{
	char name[PS_CLIENT_ID_MAX + 16];

	snprintf(name, sizeof(name), "%s.keeper", s->client_id);
	*fd = openat(s->dirfd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (*fd < 0)
		return -1;
	if (flock(*fd, LOCK_EX | LOCK_NB) == 0)
		return 0;
	close(*fd);
	*fd = -1;
	return errno == EWOULDBLOCK ? 1 : -1;
}

/* --- attach, detach, poke */

/* Start `pam_spotify_helper keeper` with the request on its stdin; wait for its "ready". */
static int keeper_spawn(const struct ps_request *req, char *line, size_t linelen)
{
	char buf[PS_REQUEST_MAX], ready[16] = "";
	int in[2], out[2], len, null;
	struct pollfd p;
	pid_t pid;

	len = ps_request_format(&req->cfg, PS_OP_OPEN, req->secret_len ? req->secret : NULL, buf,
				sizeof(buf));
	if (len < 0 || pipe2(in, O_CLOEXEC) < 0)
		return -1;
	if (pipe2(out, O_CLOEXEC) < 0) {
		close(in[0]);
		close(in[1]);
		return -1;
	}
	pid = fork();
	if (pid == 0) {
		null = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (dup2(in[0], STDIN_FILENO) < 0 || dup2(out[1], STDOUT_FILENO) < 0 ||
		    dup2(null, STDERR_FILENO) < 0)
			_exit(127);
		closefrom(3);
		setsid();
		execl(PS_HELPER_PATH, "pam_spotify_helper", "keeper", (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	if (pid > 0)
		ps_write_all(in[1], buf, (size_t)len);
	explicit_bzero(buf, sizeof(buf));
	close(in[1]);
	p = (struct pollfd){.fd = out[0], .events = POLLIN};
	if (pid > 0 && poll(&p, 1, READY_WAIT_MS) == 1 &&
	    read(out[0], ready, sizeof(ready) - 1) > 0 && strncmp(ready, "ready", 5) == 0) {
		close(out[0]);
		return 0;
	}
	close(out[0]);
	ps_errf(line, linelen, "the keeper did not start: the token will not be renewed");
	return -1;
}

/* Create the session's file. 0, or -1 with a reason (e.g. /proc mounted with hidepid). */
static int session_register(int dfd, long pid, char *why, size_t whylen)
{
	char name[64];
	int fd;

	if (session_name(pid, name, sizeof(name)) < 0) {
		ps_errf(why, whylen, "cannot see the session's process %ld in /proc (hidepid?)",
			pid);
		return -1;
	}
	fd = openat(dfd, name, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		ps_errf(why, whylen, "cannot register the session: %s", strerror(errno));
		return -1;
	}
	close(fd);
	return 0;
}

int ps_keeper_attach(const struct ps_request *req, char *line, size_t linelen)
{
	const struct ps_config *cfg = &req->cfg;
	char why[PS_ERR_MAX] = "cannot lock the keeper file";
	struct ps_store s;
	int dfd, fd, rc;

	if (cfg->keyring == PS_KEYRING_SESSION || cfg->session_pid <= 0)
		return PS_EXIT_OK;
	if (ps_store_open(&s, cfg->client_id, why, sizeof(why)) != PS_EXIT_OK)
		goto fail;
	if (ps_store_lock(&s, STORE_LOCK_S, why, sizeof(why)) != PS_EXIT_OK) {
		ps_store_close(&s);
		goto fail;
	}
	dfd = sessions_dir_open(&s, why, sizeof(why));
	rc = dfd >= 0 ? session_register(dfd, cfg->session_pid, why, sizeof(why)) : -1;
	/* a keeper without this session would see none and remove the keys: start none then */
	if (rc == 0)
		rc = keeper_lock_try(&s, &fd);
	if (rc == 0) {
		close(fd); /* free: start one; the store lock keeps others out meanwhile */
		rc = keeper_spawn(req, why, sizeof(why));
	}
	if (dfd >= 0)
		close(dfd);
	ps_store_unlock(&s);
	ps_store_close(&s);
	if (rc >= 0)
		return PS_EXIT_OK;
fail:
	/* the token is stored: a keeper problem is worth a log line, not a failed login */
	snprintf(line + strlen(line), linelen - strlen(line), " (no renewal: %s)", why);
	return PS_EXIT_OK;
}

bool ps_keeper_join(const struct ps_config *cfg, unsigned lock_wait_s)
{
	char why[PS_ERR_MAX];
	struct ps_store s;
	bool joined = false;
	int dfd, fd;

	if (cfg->keyring == PS_KEYRING_SESSION || cfg->session_pid <= 0)
		return false;
	if (ps_store_open(&s, cfg->client_id, why, sizeof(why)) != PS_EXIT_OK)
		return false;
	/* under the store lock a running keeper cannot be half-way out (see keeper_try_exit) */
	if (ps_store_lock(&s, lock_wait_s, why, sizeof(why)) == PS_EXIT_OK) {
		if (keeper_lock_try(&s, &fd) == 1) {
			dfd = sessions_dir_open(&s, why, sizeof(why));
			joined = dfd >= 0 &&
				 session_register(dfd, cfg->session_pid, why, sizeof(why)) == 0;
			if (dfd >= 0)
				close(dfd);
		} else if (fd >= 0) {
			close(fd); /* no keeper: nothing to join, none to start for a failed open */
		}
		ps_store_unlock(&s);
	}
	ps_store_close(&s);
	return joined;
}

static void remove_session(int dfd, long pid)
{
	char name[64], prefix[32];
	struct dirent *e;
	DIR *d;
	int fd;

	if (session_name(pid, name, sizeof(name)) == 0 && unlinkat(dfd, name, 0) == 0)
		return;
	/* the opener is gone or changed: drop any file of that pid */
	snprintf(prefix, sizeof(prefix), "%ld-", pid);
	fd = dup(dfd);
	if (fd < 0 || !(d = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((e = readdir(d)))
		if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
			unlinkat(dfd, e->d_name, 0);
	closedir(d);
}

int ps_keeper_detach(const struct ps_config *cfg, char *line, size_t linelen)
{
	struct ps_store s;
	int dfd, fd, rc, left = 0;

	if (cfg->keyring == PS_KEYRING_SESSION || cfg->session_pid <= 0) {
		/* no session to count (a session keyring is the session's own): remove now */
		rc = cfg->remove_on_close ? ps_keys_remove(cfg->keyring, line, linelen)
					  : PS_EXIT_OK;
		if (rc == PS_EXIT_OK)
			snprintf(line, linelen, cfg->remove_on_close ? "ok removed" : "ok kept");
		return rc;
	}
	rc = ps_store_open(&s, cfg->client_id, line, linelen);
	if (rc != PS_EXIT_OK)
		return rc;
	rc = ps_store_lock(&s, STORE_LOCK_S, line, linelen);
	if (rc != PS_EXIT_OK) {
		ps_store_close(&s);
		return rc;
	}
	dfd = sessions_dir_open(&s, line, linelen);
	if (dfd >= 0) {
		remove_session(dfd, cfg->session_pid);
		if (keeper_lock_try(&s, &fd) == 0) {
			close(fd); /* no keeper: the last session out removes the keys */
			left = sessions_scan(dfd, NULL, NULL);
		} else {
			left = -1; /* the keeper sees the change and acts */
		}
		close(dfd);
	}
	if (left == 0 && cfg->remove_on_close)
		rc = ps_keys_remove(cfg->keyring, line, linelen);
	ps_store_unlock(&s);
	ps_store_close(&s);
	if (rc == PS_EXIT_OK)
		snprintf(line, linelen, "ok session closed");
	return rc;
}

int ps_keeper_poke(const struct ps_config *cfg)
{
	char err[PS_ERR_MAX], buf[32] = "";
	struct ps_store s;
	long pid = 0;
	int fd, rc = -1;

	if (ps_store_open(&s, cfg->client_id, err, sizeof(err)) != PS_EXIT_OK)
		return -1;
	if (keeper_lock_try(&s, &fd) == 1) {
		char name[PS_CLIENT_ID_MAX + 16];
		int rfd;

		snprintf(name, sizeof(name), "%s.keeper", s.client_id);
		rfd = openat(s.dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (rfd >= 0 && read(rfd, buf, sizeof(buf) - 1) > 0)
			pid = strtol(buf, NULL, 10);
		if (rfd >= 0)
			close(rfd);
		if (pid > 0 && kill((pid_t)pid, SIGUSR1) == 0)
			rc = 0;
	} else if (fd >= 0) {
		close(fd);
	}
	ps_store_close(&s);
	return rc;
}

/* --- the keeper */

struct session {
	long pid;
	int pidfd;
	char name[64];
};

struct keeper {
	struct ps_request *req;
	struct ps_store store;
	int dfd, ifd, sfd, lockfd;
	struct session sessions[SESSIONS_MAX];
	int nsessions;
	long long next_ms; /* wall clock (ms) of the next renewal; NEVER after invalid_grant */
	unsigned failures;
	bool forced; /* asked by SIGUSR1: renew even a token that still lives long */
};

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void keeper_add_session(void *ctx, const char *name, long pid)
{
	struct keeper *k = ctx;
	struct session *s;

	if (k->nsessions >= SESSIONS_MAX)
		return;
	s = &k->sessions[k->nsessions];
	s->pidfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
	if (s->pidfd < 0)
		return; /* gone between the scan and now: the next scan drops its file */
	s->pid = pid;
	ps_strlcpy(s->name, name, sizeof(s->name));
	k->nsessions++;
}

/* Rebuild the table of sessions from the directory (cheap: a handful of files). */
static void keeper_rescan(struct keeper *k)
{
	int i;

	for (i = 0; i < k->nsessions; i++)
		close(k->sessions[i].pidfd);
	k->nsessions = 0;
	sessions_scan(k->dfd, keeper_add_session, k);
}

/* When to renew: refresh_margin before the stored token expires (half its life at most). */
static void keeper_schedule(struct keeper *k)
{
	const struct ps_config *cfg = &k->req->cfg;
	struct ps_keys_found found;
	struct ps_token_info info;
	long long now = now_ms(), life, margin;
	char err[PS_ERR_MAX];

	memset(&found, 0, sizeof(found));
	k->next_ms = now;
	if (ps_keys_read(cfg->keyring == PS_KEYRING_PERSISTENT, &found, err, sizeof(err)) == 0 &&
	    found.info && ps_token_info_parse(&info, found.info, found.info_len) == 0 &&
	    strcmp(info.client_id, cfg->client_id) == 0) {
		life = info.expires_at * 1000 - now;
		margin = (long long)cfg->refresh_margin * 1000;
		if (margin > life / 2)
			margin = life / 2;
		if (life - margin > 0)
			k->next_ms = now + life - margin;
	}
	ps_keys_found_free(&found);
}

/* Renew by the configured flow. */
static int keeper_renew_once(struct keeper *k, char *line, size_t linelen)
{
	const struct ps_config *cfg = &k->req->cfg;
	const char *secret = k->req->secret_len ? k->req->secret : NULL;
	struct ps_token_response tok;
	time_t started = time(NULL);
	int rc;

	if (cfg->flow != PS_FLOW_CLIENT_CREDENTIALS)
		return ps_user_token_refresh(cfg, secret, false, cfg->refresh_margin, line,
					     linelen);
	rc = ps_grant_client_credentials(cfg, secret, &tok, line, linelen);
	if (rc == PS_EXIT_OK) {
		rc = ps_grant_store(cfg, &tok, started, line, linelen);
		ps_token_response_clear(&tok);
	}
	return rc;
}

/* Capped exponential backoff with +-20% jitter; at least Retry-After after a 429. */
static long long keeper_backoff_ms(unsigned failures)
{
	long long base = 1000LL << (failures > 6 ? 6 : failures - 1);
	long retry_after = ps_grant_retry_after();
	unsigned short r = 0;

	if (base > BACKOFF_MAX_S * 1000LL)
		base = BACKOFF_MAX_S * 1000LL;
	(void)!getrandom(&r, sizeof(r), 0);
	base = base * 8 / 10 + (base * 4 / 10) * r / 65535;
	if (retry_after >= 0 && retry_after * 1000LL > base)
		base = retry_after * 1000LL;
	return base;
}

static void keeper_renew(struct keeper *k)
{
	char line[PS_ERR_MAX] = "";
	int rc = keeper_renew_once(k, line, sizeof(line));

	k->forced = false;
	if (rc == PS_EXIT_OK) {
		k->failures = 0;
		keeper_schedule(k);
		return;
	}
	syslog(LOG_WARNING, "user %d: renewal failed: %s", (int)getuid(), line);
	if (rc == PS_EXIT_REAUTH) {
		k->next_ms = NEVER; /* invalid_grant: the store is marked; the user must log in */
		return;
	}
	k->failures++;
	k->next_ms = now_ms() + keeper_backoff_ms(k->failures);
}

/* With no session left: under the store lock, check again, remove the keys, and go. */
static bool keeper_try_exit(struct keeper *k)
{
	char err[PS_ERR_MAX];

	if (ps_store_lock(&k->store, STORE_LOCK_S, err, sizeof(err)) != PS_EXIT_OK)
		return false;
	keeper_rescan(k);
	if (k->nsessions > 0) {
		ps_store_unlock(&k->store);
		return false;
	}
	if (k->req->cfg.remove_on_close)
		ps_keys_remove(k->req->cfg.keyring, err, sizeof(err));
	close(k->lockfd); /* free before the store lock, which the exit releases */
	return true;
}

/* One wait: inotify, signals, the sessions' pidfds, and the renewal time. false: stop. */
static bool keeper_wait(struct keeper *k)
{
	struct pollfd p[SESSIONS_MAX + 2];
	struct signalfd_siginfo si;
	long long timeout = -1;
	char ev[4096];
	int i, n = 2;

	p[0] = (struct pollfd){.fd = k->ifd, .events = POLLIN};
	p[1] = (struct pollfd){.fd = k->sfd, .events = POLLIN};
	for (i = 0; i < k->nsessions; i++)
		p[n++] = (struct pollfd){.fd = k->sessions[i].pidfd, .events = POLLIN};
	if (k->next_ms != NEVER) {
		timeout = k->next_ms - now_ms();
		if (timeout < 0)
			timeout = 0;
	}
	if (poll(p, (nfds_t)n, timeout > 86400000 ? 86400000 : (int)timeout) < 0)
		return errno == EINTR;
	if (p[1].revents && read(k->sfd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo != SIGUSR1)
			return false;
		k->next_ms = now_ms(); /* spotify-token refresh, --min-valid or login asks */
		k->forced = true;
	}
	for (i = 0; i < k->nsessions; i++)
		if (p[2 + i].revents) /* the session's process is gone without a close */
			unlinkat(k->dfd, k->sessions[i].name, 0);
	if (p[0].revents)
		while (read(k->ifd, ev, sizeof(ev)) > 0)
			;
	keeper_rescan(k);
	if (k->next_ms != NEVER && now_ms() >= k->next_ms)
		keeper_renew(k);
	return true;
}

/* Become the keeper: lock, watches, signals; then "ready" to whoever started us. */
static int keeper_setup(struct keeper *k)
{
	char path[64], err[PS_ERR_MAX];
	sigset_t set;
	long pid = (long)getpid();

	keyctl_join_session_keyring(NULL); /* hold no reference to the login's session keyring */
	if (ps_store_open(&k->store, k->req->cfg.client_id, err, sizeof(err)) != PS_EXIT_OK ||
	    keeper_lock_try(&k->store, &k->lockfd) != 0)
		return -1;
	if (ftruncate(k->lockfd, 0) < 0 || dprintf(k->lockfd, "%ld\n", pid) < 0)
		return -1;
	k->dfd = sessions_dir_open(&k->store, err, sizeof(err));
	if (k->dfd < 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", k->dfd);
	k->ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (k->ifd < 0 ||
	    inotify_add_watch(k->ifd, path, IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO) <
		    0)
		return -1;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	k->sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	return k->sfd < 0 ? -1 : 0;
}

int ps_keeper_run(struct ps_request *req)
{
	struct keeper k;
	int null, rc = 0;

	memset(&k, 0, sizeof(k));
	k.req = req;
	k.lockfd = k.dfd = k.ifd = k.sfd = -1;
	openlog("pam_spotify_helper[keeper]", LOG_PID, LOG_AUTHPRIV);
	if (keeper_setup(&k) < 0)
		return PS_EXIT_CONFIG; /* another keeper won, or the store is unusable */
	(void)!write(STDOUT_FILENO, "ready\n", 6);
	null = open("/dev/null", O_RDWR | O_CLOEXEC);
	dup2(null, STDIN_FILENO);
	dup2(null, STDOUT_FILENO);
	keeper_rescan(&k);
	keeper_schedule(&k);
	for (;;) {
		if (k.nsessions == 0 && keeper_try_exit(&k))
			break;
		if (!keeper_wait(&k))
			break;
	}
	ps_request_clear(req);
	return rc;
}
