#!/bin/bash
# sshd.sh: a real login through the installed Debian package (libpam-spotify, its profile enabled
# with pam-auth-update --enable spotify). As root: starts Debian's sshd (never the system's ssh
# service) on 127.0.0.1 with its own configuration, host key, port and PAM service, whose stack
# includes the system's common-session, where the profile put pam_spotify; a test user logs in
# with an ed25519 key and runs spotify-token and spotify-token --status in the remote shell: the
# token is the one the fake accounts server issued (client credentials, the system service as
# the package's system user). A second login shares it; logging out of one keeps the keys, and
# the last logout removes them, ends the user's keeper and the system service. Then su -l through the
# system's su-l stack does the same. Last, with the configuration as the package ships it, a login
# still succeeds (without a token) and the log names what to fix.
#
# It uses the installed files (dpkg -L libpam-spotify), never a build tree, and takes
# /etc/security/pam_spotify.conf over for the test (restored at exit). Installs openssh-server if
# missing, with a policy-rc.d that keeps apt from starting the system's sshd. Creates the user
# pstestssh if missing and keeps it. Run it as root: tests/system/sshd.sh (TAP on stdout).
: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/lib.sh"

need_root
PKG=libpam-spotify
dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q 'ok installed' ||
	bail "$PKG is not installed: build it (dpkg-buildpackage -b) and apt-get install ./${PKG}_*.deb"
MODULE=$(dpkg-query -L "$PKG" | grep '/security/pam_spotify\.so$')
READER=$(dpkg-query -L "$PKG" | grep '/bin/spotify-token$')
HELPER=$(dpkg-query -L "$PKG" | grep '/pam_spotify_helper$')
CONF=/etc/security/pam_spotify.conf
RUNDIR=/run/pam_spotify
PS_RUNDIR=$RUNDIR # for ps_keeper_status in tests/lib.sh
U=pstestssh
SVC=pam_spotify-sshtest # the PAM service of the test's sshd: OpenSSH takes its program name
PAMFILE=/etc/pam.d/$SVC
PS_READER=$READER # for reader() in tests/lib.sh

ps_tmpdir
ps_lock_keyring

# --- openssh-server's sshd, installed without starting the system's sshd
if [ ! -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null || ! command -v ssh-keygen >/dev/null; then
	diag "installing openssh-server and openssh-client (policy-rc.d: no service starts)"
	policy=/usr/sbin/policy-rc.d
	[ -e $policy ] && cp -a $policy "$T/policy-rc.d.saved"
	printf '#!/bin/sh\nexit 101\n' >$policy
	chmod 755 $policy
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		-o DPkg::Lock::Timeout=300 openssh-server openssh-client >"$T/apt.out" 2>&1
	rc=$?
	if [ -e "$T/policy-rc.d.saved" ]; then cp -a "$T/policy-rc.d.saved" $policy; else rm -f $policy; fi
	[ $rc = 0 ] || { sed 's/^/# /' "$T/apt.out" | tail -20; bail "cannot install openssh-server"; }
fi

# --- the module's log: without a system logger, a socket at /dev/log of our own for the test
LOG="$T/syslog"
: >"$LOG"
if [ ! -e /dev/log ]; then
	"$PYTHON" - "$LOG" "$T/syslog.ready" <<'PY' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("/dev/log")
os.chmod("/dev/log", 0o666)
out = open(sys.argv[1], "ab", 0)
open(sys.argv[2], "w").close()
while True:
    out.write(s.recv(65536).rstrip(b"\0\n") + b"\n")
PY
	logger_pid=$!
	ps_on_exit "kill $logger_pid 2>/dev/null; wait $logger_pid 2>/dev/null; [ -S /dev/log ] && rm -f /dev/log"
	wait_ms 5000 "[ -e '$T/syslog.ready' ]" || diag "no log capture: the module's lines are lost"
else
	diag "/dev/log exists: the module's lines go to the system's logger, not checked here"
fi
have_log() { [ -e "$T/syslog.ready" ]; }

# --- the user, its key, the accounts server, the module's configuration
ps_ensure_user $U
UHOME=$(getent passwd $U | cut -d: -f6)
clear_keys $U
for p in $(ps_keepers $U); do kill -9 "$p"; done
mkdir -p "$T/ssh"
ssh-keygen -q -t ed25519 -N '' -C "sshd.sh host" -f "$T/ssh/host_ed25519" || bail "ssh-keygen failed"
ssh-keygen -q -t ed25519 -N '' -C "sshd.sh $U" -f "$T/ssh/id_ed25519" || bail "ssh-keygen failed"
install -d -m 700 -o $U -g "$(id -g $U)" "$UHOME/.ssh"
install -m 600 -o $U -g "$(id -g $U)" "$T/ssh/id_ed25519.pub" "$UHOME/.ssh/authorized_keys"

CLIENT=sshclient
SECRET="SENTINEL-SSHD-SECRET-$$"
printf '%s:%s\n' "$CLIENT" "$SECRET" >"$T/clients"
ps_start_server acc --client-file "$T/clients"
printf '%s\n' "$SECRET" >"$T/secret"
chmod 600 "$T/secret"
chown root:root "$T/secret"

if [ -e $CONF ]; then
	cp -a $CONF "$T/conf.saved"
	ps_on_exit "cp -a '$T/conf.saved' $CONF"
else
	ps_on_exit "rm -f $CONF"
fi
{
	echo "# written by tests/system/sshd.sh, restored at its end"
	echo "flow = client_credentials"
	echo "client_id = $CLIENT"
	echo "client_secret_file = $T/secret"
	echo "accounts_url = $acc_URL"
	echo "ca_file = $T/tls/ca.pem"
	echo "timeout = 30"
	echo "connect_timeout = 5"
} >$CONF
chmod 644 $CONF
PS_HELPER=/usr/libexec/pam_spotify_helper # the package's (ps_services)
app_pid() { ps_services | head -1; }
app_running() { [ -n "$(app_pid)" ]; }
keepers() { ps_keepers $U; }
stats() { ps_server_stats "$acc_URL" | ps_json "$1"; }
issued() { ps_server_stats "$acc_URL" | ps_json '"\n".join(j["issued"])' | grep -q -x -F -- "$1"; }

sshd_cleanup() {
	local p
	[ -n "${PS_KEEP_TMP:-}" ] && cp -a "$T" "$PS_KEEP_TMP"
	for p in ${SSH_PIDS:-}; do kill "$p" 2>/dev/null; done
	[ -n "${SSHD_PID:-}" ] && kill "$SSHD_PID" 2>/dev/null && wait "$SSHD_PID" 2>/dev/null
	# the connections' sshd processes, if any is left
	pkill -f "^$T/ssh/$SVC" 2>/dev/null
	rm -f $PAMFILE
	[ -n "${MADE_RUN_SSHD:-}" ] && rmdir /run/sshd 2>/dev/null
	sleep 0.5
	ps_stop_services
	for p in $(keepers); do kill -9 "$p" 2>/dev/null; done
	clear_keys $U
}
ps_on_exit sshd_cleanup

# --- the package as installed and enabled
expect "the package installed the module, the helper and the reader ($MODULE, $HELPER, $READER)" \
	'[ -f "$MODULE" ] && [ -x "$HELPER" ] && [ -x "$READER" ] && [ "$(command -v spotify-token)" = "$READER" ]'
expect "the package created the system service's user _pam_spotify (no login shell)" \
	'[ "$(getent passwd _pam_spotify | cut -d: -f7)" = /usr/sbin/nologin ]'
grep -q '^session[[:space:]].*pam_spotify\.so' /etc/pam.d/common-session ||
	bail "pam_spotify is not in /etc/pam.d/common-session: run pam-auth-update --enable spotify"
expect "the enabled profile put 'session optional pam_spotify.so' in common-session, after pam_unix" \
	'grep -q "^session[[:space:]]*optional[[:space:]]*pam_spotify\.so" /etc/pam.d/common-session &&
	[ "$(grep -n pam_unix.so /etc/pam.d/common-session | cut -d: -f1)" -lt "$(grep -n pam_spotify.so /etc/pam.d/common-session | cut -d: -f1)" ]'

# --- our sshd: its own PAM service (a copy of the essentials of Debian's /etc/pam.d/sshd, and a
# marker that records the service name PAM saw), configuration, host key and port
cat >"$T/marker" <<EOF
#!/bin/sh
echo "\$PAM_SERVICE \$PAM_TYPE \$PAM_USER" >>"$T/pam_marker"
EOF
chmod 755 "$T/marker"
cat >$PAMFILE <<EOF
# written by pam_spotify's tests/system/sshd.sh for its own sshd; removed at its end
@include common-auth
account    required     pam_nologin.so
@include common-account
session    optional     pam_keyinit.so force revoke
session    optional     pam_exec.so quiet $T/marker
@include common-session
@include common-password
EOF
[ -d /run/sshd ] || { mkdir -m 755 /run/sshd && MADE_RUN_SSHD=1; }
ln -s /usr/sbin/sshd "$T/ssh/$SVC"
free_port() {
	"$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
start_sshd() {
	PORT=$(free_port)
	cat >"$T/ssh/sshd_config" <<EOF
Port $PORT
ListenAddress 127.0.0.1
HostKey $T/ssh/host_ed25519
PidFile $T/ssh/sshd.pid
UsePAM yes
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers $U
AuthorizedKeysFile .ssh/authorized_keys
StrictModes yes
PrintMotd no
PrintLastLog no
UseDNS no
X11Forwarding no
AllowTcpForwarding no
LogLevel VERBOSE
EOF
	"$T/ssh/$SVC" -t -f "$T/ssh/sshd_config" || bail "sshd -t refuses $T/ssh/sshd_config"
	: >"$T/sshd.log"
	"$T/ssh/$SVC" -D -f "$T/ssh/sshd_config" -E "$T/sshd.log" &
	SSHD_PID=$!
	wait_ms 10000 "grep -q 'Server listening on 127.0.0.1 port $PORT' '$T/sshd.log' || ! alive $SSHD_PID" &&
		alive $SSHD_PID
}
started=no
for try in 1 2 3; do
	if start_sshd; then started=yes; break; fi
	kill $SSHD_PID 2>/dev/null
	wait $SSHD_PID 2>/dev/null
	diag "sshd did not start on port $PORT (try $try): $(tail -1 "$T/sshd.log")"
done
[ $started = yes ] || bail "sshd did not start; see $T/sshd.log"
echo "[127.0.0.1]:$PORT $(cat "$T/ssh/host_ed25519.pub")" >"$T/ssh/known_hosts"
diag "sshd (pid $SSHD_PID) on 127.0.0.1:$PORT, PAM service $SVC"

# ssh_as CMD: run CMD in the remote shell of $U (at most SSH_LIMIT s, default 60)
ssh_as() {
	timeout "${SSH_LIMIT:-60}" ssh -F /dev/null -p "$PORT" -i "$T/ssh/id_ed25519" -o IdentitiesOnly=yes \
		-o BatchMode=yes -o UserKnownHostsFile="$T/ssh/known_hosts" \
		-o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o ConnectTimeout=10 \
		-o LogLevel=ERROR "$U@127.0.0.1" "$@"
}
# expect_else DESCRIPTION 'CONDITION' 'SHOW': expect, and on failure run the shell SHOW too
expect_else() {
	if eval "$2"; then ok "$1"; else not_ok "$1"; eval "$3"; fi
}
failed_diag() {
	diag "sshd log (tail):"
	tail -15 "$T/sshd.log" | sed 's/^/#   /'
	have_log && { diag "system log (tail):"; tail -15 "$LOG" | sed 's/^/#   /'; }
}

# ==== 1. a login held open: the token in the remote shell
r0=$(stats 'j["token_requests"]')
mkfifo "$T/hold.in"
SSH_LIMIT=300 ssh_as 'spotify-token; echo "rc=$?"; spotify-token --status; echo "status_rc=$?"; echo READY; read x; echo "bye $x"' \
	<"$T/hold.in" >"$T/hold.out" 2>"$T/hold.err" &
HOLD=$!
SSH_PIDS="$HOLD"
exec 7>"$T/hold.in"
wait_ms 60000 "grep -q '^READY$' '$T/hold.out' || ! alive $HOLD"
ready=$?
tok=$(sed -n 1p "$T/hold.out")
expect_else "ssh: $U logs in with the key and the remote shell runs (in $WAITED ms)" '[ $ready = 0 ]' \
	'sed "s/^/#   /" "$T/hold.err"; failed_diag'
expect "ssh: sshd opened the session through its own PAM service, $SVC" \
	'grep -q -x "$SVC open_session $U" "$T/pam_marker"'
expect_else "ssh: spotify-token in the remote shell exits 0 and prints the token the accounts server issued" \
	'grep -q -x "rc=0" "$T/hold.out" && [ -n "$tok" ] && issued "$tok" && [ "$tok" = "$(stats "j[\"last_access_token\"]")" ]' \
	'sed "s/^/#   /" "$T/hold.out"; failed_diag'
expect "ssh: one token request for the login ($(($(stats 'j["token_requests"]') - r0)))" \
	'[ $(($(stats "j[\"token_requests\"]") - r0)) = 1 ]'
sed -n '/^rc=0$/,/^status_rc=/p' "$T/hold.out" | sed '1d;$d' >"$T/status.out"
expect_else "ssh: spotify-token --status exits 0 and names the flow and the client, not the token" \
	'grep -q -x "status_rc=0" "$T/hold.out" && grep -q client_credentials "$T/status.out" &&
	grep -q -F "$CLIENT" "$T/status.out" && ! grep -q -F -- "$tok" "$T/status.out"' \
	'sed "s/^/#   /" "$T/status.out"'
expect "ssh: while logged in, the keys are in $U's keyring and hold that token" \
	'[ -n "$(user_key $U spotify:access_token)" ] && [ -n "$(user_key $U spotify:token_info)" ] &&
	[ "$(reader $U)" = "$tok" ]'
expect "ssh: $U has one keeper, which counts one session; the system service runs as _pam_spotify (pid $(app_pid))" \
	'[ "$(keepers | wc -l)" = 1 ] && [ "$(ps_keeper_status $U sessions)" = 1 ] && app_running &&
	[ "$(ps -o user= -p "$(app_pid)")" = _pam_spotify ]'
if have_log; then
	expect_else "ssh: the module logged the open: 'user $U: open: ok ... app token'" \
		'grep -q "pam_spotify($SVC:session): user $U: open: ok .*app token" "$LOG"' failed_diag
fi

# ==== 2. a second login while the first is held: the same token; its logout keeps the keys
out=$(ssh_as 'spotify-token' </dev/null)
rc=$?
expect "second ssh login: exit $rc, the same token" '[ $rc = 0 ] && [ "$out" = "$tok" ]'
if have_log; then
	expect_else "second ssh login: the running keeper answered the open with the token it holds" \
		'grep -q "pam_spotify($SVC:session): user $U: open: ok token still valid keyring=user expires_in=[0-9]* (held by the keeper)" "$LOG"' \
		failed_diag
fi
wait_ms 10000 '[ "$(ps_keeper_status $U sessions)" = 1 ]'
expect "second ssh login: after its logout the keeper counts the first session alone, which keeps the keys and its keeper" \
	'[ "$(ps_keeper_status $U sessions)" = 1 ] && [ "$(reader $U)" = "$tok" ] && [ "$(keepers | wc -l)" = 1 ]'

# ==== 3. the last logout removes the keys, ends the user's keeper and the system service
ap=$(app_pid)
(trap '' PIPE; echo now >&7) 2>/dev/null # not killed by SIGPIPE if ssh has gone
exec 7>&-
wait_ms 15000 "! alive $HOLD"
expect "logout: the held ssh session ends" 'grep -q -x "bye now" "$T/hold.out"'
wait $HOLD 2>/dev/null
SSH_PIDS=""
wait_ms 5000 "no_keys $U"
gone=$?
expect "logout: the last session's end removes $U's keys (within ${WAITED} ms)" '[ $gone = 0 ]'
expect "logout: $U's keeper ends (within 3 s)" 'wait_ms 3000 "[ -z \"\$(keepers)\" ]"'
expect "logout: the system service ends (within 5 s)" \
	'wait_ms 5000 "! app_running" && ! alive "$ap"'
expect "ssh: sshd closed the session through $SVC" 'grep -q -x "$SVC close_session $U" "$T/pam_marker"'

# ==== 4. su -l through the system's su-l stack (pam_keyinit, then common-session)
out=$(timeout 60 su -l $U -c spotify-token 2>"$T/su.err" </dev/null)
rc=$?
expect_else "su -l $U -c spotify-token: exit $rc, the token the accounts server issued" \
	'[ $rc = 0 ] && [ -n "$out" ] && issued "$out" && [ "$out" = "$(stats "j[\"last_access_token\"]")" ]' \
	'sed "s/^/#   /" "$T/su.err"; failed_diag'
have_log && expect "su: the module logged the open through su-l" \
	'grep -q "pam_spotify(su-l:session): user $U: open: ok " "$LOG"'
expect "su: the session's end removes the keys and ends the keepers (within 5 s)" \
	'wait_ms 5000 "no_keys $U && [ -z \"\$(keepers)\" ] && ! app_running"'

# ==== 5. the configuration as the package ships it: a login goes on, without a token
shipped=$(dpkg-query -W -f='${Conffiles}\n' "$PKG" | awk -v f=$CONF '$1 == f { print $2 }')
secret=$(sed -n 's/^client_secret_file *= *//p' "$T/conf.saved" 2>/dev/null)
if [ -n "$shipped" ] && [ "$(md5sum <"$T/conf.saved" | cut -d' ' -f1)" = "$shipped" ] &&
	[ -n "$secret" ] && [ ! -e "$secret" ]; then
	cp -a "$T/conf.saved" $CONF
	n0=$(wc -l <"$LOG")
	out=$(ssh_as 'spotify-token; echo "rc=$?"' 2>"$T/shipped.err" </dev/null)
	rc=$?
	expect_else "as shipped: the login succeeds without a token (ssh exit $rc; spotify-token: $(echo $out))" \
		'[ $rc = 0 ] && [ "$out" = "rc=1" ]' failed_diag
	if have_log; then
		expect_else "as shipped: the log names the missing client secret file" \
			'tail -n +$((n0 + 1)) "$LOG" | grep -q "user $U: open: client secret file $secret: cannot open (No such file or directory)"' \
			failed_diag
	fi
else
	skip "as shipped: a login goes on without a token" "$CONF is not the package's unmodified file"
fi

expect "the client secret is in no log and no output" \
	'! grep -q -F -e "$SECRET" "$T/sshd.log" "$LOG" "$T/hold.out" "$T/hold.err" "$T/acc.log"'
done_testing
