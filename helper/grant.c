/*
 * grant.c: the token endpoint requests of every flow, one form builder and one POST, and the
 * keyring store of the result. Forms hold secrets (codes, verifiers, refresh tokens): zeroed.
 */
#include <config.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include "helper/authorize.h"
#include "helper/grant.h"
#include "helper/service.h"
#include "helper/http.h"
#include "helper/oauth_error.h"
#include "keyring/keys.h"
#include "keyring/token_info.h"
#include "common/util.h"

#define FORM_MAX    16384
#define QUOTE_PROBE 12 /* leading bytes of a credential that count as quoting it */

static long last_retry_after = -1;

long ps_grant_retry_after(void)
{
	return last_retry_after;
}

/* Append "&name=value" (or "name=value" first), the value percent-encoded. 0 or -1. */
static int form_add(struct ps_buf *f, const char *name, const char *value)
{
	char enc[3 * 4096 + 1]; /* the longest value: a refresh token */
	int rc = ps_url_encode(value, enc, sizeof(enc));

	if (rc >= 0)
		ps_buf_printf(f, "%s%s=%s", f->len ? "&" : "", name, enc);
	explicit_bzero(enc, sizeof(enc));
	return rc < 0 || f->full ? -1 : 0;
}

/* line holds cred, or its first QUOTE_PROBE bytes (a quote may be cut short). */
static bool quotes(const char *line, const char *cred)
{
	size_t n = cred ? strlen(cred) : 0;

	if (n > QUOTE_PROBE)
		n = QUOTE_PROBE;
	return n && memmem(line, strlen(line), cred, n);
}

/*
 * A broken or hostile server may quote back what it was sent (error_description): such a line
 * would carry the client secret, a refresh token, a code or a verifier into the module's log,
 * the keeper's syslog or a terminal. It is withheld whole.
 */
static void withhold_quoted(char *line, size_t linelen, const char *secret,
			    const char *const *creds)
{
	bool quoted = quotes(line, secret);

	for (; *creds && !quoted; creds++)
		quoted = quotes(line, *creds);
	if (quoted)
		snprintf(line, linelen,
			 "the accounts server's error message quoted a credential of the "
			 "request back and was withheld: check token_url");
}

/* A token without expires_in lives default_expires_in; one over a week, a week: a notice each. */
static void expires_settle(const struct ps_config *cfg, struct ps_token_response *tok)
{
	if (!tok->expires_in) {
		tok->expires_in = cfg->default_expires_in;
		syslog(LOG_NOTICE,
		       "the token response from %s has no expires_in: the token is taken to live "
		       "default_expires_in = %u s",
		       cfg->token_url, cfg->default_expires_in);
	} else if (tok->expires_capped) {
		syslog(LOG_NOTICE,
		       "the token response from %s has expires_in over a week: the token is taken "
		       "to live a week (%ld s)",
		       cfg->token_url, tok->expires_in);
	}
}

/*
 * POST the form. A public client (pkce) names itself in the form; a confidential one
 * authenticates with Basic: with the secret when we hold it (the system service), else through
 * the system service, which adds it (authorization_code: the secret never reaches a user's side).
 * creds: the secret values in the form (NULL-terminated), never to be quoted in line.
 */
static int post(const struct ps_config *cfg, const char *secret, const char *const *creds,
		struct ps_buf *form, struct ps_token_response *tok, char *line, size_t linelen)
{
	bool via_service = !secret && cfg->flow != PS_FLOW_PKCE;
	struct ps_http_response resp;
	int rc;

	memset(tok, 0, sizeof(*tok));
	if (!secret && !via_service && form_add(form, "client_id", cfg->client_id) < 0)
		rc = -1;
	else
		rc = form->full ? -1 : 0;
	if (rc < 0) {
		snprintf(line, linelen, "token request too large (scopes or client_id too long)");
		return PS_EXIT_CONFIG;
	}
	if (via_service)
		rc = ps_service_post(cfg, form->buf, &resp, line, linelen);
	else
		rc = ps_http_post_form(cfg, cfg->token_url, form->buf,
				       secret ? cfg->client_id : NULL, secret, &resp, line,
				       linelen);
	last_retry_after = -1;
	if (rc != PS_EXIT_OK) {
		withhold_quoted(line, linelen, secret, creds);
		return rc;
	}
	last_retry_after = resp.status == 429 || resp.status == 503 ? resp.retry_after : -1;
	if (resp.status != 200)
		rc = ps_oauth_error_describe(resp.status, resp.content_type, resp.body, resp.len,
					     resp.retry_after, line, linelen);
	else if (ps_token_response_parse(resp.body, resp.len, tok, line, linelen) < 0)
		rc = PS_EXIT_NETWORK;
	else
		expires_settle(cfg, tok);
	ps_http_response_clear(&resp);
	if (rc != PS_EXIT_OK)
		withhold_quoted(line, linelen, secret, creds);
	return rc;
}

int ps_grant_client_credentials(const struct ps_config *cfg, const char *secret,
				struct ps_token_response *tok, char *line, size_t linelen)
{
	const char *const creds[] = {NULL};
	char buf[FORM_MAX];
	struct ps_buf form = {.buf = buf, .cap = sizeof(buf)};
	int rc = 0;

	rc |= form_add(&form, "grant_type", "client_credentials");
	if (cfg->scopes[0])
		rc |= form_add(&form, "scope", cfg->scopes);
	if (rc)
		form.full = true;
	rc = post(cfg, secret, creds, &form, tok, line, linelen);
	explicit_bzero(buf, sizeof(buf));
	return rc;
}

int ps_grant_code(const struct ps_config *cfg, const char *code, const char *redirect_uri,
		  const char *verifier, struct ps_token_response *tok, char *line, size_t linelen)
{
	const char *const creds[] = {code, verifier, NULL};
	char buf[FORM_MAX];
	struct ps_buf form = {.buf = buf, .cap = sizeof(buf)};
	int rc = 0;

	rc |= form_add(&form, "grant_type", "authorization_code");
	rc |= form_add(&form, "code", code);
	rc |= form_add(&form, "redirect_uri", redirect_uri);
	rc |= form_add(&form, "code_verifier", verifier);
	if (rc)
		form.full = true;
	rc = post(cfg, NULL, creds, &form, tok, line, linelen);
	explicit_bzero(buf, sizeof(buf));
	return rc;
}

int ps_grant_refresh(const struct ps_config *cfg, const char *refresh_token,
		     struct ps_token_response *tok, char *line, size_t linelen)
{
	const char *const creds[] = {refresh_token, NULL};
	char buf[FORM_MAX];
	struct ps_buf form = {.buf = buf, .cap = sizeof(buf)};
	int rc = 0;

	rc |= form_add(&form, "grant_type", "refresh_token");
	rc |= form_add(&form, "refresh_token", refresh_token);
	if (rc)
		form.full = true;
	rc = post(cfg, NULL, creds, &form, tok, line, linelen);
	explicit_bzero(buf, sizeof(buf));
	return rc;
}

int ps_grant_info(const struct ps_config *cfg, const struct ps_token_response *tok, time_t started,
		  char *json, size_t jsonlen, char *line, size_t linelen)
{
	struct ps_token_info info;

	memset(&info, 0, sizeof(info));
	ps_strlcpy(info.token_type, tok->token_type, sizeof(info.token_type));
	ps_strlcpy(info.scope, tok->scope[0] ? tok->scope : cfg->scopes, sizeof(info.scope));
	info.expires_at = (long long)started + tok->expires_in;
	ps_strlcpy(info.flow, ps_flow_name(cfg->flow), sizeof(info.flow));
	ps_strlcpy(info.client_id, cfg->client_id, sizeof(info.client_id));
	if (ps_token_info_format(&info, json, jsonlen) < 0) {
		snprintf(line, linelen,
			 "cannot describe the token for %s (scope or client_id too long)",
			 PS_KEY_INFO);
		return PS_EXIT_CONFIG;
	}
	return PS_EXIT_OK;
}

int ps_grant_store(const struct ps_config *cfg, const struct ps_token_response *tok, time_t started,
		   char *line, size_t linelen)
{
	unsigned timeout_s =
		(unsigned)tok->expires_in - ps_keys_skew((unsigned long)tok->expires_in);
	char info_json[PS_TOKEN_INFO_MAX];
	int rc;

	rc = ps_grant_info(cfg, tok, started, info_json, sizeof(info_json), line, linelen);
	if (rc == PS_EXIT_OK)
		rc = ps_keys_store(cfg->keyring, tok->access_token, tok->access_token_len,
				   info_json, timeout_s, line, linelen);
	if (rc == PS_EXIT_OK)
		snprintf(line, linelen, "ok expires_in=%ld keyring=%s", tok->expires_in,
			 ps_keyring_name(cfg->keyring));
	return rc;
}
