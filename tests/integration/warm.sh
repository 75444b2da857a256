#!/bin/bash
# warm.sh: the module's fast path (pam/warm.c). A session opened while the user holds a token of
# this flow and client that outlives refresh_margin, and while the user's keeper runs, starts no
# process and makes no request: the module registers it with the keeper itself; a close while
# the keeper runs only leaves the registry. Every other case takes the helper: a token that
# lives less than refresh_margin, a token of another client, no keeper, keyring = session, a
# registry that is a symbolic link. Concurrent logins of one user with no token run one helper: the
# others wait for it on the login lock and join. Through real PAM sessions (pam_keyinit + pam_spotify) against
# the fake accounts server, for pkce, nowait and client credentials (the host's app token). The
# driver (tests/pam/pam_session, PS_SHOW_CHILDREN=1) reports the peak RSS of the children it
# reaped: 0 means the module ran no helper. It also reports its uids and dumpable flag after the
# open, which the module must leave as they were (it switches only its real uid, as pam_keyinit
# does). And the user's keeper of the host's app token never maps libcurl, which the helper loads
# at its first request only. Needs root and an installed build (see session.sh).
. "$top_srcdir/tests/lib.sh"

need_root
[ -f "$PS_SECUREDIR/pam_spotify.so" ] && [ -x "$PS_HELPER" ] && [ -x "$PS_READER" ] ||
	skip_all "pam_spotify is not installed under its configured prefix: run make install first"
ps_tmpdir
ps_lock_keyring
U=pstest3
ps_ensure_user $U
ps_ensure_app_user
HOME3=$(getent passwd $U | cut -d: -f6)
STORE="$HOME3/.local/state/spotify-token"
SECRET="SENTINEL-WARM-SECRET-$$"
printf 'warmcc:%s\nwarmpkce:unused-%s\n' "$SECRET" "$$" >"$T/clients"
ps_start_server acc --client-file "$T/clients"
CA="$T/tls/ca.pem"
printf '%s\n' "$SECRET" >"$T/secret"
chmod 600 "$T/secret"
DRIVER="$top_builddir/tests/pam/pam_session"
export PS_SYSLOG_FILE="$T/syslog"
: >"$PS_SYSLOG_FILE"
KEEPER_PAT='pam_spotify_helper keeper'
app_pid() { ps_services | head -1; }

conf() { # conf FILE FLOW CLIENT [extra lines...]
	local f=$1 flow=$2 client=$3
	shift 3
	{
		echo "flow = $flow"
		echo "client_id = $client"
		echo "accounts_url = $acc_URL"
		echo "ca_file = $CA"
		echo "timeout = 10"
		echo "connect_timeout = 3"
		case " $* " in *" refresh_margin = "*) ;; *) echo "refresh_margin = 60" ;; esac
		printf '%s\n' "$@"
	} >"$f"
	chmod 644 "$f"
}
conf "$T/pkce.conf" pkce warmpkce "scopes = user-read-email" "enroll = never"
conf "$T/margin.conf" pkce warmpkce "scopes = user-read-email" "enroll = never" \
	"refresh_margin = 3600"
conf "$T/sess.conf" pkce warmpkce "scopes = user-read-email" "enroll = never" "keyring = session"
conf "$T/cc.conf" client_credentials warmcc "client_secret_file = $T/secret"
mkdir -p "$T/pam.d"
printf '%s required pam_deny.so\n' auth account password session >"$T/pam.d/other"
for svc in pkce margin sess cc; do
	printf 'session optional pam_keyinit.so force revoke\nsession required %s config=%s\n' \
		"$PS_SECUREDIR/pam_spotify.so" "$T/$svc.conf" >"$T/pam.d/$svc"
done
printf 'session optional pam_keyinit.so force revoke\nsession required %s config=%s nowait\n' \
	"$PS_SECUREDIR/pam_spotify.so" "$T/pkce.conf" >"$T/pam.d/nowait"

stats() { ps_server_stats "$acc_URL" | ps_json "$1"; }
requests() { stats 'j["token_requests"]'; }
keepers() { pgrep -u "$1" -f "$KEEPER_PAT"; }
nkeepers() { keepers "$1" | wc -l; }
nregistered() { ls -1 "$STORE/$1.sessions" 2>/dev/null | wc -l; }

DRIVERS=""
# hold SERVICE NAME: a session held open (no command, so the driver reaps only what the module
# started) until release; output in $T/h.NAME. Sets HELD_PID.
hold() {
	PS_SHOW_CHILDREN=1 PS_HOLD_OPEN=300 "$DRIVER" "$T/pam.d" "$1" $U >"$T/h.$2" 2>&1 &
	HELD_PID=$!
	DRIVERS="$DRIVERS $HELD_PID"
	wait_ms 15000 "grep -q '^open_uids=' '$T/h.$2'"
}
release() {
	kill -USR1 "$@" 2>/dev/null
	wait "$@"
}
field() { sed -n "s/^$2=\\([0-9]*\\).*/\\1/p" "$T/h.$1"; } # field NAME KEY: the first number
open_rc() { field "$1" open; }
close_rc() { field "$1" close; }
open_kids() { field "$1" open_children_kb; }
close_kids() { field "$1" close_children_kb; }

# enroll: a pkce refresh token minted by the fake server, written as spotify-token login would.
enroll() {
	local rt
	rt=$(curl -sS --fail --cacert "$CA" -H 'Content-Type: application/json' \
		--data '{"client_id": "warmpkce", "scope": "user-read-email", "public": true}' \
		"$acc_URL/__refresh_token" | ps_json 'j["refresh_token"]')
	printf 'pam_spotify-refresh 1\n%s\n' "$rt" | as_user_q $U sh -c '
		umask 077
		d="$HOME/.local/state/spotify-token"
		mkdir -p "$d" && chmod 700 "$d" &&
		cat >"$d/warmpkce.refresh.new" && mv "$d/warmpkce.refresh.new" "$d/warmpkce.refresh"'
}

warm_cleanup() {
	local p
	[ -n "${PS_KEEP_TMP:-}" ] && cp -a "$T" "$PS_KEEP_TMP"
	for p in $DRIVERS; do
		grep -q pam_session "/proc/$p/cmdline" 2>/dev/null && kill -9 "$p" 2>/dev/null
	done
	sleep 0.3
	for p in $(keepers $U); do kill -9 "$p" 2>/dev/null; done
	clear_keys $U
	as_user_q $U rm -rf "$STORE"
	ps_stop_services
}
ps_on_exit warm_cleanup
warm_cleanup
ps_server_control "$acc_URL" '{"expires_in": 3600}'
enroll

# ==== 1. pkce: the first session runs the helper; a second one does not
r0=$(requests)
hold pkce A
A=$HELD_PID
check "pkce cold open: PAM_SUCCESS" [ "$(open_rc A)" = 0 ]
check "pkce cold open: the module ran the helper (children reaped)" [ "$(open_kids A)" -gt 0 ]
check "pkce cold open: one refresh request" [ "$(($(requests) - r0))" = 1 ]
wait_ms 3000 "[ \"\$(nkeepers $U)\" = 1 ]"
k0=$(keepers $U)
check "pkce cold open: one keeper runs" [ "$(nkeepers $U)" = 1 ]
tok0=$(as_user_q $U "$PS_READER")
check "pkce cold open: the reader prints a token" [ -n "$tok0" ]

r1=$(requests)
hold pkce B
B=$HELD_PID
check "pkce warm open: PAM_SUCCESS" [ "$(open_rc B)" = 0 ]
check "pkce warm open: no process started (no child reaped)" [ "$(open_kids B)" = 0 ]
check "pkce warm open: no token request" [ "$(($(requests) - r1))" = 0 ]
check "pkce warm open: the log line says the keeper was joined without a helper" \
	grep -q "user $U: open: ok token still valid keyring=user expires_in=[0-9]* (joined the running keeper; no helper)" "$PS_SYSLOG_FILE"
check "pkce warm open: the driver's uids are root's again (real/effective/saved 0/0/0)" \
	grep -q '^open_uids=0/0/0 ' "$T/h.B"
check "pkce warm open: the driver's dumpable flag is untouched (1)" grep -q ' dumpable=1$' "$T/h.B"
check "pkce warm open: two sessions registered" [ "$(nregistered warmpkce)" = 2 ]
check "pkce warm open: every registry entry is the user's" \
	[ -z "$(find "$STORE/warmpkce.sessions" -mindepth 1 ! -user $U)" ]
check "pkce warm open: the same keeper, still one" [ "$(keepers $U)" = "$k0" ]
check "pkce warm open: the reader prints the same token" [ "$(as_user_q $U "$PS_READER")" = "$tok0" ]

release "$B"
check "pkce warm close: PAM_SUCCESS" [ "$(close_rc B)" = 0 ]
check "pkce warm close: no process started" [ "$(close_kids B)" = 0 ]
check "pkce warm close: one session left in the registry" [ "$(nregistered warmpkce)" = 1 ]
sleep 1
check "pkce warm close: the keeper stays for the other session" [ "$(keepers $U)" = "$k0" ]
check "pkce warm close: the token stays for the other session" \
	[ "$(as_user_q $U "$PS_READER")" = "$tok0" ]

# ==== 2. what must take the helper
# a token that lives less than refresh_margin (3600 s, the token's whole life)
r1=$(requests)
hold margin M
check "refresh_margin as long as the token's life: the helper runs" [ "$(open_kids M)" -gt 0 ]
check "refresh_margin as long as the token's life: it refreshes (one request)" \
	[ "$(($(requests) - r1))" = 1 ]
release "$HELD_PID"

# keyring = session: never the fast path
hold sess S
check "keyring = session: the helper runs" [ "$(open_kids S)" -gt 0 ]
release "$HELD_PID"
check "keyring = session: its close runs the helper too" [ "$(close_kids S)" -gt 0 ]

# no keeper (killed): the token is fresh, but the helper must start a keeper
kill -9 $k0
wait_ms 3000 "[ \"\$(nkeepers $U)\" = 0 ]"
r1=$(requests)
hold pkce K
K=$HELD_PID
check "no keeper: the helper runs" [ "$(open_kids K)" -gt 0 ]
wait_ms 3000 "[ \"\$(nkeepers $U)\" = 1 ]"
check "no keeper: the helper started one" [ "$(nkeepers $U)" = 1 ]
check "no keeper: no token request (the token was fresh)" [ "$(($(requests) - r1))" = 0 ]

# nowait with a fresh token and a keeper: PAM_SUCCESS at once, no process
hold nowait N
check "nowait warm open: PAM_SUCCESS (the token is there, nothing runs later)" \
	[ "$(open_rc N)" = 0 ]
check "nowait warm open: no process started" [ "$(open_kids N)" = 0 ]
release "$HELD_PID" "$K" "$A"
expect "last closes: PAM_SUCCESS" '[ "$(close_rc A)" = 0 ] && [ "$(close_rc K)" = 0 ]'
check "last closes: the keeper ends within 3 s" wait_ms 3000 "[ \"\$(nkeepers $U)\" = 0 ]"
check "last closes: the keys are gone" wait_ms 3000 "no_keys $U"
check "last closes: the registry is empty" [ "$(nregistered warmpkce)" = 0 ]

# a registry that is a symbolic link (with a fresh token and a running keeper): the module does
# not follow it, the helper refuses it (and, unable to count sessions, removes the keys at close)
hold pkce P
P=$HELD_PID
wait_ms 3000 "[ \"\$(nkeepers $U)\" = 1 ]"
mv "$STORE/warmpkce.sessions" "$T/sessions.real"
ln -s "$T/sessions.real" "$STORE/warmpkce.sessions"
: >"$T/marker"
hold pkce L
check "registry replaced by a symbolic link: the module does not use it (the helper ran)" \
	[ "$(open_kids L)" -gt 0 ]
check "registry replaced by a symbolic link: nothing was created through it" \
	[ -z "$(find "$T/sessions.real" -newer "$T/marker" -mindepth 1)" ]
release "$HELD_PID"
rm "$STORE/warmpkce.sessions"
mv "$T/sessions.real" "$STORE/warmpkce.sessions"
release "$P"
wait_ms 3000 "[ \"\$(nkeepers $U)\" = 0 ]"

# a token of another client in the keyring: not ours to keep
printf '{"token_type":"Bearer","scope":"","expires_at":%s,"flow":"pkce","client_id":"other"}' \
	"$(($(date +%s) + 3600))" >"$T/info"
as_user_q $U sh -c "printf x | keyctl padd user spotify:access_token @u >/dev/null && keyctl padd user spotify:token_info @u >/dev/null" <"$T/info"
r1=$(requests)
hold pkce O
expect "a token of another client: the helper runs and refreshes" \
	'[ "$(open_kids O)" -gt 0 ] && [ "$(($(requests) - r1))" = 1 ]'
release "$HELD_PID"
wait_ms 3000 "[ \"\$(nkeepers $U)\" = 0 ]"

# ==== 2b. concurrent logins of one user with no token: one helper, the others wait for it (the
# login lock, RUNDIR/login-UID.lock) and join its keeper without a process of their own
if [ "${PS_VALGRIND:-0}" = 1 ]; then
	skip "5 concurrent logins: one helper, the others join" "valgrind pass: too slow for the wait"
else
	clear_keys $U
	r1=$(requests)
	cpids=""
	for i in 1 2 3 4 5; do
		PS_SHOW_CHILDREN=1 PS_HOLD_OPEN=300 "$DRIVER" "$T/pam.d" pkce $U >"$T/h.P$i" 2>&1 &
		cpids="$cpids $!"
	done
	DRIVERS="$DRIVERS $cpids"
	wait_ms 20000 "[ \$(cat $T/h.P[1-5] | grep -c '^open_uids=') = 5 ]"
	nfast=0 nok=0
	for i in 1 2 3 4 5; do
		[ "$(open_rc P$i)" = 0 ] && nok=$((nok + 1))
		[ "$(open_kids P$i)" = 0 ] && nfast=$((nfast + 1))
	done
	check "5 concurrent logins with no token: all PAM_SUCCESS ($nok)" [ $nok = 5 ]
	check "5 concurrent logins with no token: one refresh request" [ "$(($(requests) - r1))" = 1 ]
	check "5 concurrent logins with no token: the helper ran for fewer than all of them ($((5 - nfast)) helpers)" \
		[ $nfast -ge 1 ]
	check "5 concurrent logins with no token: one keeper" [ "$(nkeepers $U)" = 1 ]
	check "the login lock is root's, in RUNDIR" \
		[ "$(stat -c '%U %a' "$PS_RUNDIR/login-$(id -u $U).lock")" = "root 600" ]
	release $cpids
	wait_ms 3000 "[ \"\$(nkeepers $U)\" = 0 ]"
fi

# ==== 3. client credentials: the host's app token
r1=$(requests)
hold cc C1
C1=$HELD_PID
expect "cc cold open: PAM_SUCCESS, the helper ran" '[ "$(open_rc C1)" = 0 ] && [ "$(open_kids C1)" -gt 0 ]'
wait_ms 3000 "[ \"\$(nkeepers $U)\" = 1 ]"
tokc=$(as_user_q $U "$PS_READER")
# libcurl is loaded at a process's first request (helper/curl_load.c): the system service makes
# each request in a child of its own, so neither it nor the user's keeper, which copies the app
# token, ever maps it
check "cc: the system service (its requests run in children) never mapped libcurl" \
	sh -c '[ -r "/proc/$1/maps" ] && ! grep -q "libcurl\.so" "/proc/$1/maps"' sh "$(app_pid)"
ck=$(keepers $U)
expect "cc: the user's keeper, which copies the app token, never mapped libcurl" \
	'[ -n "$ck" ] && [ -r "/proc/$ck/maps" ] && ! grep -q "libcurl\.so" "/proc/$ck/maps"'
hold cc C2
check "cc warm open: PAM_SUCCESS" [ "$(open_rc C2)" = 0 ]
check "cc warm open: no process started" [ "$(open_kids C2)" = 0 ]
check "cc: one token request for both (the system service's)" [ "$(($(requests) - r1))" = 1 ]
expect "cc warm open: the reader prints the same app token" \
	'[ -n "$tokc" ] && [ "$(as_user_q $U "$PS_READER")" = "$tokc" ]'
release "$HELD_PID"
check "cc warm close: no process started" [ "$(close_kids C2)" = 0 ]
release "$C1"
check "cc last close: the keys are gone within 3 s" wait_ms 3000 "no_keys $U"

done_testing
