/*
 * keeper_loop.h: the user's keeper's event loop. It
 * watches a session registry (pam/registry.h) with inotify and each live session's process with
 * a pidfd, takes SIGUSR1 ("renew now") and SIGTERM/SIGINT/SIGHUP ("stop") through a signalfd,
 * sleeps until the next renewal, and on a failed renewal retries with capped exponential backoff
 * and jitter, at least Retry-After after a 429 or a 503 that has one. What a renewal is, when the
 * next one is due and what to do when the last session is gone are the keeper's own (struct
 * ps_loop_ops).
 *
 * Nothing from outside pulls a renewal forward into a failed renewal's backoff window (which
 * covers its Retry-After): no renewal starts before not_before_ms, whatever asked for it (a
 * signal, a login). Outside a window SIGUSR1 is rate limited: a renewal that
 * a signal asks for starts at least PS_LOOP_POKE_GAP_S after the previous one a signal asked for
 * (a later signal waits for that time rather than being dropped), so a flood of signals costs at
 * most one renewal per PS_LOOP_POKE_GAP_S. A keeper may publish its window as CLIENT.window in
 * the store (ps_loop_publish) so that `spotify-token refresh` can say why nothing happened.
 */
#ifndef PS_KEEPER_LOOP_H
#define PS_KEEPER_LOOP_H

#include <stdbool.h>
#include <stddef.h>

#define PS_LOOP_NEVER (-1LL)
/* Seconds between two renewals that signals ask for: spotify-token refresh waits 15 s for one. */
#define PS_LOOP_POKE_GAP_S 10

struct ps_loop;

struct ps_loop_ops {
	/* Renew now. PS_EXIT_OK, or a PS_EXIT_* code with one line in line. */
	int (*renew)(struct ps_loop *l, char *line, size_t linelen);
	/* After a renewal that worked: wall-clock ms of the next one, or PS_LOOP_NEVER. */
	long long (*schedule)(struct ps_loop *l);
	/* No live session is left (the registry was just rescanned): true ends the loop. */
	bool (*try_exit)(struct ps_loop *l);
};

struct ps_loop_session {
	long pid;
	int pidfd;
	char name[64];
};

struct ps_loop {
	const struct ps_loop_ops *ops;
	void *ctx;	 /* the keeper's own state */
	const char *who; /* names the keeper in log lines: "user 1000" */
	int dfd;	 /* the session registry (not owned) */
	int ifd, sfd;	 /* inotify, signalfd */
	struct ps_loop_session *sessions;
	int nsessions, cap;
	long long next_ms;	 /* wall clock (ms) of the next renewal, or PS_LOOP_NEVER */
	long long not_before_ms; /* wall clock (ms): end of the backoff window, or 0 */
	long long poke_ms;	 /* when the last renewal a signal asked for started (or starts) */
	int window_dfd;		 /* where the window is published (ps_loop_publish), or -1 */
	const char *window_client; /* ... as CLIENT.window */
	unsigned failures;	   /* renewals that failed in a row */
	bool stop;		   /* set by an op: end the loop after this step */
};

/* Wall-clock milliseconds. */
long long ps_loop_now_ms(void);

/*
 * When to renew a token that expires at expires_at (Unix seconds): margin_s before, but no
 * later than half its remaining life from now; now when it has expired.
 */
long long ps_loop_renew_at(long long expires_at, unsigned margin_s);

/* Watch the registry at dfd and block the signals into a signalfd. 0 or -1. */
int ps_loop_init(struct ps_loop *l, const struct ps_loop_ops *ops, void *ctx, const char *who,
		 int dfd);

/*
 * Publish the backoff window as CLIENT.window in the store open at dirfd (which, like client_id,
 * must outlive the loop): the window's end in Unix seconds while one is open, no file otherwise.
 * A window file left by an earlier keeper is removed now.
 */
void ps_loop_publish(struct ps_loop *l, int dirfd, const char *client_id);

/*
 * The end (Unix seconds) of the window the user's keeper for client_id published in the store
 * open at dirfd, or 0 when it has none open now.
 */
long long ps_loop_window_read(int dirfd, const char *client_id);

/* Rebuild the table of live sessions from the registry; returns how many there are. */
int ps_loop_rescan(struct ps_loop *l);

/* Run until try_exit says so, an op sets stop, or a stop signal comes. */
void ps_loop_run(struct ps_loop *l);

/* Close what ps_loop_init opened. */
void ps_loop_close(struct ps_loop *l);

#endif
