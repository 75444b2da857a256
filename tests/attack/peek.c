/*
 * peek.c: the attacker of tests/integration/attack_secret.sh, and the root-side memory scanner.
 *
 *   peek attack SENTINEL_FILE SECONDS [STOP_FILE]
 *	As an unprivileged user: watch /proc for new processes whose real uid is ours, and for each
 *	try everything a user may do to a dumpable process of their own: PTRACE_SEIZE (then
 *	interrupt, wait and detach, so the victim goes on), pidfd_open + pidfd_getfd of its fds 0..3,
 *	each peeked without taking anything from it (recv MSG_PEEK on a socket, tee(2) on a pipe's
 *	read end), and /proc/PID/mem with /proc/PID/maps, opened at once and read again every
 *	100 ms while the process lives (an open mem file keeps working after the process turns
 *	non-dumpable). Stolen fds of a pipe's read end or a socket are peeked again every round.
 *
 *   peek scan SENTINEL_FILE SECONDS UID[,UID...] [STOP_FILE]
 *	As root: read through /proc/PID/mem the readable memory of every process whose real uid is
 *	in the list (peek itself excepted, which holds the sentinel), new processes at once and the
 *	others every 100 ms.
 *
 * Both print "watching" once their first round is done, then run until SECONDS have passed or
 * STOP_FILE exists, print one line per process and way where the sentinel was seen ("found PID
 * (COMMAND LINE) via WHAT") and a last line of counts, and exit 1 when the sentinel was seen, 0
 * when not, 2 on a usage error. The sentinel comes from a file, never argv.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_TRACKED 1024
#define RESCAN_MS   100
#define CHUNK	    (1 << 20)
#define NFDS	    4
#define PENDING_MS  2000 /* a new process not (yet) ours is looked at again this long */
#define YOUNG_MS    3000 /* a new process of ours is attacked again every round this long */
#define MAX_PENDING 1024

struct victim {
	pid_t pid;
	int pidfd;
	int fds[NFDS];	       /* stolen, or -1 */
	int mem, maps;	       /* /proc/PID/mem and maps, or -1 */
	long long young_until; /* the attack is tried again every round until then */
	long long next_scan;
	bool attached, mem_counted, found;
	unsigned hit_ways; /* bit i: fd i (0..3); bit 4: memory; each is reported once */
};

static struct {
	bool root_scan;
	char sentinel[4096];
	size_t slen;
	uid_t uids[64];
	int nuids;
	const char *stop;
	long long end;
	char self_exe[PATH_MAX];
	struct victim v[MAX_TRACKED];
	int nv;
	struct {
		pid_t pid;
		long long until;
	} pending[MAX_PENDING]; /* new, not ours yet: the module's child is root until its drop */
	int npending;
	pid_t *prev, *cur; /* the processes of the last round and this one, sorted */
	size_t nprev, ncur, cap;
	unsigned long rounds, pids, attaches, fds_taken, mems, peeks, scans, hits;
	char *buf;
} g;

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The process's command line, arguments joined by spaces, the program by its base name. */
static void cmdline_of(pid_t pid, char *out, size_t n)
{
	char path[64], raw[256], *base;
	ssize_t r, i;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	r = fd < 0 ? -1 : read(fd, raw, sizeof(raw) - 1);
	if (fd >= 0)
		close(fd);
	if (r <= 0) {
		snprintf(out, n, "?");
		return;
	}
	raw[r] = '\0';
	for (i = 0; i < r - 1; i++)
		if (raw[i] == '\0')
			raw[i] = ' ';
	base = strrchr(raw, '/');
	base = base && (size_t)(base - raw) < strcspn(raw, " ") ? base + 1 : raw;
	r = (ssize_t)strlen(base) < (ssize_t)n - 1 ? (ssize_t)strlen(base) : (ssize_t)n - 1;
	memcpy(out, base, (size_t)r);
	out[r] = '\0';
}

static void hit(struct victim *v, int way, const char *how)
{
	char cmd[96];

	if (v->hit_ways & (1u << way))
		return;
	v->hit_ways |= 1u << way;
	cmdline_of(v->pid, cmd, sizeof(cmd));
	if (!v->found)
		g.hits++;
	v->found = true;
	printf("found %d (%s) via %s\n", (int)v->pid, cmd, how);
	fflush(stdout);
}

static bool has_sentinel(const char *data, size_t len)
{
	return g.slen && len >= g.slen && memmem(data, len, g.sentinel, g.slen) != NULL;
}

/* The real uid of pid from /proc/PID/status (readable by anyone; the directory's owner turns
 * to root when a process is non-dumpable), or -1. */
static long real_uid(pid_t pid)
{
	char path[64], text[4096], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	text[n] = '\0';
	p = strstr(text, "\nUid:");
	return p ? strtol(p + 5, NULL, 10) : -1;
}

/* --- peeking at a stolen fd without taking anything from it */

static void peek_fd(struct victim *v, int i)
{
	int fd = v->fds[i], p[2];
	struct stat st;
	ssize_t n;
	char how[48];

	if (fd < 0 || fstat(fd, &st) < 0)
		return;
	g.peeks++;
	if (S_ISSOCK(st.st_mode)) {
		n = recv(fd, g.buf, CHUNK, MSG_PEEK | MSG_DONTWAIT);
		snprintf(how, sizeof(how), "fd %d (socket, MSG_PEEK)", i);
	} else if (S_ISFIFO(st.st_mode)) {
		n = -1;
		if (pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0) {
			if (tee(fd, p[1], CHUNK, SPLICE_F_NONBLOCK) > 0)
				n = read(p[0], g.buf, CHUNK);
			close(p[0]);
			close(p[1]);
		}
		snprintf(how, sizeof(how), "fd %d (pipe, tee)", i);
	} else {
		n = pread(fd, g.buf, CHUNK, 0);
		snprintf(how, sizeof(how), "fd %d (file, pread)", i);
	}
	if (n > 0 && has_sentinel(g.buf, (size_t)n))
		hit(v, i, how);
}

/* Keep a stolen fd only where data can come to be peeked: a socket or a pipe's read end. A
 * kept write end would hold the victim's reader (the module) off its EOF. */
static bool worth_keeping(int fd)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return false;
	if (S_ISSOCK(st.st_mode))
		return true;
	return S_ISFIFO(st.st_mode) && (fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDONLY;
}

/* --- memory through /proc/PID/mem, the readable regions of /proc/PID/maps */

static bool region_wanted(const char *line, unsigned long *start, unsigned long *end)
{
	char perms[8] = "", path[PATH_MAX] = "";

	if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %4095[^\n]", start, end, perms, path) < 3)
		return false;
	if (perms[0] != 'r' || !strcmp(path, "[vvar]") || !strcmp(path, "[vsyscall]") ||
	    !strcmp(path, "[vdso]") || !strcmp(path, "[vvar_vclock]"))
		return false;
	return !(path[0] == '/' && perms[1] != 'w'); /* program text and read-only data: no */
}

static void scan_mem(struct victim *v)
{
	static char maps[1 << 20];
	size_t len = 0;
	ssize_t n;
	char *line, *next;

	if (v->mem < 0 || v->maps < 0 || lseek(v->maps, 0, SEEK_SET) < 0)
		return;
	while (len < sizeof(maps) - 1 &&
	       (n = read(v->maps, maps + len, sizeof(maps) - 1 - len)) > 0)
		len += (size_t)n;
	maps[len] = '\0';
	g.scans++;
	for (line = maps; line && *line; line = next) {
		unsigned long start, end, at;

		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		if (!region_wanted(line, &start, &end))
			continue;
		/* chunks overlap by the sentinel's length, so none is missed at a boundary */
		for (at = start; at < end; at += CHUNK - g.slen) {
			size_t want = end - at < CHUNK ? end - at : CHUNK;

			n = pread(v->mem, g.buf, want, (off_t)at);
			if (n <= 0)
				break;
			if (has_sentinel(g.buf, (size_t)n)) {
				hit(v, NFDS, "/proc/PID/mem");
				return;
			}
			if ((size_t)n < CHUNK)
				break;
		}
	}
}

/* --- the victims */

/* A fresh /proc/PID/mem and maps, in place of the ones we hold (which may be of the image before
 * an exec); the ones we hold stay when the open is refused. */
static void open_mem(struct victim *v)
{
	char path[64];
	int mem, maps;

	snprintf(path, sizeof(path), "/proc/%d/mem", (int)v->pid);
	mem = open(path, O_RDONLY | O_CLOEXEC);
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)v->pid);
	maps = mem < 0 ? -1 : open(path, O_RDONLY | O_CLOEXEC);
	if (mem < 0 || maps < 0) {
		if (mem >= 0)
			close(mem);
		return;
	}
	if (v->mem >= 0)
		close(v->mem);
	if (v->maps >= 0)
		close(v->maps);
	v->mem = mem;
	v->maps = maps;
	if (!v->mem_counted)
		g.mems++;
	v->mem_counted = true;
}

/* Attach, stop, and let go again: the victim goes on, and we were its tracer for a moment. */
static void try_ptrace(struct victim *v)
{
	int status;

	if (v->attached || ptrace(PTRACE_SEIZE, v->pid, NULL, NULL) < 0)
		return;
	v->attached = true;
	g.attaches++;
	if (ptrace(PTRACE_INTERRUPT, v->pid, NULL, NULL) == 0 &&
	    waitpid(v->pid, &status, __WALL) == v->pid && WIFSTOPPED(status))
		ptrace(PTRACE_DETACH, v->pid, NULL, NULL);
}

/* Everything a user may try on a process of their own; again every round while it is young, so
 * that the moment after an exec (when a process is dumpable again) is not missed. */
static void attack(struct victim *v)
{
	int i;

	for (i = 0; i < NFDS && v->pidfd >= 0; i++) {
		if (v->fds[i] != -1)
			continue;
		v->fds[i] = (int)syscall(SYS_pidfd_getfd, v->pidfd, i, 0);
		if (v->fds[i] < 0)
			continue;
		g.fds_taken++;
		peek_fd(v, i);
		if (!worth_keeping(v->fds[i])) {
			close(v->fds[i]);
			v->fds[i] = -2; /* taken once: not again */
		}
	}
	open_mem(v);
	try_ptrace(v);
}

/* Root's scan leaves out peek itself, which holds the sentinel (the attacker too, once it has
 * exec'd peek: looked at every time). */
static bool is_peek(pid_t pid)
{
	char path[64], exe[PATH_MAX];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
	n = readlink(path, exe, sizeof(exe) - 1);
	if (n <= 0)
		return false;
	exe[n] = '\0';
	return !strcmp(exe, g.self_exe);
}

/* One victim's round: the attack (young ones) or a fresh open of its memory (root), then the
 * stolen fds peeked and, every RESCAN_MS, its memory read. */
static void visit(struct victim *v, bool first)
{
	long long now = now_ms();
	int k;

	if (!g.root_scan && now < v->young_until)
		attack(v);
	for (k = 0; k < NFDS; k++)
		if (v->fds[k] >= 0)
			peek_fd(v, k);
	if (!first && now < v->next_scan)
		return;
	v->next_scan = now + RESCAN_MS;
	if (g.root_scan) {
		if (is_peek(v->pid))
			return;
		open_mem(v);
	}
	scan_mem(v);
}

static bool uid_wanted(long uid)
{
	int i;

	if (!g.root_scan)
		return uid == (long)getuid();
	for (i = 0; i < g.nuids; i++)
		if ((long)g.uids[i] == uid)
			return true;
	return false;
}

static void victim_drop(int i)
{
	struct victim *v = &g.v[i];
	int k;

	for (k = 0; k < NFDS; k++)
		if (v->fds[k] >= 0)
			close(v->fds[k]);
	if (v->pidfd >= 0)
		close(v->pidfd);
	if (v->mem >= 0)
		close(v->mem);
	if (v->maps >= 0)
		close(v->maps);
	g.v[i] = g.v[--g.nv];
}

static bool victim_gone(const struct victim *v)
{
	struct pollfd p = {.fd = v->pidfd, .events = POLLIN};

	if (v->pidfd < 0)
		return kill(v->pid, 0) < 0 && errno == ESRCH;
	return poll(&p, 1, 0) == 1;
}

static void new_process(pid_t pid)
{
	struct victim *v;
	int k;

	if (pid == getpid())
		return;
	if (!uid_wanted(real_uid(pid))) {
		if (g.npending < MAX_PENDING) {
			g.pending[g.npending].pid = pid;
			g.pending[g.npending++].until = now_ms() + PENDING_MS;
		}
		return;
	}
	g.pids++;
	if (g.nv == MAX_TRACKED)
		return;
	v = &g.v[g.nv++];
	memset(v, 0, sizeof(*v));
	v->pid = pid;
	v->mem = v->maps = -1;
	for (k = 0; k < NFDS; k++)
		v->fds[k] = -1;
	v->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	v->young_until = now_ms() + YOUNG_MS;
	visit(v, true);
}

/* --- the rounds */

static int cmp_pid(const void *a, const void *b)
{
	pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;

	return x < y ? -1 : x > y;
}

static bool known(pid_t pid)
{
	return bsearch(&pid, g.prev, g.nprev, sizeof(pid_t), cmp_pid) != NULL;
}

/* The processes now; each one not there in the last round is new. */
static void round_list(DIR *proc)
{
	struct dirent *e;
	pid_t *t;
	size_t i;

	g.ncur = 0;
	rewinddir(proc);
	while ((e = readdir(proc)) != NULL) {
		char *endp;
		long pid = strtol(e->d_name, &endp, 10);

		if (*endp || pid <= 0)
			continue;
		if (g.ncur == g.cap) {
			g.cap = g.cap ? g.cap * 2 : 1024;
			g.cur = realloc(g.cur, g.cap * sizeof(pid_t));
			g.prev = realloc(g.prev, g.cap * sizeof(pid_t));
			if (!g.cur || !g.prev)
				exit(2);
		}
		g.cur[g.ncur++] = (pid_t)pid;
	}
	qsort(g.cur, g.ncur, sizeof(pid_t), cmp_pid);
	for (i = 0; i < g.ncur; i++)
		if (!known(g.cur[i]))
			new_process(g.cur[i]);
	t = g.prev;
	g.prev = g.cur;
	g.cur = t;
	g.nprev = g.ncur;
}

/* A process that became ours since we first saw it (a privilege drop) is new to us now. */
static void round_pending(void)
{
	long long now = now_ms();
	int i;

	for (i = 0; i < g.npending; i++) {
		pid_t pid = g.pending[i].pid;
		long uid = real_uid(pid);

		if (uid >= 0 && !uid_wanted(uid) && now < g.pending[i].until)
			continue;
		g.pending[i--] = g.pending[--g.npending];
		if (uid >= 0 && uid_wanted(uid))
			new_process(pid);
	}
}

static void round_victims(void)
{
	int i;

	for (i = 0; i < g.nv; i++) {
		if (victim_gone(&g.v[i]))
			victim_drop(i--);
		else
			visit(&g.v[i], false);
	}
}

static bool finished(void)
{
	return now_ms() >= g.end || (g.stop && access(g.stop, F_OK) == 0);
}

static int usage(void)
{
	fprintf(stderr, "usage: peek attack SENTINEL_FILE SECONDS [STOP_FILE]\n"
			"       peek scan SENTINEL_FILE SECONDS UID[,UID...] [STOP_FILE]\n");
	return 2;
}

static int read_sentinel(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, g.sentinel, sizeof(g.sentinel) - 1);

	if (fd >= 0)
		close(fd);
	if (n <= 0) {
		fprintf(stderr, "peek: cannot read the sentinel from %s\n", path);
		return -1;
	}
	g.sentinel[n] = '\0';
	g.slen = strcspn(g.sentinel, "\r\n");
	if (g.slen < 8) {
		fprintf(stderr, "peek: the sentinel in %s is shorter than 8 bytes\n", path);
		return -1;
	}
	return 0;
}

static int parse_uids(char *list)
{
	char *tok, *save = NULL;

	for (tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *endp;
		long u = strtol(tok, &endp, 10);

		if (*endp || u < 0 || g.nuids == 64)
			return -1;
		g.uids[g.nuids++] = (uid_t)u;
	}
	return g.nuids ? 0 : -1;
}

int main(int argc, char **argv)
{
	DIR *proc;
	long secs;
	ssize_t n;

	if (argc < 4)
		return usage();
	g.root_scan = !strcmp(argv[1], "scan");
	if (!g.root_scan && strcmp(argv[1], "attack") != 0)
		return usage();
	if ((g.root_scan && (argc < 5 || argc > 6)) || (!g.root_scan && argc > 5))
		return usage();
	if (read_sentinel(argv[2]) < 0)
		return 2;
	secs = strtol(argv[3], NULL, 10);
	if (secs <= 0)
		return usage();
	if (g.root_scan && parse_uids(argv[4]) < 0)
		return usage();
	g.stop = argc > (g.root_scan ? 5 : 4) ? argv[g.root_scan ? 5 : 4] : NULL;
	g.end = now_ms() + secs * 1000;
	n = readlink("/proc/self/exe", g.self_exe, sizeof(g.self_exe) - 1);
	g.self_exe[n > 0 ? n : 0] = '\0';
	g.buf = malloc(CHUNK);
	proc = opendir("/proc");
	if (!g.buf || !proc)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	while (!finished()) {
		round_list(proc);
		round_pending();
		round_victims();
		if (!g.rounds++) {
			printf("watching\n"); /* the first round is done: what starts now is new */
			fflush(stdout);
		}
		if (g.root_scan)
			usleep(2000); /* the scanner is not in a race; leave the CPU to the logins */
		else
			sched_yield();
	}
	printf("%s: rounds=%lu pids=%lu attaches=%lu fds=%lu mem_opened=%lu peeks=%lu "
	       "mem_scans=%lu "
	       "found=%lu\n",
	       argv[1], g.rounds, g.pids, g.attaches, g.fds_taken, g.mems, g.peeks, g.scans,
	       g.hits);
	explicit_bzero(g.sentinel, sizeof(g.sentinel));
	return g.hits ? 1 : 0;
}
