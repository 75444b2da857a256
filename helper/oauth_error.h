/*
 * oauth_error.h: turn a token endpoint answer that is not a token into one line that names the
 * problem and what to do, and an exit code (PS_EXIT_*).
 */
#ifndef PS_OAUTH_ERROR_H
#define PS_OAUTH_ERROR_H

#include <stddef.h>

/*
 * status: HTTP status; content_type may be ""; body may be NULL; retry_after -1 when absent.
 * Examples of msg:
 *   "token endpoint refused the client (invalid_client: Invalid client secret): check client_id and the client secret file"
 *   "accounts server is rate limiting (HTTP 429): retry after 30 s"
 *   "accounts server error (HTTP 503): try again later"
 *   "token endpoint answered with a redirect (HTTP 302): check token_url; redirects are not followed"
 * Server-provided text is cut to printable ASCII and a bounded length.
 */
int ps_oauth_error_describe(long status, const char *content_type, const char *body, size_t len,
			    long retry_after, char *msg, size_t msglen);

#endif
