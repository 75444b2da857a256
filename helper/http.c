/*
 * http.c: one POST to the token endpoint over libcurl (see http.h). Owns the transfer policy
 * (schemes, TLS verification, redirects, proxies, limits) and turns curl's failures into one
 * line that names the server and what to do. It never logs the form, the credentials or the body.
 */
#include <config.h> /* autoconf; "config.h" could be taken for common/config.h */

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "helper/curl_load.h"
#include "helper/http.h"
#include "common/util.h"

/* Drop the transfer when fewer than PS_HTTP_LOW_SPEED bytes/s arrive for PS_HTTP_STALL_S s. */
#define PS_HTTP_STALL_S	   10L
#define PS_HTTP_LOW_SPEED  1L
#define PS_RETRY_AFTER_MAX 86400L /* a longer Retry-After is clamped to a day */
#define PS_USER_AGENT	   "pam_spotify/" PACKAGE_VERSION

/* What a transfer collects; the body buffer is allocated once at full size (see body_alloc). */
struct transfer {
	struct ps_http_response *resp;
	bool too_big;
};

/* The server as "host:port" for messages, e.g. "accounts.spotify.com:443" or "[::1]:8443". */
struct endpoint {
	char host[256];
	char hostport[300];
	bool loopback;
};

/*
 * Allocated at the cap once, never grown: realloc would leave copies of the token in freed
 * memory. The extra byte keeps the body NUL-terminated.
 */
static int body_alloc(struct ps_http_response *resp)
{
	resp->body = calloc(1, PS_HTTP_BODY_MAX + 1);
	return resp->body ? 0 : -1;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
	struct transfer *t = userp;
	struct ps_http_response *resp = t->resp;
	size_t n = size * nmemb;

	if (n > PS_HTTP_BODY_MAX - resp->len) {
		t->too_big = true;
		return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
	}
	memcpy(resp->body + resp->len, data, n);
	resp->len += n;
	resp->body[resp->len] = '\0';
	return n;
}

/* Header value after "Name:", without surrounding blanks; NULL when the name differs. */
static const char *header_value(const char *line, size_t len, const char *name, size_t *vlen)
{
	size_t nlen = strlen(name);
	const char *v, *end = line + len;

	if (len <= nlen || strncasecmp(line, name, nlen) != 0 || line[nlen] != ':')
		return NULL;
	for (v = line + nlen + 1; v < end && (*v == ' ' || *v == '\t'); v++)
		;
	while (end > v && isspace((unsigned char)end[-1]))
		end--;
	*vlen = (size_t)(end - v);
	return v;
}

/* Retry-After as delay-seconds, clamped to a day; an HTTP-date or junk counts as absent (-1). */
static long parse_retry_after(const char *v, size_t len)
{
	long secs = 0;
	size_t i;

	if (len == 0)
		return -1;
	for (i = 0; i < len; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		if (secs < PS_RETRY_AFTER_MAX)
			secs = secs * 10 + (v[i] - '0');
	}
	return secs < PS_RETRY_AFTER_MAX ? secs : PS_RETRY_AFTER_MAX;
}

static size_t header_cb(char *line, size_t size, size_t nmemb, void *userp)
{
	struct transfer *t = userp;
	struct ps_http_response *resp = t->resp;
	size_t n = size * nmemb, vlen;
	const char *v;

	if (n >= 5 && strncmp(line, "HTTP/", 5) == 0) {
		/* a new response (after 1xx): forget the previous one's headers */
		resp->content_type[0] = '\0';
		resp->retry_after = -1;
	} else if ((v = header_value(line, n, "Content-Type", &vlen))) {
		ps_sanitize_text(resp->content_type, sizeof(resp->content_type), v, vlen);
	} else if ((v = header_value(line, n, "Retry-After", &vlen))) {
		resp->retry_after = parse_retry_after(v, vlen);
	}
	return n;
}

/*
 * Parse url with curl's own parser and hand that parsed handle to the transfer (CURLOPT_CURLU),
 * so the host we judge (loopback or not) is exactly the host curl connects to.
 */
static int endpoint_parse(CURLU *u, const char *url, struct endpoint *ep, char *err, size_t errlen)
{
	char *host = NULL, *port = NULL;
	int rc = PS_EXIT_CONFIG;

	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK) {
		snprintf(err, errlen,
			 "token_url is not a valid URL: check token_url and accounts_url");
		goto out;
	}
	ps_strlcpy(ep->host, host, sizeof(ep->host));
	snprintf(ep->hostport, sizeof(ep->hostport), "%s:%s", host, port);
	ep->loopback = ps_host_is_loopback(host) && ps_url_host_is_loopback(url);
	rc = PS_EXIT_OK;
out:
	curl_free(host);
	curl_free(port);
	return rc;
}

/* HTTPS always; plain http only when both URL parsers agree the host is a loopback literal. */
static int scheme_check(const char *url, const struct endpoint *ep, char *err, size_t errlen)
{
	char why[128];

	if (ps_url_check(url, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "token_url refused: %s", why);
		return PS_EXIT_CONFIG;
	}
	if (strncmp(url, "https://", 8) != 0 && !ep->loopback) {
		snprintf(err, errlen,
			 "token_url refused: plain http:// is only allowed to a loopback "
			 "address; use https://");
		return PS_EXIT_CONFIG;
	}
	return PS_EXIT_OK;
}

/*
 * The module kills the helper `timeout` s after it started it, and the helper waits for the system
 * service's answer half a second less: end the transfer a second earlier (half a second for a
 * timeout of 1 s), so the clearer message of its own reaches the log instead of a kill.
 */
static long total_ms(const struct ps_config *cfg)
{
	long timeout = (long)cfg->timeout;

	return timeout > 1 ? timeout * 1000 - 1000 : 500;
}

/* The connect phase (TCP and the TLS handshake): connect_timeout, within the total. */
static long connect_ms(const struct ps_config *cfg)
{
	long ms = cfg->connect_timeout ? (long)cfg->connect_timeout * 1000 : total_ms(cfg);

	return ms < total_ms(cfg) ? ms : total_ms(cfg);
}

/* Seconds below PS_HTTP_LOW_SPEED bytes/s after which a transfer is dropped. */
static long stall_s(const struct ps_config *cfg)
{
	return (long)cfg->timeout < PS_HTTP_STALL_S ? (long)cfg->timeout : PS_HTTP_STALL_S;
}

/* Transfer policy: the security rules of the design brief, one option each. */
static int set_policy(CURL *c, const struct ps_config *cfg, const struct endpoint *ep)
{
	CURLcode e = CURLE_OK;

	e |= curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, ep->loopback ? "http,https" : "https");
	e |= curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "https");
	e |= curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	e |= curl_easy_setopt(c, CURLOPT_MAXREDIRS, 0L);
	e |= curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	e |= curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
	e |= curl_easy_setopt(c, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (cfg->ca_file[0])
		e |= curl_easy_setopt(c, CURLOPT_CAINFO, cfg->ca_file);
	/* an empty proxy and a "*" no-proxy list: http_proxy, HTTPS_PROXY, ALL_PROXY are ignored */
	e |= curl_easy_setopt(c, CURLOPT_PROXY, "");
	e |= curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	e |= curl_easy_setopt(c, CURLOPT_NETRC, (long)CURL_NETRC_IGNORED);
	e |= curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	e |= curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, connect_ms(cfg));
	e |= curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, total_ms(cfg));
	/*
	 * A stalled server (less than 1 byte/s for min(timeout, 10) s) is dropped before the total
	 * timeout; with the default timeout of 10 s the total timeout is the one that fires.
	 */
	e |= curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, PS_HTTP_LOW_SPEED);
	e |= curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, stall_s(cfg));
	/* refuse early when Content-Length announces more than the cap */
	e |= curl_easy_setopt(c, CURLOPT_MAXFILESIZE, (long)PS_HTTP_BODY_MAX);
	e |= curl_easy_setopt(c, CURLOPT_USERAGENT, PS_USER_AGENT);
	return e == CURLE_OK ? 0 : -1;
}

/*
 * RFC 6749 2.3.1: client_id and secret are form-urlencoded before Basic encoding. curl keeps its
 * own copies of both (and of the Authorization header) and frees them without zeroing: the
 * helper is non-dumpable and exits right after the request, which bounds that exposure.
 */
static int set_basic_auth(CURL *c, const char *user, const char *pass)
{
	char *u = curl_easy_escape(c, user, 0);
	char *p = curl_easy_escape(c, pass, 0);
	CURLcode e = CURLE_OK;

	if (!u || !p) {
		e = CURLE_OUT_OF_MEMORY;
	} else {
		e |= curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		e |= curl_easy_setopt(c, CURLOPT_USERNAME, u);
		e |= curl_easy_setopt(c, CURLOPT_PASSWORD, p);
	}
	if (p)
		explicit_bzero(p, strlen(p));
	curl_free(u);
	curl_free(p);
	return e == CURLE_OK ? 0 : -1;
}

/* The form is not copied (CURLOPT_POSTFIELDS): it stays in the caller's buffer, which it zeroes. */
static int set_request(CURL *c, CURLU *u, const char *form, struct curl_slist *headers,
		       struct transfer *t, char *errbuf)
{
	CURLcode e = CURLE_OK;

	e |= curl_easy_setopt(c, CURLOPT_CURLU, u);
	e |= curl_easy_setopt(c, CURLOPT_POSTFIELDS, form);
	e |= curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(form));
	e |= curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
	e |= curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
	e |= curl_easy_setopt(c, CURLOPT_WRITEDATA, t);
	e |= curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
	e |= curl_easy_setopt(c, CURLOPT_HEADERDATA, t);
	e |= curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	return e == CURLE_OK ? 0 : -1;
}

/* curl's own reason, one printable line; its generic text when the error buffer is empty. */
static void curl_reason(CURLcode rc, const char *errbuf, char *out, size_t outlen)
{
	const char *why = errbuf[0] ? errbuf : curl_easy_strerror(rc);
	size_t n = strlen(why);

	while (n && (why[n - 1] == '\n' || why[n - 1] == '.'))
		n--;
	ps_sanitize_text(out, outlen, why, n);
}

static bool tls_name_mismatch(const char *why)
{
	return strstr(why, "subject name") || strstr(why, "does not match") ||
	       strstr(why, "host name");
}

static int describe_tls(CURLcode rc, const struct ps_config *cfg, const struct endpoint *ep,
			const char *why, char *err, size_t errlen)
{
	if (rc == CURLE_SSL_CACERT_BADFILE) {
		snprintf(err, errlen,
			 "cannot use ca_file %s (%s): check that it exists and is a PEM "
			 "CA certificate",
			 cfg->ca_file[0] ? cfg->ca_file : "(system default)", why);
		return PS_EXIT_CONFIG;
	}
	if (rc == CURLE_PEER_FAILED_VERIFICATION && tls_name_mismatch(why)) {
		snprintf(err, errlen,
			 "TLS certificate of %s does not match its name (%s): check the "
			 "host in token_url",
			 ep->hostport, why);
		return PS_EXIT_NETWORK;
	}
	if (rc == CURLE_PEER_FAILED_VERIFICATION && strstr(why, "expired")) {
		snprintf(err, errlen,
			 "TLS certificate of %s has expired (%s): the server's "
			 "certificate must be renewed; check the system clock",
			 ep->hostport, why);
		return PS_EXIT_NETWORK;
	}
	if (rc == CURLE_PEER_FAILED_VERIFICATION) {
		snprintf(err, errlen,
			 "TLS certificate of %s not trusted (%s): set ca_file to the CA "
			 "that signed it",
			 ep->hostport, why);
		return PS_EXIT_NETWORK;
	}
	snprintf(err, errlen, "TLS handshake with %s failed (%s): check token_url and ca_file",
		 ep->hostport, why);
	return PS_EXIT_NETWORK;
}

/* Which limit ended the transfer: the connect phase (TCP, then TLS for https), the low-speed
 * limit (well before the total), or the total timeout. */
static int describe_timeout(CURL *c, const struct ps_config *cfg, const struct endpoint *ep,
			    char *err, size_t errlen)
{
	curl_off_t connected = 0, handshaken = 0, elapsed_us = 0;
	char *scheme = NULL;
	long status = 0;

	curl_easy_getinfo(c, CURLINFO_CONNECT_TIME_T, &connected);
	curl_easy_getinfo(c, CURLINFO_APPCONNECT_TIME_T, &handshaken);
	curl_easy_getinfo(c, CURLINFO_TOTAL_TIME_T, &elapsed_us);
	curl_easy_getinfo(c, CURLINFO_SCHEME, &scheme);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	if (connected == 0 || (scheme && strcasecmp(scheme, "https") == 0 && handshaken == 0))
		snprintf(err, errlen,
			 "cannot connect to accounts server %s within %ld s (timeout): "
			 "check accounts_url/token_url and the network, or raise "
			 "connect_timeout",
			 ep->hostport, (connect_ms(cfg) + 999) / 1000);
	else if (elapsed_us / 1000 < total_ms(cfg) - 250)
		snprintf(err, errlen,
			 "accounts server %s sent nothing for %ld s (stalled): try again later",
			 ep->hostport, stall_s(cfg));
	else if (status != 0) /* the status line came: the body is what trickled */
		snprintf(err, errlen,
			 "accounts server %s answered too slowly: the response was not "
			 "complete within %u s (timeout): try again later or raise timeout",
			 ep->hostport, cfg->timeout);
	else
		snprintf(err, errlen,
			 "accounts server %s did not answer within %u s (timeout): "
			 "try again later or raise timeout",
			 ep->hostport, cfg->timeout);
	return PS_EXIT_NETWORK;
}

/* One line for a failed transfer, and its exit code. */
static int describe_failure(CURL *c, CURLcode rc, const struct transfer *t,
			    const struct ps_config *cfg, const struct endpoint *ep,
			    const char *errbuf, char *err, size_t errlen)
{
	char why[CURL_ERROR_SIZE];

	curl_reason(rc, errbuf, why, sizeof(why));
	switch (rc) {
	case CURLE_WRITE_ERROR:
	case CURLE_FILESIZE_EXCEEDED:
		if (rc == CURLE_FILESIZE_EXCEEDED || t->too_big) {
			snprintf(err, errlen,
				 "response from %s larger than 64 KiB: check token_url",
				 ep->hostport);
			return PS_EXIT_NETWORK;
		}
		break;
	case CURLE_UNSUPPORTED_PROTOCOL:
		snprintf(err, errlen, "token_url refused (%s): use https://", why);
		return PS_EXIT_CONFIG;
	case CURLE_COULDNT_RESOLVE_HOST:
		snprintf(err, errlen,
			 "cannot resolve accounts server %s (%s): check accounts_url/"
			 "token_url and DNS",
			 ep->host, why);
		return PS_EXIT_NETWORK;
	case CURLE_COULDNT_CONNECT:
		snprintf(err, errlen,
			 "cannot connect to accounts server %s (%s): check "
			 "accounts_url/token_url and the network",
			 ep->hostport, why);
		return PS_EXIT_NETWORK;
	case CURLE_OPERATION_TIMEDOUT:
		return describe_timeout(c, cfg, ep, err, errlen);
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
		return describe_tls(rc, cfg, ep, why, err, errlen);
	default:
		break;
	}
	snprintf(err, errlen, "request to accounts server %s failed (%s): try again later",
		 ep->hostport, why);
	return PS_EXIT_NETWORK;
}

/* Run the prepared transfer and fill in resp, or describe the failure. */
static int perform(CURL *c, const struct ps_config *cfg, const struct endpoint *ep,
		   struct transfer *t, const char *errbuf, char *err, size_t errlen)
{
	CURLcode rc = curl_easy_perform(c);

	if (rc != CURLE_OK)
		return describe_failure(c, rc, t, cfg, ep, errbuf, err, errlen);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &t->resp->status);
	return PS_EXIT_OK;
}

int ps_http_post_form(const struct ps_config *cfg, const char *url, const char *form,
		      const char *basic_user, const char *basic_pass, struct ps_http_response *resp,
		      char *err, size_t errlen)
{
	char errbuf[CURL_ERROR_SIZE] = "";
	struct endpoint ep = {0};
	struct transfer t = {resp, false};
	struct curl_slist *headers = NULL, *h;
	CURLU *u;
	CURL *c;
	int rc = PS_EXIT_NETWORK;

	memset(resp, 0, sizeof(*resp));
	resp->retry_after = -1;
	if (ps_curl_load(err, errlen) < 0)
		return PS_EXIT_NETWORK;
	u = curl_url();
	c = curl_easy_init();
	snprintf(err, errlen, "cannot set up the HTTP request (out of memory?)");
	if (!u || !c || body_alloc(resp) < 0)
		goto out;
	rc = endpoint_parse(u, url, &ep, err, errlen);
	if (rc == PS_EXIT_OK)
		rc = scheme_check(url, &ep, err, errlen);
	if (rc != PS_EXIT_OK)
		goto out; /* refused before any connection */
	rc = PS_EXIT_NETWORK;
	h = curl_slist_append(NULL, "Accept: application/json");
	if (h)
		headers = curl_slist_append(h, "Expect:");
	if (!headers) {
		curl_slist_free_all(h);
		goto out;
	}
	if (set_policy(c, cfg, &ep) < 0 || set_request(c, u, form, headers, &t, errbuf) < 0 ||
	    (basic_user && set_basic_auth(c, basic_user, basic_pass ? basic_pass : "") < 0))
		goto out;
	rc = perform(c, cfg, &ep, &t, errbuf, err, errlen);
out:
	if (rc != PS_EXIT_OK)
		ps_http_response_clear(resp);
	curl_easy_cleanup(c);
	curl_slist_free_all(headers);
	curl_url_cleanup(u);
	return rc;
}

void ps_http_response_clear(struct ps_http_response *resp)
{
	if (resp->body)
		ps_free_secret(resp->body, resp->len + 1); /* nothing is written past len */
	resp->body = NULL;
	resp->len = 0;
}
