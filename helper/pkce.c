/*
 * pkce.c: the RFC 7636 proof key (S256 only) and the OAuth state value (see pkce.h). Owns the
 * randomness of the authorization code flow: every byte comes from getrandom(2), verifier
 * characters are drawn without modulo bias, and every buffer that held random bytes or a digest
 * is zeroed before it goes out of scope.
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "helper/pkce.h"

#define STATE_BYTES	 16 /* 128 bits */
#define VERIFIER_MIN_LEN 43 /* RFC 7636 4.1 */
#define VERIFIER_MAX_LEN 128
#define SHA256_LEN	 32

/* RFC 3986 unreserved characters: the verifier's alphabet (RFC 7636 4.1). */
static const char unreserved[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
				 "0123456789-._~";
#define UNRESERVED_N (sizeof(unreserved) - 1) /* 66 */

/* Random bytes at or above this would favour some characters: 256 - 256 % 66 = 198. */
#define UNRESERVED_LIMIT (256 - 256 % UNRESERVED_N)

_Static_assert((STATE_BYTES * 4 + 2) / 3 == PS_STATE_LEN, "state length");
_Static_assert((SHA256_LEN * 4 + 2) / 3 == PS_CHALLENGE_LEN, "challenge length");

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Fill buf with len bytes from getrandom(2), retrying on EINTR and short reads. 0 or -1. */
static int random_fill(void *buf, size_t len)
{
	unsigned char *p = buf;

	while (len) {
		ssize_t n = getrandom(p, len, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Base64url without padding (RFC 4648 5, RFC 7636 Appendix A). out must hold
 * (len * 4 + 2) / 3 characters and the terminating NUL.
 */
static void base64url_encode(const unsigned char *in, size_t len, char *out)
{
	size_t i, o = 0;

	for (i = 0; i + 3 <= len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

		out[o++] = b64url[v >> 18 & 63];
		out[o++] = b64url[v >> 12 & 63];
		out[o++] = b64url[v >> 6 & 63];
		out[o++] = b64url[v & 63];
	}
	if (len - i == 1) {
		out[o++] = b64url[in[i] >> 2];
		out[o++] = b64url[(in[i] & 3) << 4];
	} else if (len - i == 2) {
		out[o++] = b64url[in[i] >> 2];
		out[o++] = b64url[(in[i] & 3) << 4 | in[i + 1] >> 4];
		out[o++] = b64url[(in[i + 1] & 15) << 2];
	}
	out[o] = '\0';
}

int ps_pkce_verifier(char out[PS_VERIFIER_LEN + 1])
{
	unsigned char pool[PS_VERIFIER_LEN];
	size_t n = 0, used = sizeof(pool);

	/* Rejection sampling: bytes >= UNRESERVED_LIMIT are dropped, the rest map evenly. */
	while (n < PS_VERIFIER_LEN) {
		if (used == sizeof(pool)) {
			if (random_fill(pool, sizeof(pool)) < 0) {
				explicit_bzero(pool, sizeof(pool));
				explicit_bzero(out, PS_VERIFIER_LEN + 1);
				return -1;
			}
			used = 0;
		}
		if (pool[used] < UNRESERVED_LIMIT)
			out[n++] = unreserved[pool[used] % UNRESERVED_N];
		used++;
	}
	out[n] = '\0';
	explicit_bzero(pool, sizeof(pool));
	return 0;
}

/* RFC 7636 4.1: 43 to 128 unreserved characters. */
static bool verifier_valid(const char *verifier, size_t *len)
{
	size_t n = strnlen(verifier, VERIFIER_MAX_LEN + 1);

	if (n < VERIFIER_MIN_LEN || n > VERIFIER_MAX_LEN || strspn(verifier, unreserved) != n)
		return false;
	*len = n;
	return true;
}

int ps_pkce_challenge(const char *verifier, char out[PS_CHALLENGE_LEN + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	size_t len;
	int rc = -1;

	out[0] = '\0';
	if (!verifier || !verifier_valid(verifier, &len))
		return -1;
	if (EVP_Digest(verifier, len, md, &mdlen, EVP_sha256(), NULL) == 1 && mdlen == SHA256_LEN) {
		base64url_encode(md, mdlen, out);
		rc = 0;
	}
	explicit_bzero(md, sizeof(md));
	return rc;
}

int ps_pkce_state(char out[PS_STATE_LEN + 1])
{
	unsigned char raw[STATE_BYTES];

	if (random_fill(raw, sizeof(raw)) < 0) {
		explicit_bzero(raw, sizeof(raw));
		explicit_bzero(out, PS_STATE_LEN + 1);
		return -1;
	}
	base64url_encode(raw, sizeof(raw), out);
	explicit_bzero(raw, sizeof(raw));
	return 0;
}

/*
 * Lengths are not secret (ours is always PS_STATE_LEN), so they are compared first; the bytes are
 * compared in constant time. An empty expected state matches nothing.
 */
bool ps_state_equal(const char *expected, const char *received)
{
	size_t len;

	if (!expected || !received)
		return false;
	len = strlen(expected);
	if (len == 0 || strlen(received) != len)
		return false;
	return CRYPTO_memcmp(expected, received, len) == 0;
}
