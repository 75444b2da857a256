/* secret.c: the client secret file. Read by the system service, checked before a byte is used. */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/secret.h"
#include "common/util.h"

/* Refuse a file that anyone but its owner (root) could have written or could read. */
static int secret_stat_check(int fd, const char *path, uid_t owner, char *err, size_t errlen)
{
	struct stat st;

	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "client secret file %s: cannot stat (%s)", path,
			 strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen,
			 "client secret file %s is not a regular file; "
			 "make it a plain file owned by root with mode 0600",
			 path);
		return -1;
	}
	if (owner == PS_SECRET_ANY_OWNER)
		return 0; /* a systemd credential: systemd gives it to the service's user alone */
	if (st.st_uid != owner && owner != 0) {
		snprintf(err, errlen, "client secret file %s is not owned by uid %u", path,
			 (unsigned)owner);
		return -1;
	}
	if (st.st_uid != owner) {
		snprintf(err, errlen,
			 "client secret file %s is not owned by root; "
			 "run: chown root:root %s && chmod 600 %s",
			 path, path, path);
		return -1;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		snprintf(err, errlen,
			 "client secret file %s is readable or writable by group or "
			 "others (mode %04o); run: chmod 600 %s",
			 path, (unsigned)(st.st_mode & 07777), path);
		return -1;
	}
	return 0;
}

/* One line of printable ASCII without spaces, the trailing newline (and CR) dropped. */
static int secret_text_check(char *buf, size_t *len, const char *path, char *err, size_t errlen)
{
	size_t i;

	while (*len && (buf[*len - 1] == '\n' || buf[*len - 1] == '\r'))
		buf[--*len] = '\0';
	if (*len == 0) {
		snprintf(err, errlen,
			 "client secret file %s is empty; put the client secret from "
			 "the Spotify developer dashboard in it",
			 path);
		return -1;
	}
	for (i = 0; i < *len; i++) {
		unsigned char c = (unsigned char)buf[i];
		if (c <= 0x20 || c >= 0x7f) {
			snprintf(err, errlen,
				 "client secret file %s must hold the secret alone on one "
				 "line (it has a space, control or non-ASCII byte)",
				 path);
			return -1;
		}
	}
	return 0;
}

int ps_secret_read(const char *path, uid_t owner, char *buf, size_t cap, char *err, size_t errlen)
{
	size_t len = 0;
	int fd, rc;

	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		if (errno == ELOOP)
			snprintf(err, errlen,
				 "client secret file %s is a symbolic link; "
				 "name the real file in client_secret_file",
				 path);
		else
			snprintf(err, errlen, "client secret file %s: cannot open (%s)", path,
				 strerror(errno));
		return -1;
	}
	rc = secret_stat_check(fd, path, owner, err, errlen);
	if (rc == 0) {
		rc = ps_read_all(fd, buf, cap - 1, &len);
		if (rc != 0)
			snprintf(err, errlen,
				 rc < 0 ? "client secret file %s: cannot read"
					: "client secret file %s is too large",
				 path);
		rc = rc != 0 ? -1 : 0;
	}
	close(fd);
	if (rc == 0) {
		buf[len] = '\0';
		rc = secret_text_check(buf, &len, path, err, errlen);
	}
	if (rc < 0)
		explicit_bzero(buf, cap);
	return rc;
}
