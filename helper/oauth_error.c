/*
 * oauth_error.c: one line and an exit code for a token endpoint answer that is not a token (see
 * oauth_error.h). Owns the mapping from HTTP status and RFC 6749 5.2 error codes to advice. Only
 * the error code and its description are ever quoted from the server, sanitized and bounded;
 * never the body.
 */
#include <config.h> /* autoconf; "config.h" could be taken for common/config.h */

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "helper/oauth_error.h"
#include "helper/token_response.h"
#include "common/util.h"

#define PS_ERROR_BODY_MAX (64 * 1024)
#define PS_ERROR_TEXT_MAX 151 /* server text quoted in a message, with the NUL */

/* What an error body said: {"error":"code","error_description":"text"} or Spotify's
 * {"error":{"status":N,"message":"text"}}. Empty strings when absent. */
struct oauth_body {
	char code[48];
	char text[PS_ERROR_TEXT_MAX];
};

/* What to say for one RFC 6749 error code. */
struct oauth_advice {
	const char *code;
	int exit_code;
	const char *what;
	const char *todo;
};

static const struct oauth_advice advice[] = {
	{"invalid_client", PS_EXIT_CONFIG, "token endpoint refused the client",
	 "check client_id and the client secret file"},
	{"invalid_grant", PS_EXIT_REAUTH, "token endpoint refused the grant",
	 "re-authorize with spotify-token login"},
	{"invalid_request", PS_EXIT_CONFIG, "token endpoint refused the request",
	 "check token_url, client_id and flow"},
	{"unauthorized_client", PS_EXIT_CONFIG, "the client may not use this grant",
	 "enable the grant type for this app in the Spotify developer dashboard"},
	{"unsupported_grant_type", PS_EXIT_CONFIG, "token endpoint does not support this grant",
	 "check flow and token_url"},
	{"invalid_scope", PS_EXIT_CONFIG, "token endpoint refused the scopes", "check scopes"},
	{"server_error", PS_EXIT_NETWORK, "accounts server error", "try again later"},
	{"temporarily_unavailable", PS_EXIT_NETWORK, "accounts server is unavailable",
	 "try again later"},
};

#define NADVICE (sizeof(advice) / sizeof(advice[0]))

static void copy_string_member(struct json_object *obj, const char *name, char *out, size_t outlen)
{
	struct json_object *v;

	if (json_object_object_get_ex(obj, name, &v) && json_object_is_type(v, json_type_string))
		ps_sanitize_text(out, outlen, json_object_get_string(v),
				 (size_t)json_object_get_string_len(v));
}

/* Strict, bounded JSON parse of a whole body into an object; NULL when it is anything else. */
static struct json_object *json_load(const char *body, size_t len)
{
	struct json_tokener *tok;
	struct json_object *obj;
	size_t end;

	if (!body || len == 0 || len > PS_ERROR_BODY_MAX || memchr(body, '\0', len))
		return NULL;
	tok = json_tokener_new_ex(PS_JSON_DEPTH);
	if (!tok)
		return NULL;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS |
					    JSON_TOKENER_VALIDATE_UTF8);
	obj = json_tokener_parse_ex(tok, body, (int)len);
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	while (obj && end < len && strchr(" \t\r\n", body[end]))
		end++;
	if (obj && (end < len || !json_object_is_type(obj, json_type_object))) {
		json_object_put(obj);
		obj = NULL;
	}
	return obj;
}

/* Read the error members of body, if it is a JSON error document; leaves eb empty otherwise. */
static void oauth_body_parse(const char *body, size_t len, struct oauth_body *eb)
{
	struct json_object *root = json_load(body, len), *err;

	eb->code[0] = '\0';
	eb->text[0] = '\0';
	if (!root)
		return;
	if (json_object_object_get_ex(root, "error", &err)) {
		if (json_object_is_type(err, json_type_string)) {
			copy_string_member(root, "error", eb->code, sizeof(eb->code));
			copy_string_member(root, "error_description", eb->text, sizeof(eb->text));
		} else if (json_object_is_type(err, json_type_object)) {
			copy_string_member(err, "message", eb->text, sizeof(eb->text));
		}
	}
	json_object_put(root);
}

/* The media type without parameters, printable and short; "no content type" when absent. */
static void media_type(const char *content_type, char *out, size_t outlen)
{
	size_t n;

	if (!content_type || !*content_type) {
		ps_strlcpy(out, "no content type", outlen);
		return;
	}
	n = strcspn(content_type, "; ");
	ps_sanitize_text(out, outlen, content_type, n);
}

/* ", code: text", ", code", ", text" or "" for quoting inside parentheses. */
static void quote_server(const struct oauth_body *eb, char *out, size_t outlen)
{
	const char *sep = eb->code[0] && eb->text[0] ? ": " : "";

	if (eb->code[0] || eb->text[0])
		snprintf(out, outlen, ", %s%s%s", eb->code, sep, eb->text);
	else
		out[0] = '\0';
}

static int describe_redirect(long status, char *msg, size_t msglen)
{
	snprintf(msg, msglen,
		 "token endpoint answered with a redirect (HTTP %ld): check token_url; "
		 "redirects are not followed",
		 status);
	return PS_EXIT_CONFIG;
}

/* 429, and 5xx: the server is there but cannot answer now. */
static int describe_busy(long status, const struct oauth_body *eb, long retry_after, char *msg,
			 size_t msglen)
{
	char quoted[PS_ERROR_TEXT_MAX + 64], when[48];

	quote_server(eb, quoted, sizeof(quoted));
	if (retry_after >= 0)
		snprintf(when, sizeof(when), "retry after %ld s", retry_after);
	else
		snprintf(when, sizeof(when), "try again later");
	if (status == 429)
		snprintf(msg, msglen, "accounts server is rate limiting (HTTP 429%s): %s", quoted,
			 when);
	else
		snprintf(msg, msglen, "accounts server error (HTTP %ld%s): %s", status, quoted,
			 when);
	return PS_EXIT_NETWORK;
}

/* An RFC 6749 5.2 error code, known or not. */
static int describe_oauth(long status, const struct oauth_body *eb, char *msg, size_t msglen)
{
	const char *sep = eb->text[0] ? ": " : "";
	size_t i;

	for (i = 0; i < NADVICE; i++) {
		if (strcmp(eb->code, advice[i].code) == 0) {
			snprintf(msg, msglen, "%s (%s%s%s): %s", advice[i].what, eb->code, sep,
				 eb->text, advice[i].todo);
			return advice[i].exit_code;
		}
	}
	snprintf(msg, msglen,
		 "token endpoint error (HTTP %ld, %s%s%s): check the configuration or "
		 "try again later",
		 status, eb->code, sep, eb->text);
	return PS_EXIT_NETWORK;
}

/* No OAuth error code: judge by the status alone. */
static int describe_other(long status, const char *content_type, const struct oauth_body *eb,
			  char *msg, size_t msglen)
{
	char mt[48], quoted[PS_ERROR_TEXT_MAX + 64];

	media_type(content_type, mt, sizeof(mt));
	quote_server(eb, quoted, sizeof(quoted));
	if (status == 401 || status == 403) {
		snprintf(msg, msglen,
			 "token endpoint refused access (HTTP %ld, %s%s) without an "
			 "OAuth error: check client_id, the client secret file and "
			 "token_url",
			 status, mt, quoted);
		return PS_EXIT_CONFIG;
	}
	snprintf(msg, msglen, "unexpected answer (HTTP %ld, %s%s): check token_url", status, mt,
		 quoted);
	return status >= 400 && status < 500 ? PS_EXIT_CONFIG : PS_EXIT_NETWORK;
}

int ps_oauth_error_describe(long status, const char *content_type, const char *body, size_t len,
			    long retry_after, char *msg, size_t msglen)
{
	struct oauth_body eb;

	if (status >= 300 && status < 400)
		return describe_redirect(status, msg, msglen);
	oauth_body_parse(body, len, &eb);
	if (status == 429 || (status >= 500 && status < 600))
		return describe_busy(status, &eb, retry_after, msg, msglen);
	if (eb.code[0])
		return describe_oauth(status, &eb, msg, msglen);
	return describe_other(status, content_type, &eb, msg, msglen);
}
