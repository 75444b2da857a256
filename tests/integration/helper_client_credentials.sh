#!/bin/bash
# helper_client_credentials.sh: the client credentials path without PAM, each step driven by hand.
# The system service (pam_spotify_helper service, started as the module starts it: as root, its
# configuration on stdin) obtains the app token; pam_spotify_helper --pam, run as a test user with
# a hand-written request naming that service, starts the user's keeper (helper/keeper.h) and exits
# with one line; the keeper, asked over its socket (keeper_call.py: op open as root with a session
# process, as the module asks, or op token as the user, as the login's helper asks for keyring =
# session), makes the request in its renewal through the service and copies the token into the
# user's keyring with the contract's permissions. A second --pam finds the keeper; refresh-now
# renews in place; the session's process ending ends the keeper and removes the keys. Every
# server fault, bad certificate and forbidden URL gives the keeper's answer a non-zero documented
# code (its status) and one clear message, and no key; inside a 429's Retry-After window the
# keeper makes no request; the secret never leaks.
#
# Since the keeper (60e6f88) --pam makes no token request: the faults are checked in the keeper's
# answer, not in --pam's exit and line. "op = close" requests are gone, and with them the checks
# "close: exit 0, 'ok removed'" and "removing absent keys is fine": the keys go with the keeper's
# last session (checked here with the session's process, and through PAM in session.sh). Needs
# root (creates pstest1 and switches to it) and an installed build (--pam execs the installed
# helper as the keeper).
. "$top_srcdir/tests/lib.sh"

need_root
ps_need_install
for tool in keyctl setpriv curl timeout; do
	command -v $tool >/dev/null 2>&1 || skip_all "$tool not found"
done
HELPER="$top_builddir/helper/pam_spotify_helper"
[ -x "$HELPER" ] || bail "$HELPER is not built"

ps_tmpdir
ps_lock_keyring
ps_ensure_user pstest1
ps_ensure_app_user
SERVICE_BIN="$HELPER" # the service runs natively (and as root: the built helper, not a copy)
# The valgrind pass runs --pam natively here too (the installed launcher does, tests/setup): it
# execs the keeper from the 0711 helper, which a process under valgrind cannot (valgrind would have
# to read the file), and the requests themselves are made by the keeper, which runs natively.
KCALL="$T/keeper_call.py" # a copy pstest1 can read
# the interpreter itself, not a launcher that finds it (pyenv's shims take 0.4 s a call, and this
# test makes hundreds); pstest1 runs its own (as_user resets PATH), by name
USER_PYTHON=$PYTHON
PYTHON=$("$PYTHON" -c 'import sys; print(sys.executable)') || bail "$USER_PYTHON does not run"
cp "$top_srcdir/tests/integration/keeper_call.py" "$KCALL"
chmod 644 "$KCALL"
CLIENT=testclient
SECRET="SENTINEL-SECRET-$$-c1d3e5"
printf '%s:%s\n' "$CLIENT" "$SECRET" >"$T/clients" # a file: no secret in the server's argv
ps_start_server acc --client-file "$T/clients"
TOKEN_URL="$acc_URL/api/token"
CA="$T/tls/ca.pem"
printf '%s\n' "$SECRET" >"$T/secret"
chmod 600 "$T/secret"
printf 'not-the-secret\n' >"$T/wrong-secret"
chmod 600 "$T/wrong-secret"
# pstest1's directory for its keepers, as the module makes it (root's RUNDIR/user, the user's 0700
# RUNDIR/user/UID): --pam binds the keeper's socket there
U1=$(id -u pstest1)
install -d -m 755 -o root -g root "$PS_RUNDIR" "$PS_RUNDIR/user"
install -d -m 700 -o pstest1 -g "$(id -g pstest1)" "$PS_RUNDIR/user/$U1"

# request OP [key=value...]: a request on stdout. Defaults: the good server, its CA, the right
# secret file, timeout 5 s, the service of those settings; arguments override or add keys (key=
# with no value drops the key). authorize_url is there as the module always sends it: --pam
# passes its settings on to the keeper, which refuses an empty one.
request() {
	local op=$1 kv k v
	shift
	declare -A kv_map=([flow]=client_credentials [client_id]=$CLIENT [token_url]=$TOKEN_URL
		[authorize_url]=$acc_URL/authorize [keyring]=user [timeout]=5 [connect_timeout]=2 [ca_file]=$CA
		[client_secret_file]=$T/secret [app_uid]=$PS_APP_UID)
	for kv in "$@"; do
		kv_map[${kv%%=*}]=${kv#*=}
	done
	kv_map[service]=$PS_RUNDIR/$(ps_service_name "${kv_map[client_id]}" "${kv_map[token_url]}" \
		"${kv_map[scopes]-}" "${kv_map[client_secret_file]}").sock
	ps_keeper_name "${kv_map[flow]}" "${kv_map[client_id]}" "${kv_map[token_url]}" \
		"${kv_map[scopes]-}" "${kv_map[keyring]}" >"$T/keeper.name"
	echo "pam_spotify-request 1"
	echo "op = $op"
	for k in flow client_id scopes token_url authorize_url keyring timeout connect_timeout \
		ca_file client_secret_file app_uid service; do
		v=${kv_map[$k]-}
		[ -n "$v" ] && echo "$k = $v"
	done
	echo "end"
}

# keeper_sock: the socket of the keeper of the last request written (a socket left by a keeper
# that was killed stays there: the test talks to its own keeper's, not to any socket there)
keeper_sock() { echo "$PS_RUNDIR/user/$U1/$(cat "$T/keeper.name")"; }

# service_start NAME [key=value...]: the system service for that request, as the module starts it
# (root, the request on stdin, a line on stdout: ready, busy or fail CODE TEXT). Sets svc_status.
service_start() {
	local name=$1
	shift
	ps_stop_services "$SERVICE_BIN"
	request open "$@" >"$T/$name.svc.req"
	"$SERVICE_BIN" service <"$T/$name.svc.req" >"$T/$name.svc.out" 2>&1 &
	wait_ms 10000 "[ -s '$T/$name.svc.out' ]"
	svc_status=$(head -1 "$T/$name.svc.out")
	[ "$svc_status" = ready ] || diag "the service for $name did not start: $svc_status"
}

# our_keepers: pstest1's keepers of this install (pam_spotify_helper keeper, the installed helper);
# stop_keepers: end them (SIGTERM: a keeper ends once no renewal runs, removing its socket and,
# remove_on_close, the keys) and wait up to 5 s.
our_keepers() {
	local p
	for p in $(ps_keepers pstest1); do
		case "$(readlink "/proc/$p/exe" 2>/dev/null)" in
		"$PS_HELPER" | "$PS_HELPER (deleted)" | "$(dirname "$PS_HELPER")/valgrind/pam_spotify_helper") echo "$p" ;;
		esac
	done
	return 0
}
stop_keepers() {
	local p
	for p in $(our_keepers); do kill "$p" 2>/dev/null; done
	wait_ms 5000 '[ -z "$(our_keepers)" ]' || diag "a keeper of pstest1's did not end: $(our_keepers)"
}

# start_keeper NAME [key=value...]: pam_spotify_helper --pam as pstest1 with an open request for
# those settings: it starts pstest1's keeper (or finds it running) and exits. Sets pam_rc and
# pam_out (its answer line); stdout and stderr are kept in $T/NAME.out and $T/NAME.err.
start_keeper() {
	local name=$1
	shift
	request open "$@" >"$T/$name.req"
	as_user pstest1 timeout 30 "$HELPER" --pam <"$T/$name.req" >"$T/$name.out" 2>"$T/$name.err"
	pam_rc=$?
	pam_out=$(answer_of "$T/$name.out")
}

# ask NAME OP [KEY=VALUE...]: the keeper of the last request asked OP over its socket
# (tests/integration/keeper_call.py), as pstest1, or as root with ASK_AS=root (the module's
# side: open and close). Sets rc (the answer's status, a PS_EXIT
# code; 99 when no answer came), out (its message) and secs (the wall time); the answer's header
# lines are kept in $T/NAME.ans.
ask() {
	local name=$1 op=$2 sock t0 as=(as_user pstest1) py=$USER_PYTHON
	shift 2
	[ "${ASK_AS:-}" = root ] && as=() py=$PYTHON
	sock=$(keeper_sock)
	t0=$(date +%s%N)
	"${as[@]}" "${py:-$PYTHON}" "$KCALL" --timeout=60 "$sock" "$op" "$@" \
		>"$T/$name.ans" 2>>"$T/$name.err"
	secs=$((($(date +%s%N) - t0) / 1000000000))
	rc=$(sed -n 's/^status //p' "$T/$name.ans")
	[ -n "$rc" ] || rc=99
	out=$(sed -n 's/^message //p' "$T/$name.ans")
}

# helper NAME [key=value...]: one login's part, by hand: no keeper of pstest1's left, the system
# service for those settings, --pam to start the keeper, then the keeper asked for the token.
helper() {
	local name=$1
	shift
	stop_keepers
	service_start "$name" "$@"
	start_keeper "$name" "$@"
	ask "$name" token
}

# forget_services: stop the services and keepers this test started and remove the services'
# sockets and locks
forget_services() {
	local f p
	stop_keepers
	ps_stop_services "$SERVICE_BIN"
	for f in "$T"/*.req; do
		p=$(sed -n 's/^service = //p' "$f")
		[ -n "$p" ] && rm -f "$p" "${p%.sock}.lock"
	done
	return 0
}
ps_on_exit forget_services

# read_key NAME: print pstest1's key spotify:NAME as pstest1 (a process that does not possess it).
read_key() {
	as_user pstest1 keyctl pipe "%user:spotify:$1" 2>/dev/null
}

no_key() {
	! read_key access_token >/dev/null && ! read_key token_info >/dev/null
}

# answer_of FILE: the helper's stdout without its first line, the "hardened" hello that tells the
# module it may write the request (pam_spotify_helper(8)).
answer_of() { sed '1{/^hardened$/d}' "$1"; }

# one_line NAME: the helper wrote its hello, then exactly one line, on stdout and nothing on
# stderr (keyctl's "Joined session keyring" from as_user aside).
one_line() {
	[ "$(head -1 "$T/$1.out")" = hardened ] && [ "$(wc -l <"$T/$1.out")" -eq 2 ] &&
		! grep -qv '^Joined session keyring: [0-9]*$' "$T/$1.err"
}

# started NAME: --pam exited 0 with its one line 'ok the keeper started', and one keeper of
# pstest1's runs and answers on its socket
started() {
	[ "$pam_rc" -eq 0 ] && [ "$pam_out" = "ok the keeper started" ] && one_line "$1" &&
		[ "$(our_keepers | wc -l)" -eq 1 ] && "$PYTHON" "$KCALL" "$(keeper_sock)" status >/dev/null
}
# status [KEY]: the keeper's status answer (asked as root), or the value of KEY in it
status() {
	if [ -n "${1:-}" ]; then
		"$PYTHON" "$KCALL" "$(keeper_sock)" status | sed -n "s/^$1 //p"
	else
		"$PYTHON" "$KCALL" "$(keeper_sock)" status
	fi
}

# refused NAME CODE TEXT: the keeper started, and answered with status CODE and a message
# containing TEXT; no key is stored.
refused() {
	local name=$1 code=$2 text=$3
	if started "$name" && [ "$rc" -eq "$code" ] && [[ $out == *"$text"* ]] && no_key; then
		ok "$name: the keeper answers $code, '$out'"
	else
		not_ok "$name: the keeper answers $rc (want $code), '$out' (want '$text')"
		diag "--pam: exit $pam_rc, '$pam_out'; stderr: $(grep -v '^Joined session keyring' "$T/$name.err")"
		read_key access_token >/dev/null && diag "a key was stored"
	fi
}

# --- the good path: a session (a process of the test's) opened on the keeper as the module opens
# it, so that the keeper stays while the checks run

stop_keepers
clear_keys pstest1
SCOPES="scopes=user-read-email playlist-read-private"
service_start good "$SCOPES"
check "good: the service started as the module starts it ($svc_status)" test "$svc_status" = ready
start_keeper good "$SCOPES"
check "good: --pam exits 0 with one line, 'ok the keeper started' ($pam_out), and one keeper listens" \
	started good
sleep 300 &
holder=$!
ps_on_exit "kill $holder 2>/dev/null"
ASK_AS=root ask good open "pid=$holder" margin=300
check "good: the keeper's answer to the session's open: status 0, 'ok expires_in=N keyring=user app token' ($out)" \
	eval 'test "$rc" -eq 0 && echo "$out" | grep -qE "^ok expires_in=(3600|359[0-9]) keyring=user app token$"'
issued=$(ps_server_stats "$acc_URL" | ps_json 'j["last_access_token"]')
check "good: the key holds exactly the token the server issued" \
	test -n "$issued" -a "$(read_key access_token)" = "$issued"
check "good: the token is not on --pam's stdout nor in the answer's header lines" \
	sh -c '! grep -qF -- "$1" "$2" "$3"' sh "$issued" "$T/good.out" "$T/good.ans"
desc=$(as_user pstest1 keyctl rdescribe %user:spotify:access_token 2>/dev/null)
check "good: token key is type user, owned by pstest1, perm 3f0b0000 ($desc)" \
	test "$desc" = "user;$U1;$(id -g pstest1);3f0b0000;spotify:access_token"
desc=$(as_user pstest1 keyctl rdescribe %user:spotify:token_info 2>/dev/null)
check "good: info key perm 3f0b0000" test "${desc#*;*;*;}" = "3f0b0000;spotify:token_info"
read_key token_info >"$T/info.json"
now=$(date +%s)
check "good: token_info says Bearer, client_credentials, client_id, configured scopes" \
	test "$(ps_json '(j["token_type"], j["flow"], j["client_id"], j["scope"])' <"$T/info.json")" = \
	"('Bearer', 'client_credentials', '$CLIENT', 'user-read-email playlist-read-private')"
check "good: token_info expires_at is about now + 3600" \
	test "$(ps_json "abs(j['expires_at'] - $now - 3600) <= 30" <"$T/info.json")" = True
# the key in the user keyring (/proc/keys also lists keys of the user's other keyrings that earlier
# tests left to expire or to be collected)
key_id=$(as_user pstest1 keyctl search @u user spotify:access_token 2>/dev/null)
expiry=$(as_user pstest1 cat /proc/keys 2>/dev/null | awk -v id="$(printf '%08x' "${key_id:-0}")" '$1 == id {print $4}')
check "good: the token key has a kernel timeout under an hour ($expiry)" \
	test "$expiry" = 59m -o "$expiry" = 58m
stats=$(ps_server_stats "$acc_URL")
check "good: one client_credentials request reached the server" \
	test "$(echo "$stats" | ps_json 'j["by_grant"].get("client_credentials")')" = 1
st=$(status | grep -E '^(sessions|expires_at|not_before|renewing) ' | tr '\n' ' ')
check "good: the keeper's status: one session, the token's expires_at, no window, no renewal ($st)" \
	test "$st" = "sessions 1 expires_at $(ps_json 'j["expires_at"]' <"$T/info.json") not_before 0 renewing 0 "
ask good_token token
check "good: op token as the user: the token held, no second request ($out)" \
	eval 'test "$rc" -eq 0 && [[ $out == "ok token still valid keyring=user "* ]] &&
	test "$(ps_server_stats "$acc_URL" | ps_json "j[\"token_requests\"]")" = "$(echo "$stats" | ps_json "j[\"token_requests\"]")"'

# a second login's --pam finds the keeper running; a new service (a new app token) and a
# refresh-now: the keeper renews, and the key is updated in place
kp=$(our_keepers)
start_keeper again "$SCOPES"
check "again: a second --pam finds the keeper and starts none ('$pam_out')" \
	eval 'test "$pam_rc" -eq 0 -a "$pam_out" = "ok the keeper runs" && one_line again && test "$(our_keepers)" = "$kp"'
service_start again "$SCOPES"
ask again refresh-now
check "again: refresh-now renews: the key holds the new service's token ($out)" \
	test "$rc" -eq 0 -a "$(read_key access_token)" = \
	"$(ps_server_stats "$acc_URL" | ps_json 'j["last_access_token"]')" -a "$(read_key access_token)" != "$issued"
count=$(as_user pstest1 cat /proc/keys 2>/dev/null | grep -c 'spotify:access_token')
check "again: still exactly one token key ($count)" test "$count" -eq 1

# the session's process ends (the keeper watches its pidfd): the keeper removes its socket and
# the keys, and ends
sock=$(keeper_sock)
kill "$holder"
wait "$holder" 2>/dev/null
check "end: the session's process ends: within 3 s the keeper is gone, its socket and the keys too" \
	wait_ms 3000 '[ -z "$(our_keepers)" ] && [ ! -e "$sock" ] && no_key'

# --- refusals by the accounts server

helper bad_secret "client_secret_file=$T/wrong-secret"
refused bad_secret 7 "(invalid_client: Invalid client secret): check client_id and the client secret file"
helper bad_client "client_id=nosuchclient"
refused bad_client 7 "invalid_client"

# --- faults: the server keeps the fault while its keeper lives (the keeper retries by itself after
# its backoff, and would otherwise store the token of its retry), then is healthy again. A failed
# request opens a backoff window in the keeper and in the service: each fault meets a keeper and a
# service of its own.

# fault NAME CODE TEXT [key=value...]
fault() {
	local name=$1 code=$2 text=$3
	shift 3
	ps_server_control "$acc_URL" "{\"fault\": \"$name\", \"fault_count\": null}" ||
		bail "cannot set fault $name"
	helper "$name" "$@"
	refused "$name" "$code" "$text"
	[ "$name" = rate_limit ] && inside_retry_after
	stop_keepers
	ps_server_control "$acc_URL" '{"fault": null}' || bail "cannot clear fault $name"
}

# inside_retry_after: right after the 429 with Retry-After: 7, whatever asks the keeper (a flood of
# refresh-now, a token) is answered 6 and no request reaches the server. (For client_credentials
# the system service holds the window for the host; the keeper's own backoff is shorter: see the
# diag.)
inside_retry_after() {
	local t429 r0 i codes="" nb
	t429=$(date +%s)
	r0=$(ps_server_stats "$acc_URL" | ps_json 'j["token_requests"]')
	nb=$(status not_before)
	for i in 1 2 3 4 5; do
		ask "rate_limit_flood$i" refresh-now
		codes="$codes$rc "
	done
	ask rate_limit_token token
	codes="$codes$rc"
	if [ $(($(date +%s) - t429)) -ge 6 ]; then
		skip "rate_limit: inside the Retry-After window nothing asks the server" \
			"the asks took $(($(date +%s) - t429)) s, past the window"
		return
	fi
	check "rate_limit: inside the 7 s Retry-After window 5 refresh-now and a token ask are answered 6 and no request reaches the server (codes: $codes; '$out')" \
		eval 'test "$codes" = "6 6 6 6 6 6" &&
		test "$(ps_server_stats "$acc_URL" | ps_json "j[\"token_requests\"]")" = "$r0"'
	diag "rate_limit: the keeper's own window (status not_before) ends $((${nb:-0} - t429)) s after the 429; the service holds the 7 s Retry-After"
}

fault hang 6 "accounts server 127.0.0.1:$acc_PORT did not answer within 2 s (timeout)" \
	timeout=2 connect_timeout=1
check "hang: the keeper answered within 4 s (took ${secs} s)" test "$secs" -le 4
fault slow_body 6 "answered too slowly: the response was not complete within 2 s (timeout): try again later or raise timeout" \
	timeout=2 connect_timeout=1
check "slow_body: the keeper answered within 4 s (took ${secs} s)" test "$secs" -le 4
fault status_500 6 "accounts server error (HTTP 500, server_error: Unexpected status: 500): try again later"
fault status_502 6 "accounts server error (HTTP 502): try again later"
fault status_503 6 "accounts server error (HTTP 503): try again later"
fault rate_limit 6 "accounts server is rate limiting (HTTP 429, API rate limit exceeded): retry after 7 s"
fault rate_limit_no_retry_after 6 "rate limiting (HTTP 429, API rate limit exceeded): try again later"
fault malformed_json 6 "token response is truncated JSON"
fault wrong_types 6 "token response access_token is an integer, not a string"
fault missing_fields 6 "token response has no access_token"
fault negative_expires 6 "token response expires_in is -5 s, less than 1"
fault huge_body 6 "response from 127.0.0.1:$acc_PORT larger than 64 KiB"
fault deep_nesting 6 "token response nests too deeply"
fault nul_bytes 6 "access_token has characters outside the RFC 6750 token alphabet"
fault nul_raw 6 "token response contains a NUL byte"
fault non_utf8 6 "token response is not valid UTF-8"
fault html_error 6 "token response is not valid JSON"
fault redirect 7 "answered with a redirect (HTTP 302): check token_url; redirects are not followed"
fault token_type_mac 6 "token_type is 'mac', not Bearer"
fault empty_token 6 "token response access_token is empty"

# a failed renewal is retried by the keeper itself after its backoff: once the server heals, the
# key comes without anyone asking. (A session counted on the service, as the module counts one,
# keeps the service from ending while it is idle.)
ps_server_control "$acc_URL" '{"fault": "status_500", "fault_count": null}' || bail "cannot set fault status_500"
stop_keepers
service_start retry
svc=$(sed -n 's/^service = //p' "$T/retry.svc.req")
svc_name=${svc##*/}
"$PYTHON" "$KCALL" "$svc" open "service=${svc_name%.sock}" "uid=$U1" "pid=$$" >"$T/retry.svc.ans"
grep -q -x 'status 0' "$T/retry.svc.ans" || diag "the service did not count the session: $(cat "$T/retry.svc.ans")"
start_keeper retry
ask retry token
ps_server_control "$acc_URL" '{"fault": null}' || bail "cannot clear fault status_500"
check "retry: the keeper answers 6, then its own retry after the backoff stores the token (within 8 s)" \
	eval 'test "$rc" -eq 6 && wait_ms 8000 "read_key access_token >/dev/null" &&
	test "$(read_key access_token)" = "$(ps_server_stats "$acc_URL" | ps_json "j[\"last_access_token\"]")"'
stop_keepers
clear_keys pstest1

helper healthy
check "after the faults the server works again ($out)" test "$rc" -eq 0
stop_keepers
clear_keys pstest1

# --- TLS

ps_start_server wrongname --cert "$T/tls/wrongname.pem" --key "$T/tls/wrongname.key"
helper wrongname "token_url=$wrongname_URL/api/token"
refused wrongname 6 "TLS certificate of 127.0.0.1:$wrongname_PORT does not match its name"
ps_start_server selfsigned --cert "$T/tls/selfsigned.pem" --key "$T/tls/selfsigned.key"
helper selfsigned "token_url=$selfsigned_URL/api/token"
refused selfsigned 6 "TLS certificate of 127.0.0.1:$selfsigned_PORT not trusted"
ps_start_server expired --cert "$T/tls/expired.pem" --key "$T/tls/expired.key"
helper expired "token_url=$expired_URL/api/token"
refused expired 6 "TLS certificate of 127.0.0.1:$expired_PORT has expired"
helper no_ca_file "ca_file="
refused no_ca_file 6 "not trusted"
grep -qF "set ca_file to the CA that signed it" "$T/no_ca_file.ans" &&
	ok "no_ca_file: the message says to set ca_file" || not_ok "no_ca_file: no advice ($out)"
helper bad_ca_file "ca_file=$T/no-such-ca.pem"
refused bad_ca_file 7 "cannot use ca_file $T/no-such-ca.pem"

# --- plain http: loopback only, refused before any connection elsewhere

ps_start_server plain --plain --client-file "$T/clients"
helper plain "token_url=http://127.0.0.1:$plain_PORT/api/token" "ca_file="
check "plain http to 127.0.0.1 works ($out)" \
	test "$rc" -eq 0 -a "$(read_key access_token)" = \
	"$(curl -sS "http://127.0.0.1:$plain_PORT/__stats" | ps_json 'j["last_access_token"]')"
stop_keepers
clear_keys pstest1

# far NAME URL TEXT: the system service refuses a URL before connecting: its start fails with
# "fail 7 TEXT". It runs in a network namespace of its own (when unshare works), so even a bug
# could not reach the network, and under strace, which proves it made no IP connect(2) at all.
# LeakSanitizer cannot run under ptrace, hence detect_leaks=0 for sanitizer builds.
far() {
	local name=$1 url=$2 text=$3 wrap=""
	ps_stop_services "$SERVICE_BIN"
	request open "token_url=$url" >"$T/$name.req"
	unshare --net true 2>/dev/null && wrap="unshare --net"
	if command -v strace >/dev/null 2>&1; then
		$wrap strace -f -qq -e trace=connect -o "$T/$name.strace" \
			env ASAN_OPTIONS=detect_leaks=0 \
			timeout 10 "$SERVICE_BIN" service <"$T/$name.req" >"$T/$name.out" 2>"$T/$name.err"
		rc=$?
	else
		$wrap timeout 10 "$SERVICE_BIN" service <"$T/$name.req" >"$T/$name.out" 2>"$T/$name.err"
		rc=$?
	fi
	out=$(cat "$T/$name.out")
	check "$name: the service refuses it: exit 7, 'fail 7 ...$text...' ($out)" \
		eval 'test "$rc" -eq 7 && grep -q "^fail 7 .*$text" "$T/$name.out"'
	if [ -f "$T/$name.strace" ]; then
		check "$name: no IP connect(2) was attempted" \
			sh -c '! grep -E "connect\(.*AF_INET" "$1"' sh "$T/$name.strace"
	else
		skip "$name: no IP connect(2) was attempted" "strace not found"
	fi
}
loopback_only="plain http:// is only allowed to a loopback address; use https://"
far far_http "http://192.0.2.1/api/token" "$loopback_only"
far far_name "http://localhost:$plain_PORT/api/token" "$loopback_only"
far far_userinfo "http://127.0.0.1@192.0.2.1/api/token" "not an absolute https:// URL with a host"

# --- proxy variables are ignored: a proxy that does not exist would make the request fail

stop_keepers
ps_stop_services "$SERVICE_BIN"
request open >"$T/proxy.req"
env https_proxy=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 \
	ALL_PROXY=http://127.0.0.1:9 all_proxy=http://127.0.0.1:9 NO_PROXY= no_proxy= \
	"$SERVICE_BIN" service <"$T/proxy.req" >"$T/proxy.svc.out" 2>&1 &
wait_ms 10000 "[ -s '$T/proxy.svc.out' ]"
start_keeper proxy
ask proxy token
check "proxy variables in the service's environment are ignored ($out)" \
	eval 'started proxy && test "$rc" -eq 0 && test -n "$(read_key access_token)"'
stop_keepers
clear_keys pstest1

# --- the process

# flow pkce with nothing enrolled: --pam (not interactive, so it may not enroll) starts the
# keeper, whose renewal finds no refresh token
stop_keepers
start_keeper pkce flow=pkce "client_id=hcc-pkce-$$"
ask pkce token
check "flow pkce, not enrolled: the keeper answers 1 (no token) and says to log in ($rc: $out)" \
	eval 'started pkce && test "$rc" -eq 1 && [[ $out == *"spotify-token login"* ]] && no_key'
stop_keepers
request open >"$T/root.req"
timeout 10 "$HELPER" --pam <"$T/root.req" >"$T/root.out" 2>"$T/root.err"
rc=$?
check "root: refused with exit 7 ($(cat "$T/root.out"))" \
	test "$rc" -eq 7 -a "$(cat "$T/root.out")" = "pam_spotify_helper: refusing to run as root"
printf 'pam_spotify-request 1\nop = open\n' >"$T/short.req"
as_user pstest1 timeout 10 "$HELPER" --pam <"$T/short.req" >"$T/short.out" 2>"$T/short.err"
rc=$?
check "truncated request: exit 7, one line ($(answer_of "$T/short.out"))" \
	eval 'test "$rc" -eq 7 && one_line short'
head -c 20000 /dev/zero | tr '\0' 'x' >"$T/big.req"
as_user pstest1 timeout 10 "$HELPER" --pam <"$T/big.req" >"$T/big.out" 2>"$T/big.err"
rc=$?
check "oversized request: exit 7, one line ($(answer_of "$T/big.out"))" \
	eval 'test "$rc" -eq 7 && one_line big'
check "--version prints the version" \
	sh -c '"$1" --version | grep -q "^pam_spotify_helper [0-9]"' sh "$HELPER"
as_user pstest1 "$HELPER" --bogus >/dev/null 2>&1
check "an unknown option is a usage error (exit 2)" test $? -eq 2

# --- the secret never leaks

check "the secret is in no helper output (stdout or stderr) and no keeper's answer" \
	sh -c '! cat "$1"/*.out "$1"/*.err "$1"/*.ans | grep -qF -- "$2"' sh "$T" "$SECRET"
check "the secret is in no server log" sh -c '! cat "$1"/*.log | grep -qF -- "$2"' sh "$T" "$SECRET"

done_testing
