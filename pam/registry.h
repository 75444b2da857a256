/*
 * registry.h: a session registry, a directory with one empty file per open PAM session, named
 * PID-START (the user's registry, in the refresh-token store) or UID-PID-START (the host's
 * registry of client credentials sessions, in RUNDIR): the PAM application's process and its
 * start time (field 22 of /proc/PID/stat), so a recycled pid never passes for a closed session.
 * The module and the keeper share it; libc only.
 */
#ifndef PS_REGISTRY_H
#define PS_REGISTRY_H

#include <stddef.h>

#define PS_REGISTRY_NAME_MAX 64

/*
 * The name of pid's entry, "PID-START", or "UID-PID-START" when uid >= 0. 0, or -1 when the
 * process cannot be seen in /proc (gone, or /proc mounted with hidepid).
 */
int ps_registry_name(long uid, long pid, char *out, size_t outlen);

/*
 * The pid of the session an entry names when that process still runs (the same start time, and
 * not a zombie), else 0 (also for names that are not entries).
 */
long ps_registry_alive(const char *name);

/*
 * Call fn (may be NULL) for each live entry of the registry open at dfd, and try to remove each
 * dead one (a reader that may not just skips them). Returns the number
 * of live entries, or -1 when the directory cannot be read.
 */
int ps_registry_scan(int dfd, void (*fn)(void *ctx, const char *name, long pid), void *ctx);

/* Add pid's entry (uid as in ps_registry_name). 0, or -1 with a reason in why. */
int ps_registry_add(int dfd, long uid, long pid, char *why, size_t whylen);

/* Remove pid's entry; when its process is gone or changed, every entry of that (uid and) pid. */
void ps_registry_remove(int dfd, long uid, long pid);

#endif
