#!/bin/bash
# helper_client_credentials.sh: the client credentials path without PAM. The system service
# (pam_spotify_helper service, started by hand as the module starts it: as root, its configuration
# on stdin) obtains the app token; pam_spotify_helper --pam, run as a test user with a hand-written
# request naming that service, copies it into the user's keyring with the contract's permissions.
# Every server fault, bad certificate and forbidden URL gives a non-zero documented exit code, one
# clear line and no key; the secret never leaks. Needs root (creates pstest1 and switches to it).
. "$top_srcdir/tests/lib.sh"

need_root
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
if [ "${PS_VALGRIND:-0}" = 1 ]; then # a copy under valgrind
	mkdir "$T/bin"
	cp "$HELPER" "$T/bin/pam_spotify_helper"
	chmod 755 "$T/bin" "$T/bin/pam_spotify_helper"
	HELPER="$T/bin/pam_spotify_helper"
	ps_valgrind_wrap "$HELPER"
fi
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

# request OP [key=value...]: a request on stdout. Defaults: the good server, its CA, the right
# secret file, timeout 5 s, the service of those settings; arguments override or add keys (key=
# with no value drops the key).
request() {
	local op=$1 kv k v
	shift
	declare -A kv_map=([flow]=client_credentials [client_id]=$CLIENT [token_url]=$TOKEN_URL
		[keyring]=user [timeout]=5 [connect_timeout]=2 [ca_file]=$CA
		[client_secret_file]=$T/secret [app_uid]=$PS_APP_UID)
	for kv in "$@"; do
		kv_map[${kv%%=*}]=${kv#*=}
	done
	kv_map[service]=$PS_RUNDIR/$(ps_service_name "${kv_map[client_id]}" "${kv_map[token_url]}" \
		"${kv_map[scopes]-}" "${kv_map[client_secret_file]}").sock
	echo "pam_spotify-request 1"
	echo "op = $op"
	for k in flow client_id scopes token_url keyring timeout connect_timeout ca_file \
		client_secret_file app_uid service; do
		v=${kv_map[$k]-}
		[ -n "$v" ] && echo "$k = $v"
	done
	echo "end"
}

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

# helper NAME OP [key=value...]: start the service for that request (op open), then run the
# helper as pstest1 on it. Sets rc, out (the stdout) and secs (wall time); stdout and stderr are
# kept in $T/NAME.out and $T/NAME.err.
helper() {
	local name=$1 op=$2 t0
	[ "$op" = open ] && service_start "$name" "${@:3}"
	shift
	request "$@" >"$T/$name.req"
	t0=$(date +%s%N)
	as_user pstest1 timeout 30 "$HELPER" --pam <"$T/$name.req" >"$T/$name.out" 2>"$T/$name.err"
	rc=$?
	secs=$((($(date +%s%N) - t0) / 1000000000))
	out=$(answer_of "$T/$name.out")
}
# forget_services: stop the services this test started and remove their sockets and locks (make
# distcheck runs it with the built helper and checks that nothing is left under its prefix)
forget_services() {
	local f p
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

# expect NAME CODE TEXT: a failure with exit CODE, one line containing TEXT, and no key stored.
expect() {
	local name=$1 code=$2 text=$3
	if [ "$rc" -eq "$code" ] && one_line "$name" && grep -qF -- "$text" "$T/$name.out" &&
		no_key; then
		ok "$name: exit $code, '$out'"
	else
		not_ok "$name: exit $rc (want $code), '$out' (want '$text')"
		diag "stderr: $(cat "$T/$name.err")"
		read_key access_token >/dev/null && diag "a key was stored"
	fi
}

clear_keys() {
	helper clear close
	[ "$rc" -eq 0 ] || bail "op close failed: $out"
}

# --- the good path

clear_keys
helper good open "scopes=user-read-email playlist-read-private"
check "good: the service started as the module starts it ($svc_status)" test "$svc_status" = ready
check "good: exit 0 and one line 'ok expires_in=N keyring=user app token' ($out)" \
	eval 'test "$rc" -eq 0 && echo "$out" | grep -qE "^ok expires_in=(3600|359[0-9]) keyring=user app token$"'
check "good: nothing on stderr, one line on stdout" one_line good
issued=$(ps_server_stats "$acc_URL" | ps_json 'j["last_access_token"]')
check "good: the key holds exactly the token the server issued" \
	test -n "$issued" -a "$(read_key access_token)" = "$issued"
check "good: the token is not on the helper's stdout" \
	sh -c '! grep -qF -- "$1" "$2"' sh "$issued" "$T/good.out"
desc=$(as_user pstest1 keyctl rdescribe %user:spotify:access_token 2>/dev/null)
check "good: token key is type user, owned by pstest1, perm 3f0b0000 ($desc)" \
	test "$desc" = "user;$(id -u pstest1);$(id -g pstest1);3f0b0000;spotify:access_token"
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

helper again open
check "again: a second open updates the key in place ($out)" \
	test "$rc" -eq 0 -a "$(read_key access_token)" = \
	"$(ps_server_stats "$acc_URL" | ps_json 'j["last_access_token"]')"
count=$(as_user pstest1 cat /proc/keys 2>/dev/null | grep -c 'spotify:access_token')
check "again: still exactly one token key ($count)" test "$count" -eq 1

helper close close
check "close: exit 0, 'ok removed', keys gone ($out)" \
	eval 'test "$rc" -eq 0 -a "$out" = "ok removed" && no_key'
helper close2 close
check "close: removing absent keys is fine ($out)" test "$rc" -eq 0 -a "$out" = "ok removed"

# --- refusals by the accounts server

helper bad_secret open "client_secret_file=$T/wrong-secret"
expect bad_secret 7 "(invalid_client: Invalid client secret): check client_id and the client secret file"
helper bad_client open "client_id=nosuchclient"
expect bad_client 7 "invalid_client"

# --- faults: each gets the fault once, then the server is healthy again

# fault NAME CODE TEXT [key=value...]
fault() {
	local name=$1 code=$2 text=$3
	shift 3
	ps_server_control "$acc_URL" "{\"fault\": \"$name\", \"fault_count\": 1}" ||
		bail "cannot set fault $name"
	helper "$name" open "$@"
	expect "$name" "$code" "$text"
}

fault hang 6 "accounts server 127.0.0.1:$acc_PORT did not answer within 2 s (timeout)" \
	timeout=2 connect_timeout=1
check "hang: the helper gave up within 4 s (took ${secs} s)" test "$secs" -le 4
fault slow_body 6 "answered too slowly: the response was not complete within 2 s (timeout): try again later or raise timeout" \
	timeout=2 connect_timeout=1
check "slow_body: the helper gave up within 4 s (took ${secs} s)" test "$secs" -le 4
fault status_500 6 "accounts server error (HTTP 500, server_error: Unexpected status: 500): try again later"
fault status_502 6 "accounts server error (HTTP 502): try again later"
fault status_503 6 "accounts server error (HTTP 503): try again later"
fault rate_limit 6 "accounts server is rate limiting (HTTP 429, API rate limit exceeded): retry after 7 s"
fault rate_limit_no_retry_after 6 "rate limiting (HTTP 429, API rate limit exceeded): try again later"
fault malformed_json 6 "token response is truncated JSON"
fault wrong_types 6 "token response access_token is an integer, not a string"
fault missing_fields 6 "token response has no access_token"
fault negative_expires 6 "token response expires_in is -5 s, outside 1..604800"
fault absurd_expires 6 "token response expires_in is 99999999999 s, outside 1..604800"
fault huge_body 6 "response from 127.0.0.1:$acc_PORT larger than 64 KiB"
fault deep_nesting 6 "token response nests too deeply"
fault nul_bytes 6 "access_token has characters outside the RFC 6750 token alphabet"
fault nul_raw 6 "token response contains a NUL byte"
fault non_utf8 6 "token response is not valid UTF-8"
fault html_error 6 "token response is not valid JSON"
fault redirect 7 "answered with a redirect (HTTP 302): check token_url; redirects are not followed"
fault token_type_mac 6 "token_type is 'mac', not Bearer"
fault empty_token 6 "token response access_token is empty"

helper healthy open
check "after the faults the server works again ($out)" test "$rc" -eq 0
clear_keys

# --- TLS

ps_start_server wrongname --cert "$T/tls/wrongname.pem" --key "$T/tls/wrongname.key"
helper wrongname open "token_url=$wrongname_URL/api/token"
expect wrongname 6 "TLS certificate of 127.0.0.1:$wrongname_PORT does not match its name"
ps_start_server selfsigned --cert "$T/tls/selfsigned.pem" --key "$T/tls/selfsigned.key"
helper selfsigned open "token_url=$selfsigned_URL/api/token"
expect selfsigned 6 "TLS certificate of 127.0.0.1:$selfsigned_PORT not trusted"
ps_start_server expired --cert "$T/tls/expired.pem" --key "$T/tls/expired.key"
helper expired open "token_url=$expired_URL/api/token"
expect expired 6 "TLS certificate of 127.0.0.1:$expired_PORT has expired"
helper no_ca_file open "ca_file="
expect no_ca_file 6 "not trusted"
grep -qF "set ca_file to the CA that signed it" "$T/no_ca_file.out" &&
	ok "no_ca_file: the message says to set ca_file" || not_ok "no_ca_file: no advice ($out)"
helper bad_ca_file open "ca_file=$T/no-such-ca.pem"
expect bad_ca_file 7 "cannot use ca_file $T/no-such-ca.pem"

# --- plain http: loopback only, refused before any connection elsewhere

ps_start_server plain --plain --client-file "$T/clients"
helper plain open "token_url=http://127.0.0.1:$plain_PORT/api/token" "ca_file="
check "plain http to 127.0.0.1 works ($out)" \
	test "$rc" -eq 0 -a "$(read_key access_token)" = \
	"$(curl -sS "http://127.0.0.1:$plain_PORT/__stats" | ps_json 'j["last_access_token"]')"
clear_keys

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

ps_stop_services "$SERVICE_BIN"
request open >"$T/proxy.req"
env https_proxy=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 \
	ALL_PROXY=http://127.0.0.1:9 all_proxy=http://127.0.0.1:9 NO_PROXY= no_proxy= \
	"$SERVICE_BIN" service <"$T/proxy.req" >"$T/proxy.svc.out" 2>&1 &
wait_ms 10000 "[ -s '$T/proxy.svc.out' ]"
as_user pstest1 timeout 30 "$HELPER" --pam <"$T/proxy.req" >"$T/proxy.out" 2>"$T/proxy.err"
rc=$?
check "proxy variables in the service's environment are ignored ($(answer_of "$T/proxy.out"))" \
	eval 'test "$rc" -eq 0 && one_line proxy'
clear_keys

# --- the process

helper pkce open flow=pkce
check "flow pkce: refused with a non-zero exit and one line ($rc: $out)" \
	eval 'test "$rc" -ne 0 && one_line pkce && no_key'
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

check "the secret is in no helper output (stdout or stderr)" \
	sh -c '! cat "$1"/*.out "$1"/*.err | grep -qF -- "$2"' sh "$T" "$SECRET"
check "the secret is in no server log" sh -c '! cat "$1"/*.log | grep -qF -- "$2"' sh "$T" "$SECRET"

done_testing
