/*
 * service.c: the module's side of the system service (see service.h). Runs as root inside the
 * PAM application, which under su or sudo the user can signal and limit: nothing here holds a
 * lock, and nothing waits past the login's deadline.
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#define _GNU_SOURCE 1
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <syslog.h>
#include <unistd.h>
#include <security/pam_ext.h>
#include <security/pam_modutil.h>

#include "common/child.h"
#include "common/frame.h"
#include "common/request.h"
#include "common/paths.h"
#include "pam/service.h"
#include "pam/spawn.h"
#include "common/util.h"

/* --- starting it: pam_spotify_helper service --start (helper/service_start.h) */

/*
 * Start the service for cfg (spawn.h: as root, in a fresh session, no inherited descriptor, an
 * empty environment; the helper takes a clean context itself and forks the service off to
 * init) and read how its start went: "ready", "busy" (another one serves) or "fail CODE TEXT".
 * PS_EXIT_OK when it serves, else an exit code with line.
 */
static int service_start(pam_handle_t *pamh, struct ps_config *cfg, const char *lock,
			 long long deadline, char *line, size_t linelen)
{
	struct ps_spawn_opts o = {
		.mode = "service", .deadline_ms = deadline, .lock_fd = -1, .lock_path = lock};
	struct ps_spawn_result res;
	char req[PS_REQUEST_MAX], num[2];
	unsigned long code;
	int len = ps_request_format(cfg, PS_OP_OPEN, req, sizeof(req));

	if (len < 0) {
		ps_errf(line, linelen, "the request to the system service is too large");
		return PS_EXIT_CONFIG;
	}
	if (ps_spawn_helper(pamh, NULL, req, (size_t)len, &o, &res) < 0) {
		ps_strlcpy(line, res.message, linelen); /* also a helper it must not run as root */
		return PS_EXIT_CONFIG;
	}
	if (!strcmp(res.message, "ready") || !strcmp(res.message, "busy"))
		return PS_EXIT_OK;
	num[0] = res.message[5];
	num[1] = '\0';
	if (!strncmp(res.message, "fail ", 5) && res.message[6] == ' ' &&
	    ps_parse_ulong(num, 1, 7, &code) == 0) {
		ps_strlcpy(line, res.message + 7, linelen);
		return (int)code;
	}
	if (res.timed_out)
		ps_errf(line, linelen,
			"the system service did not start within the %u s timeout: see the system "
			"log (pam_spotify_helper[service])",
			cfg->timeout);
	else
		ps_errf(line, linelen, "the system service could not be started: %s (status %d)",
			res.message[0] ? res.message : "its starter ended without a word",
			res.exit_code);
	return PS_EXIT_NETWORK;
}

/* --- talking to it, and to the user's keeper */

int ps_session_call(const struct ps_config *cfg, const struct passwd *pw, const char *path,
		    uid_t peer, bool or_root, const char *op, long long deadline, bool wait,
		    char *line, size_t linelen)
{
	char msg[256], reply[PS_ERR_MAX + 256], num[32], name[PS_SERVICE_NAME_MAX];
	struct ps_buf b = {.buf = msg, .cap = sizeof(msg)};
	int pidfd = -1, rc;
	size_t n = 0;

	ps_service_name(cfg, "", name, sizeof(name));
	ps_msg_add(&b, "op", op);
	ps_msg_add(&b, "service", name);
	snprintf(num, sizeof(num), "%u", (unsigned)pw->pw_uid);
	ps_msg_add(&b, "uid", num);
	snprintf(num, sizeof(num), "%ld", cfg->session_pid);
	ps_msg_add(&b, "pid", num);
	snprintf(num, sizeof(num), "%u", cfg->refresh_margin);
	ps_msg_add(&b, "margin", num);
	ps_msg_end(&b);
	if (!strcmp(op, "open") && cfg->session_pid > 0)
		pidfd = (int)syscall(SYS_pidfd_open, (pid_t)cfg->session_pid, 0);
	rc = ps_msg_call(path, peer, or_root, msg, b.len, pidfd, deadline, wait ? reply : NULL,
			 sizeof(reply) - 1, &n);
	if (pidfd >= 0)
		close(pidfd);
	if (rc == -2)
		ps_errf(line, linelen, "%s did not answer within the %u s timeout (%s)", path,
			cfg->timeout, strerror(errno));
	if (rc < 0)
		return rc == -1 ? -1 : PS_EXIT_NETWORK;
	if (!wait) {
		snprintf(line, linelen, "ok told %s (nowait)", path);
		return PS_EXIT_OK;
	}
	return ps_msg_status(reply, n, path, line, linelen);
}

/* The app user: it exists and is not root. */
static const struct passwd *app_user(pam_handle_t *pamh, const struct ps_config *cfg, char *line,
				     size_t linelen)
{
	const struct passwd *app = pam_modutil_getpwnam(pamh, cfg->app_user);

	if (!app)
		ps_errf(line, linelen,
			"app_user %s does not exist: create the system service's user "
			"(useradd --system %s)",
			cfg->app_user, cfg->app_user);
	else if (app->pw_uid == 0)
		ps_errf(line, linelen, "app_user %s is root; the system service never is",
			cfg->app_user);
	return app && app->pw_uid != 0 ? app : NULL;
}

/* The systemd socket serves this configuration (it answers a configuration error if not). */
static int open_systemd(const struct ps_config *cfg, const struct passwd *pw, uid_t app_uid,
			long long deadline, char *line, size_t linelen)
{
	char why[PS_ERR_MAX];
	int rc = ps_session_call(cfg, pw, PS_RUNDIR "/" PS_SERVICE_SYSTEMD, app_uid, true, "open",
				 deadline, true, why, sizeof(why));

	if (rc == PS_EXIT_OK)
		return rc;
	if (rc > 0)
		ps_strlcpy(line, why, linelen);
	return -1;
}

int ps_service_open(pam_handle_t *pamh, struct ps_config *cfg, const struct passwd *pw,
		    long long deadline, char *line, size_t linelen)
{
	const struct passwd *app = app_user(pamh, cfg, line, linelen);
	char path[PS_SERVICE_PATH_MAX], lockpath[PS_SERVICE_PATH_MAX];
	int rfd, rc;

	if (!app)
		return PS_EXIT_CONFIG;
	cfg->app_uid = (long)app->pw_uid;
	rfd = ps_rundir_open(true, line, linelen);
	if (rfd < 0)
		return PS_EXIT_CONFIG;
	close(rfd);
	ps_service_path(cfg, ".sock", path, sizeof(path));
	ps_service_path(cfg, ".lock", lockpath, sizeof(lockpath));
	for (;;) {
		rc = ps_session_call(cfg, pw, path, app->pw_uid, true, "open", deadline, true, line,
				     linelen);
		if (rc >= 0)
			break;
		if (open_systemd(cfg, pw, app->pw_uid, deadline, line, linelen) == PS_EXIT_OK) {
			ps_strlcpy(path, PS_RUNDIR "/" PS_SERVICE_SYSTEMD, sizeof(path));
			rc = PS_EXIT_OK;
			break;
		}
		/* while a service holds its lock (it starts or ends), wait for it (service.h) */
		if (!ps_child_lock_held(lockpath)) {
			rc = service_start(pamh, cfg, lockpath, deadline, line, linelen);
			if (rc != PS_EXIT_OK)
				break;
			continue;
		}
		if (ps_mono_ms() >= deadline) {
			ps_errf(line, linelen,
				"the system service at %s did not answer within the %u s "
				"timeout: see the system log (pam_spotify_helper[service])",
				path, cfg->timeout);
			rc = PS_EXIT_NETWORK;
			break;
		}
		usleep(5000); /* a service is binding its socket */
	}
	if (rc == PS_EXIT_OK)
		ps_strlcpy(cfg->service, path, sizeof(cfg->service));
	return rc;
}

void ps_service_close(pam_handle_t *pamh, const struct ps_config *cfg, const struct passwd *pw)
{
	const struct passwd *app = pam_modutil_getpwnam(pamh, cfg->app_user);
	long long deadline = ps_mono_ms() + 1000;
	char path[PS_SERVICE_PATH_MAX], line[PS_ERR_MAX];
	int rc;

	if (!app || app->pw_uid == 0)
		return;
	ps_service_path(cfg, ".sock", path, sizeof(path));
	rc = ps_session_call(cfg, pw, path, app->pw_uid, true, "close", deadline, true, line,
			     sizeof(line));
	if (rc < 0)
		rc = ps_session_call(cfg, pw, PS_RUNDIR "/" PS_SERVICE_SYSTEMD, app->pw_uid, true,
				     "close", deadline, true, line, sizeof(line));
	if (rc > 0 && cfg->debug) /* -1: no service, nothing counts this session */
		pam_syslog(pamh, LOG_DEBUG, "user %s: close: system service: %s", pw->pw_name,
			   line);
}
