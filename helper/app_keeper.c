/*
 * app_keeper.c: the host's app keeper (see app_keeper.h).
 *
 * Ending without losing a login: the module registers a session before it looks for an app
 * keeper (under the host lock), and an app keeper that sees no session removes the cache, drops
 * its flock and only then looks at the registry again. A login that saw the flock held is in the
 * registry by then, so the app keeper takes the flock back and fetches a token for it; a login
 * that saw the flock free has started a new app keeper, which then holds the flock, and the old
 * one ends.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <keyutils.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "helper/app_cache.h"
#include "helper/app_keeper.h"
#include "helper/grant.h"
#include "helper/keeper_loop.h"
#include "pam/rundir.h"
#include "pam/util.h"

#define ANSWER_MAX PS_ERR_MAX

struct app_keeper {
	struct ps_request *req;
	int rfd, dfd, appfd, lockfd;
	int ready_fd;	      /* to the starting process, until the first token is out */
	long long expires_at; /* of the token in the cache */
	char who[PS_APP_NAME_MAX + 16];
	struct ps_loop loop;
};

/* The flock of RUNDIR/APP.app/keeper, with our pid in it. 0: ours; 1: another holds it; -1. */
static int lock_take(struct app_keeper *k)
{
	k->lockfd =
		openat(k->appfd, PS_APP_LOCK_FILE, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (k->lockfd < 0)
		return -1;
	if (flock(k->lockfd, LOCK_EX | LOCK_NB) < 0) {
		int busy = errno == EWOULDBLOCK;

		close(k->lockfd);
		k->lockfd = -1;
		return busy ? 1 : -1;
	}
	if (ftruncate(k->lockfd, 0) < 0 || dprintf(k->lockfd, "%ld\n", (long)getpid()) < 0)
		return -1;
	return 0;
}

static void lock_drop(struct app_keeper *k)
{
	if (k->lockfd >= 0)
		close(k->lockfd);
	k->lockfd = -1;
}

/* Obtain a token and put it in the cache. */
static int fetch(struct app_keeper *k, char *line, size_t linelen)
{
	const struct ps_config *cfg = &k->req->cfg;
	struct ps_token_response tok;
	time_t started = time(NULL);
	int rc;

	rc = ps_grant_client_credentials(cfg, k->req->secret, &tok, line, linelen);
	if (rc != PS_EXIT_OK)
		return rc;
	rc = ps_app_cache_write(k->appfd, cfg, &tok, started, line, linelen);
	if (rc == PS_EXIT_OK)
		k->expires_at = (long long)started + tok.expires_in;
	ps_token_response_clear(&tok);
	return rc;
}

/* A valid token that an app keeper before us left in the cache: serve it, no request. */
static bool reuse(struct app_keeper *k)
{
	struct ps_app_token t;
	char line[ANSWER_MAX];
	bool ok = ps_app_cache_read(k->appfd, &k->req->cfg, getuid(), &t, line, sizeof(line)) ==
		  PS_EXIT_OK;

	if (ok)
		k->expires_at = t.info.expires_at;
	ps_app_token_clear(&t);
	return ok;
}

/* --- the loop's operations */

static int app_renew(struct ps_loop *l, char *line, size_t linelen)
{
	struct app_keeper *k = l->ctx;
	int rc = fetch(k, line, linelen);

	ps_request_redact(k->req, line, linelen);
	if (rc == PS_EXIT_CONFIG) {
		syslog(LOG_ERR,
		       "%s: renewal refused: %s; ending: the next login starts an app keeper "
		       "with the configuration then",
		       l->who, line);
		l->stop = true;
	}
	return rc;
}

static long long app_schedule(struct ps_loop *l)
{
	struct app_keeper *k = l->ctx;

	return ps_loop_renew_at(k->expires_at, k->req->cfg.refresh_margin);
}

/* No session left host-wide: remove the cache and go, unless a login came meanwhile. */
static bool app_try_exit(struct ps_loop *l)
{
	struct app_keeper *k = l->ctx;

	ps_app_cache_remove(k->appfd);
	lock_drop(k);
	if (ps_loop_rescan(l) == 0 || lock_take(k) != 0)
		return true;
	l->next_ms = ps_loop_now_ms(); /* the cache is gone: a token for the new login, now */
	return false;
}

static const struct ps_loop_ops app_ops = {
	.renew = app_renew,
	.schedule = app_schedule,
	.try_exit = app_try_exit,
};

/* --- start */

/* Tell the starting process how it went: "ready TEXT" or "fail CODE TEXT", then close. */
static void announce(struct app_keeper *k, int rc, const char *text)
{
	char out[ANSWER_MAX + 32];
	int n;

	if (k->ready_fd < 0)
		return;
	if (rc == PS_EXIT_OK)
		n = snprintf(out, sizeof(out), "ready %s\n", text);
	else
		n = snprintf(out, sizeof(out), "fail %d %s\n", rc, text);
	if (n > 0)
		ps_write_all(k->ready_fd, out, (size_t)n < sizeof(out) ? (size_t)n : sizeof(out));
	close(k->ready_fd);
	k->ready_fd = -1;
}

/* Directories, the flock and the loop. 0; 1 when another app keeper runs; -1 with a line. */
static int setup(struct app_keeper *k, char *line, size_t linelen)
{
	const struct ps_config *cfg = &k->req->cfg;
	char app[PS_APP_NAME_MAX];
	int rc;

	k->rfd = ps_rundir_open(false, line, linelen);
	if (k->rfd < 0)
		return -1;
	k->appfd = ps_rundir_subdir(k->rfd, cfg, ".app", false, 0, getuid(), 0, line, linelen);
	k->dfd = k->appfd < 0 ? -1
			      : ps_rundir_subdir(k->rfd, cfg, ".sessions", false, 0, 0, 0, line,
						 linelen);
	if (k->dfd < 0)
		return -1;
	rc = lock_take(k);
	if (rc != 0) {
		ps_errf(line, linelen, "cannot lock %s/%s: %s", PS_RUNDIR, PS_APP_LOCK_FILE,
			strerror(errno));
		return rc;
	}
	ps_app_name(cfg, "", app, sizeof(app));
	snprintf(k->who, sizeof(k->who), "app keeper %s", app);
	if (ps_loop_init(&k->loop, &app_ops, k, k->who, k->dfd) < 0) {
		ps_errf(line, linelen, "cannot watch the session registry: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* The first token: the one in the cache when it is still good, else a new one. */
static int first_token(struct app_keeper *k, char *line, size_t linelen)
{
	int rc = PS_EXIT_OK;

	if (ps_loop_rescan(&k->loop) == 0) {
		ps_errf(line, linelen,
			"the app keeper sees no open session in the host's registry (the session "
			"ended already, or /proc hides other users' processes: hidepid; exempt the "
			"app user's group with gid=)");
		return PS_EXIT_NO_TOKEN;
	}
	if (!reuse(k))
		rc = fetch(k, line, linelen);
	if (rc == PS_EXIT_OK)
		snprintf(line, linelen, "ok expires_in=%lld (app keeper %ld)",
			 k->expires_at - (long long)time(NULL), (long)getpid());
	return rc;
}

static void daemonize(void)
{
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);

	setsid();
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
		if (null > STDERR_FILENO)
			close(null);
	}
}

static void cleanup(struct app_keeper *k)
{
	if (k->lockfd >= 0)
		ps_app_cache_remove(k->appfd); /* ours to remove only while we hold the flock */
	lock_drop(k);
	ps_loop_close(&k->loop);
	if (k->dfd >= 0)
		close(k->dfd);
	if (k->appfd >= 0)
		close(k->appfd);
	if (k->rfd >= 0)
		close(k->rfd);
	ps_request_clear(k->req);
}

static int keeper_main(struct app_keeper *k)
{
	char line[ANSWER_MAX] = "";
	int rc;

	daemonize();
	openlog("pam_spotify_helper[app-keeper]", LOG_PID, LOG_AUTHPRIV);
	keyctl_join_session_keyring(NULL); /* hold no reference to the login's session keyring */
	rc = setup(k, line, sizeof(line));
	if (rc == 1) {
		announce(k, PS_EXIT_OK, "ok another app keeper runs");
		rc = PS_EXIT_OK;
	} else if (rc < 0) {
		announce(k, PS_EXIT_NO_TOKEN, line);
		rc = PS_EXIT_NO_TOKEN;
	} else {
		rc = first_token(k, line, sizeof(line));
		ps_request_redact(k->req, line, sizeof(line));
		announce(k, rc, line);
		if (rc == PS_EXIT_OK) {
			k->loop.next_ms = app_schedule(&k->loop);
			ps_loop_run(&k->loop);
		}
	}
	cleanup(k);
	return rc;
}

/* Read the app keeper's one line from fd into buf. */
static void read_answer(int fd, char *buf, size_t buflen)
{
	size_t len = 0;
	ssize_t n;

	buf[0] = '\0';
	while (len + 1 < buflen && !memchr(buf, '\n', len)) {
		n = read(fd, buf + len, buflen - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		buf[len] = '\0';
	}
	buf[strcspn(buf, "\n")] = '\0';
}

/* "ready TEXT" or "fail CODE TEXT" into a code and line. */
static int parse_answer(const char *buf, char *line, size_t linelen)
{
	unsigned long code;
	const char *sp;
	char num[8];

	if (!strncmp(buf, "ready ", 6)) {
		ps_strlcpy(line, buf + 6, linelen);
		return PS_EXIT_OK;
	}
	sp = strncmp(buf, "fail ", 5) == 0 ? strchr(buf + 5, ' ') : NULL;
	if (sp && (size_t)(sp - buf - 5) < sizeof(num)) {
		memcpy(num, buf + 5, (size_t)(sp - buf - 5));
		num[sp - buf - 5] = '\0';
		if (ps_parse_ulong(num, 1, 7, &code) == 0) {
			ps_strlcpy(line, sp + 1, linelen);
			return (int)code;
		}
	}
	ps_errf(line, linelen, "the app keeper ended before it had a token: see the system log");
	return PS_EXIT_NETWORK;
}

int ps_app_keeper_start(struct ps_request *req, char *line, size_t linelen)
{
	struct app_keeper k = {.req = req, .rfd = -1, .dfd = -1, .appfd = -1, .lockfd = -1};
	char buf[ANSWER_MAX + 32];
	int p[2];
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0 || (pid = fork()) < 0) {
		ps_errf(line, linelen, "cannot start the app keeper: %s", strerror(errno));
		return PS_EXIT_NO_TOKEN;
	}
	if (pid == 0) {
		close(p[0]);
		k.ready_fd = p[1];
		k.loop.ifd = k.loop.sfd = -1;
		_exit(keeper_main(&k));
	}
	close(p[1]);
	read_answer(p[0], buf, sizeof(buf));
	close(p[0]);
	return parse_answer(buf, line, linelen);
}
