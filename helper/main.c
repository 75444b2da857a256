/*
 * main.c: pam_spotify_helper, the unprivileged helper that pam_spotify.so runs as the user.
 * Owns the process (hardening, modes, the one answer line) and the client credentials flow:
 * request on stdin -> token endpoint -> keyring. In --pam mode the answer is exactly one line on
 * stdout (the module logs it) and the exit code is a PS_EXIT_* value; nothing goes to stderr.
 * No secret, token or response body is ever printed.
 */
#include <config.h> /* autoconf; "config.h" could be taken for pam/config.h */

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "helper/http.h"
#include "helper/oauth_error.h"
#include "helper/token_response.h"
#include "keyring/keys.h"
#include "keyring/token_info.h"
#include "pam/request.h"
#include "pam/util.h"

#define PROG	   "pam_spotify_helper"
#define ANSWER_MAX PS_ERR_MAX /* the answer line; the module reads fewer than 512 bytes */
#define FORM_MAX   (64 + 3 * PS_SCOPES_MAX)

/* Non-dumpable, no core files, private file modes: before anything secret is in memory. */
static int harden(void)
{
	struct rlimit none = {0, 0};

	umask(077);
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0 || setrlimit(RLIMIT_CORE, &none) < 0)
		return -1;
	/* with CURLOPT_NOSIGNAL curl does not ignore SIGPIPE itself; a dead peer must not kill us */
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

static bool running_as_root(void)
{
	return getuid() == 0 || geteuid() == 0;
}

/* The answer: one line, written at once, never longer than the module reads. */
static void answer(const char *line)
{
	char out[ANSWER_MAX];
	size_t n = ps_strlcpy(out, line, sizeof(out) - 1);

	if (n > sizeof(out) - 2)
		n = sizeof(out) - 2;
	out[n] = '\n';
	ps_write_all(STDOUT_FILENO, out, n + 1);
}

/* A server could quote the client secret back in an error text: never pass it on. */
static void redact_secret(char *line, size_t linelen, const struct ps_request *req)
{
	if (req->secret_len && strstr(line, req->secret))
		snprintf(line, linelen,
			 "the accounts server's error message quoted the client "
			 "secret and was withheld; check token_url");
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

/* Append s to the form, percent-encoding all but RFC 3986 unreserved characters. */
static int form_append_encoded(char *form, size_t formlen, size_t *pos, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			     (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
		if (*pos + 4 > formlen)
			return -1;
		if (plain) {
			form[(*pos)++] = (char)c;
		} else {
			form[(*pos)++] = '%';
			form[(*pos)++] = hex[c >> 4];
			form[(*pos)++] = hex[c & 15];
		}
	}
	form[*pos] = '\0';
	return 0;
}

/* grant_type=client_credentials[&scope=...] */
static int form_client_credentials(const struct ps_config *cfg, char *form, size_t formlen)
{
	size_t pos = ps_strlcpy(form, "grant_type=client_credentials", formlen);

	if (pos >= formlen)
		return -1;
	if (!cfg->scopes[0])
		return 0;
	pos += ps_strlcpy(form + pos, "&scope=", formlen - pos);
	if (pos >= formlen)
		return -1;
	return form_append_encoded(form, formlen, &pos, cfg->scopes);
}

/* Put the token and its info into the keyring; the answer line on success. */
static int store_token(const struct ps_config *cfg, const struct ps_token_response *tok,
		       time_t started, char *line, size_t linelen)
{
	struct ps_token_info info;
	char info_json[PS_TOKEN_INFO_MAX];
	unsigned timeout_s =
		(unsigned)tok->expires_in - ps_keys_skew((unsigned long)tok->expires_in);
	int rc;

	memset(&info, 0, sizeof(info));
	ps_strlcpy(info.token_type, tok->token_type, sizeof(info.token_type));
	ps_strlcpy(info.scope, tok->scope[0] ? tok->scope : cfg->scopes, sizeof(info.scope));
	info.expires_at = (long long)started + tok->expires_in;
	ps_strlcpy(info.flow, ps_flow_name(cfg->flow), sizeof(info.flow));
	ps_strlcpy(info.client_id, cfg->client_id, sizeof(info.client_id));
	if (ps_token_info_format(&info, info_json, sizeof(info_json)) < 0) {
		snprintf(line, linelen,
			 "cannot describe the token for %s (scope or client_id too "
			 "long)",
			 PS_KEY_INFO);
		return PS_EXIT_CONFIG;
	}
	rc = ps_keys_store(cfg->keyring, tok->access_token, tok->access_token_len, info_json,
			   timeout_s, line, linelen);
	if (rc == PS_EXIT_OK)
		snprintf(line, linelen, "ok expires_in=%ld keyring=%s", tok->expires_in,
			 ps_keyring_name(cfg->keyring));
	return rc;
}

/* Turn the token endpoint's answer into a stored token, or into the reason it is not one. */
static int handle_answer(const struct ps_config *cfg, const struct ps_http_response *resp,
			 time_t started, char *line, size_t linelen)
{
	struct ps_token_response tok;
	int rc;

	if (resp->status != 200)
		return ps_oauth_error_describe(resp->status, resp->content_type, resp->body,
					       resp->len, resp->retry_after, line, linelen);
	if (ps_token_response_parse(resp->body, resp->len, &tok, line, linelen) < 0)
		return PS_EXIT_NETWORK;
	rc = store_token(cfg, &tok, started, line, linelen);
	ps_token_response_clear(&tok);
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
	if (!req->secret_len) {
		snprintf(line, linelen, "request has no client secret: check client_secret_file");
		return PS_EXIT_CONFIG;
	}
	return PS_EXIT_OK;
}

/* op open, flow client_credentials: POST with Basic auth, parse, store. */
static int op_open_client_credentials(const struct ps_request *req, char *line, size_t linelen)
{
	const struct ps_config *cfg = &req->cfg;
	struct ps_http_response resp;
	char form[FORM_MAX];
	time_t started = time(NULL);
	int rc = check_open_request(req, line, linelen);

	if (rc != PS_EXIT_OK)
		return rc;
	if (form_client_credentials(cfg, form, sizeof(form)) < 0) {
		snprintf(line, linelen, "scopes are too long for the token request");
		return PS_EXIT_CONFIG;
	}
	rc = ps_http_post_form(cfg, cfg->token_url, form, cfg->client_id, req->secret, &resp, line,
			       linelen);
	if (rc == PS_EXIT_OK) {
		rc = handle_answer(cfg, &resp, started, line, linelen);
		ps_http_response_clear(&resp);
	}
	explicit_bzero(form, sizeof(form));
	return rc;
}

static int op_open(const struct ps_request *req, char *line, size_t linelen)
{
	if (req->cfg.flow != PS_FLOW_CLIENT_CREDENTIALS) {
		snprintf(line, linelen, "flow %s is not supported yet",
			 ps_flow_name(req->cfg.flow));
		return PS_EXIT_NO_TOKEN;
	}
	return op_open_client_credentials(req, line, linelen);
}

static int op_close(const struct ps_request *req, char *line, size_t linelen)
{
	int rc = ps_keys_remove(req->cfg.keyring, line, linelen);

	if (rc == PS_EXIT_OK)
		snprintf(line, linelen, "ok removed");
	return rc;
}

/* --pam: one request on stdin, one answer line on stdout. */
static int run_pam(void)
{
	struct ps_request req;
	char line[ANSWER_MAX];
	int rc;

	memset(&req, 0, sizeof(req));
	rc = read_request(&req, line, sizeof(line));
	if (rc == PS_EXIT_OK && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(line, sizeof(line), "cannot initialise libcurl");
		rc = PS_EXIT_NETWORK;
	} else if (rc == PS_EXIT_OK) {
		rc = req.op == PS_OP_OPEN ? op_open(&req, line, sizeof(line))
					  : op_close(&req, line, sizeof(line));
		curl_global_cleanup();
	}
	if (rc != PS_EXIT_OK)
		redact_secret(line, sizeof(line), &req);
	ps_request_clear(&req);
	answer(line);
	return rc;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: " PROG " --pam | --version | --help\n"
		"\n"
		"The helper of pam_spotify.so: run by the PAM module as the logging-in user, it\n"
		"reads a request on stdin, obtains a Spotify access token and stores it in the\n"
		"kernel keyring. It is not meant to be run by hand; see pam_spotify_helper(8).\n"
		"\n"
		"  --pam      serve one request from pam_spotify.so on stdin\n"
		"  --version  print the version\n"
		"  --help     print this help\n");
}

int main(int argc, char **argv)
{
	bool pam_mode = argc == 2 && strcmp(argv[1], "--pam") == 0;

	if (harden() < 0) {
		answer(PROG ": cannot make the process non-dumpable");
		return PS_EXIT_CONFIG;
	}
	if (argc == 2 && strcmp(argv[1], "--version") == 0) {
		printf(PROG " " PACKAGE_VERSION "\n");
		return PS_EXIT_OK;
	}
	if (argc == 2 && strcmp(argv[1], "--help") == 0) {
		usage(stdout);
		return PS_EXIT_OK;
	}
	if (!pam_mode) {
		usage(stderr);
		return PS_EXIT_USAGE;
	}
	if (running_as_root()) {
		answer(PROG ": refusing to run as root");
		return PS_EXIT_CONFIG;
	}
	return run_pam();
}
