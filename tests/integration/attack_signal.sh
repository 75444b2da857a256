#!/bin/bash
# attack_signal.sh: a user hammering their own keeper (helper/keeper.h) cannot make it hit the
# accounts server more. The attacker is the user themselves, who may signal the keeper and talk
# to its socket:
#   1  SIGUSR1 (once "renew now") is ignored: 20 SIGUSR1 from the user make no token request and
#      do not kill the keeper (the same process answers status and still counts the session)
#   2  "renew now" is the socket's refresh-now (what spotify-token refresh sends): 20 concurrent
#      refresh-now while one renewal runs (the fake server holds it 6 s) join it: one token
#      request in all, and every one is answered ok with its result
#   3  inside a 429's Retry-After: 60 window, 30 refresh-now (20 at once, 10 one after another)
#      make no token request (pkce, and authorization_code, whose requests carry the client
#      secret through the system service, so one user could get the host's app rate limited);
#      each is answered at once with exit 6 and the window's end, the keeper's status not_before,
#      60 s after the 429; spotify-token refresh says the same at once (exit 6)
# Gone with the old design (60e6f88), and its checks with it: SIGUSR1 as a "renew now" poke, and
# the 10 s between two poke renewals after a success (PS_LOOP_POKE_GAP_S, helper/keeper_loop.h):
# refresh-now outside a window renews each time it is asked (lifetime.sh's two spotify-token
# refresh back to back); what bounds a user now is one renewal at a time and the windows.
# Needs root and an installed build (see lifetime.sh). Takes about a minute.
#
# Proving that no request came takes an observation window: each check waits for a request with
# a 3 s deadline after the last message or signal, and passes when none came (a request fails it
# at once).
. "$top_srcdir/tests/lib.sh"

need_root
ps_need_install
[ -n "${PS_RUNDIR:-}" ] || skip_all "PS_RUNDIR is not set (make check sets it)"
ps_tmpdir
ps_lock_keyring
U=pstest1
ps_ensure_user $U
ps_ensure_app_user # authorization_code goes through the system service
STORE="$(getent passwd $U | cut -d: -f6)/.local/state/spotify-token"
ps_login_fixture SIGNAL confclient pkceclient
UPY=/usr/bin/python3 # the test user cannot reach root's python (a pyenv shim under /root)
cp "$top_srcdir/tests/integration/keeper_call.py" "$T/keeper_call.py" # a checkout may be private
chmod 644 "$T/keeper_call.py"

conf() { # conf NAME FLOW CLIENT [extra lines...]: $T/NAME.conf and the PAM service NAME
	local name=$1 flow=$2 client=$3
	shift 3
	ps_conf "$T/$name.conf" "flow = $flow" "client_id = $client" "scopes = user-read-email" \
		"timeout = $((5 * PS_TIME_FACTOR))" "connect_timeout = 2" "enroll = never" "$@"
	ps_pam_service "$T/pam.d" "$name" "$T/$name.conf"
}
# 6 s tokens renewed 3 s before expiry: the keeper's first renewal comes 3 s after the login
conf pkce pkce pkceclient "refresh_margin = 3"
conf code authorization_code confclient "client_secret_file = $T/secret" "refresh_margin = 3"
# 60 s tokens and refresh_margin 300: every renewal is a request (none lives 300 s), the
# keeper's own comes at half the token's life (30 s), after this test's checks
conf pkce60 pkce pkceclient "refresh_margin = 300"

stats() { ps_server_stats "$acc_URL" | ps_json "$1"; }
requests() { stats 'j["token_requests"]'; }
# rate_limited SINCE: the server answered a token request with the 429 after Unix time SINCE.
rate_limited() {
	[ "$(stats "sum(1 for t, f in j['token_times'] if t >= $1 and f == 'rate_limit')")" -ge 1 ]
}
# no_request_since R0: no token request beyond the server's first R0 comes within 3 s. Sets N to
# the count beyond R0.
no_request_since() {
	local came
	wait_ms 3000 "[ \$(requests) -gt $1 ]"
	came=$?
	N=$(($(requests) - $1))
	[ $came = 1 ] && [ "$N" = 0 ]
}
# flood PID: as the user, 20 SIGUSR1 to PID, 0.1 s apart (about 2 s).
flood() {
	as_user_q $U sh -c 'for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
		kill -USR1 "$1" || exit 1; sleep 0.1; done' sh "$1"
}
# ucall ARGS...: keeper_call.py as the user (see its options), e.g. ucall -n 20 SOCKET refresh-now.
ucall() { as_user_q $U "$UPY" "$T/keeper_call.py" "$@"; }
sock() { ps_keeper_socks $U | head -1; }
attack_cleanup() {
	local p
	for p in $DRIVERS; do
		grep -q pam_session "/proc/$p/cmdline" 2>/dev/null && kill -9 "$p" 2>/dev/null
	done
	for p in $(ps_keepers $U); do kill -9 "$p" 2>/dev/null; done
	wait_ms 2000 "[ \"\$(ps_nkeepers $U)\" = 0 ]"
	rm -f "$PS_RUNDIR/user/$(id -u $U)"/keeper-*.sock # what a killed keeper leaves
	clear_keys $U
	as_user_q $U rm -rf "$STORE"
}
ps_on_exit attack_cleanup
attack_cleanup

# ==== 1. SIGUSR1 is not "renew now" any more: a flood of it makes no request, kills nothing
ps_server_control "$acc_URL" '{"expires_in": 60}'
ps_enroll $U pkceclient true
open_held pkce60 $U ok60
drv=$HELD_PID
wait_ms 3000 '[ "$(ps_nkeepers $U)" = 1 ]'
kp=$(ps_keepers $U)
expect "the login refreshed and one keeper runs (pid $kp), counting the session" \
	'[ "$(held_open ok60)" = 0 ] && [ "$(ps_nkeepers $U)" = 1 ] && [ "$(ps_keeper_status $U sessions)" = 1 ]'
r0=$(requests)
flood "$kp"
frc=$?
no_request_since "$r0"
quiet=$?
expect "SIGUSR1: 20 signals from the user (delivered: exit $frc) made no token request (watched 3 s after the last; saw $N)" \
	'[ $frc = 0 ] && [ $quiet = 0 ]'
expect "SIGUSR1: and did not end the keeper: the same process answers status and counts the session" \
	'alive "$kp" && [ "$(ps_keepers $U)" = "$kp" ] && [ "$(ps_keeper_status $U sessions)" = 1 ]'

# ==== 2. refresh-now while a renewal runs: the flood joins it, one request
S=$(sock)
# the server holds each token request 6 s: the 20 must all be asking (a python each, slow to
# start on a busy host) while the first's renewal still waits for it
ps_server_control "$acc_URL" '{"delay": 6}'
r0=$(requests)
as_user $U "$UPY" "$T/keeper_call.py" -n 1 -t 15 "$S" refresh-now >"$T/first" 2>/dev/null &
first=$!
wait_ms 2000 '[ "$(ps_keeper_status $U renewing)" = 1 ]'
expect "refresh-now: the user's first starts a renewal (status renewing 1, within 2 s: ${WAITED} ms)" \
	'[ "$(ps_keeper_status $U renewing)" = 1 ]'
t0=$(now_ms)
ucall -n 20 -t 15 "$S" refresh-now >"$T/flood"
frc=$? el=$(($(now_ms) - t0))
wait "$first"
cat "$T/first" >>"$T/flood"
no_request_since $((r0 + 1))
diag "refresh-now flood: answers in $el ms: $(sort "$T/flood" | uniq -c | head -3 | cut -c1-200 | tr '\n' ';')"
expect "refresh-now: 20 concurrent refresh-now while it ran made no request of their own: one token request in all (saw $((N + 1)), watched 3 s after)" \
	'[ "$N" = 0 ] && [ "$(($(requests) - r0))" = 1 ]'
expect "refresh-now: all 21 waited for that renewal ($el ms) and were answered ok" \
	'[ $frc = 0 ] && [ "$el" -ge 1000 ] && [ "$(grep -c "^status 0 " "$T/flood")" = 21 ]'
expect "refresh-now: the renewed token is in the keyring, and the keeper is the same process" \
	'[ "$(as_user_q $U "$PS_READER")" = "$(stats "j[\"last_access_token\"]")" ] && [ "$(ps_keepers $U)" = "$kp" ]'
ps_server_control "$acc_URL" '{"delay": 0}'
close_held "$drv"
wait_ms 3000 '[ "$(ps_nkeepers $U)" = 0 ]'
clear_keys $U

# ==== 3. inside a 429's Retry-After: 60 window: refresh-now makes no request
# window_attack NAME: a session of service NAME; its keeper's renewal meets the 429; the flood.
# Sets WIN_DRV, WIN_R0 and WIN_UNTIL (the window's end as the keeper writes it).
window_attack() {
	local name=$1 drv kp t0 r0 nb t429 el i frc quiet
	ps_server_control "$acc_URL" '{"fault": null, "expires_in": 6, "retry_after": 60}'
	open_held "$name" $U "win-$name"
	drv=$HELD_PID
	wait_ms 3000 '[ "$(ps_nkeepers $U)" = 1 ]'
	kp=$(ps_keepers $U)
	expect "$name: the session opens and one keeper runs (pid $kp)" \
		'[ "$(held_open "win-$name")" = 0 ] && [ "$(ps_nkeepers $U)" = 1 ]'
	t0=$(date +%s.%N)
	ps_server_control "$acc_URL" '{"fault": "rate_limit"}'
	expect "$name: the keeper's renewal met the 429 with Retry-After: 60 (within 10 s)" \
		'wait_ms 10000 "rate_limited $t0"'
	wait_ms 3000 '[ "$(ps_keeper_status $U not_before)" -gt "$(date +%s)" ]'
	nb=$(ps_keeper_status $U not_before)
	t429=$(stats "max(t for t, f in j['token_times'] if f == 'rate_limit')")
	expect "$name: the keeper's window (status not_before $nb) ends 60 s after the 429 (at $t429)" \
		'[ -n "$nb" ] && "$PYTHON" -c "import sys; d = float(sys.argv[1]) - float(sys.argv[2]); sys.exit(0 if 59 <= d <= 62 else 1)" "$nb" "$t429"'
	WIN_UNTIL=$(date -u -d "@${nb:-0}" '+%Y-%m-%d %H:%M:%S UTC')
	r0=$(requests)
	t0=$(now_ms)
	ucall -n 20 "$(sock)" refresh-now >"$T/win.$name"
	frc=$? el=$(($(now_ms) - t0))
	for i in 1 2 3 4 5 6 7 8 9 10; do
		ucall -n 1 "$(sock)" refresh-now >>"$T/win.$name"
		sleep 0.1
	done
	no_request_since "$r0"
	quiet=$?
	diag "$name: answers: $(sort "$T/win.$name" | uniq -c | head -3 | cut -c1-240 | tr '\n' ';')"
	expect "$name: 30 refresh-now inside the window made no token request (watched 3 s after the last; saw $N)" \
		'[ $quiet = 0 ]'
	expect "$name: each was answered at once (20 concurrent in $el ms): exit 6, inside the window until $WIN_UNTIL, no request made" \
		'[ $frc = 0 ] && [ "$el" -lt 3000 ] && [ "$(wc -l <"$T/win.$name")" = 30 ] &&
		[ "$(grep -c "^status 6 | message .*inside a Retry-After/backoff window until $WIN_UNTIL: no request made" "$T/win.$name")" = 30 ]'
	expect "$name: the keeper still runs, the same process" '[ "$(ps_keepers $U)" = "$kp" ]'
	WIN_DRV=$drv WIN_R0=$r0
}
ps_enroll $U pkceclient true
window_attack pkce
close_held "$WIN_DRV"
wait_ms 3000 '[ "$(ps_nkeepers $U)" = 0 ]'
clear_keys $U

# authorization_code: the keeper's requests carry the client secret (through the system service);
# spotify-token refresh says why nothing happens instead of waiting for a token that cannot come
ps_enroll $U confclient false
window_attack code
t0=$(now_ms)
as_user_q $U "$PS_READER" refresh --config="$T/code.conf" 2>"$T/refresh.err"
rc=$? el=$(($(now_ms) - t0))
no_request_since "$WIN_R0"
expect "code: spotify-token refresh inside the window: exit 6 in $el ms, no request ($N), and it says until when ($(cat "$T/refresh.err"))" \
	'[ $rc = 6 ] && [ "$el" -lt 5000 ] && [ "$N" = 0 ] &&
	grep -q "inside a Retry-After/backoff window until $WIN_UNTIL: no request made" "$T/refresh.err"'
close_held "$WIN_DRV"
wait_ms 3000 '[ "$(ps_nkeepers $U)" = 0 ]'
ps_server_control "$acc_URL" '{"fault": null, "retry_after": 7, "expires_in": 3600}'

expect "no client secret in the module's log" '! grep -q -F -e "$SECRET" "$PS_SYSLOG_FILE"'
done_testing
