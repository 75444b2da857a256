#!/bin/bash
# lint.sh: the man pages are clean under mandoc -Tlint, and they document what the code accepts:
# every configuration key, every spotify-token option and every exit code.
. "$top_srcdir/tests/lib.sh"

man="$top_srcdir/man"
if command -v mandoc >/dev/null 2>&1; then
	for page in pam_spotify.8 pam_spotify.conf.5 spotify-token.1 pam_spotify_helper.8; do
		out=$(mandoc -Tlint -W warning "$man/$page" 2>&1)
		expect "mandoc -Tlint: $page is clean${out:+ ($out)}" '[ -z "$out" ]'
	done
else
	skip "mandoc -Tlint" "mandoc is not installed"
fi

# rendered text of a page, without hyphenation or adjustment surprises
text() { MANWIDTH=200 man -l "$man/$1" 2>/dev/null | col -b; }
conf5=$(text pam_spotify.conf.5)
for key in $(sed -n 's/^\t{"\([a-z_]*\)", PS_SET_.*/\1/p' "$top_srcdir/pam/config.c"); do
	expect "pam_spotify.conf(5) documents the key $key" 'grep -q -- "^ *$key\b" <<<"$conf5"'
done
tok1=$(text spotify-token.1)
for opt in $(grep -o '"--[a-z-]\+' "$top_srcdir/keyring/reader_opts.c" | tr -d '"' | sort -u); do
	expect "spotify-token(1) documents $opt" 'grep -q -- "$opt" <<<"$tok1"'
done
for code in 0 1 2 3 5 7; do
	expect "spotify-token(1) documents exit code $code" 'grep -q -E "^ +$code\b" <<<"$tok1"'
done
pam8=$(text pam_spotify.8)
for arg in config= debug nowait; do
	expect "pam_spotify(8) documents the module argument $arg" 'grep -q -- "$arg" <<<"$pam8"'
done
done_testing
