/*
 * user_token.c: the user's own Spotify token (flows pkce and authorization_code): enrollment,
 * refresh from the refresh-token store, logout. The store is locked around every refresh so
 * that concurrent logins of one user make one network refresh.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helper/authorize.h"
#include "helper/grant.h"
#include "helper/keeper.h"
#include "helper/app_token.h"
#include "helper/listener.h"
#include "helper/pkce.h"
#include "helper/store.h"
#include "helper/user_token.h"
#include "keyring/keys.h"
#include "keyring/token_info.h"
#include "common/util.h"

#define LOCK_WAIT_MAX_S 30 /* the store lock: spotify-token login, or a refresh without keeper */
#define PASTE_TRIES	3
#define AUTH_URL_MAX	(4 * PS_URL_MAX)

/* --- enrollment */

struct enrollment {
	char verifier[PS_VERIFIER_LEN + 1];
	char challenge[PS_CHALLENGE_LEN + 1];
	char state[PS_STATE_LEN + 1];
	char redirect_uri[PS_URL_MAX]; /* exactly as sent in the authorization request */
	char url[AUTH_URL_MAX];
	struct ps_callback cb;
};

static void enrollment_clear(struct enrollment *e)
{
	ps_callback_clear(&e->cb);
	explicit_bzero(e, sizeof(*e));
}

static int enrollment_start(const struct ps_config *cfg, struct enrollment *e, char *line,
			    size_t linelen)
{
	if (ps_pkce_verifier(e->verifier) < 0 || ps_pkce_challenge(e->verifier, e->challenge) < 0 ||
	    ps_pkce_state(e->state) < 0) {
		snprintf(line, linelen,
			 "cannot make the PKCE verifier and state (getrandom failed)");
		return PS_EXIT_CONFIG;
	}
	if (ps_authorize_url(cfg->authorize_url, cfg->client_id, e->redirect_uri, cfg->scopes,
			     e->state, e->challenge, e->url, sizeof(e->url)) < 0) {
		snprintf(line, linelen,
			 "the authorization URL is too long: check authorize_url "
			 "and scopes");
		return PS_EXIT_CONFIG;
	}
	return PS_EXIT_OK;
}

/*
 * Start a browser on the listener's /start/HEX page, where a display exists. No secret in argv:
 * the random path is visible to the user's own processes only, and the listener serves no other
 * uid.
 */
static void open_browser(const struct ps_listener *l)
{
	char url[32 + PS_START_PATH_LEN];
	pid_t pid;

	if (!getenv("DISPLAY") && !getenv("WAYLAND_DISPLAY"))
		return;
	snprintf(url, sizeof(url), "http://%s:%u%s",
		 strstr(l->redirect_uri, "[::1]") ? "[::1]" : "127.0.0.1", l->port, l->start_path);
	pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);

		if (null >= 0) {
			dup2(null, STDIN_FILENO);
			dup2(null, STDOUT_FILENO);
			dup2(null, STDERR_FILENO);
		}
		setsid();
		if (fork() == 0) {
			execlp("xdg-open", "xdg-open", url, (char *)NULL);
			_exit(127);
		}
		_exit(0);
	}
	if (pid > 0)
		waitpid(pid, NULL, 0);
}

/* spotify-token login: the listener and a paste on stdin, whichever first. */
static int authorize_terminal(const struct ps_config *cfg, struct enrollment *e, unsigned timeout_s,
			      char *line, size_t linelen)
{
	struct ps_listener l;
	enum ps_wait_result w;
	int rc;

	if (ps_listener_open(&l, cfg->redirect_uri, line, linelen) < 0)
		return PS_EXIT_CONFIG;
	ps_strlcpy(e->redirect_uri, l.redirect_uri, sizeof(e->redirect_uri));
	rc = enrollment_start(cfg, e, line, linelen);
	if (rc == PS_EXIT_OK) {
		ps_listener_set_start(&l, e->url);
		fprintf(stderr,
			"spotify-token: open this URL in a browser to connect your Spotify "
			"account:\n"
			"\n  %s\n\n"
			"spotify-token: waiting for the browser to come back to %s ...\n"
			"spotify-token: on another machine? paste here the address your browser "
			"was "
			"sent to (it starts with %s):\n",
			e->url, e->redirect_uri, e->redirect_uri);
		open_browser(&l);
		w = ps_listener_wait(&l, STDIN_FILENO, e->redirect_uri, e->state, timeout_s, &e->cb,
				     line, linelen);
		rc = w == PS_WAIT_CODE ? PS_EXIT_OK : PS_EXIT_REAUTH;
		if (w == PS_WAIT_DENIED)
			snprintf(line, linelen,
				 "Spotify refused the authorization (%s%s%s): "
				 "nothing was stored; run spotify-token login to try again",
				 e->cb.error, e->cb.error_description[0] ? ": " : "",
				 e->cb.error_description);
		else if (w == PS_WAIT_TIMEOUT)
			snprintf(line, linelen,
				 "no authorization arrived within %u s: nothing was "
				 "stored; run spotify-token login again",
				 timeout_s);
		else if (w == PS_WAIT_FAIL)
			rc = PS_EXIT_CONFIG;
	}
	ps_listener_close(&l);
	return rc;
}

enum answer {
	ANSWER_OK,	 /* out holds the text */
	ANSWER_NONE,	 /* no answer: cancelled, the stream ended, or the deadline passed */
	ANSWER_TOO_LONG, /* longer than out (or than the module could pass on): dropped */
};

/*
 * Read one line from the module (stdin), bounded by the deadline: "answer TEXT", "too-long" (the
 * module's answer did not fit its line) or "cancel". A line longer than out is read to its end
 * and dropped, so that the next answer starts clean.
 */
static enum answer read_answer(char *out, size_t outlen, long long deadline_s)
{
	bool overflow = false;
	size_t n = 0;
	char c;

	for (;;) {
		struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
		long long left = deadline_s - (long long)time(NULL);

		if (left <= 0 || poll(&p, 1, (int)(left * 1000)) <= 0 ||
		    read(STDIN_FILENO, &c, 1) != 1)
			break;
		if (c == '\n') {
			out[n] = '\0';
			if (overflow || strcmp(out, "too-long") == 0)
				return ANSWER_TOO_LONG;
			if (strncmp(out, "answer ", 7) != 0)
				break;
			memmove(out, out + 7, n - 6);
			return ANSWER_OK;
		}
		if (n + 1 < outlen) {
			out[n++] = c;
		} else if (!overflow) {
			overflow = true;
			explicit_bzero(out, outlen); /* may hold part of a code */
			n = 0;
		}
	}
	explicit_bzero(out, outlen);
	return ANSWER_NONE;
}

/* Enrollment through the PAM conversation: the URL shown, the redirected URL pasted back. */
static int authorize_pam(const struct ps_config *cfg, struct enrollment *e, unsigned timeout_s,
			 char *line, size_t linelen)
{
	long long deadline = (long long)time(NULL) + timeout_s;
	char answer[4 * PS_URL_MAX], why[PS_ERR_MAX];
	int rc, tries;

	ps_strlcpy(e->redirect_uri, cfg->redirect_uri, sizeof(e->redirect_uri));
	rc = enrollment_start(cfg, e, line, linelen);
	if (rc != PS_EXIT_OK)
		return rc;
	printf("conv-info To connect your Spotify account, open this URL in a browser:\n"
	       "conv-info %s\n"
	       "conv-info After you agree, the browser goes to %s... (it may show an error "
	       "page).\n",
	       e->url, e->redirect_uri);
	for (tries = 0; tries < PASTE_TRIES; tries++) {
		enum answer got;

		printf("conv-prompt Paste the whole address from the browser's address bar: \n");
		fflush(stdout);
		got = read_answer(answer, sizeof(answer), deadline);
		if (got == ANSWER_NONE) {
			snprintf(line, linelen,
				 "no redirected URL was pasted: run spotify-token "
				 "login, or log in again");
			rc = PS_EXIT_NO_TOKEN;
			break;
		}
		if (got == ANSWER_TOO_LONG) {
			snprintf(why, sizeof(why),
				 "that is too long to be the redirected address (at most %zu "
				 "characters); paste only the address from the browser's address "
				 "bar",
				 sizeof(answer) - 1);
			rc = -1;
		} else {
			rc = ps_callback_parse_url(answer, e->redirect_uri, &e->cb, why,
						   sizeof(why));
		}
		explicit_bzero(answer, sizeof(answer));
		if (rc == 0 && !ps_state_equal(e->state, e->cb.state)) {
			snprintf(why, sizeof(why), "that address belongs to another login attempt");
			rc = -1;
		}
		if (rc == 0 && e->cb.error[0]) {
			snprintf(line, linelen,
				 "Spotify refused the authorization (%s): nothing was "
				 "stored",
				 e->cb.error);
			return PS_EXIT_REAUTH;
		}
		if (rc == 0)
			return PS_EXIT_OK;
		printf("conv-info %s\n", why);
		rc = PS_EXIT_NO_TOKEN;
		snprintf(line, linelen, "the pasted address was not accepted: %s", why);
	}
	return rc;
}

/* Keep a new refresh token (before anything else uses the answer), then the access token. */
static int keep_tokens(const struct ps_config *cfg, struct ps_store *s,
		       const struct ps_token_response *tok, const char *old_refresh, time_t started,
		       char *line, size_t linelen)
{
	int rc;

	if (tok->refresh_token && (!old_refresh || strcmp(old_refresh, tok->refresh_token) != 0)) {
		rc = ps_store_write(s, tok->refresh_token, tok->refresh_token_len, line, linelen);
		if (rc != PS_EXIT_OK)
			return rc;
	}
	return ps_grant_store(cfg, tok, started, line, linelen);
}

int ps_user_token_enroll(const struct ps_config *cfg, enum ps_enroll_via via, unsigned timeout_s,
			 char *line, size_t linelen)
{
	struct ps_token_response tok;
	char why[PS_ERR_MAX];
	struct enrollment e;
	struct ps_store s;
	time_t started;
	int rc;

	memset(&e, 0, sizeof(e));
	rc = ps_store_open(&s, cfg->client_id, line, linelen);
	if (rc != PS_EXIT_OK)
		return rc;
	rc = via == PS_VIA_PAM ? authorize_pam(cfg, &e, timeout_s, line, linelen)
			       : authorize_terminal(cfg, &e, timeout_s, line, linelen);
	if (rc == PS_EXIT_OK) {
		started = time(NULL);
		rc = ps_grant_code(cfg, e.cb.code, e.redirect_uri, e.verifier, &tok, line, linelen);
		if (rc == PS_EXIT_OK && !tok.refresh_token) {
			snprintf(line, linelen,
				 "the token endpoint returned no refresh token: check "
				 "that the app may use the authorization code flow");
			rc = PS_EXIT_NETWORK;
		}
		if (rc == PS_EXIT_OK)
			rc = keep_tokens(cfg, &s, &tok, NULL, started, line, linelen);
		ps_token_response_clear(&tok);
		/* a running keeper (stopped by an invalid_grant, maybe) keeps the new token */
		if (rc == PS_EXIT_OK)
			ps_keeper_ask(cfg, "reload", ps_mono_ms() + 2000, NULL, why, sizeof(why));
	}
	enrollment_clear(&e);
	ps_store_close(&s);
	return rc;
}

/* --- refresh */

/* What a user does to connect (again): pkce has spotify-token login; authorization_code connects
 * at an interactive login prompt (its code exchange goes through the system service, which the
 * login starts). */
static const char *connect_hint(const struct ps_config *cfg)
{
	return cfg->flow == PS_FLOW_PKCE ? "run spotify-token login"
					 : "log in at a console or graphical prompt to connect "
					   "your account";
}

/*
 * Under the store lock: refresh from the stored refresh token. A rotated refresh token is stored
 * before anything else; the new access token goes into t. (The keeper's renewal: keeper.h.)
 */
static int renew_locked(const struct ps_config *cfg, struct ps_store *s, struct ps_app_token *t,
			char *line, size_t linelen)
{
	char info[PS_TOKEN_INFO_MAX];
	struct ps_token_response tok;
	char *refresh = NULL;
	size_t len = 0;
	time_t started;
	int rc = ps_store_read(s, &refresh, &len, line, linelen);

	if (rc == PS_EXIT_NO_TOKEN)
		snprintf(line, linelen, "not connected to Spotify yet: %s", connect_hint(cfg));
	else if (rc == PS_EXIT_REAUTH)
		snprintf(line, linelen, "Spotify refused the stored refresh token earlier: %s",
			 connect_hint(cfg));
	if (rc != PS_EXIT_OK)
		return rc;
	started = time(NULL);
	rc = ps_grant_refresh(cfg, refresh, &tok, line, linelen);
	if (rc == PS_EXIT_OK) {
		if (tok.refresh_token && strcmp(refresh, tok.refresh_token) != 0)
			rc = ps_store_write(s, tok.refresh_token, tok.refresh_token_len, line,
					    linelen);
		if (rc == PS_EXIT_OK)
			rc = ps_grant_info(cfg, &tok, started, info, sizeof(info), line, linelen);
		if (rc == PS_EXIT_OK &&
		    ps_app_token_parse(t, cfg, info, tok.access_token, tok.access_token_len) < 0) {
			ps_errf(line, linelen, "the token endpoint's access token is malformed");
			rc = PS_EXIT_NETWORK;
		}
		if (rc == PS_EXIT_OK)
			snprintf(line, linelen, "ok expires_in=%ld", tok.expires_in);
		ps_token_response_clear(&tok);
	} else if (rc == PS_EXIT_REAUTH) {
		/* invalid_grant: expired or revoked. Only this marks the store; 5xx never do. */
		char why[PS_ERR_MAX];

		ps_store_mark_reauth(s, why, sizeof(why));
		snprintf(line, linelen,
			 "Spotify refused the stored refresh token (invalid_grant): %s",
			 connect_hint(cfg));
	}
	ps_free_secret(refresh, len + 1);
	return rc;
}

int ps_user_token_renew(const struct ps_config *cfg, struct ps_app_token *t, char *line,
			size_t linelen)
{
	struct ps_store s;
	int rc = ps_store_open(&s, cfg->client_id, line, linelen);

	memset(t, 0, sizeof(*t));
	if (rc != PS_EXIT_OK)
		return rc;
	rc = ps_store_lock(&s, LOCK_WAIT_MAX_S, line, linelen);
	if (rc == PS_EXIT_OK) {
		rc = renew_locked(cfg, &s, t, line, linelen);
		ps_store_unlock(&s);
	}
	ps_store_close(&s);
	return rc;
}

int ps_user_token_refresh(const struct ps_config *cfg, char *line, size_t linelen)
{
	struct ps_app_token t;
	int rc = ps_user_token_renew(cfg, &t, line, linelen);

	if (rc == PS_EXIT_OK)
		rc = ps_app_token_store(cfg, &t, line, linelen);
	ps_app_token_clear(&t);
	return rc;
}

bool ps_user_token_enrolled(const struct ps_config *cfg)
{
	char line[PS_ERR_MAX], *refresh = NULL;
	struct ps_store s;
	size_t len = 0;
	int rc;

	if (ps_store_open(&s, cfg->client_id, line, sizeof(line)) != PS_EXIT_OK)
		return true; /* a broken store is no reason to prompt: the renewal says what is wrong */
	rc = ps_store_read(&s, &refresh, &len, line, sizeof(line));
	if (rc == PS_EXIT_OK)
		ps_free_secret(refresh, len + 1);
	ps_store_close(&s);
	return rc != PS_EXIT_NO_TOKEN && rc != PS_EXIT_REAUTH;
}

int ps_user_token_logout(const struct ps_config *cfg, char *line, size_t linelen)
{
	struct ps_store s;
	int rc = ps_store_open(&s, cfg->client_id, line, linelen);

	if (rc != PS_EXIT_OK)
		return rc;
	rc = ps_store_remove(&s, line, linelen);
	ps_store_close(&s);
	if (rc == PS_EXIT_OK) /* a running keeper lets go of the token it holds */
		ps_keeper_ask(cfg, "forget", ps_mono_ms() + 2000, NULL, line, linelen);
	if (rc == PS_EXIT_OK)
		rc = ps_keys_remove(cfg->keyring, line, linelen);
	if (rc == PS_EXIT_OK)
		snprintf(line, linelen, "disconnected: the refresh token and the keys are removed");
	return rc;
}
