/*
 * service_client.c: a user's side of the system service (see service.h): the helper and the
 * keeper ask it for the host's app token, and post authorization_code requests through it. The
 * peer must be the service (SO_PEERCRED), every wait ends by its deadline.
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helper/service.h"
#include "common/frame.h"
#include "common/paths.h"
#include "common/util.h"

/* Connect to cfg's service and check it is the app user's. The fd, or -1 with line. */
static int client_connect(const struct ps_config *cfg, char *line, size_t linelen)
{
	uid_t uid;
	int fd;

	if (!cfg->service[0] || cfg->app_uid <= 0) {
		ps_errf(line, linelen,
			"the request names no system service: the module and the helper come from "
			"different versions; reinstall pam_spotify");
		return -1;
	}
	fd = ps_frame_connect(cfg->service);
	if (fd < 0) {
		ps_errf(line, linelen,
			"the system service at %s does not answer (%s): log in again, or start "
			"pam_spotify.socket",
			cfg->service, strerror(errno));
		return -1;
	}
	/* the service's uid; root's when systemd made the socket (listen() sets the credentials):
	 * RUNDIR is root's, so nobody else can have put a socket there */
	if (ps_frame_peer_uid(fd, &uid, NULL) < 0 || (uid != (uid_t)cfg->app_uid && uid != 0)) {
		ps_errf(line, linelen, "refusing %s: it is not the system service (uid %u)",
			cfg->service, (unsigned)uid);
		close(fd);
		return -1;
	}
	return fd;
}

/* Send msg (head, then body), receive the answer into *ans (malloc'd, freed by the caller). */
static int client_exchange(const struct ps_config *cfg, const char *head, size_t hlen,
			   const char *body, size_t blen, long long deadline, char **ans,
			   size_t *anslen, char *line, size_t linelen)
{
	char *out = malloc(hlen + blen);
	int fd = -1, rc;

	*ans = malloc(PS_FRAME_MAX + 1);
	if (!out || !*ans) {
		free(out);
		ps_errf(line, linelen, "out of memory");
		return PS_EXIT_NETWORK;
	}
	memcpy(out, head, hlen);
	if (blen)
		memcpy(out + hlen, body, blen);
	fd = client_connect(cfg, line, linelen);
	if (fd < 0) {
		ps_free_secret(out, hlen + blen);
		return PS_EXIT_NETWORK;
	}
	if (ps_msg_exchange(fd, out, hlen + blen, -1, deadline, *ans, PS_FRAME_MAX, anslen) < 0) {
		if (errno == ETIMEDOUT)
			ps_errf(line, linelen,
				"the accounts server at %s did not answer within %u s (through the "
				"system service)",
				cfg->token_url, cfg->timeout);
		else
			ps_errf(line, linelen, "the system service at %s did not answer: %s",
				cfg->service, strerror(errno));
		rc = PS_EXIT_NETWORK;
	} else {
		rc = ps_msg_status(*ans, *anslen, "the system service", line, linelen);
	}
	close(fd);
	ps_free_secret(out, hlen + blen);
	return rc;
}

/* The header every request of a user's side starts with. */
static void client_head(const struct ps_config *cfg, const char *op, struct ps_buf *b)
{
	char name[PS_SERVICE_NAME_MAX];

	ps_service_name(cfg, "", name, sizeof(name));
	ps_msg_add(b, "op", op);
	ps_msg_add(b, "service", name);
	ps_msg_end(b);
}

int ps_service_app_token(const struct ps_config *cfg, long long deadline, struct ps_app_token *t,
			 long *retry_s, char *line, size_t linelen)
{
	char head[256], info[PS_TOKEN_INFO_MAX + 1], num[24], *ans = NULL;
	struct ps_buf b = {.buf = head, .cap = sizeof(head)};
	const char *token;
	size_t len = 0, tlen = 0;
	int rc;

	memset(t, 0, sizeof(*t));
	*retry_s = -1;
	client_head(cfg, "token", &b);
	rc = client_exchange(cfg, head, b.len, NULL, 0, deadline, &ans, &len, line, linelen);
	if (ans && len && ps_msg_get(ans, len, "retry_after", num, sizeof(num)) == 0)
		*retry_s = strtol(num, NULL, 10);
	if (rc == PS_EXIT_OK) {
		token = ps_msg_body(ans, len, &tlen);
		if (ps_msg_get(ans, len, "info", info, sizeof(info)) < 0 || !token ||
		    ps_app_token_parse(t, cfg, info, token, tlen) < 0) {
			ps_errf(line, linelen,
				"refusing the system service's app token: malformed "
				"or another client's");
			rc = PS_EXIT_NETWORK;
		} else if (!ps_app_token_fresh(t, 0)) {
			ps_errf(line, linelen, "the system service's app token has expired");
			ps_app_token_clear(t);
			rc = PS_EXIT_NETWORK;
		} else if (ps_msg_get(ans, len, "note", line, linelen) < 0) {
			line[0] = '\0';
		}
	}
	if (ans)
		ps_free_secret(ans, PS_FRAME_MAX + 1);
	return rc;
}

int ps_service_post(const struct ps_config *cfg, const char *form, struct ps_http_response *resp,
		    char *line, size_t linelen)
{
	/* the service's own request is bounded by its timeout: wait for it, and a little more */
	long long deadline = ps_mono_ms() + (long long)cfg->timeout * 1000 + 2000;
	char head[256], num[32], *ans = NULL;
	struct ps_buf b = {.buf = head, .cap = sizeof(head)};
	unsigned long status;
	const char *body;
	size_t len = 0, blen = 0;
	int rc;

	memset(resp, 0, sizeof(*resp));
	resp->retry_after = -1;
	client_head(cfg, "grant", &b);
	rc = client_exchange(cfg, head, b.len, form, strlen(form), deadline, &ans, &len, line,
			     linelen);
	if (rc == PS_EXIT_OK) {
		body = ps_msg_body(ans, len, &blen);
		if (!body || ps_msg_get(ans, len, "http", num, sizeof(num)) < 0 ||
		    ps_parse_ulong(num, 100, 599, &status) < 0 ||
		    ps_msg_get(ans, len, "content_type", resp->content_type,
			       sizeof(resp->content_type)) < 0 ||
		    ps_msg_get(ans, len, "retry_after", num, sizeof(num)) < 0 ||
		    !(resp->body = malloc(blen + 1))) {
			ps_errf(line, linelen, "the system service's answer is malformed");
			rc = PS_EXIT_NETWORK;
		} else {
			resp->status = (long)status;
			resp->retry_after = strcmp(num, "-1") ? strtol(num, NULL, 10) : -1;
			memcpy(resp->body, body, blen);
			resp->body[blen] = '\0';
			resp->len = blen;
		}
	}
	if (ans)
		ps_free_secret(ans, PS_FRAME_MAX + 1);
	return rc;
}
