/*
 * replay.c: run one fuzz target's LLVMFuzzerTestOneInput on every file of its corpus, with the
 * normal compiler, for make check. Prints TAP: "ok N - TARGET: FILE" for each input, then the
 * plan; a broken contract aborts. Arguments: files or directories to replay instead of
 * $top_srcdir/tests/fuzz/corpus/TARGET (to check a crash input without clang).
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "tests/fuzz/fuzz.h"

#ifndef PS_FUZZ_TARGET
#error "PS_FUZZ_TARGET names the target (the corpus directory)"
#endif

#define INPUT_MAX (1024 * 1024)

static unsigned tests;

/* The "not ok" line for the input being replayed, written if it crashes the target. */
static char crash_line[512];
static size_t crash_len;

static void on_crash(int sig)
{
	if (crash_len)
		(void)!write(STDOUT_FILENO, crash_line, crash_len);
	raise(sig); /* SA_RESETHAND: the default action now */
}

static void catch_crashes(void)
{
	static const int sigs[] = {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL};
	struct sigaction sa;
	size_t i;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_crash;
	sa.sa_flags = SA_RESETHAND | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
}

/* Replay one file. 0, or -1 after a "not ok" when it cannot be read. */
static int replay_file(const char *path, const char *shown)
{
	struct stat st;
	char *buf;
	size_t len;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0 || st.st_size > INPUT_MAX) {
		printf("not ok %u - %s: %s: cannot read it or larger than 1 MiB\n", ++tests,
		       PS_FUZZ_TARGET, shown);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	buf = malloc((size_t)st.st_size + 1);
	rc = buf ? ps_read_all(fd, buf, (size_t)st.st_size + 1, &len) : -1;
	close(fd);
	if (rc != 0) {
		printf("not ok %u - %s: %s: read failed\n", ++tests, PS_FUZZ_TARGET, shown);
		free(buf);
		return -1;
	}
	++tests;
	snprintf(crash_line, sizeof(crash_line), "not ok %u - %s: %s crashed the target\n", tests,
		 PS_FUZZ_TARGET, shown);
	crash_len = strlen(crash_line);
	fflush(stdout);
	LLVMFuzzerTestOneInput((const uint8_t *)buf, len);
	crash_len = 0;
	free(buf);
	printf("ok %u - %s: %s\n", tests, PS_FUZZ_TARGET, shown);
	return 0;
}

static int skip_dots(const struct dirent *d)
{
	return d->d_name[0] != '.';
}

/* Every regular file of dir, in name order. 0 or -1. */
static int replay_dir(const char *dir)
{
	struct dirent **names;
	char path[4096];
	int n, i, rc = 0;

	n = scandir(dir, &names, skip_dots, alphasort);
	if (n < 0) {
		printf("Bail out! cannot read %s: %s\n", dir, strerror(errno));
		return -1;
	}
	if (n == 0) {
		printf("not ok %u - %s: %s holds no inputs\n", ++tests, PS_FUZZ_TARGET, dir);
		rc = -1;
	}
	for (i = 0; i < n; i++) {
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name) >=
		    sizeof(path))
			rc = -1;
		else if (replay_file(path, names[i]->d_name) < 0)
			rc = -1;
		free(names[i]);
	}
	free(names);
	return rc;
}

static int replay(const char *path)
{
	struct stat st;

	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		return replay_dir(path);
	return replay_file(path, path);
}

int main(int argc, char **argv)
{
	const char *top = getenv("top_srcdir");
	char dir[4096];
	int i, rc = 0;

	catch_crashes();
	if (argc > 1) {
		for (i = 1; i < argc; i++)
			if (replay(argv[i]) < 0)
				rc = 1;
	} else {
		if (!top || !*top) {
			printf("Bail out! top_srcdir is not set: run me from make check, or name "
			       "the inputs\n");
			return 1;
		}
		snprintf(dir, sizeof(dir), "%s/tests/fuzz/corpus/%s", top, PS_FUZZ_TARGET);
		printf("# replaying %s\n", dir);
		if (replay(dir) < 0)
			rc = 1;
	}
	printf("1..%u\n", tests);
	return rc;
}
