#!/bin/bash
# attack_signal.sh: a user flooding their own keeper with SIGUSR1 ("renew now", what
# spotify-token refresh sends) cannot make it hit the accounts server more: inside the window a
# 429 with Retry-After: 60 opened, 20 signals make no token request (pkce, and authorization_code,
# whose keeper holds the client secret, so one user could get the host's app rate limited), and
# spotify-token refresh says the keeper is inside the window instead of waiting; after a
# successful renewal, 20 signals cost one request at once and the next no sooner than 10 s later
# (PS_LOOP_POKE_GAP_S, helper/keeper_loop.h). The attacker is the user themselves. Needs root and
# an installed build (see lifetime.sh). Takes about 45 s.
#
# Proving that no request came takes an observation window: each check waits for a request with
# a 3 s deadline after the last signal, and passes when none came (a request fails it at once).
. "$top_srcdir/tests/lib.sh"

need_root
[ -f "$PS_SECUREDIR/pam_spotify.so" ] && [ -x "$PS_HELPER" ] && [ -x "$PS_READER" ] ||
	skip_all "pam_spotify is not installed under its configured prefix: run make install first"
ps_tmpdir
ps_lock_keyring
U=pstest1
ps_ensure_user $U
STORE="$(getent passwd $U | cut -d: -f6)/.local/state/spotify-token"
SECRET="SENTINEL-SIGNAL-SECRET-$$"
printf 'pkceclient:unused-%s\nconfclient:%s\n' "$$" "$SECRET" >"$T/clients"
ps_start_server acc --client-file "$T/clients"
CA="$T/tls/ca.pem"
printf '%s\n' "$SECRET" >"$T/secret"
chmod 600 "$T/secret"
DRIVER="$top_builddir/tests/pam/pam_session"
export PS_SYSLOG_FILE="$T/syslog"
: >"$PS_SYSLOG_FILE"
KEEPER_PAT='pam_spotify_helper keeper'

conf() { # conf NAME FLOW CLIENT [extra lines...]: $T/NAME.conf and the PAM service NAME
	local name=$1 flow=$2 client=$3
	shift 3
	{
		echo "flow = $flow"
		echo "client_id = $client"
		echo "accounts_url = $acc_URL"
		echo "ca_file = $CA"
		echo "scopes = user-read-email"
		echo "timeout = $((5 * PS_TIME_FACTOR))"
		echo "connect_timeout = 2"
		echo "enroll = never"
		printf '%s\n' "$@"
	} >"$T/$name.conf"
	chmod 644 "$T/$name.conf"
	printf 'session optional pam_keyinit.so force revoke\nsession required %s config=%s\n' \
		"$PS_SECUREDIR/pam_spotify.so" "$T/$name.conf" >"$T/pam.d/$name"
}
mkdir -p "$T/pam.d"
printf '%s required pam_deny.so\n' auth account password session >"$T/pam.d/other"
# 6 s tokens renewed 3 s before expiry: the keeper's first renewal comes 3 s after the login
conf pkce pkce pkceclient "refresh_margin = 3"
conf code authorization_code confclient "client_secret_file = $T/secret" "refresh_margin = 3"
# 60 s tokens and refresh_margin 300: every renewal is a request (none lives 300 s), the
# keeper's own comes at half the token's life (30 s), after this test's checks
conf pkce60 pkce pkceclient "refresh_margin = 300"

stats() { ps_server_stats "$acc_URL" | ps_json "$1"; }
requests() { stats 'j["token_requests"]'; }
keepers() { pgrep -u $U -f "$KEEPER_PAT"; }
nkeepers() { keepers | wc -l; }
# rate_limited SINCE: the server answered a token request with the 429 after Unix time SINCE.
rate_limited() {
	[ "$(stats "sum(1 for t, f in j['token_times'] if t >= $1 and f == 'rate_limit')")" -ge 1 ]
}
# flood PID: as the user, 20 SIGUSR1 to PID, 0.1 s apart (about 2 s).
flood() {
	as_user_q $U sh -c 'for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
		kill -USR1 "$1" || exit 1; sleep 0.1; done' sh "$1"
}
# enroll CLIENT PUBLIC: a refresh token minted by the fake server, stored as a login would.
enroll() {
	local rt
	rt=$(curl -sS --fail --cacert "$CA" -H 'Content-Type: application/json' \
		--data "{\"client_id\": \"$1\", \"scope\": \"user-read-email\", \"public\": $2}" \
		"$acc_URL/__refresh_token" | ps_json 'j["refresh_token"]')
	printf 'pam_spotify-refresh 1\n%s\n' "$rt" | as_user_q $U sh -c '
		umask 077
		d="$HOME/.local/state/spotify-token"
		mkdir -p "$d" && chmod 700 "$d" && rm -f "$d/$1.reauth" &&
		cat >"$d/$1.refresh.new" && mv "$d/$1.refresh.new" "$d/$1.refresh"' sh "$1"
}
attack_cleanup() {
	local p
	for p in $DRIVERS; do
		grep -q pam_session "/proc/$p/cmdline" 2>/dev/null && kill -9 "$p" 2>/dev/null
	done
	for p in $(keepers); do kill -9 "$p" 2>/dev/null; done
	clear_keys $U
	as_user_q $U rm -rf "$STORE"
}
ps_on_exit attack_cleanup
attack_cleanup

# ==== 1. after a successful renewal: 20 signals, one request at once, the next 10 s later
ps_server_control "$acc_URL" '{"expires_in": 60}'
enroll pkceclient true
open_held pkce60 $U ok60
drv=$HELD_PID
wait_ms 3000 '[ "$(nkeepers)" = 1 ]'
kp=$(keepers)
expect "after a success: the login refreshed and one keeper runs (pid $kp)" \
	'[ "$(held_open ok60)" = 0 ] && [ "$(nkeepers)" = 1 ]'
r0=$(requests)
flood "$kp"
wait_ms 3000 "[ \$(requests) -gt $((r0 + 1)) ]"
n=$(($(requests) - r0))
expect "after a success: 20 SIGUSR1 in 2 s made 1 token request in the 5 s that followed the first (saw $n)" \
	'[ "$n" = 1 ]'
wait_ms 12000 "[ \$(requests) -ge $((r0 + 2)) ]"
gap=$(stats "'%.2f' % (j['token_times'][$r0 + 1][0] - j['token_times'][$r0][0]) if len(j['token_times']) >= $r0 + 2 else '-'")
expect "after a success: the flood's next renewal came, at least 10 s after the first (gap $gap s)" \
	'[ "$gap" != - ] && "$PYTHON" -c "import sys; sys.exit(0 if float(sys.argv[1]) >= 9.5 else 1)" "$gap"'
expect "after a success: the keeper still runs, the same process" '[ "$(keepers)" = "$kp" ]'
close_held "$drv"
wait_ms 3000 '[ "$(nkeepers)" = 0 ]'
clear_keys $U

# ==== 2. inside a 429's Retry-After: 60 window: 20 signals, no request
# window_attack NAME: a session of service NAME; its keeper's renewal meets the 429; the flood.
window_attack() {
	local name=$1 drv kp t0 r0 n
	ps_server_control "$acc_URL" '{"fault": null, "expires_in": 6, "retry_after": 60}'
	open_held "$name" $U "win-$name"
	drv=$HELD_PID
	wait_ms 3000 '[ "$(nkeepers)" = 1 ]'
	kp=$(keepers)
	expect "$name: the session opens and one keeper runs (pid $kp)" \
		'[ "$(held_open "win-$name")" = 0 ] && [ "$(nkeepers)" = 1 ]'
	t0=$(date +%s.%N)
	ps_server_control "$acc_URL" '{"fault": "rate_limit"}'
	expect "$name: the keeper's renewal met the 429 with Retry-After: 60 (within 10 s)" \
		'wait_ms 10000 "rate_limited $t0"'
	r0=$(requests)
	flood "$kp"
	wait_ms 3000 "[ \$(requests) -gt $r0 ]"
	n=$(($(requests) - r0))
	expect "$name: 20 SIGUSR1 inside the window made no token request (saw $n)" '[ "$n" = 0 ]'
	expect "$name: the keeper still runs, the same process" '[ "$(keepers)" = "$kp" ]'
	WIN_DRV=$drv WIN_R0=$r0
}
enroll pkceclient true
window_attack pkce
close_held "$WIN_DRV"
wait_ms 3000 '[ "$(nkeepers)" = 0 ]'
clear_keys $U

# authorization_code: the keeper holds the client secret; spotify-token refresh says why nothing
# happens instead of waiting 15 s for a token that cannot come
enroll confclient false
window_attack code
t0=$(now_ms)
as_user_q $U "$PS_READER" refresh --config="$T/code.conf" 2>"$T/refresh.err"
rc=$? el=$(($(now_ms) - t0))
n=$(($(requests) - WIN_R0))
expect "code: spotify-token refresh inside the window: exit 6 in $el ms, no request ($n), and it says until when ($(cat "$T/refresh.err"))" \
	'[ $rc = 6 ] && [ "$el" -lt 5000 ] && [ "$n" = 0 ] &&
	grep -q "inside a Retry-After/backoff window until 20[0-9-]* [0-9:]* UTC: no request made" "$T/refresh.err"'
close_held "$WIN_DRV"
wait_ms 3000 '[ "$(nkeepers)" = 0 ]'
ps_server_control "$acc_URL" '{"fault": null, "retry_after": 7, "expires_in": 3600}'

expect "no client secret or refresh token in the module's log" \
	'! grep -q -F -e "$SECRET" "$PS_SYSLOG_FILE"'
done_testing
