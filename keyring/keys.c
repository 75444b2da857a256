/*
 * keys.c: the keyring contract over libkeyutils. Stores, removes and reads the two `user` keys
 * spotify:access_token and spotify:token_info, and turns each keyring failure into one line that
 * says what to do.
 *
 * Possession. A new key's default permissions give its owner, when it does not *possess* the key,
 * only VIEW, and setting permissions or a timeout needs SETATTR. A key is possessed when it can be
 * reached from the caller's thread, process or session keyring. A key added to the user keyring
 * through KEY_SPEC_USER_KEYRING is therefore not possessed when the caller's session keyring does
 * not link the user keyring (a systemd service, `keyctl session -`, a helper started outside
 * pam_keyinit): the serial that add_key returns does not confer possession, so keyctl_setperm on it
 * fails with EACCES. Before storing or removing, we link the target keyring into the calling
 * thread's own keyring (ring_open) and unlink it afterwards (ring_close). The thread keyring is
 * private to the calling thread, so this grants possession to nobody else, and it leaves the
 * caller's session keyring, which it shares with the login session, untouched. Joining a fresh
 * session keyring instead would detach the caller (the keeper) from that session. For the same
 * reason keyctl_get_persistent attaches the persistent keyring to the thread keyring, not to the
 * session: readers look the persistent keyring up themselves.
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <errno.h>
#include <keyutils.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keyring/keylist.h"
#include "keyring/keys.h"
#include "keyring/token_info.h"
#include "common/util.h"

#define SKEW_MAX 30

unsigned ps_keys_skew(unsigned long expires_in)
{
	unsigned long skew = expires_in / 10;

	return skew < SKEW_MAX ? (unsigned)skew : SKEW_MAX;
}

bool ps_keys_token_valid(const char *token, size_t len)
{
	return token && len > 0 && len <= PS_TOKEN_MAX && ps_b64token_valid(token, len);
}

const char *ps_key_place_name(enum ps_key_place place)
{
	switch (place) {
	case PS_PLACE_SESSION:
		return "session";
	case PS_PLACE_USER:
		return "user";
	case PS_PLACE_PERSISTENT:
		return "persistent";
	}
	return "unknown";
}

/* --- errors */

/* One line for a failed keyring operation; what says which, e.g. "storing spotify:... in ...". */
static int keyring_error(int e, const char *what, char *err, size_t errlen)
{
	switch (e) {
	case EDQUOT:
		snprintf(err, errlen,
			 "%s: keyring quota exceeded (EDQUOT): remove unused keys (keyctl show @u) "
			 "or raise /proc/sys/kernel/keys/maxkeys / maxbytes",
			 what);
		break;
	case ENOSYS:
	case EOPNOTSUPP:
		snprintf(err, errlen,
			 "%s: kernel keyring unavailable (%s): the kernel lacks CONFIG_KEYS or a "
			 "seccomp filter blocks keyctl",
			 what, e == ENOSYS ? "ENOSYS" : "EOPNOTSUPP");
		break;
	case EACCES:
		snprintf(err, errlen,
			 "%s: permission denied (EACCES): the keyring, or an old key of that name, "
			 "is not writable by you; find it with keyctl show, remove it with keyctl "
			 "unlink, then log in again",
			 what);
		break;
	case E2BIG:
		snprintf(err, errlen,
			 "%s: the keyring links more than %d keys: remove unused ones (keyctl show "
			 "@u, then keyctl unlink ID)",
			 what, PS_KEYLIST_MAX);
		break;
	case EPERM:
		snprintf(
			err, errlen,
			"%s: operation not permitted (EPERM): a security policy (seccomp, SELinux, "
			"AppArmor) forbids keyctl here; allow the keyctl and add_key system calls",
			what);
		break;
	default:
		snprintf(err, errlen, "%s: %s", what, strerror(e));
		break;
	}
	return PS_EXIT_KEYRING;
}

static int persistent_error(int e, char *err, size_t errlen)
{
	if (e != EOPNOTSUPP)
		return keyring_error(e, "opening the persistent keyring", err, errlen);
	snprintf(err, errlen,
		 "persistent keyrings unavailable (EOPNOTSUPP): the kernel lacks "
		 "CONFIG_PERSISTENT_KEYRINGS; set keyring = user in pam_spotify.conf");
	return PS_EXIT_KEYRING;
}

/* --- keyrings we possess (see the comment at the top) */

static int ring_open(enum ps_keyring where, key_serial_t *ring, char *err, size_t errlen)
{
	long id;

	switch (where) {
	case PS_KEYRING_SESSION:
		*ring = KEY_SPEC_SESSION_KEYRING; /* always possessed */
		return PS_EXIT_OK;
	case PS_KEYRING_USER:
		*ring = KEY_SPEC_USER_KEYRING;
		if (keyctl_link(KEY_SPEC_USER_KEYRING, KEY_SPEC_THREAD_KEYRING) < 0)
			return keyring_error(errno,
					     "linking the user keyring into the thread keyring",
					     err, errlen);
		return PS_EXIT_OK;
	case PS_KEYRING_PERSISTENT:
		id = keyctl_get_persistent(-1, KEY_SPEC_THREAD_KEYRING);
		if (id < 0)
			return persistent_error(errno, err, errlen);
		*ring = (key_serial_t)id;
		return PS_EXIT_OK;
	}
	snprintf(err, errlen, "unknown keyring %d", (int)where);
	return PS_EXIT_KEYRING;
}

static void ring_close(enum ps_keyring where, key_serial_t ring)
{
	int saved = errno;

	if (where != PS_KEYRING_SESSION)
		keyctl_unlink(ring, KEY_SPEC_THREAD_KEYRING);
	errno = saved;
}

/* What the description of a key says about it. */
struct key_attrs {
	unsigned long uid;
	unsigned long perm;
};

/*
 * The `user` key called name linked directly in ring (not in a keyring it links): its serial,
 * 0 when there is none, -1 with errno when the keyring cannot be listed (E2BIG: it links more
 * than PS_KEYLIST_MAX keys). Keys we may not view, and expired keys (which cannot be described),
 * are skipped: nobody can read an expired key and the kernel's garbage collector unlinks it.
 * attrs, when not NULL, gets its owner and permissions. The module's own look-up is the same
 * function (keyring/keylist.h).
 */
static key_serial_t ring_lookup(key_serial_t ring, const char *name, struct key_attrs *attrs)
{
	struct ps_key_link key = {.name = name};

	if (ps_keylist_find(ring, &key, 1, PS_KEYLIST_MAX) < 0)
		return -1;
	if (key.id > 0 && attrs) {
		attrs->uid = key.uid;
		attrs->perm = key.perm;
	}
	return (key_serial_t)key.id;
}

/*
 * Take key id out of ring, then invalidate it (gone from any other keyring that links it). The
 * unlink comes first because Linux (6.18, where we measured it) never gives back the 4 bytes of key
 * quota a link costs when its garbage collector, rather than an unlink, takes a dead key out of a
 * keyring; a user keyring lives until reboot, so invalidating first leaked those bytes whenever
 * the collector won the race (about one removal in ten), until the user could store no key at
 * all (EDQUOT). 0, or the errno of the unlink when the key is still linked in ring.
 */
static int drop(key_serial_t id, key_serial_t ring)
{
	int e = keyctl_unlink(id, ring) == 0 ? 0 : errno;

	if (keyctl_invalidate(id) == 0 && e != 0 && e != ENOENT && e != ENOKEY)
		e = 0; /* invalidated: the collector unlinks it, as nothing else could */
	errno = e;
	return e;
}

/* --- store */

/*
 * add_key updates a key of that type and name in place. A key of that name that is not one of
 * ours as we leave them (another owner, other permissions: planted, or changed by hand) is
 * unlinked first, so the token never goes into a key that others may read or that we cannot set
 * a timeout on; ours is updated in place. add_key fails with EACCES when an old key we cannot
 * even view denies us WRITE: then there is nothing we can do but say so.
 */
static key_serial_t add_or_replace(key_serial_t ring, const char *name, const void *data,
				   size_t len)
{
	struct key_attrs attrs = {0, 0};
	key_serial_t id, old;

	old = ring_lookup(ring, name, &attrs);
	if (old > 0 && (attrs.perm != PS_KEY_PERM || attrs.uid != (unsigned long)geteuid()))
		keyctl_unlink(old, ring); /* a failure shows in add_key */
	id = add_key("user", name, data, len, ring);
	if (id >= 0 || errno != EACCES)
		return id;
	old = ring_lookup(ring, name, NULL);
	if (old <= 0 || keyctl_unlink(old, ring) < 0) {
		errno = EACCES;
		return -1;
	}
	return add_key("user", name, data, len, ring);
}

/* The timeout first: an update clears the old one, and it is what keeps an expired token out. */
static int set_attrs(key_serial_t id, unsigned timeout_s)
{
	return keyctl_set_timeout(id, timeout_s) < 0 || keyctl_setperm(id, PS_KEY_PERM) < 0 ? -1
											    : 0;
}

/*
 * The keys this process stored last (the token's and the info's), so that ps_keys_remove takes
 * them out even when they have expired: an expired key can no longer be described, so a search
 * by name misses it, but it can be unlinked by its serial.
 */
static key_serial_t stored[2];

static int store_one(enum ps_keyring where, key_serial_t ring, const char *name, const void *data,
		     size_t len, unsigned timeout_s, char *err, size_t errlen)
{
	char what[128];
	key_serial_t id;
	int rc;

	snprintf(what, sizeof(what), "storing %s in the %s keyring", name, ps_keyring_name(where));
	id = add_or_replace(ring, name, data, len);
	if (id < 0)
		return keyring_error(errno, what, err, errlen);
	rc = set_attrs(id, timeout_s);
	if (rc < 0 && errno == EACCES) {
		/*
		 * A key we could neither view nor set attributes on, but write: planted without
		 * VIEW and SETATTR. Revoke what we wrote into it, and put a key of our own there.
		 */
		keyctl_revoke(id);
		keyctl_unlink(id, ring);
		id = add_key("user", name, data, len, ring);
		if (id < 0)
			return keyring_error(errno, what, err, errlen);
		rc = set_attrs(id, timeout_s);
	}
	if (rc < 0) {
		int e = errno;

		drop(id, ring); /* never leave a key without its timeout or permissions */
		return keyring_error(e, what, err, errlen);
	}
	stored[strcmp(name, PS_KEY_TOKEN) == 0 ? 0 : 1] = id;
	return PS_EXIT_OK;
}

int ps_keys_store(enum ps_keyring where, const char *token, size_t token_len, const char *info_json,
		  unsigned timeout_s, char *err, size_t errlen)
{
	size_t info_len = info_json ? strlen(info_json) : 0;
	key_serial_t ring;
	int rc;

	if (!ps_keys_token_valid(token, token_len)) {
		snprintf(err, errlen,
			 "refusing to store a malformed access token (empty, longer "
			 "than %d bytes, or not RFC 6750 b64token characters)",
			 PS_TOKEN_MAX);
		return PS_EXIT_KEYRING;
	}
	if (info_len == 0 || info_len > PS_TOKEN_INFO_MAX) {
		snprintf(err, errlen, "refusing to store token info of %zu bytes (1 to %d)",
			 info_len, PS_TOKEN_INFO_MAX);
		return PS_EXIT_KEYRING;
	}
	if (timeout_s == 0) {
		/* keyctl_set_timeout(id, 0) means "never expire" */
		snprintf(err, errlen, "refusing to store a token with no lifetime left");
		return PS_EXIT_KEYRING;
	}
	rc = ring_open(where, &ring, err, errlen);
	if (rc != PS_EXIT_OK)
		return rc;
	/* Token first: a reader that sees the new token with the old info finds it expiring
	 * sooner than it does, never later. */
	rc = store_one(where, ring, PS_KEY_TOKEN, token, token_len, timeout_s, err, errlen);
	if (rc == PS_EXIT_OK)
		rc = store_one(where, ring, PS_KEY_INFO, info_json, info_len, timeout_s, err,
			       errlen);
	ring_close(where, ring);
	return rc;
}

/* --- remove */

/* Unlink the key here, and invalidate it (gone from every other keyring that links it). */
static int remove_one(enum ps_keyring where, key_serial_t ring, const char *name, char *err,
		      size_t errlen)
{
	char what[128];
	key_serial_t id;
	int rc;

	snprintf(what, sizeof(what), "removing %s from the %s keyring", name,
		 ps_keyring_name(where));
	id = ring_lookup(ring, name, NULL);
	/*
	 * A revoked or expired keyring holds nothing anyone can reach: at session close,
	 * `pam_keyinit revoke` runs before us (PAM closes in stack order) and has revoked the
	 * session keyring already. That is a removal done, not an error.
	 */
	if (id < 0 && (errno == EKEYREVOKED || errno == EKEYEXPIRED || errno == ENOKEY))
		return PS_EXIT_OK;
	if (id < 0)
		return keyring_error(errno, what, err, errlen);
	if (id == 0)
		return PS_EXIT_OK;
	rc = drop(id, ring);
	if (rc == 0 || rc == ENOENT || rc == ENOKEY) /* those two: gone already */
		return PS_EXIT_OK;
	return keyring_error(rc, what, err, errlen);
}

int ps_keys_remove(enum ps_keyring where, char *err, size_t errlen)
{
	key_serial_t ring;
	int rc, rc2, i;

	rc = ring_open(where, &ring, err, errlen);
	if (rc != PS_EXIT_OK)
		return rc;
	rc = remove_one(where, ring, PS_KEY_TOKEN, err, errlen);
	rc2 = remove_one(where, ring, PS_KEY_INFO, rc == PS_EXIT_OK ? err : NULL,
			 rc == PS_EXIT_OK ? errlen : 0);
	for (i = 0; i < 2; i++) { /* ours that expired: the search above cannot see them */
		if (stored[i] > 0 && keyctl_describe(stored[i], NULL, 0) < 0 &&
		    errno == EKEYEXPIRED)
			keyctl_unlink(stored[i], ring);
		stored[i] = 0;
	}
	ring_close(where, ring);
	return rc != PS_EXIT_OK ? rc : rc2;
}

/* --- read */

void ps_keys_found_free(struct ps_keys_found *found)
{
	if (found->token)
		ps_free_secret(found->token, found->token_len + 1);
	free(found->info);
	found->token = NULL;
	found->info = NULL;
	found->token_len = 0;
	found->info_len = 0;
}

/*
 * Read key id into a new buffer of cap + 1 bytes, NUL-terminated. *len is the payload length, or
 * cap when the payload is longer; the buffer then holds only NULs (the caller rejects it). One
 * keyctl_read: unlike keyctl_read_alloc, no retry loop that frees a buffer holding part of the
 * secret without zeroing it. 0 or errno.
 */
static int read_bounded(key_serial_t id, size_t cap, char **out, size_t *len)
{
	char *buf = malloc(cap + 1);
	long n;

	if (!buf)
		return ENOMEM;
	n = keyctl_read(id, buf, cap);
	if (n < 0) {
		int e = errno;

		ps_free_secret(buf, cap + 1);
		return e;
	}
	if ((size_t)n > cap) {
		/* Too long: the kernel copied nothing (older kernels: the first cap bytes). */
		explicit_bzero(buf, cap + 1);
		n = (long)cap;
	}
	buf[n] = '\0';
	*out = buf;
	*len = (size_t)n;
	return 0;
}

/* keyctl_search: 0 with *id, or errno. */
static int search(key_serial_t ring, const char *name, key_serial_t *id)
{
	long n = keyctl_search(ring, "user", name, 0);

	if (n < 0)
		return errno;
	*id = (key_serial_t)n;
	return 0;
}

static bool is_fatal(int e)
{
	return e != ENOKEY && e != EKEYEXPIRED && e != EKEYREVOKED && e != EACCES;
}

/* How bad a miss is, to report the most useful one: absent < unreadable < expired. */
static int miss_rank(int e)
{
	if (e == EKEYEXPIRED || e == EKEYREVOKED)
		return 2;
	return e == EACCES ? 1 : 0;
}

static int read_error(int e, enum ps_key_place place, char *err, size_t errlen)
{
	const char *where = ps_key_place_name(place);

	switch (e) {
	case ENOKEY:
		snprintf(err, errlen,
			 "no Spotify token in your keyring: log in again "
			 "(pam_spotify stores one at session open)");
		return PS_EXIT_NO_TOKEN;
	case EKEYEXPIRED:
	case EKEYREVOKED:
		snprintf(err, errlen, "the Spotify token in your %s keyring has %s: log in again",
			 where, e == EKEYEXPIRED ? "expired" : "been revoked");
		return PS_EXIT_EXPIRED;
	case EACCES:
		snprintf(err, errlen,
			 "key %s in the %s keyring is not readable by you (wrong permissions): "
			 "remove it (keyctl show @u, then keyctl unlink ID) and log in again",
			 PS_KEY_TOKEN, where);
		return PS_EXIT_NO_TOKEN;
	}
	return keyring_error(e, "reading " PS_KEY_TOKEN, err, errlen);
}

/*
 * Find the token in the session keyring, then in the user keyring. A miss in the session is not
 * the answer: a revoked session keyring (a process left over after logout) or one that does not
 * link the user keyring (a service) says nothing about the user keyring. 0 or errno.
 */
static int find_default(key_serial_t *id, enum ps_key_place *place)
{
	key_serial_t uid = 0;
	int e, eu;

	e = search(KEY_SPEC_SESSION_KEYRING, PS_KEY_TOKEN, id);
	if (e == 0) {
		/* Name the user keyring when that is where the session search led. */
		*place = search(KEY_SPEC_USER_KEYRING, PS_KEY_TOKEN, &uid) == 0 && uid == *id
				 ? PS_PLACE_USER
				 : PS_PLACE_SESSION;
		return 0;
	}
	if (is_fatal(e))
		return e;
	if (e == EKEYREVOKED)
		e = ENOKEY; /* most likely the session keyring itself */
	eu = search(KEY_SPEC_USER_KEYRING, PS_KEY_TOKEN, id);
	if (eu == 0 || is_fatal(eu) || miss_rank(eu) >= miss_rank(e)) {
		*place = PS_PLACE_USER;
		return eu;
	}
	*place = PS_PLACE_SESSION;
	return e;
}

static key_serial_t place_ring(enum ps_key_place place, key_serial_t persistent)
{
	switch (place) {
	case PS_PLACE_SESSION:
		return KEY_SPEC_SESSION_KEYRING;
	case PS_PLACE_USER:
		return KEY_SPEC_USER_KEYRING;
	case PS_PLACE_PERSISTENT:
		return persistent;
	}
	return KEY_SPEC_USER_KEYRING;
}

/* Read the info key from where the token was found; a failure only leaves info NULL. */
static void read_info(struct ps_keys_found *found, key_serial_t ring)
{
	key_serial_t id = 0;
	int e;

	e = search(ring, PS_KEY_INFO, &id);
	if (e == 0)
		e = read_bounded(id, PS_TOKEN_INFO_MAX + 1, &found->info, &found->info_len);
	found->info_errno = e;
}

int ps_keys_read(bool persistent, struct ps_keys_found *found, char *err, size_t errlen)
{
	key_serial_t ring = 0, id = 0;
	long n;
	int e;

	memset(found, 0, sizeof(*found));
	if (persistent) {
		/* Linked into our thread keyring: keys in it are then possessed. */
		n = keyctl_get_persistent(-1, KEY_SPEC_THREAD_KEYRING);
		if (n < 0)
			return persistent_error(errno, err, errlen);
		ring = (key_serial_t)n;
		found->place = PS_PLACE_PERSISTENT;
		e = search(ring, PS_KEY_TOKEN, &id);
	} else {
		e = find_default(&id, &found->place);
	}
	if (e == 0)
		e = read_bounded(id, PS_TOKEN_MAX + 1, &found->token, &found->token_len);
	if (e != 0)
		return read_error(e, found->place, err, errlen);
	read_info(found, place_ring(found->place, ring));
	return PS_EXIT_OK;
}
