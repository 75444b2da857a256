#!/bin/bash
# warm.sh: a login while the user's keeper runs (helper/keeper.h). When the keeper holds a token
# of this configuration that outlives the login's refresh_margin, the open is one round trip on
# the keeper's socket: no process started (the driver, tests/pam/pam_session with
# PS_SHOW_CHILDREN=1, reports the peak RSS of the children it reaped: 0 means none), no token
# request, the driver's uids and dumpable flag as they were, and the keeper's answer in the log
# ("ok token still valid ... (held by the keeper)"); the keeper counts the session ("sessions N" in
# its status) and a close only uncounts it. A token that does not outlive the login's
# refresh_margin (the open carries it: "margin") costs one request and still no process. What
# takes the helper: no keeper (killed), keyring = session (only the login's helper reaches that
# keyring), and a token of another client in the keyring, which the keeper started does not
# take. Concurrent logins of one user with no keeper start one keeper and make one request.
# The keeper's socket, $PS_RUNDIR/user/UID/keeper-HASH.sock, is in a directory the user owns:
# a file, a symbolic link (to a root or another user's listening socket, or to a file) or a
# socket of the user's own planted there never makes the module talk to anyone but the user's
# own process (SO_PEERCRED): the linked sockets receive nothing, a linked file is untouched, the
# login still works or fails within its timeout, and a fake keeper gains nothing from the pidfd
# the module hands it and cannot put control bytes in the module's log line. RUNDIR/user/UID must
# be the user's and 0700: another owner or mode is refused with a line that says what to do,
# which works. Through real PAM sessions (pam_keyinit + pam_spotify) against the fake accounts
# server, for pkce, nowait and client credentials (the host's app token, through the system
# service). Neither the system service nor a keeper ever maps libcurl: requests run in children.
# Needs root and an installed build (see session.sh).
#
# Gone with the old design (pam/warm.c, the session registry, RUNDIR/login-UID.lock): the checks
# of the registry's entries, of a registry replaced by a symbolic link, of the login lock, and that
# keyring = session's close runs the helper (a close only tells the keeper now; the driver's
# peak RSS of reaped children, cumulative, cannot show that after an open that ran one).
. "$top_srcdir/tests/lib.sh"

need_root
ps_need_install
ps_tmpdir
ps_lock_keyring
U=pstest3
ps_ensure_user $U
ps_ensure_user pstest2
ps_ensure_app_user
UIDU=$(id -u $U)
HOME3=$(getent passwd $U | cut -d: -f6)
STORE="$HOME3/.local/state/spotify-token"
UDIR="$PS_RUNDIR/user/$UIDU"
ps_login_fixture WARM warmcc warmpkce
app_pid() { ps_services | head -1; }

# conf FILE FLOW CLIENT [extra lines...]: timeout 10 (connect_timeout 3) and refresh_margin 60
# unless given
conf() {
	local f=$1 flow=$2 client=$3
	shift 3
	case " $* " in *" refresh_margin = "*) ;; *) set -- "$@" "refresh_margin = 60" ;; esac
	case " $* " in *" timeout = "*) ;; *) set -- "$@" "timeout = 10" "connect_timeout = 3" ;; esac
	ps_conf "$f" "flow = $flow" "client_id = $client" "$@"
}
PK=("scopes = user-read-email" "enroll = never")
conf "$T/pkce.conf" pkce warmpkce "${PK[@]}"
conf "$T/margin.conf" pkce warmpkce "${PK[@]}" "refresh_margin = 3600" # the same keeper
conf "$T/short.conf" pkce warmpkce "${PK[@]}" "timeout = 1" "connect_timeout = 1" # the same keeper
conf "$T/keep.conf" pkce warmpkce "${PK[@]}" "remove_on_close = no"     # the same keeper
conf "$T/sess.conf" pkce warmpkce "${PK[@]}" "keyring = session"
conf "$T/cc.conf" client_credentials warmcc "client_secret_file = $T/secret"
for svc in pkce margin short keep sess cc; do
	ps_pam_service "$T/pam.d" $svc "$T/$svc.conf"
done
ps_pam_service "$T/pam.d" nowait "$T/pkce.conf" nowait

stats() { ps_server_stats "$acc_URL" | ps_json "$1"; }
requests() { stats 'j["token_requests"]'; }
keepers() { ps_keepers $U; }
nkeepers() { ps_nkeepers $U; }
renewals() { pgrep -u $U -f 'pam_spotify_helper renew' || true; }
sessions() { ps_keeper_status $U sessions; }
# logged TEXT: lines of the module's log holding TEXT (a fixed string)
logged() { grep -cF -- "$1" "$PS_SYSLOG_FILE"; }

DRIVERS=""
# hold SERVICE NAME: a session held open (no command, so the driver reaps only what the module
# started) until release; output in $T/h.NAME. Sets HELD_PID.
hold() {
	PS_SHOW_CHILDREN=1 PS_HOLD_OPEN=300 "$DRIVER" "$T/pam.d" "$1" $U >"$T/h.$2" 2>&1 &
	HELD_PID=$!
	DRIVERS="$DRIVERS $HELD_PID"
	wait_ms 20000 "grep -q '^open_uids=' '$T/h.$2'"
}
release() {
	kill -USR1 "$@" 2>/dev/null
	wait "$@"
}
field() { sed -n "s/^$2=\\([0-9]*\\).*/\\1/p" "$T/h.$1"; } # field NAME KEY: the first number
open_rc() { field "$1" open; }
open_ms() { sed -n 's/^open=[0-9]* ms=\([0-9]*\).*/\1/p' "$T/h.$1"; }
close_rc() { field "$1" close; }
open_kids() { field "$1" open_children_kb; }
close_kids() { field "$1" close_children_kb; }

# A listener for the planted-socket cases ($T/listen.py): as whoever runs it, listen at PATH and
# write to OUT, for each connection, the bytes received ("got N"). With "keeper", act as a fake
# keeper of the user's: read one framed message with the pidfd the module passes, try to use the
# pidfd (signal 0 to its process, pidfd_getfd of its fd 0) and write the errno names, then answer
# with a forged line holding control bytes (or, with "hang", never answer).
cat >"$T/listen.py" <<'PY'
import array, ctypes, errno, os, signal, socket, struct, sys
path, out, mode = sys.argv[1], sys.argv[2], sys.argv[3]
s = socket.socket(socket.AF_UNIX)
s.bind(path)
s.listen(8)
open(out, "a").write("listening\n")
held = []
libc = ctypes.CDLL(None, use_errno=True)
def err(f):
    try:
        f()
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
def getfd(pidfd):
    if libc.syscall(438, pidfd, 0, 0) < 0:  # pidfd_getfd
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
while True:
    c, _ = s.accept()
    c.settimeout(5)
    data, fds = b"", array.array("i")
    try:
        while len(data) < 4 or len(data) < 4 + struct.unpack(">I", data[:4])[0]:
            m, anc, _, _ = c.recvmsg(65536, socket.CMSG_SPACE(16))
            for lvl, typ, d in anc:
                if lvl == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    fds.frombytes(d[: len(d) - len(d) % fds.itemsize])
            if not m:
                break
            data += m
    except OSError:
        pass
    line = "got %d fds %d" % (len(data), len(fds))
    if mode != "record" and fds:
        line += " signal %s getfd %s" % (err(lambda: signal.pidfd_send_signal(fds[0], 0)),
                                         err(lambda: getfd(fds[0])))
    open(out, "a").write(line + "\n")
    for fd in fds:
        os.close(fd)
    if mode == "keeper":
        msg = b"status 0\nmessage ok forged \x1b[31mred\r<13>Jan  1 00:00:00 host fake: line\x07\n\n"
        c.sendall(struct.pack(">I", len(msg)) + msg)
        c.close()
    elif mode == "hang":
        held.append(c)
    else:
        c.close()
PY
chmod 644 "$T/listen.py"
LISTENERS=""
# listen_as USER PATH OUT MODE: start the listener as USER (root: as is; a user runs the system's
# python3, which it may execute); returns once it listens.
listen_as() {
	: >"$3"
	chmod 666 "$3"
	if [ "$1" = root ]; then
		"$PYTHON" "$T/listen.py" "$2" "$3" "$4" 2>>"$T/listen.err" &
	else
		setpriv --reuid="$1" --regid="$(id -g "$1")" --init-groups -- \
			/usr/bin/python3 "$T/listen.py" "$2" "$3" "$4" 2>>"$T/listen.err" &
	fi
	LISTENER=$!
	LISTENERS="$LISTENERS $LISTENER"
	wait_ms 5000 "grep -q listening '$3'"
}
stop_listener() { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null; }

warm_cleanup() {
	local p
	[ -n "${PS_KEEP_TMP:-}" ] && cp -a "$T" "$PS_KEEP_TMP"
	for p in $DRIVERS; do
		grep -q pam_session "/proc/$p/cmdline" 2>/dev/null && kill -9 "$p" 2>/dev/null
	done
	for p in $LISTENERS; do kill "$p" 2>/dev/null; done
	sleep 0.3
	for p in $(keepers) $(renewals); do kill -9 "$p" 2>/dev/null; done
	if [ -e "$UDIR" ]; then
		chown "$UIDU:$(id -g $U)" "$UDIR" && chmod 700 "$UDIR"
		find "$UDIR" -maxdepth 1 \( -name 'keeper-*.sock' -o -name 'keeper-*.lock' \) ! -type d -delete
	fi
	clear_keys $U
	as_user_q $U rm -rf "$STORE"
	ps_stop_services
}
ps_on_exit warm_cleanup
warm_cleanup
ps_server_control "$acc_URL" '{"expires_in": 3600}'
ps_enroll $U warmpkce

# ==== 1. pkce: the first session starts the helper, which starts the keeper; a second one only
# talks to the keeper
r0=$(requests)
hold pkce A
A=$HELD_PID
check "pkce cold open: PAM_SUCCESS" [ "$(open_rc A)" = 0 ]
check "pkce cold open: the module ran the helper (children reaped)" [ "$(open_kids A)" -gt 0 ]
check "pkce cold open: one refresh request" [ "$(($(requests) - r0))" = 1 ]
wait_ms 3000 '[ "$(nkeepers)" = 1 ]'
k0=$(keepers)
SOCK=$(ps_keeper_socks $U)
check "pkce cold open: one keeper runs" [ "$(nkeepers)" = 1 ]
expect "pkce cold open: its socket is in the user's 0700 directory, and it counts one session ($(stat -c '%U %a' "$UDIR" 2>&1))" \
	'[ -S "$SOCK" ] && [ "$(stat -c "%U %a" "$UDIR")" = "$U 700" ] && [ "$(sessions)" = 1 ]'
tok0=$(as_user_q $U "$PS_READER")
check "pkce cold open: the reader prints a token" [ -n "$tok0" ]
# requests run in the keeper's children ("renew"): the keeper itself never loads libcurl
expect "pkce: the keeper, whose renewals run in children, never mapped libcurl" \
	'[ -n "$k0" ] && [ -r "/proc/$k0/maps" ] && ! grep -q "libcurl\.so" "/proc/$k0/maps"'

r1=$(requests)
n0=$(logged "user $U: open: ok token still valid keyring=user")
hold pkce B
B=$HELD_PID
check "pkce warm open: PAM_SUCCESS" [ "$(open_rc B)" = 0 ]
check "pkce warm open: no process started (no child reaped)" [ "$(open_kids B)" = 0 ]
check "pkce warm open: no token request" [ "$(($(requests) - r1))" = 0 ]
expect "pkce warm open: the log line is the keeper's answer (held by the keeper)" \
	'[ "$(($(logged "user $U: open: ok token still valid keyring=user") - n0))" = 1 ] &&
	 tail -1 "$PS_SYSLOG_FILE" | grep -q "user $U: open: ok token still valid keyring=user expires_in=[0-9]* (held by the keeper)$"'
check "pkce warm open: the driver's uids are root's again (real/effective/saved 0/0/0)" \
	grep -q '^open_uids=0/0/0 ' "$T/h.B"
check "pkce warm open: the driver's dumpable flag is untouched (1)" grep -q ' dumpable=1$' "$T/h.B"
check "pkce warm open: the keeper counts two sessions" [ "$(sessions)" = 2 ]
check "pkce warm open: the same keeper, still one" [ "$(keepers)" = "$k0" ]
check "pkce warm open: the reader prints the same token" [ "$(as_user_q $U "$PS_READER")" = "$tok0" ]

release "$B"
check "pkce warm close: PAM_SUCCESS" [ "$(close_rc B)" = 0 ]
check "pkce warm close: no process started" [ "$(close_kids B)" = 0 ]
check "pkce warm close: the keeper counts one session" [ "$(sessions)" = 1 ]
# a bounded poll for something that must not happen: the keeper going within 1 s
expect "pkce warm close: the keeper stays for the other session" \
	'! wait_ms 1000 "[ \"\$(keepers)\" != \"$k0\" ]"'
check "pkce warm close: the token stays for the other session" \
	[ "$(as_user_q $U "$PS_READER")" = "$tok0" ]

# ==== 2. what costs a request or takes the helper
# a token that does not outlive the login's refresh_margin (3600 s, the token's whole life): the
# open carries that margin, and the keeper renews before it answers; still no process here
r1=$(requests)
hold margin M
expect "refresh_margin as long as the token's life: PAM_SUCCESS, one request, no process started" \
	'[ "$(open_rc M)" = 0 ] && [ "$(($(requests) - r1))" = 1 ] && [ "$(open_kids M)" = 0 ]'
tok1=$(as_user_q $U "$PS_READER")
expect "refresh_margin as long as the token's life: the same keeper holds the new token" \
	'[ "$(keepers)" = "$k0" ] && [ -n "$tok1" ] && [ "$tok1" != "$tok0" ]'
release "$HELD_PID"

# keyring = session: the helper runs (only it reaches the login's session keyring); it starts
# the keeper of that configuration, which the close only tells
hold sess S
expect "keyring = session: PAM_SUCCESS, the helper runs" '[ "$(open_rc S)" = 0 ] && [ "$(open_kids S)" -gt 0 ]'
check "keyring = session: a keeper of its own beside the other (2)" wait_ms 3000 '[ "$(nkeepers)" = 2 ]'
release "$HELD_PID"
check "keyring = session: its keeper ends with its session" wait_ms 3000 '[ "$(keepers)" = "$k0" ]'

# no keeper (killed): the token is fresh, but the helper must start a keeper, which takes the
# keyring's token without a request, and replaces the dead keeper's socket
kill -9 $k0
wait_ms 3000 '[ "$(nkeepers)" = 0 ]'
r1=$(requests)
hold pkce K
K=$HELD_PID
expect "no keeper: PAM_SUCCESS, the helper runs" '[ "$(open_rc K)" = 0 ] && [ "$(open_kids K)" -gt 0 ]'
wait_ms 3000 '[ "$(nkeepers)" = 1 ]'
expect "no keeper: the helper started one, which answers at the same socket" \
	'[ "$(nkeepers)" = 1 ] && [ "$(keepers)" != "$k0" ] && [ "$(ps_keeper_socks $U)" = "$SOCK" ] && [ "$(sessions)" = 1 ]'
check "no keeper: no token request (the keyring's token was fresh)" [ "$(($(requests) - r1))" = 0 ]
k1=$(keepers)

# nowait with a fresh token and a keeper: PAM_SUCCESS at once, no process; the keeper counts it
hold nowait N
expect "nowait warm open: PAM_SUCCESS, no process started, the module did not wait" \
	'[ "$(open_rc N)" = 0 ] && [ "$(open_kids N)" = 0 ] && tail -1 "$PS_SYSLOG_FILE" | grep -q "user $U: open: ok the keeper was told (nowait"'
check "nowait warm open: the keeper counts it (2 sessions)" wait_ms 3000 '[ "$(sessions)" = 2 ]'
release "$HELD_PID" "$K" "$A"
expect "last closes: PAM_SUCCESS" '[ "$(close_rc A)" = 0 ] && [ "$(close_rc K)" = 0 ] && [ "$(close_rc N)" = 0 ]'
check "last closes: the keeper ends within 3 s" wait_ms 3000 '[ "$(nkeepers)" = 0 ]'
check "last closes: the keys are gone" wait_ms 3000 "no_keys $U"
check "last closes: the keeper removed its socket" [ ! -e "$SOCK" ]

# a token of another client in the keyring: the keeper started does not take it, and renews
printf '{"token_type":"Bearer","scope":"","expires_at":%s,"flow":"pkce","client_id":"other"}' \
	"$(($(date +%s) + 3600))" >"$T/info"
as_user_q $U sh -c "printf x | keyctl padd user spotify:access_token @u >/dev/null && keyctl padd user spotify:token_info @u >/dev/null" <"$T/info"
r1=$(requests)
hold pkce O
expect "a token of another client: the helper runs and the keeper refreshes (one request)" \
	'[ "$(open_rc O)" = 0 ] && [ "$(open_kids O)" -gt 0 ] && [ "$(($(requests) - r1))" = 1 ]'
expect "a token of another client: replaced by ours" \
	'[ "$(as_user_q $U "$PS_READER")" != x ] && as_user_q $U keyctl pipe %user:spotify:token_info | grep -q "\"client_id\": *\"warmpkce\""'
release "$HELD_PID"
wait_ms 3000 '[ "$(nkeepers)" = 0 ]'

# ==== 2b. concurrent logins of one user with no keeper and no token: one keeper (whoever holds
# its lock binds the socket), one request; each of them is a session of that keeper
if [ "${PS_VALGRIND:-0}" = 1 ]; then
	skip "5 concurrent logins: one keeper, one request" "valgrind pass: too slow for the wait"
else
	clear_keys $U
	r1=$(requests)
	cpids=""
	for i in 1 2 3 4 5; do
		PS_SHOW_CHILDREN=1 PS_HOLD_OPEN=300 "$DRIVER" "$T/pam.d" pkce $U >"$T/h.P$i" 2>&1 &
		cpids="$cpids $!"
	done
	DRIVERS="$DRIVERS $cpids"
	# sample the keepers while the logins run: never more than one
	most=0
	wait_ms 20000 'n=$(nkeepers); [ "$n" -gt "$most" ] && most=$n; [ "$(cat "$T"/h.P[1-5] | grep -c "^open_uids=")" = 5 ]'
	nok=0 nhelpers=0
	for i in 1 2 3 4 5; do
		[ "$(open_rc P$i)" = 0 ] && nok=$((nok + 1))
		[ "$(open_kids P$i)" != 0 ] && nhelpers=$((nhelpers + 1))
	done
	diag "5 concurrent logins: $nhelpers of them ran the helper"
	check "5 concurrent logins with no keeper: all PAM_SUCCESS ($nok)" [ $nok = 5 ]
	check "5 concurrent logins with no keeper: one refresh request" [ "$(($(requests) - r1))" = 1 ]
	expect "5 concurrent logins with no keeper: one keeper, never more (at most $most seen), counting 5 sessions" \
		'[ "$(nkeepers)" = 1 ] && [ "$most" -le 1 ] && [ "$(sessions)" = 5 ]'
	release $cpids
	wait_ms 3000 '[ "$(nkeepers)" = 0 ]'
fi

# ==== 2c. what the user plants at the keeper's socket (their own directory): the module talks
# to the user's own process only (SO_PEERCRED), follows nothing to anyone else, and the login
# works or fails within its timeout. A fresh token in the keyring (remove_on_close = no), and no
# keeper, for each.
clear_keys $U
hold keep Z # a token for the cases below, taken by each new keeper without a request
release "$HELD_PID"
wait_ms 3000 '[ "$(nkeepers)" = 0 ]'
printf 'precious\n' >"$T/precious"
chmod 600 "$T/precious"
mkdir -m 1777 "$T/sockets" # where root's and pstest2's listeners bind
# planted KIND: a login after the user put KIND at the socket path; the checks; the keeper ends.
planted() {
	local kind=$1 tgt="" r1 listener=""
	as_user_q $U rm -f "$SOCK"
	case $kind in
	file) as_user_q $U sh -c 'echo planted >"$1"' sh "$SOCK" ;;
	link-to-file) as_user_q $U ln -s "$T/precious" "$SOCK" ;;
	link-to-root-socket | link-to-other-users-socket)
		tgt="$T/sockets/$kind"
		if [ $kind = link-to-root-socket ]; then listen_as root "$tgt" "$T/$kind.out" record; else
			listen_as pstest2 "$tgt" "$T/$kind.out" record; fi
		listener=$LISTENER
		as_user_q $U ln -s "$tgt" "$SOCK" ;;
	dead-socket) # bound by the user's process, which is gone
		as_user_q $U /usr/bin/python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$SOCK" ;;
	esac
	r1=$(requests)
	hold keep "pl-$kind"
	expect "planted $kind at the keeper's socket: the login works (PAM_SUCCESS, $(open_ms "pl-$kind") ms), no request" \
		'[ "$(open_rc "pl-$kind")" = 0 ] && [ "$(($(requests) - r1))" = 0 ]'
	expect "planted $kind: the helper's keeper replaced it with its socket, which answers" \
		'[ -S "$SOCK" ] && [ ! -L "$SOCK" ] && [ "$(nkeepers)" = 1 ] && [ "$(sessions)" = 1 ]'
	case $kind in
	link-to-file)
		expect "planted $kind: the file linked to is untouched" \
			'[ "$(cat "$T/precious")" = precious ] && [ "$(stat -c "%U %a" "$T/precious")" = "root 600" ]' ;;
	link-to-*socket)
		failed0=$t_failed
		expect "planted $kind: the socket linked to received nothing ($(tr '\n' ' ' <"$T/$kind.out"))" \
			'grep -q "^listening" "$T/$kind.out" && ! grep -q "^got [1-9]" "$T/$kind.out" && [ -S "$tgt" ]'
		[ "$t_failed" = "$failed0" ] ||
			diag "PRODUCT BUG: ps_msg_call (common/frame.c) takes a peer of uid 0 for any socket, the keeper's too: through the user's link the module sends root's listener the open and the login's pidfd, and takes its answer as the keeper's"
		stop_listener "$listener" ;;
	esac
	release "$HELD_PID"
	wait_ms 3000 '[ "$(nkeepers)" = 0 ]'
}
for kind in file link-to-file link-to-root-socket link-to-other-users-socket dead-socket; do
	planted $kind
done

# a fake keeper of the user's own listening there: the module talks to it, as it would to the
# user's keeper: what it can do with that harms only this login, never within more than timeout
listen_as $U "$SOCK" "$T/fake.out" keeper
fake=$LISTENER
: >"$PS_SYSLOG_FILE"
hold short F
expect "a fake keeper of the user's: the login returns within timeout ($(open_ms F) ms < 2000) with its answer" \
	'[ -n "$(open_rc F)" ] && [ "$(open_ms F)" -lt 2000 ] && grep -q "user $U: open: ok forged" "$PS_SYSLOG_FILE"'
expect "a fake keeper of the user's: the pidfd of the login it gets lets it neither signal the login nor take its files ($(tr '\n' ' ' <"$T/fake.out"))" \
	'grep -q "^got [0-9]* fds 1 signal EPERM getfd EPERM$" "$T/fake.out"'
expect "a fake keeper of the user's: its answer's control bytes do not reach the module's log line ($(cat -v "$PS_SYSLOG_FILE" | head -1 | cut -c1-160))" \
	'! LC_ALL=C grep -q "[^[:print:][:space:]]" "$PS_SYSLOG_FILE" && ! grep -q $'"'"'\r'"'"' "$PS_SYSLOG_FILE" && [ "$(wc -l <"$PS_SYSLOG_FILE")" = 1 ]'
release "$HELD_PID"
stop_listener "$fake"
as_user_q $U rm -f "$SOCK" # the fake's socket file stays
listen_as $U "$SOCK" "$T/hang.out" hang
hang=$LISTENER
hold short H
expect "a fake keeper that never answers: the login fails within timeout (PAM_SESSION_ERR, $(open_ms H) ms < 2000) and says the keeper gave no token in time" \
	'[ "$(open_rc H)" = 14 ] && [ "$(open_ms H)" -lt 2000 ] && tail -1 "$PS_SYSLOG_FILE" | grep -q "user $U: open: no token within the 1 s timeout"'
release "$HELD_PID"
stop_listener "$hang"
as_user_q $U rm -f "$SOCK"

# ==== 2d. RUNDIR/user/UID must be the user's, 0700: another owner or mode is refused with a line
# that says what to do, and doing it works
for bad in mode-0750 mode-0701 owner-pstest2 owner-root; do
	case $bad in
	mode-*) chmod "${bad#mode-}" "$UDIR"
		want="$UDIR must be closed to group and others (mode ${bad#mode-}): remove it, pam_spotify makes it again" ;;
	owner-*) chown "${bad#owner-}" "$UDIR"
		want="$UDIR must be owned by uid $UIDU and not writable by group or others (it is uid $(id -u "${bad#owner-}"), mode 0700): remove it, pam_spotify makes it again" ;;
	esac
	: >"$PS_SYSLOG_FILE"
	hold pkce "d-$bad"
	expect "RUNDIR/user/UID $bad: refused (PAM_SESSION_ERR), one line that says what to do, no keeper" \
		'[ "$(open_rc "d-$bad")" = 14 ] && [ "$(logged "$want")" = 1 ] && [ "$(nkeepers)" = 0 ]'
	release "$HELD_PID"
	chown "$UIDU:$(id -g $U)" "$UDIR" && chmod 700 "$UDIR"
done
rm -rf "$UDIR"
hold pkce D
expect "RUNDIR/user/UID removed, as the line says: the next login makes it again (the user's, 0700) and works" \
	'[ "$(open_rc D)" = 0 ] && [ "$(stat -c "%U %a" "$UDIR")" = "$U 700" ] && [ "$(nkeepers)" = 1 ]'
release "$HELD_PID"
wait_ms 3000 '[ "$(nkeepers)" = 0 ]'

# ==== 3. client credentials: the host's app token
r1=$(requests)
hold cc C1
C1=$HELD_PID
expect "cc cold open: PAM_SUCCESS, the helper ran" '[ "$(open_rc C1)" = 0 ] && [ "$(open_kids C1)" -gt 0 ]'
wait_ms 3000 '[ "$(nkeepers)" = 1 ]'
tokc=$(as_user_q $U "$PS_READER")
# libcurl is loaded at a process's first request (helper/curl_load.c): the system service makes
# each request in a child of its own, so neither it nor the user's keeper, which copies the app
# token, ever maps it
check "cc: the system service (its requests run in children) never mapped libcurl" \
	sh -c '[ -r "/proc/$1/maps" ] && ! grep -q "libcurl\.so" "/proc/$1/maps"' sh "$(app_pid)"
ck=$(keepers)
expect "cc: the user's keeper, which copies the app token, never mapped libcurl" \
	'[ -n "$ck" ] && [ -r "/proc/$ck/maps" ] && ! grep -q "libcurl\.so" "/proc/$ck/maps"'
hold cc C2
check "cc warm open: PAM_SUCCESS" [ "$(open_rc C2)" = 0 ]
check "cc warm open: no process started" [ "$(open_kids C2)" = 0 ]
check "cc: one token request for both (the system service's)" [ "$(($(requests) - r1))" = 1 ]
expect "cc warm open: the keeper counts both, and the reader prints the same app token" \
	'[ "$(sessions)" = 2 ] && [ -n "$tokc" ] && [ "$(as_user_q $U "$PS_READER")" = "$tokc" ]'
release "$HELD_PID"
check "cc warm close: no process started" [ "$(close_kids C2)" = 0 ]
release "$C1"
check "cc last close: the keys are gone within 3 s" wait_ms 3000 "no_keys $U"

done_testing
