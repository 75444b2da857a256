/*
 * keylist.c: a keyring's own links, bounded (see keylist.h). The module runs this as root with
 * only its real uid switched to the user's, on a keyring the user fills: nothing here follows a
 * link into another keyring, and the work is at most one read of max_links serials and one
 * describe of each.
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <errno.h>
#include <linux/keyctl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "keyring/keylist.h"

/* "user;" UID ";" GID ";" PERM ";" and a description we could want; longer ones are skipped. */
#define DESC_MAX 256

/*
 * The description of key id parsed: its owner, permissions and description, when it is a `user`
 * key whose description fits. 0, or -1 (not describable, another type, or too long to be ours).
 */
static int describe_user_key(int32_t id, char *buf, size_t buflen, struct ps_key_link *out,
			     const char **desc)
{
	unsigned long f[3];
	char *p, *end;
	long n;
	int i;

	n = syscall(SYS_keyctl, KEYCTL_DESCRIBE, (long)id, buf, buflen, 0L);
	/* n counts the NUL; the kernel copies nothing when it does not fit */
	if (n <= 0 || (size_t)n > buflen || buf[n - 1] != '\0' || strncmp(buf, "user;", 5) != 0)
		return -1;
	p = buf + 5;
	for (i = 0; i < 3; i++) {
		errno = 0;
		f[i] = strtoul(p, &end, i == 2 ? 16 : 10);
		if (errno || end == p || *end != ';')
			return -1;
		p = end + 1;
	}
	out->uid = f[0];
	out->perm = f[2];
	*desc = p;
	return 0;
}

/* Match one described key against the names still wanted; how many are left. */
static size_t match(struct ps_key_link *keys, size_t n, int32_t id, const char *desc,
		    const struct ps_key_link *attrs)
{
	size_t i, left = 0;

	for (i = 0; i < n; i++) {
		if (keys[i].id == 0 && strcmp(keys[i].name, desc) == 0) {
			keys[i].id = id;
			keys[i].uid = attrs->uid;
			keys[i].perm = attrs->perm;
		}
		left += keys[i].id == 0;
	}
	return left;
}

int ps_keylist_find(long ring, struct ps_key_link *keys, size_t n, size_t max_links)
{
	struct ps_key_link attrs;
	size_t i, count, left = n;
	char desc[DESC_MAX];
	const char *name;
	int32_t *ids;
	long len;

	for (i = 0; i < n; i++)
		keys[i].id = 0;
	if (n == 0)
		return 0;
	if (max_links == 0 || max_links > SIZE_MAX / sizeof(*ids)) {
		errno = EINVAL;
		return -1;
	}
	ids = malloc(max_links * sizeof(*ids));
	if (!ids)
		return -1;
	/* the kernel copies nothing, and says how much it needs, when the keyring links more */
	len = syscall(SYS_keyctl, KEYCTL_READ, ring, ids, max_links * sizeof(*ids), 0L);
	if (len < 0) {
		free(ids);
		return -1;
	}
	if ((size_t)len > max_links * sizeof(*ids) || len % sizeof(*ids) != 0) {
		free(ids);
		errno = E2BIG;
		return -1;
	}
	count = (size_t)len / sizeof(*ids);
	for (i = 0; i < count && left > 0; i++) {
		if (describe_user_key(ids[i], desc, sizeof(desc), &attrs, &name) == 0)
			left = match(keys, n, ids[i], name, &attrs);
	}
	free(ids);
	return 0;
}
