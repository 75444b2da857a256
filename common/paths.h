/*
 * paths.h: where things live. RUNDIR (configure --with-rundir, PS_RUNDIR), where the system service
 * and the users' keepers listen
 * (helper/service.h). A service serves one configuration: SERVICE names it by a hash of the client
 * ID, the token URL, the scopes and the client secret file (ps_service_name), so configurations
 * that ask different servers, for different scopes or with different secrets never share one.
 *
 *   RUNDIR/                     root 0755, made by the module (or by systemd's socket unit)
 *   RUNDIR/SERVICE.lock         root 0600: flocked by the running service for its whole life; a
 *                               service that cannot take it ends (another one serves)
 *   RUNDIR/SERVICE.sock         root 0666: the socket of a service the module started
 *   RUNDIR/service.sock         the socket of pam_spotify.socket (systemd), for the default file
 *   RUNDIR/user/UID/KEEPER.sock the socket of the user's keeper (below), in the user's 0700 dir
 *
 * Every directory is opened with O_NOFOLLOW and must belong to root (RUNDIR/user/UID: the user)
 * and be closed to writes by group and others. libc only: the module, the service and the users' helpers share it.
 */
#ifndef PS_PATHS_H
#define PS_PATHS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "common/config.h"

#define PS_SERVICE_NAME_MAX 32
#define PS_SERVICE_SYSTEMD  "service.sock" /* pam_spotify.socket's ListenStream, in RUNDIR */

/* SERVICE for cfg, then suffix (".sock", ".lock"): "service-" and 8 hex digits. */
void ps_service_name(const struct ps_config *cfg, const char *suffix, char *out, size_t outlen);

/* RUNDIR/SERVICE + suffix into out, for the socket's path and messages. */
void ps_service_path(const struct ps_config *cfg, const char *suffix, char *out, size_t outlen);

/*
 * Open RUNDIR, making it (root, 0755) when create and it is missing. It must be a directory owned
 * by root and not writable by group or others. The fd, or -1 with a reason in err.
 */
int ps_rundir_open(bool create, char *err, size_t errlen);

/*
 * The users' keepers (helper/keeper.h): RUNDIR/user/ (root, 0755), and RUNDIR/user/UID/ (the
 * user's, 0700, made by the module) holding KEEPER.sock, where the user's keeper for a
 * configuration listens, and KEEPER.lock, which it holds flocked for its whole life. KEEPER is
 * "keeper-" and 8 hex digits, a hash of the flow, client ID, token URL, scopes and keyring.
 */
void ps_keeper_path(const struct ps_config *cfg, uid_t uid, const char *suffix, char *out,
		    size_t outlen);

/*
 * Open RUNDIR/user/UID, making the directories when create (as root: the last is given to uid
 * and gid, mode 0700). It must be uid's, a directory, closed to group and others. The fd, or -1
 * with a reason in err.
 */
int ps_user_dir_open(uid_t uid, gid_t gid, bool create, char *err, size_t errlen);

/*
 * The refresh-token store (helper/store.h): ~/.local/state/spotify-token, or
 * $XDG_STATE_HOME/spotify-token. Its files are CLIENT.refresh, CLIENT.reauth and CLIENT.lock.
 */
#define PS_STORE_REL_HOME ".local/state/spotify-token"
#define PS_STORE_REL_XDG  "spotify-token"

/* The base directory (followed as is: $XDG_STATE_HOME, else the home directory) and, in *rel,
 * the components below it that the store owns (never followed). 0 or -1. */
int ps_store_base(char *base, size_t baselen, const char **rel);

/* The directory path the store would use for the calling user (no I/O). 0 or -1. */
int ps_store_dir(char *out, size_t outlen);

/* dir "/" name into out, without doubling a slash. 0 or -1 when it does not fit. */
int ps_path_join(char *out, size_t outlen, const char *dir, const char *name);

#endif
