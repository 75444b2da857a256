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
	return $rc
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
