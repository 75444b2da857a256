/*
 * paths.c: where things live: RUNDIR and the refresh-token store (see paths.h).
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <errno.h>
#include <pwd.h>
#include <stdlib.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/paths.h"
#include "common/util.h"

/*
 * FNV-1a, 32 bits, of the strings given (NULL-terminated) joined by newlines: a name, not a
 * secret; a collision only lets two configurations share.
 */
static unsigned hash(const char *s, ...)
{
	uint32_t h = 2166136261u;
	va_list ap;

	va_start(ap, s);
	while (s) {
		for (; *s; s++)
			h = (h ^ (unsigned char)*s) * 16777619u;
		s = va_arg(ap, const char *);
		if (s)
			h = (h ^ '\n') * 16777619u;
	}
	va_end(ap);
	return (unsigned)h;
}

void ps_service_name(const struct ps_config *cfg, const char *suffix, char *out, size_t outlen)
{
	snprintf(out, outlen, "service-%08x%s",
		 hash(cfg->client_id, cfg->token_url, cfg->scopes, cfg->client_secret_file, NULL),
		 suffix);
}

void ps_service_path(const struct ps_config *cfg, const char *suffix, char *out, size_t outlen)
{
	char name[PS_SERVICE_NAME_MAX + 16];

	ps_service_name(cfg, suffix, name, sizeof(name));
	snprintf(out, outlen, "%s/%s", PS_RUNDIR, name);
}

void ps_keeper_path(const struct ps_config *cfg, uid_t uid, const char *suffix, char *out,
		    size_t outlen)
{
	snprintf(out, outlen, "%s/user/%u/keeper-%08x%s", PS_RUNDIR, (unsigned)uid,
		 hash(ps_flow_name(cfg->flow), cfg->client_id, cfg->token_url, cfg->scopes,
		      ps_keyring_name(cfg->keyring), NULL),
		 suffix);
}

/* A directory owned by uid and not writable by group or others. 0, or -1 with err. */
static int dir_check(int fd, const char *path, uid_t uid, char *err, size_t errlen)
{
	struct stat st;

	if (fstat(fd, &st) < 0) {
		ps_errf(err, errlen, "cannot stat %s: %s", path, strerror(errno));
		return -1;
	}
	if (st.st_uid != uid || (st.st_mode & (S_IWGRP | S_IWOTH))) {
		ps_errf(err, errlen,
			"%s must be owned by uid %u and not writable by group or others "
			"(it is uid %u, mode %04o): remove it, pam_spotify makes it again",
			path, (unsigned)uid, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
		return -1;
	}
	return 0;
}

/* Just made: the mode in full (the caller's umask may be 077), then the owner. 0 or -1. */
static int dir_hand_over(int fd, const char *path, mode_t mode, uid_t uid, gid_t gid, char *err,
			 size_t errlen)
{
	if (fchmod(fd, mode) < 0 || ((uid != 0 || gid != 0) && fchown(fd, uid, gid) < 0)) {
		ps_errf(err, errlen, "cannot set the mode or owner of %s: %s", path,
			strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * Open (and, when create, make) the directory name at dirfd; checked as dir_check says. It is
 * opened first and made only when missing: at most logins it is there, and a login is short.
 */
static int dir_open(int dirfd, const char *name, const char *path, bool create, mode_t mode,
		    uid_t uid, gid_t gid, char *err, size_t errlen)
{
	const int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
	bool made = false;
	int fd = openat(dirfd, name, flags);

	if (fd < 0 && errno == ENOENT && create) {
		made = mkdirat(dirfd, name, 0700) == 0;
		if (!made && errno != EEXIST) {
			ps_errf(err, errlen, "cannot create %s: %s", path, strerror(errno));
			return -1;
		}
		fd = openat(dirfd, name, flags);
	}
	if (fd < 0) {
		ps_errf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	if ((made && dir_hand_over(fd, path, mode, uid, gid, err, errlen) < 0) ||
	    dir_check(fd, path, uid, err, errlen) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* The directories above RUNDIR, made (root, 0755) when missing: configure fixed the path. */
static void make_parents(void)
{
	char path[] = PS_RUNDIR, *p;

	for (p = path + 1; (p = strchr(p, '/')); p++) {
		*p = '\0';
		if (mkdir(path, 0755) == 0)
			chmod(path, 0755); /* whatever the umask */
		*p = '/';
	}
}

int ps_rundir_open(bool create, char *err, size_t errlen)
{
	int fd = dir_open(AT_FDCWD, PS_RUNDIR, PS_RUNDIR, false, 0755, 0, 0, err, errlen);

	if (fd >= 0 || !create)
		return fd;
	make_parents();
	return dir_open(AT_FDCWD, PS_RUNDIR, PS_RUNDIR, create, 0755, 0, 0, err, errlen);
}

/* --- where the store lives */

/* An absolute home directory: $HOME, else the password database. NULL when there is none. */
static const char *home_dir(void)
{
	const char *home = getenv("HOME");
	struct passwd *pw;

	if (home && home[0] == '/')
		return home;
	pw = getpwuid(getuid());
	if (pw && pw->pw_dir && pw->pw_dir[0] == '/')
		return pw->pw_dir;
	return NULL;
}

/*
 * The base directory (followed as is) and the components below it that the store owns (never
 * followed). The XDG base directory spec says a relative $XDG_STATE_HOME is to be ignored.
 */
int ps_store_base(char *base, size_t baselen, const char **rel)
{
	const char *xdg = getenv("XDG_STATE_HOME");
	const char *b;
	size_t n;

	if (xdg && xdg[0] == '/') {
		b = xdg;
		*rel = PS_STORE_REL_XDG;
	} else {
		b = home_dir();
		*rel = PS_STORE_REL_HOME;
	}
	if (!b || ps_strlcpy(base, b, baselen) >= baselen)
		return -1;
	for (n = strlen(base); n > 1 && base[n - 1] == '/'; n--)
		base[n - 1] = '\0';
	return 0;
}

/* dir "/" name into out, without doubling a slash. 0 or -1 when it does not fit. */
int ps_path_join(char *out, size_t outlen, const char *dir, const char *name)
{
	const char *sep = dir[strlen(dir) - 1] == '/' ? "" : "/";
	int n = snprintf(out, outlen, "%s%s%s", dir, sep, name);

	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

int ps_store_dir(char *out, size_t outlen)
{
	char base[PATH_MAX];
	const char *rel;

	if (ps_store_base(base, sizeof(base), &rel) < 0)
		return -1;
	return ps_path_join(out, outlen, base, rel);
}

int ps_user_dir_open(uid_t uid, gid_t gid, bool create, char *err, size_t errlen)
{
	char path[sizeof(PS_RUNDIR) + 32], name[16];
	int rfd, ufd, fd = -1;
	struct stat st;

	rfd = ps_rundir_open(create, err, errlen);
	if (rfd < 0)
		return -1;
	snprintf(path, sizeof(path), "%s/user", PS_RUNDIR);
	ufd = dir_open(rfd, "user", path, create, 0755, 0, 0, err, errlen);
	close(rfd);
	if (ufd < 0)
		return -1;
	snprintf(name, sizeof(name), "%u", (unsigned)uid);
	snprintf(path, sizeof(path), "%s/user/%s", PS_RUNDIR, name);
	fd = dir_open(ufd, name, path, create, 0700, uid, gid, err, errlen);
	close(ufd);
	if (fd >= 0 && (fstat(fd, &st) < 0 || (st.st_mode & 077))) {
		ps_errf(err, errlen,
			"%s must be closed to group and others (mode %04o): remove it, "
			"pam_spotify makes it again",
			path, (unsigned)(st.st_mode & 07777));
		close(fd);
		fd = -1;
	}
	return fd;
}
