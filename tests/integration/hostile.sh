#!/bin/bash
# hostile.sh: hostile local input through real PAM sessions, the real keyring and the installed
# helper, keeper and reader. Each case ends in one clear log or stderr line that says what to do,
# loses nothing, does not hang and does not crash (a crash would show as "exit -1" or a helper
# killed by a signal):
#  - configuration files the module must refuse: writable by others, owned by a user, in a
#    directory others may write, a FIFO, a control character in a module argument;
#  - client secret files that are not a plain root-only file (a FIFO with a writer, a directory,
#    a device, 1 MiB, two lines, empty): refused at once, the accounts server never asked;
#  - the refresh-token store of a user in every hostile state (truncated, empty, 1 MiB, a link,
#    a FIFO, another owner, open to others, a file or a link where its directory belongs, a
#    linked lock file): the user's keeper, which owns the store and makes the login's request,
#    refuses it, leaves it byte for byte as it was, writes nothing through a link and makes no
#    refresh request, and the open logs its one line with the keeper's exit code; spotify-token
#    refresh (no keeper runs: it refreshes directly) says the same;
#  - keys planted by the user under our names, with garbage or with other permissions: the reader
#    says what is wrong with the exit status spotify-token(1) promises, and a session open (its
#    keeper) puts a correct key in their place (0x3f0b0000, the server's token) or, for a key
#    nobody may view or write, says how to remove it;
#  - the login listener and the PAM conversation given hostile requests and pasted addresses
#    (duplicated parameters, another host, port, path or state, oversized): each refused, and
#    the right one still wins.
# Changed with the keeper: a store's refusal is the keeper's answer, "(exit 7)", not the
# helper's "(helper exit 7)"; the store's bookkeeping is only CLIENT.lock (no session registry or
# keeper pid file there any more).
. "$top_srcdir/tests/lib.sh"
# expect, and on failure show what the module logged and the driver printed
expect() {
	if eval "$2"; then
		ok "$1"
	else
		not_ok "$1"
		[ -s "${PS_SYSLOG_FILE:-/dev/null}" ] && sed 's/^/#   log: /' "$PS_SYSLOG_FILE" | cut -c1-400 | head -6
		[ -s "$T/out" ] && sed 's/^/#   out: /' "$T/out" | cut -c1-300 | head -8
	fi
}

need_root
ps_need_install
ps_tmpdir
ps_lock_keyring
U=pstest1
ps_ensure_user $U
ps_ensure_user pstest2
UID1=$(id -u $U)
GID1=$(id -g $U)
UHOME=$(getent passwd $U | cut -d: -f6)
STORE="$UHOME/.local/state/spotify-token"
PKCE=hostilepkce # client IDs of our own: the store files are ours alone
CC=hostilecc
ps_login_fixture HOSTILE $CC $PKCE

# conf FILE FLOW [extra lines...]: our client of that flow, timeout 5
conf() {
	local f=$1 flow=$2
	shift 2
	if [ "$flow" = pkce ]; then
		set -- "client_id = $PKCE" "scopes = user-read-email" "$@"
	else
		set -- "client_id = $CC" "client_secret_file = $T/secret" "$@"
	fi
	ps_conf "$f" "flow = $flow" "$@" "timeout = 5" "connect_timeout = 2"
}
conf "$T/cc.conf" client_credentials "remove_on_close = no"
conf "$T/pkce.conf" pkce "enroll = never"
conf "$T/prompt.conf" pkce "enroll = prompt"
# service NAME CONF [module arguments...]
service() { ps_pam_service "$T/pam.d" "$@"; }
service cc "$T/cc.conf"
service pkce "$T/pkce.conf"
service prompt "$T/prompt.conf"

# session SERVICE [-- COMMAND...]: one open/close as $U; sets OPEN, MS. The log starts empty.
session() {
	: >"$PS_SYSLOG_FILE"
	"$DRIVER" "$T/pam.d" "$1" $U "${@:2}" >"$T/out" 2>"$T/err"
	OPEN=$(sed -n 's/^open=\([0-9]*\) .*/\1/p' "$T/out")
	MS=$(sed -n 's/^open=[0-9]* ms=\([0-9]*\).*/\1/p' "$T/out")
}
# open_logged TEXT: exactly one line of the log holds TEXT, besides what the close says.
open_logged() {
	[ "$(grep -F -- "$1" "$PS_SYSLOG_FILE" | grep -vc ": close: ")" = 1 ]
}
# module_logged TEXT: a configuration error, logged once for the session in one line holding TEXT
# (the open logs it; the close, meeting the very same error, stays quiet), and nothing else.
module_logged() {
	[ "$(wc -l <"$PS_SYSLOG_FILE")" = 1 ] && [ "$(grep -cF -- "$1" "$PS_SYSLOG_FILE")" = 1 ]
}
stats() { ps_server_stats "$acc_URL" | ps_json "$1"; }
requests() { stats 'j["token_requests"]'; }
# as_u COMMAND...: as_user $U, without keyctl's "Joined session keyring" line on stderr.
as_u() { as_user $U sh -c 'exec 2>&3 3>&-; exec "$@"' sh "$@" 3>&2 2>/dev/null; }
user_key() { as_u keyctl search @u user "$1" 2>/dev/null; }
clear_keys() {
	local id
	for k in spotify:access_token spotify:token_info; do
		id=$(user_key $k) && [ -n "$id" ] && as_u keyctl unlink "$id" @u >/dev/null 2>&1
	done
	return 0
}
reader() { as_u "$PS_READER" "$@"; }
# no_control_bytes FILE: nothing but printable ASCII, tabs and newlines.
no_control_bytes() { ! LC_ALL=C grep -q '[^[:print:][:space:]]' "$1" && ! LC_ALL=C grep -q $'\r' "$1"; }
clear_keys

# ---------------------------------------------------------------------------------------------
# Configuration files: the module reads them as root and refuses any that others could write.
before=$(requests)
for kind in world-writable group-writable user-owned user-link ww-dir fifo; do
	f="$T/cfg-$kind/pam_spotify.conf"
	mkdir -p "$T/cfg-$kind"
	conf "$T/cfg-$kind/good.conf" client_credentials
	want="$f: writable by others or owned by another user; chown root:root and chmod 644 it"
	case $kind in
	world-writable) cp "$T/cfg-$kind/good.conf" "$f"; chmod 666 "$f" ;;
	group-writable) cp "$T/cfg-$kind/good.conf" "$f"; chmod 664 "$f"; chgrp "$GID1" "$f" ;;
	user-owned) cp "$T/cfg-$kind/good.conf" "$f"; chown $U "$f" ;;
	user-link) # a link to a file of the user's: the file is what counts
		cp "$T/cfg-$kind/good.conf" "$T/cfg-$kind/users.conf"
		chown $U "$T/cfg-$kind/users.conf"
		ln -s "$T/cfg-$kind/users.conf" "$f" ;;
	ww-dir) # a good file in a directory anyone may write (no sticky bit): anyone could swap it
		cp "$T/cfg-$kind/good.conf" "$f"
		chmod 777 "$T/cfg-$kind"
		want="$f: directory $T/cfg-$kind (mode 0777, uid 0) lets others replace the file; chown root:root and chmod 755 it, or move the file" ;;
	fifo) # would block a plain open: the login must not wait for a writer
		mkfifo -m 644 "$f"
		want="$f: not a regular file" ;;
	esac
	service cfg "$f"
	session cfg
	expect "config file $kind: the open fails at once (${MS} ms) and the log says what to do" \
		'[ "$OPEN" = 14 ] && [ "$MS" -lt 2000 ] && module_logged "$want"'
done
expect "refused config files: the helper never ran (no token request)" '[ "$(requests)" = "$before" ]'

# the same file in a sticky world-writable directory (like /tmp) is fine: others cannot replace it
mkdir "$T/cfg-sticky"
chmod 1777 "$T/cfg-sticky"
conf "$T/cfg-sticky/pam_spotify.conf" client_credentials "remove_on_close = no"
service cfg "$T/cfg-sticky/pam_spotify.conf"
session cfg
expect "config file in a sticky world-writable directory: accepted, a token is stored" \
	'[ "$OPEN" = 0 ] && [ -n "$(user_key spotify:access_token)" ]'
clear_keys

# a control character in a module argument: refused, quoted without it, file and line not needed
service ctl "$T/cc.conf" $'scopes=a\033[31mb'
session ctl
expect "module argument with an escape character: refused with a log line free of control bytes" \
	'[ "$OPEN" = 14 ] && module_logged "module argument '"'"'scopes=a?[31mb'"'"': the value of '"'"'scopes'"'"' holds a control character (0x1b)" && no_control_bytes "$PS_SYSLOG_FILE"'
# a carriage return inside a value in the file: refused, the log line names file and line
printf 'client_id = %s\nclient_secret_file = %s\rx\n' "$CC" "$T/secret" >"$T/cr.conf"
chmod 644 "$T/cr.conf"
service cr "$T/cr.conf"
session cr
expect "config value with a carriage return inside: refused as $T/cr.conf:2, log free of control bytes" \
	'[ "$OPEN" = 14 ] && module_logged "$T/cr.conf:2: the value of '"'"'client_secret_file'"'"' holds a control character (0x0d)" && no_control_bytes "$PS_SYSLOG_FILE"'
# a 5000-character value: the line is refused and the log line stays short
{ printf 'client_id = %s\nscopes = ' "$CC"; head -c 5000 /dev/zero | tr '\0' a; echo; } >"$T/long.conf"
chmod 644 "$T/long.conf"
service long "$T/long.conf"
session long
expect "config value of 5000 characters: refused as $T/long.conf:2, one short log line" \
	'[ "$OPEN" = 14 ] && module_logged "$T/long.conf:2: line longer than 4096 characters" && [ "$(wc -c <"$PS_SYSLOG_FILE")" -lt 300 ]'

# ---------------------------------------------------------------------------------------------
# Client secret files the module reads as root: only a regular root-only file, never blocking.
mkfifo -m 600 "$T/secret-fifo"
exec 7<>"$T/secret-fifo" # a writer that never writes: a blocking read would wait for ever
mkdir -m 700 "$T/secret-dir"
head -c 1048576 /dev/zero | tr '\0' s >"$T/secret-big"
printf 'one\ntwo\n' >"$T/secret-twolines"
: >"$T/secret-empty"
chmod 600 "$T/secret-big" "$T/secret-twolines" "$T/secret-empty"
before=$(requests)
for spec in "secret-fifo:is not a regular file" "secret-dir:is not a regular file" \
	"/dev/zero:is not a regular file" "secret-big:is too large" \
	"secret-twolines:must hold the secret alone on one line" "secret-empty:is empty"; do
	f=${spec%%:*} want=${spec#*:}
	[ "${f#/}" = "$f" ] && f="$T/$f"
	conf "$T/sec.conf" client_credentials
	sed -i "s|^client_secret_file = .*|client_secret_file = $f|" "$T/sec.conf"
	service sec "$T/sec.conf"
	session sec
	expect "secret file ${f##*/}: refused at once (${MS} ms), the log names it: '$want'" \
		'[ "$OPEN" = 14 ] && [ "$MS" -lt 2000 ] && open_logged "client secret file $f $want" && [ -z "$(user_key spotify:access_token)" ]'
done
expect "refused secret files: the accounts server was never asked" '[ "$(requests)" = "$before" ]'
exec 7>&-

# ---------------------------------------------------------------------------------------------
# The refresh-token store, as the user made or broke it. A session open must refuse a store it
# cannot trust, leave it as it was (the user decides: spotify-token logout, then login), write
# nothing through a link, ask the server nothing, and say what to do in one log line.
mint() { # a refresh token the server knows for $PKCE
	curl -sS --fail --cacert "$CA" -H 'Content-Type: application/json' \
		--data "{\"client_id\": \"$PKCE\", \"scope\": \"user-read-email\", \"public\": true}" \
		"$acc_URL/__refresh_token" | ps_json 'j["refresh_token"]'
}
# good_store: a private store directory with a valid refresh token for $PKCE.
good_store() {
	as_u rm -rf "$STORE"
	as_u mkdir -p -m 700 "$STORE"
	as_u sh -c 'umask 077; printf "pam_spotify-refresh 1\n%s\n" "$1" >"$2"' _ "$(mint)" "$STORE/$PKCE.refresh"
}
good_store
clear_keys
session pkce -- "$PS_READER"
expect "store: a valid store gives a session token (the baseline for what follows)" \
	'[ "$OPEN" = 0 ] && grep -qx "$(stats "j[\"last_access_token\"]")" "$T/out"'
clear_keys

# snapshot: what the store (and a link target) looks like, to compare after the session.
# The lock is the store's bookkeeping; the rest is the user's.
snapshot() {
	find "$STORE" "$STORE/$PKCE.refresh" "$UHOME/elsewhere" -maxdepth 0 -printf '%p %y %m %u %s %l\n' 2>&1
	find "$UHOME/elsewhere" -printf '%p %y %m %u %s %l\n' | sort
	for f in "$STORE/$PKCE.refresh" "$UHOME/elsewhere/target"; do
		[ -f "$f" ] && sha256sum <"$f"
	done
}
as_u mkdir -p -m 700 "$UHOME/elsewhere"
as_u sh -c 'umask 077; printf "pam_spotify-refresh 1\nAQDtargetSENTINEL\n" >"$1"' _ "$UHOME/elsewhere/target"
STORE_FILE="$STORE/$PKCE.refresh"
RELOGIN="run spotify-token logout, then spotify-token login"
for kind in truncated empty 1MiB symlink symlink-to-root-file fifo root-owned other-user mode-0644 \
	dir-is-a-file dir-is-a-symlink dir-mode-0755 lock-symlink; do
	good_store
	case $kind in
	truncated)
		as_u sh -c 'printf "pam_spotify-refresh 1\nAQDhalf" >"$1"' _ "$STORE_FILE"
		want="refresh-token store file $STORE_FILE is malformed (truncated): $RELOGIN" ;;
	empty)
		as_u sh -c ': >"$1"' _ "$STORE_FILE"
		want="refresh-token store file $STORE_FILE is malformed (empty): $RELOGIN" ;;
	1MiB)
		as_u sh -c 'head -c 1048576 /dev/zero | tr "\0" A >"$1"' _ "$STORE_FILE"
		want="refresh-token store file $STORE_FILE is too large (1048576 bytes, at most 8192): $RELOGIN" ;;
	symlink)
		as_u ln -sf "$UHOME/elsewhere/target" "$STORE_FILE"
		want="refresh-token store file $STORE_FILE is a symbolic link: $RELOGIN" ;;
	symlink-to-root-file)
		as_u ln -sf /etc/shadow "$STORE_FILE"
		want="refresh-token store file $STORE_FILE is a symbolic link: $RELOGIN" ;;
	fifo)
		as_u rm -f "$STORE_FILE"
		as_u mkfifo -m 600 "$STORE_FILE"
		want="refresh-token store file $STORE_FILE is not a regular file: $RELOGIN" ;;
	root-owned)
		chown root "$STORE_FILE"
		want="refresh-token store file $STORE_FILE belongs to uid 0, not to you (uid $UID1): $RELOGIN" ;;
	other-user)
		chown pstest2 "$STORE_FILE"
		want="refresh-token store file $STORE_FILE belongs to uid $(id -u pstest2), not to you (uid $UID1): $RELOGIN" ;;
	mode-0644)
		as_u chmod 644 "$STORE_FILE"
		want="refresh-token store file $STORE_FILE has mode 0644 (open to group or others): $RELOGIN" ;;
	dir-is-a-file)
		as_u rm -rf "$STORE"
		as_u sh -c 'echo "not a directory" >"$1"' _ "$STORE"
		want="refresh-token store path $STORE is not a directory: move it away so the store can create a directory there" ;;
	dir-is-a-symlink)
		as_u rm -rf "$STORE"
		as_u ln -s "$UHOME/elsewhere" "$STORE"
		want="refresh-token store path $STORE is a symbolic link, which the store never follows: replace it with a directory" ;;
	dir-mode-0755)
		as_u chmod 755 "$STORE"
		want="refresh-token store $STORE has mode 0755: run chmod 700 $STORE" ;;
	lock-symlink)
		as_u ln -s "$UHOME/elsewhere/planted-lock" "$STORE/$PKCE.lock"
		want="refresh-token store file $STORE/$PKCE.lock is a symbolic link: remove it" ;;
	esac
	snap=$(snapshot)
	before=$(requests)
	session pkce
	expect "store $kind: the open fails (${MS} ms) with one log line: '$want'" \
		'[ "$OPEN" = 14 ] && [ "$MS" -lt 3000 ] && open_logged "$want" && open_logged "(exit 7)"'
	expect "store $kind: left as it was, nothing written through a link, no refresh, no key; the keeper ended with the session" \
		'[ "$(snapshot)" = "$snap" ] && [ "$(requests)" = "$before" ] && [ -z "$(user_key spotify:access_token)" ] && [ ! -e "$UHOME/elsewhere/planted-lock" ] &&
		 wait_ms 3000 "[ \"\$(ps_nkeepers $U)\" = 0 ]"'
	case $kind in truncated | symlink | dir-is-a-file)
		reader refresh --config="$T/pkce.conf" >"$T/r.out" 2>"$T/r.err"
		rc=$?
		expect "store $kind: spotify-token refresh exits 7 with the same one line" \
			'[ $rc = 7 ] && [ "$(wc -l <"$T/r.err")" = 1 ] && grep -qF -- "spotify-token: refresh: $want" "$T/r.err" && [ "$(snapshot)" = "$snap" ]'
		;;
	esac
done
as_u rm -rf "$STORE" "$UHOME/elsewhere"

# ---------------------------------------------------------------------------------------------
# Keys planted by the user under our names. The reader runs outside the session (it does not
# possess the key, like a service), so what it may read is what the user permissions allow.
# plant NAME PERM PAYLOAD: the key's serial.
plant() {
	as_u bash -c 'keyctl link @u @s >/dev/null && id=$(printf %s "$3" | keyctl padd user "$1" @u) &&
		keyctl timeout "$id" 600 && keyctl setperm "$id" "$2" && keyctl unlink @u @s >/dev/null && echo "$id"' \
		_ "$1" "$2" "$3"
}
describe() { as_u keyctl rdescribe "$1" 2>/dev/null; }
count_named() { as_u bash -c 'for k in $(keyctl rlist @u); do keyctl rdescribe "$k" 2>/dev/null; echo; done' | grep -c ";$1\$"; }
RIGHT="user;$UID1;$GID1;3f0b0000"
MALFORMED="spotify-token: key spotify:access_token in the user keyring holds malformed data: log in again or remove it with keyctl unlink"
UNREADABLE="spotify-token: key spotify:access_token in the user keyring is not readable by you (wrong permissions): remove it (keyctl show @u, then keyctl unlink ID) and log in again"
for spec in "garbage:3f0b0000:not a token!:1:$MALFORMED" \
	"possessor-only:3f000000:BQDplanted:1:$UNREADABLE" \
	"no-setattr:1f000000:BQDplanted:1:$UNREADABLE" \
	"write-only:04000000:BQDplanted:1:$UNREADABLE" \
	"all-for-everyone:3f3f3f3f:BQDplanted:0:"; do
	IFS=: read -r kind perm payload want_rc want_err <<<"$spec"
	clear_keys
	old=$(plant spotify:access_token "0x$perm" "$payload")
	reader >"$T/r.out" 2>"$T/r.err"
	rc=$?
	if [ -n "$want_err" ]; then
		expect "planted token $kind (0x$perm): the reader exits $want_rc with one line saying what to do" \
			'[ -n "$old" ] && [ $rc = "$want_rc" ] && [ ! -s "$T/r.out" ] && [ "$(cat "$T/r.err")" = "$want_err" ]'
	else
		expect "planted token $kind (0x$perm): the reader reads it, as the permissions allow" \
			'[ -n "$old" ] && [ $rc = 0 ] && [ "$(cat "$T/r.out")" = "$payload" ]'
	fi
	session cc
	new=$(user_key spotify:access_token)
	tok=$(stats 'j["last_access_token"]')
	# a key that is ours in all but content is updated in place; any other is replaced
	expect "planted token $kind: a session open leaves a key of its own there (3f0b0000, the server's token)" \
		'[ "$OPEN" = 0 ] && [ -n "$new" ] && { [ "$new" != "$old" ] || [ $perm = 3f0b0000 ]; } && [ "$(describe "$new")" = "$RIGHT;spotify:access_token" ] && [ "$(reader)" = "$tok" ] && [ "$(count_named spotify:access_token)" = 1 ]'
	as_u keyctl unlink "$old" @u >/dev/null 2>&1
done

# token_info planted: the reader reports it, the session replaces it
for spec in 'garbage|3f0b0000|{"not":"ours"}|spotify:token_info in the user keyring is malformed' \
	'possessor-only|3f000000|{}|spotify:token_info in the user keyring is not readable by you (wrong permissions)'; do
	IFS='|' read -r kind perm payload want <<<"$spec"
	clear_keys
	session cc # a good token, then the planted info over it
	as_u keyctl unlink "$(user_key spotify:token_info)" @u >/dev/null
	old=$(plant spotify:token_info "0x$perm" "$payload")
	reader --status >"$T/r.out" 2>"$T/r.err"
	rc=$?
	expect "planted token_info $kind: --status exits 0 and says '$want'" \
		'[ $rc = 0 ] && grep -qF "info:       $want: type, expiry, scope, flow and client id are unknown (log in again to restore it)" "$T/r.out"'
	session cc
	new=$(user_key spotify:token_info)
	expect "planted token_info $kind: a session open replaces it (3f0b0000, --status whole again)" \
		'[ "$OPEN" = 0 ] && { [ "$new" != "$old" ] || [ $perm = 3f0b0000 ]; } && [ "$(describe "$new")" = "$RIGHT;spotify:token_info" ] && reader --status | grep -q "^flow: *client_credentials" && [ "$(count_named spotify:token_info)" = 1 ]'
	as_u keyctl unlink "$old" @u >/dev/null 2>&1
done

# a key nobody may view or write (permissions 0) cannot be replaced: both programs say so
clear_keys
old=$(plant spotify:access_token 0 BQDplanted)
reader >"$T/r.out" 2>"$T/r.err"
rc=$?
expect "planted token nobody may use (0): the reader exits 1 and says how to remove it" \
	'[ -n "$old" ] && [ $rc = 1 ] && [ "$(cat "$T/r.err")" = "$UNREADABLE" ]'
session cc
expect "planted token nobody may use (0): the session open fails with one log line that says keyctl unlink" \
	'[ "$OPEN" = 14 ] && open_logged "storing spotify:access_token in the user keyring: permission denied (EACCES)" && open_logged "remove it with keyctl unlink, then log in again"'
as_u keyctl unlink "$old" @u >/dev/null 2>&1
session cc
expect "once the user unlinked it, the next session open stores a token" \
	'[ "$OPEN" = 0 ] && [ "$(describe "$(user_key spotify:access_token)")" = "$RIGHT;spotify:access_token" ]'
clear_keys

# ---------------------------------------------------------------------------------------------
# spotify-token login's listener, sent hostile requests before the real redirect.
as_u rm -rf "$STORE"
login_start() {
	rm -f "$T/paste" "$T/login.err"
	mkfifo -m 666 "$T/paste"
	as_u "$PS_READER" login --config="$T/pkce.conf" --timeout=30 <"$T/paste" >"$T/login.out" 2>"$T/login.err" &
	LOGIN_PID=$!
	exec 8>"$T/paste"
	URL=""
	for _ in $(seq 100); do
		URL=$(grep -o 'https://[^ ]*' "$T/login.err" | head -1)
		[ -n "$URL" ] && break
		sleep 0.1
	done
}
login_wait() {
	exec 8>&-
	wait "$LOGIN_PID"
	LOGIN_RC=$?
}
browse() { curl -s --cacert "$CA" -o /dev/null -w '%{redirect_url}' "$1"; }
# status CURL-ARGS...: the HTTP status the listener gives the user's own curl (it serves no other uid)
status() { as_u curl -s -o /dev/null -w '%{http_code}' "$@"; }
codes() { stats 'j["by_grant"].get("authorization_code", 0)'; }
refused() { stats 'sum(j["errors"].values())'; }
codes_before=$(codes) refused_before=$(refused)
login_start
STATE=$(printf '%s' "$URL" | grep -o 'state=[^&]*' | cut -d= -f2)
PORT=$(printf '%s' "$URL" | grep -o 'redirect_uri=[^&]*' | sed 's/.*%3A\([0-9]*\)%2F.*/\1/')
L="http://127.0.0.1:$PORT"
s_dup=$(status "$L/callback?code=AQDforged&state=$STATE&code=AQDother")
s_dupstate=$(status "$L/callback?code=AQDforged&state=$STATE&state=$STATE")
s_state=$(status "$L/callback?code=AQDforged&state=AAAAAAAAAAAAAAAAAAAAAA")
s_path=$(status "$L/callback/?code=AQDforged&state=$STATE")
s_host=$(status -H "Host: evil.example:$PORT" "$L/callback?code=AQDforged&state=$STATE")
s_big=$(status -H "X-Pad: $(head -c 9000 /dev/zero | tr '\0' a)" "$L/callback?code=AQDforged&state=$STATE")
alive=no
kill -0 "$LOGIN_PID" 2>/dev/null && alive=yes
cb=$(browse "$URL")
s_good=$(status "$cb")
login_wait
expect "listener: duplicated code or state, another state: 400 ($s_dup $s_dupstate $s_state)" \
	'[ "$s_dup" = 400 ] && [ "$s_dupstate" = 400 ] && [ "$s_state" = 400 ]'
expect "listener: another path 404, another Host 400, a 9 KiB header 431 ($s_path $s_host $s_big)" \
	'[ "$s_path" = 404 ] && [ "$s_host" = 400 ] && [ "$s_big" = 431 ]'
expect "listener: after all that the login still waits, and the real redirect wins" \
	'[ "$alive" = yes ] && [ "$s_good" = 200 ] && [ "$LOGIN_RC" = 0 ] && [ -n "$(user_key spotify:access_token)" ]'
expect "listener: one code exchanged (the real one), none refused: no forged code reached the server" \
	'[ "$(codes)" = $((codes_before + 1)) ] && [ "$(refused)" = "$refused_before" ]'
as_u rm -rf "$STORE"
clear_keys

# ---------------------------------------------------------------------------------------------
# Addresses pasted at the login prompt (PAM conversation): each answer comes from a file line.
# answers LINE...: what the user pastes at each prompt; @STATE@ is this attempt's state.
answers() {
	printf '%s\n' "$@" >"$T/answers"
	: >"$T/answer.n"
}
export PS_CONV_ANSWER="st=\$(grep -o 'state=[^&]*' | head -1 | cut -d= -f2); n=\$(wc -l <$T/answer.n); echo >>$T/answer.n; sed -n \"\$((n + 1))p\" $T/answers | sed \"s/@STATE@/\$st/g\""
long9k="http://127.0.0.1/callback?code=x&state=@STATE@&pad=$(head -c 9000 /dev/zero | tr '\0' p)"
long5k="http://127.0.0.1/callback?code=x&state=@STATE@&pad=$(head -c 5000 /dev/zero | tr '\0' p)"
answers "$long9k" "$long5k" "http://127.0.0.1:43127/callback?code=AQDforged&state=@STATE@&code=AQDother"
codes_before=$(codes) refused_before=$(refused)
session prompt
TOO_LONG="conv: that is too long to be the redirected address (at most 4095 characters); paste only the address from the browser's address bar"
expect "pasted: 8 KiB and 5000 characters are each called too long, and asked for again" \
	'[ "$(grep -cxF "$TOO_LONG" "$T/out")" = 2 ] && [ "$(grep -c "^conv prompt:" "$T/out")" = 3 ]'
expect "pasted: a duplicated code is refused, not 'first wins'" \
	'grep -q "^conv: the redirect has more than one code parameter" "$T/out"'
expect "pasted: three bad answers end the enrollment (PAM_IGNORE): nothing stored, no code exchanged" \
	'[ "$OPEN" = 0 ] && open_logged "the pasted address was not accepted: the redirect has more than one code" && [ ! -e "$STORE/$PKCE.refresh" ] && [ "$(codes)" = "$codes_before" ] && [ -z "$(user_key spotify:access_token)" ]'
# another host and another state, then the real one (the browser's redirect), which wins
export PS_CONV_ANSWER="url=\$(grep -o 'https://[^ ]*' | head -1); st=\$(printf %s \"\$url\" | grep -o 'state=[^&]*' | cut -d= -f2); n=\$(wc -l <$T/answer.n); echo >>$T/answer.n; if [ \$n -lt 2 ]; then sed -n \"\$((n + 1))p\" $T/answers | sed \"s/@STATE@/\$st/g\"; else curl -s --cacert $CA -o /dev/null -w '%{redirect_url}' \"\$url\"; fi"
answers "http://127.0.0.2/callback?code=AQDforged&state=@STATE@" "http://127.0.0.1/callback?code=AQDforged&state=AAAAAAAAAAAAAAAAAAAAAA"
session prompt -- "$PS_READER"
expect "pasted: another host, then another login's state, are each explained" \
	'grep -q "^conv: the pasted URL is not the redirect" "$T/out" && grep -q "^conv: that address belongs to another login attempt" "$T/out"'
expect "pasted: the third, real address still connects the user and the session has a token" \
	'[ "$OPEN" = 0 ] && [ -e "$STORE/$PKCE.refresh" ] && grep -qx "$(stats "j[\"last_access_token\"]")" "$T/out"'
expect "pasted: one code exchanged (the real one), none refused; no forged code in a log" \
	'[ "$(codes)" = $((codes_before + 1)) ] && [ "$(refused)" = "$refused_before" ] && ! grep -q "AQDforged\|AQDother" "$PS_SYSLOG_FILE" "$T/out"'
unset PS_CONV_ANSWER

expect "the client secret is in no log or output" '! grep -qF "$SECRET" "$PS_SYSLOG_FILE" "$T/out" "$T/err" "$T/acc.log"'
clear_keys
as_u rm -rf "$STORE"
done_testing
