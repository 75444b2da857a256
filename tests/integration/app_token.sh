#!/bin/bash
# app_token.sh: one client credentials token for the whole host, from the system service
# (helper/service.h). Through real PAM sessions against the fake accounts server: 100 concurrent
# opens for 20 users cost exactly one token request and every session reads that token; the
# service runs as the app user (never root), non-dumpable, with no core, and alone holds the
# client secret; renewals with short tokens come once a period for the host, and every user's
# keyring follows; a user's last close removes that user's keys while the others keep theirs; the
# last close host-wide ends the service within 4 s; a killed service is replaced at the next
# login; a socket that is not the service's is refused by the keeper's renewal (its answer says
# so, and no key is stored); with the app user missing, the login fails with one log line that
# says to create it, and makes no request. The token is on no disk: RUNDIR holds only the
# service's sockets and locks and the users' directories RUNDIR/user/UID, which hold only their
# keepers' sockets and locks. Needs root and an installed build (see session.sh). Creates the
# app user (_pam_spotify) and pstestb1..20 if missing, and keeps them.
# PS_KEEP_TMP=DIR keeps a copy of the scratch directory.
. "$top_srcdir/tests/lib.sh"

need_root
ps_need_install
[ -n "${PS_RUNDIR:-}" ] || skip_all "PS_RUNDIR is not set: run it through make check"
ps_tmpdir
ps_lock_keyring
ps_ensure_app_user
NUSERS=20
for i in $(seq $NUSERS); do ps_ensure_user "pstestb$i"; done
USERS=$(for i in $(seq $NUSERS); do echo "pstestb$i"; done)
CLIENT=appclient
ps_login_fixture APPTOKEN $CLIENT

conf() { # conf FILE [extra lines...]: the app client's configuration (ps_conf adds the server)
	local f=$1
	shift
	ps_conf "$f" "flow = client_credentials" "client_id = $CLIENT" \
		"client_secret_file = $T/secret" "timeout = 30" "connect_timeout = 5" \
		"refresh_margin = 3" "$@"
}
conf "$T/app.conf"
conf "$T/nouser.conf" "app_user = psnosuchuser"
for svc in app nouser; do ps_pam_service "$T/pam.d" $svc "$T/$svc.conf"; done

SOCK="$PS_RUNDIR/$(ps_service_name "$CLIENT" "$acc_URL/api/token" "" "$T/secret").sock"

stats() { ps_server_stats "$acc_URL" | ps_json "$1"; }
requests() { stats 'j["token_requests"]'; }
keepers() { ps_keepers "$1"; }
nkeepers() { ps_nkeepers "$1"; }
# app_pid: the system service of this install; app_running: it runs; ended: it does not
app_pid() { ps_services | head -1; }
app_running() { [ -n "$(app_pid)" ]; }
ended() { ! app_running; }
proc_uids() { sed -n 's/^Uid:[[:space:]]*//p' "/proc/$1/status" 2>/dev/null | tr -s '[:space:]' ' '; }
# rundir_odd: what RUNDIR holds besides the services' sockets and locks and the users'
# directories user/UID, and what those hold besides their keepers' sockets and locks
rundir_odd() {
	local f g
	for f in "$PS_RUNDIR"/*; do
		case ${f##*/} in
		*.sock | *.lock) ;;
		user)
			[ -d "$f" ] && [ ! -L "$f" ] || echo "$f"
			for g in "$f"/*; do
				[ -e "$g" ] || continue
				case ${g##*/} in *[!0-9]*) echo "$g"; continue ;; esac
				[ -d "$g" ] && [ ! -L "$g" ] || { echo "$g"; continue; }
				ls -A "$g" | grep -v -x -e 'keeper-[0-9a-f]*\.sock' -e 'keeper-[0-9a-f]*\.lock' |
					sed "s|^|$g/|"
			done
			;;
		*) [ -e "$f" ] && echo "$f" ;;
		esac
	done
	return 0
}

app_cleanup() {
	local p u
	[ -n "${PS_KEEP_TMP:-}" ] && cp -a "$T" "$PS_KEEP_TMP"
	for p in $DRIVERS; do
		grep -q pam_session "/proc/$p/cmdline" 2>/dev/null && kill -9 "$p" 2>/dev/null
	done
	sleep 0.5
	ps_stop_services
	for u in $USERS; do
		for p in $(keepers "$u"); do kill -9 "$p" 2>/dev/null; done
		clear_keys "$u"
	done
}
ps_on_exit app_cleanup

# start clean: no service of ours, no user keeper, no key
app_cleanup
DRIVERS=""

# ==== 1. the storm: 100 concurrent opens for 20 users, one token request
ps_server_control "$acc_URL" '{"expires_in": 3600}'
r0=$(requests)
spids=""
for i in $(seq 100); do
	u=pstestb$(((i - 1) % NUSERS + 1))
	PS_HOLD_OPEN=$HOLD_CAP "$DRIVER" "$T/pam.d" app "$u" -- "$PS_READER" >"$T/storm.$i" 2>&1 &
	spids="$spids $!"
done
DRIVERS="$DRIVERS $spids"
all_read() { local i; for i in $(seq 100); do grep -q '^command=' "$T/storm.$i" || return 1; done; }
wait_ms 120000 all_read
diag "100 concurrent opens: all read within $WAITED ms"
r1=$(requests)
tok=$(stats 'j["last_access_token"]')
opened=$(cat "$T"/storm.* | grep -c '^open=0 ')
read_tok=$(for i in $(seq 100); do sed -n 2p "$T/storm.$i"; done | grep -c -x -F -- "$tok")
cat "$T"/storm.* | sed -n 's/^open=0 ms=\([0-9]*\).*/\1/p' | sort -n >"$T/storm.ms"
diag "open latency (ms): p50 $(sed -n 50p "$T/storm.ms"), p95 $(sed -n 95p "$T/storm.ms"), max $(tail -1 "$T/storm.ms")"
expect "storm: all 100 opens (20 users, 5 each) succeed ($opened)" '[ "$opened" = 100 ]'
expect "storm: exactly one token request for the host ($((r1 - r0)))" '[ $((r1 - r0)) = 1 ]'
expect "storm: all 100 sessions read the token the server issued ($read_tok)" \
	'[ -n "$tok" ] && [ "$read_tok" = 100 ] && [ "$(cat "$T"/storm.* | grep -c "^command=0$")" = 100 ]'
ap=$(app_pid)
expect "storm: one system service runs (pid $ap), listening on $SOCK" \
	'[ -n "$ap" ] && [ "$(ps_services | wc -l)" = 1 ] && alive "$ap" && [ -S "$SOCK" ]'
expect "storm: it runs as the app user $PS_APP_USER, never root (Uid: $(proc_uids "$ap"))" \
	'[ "$(proc_uids "$ap")" = "$PS_APP_UID $PS_APP_UID $PS_APP_UID $PS_APP_UID " ]'
expect "storm: it is non-dumpable (its /proc files are root's) and may write no core" \
	'[ "$(stat -c %u "/proc/$ap/status")" = 0 ] && grep -q "^Max core file size *0 *0 " "/proc/$ap/limits"'
odd=$(rundir_odd | tr '\n' ' ')
expect "storm: the token is on no disk: RUNDIR holds only sockets, locks and user/UID directories, which hold only keeper sockets and locks (${odd:-nothing else})" \
	'[ -z "$odd" ] && [ -n "$(ls "$PS_RUNDIR/user/$(id -u pstestb1)"/keeper-*.sock 2>/dev/null)" ]'
nk=0
for u in $USERS; do [ "$(nkeepers "$u")" = 1 ] && nk=$((nk + 1)); done
expect "storm: each of the 20 users has one keeper ($nk do)" '[ "$nk" = 20 ]'
ps_mem_has "$ap" "$SECRET"
app_has=$?
if [ $app_has = 0 ]; then
	leaks="" checked=0
	for u in $USERS; do
		for p in $(keepers "$u"); do
			ps_mem_has "$p" "$SECRET"
			case $? in
			0) leaks="$leaks $u:$p" ;;
			1) checked=$((checked + 1)) ;;
			esac
		done
	done
	expect "storm: the service holds the client secret; no user keeper does ($checked of 20 read; holding it: ${leaks:-none})" \
		'[ -z "$leaks" ] && [ "$checked" = 20 ]'
else
	skip "storm: no user keeper holds the client secret" \
		"the service's memory could not be read here (exit $app_has), so neither can prove it"
fi
close_held $spids
closed=$(cat "$T"/storm.* | grep -c '^close=0 ')
expect "storm: all 100 sessions close with PAM_SUCCESS ($closed)" '[ "$closed" = 100 ]'
wait_ms 4000 ended
gone=$?
expect "storm: after the last close host-wide the service ends within 4 s (${WAITED} ms)" \
	'[ $gone = 0 ] && ! alive "$ap"'
all_clean() {
	local u
	for u in $USERS; do [ "$(nkeepers "$u")" = 0 ] && no_keys "$u" || return 1; done
}
expect "storm: every user keeper ends and every user's keys are removed (within 3 s)" 'wait_ms 3000 all_clean'

# ==== 2. renewals: 6 s tokens renewed 3 s early, 3 users logged in: one request a period
ps_server_control "$acc_URL" '{"expires_in": 6}'
ps_stop_services # the storm's must be gone: it would serve its hour-long token
open_held app pstestb1 r1
h1=$HELD_PID
open_held app pstestb2 r2
h2=$HELD_PID
open_held app pstestb3 r3
h3=$HELD_PID
ap=$(app_pid)
expect "renewals: three sessions open, one service" \
	'[ "$(held_open r1)$(held_open r2)$(held_open r3)" = 000 ] && app_running'
r0=$(requests)
samplers=""
for u in 1 2 3; do
	sample "pstestb$u" 20 "$T/samples.$u" &
	samplers="$samplers $!"
done
wait $samplers
r1=$(requests)
ps_server_stats "$acc_URL" >"$T/stats.json"
all_tokens=""
for u in 1 2 3; do
	summary "$T/samples.$u"
	cp "$T/summary.json" "$T/summary.$u.json"
	diag "pstestb$u: $(sj 'j["n"]') samples, $(sj 'len(j["tokens"])') tokens"
	expect "renewals: pstestb$u read a valid token at every sample over 20 s (bad: $(sj 'j["bad_samples"]'))" \
		'[ "$(sj "j[\"n\"]")" -ge 25 ] && [ "$(sj "j[\"bad\"]")" = 0 ] && [ "$(sj "j[\"expired_printed\"]")" = 0 ]'
	expect "renewals: pstestb$u's keyring followed the renewals (at least 3 tokens, each issued by the server)" \
		'[ "$(sj "len(j[\"tokens\"])")" -ge 3 ] && "$PYTHON" -c "import json,sys; t=json.load(open(sys.argv[1]))[\"tokens\"]; i=json.load(open(sys.argv[2]))[\"issued\"]; sys.exit(0 if all(x in i for x in t) else 1)" "$T/summary.json" "$T/stats.json"'
	all_tokens="$all_tokens $(sj '" ".join(j["tokens"])')"
done
distinct=$(echo $all_tokens | tr ' ' '\n' | sort -u | grep -c .)
diag "renewals: $((r1 - r0)) token requests in 20 s for 3 users; $distinct distinct tokens read by them all"
expect "renewals: one request a period for the host, not one per user: 3 to 10 in 20 s (saw $((r1 - r0)))" \
	'[ $((r1 - r0)) -ge 3 ] && [ $((r1 - r0)) -le 10 ]'
expect "renewals: the three users shared the tokens ($distinct distinct, no more than the $((r1 - r0)) requests + 1)" \
	'[ "$distinct" -le $((r1 - r0 + 1)) ]'
expect "renewals: the same service renewed throughout (pid $ap)" '[ "$(app_pid)" = "$ap" ] && alive "$ap"'

# a user's last close removes that user's keys; the others keep theirs, renewed
close_held "$h1"
expect "one user leaves: pstestb1's session closes, its keeper ends and its keys go (within 2 s)" \
	'[ "$(held_close r1)" = 0 ] && wait_ms 2000 "[ \"\$(nkeepers pstestb1)\" = 0 ] && no_keys pstestb1"'
sample pstestb2 8 "$T/samples.after"
summary "$T/samples.after"
expect "one user leaves: pstestb2 still reads a valid token, renewed, for 8 s (bad: $(sj 'j["bad_samples"]'))" \
	'[ "$(sj "j[\"bad\"]")" = 0 ] && [ "$(sj "len(j[\"tokens\"])")" -ge 2 ] && [ -n "$(user_key pstestb3 spotify:access_token)" ]'
expect "one user leaves: the service stays" '[ "$(app_pid)" = "$ap" ] && app_running'
close_held "$h2" "$h3"
wait_ms 4000 ended
gone=$?
expect "the last close host-wide ends the service within 4 s (${WAITED} ms)" \
	'[ $gone = 0 ] && ! alive "$ap"'
expect "and the remaining users' keys go" 'wait_ms 2000 "no_keys pstestb2 && no_keys pstestb3"'

# ==== 3. a killed service: the next login starts another (it holds no token yet: one request)
ps_server_control "$acc_URL" '{"expires_in": 3600}'
open_held app pstestb1 k1
k1=$HELD_PID
ap=$(app_pid)
kill -9 "$ap"
wait_ms 2000 "! alive $ap"
r0=$(requests)
open_held app pstestb2 k2
k2=$HELD_PID
ap2=$(app_pid)
expect "killed service: the next login succeeds with a new service ($ap, then $ap2), one request" \
	'[ "$(held_open k2)" = 0 ] && [ -n "$ap2" ] && [ "$ap2" != "$ap" ] && [ "$(requests)" = $((r0 + 1)) ]'
expect "killed service: pstestb2 reads the new token" '[ "$(reader pstestb2)" = "$(stats "j[\"last_access_token\"]")" ]'
close_held "$k1" "$k2"
expect "killed service: its successor ends with the last close" 'wait_ms 4000 ended'

# ==== 4. a socket that is not the service's: the keeper's renewal refuses it (peer credentials)
# A listener bound by root at a path in RUNDIR (users cannot create one there), then run as
# pstestb2: what a user's process answering in the service's place would look like. pstestb1's
# --pam, with a request naming it as the service, starts the keeper; asked for the token (as the
# login's helper asks), the keeper's renewal connects to it and refuses it.
FAKE="$PS_RUNDIR/fake-$$.sock"
"$PYTHON" - "$FAKE" "$(id -u pstestb2)" "$(id -g pstestb2)" "$CLIENT" <<'PY' &
import os, socket, struct, sys, time
path, uid, gid, client = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
s = socket.socket(socket.AF_UNIX)
s.bind(path); os.chmod(path, 0o666)
os.setgid(gid); os.setuid(uid)
s.listen(4); s.settimeout(20)
c, _ = s.accept()
info = '{"token_type":"Bearer","scope":"","expires_at":%d,"flow":"client_credentials","client_id":"%s"}' % (time.time() + 3600, client)
msg = ("status 0\ninfo %s\n\n" % info).encode() + b"PLANTED-by-pstestb2"
c.sendall(struct.pack(">I", len(msg)) + msg)
time.sleep(1)
PY
fake=$!
wait_ms 5000 '[ -S "$FAKE" ]'
printf '%s\n' "pam_spotify-request 1" "op = open" "flow = client_credentials" \
	"client_id = $CLIENT" "client_secret_file = $T/secret" "accounts_url = $acc_URL" \
	"token_url = $acc_URL/api/token" "authorize_url = $acc_URL/authorize" "keyring = user" \
	"timeout = 3" "app_uid = $PS_APP_UID" "service = $FAKE" "end" >"$T/helper.req"
wait_ms 5000 '[ "$(nkeepers pstestb1)" = 0 ]' # the killed-service part's keeper has ended
clear_keys pstestb1
install -d -m 700 -o pstestb1 -g "$(id -g pstestb1)" "$PS_RUNDIR/user/$(id -u pstestb1)"
as_user_q pstestb1 "$PS_HELPER" --pam <"$T/helper.req" >"$T/helper.out" 2>&1
rc=$?
expect "a socket served by another uid: --pam starts pstestb1's keeper (exit $rc: $(tail -1 "$T/helper.out"))" \
	'[ $rc = 0 ] && [ "$(tail -1 "$T/helper.out")" = "ok the keeper started" ] && [ "$(nkeepers pstestb1)" = 1 ]'
cp "$top_srcdir/tests/integration/keeper_call.py" "$T/keeper_call.py"
chmod 644 "$T/keeper_call.py"
ksock="$PS_RUNDIR/user/$(id -u pstestb1)/$(ps_keeper_name client_credentials "$CLIENT" "$acc_URL/api/token" "" user)"
as_user_q pstestb1 "$PYTHON" "$T/keeper_call.py" --timeout=30 "$ksock" token >"$T/fake.ans" 2>&1
expect "a socket served by another uid: the keeper's renewal refuses it: status 6, '$(sed -n 's/^message //p' "$T/fake.ans")', no key" \
	'grep -q -x "status 6" "$T/fake.ans" &&
	grep -q "^message refusing $FAKE: it is not the system service (uid $(id -u pstestb2))" "$T/fake.ans" &&
	no_keys pstestb1'
for p in $(keepers pstestb1); do kill "$p" 2>/dev/null; done
wait_ms 5000 '[ "$(nkeepers pstestb1)" = 0 ]'
kill "$fake" 2>/dev/null
wait "$fake" 2>/dev/null
rm -f "$FAKE"
expect "a user cannot create anything in RUNDIR" \
	'! as_user_q pstestb1 sh -c "echo x >\"$PS_RUNDIR/planted\"" 2>/dev/null && [ ! -e "$PS_RUNDIR/planted" ]'

# ==== 5. the app user is missing: the login fails, says what to do, and asks nothing
: >"$PS_SYSLOG_FILE"
r0=$(requests)
"$DRIVER" "$T/pam.d" nouser pstestb1 -- "$PS_READER" >"$T/nouser.1" 2>&1
r1=$(requests)
expect "no app user: the login fails (session error), no request ($((r1 - r0)))" \
	'! grep -q "^open=0 " "$T/nouser.1" && [ $((r1 - r0)) = 0 ] && no_keys pstestb1'
expect "no app user: one log line says to create it" \
	'[ "$(grep -c "app_user psnosuchuser does not exist: create the system service.s user (useradd --system psnosuchuser)" "$PS_SYSLOG_FILE")" = 1 ]'
expect "no app user: no service ran" '! app_running'

expect "no client secret in the module's log, the server's log or the drivers' output" \
	'! grep -q -F -e "$SECRET" "$PS_SYSLOG_FILE" "$T/acc.log" "$T"/storm.* "$T"/held.*'
[ "$t_failed" = 0 ] || { diag "module log (tail):"; tail -15 "$PS_SYSLOG_FILE" | sed 's/^/# /'; }
done_testing
