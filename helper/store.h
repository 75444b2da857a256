/*
 * store.h: the refresh-token store, ~/.local/state/spotify-token/ ($XDG_STATE_HOME/spotify-token/
 * when that is set; the helper and the reader unset it, because the helper at session open
 * never sees it), created by the helper as the user: directory 0700, files 0600,
 * opened with O_NOFOLLOW relative to the directory. Per client ID:
 *   CLIENT.refresh  the refresh token ("pam_spotify-refresh 1\n" TOKEN "\n")
 *   CLIENT.reauth   present when the server said invalid_grant: re-authorization needed
 *   CLIENT.lock     flock(2): one refresh at a time per user and client
 * Writes are atomic (temp file, fsync, rename, fsync of the directory).
 */
#ifndef PS_STORE_H
#define PS_STORE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/config.h"

#define PS_REFRESH_TOKEN_MAX 4096


struct ps_store {
	int dirfd;
	int lockfd;
	char dir[PATH_MAX];
	char client_id[PS_CLIENT_ID_MAX];
};

/*
 * Open (creating as needed) the store directory of the calling user for client_id. Refuses a
 * directory that is a symlink, not owned by the user, or open to group/others; and any path
 * component that is not a directory. PS_EXIT_OK or PS_EXIT_CONFIG with a one-line reason.
 */
int ps_store_open(struct ps_store *s, const char *client_id, char *err, size_t errlen);


/* Take the per-client lock, waiting at most timeout_s. PS_EXIT_OK, or PS_EXIT_CONFIG on timeout. */
int ps_store_lock(struct ps_store *s, unsigned timeout_s, char *err, size_t errlen);
void ps_store_unlock(struct ps_store *s);

/*
 * Read the refresh token into a new buffer (*token, zeroed and freed by the caller with
 * ps_free_secret(*token, *len + 1)). PS_EXIT_OK; PS_EXIT_NO_TOKEN when there is none (not
 * enrolled); PS_EXIT_REAUTH when marked for re-authorization; PS_EXIT_CONFIG when the file is
 * malformed, too large, a link, or has the wrong owner or mode (err says which and what to do).
 */
int ps_store_read(struct ps_store *s, char **token, size_t *len, char *err, size_t errlen);

/* Replace the refresh token atomically and clear any reauth mark. PS_EXIT_OK or PS_EXIT_CONFIG. */
int ps_store_write(struct ps_store *s, const char *token, size_t len, char *err, size_t errlen);

/* Mark the store: re-authorization needed (the token is kept for inspection, never used). */
int ps_store_mark_reauth(struct ps_store *s, char *err, size_t errlen);

/* True when the store is marked for re-authorization. */
bool ps_store_needs_reauth(struct ps_store *s);

/* Remove the refresh token and the mark (logout). Absent files are fine. */
int ps_store_remove(struct ps_store *s, char *err, size_t errlen);

void ps_store_close(struct ps_store *s);

#endif
