#!/bin/sh
# dlopen.sh: the built module passes tst-dlopen and links nothing but libpam (and libc); the
# reader nothing but libkeyutils (and libc).
. "$top_srcdir/tests/lib.sh"

so="$top_builddir/pam/.libs/pam_spotify.so"
[ -f "$so" ] || bail "$so not built"
# renumber tst-dlopen's TAP into this script's
out=$("$top_builddir/tests/pam/tst-dlopen" "$so")
while IFS= read -r l; do
	case "$l" in
	"ok "*) ok "${l#ok [0-9]* - }" ;;
	"not ok "*) not_ok "${l#not ok [0-9]* - }" ;;
	"# "*) echo "$l" ;;
	esac
done <<EOF
$out
EOF

# needed FILE: its DT_NEEDED libraries (what it links itself, not what those pull in), sorted.
needed() { LC_ALL=C readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p' | sort | tr '\n' ' '; }
# only FILE WHAT LIB...: FILE links exactly these libraries; in a sanitizer build the sanitizer
# runtimes too (the compiler adds them to every link there), and nothing else.
only() {
	local f=$1 what=$2 got want lib
	shift 2
	want=$(printf '%s\n' "$@" | sort | tr '\n' ' ')
	got=$(needed "$f")
	if [ "${PS_SANITIZERS:-no}" = yes ]; then
		what="$what, and the sanitizer runtimes (a sanitizer build)"
		got=$(for lib in $got; do
			case "$lib" in libasan.so.* | libubsan.so.*) ;; *) echo "$lib" ;; esac
		done | tr '\n' ' ')
	fi
	if [ "$got" = "$want" ]; then
		ok "$(basename "$f") links only $what (NEEDED: $(needed "$f"))"
	else
		not_ok "$(basename "$f") links only $what (NEEDED: $(needed "$f"))"
	fi
}
command -v readelf >/dev/null 2>&1 || bail "readelf not found (binutils)"
only "$so" "libpam and libc" libpam.so.0 libc.so.6
# the version script: every dynamic symbol the module defines is a pam_sm_* entry point
exports=$(nm -D --defined-only "$so" 2>/dev/null | awk '{print $3}' | sort | tr '\n' ' ')
case "$exports" in
"pam_sm_close_session pam_sm_open_session ") ok "module exports only pam_sm_* (exports: $exports)" ;;
*) not_ok "module exports only pam_sm_* (exports: ${exports:-none, or nm failed})" ;;
esac

reader="$top_builddir/keyring/spotify-token"
if [ -x "$reader" ]; then
	only "$reader" "libkeyutils and libc" libkeyutils.so.1 libc.so.6
else
	not_ok "spotify-token is built"
fi
done_testing
