#!/bin/bash
# peer.sh: every flow of pam_spotify against an independent OAuth 2.0 server, oidc-provider
# (tests/peer/oidc_server.mjs; the npm package pinned in tests/peer/package-lock.json), on
# 127.0.0.1 over TLS with the test CA. Three instances: refresh-token rotation on, off, and one
# that denies every authorization. Headless consent: tests/peer/browser.py follows the redirects.
# Its endpoints are /auth and /token (not Spotify's /authorize and /api/token): the configuration
# names them with authorize_url and token_url.
#
#   client_credentials  PAM session, confidential client; the provider's introspection accepts
#                       the token the user reads with spotify-token
#   pkce                spotify-token login through the loopback listener, then PAM sessions
#                       refresh from the store (rotation on: the stored token changes; off: not);
#                       login by pasting the redirected URL; logout; a revoked grant (reuse of a
#                       rotated refresh token) asks for re-authorization
#   authorization_code  enrollment through the PAM conversation (the user pastes the URL), then a
#                       session refreshes with the client secret
#   access_denied       login exits 4 and stores nothing
#
# Needs root (test user pstest3), an installed build (make install), node and
# `npm ci --prefix tests/peer`; skips otherwise.
. "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib.sh" || exit 99

need_root
[ -f "$PS_SECUREDIR/pam_spotify.so" ] && [ -x "$PS_HELPER" ] && [ -x "$PS_READER" ] ||
	skip_all "pam_spotify is not installed under its configured prefix: run make install first"
for tool in node keyctl setpriv curl timeout mkfifo "$PYTHON"; do
	command -v "$tool" >/dev/null 2>&1 || skip_all "$tool not found"
done
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)' ||
	skip_all "oidc-provider needs Node.js 18 or later (found $(node --version))"
PEER="$top_srcdir/tests/peer"
[ -f "$PEER/node_modules/oidc-provider/package.json" ] ||
	skip_all "oidc-provider is not installed: run npm ci --prefix tests/peer"
DRIVER="$top_builddir/tests/pam/pam_session"
[ -x "$DRIVER" ] || skip_all "$DRIVER is not built (make check builds it)"

ps_tmpdir
ps_lock_keyring
ps_ensure_user pstest3
ps_certs
U=pstest3
UHOME=$(getent passwd $U | cut -d: -f6)
STATE="$UHOME/.local/state/spotify-token"
rm -rf "$STATE"
ps_on_exit "rm -rf '$STATE'"
export PS_SYSLOG_FILE="$T/syslog"
: >"$PS_SYSLOG_FILE"
unset PS_CONV_ANSWER PS_HOLD_OPEN
CA="$T/tls/ca.pem"
SCOPES="user-read-email playlist-read-private"
PUBLIC=peer-public
CONFIDENTIAL=peer-confidential

# The confidential client's secret: only in files (the provider's client list, the root-owned
# secret file, curl's config), never in an argv or environment.
SECRET="PEER-SECRET-$$-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
umask 077
cat >"$T/clients.json" <<EOF
[
  {
    "client_id": "$PUBLIC",
    "application_type": "native",
    "token_endpoint_auth_method": "none",
    "grant_types": ["authorization_code", "refresh_token"],
    "response_types": ["code"],
    "redirect_uris": ["http://127.0.0.1/callback", "http://[::1]/callback"]
  },
  {
    "client_id": "$CONFIDENTIAL",
    "client_secret": "$SECRET",
    "application_type": "native",
    "token_endpoint_auth_method": "client_secret_basic",
    "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
    "response_types": ["code"],
    "redirect_uris": ["http://127.0.0.1/callback", "http://[::1]/callback"]
  }
]
EOF
printf '%s\n' "$SECRET" >"$T/secret"
printf 'user = "%s:%s"\n' "$CONFIDENTIAL" "$SECRET" >"$T/curl-auth"
umask 022

# peer_start NAME [oidc_server.mjs options...]: start an instance; sets ${NAME}_URL. Stopped at exit.
peer_start() {
	local name=$1 pf="$T/$1.port" pid i=0
	shift
	rm -f "$pf"
	node "$PEER/oidc_server.mjs" --cert "$T/tls/server.pem" --key "$T/tls/server.key" \
		--clients "$T/clients.json" --port-file "$pf" --log "$T/$name.log" "$@" \
		>>"$T/$name.out" 2>&1 </dev/null &
	pid=$!
	ps_on_exit "kill $pid 2>/dev/null; wait $pid 2>/dev/null"
	while [ ! -s "$pf" ]; do
		i=$((i + 1))
		[ $i -gt 200 ] && bail "oidc-provider $name did not start within 20 s (see $T/$name.out)"
		kill -0 $pid 2>/dev/null || bail "oidc-provider $name exited: $(tail -n 3 "$T/$name.out")"
		sleep 0.1
	done
	eval "${name}_URL=https://127.0.0.1:$(cat "$pf") ${name}_PORT=$(cat "$pf") ${name}_PID=$pid"
}
peer_start rot --rotate on
peer_start norot --rotate off
peer_start deny --deny
diag "oidc-provider $(node -p 'require(process.argv[1]).version' \
	"$PEER/node_modules/oidc-provider/package.json"): rotating $rot_URL, non-rotating $norot_URL, denying $deny_URL"

# introspect URL TOKEN: the provider's introspection answer (JSON) for TOKEN, asked as the
# confidential client. The token goes on stdin, not in curl's argv.
introspect() {
	printf '%s' "$2" | curl -sS --max-time 10 --cacert "$CA" -K "$T/curl-auth" \
		--data-urlencode "token@-" "$1/token/introspection"
}
# token_ok URL TOKEN CLIENT_ID: the provider says TOKEN is active, for CLIENT_ID, with $SCOPES.
token_ok() {
	[ -n "$2" ] && introspect "$1" "$2" | "$PYTHON" -c '
import json, sys
j = json.load(sys.stdin)
ok = j.get("active") is True and j.get("client_id") == sys.argv[1] and \
	set(j.get("scope", "").split()) == set(sys.argv[2].split())
sys.exit(0 if ok else 1)' "$3" "$SCOPES"
}
# peer_count NAME PATTERN: how many lines of instance NAME's log match PATTERN.
peer_count() { grep -c -- "$2" "$T/$1.log"; }

# write_conf FILE FLOW CLIENT_ID PEER_URL [extra lines...]: a configuration for one flow.
write_conf() {
	local f=$1 flow=$2 cid=$3 url=$4
	shift 4
	{
		echo "# peer test: $flow against oidc-provider"
		echo "flow = $flow"
		echo "client_id = $cid"
		[ "$flow" = pkce ] || echo "client_secret_file = $T/secret"
		echo "scopes = $SCOPES"
		echo "token_url = $url/token"
		if [ "$flow" != client_credentials ]; then
			echo "authorize_url = $url/auth"
			echo "redirect_uri = http://127.0.0.1/callback"
		fi
		echo "ca_file = $CA"
		echo "keyring = user"
		case " $* " in *" timeout = "*) ;; *) echo "timeout = 15" ;; esac
		case " $* " in *" connect_timeout = "*) ;; *) echo "connect_timeout = 3" ;; esac
		printf '%s\n' "$@"
	} >"$f"
	chmod 644 "$f"
}

# service NAME CONFIG: a PAM service in the private confdir, as in the documentation.
mkdir -p "$T/pam.d"
printf '%s required pam_deny.so\n' auth account password session >"$T/pam.d/other"
service() {
	printf 'session optional pam_keyinit.so force revoke\nsession required %s config=%s\n' \
		"$PS_SECUREDIR/pam_spotify.so" "$2" >"$T/pam.d/$1"
}

# session SERVICE: one open/close for $U whose command prints the token it reads as TOKEN=...;
# sets OPEN, CMD and TOKEN (empty when there was none).
session() {
	timeout 60 "$DRIVER" "$T/pam.d" "$1" $U -- sh -c "echo TOKEN=\$('$PS_READER')" \
		>"$T/out" 2>"$T/err"
	OPEN=$(sed -n 's/^open=\([0-9]*\) .*/\1/p' "$T/out")
	CMD=$(sed -n 's/^command=//p' "$T/out")
	TOKEN=$(sed -n 's/^TOKEN=//p' "$T/out")
	cat "$T/out" "$T/err" >>"$T/sessions.out"
}

# user_key NAME: the serial of a key in $U's user keyring, or nothing.
user_key() { as_user $U keyctl search @u user "$1" 2>/dev/null; }
clear_keys() {
	local k id
	for k in spotify:access_token spotify:token_info; do
		id=$(user_key "$k") && [ -n "$id" ] && as_user $U keyctl unlink "$id" @u >/dev/null 2>&1
	done
	return 0
}
user_token() { as_user $U "$PS_READER" 2>/dev/null; }
no_key() { [ -z "$(user_key spotify:access_token)" ] && [ -z "$(user_key spotify:token_info)" ]; }
# stored CLIENT_ID: the refresh-token file of CLIENT_ID is there, a regular file of $U, mode 0600,
# in a directory of $U with mode 0700.
stored() {
	local f="$STATE/$1.refresh"
	[ -f "$f" ] && [ ! -L "$f" ] && [ "$(stat -c '%a %U' "$f")" = "600 $U" ] &&
		[ "$(stat -c '%a %U' "$STATE")" = "700 $U" ]
}
# refresh_token CLIENT_ID: the refresh token in the store (format: header line, token line).
refresh_token() { sed -n 2p "$STATE/$1.refresh" 2>/dev/null; }

# login_start CONFIG: `spotify-token login` as $U in the background (within 40 s), its stdin a
# fifo that the test holds open on fd 7 (a paste goes there), output in $T/login.{out,err}.
login_start() {
	rm -f "$T/paste"
	mkfifo -m 600 "$T/paste"
	exec 7<>"$T/paste"
	as_user $U timeout 40 "$PS_READER" login --config="$1" --timeout=30 \
		<"$T/paste" >"$T/login.out" 2>"$T/login.err" &
	LOGIN_PID=$!
}
# login_url: print the authorize URL (the first https:// URL login printed), within 15 s.
login_url() {
	local i url=""
	for i in $(seq 150); do
		url=$(cat "$T/login.err" "$T/login.out" 2>/dev/null | grep -o 'https://[^[:space:]"<>]*' | head -n 1)
		[ -n "$url" ] && break
		kill -0 $LOGIN_PID 2>/dev/null || break
		sleep 0.1
	done
	[ -n "$url" ] || return 1
	sleep 0.2 # the line may still be being written: read it again
	cat "$T/login.err" "$T/login.out" | grep -o 'https://[^[:space:]"<>]*' | head -n 1
}
# login_wait: wait (at most 45 s) for login to end; sets LOGIN_RC; closes the paste fifo.
login_wait() {
	local i=0
	while kill -0 $LOGIN_PID 2>/dev/null && [ $i -lt 450 ]; do
		i=$((i + 1))
		sleep 0.1
	done
	kill $LOGIN_PID 2>/dev/null
	wait $LOGIN_PID
	LOGIN_RC=$?
	exec 7>&-
	cat "$T/login.out" "$T/login.err" >>"$T/logins.out"
}
# browse URL [--paste]: the scripted browser (stdout: the listener's status, or the pasted URL),
# run as the user: the listener serves no other uid.
browse() {
	as_user $U timeout 30 "$PYTHON" "$PEER/browser.py" --cacert "$CA" "${@:2}" "$1" 2>>"$T/browser.err"
}

# --- client_credentials: a PAM session with the confidential client
write_conf "$T/cc.conf" client_credentials $CONFIDENTIAL "$rot_URL"
service cc "$T/cc.conf"
clear_keys
session cc
expect "client_credentials: the session opens with PAM_SUCCESS and the user reads a token" \
	'[ "$OPEN" = 0 ] && [ "$CMD" = 0 ] && [ -n "$TOKEN" ]'
expect "client_credentials: the provider's introspection accepts the token (client, scopes)" \
	'token_ok "$rot_URL" "$TOKEN" $CONFIDENTIAL'
expect "client_credentials: the token came from the configured token_url by client_credentials" \
	'[ "$(peer_count rot "grant.success grant_type=client_credentials client=$CONFIDENTIAL")" = 1 ]'
cc1=$TOKEN
session cc
# The token is the host's app token: after the first session's close the system service ends and
# the next login gets a new one, unless it came before the service noticed (then the same one).
expect "client_credentials: a second session gets a token ($([ "$TOKEN" != "$cc1" ] && echo a new one || echo the same)), also accepted" \
	'[ "$OPEN" = 0 ] && [ -n "$TOKEN" ] && token_ok "$rot_URL" "$TOKEN" $CONFIDENTIAL'
expect "client_credentials: closing the session removed the keys (the keeper, at its last session: within 3 s)" 'wait_ms 3000 no_key'

# The enrollment flows need spotify-token login/logout (flow = pkce support).
write_conf "$T/pkce-rot.conf" pkce $PUBLIC "$rot_URL"
as_user $U "$PS_READER" logout --config="$T/pkce-rot.conf" >"$T/probe.out" 2>&1
probe=$?
if [ $probe -eq 2 ]; then
	diag "$(head -n 1 "$T/probe.out")"
	for what in "pkce login through the listener, rotation on" "pkce refresh at session open, rotation on" \
		"pkce login through the listener, rotation off" "pkce refresh at session open, rotation off" \
		"pkce login by paste" "logout" "revoked grant" "authorization_code through the PAM conversation" \
		"access_denied"; do
		skip "$what" "the installed spotify-token has no login/logout (flow = pkce support)"
	done
	expect "the secret is in no log or output" \
		'! grep -q -F -e "$SECRET" "$PS_SYSLOG_FILE" "$T"/*.log "$T"/*.out "$T/err"'
	done_testing
	exit
fi
expect "logout with nothing stored succeeds" '[ $probe -eq 0 ]'

# pkce_enroll_listener NAME URL: login through the loopback listener against instance NAME, then
# sessions refresh from the store; ROTATES=yes|no says whether the stored token must change.
pkce_enroll_listener() {
	local name=$1 url=$2 conf="$T/pkce-$1.conf" auth st r1 r2 t1 t2 n
	local what="pkce, rotation $([ "$ROTATES" = yes ] && echo on || echo off)"
	write_conf "$conf" pkce $PUBLIC "$url"
	service "pkce-$name" "$conf"
	as_user $U "$PS_READER" logout --config="$conf" >/dev/null 2>&1
	clear_keys
	login_start "$conf"
	auth=$(login_url)
	expect "$what: login prints the authorize URL of the configured authorize_url, with S256 PKCE" \
		'case $auth in "$url/auth?"*code_challenge_method=S256*) true ;; *) false ;; esac'
	st=""
	[ -n "$auth" ] && st=$(browse "$auth")
	expect "$what: the browser's redirect reaches login's listener (HTTP ${st:-none})" '[ "$st" = 200 ]'
	login_wait
	t1=$(user_token)
	expect "$what: login exits 0 (exit $LOGIN_RC)" '[ $LOGIN_RC = 0 ]'
	expect "$what: the refresh token is stored, 0600 in a 0700 directory of the user" 'stored $PUBLIC'
	expect "$what: the user's spotify-token prints a token the provider accepts" \
		'token_ok "$url" "$t1" $PUBLIC'
	expect "$what: spotify-token --status shows the flow and the scope" \
		'as_user $U "$PS_READER" --status >"$T/status" 2>&1 && grep -q pkce "$T/status" &&
		grep -q "user-read-email" "$T/status" && ! grep -q -F -- "$t1" "$T/status"'
	r1=$(refresh_token $PUBLIC)
	for n in 1 2; do
		n0=$(peer_count "$name" "grant.success grant_type=refresh_token client=$PUBLIC")
		clear_keys
		session "pkce-$name"
		t2=$TOKEN
		r2=$(refresh_token $PUBLIC)
		expect "$what: session $n opens with PAM_SUCCESS and refreshes: a new token, accepted" \
			'[ "$OPEN" = 0 ] && [ -n "$t2" ] && [ "$t2" != "$t1" ] && token_ok "$url" "$t2" $PUBLIC &&
			[ "$(peer_count "$name" "grant.success grant_type=refresh_token client=$PUBLIC")" = $((n0 + 1)) ]'
		if [ "$ROTATES" = yes ]; then
			expect "$what: session $n stored the rotated refresh token" \
				'[ -n "$r2" ] && [ "$r2" != "$r1" ] && stored $PUBLIC'
		else
			expect "$what: session $n kept the refresh token" '[ -n "$r2" ] && [ "$r2" = "$r1" ] && stored $PUBLIC'
		fi
		[ $n = 1 ] && R_OLD=$r1
		t1=$t2 r1=$r2
	done
	expect "$what: closing the session removed the keys (the keeper, at its last session: within 3 s)" 'wait_ms 3000 no_key'
}
ROTATES=yes pkce_enroll_listener rot "$rot_URL"

# A rotated refresh token used again: oidc-provider revokes the whole grant (RFC 9700 4.14.2).
# The next session's refresh gets invalid_grant: re-authorization needed, exit 4, no token.
printf '%s' "$R_OLD" | curl -sS --max-time 10 --cacert "$CA" -d grant_type=refresh_token \
	-d client_id=$PUBLIC --data-urlencode "refresh_token@-" "$rot_URL/token" >"$T/replay.json"
expect "revoked grant: the provider refuses the replayed refresh token" 'grep -q invalid_grant "$T/replay.json"'
clear_keys
session pkce-rot
# (PAM_IGNORE or PAM_SESSION_ERR from the module; with pam_keyinit's success the stack may say 0)
expect "revoked grant: the session gets no token (open=$OPEN)" '[ -n "$OPEN" ] && [ -z "$TOKEN" ] && no_key'
as_user $U "$PS_READER" refresh --config="$T/pkce-rot.conf" >/dev/null 2>"$T/reauth.err"
rc=$?
expect "revoked grant: spotify-token refresh exits 4 (re-authorization needed; exit $rc)" '[ $rc = 4 ]'
expect "revoked grant: the message says to run spotify-token login" 'grep -q "spotify-token login" "$T/reauth.err"'

ROTATES=no pkce_enroll_listener norot "$norot_URL"

# --- pkce by paste: the user pastes the redirected URL on login's stdin
as_user $U "$PS_READER" logout --config="$T/pkce-norot.conf" >/dev/null 2>&1
rc=$?
expect "logout exits 0, removes the stored refresh token and the keys" \
	'[ $rc = 0 ] && [ ! -e "$STATE/$PUBLIC.refresh" ] && no_key'
as_user $U "$PS_READER" >/dev/null 2>&1
rc=$?
expect "after logout spotify-token finds no token (exit 1; got $rc)" '[ $rc = 1 ]'
login_start "$T/pkce-norot.conf"
auth=$(login_url)
pasted=""
[ -n "$auth" ] && pasted=$(browse "$auth" --paste)
expect "paste: the browser ends at the loopback redirect_uri with a code" \
	'case $pasted in http://127.0.0.1:*/callback\?*code=*|http://127.0.0.1/callback\?*code=*) true ;; *) false ;; esac'
printf '%s\n' "$pasted" >&7
login_wait
expect "paste: login exits 0 (exit $LOGIN_RC), refresh token stored" '[ $LOGIN_RC = 0 ] && stored $PUBLIC'
expect "paste: the user's token is accepted by the provider" 'token_ok "$norot_URL" "$(user_token)" $PUBLIC'
clear_keys

# --- authorization_code: enrollment through the PAM conversation, then a refresh with the secret
if grep -q PS_CONV_ANSWER "$DRIVER"; then
	write_conf "$T/ac.conf" authorization_code $CONFIDENTIAL "$rot_URL" "enroll = prompt"
	service ac "$T/ac.conf"
	cat >"$T/answer.sh" <<EOF
#!/bin/sh
# the user reads the URL on the screen (stdin), opens it, and pastes where the browser ended up
url=\$(grep -o 'https://[^[:space:]"<>]*' | head -n 1)
[ -n "\$url" ] || { echo "answer.sh: no https URL on the screen" >&2; exit 1; }
exec timeout 30 "$PYTHON" "$PEER/browser.py" --cacert "$CA" --paste "\$url"
EOF
	rm -f "$STATE/$CONFIDENTIAL.refresh" "$STATE/$CONFIDENTIAL.reauth"
	clear_keys
	PS_CONV_ANSWER="sh $T/answer.sh" session ac
	expect "authorization_code: the conversation enrollment opens the session with a token (open=$OPEN)" \
		'[ "$OPEN" = 0 ] && [ -n "$TOKEN" ] && token_ok "$rot_URL" "$TOKEN" $CONFIDENTIAL'
	expect "authorization_code: the refresh token is stored for the user" 'stored $CONFIDENTIAL'
	expect "authorization_code: the code was exchanged at the configured token_url" \
		'[ "$(peer_count rot "grant.success grant_type=authorization_code client=$CONFIDENTIAL")" = 1 ]'
	ac1=$TOKEN
	r1=$(refresh_token $CONFIDENTIAL)
	clear_keys
	session ac # no PS_CONV_ANSWER: a prompt would fail
	expect "authorization_code: a second session refreshes without a prompt: new token, accepted" \
		'[ "$OPEN" = 0 ] && [ -n "$TOKEN" ] && [ "$TOKEN" != "$ac1" ] && token_ok "$rot_URL" "$TOKEN" $CONFIDENTIAL &&
		[ "$(peer_count rot "grant.success grant_type=refresh_token client=$CONFIDENTIAL")" = 1 ]'
	expect "authorization_code: the rotated refresh token was stored" \
		'r2=$(refresh_token $CONFIDENTIAL) && [ -n "$r2" ] && [ "$r2" != "$r1" ]'
	clear_keys
else
	skip "authorization_code through the PAM conversation" "$DRIVER has no PS_CONV_ANSWER: rebuild it"
fi

# --- a stalled accounts server: the login's deadline bounds the login, never the keeper's request
# Instance "stall" (rotation on). Each case enrolls afresh (a grant of its own), leaves no keeper
# and no key, so that the next login must refresh, and stalls that refresh with timeout = 3:
#   before  the server is stopped (SIGSTOP) before the login; the request waits in its connection
#   after   the server stops itself once it has rotated and saved the new refresh token, before it
#           answers (POST /__stall_next_refresh): a request cut off now loses the rotated token
# then 0, 2 or 5 more logins queue behind the stall. Every login returns within timeout; after
# SIGCONT the keyring gets a token, the next login refreshes without re-enrolling, and the grant
# holds exactly one live refresh token, the stored one (oidc_server.mjs's /__refresh_tokens,
# which counts every refresh token the provider saved for the grant).
peer_start stall --rotate on
ps_on_exit "kill -CONT $stall_PID 2>/dev/null" # runs before peer_start's kill: a stopped node ignores it
STALL_TIMEOUT=$((3 * PS_TIME_FACTOR))
write_conf "$T/stall.conf" pkce $PUBLIC "$stall_URL" "timeout = $STALL_TIMEOUT" "connect_timeout = 3"
service stall "$T/stall.conf"
KEEPER_PAT='pam_spotify_helper keeper'
stall_keepers() { pgrep -u $U -f "$KEEPER_PAT"; }
# rt_state TOKEN: the provider's count for TOKEN's grant (JSON, see oidc_server.mjs); the token
# goes in the body, on stdin.
rt_state() {
	printf '%s' "$1" | curl -sS --max-time 10 --cacert "$CA" --data-urlencode "token@-" \
		"$stall_URL/__refresh_tokens"
}
# one_live TOKEN: TOKEN is live and the only live refresh token of its grant, which is not revoked.
one_live() {
	[ -n "$1" ] && rt_state "$1" | "$PYTHON" -c '
import json, sys
j = json.load(sys.stdin)
sys.exit(0 if j.get("active") is True and j.get("grant_active") == 1 and not j.get("grant_revoked") else 1)'
}
proc_state() { sed -n 's/^.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null; }
# in_flight: a connection to the stopped server whose request bytes wait in its receive queue
in_flight() { ss -Htn state established "( sport = :$stall_PORT )" 2>/dev/null | awk '$1 > 0 { f = 1 } END { exit !f }'; }
open_ms() { sed -n 's/^open=[0-9]* ms=\([0-9]*\).*/\1/p' "$T/held.$1"; }
stall_cleanup() {
	local p
	kill -CONT "$stall_PID" 2>/dev/null
	for p in $STALL_DRIVERS; do kill -9 "$p" 2>/dev/null; done
	for p in $(stall_keepers); do kill -9 "$p" 2>/dev/null; done
	STALL_DRIVERS=""
}
STALL_DRIVERS=""
ps_on_exit stall_cleanup
# stall_enroll: a fresh grant: logout, login through the listener; no keeper and no key after.
stall_enroll() {
	local auth st
	as_user $U "$PS_READER" logout --config="$T/stall.conf" >/dev/null 2>&1
	login_start "$T/stall.conf"
	auth=$(login_url)
	st=""
	[ -n "$auth" ] && st=$(browse "$auth")
	login_wait
	stall_cleanup
	wait_ms 3000 '[ -z "$(stall_keepers)" ]'
	clear_keys
	[ "$st" = 200 ] && [ "$LOGIN_RC" = 0 ] && stored $PUBLIC
}
# stall MODE QUEUED
stall() {
	local mode=$1 queued=$2 what i slow="" rt0 rt1 n nopen t0 waited
	what="stalled server ($([ "$mode" = before ] && echo "stopped before the login" || echo "stopped once it rotated"), $queued more logins queued)"
	if ! stall_enroll; then
		not_ok "$what: enrollment (login exit $LOGIN_RC)"
		return
	fi
	rt0=$(refresh_token $PUBLIC)
	if [ "$mode" = before ]; then
		kill -STOP "$stall_PID"
	else
		curl -sS --max-time 10 --cacert "$CA" -X POST "$stall_URL/__stall_next_refresh" >/dev/null
	fi
	PS_HOLD_OPEN=300 "$DRIVER" "$T/pam.d" stall $U -- true >"$T/held.stall0" 2>&1 &
	STALL_DRIVERS="$STALL_DRIVERS $!"
	t0=$(now_ms)
	if [ "$mode" = before ]; then
		wait_ms $((STALL_TIMEOUT * 1000)) in_flight
	else
		wait_ms $((STALL_TIMEOUT * 1000)) '[ "$(proc_state "$stall_PID")" = T ]'
	fi
	waited=$?
	expect "$what: the login's refresh reached the server within ${STALL_TIMEOUT} s ($(
		[ "$mode" = before ] && echo "its request waits in the stopped server's receive queue" ||
		echo "the server rotated the refresh token and stopped before answering"), ${WAITED} ms)" \
		'[ $waited = 0 ]'
	for i in $(seq "$queued"); do
		PS_HOLD_OPEN=300 "$DRIVER" "$T/pam.d" stall $U -- true >"$T/held.stall$i" 2>&1 &
		STALL_DRIVERS="$STALL_DRIVERS $!"
	done
	n_opened() { local i n=0; for i in $(seq 0 "$queued"); do grep -q '^open=' "$T/held.stall$i" && n=$((n + 1)); done; echo $n; }
	wait_ms $(((STALL_TIMEOUT + 5) * 1000)) '[ "$(n_opened)" = $((queued + 1)) ]'
	nopen=$(n_opened)
	for i in $(seq 0 "$queued"); do
		n=$(open_ms "stall$i")
		[ -n "$n" ] && [ "$n" -le $((STALL_TIMEOUT * 1000 + 1500)) ] || slow="$slow $i:${n:-none}"
	done
	expect "$what: all $((queued + 1)) logins returned, each within timeout = $STALL_TIMEOUT s + 1.5 s (too slow or hung:${slow:- none}; first at $(open_ms stall0) ms)" \
		'[ "$nopen" = $((queued + 1)) ] && [ -z "$slow" ]'
	kill -CONT "$stall_PID"
	expect "$what: after SIGCONT the keyring gets a token within 20 s" 'wait_ms 20000 "[ -n \"\$(user_token)\" ]"'
	diag "$what: waited $WAITED ms after SIGCONT for the keyring; the provider says $(rt_state "$(refresh_token $PUBLIC)")"
	expect "$what: the store holds the rotated refresh token, the only live one of the grant" \
		'wait_ms 5000 "rt1=\$(refresh_token $PUBLIC); [ \"\$rt1\" != \"$rt0\" ] && one_live \"\$rt1\""'
	expect "$what: the refreshed token is accepted by the provider" 'token_ok "$stall_URL" "$(user_token)" $PUBLIC'
	close_held $STALL_DRIVERS 2>/dev/null
	STALL_DRIVERS=""
	expect "$what: after the sessions close no keeper is left and no key (within 5 s)" \
		'wait_ms 5000 "[ -z \"\$(stall_keepers)\" ] && no_key"'
	stall_cleanup
	clear_keys
	session stall
	expect "$what: the next login refreshes without re-enrolling (open=$OPEN, a token accepted by the provider)" \
		'[ "$OPEN" = 0 ] && [ -n "$TOKEN" ] && token_ok "$stall_URL" "$TOKEN" $PUBLIC'
	expect "$what: and the grant still holds exactly one live refresh token, the stored one ($(rt_state "$(refresh_token $PUBLIC)"))" \
		'one_live "$(refresh_token $PUBLIC)"'
	wait_ms 5000 '[ -z "$(stall_keepers)" ]'
}
for q in 0 2 5; do
	stall before $q
	stall after $q
done
clear_keys

# --- access_denied: login exits 4 and stores nothing
write_conf "$T/deny.conf" pkce $PUBLIC "$deny_URL"
as_user $U "$PS_READER" logout --config="$T/deny.conf" >/dev/null 2>&1
clear_keys
login_start "$T/deny.conf"
auth=$(login_url)
st=""
[ -n "$auth" ] && st=$(browse "$auth")
login_wait
expect "access_denied: the browser delivered the error to the listener (HTTP ${st:-none})" '[ -n "$st" ]'
expect "access_denied: login exits 4 (exit $LOGIN_RC)" '[ $LOGIN_RC = 4 ]'
expect "access_denied: login says the authorization was denied" 'grep -qi "denied" "$T/login.err"'
expect "access_denied: nothing stored, no key" '[ ! -e "$STATE/$PUBLIC.refresh" ] && no_key'
expect "access_denied: the provider saw no token request" '[ "$(peer_count deny "POST /token")" = 0 ]'

# --- nothing secret leaks into logs or outputs
expect "the secret is in no log line, provider log or output" \
	'! grep -q -F -e "$SECRET" "$PS_SYSLOG_FILE" "$T"/*.log "$T"/*.out "$T/browser.err" "$T/err"'
tokens=()
for t in "$cc1" "$R_OLD" "$TOKEN" "$(refresh_token $PUBLIC)" "$(refresh_token $CONFIDENTIAL)"; do
	[ -n "$t" ] && tokens+=(-e "$t")
done
expect "no access or refresh token appears in the module's log (${#tokens[@]} checked)" \
	'[ ${#tokens[@]} -gt 0 ] && ! grep -q -F "${tokens[@]}" "$PS_SYSLOG_FILE"'

done_testing
