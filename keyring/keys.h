/*
 * keys.h: the keyring contract. Two `user` keys, updated in place:
 *   spotify:access_token  exactly the token bytes
 *   spotify:token_info    a small JSON document (token_info.h)
 * Permissions PS_KEY_PERM (possessor all; user view/read/search; group and other nothing), and a
 * kernel timeout on both so an expired token is never readable.
 */
#ifndef PS_KEYS_H
#define PS_KEYS_H

#include <stdbool.h>
#include <stddef.h>

#include "common/config.h"

#define PS_KEY_TOKEN "spotify:access_token"
#define PS_KEY_INFO  "spotify:token_info"
#define PS_KEY_PERM  0x3f0b0000u
#define PS_TOKEN_MAX 4096

/*
 * Seconds to subtract from expires_in for the kernel timeout: min(30, expires_in / 10), so a
 * token is gone from the keyring a little before the server stops accepting it.
 */
unsigned ps_keys_skew(unsigned long expires_in);

/*
 * Store the token and its info JSON in the chosen keyring, each with the kernel timeout
 * timeout_s, updating existing keys in place. Returns PS_EXIT_OK or PS_EXIT_KEYRING with a
 * one-line reason in err (EDQUOT, ENOSYS, EPERM/EACCES each get their own advice).
 */
int ps_keys_store(enum ps_keyring where, const char *token, size_t token_len, const char *info_json,
		  unsigned timeout_s, char *err, size_t errlen);

/*
 * Remove both keys from the chosen keyring, and the expired ones this process stored there (which
 * a look-up by name no longer finds, and which would cost the user key quota until the kernel's
 * collector takes them). Absent keys are fine. PS_EXIT_OK or PS_EXIT_KEYRING.
 */
int ps_keys_remove(enum ps_keyring where, char *err, size_t errlen);

/* Reading, for spotify-token. */

/* Where ps_keys_read found the token. */
enum ps_key_place {
	PS_PLACE_SESSION = 0, /* the session keyring (a key of its own, not the user keyring's) */
	PS_PLACE_USER,	      /* the user keyring, directly or through a link from the session */
	PS_PLACE_PERSISTENT,  /* the persistent keyring */
};

/* "session", "user" or "persistent". */
const char *ps_key_place_name(enum ps_key_place place);

/* What ps_keys_read found. Release with ps_keys_found_free, which zeroes the token. */
struct ps_keys_found {
	enum ps_key_place place;
	char *token;	  /* the payload of PS_KEY_TOKEN, NUL-terminated, unchecked */
	size_t token_len; /* PS_TOKEN_MAX + 1 for any longer payload (then maybe all NULs) */
	char *info;	  /* the payload of PS_KEY_INFO from the same place, or NULL */
	size_t info_len;  /* PS_TOKEN_INFO_MAX + 1 when longer than PS_TOKEN_INFO_MAX */
	int info_errno;	  /* why info is NULL: ENOKEY, EKEYEXPIRED, EACCES, ... */
};

/*
 * Find and read PS_KEY_TOKEN and then PS_KEY_INFO beside it. With persistent false: the session
 * keyring (which normally links the user keyring, see pam_keyinit), then the user keyring
 * explicitly, so a same-UID process that does not possess the key (a systemd service) still
 * reads it through the user permissions. With persistent true: only the persistent keyring.
 * Returns PS_EXIT_OK with *found filled in, or with a one-line reason in err:
 *   PS_EXIT_NO_TOKEN  no such key, or one that this process may not read (wrong permissions)
 *   PS_EXIT_EXPIRED   the key has expired or was revoked
 *   PS_EXIT_KEYRING   no keyring support (ENOSYS) or another keyring failure
 */
int ps_keys_read(bool persistent, struct ps_keys_found *found, char *err, size_t errlen);

/* Zero and free what ps_keys_read returned. Safe on a zeroed struct and twice. */
void ps_keys_found_free(struct ps_keys_found *found);

/*
 * True when token is a usable bearer token: 1 to PS_TOKEN_MAX bytes of RFC 6750 b64token,
 * 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
 */
bool ps_keys_token_valid(const char *token, size_t len);

#endif
