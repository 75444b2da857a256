/*
 * launcher.c: the valgrind pass's stand-in for an installed program (tests/valgrind/wrap compiles
 * it, with the paths below, at the program's path; never part of a normal install). It runs the
 * real program, moved to valgrind/NAME beside it, under memcheck; or directly for a first argument
 * among PS_VG_NATIVE.
 *
 * Why a program and not a script: the helper must be installed 0711 (pam_spotify_helper(8)), and a
 * script cannot be: its interpreter has to read it. The launcher is 0711 and root's like the real
 * helper, so the module's check of the helper file (pam/spawn.h) runs unchanged in the valgrind
 * pass. What that pass gives up, and only there: valgrind loads the real program by reading it, so
 * the copy in valgrind/ is 0755 and the helper is dumpable from valgrind's exec until its own
 * PR_SET_DUMPABLE; the request still goes to it only after its hardened line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if !defined(PS_VG_VALGRIND) || !defined(PS_VG_REAL) || !defined(PS_VG_REPORTS) ||                 \
	!defined(PS_VG_NATIVE)
#error "built by tests/valgrind/wrap, which defines PS_VG_VALGRIND, PS_VG_REAL, PS_VG_REPORTS and PS_VG_NATIVE"
#endif

/* wrap looks for this text to tell a launcher from the real program */
static const char marker[] = "pam_spotify valgrind launcher";

/* arg is one of the space-separated words of PS_VG_NATIVE */
static int native(const char *arg)
{
	static const char list[] = PS_VG_NATIVE;
	const char *p = list;
	size_t n = strlen(arg);

	while (n && (p = strstr(p, arg)) != NULL) {
		if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
			return 1;
		p += n;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static char *const opts[] = {
		"--quiet",
		"--error-exitcode=99",
		"--leak-check=full",
		"--show-leak-kinds=definite",
		"--errors-for-leak-kinds=definite",
		"--track-fds=no",
		"--log-file=" PS_VG_REPORTS "/vg.%p",
	};
	size_t nopts = sizeof(opts) / sizeof(opts[0]), i;
	char **vargv;

	argv[0] = (char *)PS_VG_REAL; /* as the wrapper script had it: the real path, same name */
	if (argc > 1 && native(argv[1])) {
		execv(PS_VG_REAL, argv);
		fprintf(stderr, "%s: cannot run %s\n", marker, PS_VG_REAL);
		return 127;
	}
	vargv = calloc(nopts + (size_t)argc + 2, sizeof(*vargv));
	if (!vargv)
		return 127;
	vargv[0] = (char *)PS_VG_VALGRIND;
	for (i = 0; i < nopts; i++)
		vargv[1 + i] = opts[i];
	for (i = 0; i < (size_t)argc; i++)
		vargv[1 + nopts + i] = argv[i];
	execv(PS_VG_VALGRIND, vargv);
	fprintf(stderr, "%s: cannot run %s\n", marker, PS_VG_VALGRIND);
	return 127;
}
