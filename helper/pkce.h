/*
 * pkce.h: RFC 7636 proof key (S256 only) and the OAuth state value. Randomness from getrandom(2);
 * state compared in constant time.
 */
#ifndef PS_PKCE_H
#define PS_PKCE_H

#include <stdbool.h>
#include <stddef.h>

#define PS_VERIFIER_LEN	 64 /* characters of [A-Za-z0-9-._~] (RFC 7636 4.1: 43..128) */
#define PS_CHALLENGE_LEN 43 /* BASE64URL(SHA256(verifier)) without padding */
#define PS_STATE_LEN	 22 /* 128 random bits, base64url without padding */

/* A fresh verifier of PS_VERIFIER_LEN unreserved characters. 0, or -1 (getrandom failed). */
int ps_pkce_verifier(char out[PS_VERIFIER_LEN + 1]);

/* code_challenge = BASE64URL-ENCODE(SHA256(ASCII(verifier))). 0 or -1. */
int ps_pkce_challenge(const char *verifier, char out[PS_CHALLENGE_LEN + 1]);

/* A fresh state of 128 random bits. 0 or -1. */
int ps_pkce_state(char out[PS_STATE_LEN + 1]);

/* Constant-time comparison of a received state with ours; false when lengths differ. */
bool ps_state_equal(const char *expected, const char *received);

#endif
