#!/bin/bash
# secrets.sh: secrets stay where they belong. With sentinel values for the client secret, a
# refresh token and the authorization codes, and the random PKCE verifiers and states learnt from
# the fake server afterwards, through real PAM sessions (client_credentials; pkce refreshing the
# sentinel refresh token; authorization_code enrolling through the conversation), enrollments with
# spotify-token login (listener and pasted URL) and keeper renewals, and with a server that quotes
# the credentials back in its errors:
#   - no process's argv or environment (every /proc/PID/cmdline and environ, snapshotted every
#     50 ms throughout) holds any of them, nor an access token;
#   - neither the module's log, nor the keeper's syslog, nor any command's output, nor any file
#     written under /tmp, the user's home or /dev/shm since the test started holds any of them;
#   - the keeper's renewal (the child that makes a login's token request), the keeper and the
#     helper of spotify-token login are non-dumpable with RLIMIT_CORE 0, and the user can neither
#     ptrace them nor read their /proc/PID/mem or environ;
#   - the renewal and the keeper (started by the module's helper, and so through its privilege
#     drop) run with the user's real, effective, saved and fs uids and gids,
#     exactly the user's supplementary groups, no capabilities and no_new_privs: they cannot
#     regain root. The system service alone holds the client secret (client_credentials and
#     authorization_code), as the app user, non-dumpable, without core dumps, capabilities or a
#     way back to root; no user process does (service.sh and attack_secret.sh attack that).
# And the transport rules that can be seen from outside, on the system service's requests (asked
# for the app token over its socket, as a keeper does): response bodies are capped at 64 KiB
# (with and without Content-Length), a redirect is not followed, even to a live server, and the
# low-speed limit and connect_timeout end a stalled transfer before the total timeout.
# Changed with the keeper: the login's helper (--pam) only starts the keeper and makes no request,
# so the process looked at during a login is the keeper's renewal, and the transport rules are
# asked of the service directly rather than through a helper --pam run by hand.
# Needs root and an installed build (see session.sh). About 80 s. Gives pstest1 a supplementary
# group, pstestsup (created if missing). PS_KEEP_TMP=DIR keeps a copy of the scratch directory
# (outputs, logs, /proc snapshots, and the sentinels).
#
# Deliberate homes of a sentinel, excluded from the file scans: $T/private (the client secret
# file, the server's client list, the sentinel lists, control requests and server stats that hold
# them) and the refresh-token store's CLIENT.refresh files; the snapshots in $T/scan are searched
# by their own test. The authorize URL carries the state and is shown to the user on purpose: on
# spotify-token login's stderr and in the PAM conversation; the state is looked for everywhere else.
. "$top_srcdir/tests/lib.sh"

need_root
ps_need_install
for tool in unshare setpriv mount curl keyctl pgrep groupadd usermod; do
	command -v $tool >/dev/null 2>&1 || skip_all "$tool not found"
done
ps_tmpdir
t_lock=$SECONDS
ps_lock_keyring
diag "waited $((SECONDS - t_lock)) s for the keyring test lock"
: >"$T/start" # files newer than this were written while this test ran
U=pstest1
ps_ensure_user $U
# a supplementary group of the user's: the helper must get exactly the user's groups
getent group pstestsup >/dev/null || groupadd pstestsup || bail "cannot create group pstestsup"
id -nG $U | grep -qw pstestsup || usermod -a -G pstestsup $U || bail "cannot add $U to pstestsup"
UID_U=$(id -u $U)
GID_U=$(id -g $U)
USER_GROUPS=$(id -G $U | tr ' ' '\n' | sort -n | tr '\n' ' ')
ROOT_GROUPS="4,6" # adm and disk: the PAM application runs with them; the user is in neither
for g in 0 4 6; do
	id -G $U | tr ' ' '\n' | grep -qx $g && bail "$U is in group $g: pick other root-only groups"
done
UHOME=$(getent passwd $U | cut -d: -f6)
STORE="$UHOME/.local/state/spotify-token"
P="$T/private"
mkdir -m 700 "$P"
DRIVER="$top_builddir/tests/pam/pam_session"
export PS_SYSLOG_FILE="$T/syslog"
: >"$PS_SYSLOG_FILE"

# --- sentinels (only ever in files under $P or on stdin: never in an argv of ours)
rnd() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }
SECRET="SENTINELsecret$$x$(rnd 8)"
RT="SENTINELrefresh$$x$(rnd 8)"
CODE_PREFIX="SENTINELcode$$x$(rnd 4)"
printf '%s\n' "$SECRET" >"$P/secret"
chmod 600 "$P/secret"
printf 'testclient:%s\nconfclient:%s\npkceclient:unused-%s\n' "$SECRET" "$SECRET" "$$" >"$P/clients"
ps_start_server acc --client-file "$P/clients"
CA="$T/tls/ca.pem"

# ctl JSON: set server settings, the JSON going through a file (it may hold a sentinel).
ctl() {
	printf '%s' "$1" >"$P/ctl.json"
	curl -sS --fail --cacert "$CA" -H 'Content-Type: application/json' \
		--data @"$P/ctl.json" "$acc_URL/__control" >/dev/null
}
stats() { ps_server_stats "$acc_URL" | ps_json "$1"; }
grants() { stats "j['by_grant'].get('$1', 0)"; }

# conf FILE FLOW CLIENT [extra lines...]: timeout 20 (the quoting server holds a login's request
# 5 s while the processes are looked at: a sanitizer build on a busy host needs the margin),
# refresh_margin 3
conf() {
	local f=$1 flow=$2 client=$3
	shift 3
	ps_conf "$f" "flow = $flow" "client_id = $client" "timeout = 20" "connect_timeout = 2" \
		"refresh_margin = 3" "$@"
}
# cc and ccapp: client credentials (the system service alone holds the secret, section 1b)
conf "$T/cc.conf" client_credentials testclient "client_secret_file = $P/secret"
conf "$T/ccapp.conf" client_credentials testclient "client_secret_file = $P/secret"
conf "$T/pkce.conf" pkce pkceclient "scopes = user-read-email" "enroll = never"
conf "$T/code.conf" authorization_code confclient "client_secret_file = $P/secret" \
	"scopes = user-read-email"
for svc in cc ccapp pkce code; do
	ps_pam_service "$T/pam.d" $svc "$T/$svc.conf"
done

# --- small tools
KEEPER_PAT='pam_spotify_helper keeper$'
RENEW_PAT='pam_spotify_helper renew' # a keeper's child making a token request
keepers() { ps_keepers $U; }
# find_proc PATTERN: the first process of the user whose command line matches, within 6 s.
find_proc() {
	local pat=$1 pid=""
	wait_ms 6000 'pid=$(pgrep -u $U -f "$pat" | head -1); [ -n "$pid" ]'
	echo "$pid"
}
proc_start() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20; }

# --- the keeper's syslog: ps_daemon_log (tests/lib.sh) captures it in $PS_DAEMON_LOG from the
# processes ps_in_ns runs. DRIVE: a PAM session of $U there, the PAM application holding root's
# extra groups $ROOT_GROUPS (which the helper must not inherit).
ps_daemon_log
IN_NS=(unshare --mount --propagation private -- sh "$T/ns.sh" "$T/dev") # as ps_in_ns, keeping the pid
DRIVE=("${IN_NS[@]}" setpriv --groups=$ROOT_GROUPS -- "$DRIVER" "$T/pam.d")
drive() { "${DRIVE[@]}" "$1" $U "${@:2}"; } # drive SERVICE [-- COMMAND...]
DRIVERS=""
# open_held SERVICE NAME: a session held open in the background (output in $T/o.held.NAME) until
# close_held; HELD_PID is the driver's pid.
open_held() {
	PS_HOLD_OPEN=300 "${DRIVE[@]}" "$1" $U -- true >"$T/o.held.$2" 2>&1 &
	HELD_PID=$!
	DRIVERS="$DRIVERS $HELD_PID"
}
held_open() { sed -n 's/^open=\([0-9]*\) .*/\1/p' "$T/o.held.$1"; }
close_held() {
	kill -USR1 "$1" 2>/dev/null
	wait "$1"
}

secrets_cleanup() {
	local p
	[ -n "${PS_KEEP_TMP:-}" ] && cp -a "$T" "$PS_KEEP_TMP" # for debugging; holds the sentinels
	for p in $DRIVERS; do
		grep -q pam_session "/proc/$p/cmdline" 2>/dev/null && kill -9 "$p" 2>/dev/null
	done
	[ -n "${SCAN_PID:-}" ] && kill "$SCAN_PID" 2>/dev/null
	for p in $(keepers) $(pgrep -u $U -f "$RENEW_PAT"); do kill -9 "$p" 2>/dev/null; done
	clear_keys $U
	as_user $U rm -rf "$STORE" 2>/dev/null
}
ps_on_exit secrets_cleanup
for p in $(keepers); do kill -9 "$p"; done
clear_keys $U
as_user $U rm -rf "$STORE" 2>/dev/null

# --- what a process looks like from /proc, and what the user can do to it
cat >"$T/probe.py" <<'EOF'
# probe.py PID, run as the user: try to ptrace-attach to PID and to open its memory and
# environment; print {"ptrace": ..., "mem": ..., "environ": ...}: "ok" or the errno name.
import ctypes, errno, json, os, sys
pid = int(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
PTRACE_ATTACH, PTRACE_DETACH, WALL = 16, 17, 0x40000000
res = {}
if libc.ptrace(ctypes.c_long(PTRACE_ATTACH), ctypes.c_long(pid), None, None) == 0:
    res["ptrace"] = "ok"
    os.waitpid(pid, WALL)
    libc.ptrace(ctypes.c_long(PTRACE_DETACH), ctypes.c_long(pid), None, None)
else:
    res["ptrace"] = errno.errorcode.get(ctypes.get_errno(), "?")
for name in ("mem", "environ"):
    try:
        os.close(os.open("/proc/%d/%s" % (pid, name), os.O_RDONLY))
        res[name] = "ok"
    except OSError as e:
        res[name] = errno.errorcode.get(e.errno, "?")
print(json.dumps(res, sort_keys=True))
EOF
chmod 644 "$T/probe.py"
# snap TAG PID: /proc/PID/status and limits, the owner of /proc/PID/environ (the kernel gives a
# non-dumpable process's private /proc files to root), and the user's probe of PID, taken
# together; SAME_PROC says PID was one and the same process throughout.
snap() {
	local tag=$1 pid=$2 s0 s1
	s0=$(proc_start "$pid")
	cp "/proc/$pid/status" "$T/$tag.status" 2>/dev/null
	cp "/proc/$pid/limits" "$T/$tag.limits" 2>/dev/null
	stat -c '%u %g' "/proc/$pid/environ" >"$T/$tag.owner" 2>/dev/null
	as_user $U python3 - "$pid" <"$T/probe.py" >"$T/o.$tag.probe" 2>"$T/o.$tag.probe.err"
	s1=$(proc_start "$pid")
	SAME_PROC=no
	[ -n "$s0" ] && [ "$s0" = "$s1" ] && SAME_PROC=yes
}
field() { sed -n "s/^$2:[[:space:]]*//p" "$T/$1.status" | tr -s ' \t' '  ' | sed 's/ $//'; }
groups_of() { field "$1" Groups | tr ' ' '\n' | grep . | sort -n | tr '\n' ' '; }
core_limit() { awk '/^Max core file size/ {print $5, $6}' "$T/$1.limits"; }
probe() { cat "$T/o.$1.probe" 2>/dev/null; }
caps_none() {
	local c
	for c in CapInh CapPrm CapEff CapAmb; do
		[ "$(field "$1" $c)" = 0000000000000000 ] || return 1
	done
}
no_uid0() { [ -n "$(field "$1" Uid)" ] && ! field "$1" Uid | tr ' ' '\n' | grep -qx 0; }
DENIED='{"environ": "EACCES", "mem": "EACCES", "ptrace": "EPERM"}'

# inspect LABEL TAG PID [pam]: the checks on one process of the user's; with pam, also those of
# the module's privilege drop (the process descends from the module's child).
inspect() {
	local label=$1 tag=$2 pid=$3 pam=${4:-}
	if [ -z "$pid" ]; then
		not_ok "$label: found the process to inspect"
		return
	fi
	snap "$tag" "$pid"
	expect "$label (pid $pid): RLIMIT_CORE is 0, soft and hard ($(core_limit "$tag"))" \
		'[ "$(core_limit "$tag")" = "0 0" ] && [ $SAME_PROC = yes ]'
	expect "$label: non-dumpable: /proc/PID/environ belongs to root while it runs as uid $UID_U ($(cat "$T/$tag.owner"))" \
		'[ "$(cat "$T/$tag.owner")" = "0 0" ] && [ "$(field "$tag" Uid)" = "$UID_U $UID_U $UID_U $UID_U" ]'
	expect "$label: $U cannot ptrace it nor open its /proc/PID/mem or environ ($(probe "$tag"))" \
		'[ "$(probe "$tag")" = "$DENIED" ] && [ $SAME_PROC = yes ]'
	[ -n "$pam" ] || return 0
	expect "$label: real, effective, saved and fs uid and gid are $U's ($(field "$tag" Uid) / $(field "$tag" Gid))" \
		'[ "$(field "$tag" Uid)" = "$UID_U $UID_U $UID_U $UID_U" ] && [ "$(field "$tag" Gid)" = "$GID_U $GID_U $GID_U $GID_U" ]'
	expect "$label: supplementary groups are exactly $U's ($(groups_of "$tag")), pstestsup included, none of the PAM application's ($ROOT_GROUPS and 0)" \
		'[ "$(groups_of "$tag")" = "$USER_GROUPS" ]'
	expect "$label: cannot regain root: no capabilities (CapInh/CapPrm/CapEff/CapAmb 0) and no uid 0 among real/effective/saved/fs" \
		'caps_none "$tag" && no_uid0 "$tag"'
	expect "$label: no_new_privs is set: no setuid or file-capability exec can raise it (NoNewPrivs $(field "$tag" NoNewPrivs))" \
		'[ "$(field "$tag" NoNewPrivs)" = 1 ]'
}

# --- the checks can fail: a dumpable process of the user's (sleep) is open to the same probe
as_user $U sleep 987 2>/dev/null &
ctl_job=$!
ctl_pid=$(find_proc '^sleep 987$')
snap control "$ctl_pid"
kill "$ctl_pid" 2>/dev/null
wait "$ctl_job" 2>/dev/null
expect "control: $U can ptrace, and open the mem and environ of, an ordinary process of its own ($(probe control)); its /proc/PID/environ is $U's" \
	'[ "$(probe control)" = "{\"environ\": \"ok\", \"mem\": \"ok\", \"ptrace\": \"ok\"}" ] && [ "$(cat "$T/control.owner")" = "$UID_U $GID_U" ]'

# --- the keeper's syslog is captured
"${IN_NS[@]}" "$PYTHON" -c 'import syslog; syslog.openlog("secrets-test"); syslog.syslog("capture check")'
expect "a syslog(3) line from inside the sessions' namespace lands in our capture" \
	'wait_ms 3000 "grep -q \"secrets-test: capture check\" \"\$PS_DAEMON_LOG\""'

# --- the scanner: every process's cmdline and environ, every 50 ms, new contents kept
cat >"$T/scan.py" <<'EOF'
import hashlib, json, os, sys, time
out, stop, summary, ready, uid = sys.argv[1:5] + [int(sys.argv[5])]
ours = {"helper --pam": b"pam_spotify_helper\0--pam\0", "keeper": b"pam_spotify_helper\0keeper\0",
        "renewal": b"pam_spotify_helper\0renew\0", "helper login": b"pam_spotify_helper\0login\0"}
seen, rounds, reads = set(), 0, 0
pids = {k: set() for k in ours}
env_pids = {k: set() for k in ours}
me = str(os.getpid())


def owner(pid):
    try:
        return os.stat("/proc/" + pid).st_uid
    except OSError:
        return -1


while not os.path.exists(stop):
    rounds += 1
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or pid == me:
            continue
        cmd = b""
        for kind in ("cmdline", "environ"):
            try:
                with open("/proc/%s/%s" % (pid, kind), "rb") as f:
                    data = f.read()
            except OSError:
                continue
            reads += 1
            if kind == "cmdline":
                cmd = data
            key = (pid, kind, hashlib.sha1(data).digest())
            if key not in seen:
                seen.add(key)
                with open(os.path.join(out, "%s.%s.%d" % (pid, kind, len(seen))), "wb") as f:
                    f.write(data)
            for name, prefix in ours.items():
                if cmd.startswith(prefix) and owner(pid) == uid:
                    (pids if kind == "cmdline" else env_pids)[name].add(pid)
    if rounds == 1:
        open(ready, "w").close()
    time.sleep(0.05)
with open(summary, "w") as f:
    json.dump({"rounds": rounds, "reads": reads, "snapshots": len(seen),
               "pids": {k: len(v) for k, v in pids.items()},
               "environ_pids": {k: len(v) for k, v in env_pids.items()}}, f)
EOF
mkdir "$T/scan"
"$PYTHON" "$T/scan.py" "$T/scan" "$T/scan.stop" "$T/scan.json" "$T/scan.ready" "$UID_U" &
SCAN_PID=$!
wait_ms 20000 '[ -e "$T/scan.ready" ]' || bail "the /proc scanner did not start"

# ==== 1. client_credentials: the keeper's renewal during a login, the keeper, renewals, a
# quoting server (the server takes 5 s to answer a login's token request, so that the renewal,
# the keeper's child that asks the system service, can be looked at; the token's life counts
# from the request, so the login's lives 12 s, and the renewals' 6 s). The login's helper only
# starts the keeper and is gone within moments: the renewal and the keeper descend from it.
ctl '{"expires_in": 12, "delay": 5}'
open_held cc cc
cc_drv=$HELD_PID
inspect "client_credentials renewal during a login" cc-renew "$(find_proc "$RENEW_PAT")" pam
wait_ms 15000 '[ -n "$(held_open cc)" ]'
ctl '{"delay": 0, "expires_in": 6}'
expect "client_credentials: the held session opened (PAM_SUCCESS)" '[ "$(held_open cc)" = 0 ]'
inspect "client_credentials keeper (copies the app token)" cc-keeper "$(find_proc "$KEEPER_PAT")" pam
g0=$(grants client_credentials)
expect "client_credentials: the keeper renewed the 6 s token twice (within 15 s)" \
	'wait_ms 15000 "[ \$(grants client_credentials) -ge $((g0 + 2)) ]"'
ctl '{"fault": "quote_credentials", "fault_count": 1, "expires_in": 3600}'
# withheld: the service's line when the server's error text quoted a credential back (the renewal
# is the service's: the keeper only copies the host's token)
expect "client_credentials: a renewal answered by a server quoting the credentials is logged by the service (syslog), withheld" \
	'wait_ms 15000 "[ \$(grep -c \"service\].*: app token request failed: .*withheld\" \"\$PS_DAEMON_LOG\") -ge 1 ]"'
g0=$(grants client_credentials)
wait_ms 10000 "[ \$(grants client_credentials) -gt $g0 ]" # the retry: a 3600 s token, then quiet
close_held "$cc_drv"
expect "client_credentials: the keeper ends with the session" 'wait_ms 3000 "[ -z \"\$(keepers)\" ]"'
# a login whose own request meets the quoting server: no keeper holds a token, no service serves one
ctl '{"fault": "quote_credentials", "fault_count": 1}'
ps_stop_services # a running one serves its token: the login's own request is wanted here
clear_keys $U    # and a new keeper would take the keyring's token without a request
drive cc >"$T/o.cc-quote" 2>&1
expect "client_credentials: a login answered by a quoting server fails (PAM_SESSION_ERR), the answer withheld in the log" \
	'grep -q "^open=14 " "$T/o.cc-quote" && tail -1 "$PS_SYSLOG_FILE" | grep -q "user $U: open: .*withheld"'
wait_ms 3000 '[ -z "$(keepers)" ]'

# ==== 1b. client_credentials: the system service alone holds the secret, as the app user (never
# root), non-dumpable, no core, no capabilities, no_new_privs; the user cannot look in
ps_ensure_app_user
ps_stop_services # section 1's holds requests back after the quoting server: a new one
APP_UID=$(id -u _pam_spotify)
ctl '{"expires_in": 3600, "delay": 5}'
open_held ccapp ccapp
app_drv=$HELD_PID
app_pid=""
wait_ms 6000 'app_pid=$(ps_services | head -1); [ -n "$app_pid" ]'
if [ -z "$app_pid" ]; then
	not_ok "system service: found the process to inspect"
else
	snap service "$app_pid"
	expect "system service (holds the client secret) (pid $app_pid): RLIMIT_CORE is 0, soft and hard ($(core_limit service))" \
		'[ "$(core_limit service)" = "0 0" ] && [ $SAME_PROC = yes ]'
	expect "system service: non-dumpable: /proc/PID/environ belongs to root while it runs as the app user ($(cat "$T/service.owner"))" \
		'[ "$(cat "$T/service.owner")" = "0 0" ]'
	expect "system service: $U cannot ptrace it nor open its /proc/PID/mem or environ ($(probe service))" \
		'[ "$(probe service)" = "$DENIED" ]'
	expect "system service: real, effective, saved and fs uid are the app user's ($(field service Uid)), never root" \
		'[ "$(field service Uid)" = "$APP_UID $APP_UID $APP_UID $APP_UID" ] && no_uid0 service'
	expect "system service: no capabilities and no_new_privs ($(field service NoNewPrivs))" \
		'caps_none service && [ "$(field service NoNewPrivs)" = 1 ]'
fi
wait_ms 15000 '[ -n "$(held_open ccapp)" ]'
ctl '{"delay": 0}'
expect "client_credentials with the system service: the held session opened (PAM_SUCCESS)" \
	'[ "$(held_open ccapp)" = 0 ]'
close_held "$app_drv"
expect "client_credentials: the system service ends with the host's last session (within 5 s)" \
	'wait_ms 5000 "[ -z \"\$(ps_services)\" ]"'
expect "client_credentials: the user's keeper ends too" 'wait_ms 3000 "[ -z \"\$(keepers)\" ]"'
clear_keys $U

# ==== 2. pkce with the sentinel refresh token: the keeper's renewal refreshing at login, the keeper
printf '{"client_id": "pkceclient", "scope": "user-read-email", "public": true, "refresh_token": "%s"}' \
	"$RT" >"$P/mint.json"
curl -sS --fail --cacert "$CA" -H 'Content-Type: application/json' --data @"$P/mint.json" \
	"$acc_URL/__refresh_token" >"$P/mint.out" || bail "cannot mint the sentinel refresh token"
printf 'pam_spotify-refresh 1\n%s\n' "$RT" | as_user $U sh -c '
	umask 077
	d="$HOME/.local/state/spotify-token"
	mkdir -p "$d" && chmod 700 "$d" &&
		cat >"$d/pkceclient.refresh.new" && mv "$d/pkceclient.refresh.new" "$d/pkceclient.refresh"' 2>/dev/null
clear_keys $U
ctl '{"expires_in": 6, "delay": 5}'
open_held pkce pkce
pk_drv=$HELD_PID
inspect "pkce renewal refreshing at login (holds the refresh token)" pkce-renew "$(find_proc "$RENEW_PAT")" pam
wait_ms 15000 '[ -n "$(held_open pkce)" ]'
ctl '{"delay": 0}'
expect "pkce: the held session opened with the sentinel refresh token (PAM_SUCCESS; open=$(held_open pkce): $(grep ": user $U: open: " "$PS_SYSLOG_FILE" | tail -1 | cut -c1-200))" \
	'[ "$(held_open pkce)" = 0 ]'
inspect "pkce keeper" pkce-keeper "$(find_proc "$KEEPER_PAT")" pam
g0=$(grants refresh_token)
expect "pkce: the keeper refreshed the 6 s token twice (within 15 s)" \
	'wait_ms 15000 "[ \$(grants refresh_token) -ge $((g0 + 2)) ]"'
ctl '{"fault": "quote_credentials", "fault_count": 1, "expires_in": 3600}'
expect "pkce: a refresh answered by a server quoting the refresh token is logged by the keeper (syslog), withheld" \
	'wait_ms 15000 "[ \$(grep -c \"keeper\].*: renewal failed: .*withheld\" \"\$PS_DAEMON_LOG\") -ge 1 ]"'
g0=$(grants refresh_token)
wait_ms 10000 "[ \$(grants refresh_token) -gt $g0 ]"
close_held "$pk_drv"
wait_ms 3000 '[ -z "$(keepers)" ]'
clear_keys $U
ctl '{"fault": "quote_credentials", "fault_count": 1}'
drive pkce >"$T/o.pkce-quote" 2>&1
expect "pkce: a login whose refresh meets a quoting server fails (PAM_SESSION_ERR), the answer withheld in the log" \
	'grep -q "^open=14 " "$T/o.pkce-quote" && tail -1 "$PS_SYSLOG_FILE" | grep -q "user $U: open: .*withheld"'

# ==== 3. enrollment with spotify-token login: sentinel codes, random verifiers and states
ctl "{\"code_prefix\": \"$CODE_PREFIX\"}"
# browse URL: a browser at the authorize endpoint: prints where it is sent back (the URL goes to
# curl on stdin, not argv: it holds the state, and the answer the code). visit URL: follow it, as
# the user (the listener serves no other uid).
browse() { printf 'url = "%s"\n' "$1" | curl -s --cacert "$CA" -o /dev/null -w '%{redirect_url}' -K -; }
visit() { printf 'url = "%s"\n' "$1" | as_user $U curl -s -o /dev/null -K - 2>/dev/null; }
# login_start NAME: spotify-token login in the background, stdin from a FIFO we hold open; sets
# URL (from its stderr) and LOGIN_PID.
login_start() {
	local err="$T/o.login-$1.err"
	rm -f "$T/paste"
	mkfifo -m 666 "$T/paste"
	as_user $U "$PS_READER" login --config="$T/pkce.conf" --timeout=20 <"$T/paste" \
		>"$T/o.login-$1.out" 2>"$err" &
	LOGIN_PID=$!
	exec 8>"$T/paste"
	URL=""
	wait_ms 10000 'URL=$(grep -o "https://[^ ]*" "$err" | head -1); [ -n "$URL" ]'
}
login_wait() {
	exec 8>&-
	wait "$LOGIN_PID"
	LOGIN_RC=$?
}
login_start listener
inspect "spotify-token login's helper (holds the verifier)" login-helper "$(find_proc 'pam_spotify_helper login')"
visit "$(browse "$URL")"
login_wait
expect "spotify-token login through the listener: exit 0" '[ "$LOGIN_RC" = 0 ]'
login_start paste
printf '%s\n' "$(browse "$URL")" >&8
login_wait
expect "spotify-token login with the pasted URL: exit 0" '[ "$LOGIN_RC" = 0 ]'
ctl '{"fault": "quote_credentials", "fault_count": 1}'
login_start quote
visit "$(browse "$URL")"
login_wait
expect "spotify-token login whose code exchange meets a quoting server: exit 7, the server's text withheld" \
	'[ "$LOGIN_RC" = 7 ] && grep -q "^spotify-token: login: .*withheld" "$T/o.login-quote.err"'

# ==== 4. authorization_code: enrollment in the PAM conversation (secret, code and verifier)
export PS_CONV_ANSWER="url=\$(grep -o 'https://[^ ]*' | head -1); printf 'url = \"%s\"\\n' \"\$url\" | curl -s --cacert $CA -o /dev/null -w '%{redirect_url}' -K -"
clear_keys $U
drive code >"$T/o.code-conv" 2>&1
unset PS_CONV_ANSWER
expect "authorization_code: enrolled through the conversation at session open (PAM_SUCCESS)" \
	'grep -q "^open=0 " "$T/o.code-conv" && grep -q "^conv: .*https://" "$T/o.code-conv" && [ -e "$STORE/confclient.refresh" ]'
wait_ms 3000 '[ -z "$(keepers)" ]'

: >"$T/scan.stop"
wait "$SCAN_PID"
SCAN_PID=""

# --- the sentinels: ours, and what the server issued or received
ps_server_stats "$acc_URL" >"$P/stats.json"
printf '%s\n%s\n%s\n' "$SECRET" "$RT" "$CODE_PREFIX" >"$P/sentinels"
"$PYTHON" - "$P/stats.json" "$P/sentinels" "$P/states" >"$T/learnt" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
prefix = open(sys.argv[2]).read().split("\n")[2]  # the third sentinel: the code prefix
learnt = {"access tokens": j["issued"], "codes": j["codes"], "refresh tokens": j["refresh_tokens"],
          "verifiers": j["code_verifiers"], "states": j["states"]}
with open(sys.argv[2], "a") as f:
    for name in ("access tokens", "codes", "refresh tokens", "verifiers"):
        f.writelines(v + "\n" for v in learnt[name] if v)
with open(sys.argv[3], "w") as f:
    f.writelines(v + "\n" for v in learnt["states"] if v)
print(" ".join("%d %s" % (len(v), k) for k, v in learnt.items()),
      "(codes sentinel-prefixed: %s)" % all(c.startswith(prefix) for c in j["codes"]))
EOF
diag "learnt from the server: $(cat "$T/learnt")"
expect "the sentinel lists are sound: they match the secret file and the stored refresh token; 4 codes, all sentinel-prefixed, 4 verifiers and 4 states were learnt" \
	'grep -q -F -f "$P/sentinels" "$P/secret" && grep -q -F -f "$P/sentinels" "$STORE/pkceclient.refresh" &&
	grep -q " 4 codes .* 4 verifiers 4 states (codes sentinel-prefixed: True)" "$T/learnt"'
cat "$P/sentinels" "$P/states" >"$P/all"

# hits FILE...: the files among FILE... that hold any sentinel or state (one a line)
hits() { [ $# -gt 0 ] && grep -l -a -F -f "$P/all" -- "$@" 2>/dev/null; }
hits_no_state() { [ $# -gt 0 ] && grep -l -a -F -f "$P/sentinels" -- "$@" 2>/dev/null; }
# whose SNAPSHOT: the command line of the process a snapshot file came from
whose() { local pid=${1##*/}; pid=${pid%%.*}; cat "$T/scan/$pid".cmdline.* 2>/dev/null | tr '\0' ' ' | head -c 100; }

# --- argv and environment
sj() { ps_json "$1" <"$T/scan.json"; }
diag "scanner: $(sj 'j["rounds"]') rounds, $(sj 'j["reads"]') reads, $(sj 'j["snapshots"]') distinct snapshots; our processes seen (argv/environ): $(sj 'j["pids"]') / $(sj 'j["environ_pids"]')"
# the login's helper --pam only starts the keeper and is gone within moments, but for the
# enrollment in the conversation (section 4), which waits for the pasted address
expect "the scanner saw our processes and their environments: at least 1 helper --pam, 2 keepers, 2 renewals, 3 helpers of spotify-token login" \
	'[ "$(sj "min(j[\"pids\"][\"helper --pam\"], j[\"environ_pids\"][\"helper --pam\"]) >= 1 and min(j[\"pids\"][\"keeper\"], j[\"environ_pids\"][\"keeper\"]) >= 2 and min(j[\"pids\"][\"renewal\"], j[\"environ_pids\"][\"renewal\"]) >= 2 and min(j[\"pids\"][\"helper login\"], j[\"environ_pids\"][\"helper login\"]) >= 3")" = True ]'
mapfile -t leaks < <(cd "$T/scan" && grep -r -l -a -F -f "$P/all" . 2>/dev/null)
expect "no sentinel, code, verifier, state or access token in any process's argv or environment during the logins, enrollments and renewals (${#leaks[@]} snapshots hold one${leaks:+: ${leaks[*]:0:3} = $(whose "${leaks[0]}")})" \
	'[ ${#leaks[@]} = 0 ]'

# --- logs
expect "the module's log ($(wc -l <"$PS_SYSLOG_FILE") lines) holds none of them" \
	'[ -s "$PS_SYSLOG_FILE" ] && [ -z "$(hits "$PS_SYSLOG_FILE")" ]'
expect "the keeper's syslog ($(wc -l <"$PS_DAEMON_LOG") lines, $(grep -c "renewal failed" "$PS_DAEMON_LOG") renewal failures) holds none of them" \
	'[ -z "$(hits "$PS_DAEMON_LOG")" ]'
[ "$t_failed" = 0 ] || { diag "keeper syslog:"; sed 's/^/#   /' "$PS_DAEMON_LOG" | cut -c1-200; }

# --- every command's output: the drivers (conversation included), logins, probes
outs=("$T"/o.*)
mapfile -t leaks < <(hits_no_state "${outs[@]}")
expect "no sentinel, code, verifier or access token in the stdout or stderr of any command (${#outs[@]} files${leaks:+; in: ${leaks[*]##*/}})" \
	'[ ${#leaks[@]} = 0 ]'
shown=("$T"/o.login-*.err "$T/o.code-conv") # the authorize URL is shown on purpose there
printf '%s\n' "${shown[@]}" >"$T/shown.list"
mapfile -t rest < <(printf '%s\n' "${outs[@]}" | grep -v -x -F -f "$T/shown.list")
mapfile -t leaks < <(hits "${rest[@]}")
expect "no state in any command's output but where the authorize URL is shown (${#shown[@]} files excluded${leaks:+; in: ${leaks[*]##*/}})" \
	'[ ${#leaks[@]} = 0 ]'

# --- files written since the start under /tmp, the user's home and /dev/shm
find /tmp "$UHOME" /dev/shm -xdev -type f -newer "$T/start" -size -20M 2>/dev/null |
	grep -v -x -e "$P/.*" -e "$T/scan/.*" -e "$STORE/[^/]*\.refresh" >"$T/files.list"
mapfile -t files <"$T/files.list"
mapfile -t leaks < <(hits_no_state "${files[@]}")
expect "no sentinel, code, verifier or access token in the ${#files[@]} files written under /tmp, $UHOME and /dev/shm since the start (but $P and the store's *.refresh)${leaks:+: ${leaks[*]}}" \
	'[ ${#files[@]} -gt 20 ] && [ ${#leaks[@]} = 0 ]'
mapfile -t rest < <(grep -v -x -F -f "$T/shown.list" "$T/files.list")
mapfile -t leaks < <(hits "${rest[@]}")
expect "no state in those files but where the authorize URL is shown${leaks:+: ${leaks[*]}}" '[ ${#leaks[@]} = 0 ]'

# ==== transport rules, seen from outside: the system service started by hand as the module
# starts it (see helper_client_credentials.sh), its configuration from a file, and asked for the
# app token over its socket by the user, as the user's keeper does (the login's helper no longer
# makes a request itself: the service makes every client_credentials request).
cp "$top_srcdir/tests/integration/keeper_call.py" "$T/keeper_call.py"
chmod 644 "$T/keeper_call.py"
# helper_run NAME: one client_credentials request (token_url $TOKEN_URL, timeout $TIMEOUT,
# default the good server and 5 s); sets rc (the answer's status), out (its message) and el (ms).
helper_run() {
	local t0 url=${TOKEN_URL:-$acc_URL/api/token} name
	name=$(ps_service_name testclient "$url" "" "$P/secret")
	{
		echo "pam_spotify-request 1"
		echo "op = open"
		echo "flow = client_credentials"
		echo "client_id = testclient"
		echo "token_url = $url"
		echo "timeout = ${TIMEOUT:-5}"
		echo "connect_timeout = 2"
		echo "ca_file = $CA"
		echo "client_secret_file = $P/secret"
		echo "app_uid = $(id -u _pam_spotify)"
		echo "service = $PS_RUNDIR/$name.sock"
		echo "end"
	} >"$P/req"
	ps_stop_services
	"$PS_HELPER" service <"$P/req" >"$T/o.s-$1" 2>&1 &
	wait_ms 10000 "[ -s '$T/o.s-$1' ]"
	t0=$(now_ms)
	as_user $U /usr/bin/python3 "$T/keeper_call.py" -t 60 "$PS_RUNDIR/$name.sock" token \
		service="$name" >"$T/o.h-$1" 2>/dev/null
	el=$(($(now_ms) - t0))
	rc=$(sed -n 's/^status //p' "$T/o.h-$1")
	out=$(sed -n 's/^message //p' "$T/o.h-$1")
}
# body SIZE CHUNKED: a good token answer of exactly SIZE bytes, with Content-Length or chunked.
body() {
	ctl "{\"fault\": \"sized_body\", \"fault_count\": 1, \"body_size\": $1, \"chunked\": $2}"
	helper_run "body-$1-$2"
}
for chunked in false true; do
	how=$([ $chunked = true ] && echo "chunked, no Content-Length" || echo "with Content-Length")
	body 65536 $chunked
	expect "a 65536-byte token answer ($how) is accepted ($out)" '[ $rc = 0 ]'
	body 65537 $chunked
	expect "a 65537-byte token answer ($how) is refused: larger than 64 KiB ($out)" \
		'[ $rc = 6 ] && [[ "$out" == *"larger than 64 KiB"* ]]'
done
body 4194304 true
expect "a 4 MiB chunked answer is cut off at the cap, at once ($el ms): $out" \
	'[ $rc = 6 ] && [[ "$out" == *"larger than 64 KiB"* ]] && [ $el -lt 4000 ]'
# the low-speed limit: a server that reads the request and then sends nothing is dropped after
# min(timeout, 10) s below 1 byte/s, long before timeout = 30 (curl's speed is a moving average
# over a few seconds, which the request's upload keeps up at first: about 16 s in all)
ctl '{"fault": "hang", "fault_count": 1}'
TIMEOUT=30 helper_run stall
expect "a server that stops sending is dropped by the low-speed limit, well before the 30 s timeout, and the line says so ($el ms): $out" \
	'[ $rc = 6 ] && [ $el -ge 9000 ] && [ $el -lt 27000 ] && [[ "$out" == *"sent nothing for 10 s (stalled)"* ]]'
# connect_timeout: a listener that accepts TCP and never speaks TLS holds the connect phase
"$PYTHON" -c 'import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(8)
open(sys.argv[1], "w").write("%d\n" % s.getsockname()[1])
time.sleep(120)' "$T/mute.port" &
mute_pid=$!
ps_on_exit "kill $mute_pid 2>/dev/null"
wait_ms 10000 '[ -s "$T/mute.port" ]'
TOKEN_URL="https://127.0.0.1:$(cat "$T/mute.port")/api/token" TIMEOUT=30 helper_run mute
expect "a server that never completes the TLS handshake is dropped by connect_timeout (2 s), not the 30 s timeout, and the line says so ($el ms): $out" \
	'[ $rc = 6 ] && [ $el -ge 1500 ] && [ $el -lt 8000 ] && [[ "$out" == *"cannot connect to accounts server 127.0.0.1:"*" within 2 s"* ]]'
kill $mute_pid 2>/dev/null
ps_start_server other --client-file "$P/clients"
ctl "{\"fault\": \"redirect\", \"fault_count\": 1, \"redirect_status\": 307, \"redirect_location\": \"$other_URL/api/token\"}"
helper_run redirect
expect "a 307 to another live token endpoint is not followed: refused, and that server got no request ($out)" \
	'[ $rc = 7 ] && [[ "$out" == *"redirects are not followed"* ]] && [ "$(ps_server_stats "$other_URL" | ps_json "j[\"token_requests\"]")" = 0 ]'
ps_stop_services

[ "$t_failed" = 0 ] || { diag "module log (tail):"; tail -8 "$PS_SYSLOG_FILE" | cut -c1-200 | sed 's/^/#   /'; }
done_testing
