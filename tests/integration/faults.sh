#!/bin/bash
# faults.sh: every server and transport fault of issue 5, at the LOGIN level (a real PAM session
# through pam_keyinit + pam_spotify), for both grants a login makes: client_credentials (the
# system service's request to the token endpoint) and refresh_token (flow = pkce with an enrolled
# store). A login asks the user's keeper (helper/keeper.h), which the login's helper starts when
# none runs; the keeper takes the token an earlier login left in the keyring, and, that token
# being due (it lives 60 s, refresh_margin is 120), renews it in a child ("the renewal") that
# meets the fault. For each fault and grant:
#   (a) the session open returns within timeout + 1 s (the driver's open ms= and the wall clock):
#       PAM_SUCCESS when the renewal failed within the login's time (the earlier token still
#       lives, and the session has it), PAM_SESSION_ERR when it did not end in time (hang, slow
#       body: the keeper goes on with it) or the configuration is refused;
#   (b) the module logs exactly one line for it, naming the cause and what to do (the renewal's
#       line, "ok token valid N s more; its renewal failed: CAUSE", or the timeout's), with no
#       secret, refresh token, access token or response body in it;
#   (c) nothing is lost: the access token a previous login stored (still valid) is the same key
#       with the same bytes afterwards, no key comes from the bad answer, and for the refresh
#       grant the stored refresh token is byte-identical and the store is not marked .reauth; the
#       keeper ends with the session, or, while a refresh it started still waits for the server
#       (its request outlives the login), goes on with it (status "renewing 1");
#   (d) the next login, against a healthy server, succeeds with a new token.
# The worst-case open time of each fault (over both grants) is printed as TAP diagnostics and
# written to $top_builddir/tests/integration/faults-times.txt.
# Then: a login that meets a fault while another session of the user is open shares that
# session's token (PAM_SUCCESS, and its line says the renewal failed), which the keeper keeps
# until the last session closes; and the keeper's renewals survive malformed JSON, a 1 MiB body
# and a hang without exiting, without a gap in the token and without touching the store. A
# refresh renewal's request is not bounded by the login's timeout (PS_REQUEST_TIMEOUT_S, 120 s):
# while it hangs the keeper answers at once, whoever asks joins that one request, and when it
# ends without an answer (its process killed here) the keeper retries before the token expires.
# Last, servers that are not Spotify: a token response without expires_in (RFC 6749 makes it
# RECOMMENDED) lives default_expires_in, one with it as a string of digits is read, and one over a
# week lives a week, with a notice in the keeper's or the service's log.
# Needs root and an installed build (see tests/pam/session.sh). About 3 minutes; FAULTS_ONLY="hang
# status_503" runs only those rows of the matrix (sections 2 and 3 always run).
# PS_KEEP_TMP=DIR keeps a copy of the scratch directory (server logs, module log, driver output).
# Changed with the keeper: a login's failed request no longer fails a login that has a token, and
# "no keeper started" became "the keeper ended with the session" (every login starts one).
. "$top_srcdir/tests/lib.sh"

need_root
ps_need_install
for tool in keyctl setpriv curl cmp; do
	command -v $tool >/dev/null 2>&1 || skip_all "$tool not found"
done
ps_tmpdir
ps_lock_keyring
ps_ensure_user pstest1
STORE="$(getent passwd pstest1 | cut -d: -f6)/.local/state/spotify-token"
ps_login_fixture FAULTS testclient pkceclient
ps_start_server silent --silent
ps_start_server wrongname --cert "$T/tls/wrongname.pem" --key "$T/tls/wrongname.key"
ps_start_server expired --cert "$T/tls/expired.pem" --key "$T/tls/expired.key"
ps_start_server selfsigned --cert "$T/tls/selfsigned.pem" --key "$T/tls/selfsigned.key"
# a loopback port with nothing listening: bound, then closed (nothing else here binds it)
REFUSED_PORT=$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
TIMES="$top_builddir/tests/integration/faults-times.txt"
PAM_SESSION_ERR=14

# conf NAME GRANT URL TIMEOUT [extra lines...]: $T/NAME.conf and the PAM service NAME using it.
# GRANT is cc (client_credentials) or rt (the refresh_token grant: flow pkce, enrolled).
conf() {
	local name=$1 grant=$2 url=$3 to=$4
	shift 4
	if [ "$grant" = cc ]; then
		set -- "flow = client_credentials" "client_id = testclient" "client_secret_file = $T/secret" "$@"
	else
		set -- "flow = pkce" "client_id = pkceclient" "enroll = never" "$@"
	fi
	ps_conf "$T/$name.conf" "$@" "accounts_url = $url" "timeout = $to" "connect_timeout = 1"
	ps_pam_service "$T/pam.d" "$name" "$T/$name.conf"
}

# The fake server's counters without a Python start per look (the machine may be loaded):
# faults_served, and whether it issued a token on its fault-free path (tokens need no escaping).
faults_served() { ps_server_stats "$acc_URL" | sed -n 's/.*"faults_served": *\([0-9]*\).*/\1/p'; }
issued() { [ -n "$1" ] && ps_server_stats "$acc_URL" | grep -qF "\"$1\""; }
read_key() { as_user pstest1 keyctl pipe "%user:$1" 2>/dev/null; }
keepers() { ps_keepers pstest1; }
nkeepers() { ps_nkeepers pstest1; }
renewals() { pgrep -u pstest1 -f 'pam_spotify_helper renew' || true; }
log_lines() { wc -l <"$PS_SYSLOG_FILE"; }
# keys: pstest1's token key in one look (one process start: the machine may be loaded): its
# serial, the token and the token_info payload, one a line.
keys() {
	as_user pstest1 sh -c 'keyctl search @u user spotify:access_token &&
		keyctl pipe %user:spotify:access_token && echo && keyctl pipe %user:spotify:token_info' 2>/dev/null
}

# session SERVICE [-- COMMAND]: one open/close; sets OPEN, MS (the driver's open time) and WALL
# (ms, the whole driver run: open and close).
session() {
	local t0
	t0=$(now_ms)
	"$DRIVER" "$T/pam.d" "$1" pstest1 >"$T/out" 2>&1
	WALL=$(($(now_ms) - t0))
	OPEN=$(sed -n 's/^open=\([0-9]*\) .*/\1/p' "$T/out")
	MS=$(sed -n 's/^open=[0-9]* ms=\([0-9]*\).*/\1/p' "$T/out")
}

# Held sessions: open_held SERVICE USER NAME, close_held and held_open of tests/lib.sh.
DRIVERS=""

faults_cleanup() {
	local p
	[ -n "${PS_KEEP_TMP:-}" ] && cp -a "$T" "$PS_KEEP_TMP"
	for p in $DRIVERS; do
		grep -q pam_session "/proc/$p/cmdline" 2>/dev/null && kill -9 "$p" 2>/dev/null
	done
	sleep 0.3
	for p in $(keepers) $(renewals); do kill -9 "$p" 2>/dev/null; done
	clear_keys pstest1
	as_user pstest1 rm -rf "$STORE" 2>/dev/null
}
ps_on_exit faults_cleanup

# --- start clean
t_script=$(now_ms)
for p in $(keepers) $(renewals); do kill -9 "$p"; done
clear_keys pstest1
as_user pstest1 rm -rf "$STORE" 2>/dev/null
# Tokens live 60 s and refresh_margin is 120: every login of the refresh grant finds the token of
# the previous login too short-lived to reuse, so it really refreshes (with the fault).
ps_server_control "$acc_URL" '{"expires_in": 60}'
ps_enroll pstest1 pkceclient
[ -s "$STORE/pkceclient.refresh" ] || bail "cannot enroll pstest1"
RT=$(sed -n 2p "$STORE/pkceclient.refresh")

# good_login GRANT: a login against the healthy server, with remove_on_close = no so that its
# token stays as the "token from an earlier login". Succeeds when the open worked and the key
# holds a token the server issued. (Its keeper ends on its own within a second or so: the
# session is closed. It renews nothing meanwhile: the token lives 60 s.)
good_login() {
	conf good "$1" "$acc_URL" 3 "refresh_margin = 120" "remove_on_close = no"
	[ "$1" = cc ] && ps_stop_services # a running service serves its token: a new one is wanted
	session good
	GOOD_TOKEN=$(keys | sed -n 2p)
	[ "$OPEN" = 0 ] && issued "$GOOD_TOKEN"
}

# The matrix: NAME|TARGET|TIMEOUT|EXPECTED. TARGET is a fault of the good server (set for one
# request), or @refused, @silent, @wrongname, @expired, @selfsigned, @far (a server URL of its
# own). EXPECTED is an extended regular expression the one log line must match: the cause and
# what to do. The hanging faults run with timeout 2, the rest with 3; connect_timeout is 1.
# A refresh's request outlives the login (PS_REQUEST_TIMEOUT_S), the system service's app token
# request does not (timeout): so for the refresh grant, @rt-timeout says that the login sees a
# hang or a slow body as its own timeout (the keeper goes on, and logs the cause itself); for
# client credentials the line is the cause that follows. A configuration the module refuses
# (far_http) is @config: nothing starts.
A="accounts server 127.0.0.1:$acc_PORT"
BAD_JSON="check token_url points at the token endpoint"
cat >"$T/matrix" <<EOF
refused|@refused|3|cannot connect to accounts server 127.0.0.1:$REFUSED_PORT \(.*\): check accounts_url/token_url and the network
silent|@silent|2|cannot connect to accounts server 127.0.0.1:$silent_PORT within 1 s \(timeout\): check accounts_url/token_url and the network, or raise connect_timeout
hang|hang|2|@rt-timeout $A did not answer within 2 s \(timeout\): try again later or raise timeout
slow_body|slow_body|2|@rt-timeout $A answered too slowly: the response was not complete within 2 s \(timeout\): try again later or raise timeout
status_500|status_500|3|accounts server error \(HTTP 500, server_error: Unexpected status: 500\): try again later
status_502|status_502|3|accounts server error \(HTTP 502\): try again later
status_503|status_503|3|accounts server error \(HTTP 503\): try again later
rate_limit|rate_limit|3|accounts server is rate limiting \(HTTP 429, API rate limit exceeded\): retry after 7 s
rate_limit_no_retry_after|rate_limit_no_retry_after|3|accounts server is rate limiting \(HTTP 429, API rate limit exceeded\): try again later
malformed_json|malformed_json|3|token response is truncated JSON: $BAD_JSON
wrong_types|wrong_types|3|token response access_token is an integer, not a string: $BAD_JSON
missing_fields|missing_fields|3|token response has no access_token: $BAD_JSON
negative_expires|negative_expires|3|token response expires_in is -5 s, less than 1: $BAD_JSON
huge_body|huge_body|3|response from 127.0.0.1:$acc_PORT larger than 64 KiB: check token_url
deep_nesting|deep_nesting|3|token response nests too deeply \(more than 8 levels\): $BAD_JSON
nul_bytes|nul_bytes|3|token response access_token has characters outside the RFC 6750 token alphabet: $BAD_JSON
nul_raw|nul_raw|3|token response contains a NUL byte: $BAD_JSON
non_utf8|non_utf8|3|token response is not valid UTF-8: $BAD_JSON
html_error|html_error|3|token response is not valid JSON: $BAD_JSON
token_type_mac|token_type_mac|3|token response token_type is 'mac', not Bearer: .*$BAD_JSON
empty_token|empty_token|3|token response access_token is empty: $BAD_JSON
redirect|redirect|3|token endpoint answered with a redirect \(HTTP 302\): check token_url; redirects are not followed
wrongname|@wrongname|3|TLS certificate of 127.0.0.1:$wrongname_PORT does not match its name \(.*\): check the host in token_url
expired|@expired|3|TLS certificate of 127.0.0.1:$expired_PORT has expired \(.*\): the server's certificate must be renewed; check the system clock
selfsigned|@selfsigned|3|TLS certificate of 127.0.0.1:$selfsigned_PORT not trusted \(.*\): set ca_file to the CA that signed it
far_http|@far|3|@config$T/case.conf:[0-9]+: accounts_url 'http://192\.0\.2\.1': plain http:// is only allowed to a loopback address; use https://
EOF

# url_of TARGET: the accounts_url for a target.
url_of() {
	case $1 in
	@refused) echo "https://127.0.0.1:$REFUSED_PORT" ;;
	@silent) echo "$silent_URL" ;;
	@wrongname) echo "$wrongname_URL" ;;
	@expired) echo "$expired_URL" ;;
	@selfsigned) echo "$selfsigned_URL" ;;
	@far) echo "http://192.0.2.1" ;; # TEST-NET-1: never routed
	*) echo "$acc_URL" ;;
	esac
}

# bodyish LINE: the line quotes a token, a refresh token or a piece of a response body.
bodyish() {
	printf '%s\n' "$1" | grep -qE 'BQ[A-Za-z0-9_-]{3}|AQ[A-Za-z0-9_-]{8}|<|padding|xxxxxxxx|\[\[\['
}

declare -A WORST
# one_case NAME TARGET TIMEOUT EXPECTED GRANT: the fault login after a good one, and its checks.
one_case() {
	local name=$1 target=$2 to=$3 want=$4 grant=$5 keys0 k0 f0 f1 n0 line nlines limit kind
	local tag="$grant $name" rc_want=0 renewing=""
	keys0=$(keys)
	k0=$(echo "$keys0" | sed -n 2p)
	cp "$STORE/pkceclient.refresh" "$T/refresh.before"
	conf case "$grant" "$(url_of "$target")" "$to" "refresh_margin = 120" "remove_on_close = no"
	[ "$grant" = cc ] && want=${want#@rt-timeout }
	case $want in
	@rt-timeout*) # the keeper's renewal is still under way at the login's deadline
		kind=timeout rc_want=$PAM_SESSION_ERR
		want="user pstest1: open: no token within the $to s timeout: the keeper goes on and stores it when it comes; is the accounts server at $acc_URL/api/token reachable\?" ;;
	@config*) kind=config rc_want=$PAM_SESSION_ERR want=${want#@config} ;;
	*) # the renewal failed within the login's time; the earlier token, which still lives, is held
		kind=failed want="user pstest1: open: ok token valid [0-9]+ s more; its renewal failed: .*$want" ;;
	esac
	f0=$(faults_served)
	case $target in
	@*) ;;
	*) ps_server_control "$acc_URL" "{\"fault\": \"$target\", \"fault_count\": 1}" ||
		bail "cannot set fault $target" ;;
	esac
	# the good login's keeper ends on its own once its session is closed; wait for that, so that
	# this login starts its own (beside a running keeper it would share its token: see section 2)
	wait_ms 5000 '[ "$(nkeepers)" = 0 ]' || diag "$tag: the good login's keeper is still there"
	n0=$(log_lines)
	[ "$grant" = cc ] && ps_stop_services # a running one would serve its token, not ask
	session case
	# a refresh under way outlives the login: the keeper goes on with it
	[ $kind = timeout ] && [ $grant = rt ] && renewing=$(ps_keeper_status pstest1 renewing)
	f1=$(faults_served)
	ps_server_control "$acc_URL" '{"fault": null}'
	tail -n +$((n0 + 1)) "$PS_SYSLOG_FILE" >"$T/case.log"
	nlines=$(wc -l <"$T/case.log")
	line=$(sed 's/^<[0-9]*> //' "$T/case.log" | head -1)
	limit=$(((to + 1) * 1000))
	[ -z "${WORST[$name]}" ] || [ "${MS:-99999}" -gt "${WORST[$name]}" ] && WORST[$name]=${MS:-99999}
	[ "${WALL:-99999}" -gt "${WORST_WALL[$name]:-0}" ] && WORST_WALL[$name]=$WALL
	WORST_TO[$name]=$to

	expect "$tag: $([ $rc_want = 0 ] && echo "PAM_SUCCESS (the earlier token still lives)" || echo PAM_SESSION_ERR) within timeout + 1 s = $limit ms (open ${MS} ms, wall ${WALL} ms)" \
		'[ "$OPEN" = $rc_want ] && [ "${MS:-99999}" -lt $limit ] && [ "$WALL" -lt $limit ]'
	expect "$tag: one log line naming the cause and what to do, no secret, token or body ($nlines: $line)" \
		'[ "$nlines" = 1 ] && grep -qE -- "$want" "$T/case.log" && grep -q "user pstest1: open: \|case.conf:[0-9]*: " "$T/case.log" &&
		! grep -qF -e "$SECRET" -e "$RT" -e "${k0:-no-token}" "$T/case.log" && ! bodyish "$line"'
	if [ $kind = timeout ] && [ $grant = rt ]; then
		expect "$tag: the keeper goes on with the refresh after the login returned (renewing $renewing)" \
			'[ "$renewing" = 1 ]'
		# end it here (it would wait for the server for PS_REQUEST_TIMEOUT_S): the keeper,
		# its session closed, then ends too
		for p in $(renewals); do kill -9 "$p"; done
	fi
	expect "$tag: nothing lost: the earlier token is the same key with the same bytes and info; the store is byte-identical, not marked; the keeper ended with the session" \
		'[ -n "$k0" ] && [ "$(echo "$keys0" | wc -l)" = 3 ] && [ "$(keys)" = "$keys0" ] &&
		cmp -s "$STORE/pkceclient.refresh" "$T/refresh.before" && [ ! -e "$STORE/pkceclient.reauth" ] &&
		wait_ms 3000 "[ \"\$(nkeepers)\" = 0 ]"'
	case $target in
	@*) ;;
	*) expect "$tag: the login met the fault (faults served $f0 -> $f1)" '[ "$f1" = $((f0 + 1)) ]' ;;
	esac
	good_login "$grant"
	expect "$tag: then a login against the healthy server succeeds with a new token" \
		'[ "$OPEN" = 0 ] && [ -n "$GOOD_TOKEN" ] && [ "$GOOD_TOKEN" != "$k0" ]'
}
declare -A WORST_WALL WORST_TO

t_matrix=$(now_ms)
for grant in cc rt; do
	clear_keys pstest1
	good_login $grant
	expect "$grant: a first good login stores a token (open $OPEN)" '[ "$OPEN" = 0 ] && [ -n "$GOOD_TOKEN" ]'
	while IFS='|' read -r name target to want; do
		[ -n "${FAULTS_ONLY:-}" ] && [[ " $FAULTS_ONLY " != *" $name "* ]] && continue
		one_case "$name" "$target" "$to" "$want" $grant
	done <"$T/matrix"
done
diag "the matrix took $(($(now_ms) - t_matrix)) ms"

# The table: worst open time (the driver's ms=) over both grants, and the worst wall clock.
{
	echo "# pam_spotify login fault times: worst case over client_credentials and refresh_token"
	echo "# open_ms: pam_open_session as the driver measured it; wall_ms: the whole driver run"
	echo "# (open + close + process start). Bound: timeout + 1 s. connect_timeout = 1 s."
	printf '%-26s %8s %8s %8s\n' fault timeout open_ms wall_ms
	while IFS='|' read -r name _ _ _; do
		[ -n "${WORST[$name]}" ] || continue
		printf '%-26s %7ss %8s %8s\n' "$name" "${WORST_TO[$name]}" "${WORST[$name]}" "${WORST_WALL[$name]}"
	done <"$T/matrix"
} >"$T/times.txt"
mkdir -p "$(dirname "$TIMES")" && cp "$T/times.txt" "$TIMES"
sed 's/^# //; s/^/# /' "$T/times.txt"

# ==== 2. a login that meets a fault beside an open session of the same user
# Session A's keeper keeps a valid token. Login B meets a fault in the renewal it asks for (the
# token, living 60 s, is due at refresh_margin 120): B's open succeeds all the same, sharing A's
# token, and says the renewal failed; the user keeps that token in B after A closes, until B, the
# last session, closes. Client credentials: the system service is stopped after A opens, so that
# B's login starts a new one, which has no token yet and must ask (a running one would give the
# keeper the host's token without a request at all: app_token.sh).
# beside GRANT FAULT WHY: WHY, a regular expression of the fault's line
beside() {
	local grant=$1 fault=$2 why=$3 a b kA kp
	conf beside "$grant" "$acc_URL" 3 "refresh_margin = 120"
	clear_keys pstest1
	cp "$STORE/pkceclient.refresh" "$T/refresh.before"
	open_held beside pstest1 "A-$grant"
	a=$HELD_PID
	kA=$(keys | sed -n 2p)
	kp=$(keepers)
	expect "beside $grant: session A opens, a keeper runs, a token is stored" \
		'[ "$(held_open "A-$grant")" = 0 ] && [ -n "$kA" ] && [ -n "$kp" ]'
	[ "$grant" = cc ] && ps_stop_services
	ps_server_control "$acc_URL" "{\"fault\": \"$fault\", \"fault_count\": 1}"
	f0=$(faults_served)
	n0=$(log_lines)
	open_held beside pstest1 "B-$grant"
	b=$HELD_PID
	f1=$(faults_served)
	ps_server_control "$acc_URL" '{"fault": null}'
	tail -n +$((n0 + 1)) "$PS_SYSLOG_FILE" >"$T/beside.log"
	expect "beside $grant: session B meets $fault (faults served $f0 -> $f1): PAM_SUCCESS, it shares A's token, untouched" \
		'[ "$f1" = $((f0 + 1)) ] && [ "$(held_open "B-$grant")" = 0 ] && [ "$(keys | sed -n 2p)" = "$kA" ]'
	expect "beside $grant: B logged 1 line: the token it shares, and the failed renewal ($(sed 's/^<[0-9]*> //' "$T/beside.log" | tr '\n' ' '))" \
		'[ "$(wc -l <"$T/beside.log")" = 1 ] && grep -qE "user pstest1: open: ok token valid [0-9]+ s more; its renewal failed: .*$why" "$T/beside.log"'
	expect "beside $grant: the keeper counts both sessions" '[ "$(keepers)" = "$kp" ] && [ "$(ps_keeper_status pstest1 sessions)" = 2 ]'
	close_held "$a"
	# a bounded poll for something that must not happen: the keys going within 2 s (the keeper
	# may renew the due token meanwhile: a token, not A's, is what B keeps)
	expect "beside $grant: after A closes, B (still open) keeps a token, and the keeper runs on" \
		'! wait_ms 2000 "[ -z \"\$(keys | sed -n 2p)\" ]" && [ -n "$(keys | sed -n 2p)" ] && alive "$kp" &&
		 [ "$(ps_keeper_status pstest1 sessions)" = 1 ]'
	close_held "$b"
	expect "beside $grant: when B, the last session, closes, the keeper ends and the keys go (within 3 s)" \
		'wait_ms 3000 "! alive $kp && [ -z \"\$(keys)\" ]"'
	expect "beside $grant: the refresh-token store is byte-identical and not marked" \
		'cmp -s "$STORE/pkceclient.refresh" "$T/refresh.before" && [ ! -e "$STORE/pkceclient.reauth" ]'
}
beside cc status_503 "HTTP 503"
beside rt malformed_json "truncated JSON"

# ==== 3. the keeper meets the faults during its renewals
# Tokens live 12 s (the kernel key 11 s) and refresh_margin is 6: the keeper renews 6 s before
# the expiry; a failed renewal is retried after about 1 s (backoff), so even after a hang of the
# system service's request (timeout 2) the new token comes well before the old one expires. A
# refresh's request is not bounded by timeout (PS_REQUEST_TIMEOUT_S: a rotated refresh token must
# not be lost): while it hangs, the keeper answers at once and whoever asks joins that one
# request; it is ended here (its process killed), and the keeper retries in time. The keeper's
# own log goes to syslog (/dev/log), which a test cannot capture here; its behaviour is what is
# checked: same process, no gap in the token, a new token after the fault, the store untouched.
ps_server_control "$acc_URL" '{"expires_in": 12}'
ps_stop_services # a running one would serve its hour-long token: 12 s tokens are wanted
requests() { ps_server_stats "$acc_URL" | sed -n 's/.*"token_requests": *\([0-9]*\).*/\1/p'; }
cp "$top_srcdir/tests/integration/keeper_call.py" "$T/keeper_call.py"
chmod 644 "$T/keeper_call.py"
# sample_until_new TOKEN LIMIT_MS: sample the key every 0.1 s until it holds a token other than
# TOKEN, for at most LIMIT_MS; adds the empty samples to GAPS, sets NEW and TOOK (ms).
sample_until_new() {
	local t0
	NEW="" t0=$(now_ms)
	while [ $(($(now_ms) - t0)) -lt "$2" ]; do
		NEW=$(keys | sed -n 2p)
		[ -z "$NEW" ] && GAPS=$((GAPS + 1))
		[ -n "$NEW" ] && [ "$NEW" != "$1" ] && break
		sleep 0.1
	done
	TOOK=$(($(now_ms) - t0))
}
# keeper_hang_rt KEEPER: the keeper's refresh hangs; what the keeper does meanwhile, and after.
keeper_hang_rt() {
	local kp=$1 tok0 f0 f1 r0 st t0 tstatus poke sock
	tok0=$(keys | sed -n 2p)
	f0=$(faults_served)
	ps_server_control "$acc_URL" '{"fault": "hang", "fault_count": 1}'
	GAPS=0
	wait_ms 15000 '[ "$(faults_served)" = $((f0 + 1)) ]; r=$?; [ -z "$(keys | sed -n 2p)" ] && GAPS=$((GAPS + 1)); [ $r = 0 ]'
	f1=$(faults_served)
	r0=$(requests)
	ps_server_control "$acc_URL" '{"fault": null}'
	sock=$(ps_keeper_sock pstest1)
	t0=$(now_ms)
	st=$("$PYTHON" "$T/keeper_call.py" "$sock" status | sed -n 's/^renewing //p')
	tstatus=$(($(now_ms) - t0))
	expect "keeper rt hang: a refresh met the hang (faults served $f0 -> $f1); the keeper answers its status at once meanwhile (${tstatus} ms, renewing $st)" \
		'[ "$f1" = $((f0 + 1)) ] && [ "$st" = 1 ] && [ "$tstatus" -lt 1000 ]'
	mkdir -p -m 1777 "$T/u" # where the user's keeper_call may say it sent its message
	rm -f "$T/u/poke.sent"
	as_user pstest1 /usr/bin/python3 "$T/keeper_call.py" -t 20 -s "$T/u/poke.sent" "$sock" \
		refresh-now >"$T/poke.out" 2>/dev/null &
	poke=$!
	wait_ms 5000 '[ -e "$T/u/poke.sent" ]'
	# a bounded poll for something that must not happen: a second request within 1 s
	expect "keeper rt hang: the user's refresh-now, sent while the refresh hangs, joins it: no second request, no answer yet" \
		'[ -e "$T/u/poke.sent" ] && ! wait_ms 1000 "[ \"\$(requests)\" != $r0 ]" && kill -0 $poke 2>/dev/null'
	for p in $(renewals); do kill -9 "$p"; done
	wait $poke
	expect "keeper rt hang: the refresh ended without an answer (killed): the refresh-now that waited for it is told so ($(head -2 "$T/poke.out" | tr '\n' ' '))" \
		'grep -q "^status [0-9]" "$T/poke.out" && grep -q "the renewal ended without an answer" "$T/poke.out"'
	sample_until_new "$tok0" 8000
	expect "keeper rt hang: the token was readable all along ($GAPS empty samples), and the keeper's retry brought a new one, issued by the server, ${TOOK} ms after the refresh was ended" \
		'[ "$GAPS" = 0 ] && [ -n "$NEW" ] && [ "$NEW" != "$tok0" ] && issued "$NEW"'
	expect "keeper rt hang: the keeper is the same process, still the only one" \
		'alive "$kp" && [ "$(keepers)" = "$kp" ]'
	expect "keeper rt hang: the refresh-token store is byte-identical and not marked" \
		'cmp -s "$STORE/pkceclient.refresh" "$T/refresh.before" && [ ! -e "$STORE/pkceclient.reauth" ]'
}
# keeper_faults GRANT FAULT...
keeper_faults() {
	local grant=$1 drv kp tok0 tok1 f0 f1 gaps t0 took fault
	shift
	conf keep "$grant" "$acc_URL" 2 "refresh_margin = 6"
	clear_keys pstest1
	cp "$STORE/pkceclient.refresh" "$T/refresh.before"
	open_held keep pstest1 "keep-$grant"
	drv=$HELD_PID
	wait_ms 3000 '[ -n "$(keepers)" ]'
	kp=$(keepers)
	expect "keeper $grant: the session opens and one keeper runs" \
		'[ "$(held_open "keep-$grant")" = 0 ] && [ -n "$kp" ] && [ "$(nkeepers)" = 1 ]'
	for fault in "$@"; do
		if [ "$fault" = hang ] && [ "$grant" = rt ]; then
			keeper_hang_rt "$kp"
			continue
		fi
		tok0=$(keys | sed -n 2p)
		f0=$(faults_served)
		ps_server_control "$acc_URL" "{\"fault\": \"$fault\", \"fault_count\": 1}"
		# sample the token until a new one is there (at most 15 s: 6 s to the renewal and retries)
		gaps=0 tok1="" t0=$(now_ms)
		while [ $(($(now_ms) - t0)) -lt 15000 ]; do
			tok1=$(keys | sed -n 2p)
			[ -z "$tok1" ] && gaps=$((gaps + 1))
			[ -n "$tok1" ] && [ "$tok1" != "$tok0" ] && break
			sleep 0.1
		done
		took=$(($(now_ms) - t0))
		f1=$(faults_served)
		ps_server_control "$acc_URL" '{"fault": null}'
		expect "keeper $grant $fault: a renewal met the fault (faults served $f0 -> $f1)" '[ "$f1" = $((f0 + 1)) ]'
		expect "keeper $grant $fault: the token was readable all along ($gaps empty samples), and a new one, issued by the server, came after ${took} ms" \
			'[ "$gaps" = 0 ] && [ -n "$tok1" ] && [ "$tok1" != "$tok0" ] && issued "$tok1"'
		expect "keeper $grant $fault: the keeper is the same process, still the only one" \
			'alive "$kp" && [ "$(keepers)" = "$kp" ]'
		expect "keeper $grant $fault: the refresh-token store is byte-identical and not marked" \
			'cmp -s "$STORE/pkceclient.refresh" "$T/refresh.before" && [ ! -e "$STORE/pkceclient.reauth" ]'
	done
	close_held "$drv"
	expect "keeper $grant: after the close the keeper ends and the keys go (within 3 s)" \
		'wait_ms 3000 "! alive $kp && [ -z \"\$(keys)\" ]"'
}
keeper_faults cc malformed_json huge_body hang
keeper_faults rt malformed_json huge_body hang

# ==== 4. servers that are not Spotify: expires_in absent, a string, or over a week
# RFC 6749 5.1 makes expires_in RECOMMENDED: without it the token lives default_expires_in (here
# 900 s), with a notice in the log; "1800" (a string) is 1800 s; 99999999999 s is a week. The
# token_info key says so (expires_at - now), and the key itself lives about as long.
# The notice comes from the keeper or the system service: their syslog is captured (ps_daemon_log)
# for the sessions run through ps_in_ns.
# lives: the token_info key's expires_at less now, in seconds
ps_daemon_log
lives() { echo $(($(keys | sed -n 3p | sed -n 's/.*"expires_at":\([0-9]*\).*/\1/p') - $(date +%s))); }
for grant in cc rt; do
	for c in no_expires:900 string_expires:1800 absurd_expires:604800; do
		fault=${c%%:*} want=${c#*:}
		wait_ms 5000 '[ "$(nkeepers)" = 0 ]' || diag "$grant $fault: a keeper is still there"
		clear_keys pstest1
		conf nons "$grant" "$acc_URL" 3 "default_expires_in = 900" "remove_on_close = no"
		[ "$grant" = cc ] && ps_stop_services # a running one would serve its token, not ask
		n0=$(wc -l <"$PS_DAEMON_LOG")
		f0=$(faults_served)
		ps_server_control "$acc_URL" "{\"fault\": \"$fault\", \"fault_count\": 1}"
		ps_in_ns "$DRIVER" "$T/pam.d" nons pstest1 >"$T/out" 2>&1
		OPEN=$(sed -n 's/^open=\([0-9]*\) .*/\1/p' "$T/out")
		f1=$(faults_served)
		ps_server_control "$acc_URL" '{"fault": null}'
		life=$(lives)
		# (the server's own tokens here live 60 s: a life of $want s is the faulted answer's)
		expect "$grant $fault: the login succeeds (open $OPEN) with the token of that answer (faults served $f0 -> $f1), which lives $want s (token_info: ${life} s)" \
			'[ "$OPEN" = 0 ] && [ "$f1" = $((f0 + 1)) ] && [ -n "$(keys | sed -n 2p)" ] &&
			[ "$life" -le "$want" ] && [ "$life" -ge $((want - 30)) ]'
		case $fault in
		no_expires) notice="has no expires_in: the token is taken to live default_expires_in = 900 s" ;;
		absurd_expires) notice="has expires_in over a week: the token is taken to live a week (604800 s)" ;;
		*) notice="" ;;
		esac
		if [ -n "$notice" ]; then
			wait_ms 3000 'tail -n +$((n0 + 1)) "$PS_DAEMON_LOG" | grep -q "$notice"'
			expect "$grant $fault: one notice in the log says so ($(tail -n +$((n0 + 1)) "$PS_DAEMON_LOG" | grep -c "$notice") line)" \
				'[ "$(tail -n +$((n0 + 1)) "$PS_DAEMON_LOG" | grep -c "$notice")" = 1 ]'
		fi
	done
done
clear_keys pstest1
ps_stop_services # it runs in our mount namespace

expect "no client secret or refresh token in the module's log or the servers' logs" \
	'! grep -q -F -e "$SECRET" -e "$RT" "$PS_SYSLOG_FILE" "$T"/*.log'
[ "$t_failed" = 0 ] || { diag "module log (tail):"; tail -15 "$PS_SYSLOG_FILE" | sed 's/^/# /'; }
diag "the whole script took $(($(now_ms) - t_script)) ms after the lock"
done_testing
