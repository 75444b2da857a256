#!/bin/bash
# service.sh: the system service that alone holds the client secret (helper/service.h), attacked
# as a second local user would: pstest2 logs in through a su-like program (the PAM driver, setuid
# root, so its real uid is the attacker's: they may signal it and set its limits), stops their own
# login at any point, sets low limits on it, and talks to the service's socket directly. pstest1 is
# the victim whose logins must go on. The users' keepers, which ask the service for the app token
# (helper/keeper.h), are among the users' processes that must not hold the secret. Needs root and
# an installed build.
. "$top_srcdir/tests/lib.sh"

need_root
ps_need_install

ps_tmpdir
ps_lock_keyring
ps_ensure_user pstest1
ps_ensure_user pstest2
ps_ensure_app_user
ps_login_fixture SERVICE svcclient
chmod 666 "$PS_SYSLOG_FILE"
# su-like: the driver setuid root, run by the attacker (real uid pstest2, effective uid root)
SU="$T/su-like"
cp "$DRIVER" "$SU" && chown root:root "$SU" && chmod 4755 "$SU" || bail "cannot make $SU"

# conf FILE FLOW [TIMEOUT [extra lines...]]: our client, timeout 3 unless given
conf() {
	local f=$1 flow=$2 timeout=${3:-3}
	shift 2
	[ $# -eq 0 ] || shift
	ps_conf "$f" "flow = $flow" "client_id = svcclient" "client_secret_file = $T/secret" \
		"timeout = $timeout" "connect_timeout = 2" "$@"
}
conf "$T/cc.conf" client_credentials
conf "$T/ac.conf" authorization_code 3 "scopes = user-read-email"
# the attacker's login below runs at nice 19 on one CPU: on a busy host its helper may need more
# than 3 s to say why it starts no service (the same service: timeout is not part of its name)
conf "$T/ccslow.conf" client_credentials 20
for s in cc ac ccslow; do
	ps_pam_service "$T/pam.d" $s "$T/$s.conf"
done

session() { # session SERVICE USER: one open/close as root; sets OPEN, MS
	"$DRIVER" "$T/pam.d" "$1" "$2" -- true >"$T/out" 2>"$T/err"
	OPEN=$(sed -n 's/^open=\([0-9]*\) .*/\1/p' "$T/out")
	MS=$(sed -n 's/^open=[0-9]* ms=\([0-9]*\).*/\1/p' "$T/out")
}
stats() { ps_server_stats "$acc_URL" | ps_json "$1"; }
requests() { stats "j['token_requests']"; }
services() { ps_services; }
stop_services() { ps_stop_services; }
field() { sed -n "s/^$2:[[:space:]]*//p" "/proc/$1/status" | tr -s ' \t' '  '; }
limit() { awk -v n="$2" 'index($0, n) == 1 { sub(n, ""); print $1, $2 }' "/proc/$1/limits"; }
stat_field() { sed 's/.*) //' "/proc/$1/stat" | cut -d' ' -f"$2"; }
# limits_clean PID: its open files and processes limits are init's, or this shell's (where root
# cannot raise a hard limit back to init's), and never the attacker's 16 open files
limits_clean() {
	local n
	for n in "Max open files" "Max processes"; do
		[ "$(limit "$1" "$n")" = "$(limit 1 "$n")" ] || [ "$(limit "$1" "$n")" = "$(limit $$ "$n")" ] ||
			return 1
	done
	[ "$(limit "$1" "Max open files")" != "16 16" ]
}
ps_on_exit stop_services

# ==== 1. who holds the secret, and where it listens (while a session holds the service)
stop_services
PS_HOLD_OPEN=120 "$DRIVER" "$T/pam.d" cc pstest1 -- true >"$T/held.one" 2>&1 &
HELD=$!
wait_ms 15000 "grep -q '^open=' '$T/held.one'"
expect "client_credentials login opens (PAM_SUCCESS) through the service" \
	'grep -q "^open=0 " "$T/held.one"'
svc=$(services)
expect "exactly one service runs ($(echo $svc))" '[ "$(echo "$svc" | wc -w)" = 1 ]'
expect "the service runs as the app user, all four uids ($(field "$svc" Uid))" \
	'[ "$(field "$svc" Uid)" = "$PS_APP_UID $PS_APP_UID $PS_APP_UID $PS_APP_UID" ]'
expect "the service has no capabilities and no_new_privs" \
	'[ "$(field "$svc" CapEff)" = 0000000000000000 ] && [ "$(field "$svc" NoNewPrivs)" = 1 ]'
expect "the service is not dumpable: /proc/PID/environ stays root's" \
	'[ "$(stat -c %u "/proc/$svc/environ")" = 0 ]'
name_of() { ps_service_name svcclient "$acc_URL/api/token" "$1" "$T/secret"; }
sock="$PS_RUNDIR/$(name_of "").sock"
expect "its socket is root's, mode 0666, in a root-owned 0755 RUNDIR ($(stat -c '%U %a' "$sock" "$PS_RUNDIR" | tr '\n' ' '))" \
	'[ "$(stat -c "%U %a" "$sock")" = "root 666" ] && [ "$(stat -c "%U %a" "$PS_RUNDIR")" = "root 755" ]'
if [ "${PS_SANITIZERS:-no}" = yes ]; then # ASan's shadow memory cannot be scanned this way
	skip "the service holds the client secret" "a sanitizer build"
	skip "no process of pstest1 or pstest2 holds the client secret" "a sanitizer build"
else
	expect "the service holds the client secret" 'ps_mem_has "$svc" "$SECRET"'
	expect "pstest1's keeper, which copies the app token from the service, runs (and is looked at next)" \
		'[ "$(ps_nkeepers pstest1)" = 1 ]'
	found=""
	for p in $(pgrep -u pstest1) $(pgrep -u pstest2); do
		ps_mem_has "$p" "$SECRET" && found="$found $p"
	done
	expect "no process of pstest1 or pstest2 holds the client secret (found:${found:- none})" '[ -z "$found" ]'
fi
kill -USR1 "$HELD" 2>/dev/null
wait "$HELD" 2>/dev/null
expect "the service ends once no session is left" 'wait_ms 6000 "[ -z \"\$(services)\" ]"'

# ==== 2. the attacker's limits, nice and CPUs do not follow the service they start
# Root here may lack CAP_SYS_RESOURCE (a container): then a lowered hard limit cannot be raised
# again, and the attacker's login must start no service at all (it says why); the next login does.
# The attacker's login also holds exactly descriptors 3 to 8 open (fds.py), so that 16 files leave
# the module little room: its child once needed four more before it closed them, and ended
# without a word ("did not start within the timeout").
cat >"$T/fds.py" <<'EOF2'
import os, sys
os.closerange(3, 65536)
for _ in range(int(sys.argv[1])):
    os.set_inheritable(os.open("/dev/null", os.O_RDONLY), True)
os.execvp(sys.argv[2], sys.argv[2:])
EOF2
stop_services
: >"$PS_SYSLOG_FILE"
"$PYTHON" "$T/fds.py" 6 setpriv --reuid=pstest2 --regid="$(id -g pstest2)" --init-groups -- \
	prlimit --nofile=16:16 --core=0:0 -- nice -n 19 taskset -c 0 \
	"$SU" "$T/pam.d" ccslow pstest2 -- sleep 10 >"$T/att.out" 2>&1 &
att=$!
wait_ms 30000 "grep -q '^open=' '$T/att.out'"
svc=$(services) HELD=""
if [ -z "$svc" ]; then
	expect "the attacker's login (nofile 16, nice 19, CPU 0) started no service it could not clean, and says why ($(grep -h '^open=' "$T/att.out"); $(tail -1 "$PS_SYSLOG_FILE"))" \
		'grep -q "the system service was not started from this login: a resource limit of the login is below init.s" "$PS_SYSLOG_FILE"'
	# again, the module's sends slowed 0.3 s (strace): the starter refuses and ends before it
	# is handed the request, which once hid its line behind "could not hand the request"
	if [ "${PS_SANITIZERS:-no}" = yes ]; then
		skip "and says why when it ends before the module hands it the request" \
			"a sanitizer build: LeakSanitizer cannot run in the traced processes"
	else
		: >"$PS_SYSLOG_FILE"
		strace -f -o /dev/null -e trace=sendto -e inject=sendto:delay_enter=300000 \
			"$PYTHON" "$T/fds.py" 6 setpriv --reuid=pstest2 --regid="$(id -g pstest2)" \
			--init-groups -- prlimit --nofile=16:16 --core=0:0 -- \
			"$SU" "$T/pam.d" ccslow pstest2 -- true >"$T/att2.out" 2>&1
		expect "and says why when it ends before the module hands it the request ($(grep -h '^open=' "$T/att2.out"); $(grep ': open: ' "$PS_SYSLOG_FILE" | tail -1))" \
			'[ -z "$(services)" ] && grep -q "the system service was not started from this login: a resource limit of the login is below init.s" "$PS_SYSLOG_FILE"'
	fi
	PS_HOLD_OPEN=120 "$DRIVER" "$T/pam.d" cc pstest1 -- true >"$T/held.two" 2>&1 &
	HELD=$!
	wait_ms 15000 "grep -q '^open=' '$T/held.two'"
	svc=$(services)
	expect "the victim's next login starts it" 'grep -q "^open=0 " "$T/held.two" && [ -n "$svc" ]'
else
	ok "the attacker's login (nofile 16, nice 19, CPU 0) started the service"
fi
if [ -n "$svc" ]; then
	# init's, or where root cannot raise a hard limit, the unlowered one of a login run from here
	expect "its limits are not the attacker's: init's, or a clean login's here (open files: $(limit "$svc" 'Max open files'); init $(limit 1 'Max open files'), here $(limit $$ 'Max open files'))" \
		'limits_clean "$svc"'
	expect "its nice is 0 ($(stat_field "$svc" 17))" '[ "$(stat_field "$svc" 17)" = 0 ]'
	expect "it may run on every CPU ($(field "$svc" Cpus_allowed_list) vs $(field 1 Cpus_allowed_list))" \
		'[ "$(field "$svc" Cpus_allowed_list)" = "$(field 1 Cpus_allowed_list)" ]'
	expect "it is in a session of its own, not the attacker's" \
		'[ "$(stat_field "$svc" 4)" != "$(stat_field $$ 4)" ]'
	expect "the attacker cannot signal it" \
		'! setpriv --reuid=pstest2 --regid="$(id -g pstest2)" --init-groups -- kill -0 "$svc" 2>/dev/null'
	clear_keys pstest1
	session cc pstest1
	expect "a victim's login through it succeeds" '[ "$OPEN" = 0 ]'
fi
[ -n "$HELD" ] && kill -USR1 "$HELD" 2>/dev/null && wait "$HELD" 2>/dev/null
kill "$att" 2>/dev/null
wait "$att" 2>/dev/null

# ==== 3. a stopped su-like login blocks nobody else, at any point of its start
worst=0
stops_failed=""
for d in 0 1 2 5 10 20 40 80; do
	stop_services
	setpriv --reuid=pstest2 --regid="$(id -g pstest2)" --init-groups -- \
		"$SU" "$T/pam.d" cc pstest2 -- sleep 30 >"$T/att.$d" 2>&1 &
	att=$!
	[ "$d" = 0 ] || sleep "0.$(printf '%03d' "$d")"
	setpriv --reuid=pstest2 --regid="$(id -g pstest2)" --init-groups -- kill -STOP "$att"
	session cc pstest1
	[ "${MS:-99999}" -gt "$worst" ] && worst=${MS:-99999}
	[ "$OPEN" = 0 ] && [ "${MS:-99999}" -lt 3000 ] || stops_failed="$stops_failed $d:$OPEN/${MS}ms"
	kill -KILL "$att" 2>/dev/null
	wait "$att" 2>/dev/null
done
expect "the victim's logins succeed within timeout while the attacker's login is stopped at 0 to 80 ms (worst ${worst} ms;${stops_failed:- none failed})" \
	'[ -z "$stops_failed" ]'

# ==== 4. the service's socket, spoken to directly by the attacker
# frame OP [KEY VALUE]... [-- BODY]: one message to the service as pstest2; prints the answer
cat >"$T/frame.py" <<'PY'
import socket, struct, sys
path, args = sys.argv[1], sys.argv[2:]
body = b""
if "--" in args:
    i = args.index("--"); body = args[i + 1].encode(); args = args[:i]
head = "".join("%s %s\n" % (args[i], args[i + 1]) for i in range(0, len(args), 2)) + "\n"
msg = head.encode() + body
s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(path)
s.sendall(struct.pack(">I", len(msg)) + msg)
data = b""
while True:
    c = s.recv(65536)
    if not c: break
    data += c
    if len(data) >= 4 and len(data) >= 4 + struct.unpack(">I", data[:4])[0]: break
print(data[4:].decode("utf-8", "replace"))
PY
chmod 644 "$T/frame.py"
frame() { setpriv --reuid=pstest2 --regid="$(id -g pstest2)" --init-groups -- /usr/bin/python3 "$T/frame.py" "$@"; }

stop_services
open_held_cc() { PS_HOLD_OPEN=120 "$DRIVER" "$T/pam.d" cc pstest1 -- true >"$T/held.cc" 2>&1 & HELD=$!; wait_ms 15000 "grep -q '^open=' '$T/held.cc'"; }
open_held_cc
name=$(name_of "")
sock="$PS_RUNDIR/$name.sock"
frame "$sock" op open service "$name" uid 1001 pid 1 >"$T/f1"
expect "a user cannot count sessions at the service: $(head -2 "$T/f1" | tr '\n' ' ')" \
	'grep -q "only the PAM module" "$T/f1"'
frame "$sock" op grant service "$name" -- "grant_type=client_credentials" >"$T/f2"
expect "a client_credentials service adds its secret to no user's request" \
	'grep -q "^status 7" "$T/f2"'
frame "$sock" op token service service-00000000 >"$T/f3"
expect "a request for another configuration is refused" 'grep -q "serves another configuration" "$T/f3"'
frame "$sock" op token service "$name" >"$T/f4"
expect "any local user may read the host's app token (the app's, not a user's)" \
	'grep -q "^status 0" "$T/f4" && grep -q "^info " "$T/f4"'
! grep -q -- "$SECRET" "$T/f1" "$T/f2" "$T/f3" "$T/f4"
expect "no answer carries the secret" '[ $? = 0 ]'
kill -USR1 "$HELD" 2>/dev/null
wait "$HELD" 2>/dev/null

# a user who holds many connections open and idle keeps no other user's login out
cat >"$T/hold.py" <<'PY'
import socket, sys, time
held = []
for _ in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(0.5)  # a full backlog: stop there, holding what we have
    try:
        s.connect(sys.argv[1]); held.append(s)
    except OSError:
        break
open(sys.argv[3], "w").write("%d\n" % len(held))
time.sleep(float(sys.argv[4]))
PY
chmod 644 "$T/hold.py"
: >"$T/held.n"
chmod 666 "$T/held.n"
setpriv --reuid=pstest2 --regid="$(id -g pstest2)" --init-groups -- \
	/usr/bin/python3 "$T/hold.py" "$sock" 300 "$T/held.n" 8 &
hold=$!
wait_ms 5000 '[ -s "$T/held.n" ]'
clear_keys pstest1
session cc pstest1
expect "while pstest2 holds $(cat "$T/held.n") idle connections to the service, pstest1's login opens within timeout (${MS} ms)" \
	'[ "$(cat "$T/held.n")" -gt 8 ] && [ "$OPEN" = 0 ] && [ "${MS:-99999}" -lt 3000 ]'
kill "$hold" 2>/dev/null
wait "$hold" 2>/dev/null

# authorization_code: the service posts only code exchanges and refreshes, and rations each uid
stop_services
PS_HOLD_OPEN=120 "$DRIVER" "$T/pam.d" ac pstest1 -- true >"$T/held.ac" 2>&1 &
HELD=$!
wait_ms 15000 "grep -q '^open=' '$T/held.ac'"
name=$(name_of user-read-email)
sock="$PS_RUNDIR/$name.sock"
frame "$sock" op grant service "$name" -- "grant_type=client_credentials&scope=x" >"$T/g1"
expect "an authorization_code service refuses a client_credentials grant from a user" \
	'grep -q "refuses this token request" "$T/g1"'
frame "$sock" op grant service "$name" -- "grant_type=refresh_token&refresh_token=abc&client_id=other" >"$T/g2"
expect "it refuses fields beyond the grant's own (client_id)" 'grep -q "refuses this token request" "$T/g2"'
r0=$(requests)
n_ok=0 n_limited=0 t0=$(now_ms)
for i in $(seq 1 24); do
	frame "$sock" op grant service "$name" -- "grant_type=refresh_token&refresh_token=bogus$i" >"$T/g3"
	grep -q "^http 400" "$T/g3" && n_ok=$((n_ok + 1))
	grep -q "too many token requests" "$T/g3" && n_limited=$((n_limited + 1))
done
r1=$(requests)
# a burst of 20, then one every 3 s: at most 20 + one per 3 s the loop took reach the server
max_ok=$((20 + ($(now_ms) - t0) / 3000))
expect "24 refresh requests from one uid in a row: a burst of 20 (and one per 3 s) reach the server, the rest are held back ($n_ok passed, at most $max_ok; $n_limited limited; server saw $((r1 - r0)))" \
	'[ "$n_ok" -ge 20 ] && [ "$n_ok" -le "$max_ok" ] && [ $((n_ok + n_limited)) = 24 ] && [ "$n_limited" -ge 1 ] &&
	[ $((r1 - r0)) = "$n_ok" ]'
kill -USR1 "$HELD" 2>/dev/null
wait "$HELD" 2>/dev/null

# ==== 5. Retry-After holds everybody back: one user's 429 is no reason for another's request
stop_services
clear_keys pstest1
clear_keys pstest2
ps_server_control "$acc_URL" '{"fault": "rate_limit", "fault_count": 1, "retry_after": 60}'
r0=$(requests)
session cc pstest1
expect "the first login meets the 429 (session error)" '[ "$OPEN" != 0 ]'
: >"$PS_SYSLOG_FILE"
session cc pstest2
r1=$(requests)
expect "inside the Retry-After window the next user's login makes no request ($((r1 - r0)) in all)" \
	'[ "$OPEN" != 0 ] && [ $((r1 - r0)) = 1 ]'
expect "and says why: the service holds requests back" 'grep -q "holds token requests back" "$PS_SYSLOG_FILE"'
ps_server_control "$acc_URL" '{"fault": null, "fault_count": null}'

done_testing
