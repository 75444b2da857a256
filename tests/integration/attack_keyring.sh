#!/bin/bash
# attack_keyring.sh: a user's keyring graph costs the login nothing (issue 12, attack 5).
# KEYCTL_SEARCH walks every keyring the user links below their user keyring, six levels deep:
# pstest1, the attacker, links 26 keyrings into their user keyring and each of them to 26 more, 6
# levels, and a search for a key that is not there visits millions of keyrings (a login of the
# old module, which searched there as root, took 12 s with timeout = 10). The module now never
# reads the keyring: it asks the user's keeper (helper/keeper.h), which holds the token. So, under
# strace: the login program's keyctl calls are pam_keyinit's alone (the module makes no
# KEYCTL_SEARCH, _READ or _DESCRIBE), the same with and without the graph below the first level,
# and with 80 links in the user keyring; they take no time of the module's; and the open stays a
# round trip to the keeper (no process started, the keeper's "held by the keeper" answer), nowait
# too. pam_keyinit's own KEYCTL_LINK of the user keyring into the new session keyring walks the
# graph in the kernel's cycle check (seconds here) whatever module follows: the module's part of
# an open is the open's time but pam_keyinit's keyctl calls. The keeper the helper starts when
# none runs reads the user's keys as the user, in the user's own time: with a token in the
# keyring it finds it at once and the login makes no request; with none, the login program still
# searches nothing and returns within its timeout. The graph is taken down at exit, unlinked from
# the user keyring first (a link the kernel's collector removes keeps its 4 bytes of quota, see
# tests/lib.sh). Needs root, strace and an installed build (see session.sh).
# Gone with pam/warm.c: the module's bound of 64 links (beyond it, the old module took the
# helper's path); with 80 links the open is now simply the keeper's round trip, like any other.
. "$top_srcdir/tests/lib.sh"

need_root
ps_need_install
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

# the graph takes 26 x 6 = 156 keys of pstest1's quota (200 by default): raised while we hold the
# keyring lock, as ps_raise_key_quota does for the bytes
f=/proc/sys/kernel/keys/maxkeys
if [ -w $f ] && [ "$(cat $f)" -lt 1000 ]; then
	ps_on_exit "echo $(cat $f) >$f"
	echo 1000 >$f
fi

# the pkce service, its nowait twin, and keep (remove_on_close = no): the same keeper's configuration
PK=("flow = pkce" "client_id = atkpkce" "timeout = 10" "connect_timeout = 3" "refresh_margin = 60"
	"scopes = user-read-email" "enroll = never")
ps_conf "$T/pkce.conf" "${PK[@]}"
ps_conf "$T/keep.conf" "${PK[@]}" "remove_on_close = no"
ps_pam_service "$T/pam.d" pkce "$T/pkce.conf"
ps_pam_service "$T/pam.d" nowait "$T/pkce.conf" nowait
ps_pam_service "$T/pam.d" keep "$T/keep.conf"

keepers() { ps_keepers $U; }
nkeepers() { ps_nkeepers $U; }
renewals() { pgrep -u $U -f 'pam_spotify_helper renew' || true; }
requests() { ps_server_stats "$acc_URL" | ps_json 'j["token_requests"]'; }
field() { sed -n "s/^$2=\\([0-9]*\\).*/\\1/p" "$T/$1.out"; } # field NAME KEY: the first number
held() { grep -c "user $U: open: ok token still valid keyring=user expires_in=[0-9]* (held by the keeper)$" "$PS_SYSLOG_FILE"; }
told() { grep -c "user $U: open: ok the keeper was told (nowait" "$PS_SYSLOG_FILE"; }

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
	for p in $(keepers) $(renewals); do kill -9 "$p" 2>/dev/null; done
	clear_keys $U
	as_user_q $U rm -rf "$STORE"
}
ps_on_exit atk_cleanup
atk_cleanup
ps_server_control "$acc_URL" '{"expires_in": 3600}'

ps_enroll $U atkpkce || bail "cannot mint a refresh token"

# ==== 1. a held session: its helper starts the keeper, which gets the token (remove_on_close =
# no: the token stays for section 5, and the keeper's exit touches no key)
PS_SHOW_CHILDREN=1 PS_HOLD_OPEN=300 "$DRIVER" "$T/pam.d" keep $U >"$T/anchor.out" 2>&1 &
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

# module_calls NAME: the KEYCTL_READ, _DESCRIBE and _SEARCH calls of the login program (the
# module's: pam_keyinit makes none of them)
module_calls() {
	awk -v p="$(first_pid "$1")" '(p == "" || $1 == p) && /keyctl\(KEYCTL_(READ|DESCRIBE|SEARCH)/' "$T/$1.trace" | wc -l
}
open_ms() { sed -n 's/^open=[0-9]* ms=\([0-9]*\).*/\1/p' "$T/$1.out"; }
# own_ms NAME: the open's time but for pam_keyinit's keyctl calls (its KEYCTL_LINK of the user
# keyring into the new session keyring walks the graph, in the kernel's cycle check, whatever
# module follows: seconds here): the part of the open that is the module's
own_ms() {
	local k
	k=$(awk -v p="$(first_pid "$1")" '(p == "" || $1 == p) && /keyctl\(KEYCTL_(JOIN_SESSION_KEYRING|LINK|REVOKE)/ && match($0, /<[0-9.]+>$/) {
		t += substr($0, RSTART + 1, RLENGTH - 2) } END { printf "%d", t * 1000 }' "$T/$1.trace")
	echo $(($(open_ms "$1") - k))
}

# ==== 2. level 1 only: 26 empty keyrings in the user keyring, then a warm open as the yardstick
graph top
check "the attacker linked $W keyrings into their user keyring" [ "$(wc -l <"$T/graph/level1.ids")" = $W ]
j0=$(held)
traced flat pkce
diag "level 1 only: open ms=$(open_ms flat); keyctl calls: $(calls flat)"
expect "level 1 only: warm open PAM_SUCCESS without a process" \
	'[ "$(field flat open)" = 0 ] && [ "$(field flat open_children_kb)" = 0 ]'
check "level 1 only: the keeper answered the open (held by the keeper)" [ "$(($(held) - j0))" = 1 ]
check "level 1 only: the module reads, describes and searches nothing in the keyring" [ "$(module_calls flat)" = 0 ]

# ==== 3. levels 2 to 6, each keyring made in the first of the level above: a thin tree for now
graph levels
check "levels 2 to $DEPTH made ($W keyrings each)" \
	[ "$(cat "$T"/graph/level[2-9].ids | wc -l)" = $((W * (DEPTH - 1))) ]

# 80 links in the user keyring (levels 2 and 3 linked there too), more than the old module's
# bound of 64: the module does not look, the open is the keeper's round trip as before
cat "$T/graph/level2.ids" "$T/graph/level3.ids" >"$T/extra.ids"
cat "$T/extra.ids" >>"$T/graph/top.ids"
sed 's/.*/keyctl link & @u/' "$T/extra.ids" | as_attacker
j0=$(held)
traced many pkce
diag "$((3 * W + 2)) links in the user keyring: open ms=$(open_ms many); keyctl calls: $(calls many)"
expect "$((3 * W + 2)) links in the user keyring: warm open PAM_SUCCESS without a process, the keeper's answer" \
	'[ "$(field many open)" = 0 ] && [ "$(field many open_children_kb)" = 0 ] && [ "$(($(held) - j0))" = 1 ]'
check "$((3 * W + 2)) links in the user keyring: the module describes none of them ($(ndescribe many))" \
	[ "$(ndescribe many)" = 0 ]
check "$((3 * W + 2)) links in the user keyring: the same keyctl calls as with level 1 only ($(ncalls many) vs $(ncalls flat))" \
	[ "$(ncalls many)" = "$(ncalls flat)" ]
sed 's/.*/keyctl unlink & @u/' "$T/extra.ids" | as_attacker >/dev/null
grep -vxF -f "$T/extra.ids" "$T/graph/top.ids" >"$T/top.new" && mv "$T/top.new" "$T/graph/top.ids"

# ==== 4. the hostile graph: every keyring of a level linked into every keyring of the level above
graph interlink
expect "the hostile graph: each level-$((DEPTH - 1)) keyring links the $W keyrings of level $DEPTH" \
	'[ "$(echo "keyctl rlist $(tail -1 "$T/graph/level$((DEPTH - 1)).ids")" | as_attacker | wc -w)" = $W ]'

expect "the hostile graph: the token's keys are still in the user keyring" \
	'[ -n "$(user_key $U spotify:token_info)" ] && [ -n "$(user_key $U spotify:access_token)" ]'
j0=$(held)
traced graph pkce
diag "hostile graph ($W x $DEPTH): open ms=$(open_ms graph), the module's $(own_ms graph); keyctl calls: $(calls graph)"
check "hostile graph: no KEYCTL_SEARCH in the session (open and close)" [ "$(nsearch graph)" = 0 ]
check "hostile graph: the same keyctl calls as with level 1 only ($(ncalls graph) vs $(ncalls flat))" \
	[ "$(ncalls graph)" = "$(ncalls flat)" ]
check "hostile graph: the module reads, describes and searches nothing in the keyring ($(module_calls graph))" \
	[ "$(module_calls graph)" = 0 ]
check "hostile graph: the module's keyctl calls took under 100 ms ($(module_ms graph) ms; level 1 only: $(module_ms flat) ms)" \
	[ "$(module_ms graph)" -lt 100 ]
check "hostile graph: the open but pam_keyinit's keyctl calls took under 1 s ($(own_ms graph) ms of $(open_ms graph) ms)" \
	[ "$(own_ms graph)" -lt 1000 ]
check "hostile graph: warm open PAM_SUCCESS" [ "$(field graph open)" = 0 ]
check "hostile graph: no process started" [ "$(field graph open_children_kb)" = 0 ]
check "hostile graph: the keeper answered the open (held by the keeper)" [ "$(($(held) - j0))" = 1 ]

j0=$(told)
traced nowait nowait
diag "hostile graph, nowait: open ms=$(open_ms nowait); keyctl calls: $(calls nowait)"
expect "hostile graph, nowait: no KEYCTL_SEARCH, and the module reads the keyring not at all" \
	'[ "$(nsearch nowait)" = 0 ] && [ "$(module_calls nowait)" = 0 ]'
expect "hostile graph, nowait: PAM_SUCCESS without a process, the keeper told" \
	'[ "$(field nowait open)" = 0 ] && [ "$(field nowait open_children_kb)" = 0 ] &&
	 [ "$(($(told) - j0))" = 1 ]'

# ==== 5. no keeper: the helper starts one, which reads the user's keys as the user, in the user's
# own time. Only the login program is traced (no -f: the keeper lives on, the user's process).
kill -USR1 $ANCHOR
wait $ANCHOR
check "anchor close: PAM_SUCCESS" [ "$(field anchor close)" = 0 ]
check "anchor close: the keeper ends within 3 s" wait_ms 3000 "[ \"\$(nkeepers)\" = 0 ]"
# traced_login NAME SERVICE: as traced, the login program alone
traced_login() {
	timeout 120 strace -qq -T -o "$T/$1.trace" -e trace=keyctl \
		env PS_SHOW_CHILDREN=1 ASAN_OPTIONS=detect_leaks=0 "$DRIVER" "$T/pam.d" "$2" $U \
		>"$T/$1.out" 2>&1
}
# a token in the keyring: the keeper finds it among the user keyring's own keys at once
r0=$(requests)
traced_login present keep
diag "hostile graph, a token, no keeper: open ms=$(open_ms present), the module's $(own_ms present); keyctl calls: $(calls present)"
expect "hostile graph, a token, no keeper: PAM_SUCCESS, the helper ran, no request: the new keeper took the keyring's token" \
	'[ "$(field present open)" = 0 ] && [ "$(field present open_children_kb)" -gt 0 ] && [ "$(($(requests) - r0))" = 0 ]'
check "hostile graph, a token, no keeper: the module's part of the open took under 3 s ($(own_ms present) ms)" \
	[ "$(own_ms present)" -lt 3000 ]
expect "hostile graph, a token, no keeper: no KEYCTL_SEARCH in the login program, which reads the keyring not at all" \
	'[ "$(nsearch present)" = 0 ] && [ "$(module_calls present)" = 0 ]'
check "hostile graph, a token: the keeper ends with the session, within 3 s" wait_ms 3000 "[ \"\$(nkeepers)\" = 0 ]"
# no token in the keyring, where a search for it walks the whole graph: whatever that costs the
# user's keeper, the login program makes no search and returns within its timeout (10 s)
clear_keys $U
r0=$(requests)
traced_login absent keep
diag "hostile graph, no token, no keeper: open ms=$(open_ms absent), the module's $(own_ms absent) ($(($(requests) - r0)) requests); keyctl calls: $(calls absent)"
diag "hostile graph, no token, no keeper: the login's answer: $(grep "user $U: open:" "$PS_SYSLOG_FILE" | tail -1 | sed 's/^.*: open: //' | cut -c1-160)"
expect "hostile graph, no token, no keeper: no KEYCTL_SEARCH in the login program, which reads the keyring not at all" \
	'[ "$(nsearch absent)" = 0 ] && [ "$(module_calls absent)" = 0 ]'
expect "hostile graph, no token, no keeper: the module's part of the open is within its timeout ($(own_ms absent) ms < 11000)" \
	'[ -n "$(field absent open)" ] && [ "$(own_ms absent)" -lt 11000 ]'
# the user's keeper, wherever its read of the graph got, is of no more interest
for p in $(keepers) $(renewals); do kill -9 "$p" 2>/dev/null; done
wait_ms 3000 '[ "$(nkeepers)" = 0 ]'

# ==== 6. the graph goes (unlinked from the user keyring first)
cp "$T/graph/level1.ids" "$T/level1.ids"
graph drop
expect "the graph is unlinked from the user keyring" \
	'! as_user_q $U keyctl rlist @u | tr " " "\n" | grep -qxF -f "$T/level1.ids"'

done_testing
