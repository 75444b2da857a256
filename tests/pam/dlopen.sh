#!/bin/sh
# dlopen.sh: the built module passes tst-dlopen and links nothing but libpam (and libc).
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

# the version script: every dynamic symbol the module defines is a pam_sm_* entry point
exports=$(nm -D --defined-only "$so" 2>/dev/null | awk '{print $3}' | sort | tr '\n' ' ')
case "$exports" in
"pam_sm_close_session pam_sm_open_session ") ok "module exports only pam_sm_* (exports: $exports)" ;;
*) not_ok "module exports only pam_sm_* (exports: ${exports:-none, or nm failed})" ;;
esac

libs=$(ldd "$so" | awk '{print $1}' | grep -v -e '^linux-vdso' -e '^/' | sed 's/\.so.*//' | sort -u | tr '\n' ' ')
case "$libs" in
*libcurl* | *libjson* | *libssl* | *libcrypto* | *libkeyutils*)
	not_ok "module links only libpam and libc (links: $libs)" ;;
*) ok "module links only libpam and libc (links: $libs)" ;;
esac
reader="$top_builddir/keyring/spotify-token"
if [ -x "$reader" ]; then
	rlibs=$(ldd "$reader" | awk '{print $1}' | grep -v -e '^linux-vdso' -e '^/' | tr '\n' ' ')
	case "$rlibs" in
	*libcurl* | *libjson* | *libssl* | *libcrypto* | *libpam*)
		not_ok "spotify-token links only libkeyutils and libc (links: $rlibs)" ;;
	*) ok "spotify-token links only libkeyutils and libc (links: $rlibs)" ;;
	esac
else
	not_ok "spotify-token is built"
fi
done_testing
