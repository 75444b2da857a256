#!/bin/bash
# pkce.sh: user tokens against the fake accounts server: enrollment with spotify-token login
# (scripted browser to the loopback listener, and a pasted URL), access_denied, wrong state,
# the deadline; refresh at session open through real PAM (rotating and not), invalid_grant,
# a 503 during refresh, twenty concurrent logins, enrollment through the PAM conversation for
# pkce and authorization_code, and logout.
. "$top_srcdir/tests/lib.sh"

need_root
ps_need_install
ps_tmpdir
ps_lock_keyring
U=pstest1
ps_ensure_user $U
UHOME=$(getent passwd $U | cut -d: -f6)
STORE="$UHOME/.local/state/spotify-token"
ps_login_fixture CONF confclient pkceclient

conf() { # conf FILE FLOW CLIENT [extra lines...]
	local f=$1 flow=$2 client=$3
	shift 3
	ps_conf "$f" "flow = $flow" "client_id = $client" \
		"scopes = user-read-email playlist-read-private" "timeout = $((5 * PS_TIME_FACTOR))" "$@"
}
conf "$T/pkce.conf" pkce pkceclient
conf "$T/never.conf" pkce pkceclient "enroll = never"
conf "$T/code.conf" authorization_code confclient "client_secret_file = $T/secret"
for svc in pkce never code; do ps_pam_service "$T/pam.d" $svc "$T/$svc.conf"; done

stats() { ps_server_stats "$acc_URL" | ps_json "$1"; }
refreshes() { stats 'j["by_grant"].get("refresh_token", 0)'; }
user_key() { as_user $U keyctl search @u user "$1" 2>/dev/null; }
clear_keys() {
	local id
	for k in spotify:access_token spotify:token_info; do
		id=$(user_key $k) && [ -n "$id" ] && as_user $U keyctl unlink "$id" @u >/dev/null 2>&1
	done
	return 0
}
reader() { as_user $U "$PS_READER" "$@"; }
session() { # session SERVICE [-- CMD...]: sets OPEN
	"$DRIVER" "$T/pam.d" "$1" $U "${@:2}" >"$T/out" 2>&1
	OPEN=$(sed -n 's/^open=\([0-9]*\) .*/\1/p' "$T/out")
}
# login_start [ARGS...]: spotify-token login in the background, stdin from the FIFO $T/paste;
# waits for the authorize URL and sets URL and LOGIN_PID.
login_start() {
	rm -f "$T/paste" "$T/login.err"
	mkfifo -m 666 "$T/paste"
	as_user $U "$PS_READER" login --config="$T/pkce.conf" "$@" <"$T/paste" >"$T/login.out" 2>"$T/login.err" &
	LOGIN_PID=$!
	exec 8>"$T/paste" # hold the FIFO open: no EOF on the paste stream until we say so
	URL=""
	for _ in $(seq 100); do
		URL=$(grep -o 'https://[^ ]*' "$T/login.err" | head -1)
		[ -n "$URL" ] && break
		sleep 0.1
	done
}
login_wait() { # login_wait: LOGIN_RC
	exec 8>&-
	wait "$LOGIN_PID"
	LOGIN_RC=$?
}
# browse URL: what a browser does at the authorize endpoint: the redirect it gets back.
browse() { curl -s --cacert "$CA" -o /dev/null -w '%{redirect_url}' "$1"; }
# visit CURL-ARGS...: the user's browser at the loopback listener, which serves only its own uid.
visit() { as_user $U curl -s "$@" 2>/dev/null; }

# --- enrollment through the loopback listener
as_user $U rm -rf "$STORE"
clear_keys
login_start --timeout=20
expect "login prints the authorize URL with PKCE S256 and state" \
	'[[ "$URL" == "$acc_URL/authorize?client_id=pkceclient&response_type=code&redirect_uri=http%3A%2F%2F127.0.0.1%3A"*"&code_challenge_method=S256&code_challenge="* ]] && [[ "$URL" == *"&state="* ]]'
cb=$(browse "$URL")
visit -i "$cb" >"$T/hdr"
page=$(sed '1,/^\r$/d' "$T/hdr")
login_wait
expect "the browser lands on the listener: a page with Referrer-Policy: no-referrer" \
	'grep -qi "^Referrer-Policy: no-referrer" "$T/hdr" && [ -n "$page" ]'
expect "login exits 0 and says connected" '[ "$LOGIN_RC" = 0 ] && grep -q "connected to Spotify" "$T/login.err"'
expect "the access token is in the keyring at once" '[ "$(reader)" = "$(stats "j[\"last_access_token\"]")" ]'
expect "the refresh token is stored 0600 in a 0700 directory owned by the user" \
	'[ "$(stat -c %a:%U "$STORE")" = "700:$U" ] && [ "$(stat -c %a:%U "$STORE/pkceclient.refresh")" = "600:$U" ]'
expect "the stored refresh token is the one the server issued" \
	'[ "$(sed -n 2p "$STORE/pkceclient.refresh")" = "$(stats "j[\"last_refresh_token\"]")" ]'
expect "--status shows flow pkce and the granted scopes" \
	'reader --status | grep -q "flow: *pkce" && reader --status | grep -q "user-read-email"'

# --- session open refreshes from the store (Spotify today: no rotation)
clear_keys
before=$(refreshes)
old=$(cat "$STORE/pkceclient.refresh")
session pkce -- "$PS_READER"
expect "session open with a stored refresh token: PAM_SUCCESS, one refresh request" \
	'[ "$OPEN" = 0 ] && [ "$(refreshes)" = $((before + 1)) ]'
expect "the session's processes read the refreshed token" \
	'grep -qx "$(stats "j[\"last_access_token\"]")" "$T/out"'
expect "without rotation the stored refresh token is kept" '[ "$(cat "$STORE/pkceclient.refresh")" = "$old" ]'

# --- rotation: the new refresh token replaces the old one
ps_server_control "$acc_URL" '{"rotate_refresh": true}'
clear_keys
session pkce
expect "with rotation the stored refresh token is replaced by the new one" \
	'[ "$OPEN" = 0 ] && [ "$(sed -n 2p "$STORE/pkceclient.refresh")" = "$(stats "j[\"last_refresh_token\"]")" ] && [ "$(cat "$STORE/pkceclient.refresh")" != "$old" ]'
ps_server_control "$acc_URL" '{"rotate_refresh": false}'

# --- twenty concurrent logins of one user: one refresh, and every session gets the token
if [ "${PS_VALGRIND:-0}" = 1 ]; then
	# 20 helpers under valgrind at once need minutes of CPU, far past the session deadline; the
	# storm runs in the normal and the sanitizer passes.
	skip "20 concurrent logins: all 20 read a token" "valgrind pass: too slow for the deadline"
	skip "20 concurrent logins: one refresh request" "valgrind pass: too slow for the deadline"
else
	clear_keys
	before=$(refreshes)
	pids=""
	for i in $(seq 20); do
		# all stay open until all have read (SIGUSR1 ends the hold): the last close removes the keys
		PS_HOLD_OPEN=120 "$DRIVER" "$T/pam.d" pkce $U -- "$PS_READER" >"$T/storm.$i" 2>&1 &
		pids="$pids $!"
	done
	for t in $(seq 300); do # at most 30 s for all 20 to open and read
		[ "$(cat "$T"/storm.* 2>/dev/null | grep -c '^command=')" = 20 ] && break
		sleep 0.1
	done
	kill -USR1 $pids 2>/dev/null
	wait $pids # not a bare wait: the fake server is a background job too
	got=0
	for i in $(seq 20); do
		grep -q "^open=0 " "$T/storm.$i" && grep -q "^command=0" "$T/storm.$i" && got=$((got + 1))
	done
	expect "20 concurrent logins: all 20 read a token ($got did)" '[ "$got" = 20 ]'
	expect "20 concurrent logins: one refresh request (saw $(($(refreshes) - before)))" '[ "$(refreshes)" = $((before + 1)) ]'
fi

# --- a 503 during refresh: an error, and the store is untouched
clear_keys
old=$(cat "$STORE/pkceclient.refresh")
ps_server_control "$acc_URL" '{"fault": "status_503", "fault_count": 1}'
: >"$PS_SYSLOG_FILE"
session pkce
expect "503 during refresh: session error logged, no key" \
	'[ "$OPEN" = 14 ] && grep -q "HTTP 503" "$PS_SYSLOG_FILE" && [ -z "$(user_key spotify:access_token)" ]'
expect "503 during refresh: the store is untouched and not marked" \
	'[ "$(cat "$STORE/pkceclient.refresh")" = "$old" ] && [ ! -e "$STORE/pkceclient.reauth" ]'
session pkce
expect "after the 503 the next login refreshes fine" '[ "$OPEN" = 0 ]'

# --- invalid_grant: the store is marked, the reader exits 4
clear_keys
curl -s --cacert "$CA" -X POST -d '{}' "$acc_URL/__revoke" >/dev/null
: >"$PS_SYSLOG_FILE"
session pkce
expect "revoked refresh token: the module ignores the session and says to log in again" \
	'grep -q "invalid_grant.*run spotify-token login" "$PS_SYSLOG_FILE" && grep -q "Spotify: " "$T/out"'
expect "revoked refresh token: the store is marked, the token kept for inspection" \
	'[ -e "$STORE/pkceclient.reauth" ] && [ -e "$STORE/pkceclient.refresh" ]'
reader --config="$T/pkce.conf" >/dev/null 2>"$T/e4"
rc=$?
expect "spotify-token exits 4 and says run spotify-token login" '[ $rc = 4 ] && grep -q "run spotify-token login" "$T/e4"'
before=$(refreshes)
session pkce
expect "a marked store makes no further refresh requests" '[ "$(refreshes)" = "$before" ]'

# --- enrollment by pasting the redirected URL (ssh and headless users); clears the mark
login_start --timeout=20
cb=$(browse "$URL")
printf '%s\n' "$cb" >&8
login_wait
expect "pasted URL: login exits 0, the mark is gone" '[ "$LOGIN_RC" = 0 ] && [ ! -e "$STORE/pkceclient.reauth" ]'

# --- a wrong state on the listener gets an error page and the wait goes on
login_start --timeout=20
cb=$(browse "$URL")
code=$(visit -o /dev/null -w '%{http_code}' "${cb%%\?*}?code=forged&state=AAAAAAAAAAAAAAAAAAAAAA")
alive=no
kill -0 "$LOGIN_PID" 2>/dev/null && alive=yes
visit -o /dev/null "$cb"
login_wait
expect "wrong state: HTTP 400 and login keeps waiting, then the right one wins" \
	'[ "$code" = 400 ] && [ "$alive" = yes ] && [ "$LOGIN_RC" = 0 ]'

# --- access_denied: a clean failure, nothing stored
as_user $U "$PS_READER" logout --config="$T/pkce.conf" 2>"$T/logout.err"
rc=$?
expect "logout removes the refresh token and the keys" \
	'[ $rc = 0 ] && [ ! -e "$STORE/pkceclient.refresh" ] && [ -z "$(user_key spotify:access_token)" ]'
ps_server_control "$acc_URL" '{"authorize": "deny"}'
login_start --timeout=20
cb=$(browse "$URL")
visit -o /dev/null "$cb"
login_wait
expect "access_denied: login exits 4 with a clear message, nothing stored" \
	'[ "$LOGIN_RC" = 4 ] && grep -q "refused the authorization (access_denied" "$T/login.err" && [ ! -e "$STORE/pkceclient.refresh" ]'
ps_server_control "$acc_URL" '{"authorize": "approve"}'

# --- the deadline ends the wait
start=$(date +%s)
login_start --timeout=2
login_wait
expect "deadline: login gives up after 2 s with exit 4 and says so" \
	'[ "$LOGIN_RC" = 4 ] && [ $(($(date +%s) - start)) -lt 6 ] && grep -q "no authorization arrived within 2 s" "$T/login.err"'

# --- not enrolled, enroll = never: PAM_IGNORE with a hint
: >"$PS_SYSLOG_FILE"
session never
expect "not enrolled: the session is ignored with a hint to run spotify-token login" \
	'[ "$OPEN" = 0 ] && grep -q "not connected to Spotify yet: run spotify-token login" "$PS_SYSLOG_FILE"'

# --- enrollment through the PAM conversation (pkce): the URL shown, the redirect pasted back
export PS_CONV_ANSWER="url=\$(grep -o 'https://[^ ]*' | head -1); curl -s --cacert $CA -o /dev/null -w '%{redirect_url}' \"\$url\""
clear_keys
session pkce -- "$PS_READER"
cp "$T/out" "$T/out.conv-pkce"
expect "PAM conversation enrollment (pkce): session open gets a token for the user" \
	'[ "$OPEN" = 0 ] && grep -q "^conv: .*https://" "$T/out" && grep -qx "$(stats "j[\"last_access_token\"]")" "$T/out" && [ -e "$STORE/pkceclient.refresh" ]'

# --- authorization_code: the secret stays with the module; enrollment and refresh at login
clear_keys
session code -- "$PS_READER"
expect "authorization_code: enrolled through the conversation at session open" \
	'[ "$OPEN" = 0 ] && [ -e "$STORE/confclient.refresh" ] && grep -qx "$(stats "j[\"last_access_token\"]")" "$T/out"'
unset PS_CONV_ANSWER
clear_keys
before=$(refreshes)
session code -- "$PS_READER"
expect "authorization_code: the next login refreshes with the client secret (refreshes $before -> $(refreshes))" \
	'[ "$OPEN" = 0 ] && [ "$(refreshes)" = $((before + 1)) ] && grep -qx "$(stats "j[\"last_access_token\"]")" "$T/out"'
as_user $U "$PS_READER" login --config="$T/code.conf" 2>"$T/e7" </dev/null
rc=$?
expect "spotify-token login with authorization_code says it happens at the login prompt (exit 7)" \
	'[ $rc = 7 ] && grep -q "connect your account at the login prompt" "$T/e7"'

# --- authorization_code after a refusal: the login that meets it goes on without a token and
# without a prompt; the next interactive login asks again (enroll = prompt), no logout needed
curl -s --cacert "$CA" -X POST -d '{}' "$acc_URL/__revoke" >/dev/null
clear_keys
: >"$PS_SYSLOG_FILE"
session code
expect "authorization_code, refused refresh token: store marked, no prompt, no token, the log says to log in at a console" \
	'[ "$OPEN" = 0 ] && [ -e "$STORE/confclient.reauth" ] && ! grep -q "^conv prompt" "$T/out" && grep -q "invalid_grant): log in at a console" "$PS_SYSLOG_FILE" && [ -z "$(user_key spotify:access_token)" ]'
# ... and a keeper stopped by a refusal renews again after that interactive login (6 s tokens,
# renewed at half their life while a session is held open)
ps_server_control "$acc_URL" '{"expires_in": 6}'
old=$(cat "$STORE/confclient.refresh")
export PS_CONV_ANSWER="url=\$(grep -o 'https://[^ ]*' | head -1); curl -s --cacert $CA -o /dev/null -w '%{redirect_url}' \"\$url\""
open_held code $U acwake
drv=$HELD_PID
expect "authorization_code, marked store: the next interactive login connects again (mark gone, new refresh token)" \
	'[ "$(held_open acwake)" = 0 ] && [ ! -e "$STORE/confclient.reauth" ] && [ "$(cat "$STORE/confclient.refresh")" != "$old" ]'
curl -s --cacert "$CA" -X POST -d '{}' "$acc_URL/__revoke" >/dev/null
expect "authorization_code: the keeper's renewal is refused and marks the store" \
	'wait_ms $((10000 * PS_TIME_FACTOR)) "[ -e \"$STORE/confclient.reauth\" ]"'
sleep 4 # a stopped keeper makes no request: no refresh grant from here on without the wake-up
r0=$(refreshes)
session code -- "$PS_READER"
unset PS_CONV_ANSWER
wait_ms $((10000 * PS_TIME_FACTOR)) "[ \$(refreshes) -ge $((r0 + 2)) ]"
r1=$(refreshes)
expect "authorization_code: after connecting again at a login the keeper renews again (refresh grants $r0 -> $r1 in $WAITED ms)" \
	'[ "$OPEN" = 0 ] && [ ! -e "$STORE/confclient.reauth" ] && [ "$r1" -ge $((r0 + 2)) ]'
close_held "$drv"
ps_server_control "$acc_URL" '{"expires_in": 3600}'

# --- a keeper stopped by a refused refresh token renews again after spotify-token login (login
# wakes it): 6 s tokens, renewed at half their life while a session is held open
ps_server_control "$acc_URL" '{"expires_in": 6}'
clear_keys
login_start --timeout=20
visit -o /dev/null "$(browse "$URL")"
login_wait
open_held pkce $U wake
drv=$HELD_PID
expect "wake: login and the held session succeed" '[ "$LOGIN_RC" = 0 ] && [ "$(held_open wake)" = 0 ]'
curl -s --cacert "$CA" -X POST -d '{}' "$acc_URL/__revoke" >/dev/null
expect "wake: the keeper's renewal is refused and marks the store" \
	'wait_ms $((10000 * PS_TIME_FACTOR)) "[ -e \"$STORE/pkceclient.reauth\" ]"'
sleep 4 # a stopped keeper makes no request: no refresh grant from here on without the wake-up
r0=$(refreshes)
login_start --timeout=20
visit -o /dev/null "$(browse "$URL")"
login_wait
wait_ms $((10000 * PS_TIME_FACTOR)) "[ \$(refreshes) -ge $((r0 + 2)) ]"
r1=$(refreshes)
expect "wake: after spotify-token login the keeper renews again (refresh grants $r0 -> $r1 in $WAITED ms)" \
	'[ "$LOGIN_RC" = 0 ] && [ "$r1" -ge $((r0 + 2)) ]'
close_held "$drv"
ps_server_control "$acc_URL" '{"expires_in": 3600}'


# --- no secret, code, verifier or refresh token in any log or output
expect "no client secret or refresh token in the logs or outputs" \
	'! grep -q -F -e "$SECRET" -e "$(stats "j[\"last_refresh_token\"]")" "$PS_SYSLOG_FILE" "$T"/*.log "$T/out" "$T"/login.* "$T"/storm.*'

clear_keys
as_user $U rm -rf "$STORE"
[ "$t_failed" = 0 ] || { diag "conversation output:"; sed 's/^/# /' "$T/out.conv-pkce"; sed 's/^/# /' "$PS_SYSLOG_FILE" | tail -5; }
done_testing
