/*
 * frame.h: the framed messages of the service socket (helper/service.h), shared by the module,
 * the service and the users' helpers and keepers. libc only.
 *
 * A frame is a 4-byte length (network order) and that many bytes, at most PS_FRAME_MAX. A
 * message is header lines "key value\n" (a value has no control bytes), an empty line, and an
 * optional body of any bytes. One descriptor (a pidfd) may travel with a frame (SCM_RIGHTS).
 * Every send and receive ends by its deadline (a monotonic time in ms, ps_mono_ms).
 */
#ifndef PS_FRAME_H
#define PS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "common/util.h"

#define PS_FRAME_MAX (80 * 1024) /* a 64 KiB response body and its header */

/* Send one frame of len bytes, with passfd (or -1). 0, or -1 with errno (ETIMEDOUT). */
int ps_frame_send(int fd, const char *buf, size_t len, int passfd, long long deadline);

/*
 * Receive one frame into buf (cap bytes; one more for the NUL it always adds). *len gets its
 * length, *passfd (unless NULL) a descriptor that came with it or -1 (one that comes when passfd
 * is NULL is closed). 0, or -1 with errno (ETIMEDOUT, EMSGSIZE, ECONNRESET at EOF).
 */
int ps_frame_recv(int fd, char *buf, size_t cap, size_t *len, int *passfd, long long deadline);

/* Append "key value\n" to b; a value with a control byte makes b full (refused). */
void ps_msg_add(struct ps_buf *b, const char *key, const char *value);

/* The end of the header: the empty line; what follows is the body. */
void ps_msg_end(struct ps_buf *b);

/*
 * The value of key in the header of msg (len bytes, NUL-terminated), copied into out; 0, or -1
 * when absent or longer than outlen - 1.
 */
int ps_msg_get(const char *msg, size_t len, const char *key, char *out, size_t outlen);

/* The body of msg: a pointer into it and *bodylen, or NULL when the message has no header end. */
const char *ps_msg_body(const char *msg, size_t len, size_t *bodylen);

/*
 * One exchange on the connected socket fd: msg (len bytes, with passfd or -1), then its reply into
 * reply (cap bytes, one more for the NUL), *replylen. 0, or -1 with errno as ps_frame_send or
 * ps_frame_recv set it: the caller says what did not answer.
 */
int ps_msg_exchange(int fd, const char *msg, size_t len, int passfd, long long deadline,
		    char *reply, size_t cap, size_t *replylen);

/* Connect to the Unix socket at path (non-blocking). The fd, or -1 with errno. */
int ps_frame_connect(const char *path);

/* The uid of the process at the other end of the socket fd: 0, or -1 with errno. */
int ps_frame_peer_uid(int fd, uid_t *uid, pid_t *pid);

/*
 * The "status" of a reply (a PS_EXIT code) and its "message" into line; who names the peer in the
 * message about a malformed reply (PS_EXIT_NETWORK then).
 */
int ps_msg_status(const char *reply, size_t len, const char *who, char *line, size_t linelen);

/*
 * One call on a new connection to the Unix socket at path, whose peer must be uid peer, or root
 * when or_root (SO_PEERCRED; the system service's sockets in RUNDIR, which only root can put
 * there: systemd's listens as root). Never or_root for a path in a user's directory: the user
 * could link it to any socket root listens on. msg goes out (with passfd, or -1), and, unless reply is NULL, one frame comes
 * back into reply (cap bytes, and the NUL). Everything by deadline. 0; -1 when nothing serves
 * there (errno ENOENT or ECONNREFUSED, also when the peer went away before answering) or the
 * peer is someone else (EPERM); -2 when it did not answer in time or broke the protocol (errno).
 */
int ps_msg_call(const char *path, uid_t peer, bool or_root, const char *msg, size_t len, int passfd,
		long long deadline, char *reply, size_t cap, size_t *replylen);

#endif
