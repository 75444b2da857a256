#!/bin/bash
# reports.sh: after the rest of the suite (see Makefile.am), no program of this build reported a
# bug. In a sanitizer build (configure --enable-sanitizers) every ASan, LSan or UBSan report is a
# file asan.PROGRAM.PID or ubsan.PROGRAM.PID in $PS_REPORT_DIR, whoever ran the program and with
# whatever environment (common/sanitizer_options.c); in the valgrind pass (PS_VALGRIND=1, see
# tests/run) memcheck writes one file vg.PID per process there, empty unless it found an error
# or a definite leak. Any report fails, and its head is shown. Canaries with a deliberate bug
# then prove that such a bug would have been reported there: as an unprivileged user, with no
# *SAN_OPTIONS in the environment, and in a non-dumpable process like the helper.
. "$top_srcdir/tests/lib.sh"

dir=${PS_REPORT_DIR:-}
san=${PS_SANITIZERS:-no}
vg=${PS_VALGRIND:-0}
[ "$san" = yes ] || [ "$vg" = 1 ] ||
	skip_all "neither a sanitizer build (configure --enable-sanitizers) nor the valgrind pass (PS_VALGRIND=1)"
[ "$san" = yes ] && [ "$vg" = 1 ] && bail "the valgrind pass needs a build without sanitizers"
[ -n "$dir" ] && [ -d "$dir" ] ||
	bail "report directory '$dir' is missing, so reports would be lost: tests/setup makes it (mode 1777)"

check "the report directory $dir is mode 1777 (test users' processes write there)" \
	test "$(stat -c %a "$dir")" = 1777

# Keepers and detached waiters of this build may still be ending: their reports come at exit.
pat="$(dirname "$PS_HELPER")/(valgrind/)?pam_spotify_helper|$top_builddir/helper/(valgrind/)?pam_spotify_helper"
i=0
while pgrep -f "$pat" >/dev/null && [ $i -lt 150 ]; do
	i=$((i + 1))
	sleep 0.1
done
if pgrep -f "$pat" >/dev/null; then
	diag "still running after 15 s (their reports, if any, are not counted):"
	pgrep -a -f "$pat" | sed 's/^/#   /'
fi

# report_files: the reports in $dir, one name a line (empty vg.* files are clean processes).
report_files() {
	find "$dir" -maxdepth 1 -type f \( -name 'asan.*' -o -name 'ubsan.*' -o -name 'vg.*' \) \
		-size +0 -printf '%f\n' | sort
}
show_heads() {
	local f
	for f in "$@"; do
		diag "--- $dir/$f"
		head -25 "$dir/$f" | sed 's/^/#   /'
	done
}

mapfile -t reports < <(report_files)
if [ "$san" = yes ]; then
	what="sanitizer (ASan, LSan, UBSan)"
else
	what="valgrind memcheck"
	n=$(find "$dir" -maxdepth 1 -name 'vg.*' | wc -l)
	check "valgrind ran: $n processes of the helper or the reader were checked" test "$n" -gt 0
fi
if [ ${#reports[@]} -eq 0 ]; then
	ok "no $what report from the suite"
else
	not_ok "no $what report from the suite: ${#reports[@]} in $dir"
	show_heads "${reports[@]}"
fi

# --- the canaries: each bug must show up as a report in $dir, then goes away again
CANARY="$top_builddir/tests/sanitizer/canary"
[ -x "$CANARY" ] || bail "$CANARY is not built"
ps_tmpdir
mkdir "$T/bin"
cp "$CANARY" "$T/bin/canary"
chmod 755 "$T/bin" "$T/bin/canary"
ps_valgrind_wrap "$T/bin/canary"
# As an unprivileged user when we can, as the helper runs; with an environment as bare.
if [ "$(id -u)" -eq 0 ]; then
	ps_ensure_user pstest1
	as="setpriv --reuid=pstest1 --regid=$(id -g pstest1) --init-groups --reset-env --"
else
	as=""
fi

# canary MODE NAME PATTERN: run the canary without *SAN_OPTIONS; a new report that matches
# PATTERN must appear.
canary() {
	local mode=$1 name=$2 pattern=$3 before new f found=""
	before=$(report_files)
	$as env -u ASAN_OPTIONS -u UBSAN_OPTIONS -u LSAN_OPTIONS "$T/bin/canary" "$mode" \
		>"$T/$mode.out" 2>"$T/$mode.err"
	new=$(comm -13 <(echo "$before") <(report_files))
	for f in $new; do
		grep -qE -- "$pattern" "$dir/$f" && found="$f"
		rm -f "$dir/$f"
	done
	if [ -n "$found" ]; then
		ok "$name: reported in $dir ($found)"
	else
		not_ok "$name: no report matching '$pattern' in $dir"
		diag "new report files: ${new:-none}; stderr: $(head -5 "$T/$mode.err")"
	fi
}
if [ "$san" = yes ]; then
	canary heap-overflow "a heap buffer overflow (ASan)" "ERROR: AddressSanitizer: heap-buffer-overflow"
	canary signed-overflow "a signed integer overflow (UBSan)" "runtime error: signed integer overflow"
	canary leak "a leak (LSan)" "ERROR: LeakSanitizer: detected memory leaks"
	canary leak-nondumpable "a leak in a non-dumpable process, as the helper is (LSan)" \
		"ERROR: LeakSanitizer: detected memory leaks"
else
	canary heap-overflow "a heap buffer overflow (memcheck)" "Invalid write of size 1"
	canary leak "a leak (memcheck)" "definitely lost"
	canary leak-nondumpable "a leak in a non-dumpable process, as the helper is (memcheck)" \
		"definitely lost"
fi

done_testing
