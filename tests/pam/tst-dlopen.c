/*
 * tst-dlopen.c: the module loads with RTLD_NOW (every symbol resolves, as in sshd or login) and
 * exports the PAM session entry points and nothing else. After Linux-PAM's tests/tst-dlopen.c.
 * Usage: tst-dlopen MODULE.so   (prints TAP)
 */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

static int n, failed;

static void check(int cond, const char *what)
{
	printf("%sok %d - %s\n", cond ? "" : "not ", ++n, what);
	if (!cond)
		failed = 1;
}

int main(int argc, char **argv)
{
	static const char *const internal[] = {"ps_config_init",    "ps_config_load",
					       "ps_request_format", "ps_secret_read",
					       "ps_spawn_helper",   "session_open"};
	void *h;
	size_t i;

	if (argc != 2) {
		fprintf(stderr, "usage: tst-dlopen MODULE.so\n");
		return 2;
	}
	h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	check(h != NULL, "module loads with RTLD_NOW");
	if (!h) {
		printf("# %s\n1..%d\n", dlerror(), n);
		return 1;
	}
	check(dlsym(h, "pam_sm_open_session") != NULL, "exports pam_sm_open_session");
	check(dlsym(h, "pam_sm_close_session") != NULL, "exports pam_sm_close_session");
	check(dlsym(h, "pam_sm_authenticate") == NULL, "does not claim the auth service");
	for (i = 0; i < sizeof(internal) / sizeof(internal[0]); i++) {
		char what[96];
		snprintf(what, sizeof(what), "does not export %s", internal[i]);
		check(dlsym(h, internal[i]) == NULL, what);
	}
	dlclose(h);
	printf("1..%d\n", n);
	return failed;
}
