/*
 * rundir.h: RUNDIR (configure --with-rundir, PS_RUNDIR), where the host shares one client
 * credentials token among its users. APP names one app token: the client ID and a hash of the
 * token URL, the scopes and the client secret file (ps_app_name), so configurations that ask
 * different servers, for different scopes or with different secrets never share a token.
 *
 *   RUNDIR/                root 0755, made by the module
 *   RUNDIR/APP.lock        root 0600: the host lock; one app keeper start at a time
 *   RUNDIR/APP.sessions/   root 0755: the host's registry of sessions, UID-PID-START
 *   RUNDIR/APP.app/        the app user's directory, 0755 (the module makes it, then hands it over)
 *   RUNDIR/APP.app/keeper  the app keeper's flock(2), holding its pid (0600)
 *   RUNDIR/APP.app/token   the app token (0644), replaced atomically (token.tmp, rename)
 *
 * Every directory is opened with O_NOFOLLOW and must belong to its owner and be closed to writes
 * by group and others. libc only: the module, the helper and the app keeper share it.
 */
#ifndef PS_RUNDIR_H
#define PS_RUNDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "pam/config.h"

#define PS_APP_NAME_MAX	  (200 + 1 + 8 + 1)
#define PS_APP_TOKEN_FILE "token"
#define PS_APP_LOCK_FILE  "keeper"

/* APP for cfg, then suffix ("", ".lock", ...): CLIENT_ID (its first 200 characters) "-" 8 hex
 * digits. */
void ps_app_name(const struct ps_config *cfg, const char *suffix, char *out, size_t outlen);

/* RUNDIR/APP + suffix (".lock", ".sessions", ".app") into out, for messages and tests. */
void ps_app_path(const struct ps_config *cfg, const char *suffix, char *out, size_t outlen);

/*
 * Open RUNDIR, making it (root, 0755) when create and it is missing. It must be a directory owned
 * by root and not writable by group or others. The fd, or -1 with a reason in err.
 */
int ps_rundir_open(bool create, char *err, size_t errlen);

/*
 * Open RUNDIR/APP + suffix, a directory. When create and it is missing, make it with mode and
 * hand it to uid:gid (the caller must be root to hand it to another user). It must be owned by
 * uid and not writable by group or others. The fd, or -1 with a reason in err.
 */
int ps_rundir_subdir(int rfd, const struct ps_config *cfg, const char *suffix, bool create,
		     mode_t mode, uid_t uid, gid_t gid, char *err, size_t errlen);

#endif
