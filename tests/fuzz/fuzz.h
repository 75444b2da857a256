/*
 * fuzz.h: what every libFuzzer target in tests/fuzz shares: the entry point's prototype, an
 * exact-size copy of the input (so ASan sees any read past it), and the contract checks that
 * abort() with a line on stderr when a parser breaks its promise.
 */
#ifndef PS_FUZZ_H
#define PS_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A heap copy of exactly size bytes (no terminator); free with ps_fuzz_free. */
char *ps_fuzz_copy(const uint8_t *data, size_t size);

/* A heap copy of size bytes plus a NUL, for the parsers that take a C string. */
char *ps_fuzz_cstring(const uint8_t *data, size_t size);

void ps_fuzz_free(char *p, size_t size);

/* Print "contract broken: WHAT" and abort(). */
void ps_fuzz_fail(const char *what) __attribute__((noreturn));

/* s is NUL-terminated within its cap bytes. */
void ps_fuzz_check_cstr(const char *s, size_t cap, const char *what);

/* s is terminated within cap and holds no control byte (below 0x20, or 0x7f). */
void ps_fuzz_check_text(const char *s, size_t cap, const char *what);

/* An error message: terminated within errlen, one non-empty line, no control bytes. */
void ps_fuzz_check_err(const char *err, size_t errlen);

/* Every byte of s[0..len) is printable ASCII (0x20-0x7e). */
bool ps_fuzz_printable(const char *s, size_t len);

/* len bytes at p are all zero. */
bool ps_fuzz_zeroed(const void *p, size_t len);

#endif
