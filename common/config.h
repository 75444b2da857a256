/*
 * config.h: pam_spotify.conf and module arguments. One setter serves the file's `key = value`
 * lines, the module's arguments and the module->helper request, so every source of a setting is
 * checked by the same code.
 */
#ifndef PS_CONFIG_H
#define PS_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#define PS_URL_MAX		1024
#define PS_CLIENT_ID_MAX	256
#define PS_SCOPES_MAX		1024
#define PS_ERR_MAX		512
#define PS_DEFAULT_ACCOUNTS_URL "https://accounts.spotify.com"
#define PS_DEFAULT_REDIRECT_URI "http://127.0.0.1/callback"
#define PS_DEFAULT_APP_USER	"_pam_spotify"
#define PS_USER_NAME_MAX	64
/* The total time of a token request made outside a login (the keeper's, the system service's):
 * long, because a refresh given up in flight can lose a rotated refresh token. */
#define PS_REQUEST_TIMEOUT_S 120
#define PS_SERVICE_PATH_MAX  108 /* sun_path */

enum ps_flow {
	PS_FLOW_CLIENT_CREDENTIALS = 0,
	PS_FLOW_PKCE,
	PS_FLOW_AUTHORIZATION_CODE,
};

enum ps_keyring {
	PS_KEYRING_USER = 0,
	PS_KEYRING_SESSION,
	PS_KEYRING_PERSISTENT,
};

/* Bits of ps_config.set: which keys have been given (duplicates are errors). */
enum ps_key_bit {
	PS_SET_FLOW = 1u << 0,
	PS_SET_CLIENT_ID = 1u << 1,
	PS_SET_SECRET_FILE = 1u << 2,
	PS_SET_SCOPES = 1u << 3,
	PS_SET_ACCOUNTS_URL = 1u << 4,
	PS_SET_TOKEN_URL = 1u << 5,
	PS_SET_KEYRING = 1u << 6,
	PS_SET_TIMEOUT = 1u << 7,
	PS_SET_CONNECT_TIMEOUT = 1u << 8,
	PS_SET_REMOVE_ON_CLOSE = 1u << 9,
	PS_SET_CA_FILE = 1u << 10,
	PS_SET_AUTHORIZE_URL = 1u << 11,
	PS_SET_REDIRECT_URI = 1u << 12,
	PS_SET_ENROLL = 1u << 13,
	PS_SET_REFRESH_MARGIN = 1u << 14,
	PS_SET_APP_USER = 1u << 15,
	PS_SET_DEFAULT_EXPIRES_IN = 1u << 16,
};

enum ps_enroll {
	PS_ENROLL_PROMPT = 0, /* enroll through the PAM conversation when it is interactive */
	PS_ENROLL_NEVER,
};

struct ps_config {
	enum ps_flow flow;
	char client_id[PS_CLIENT_ID_MAX];
	char client_secret_file[PATH_MAX];
	char scopes[PS_SCOPES_MAX];
	char accounts_url[PS_URL_MAX];
	char token_url[PS_URL_MAX];	/* accounts_url + /api/token unless given */
	char authorize_url[PS_URL_MAX]; /* accounts_url + /authorize unless given */
	char redirect_uri
		[PS_URL_MAX]; /* http://127.0.0.1[:port]/path or http://[::1][:port]/path */
	enum ps_enroll enroll;
	unsigned refresh_margin;     /* renew this many seconds before expiry */
	unsigned default_expires_in; /* a token response without expires_in lives this long */
	bool interactive;	     /* request only: the PAM conversation can prompt the user */
	long session_pid;	     /* request only: the PAM application's process, 0 if unknown */
	char app_user[PS_USER_NAME_MAX]; /* the system service's user (helper/service.h) */
	long app_uid; /* request only: the system service's uid (its peer credentials) */
	char service[PS_SERVICE_PATH_MAX]; /* request only: the system service's socket */
	enum ps_keyring keyring;
	unsigned timeout; /* seconds a login waits; a login's own HTTP requests' total time */
	unsigned connect_timeout; /* seconds for the TCP+TLS connect */
	bool remove_on_close;
	char ca_file[PATH_MAX];
	/* module arguments only */
	bool debug;
	bool nowait;
	char config_path[PATH_MAX];
	unsigned set; /* enum ps_key_bit */
};

/* The name of the i-th key of pam_spotify.conf, NULL past the last (for tests and docs). */
const char *ps_config_key_name(size_t i);

/* Fill in defaults. */
void ps_config_init(struct ps_config *cfg);

/*
 * Set one key from its text value. Returns 0, or -1 with a reason in err (without file/line:
 * the caller adds where the value came from) and cfg unchanged. Empty values and values with a
 * control character (other than tab) are refused; duplicates are the concern of the source
 * (file, arguments, request), which refuses them itself. A message quotes at most 64
 * characters of a bad value, control bytes as '?'.
 */
int ps_config_set(struct ps_config *cfg, const char *key, const char *value, char *err,
		  size_t errlen);

/*
 * Parse a whole file. Errors are "FILE:LINE: reason" in err. A missing file is an error too, and
 * so is a file that others could have written: not a regular file, writable by others (or by a
 * group other than root), owned by neither root nor the caller, or in a directory (or below one)
 * that others could write without the sticky bit. Returns 0, or -1 with cfg unchanged.
 */
int ps_config_load(struct ps_config *cfg, const char *path, char *err, size_t errlen);

/*
 * Parse the text of a config file (for tests and the fuzzer); name is used in messages. 0, or
 * -1 with cfg unchanged.
 */
int ps_config_parse_text(struct ps_config *cfg, const char *name, const char *text, size_t len,
			 char *err, size_t errlen);

/* The config=PATH module argument, or NULL. */
const char *ps_config_arg_path(int argc, const char **argv);

/*
 * Apply PAM module arguments: config=PATH, debug, nowait, and any `key=value` config key, which
 * overrides the file. Arguments are applied after the file. 0, or -1 with cfg unchanged.
 */
int ps_config_from_args(struct ps_config *cfg, int argc, const char **argv, char *err,
			size_t errlen);

/* Check that the settings form a usable whole and derive token_url. 0 or -1 with err. */
int ps_config_finish(struct ps_config *cfg, char *err, size_t errlen);

/*
 * A redirect_uri, as Spotify allows it (since 2025): http:// to the loopback literal 127.0.0.1 or
 * [::1] (never localhost), an optional port from 1 to 65535 without a leading zero (none: any
 * port, the listener takes an ephemeral one), a path, and no query, fragment, space, control or
 * non-ASCII character. The configuration, the listener that binds it and the check of a pasted
 * redirect all take it from ps_redirect_parse.
 */
struct ps_redirect {
	int family;	    /* AF_INET or AF_INET6 */
	bool has_port;	    /* false: any port */
	unsigned long port; /* when has_port */
	const char *host;   /* the literal as written: "127.0.0.1" or "[::1]" */
	const char *path;   /* into the URI: from its '/' to the end */
};

/* Parse uri into *r. 0, or -1 with the reason in err (quoting at most 64 characters of uri). */
int ps_redirect_parse(const char *uri, struct ps_redirect *r, char *err, size_t errlen);

const char *ps_flow_name(enum ps_flow flow);
const char *ps_keyring_name(enum ps_keyring where);

#endif
