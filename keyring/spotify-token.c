/*
 * spotify-token.c: the reader. Finds the Spotify access token that pam_spotify stored in the
 * kernel keyring and prints it in the form asked for, or a summary that never shows it. Links
 * libkeyutils and libc only. Errors are one line on stderr that says what to do; exit codes as in
 * spotify-token(1) (enum ps_exit).
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KEEPER_WAIT_MS 15000 /* how long a reader waits for the keeper to renew */

#include "common/frame.h"
#include "common/paths.h"
#include "keyring/keys.h"
#include "keyring/reader_opts.h"
#include "keyring/token_info.h"
#include "common/config.h"
#include "common/util.h"

#define PROG	"spotify-token"
#define OUT_MAX 16384 /* the token, plus info strings at up to 6 bytes a byte when escaped */
#define MSG_MAX 1024
/* A failed write (EPIPE, ENOSPC, ...) has no exit code of its own: like coreutils, exit 1. */
#define EXIT_OUTPUT PS_EXIT_NO_TOKEN

struct reader {
	struct ps_reader_opts opts;
	struct ps_keys_found found;
	struct ps_token_info info;
	bool have_info;
	char info_problem[160]; /* why there is no info, when have_info is false */
	long long now;
};

/*
 * The time in seconds, by clock_gettime: time() is an IFUNC, and with BIND_NOW its resolver runs
 * at start-up, faulting in (and around) one more stretch of libc's text for nothing.
 */
static long long now_s(void)
{
	struct timespec ts;

	return clock_gettime(CLOCK_REALTIME, &ts) == 0 ? (long long)ts.tv_sec : 0;
}

/* --- output: built in one buffer, written with one write, zeroed (it may hold the token) */

/* A string from the keyring, made safe for a terminal. */
static void out_text(struct ps_buf *o, const char *s)
{
	char clean[PS_SCOPES_MAX];

	ps_sanitize_text(clean, sizeof(clean), s, strlen(s));
	ps_buf_printf(o, "%s", clean[0] ? clean : "(none)");
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One line on stderr, prefixed with the program name. */
static void say(const char *fmt, ...)
{
	char line[MSG_MAX];
	va_list ap;
	int n;

	memcpy(line, PROG ": ", sizeof(PROG ": ") - 1);
	va_start(ap, fmt);
	n = vsnprintf(line + sizeof(PROG ": ") - 1, sizeof(line) - sizeof(PROG ": "), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	n = (int)strlen(line);
	line[n++] = '\n';
	(void)ps_write_all(STDERR_FILENO, line, (size_t)n);
}

/* A message that already carries the prefix (from reader_opts). */
static int fail_prefixed(int code, const char *msg)
{
	char line[MSG_MAX];
	size_t n = ps_strlcpy(line, msg, sizeof(line) - 1);

	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	(void)ps_write_all(STDERR_FILENO, line, n);
	return code;
}

static int write_out(struct ps_buf *o)
{
	int rc = PS_EXIT_OK;

	if (o->full) {
		say("internal error: output longer than %zu bytes", o->cap);
		rc = EXIT_OUTPUT;
	} else if (ps_write_all(STDOUT_FILENO, o->buf, o->len) < 0) {
		say("cannot write to standard output: %s", strerror(errno));
		rc = EXIT_OUTPUT;
	}
	ps_free_secret(o->buf, o->cap);
	o->buf = NULL;
	return rc;
}

/* cap: what the output needs at most, up to OUT_MAX; the fewer pages, the smaller the reader. */
static int out_open(struct ps_buf *o, size_t cap)
{
	o->cap = cap < OUT_MAX ? cap : OUT_MAX;
	o->buf = malloc(o->cap);
	o->len = 0;
	o->full = false;
	if (!o->buf) {
		say("out of memory");
		return -1;
	}
	return 0;
}

/* --- help */

static int print_text(const char *text)
{
	if (ps_write_all(STDOUT_FILENO, text, strlen(text)) < 0) {
		say("cannot write to standard output: %s", strerror(errno));
		return EXIT_OUTPUT;
	}
	return PS_EXIT_OK;
}

static int usage(void)
{
	return print_text(
		"Usage: " PROG " [--header|--json|--env|--status] [--min-valid=N] [--config=PATH]\n"
		"       " PROG " login [--timeout=N] | logout | refresh   [--config=PATH]\n"
		"Print the Spotify access token that pam_spotify stored in your kernel keyring.\n"
		"\n"
		"  (no option)    the token and a newline\n"
		"  --header       Authorization: Bearer <token>\n"
		"  --json         {\"access_token\":..,\"token_type\":..,\"expires_at\":..,"
		"\"expires_in\":..,\"scope\":..}\n"
		"  --env          export SPOTIFY_ACCESS_TOKEN='<token>'\n"
		"  --status       a summary of the token; never prints the token\n"
		"  --min-valid=N  renew first when the token lives less than N more seconds;\n"
		"                 fail (exit 3) if it still does\n"
		"  --config=PATH  the configuration (default " PS_CONFIG_PATH ")\n"
		"  --help         this text\n"
		"  --version      the version\n"
		"\n"
		"  login          connect your Spotify account (flow = pkce): a browser, or paste\n"
		"                 the address it was sent to; --timeout=N seconds (default 300)\n"
		"  logout         forget the refresh token and remove the keys\n"
		"  refresh        renew now: your keeper does it (pkce with no session open: "
		"here)\n"
		"\n"
		"Exit status: 0 ok, 1 no token, 2 usage, 3 expired or below --min-valid,\n"
		"4 re-authorization needed (run " PROG " login), 5 keyring unavailable,\n"
		"6 network or server error, 7 configuration error.\n"
		"\n"
		"Example: curl -H \"$(" PROG " --header)\" https://api.spotify.com/v1/me\n");
}

/* --- finding the token */

/* 1 when the configuration asks for the persistent keyring, 0 when not, -1 on error (in err). */
/*
 * The configuration, read only off the fast path: 1 when loaded, 0 when the default file does
 * not exist, -1 on error (in err). A file named with --config must exist.
 */
static int reader_config(const struct reader *r, struct ps_config *cfg, char *err, size_t errlen)
{
	const char *path = r->opts.config_path ? r->opts.config_path : PS_CONFIG_PATH;
	struct stat st;

	if (!r->opts.config_path && stat(path, &st) < 0 && errno == ENOENT)
		return 0;
	ps_config_init(cfg);
	ps_strlcpy(cfg->config_path, path, sizeof(cfg->config_path));
	return ps_config_load(cfg, path, err, errlen) < 0 ? -1 : 1;
}

/* The refresh-token store of this client says the server refused the refresh token. */
static bool reauth_marked(const struct ps_config *cfg)
{
	char dir[PATH_MAX], path[PATH_MAX + PS_CLIENT_ID_MAX + 16];
	struct stat st;

	/* where the helper keeps it: never under XDG_STATE_HOME (see the helper's run_user) */
	unsetenv("XDG_STATE_HOME");
	if (cfg->flow == PS_FLOW_CLIENT_CREDENTIALS || ps_store_dir(dir, sizeof(dir)) < 0)
		return false;
	snprintf(path, sizeof(path), "%s/%s.reauth", dir, cfg->client_id);
	return lstat(path, &st) == 0;
}

/*
 * The user's keeper for cfg, when one runs (a session is open): ask it to renew now, and wait for
 * its answer. True when it renewed (or holds a fresh token).
 */
static bool keeper_renewed(struct ps_config *cfg)
{
	char path[PS_SERVICE_PATH_MAX], msg[64], reply[PS_ERR_MAX + 256], line[PS_ERR_MAX];
	struct ps_buf b = {.buf = msg, .cap = sizeof(msg)};
	size_t n = 0;

	if (cfg->keyring == PS_KEYRING_SESSION || ps_config_finish(cfg, line, sizeof(line)) < 0)
		return false; /* a session keyring: its keeper cannot reach it */
	ps_keeper_path(cfg, getuid(), ".sock", path, sizeof(path));
	ps_msg_add(&b, "op", "refresh-now");
	ps_msg_end(&b);
	return ps_msg_call(path, getuid(), false, msg, b.len, -1, ps_mono_ms() + KEEPER_WAIT_MS,
			   reply, sizeof(reply) - 1, &n) == 0 &&
	       ps_msg_status(reply, n, "the keeper", line, sizeof(line)) == PS_EXIT_OK;
}

/*
 * The session and user keyrings first; the configuration is read only when they miss: to learn
 * whether the token lives in the persistent keyring, to ask the user's keeper (when a session is
 * open) to renew it, or whether a refresh was refused and the user must log in again (exit 4).
 * Errors are printed here.
 */
static int find_token(struct reader *r)
{
	char err[PS_ERR_MAX], err2[PS_ERR_MAX];
	struct ps_config cfg;
	int rc, rc2, have;

	rc = ps_keys_read(false, &r->found, err, sizeof(err));
	if (rc == PS_EXIT_NO_TOKEN || rc == PS_EXIT_EXPIRED) {
		have = reader_config(r, &cfg, err2, sizeof(err2));
		if (have < 0) {
			say("%s", err2);
			return PS_EXIT_CONFIG;
		}
		if (have && cfg.keyring == PS_KEYRING_PERSISTENT) {
			rc2 = ps_keys_read(true, &r->found, err2, sizeof(err2));
			if (rc2 == PS_EXIT_OK || rc != PS_EXIT_EXPIRED || rc2 != PS_EXIT_NO_TOKEN) {
				rc = rc2;
				memcpy(err, err2, sizeof(err));
			}
		}
		if (rc != PS_EXIT_OK && have && keeper_renewed(&cfg)) {
			ps_keys_found_free(&r->found);
			rc = ps_keys_read(cfg.keyring == PS_KEYRING_PERSISTENT, &r->found, err,
					  sizeof(err));
		}
		if (rc != PS_EXIT_OK && have && reauth_marked(&cfg)) {
			rc = PS_EXIT_REAUTH;
			snprintf(
				err, sizeof(err),
				"Spotify refused the stored refresh token (expired or revoked): %s",
				cfg.flow == PS_FLOW_PKCE
					? "run spotify-token login"
					: "log in at a console or graphical prompt "
					  "to connect your account again");
		}
	}
	if (rc != PS_EXIT_OK)
		say("%s", err);
	return rc;
}

/* login, logout, refresh: the helper does them, as this user. */
static int run_helper_command(const struct reader *r)
{
	char config[PATH_MAX + 16], timeout[32];
	const char *argv[5];
	int n = 0;

	argv[n++] = "pam_spotify_helper";
	argv[n++] = ps_reader_cmd_name(r->opts.cmd);
	if (r->opts.config_path) {
		snprintf(config, sizeof(config), "--config=%s", r->opts.config_path);
		argv[n++] = config;
	}
	if (r->opts.timeout_set) {
		snprintf(timeout, sizeof(timeout), "--timeout=%lu", r->opts.timeout_s);
		argv[n++] = timeout;
	}
	argv[n] = NULL;
	execv(PS_HELPER_PATH, (char *const *)argv);
	say("cannot run %s: %s; reinstall pam_spotify", PS_HELPER_PATH, strerror(errno));
	return PS_EXIT_CONFIG;
}

/* Parse the info key; when that fails, say why in info_problem. */
static void load_info(struct reader *r)
{
	const char *where = ps_key_place_name(r->found.place);
	int e = r->found.info_errno;

	if (r->found.info) {
		r->have_info = ps_token_info_parse(&r->info, r->found.info, r->found.info_len) == 0;
		if (!r->have_info)
			snprintf(r->info_problem, sizeof(r->info_problem),
				 "%s in the %s keyring is malformed", PS_KEY_INFO, where);
		return;
	}
	if (e == ENOKEY)
		snprintf(r->info_problem, sizeof(r->info_problem),
			 "%s is missing from the %s keyring", PS_KEY_INFO, where);
	else if (e == EKEYEXPIRED || e == EKEYREVOKED)
		snprintf(r->info_problem, sizeof(r->info_problem),
			 "%s in the %s keyring has expired", PS_KEY_INFO, where);
	else if (e == EACCES)
		snprintf(r->info_problem, sizeof(r->info_problem),
			 "%s in the %s keyring is not readable by you (wrong permissions)",
			 PS_KEY_INFO, where);
	else
		snprintf(r->info_problem, sizeof(r->info_problem), "%s in the %s keyring: %s",
			 PS_KEY_INFO, where, strerror(e));
}

/* --- checks */

static void format_duration(char *buf, size_t len, long long s)
{
	if (s >= 3600)
		snprintf(buf, len, "%lldh %lldm %llds", s / 3600, s % 3600 / 60, s % 60);
	else
		snprintf(buf, len, "%lldm %llds", s / 60, s % 60);
}

static void format_utc(char *buf, size_t len, long long t)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!gmtime_r(&tt, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm))
		snprintf(buf, len, "%lld", t);
}

static bool info_expired(const struct reader *r)
{
	return r->have_info && r->info.expires_at <= r->now;
}

/* --min-valid=N: PS_EXIT_OK, or PS_EXIT_EXPIRED with the reason printed. */
static int check_min_valid(const struct reader *r)
{
	unsigned long n = r->opts.min_valid;
	long long left;

	if (n == 0)
		return PS_EXIT_OK;
	if (!r->have_info) {
		say("cannot check --min-valid=%lu: %s; log in again", n, r->info_problem);
		return PS_EXIT_EXPIRED;
	}
	left = r->info.expires_at - r->now;
	if (left >= (long long)n)
		return PS_EXIT_OK;
	say("the Spotify token expires in %lld s, sooner than --min-valid=%lu asks, even after a "
	    "renewal: tokens do not live that long, or renewal failed (see above)",
	    left, n);
	return PS_EXIT_EXPIRED;
}

/* --- the output modes */

static void out_status(struct ps_buf *o, const struct reader *r)
{
	const char *where = ps_key_place_name(r->found.place);
	char when[64], left[64];

	ps_buf_printf(o, "token:      %s, in the %s keyring\n",
		      info_expired(r) ? "expired" : "present", where);
	if (!r->have_info) {
		ps_buf_printf(o,
			      "info:       %s: type, expiry, scope, flow and client id are unknown "
			      "(log in again to restore it)\n",
			      r->info_problem);
		return;
	}
	format_utc(when, sizeof(when), r->info.expires_at);
	ps_buf_printf(o, "type:       ");
	out_text(o, r->info.token_type);
	if (info_expired(r)) {
		format_duration(left, sizeof(left), r->now - r->info.expires_at);
		ps_buf_printf(o, "\nexpired:    %s ago, at %s\n", left, when);
	} else {
		format_duration(left, sizeof(left), r->info.expires_at - r->now);
		ps_buf_printf(o, "\nexpires:    in %s, at %s\n", left, when);
	}
	ps_buf_printf(o, "scope:      ");
	out_text(o, r->info.scope);
	ps_buf_printf(o, "\nflow:       ");
	out_text(o, r->info.flow);
	ps_buf_printf(o, "\nclient id:  ");
	out_text(o, r->info.client_id);
	ps_buf_printf(o, "\n");
}

static void out_json(struct ps_buf *o, const struct reader *r)
{
	const char *token = r->found.token;

	ps_buf_printf(o, "{\"access_token\":");
	ps_buf_json_string(o, token);
	if (r->have_info) {
		ps_buf_printf(o, ",\"token_type\":");
		ps_buf_json_string(o, r->info.token_type);
		ps_buf_printf(o, ",\"expires_at\":%lld,\"expires_in\":%lld,\"scope\":",
			      r->info.expires_at, r->info.expires_at - r->now);
		ps_buf_json_string(o, r->info.scope);
		ps_buf_printf(o, "}\n");
	} else {
		ps_buf_printf(o, ",\"token_type\":null,\"expires_at\":null,\"expires_in\":null,"
				 "\"scope\":null}\n");
		say("%s: token_type, expires_at, expires_in and scope are null; log in again to "
		    "restore it",
		    r->info_problem);
	}
}

static int output(struct reader *r)
{
	const char *token = r->found.token;
	struct ps_buf o;

	/* the modes for programs: the token and at most 64 bytes around it */
	bool plain = r->opts.mode == PS_MODE_TOKEN || r->opts.mode == PS_MODE_HEADER ||
		     r->opts.mode == PS_MODE_ENV;

	if (out_open(&o, plain ? r->found.token_len + 64 : OUT_MAX) < 0)
		return EXIT_OUTPUT;
	switch (r->opts.mode) {
	/* the three modes for programs: plain copies, no printf (see ps_buf_puts) */
	case PS_MODE_TOKEN:
		ps_buf_puts(&o, token);
		ps_buf_puts(&o, "\n");
		break;
	case PS_MODE_HEADER:
		ps_buf_puts(&o, "Authorization: Bearer ");
		ps_buf_puts(&o, token);
		ps_buf_puts(&o, "\n");
		break;
	case PS_MODE_ENV:
		/* b64token holds no quote, so single quotes are enough for a shell */
		ps_buf_puts(&o, "export SPOTIFY_ACCESS_TOKEN='");
		ps_buf_puts(&o, token);
		ps_buf_puts(&o, "'\n");
		break;
	case PS_MODE_JSON:
		out_json(&o, r);
		break;
	case PS_MODE_STATUS:
		out_status(&o, r);
		break;
	}
	return write_out(&o);
}

/* The token was found: check it, then print it (or the status). */
static int show_token(struct reader *r)
{
	char when[64];
	int rc;

	if (!ps_keys_token_valid(r->found.token, r->found.token_len)) {
		say("key %s in the %s keyring holds malformed data: log in again or remove it with "
		    "keyctl unlink",
		    PS_KEY_TOKEN, ps_key_place_name(r->found.place));
		return PS_EXIT_NO_TOKEN;
	}
	load_info(r);
	r->now = now_s();
	if (r->opts.mode == PS_MODE_STATUS) {
		rc = output(r);
		if (rc == PS_EXIT_OK && info_expired(r))
			return PS_EXIT_EXPIRED;
		return rc == PS_EXIT_OK ? check_min_valid(r) : rc;
	}
	if (info_expired(r)) {
		format_utc(when, sizeof(when), r->info.expires_at);
		say("the Spotify token in your %s keyring expired at %s: log in again",
		    ps_key_place_name(r->found.place), when);
		return PS_EXIT_EXPIRED;
	}
	rc = check_min_valid(r);
	return rc == PS_EXIT_OK ? output(r) : rc;
}

/*
 * --min-valid=N and a token that lives less: ask for a renewal first (the helper, as this user:
 * a refresh for pkce, the keeper for the other flows; each bounded in time), then read again.
 */
static int renew_for_min_valid(struct reader *r)
{
	int status;
	pid_t pid;

	if (!r->opts.min_valid || !ps_keys_token_valid(r->found.token, r->found.token_len))
		return PS_EXIT_OK;
	load_info(r);
	r->now = now_s();
	if (r->have_info && r->info.expires_at - r->now >= (long long)r->opts.min_valid)
		return PS_EXIT_OK;
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		r->opts.cmd = PS_CMD_REFRESH;
		r->opts.timeout_set = false;
		_exit(run_helper_command(r));
	}
	while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	ps_keys_found_free(&r->found);
	r->have_info = false;
	return find_token(r);
}

/*
 * A configuration named on the command line must exist and be valid, token or not. Not inlined:
 * struct ps_config is 17 KiB, which in main's frame would put every later frame, and the stack
 * pages they touch, below it.
 */
static __attribute__((noinline)) int check_config(const struct reader *r)
{
	struct ps_config cfg;
	char err[PS_ERR_MAX];

	if (reader_config(r, &cfg, err, sizeof(err)) < 0) {
		say("%s", err);
		return -1;
	}
	return 0;
}

int main(int argc, char *argv[])
{
	struct reader r;
	char err[PS_ERR_MAX];
	int rc;

	memset(&r, 0, sizeof(r));
	/* A closed pipe is an error to report (EPIPE), not a silent death. */
	signal(SIGPIPE, SIG_IGN);
	if (ps_reader_opts_parse(&r.opts, argc, argv, err, sizeof(err)) < 0)
		return fail_prefixed(PS_EXIT_USAGE, err);
	if (r.opts.cmd == PS_CMD_HELP)
		return usage();
	if (r.opts.cmd == PS_CMD_VERSION)
		return print_text(PROG " (pam_spotify) " PACKAGE_VERSION "\n");
	if (ps_reader_cmd_name(r.opts.cmd))
		return run_helper_command(&r);
	if (r.opts.config_path && check_config(&r) < 0)
		return PS_EXIT_CONFIG;
	rc = find_token(&r);
	if (rc == PS_EXIT_OK)
		rc = renew_for_min_valid(&r);
	if (rc == PS_EXIT_OK)
		rc = show_token(&r);
	ps_keys_found_free(&r.found);
	return rc;
}
