/*
 * service_start.c: `pam_spotify_helper service --start` (see service_start.h): the clean context
 * of a service that the module starts, and the fork that hands it to init.
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <syslog.h>
#include <unistd.h>

#include "common/child.h"
#include "helper/service.h"
#include "helper/service_start.h"
#include "common/util.h"

/*
 * Each limit in /proc/1/limits, and the least the service needs of it where root cannot raise it
 * back to init's (no CAP_SYS_RESOURCE: a container): a caller's lower limit below that keeps the
 * service from starting; UNLIMITED: init's or nothing (a CPU limit would end it some day). The
 * core size is not here: the helper's hardening set it to 0.
 */
#define UNLIMITED RLIM_INFINITY
static const struct {
	const char *name;
	int resource;
	rlim_t need;
} limit_names[] = {
	{"Max cpu time", RLIMIT_CPU, UNLIMITED},
	{"Max file size", RLIMIT_FSIZE, 0},
	{"Max data size", RLIMIT_DATA, 1024UL * 1024 * 1024},
	{"Max stack size", RLIMIT_STACK, 8UL * 1024 * 1024},
	{"Max resident set", RLIMIT_RSS, 0},
	{"Max processes", RLIMIT_NPROC, 256},
	{"Max open files", RLIMIT_NOFILE, 1024},
	{"Max locked memory", RLIMIT_MEMLOCK, 0},
	{"Max address space", RLIMIT_AS, 1024UL * 1024 * 1024},
	{"Max file locks", RLIMIT_LOCKS, 0},
	{"Max pending signals", RLIMIT_SIGPENDING, 64},
	{"Max msgqueue size", RLIMIT_MSGQUEUE, 0},
	{"Max nice priority", RLIMIT_NICE, 0},
	{"Max realtime priority", RLIMIT_RTPRIO, 0},
	{"Max realtime timeout", RLIMIT_RTTIME, 0},
};

/*
 * The status line of a service that this login does not start, and the same in the system log,
 * where the module points when its deadline passed before it read the line. PS_EXIT_NETWORK.
 */
static int refuse(const char *why)
{
	openlog("pam_spotify_helper[service]", LOG_PID, LOG_AUTHPRIV);
	syslog(LOG_WARNING, "not started from this login: %s; the next login that can starts it",
	       why);
	closelog();
	dprintf(STDOUT_FILENO,
		"fail %d the system service was not started from this login: %s; the next login "
		"that can starts it\n",
		PS_EXIT_NETWORK, why);
	return PS_EXIT_NETWORK;
}

/* "unlimited" or a decimal number after blanks; *end after it. 0 or -1. */
static int limit_value(const char *s, rlim_t *v, const char **end)
{
	unsigned long long n = 0;

	s += strspn(s, " ");
	if (!strncmp(s, "unlimited", 9)) {
		*v = RLIM_INFINITY;
		*end = s + 9;
		return 0;
	}
	if (*s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++)
		n = n * 10 + (unsigned long long)(*s - '0');
	*v = (rlim_t)n;
	*end = s;
	return 0;
}

/* Set init's limit r of resource; 0, or -1 when what we have stays below the least it needs. */
static int limit_reset(int resource, const struct rlimit *r, rlim_t need)
{
	rlim_t cur = r->rlim_cur < need ? r->rlim_cur : need;
	rlim_t max = r->rlim_max < need ? r->rlim_max : need;
	struct rlimit now;

	setrlimit(resource, r);
	return getrlimit(resource, &now) < 0 || now.rlim_cur < cur || now.rlim_max < max ? -1 : 0;
}

/* One line of /proc/1/limits: the limit it names set as init has it. 0, or -1 as limit_reset. */
static int limit_line(const char *line, int *found)
{
	size_t i;

	for (i = 0; i < sizeof(limit_names) / sizeof(limit_names[0]); i++) {
		size_t n = strlen(limit_names[i].name);
		const char *p = line + n;
		struct rlimit r;

		if (strncmp(line, limit_names[i].name, n) || p[0] != ' ')
			continue;
		if (limit_value(p, &r.rlim_cur, &p) < 0 || limit_value(p, &r.rlim_max, &p) < 0)
			return 0;
		(*found)++;
		return limit_reset(limit_names[i].resource, &r, limit_names[i].need);
	}
	return 0;
}

/* Every resource limit as init has it. NULL, or why the service cannot start. */
static const char *limits_reset(void)
{
	FILE *f = fopen("/proc/1/limits", "re");
	char line[256];
	int found = 0, low = 0;

	if (!f)
		return "cannot read init's resource limits in /proc/1/limits";
	while (fgets(line, sizeof(line), f))
		if (limit_line(line, &found) < 0)
			low = 1;
	fclose(f);
	if (!found)
		return "cannot read init's resource limits in /proc/1/limits";
	return low ? "a resource limit of the login is below init's and cannot be raised" : NULL;
}

/*
 * The context every process of the host starts with (service_start.h). NULL, or why the service
 * cannot start from this login.
 */
static const char *clean_context(void)
{
	cpu_set_t all;
	const char *why;
	int i, fd;

	/* a process group leader cannot: the helper run by hand from a shell */
	if (setsid() < 0 && getsid(0) != getpid())
		return "it leads a process group, so it cannot have a session of its own";
	ps_child_reset_signals();
	signal(SIGPIPE, SIG_IGN); /* as the helper's hardening left it */
	if (setgroups(0, NULL) < 0)
		return "it cannot leave the login's groups";
	why = limits_reset();
	if (why)
		return why;
	errno = 0;
	if (setpriority(PRIO_PROCESS, 0, 0) < 0 || getpriority(PRIO_PROCESS, 0) != 0)
		return "the login's nice value cannot be reset to 0";
	CPU_ZERO(&all);
	for (i = 0; i < CPU_SETSIZE; i++)
		CPU_SET(i, &all);
	sched_setaffinity(0, sizeof(all), &all); /* the kernel keeps the CPUs that exist */
	fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		(void)!write(fd, "0\n", 2);
		close(fd);
	}
	return chdir("/") < 0 ? "it cannot change to /" : NULL;
}

int ps_service_start(void)
{
	const char *why;
	int done[2];
	pid_t pid;
	char c;

	if (getuid() != 0 || geteuid() != 0) {
		fprintf(stderr,
			"pam_spotify_helper: service --start: only root may start the system "
			"service (pam_spotify.so does, at a login)\n");
		return PS_EXIT_USAGE;
	}
	why = clean_context();
	if (why)
		return refuse(why);
	pid = pipe2(done, O_CLOEXEC) < 0 ? -1 : fork();
	if (pid < 0) {
		char line[128];

		snprintf(line, sizeof(line), "it cannot fork (%s)", strerror(errno));
		return refuse(line);
	}
	if (pid == 0) {
		close(done[0]);
		ps_service_announce_fd = done[1];
		return ps_service_main();
	}
	/* init adopts the service once we end: after it has said how its start went, on the
	 * stdout we share, so that the module reads that before it sees us end */
	close(done[1]);
	for (;;) {
		ssize_t n = read(done[0], &c, 1);

		if (n == 0 || (n < 0 && errno != EINTR))
			break;
	}
	return PS_EXIT_OK;
}
