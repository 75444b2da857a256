/*
 * app_token.c: the module's part of the host's app token (see app_token.h). Runs as root inside
 * the PAM application: every path below RUNDIR is opened relative to a checked directory with
 * O_NOFOLLOW, and nothing here waits past the login's deadline.
 */
#include <config.h> /* autoconf; "config.h" here would be pam/config.h */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include <security/pam_ext.h>
#include <security/pam_modutil.h>

#include "pam/app_token.h"
#include "pam/registry.h"
#include "pam/request.h"
#include "pam/rundir.h"
#include "pam/util.h"

struct app_open {
	pam_handle_t *pamh;
	struct ps_config *cfg;
	const struct passwd *pw;  /* the session's user */
	const struct passwd *app; /* the app user */
	long long deadline;
	int rfd, sfd, afd, lfd; /* RUNDIR, APP.sessions, APP.app, APP.lock */
	const char *secret;	/* the client secret, for the app keeper */
	char why[PS_ERR_MAX];
};

/* One line, and the login requests a token of its own (as before there was an app keeper). */
static enum ps_app_outcome fallback(struct app_open *a)
{
	pam_syslog(a->pamh, LOG_NOTICE,
		   "user %s: open: no shared app token: %s; this login requests a token of its "
		   "own",
		   a->pw->pw_name, a->why);
	return PS_APP_FALLBACK;
}

/* The app user: it exists and is not root. */
static int app_user(struct app_open *a)
{
	a->app = pam_modutil_getpwnam(a->pamh, a->cfg->app_user);
	if (!a->app) {
		ps_errf(a->why, sizeof(a->why),
			"app_user %s does not exist (create it to share one app token: "
			"useradd --system %s)",
			a->cfg->app_user, a->cfg->app_user);
		return -1;
	}
	if (a->app->pw_uid == 0) {
		ps_errf(a->why, sizeof(a->why), "app_user %s is root; the app keeper never is",
			a->cfg->app_user);
		return -1;
	}
	return 0;
}

/* RUNDIR, APP.sessions (root's) and APP.app (the app user's), made as needed. */
static int dirs_open(struct app_open *a)
{
	char *why = a->why;
	size_t n = sizeof(a->why);

	a->rfd = ps_rundir_open(true, why, n);
	if (a->rfd < 0)
		return -1;
	a->sfd = ps_rundir_subdir(a->rfd, a->cfg, ".sessions", true, 0755, 0, 0, why, n);
	if (a->sfd < 0)
		return -1;
	a->afd = ps_rundir_subdir(a->rfd, a->cfg, ".app", true, 0755, a->app->pw_uid,
				  a->app->pw_gid, why, n);
	return a->afd < 0 ? -1 : 0;
}

/* The host lock RUNDIR/APP.lock, polled until the deadline. 0, or -1 with why. */
static int host_lock(struct app_open *a)
{
	char name[PS_APP_NAME_MAX + 8];
	struct stat st;

	ps_app_name(a->cfg, ".lock", name, sizeof(name));
	a->lfd = openat(a->rfd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (a->lfd < 0 || fstat(a->lfd, &st) < 0 || st.st_uid != 0 || !S_ISREG(st.st_mode)) {
		ps_errf(a->why, sizeof(a->why), "cannot use the host lock %s/%s (%s)", PS_RUNDIR,
			name, a->lfd < 0 ? strerror(errno) : "not root's regular file");
		return -1;
	}
	if (ps_flock_within(a->lfd, ps_spawn_left_ms(a->deadline), NULL) == 0)
		return 0;
	if (errno == EWOULDBLOCK)
		return 1;
	ps_errf(a->why, sizeof(a->why), "cannot lock %s/%s: %s", PS_RUNDIR, name, strerror(errno));
	return -1;
}

/* An app keeper holds RUNDIR/APP.app/keeper. */
static bool keeper_running(struct app_open *a)
{
	int fd = openat(a->afd, PS_APP_LOCK_FILE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	bool held;

	if (fd < 0)
		return false;
	held = ps_flock_busy(fd);
	close(fd); /* a probe: never keep it (that would stop the app keeper from starting) */
	return held;
}

/* Start the app keeper as the app user with the request and the secret on its stdin. */
static int keeper_start(struct app_open *a, struct ps_spawn_result *res)
{
	struct ps_spawn_opts o = {.mode = "app-keeper", .deadline_ms = a->deadline};
	char request[PS_REQUEST_MAX];
	int len, rc;

	len = ps_request_format(a->cfg, PS_OP_OPEN, a->secret, request, sizeof(request));
	if (len < 0) {
		ps_errf(a->why, sizeof(a->why), "the request to the app keeper is too large");
		return -1;
	}
	rc = ps_spawn_helper(a->pamh, a->app, request, (size_t)len, &o, res);
	explicit_bzero(request, sizeof(request));
	if (rc < 0)
		ps_strlcpy(a->why, res->message, sizeof(a->why));
	return rc;
}

/* Under the host lock: an app keeper runs, or we start one. */
static enum ps_app_outcome ensure_keeper(struct app_open *a, struct ps_spawn_result *res)
{
	if (keeper_running(a))
		return PS_APP_READY;
	/* drop the entries of sessions that died unclosed (the app keeper may not: RUNDIR's
	 * registry is root's); here, not at every login, which would read /proc for each entry */
	ps_registry_scan(a->sfd, NULL, NULL);
	if (keeper_start(a, res) < 0) /* a refused helper file: run_helper logs that, once */
		return res->refused ? PS_APP_FALLBACK : fallback(a);
	/* 1: it cannot serve here; 127: it did not start (e.g. the helper is not the app user's) */
	if (!res->timed_out && (res->exit_code == PS_EXIT_NO_TOKEN || res->exit_code == 127)) {
		ps_strlcpy(a->why, res->message, sizeof(a->why));
		return fallback(a);
	}
	if (res->timed_out || res->exit_code != PS_EXIT_OK)
		return PS_APP_FAILED;
	if (a->cfg->debug)
		pam_syslog(a->pamh, LOG_DEBUG, "user %s: open: app keeper started: %s",
			   a->pw->pw_name, res->message);
	return PS_APP_READY;
}

static void app_open_close(struct app_open *a)
{
	if (a->lfd >= 0)
		close(a->lfd); /* releases the host lock */
	if (a->afd >= 0)
		close(a->afd);
	if (a->sfd >= 0)
		close(a->sfd);
	if (a->rfd >= 0)
		close(a->rfd);
}

enum ps_app_outcome ps_app_open(pam_handle_t *pamh, struct ps_config *cfg, const struct passwd *pw,
				const char *secret, long long deadline, struct ps_spawn_result *res)
{
	struct app_open a = {
		.pamh = pamh, .cfg = cfg, .pw = pw, .secret = secret, .deadline = deadline};
	enum ps_app_outcome out;
	int rc;

	memset(res, 0, sizeof(*res));
	a.rfd = a.sfd = a.afd = a.lfd = -1;
	if (app_user(&a) < 0 || dirs_open(&a) < 0) {
		app_open_close(&a);
		return fallback(&a);
	}
	if (ps_registry_add(a.sfd, (long)pw->pw_uid, cfg->session_pid, a.why, sizeof(a.why)) < 0 ||
	    (rc = host_lock(&a)) < 0) {
		app_open_close(&a);
		return fallback(&a);
	}
	if (rc > 0) {
		res->exit_code = PS_EXIT_NETWORK;
		ps_errf(res->message, sizeof(res->message),
			"no app token within the %u s timeout: another login is still starting "
			"the app keeper; is the accounts server at %s reachable?",
			cfg->timeout, cfg->token_url);
		out = PS_APP_FAILED;
	} else {
		out = ensure_keeper(&a, res);
	}
	if (out == PS_APP_READY)
		cfg->app_uid = (long)a.app->pw_uid;
	app_open_close(&a);
	return out;
}

void ps_app_close(pam_handle_t *pamh, const struct ps_config *cfg, const struct passwd *pw)
{
	char why[PS_ERR_MAX];
	int rfd = ps_rundir_open(false, why, sizeof(why)), sfd = -1;

	if (rfd >= 0)
		sfd = ps_rundir_subdir(rfd, cfg, ".sessions", false, 0, 0, 0, why, sizeof(why));
	if (sfd >= 0)
		ps_registry_remove(sfd, (long)pw->pw_uid, cfg->session_pid);
	else if (cfg->debug)
		pam_syslog(pamh, LOG_DEBUG, "user %s: close: no host session registry: %s",
			   pw->pw_name, why);
	if (sfd >= 0)
		close(sfd);
	if (rfd >= 0)
		close(rfd);
}
