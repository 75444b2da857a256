/*
 * canary.c: a program with one deliberate bug per mode, to prove that a bug in a program of this
 * build is reported where tests/sanitizer/reports.sh looks: by the sanitizers' compiled-in
 * defaults (sanitizer builds) or by the valgrind wrapper (the valgrind pass), even with an empty
 * environment, as an unprivileged user, and in a non-dumpable process like the helper.
 * Usage: canary heap-overflow|signed-overflow|leak|leak-nondumpable
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

static void *volatile sink;

static int leak(void)
{
	char *p = malloc(77);

	if (!p)
		return 1;
	memset(p, 'x', 77);
	sink = p;
	sink = NULL; /* the last pointer to it is gone: a definite leak */
	return 0;
}

int main(int argc, char **argv)
{
	const char *mode = argc == 2 ? argv[1] : "";

	if (strcmp(mode, "heap-overflow") == 0) {
		volatile size_t n = 8; /* a size UBSan's object-size check cannot know */
		char *p = malloc(n);
		volatile size_t i = 8;

		if (!p)
			return 1;
		p[i] = 'x';
		sink = p;
		free(p);
		return 0;
	}
	if (strcmp(mode, "signed-overflow") == 0) {
		volatile int big = INT_MAX;

		printf("%d\n", big + 1);
		return 0;
	}
	if (strcmp(mode, "leak") == 0)
		return leak();
	if (strcmp(mode, "leak-nondumpable") == 0) {
		if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
			return 1;
		return leak();
	}
	fprintf(stderr, "usage: canary heap-overflow|signed-overflow|leak|leak-nondumpable\n");
	return 2;
}
