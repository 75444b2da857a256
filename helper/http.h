/*
 * http.h: one POST to the token endpoint over libcurl, with the security rules of the design
 * brief: HTTPS only with verification (plain http only to loopback literals), no redirects, no
 * proxy from the environment, connect/total/low-speed limits, body capped at PS_HTTP_BODY_MAX.
 */
#ifndef PS_HTTP_H
#define PS_HTTP_H

#include <stddef.h>

#include "common/config.h"

#define PS_HTTP_BODY_MAX (64 * 1024)

struct ps_http_response {
	long status;
	char content_type[128];
	long retry_after; /* seconds from Retry-After, -1 when absent */
	char *body;	  /* NUL-terminated; zeroed and freed by ps_http_response_clear */
	size_t len;
};

/*
 * POST form (application/x-www-form-urlencoded) to url. When basic_user is not NULL the request
 * carries HTTP Basic authentication. Returns PS_EXIT_OK with resp filled in (any HTTP status),
 * or PS_EXIT_NETWORK / PS_EXIT_CONFIG with a one-line reason in err.
 * Never logs or prints form, credentials or body: they hold secrets.
 */
int ps_http_post_form(const struct ps_config *cfg, const char *url, const char *form,
		      const char *basic_user, const char *basic_pass, struct ps_http_response *resp,
		      char *err, size_t errlen);

void ps_http_response_clear(struct ps_http_response *resp);

#endif
