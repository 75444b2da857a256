/*
 * role_login.c: the roles a login runs (roles.h). --pam enrolls through the PAM conversation when
 * the user must and may, and makes sure the user's keeper runs; for keyring = session it copies
 * the keeper's token into the login's session keyring. The answer is exactly one line on stdout
 * (the module logs it); nothing goes to stderr; no secret, token or response body is printed.
 * keeper reads the same request and becomes the keeper (keeper.h).
 */
#include <config.h> /* autoconf; "config.h" could be taken for common/config.h */

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "common/request.h"
#include "common/util.h"
#include "helper/app_token.h"
#include "helper/curl_load.h"
#include "helper/keeper.h"
#include "helper/roles.h"
#include "helper/user_token.h"

#define ANSWER_MAX PS_ERR_MAX /* the answer line; the module reads fewer than 512 bytes */

/* The answer: one line, written at once, never longer than the module reads. */
void ps_role_answer(const char *line)
{
	char out[ANSWER_MAX];
	size_t n = ps_strlcpy(out, line, sizeof(out) - 1);

	if (n > sizeof(out) - 2)
		n = sizeof(out) - 2;
	out[n] = '\n';
	ps_write_all(STDOUT_FILENO, out, n + 1);
}

/* Read the request from stdin: until EOF or the "end" line, at most PS_REQUEST_MAX bytes. */
static int read_request(struct ps_request *req, char *line, size_t linelen)
{
	char buf[PS_REQUEST_MAX + 1];
	size_t len = 0;
	int rc = PS_EXIT_CONFIG;

	while (len < sizeof(buf)) {
		ssize_t n = read(STDIN_FILENO, buf + len, sizeof(buf) - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(line, linelen, "cannot read the request: %s", strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len >= 5 && memcmp(buf + len - 5, "\nend\n", 5) == 0)
			break;
	}
	if (len > PS_REQUEST_MAX)
		snprintf(line, linelen, "request is larger than %d bytes", PS_REQUEST_MAX);
	else if (ps_request_parse(req, buf, len, line, linelen) == 0)
		rc = PS_EXIT_OK;
out:
	explicit_bzero(buf, sizeof(buf));
	return rc;
}

/* Settings the module always sends for a token request; a mismatch means mixed versions. */
static int check_open_request(const struct ps_request *req, char *line, size_t linelen)
{
	if (!req->cfg.client_id[0] || !(req->cfg.set & PS_SET_TOKEN_URL)) {
		snprintf(line, linelen,
			 "request has no client_id or token_url: the module and the "
			 "helper come from different versions; reinstall pam_spotify");
		return PS_EXIT_CONFIG;
	}
	if (req->cfg.flow != PS_FLOW_PKCE && (!req->cfg.service[0] || req->cfg.app_uid <= 0)) {
		snprintf(line, linelen,
			 "request names no system service: the module and the helper come from "
			 "different versions; reinstall pam_spotify");
		return PS_EXIT_CONFIG;
	}
	return PS_EXIT_OK;
}

/* Whether this login may enroll: a user flow, a conversation, enroll = prompt. */
static bool may_enroll(const struct ps_config *cfg)
{
	return cfg->flow != PS_FLOW_CLIENT_CREDENTIALS && cfg->interactive &&
	       cfg->enroll == PS_ENROLL_PROMPT;
}

/*
 * --pam, op open: enroll through the PAM conversation when the user has no refresh token and may,
 * then make sure the user's keeper runs (it gets and keeps the token; the module asks it next).
 * keyring = session: the keeper cannot reach the login's session keyring, so its token is
 * copied there from here.
 */
static int op_open(const struct ps_request *req, char *line, size_t linelen)
{
	long long deadline;
	struct ps_app_token t;
	int rc = check_open_request(req, line, linelen);

	if (rc == PS_EXIT_OK && may_enroll(&req->cfg) && !ps_user_token_enrolled(&req->cfg))
		rc = ps_user_token_enroll(&req->cfg, PS_VIA_PAM, PS_LOGIN_TIMEOUT_S, line, linelen);
	/* the module's deadline, less a margin for our answer; after an enrollment it starts anew */
	deadline = ps_mono_ms() + (req->cfg.timeout > 1 ? req->cfg.timeout * 1000 - 500 : 500);
	if (rc == PS_EXIT_OK)
		rc = ps_keeper_start(req, deadline, line, linelen);
	if (rc != PS_EXIT_OK || req->cfg.keyring != PS_KEYRING_SESSION)
		return rc;
	rc = ps_keeper_ask(&req->cfg, "token", deadline, &t, line, linelen);
	if (rc < 0) {
		snprintf(line, linelen, "the keeper went away before it answered");
		rc = PS_EXIT_NETWORK;
	}
	if (rc == PS_EXIT_OK)
		rc = ps_app_token_store(&req->cfg, &t, line, linelen);
	ps_app_token_clear(&t);
	return rc;
}

/* keeper: the request on stdin (from the helper that starts it), then keep the token fresh. */
int ps_role_keeper(char *argv1)
{
	struct ps_request req;
	char line[ANSWER_MAX];
	int rc;

	memset(&req, 0, sizeof(req));
	rc = read_request(&req, line, sizeof(line));
	if (rc != PS_EXIT_OK) { /* its starter says "see the system log" */
		openlog("pam_spotify_helper[keeper]", LOG_PID, LOG_AUTHPRIV);
		syslog(LOG_ERR, "user %u: the keeper cannot start: %s", (unsigned)getuid(), line);
		return rc;
	}
	return ps_keeper_run(&req, argv1);
}

/* --pam: one request on stdin, one answer line on stdout. */
int ps_role_pam(void)
{
	struct ps_request req;
	char line[ANSWER_MAX];
	int rc;

	memset(&req, 0, sizeof(req));
	rc = read_request(&req, line, sizeof(line));
	if (rc == PS_EXIT_OK) {
		rc = op_open(&req, line, sizeof(line));
		ps_curl_unload();
	}
	ps_role_answer(line);
	return rc;
}
