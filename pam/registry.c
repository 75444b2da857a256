/*
 * registry.c: session registries (see registry.h). An entry is alive while its process runs with
 * the start time in its name; a zombie is not alive (the session's process has ended, whether or
 * not its parent has reaped it).
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pam/registry.h"
#include "common/util.h"

/*
 * The start time of pid (field 22 of /proc/PID/stat); 0 when there is no such process or it has
 * ended (state Z or X, field 3).
 */
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
	if (!p || p[1] != ' ' || p[2] == 'Z' || p[2] == 'X')
		return 0;
	for (field = 2; p && field < 22; field++)
		p = strchr(p + 1, ' ');
	return p ? strtoull(p + 1, NULL, 10) : 0;
}

int ps_registry_name(long uid, long pid, char *out, size_t outlen)
{
	unsigned long long start = proc_start(pid);
	int n;

	if (!start)
		return -1;
	if (uid >= 0)
		n = snprintf(out, outlen, "%ld-%ld-%llu", uid, pid, start);
	else
		n = snprintf(out, outlen, "%ld-%llu", pid, start);
	return n > 0 && (size_t)n < outlen ? 0 : -1;
}

/* "[UID-]PID-START": the pid and the start time; 0 when the name is not an entry. */
static long parse_name(const char *name, unsigned long long *start)
{
	const char *last = strrchr(name, '-'), *pid_at = name, *s;
	char *end;
	long pid;

	if (!last || last == name)
		return 0;
	/* with a UID first, the pid follows the last dash but one */
	for (s = name; s < last; s++)
		if (*s == '-')
			pid_at = s + 1;
	pid = strtol(pid_at, &end, 10);
	if (pid <= 0 || end != last)
		return 0;
	*start = strtoull(last + 1, &end, 10);
	return *end || !*start ? 0 : pid;
}

long ps_registry_alive(const char *name)
{
	unsigned long long start = 0;
	long pid = parse_name(name, &start);

	return pid && proc_start(pid) == start ? pid : 0;
}

/* A directory stream of its own on dfd's directory, from its start (dfd stays open); or NULL. */
static DIR *dir_stream(int dfd)
{
	int fd = dup(dfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;

	if (!d && fd >= 0)
		close(fd);
	if (d)
		rewinddir(d);
	return d;
}

int ps_registry_scan(int dfd, void (*fn)(void *ctx, const char *name, long pid), void *ctx)
{
	struct dirent *e;
	DIR *d = dir_stream(dfd);
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d))) {
		long pid;

		if (e->d_name[0] == '.')
			continue;
		pid = ps_registry_alive(e->d_name);
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

int ps_registry_add(int dfd, long uid, long pid, char *why, size_t whylen)
{
	char name[PS_REGISTRY_NAME_MAX];
	int fd;

	if (ps_registry_name(uid, pid, name, sizeof(name)) < 0) {
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

void ps_registry_remove(int dfd, long uid, long pid)
{
	char name[PS_REGISTRY_NAME_MAX], prefix[48];
	size_t plen;
	struct dirent *e;
	DIR *d;

	if (ps_registry_name(uid, pid, name, sizeof(name)) == 0 && unlinkat(dfd, name, 0) == 0)
		return;
	/* the opener is gone or changed: drop any entry of that (uid and) pid */
	if (uid >= 0)
		snprintf(prefix, sizeof(prefix), "%ld-%ld-", uid, pid);
	else
		snprintf(prefix, sizeof(prefix), "%ld-", pid);
	plen = strlen(prefix);
	d = dir_stream(dfd);
	if (!d)
		return;
	while ((e = readdir(d)))
		if (strncmp(e->d_name, prefix, plen) == 0 && !strchr(e->d_name + plen, '-'))
			unlinkat(dfd, e->d_name, 0);
	closedir(d);
}
