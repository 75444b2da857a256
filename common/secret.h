/* secret.h: the client secret file, read by the system service (helper/service.h). */
#ifndef PS_SECRET_H
#define PS_SECRET_H

#include <stddef.h>
#include <sys/types.h>

#define PS_SECRET_MAX	    512
#define PS_SECRET_ANY_OWNER ((uid_t)-1) /* owner: a systemd credential, any owner and mode */

/*
 * Read the client secret from path into buf (cap bytes, NUL-terminated). The file must be a
 * regular file (opened with O_NOFOLLOW, so not a symlink), owned by owner (root; a systemd
 * credential belongs to the service's user), with no group or other
 * permission bits, and hold one line of printable ASCII (a trailing newline is dropped).
 * Returns 0, or -1 with a one-line reason naming the file and the fix in err. buf is zeroed on
 * failure; the caller zeroes it after use.
 */
int ps_secret_read(const char *path, uid_t owner, char *buf, size_t cap, char *err, size_t errlen);

#endif
