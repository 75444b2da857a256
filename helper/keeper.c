/*
 * keeper.c: session counting and the keeper (see keeper.h). The store lock serialises every
 * change to the set of sessions with the keeper's start and exit, so a keeper never starts
 * twice and never exits under a session that just opened.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <keyutils.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "helper/app_token.h"
#include "helper/grant.h"
#include "helper/keeper.h"
#include "helper/keeper_loop.h"
#include "helper/service.h"
#include "helper/store.h"
#include "helper/user_token.h"
#include "keyring/keys.h"
#include "keyring/token_info.h"
#include "pam/registry.h"
#include "common/util.h"

#define READY_WAIT_MS 3000
#define STORE_LOCK_S  10

/* --- the user's session registry: CLIENT.sessions/PID-START (pam/registry.h) */

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

/*
 * Read one line of the form WANT[ ...] from fd by the deadline (a monotonic time in ms): true when
 * it came. One byte at a time, so nothing after the line is taken from the pipe.
 */
static bool line_within(int fd, const char *want, long long deadline)
{
	char line[64];
	size_t len = 0;

	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		long long left = deadline - ps_mono_ms();

		if (left <= 0 || poll(&p, 1, (int)left) != 1 || read(fd, line + len, 1) != 1)
			return false;
		if (line[len] == '\n' || ++len == sizeof(line) - 1)
			break;
	}
	line[len] = '\0';
	len = strlen(want);
	return strncmp(line, want, len) == 0 && (line[len] == '\0' || line[len] == ' ');
}

/*
 * Start `pam_spotify_helper keeper`; once it says it is hardened, the request on its stdin; then
 * wait for its "ready".
 */
static int keeper_spawn(const struct ps_request *req, char *line, size_t linelen)
{
	char buf[PS_REQUEST_MAX];
	int in[2], out[2], len, null;
	bool ok = false;
	pid_t pid;

	len = ps_request_format(&req->cfg, PS_OP_OPEN, buf, sizeof(buf));
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
	if (pid > 0 && line_within(out[0], PS_HELPER_HELLO, ps_mono_ms() + READY_WAIT_MS)) {
		ps_write_all(in[1], buf, (size_t)len);
		ok = true;
	}
	close(in[1]);
	ok = ok && line_within(out[0], "ready", ps_mono_ms() + READY_WAIT_MS);
	close(out[0]);
	if (ok)
		return 0;
	ps_errf(line, linelen, "the keeper did not start: the token will not be renewed");
	return -1;
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
	rc = dfd >= 0 ? ps_registry_add(dfd, -1, cfg->session_pid, why, sizeof(why)) : -1;
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
				 ps_registry_add(dfd, -1, cfg->session_pid, why, sizeof(why)) == 0;
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
		ps_registry_remove(dfd, -1, cfg->session_pid);
		if (keeper_lock_try(&s, &fd) == 0) {
			close(fd); /* no keeper: the last session out removes the keys */
			left = ps_registry_scan(dfd, NULL, NULL);
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

struct keeper {
	struct ps_request *req;
	struct ps_store store;
	int dfd, lockfd;
	struct ps_app_token stored; /* app token mode: the token last put in the keyring */
	char who[32];
	struct ps_loop loop;
};

/* When to renew: refresh_margin before the stored token expires (half its life at most). */
static long long keeper_schedule(struct ps_loop *l)
{
	struct keeper *k = l->ctx;
	const struct ps_config *cfg = &k->req->cfg;
	struct ps_keys_found found;
	struct ps_token_info info;
	long long next = ps_loop_now_ms();
	char err[PS_ERR_MAX];

	memset(&found, 0, sizeof(found));
	if (ps_keys_read(cfg->keyring == PS_KEYRING_PERSISTENT, &found, err, sizeof(err)) == 0 &&
	    found.info && ps_token_info_parse(&info, found.info, found.info_len) == 0 &&
	    strcmp(info.client_id, cfg->client_id) == 0)
		next = ps_loop_renew_at(info.expires_at, cfg->refresh_margin);
	ps_keys_found_free(&found);
	return next;
}

/* Renew from the stored refresh token (authorization_code through the system service). */
static int keeper_renew(struct ps_loop *l, char *line, size_t linelen)
{
	struct keeper *k = l->ctx;

	return ps_user_token_refresh(&k->req->cfg, false, k->req->cfg.refresh_margin, line,
				     linelen);
}

/* --- app token mode: the system service renews the host's token; we copy each new one */

static long long keeper_copy_schedule(struct ps_loop *l);

/* The service's token into the keyring when it is not the one we stored. */
static int keeper_copy(struct ps_loop *l, char *line, size_t linelen)
{
	struct keeper *k = l->ctx;
	const struct ps_config *cfg = &k->req->cfg;
	long long deadline = ps_mono_ms() + (long long)cfg->timeout * 1000 + 2000;
	struct ps_app_token t;
	int rc = ps_service_app_token(cfg, deadline, &t, line, linelen);

	if (rc == PS_EXIT_OK && !ps_app_token_same(&t, &k->stored)) {
		rc = ps_app_token_store(cfg, &t, line, linelen);
		if (rc == PS_EXIT_OK)
			memcpy(&k->stored, &t, sizeof(t));
	} else if (rc == PS_EXIT_OK && keeper_copy_schedule(l) <= ps_loop_now_ms()) {
		/* the service's renewal failed and it serves the old token: back off, ask again */
		char why[PS_ERR_MAX];

		ps_strlcpy(why, line, sizeof(why));
		ps_errf(line, linelen, "the system service has no newer token yet%s%s",
			why[0] ? ": " : "", why);
		rc = PS_EXIT_NETWORK;
	}
	ps_app_token_clear(&t);
	return rc;
}

/* Ask again when the stored token is due for renewal, as keeper_schedule does for ours. */
static long long keeper_copy_schedule(struct ps_loop *l)
{
	struct keeper *k = l->ctx;

	if (!k->stored.token_len)
		return ps_loop_now_ms();
	return ps_loop_renew_at(k->stored.info.expires_at, k->req->cfg.refresh_margin);
}

/* With no session left: under the store lock, check again, remove the keys, and go. */
static bool keeper_try_exit(struct ps_loop *l)
{
	struct keeper *k = l->ctx;
	char err[PS_ERR_MAX];

	if (ps_store_lock(&k->store, STORE_LOCK_S, err, sizeof(err)) != PS_EXIT_OK)
		return false;
	if (ps_loop_rescan(l) > 0) {
		ps_store_unlock(&k->store);
		return false;
	}
	if (k->req->cfg.remove_on_close)
		ps_keys_remove(k->req->cfg.keyring, err, sizeof(err));
	close(k->lockfd); /* free before the store lock, which the exit releases */
	k->lockfd = -1;
	return true;
}

static const struct ps_loop_ops keeper_ops = {
	.renew = keeper_renew,
	.schedule = keeper_schedule,
	.try_exit = keeper_try_exit,
};

static const struct ps_loop_ops keeper_copy_ops = {
	.renew = keeper_copy,
	.schedule = keeper_copy_schedule,
	.try_exit = keeper_try_exit,
};

/* Become the keeper: lock, registry, watches, signals; then "ready" to whoever started us. */
static int keeper_setup(struct keeper *k)
{
	char err[PS_ERR_MAX];

	keyctl_join_session_keyring(NULL); /* hold no reference to the login's session keyring */
	if (ps_store_open(&k->store, k->req->cfg.client_id, err, sizeof(err)) != PS_EXIT_OK ||
	    keeper_lock_try(&k->store, &k->lockfd) != 0)
		return -1;
	if (ftruncate(k->lockfd, 0) < 0 || dprintf(k->lockfd, "%ld\n", (long)getpid()) < 0)
		return -1;
	k->dfd = sessions_dir_open(&k->store, err, sizeof(err));
	if (k->dfd < 0)
		return -1;
	snprintf(k->who, sizeof(k->who), "user %d", (int)getuid());
	if (k->req->cfg.flow == PS_FLOW_CLIENT_CREDENTIALS)
		return ps_loop_init(&k->loop, &keeper_copy_ops, k, k->who, k->dfd);
	if (ps_loop_init(&k->loop, &keeper_ops, k, k->who, k->dfd) < 0)
		return -1;
	/* its backoff window, for spotify-token refresh to report */
	ps_loop_publish(&k->loop, k->store.dirfd, k->req->cfg.client_id);
	return 0;
}

int ps_keeper_run(struct ps_request *req)
{
	struct keeper k;
	int null;

	memset(&k, 0, sizeof(k));
	k.req = req;
	k.lockfd = k.dfd = -1;
	openlog("pam_spotify_helper[keeper]", LOG_PID, LOG_AUTHPRIV);
	if (keeper_setup(&k) < 0)
		return PS_EXIT_CONFIG; /* another keeper won, or the store is unusable */
	(void)!write(STDOUT_FILENO, "ready\n", 6);
	null = open("/dev/null", O_RDWR | O_CLOEXEC);
	dup2(null, STDIN_FILENO);
	dup2(null, STDOUT_FILENO);
	/* app token mode: ask the service at once (that also remembers what is stored) */
	k.loop.next_ms = k.req->cfg.flow == PS_FLOW_CLIENT_CREDENTIALS ? ps_loop_now_ms()
								       : keeper_schedule(&k.loop);
	ps_loop_run(&k.loop);
	ps_loop_close(&k.loop);
	ps_app_token_clear(&k.stored);
	return PS_EXIT_OK;
}
