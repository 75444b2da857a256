/*
 * app_token.c: the host's app token (see app_token.h): what the system service answers, the
 * checks made before it is trusted, and the copy into a keyring.
 */
#include <config.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "helper/app_token.h"
#include "common/util.h"

/* Seconds the keyring may keep a token that expires at expires_at; 0 when it has expired. */
static unsigned keyring_timeout(long long expires_at)
{
	long long left = expires_at - (long long)time(NULL);

	if (left <= 0)
		return 0;
	if (left > 0x7fffffffLL)
		left = 0x7fffffffLL;
	return (unsigned)left - ps_keys_skew((unsigned long)left);
}

int ps_app_token_parse(struct ps_app_token *t, const struct ps_config *cfg, const char *info,
		       const char *token, size_t token_len)
{
	size_t n = strlen(info);

	memset(t, 0, sizeof(*t));
	if (n >= sizeof(t->info_json) || token_len >= sizeof(t->token))
		return -1;
	memcpy(t->info_json, info, n + 1);
	memcpy(t->token, token, token_len);
	t->token_len = token_len;
	if (ps_token_info_parse(&t->info, t->info_json, n) < 0 ||
	    !ps_keys_token_valid(t->token, t->token_len) ||
	    strcmp(t->info.flow, ps_flow_name(cfg->flow)) != 0 ||
	    strcmp(t->info.client_id, cfg->client_id) != 0) {
		ps_app_token_clear(t);
		return -1;
	}
	return 0;
}

bool ps_app_token_fresh(const struct ps_app_token *t, unsigned margin_s)
{
	return t->token_len && t->info.expires_at - (long long)time(NULL) > (long long)margin_s;
}

int ps_app_token_store(const struct ps_config *cfg, const struct ps_app_token *t, char *line,
		       size_t linelen)
{
	unsigned timeout_s = keyring_timeout(t->info.expires_at);
	int rc;

	if (timeout_s == 0) {
		ps_errf(line, linelen, "the app token has expired");
		return PS_EXIT_EXPIRED;
	}
	rc = ps_keys_store(cfg->keyring, t->token, t->token_len, t->info_json, timeout_s, line,
			   linelen);
	if (rc == PS_EXIT_OK)
		snprintf(line, linelen, "ok expires_in=%lld keyring=%s%s",
			 t->info.expires_at - (long long)time(NULL), ps_keyring_name(cfg->keyring),
			 cfg->flow == PS_FLOW_CLIENT_CREDENTIALS ? " app token" : "");
	return rc;
}

bool ps_app_token_same(const struct ps_app_token *a, const struct ps_app_token *b)
{
	return a->token_len == b->token_len && a->info.expires_at == b->info.expires_at &&
	       memcmp(a->token, b->token, a->token_len) == 0;
}

void ps_app_token_clear(struct ps_app_token *t)
{
	explicit_bzero(t, sizeof(*t));
}
