# tests/lib.sh: TAP helpers and fixtures shared by the shell tests. Source it; do not run it.
#
# Environment (set by `make check`, see Makefile.am): top_srcdir, top_builddir, PS_HELPER,
# PS_READER, PS_SECUREDIR, PYTHON, PS_SANITIZERS (yes in a --enable-sanitizers build),
# PS_REPORT_DIR (where sanitizer and valgrind reports go); from tests/run: PS_VALGRIND (1 in the
# valgrind pass).

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
: "${PYTHON:=python3}"

t_n=0
t_failed=0
t_start=$(date +%s)
t_lock_wait=0

ok() { t_n=$((t_n + 1)); echo "ok $t_n - $*"; }
not_ok() { t_n=$((t_n + 1)); t_failed=$((t_failed + 1)); echo "not ok $t_n - $*"; }
skip() { t_n=$((t_n + 1)); echo "ok $t_n - $1 # SKIP $2"; }
diag() { printf '# %s\n' "$*"; }
# check DESCRIPTION COMMAND...: one test that passes when COMMAND succeeds.
check() {
	local desc=$1
	shift
	if "$@"; then ok "$desc"; else not_ok "$desc"; fi
}
# expect DESCRIPTION 'CONDITION': one test that passes when the shell CONDITION (evaluated here,
# so it may use &&, ||, ! and the script's variables and functions) is true.
expect() {
	if eval "$2"; then ok "$1"; else not_ok "$1"; fi
}
skip_all() { echo "1..0 # SKIP $*"; exit 0; }
bail() { echo "Bail out! $*"; exit 99; }
# done_testing: print the plan (at the end, as TAP allows) and exit non-zero on failure. The
# time taken is for tuning CI; the lock wait is time other test runs on the machine held it.
done_testing() {
	diag "took $(($(date +%s) - t_start)) s, $t_lock_wait s of it waiting for the keyring lock"
	echo "1..$t_n"
	[ "$t_failed" -eq 0 ]
}

# ps_lock_keyring: tests that plant or read keys in a test user's keyring, or start its keepers,
# run one at a time, host-wide: the test users and root's user keyring are shared by every build
# tree on the machine (a CI clone and a working tree), so the lock is too.
PS_TEST_LOCK=/tmp/pam_spotify-tests.lock
ps_lock_keyring() {
	local t0 rc
	t0=$(date +%s)
	{ exec 9>>"$PS_TEST_LOCK"; } 2>/dev/null && flock 9
	rc=$?
	t_lock_wait=$(($(date +%s) - t0))
	[ $rc -eq 0 ] && ps_raise_key_quota
	return $rc
}

# ps_raise_key_quota: Linux (6.18 here) never gives back the 4 bytes of key quota a link costs
# when its garbage collector, not an unlink, takes a dead key (expired, revoked, invalidated) out
# of a keyring, and a user keyring lives until reboot. pam_spotify unlinks what it removes (see
# test_keys's leak probe), and a whole run of the suite leaks next to nothing now; but a test
# user's keyring keeps what builds before that fix, other software, or keys left to expire leaked
# on this boot, and at kernel.keys.maxbytes (20000 by default) every store fails with EDQUOT. The
# limit is raised while a test holds the keyring lock, and put back at its exit (ps_tmpdir's trap).
ps_raise_key_quota() {
	local f=/proc/sys/kernel/keys/maxbytes old
	[ "$(id -u)" -eq 0 ] && [ -w $f ] || return 0
	old=$(cat $f)
	[ "$old" -lt 25000000 ] || return 0
	ps_on_exit "echo $old >$f"
	echo 25000000 >$f
}

need_root() { [ "$(id -u)" -eq 0 ] || skip_all "needs root (creates test users and switches to them)"; }

# A scratch directory removed at exit; world-traversable so test users can reach files in it.
ps_tmpdir() {
	T=$(mktemp -d /tmp/pam_spotify-test.XXXXXX)
	chmod 755 "$T"
	trap 'ps_cleanup' EXIT
}
ps_cleanup_hooks=""
ps_on_exit() { ps_cleanup_hooks="$1; $ps_cleanup_hooks"; }
ps_cleanup() {
	eval "$ps_cleanup_hooks"
	[ -n "${T:-}" ] && rm -rf "$T"
}

# ps_ensure_user NAME: create a local test user (no password, home in /home) if missing.
ps_ensure_user() {
	id "$1" >/dev/null 2>&1 || useradd -m -s /bin/sh "$1" >/dev/null 2>&1 || bail "cannot create user $1"
}

# ps_ensure_app_user: the system service's user (app_user's default, _pam_spotify), as
# tests/setup creates it, if missing. Sets PS_APP_USER and PS_APP_UID.
PS_APP_USER=_pam_spotify
ps_ensure_app_user() {
	id "$PS_APP_USER" >/dev/null 2>&1 ||
		useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
			"$PS_APP_USER" >/dev/null 2>&1 || bail "cannot create the app user $PS_APP_USER"
	PS_APP_UID=$(id -u "$PS_APP_USER")
}

# as_user NAME COMMAND...: run COMMAND as NAME with a clean environment in a new anonymous
# session keyring of its own (so it possesses none of root's keys).
as_user() {
	local u=$1
	shift
	setpriv --reuid="$u" --regid="$(id -g "$u")" --init-groups --reset-env -- \
		keyctl session - "$@"
}

# PS_TIME_FACTOR: session deadlines a test configures for the helper are multiplied by it: 3 in
# the valgrind pass, where the helper takes 1 to 3 s more to start and to do TLS; else 1.
if [ "${PS_VALGRIND:-0}" = 1 ]; then PS_TIME_FACTOR=3; else PS_TIME_FACTOR=1; fi

# ps_valgrind_wrap PROGRAM: in the valgrind pass (PS_VALGRIND=1, see tests/run) make PROGRAM, a
# copy in $T, run under memcheck with its reports in $PS_REPORT_DIR (tests/valgrind/wrap);
# otherwise nothing. tests/setup does the same for the installed helper and reader.
ps_valgrind_wrap() {
	[ "${PS_VALGRIND:-0}" = 1 ] || return 0
	"$top_srcdir/tests/valgrind/wrap" "$1" "$PS_REPORT_DIR" || bail "cannot put $1 under valgrind"
}

# ps_certs: make the test CA and server certificates in $T/tls (once per test script).
ps_certs() {
	[ -f "$T/tls/ca.pem" ] || sh "$top_srcdir/tests/tls/mkcerts.sh" "$T/tls" >/dev/null 2>&1 ||
		bail "cannot create test certificates"
}

# ps_start_server NAME [fake_accounts.py options...]: start a fake accounts server on 127.0.0.1.
# Sets ${NAME}_PORT, ${NAME}_URL and ${NAME}_PID. Stopped at exit.
ps_start_server() {
	local name=$1
	shift
	ps_certs
	local pf="$T/$name.port"
	rm -f "$pf"
	"$PYTHON" "$top_srcdir/tests/integration/fake_accounts.py" \
		--cert "$T/tls/server.pem" --key "$T/tls/server.key" \
		--port-file "$pf" --log "$T/$name.log" "$@" &
	local pid=$!
	ps_on_exit "kill $pid 2>/dev/null; wait $pid 2>/dev/null"
	local i=0
	while [ ! -s "$pf" ]; do
		i=$((i + 1))
		[ $i -gt 100 ] && bail "fake accounts server $name did not start (see $T/$name.log)"
		kill -0 $pid 2>/dev/null || bail "fake accounts server $name exited (see $T/$name.log)"
		sleep 0.1
	done
	local port
	port=$(cat "$pf")
	eval "${name}_PORT=$port ${name}_PID=$pid ${name}_URL=https://127.0.0.1:$port"
}

# ps_server_control URL JSON: set faults or settings on a fake server.
ps_server_control() {
	curl -sS --fail --cacert "$T/tls/ca.pem" -H 'Content-Type: application/json' \
		--data "$2" "$1/__control" >/dev/null
}

# ps_server_stats URL: print the server's JSON stats.
ps_server_stats() {
	curl -sS --fail --cacert "$T/tls/ca.pem" "$1/__stats"
}

# ps_json EXPR: evaluate a Python expression on the JSON `j` read from stdin and print it.
ps_json() {
	"$PYTHON" -c 'import json,sys; j=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"
}

# --- PAM sessions, keys and readers (need $T from ps_tmpdir; open_held needs $DRIVER and
# $T/pam.d)

now_ms() { local t=${EPOCHREALTIME//[!0-9]/}; echo $((t / 1000)); }
# wait_ms LIMIT CONDITION: poll the shell CONDITION every 0.1 s for at most LIMIT ms; sets WAITED
# (ms) and succeeds when the condition came true.
wait_ms() {
	local start end
	start=$(now_ms)
	end=$((start + $1))
	until eval "$2"; do
		if [ "$(now_ms)" -ge "$end" ]; then
			WAITED=$(($(now_ms) - start))
			return 1
		fi
		sleep 0.1
	done
	WAITED=$(($(now_ms) - start))
	return 0
}
user_key() { as_user "$1" keyctl search @u user "$2" 2>/dev/null; }
no_keys() { [ -z "$(user_key "$1" spotify:access_token)" ] && [ -z "$(user_key "$1" spotify:token_info)" ]; }
clear_keys() {
	local id k
	for k in spotify:access_token spotify:token_info; do
		id=$(user_key "$1" "$k") && [ -n "$id" ] && as_user "$1" keyctl unlink "$id" @u >/dev/null 2>&1
	done
	return 0
}
# alive PID: the process exists and is not a zombie (PID 1 here may not reap orphans).
alive() {
	local st
	st=$(sed -n 's/^.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null)
	[ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}
# as_user_q USER COMMAND...: as_user without keyctl's "Joined session keyring" line on stderr.
as_user_q() {
	local rc
	as_user "$@" 2>"$T/as_user.err"
	rc=$?
	grep -v '^Joined session keyring' "$T/as_user.err" >&2
	return $rc
}
reader() { local u=$1; shift; as_user_q "$u" "$PS_READER" "$@"; }

# Background PAM sessions: the drivers we started (killed at exit if still there).
DRIVERS=""
# open_held SERVICE USER NAME: a session held open in the background until close_held (output in
# $T/held.NAME); returns once its open line is out (at most 15 s). Sets HELD_PID. The hold is
# ended by SIGUSR1, not a timer, so a slow machine cannot close a session before its checks ran;
# HOLD_CAP s is only a backstop. The command (true) is there because the driver flushes its
# output before it runs one: a file is buffered.
HOLD_CAP=300
open_held() {
	PS_HOLD_OPEN=$HOLD_CAP "$DRIVER" "$T/pam.d" "$1" "$2" -- true >"$T/held.$3" 2>&1 &
	HELD_PID=$!
	DRIVERS="$DRIVERS $HELD_PID"
	wait_ms 15000 "grep -q '^open=' '$T/held.$3'"
}
# close_held PID...: close held sessions now (pam_close_session runs) and wait for their drivers.
close_held() {
	kill -USR1 "$@" 2>/dev/null
	wait "$@"
}
held_open() { sed -n 's/^open=\([0-9]*\) .*/\1/p' "$T/held.$1"; }
held_close() { sed -n 's/^close=\([0-9]*\) .*/\1/p' "$T/held.$1"; }

# sample USER SECONDS FILE: as USER, in a fresh session keyring (so not possessing the keys, like
# a systemd service), run spotify-token --json every 0.5 s for SECONDS s. FILE gets one line a
# sample: "<unix time> <exit code> <stdout>".
sample() {
	as_user "$1" sh -c '
		end=$(($(date +%s) + $1))
		while [ "$(date +%s)" -lt "$end" ]; do
			t=$(date +%s.%N)
			out=$("$2" --json 2>/dev/null)
			rc=$?
			echo "$t $rc $out"
			sleep 0.5
		done' sh "$2" "$PS_READER" >"$3" 2>/dev/null
}
# The samples, summed up as JSON: n; good (exit 0, expires_in > 0); bad (the others);
# expired_printed (exit 0 with expires_in <= 0, or anything printed on a failure); tokens (the
# distinct tokens in order); first_expires_at (of the first token); bad_samples (the first 8);
# series: [time, exit code, token, expires_at, expires_in] for each sample.
# summary FILE: sum up the samples in FILE; sj EXPR evaluates EXPR on that summary (as j).
summary() { "$PYTHON" "$top_srcdir/tests/integration/samples.py" "$1" >"$T/summary.json"; }
sj() { ps_json "$1" <"$T/summary.json"; }

# ps_mem_has PID STRING: the process's writable and anonymous memory, read as root through
# /proc/PID/mem, holds STRING. Exit 0 yes, 1 no, 2 its memory cannot be read here.
ps_mem_has() {
	"$PYTHON" - "$1" "$2" <<'PY'
import sys
pid, needle = sys.argv[1], sys.argv[2].encode()
readable = False
try:
    maps = open("/proc/%s/maps" % pid).read().splitlines()
    mem = open("/proc/%s/mem" % pid, "rb", 0)
except OSError:
    sys.exit(2)
for line in maps:
    f = line.split()
    path = f[5] if len(f) > 5 else ""
    if "r" not in f[1] or path in ("[vvar]", "[vsyscall]", "[vdso]"):
        continue
    if path.startswith("/") and "w" not in f[1]:
        continue  # program text and read-only data
    start, end = (int(x, 16) for x in f[0].split("-"))
    try:
        mem.seek(start)
        data = mem.read(end - start)
    except (OSError, ValueError, OverflowError):
        continue
    readable = True
    if needle in data:
        sys.exit(0)
sys.exit(1 if readable else 2)
PY
}

# ps_service_name CLIENT_ID TOKEN_URL SCOPES SECRET_FILE: the name of that configuration's
# system service in RUNDIR (common/paths.c: "service-" and FNV-1a of those settings, 8 hex digits).
ps_service_name() {
	"$PYTHON" - "$@" <<'PY'
import sys
h = 2166136261
for c in "\n".join(sys.argv[1:5]).encode():
    h = ((h ^ c) * 16777619) & 0xFFFFFFFF
print("service-%08x" % h)
PY
}

# ps_keeper_name FLOW CLIENT_ID TOKEN_URL SCOPES KEYRING: the name of that configuration's keeper
# socket in RUNDIR/user/UID (common/paths.c: "keeper-" and FNV-1a of those settings, 8 hex digits).
ps_keeper_name() {
	"$PYTHON" - "$@" <<'PY'
import sys
h = 2166136261
for c in "\n".join(sys.argv[1:6]).encode():
    h = ((h ^ c) * 16777619) & 0xFFFFFFFF
print("keeper-%08x.sock" % h)
PY
}

# ps_services [PROGRAM]: the pids of this install's running system services (pam_spotify_helper
# service, or service --start as the module starts it, running PROGRAM, default $PS_HELPER), once
# they run as the app user (any uid but root's): not their starter, root, which forks the service
# off and ends once it has announced itself; ps_stop_services [PROGRAM]: end the services and
# their starters (SIGTERM), and wait up to 5 s.
ps_service_procs() {
	local p
	for p in $(pgrep -f 'pam_spotify_helper service( --start)?$'); do
		case "$(readlink "/proc/$p/exe" 2>/dev/null)" in
		"${1:-$PS_HELPER}" | "${1:-$PS_HELPER} (deleted)") echo "$p" ;; # (deleted): reinstalled since
		esac
	done
	return 0
}
ps_services() {
	local p
	for p in $(ps_service_procs "${1:-}"); do
		case "$(awk '/^Uid:/ { print $2 }' "/proc/$p/status" 2>/dev/null)" in
		"" | 0) ;;
		*) echo "$p" ;;
		esac
	done
	return 0
}
ps_stop_services() {
	local p
	for p in $(ps_service_procs "${1:-}"); do kill "$p" 2>/dev/null; done
	wait_ms 5000 "[ -z \"\$(ps_service_procs ${1:-})\" ]"
}

# ps_need_install: skip the whole test unless this build is installed under its prefix.
ps_need_install() {
	[ -f "$PS_SECUREDIR/pam_spotify.so" ] && [ -x "$PS_HELPER" ] && [ -x "$PS_READER" ] ||
		skip_all "pam_spotify is not installed under its configured prefix: run make install first"
}

# ps_login_fixture TAG CC_CLIENT [PKCE_CLIENT]: what a test that logs in against the fake accounts
# server starts with: SECRET (a sentinel naming the test, to look for where it must not be), the
# server "acc" (acc_URL, ps_start_server) knowing CC_CLIENT with that secret (and PKCE_CLIENT, a
# public client), CA, the secret in $T/secret (0600), DRIVER (tests/pam/pam_session), and
# ps_daemon_log: capture what helpers, keepers and the system service log with syslog(3) (to
# /dev/log, which this machine need not have) in $PS_DAEMON_LOG, one line a message, from the
# processes ps_in_ns runs: they see $T/dev as /dev (the real device nodes bound in, and /dev/log
# a datagram socket of ours) in a private mount namespace, so nothing on the host changes.
ps_daemon_log() {
	local n
	mkdir "$T/dev" "$T/dev/pts" "$T/dev/shm"
	for n in null zero full random urandom tty; do : >"$T/dev/$n"; done
	ln -s /proc/self/fd "$T/dev/fd"
	ln -s /proc/self/fd/0 "$T/dev/stdin"
	ln -s /proc/self/fd/1 "$T/dev/stdout"
	ln -s /proc/self/fd/2 "$T/dev/stderr"
	cat >"$T/syslogd.py" <<'EOF'
import os, socket, sys
path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
os.chmod(path, 0o666)
with open(out, "ab", buffering=0) as f:
    while True:
        f.write(s.recv(65536).replace(b"\n", b" ").rstrip() + b"\n")
EOF
	cat >"$T/ns.sh" <<'EOF'
d=$1
shift
for n in null zero full random urandom tty; do
	mount --bind "/dev/$n" "$d/$n" || exit 125
done
mount --rbind /dev/pts "$d/pts" && mount --rbind /dev/shm "$d/shm" && mount --rbind "$d" /dev ||
	exit 125
exec "$@"
EOF
	PS_DAEMON_LOG=$T/daemon.log
	: >"$PS_DAEMON_LOG"
	"$PYTHON" "$T/syslogd.py" "$T/dev/log" "$PS_DAEMON_LOG" &
	ps_on_exit "kill $! 2>/dev/null"
	wait_ms 5000 '[ -S "$T/dev/log" ]' || bail "the syslog socket did not appear"
}
# ps_in_ns COMMAND...: run COMMAND (as root) where ps_daemon_log captures its syslog. In the
# foreground: a background "ps_in_ns ... &" is a subshell, and $! its pid, not COMMAND's (run
# unshare --mount --propagation private -- sh "$T/ns.sh" "$T/dev" COMMAND... for that).
ps_in_ns() { unshare --mount --propagation private -- sh "$T/ns.sh" "$T/dev" "$@"; }

# PS_SYSLOG_FILE ($T/syslog, empty), where the driver appends what the modules log.
ps_login_fixture() {
	SECRET="SENTINEL-$1-SECRET-$$"
	{
		printf '%s:%s\n' "$2" "$SECRET"
		[ -z "${3:-}" ] || printf '%s:unused-%s\n' "$3" "$$"
	} >"$T/clients"
	ps_start_server acc --client-file "$T/clients"
	CA="$T/tls/ca.pem"
	printf '%s\n' "$SECRET" >"$T/secret"
	chmod 600 "$T/secret"
	DRIVER="$top_builddir/tests/pam/pam_session"
	export PS_SYSLOG_FILE="$T/syslog"
	: >"$PS_SYSLOG_FILE"
}

# ps_enroll USER CLIENT [PUBLIC]: a refresh token the fake server mints for CLIENT (a public client
# unless PUBLIC is false), written to USER's store as spotify-token login would (directory 0700,
# file 0600, the user's; a re-authorization mark goes). Needs CA and acc_URL (ps_login_fixture).
ps_enroll() {
	local rt
	rt=$(curl -sS --fail --cacert "$CA" -H 'Content-Type: application/json' \
		--data "{\"client_id\": \"$2\", \"scope\": \"user-read-email\", \"public\": ${3:-true}}" \
		"$acc_URL/__refresh_token" | ps_json 'j["refresh_token"]')
	[ -n "$rt" ] || return 1
	printf 'pam_spotify-refresh 1\n%s\n' "$rt" | as_user_q "$1" sh -c '
		umask 077
		d="$HOME/.local/state/spotify-token"
		mkdir -p "$d" && chmod 700 "$d" && rm -f "$d/$1.reauth" &&
		cat >"$d/$1.refresh.new" && mv "$d/$1.refresh.new" "$d/$1.refresh"' sh "$2"
}

# ps_conf FILE LINE...: write a pam_spotify.conf(5) (mode 0644) holding the lines given ("key =
# value"), after "accounts_url = $acc_URL" and "ca_file = $CA" when those are set and no line
# sets the key. The tests' own conf() wrappers add their defaults around it.
ps_conf() {
	local f=$1
	shift
	{
		case "$*" in *"accounts_url ="* | *"token_url ="*) ;; *) [ -z "${acc_URL:-}" ] || echo "accounts_url = $acc_URL" ;; esac
		case "$*" in *"ca_file ="*) ;; *) [ -z "${CA:-}" ] || echo "ca_file = $CA" ;; esac
		printf '%s\n' "$@"
	} >"$f"
	chmod 644 "$f"
}

# ps_pam_service DIR NAME CONF [MODULE ARGS...]: the PAM service NAME in DIR (for pam_start_confdir,
# tests/pam/pam_session): pam_keyinit, then pam_spotify with config=CONF.
ps_pam_service() {
	local dir=$1 name=$2 conf=$3
	shift 3
	mkdir -p "$dir"
	[ -f "$dir/other" ] || printf '%s required pam_deny.so\n' auth account password session >"$dir/other"
	printf 'session optional pam_keyinit.so force revoke\nsession required %s config=%s%s\n' \
		"$PS_SECUREDIR/pam_spotify.so" "$conf" "${*:+ $*}" >"$dir/$name"
}

# The users' keepers (helper/keeper.h): one process "pam_spotify_helper keeper" per user and
# configuration, at $PS_RUNDIR/user/UID/keeper-HASH.sock; its renewals are children named
# "pam_spotify_helper renew".
# ps_keepers USER: their pids, one a line; ps_nkeepers USER: how many.
ps_keepers() { pgrep -u "$1" -f 'pam_spotify_helper keeper$' || true; }
ps_nkeepers() { ps_keepers "$1" | wc -l; }
# ps_keeper_socks USER: the keepers' sockets in the user's RUNDIR directory (a keeper killed with
# SIGKILL leaves its socket there: ps_keeper_sock finds the one that answers).
ps_keeper_socks() { ls -1 "$PS_RUNDIR/user/$(id -u "$1")"/keeper-*.sock 2>/dev/null || true; }
# ps_keeper_sock USER: the socket of the user's (one) running keeper: the first that answers.
ps_keeper_sock() {
	local s
	for s in $(ps_keeper_socks "$1"); do
		"$PYTHON" "$top_srcdir/tests/integration/keeper_call.py" -t 2 "$s" status >/dev/null &&
			echo "$s" && return 0
	done
	return 1
}
# ps_keeper_status USER [KEY]: the status answer of the user's (one) keeper, or the value of KEY in
# it (sessions, expires_at, not_before, renewing); nothing when no keeper answers.
ps_keeper_status() {
	local s
	s=$(ps_keeper_sock "$1") || return 1
	if [ -n "${2:-}" ]; then
		"$PYTHON" "$top_srcdir/tests/integration/keeper_call.py" "$s" status | sed -n "s/^$2 //p"
	else
		"$PYTHON" "$top_srcdir/tests/integration/keeper_call.py" "$s" status
	fi
}
