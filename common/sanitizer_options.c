/*
 * sanitizer_options.c: the defaults of AddressSanitizer and UndefinedBehaviorSanitizer, compiled
 * into every program of a --enable-sanitizers build (the helper, the reader, the test programs;
 * the module runs inside one of those and takes its host's). Linked only in that build.
 *
 * Reports go to files in PS_REPORT_DIR (configure --with-sanitizer-log-dir), named
 * asan.PROGRAM.PID or ubsan.PROGRAM.PID, never only to stderr: the module runs the helper with a
 * minimal environment and stderr on /dev/null, and the keeper is a daemon, so neither sees
 * ASAN_OPTIONS or has a stderr anyone reads. The test suite fails on any file there
 * (tests/sanitizer/reports.sh, whose canaries prove each kind of report lands there). An
 * ASAN_OPTIONS or UBSAN_OPTIONS in the environment still overrides single options.
 *
 * LeakSanitizer stays on everywhere, the non-dumpable helper included: its exit-time check stops
 * the process with ptrace from a clone of it, and sets the process dumpable for the moment of
 * that check (sanitizer_common's StopTheWorld), so it works as the unprivileged user. That moment
 * is one reason a sanitizer build is for tests only.
 */
#include <config.h>

#include <dlfcn.h>

#define ASAN_LOG  PS_REPORT_DIR "/asan"
#define UBSAN_LOG PS_REPORT_DIR "/ubsan"

/* Called by the sanitizer runtimes at start-up; declared here for -Wmissing-prototypes. */
const char *__asan_default_options(void);
const char *__ubsan_default_options(void);

const char *__asan_default_options(void)
{
	return "log_path=" ASAN_LOG ":log_exe_name=1:detect_leaks=1:check_initialization_order=1"
	       ":strict_init_order=1:detect_stack_use_after_return=1";
}

/*
 * With GCC, UBSan is a runtime of its own (libubsan) beside libasan, with its own copy of the
 * report file. It sets that path with __sanitizer_set_report_path(log_path), but the call binds
 * to libasan's exported function of that name: it sets ASan's path (hence log_path here is ASan's,
 * to leave it as it was) and UBSan's reports would still go to stderr. So set UBSan's own one
 * through libubsan's symbol. With clang, UBSan runs inside the ASan runtime and uses its path.
 */
const char *__ubsan_default_options(void)
{
	return "log_path=" ASAN_LOG ":log_exe_name=1:print_stacktrace=1:halt_on_error=1";
}

__attribute__((constructor)) static void ubsan_report_path(void)
{
	void *ubsan = dlopen("libubsan.so.1", RTLD_NOW | RTLD_NOLOAD);
	void (*set_path)(const char *);

	if (!ubsan)
		return;
	*(void **)&set_path = dlsym(ubsan, "__sanitizer_set_report_path");
	if (set_path)
		set_path(UBSAN_LOG);
	dlclose(ubsan);
}
