/*
 * keeper_loop.c: the keepers' event loop (see keeper_loop.h). Between renewals a keeper sleeps in
 * one poll(2) on its inotify, its signalfd and its sessions' pidfds: no timer ticks, no polling.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "helper/grant.h"
#include "helper/keeper_loop.h"
#include "common/config.h"
#include "pam/registry.h"
#include "common/util.h"

#define BACKOFF_MAX_S 60
#define WAIT_MAX_MS   86400000LL /* poll(2) takes an int: wake at least once a day */
#define WATCH_EVENTS  (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO)

long long ps_loop_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long long ps_loop_renew_at(long long expires_at, unsigned margin_s)
{
	long long now = ps_loop_now_ms(), life = expires_at * 1000 - now;
	long long margin = (long long)margin_s * 1000;

	if (margin > life / 2)
		margin = life / 2;
	return life - margin > 0 ? now + life - margin : now;
}

/* Capped exponential backoff with +-20% jitter; at least Retry-After (a 429, or a 503 with one). */
static long long backoff_ms(unsigned failures)
{
	long long base = 1000LL << (failures > 6 ? 6 : failures - 1);
	long retry_after = ps_grant_retry_after();
	unsigned short r = 0;

	if (base > BACKOFF_MAX_S * 1000LL)
		base = BACKOFF_MAX_S * 1000LL;
	(void)!getrandom(&r, sizeof(r), 0);
	base = base * 8 / 10 + (base * 4 / 10) * r / 65535;
	if (retry_after >= 0 && retry_after * 1000LL > base)
		base = retry_after * 1000LL;
	return base;
}

static void add_session(void *ctx, const char *name, long pid)
{
	struct ps_loop *l = ctx;
	struct ps_loop_session *s;

	if (l->nsessions == l->cap) {
		int cap = l->cap ? l->cap * 2 : 16;
		struct ps_loop_session *more = realloc(l->sessions, (size_t)cap * sizeof(*more));

		if (!more)
			return; /* counted by the scan, watched at the next one */
		l->sessions = more;
		l->cap = cap;
	}
	s = &l->sessions[l->nsessions];
	s->pidfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
	if (s->pidfd < 0)
		return; /* gone between the scan and now: the next scan drops it */
	s->pid = pid;
	ps_strlcpy(s->name, name, sizeof(s->name));
	l->nsessions++;
}

int ps_loop_rescan(struct ps_loop *l)
{
	int i;

	for (i = 0; i < l->nsessions; i++)
		close(l->sessions[i].pidfd);
	l->nsessions = 0;
	ps_registry_scan(l->dfd, add_session, l);
	return l->nsessions;
}

/* CLIENT.window, the name of a published window. */
static void window_name(char *out, size_t outlen, const char *client_id)
{
	snprintf(out, outlen, "%s.window", client_id);
}

/* Open a window that ends at until_ms (0: close it), and publish that when asked to. */
static void window_set(struct ps_loop *l, long long until_ms)
{
	char name[PS_CLIENT_ID_MAX + 16], tmp[PS_CLIENT_ID_MAX + 24], text[32];
	bool was_open = l->not_before_ms != 0;
	int fd, n;

	l->not_before_ms = until_ms;
	if (l->window_dfd < 0 || (!until_ms && !was_open))
		return;
	window_name(name, sizeof(name), l->window_client);
	if (!until_ms) {
		unlinkat(l->window_dfd, name, 0);
		return;
	}
	/* a new file renamed over the old one: a reader never sees half a line */
	snprintf(tmp, sizeof(tmp), "%s.new", name);
	n = snprintf(text, sizeof(text), "%lld\n", (until_ms + 999) / 1000);
	fd = openat(l->window_dfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
		    0600);
	if (fd < 0)
		return;
	n = ps_write_all(fd, text, (size_t)n);
	close(fd);
	if (n < 0 || renameat(l->window_dfd, tmp, l->window_dfd, name) < 0)
		unlinkat(l->window_dfd, tmp, 0);
}

static void renew(struct ps_loop *l)
{
	char line[PS_ERR_MAX] = "";
	int rc = l->ops->renew(l, line, sizeof(line));

	if (rc == PS_EXIT_OK) {
		l->failures = 0;
		window_set(l, 0);
		l->next_ms = l->ops->schedule(l);
		return;
	}
	syslog(LOG_WARNING, "%s: renewal failed: %s", l->who, line);
	if (rc == PS_EXIT_REAUTH) {
		/* invalid_grant: the store is marked; the user must log in */
		window_set(l, 0);
		l->next_ms = PS_LOOP_NEVER;
		return;
	}
	l->failures++;
	window_set(l, ps_loop_now_ms() + backoff_ms(l->failures));
	l->next_ms = l->not_before_ms;
}

/* When the next renewal starts: when it is due, but never inside a backoff window. */
static long long due_ms(const struct ps_loop *l)
{
	if (l->next_ms == PS_LOOP_NEVER)
		return PS_LOOP_NEVER;
	return l->next_ms > l->not_before_ms ? l->next_ms : l->not_before_ms;
}

/* The poll(2) timeout until the next renewal. */
static int wait_timeout(const struct ps_loop *l)
{
	long long t = due_ms(l);

	if (t == PS_LOOP_NEVER)
		return -1;
	t -= ps_loop_now_ms();
	if (t < 0)
		t = 0;
	return (int)(t > WAIT_MAX_MS ? WAIT_MAX_MS : t);
}

/*
 * SIGUSR1 (spotify-token refresh, --min-valid, login, or anyone of the user's): a renewal now,
 * but not inside the backoff window and not sooner than PS_LOOP_POKE_GAP_S after the last one a
 * signal asked for. Nothing changes when a renewal is due by then anyway.
 */
static void poke(struct ps_loop *l)
{
	long long at = ps_loop_now_ms(), gap_end = l->poke_ms + PS_LOOP_POKE_GAP_S * 1000LL;

	if (at < gap_end)
		at = gap_end;
	if (at < l->not_before_ms)
		at = l->not_before_ms;
	if (l->next_ms != PS_LOOP_NEVER && l->next_ms <= at)
		return;
	l->next_ms = at;
	l->poke_ms = at;
}

/* A signal: SIGUSR1 asks for a renewal (poke); the others stop the loop. */
static bool on_signal(struct ps_loop *l)
{
	struct signalfd_siginfo si;

	if (read(l->sfd, &si, sizeof(si)) != sizeof(si))
		return true;
	if (si.ssi_signo != SIGUSR1)
		return false;
	poke(l);
	return true;
}

/* Drain inotify: the registry changed (the rescan that follows sees how). */
static void on_inotify(struct ps_loop *l)
{
	char ev[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

	while (read(l->ifd, ev, sizeof(ev)) > 0)
		;
}

/* The pollfds: inotify, the signalfd, then each session's pidfd (none when out of memory). */
static struct pollfd *wait_set(struct ps_loop *l, struct pollfd fixed[2], int *n)
{
	struct pollfd *p = l->nsessions ? calloc((size_t)l->nsessions + 2, sizeof(*p)) : NULL;
	int i;

	if (!p)
		p = fixed; /* no pidfd this time: the next rescan still finds a gone session */
	p[0] = (struct pollfd){.fd = l->ifd, .events = POLLIN};
	p[1] = (struct pollfd){.fd = l->sfd, .events = POLLIN};
	*n = 2;
	for (i = 0; p != fixed && i < l->nsessions; i++)
		p[(*n)++] = (struct pollfd){.fd = l->sessions[i].pidfd, .events = POLLIN};
	return p;
}

/* One wait: inotify, signals, the sessions' pidfds, and the renewal time. false: stop. */
static bool loop_wait(struct ps_loop *l)
{
	struct pollfd fixed[2], *p;
	bool go_on = true;
	int i, n;

	p = wait_set(l, fixed, &n);
	if (poll(p, (nfds_t)n, wait_timeout(l)) < 0) {
		go_on = errno == EINTR;
		n = 0;
	}
	if (n && p[1].revents)
		go_on = on_signal(l);
	for (i = 2; go_on && i < n; i++)
		if (p[i].revents) /* the session's process is gone without a close */
			unlinkat(l->dfd, l->sessions[i - 2].name, 0);
	if (go_on && n && p[0].revents)
		on_inotify(l);
	if (p != fixed)
		free(p);
	if (!go_on || !n)
		return go_on;
	ps_loop_rescan(l);
	if (due_ms(l) != PS_LOOP_NEVER && ps_loop_now_ms() >= due_ms(l))
		renew(l);
	return true;
}

int ps_loop_init(struct ps_loop *l, const struct ps_loop_ops *ops, void *ctx, const char *who,
		 int dfd)
{
	char path[64];
	sigset_t set;

	memset(l, 0, sizeof(*l));
	l->ops = ops;
	l->ctx = ctx;
	l->who = who;
	l->dfd = dfd;
	l->sfd = -1;
	l->window_dfd = -1;
	l->next_ms = PS_LOOP_NEVER;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", dfd);
	l->ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (l->ifd < 0)
		return -1;
	if (inotify_add_watch(l->ifd, path, WATCH_EVENTS) < 0)
		return -1;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	l->sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	return l->sfd < 0 ? -1 : 0;
}

void ps_loop_publish(struct ps_loop *l, int dirfd, const char *client_id)
{
	char name[PS_CLIENT_ID_MAX + 16];

	l->window_dfd = dirfd;
	l->window_client = client_id;
	window_name(name, sizeof(name), client_id);
	unlinkat(dirfd, name, 0);
}

long long ps_loop_window_read(int dirfd, const char *client_id)
{
	char name[PS_CLIENT_ID_MAX + 16], text[32];
	long long until = 0;
	ssize_t n = -1;
	char *end;
	int fd;

	window_name(name, sizeof(name), client_id);
	fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, text, sizeof(text) - 1);
		close(fd);
	}
	if (n > 0) {
		text[n] = '\0';
		until = strtoll(text, &end, 10);
		if (end == text || *end != '\n' || until < 0 || until > LLONG_MAX / 1000)
			until = 0;
	}
	return until * 1000 > ps_loop_now_ms() ? until : 0;
}

void ps_loop_run(struct ps_loop *l)
{
	ps_loop_rescan(l);
	while (!l->stop) {
		if (l->nsessions == 0 && l->ops->try_exit(l))
			break;
		if (l->stop || !loop_wait(l))
			break;
	}
}

void ps_loop_close(struct ps_loop *l)
{
	int i;

	for (i = 0; i < l->nsessions; i++)
		close(l->sessions[i].pidfd);
	free(l->sessions);
	l->sessions = NULL;
	l->nsessions = l->cap = 0;
	if (l->ifd >= 0)
		close(l->ifd);
	if (l->sfd >= 0)
		close(l->sfd);
	l->ifd = l->sfd = -1;
}
