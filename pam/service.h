/*
 * service.h: the module's side of the system service (helper/service.h), which alone holds the
 * client secret. For a flow that needs the secret (client_credentials, authorization_code) the
 * module, as root, makes sure the service for its configuration runs and tells it about the
 * session (its pidfd travels with the message), and tells the user's helper where the service
 * listens (cfg->service, cfg->app_uid). The module never reads the secret.
 *
 * The service of a configuration is reached at RUNDIR/SERVICE.sock (common/paths.h), or, under
 * systemd, at RUNDIR/service.sock when that one serves the same configuration. Without systemd
 * the module starts it itself: it runs `pam_spotify_helper service --start` as root in full (so
 * that a su or sudo caller can no longer signal it), with the request on stdin, a status pipe on
 * stdout, no other descriptor and an empty environment; the helper takes a clean context (a
 * session of its own, init's resource limits, nice 0, every CPU, oom_score_adj 0: see
 * helper/service_start.h) and forks the service off to init. What neither can reset is the
 * cgroup: systemd is the way to run it (pam_spotify.socket). The module only asks whether a
 * service holds its lock (common/child.h: ps_child_lock_held); while one does, it waits for the
 * socket instead of starting another. It never takes that lock: a su caller could stop it there,
 * and every login of the host would wait. Its forked child takes it once it is root in full
 * (spawn.h: lock_path), and answers "busy" when another holds it.
 */
#ifndef PS_SERVICE_H
#define PS_SERVICE_H

#include <pwd.h>
#include <stdbool.h>
#include <security/pam_modules.h>

#include "common/config.h"

/*
 * At an open of pw's session (cfg->session_pid), before deadline (ms, ps_mono_ms): the service
 * runs and counts the session; cfg->service and cfg->app_uid are set. PS_EXIT_OK, or an exit code
 * with a one-line reason in line.
 */
int ps_service_open(pam_handle_t *pamh, struct ps_config *cfg, const struct passwd *pw,
		    long long deadline, char *line, size_t linelen);

/* At its close: the service forgets the session (it also sees the session's process end). */
void ps_service_close(pam_handle_t *pamh, const struct ps_config *cfg, const struct passwd *pw);

/*
 * One message about pw's session to the socket at path, whose peer must be uid peer (or root,
 * when or_root: see ps_msg_call): op ("open" with the session's pidfd alongside, or "close"), the service's name,
 * the uid, the session's pid and the login's refresh_margin; the system service and the user's
 * keeper (helper/keeper.h) each read what they need. Its answer's code with its line, waited for
 * by deadline unless !wait. -1 when nothing serves at path.
 */
int ps_session_call(const struct ps_config *cfg, const struct passwd *pw, const char *path,
		    uid_t peer, bool or_root, const char *op, long long deadline, bool wait,
		    char *line, size_t linelen);

#endif
