#!/bin/bash
# keeper.sh: the user's keeper (`pam_spotify_helper keeper`, one per user and configuration, its
# socket RUNDIR/user/UID/keeper-XXXXXXXX.sock in a root-made directory of the user's, mode 0700),
# seen from outside by an observer and an attacker, through real PAM sessions against the fake
# accounts server:
#   a  a session whose process is SIGKILLed (never closed) is noticed through its pidfd: as the
#      only session its keys go, the socket file goes and the keeper exits; beside another
#      session the keeper stays, and exits with that one
#   b  100 open/close cycles (client_credentials and pkce in turn) and 20 concurrent logins: while
#      sessions are open exactly one keeper per user and configuration; afterwards no keeper, no
#      socket file, no key, no stale file in RUNDIR/user/UID or the store (CLIENT.refresh and
#      CLIENT.lock only), no RUNDIR/login-UID.lock
#   c  a keeper frozen (SIGSTOP) past its token's expiry has a new token within 2 s of SIGCONT
#   d  a clock step (clock_settime(CLOCK_REALTIME) to the current time) makes the keeper renew
#      at once, although its token is far from due
#   e  a home directory that never answers (a FUSE mount that is never served, in a private mount
#      namespace) delays no login past timeout; the module opens nothing under a home directory
#      (strace of the PAM driver and the module's own children up to their exec)
#   f  fake keepers: another user's socket planted at the keeper's path, a symbolic link to
#      another user's keeper, the user's own fake keeper that never answers, answers garbage,
#      floods or hangs up: every login returns within timeout; nothing reaches another user's
#      socket, and another user's keeper gains no session
#   g  one start at a time: 10 logins at once start one system service, one helper and one keeper
#      (strace, execve only); a start lock the user holds delays only that user's login, to its
#      timeout, with a message; a symbolic link planted as the lock file is not followed; a keeper
#      stopped before it takes its request costs one login, which says so, and is killed; a
#      login with RLIMIT_NPROC 1 says why the keeper did not start and leaves no socket file
# Needs root and an installed build (see session.sh). Every wait has a deadline.
. "$top_srcdir/tests/lib.sh"

need_root
[ -f "$PS_SECUREDIR/pam_spotify.so" ] && [ -x "$PS_HELPER" ] && [ -x "$PS_READER" ] ||
	skip_all "pam_spotify is not installed under its configured prefix: run make install first"
[ -n "${PS_RUNDIR:-}" ] || skip_all "PS_RUNDIR is not set (make check sets it)"
ps_tmpdir
ps_lock_keyring
U=pstest1 # the user
A=pstest2 # another user, the attacker of section f
ps_ensure_user $U
ps_ensure_user $A
ps_ensure_app_user # client_credentials tokens come from the system service
UID1=$(id -u $U)
UID2=$(id -u $A)
home_of() { getent passwd "$1" | cut -d: -f6; }
HOME1=$(home_of $U)
STORE1="$HOME1/.local/state/spotify-token"
STORE2="$(home_of $A)/.local/state/spotify-token"
ps_login_fixture KEEPER kcc kpkce
KEEPER_PAT='pam_spotify_helper keeper'
UPY=/usr/bin/python3 # the test users cannot reach root's python (a pyenv shim under /root)
TO=$((3 * PS_TIME_FACTOR)) # the login's timeout
LATE_MS=$((TO * 1000 + 1500)) # a login that returns later than this is late

conf() { # conf FILE FLOW CLIENT [extra lines...]
	local f=$1 flow=$2 client=$3
	shift 3
	{
		echo "flow = $flow"
		echo "client_id = $client"
		echo "accounts_url = $acc_URL"
		echo "ca_file = $CA"
		echo "timeout = $TO"
		echo "connect_timeout = 2"
		echo "refresh_margin = 3"
		printf '%s\n' "$@"
	} >"$f"
	chmod 644 "$f"
}
conf "$T/cc.conf" client_credentials kcc "client_secret_file = $T/secret"
conf "$T/pkce.conf" pkce kpkce "scopes = user-read-email" "enroll = never"
mkdir -p "$T/pam.d"
printf '%s required pam_deny.so\n' auth account password session >"$T/pam.d/other"
for svc in cc pkce; do
	printf 'session optional pam_keyinit.so force revoke\nsession required %s config=%s\n' \
		"$PS_SECUREDIR/pam_spotify.so" "$T/$svc.conf" >"$T/pam.d/$svc"
done

# --- small tools

stats() { ps_server_stats "$acc_URL" | ps_json "$1"; }
grants() { stats "j['by_grant'].get('$1', 0)"; }
keepers() { pgrep -u "$1" -f "$KEEPER_PAT"; }
nkeepers() { keepers "$1" | wc -l; }
udir() { echo "$PS_RUNDIR/user/$(id -u "$1")"; }
# sockets USER: the names of the keeper sockets in the user's RUNDIR directory, one a line
sockets() { ls -1A "$(udir "$1")" 2>/dev/null | grep -E '^keeper-[0-9a-f]{8}\.sock$'; }
nsockets() { sockets "$1" | wc -l; }
# stale USER STORE: what is left that should not be: in RUNDIR/user/UID anything but the keepers'
# lock files, in the store anything but CLIENT.refresh and CLIENT.lock, and RUNDIR/login-UID.lock
stale() {
	local u=$1 store=$2
	ls -1A "$(udir "$u")" 2>/dev/null | grep -vE '^keeper-[0-9a-f]{8}\.lock$' | sed "s|^|$(udir "$u")/|"
	ls -1A "$store" 2>/dev/null | grep -vE '^(kcc|kpkce)\.(refresh|lock)$' | sed "s|^|$store/|"
	[ -e "$PS_RUNDIR/login-$(id -u "$u").lock" ] && echo "$PS_RUNDIR/login-$(id -u "$u").lock"
	return 0
}
token_of() { reader "$1" 2>/dev/null; }
# gone USER: no keeper, no keeper socket, no key of the user
gone() { [ "$(nkeepers "$1")" = 0 ] && [ "$(nsockets "$1")" = 0 ] && no_keys "$1"; }
# drive NAME SERVICE USER: one open/close under a hard 3 x timeout + 10 s bound; output in
# $T/drv.NAME. The command (true) makes the driver flush its open line before the close, which
# may be the part that hangs. OPEN_MS: the open's time, empty when it never returned.
drive() {
	timeout -s KILL $((3 * TO + 10)) "$DRIVER" "$T/pam.d" "$2" "$3" -- true >"$T/drv.$1" 2>&1
	OPEN_MS=$(sed -n 's/^open=[0-9]* ms=\([0-9]*\).*/\1/p' "$T/drv.$1")
	OPEN_RC=$(sed -n 's/^open=\([0-9]*\) .*/\1/p' "$T/drv.$1")
}
in_time() { [ -n "$OPEN_MS" ] && [ "$OPEN_MS" -le "$LATE_MS" ]; }
closed() { grep -q '^close=' "$T/drv.$1"; }

FAKES=""
kill_keepers() {
	local p
	for p in $(keepers "$1"); do kill -CONT "$p" 2>/dev/null; kill -9 "$p" 2>/dev/null; done
	wait_ms 3000 "[ \"\$(nkeepers $1)\" = 0 ]"
}
keeper_cleanup() {
	local p u
	[ -n "${PS_KEEP_TMP:-}" ] && cp -a "$T" "$PS_KEEP_TMP"
	for p in $DRIVERS; do
		grep -q pam_session "/proc/$p/cmdline" 2>/dev/null && kill -9 "$p" 2>/dev/null
	done
	for p in $FAKES; do kill -9 "$p" 2>/dev/null; done
	FAKES=""
	for u in $U $A; do
		kill_keepers $u
		clear_keys $u
		rm -f "$(udir $u)"/keeper-*.sock 2>/dev/null
	done
	rm -rf "$PS_RUNDIR/kt-evil"
	# an older build's login lock (this RUNDIR outlives installs): stale() must see only new ones
	rm -f "$PS_RUNDIR/login-$UID1.lock" "$PS_RUNDIR/login-$UID2.lock"
	as_user_q $U rm -rf "$STORE1"
	as_user_q $A rm -rf "$STORE2"
	ps_stop_services
}
ps_on_exit keeper_cleanup
keeper_cleanup
ps_server_control "$acc_URL" '{"expires_in": 3600}'
ps_enroll $U kpkce

# ==== a. a session killed with SIGKILL, never closed
open_held cc $U killed
drv=$HELD_PID
kp=$(keepers $U)
CC_SOCK=$(sockets $U) # the client_credentials configuration's socket name (section f)
expect "a: the session opens (PAM_SUCCESS) with a token; one keeper ($kp), one socket ($CC_SOCK)" \
	'[ "$(held_open killed)" = 0 ] && [ -n "$(user_key $U spotify:access_token)" ] &&
	[ "$(nkeepers $U)" = 1 ] && [ "$(nsockets $U)" = 1 ]'
expect "a: the keeper runs as the user and its socket is a socket of the user's in RUNDIR/user/$UID1" \
	'[ -n "$kp" ] && [ "$(stat -c %u "/proc/$kp")" = "$UID1" ] &&
	[ -S "$(udir $U)/$CC_SOCK" ] && [ "$(stat -c %u "$(udir $U)/$CC_SOCK")" = "$UID1" ]'
expect "a: RUNDIR/user/$UID1 is the user's, mode 0700, in a RUNDIR/user of root's that nobody else may write ($(stat -c '%U %a' "$(udir $U)" "$PS_RUNDIR/user" 2>&1 | tr '\n' ' '))" \
	'[ "$(stat -c "%U %a" "$(udir $U)")" = "$U 700" ] && [ "$(stat -c %U "$PS_RUNDIR/user")" = root ] &&
	[ $((0$(stat -c %a "$PS_RUNDIR/user") & 022)) = 0 ]'
expect "a: another user can create nothing in RUNDIR/user/$UID1" \
	'[ -d "$(udir $U)" ] && ! setpriv --reuid=$A --regid="$(id -g $A)" --init-groups -- touch "$(udir $U)/x" 2>/dev/null &&
	[ ! -e "$(udir $U)/x" ]'
kill -9 "$drv"
wait "$drv" 2>/dev/null
wait_ms 2000 "! alive ${kp:-0}"
rc=$?
expect "a: SIGKILL of the only session's process: the keeper (pid $kp) exits within 2 s (${WAITED} ms)" \
	'[ -n "$kp" ] && [ $rc = 0 ]'
expect "a: and the keys are removed" 'wait_ms 500 "no_keys $U"'
expect "a: and its socket file is removed ($(sockets $U | tr '\n' ' '))" '[ "$(nsockets $U)" = 0 ]'

open_held cc $U killA
drvA=$HELD_PID
open_held cc $U killB
drvB=$HELD_PID
kp=$(keepers $U)
kill -9 "$drvA"
wait "$drvA" 2>/dev/null
expect "a: SIGKILL of one of two sessions: the keeper stays and the token with it" \
	'[ "$(held_open killA)" = 0 ] && [ "$(held_open killB)" = 0 ] && [ -n "$kp" ] &&
	[ "$(nkeepers $U)" = 1 ] && alive "$kp" && [ -n "$(token_of $U)" ]'
close_held "$drvB"
wait_ms 2000 "! alive ${kp:-0}"
rc=$?
expect "a: then the other session's close is the last: the keeper exits within 2 s (${WAITED} ms), no keys, no socket" \
	'[ -n "$kp" ] && [ $rc = 0 ] && wait_ms 500 "gone $U"'

# ==== b. 100 open/close cycles, then 20 concurrent logins
kill_keepers $U
clear_keys $U
# The session's command, as the user: it reads the token, then prints how many keepers and keeper
# sockets of the user it sees (once a keeper of another configuration, or of the previous cycle,
# has finished exiting: within 0.5 s). The pattern's [r] keeps the shell itself from matching.
cat >"$T/count.sh" <<'EOF'
"$1" >/dev/null || exit 1
i=0
while :; do
	k=$(pgrep -c -u "$(id -u)" -f 'pam_spotify_helpe[r] keeper')
	s=$(ls -1A "$2" 2>/dev/null | grep -cE '^keeper-[0-9a-f]{8}\.sock$')
	{ [ "$k" = 1 ] && [ "$s" = 1 ]; } || [ $i -ge 5 ] && break
	i=$((i + 1))
	sleep 0.1
done
echo "keepers=$k sockets=$s"
EOF
chmod 644 "$T/count.sh"
good=0 bad=""
t0=$(now_ms)
for i in $(seq 100); do
	svc=cc
	[ $((i % 2)) = 0 ] && svc=pkce
	"$DRIVER" "$T/pam.d" $svc $U -- sh "$T/count.sh" "$PS_READER" "$(udir $U)" >"$T/cycle" 2>&1
	if grep -q '^open=0 ' "$T/cycle" && grep -q '^command=0$' "$T/cycle" &&
		grep -q '^keepers=1 sockets=1$' "$T/cycle" && grep -q '^close=0 ' "$T/cycle"; then
		good=$((good + 1))
	else
		[ ${#bad} -lt 300 ] && bad="$bad $i($svc):$(grep -E '^(open|command|keepers|close)=' "$T/cycle" | cut -c1-40 | tr '\n' ',')"
	fi
done
diag "100 cycles took $(($(now_ms) - t0)) ms"
expect "b: 100 cycles (cc and pkce in turn): each opened, read a token, saw exactly one keeper and one keeper socket of the user, and closed ($good did;${bad:- no failure})" \
	'[ "$good" = 100 ]'
expect "b: after the cycles: no keeper, no keeper socket, no key (within 3 s)" 'wait_ms 3000 "gone $U"'
expect "b: after the cycles: no stale file ($(stale $U "$STORE1" | tr '\n' ' '))" '[ -z "$(stale $U "$STORE1")" ]'

clear_keys $U
"$PYTHON" - "$T/kcount" 12 $U "$KEEPER_PAT" <<'EOF' &
import subprocess, sys, time
out, secs, user, pat = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
end, seen = time.time() + secs, 0
while time.time() < end:
    r = subprocess.run(["pgrep", "-u", user, "-f", pat], capture_output=True, text=True)
    seen = max(seen, len(r.stdout.split()))
    time.sleep(0.02)
open(out, "w").write("%d\n" % seen)
EOF
kcount_pid=$!
g0=$(grants refresh_token)
cpids=""
for i in $(seq 20); do
	PS_HOLD_OPEN=$HOLD_CAP "$DRIVER" "$T/pam.d" pkce $U -- true >"$T/conc.$i" 2>&1 &
	cpids="$cpids $!"
done
DRIVERS="$DRIVERS $cpids"
all_open() { local i; for i in $(seq 20); do grep -q '^open=' "$T/conc.$i" || return 1; done; }
wait_ms 20000 all_open
opened=$(cat "$T"/conc.* | grep -c '^open=0 ')
kp=$(keepers $U)
expect "b: 20 concurrent pkce logins: all succeed ($opened), one keeper, one keeper socket ($(sockets $U | tr '\n' ' '))" \
	'[ "$opened" = 20 ] && [ "$(nkeepers $U)" = 1 ] && [ "$(nsockets $U)" = 1 ]'
expect "b: 20 concurrent logins made one refresh request ($(($(grants refresh_token) - g0)))" \
	'[ $(($(grants refresh_token) - g0)) = 1 ]'
wait "$kcount_pid"
expect "b: never more than one keeper process of the user at any time (max seen $(cat "$T/kcount"))" \
	'[ "$(cat "$T/kcount")" = 1 ]'
close_held $cpids
wait_ms 3000 "! alive ${kp:-0}"
rc=$?
expect "b: after the 20 close: the keeper exits within 3 s (${WAITED} ms); no keeper socket, no key" \
	'[ -n "$kp" ] && [ $rc = 0 ] && wait_ms 1000 "gone $U"'
expect "b: after the 20 close: no stale file ($(stale $U "$STORE1" | tr '\n' ' '))" '[ -z "$(stale $U "$STORE1")" ]'

# ==== c. a keeper frozen past its token's expiry
# 8 s tokens, refresh_margin 3: the keeper is due to renew 5 s in; it is stopped from then until
# the token has expired (the kernel key too), then continued.
ps_server_control "$acc_URL" '{"expires_in": 8}'
clear_keys $U
open_held pkce $U frozen
drv=$HELD_PID
kp=$(keepers $U)
tok0=$(token_of $U)
exp=$(reader $U --json 2>/dev/null | ps_json 'j["expires_at"]' 2>/dev/null)
if [ -n "$kp" ] && [ -n "$tok0" ] && [ -n "$exp" ]; then
	kill -STOP "$kp"
	g0=$(grants refresh_token)
	wait_ms 15000 '[ "$(date +%s)" -gt "$exp" ] && [ -z "$(token_of $U)" ]'
	expect "c: while the keeper is stopped the token expires and none is readable (${WAITED} ms)" \
		'[ -z "$(token_of $U)" ] && [ "$(grants refresh_token)" = "$g0" ]'
	kill -CONT "$kp"
	wait_ms 2000 't=$(token_of $U); [ -n "$t" ] && [ "$t" != "$tok0" ]'
	rc=$?
	expect "c: within 2 s of SIGCONT the keeper has a new token in the keyring (${WAITED} ms)" '[ $rc = 0 ]'
	expect "c: from one more refresh request ($(($(grants refresh_token) - g0)))" \
		'[ $(($(grants refresh_token) - g0)) -ge 1 ]'
else
	not_ok "c: a pkce session with a keeper ($kp) and a token (expires_at ${exp:-none})"
fi
close_held "$drv"
wait_ms 3000 "gone $U"

# ==== d. a clock step: clock_settime(CLOCK_REALTIME) to the current time
ps_server_control "$acc_URL" '{"expires_in": 3600}'
clear_keys $U
open_held pkce $U clock
drv=$HELD_PID
kp=$(keepers $U)
tok0=$(token_of $U)
exp=$(reader $U --json 2>/dev/null | ps_json 'j["expires_at"]' 2>/dev/null)
g0=$(grants refresh_token)
step() {
	"$PYTHON" - <<'EOF'
import ctypes, sys
class timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]
libc = ctypes.CDLL(None, use_errno=True)
ts = timespec()
if libc.clock_gettime(0, ctypes.byref(ts)) != 0 or libc.clock_settime(0, ctypes.byref(ts)) != 0:
    import os
    print(os.strerror(ctypes.get_errno()))
    sys.exit(1)
EOF
}
if [ -z "$kp" ] || [ -z "$tok0" ] || [ -z "$exp" ]; then
	not_ok "d: a pkce session with a keeper ($kp) and a token (expires_at ${exp:-none})"
elif ! why=$(step); then
	skip "d: a clock step makes the keeper renew at once" "clock_settime is refused here: $why"
else
	wait_ms 2000 't=$(token_of $U); [ -n "$t" ] && [ "$t" != "$tok0" ] && [ "$(grants refresh_token)" -gt "$g0" ]'
	rc=$?
	expect "d: a clock step (to the current time) with the token $((exp - $(date +%s))) s from expiry: within 2 s a new token and one more refresh request (${WAITED} ms; $(($(grants refresh_token) - g0)) request(s))" \
		'[ $rc = 0 ] && [ $((exp - $(date +%s))) -gt 3000 ]'
	expect "d: the same keeper renewed (pid $kp)" '[ "$(keepers $U)" = "$kp" ]'
fi
close_held "$drv"
wait_ms 3000 "gone $U"

# ==== e. a home directory that never answers; the module opens nothing under a home directory
# A FUSE file system mounted over the user's home in a private mount namespace (nothing outside
# it sees the mount), served by nobody: every lookup there waits for an answer that never
# comes. The logins run in that namespace; the keeper they start may block there, never the login.
cat >"$T/fuse_hang.py" <<'EOF'
import ctypes, os, signal, sys
target, ready = sys.argv[1], sys.argv[2]
libc = ctypes.CDLL(None, use_errno=True)
try:
    fd = os.open("/dev/fuse", os.O_RDWR)
except OSError as e:
    open(ready, "w").write("no /dev/fuse: %s\n" % e.strerror)
    sys.exit(1)
opts = "fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other" % fd
if libc.mount(b"pam_spotify_test", target.encode(), b"fuse.pam_spotify_test", 0, opts.encode()) != 0:
    open(ready, "w").write("mount: %s\n" % os.strerror(ctypes.get_errno()))
    sys.exit(1)
open(ready, "w").write("mounted\n")
signal.pause()  # hold /dev/fuse open and never read it: no request is ever answered
EOF
cat >"$T/in_ns.sh" <<'EOF'
# in a private mount namespace: mount, then run the logins, then end the mount
T=$1 home=$2 user=$3 py=$4 driver=$5 to=$6
"$py" "$T/fuse_hang.py" "$home" "$T/fuse.ready" &
fp=$!
i=0
while [ ! -s "$T/fuse.ready" ] && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.1; done
if grep -q '^mounted$' "$T/fuse.ready" 2>/dev/null; then
	# the mount answers nothing: a stat of the home must hang (bounded here)
	timeout -s KILL 1 stat "$home/." >/dev/null 2>&1
	echo "probe=$?" >"$T/fuse.probe"
	for svc in pkce cc; do
		timeout -s KILL $((3 * to + 10)) "$driver" "$T/pam.d" $svc "$user" -- true >"$T/drv.fuse-$svc" 2>&1
	done
fi
kill -9 $fp 2>/dev/null # its /dev/fuse closes: the connection is aborted, waiters get ENOTCONN
wait $fp 2>/dev/null
umount -l "$home" 2>/dev/null
EOF
rm -f "$T/fuse.ready" "$T/fuse.probe"
kill_keepers $U
clear_keys $U
if ! command -v unshare >/dev/null; then
	skip "e: a home directory that never answers delays no login" "unshare (util-linux) is not installed"
elif ! unshare -m --propagation private true 2>/dev/null; then
	skip "e: a home directory that never answers delays no login" "no mount namespace can be made here"
else
	unshare -m --propagation private bash "$T/in_ns.sh" "$T" "$HOME1" $U "$PYTHON" "$DRIVER" "$TO"
	if ! grep -q '^mounted$' "$T/fuse.ready" 2>/dev/null; then
		skip "e: a home directory that never answers delays no login" \
			"a FUSE file system cannot be mounted here ($(cat "$T/fuse.ready" 2>/dev/null || echo no answer))"
	elif [ "$(cat "$T/fuse.probe")" != "probe=137" ]; then
		skip "e: a home directory that never answers delays no login" \
			"the never-served FUSE mount did not block a stat ($(cat "$T/fuse.probe"))"
	else
		for svc in pkce cc; do
			OPEN_MS=$(sed -n 's/^open=[0-9]* ms=\([0-9]*\).*/\1/p' "$T/drv.fuse-$svc")
			expect "e: $svc: with the home directory blocking every access the login returns within timeout = $TO s + 1.5 s (open in ${OPEN_MS:-never} ms: $(head -1 "$T/drv.fuse-$svc"))" \
				'in_time'
			expect "e: $svc: and its close returns too ($(grep '^close=' "$T/drv.fuse-$svc"))" 'closed fuse-$svc'
		done
	fi
fi
kill_keepers $U # a keeper that waited on the mount
clear_keys $U

# strace of the login: the driver and every process the module forks, up to its exec (the code
# that runs in them is the module's), must name no path under the home directory. Not in a
# sanitizer build: strace follows the helper too, where LeakSanitizer reports ptrace as fatal.
if [ "${PS_SANITIZERS:-no}" = yes ]; then
	skip "e: the module opens nothing under a home directory" "a sanitizer build (LeakSanitizer cannot run under ptrace)"
elif command -v strace >/dev/null; then
	ps_enroll $U kpkce
	rm -rf "$T/st"
	mkdir "$T/st"
	timeout -s INT 30 strace -f -ff -qq -o "$T/st/t" -e trace=%file,%process \
		"$DRIVER" "$T/pam.d" pkce $U >"$T/drv.strace" 2>&1
	"$PYTHON" - "$T/st" "$HOME1" "$T/pkce.conf" "$DRIVER" >"$T/strace.report" <<'EOF'
# Walk the process tree from the driver: a process is the module's (or the driver's) until it
# execs; its forks before that are too. Print the module's file syscalls under HOME, and a
# line "config=yes" when the module's open of its configuration was seen (the trace works).
import os, re, sys
d, home, config, driver = sys.argv[1:5]
files = {int(n.rsplit(".", 1)[1]): os.path.join(d, n) for n in os.listdir(d)}
root = None
for pid, path in files.items():
    first = open(path, errors="replace").readline()
    if first.startswith("execve(\"%s\"" % driver) or first.startswith("execve(\"%s\"" % os.path.realpath(driver)):
        root = pid
if root is None:
    print("no-root"); sys.exit(0)
fork = re.compile(r"^(clone3?|fork|vfork)\(.*\)\s+=\s+(\d+)")
execd = re.compile(r"^execve(at)?\(.*\)\s+=\s+0")
todo, seen_config, bad = [root], False, []
while todo:
    pid = todo.pop()
    if pid not in files:
        continue
    for n, line in enumerate(open(files[pid], errors="replace")):
        if pid == root and n == 0:
            continue  # the driver's own start
        if execd.match(line):
            break  # from here on another program runs in this process
        m = fork.match(line)
        if m:
            todo.append(int(m.group(2)))
            continue
        if '"%s' % config in line:
            seen_config = True
        if '"%s' % home in line or "spotify-token" in line:
            bad.append("%d: %s" % (pid, line.strip()[:160]))
print("config=%s" % ("yes" if seen_config else "no"))
for b in bad:
    print("home " + b)
EOF
	expect "e: the traced login succeeded and the trace saw the module read its configuration ($(grep '^open=' "$T/drv.strace"))" \
		'grep -q "^open=0 " "$T/drv.strace" && grep -q "^config=yes$" "$T/strace.report"'
	expect "e: the module (the driver and its forks up to exec) opens nothing under the home directory $HOME1 ($(grep -c '^home ' "$T/strace.report") call(s): $(grep '^home ' "$T/strace.report" | head -3 | tr '\n' ' '))" \
		'! grep -q "^home " "$T/strace.report"'
	wait_ms 3000 "gone $U"
else
	skip "e: the module opens nothing under a home directory" "strace is not installed"
fi

# ==== f. fake keepers
# fake_keeper.py MODE PATH LOG: listens at PATH; for every connection logs "accept N", then
# "closed N bytes=B fds=F" with what it received (SCM_RIGHTS fds counted and closed) once the peer
# hangs up. MODE: silent (never answers), garbage (answers random bytes to the first bytes it
# gets), flood (sends random bytes without end), close (hangs up at once).
cat >"$T/fake_keeper.py" <<'EOF'
import array, os, socket, sys, threading
mode, path, log = sys.argv[1:4]
lock = threading.Lock()
def note(line):
    with lock, open(log, "a") as f:
        f.write(line + "\n")
def flood(c):
    junk = os.urandom(65536)
    try:
        while True:
            c.sendall(junk)
    except OSError:
        pass
def serve(c, n):
    nbytes = nfds = 0
    c.settimeout(60)
    try:
        if mode == "flood":
            threading.Thread(target=flood, args=(c,), daemon=True).start()
        while mode != "close":
            data, anc, _, _ = c.recvmsg(65536, socket.CMSG_SPACE(64 * 4))
            for level, kind, raw in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds = array.array("i")
                    fds.frombytes(raw[: len(raw) - len(raw) % 4])
                    nfds += len(fds)
                    for fd in fds:
                        os.close(fd)
            if not data:
                break
            if mode == "garbage" and nbytes == 0:
                c.sendall(os.urandom(512))
            nbytes += len(data)
    except OSError:
        pass
    note("closed %d bytes=%d fds=%d" % (n, nbytes, nfds))
    c.close()
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(64)
note("ready")
n = 0
while True:
    c, _ = s.accept()
    n += 1
    note("accept %d" % n)
    threading.Thread(target=serve, args=(c, n), daemon=True).start()
EOF
chmod 644 "$T/fake_keeper.py"
# fake USER MODE PATH NAME: start a fake keeper as USER at PATH (log $T/fk.NAME); FAKE_PID
fake() {
	: >"$T/fk.$4"
	chown "$1" "$T/fk.$4"
	setpriv --reuid="$1" --regid="$(id -g "$1")" --init-groups --reset-env -- \
		$UPY "$T/fake_keeper.py" "$2" "$3" "$T/fk.$4" 2>>"$T/fk.err" &
	FAKE_PID=$!
	FAKES="$FAKES $FAKE_PID"
	wait_ms 5000 "grep -q '^ready$' '$T/fk.$4'"
}
# fake_done NAME: every connection it accepted has ended (the driver that made it has exited)
fake_done() { [ "$(grep -c '^accept ' "$T/fk.$1")" = "$(grep -c '^closed ' "$T/fk.$1")" ]; }
fake_got() { grep '^closed ' "$T/fk.$1" | grep -v ' bytes=0 fds=0$'; }
stop_fake() { kill -9 "$1" 2>/dev/null; wait "$1" 2>/dev/null; }

kill_keepers $U
kill_keepers $A
clear_keys $U
UD=$(udir $U)
# the planted sockets need the user's directory, as the module makes it (root's mkdir, the user's)
[ -d "$UD" ] || { [ -d "$PS_RUNDIR/user" ] && install -d -m 700 -o $U -g "$(id -g $U)" "$UD"; }

if [ -z "$CC_SOCK" ]; then
	not_ok "f: the keeper's socket name is known (section a saw no keeper socket): the fake keeper tests cannot run"
else
	# --- another user's socket planted at the keeper's path (bound by pstest2 in a directory of
	# its own on RUNDIR's file system, then moved there as an administrator's mistake would)
	rm -rf "$PS_RUNDIR/kt-evil"
	mkdir -m 700 "$PS_RUNDIR/kt-evil" && chown $A "$PS_RUNDIR/kt-evil"
	fake $A silent "$PS_RUNDIR/kt-evil/k.sock" planted
	fp=$FAKE_PID
	rm -f "$UD/$CC_SOCK"
	mv "$PS_RUNDIR/kt-evil/k.sock" "$UD/$CC_SOCK"
	: >"$T/syslog.mark"
	lines0=$(wc -l <"$PS_SYSLOG_FILE")
	drive planted cc $U
	wait_ms 3000 'fake_done planted'
	expect "f: another user's socket at the keeper's path: the login returns within timeout (open=$OPEN_RC in ${OPEN_MS:-never} ms)" \
		'in_time && closed planted'
	expect "f: and nothing reached it: no byte, no pidfd ($(grep -c '^accept ' "$T/fk.planted") connection(s): $(fake_got planted | tr '\n' ' '))" \
		'[ -z "$(fake_got planted)" ]'
	diag "f: the module said: $(tail -n +$((lines0 + 1)) "$PS_SYSLOG_FILE" | head -3 | tr '\n' ' ')"
	stop_fake "$fp"
	rm -f "$UD/$CC_SOCK"
	rm -rf "$PS_RUNDIR/kt-evil"
	kill_keepers $U
	clear_keys $U

	# --- the user's symbolic link at the keeper's path to another user's running keeper
	open_held cc $A other
	drvA=$HELD_PID
	kA=$(keepers $A)
	sA=$(sockets $A)
	if [ -n "$kA" ] && [ -n "$sA" ]; then
		as_user_q $U ln -sf "$(udir $A)/$sA" "$UD/$CC_SOCK"
		# the user's session stays open while the other user's closes: had the other user's
		# keeper taken it, that keeper would outlive its own last session
		open_held cc $U symlink
		drvU=$HELD_PID
		OPEN_MS=$(sed -n 's/^open=[0-9]* ms=\([0-9]*\).*/\1/p' "$T/held.symlink")
		OPEN_RC=$(held_open symlink)
		expect "f: a symbolic link at the keeper's path to another user's keeper socket: the login returns within timeout (open=$OPEN_RC in ${OPEN_MS:-never} ms)" \
			'in_time'
		close_held "$drvA"
		wait_ms 3000 "! alive $kA"
		rc=$?
		expect "f: the other user's keeper gained no session from it: at its own last close it exits within 3 s (${WAITED} ms)" \
			'[ $rc = 0 ] && wait_ms 1000 "gone $A"'
		close_held "$drvU"
	else
		not_ok "f: $A's session has a keeper ($kA) and a keeper socket ($sA)"
		close_held "$drvA"
	fi
	rm -f "$UD/$CC_SOCK"
	kill_keepers $U
	kill_keepers $A
	clear_keys $U

	# --- the user's own fake keeper at the path
	for mode in silent garbage flood close; do
		fake $U $mode "$UD/$CC_SOCK" own-$mode
		fp=$FAKE_PID
		t0=$(now_ms)
		drive own-$mode cc $U
		el=$(($(now_ms) - t0))
		expect "f: the user's own fake keeper that $(case $mode in silent) echo "never answers" ;; garbage) echo "answers garbage" ;; flood) echo "floods" ;; close) echo "hangs up at once" ;; esac): the login returns within timeout (open=$OPEN_RC in ${OPEN_MS:-never} ms), the close too (driver ${el} ms)" \
			'in_time && closed own-$mode && [ $el -le $((2 * LATE_MS + 1000)) ]'
		stop_fake "$fp"
		rm -f "$UD/$CC_SOCK"
		kill_keepers $U
		clear_keys $U
	done
fi

# ==== g. one start at a time
# N logins at once, none of their processes running: one system service start (cc), one helper,
# one keeper; the others wait for the socket (the start lock, common/child.h). Counted by strace
# (execve only, through seccomp: the logins run at full speed); not in a sanitizer build.
kill_keepers $U
clear_keys $U
NS=10
cat >"$T/storm.sh" <<EOF
for i in \$(seq $NS); do
	PS_HOLD_OPEN=$HOLD_CAP "$DRIVER" "$T/pam.d" "\$1" $U -- true >"$T/storm.\$1.\$i" 2>&1 &
	echo \$! >>"$T/storm.\$1.pids"
done
wait
EOF
storm_open() { [ "$(cat "$T"/storm.$1.[0-9]* 2>/dev/null | grep -c '^open=')" = $NS ]; }
execs() { grep -c "execve(\"[^\"]*\", \\[\"pam_spotify_helper\", $2\\]" "$T/storm.$1.trace"; }
if [ "${PS_SANITIZERS:-no}" = yes ]; then
	skip "g: one start at a time" "a sanitizer build (LeakSanitizer cannot run under ptrace)"
elif command -v strace >/dev/null; then
	for svc in cc pkce; do
		ps_stop_services
		rm -f "$T"/storm.$svc.*
		timeout -s KILL 60 strace -f -qq --seccomp-bpf -e trace=execve -e signal=none \
			-o "$T/storm.$svc.trace" sh "$T/storm.sh" $svc &
		st=$!
		wait_ms $((TO * 1000 + 20000)) "storm_open $svc"
		ok=$(cat "$T"/storm.$svc.[0-9]* | grep -c '^open=0 ')
		nk=$(nkeepers $U)
		kill -USR1 $(cat "$T/storm.$svc.pids") 2>/dev/null
		wait $st
		h=$(execs $svc '"--pam"') k=$(execs $svc '"keeper"') s=$(execs $svc '"service", "--start"')
		want=0
		[ $svc = cc ] && want=1
		expect "g: $NS logins at once ($svc): all succeed ($ok), one keeper runs ($nk); started: one helper ($h), one keeper ($k), $want system service ($s)" \
			'[ "$ok" = $NS ] && [ "$nk" = 1 ] && [ "$h" = 1 ] && [ "$k" = 1 ] && [ "$s" = $want ]'
		wait_ms 3000 "gone $U"
	done
else
	skip "g: one start at a time" "strace is not installed"
fi

# The user holds the keeper's start lock (flock) and runs no keeper: only the user's own login
# waits, until its timeout, and says what holds it; another user's login is not touched. A planted
# symbolic link as the lock file makes root neither create nor lock its target.
kill_keepers $U
clear_keys $U
LOCKF=$(udir $U)/${CC_SOCK%.sock}.lock
as_user_q $U "$UPY" -c 'import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(60)' "$LOCKF" >"$T/held.flag" &
holder=$!
wait_ms 5000 "[ -s '$T/held.flag' ]"
drive lockheld cc $U
expect "g: the user's own process holds the keeper's start lock: the login returns within timeout (open=$OPEN_RC in ${OPEN_MS:-never} ms) and says so ($(grep -o "lock [^ ]* is held[^(]*" "$PS_SYSLOG_FILE" | tail -1))" \
	'in_time && [ "$OPEN_RC" != 0 ] && grep -q "lock .* is held, but nothing listens" "$PS_SYSLOG_FILE"'
drive other cc $A
expect "g: meanwhile another user's login is not touched (open=$OPEN_RC in ${OPEN_MS:-never} ms)" \
	'[ "$OPEN_RC" = 0 ]'
kill $holder 2>/dev/null
pkill -KILL -u $U -x python3 # the holder itself: as_user's child
wait $holder 2>/dev/null
kill_keepers $A
clear_keys $A
rm -f "$LOCKF" "$T/victim"
as_user_q $U ln -s "$T/victim" "$LOCKF"
drive symlock cc $U
expect "g: a symbolic link planted as the lock file: the login returns within timeout (open=$OPEN_RC in ${OPEN_MS:-never} ms) and its target was not made ($(ls -l "$T/victim" 2>&1 | cut -c1-60))" \
	'in_time && [ ! -e "$T/victim" ]'
rm -f "$LOCKF"
kill_keepers $U
clear_keys $U

# A keeper that is not running by the login's deadline (here stopped the moment it is executed,
# before it takes its request; a user may do that to their own): the login returns in time and
# says so, the helper kills that keeper, which had nothing to finish, and removes its socket, so
# the next login starts one and does not find a stopped keeper holding the lock.
cat >"$T/stopper.py" <<'EOF'
import os, signal, sys, time
uid, out, end = int(sys.argv[1]), sys.argv[2], time.time() + float(sys.argv[3])
open(out + ".up", "w").close()
while time.time() < end:
    for p in os.listdir("/proc"):
        try:
            if not p.isdigit() or os.stat("/proc/" + p).st_uid != uid:
                continue
            if open("/proc/%s/cmdline" % p, "rb").read() == b"pam_spotify_helper\0keeper\0":
                os.kill(int(p), signal.SIGSTOP)
                open(out, "w").write(p + "\n")
                sys.exit(0)
        except OSError:
            pass
sys.exit(1)
EOF
kill_keepers $U
clear_keys $U
rm -f "$T/slow.pid" "$T/slow.pid.up"
"$PYTHON" "$T/stopper.py" "$UID1" "$T/slow.pid" $((TO + 10)) &
stopper=$!
wait_ms 5000 "[ -e '$T/slow.pid.up' ]"
drive slow pkce $U
wait $stopper 2>/dev/null
slow=$(cat "$T/slow.pid" 2>/dev/null)
if [ -z "$slow" ] || [ "$OPEN_RC" = 0 ]; then
	[ -n "$slow" ] && kill -CONT "$slow"
	skip "g: a keeper not running by the login's deadline" "it was ready before it could be stopped (open=$OPEN_RC)"
else
	expect "g: a keeper stopped before it took its request: the login returns within timeout (open=$OPEN_RC in ${OPEN_MS:-never} ms) and says so ($(grep -o "the keeper did not start[^(]*" "$PS_SYSLOG_FILE" | tail -1)); that keeper is gone ($(keepers $U | tr '\n' ' ')), its socket too ($(sockets $U | tr '\n' ' '))" \
		'in_time && grep -q "the keeper did not start before the login.s deadline" "$PS_SYSLOG_FILE" &&
		wait_ms 2000 "! alive $slow" && [ "$(nsockets $U)" = 0 ]'
	kill -CONT "$slow" 2>/dev/null
	drive afterslow pkce $U
	expect "g: and the next login starts a keeper and succeeds (open=$OPEN_RC in ${OPEN_MS:-never} ms)" \
		'[ "$OPEN_RC" = 0 ]'
fi
kill_keepers $U
clear_keys $U

# A login whose caller lowered RLIMIT_NPROC to 1 (a su caller may): the helper runs, but cannot
# fork the keeper. The login says why in one line and leaves no socket file behind. Not in a
# sanitizer build: LeakSanitizer's check at the helper's exit needs a thread of its own.
if [ "${PS_SANITIZERS:-no}" = yes ]; then
	skip "g: a login with RLIMIT_NPROC 1" "a sanitizer build (LeakSanitizer needs a thread at exit)"
else
	rm -f "$(udir $U)"/keeper-*.sock
	# RLIMIT_NPROC counts the user's processes: none may be left from above
	wait_ms 5000 "! pgrep -u $U >/dev/null" || diag "processes of $U: $(ps -o pid,stat,args -u $U | tr '\n' ';')"
	timeout -s KILL $((3 * TO + 10)) prlimit --nproc=1 "$DRIVER" "$T/pam.d" pkce $U -- true \
		>"$T/drv.nproc" 2>&1
	expect "g: a login with RLIMIT_NPROC 1: fails and says why ($(grep -o 'cannot start the keeper[^(]*' "$PS_SYSLOG_FILE" | tail -1)), leaves no socket file ($(sockets $U | tr '\n' ' '))" \
		'grep -q "^open=[1-9]" "$T/drv.nproc" && grep -q "cannot start the keeper: fork: " "$PS_SYSLOG_FILE" && [ "$(nsockets $U)" = 0 ]'
	kill_keepers $U
	clear_keys $U
fi

expect "no client secret in the module's log" '! grep -q -F -e "$SECRET" "$PS_SYSLOG_FILE"'
[ "$t_failed" = 0 ] || { diag "module log (tail):"; tail -15 "$PS_SYSLOG_FILE" | sed 's/^/# /'; }
done_testing
