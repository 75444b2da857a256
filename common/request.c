/*
 * request.c: format and parse the module->helper request (see request.h). The settings travel as
 * pam_spotify.conf lines and are parsed by the same setter, so the helper checks every value
 * again instead of trusting its input.
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <stdio.h>
#include <string.h>

#include "common/request.h"
#include "common/util.h"

int ps_request_format(const struct ps_config *cfg, enum ps_op op, char *buf, size_t buflen)
{
	struct ps_buf o = {.buf = buf, .cap = buflen};

	ps_buf_printf(&o, "%s %d\n", PS_REQUEST_MAGIC, PS_REQUEST_VERSION);
	ps_buf_printf(&o, "op = %s\n", op == PS_OP_OPEN ? "open" : "?");
	ps_buf_printf(&o, "flow = %s\n", ps_flow_name(cfg->flow));
	ps_buf_printf(&o, "client_id = %s\n", cfg->client_id);
	if (cfg->client_secret_file[0]) /* the path (not the secret): it names the app token */
		ps_buf_printf(&o, "client_secret_file = %s\n", cfg->client_secret_file);
	if (cfg->scopes[0])
		ps_buf_printf(&o, "scopes = %s\n", cfg->scopes);
	ps_buf_printf(&o, "accounts_url = %s\n", cfg->accounts_url);
	ps_buf_printf(&o, "token_url = %s\n", cfg->token_url);
	ps_buf_printf(&o, "authorize_url = %s\n", cfg->authorize_url);
	ps_buf_printf(&o, "redirect_uri = %s\n", cfg->redirect_uri);
	ps_buf_printf(&o, "enroll = %s\n", cfg->enroll == PS_ENROLL_PROMPT ? "prompt" : "never");
	ps_buf_printf(&o, "refresh_margin = %u\n", cfg->refresh_margin);
	ps_buf_printf(&o, "default_expires_in = %u\n", cfg->default_expires_in);
	ps_buf_printf(&o, "interactive = %s\n", cfg->interactive ? "yes" : "no");
	if (cfg->session_pid > 0)
		ps_buf_printf(&o, "session = %ld\n", cfg->session_pid);
	ps_buf_printf(&o, "app_user = %s\n", cfg->app_user);
	if (cfg->app_uid > 0)
		ps_buf_printf(&o, "app_uid = %ld\n", cfg->app_uid);
	if (cfg->service[0])
		ps_buf_printf(&o, "service = %s\n", cfg->service);
	ps_buf_printf(&o, "keyring = %s\n", ps_keyring_name(cfg->keyring));
	ps_buf_printf(&o, "timeout = %u\n", cfg->timeout);
	ps_buf_printf(&o, "connect_timeout = %u\n", cfg->connect_timeout);
	ps_buf_printf(&o, "remove_on_close = %s\n", cfg->remove_on_close ? "yes" : "no");
	if (cfg->ca_file[0])
		ps_buf_printf(&o, "ca_file = %s\n", cfg->ca_file);
	ps_buf_printf(&o, "end\n");
	if (o.full) {
		return -1;
	}
	return (int)o.len;
}

static int parse_header(const char *line, char *err, size_t errlen)
{
	char want[64];

	snprintf(want, sizeof(want), "%s %d", PS_REQUEST_MAGIC, PS_REQUEST_VERSION);
	if (strcmp(line, want) == 0)
		return 0;
	if (strncmp(line, PS_REQUEST_MAGIC " ", sizeof(PS_REQUEST_MAGIC)) == 0)
		ps_errf(err, errlen,
			"request version '%.16s' is not %d: the module and the helper "
			"come from different versions; reinstall pam_spotify",
			line + sizeof(PS_REQUEST_MAGIC), PS_REQUEST_VERSION);
	else
		snprintf(err, errlen,
			 "not a pam_spotify request: run by pam_spotify.so, not by hand");
	return -1;
}

static int parse_item(struct ps_request *req, char *line, char *err, size_t errlen)
{
	unsigned before = req->cfg.set;
	char *eq = strstr(line, " = ");
	const char *key, *value;
	char why[PS_ERR_MAX];

	if (!eq) {
		snprintf(err, errlen, "request line is not 'key = value'");
		return -1;
	}
	*eq = '\0';
	key = line;
	value = eq + 3;
	if (!strcmp(key, "op")) {
		if (req->op != (enum ps_op) - 1) {
			snprintf(err, errlen, "request op is repeated");
			return -1;
		}
		if (!strcmp(value, "open")) {
			req->op = PS_OP_OPEN;
		} else {
			snprintf(err, errlen,
				 "request op must be open (the keeper counts the "
				 "sessions, and a close goes to it)");
			return -1;
		}
		return 0;
	}
	if (!strcmp(key, "interactive")) {
		/* request only: whether the module's PAM conversation may prompt the user */
		if (strcmp(value, "yes") && strcmp(value, "no")) {
			snprintf(err, errlen, "request interactive must be yes or no");
			return -1;
		}
		req->cfg.interactive = !strcmp(value, "yes");
		return 0;
	}
	if (!strcmp(key, "session")) {
		/* request only: the process of the PAM session, for session counting */
		unsigned long pid;

		if (ps_parse_ulong(value, 1, 4194304, &pid) < 0) {
			snprintf(err, errlen, "request session must be a process ID");
			return -1;
		}
		req->cfg.session_pid = (long)pid;
		return 0;
	}
	if (!strcmp(key, "app_uid")) {
		/* request only: the system service's uid (its socket's peer credentials) */
		unsigned long uid;

		if (ps_parse_ulong(value, 1, 4294967294UL, &uid) < 0 || req->cfg.app_uid) {
			snprintf(err, errlen, "request app_uid must be a user ID other than 0");
			return -1;
		}
		req->cfg.app_uid = (long)uid;
		return 0;
	}
	if (!strcmp(key, "service")) {
		/* request only: the system service's socket, in RUNDIR */
		if (strncmp(value, PS_RUNDIR "/", sizeof(PS_RUNDIR)) != 0 || strstr(value, "/..") ||
		    ps_strlcpy(req->cfg.service, value, sizeof(req->cfg.service)) >=
			    sizeof(req->cfg.service) ||
		    req->cfg.service[sizeof(PS_RUNDIR)] == '\0') {
			snprintf(err, errlen, "request service must be a socket in %s", PS_RUNDIR);
			req->cfg.service[0] = '\0';
			return -1;
		}
		return 0;
	}
	if (ps_config_set(&req->cfg, key, value, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "request: %s", why);
		return -1;
	}
	if ((req->cfg.set & ~before) == 0) {
		snprintf(err, errlen, "request: duplicate key '%s'", key);
		return -1;
	}
	return 0;
}

int ps_request_parse(struct ps_request *req, const char *buf, size_t len, char *err, size_t errlen)
{
	char line[PATH_MAX + 64];
	unsigned lineno = 0;
	bool ended = false;
	size_t pos = 0;
	int rc = -1;

	memset(req, 0, sizeof(*req));
	ps_config_init(&req->cfg);
	req->op = (enum ps_op) - 1;
	if (memchr(buf, '\0', len)) {
		snprintf(err, errlen, "request contains a NUL byte");
		return -1;
	}
	while (pos < len && !ended) {
		const char *nl = memchr(buf + pos, '\n', len - pos);
		size_t n;

		if (!nl || (size_t)(nl - (buf + pos)) >= sizeof(line)) {
			snprintf(err, errlen, "request line %u is unterminated or too long",
				 lineno + 1);
			goto out;
		}
		n = (size_t)(nl - (buf + pos));
		memcpy(line, buf + pos, n);
		line[n] = '\0';
		pos += n + 1;
		if (lineno++ == 0) {
			if (parse_header(line, err, errlen) < 0)
				goto out;
		} else if (!strcmp(line, "end")) {
			ended = true;
		} else if (parse_item(req, line, err, errlen) < 0) {
			goto out;
		}
	}
	if (!ended || pos != len) {
		snprintf(err, errlen,
			 ended ? "request has data after 'end'" : "request is truncated");
		goto out;
	}
	if (req->op != PS_OP_OPEN) {
		snprintf(err, errlen, "request has no op");
		goto out;
	}
	rc = 0;
out:
	explicit_bzero(line, sizeof(line));
	return rc;
}
