/*
 * test_pkce.c: the PKCE proof key and the state. The S256 challenge matches RFC 7636 Appendix B;
 * verifiers are 64 unreserved characters drawn without modulo bias; states are 128 random bits
 * in 22 base64url characters; every draw differs; states compare in constant time and never
 * across lengths; randomness survives EINTR and short reads and a getrandom failure is an error.
 *
 * getrandom(2) is interposed below: this program's definition is the one pkce.c calls. By
 * default it passes through to the kernel; a test can make it read short, fail with EINTR, fail
 * for good, or return scripted bytes.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <cmocka.h>

#include "helper/pkce.h"

#define UNRESERVED "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
#define B64URL	   "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
#define DRAWS	   1000

enum rng_mode {
	RNG_KERNEL,   /* pass through */
	RNG_SHORT,    /* at most one byte per call */
	RNG_EINTR,    /* every other call fails with EINTR */
	RNG_FAIL,     /* every call fails with ENOSYS */
	RNG_SCRIPTED, /* bytes from rng_script, then zeros */
};

static enum rng_mode rng_mode;
static unsigned rng_calls;
static const unsigned char *rng_script;
static size_t rng_script_len;

static ssize_t kernel_getrandom(void *buf, size_t len, unsigned int flags)
{
	return syscall(SYS_getrandom, buf, len, flags);
}

static ssize_t scripted_getrandom(void *buf, size_t len)
{
	size_t n = len < rng_script_len ? len : rng_script_len;

	memcpy(buf, rng_script, n);
	memset((unsigned char *)buf + n, 0, len - n);
	rng_script += n;
	rng_script_len -= n;
	return (ssize_t)len;
}

ssize_t getrandom(void *buf, size_t len, unsigned int flags)
{
	rng_calls++;
	switch (rng_mode) {
	case RNG_SHORT:
		return kernel_getrandom(buf, len ? 1 : 0, flags);
	case RNG_EINTR:
		if (rng_calls % 2) {
			errno = EINTR;
			return -1;
		}
		return kernel_getrandom(buf, len, flags);
	case RNG_FAIL:
		errno = ENOSYS;
		return -1;
	case RNG_SCRIPTED:
		return scripted_getrandom(buf, len);
	case RNG_KERNEL:
		break;
	}
	return kernel_getrandom(buf, len, flags);
}

static int rng_reset(void **state)
{
	(void)state;
	rng_mode = RNG_KERNEL;
	rng_calls = 0;
	rng_script = NULL;
	rng_script_len = 0;
	return 0;
}

static bool all_in(const char *s, const char *alphabet)
{
	return strspn(s, alphabet) == strlen(s);
}

/*
 * RFC 7636 Appendix B: the base64url of the octets 116, 24, 223, 180, ... 141, 121, and the
 * challenge the RFC derives from it.
 */
#define RFC_VERIFIER  "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
#define RFC_CHALLENGE "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"

static void test_rfc7636_appendix_b(void **state)
{
	char challenge[PS_CHALLENGE_LEN + 1];

	(void)state;
	assert_int_equal(ps_pkce_challenge(RFC_VERIFIER, challenge), 0);
	assert_string_equal(challenge, RFC_CHALLENGE);
}

static void test_challenge_of_a_fresh_verifier(void **state)
{
	char verifier[PS_VERIFIER_LEN + 1], challenge[PS_CHALLENGE_LEN + 1];

	(void)state;
	assert_int_equal(ps_pkce_verifier(verifier), 0);
	assert_int_equal(ps_pkce_challenge(verifier, challenge), 0);
	assert_int_equal(strlen(challenge), PS_CHALLENGE_LEN);
	assert_true(all_in(challenge, B64URL));
}

static void test_challenge_refuses_bad_verifiers(void **state)
{
	char challenge[PS_CHALLENGE_LEN + 1];
	char longest[129], too_long[130];

	(void)state;
	memset(longest, 'a', sizeof(longest) - 1);
	longest[sizeof(longest) - 1] = '\0';
	memset(too_long, 'a', sizeof(too_long) - 1);
	too_long[sizeof(too_long) - 1] = '\0';

	assert_int_equal(ps_pkce_challenge(longest, challenge), 0);
	assert_int_equal(ps_pkce_challenge(too_long, challenge), -1);
	assert_int_equal(ps_pkce_challenge("", challenge), -1);
	/* 42 characters: one short of RFC 7636's minimum */
	assert_int_equal(ps_pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjX", challenge),
			 -1);
	assert_int_equal(
		ps_pkce_challenge("dBjftJeZ4CVP+mB92K27uhbUJU1p1r_wW1gFWFOEjXk", challenge), -1);
	assert_int_equal(
		ps_pkce_challenge("dBjftJeZ4CVP mB92K27uhbUJU1p1r_wW1gFWFOEjXk", challenge), -1);
	assert_int_equal(
		ps_pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk\n", challenge), -1);
	assert_int_equal(ps_pkce_challenge(NULL, challenge), -1);
	assert_string_equal(challenge, "");
}

static void test_verifier_length_and_alphabet(void **state)
{
	static char v[DRAWS][PS_VERIFIER_LEN + 1];
	size_t i, j;

	(void)state;
	for (i = 0; i < DRAWS; i++) {
		assert_int_equal(ps_pkce_verifier(v[i]), 0);
		assert_int_equal(strlen(v[i]), PS_VERIFIER_LEN);
		assert_true(all_in(v[i], UNRESERVED));
	}
	for (i = 0; i < DRAWS; i++) {
		for (j = i + 1; j < DRAWS; j++)
			assert_string_not_equal(v[i], v[j]);
	}
	assert_true(rng_calls > 0); /* the interposed getrandom is the one in use */
}

/*
 * 640,000 characters: each of the 66 is expected 9,697 times (standard deviation about 98). A
 * modulo mapping of bytes would give the last 8 characters about 7,500; the bounds are ±10%.
 */
static void test_verifier_has_no_modulo_bias(void **state)
{
	enum { N = 10000 };
	unsigned long count[256] = {0};
	char v[PS_VERIFIER_LEN + 1];
	const double expected = (double)N * PS_VERIFIER_LEN / 66;
	const char *c;
	size_t i;

	(void)state;
	for (i = 0; i < N; i++) {
		assert_int_equal(ps_pkce_verifier(v), 0);
		for (c = v; *c; c++)
			count[(unsigned char)*c]++;
	}
	for (c = UNRESERVED; *c; c++) {
		assert_true(count[(unsigned char)*c] > expected * 0.9);
		assert_true(count[(unsigned char)*c] < expected * 1.1);
	}
}

/* Bytes 198..255 are dropped; the others map to UNRESERVED[byte % 66]. */
static void test_verifier_rejection_sampling(void **state)
{
	unsigned char script[64 + 64];
	char v[PS_VERIFIER_LEN + 1];
	size_t i;

	(void)state;
	for (i = 0; i < 64; i++)
		script[i] = (unsigned char)(198 + i % 58); /* all rejected */
	for (i = 0; i < 64; i++)
		script[64 + i] = (unsigned char)(i * 3 + 5);
	script[64] = 197; /* 197 % 66 = 65: '~' */
	script[65] = 66;  /* 'A' */
	rng_mode = RNG_SCRIPTED;
	rng_script = script;
	rng_script_len = sizeof(script);

	assert_int_equal(ps_pkce_verifier(v), 0);
	assert_int_equal(v[0], '~');
	assert_int_equal(v[1], 'A');
	for (i = 2; i < PS_VERIFIER_LEN; i++)
		assert_int_equal(v[i], UNRESERVED[(i * 3 + 5) % 66]);
	assert_int_equal(rng_calls, 2);
}

static void test_state_length_alphabet_and_uniqueness(void **state)
{
	static char s[DRAWS][PS_STATE_LEN + 1];
	size_t i, j;

	(void)state;
	for (i = 0; i < DRAWS; i++) {
		assert_int_equal(ps_pkce_state(s[i]), 0);
		assert_int_equal(strlen(s[i]), PS_STATE_LEN);
		assert_true(all_in(s[i], B64URL));
		/* 128 bits in 22 characters: the last one carries 2 bits, the rest zero */
		assert_non_null(strchr("AQgw", s[i][PS_STATE_LEN - 1]));
	}
	for (i = 0; i < DRAWS; i++) {
		for (j = i + 1; j < DRAWS; j++)
			assert_string_not_equal(s[i], s[j]);
	}
}

/* RFC 4648 test vector bytes, to check the encoder bit for bit. */
static void test_state_encoding(void **state)
{
	static const unsigned char raw[16] = {0xfb, 0xff, 0xbf, 0x00, 0x10, 0x83, 0x10, 0x51,
					      0x87, 0x20, 0x92, 0x8b, 0x30, 0xd3, 0x8f, 0xff};
	char s[PS_STATE_LEN + 1];

	(void)state;
	rng_mode = RNG_SCRIPTED;
	rng_script = raw;
	rng_script_len = sizeof(raw);
	assert_int_equal(ps_pkce_state(s), 0);
	assert_string_equal(s, "-_-_ABCDEFGHIJKLMNOP_w");
}

static void test_random_survives_short_reads_and_eintr(void **state)
{
	char v[PS_VERIFIER_LEN + 1], s[PS_STATE_LEN + 1];

	(void)state;
	rng_mode = RNG_SHORT;
	assert_int_equal(ps_pkce_verifier(v), 0);
	assert_int_equal(strlen(v), PS_VERIFIER_LEN);
	assert_true(rng_calls >= PS_VERIFIER_LEN);
	rng_calls = 0;
	assert_int_equal(ps_pkce_state(s), 0);
	assert_int_equal(rng_calls, 16);

	rng_mode = RNG_EINTR;
	rng_calls = 0;
	assert_int_equal(ps_pkce_state(s), 0);
	assert_int_equal(strlen(s), PS_STATE_LEN);
	assert_int_equal(rng_calls, 2);
	assert_int_equal(ps_pkce_verifier(v), 0);
	assert_true(all_in(v, UNRESERVED));
}

static void test_random_failure_is_an_error(void **state)
{
	char v[PS_VERIFIER_LEN + 1], s[PS_STATE_LEN + 1];

	(void)state;
	rng_mode = RNG_FAIL;
	assert_int_equal(ps_pkce_verifier(v), -1);
	assert_string_equal(v, "");
	assert_int_equal(ps_pkce_state(s), -1);
	assert_string_equal(s, "");
}

static void test_state_equal(void **state)
{
	char ours[PS_STATE_LEN + 1], theirs[PS_STATE_LEN + 1];

	(void)state;
	assert_int_equal(ps_pkce_state(ours), 0);
	memcpy(theirs, ours, sizeof(theirs));
	assert_true(ps_state_equal(ours, theirs));

	theirs[PS_STATE_LEN - 1] = theirs[PS_STATE_LEN - 1] == 'A' ? 'Q' : 'A';
	assert_false(ps_state_equal(ours, theirs));
	memcpy(theirs, ours, sizeof(theirs));
	theirs[0] = theirs[0] == 'A' ? 'B' : 'A';
	assert_false(ps_state_equal(ours, theirs));

	/* different lengths: a prefix, an extension, nothing */
	memcpy(theirs, ours, sizeof(theirs));
	theirs[PS_STATE_LEN - 1] = '\0';
	assert_false(ps_state_equal(ours, theirs));
	assert_false(ps_state_equal(theirs, ours));
	assert_false(ps_state_equal(ours, ""));
	assert_false(ps_state_equal("", ""));
	assert_false(ps_state_equal(ours, NULL));
	assert_false(ps_state_equal(NULL, ours));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_rfc7636_appendix_b, rng_reset),
		cmocka_unit_test_setup(test_challenge_of_a_fresh_verifier, rng_reset),
		cmocka_unit_test_setup(test_challenge_refuses_bad_verifiers, rng_reset),
		cmocka_unit_test_setup(test_verifier_length_and_alphabet, rng_reset),
		cmocka_unit_test_setup(test_verifier_has_no_modulo_bias, rng_reset),
		cmocka_unit_test_setup(test_verifier_rejection_sampling, rng_reset),
		cmocka_unit_test_setup(test_state_length_alphabet_and_uniqueness, rng_reset),
		cmocka_unit_test_setup(test_state_encoding, rng_reset),
		cmocka_unit_test_setup(test_random_survives_short_reads_and_eintr, rng_reset),
		cmocka_unit_test_setup(test_random_failure_is_an_error, rng_reset),
		cmocka_unit_test_setup(test_state_equal, rng_reset),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
