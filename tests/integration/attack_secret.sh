#!/bin/bash
# attack_secret.sh: a user cannot get the client secret out of their own logins. The attacker is
# pstest1, logging in through real PAM sessions, with tests/attack/peek running as pstest1 the
# whole time: every new process of pstest1's is ptrace-seized, its fds 0..3 taken with
# pidfd_getfd and peeked (MSG_PEEK, tee(2): the login goes on unharmed), its /proc/PID/mem opened
# and read while it lives. Meanwhile peek's root-side scan reads the memory of every process of
# the pstest users. With a sentinel client secret:
#   - 20 client_credentials logins, half of them under `prlimit --nofile=16` (a limit the user
#     sets on su or sudo), and 20 authorization_code logins that refresh an enrolled refresh
#     token, all succeed;
#   - the attacker never sees the sentinel (the helper is 0711, so non-dumpable from its exec, and
#     is handed the request only after its "hardened" line);
#   - no process of the users holds the sentinel in memory at all (the design: only the system
#     service, as _pam_spotify, ever holds the client secret);
#   - the module refuses a helper file that others can read, or that root does not own, with one
#     log line that says the fix.
# Controls prove both looks can fail: the attacker finds the sentinel in the stdin pipe of a
# process of its own, and the scan finds it in the memory of one.
# Needs root and an installed build. About 60 s. PS_ATTACK_LOGINS=N changes the 20.
# To watch the attack against another install (e.g. the baseline), run it with PS_SECUREDIR,
# PS_HELPER, PS_READER and PS_RUNDIR pointing there (see Makefile.am's AM_TESTS_ENVIRONMENT).
. "$top_srcdir/tests/lib.sh"

need_root
# The attack traces the logins' processes: LeakSanitizer cannot run in a traced process and reports
# a fatal error at its exit, so the sanitizer pass would fail on the attack itself. The property is
# proven in the normal pass (and the sanitizers check the same code paths in the other tests).
[ "${PS_SANITIZERS:-no}" = yes ] && skip_all "a sanitizer build: LeakSanitizer cannot run in the traced processes"
ps_need_install
for tool in prlimit setpriv keyctl curl; do
	command -v $tool >/dev/null 2>&1 || skip_all "$tool not found"
done
DRIVER="$top_builddir/tests/pam/pam_session"
[ -x "$top_builddir/tests/attack/peek" ] && [ -x "$DRIVER" ] ||
	bail "tests/attack/peek or $DRIVER is not built (make check builds them)"
N=${PS_ATTACK_LOGINS:-20}
ps_tmpdir
# one copy that pstest1 can run; the root scan leaves out the processes of this very file
PEEK="$T/peek"
install -m 755 "$top_builddir/tests/attack/peek" "$PEEK"
ps_lock_keyring
U=pstest1
ps_ensure_user $U
ps_ensure_user pstest2
ps_ensure_app_user
UIDS="$(id -u pstest1),$(id -u pstest2)"
STORE="$(getent passwd $U | cut -d: -f6)/.local/state/spotify-token"
export PS_SYSLOG_FILE="$T/syslog"
: >"$PS_SYSLOG_FILE"
LIMIT=$((240 * PS_TIME_FACTOR)) # peek's own bound, in seconds; the test stops it long before

# --- the sentinel: root's secret file and scan list; the attacker's copy is pstest1's own (the
# attacker knows what to look for; peek reads it from a file, never argv)
P="$T/private"
mkdir -m 700 "$P"
SECRET="SENTINELsecret$$x$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')"
printf '%s\n' "$SECRET" >"$P/secret"
chmod 600 "$P/secret"
cp "$P/secret" "$P/sentinel"
printf 'testclient:%s\nconfclient:%s\n' "$SECRET" "$SECRET" >"$P/clients"
mkdir -m 700 "$T/attacker"
cp "$P/secret" "$T/attacker/sentinel"
chown -R $U "$T/attacker"
ps_start_server acc --client-file "$P/clients"
CA="$T/tls/ca.pem"
# the helpers live 0.2 s longer than they would, so that the memory scan can look at them
ps_server_control "$acc_URL" '{"delay": 0.2}' || bail "cannot set the server's delay"

conf() { # conf NAME FLOW CLIENT [extra lines...] (ps_conf adds the server and its CA)
	local name=$1 flow=$2 client=$3
	shift 3
	ps_conf "$T/$name.conf" "flow = $flow" "client_id = $client" "client_secret_file = $P/secret" \
		"timeout = $((10 * PS_TIME_FACTOR))" "$@"
	ps_pam_service "$T/pam.d" "$name" "$T/$name.conf"
}
conf cc client_credentials testclient
conf code authorization_code confclient "scopes = user-read-email" "enroll = never"

keepers() { ps_keepers $U; }
attack_cleanup() {
	local p
	: >"$T/stop"
	for p in ${PEEK_PID:-} ${SCAN_PID:-} ${CTL_PID:-}; do kill "$p" 2>/dev/null; done
	for p in $(keepers); do kill -9 "$p" 2>/dev/null; done
	clear_keys $U
	as_user $U rm -rf "$STORE" 2>/dev/null
}
ps_on_exit attack_cleanup
for p in $(keepers); do kill -9 "$p"; done
clear_keys $U
as_user $U rm -rf "$STORE" 2>/dev/null

# an enrolled refresh token of the confidential client (refreshing it needs the client secret)
ps_enroll $U confclient false || bail "cannot mint a refresh token"

# peek_start OUT ARGS...: run peek (as root, or as_user in ARGS) in the background and wait for
# its first round ("watching" on its stdout); sets LAST_PID.
peek_start() {
	local out=$1
	shift
	"$@" >"$out" 2>&1 &
	LAST_PID=$!
	wait_ms 10000 "grep -q '^watching' '$out'" || bail "peek did not start: $(cat "$out")"
}
counts() { grep -o 'pids=.*' "$1"; }

# --- controls: the attacker finds the sentinel in a pipe of its own process, and the scan finds
# it in the memory of one; so a clean run below means something
rm -f "$T/stop"
peek_start "$T/ctl-peek.out" as_user $U "$PEEK" attack "$T/attacker/sentinel" 30 "$T/stop"
CTL_PID=$LAST_PID
# a dumpable process of pstest1's with the sentinel waiting in its stdin pipe, unread for 3 s
cat "$P/secret" | as_user $U sh -c 'sleep 3; exec cat >/dev/null' &
ctl_job=$!
wait_ms 10000 "grep -q '^found' '$T/ctl-peek.out'"
: >"$T/stop"
wait "$CTL_PID"
ctl_rc=$?
CTL_PID=""
wait "$ctl_job"
expect "control: the attacker finds the sentinel in the stdin pipe of a process of its own, unread ($(counts "$T/ctl-peek.out"); exit $ctl_rc)" \
	'[ $ctl_rc = 1 ] && grep -q "^found .* via fd 0 (pipe, tee)" "$T/ctl-peek.out"'
rm -f "$T/stop"
peek_start "$T/ctl-scan.out" "$PEEK" scan "$P/sentinel" 30 "$UIDS" "$T/stop"
CTL_PID=$LAST_PID
as_user $U python3 -c 'import sys, time; s = sys.stdin.read(); time.sleep(3)' <"$P/secret" &
ctl_job=$!
wait_ms 10000 "grep -q '^found' '$T/ctl-scan.out'"
: >"$T/stop"
wait "$CTL_PID"
ctl_rc=$?
CTL_PID=""
wait "$ctl_job"
expect "control: the memory scan finds the sentinel in a process of pstest1's ($(counts "$T/ctl-scan.out"); exit $ctl_rc)" \
	'[ $ctl_rc = 1 ] && grep -q "^found .* via /proc/PID/mem" "$T/ctl-scan.out"'

# --- the attack: peek as pstest1 and the root scan, through 2N logins
rm -f "$T/stop"
peek_start "$T/scan.out" "$PEEK" scan "$P/sentinel" "$LIMIT" "$UIDS" "$T/stop"
SCAN_PID=$LAST_PID
peek_start "$T/peek.out" as_user $U "$PEEK" attack "$T/attacker/sentinel" "$LIMIT" "$T/stop"
PEEK_PID=$LAST_PID

# login SERVICE NAME [prlimit]: one session of pstest1's, opened and closed; the open's code is
# appended to $T/codes.SERVICE
login() {
	local wrap=()
	[ "${3:-}" = prlimit ] && wrap=(prlimit --nofile=16 --)
	"${wrap[@]}" "$DRIVER" "$T/pam.d" "$1" $U -- true >"$T/o.$2" 2>&1
	sed -n 's/^open=\([0-9]*\) .*/\1/p' "$T/o.$2" >>"$T/codes.$1"
}
ok_logins() { grep -cx 0 "$T/codes.$1" 2>/dev/null; }
: >"$T/codes.cc"
: >"$T/codes.code"
for i in $(seq 1 "$N"); do
	if [ $((i % 2)) = 0 ]; then login cc "cc-$i" prlimit; else login cc "cc-$i"; fi
done
for i in $(seq 1 "$N"); do
	login code "code-$i"
	wait_ms $((5000 * PS_TIME_FACTOR)) '[ -z "$(keepers)" ]' # its keeper ends with the session
done
: >"$T/stop"
wait "$PEEK_PID"
peek_rc=$?
wait "$SCAN_PID"
scan_rc=$?
PEEK_PID="" SCAN_PID=""
diag "attacker: $(counts "$T/peek.out")"
diag "root scan: $(counts "$T/scan.out")"
grep -h '^found' "$T/peek.out" | sed 's/^found [0-9]* /attacker: /' | sort | uniq -c | while read -r line; do diag "$line"; done
grep -h '^found' "$T/scan.out" | sed 's/^found [0-9]* /root scan: /' | sort | uniq -c | while read -r line; do diag "$line"; done

expect "client_credentials: $N logins, half under prlimit --nofile=16, all opened (PAM_SUCCESS: $(ok_logins cc))" \
	'[ "$(ok_logins cc)" = "$N" ]'
expect "authorization_code: $N logins refreshing the enrolled token, all opened (PAM_SUCCESS: $(ok_logins code))" \
	'[ "$(ok_logins code)" = "$N" ]'
expect "the attacker looked at every login: it saw at least $((2 * N)) new processes of its own ($(counts "$T/peek.out"))" \
	'[ "$(sed -n "s/.* pids=\([0-9]*\) .*/\1/p" "$T/peek.out")" -ge $((2 * N)) ]'
expect "the attacker (pstest1: ptrace, pidfd_getfd of fds 0..3 with MSG_PEEK and tee, /proc/PID/mem) never saw the client secret (exit $peek_rc)" \
	'[ $peek_rc = 0 ] && ! grep -q "^found" "$T/peek.out"'
expect "no process of the pstest users ever held the client secret in memory (root scan: exit $scan_rc; $(grep -c "^found" "$T/scan.out") processes)" \
	'[ $scan_rc = 0 ] && ! grep -q "^found" "$T/scan.out"'
expect "the sentinel is in no output of the logins and no log line" \
	'! grep -qF -- "$SECRET" "$T"/o.* "$PS_SYSLOG_FILE" "$T/acc.log"'

# --- the module refuses a helper file that could be read before it hardens. The test changes the
# installed helper's mode and owner for a moment, and only when it is root's 0711 as it must be.
read -r hmode howner < <(stat -c '%a %u' "$PS_HELPER")
expect "the installed helper is root's and 0711 (mode $hmode, owner $howner)" \
	'[ "$hmode" = 711 ] && [ "$howner" = 0 ]'
# refused SERVICE NAME TEXT: the open fails (PAM_SESSION_ERR) with one log line that says TEXT (the
# driver's close that follows logs its own)
refused() {
	local n0
	n0=$(wc -l <"$PS_SYSLOG_FILE")
	"$DRIVER" "$T/pam.d" "$1" $U -- true >"$T/o.$2" 2>&1
	tail -n +$((n0 + 1)) "$PS_SYSLOG_FILE" | grep -v ": close: " >"$T/log.$2"
	REFUSED=no
	grep -q '^open=14 ' "$T/o.$2" && [ "$(wc -l <"$T/log.$2")" = 1 ] &&
		grep -qF -- "$3" "$T/log.$2" && REFUSED=yes
	REFUSED_LOG="$(grep -o '^open=[0-9]*' "$T/o.$2"); $(head -c 400 "$T/log.$2")"
}
if [ "$hmode $howner" = "711 0" ]; then
	ps_on_exit "chown 0 '$PS_HELPER'; chmod 0711 '$PS_HELPER'"
	chmod 0755 "$PS_HELPER"
	refused cc r755 "chmod 0711 $PS_HELPER"
	expect "a helper others can read (0755) is refused: PAM_SESSION_ERR and one log line that says chmod 0711 ($REFUSED_LOG)" \
		'[ $REFUSED = yes ]'
	chmod 0715 "$PS_HELPER"
	refused code r715 "chmod 0711 $PS_HELPER"
	expect "a helper others can write (0715) is refused too ($REFUSED_LOG)" '[ $REFUSED = yes ]'
	chmod 0711 "$PS_HELPER"
	chown $U "$PS_HELPER"
	refused cc rown "chown root $PS_HELPER"
	expect "a helper root does not own is refused: one log line that says chown root ($REFUSED_LOG)" \
		'[ $REFUSED = yes ]'
	chown 0 "$PS_HELPER"
	chmod 0711 "$PS_HELPER"
else
	for what in "0755 refused" "0715 refused" "owner not root refused"; do
		skip "a helper file with $what" "the installed helper is not root's 0711: not changed"
	done
fi
done_testing
