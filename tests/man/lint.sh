#!/bin/bash
# lint.sh: the man pages are clean under mandoc -Tlint (style messages included) and groff -ww,
# and they document what the code accepts: every configuration key (also in the example file),
# every spotify-token and helper option and mode, every exit code, every environment variable the
# programs read; and each page has the sections a reader looks for.
. "$top_srcdir/tests/lib.sh"

man="$top_srcdir/man"
pages="pam_spotify.8 pam_spotify.conf.5 spotify-token.1 pam_spotify_helper.8"
if command -v mandoc >/dev/null 2>&1; then
	for page in $pages; do
		out=$(mandoc -Tlint "$man/$page" 2>&1)
		expect "mandoc -Tlint: $page is clean${out:+ ($out)}" '[ -z "$out" ]'
	done
else
	skip "mandoc -Tlint" "mandoc is not installed"
fi
if command -v groff >/dev/null 2>&1; then
	for page in $pages; do
		out=$(groff -ww -z -t -man "$man/$page" 2>&1)
		expect "groff -ww: $page is clean${out:+ ($out)}" '[ -z "$out" ]'
	done
else
	skip "groff -ww" "groff is not installed"
fi

# rendered text of a page, without hyphenation or adjustment surprises
text() { MANWIDTH=200 man -l "$man/$1" 2>/dev/null | col -b; }
conf5=$(text pam_spotify.conf.5)
example="$top_srcdir/pam/pam_spotify.conf.example"
for key in $(sed -n 's/^\t{"\([a-z_]*\)", PS_SET_.*/\1/p' "$top_srcdir/common/config.c"); do
	expect "pam_spotify.conf(5) documents the key $key" 'grep -q -- "^ *$key\b" <<<"$conf5"'
	expect "the example configuration shows the key $key" 'grep -q -E "^#?$key = " "$example"'
done
tok1=$(text spotify-token.1)
for opt in $(grep -o '"--[a-z-]\+' "$top_srcdir/keyring/reader_opts.c" | tr -d '"' | sort -u); do
	expect "spotify-token(1) documents $opt" 'grep -q -- "$opt" <<<"$tok1"'
done
for cmd in login logout refresh; do
	expect "spotify-token(1) documents the subcommand $cmd" 'grep -q -E "^ +$cmd\b" <<<"$tok1"'
done
for code in 0 1 2 3 4 5 6 7; do
	expect "spotify-token(1) documents exit code $code" 'grep -q -E "^ +$code\b" <<<"$tok1"'
done
helper8=$(text pam_spotify_helper.8)
# the modes and options the helper compares its arguments with (main.c and its roles)
helper_opts=$(grep -o -E 'str(n)?cmp\((argv\[[^]]+\]|arg), "[^"]+"' "$top_srcdir"/helper/main.c "$top_srcdir"/helper/role_*.c |
	sed 's/.*"\(.*\)"/\1/; s/=$//' | sort -u)
expect "the helper's modes and options are found in its source ($(echo $helper_opts))" \
	'[ "$(wc -w <<<"$helper_opts")" -ge 10 ]'
for opt in $helper_opts; do
	expect "pam_spotify_helper(8) documents $opt" 'grep -q -E -- "^ +([a-z]+, )*$opt\b" <<<"$helper8"'
done
for code in 0 1 2 4 5 6 7; do
	expect "pam_spotify_helper(8) documents exit code $code" 'grep -q -E "^ +$code\b" <<<"$helper8"'
done
pam8=$(text pam_spotify.8)
for arg in config= debug nowait; do
	expect "pam_spotify(8) documents the module argument $arg" 'grep -q -- "$arg" <<<"$pam8"'
done
# every environment variable a program reads is in the ENVIRONMENT section of the page of each
# program that runs the code reading it: the helper's (helper/*.c) in pam_spotify_helper(8), and,
# since spotify-token runs the helper for login, logout and refresh, also in spotify-token(1) --
# but for the system service's (helper/service.c: LISTEN_FDS, CREDENTIALS_DIRECTORY...), which
# systemd or the module sets for that role alone and spotify-token never runs; the reader's
# (keyring/*.c) in spotify-token(1)
env_vars() { grep -h -o -E '(getenv|unsetenv)\("[A-Z_]+"\)' "$@" | sed 's/.*("\(.*\)")/\1/' | sort -u; }
env_documented() { sed -n "/^ENVIRONMENT/,/^FILES/p" <<<"$1" | grep -q -w "$2"; }
user_side=$(ls "$top_srcdir"/helper/*.c | grep -v '/service\.c$')
service_vars=$(env_vars "$top_srcdir/helper/service.c")
expect "the system service's environment variables are found in its source ($(echo $service_vars))" \
	'[ -n "$service_vars" ]'
for var in $(env_vars "$top_srcdir"/helper/*.c); do
	expect "pam_spotify_helper(8) documents the environment variable $var" 'env_documented "$helper8" "$var"'
done
for var in $(env_vars $user_side "$top_srcdir"/keyring/*.c); do
	expect "spotify-token(1) documents the environment variable $var" 'env_documented "$tok1" "$var"'
done
for page in $pages; do
	sections=$(grep -E '^\.SH ' "$man/$page")
	for s in DESCRIPTION FILES EXAMPLES "SEE ALSO"; do
		expect "$page has a $s section" 'grep -q -x "\.SH \"\?$s\"\?" <<<"$sections"'
	done
done
for page in pam_spotify.8 spotify-token.1 pam_spotify_helper.8; do
	expect "$page has an ENVIRONMENT section" 'grep -q -x "\.SH ENVIRONMENT" "$man/$page"'
done
done_testing
