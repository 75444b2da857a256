/* fuzz_check.c: the input copies and contract checks every fuzz target uses (see fuzz.h). */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz.h"

char *ps_fuzz_copy(const uint8_t *data, size_t size)
{
	char *p = malloc(size ? size : 1);

	if (!p)
		abort();
	if (size)
		memcpy(p, data, size);
	return p;
}

char *ps_fuzz_cstring(const uint8_t *data, size_t size)
{
	char *p = malloc(size + 1);

	if (!p)
		abort();
	if (size)
		memcpy(p, data, size);
	p[size] = '\0';
	return p;
}

void ps_fuzz_free(char *p, size_t size)
{
	if (p)
		explicit_bzero(p, size);
	free(p);
}

void ps_fuzz_fail(const char *what)
{
	fprintf(stderr, "contract broken: %s\n", what);
	abort();
}

void ps_fuzz_check_cstr(const char *s, size_t cap, const char *what)
{
	if (!memchr(s, '\0', cap))
		ps_fuzz_fail(what);
}

void ps_fuzz_check_text(const char *s, size_t cap, const char *what)
{
	const unsigned char *p;

	ps_fuzz_check_cstr(s, cap, what);
	for (p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			ps_fuzz_fail(what);
}

void ps_fuzz_check_err(const char *err, size_t errlen)
{
	ps_fuzz_check_text(err, errlen, "error message is not one line of text");
	if (!err[0])
		ps_fuzz_fail("error message is empty");
}

bool ps_fuzz_printable(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}

bool ps_fuzz_zeroed(const void *p, size_t len)
{
	const unsigned char *b = p;
	size_t i;

	for (i = 0; i < len; i++)
		if (b[i])
			return false;
	return true;
}
