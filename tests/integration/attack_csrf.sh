#!/bin/bash
# attack_csrf.sh: login CSRF against spotify-token login's loopback listener (issue 12, attack 4),
# written as the attacker. While pstest1 runs `spotify-token login` (pkce), pstest2 finds the
# listener's port in /proc/net/tcp, asks it for /start (the 302 to the authorize URL would give
# the state and the code challenge), guesses a /start/HEX path, tries the real one as if it had
# leaked, and delivers a callback with a code of its own consent, with a guessed state and with
# the real one. Each must get 403 and a page with no state, challenge or URL; the victim's login
# goes on and completes with the victim's own browser. Then the same against a [::1] listener
# that nobody else answers: the forged callback does not end it, the deadline does (exit 4).
. "$top_srcdir/tests/lib.sh"

need_root
ps_need_install
ps_tmpdir
ps_lock_keyring
V=pstest1 A=pstest2
ps_ensure_user $V
ps_ensure_user $A
VUID=$(id -u $V)
VHOME=$(getent passwd $V | cut -d: -f6)
printf 'pkceclient:unused-%s\n' "$$" >"$T/clients"
ps_start_server acc --client-file "$T/clients"
CA="$T/tls/ca.pem"

conf() { # conf FILE [extra lines...]: the pkce client's (ps_conf adds the server and its CA)
	local f=$1
	shift
	ps_conf "$f" "flow = pkce" "client_id = pkceclient" "scopes = user-read-email" "$@"
}
conf "$T/v4.conf"
conf "$T/v6.conf" "redirect_uri = http://[::1]/callback"
stats() { ps_server_stats "$acc_URL" | ps_json "$1"; }
exchanges() { stats 'j["by_grant"].get("authorization_code", 0)'; }

# A "browser" for the victim's display: xdg-open records the address login starts it on.
mkdir -p "$T/bin" "$T/xdg"
chmod 777 "$T/xdg"
printf '#!/bin/sh\nprintf "%%s\\n" "$1" >%s/xdg/url\n' "$T" >"$T/bin/xdg-open"
chmod 755 "$T/bin/xdg-open"

# login_start CONF TIMEOUT: the victim's spotify-token login in the background (a display, so it
# starts "xdg-open"); its stdin a FIFO held open. Sets URL (the authorize URL login printed, the
# victim's own view), START (where it started the browser) and LOGIN_PID.
login_start() {
	rm -f "$T/paste" "$T/login.err" "$T/xdg/url"
	mkfifo -m 666 "$T/paste"
	as_user $V env DISPLAY=:99 PATH="$T/bin:/usr/bin:/bin" \
		"$PS_READER" login --config="$1" --timeout="$2" <"$T/paste" >"$T/login.out" 2>"$T/login.err" &
	LOGIN_PID=$!
	exec 8>"$T/paste"
	URL="" START=""
	wait_ms 10000 'URL=$(grep -o "https://[^ ]*" "$T/login.err" | head -1); [ -n "$URL" ] && [ -s "$T/xdg/url" ]'
	START=$(cat "$T/xdg/url" 2>/dev/null)
}
login_wait() {
	exec 8>&-
	wait "$LOGIN_PID"
	LOGIN_RC=$?
}
param() { printf '%s' "$2" | grep -o "[?&]$1=[^&]*" | head -1 | cut -d= -f2; }

# --- the attacker's tools, run as pstest2
# listener_ports HEXADDR: the ports on which the victim's uid listens at that address
# (/proc/net/tcp and tcp6 are world-readable: local address, state 0A = LISTEN, uid).
listener_ports() {
	as_user $A cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
		awk -v uid="$VUID" -v addr="$1" '$4 == "0A" && $8 == uid && index($2, addr ":") == 1 {
			split($2, a, ":"); print a[2] }' |
		while read -r hex; do echo $((16#$hex)); done
}
# get NAME URL: GET as the attacker; the whole response (head and body) in $T/a.NAME
get() { as_user $A curl -s -i --max-time 10 "$2" >"$T/a.$1" 2>/dev/null; }
status_of() { sed -n '1s/^HTTP\/1\.[01] \([0-9]*\).*/\1/p' "$T/a.$1"; }
# leaks NAME: the response holds the state, the challenge, an URL or a Location
leaks() {
	grep -q -i -e "$VSTATE" -e "$VCHALLENGE" -e "authorize" -e "^Location:" "$T/a.$1" ||
		sed '1,/^\r\{0,1\}$/d' "$T/a.$1" | grep -q "http"
}
# forbidden NAME: 403, and nothing of the login in it
forbidden() { [ "$(status_of "$1")" = 403 ] && ! leaks "$1"; }

# ==== 1. IPv4: the attacker against a listener whose user then completes the login
as_user $V rm -rf "$VHOME/.local/state/spotify-token"
before=$(exchanges)
login_start "$T/v4.conf" 30
VSTATE=$(param state "$URL") VCHALLENGE=$(param code_challenge "$URL")
VPORT=$(printf '%s' "$URL" | sed -n 's/.*redirect_uri=http%3A%2F%2F127.0.0.1%3A\([0-9]*\)%2F.*/\1/p')
expect "the victim's login is waiting on 127.0.0.1:$VPORT and started its browser on $START" \
	'[ -n "$VSTATE" ] && [ -n "$VCHALLENGE" ] && [ -n "$VPORT" ] && [ -n "$START" ]'
expect "the attacker finds the victim's listener in /proc/net/tcp" \
	'listener_ports 0100007F | grep -qx "$VPORT"'
L="http://127.0.0.1:$VPORT"
get start "$L/start"
get guess "$L/start/$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
get leaked "$START" # as if the random path had leaked
diag "attacker: GET /start -> $(status_of start), GET /start/<guess> -> $(status_of guess), GET <leaked start path> -> $(status_of leaked)"
expect "attacker's GET /start: 403, no state, challenge or URL in it" 'forbidden start'
expect "attacker's GET /start/<guess>: 403, no state, challenge or URL in it" 'forbidden guess'
expect "attacker's GET of the real /start/HEX path: 403 all the same (the uid decides)" 'forbidden leaked'

# The attacker consents with its own account: with the authorize URL /start gave it if it did
# (the old listener), else one it makes with a state of its own. Its code is marked.
ps_server_control "$acc_URL" '{"code_prefix": "ATTACKER"}'
auth=$(sed -n 's/^Location: *\([^[:space:]]*\).*/\1/Ip' "$T/a.start" "$T/a.leaked" | head -1)
[ -n "$auth" ] || auth="$acc_URL/authorize?client_id=pkceclient&response_type=code&redirect_uri=http%3A%2F%2F127.0.0.1%3A$VPORT%2Fcallback&scope=user-read-email&code_challenge_method=S256&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&state=AttackerStateAttackerS"
cb=$(as_user $A curl -s --cacert "$CA" -o /dev/null -w '%{redirect_url}' "$auth" 2>/dev/null)
ps_server_control "$acc_URL" '{"code_prefix": "AQ"}'
acode=$(param code "$cb")
expect "the attacker got a code of its own consent" '[[ "$acode" == ATTACKER* ]]'
get forged "$cb"
get forged_state "$L/callback?code=$acode&state=$VSTATE" # as if the state had leaked
diag "attacker: its callback -> $(status_of forged), with the victim's state -> $(status_of forged_state)"
expect "attacker's callback with its code: 403, nothing of the login in it" 'forbidden forged'
expect "attacker's callback with its code and the victim's state: 403 all the same" 'forbidden forged_state'
alive=no
alive "$LOGIN_PID" && alive=yes
diag "after the attack the victim's login is $([ $alive = yes ] && echo still waiting || echo over: $(tail -1 "$T/login.err"))"
expect "the victim's login is still waiting after the attack" '[ "$alive" = yes ]'
expect "the victim's terminal says a connection from another user was refused" \
	'grep -q "refused a connection to port $VPORT from another user (uid $(id -u $A)); still waiting" "$T/login.err"'

# The victim's own browser: /start/HEX, consent, the callback, all as pstest1.
as_user $V curl -s -i --max-time 10 "$START" >"$T/v.start" 2>/dev/null
vauth=$(sed -n 's/^Location: *\([^[:space:]]*\).*/\1/Ip' "$T/v.start")
expect "the victim's own browser gets the 302 to the authorize URL from /start/HEX" \
	'[ "$(sed -n "1s/^HTTP\/1\.[01] \([0-9]*\).*/\1/p" "$T/v.start")" = 302 ] && [ "$vauth" = "$URL" ]'
vcb=$(as_user $V curl -s --cacert "$CA" -o /dev/null -w '%{redirect_url}' "$vauth" 2>/dev/null)
vst=$(as_user $V curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$vcb" 2>/dev/null)
vcode=$(param code "$vcb")
login_wait
expect "the victim's callback is served (200) and login exits 0, connected" \
	'[ "$vst" = 200 ] && [ "$LOGIN_RC" = 0 ] && grep -q "connected to Spotify" "$T/login.err"'
expect "one code exchanged: the victim's own, issued after the attacker's (not ATTACKER...)" \
	'[ "$(exchanges)" = $((before + 1)) ] && [ -n "$vcode" ] && [[ "$vcode" != ATTACKER* ]]'
expect "the victim's terminal shows no code" \
	'[ -n "$vcode" ] && ! grep -q -e ATTACKER -e "$vcode" "$T/login.err"'

# ==== 2. IPv6 [::1]: nobody but the attacker answers; the deadline ends the login (exit 4)
if ! as_user $V python3 -c 'import socket; s = socket.socket(socket.AF_INET6); s.bind(("::1", 0))' 2>/dev/null; then
	for t in "[::1]: attacker's GET /start" "[::1]: forged callback" "[::1]: the deadline ends the login"; do
		skip "$t" "IPv6 loopback is unavailable here"
	done
else
	start=$(date +%s)
	login_start "$T/v6.conf" 4
	VSTATE=$(param state "$URL") VCHALLENGE=$(param code_challenge "$URL")
	VPORT=$(printf '%s' "$URL" | sed -n 's/.*redirect_uri=http%3A%2F%2F%5B%3A%3A1%5D%3A\([0-9]*\)%2F.*/\1/p')
	L="http://[::1]:$VPORT"
	get start6 "$L/start"
	get leaked6 "$START"
	get forged6 "$L/callback?code=AQDforged&state=$VSTATE"
	diag "attacker on [::1]:$VPORT: /start -> $(status_of start6), leaked path -> $(status_of leaked6), callback with the victim's state -> $(status_of forged6)"
	expect "[::1]: attacker's GET /start and of the real /start/HEX: 403, nothing in them" \
		'[ -n "$VPORT" ] && forbidden start6 && forbidden leaked6'
	expect "[::1]: forged callback with the victim's state: 403, nothing in it" 'forbidden forged6'
	login_wait
	took=$(($(date +%s) - start))
	expect "[::1]: the forged callback did not end the login: the deadline did, exit 4 after ${took} s" \
		'[ "$LOGIN_RC" = 4 ] && grep -q "no authorization arrived within 4 s" "$T/login.err" && [ "$took" -ge 4 ]'
fi
done_testing
