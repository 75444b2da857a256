/*
 * keylist.h: finding `user` keys among a keyring's own links. KEYCTL_READ on the keyring gives
 * the serials it links, KEYCTL_DESCRIBE on each gives "type;uid;gid;perm;description". Never a
 * recursive search: KEYCTL_SEARCH also walks every keyring linked below, six levels deep, which
 * the keyring's owner can make cost seconds (26 keyrings a level linked into each other). And
 * bounded: at most max_links links are read and described. Raw system calls and libc only, so
 * the module links it without libkeyutils; the helper's store and removal use it too.
 */
#ifndef PS_KEYLIST_H
#define PS_KEYLIST_H

#include <stddef.h>

/* The module's bound: a user keyring that links more is "no warm token" (the helper's path). */
#define PS_KEYLIST_WARM_MAX 64

/* The helper's bound, when it stores or removes keys: 256 KiB of serials. */
#define PS_KEYLIST_MAX 65536

/* One key wanted: name in, the rest out. */
struct ps_key_link {
	const char *name;   /* the description of the `user` key wanted */
	long id;	    /* its serial, 0 when the keyring does not link it itself */
	unsigned long uid;  /* its owner */
	unsigned long perm; /* its permissions */
};

/*
 * Fill in keys[0..n) from the links of ring itself (a serial or a KEY_SPEC_* value). Links that
 * cannot be described (not viewable, expired, revoked, gone meanwhile) are skipped; a keyring
 * holds at most one key of a type and description. Stops when all n are found. 0, or -1 with
 * errno: E2BIG when ring links more than max_links keys (none of them looked at), else why ring
 * could not be read (ENOKEY, EKEYREVOKED, EACCES, ...).
 */
int ps_keylist_find(long ring, struct ps_key_link *keys, size_t n, size_t max_links);

#endif
