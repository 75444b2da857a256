#!/bin/bash
# session.sh: real PAM sessions (pam_start_confdir, pam_keyinit + pam_spotify) for real users,
# against the fake accounts server over TLS with a test CA. Needs root and an installed build
# (make install), because the module runs the helper from the path fixed at configure time.
. "$top_srcdir/tests/lib.sh"

need_root
ps_need_install

ps_tmpdir
ps_lock_keyring
ps_ensure_user pstest1
ps_ensure_user pstest2
SECRET="SENTINEL-SECRET-$$-7f3a9c"
# the servers learn the secret from a file, so that a sentinel found in any argv is ours
printf 'testclient:%s\n' "$SECRET" >"$T/clients"
ps_start_server acc --client-file "$T/clients"
ps_start_server bad --client-file "$T/clients"
DRIVER="$top_builddir/tests/pam/pam_session"
export PS_SYSLOG_FILE="$T/syslog"
: >"$PS_SYSLOG_FILE"

printf '%s\n' "$SECRET" >"$T/secret"
chmod 600 "$T/secret"

# write_conf FILE [extra lines...]: a config for $ACCOUNTS (default: the good server) plus extra
# lines; SECRET_FILE overrides the secret file.
write_conf() {
	local f=$1
	shift
	ps_conf "$f" "# test configuration" "client_id = testclient" \
		"client_secret_file = ${SECRET_FILE:-$T/secret}" "accounts_url = ${ACCOUNTS:-$acc_URL}" \
		"ca_file = $T/tls/ca.pem" "$@"
}
write_conf "$T/good.conf" "timeout = 3" "connect_timeout = 2"

# service NAME CONF [module arguments...]: a PAM service in the private confdir.
service() { ps_pam_service "$T/pam.d" "$@"; }
service basic "$T/good.conf"

# session SERVICE USER [-- COMMAND...]: run one open/close; sets OPEN, MS, CMD from the driver.
session() {
	"$DRIVER" "$T/pam.d" "$@" >"$T/out" 2>"$T/err"
	OPEN=$(sed -n 's/^open=\([0-9]*\) .*/\1/p' "$T/out")
	MS=$(sed -n 's/^open=[0-9]* ms=\([0-9]*\).*/\1/p' "$T/out")
	CMD=$(sed -n 's/^command=//p' "$T/out")
}

log_has() { grep -q -- "$1" "$PS_SYSLOG_FILE"; }
last_token() { ps_server_stats "$acc_URL" | ps_json 'j["last_access_token"]'; }
helper_gone() { ! pgrep -u "$1" -f pam_spotify_helper >/dev/null; }

# --- a login puts the token in the user's keyring; the user reads it with spotify-token
clear_keys pstest1
session basic pstest1 -- sh -c "$PS_READER; $PS_READER --status; $PS_READER --header"
expect "session opens with PAM_SUCCESS" '[ "$OPEN" = 0 ]'
tok=$(last_token)
expect "spotify-token run as the user prints the token the server issued" \
	'[ -n "$tok" ] && [ "$(sed -n 2p "$T/out")" = "$tok" ]'
expect "spotify-token --status names the flow and does not print the token" \
	'grep -q client_credentials "$T/out" && [ "$(grep -c -F -- "$tok" "$T/out")" = 2 ]'
expect "spotify-token --header prints an Authorization header" \
	'grep -qx "Authorization: Bearer $tok" "$T/out"'
expect "the user's command in the session exits 0" '[ "$CMD" = 0 ]'
expect "the module logged one line for the open" \
	'[ "$(grep -c "user pstest1: open: ok" "$PS_SYSLOG_FILE")" = 1 ]'
expect "closing the session removed the keys (the keeper's last session: within 3 s)" \
	'wait_ms 3000 "no_keys pstest1"'
expect "no helper process is left behind: the keeper ends with its last session (within 3 s)" \
	'wait_ms 3000 "helper_gone pstest1"'

# --- another user cannot read the first user's key
service keep "$T/good.conf" remove_on_close=no
session keep pstest1
wait_ms 3000 'helper_gone pstest1'
id1=$(user_key pstest1 spotify:access_token)
expect "with remove_on_close=no the key stays after close, once the keeper has ended" \
	'helper_gone pstest1 && [ -n "$id1" ]'
expect "the key's permissions are 3f0b0000 and it belongs to the user" \
	'[ "$(as_user pstest1 keyctl rdescribe "$id1")" = "user;$(id -u pstest1);$(id -g pstest1);3f0b0000;spotify:access_token" ]'
expect "a second user cannot read the first user's key" '! as_user pstest2 keyctl pipe "$id1" >/dev/null 2>&1'
as_user pstest2 "$PS_READER" >"$T/o2" 2>"$T/e2"
rc2=$?
expect "the second user's spotify-token finds no token (exit 1)" '[ $rc2 -eq 1 ] && [ ! -s "$T/o2" ]'
expect "a same-UID process outside the session still reads the token" \
	'[ "$(as_user pstest1 "$PS_READER")" = "$(last_token)" ]'
clear_keys pstest1

# --- keyring = session: the token lives in the session keyring that pam_keyinit made
service sess "$T/good.conf" keyring=session
session sess pstest1 -- "$PS_READER"
expect "keyring=session: the session's processes read the token" \
	'[ "$OPEN" = 0 ] && [ "$CMD" = 0 ] && [ "$(sed -n 2p "$T/out")" = "$(last_token)" ]'
expect "keyring=session: close succeeds after pam_keyinit revoked the session keyring" \
	'grep -q "^close=0 " "$T/out"'
expect "keyring=session: nothing is left in the user keyring" '[ -z "$(user_key pstest1 spotify:access_token)" ]'

# --- a wrong secret: session error, logged, no key
printf 'wrong-secret\n' >"$T/wrong"
chmod 600 "$T/wrong"
SECRET_FILE="$T/wrong" write_conf "$T/wrong.conf"
service wrong "$T/wrong.conf"
session wrong pstest1
expect "bad secret: PAM_SESSION_ERR" '[ "$OPEN" = 14 ]'
expect "bad secret: the log names invalid_client and what to check" \
	'log_has "user pstest1: open: .*invalid_client.*client_id and the client secret file"'
expect "bad secret: no key" '[ -z "$(user_key pstest1 spotify:access_token)" ]'

# --- the server hangs: the login returns within timeout + 1 s; the keeper's renewal goes on until
# the service's request times out, and the keeper then ends (its session closed)
ACCOUNTS=$bad_URL write_conf "$T/hang.conf" "timeout = 2" "connect_timeout = 1"
service hang "$T/hang.conf"
ps_server_control "$bad_URL" '{"fault": "hang"}'
session hang pstest1
expect "hanging server: open returns within timeout + 1 s (took ${MS} ms)" \
	'[ "$OPEN" = 14 ] && [ "$MS" -lt 3000 ]'
expect "hanging server: the log says the server did not answer within the timeout" \
	'log_has "user pstest1: open: .*did not answer within 2 s"'
expect "hanging server: no helper process left once the request timed out (within 5 s)" \
	'wait_ms 5000 "helper_gone pstest1"'

# --- nowait returns at once, once the keeper is told; the keeper's renewal fails (the server
# hangs) and it ends with the session
ps_stop_services
service nowait "$T/hang.conf" nowait
: >"$PS_SYSLOG_FILE"
session nowait pstest1
expect "nowait: open returns at once (took ${MS} ms)" '[ -n "$MS" ] && [ "$MS" -lt 1000 ]'
expect "nowait: the log says the keeper was told" 'log_has "user pstest1: open: ok the keeper was told"'
expect "nowait: no helper process left once the renewal gave up (within 6 s)" \
	'wait_ms 6000 "helper_gone pstest1"'
ps_server_control "$bad_URL" '{"fault": null}'

# --- an insecure secret file is refused before anything runs
for kind in group-readable world-readable user-owned symlink fifo missing; do
	f="$T/secret-$kind"
	rm -f "$f"
	case $kind in
	group-readable) cp "$T/secret" "$f"; chmod 640 "$f" ;;
	world-readable) cp "$T/secret" "$f"; chmod 604 "$f" ;;
	user-owned) cp "$T/secret" "$f"; chmod 600 "$f"; chown pstest1 "$f" ;;
	symlink) ln -s "$T/secret" "$f" ;;
	fifo) mkfifo -m 600 "$f" ;;
	missing) ;;
	esac
	SECRET_FILE="$f" write_conf "$T/s.conf"
	service insecure "$T/s.conf"
	: >"$PS_SYSLOG_FILE"
	session insecure pstest1
	expect "secret file $kind: refused with a log line naming the file" \
		'[ "$OPEN" = 14 ] && log_has "client secret file $f" && [ -z "$(user_key pstest1 spotify:access_token)" ]'
done

# --- every server fault: a clear error, no key, no hang. A failed request holds the system
# service's next one back a while (backoff, service.sh): each fault meets a service of its own.
service faulty "$T/hang.conf"
for spec in "status_500:HTTP 500" "status_503:HTTP 503" "rate_limit:429" \
	"malformed_json:JSON" "wrong_types:access_token" "huge_body:64 KiB" \
	"redirect:redirect" "missing_fields:access_token" "html_error:JSON" \
	"negative_expires:expires_in" "token_type_mac:token_type" "empty_token:access_token"; do
	fault=${spec%%:*} want=${spec#*:}
	ps_stop_services
	ps_server_control "$bad_URL" "{\"fault\": \"$fault\"}"
	: >"$PS_SYSLOG_FILE"
	session faulty pstest1
	expect "fault $fault: session error within the timeout, log mentions '$want', no key" \
		'[ "$OPEN" = 14 ] && [ "$MS" -lt 3000 ] && log_has "open: .*$want" &&
		[ -z "$(user_key pstest1 spotify:access_token)" ]'
done
ps_server_control "$bad_URL" '{"fault": null}'

# --- a certificate the CA did not sign for this name
ps_start_server wrongcert --client-file "$T/clients" --cert "$T/tls/wrongname.pem" --key "$T/tls/wrongname.key"
ACCOUNTS=$wrongcert_URL write_conf "$T/wc.conf" "timeout = 3" "connect_timeout = 2"
service wc "$T/wc.conf"
: >"$PS_SYSLOG_FILE"
session wc pstest1
expect "wrong certificate name: session error naming the TLS problem" \
	'[ "$OPEN" = 14 ] && log_has "open: .*certificate"'

# --- configuration errors name the file and line
printf 'client_id = testclient\nflow = implicit\n' >"$T/implicit.conf"
service implicit "$T/implicit.conf"
: >"$PS_SYSLOG_FILE"
session implicit pstest1
expect "flow = implicit: refused, log names file:line and says to use pkce" \
	'[ "$OPEN" = 14 ] && log_has "$T/implicit.conf:2: .*use flow = pkce"'

# --- root gets nothing (the helper never runs as root)
: >"$PS_SYSLOG_FILE"
session basic root
expect "root: the module ignores the session and logs why" 'log_has "root gets no Spotify token"'

# --- the secret never shows in argv, environment or logs; the token never in logs
ps_server_control "$bad_URL" '{"fault": "slow_body"}'
"$DRIVER" "$T/pam.d" faulty pstest1 >"$T/out-sentinel" 2>&1 &
drv=$!
sleep 1
leak=""
for p in /proc/[0-9]*; do
	for f in cmdline environ; do
		if tr '\0' '\n' <"$p/$f" 2>/dev/null | grep -q -F "$SECRET"; then leak="$leak $p/$f"; fi
	done
done
wait $drv
ps_server_control "$bad_URL" '{"fault": null}'
expect "the secret is in no process's argv or environment during a login (${leak:-none})" '[ -z "$leak" ]'
session basic pstest1
expect "the secret and the token appear in no log line or driver output" \
	'! grep -q -F -e "$SECRET" -e "$(last_token)" "$PS_SYSLOG_FILE" "$T/out" "$T/err" "$T/out-sentinel" "$T/acc.log" "$T/bad.log"'

done_testing
