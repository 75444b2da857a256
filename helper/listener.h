/*
 * listener.h: the loopback redirect listener of the authorization code flow. It binds the
 * loopback literal of redirect_uri (127.0.0.1 or [::1]) on the port redirect_uri names, or an
 * ephemeral one. It serves only connections whose peer socket belongs to its own uid (an exact
 * NETLINK_SOCK_DIAG lookup of the peer's socket); any other gets 403 and the wait goes on. It
 * answers each request with a small page (Referrer-Policy: no-referrer) and closes it; a request
 * with the wrong path or state gets an error page and the wait goes on. It can also read a pasted
 * redirect URL from a file descriptor: whichever arrives first wins.
 */
#ifndef PS_LISTENER_H
#define PS_LISTENER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "helper/authorize.h"
#include "common/config.h"

#define PS_START_PATH_LEN (7 + 32) /* "/start/" and 128 random bits in hex */

struct ps_listener {
	int fd;
	unsigned port;		       /* the port actually bound */
	char redirect_uri[PS_URL_MAX]; /* redirect_uri with the bound port: send this one */
	char path[256];		       /* the path requests must use, e.g. /callback */
	char start_path[PS_START_PATH_LEN + 1]; /* "/start/" and 32 hex digits from getrandom */
	char start_location[4 * PS_URL_MAX];	/* where start_path redirects once ("" = none) */
};

enum ps_wait_result {
	PS_WAIT_CODE = 0, /* cb->code holds the authorization code, state checked */
	PS_WAIT_DENIED,	  /* the authorization server sent error= (cb->error, e.g. access_denied) */
	PS_WAIT_TIMEOUT,  /* the deadline passed */
	PS_WAIT_FAIL, /* err says why (socket error, paste stream closed and no listener, ...) */
};

/* Bind and listen. redirect_uri must be http://127.0.0.1[:port]/path or http://[::1][:port]/path. */
int ps_listener_open(struct ps_listener *l, const char *redirect_uri, char *err, size_t errlen);

/*
 * Let GET l->start_path answer once with a 302 to location (the authorize URL), so a browser can
 * be started on http://127.0.0.1:PORT/start/HEX without the state on any command line. The path
 * is random per listener: another uid can neither guess it nor (403) use it.
 */
void ps_listener_set_start(struct ps_listener *l, const char *location);

/*
 * Wait until timeout_s seconds pass for a callback with the right path and state on the
 * listener, or a pasted URL (one line) on paste_fd (-1: none; a paste with the wrong state is
 * reported in a line on stderr and the wait goes on). l may be NULL for paste only.
 */
enum ps_wait_result ps_listener_wait(struct ps_listener *l, int paste_fd, const char *redirect_uri,
				     const char *state, unsigned timeout_s, struct ps_callback *cb,
				     char *err, size_t errlen);

void ps_listener_close(struct ps_listener *l);

/*
 * The owner of the socket at the other end of the loopback connection fd: an exact
 * NETLINK_SOCK_DIAG lookup of the peer's socket by its four-tuple. 0 and *uid, or a negative
 * errno (-ENOENT: no such socket; -ENOTCONN: not a live connection of that tuple).
 */
int ps_peer_uid(int fd, uid_t *uid);

/*
 * The two halves of ps_peer_uid, for the tests. ps_peer_diag_query fills req (a struct
 * inet_diag_req_v2) for the peer of a connection whose local and remote endpoints are ours and
 * theirs: 0, or -EAFNOSUPPORT. ps_peer_diag_reply reads the kernel's answer to it (netlink
 * sequence number seq): 0 and *uid only for an established socket with exactly the asked-for
 * endpoints; else a negative errno.
 */
struct inet_diag_req_v2;
int ps_peer_diag_query(const struct sockaddr *ours, const struct sockaddr *theirs,
		       struct inet_diag_req_v2 *req);
int ps_peer_diag_reply(const void *buf, size_t len, const struct inet_diag_req_v2 *req,
		       uint32_t seq, uid_t *uid);

#endif
