#!/bin/bash
# lifetime.sh: the session lifetime of a token, through real PAM sessions against the fake
# accounts server. The user's keeper (`pam_spotify_helper keeper`, helper/keeper.h: one per user
# and configuration, its socket RUNDIR/user/UID/keeper-HASH.sock beside keeper-HASH.lock, which it
# holds flocked) renews the token refresh_margin seconds before it expires (client_credentials
# and pkce), counts the user's sessions (status "sessions N", a pidfd on each session's process)
# and ends, its socket and the keys gone, within 2 s of the last close; a session whose process is
# killed is reclaimed through its pidfd; 100 open/close cycles and 10 concurrent opens leak
# nothing and start one keeper; 503s are retried with backoff and a 429's Retry-After is honoured
# while an expired token is never printed; invalid_grant marks the store and stops renewal;
# keyring = session: the keeper holds the store and the token, the login's helper copies the
# token into the session keyring, nothing is in the user keyring, and the keeper ends with the
# session; keyring = persistent is renewed too; spotify-token --min-valid=N and spotify-token
# refresh (refresh-now on the keeper's socket; for client_credentials the system service renews
# and the user's keeper, which holds no secret, copies: --min-valid cannot ask for more and
# refresh copies; see app_token.sh); same-UID non-possessors read the token, other users do not.
# Needs root and an installed build (see session.sh). Takes about 3.5 minutes: lifetimes take
# time.
#
# Gone with the old design (60e6f88), and their checks with them: the session registry
# (STORE/CLIENT.sessions/PID-START), now the keeper's status "sessions N" and its pidfds; the lock
# file CLIENT.keeper holding the keeper's pid, now "one socket, the keeper listens and answers
# status on it, its lock is held"; "keyring = session starts no keeper" (a keeper runs now: see
# above).
#
# Timing: tokens live 6 s (the fake server's expires_in) with refresh_margin = 3, so the keeper
# renews every ~3 s; the kernel key lives exactly 6 s (skew min(30, 6/10) = 0). Every wait is
# bounded; sessions are held open with PS_HOLD_OPEN and closed by SIGUSR1 when a section is done.
# PS_KEEP_TMP=DIR keeps a copy of the scratch directory (server log, samples, driver output).
. "$top_srcdir/tests/lib.sh"

need_root
ps_need_install
[ -n "${PS_RUNDIR:-}" ] || skip_all "PS_RUNDIR is not set (make check sets it)"
ps_tmpdir
ps_lock_keyring
ps_ensure_user pstest1
ps_ensure_user pstest2
ps_ensure_app_user # client_credentials tokens come from the system service (app_token.sh)
home_of() { getent passwd "$1" | cut -d: -f6; }
STORE1="$(home_of pstest1)/.local/state/spotify-token"
STORE2="$(home_of pstest2)/.local/state/spotify-token"
ps_login_fixture LIFETIME testclient pkceclient
app_pid() { ps_services | head -1; }

conf() { # conf NAME FLOW CLIENT [extra lines...]: $T/NAME.conf and the PAM service NAME
	local name=$1 flow=$2 client=$3
	shift 3
	ps_conf "$T/$name.conf" "flow = $flow" "client_id = $client" "timeout = 5" \
		"connect_timeout = 2" "refresh_margin = 3" "$@"
	ps_pam_service "$T/pam.d" "$name" "$T/$name.conf"
}
conf cc client_credentials testclient "client_secret_file = $T/secret"
conf pkce pkce pkceclient "scopes = user-read-email" "enroll = never"
conf sess client_credentials testclient "client_secret_file = $T/secret" "keyring = session"
conf persist client_credentials testclient "client_secret_file = $T/secret" "keyring = persistent"

# --- small tools

stats() { ps_server_stats "$acc_URL" | ps_json "$1"; }
requests() { stats 'j["token_requests"]'; }
grants() { stats "j['by_grant'].get('$1', 0)"; }
# keeper_lock USER: the lock beside the user's (one) keeper socket.
keeper_lock() { local s; s=$(ps_keeper_socks "$1" | head -1); [ -n "$s" ] && echo "${s%.sock}.lock"; }
# lock_held FILE: a process (the keeper) holds the flock on FILE; lock_free FILE: none does. Only
# on a file that exists: flock(1) would create a missing one, as root.
lock_held() { [ -f "$1" ] && ! flock -n "$1" true; }
lock_free() { [ -f "$1" ] && flock -n "$1" true; }
# pidfd_pids PID: the processes that process PID holds pidfds on, sorted, space-separated.
pidfd_pids() {
	grep -h '^Pid:' /proc/"$1"/fdinfo/* 2>/dev/null | awk '{print $2}' | sort -n | tr '\n' ' ' |
		sed 's/ $//'
}
# keeper_listens PID USER: process PID holds the listening socket bound at the user's (one)
# keeper socket path (the inode /proc/net/unix gives that path is among PID's descriptors).
keeper_listens() {
	local s ino
	s=$(ps_keeper_socks "$2" | head -1)
	ino=$(awk -v p="$s" '$NF == p && $6 == "01" {print $7}' /proc/net/unix | head -1)
	[ -n "$s" ] && [ -n "$ino" ] && readlink /proc/"$1"/fd/* 2>/dev/null | grep -qx "socket:\[$ino\]"
}
# no_keeper USER: no keeper process of the user and no keeper socket in their RUNDIR directory.
no_keeper() { [ "$(ps_nkeepers "$1")" = 0 ] && [ -z "$(ps_keeper_socks "$1")" ]; }
# kill_keepers USER: SIGKILL the user's keepers and remove the sockets they leave behind.
kill_keepers() {
	local p
	for p in $(ps_keepers "$1"); do kill -9 "$p" 2>/dev/null; done
	wait_ms 2000 "[ \"\$(ps_nkeepers $1)\" = 0 ]"
	rm -f "$PS_RUNDIR/user/$(id -u "$1")"/keeper-*.sock
}

# end_held PID USER: end a held session early (SIGKILL: reclaimed by the keeper, see section 3)
# and wait (at most 5 s) for the user's keepers to go; a keeper still there is killed, with a note.
end_held() {
	kill -9 "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	if ! wait_ms 5000 "no_keeper $2"; then
		diag "a keeper of $2 outlived its killed session by 5 s; killing it"
		kill_keepers "$2"
	fi
}
lifetime_cleanup() {
	local p u
	[ -n "${PS_KEEP_TMP:-}" ] && cp -a "$T" "$PS_KEEP_TMP" # for debugging: keep the logs and samples
	for p in $DRIVERS; do
		grep -q pam_session "/proc/$p/cmdline" 2>/dev/null && kill -9 "$p" 2>/dev/null
	done
	wait_ms 1000 'no_keeper pstest1 && no_keeper pstest2'
	for u in pstest1 pstest2; do
		kill_keepers $u
		clear_keys $u
	done
	as_user_q pstest1 rm -rf "$STORE1"
	as_user_q pstest2 rm -rf "$STORE2"
	ps_stop_services
}
ps_on_exit lifetime_cleanup

# request_times REQUESTS: the token requests the server logged after its first REQUESTS, one a
# line: "<time> F" for a request that got the fault, "<time> -" for one that did not (the
# server's clock at receipt, so the gaps are the client's and not a poller's).
request_times() {
	stats "'\\n'.join('%.3f %s' % (t, 'F' if f else '-') for t, f in j['token_times'][$1:])"
}

# --- start clean: no keeper, no key, no store for the test users
for u in pstest1 pstest2; do
	kill_keepers $u
	clear_keys $u
done
as_user_q pstest1 rm -rf "$STORE1"
as_user_q pstest2 rm -rf "$STORE2"

# expiry JSON: the fake server's settings for the next tokens (expires_in...), and no system service
# left running: a running one would serve the token it holds, of the old lifetime, without asking
expiry() {
	ps_server_control "$acc_URL" "$1"
	ps_stop_services
}

# ==== 1. several expiry periods: always a valid token, a new one every period
expiry '{"expires_in": 6}'
# lifetime FLOW SERVICE: one held session, 20 s of samples, and the checks.
lifetime() {
	local flow=$1 svc=$2 kp lock serial0 serial1 r0 r1
	open_held "$svc" pstest1 "life-$flow"
	local drv=$HELD_PID
	expect "$flow: session open succeeds" '[ "$(held_open "life-$flow")" = 0 ]'
	wait_ms 2000 '[ "$(ps_nkeepers pstest1)" -ge 1 ]'
	kp=$(ps_keepers pstest1)
	lock=$(keeper_lock pstest1)
	expect "$flow: one keeper process of the user (pid $kp), one socket ($(ps_keeper_socks pstest1 | tr '\n' ' ')), which the keeper listens on and answers status on, and it holds ${lock:-its lock}" \
		'[ "$(ps_nkeepers pstest1)" = 1 ] && [ "$(ps_keeper_socks pstest1 | wc -l)" = 1 ] &&
		keeper_listens "$kp" pstest1 && ps_keeper_status pstest1 >/dev/null && lock_held "$lock"'
	expect "$flow: the keeper counts the session (sessions $(ps_keeper_status pstest1 sessions)) and holds a pidfd on its process, the driver (pid $drv; pidfds on: $(pidfd_pids "$kp"))" \
		'[ "$(ps_keeper_status pstest1 sessions)" = 1 ] && [ "$(pidfd_pids "$kp")" = "$drv" ]'
	serial0=$(user_key pstest1 spotify:access_token)
	ap=$(app_pid)
	r0=$(requests)
	sample pstest1 20 "$T/samples.$flow"
	r1=$(requests)
	serial1=$(user_key pstest1 spotify:access_token)
	summary "$T/samples.$flow"
	diag "$flow: $(sj 'j["n"]') samples, $(sj 'len(j["tokens"])') tokens, $((r1 - r0)) token requests in 20 s"
	expect "$flow: over 20 s (6 s tokens) every sample read a token with expires_in > 0 (bad: $(sj 'j["bad_samples"]'))" \
		'[ "$(sj "j[\"n\"]")" -ge 25 ] && [ "$(sj "j[\"bad\"]")" = 0 ] && [ "$(sj "j[\"expired_printed\"]")" = 0 ]'
	expect "$flow: the token was replaced every period (at least 3 distinct tokens)" \
		'[ "$(sj "len(j[\"tokens\"])")" -ge 3 ]'
	ps_server_stats "$acc_URL" >"$T/stats.json"
	expect "$flow: every token read is one the server issued" \
		'"$PYTHON" -c "import json,sys; t=json.load(open(sys.argv[1]))[\"tokens\"]; i=json.load(open(sys.argv[2]))[\"issued\"]; sys.exit(0 if t and all(x in i for x in t) else 1)" "$T/summary.json" "$T/stats.json"'
	expect "$flow: renewals, not a polling loop: 3 to 12 token requests in 20 s (saw $((r1 - r0)))" \
		'[ $((r1 - r0)) -ge 3 ] && [ $((r1 - r0)) -le 12 ]'
	expect "$flow: the key was updated in place (same serial $serial0)" \
		'[ -n "$serial0" ] && [ "$serial0" = "$serial1" ]'
	now_kp=$(ps_keepers pstest1 | tr '\n' ' ')
	expect "$flow: still one keeper, the same process (was $kp, now $now_kp; $(ps -o pid,ppid,lstart,args -u pstest1 | grep -c keeper) listed)" '[ "$(ps_keepers pstest1)" = "$kp" ]'
	[ "$now_kp" = "$kp " ] || ps -o pid,ppid,lstart,args -u pstest1 | sed 's/^/# /'
	[ "$flow" = client_credentials ] && app_renewals "$kp" "$ap"
	close_held "$drv"
	expect "$flow: the session closes with PAM_SUCCESS" '[ "$(held_close "life-$flow")" = 0 ]'
	wait_ms 2000 "! alive ${kp:-0}"
	gone=$?
	expect "$flow: after the last close the keeper (pid $kp) ends within 2 s (${WAITED} ms)" \
		'[ -n "$kp" ] && [ $gone = 0 ]'
	expect "$flow: and the keys are removed" 'wait_ms 2000 "no_keys pstest1"'
	expect "$flow: and its socket is gone, its lock free" 'no_keeper pstest1 && lock_free "$lock"'
}
# app_renewals USER-KEEPER SERVICE: client_credentials renewals come from the system service
# (one, the same process throughout); the user's keeper only copies them and holds no secret.
app_renewals() {
	local uk=$1 ak=$2 # expect evaluates its condition in its own frame: no $1 there
	expect "client_credentials: the renewals came from the system service (pid $ak, still running)" \
		'[ -n "$ak" ] && [ "$(app_pid)" = "$ak" ] && alive "$ak"'
	ps_mem_has "$ak" "$SECRET"
	if [ $? = 0 ]; then
		expect "client_credentials: the user's keeper (pid $uk) holds no client secret (the system service does)" \
			'[ -n "$uk" ] && alive "$uk" && { ps_mem_has "$uk" "$SECRET"; [ $? = 1 ]; }'
	else
		skip "client_credentials: the user's keeper holds no client secret" \
			"the system service's memory cannot be read here to prove the check"
	fi
}
clear_keys pstest1
lifetime client_credentials cc

# --- 7. (while a session is open) a same-UID non-possessor reads the token; another user cannot
expiry '{"expires_in": 3600}'
open_held cc pstest1 seven
seven=$HELD_PID
id1=$(user_key pstest1 spotify:access_token)
expect "a same-UID process in a fresh session keyring (not possessing the key) reads the token" \
	'[ -n "$id1" ] && [ "$(reader pstest1)" = "$(stats "j[\"last_access_token\"]")" ] && as_user_q pstest1 keyctl pipe "$id1" >/dev/null'
expect "another user cannot read the key by its id" '! as_user pstest2 keyctl pipe "$id1" >/dev/null 2>&1'
reader pstest2 >"$T/o2" 2>/dev/null
rc=$?
expect "another user's spotify-token finds no token (exit 1, nothing printed)" '[ $rc = 1 ] && [ ! -s "$T/o2" ]'
expect "another user has no keeper (no process, no socket)" 'no_keeper pstest2'
close_held "$seven"
wait_ms 2000 'no_keeper pstest1'

# --- keyring = session: the keeper holds the store and the token; the login's helper asks it for
# the token (op token) and stores it in the session keyring, which only the session's processes
# reach. The command run inside the session says whether the key is linked in the session keyring
# itself, and prints it.
cat >"$T/sesscheck.sh" <<'EOF'
id=$(keyctl search @s user spotify:access_token 2>/dev/null)
if [ -n "$id" ] && keyctl rlist @s | tr ' ' '\n' | grep -qx "$id"; then
	echo "session_key=$id"
else
	echo "session_key=none"
fi
echo "session_token=$(keyctl pipe "$id" 2>/dev/null)"
EOF
chmod 644 "$T/sesscheck.sh"
PS_HOLD_OPEN=$HOLD_CAP "$DRIVER" "$T/pam.d" sess pstest1 -- /bin/sh "$T/sesscheck.sh" >"$T/held.sess" 2>&1 &
sess=$!
DRIVERS="$DRIVERS $sess"
wait_ms 15000 "grep -q '^command=' '$T/held.sess'"
stok=$(sed -n 's/^session_token=//p' "$T/held.sess")
kp=$(ps_keepers pstest1)
lock=$(keeper_lock pstest1)
expect "keyring = session: the session opens, and the token the server issued is in the session keyring ($(grep '^session_key=' "$T/held.sess"))" \
	'[ "$(held_open sess)" = 0 ] && grep -q "^session_key=[0-9]" "$T/held.sess" && [ -n "$stok" ] &&
	[ "$stok" = "$(stats "j[\"last_access_token\"]")" ]'
expect "keyring = session: nothing in the user keyring" 'no_keys pstest1'
expect "keyring = session: one keeper (pid $kp) holds the token for it and counts the session (sessions $(ps_keeper_status pstest1 sessions))" \
	'[ "$(ps_nkeepers pstest1)" = 1 ] && [ "$(ps_keeper_status pstest1 sessions)" = 1 ] &&
	[ "$(ps_keeper_status pstest1 expires_at)" -gt "$(date +%s)" ]'
close_held "$sess"
wait_ms 2000 "! alive ${kp:-0}"
gone=$?
expect "keyring = session: the keeper ends with the session (within 2 s: ${WAITED} ms), its socket gone, its lock free, and still nothing in the user keyring" \
	'[ "$(held_close sess)" = 0 ] && [ -n "$kp" ] && [ $gone = 0 ] && no_keeper pstest1 && lock_free "$lock" && no_keys pstest1'

# --- keyring = persistent: a keeper runs and renews the token there
expiry '{"expires_in": 6}'
open_held persist pstest1 persist
drv=$HELD_PID
p1=$(reader pstest1 --config="$T/persist.conf")
exp1=$(reader pstest1 --json --config="$T/persist.conf" | ps_json 'j["expires_at"]' 2>/dev/null)
kp=$(ps_keepers pstest1)
wait_ms 9000 "[ \"\$(date +%s)\" -gt \"${exp1:-0}\" ]" # past the first token's 6 s
p2=$(reader pstest1 --config="$T/persist.conf")
expect "keyring = persistent: one keeper, and past the first token's expiry (6 s tokens) a renewed token is read" \
	'[ "$(held_open persist)" = 0 ] && [ -n "$kp" ] && [ "$(ps_nkeepers pstest1)" = 1 ] && [ -n "$exp1" ] &&
	[ -n "$p1" ] && [ -n "$p2" ] && [ "$p1" != "$p2" ]'
close_held "$drv"
wait_ms 2000 "! alive ${kp:-0}"
gone=$?
reader pstest1 --config="$T/persist.conf" >/dev/null 2>&1
rc=$?
expect "keyring = persistent: after the close the keeper ends within 2 s and no token is left (exit $rc)" \
	'[ -n "$kp" ] && [ $gone = 0 ] && [ $rc = 1 ] && no_keeper pstest1'

# pkce: a non-rotating store (Spotify today), enrolled with a minted refresh token
expiry '{"expires_in": 6, "rotate_refresh": false}'
ps_enroll pstest1 pkceclient
rt_before=$(cat "$STORE1/pkceclient.refresh")
g0=$(grants refresh_token)
clear_keys pstest1
lifetime pkce pkce
expect "pkce: the renewals used the refresh grant ($(($(grants refresh_token) - g0)) of them)" \
	'[ $(($(grants refresh_token) - g0)) -ge 3 ]'
expect "pkce: the non-rotating store kept its refresh token" \
	'[ "$(cat "$STORE1/pkceclient.refresh")" = "$rt_before" ] && [ ! -e "$STORE1/pkceclient.reauth" ]'

# ==== 2. two sessions of one user: one close leaves a fresh token; the second removes all
expiry '{"expires_in": 6}'
clear_keys pstest1
open_held cc pstest1 twoA
drvA=$HELD_PID
open_held cc pstest1 twoB
drvB=$HELD_PID
kp=$(ps_keepers pstest1)
expect "two sessions: both open, one keeper, which counts two sessions ($(ps_keeper_status pstest1 sessions)) and holds pidfds on both drivers ($(pidfd_pids "$kp"))" \
	'[ "$(held_open twoA)" = 0 ] && [ "$(held_open twoB)" = 0 ] && [ "$(ps_nkeepers pstest1)" = 1 ] &&
	[ "$(ps_keeper_status pstest1 sessions)" = 2 ] &&
	[ "$(pidfd_pids "$kp")" = "$(printf "%s\n" "$drvA" "$drvB" | sort -n | tr "\n" " " | sed "s/ $//")" ]'
close_held "$drvA"
expect "two sessions: the first closes with PAM_SUCCESS; the keeper counts one session, holds no pidfd on the first, and stays" \
	'[ "$(held_close twoA)" = 0 ] && wait_ms 1000 "[ \"\$(ps_keeper_status pstest1 sessions)\" = 1 ]" &&
	[ "$(pidfd_pids "$kp")" = "$drvB" ] && alive "$kp"'
sample pstest1 8 "$T/samples.two"
summary "$T/samples.two"
expect "two sessions: for 8 s after the first close (more than a 6 s period) the token stays fresh (bad: $(sj 'j["bad_samples"]'))" \
	'[ "$(sj "j[\"n\"]")" -ge 10 ] && [ "$(sj "j[\"bad\"]")" = 0 ] && [ "$(sj "j[\"expired_printed\"]")" = 0 ]'
expect "two sessions: and it was renewed meanwhile ($(sj 'len(j["tokens"])') tokens)" \
	'[ "$(sj "len(j[\"tokens\"])")" -ge 2 ]'
close_held "$drvB"
expect "two sessions: the second closes with PAM_SUCCESS" '[ "$(held_close twoB)" = 0 ]'
wait_ms 2000 "! alive ${kp:-0}"
gone=$?
expect "two sessions: after the last close the keeper (pid $kp) ends within 2 s (${WAITED} ms)" \
	'[ -n "$kp" ] && [ $gone = 0 ]'
expect "two sessions: and the keys are removed" 'wait_ms 2000 "no_keys pstest1"'
expect "two sessions: no keeper of the user is left (no process, no socket)" 'no_keeper pstest1'

# ==== 3. the session's process is killed without a close
# How it is reclaimed: the module hands the keeper a pidfd on the session's process (the PAM
# application, here the driver) with its open; the keeper polls it beside its socket and timer.
# The pidfd turns readable when that process dies (a pidfd names a process, not a pid number: a
# recycled pid cannot pass for the dead session), so the keeper drops the session at once and,
# as that was the last one, removes its socket and the keys and exits.
expiry '{"expires_in": 3600}'
clear_keys pstest1
open_held cc pstest1 killed
drvK=$HELD_PID
kp=$(ps_keepers pstest1)
expect "killed session: open, one keeper, one session counted, a token" \
	'[ "$(held_open killed)" = 0 ] && [ "$(ps_nkeepers pstest1)" = 1 ] && [ "$(ps_keeper_status pstest1 sessions)" = 1 ] &&
	[ -n "$(user_key pstest1 spotify:access_token)" ]'
kill -9 "$drvK"
wait "$drvK" 2>/dev/null
wait_ms 2000 "! alive ${kp:-0}"
gone=$?
expect "killed session: the keeper (pid $kp) ends within 2 s of the SIGKILL (${WAITED} ms)" \
	'[ -n "$kp" ] && [ $gone = 0 ]'
expect "killed session: the keys are removed" 'wait_ms 500 "no_keys pstest1"'
expect "killed session: no keeper left (no process, no socket)" 'no_keeper pstest1'

# ==== 4. 100 sequential open/close cycles, then 10 concurrent opens
clear_keys pstest1
good=0 maxk=0
t0=$(now_ms)
for i in $(seq 100); do
	"$DRIVER" "$T/pam.d" cc pstest1 -- "$PS_READER" >"$T/cycle" 2>&1
	grep -q '^open=0 ' "$T/cycle" && grep -q '^command=0$' "$T/cycle" && grep -q '^close=0 ' "$T/cycle" &&
		good=$((good + 1))
	k=$(ps_nkeepers pstest1)
	[ "$k" -gt "$maxk" ] && maxk=$k
done
diag "100 cycles took $(($(now_ms) - t0)) ms; at most $maxk keeper(s) seen right after a close"
expect "100 cycles: every one opened, read the token and closed ($good did)" '[ "$good" = 100 ]'
expect "100 cycles: zero keeper processes and sockets left (within 2 s)" 'wait_ms 2000 "no_keeper pstest1"'
expect "100 cycles: zero keys left" 'no_keys pstest1'

clear_keys pstest1
"$PYTHON" - "$T/kcount" 8 pstest1 <<'EOF' &
import subprocess, sys, time
out, secs, user = sys.argv[1], float(sys.argv[2]), sys.argv[3]
end, seen = time.time() + secs, 0
while time.time() < end:
    r = subprocess.run(["pgrep", "-u", user, "-f", "pam_spotify_helper keeper$"],
                       capture_output=True, text=True)
    seen = max(seen, len(r.stdout.split()))
    time.sleep(0.02)
open(out, "w").write("%d\n" % seen)
EOF
kcount_pid=$!
cpids=""
for i in $(seq 10); do
	PS_HOLD_OPEN=$HOLD_CAP "$DRIVER" "$T/pam.d" cc pstest1 -- true >"$T/conc.$i" 2>&1 &
	cpids="$cpids $!"
done
DRIVERS="$DRIVERS $cpids"
all_open() { local i; for i in $(seq 10); do grep -q '^open=' "$T/conc.$i" || return 1; done; }
wait_ms 20000 all_open
opened=$(cat "$T"/conc.* | grep -c '^open=0 ')
kp=$(ps_keepers pstest1)
expect "10 concurrent opens: all succeed ($opened), exactly one keeper, one socket, which it listens on, 10 sessions counted ($(ps_keeper_status pstest1 sessions))" \
	'[ "$opened" = 10 ] && [ "$(ps_nkeepers pstest1)" = 1 ] && [ "$(ps_keeper_socks pstest1 | wc -l)" = 1 ] &&
	keeper_listens "$kp" pstest1 && [ "$(ps_keeper_status pstest1 sessions)" = 10 ]'
wait "$kcount_pid"
close_held $cpids
expect "10 concurrent opens: never more than one keeper process at any time (max seen $(cat "$T/kcount"))" \
	'[ "$(cat "$T/kcount")" = 1 ]'
wait_ms 2000 "! alive ${kp:-0}"
gone=$?
expect "10 concurrent opens: after the last close the keeper ends within 2 s (${WAITED} ms), the keys go" \
	'[ -n "$kp" ] && [ $gone = 0 ] && wait_ms 1000 "no_keys pstest1" && no_keeper pstest1'

# ==== 5. the server fails during a renewal
# 503 x3: the old token stays readable until it expires, retries back off, renewal resumes.
expiry '{"expires_in": 6}'
clear_keys pstest1
open_held cc pstest1 s503
drv=$HELD_PID
r0=$(requests)
ps_server_control "$acc_URL" '{"fault": "status_503", "fault_count": 3}'
sample pstest1 20 "$T/samples.503"
summary "$T/samples.503"
request_times "$r0" >"$T/times.503"
diag "503: token requests after the fault was set (time, F = faulted): $(tr '\n' ' ' <"$T/times.503")"
diag "503: samples (time mod 100: exit code): $(ps_json '" ".join("%.1f:%d" % (x[0] % 100, x[1]) for x in j["series"])' <"$T/summary.json")"
first_exp=$(sj 'j["first_expires_at"]')
expect "503: the first token was readable, unexpired, until 1 s before its expiry" \
	'[ -n "$first_exp" ] && "$PYTHON" -c "
import json,sys
j=json.load(open(\"$T/summary.json\")); t0=j[\"tokens\"][0]; e=$first_exp
early=[s for s in j[\"series\"] if s[0] < e - 1]
sys.exit(0 if early and all(s[1]==0 and s[2]==t0 for s in early) else 1)"'
expect "503: no expired token was ever printed" '[ "$(sj "j[\"expired_printed\"]")" = 0 ]'
expect "503: the three 503s were retried and the renewal resumed: a new token was read" \
	'[ "$(grep -c " F$" "$T/times.503")" = 3 ] && grep -q " -$" "$T/times.503" && [ "$(sj "len(j[\"tokens\"])")" -ge 2 ]'
expect "503: the retries were spaced, not a tight loop (at most 10 requests in any 10 s; the 4th came at least 1.5 s after the 1st)" \
	'"$PYTHON" - "$T/times.503" <<"EOF"
import sys
t = [float(l.split()[0]) for l in open(sys.argv[1]) if l.strip()]
dense = any(sum(1 for u in t if s <= u < s + 10) > 10 for s in t)
sys.exit(0 if len(t) >= 4 and not dense and t[3] - t[0] >= 1.5 else 1)
EOF'
expect "503: the retries were spaced increasingly (the gap before the renewal that worked exceeded the first gap)" \
	'"$PYTHON" - "$T/times.503" <<"EOF"
import sys
t = [float(l.split()[0]) for l in open(sys.argv[1]) if l.strip()]
sys.exit(0 if len(t) >= 4 and t[3] - t[2] > t[1] - t[0] else 1)
EOF'
# The system service makes these requests and keeps the backoff (1, 2, 4 s, each +-20%); the
# keeper asks again when the service's window ends, the time it answers with (whole seconds,
# rounded up): at most 8.4 s + 3 x 1 s and the requests' own time. A keeper that backed off on
# top of that asked inside the window, was refused, and doubled again: 13.8 and 16.6 s seen.
expect "503: the renewal that worked came within 13 s of the first 503: the keeper waits out the service's window, adding no backoff of its own" \
	'"$PYTHON" - "$T/times.503" <<"EOF"
import sys
t = [float(l.split()[0]) for l in open(sys.argv[1]) if l.strip()]
print("# 503: the 4th request came %.1f s after the 1st" % (t[3] - t[0]) if len(t) >= 4 else "# 503: fewer than 4 requests")
sys.exit(0 if len(t) >= 4 and t[3] - t[0] <= 13 else 1)
EOF'
close_held "$drv"
wait_ms 2000 'no_keeper pstest1'

# 429 with Retry-After: 4: the next token request comes at least 4 s later.
expiry '{"expires_in": 6, "retry_after": 4}'
clear_keys pstest1
open_held cc pstest1 s429
drv=$HELD_PID
r0=$(requests)
t429=$(date +%s.%N)
ps_server_control "$acc_URL" '{"fault": "rate_limit", "fault_count": 1}'
sample pstest1 14 "$T/samples.429"
summary "$T/samples.429"
request_times "$r0" >"$T/times.429"
diag "429: token requests after the fault was set: $(tr '\n' ' ' <"$T/times.429")"
# The gap by the server's own clock: the watcher's polls can see a request late under load.
ps_server_stats "$acc_URL" >"$T/stats.429"
expect "429: the request after the 429 came at least 4 s later (Retry-After honoured)" \
	'"$PYTHON" - "$T/stats.429" "$t429" <<"EOF"
import json, sys
times = [r for r in json.load(open(sys.argv[1]))["token_times"] if r[0] >= float(sys.argv[2])]
i = next((k for k, (t, fault) in enumerate(times) if fault == "rate_limit"), None)
ok = i is not None and i + 1 < len(times) and times[i + 1][0] - times[i][0] >= 3.85
print("# 429: server times of the token requests:", times[:6])
sys.exit(0 if ok else 1)
EOF'
expect "429: renewal resumed (a new token was read) and no expired token was printed" \
	'[ "$(sj "len(j[\"tokens\"])")" -ge 2 ] && [ "$(sj "j[\"expired_printed\"]")" = 0 ]'
close_held "$drv"
wait_ms 2000 'no_keeper pstest1'
ps_server_control "$acc_URL" '{"fault": null, "retry_after": 7}'

# invalid_grant during a renewal (pkce): the store is marked, renewing stops, the reader exits 4.
expiry '{"expires_in": 6}'
ps_enroll pstest1 pkceclient
clear_keys pstest1
open_held pkce pstest1 revoked
drv=$HELD_PID
exp=$(reader pstest1 --json | ps_json 'j["expires_at"]')
ig() { stats 'j["errors"].get("invalid_grant", 0)'; }
ig0=$(ig)
curl -s --cacert "$CA" -X POST -d '{}' "$acc_URL/__revoke" >/dev/null
expect "invalid_grant: the keeper's renewal is refused and the store is marked (within 8 s)" \
	'[ "$(held_open revoked)" = 0 ] && wait_ms 8000 "[ -e \"$STORE1/pkceclient.reauth\" ]"'
wait_ms 8000 '[ "$(date +%s)" -gt "${exp:-0}" ]'
# A renewal retried after the refusal would come within its backoff (1 s, then 2 s): watch 4 s.
wait_ms 4000 "[ \$((\$(ig) - ig0)) -gt 1 ]"
retried=$?
expect "invalid_grant: the keeper stopped renewing: one refused refresh, not retried in the 4 s after the token expired ($(($(ig) - ig0)))" \
	'[ $retried = 1 ] && [ $(($(ig) - ig0)) = 1 ]'
reader pstest1 --config="$T/pkce.conf" >"$T/ig.out" 2>"$T/ig.err"
rc=$?
expect "invalid_grant: once the token has expired spotify-token exits 4, says to log in, prints nothing" \
	'[ $rc = 4 ] && [ ! -s "$T/ig.out" ] && grep -q "spotify-token login" "$T/ig.err"'
n=$(($(ig) - ig0))
expect "invalid_grant: and that spotify-token (which asks the keeper to renew) sent no refresh with the refused token (invalid_grant answers: $n, want 1)" \
	'[ "$n" = 1 ]'
close_held "$drv"
wait_ms 2000 'no_keeper pstest1'
expect "invalid_grant: the keeper still ends with the last session" 'no_keeper pstest1'

# ==== 6. spotify-token --min-valid=N and spotify-token refresh, both flows
# 20 s tokens (key 18 s), renewed 3 s before expiry: 5 s in, a token lives ~15 s.
expiry '{"expires_in": 20}'
# min_valid FLOW SERVICE CONF GRANT: pkce renews for the user; a client_credentials token is the
# host's app token, renewed for everyone before it expires: --min-valid cannot ask for more and
# says so, and refresh copies the current one.
min_valid() {
	local flow=$1 svc=$2 cfg=$3 grant=$4 tok0 tok1 tok2 g0 rc t0 el said
	clear_keys pstest1
	open_held "$svc" pstest1 "mv-$flow"
	local drv=$HELD_PID
	expect "$flow --min-valid: session open succeeds" '[ "$(held_open "mv-$flow")" = 0 ]'
	tok0=$(reader pstest1)
	wait_ms 8000 '[ "$(reader pstest1 --json | ps_json "j[\"expires_in\"]" 2>/dev/null)" -le 15 ] 2>/dev/null'
	g0=$(grants "$grant")
	reader pstest1 --min-valid=5 --config="$cfg" >"$T/mv.out" 2>"$T/mv.err"
	rc=$?
	expect "$flow: --min-valid=5 with ~15 s left: exit 0, the same token, no request" \
		'[ $rc = 0 ] && [ "$(cat "$T/mv.out")" = "$tok0" ] && [ "$(grants "$grant")" = "$g0" ]'
	t0=$(now_ms)
	reader pstest1 --json --min-valid=18 --config="$cfg" >"$T/mv.out" 2>"$T/mv.err"
	rc=$? el=$(($(now_ms) - t0))
	tok1=$(ps_json 'j["access_token"]' <"$T/mv.out" 2>/dev/null)
	if [ "$flow" = client_credentials ]; then
		grep -q "shared by this host" "$T/mv.err"
		said=$?
		expect "$flow: --min-valid=18 with ~15 s left: exit 3 in ${el} ms, nothing printed, no request, and it says the app token is the host's ($(head -c 300 "$T/mv.err" | tr '\n' ' '))" \
			'[ $rc = 3 ] && [ ! -s "$T/mv.out" ] && [ "$(grants "$grant")" = "$g0" ] && [ "$el" -lt 5000 ] &&
			[ $said = 0 ]'
		[ $said = 0 ] || diag "PRODUCT: the keeper's note that the client_credentials token is the host's (helper/keeper.c:474-478, renewal_done) is overwritten by ps_app_token_store's \"ok expires_in=...\" (keeper.c:482, helper/app_token.c:65): spotify-token refresh, seeing a line that starts with ok, prints nothing (helper/main.c run_user)"
	else
		expect "$flow: --min-valid=18 with ~15 s left renews: exit 0 in ${el} ms, a new token with >= 18 s ($(cat "$T/mv.err"))" \
			'[ $rc = 0 ] && [ -n "$tok1" ] && [ "$tok1" != "$tok0" ] && [ "$(ps_json "j[\"expires_in\"]" <"$T/mv.out")" -ge 18 ] &&
			[ "$(grants "$grant")" -gt "$g0" ]'
		expect "$flow: the renewed token is the one in the keyring" '[ "$(reader pstest1)" = "$tok1" ]'
	fi
	t0=$(now_ms)
	reader pstest1 --min-valid=100 --config="$cfg" >"$T/mv.out" 2>"$T/mv.err"
	rc=$? el=$(($(now_ms) - t0))
	expect "$flow: --min-valid=100 (more than any 20 s token): exit 3 within 20 s (${el} ms), nothing printed" \
		'[ $rc = 3 ] && [ "$el" -lt 20000 ] && [ ! -s "$T/mv.out" ] && grep -q "^spotify-token: " "$T/mv.err"'
	tok0=$(reader pstest1)
	g0=$(grants "$grant")
	reader pstest1 refresh --config="$cfg" >"$T/rf.out" 2>"$T/rf.err"
	rc=$?
	tok1=$(reader pstest1)
	diag "$flow: spotify-token refresh: exit $rc, token $([ "$tok1" != "$tok0" ] && echo changed || echo unchanged), $(($(grants "$grant") - g0)) request(s)"
	if [ "$flow" = client_credentials ]; then
		grep -q "shared by this host" "$T/rf.err"
		said=$?
		expect "$flow: spotify-token refresh: exit 0, no request, the keyring holds the host's current token, and it says why ($(cat "$T/rf.err"))" \
			'[ $rc = 0 ] && [ "$tok1" = "$(stats "j[\"last_access_token\"]")" ] && [ "$(grants "$grant")" = "$g0" ] &&
			[ $said = 0 ]'
		[ $said = 0 ] || diag "PRODUCT: the keeper's note that the client_credentials token is the host's (helper/keeper.c:474-478, renewal_done) is overwritten by ps_app_token_store's \"ok expires_in=...\" (keeper.c:482, helper/app_token.c:65): spotify-token refresh, seeing a line that starts with ok, prints nothing (helper/main.c run_user)"
	else
		expect "$flow: spotify-token refresh: exit 0 and a new token in the keyring ($(cat "$T/rf.err"))" \
			'[ $rc = 0 ] && [ -n "$tok1" ] && [ "$tok1" != "$tok0" ] && [ "$(grants "$grant")" -gt "$g0" ] &&
			[ "$tok1" = "$(stats "j[\"last_access_token\"]")" ]'
		# two renewals inside one second: expires_at (whole seconds) may not change, the token does
		tok0=$(reader pstest1)
		"$PYTHON" -c 'import time; time.sleep(1.02 - time.time() % 1)'
		t0=$(now_ms)
		reader pstest1 refresh --config="$cfg" 2>"$T/rf.err" && tok1=$(reader pstest1) &&
			reader pstest1 refresh --config="$cfg" 2>>"$T/rf.err"
		rc=$? el=$(($(now_ms) - t0))
		tok2=$(reader pstest1)
		expect "$flow: two spotify-token refresh back to back: both exit 0 within 5 s ($el ms), each with a new token ($(tr '\n' ' ' <"$T/rf.err"))" \
			'[ $rc = 0 ] && [ "$el" -lt 5000 ] && [ -n "$tok2" ] && [ "$tok2" != "$tok1" ] && [ "$tok1" != "$tok0" ]'
	fi
	expect "$flow: still exactly one keeper" '[ "$(ps_nkeepers pstest1)" = 1 ]'
	end_held "$drv" pstest1
	clear_keys pstest1
}
min_valid client_credentials cc "$T/cc.conf" client_credentials
ps_enroll pstest1 pkceclient # again: the refresh token was revoked above
min_valid pkce pkce "$T/pkce.conf" refresh_token

rt=$(sed -n 2p "$STORE1/pkceclient.refresh" 2>/dev/null)
expect "no client secret or refresh token in the module's log or the server's log" \
	'! grep -q -F -e "$SECRET" ${rt:+-e "$rt"} "$PS_SYSLOG_FILE" "$T/acc.log"'
[ "$t_failed" = 0 ] || { diag "module log (tail):"; tail -15 "$PS_SYSLOG_FILE" | sed 's/^/# /'; }
done_testing
