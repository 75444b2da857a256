#!/bin/bash
# attack_keyring.sh: a user's keyring graph costs the module nothing (issue 12, attack 5). The
# module's fast path (pam/warm.c) runs as root inside the login program and looks for the user's
# keys in the user keyring. KEYCTL_SEARCH there walks every keyring the user links below, six
# levels deep: pstest1, the attacker, links 26 keyrings into their user keyring and each of them
# to 26 more, 6 levels, and a search for a key that is not there visits millions of keyrings (a
# login with timeout = 10 took 12 s). The module must list the user keyring's own links only, a
# bounded number of them: strace shows no KEYCTL_SEARCH and the same keyctl calls with and without
# the graph below the first level, and the open still takes the fast path (no process started). A
# user keyring with more links than the module's bound (64) takes the helper's path, never a
# slower one. The graph is taken down at exit, unlinked from the user keyring first (a link the
# kernel's collector removes keeps its 4 bytes of quota, see tests/lib.sh). Needs root, strace and
# an installed build (see session.sh).
. "$top_srcdir/tests/lib.sh"

need_root
[ -f "$PS_SECUREDIR/pam_spotify.so" ] && [ -x "$PS_HELPER" ] && [ -x "$PS_READER" ] ||
	skip_all "pam_spotify is not installed under its configured prefix: run make install first"
command -v strace >/dev/null || skip_all "strace is not installed (apt-get install strace)"
# strace -f follows the module's helper too, whose environment the module sets: LeakSanitizer, which
# cannot run under ptrace, would report a fatal error there. The normal pass proves the property.
[ "${PS_SANITIZERS:-no}" = yes ] && skip_all "a sanitizer build: LeakSanitizer cannot run in the traced processes"
ps_tmpdir
ps_lock_keyring
U=pstest1
ps_ensure_user $U
HOME1=$(getent passwd $U | cut -d: -f6)
STORE="$HOME1/.local/state/spotify-token"
W=26 DEPTH=6 # keyrings per level, levels
printf 'atkpkce:unused-%s\n' "$$" >"$T/clients"
ps_start_server acc --client-file "$T/clients"
CA="$T/tls/ca.pem"
DRIVER="$top_builddir/tests/pam/pam_session"
export PS_SYSLOG_FILE="$T/syslog"
: >"$PS_SYSLOG_FILE"
KEEPER_PAT='pam_spotify_helper keeper'

# the graph takes 26 x 6 = 156 keys of pstest1's quota (200 by default): raised while we hold the
# keyring lock, as ps_raise_key_quota does for the bytes
f=/proc/sys/kernel/keys/maxkeys
if [ -w $f ] && [ "$(cat $f)" -lt 1000 ]; then
	ps_on_exit "echo $(cat $f) >$f"
	echo 1000 >$f
fi

{
	echo "flow = pkce"
	echo "client_id = atkpkce"
	echo "accounts_url = $acc_URL"
	echo "ca_file = $CA"
	echo "timeout = 10"
	echo "connect_timeout = 3"
	echo "refresh_margin = 60"
	echo "scopes = user-read-email"
	echo "enroll = never"
} >"$T/pkce.conf"
chmod 644 "$T/pkce.conf"
mkdir -p "$T/pam.d"
printf '%s required pam_deny.so\n' auth account password session >"$T/pam.d/other"
printf 'session optional pam_keyinit.so force revoke\nsession required %s config=%s\n' \
	"$PS_SECUREDIR/pam_spotify.so" "$T/pkce.conf" >"$T/pam.d/pkce"
printf 'session optional pam_keyinit.so force revoke\nsession required %s config=%s nowait\n' \
	"$PS_SECUREDIR/pam_spotify.so" "$T/pkce.conf" >"$T/pam.d/nowait"

keepers() { pgrep -u $U -f "$KEEPER_PAT"; }
nkeepers() { keepers | wc -l; }
field() { sed -n "s/^$2=\\([0-9]*\\).*/\\1/p" "$T/$1.out"; } # field NAME KEY: the first number
joined() { grep -c "user $U: open: ok token still valid keyring=user .*(joined the running keeper; no helper)" "$PS_SYSLOG_FILE"; }

# the attacker's keyring graph (tests/integration/keyring_graph: DIR $T/graph, serials linked in
# the user keyring in $T/graph/top.ids, unlinked from it at exit)
GRAPH="$top_srcdir/tests/integration/keyring_graph"
graph() { KEYRING_GRAPH_W=$W KEYRING_GRAPH_D=$DEPTH "$GRAPH" $U "$T/graph" "$@"; }
mkdir -p "$T/graph"
as_attacker() { { echo 'keyctl link @u @s >/dev/null'; cat; } | as_user_q $U sh -e; }

DRIVERS=""
atk_cleanup() {
	local p
	[ -n "${PS_KEEP_TMP:-}" ] && cp -a "$T" "$PS_KEEP_TMP"
	graph drop
	for p in $DRIVERS; do
		grep -q pam_session "/proc/$p/cmdline" 2>/dev/null && kill -9 "$p" 2>/dev/null
	done
	sleep 0.3
	for p in $(keepers); do kill -9 "$p" 2>/dev/null; done
	clear_keys $U
	as_user_q $U rm -rf "$STORE"
}
ps_on_exit atk_cleanup
atk_cleanup
ps_server_control "$acc_URL" '{"expires_in": 3600}'

# enroll: a pkce refresh token minted by the fake server, written as spotify-token login would
rt=$(curl -sS --fail --cacert "$CA" -H 'Content-Type: application/json' \
	--data '{"client_id": "atkpkce", "scope": "user-read-email", "public": true}' \
	"$acc_URL/__refresh_token" | ps_json 'j["refresh_token"]')
printf 'pam_spotify-refresh 1\n%s\n' "$rt" | as_user_q $U sh -c '
	umask 077
	d="$HOME/.local/state/spotify-token"
	mkdir -p "$d" && chmod 700 "$d" &&
	cat >"$d/atkpkce.refresh.new" && mv "$d/atkpkce.refresh.new" "$d/atkpkce.refresh"'

# ==== 1. a held session: its helper stores the token and starts the keeper
PS_SHOW_CHILDREN=1 PS_HOLD_OPEN=300 "$DRIVER" "$T/pam.d" pkce $U >"$T/anchor.out" 2>&1 &
ANCHOR=$!
DRIVERS="$DRIVERS $ANCHOR"
wait_ms 15000 "grep -q '^open_uids=' '$T/anchor.out'"
check "anchor session: PAM_SUCCESS" [ "$(field anchor open)" = 0 ]
check "anchor session: one keeper runs" wait_ms 3000 "[ \"\$(nkeepers)\" = 1 ]"

# traced NAME SERVICE: one whole session (open, close) under strace -f, keyctl calls only, in
# $T/NAME.trace; the driver's output in $T/NAME.out. At most 120 s (the old module, searching the
# graph, takes some 12 s an open). LeakSanitizer cannot run under ptrace: detect_leaks=0 for
# sanitizer builds.
traced() {
	timeout 120 strace -f -qq -T -o "$T/$1.trace" -e trace=keyctl \
		env PS_SHOW_CHILDREN=1 ASAN_OPTIONS=detect_leaks=0 "$DRIVER" "$T/pam.d" "$2" $U \
		>"$T/$1.out" 2>&1
}
ncalls() { grep -c 'keyctl(KEYCTL_' "$T/$1.trace"; }
# KEYCTL_DESCRIBE calls of the login program itself (pam_keyinit's and the module's), not of a
# helper it started: the process of the first keyctl call
# (a trace of one process, without -f, has no pid column: all its lines are the program's)
first_pid() { awk '/keyctl\(KEYCTL_/ { if ($1 ~ /^[0-9]+$/) print $1; exit }' "$T/$1.trace"; }
ndescribe() {
	awk -v p="$(first_pid "$1")" '(p == "" || $1 == p) && /keyctl\(KEYCTL_DESCRIBE/' "$T/$1.trace" | wc -l
}
nsearch() { grep -c 'keyctl(KEYCTL_SEARCH' "$T/$1.trace"; }
# what the trace holds, for the log: "COUNT OPERATION" ..., and each operation's time in all (ms)
calls() {
	awk 'match($0, /keyctl\(KEYCTL_[A-Z_]*/) { op = substr($0, RSTART + 7, RLENGTH - 7)
		n[op]++; if (match($0, /<[0-9.]+>$/)) t[op] += substr($0, RSTART + 1, RLENGTH - 2) }
		END { for (op in n) printf "%d %s (%.1f ms); ", n[op], op, t[op] * 1000 }' "$T/$1.trace"
}
# the time in ms the module's keyctl calls took: KEYCTL_READ, _DESCRIBE and _SEARCH in the login
# program (pam_keyinit makes none of them; its KEYCTL_LINK of the user keyring into the new
# session keyring walks the graph too, in the kernel's cycle check, whatever module follows)
module_ms() {
	awk -v p="$(first_pid "$1")" '(p == "" || $1 == p) && /keyctl\(KEYCTL_(READ|DESCRIBE|SEARCH)/ && match($0, /<[0-9.]+>$/) {
		t += substr($0, RSTART + 1, RLENGTH - 2) } END { printf "%d", t * 1000 }' "$T/$1.trace"
}

# ==== 2. level 1 only: 26 empty keyrings in the user keyring, then a warm open as the yardstick
graph top
check "the attacker linked $W keyrings into their user keyring" [ "$(wc -l <"$T/graph/level1.ids")" = $W ]
j0=$(joined)
traced flat pkce
diag "level 1 only: open ms=$(sed -n 's/^open=[0-9]* ms=\([0-9]*\).*/\1/p' "$T/flat.out"); keyctl calls: $(calls flat)"
expect "level 1 only: warm open PAM_SUCCESS without a process" \
	'[ "$(field flat open)" = 0 ] && [ "$(field flat open_children_kb)" = 0 ]'
check "level 1 only: the open joined the keeper (fast path)" [ "$(($(joined) - j0))" = 1 ]

# ==== 3. levels 2 to 6, each keyring made in the first of the level above: a thin tree for now
graph levels
check "levels 2 to $DEPTH made ($W keyrings each)" \
	[ "$(cat "$T"/graph/level[2-9].ids | wc -l)" = $((W * (DEPTH - 1))) ]

# more links in the user keyring than the module looks at (levels 2 and 3 linked there too: 80
# in all): no warm token for the module, so the helper's path, which finds the token and joins
cat "$T/graph/level2.ids" "$T/graph/level3.ids" >"$T/extra.ids"
cat "$T/extra.ids" >>"$T/graph/top.ids"
sed 's/.*/keyctl link & @u/' "$T/extra.ids" | as_attacker
traced many pkce
diag "$((3 * W + 2)) links in the user keyring: open ms=$(sed -n 's/^open=[0-9]* ms=\([0-9]*\).*/\1/p' "$T/many.out"); keyctl calls: $(calls many)"
check "more links than the bound: the open succeeds" [ "$(field many open)" = 0 ]
check "more links than the bound: the helper's path (a process ran)" \
	[ "$(field many open_children_kb)" -gt 0 ]
check "more links than the bound: the module describes none of them" \
	[ "$(ndescribe many)" = 0 ]
sed 's/.*/keyctl unlink & @u/' "$T/extra.ids" | as_attacker >/dev/null
grep -vxF -f "$T/extra.ids" "$T/graph/top.ids" >"$T/top.new" && mv "$T/top.new" "$T/graph/top.ids"

# ==== 4. the hostile graph: every keyring of a level linked into every keyring of the level above
graph interlink
expect "the hostile graph: each level-$((DEPTH - 1)) keyring links the $W keyrings of level $DEPTH" \
	'[ "$(echo "keyctl rlist $(tail -1 "$T/graph/level$((DEPTH - 1)).ids")" | as_attacker | wc -w)" = $W ]'

expect "the hostile graph: the token's keys are still in the user keyring" \
	'[ -n "$(user_key $U spotify:token_info)" ] && [ -n "$(user_key $U spotify:access_token)" ]'
j0=$(joined)
traced graph pkce
diag "hostile graph ($W x $DEPTH): open ms=$(sed -n 's/^open=[0-9]* ms=\([0-9]*\).*/\1/p' "$T/graph.out"); keyctl calls: $(calls graph)"
check "hostile graph: no KEYCTL_SEARCH in the session (open and close)" [ "$(nsearch graph)" = 0 ]
check "hostile graph: the same keyctl calls as with level 1 only ($(ncalls graph) vs $(ncalls flat))" \
	[ "$(ncalls graph)" = "$(ncalls flat)" ]
check "hostile graph: the module describes at most its bound of 64 links ($(ndescribe graph))" \
	[ "$(ndescribe graph)" -le 64 ]
check "hostile graph: the module's keyctl calls took under 100 ms ($(module_ms graph) ms; level 1 only: $(module_ms flat) ms)" \
	[ "$(module_ms graph)" -lt 100 ]
check "hostile graph: warm open PAM_SUCCESS" [ "$(field graph open)" = 0 ]
check "hostile graph: no process started (fast path)" [ "$(field graph open_children_kb)" = 0 ]
check "hostile graph: the open joined the keeper" [ "$(($(joined) - j0))" = 1 ]

j0=$(joined)
traced nowait nowait
diag "hostile graph, nowait: open ms=$(sed -n 's/^open=[0-9]* ms=\([0-9]*\).*/\1/p' "$T/nowait.out"); keyctl calls: $(calls nowait)"
check "hostile graph, nowait: no KEYCTL_SEARCH" [ "$(nsearch nowait)" = 0 ]
expect "hostile graph, nowait: PAM_SUCCESS on the fast path" \
	'[ "$(field nowait open)" = 0 ] && [ "$(field nowait open_children_kb)" = 0 ] &&
	 [ "$(($(joined) - j0))" = 1 ]'

# no token in the keyring, nowait: the module looks for keys that are not there (where a search
# walks the whole graph) and starts the helper in the background. Only the login program is
# traced (no -f): the helper, the user's own process, walks the graph within its deadline.
clear_keys $U
timeout 120 strace -qq -T -o "$T/absent.trace" -e trace=keyctl \
	env PS_SHOW_CHILDREN=1 "$DRIVER" "$T/pam.d" nowait $U >"$T/absent.out" 2>&1
diag "hostile graph, no token, nowait: open ms=$(sed -n 's/^open=[0-9]* ms=\([0-9]*\).*/\1/p' "$T/absent.out"); keyctl calls: $(calls absent)"
check "hostile graph, no token: no KEYCTL_SEARCH in the login program" [ "$(nsearch absent)" = 0 ]
check "hostile graph, no token: the module's keyctl calls took under 100 ms ($(module_ms absent) ms)" \
	[ "$(module_ms absent)" -lt 100 ]
check "hostile graph, no token, nowait: PAM_SUCCESS" [ "$(field absent open)" = 0 ]
helpers() { pgrep -u $U -f pam_spotify_helper | grep -vxF "$(keepers)"; }
wait_ms 60000 '[ -z "$(helpers)" ]' || diag "the nowait helper still runs after 60 s"

# ==== 5. the graph goes (unlinked from the user keyring first), then the last session closes
cp "$T/graph/level1.ids" "$T/level1.ids"
graph drop
expect "the graph is unlinked from the user keyring" \
	'! as_user_q $U keyctl rlist @u | tr " " "\n" | grep -qxF -f "$T/level1.ids"'
kill -USR1 $ANCHOR
wait $ANCHOR
check "last close: PAM_SUCCESS" [ "$(field anchor close)" = 0 ]
check "last close: the keeper ends within 3 s" wait_ms 3000 "[ \"\$(nkeepers)\" = 0 ]"

done_testing
