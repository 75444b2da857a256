/*
 * test_secret_free.c: every heap buffer that held a secret is zeroed before it is freed (the
 * design brief's "secrets zeroed before free"), for the code that keeps secrets on the heap: the
 * token response (access and refresh token, on success and on a parse failure), the HTTP response
 * body, the refresh-token store (read and write) and the token read from the keyring.
 *
 * The seam: this program is linked with -Wl,--wrap=malloc -Wl,--wrap=free, so every malloc and
 * free in the code under test (and in this file) comes here. malloc hands out zeroed memory, so a
 * sentinel found in a block at free time was written there since it was allocated; free looks for
 * the sentinels in the whole block and counts the blocks that still hold one. Allocations and
 * frees inside shared libraries (json-c, libcurl, libkeyutils, libc) are not seen: json-c's and
 * curl's own copies are documented in token_response.c and http.c. The sentinels are 63
 * characters, longer than the slack malloc may leave at the end of a block, so stale bytes from
 * earlier, unseen frees cannot fake a finding.
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <ftw.h>
#include <keyutils.h>
#include <limits.h>
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "helper/http.h"
#include "helper/store.h"
#include "helper/token_response.h"
#include "keyring/keys.h"
#include "common/util.h"

#define ACCESS	"BQsentinelACCESS0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJK"
#define REFRESH "AQsentinelREFRESH0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"
#define CLIENT	"0123456789abcdef0123456789abcdef"

/* --- the seam */

void __real_free(void *p);
void *__wrap_malloc(size_t size);
void __wrap_free(void *p);

static const char *const sentinels[] = {ACCESS, REFRESH};
static unsigned dirty_frees; /* blocks freed while still holding a sentinel */

void *__wrap_malloc(size_t size)
{
	return calloc(1, size ? size : 1); /* calloc is not wrapped */
}

void __wrap_free(void *p)
{
	size_t i, n;

	if (p) {
		n = malloc_usable_size(p);
		for (i = 0; i < sizeof(sentinels) / sizeof(sentinels[0]); i++)
			if (memmem(p, n, sentinels[i], strlen(sentinels[i])))
				dirty_frees++;
	}
	__real_free(p);
}

static int reset(void **state)
{
	(void)state;
	dirty_frees = 0;
	return 0;
}

/* --- the seam itself: a plain free of a sentinel is seen, ps_free_secret's is clean */

static void test_seam_sees_a_plain_free(void **state)
{
	void (*volatile plain_free)(void *) = free; /* or the compiler drops the copy and free */
	char *p = malloc(sizeof(ACCESS));

	(void)state;
	assert_non_null(p);
	memcpy(p, ACCESS, sizeof(ACCESS));
	plain_free(p);
	assert_int_equal(dirty_frees, 1);
	p = malloc(sizeof(ACCESS));
	assert_non_null(p);
	memcpy(p, ACCESS, sizeof(ACCESS));
	ps_free_secret(p, sizeof(ACCESS));
	assert_int_equal(dirty_frees, 1);
}

/* --- token response */

static void test_token_response(void **state)
{
	static const char body[] = "{\"access_token\":\"" ACCESS "\",\"token_type\":\"Bearer\","
				   "\"expires_in\":3600,\"refresh_token\":\"" REFRESH "\"}";
	struct ps_token_response tok;
	char err[PS_ERR_MAX];

	(void)state;
	assert_int_equal(ps_token_response_parse(body, strlen(body), &tok, err, sizeof(err)), 0);
	assert_string_equal(tok.access_token, ACCESS);
	assert_string_equal(tok.refresh_token, REFRESH);
	ps_token_response_clear(&tok);
	assert_int_equal(dirty_frees, 0);
}

/* The access token was copied out before expires_in failed the parse: that copy is zeroed too. */
static void test_token_response_failure(void **state)
{
	static const char body[] = "{\"access_token\":\"" ACCESS "\",\"token_type\":\"Bearer\","
				   "\"expires_in\":0,\"refresh_token\":\"" REFRESH "\"}";
	struct ps_token_response tok;
	char err[PS_ERR_MAX];

	(void)state;
	assert_int_equal(ps_token_response_parse(body, strlen(body), &tok, err, sizeof(err)), -1);
	assert_null(strstr(err, ACCESS));
	assert_int_equal(dirty_frees, 0);
}

/* --- the HTTP response body (allocated at the cap once, see http.c) */

static void test_http_response(void **state)
{
	struct ps_http_response resp = {0};

	(void)state;
	resp.body = malloc(PS_HTTP_BODY_MAX + 1);
	assert_non_null(resp.body);
	resp.len = (size_t)snprintf(resp.body, PS_HTTP_BODY_MAX + 1,
				    "{\"access_token\":\"%s\",\"refresh_token\":\"%s\"}", ACCESS,
				    REFRESH);
	ps_http_response_clear(&resp);
	assert_null(resp.body);
	assert_int_equal(dirty_frees, 0);
}

/* --- the refresh-token store, in a scratch $XDG_STATE_HOME */

static char scratch[64];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void test_store(void **state)
{
	char err[PS_ERR_MAX], *token = NULL;
	struct ps_store s;
	size_t len = 0;

	(void)state;
	ps_strlcpy(scratch, "/tmp/test_secret_free.XXXXXX", sizeof(scratch));
	assert_non_null(mkdtemp(scratch));
	assert_int_equal(setenv("XDG_STATE_HOME", scratch, 1), 0);
	assert_int_equal(ps_store_open(&s, CLIENT, err, sizeof(err)), PS_EXIT_OK);
	assert_int_equal(ps_store_write(&s, REFRESH, strlen(REFRESH), err, sizeof(err)),
			 PS_EXIT_OK);
	assert_int_equal(ps_store_read(&s, &token, &len, err, sizeof(err)), PS_EXIT_OK);
	assert_string_equal(token, REFRESH);
	ps_free_secret(token, len + 1);
	ps_store_close(&s);
	nftw(scratch, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	unsetenv("XDG_STATE_HOME");
	assert_int_equal(dirty_frees, 0);
}

/* --- the token read from the keyring, in an anonymous session keyring of our own */

static void test_keys_read(void **state)
{
	struct ps_keys_found found;
	char err[PS_ERR_MAX];
	key_serial_t id;

	(void)state;
	if (keyctl_join_session_keyring(NULL) < 0) {
		skip(); /* no keyring here (ENOSYS, or a seccomp filter) */
		return;
	}
	id = add_key("user", PS_KEY_TOKEN, ACCESS, strlen(ACCESS), KEY_SPEC_SESSION_KEYRING);
	assert_true(id > 0);
	memset(&found, 0, sizeof(found));
	assert_int_equal(ps_keys_read(false, &found, err, sizeof(err)), PS_EXIT_OK);
	assert_string_equal(found.token, ACCESS);
	ps_keys_found_free(&found);
	keyctl_invalidate(id);
	assert_int_equal(dirty_frees, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_seam_sees_a_plain_free, reset),
		cmocka_unit_test_setup(test_token_response, reset),
		cmocka_unit_test_setup(test_token_response_failure, reset),
		cmocka_unit_test_setup(test_http_response, reset),
		cmocka_unit_test_setup(test_store, reset),
		cmocka_unit_test_setup(test_keys_read, reset),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
