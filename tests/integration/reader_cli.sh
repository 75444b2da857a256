#!/bin/bash
# reader_cli.sh: spotify-token as a data table, in the style of trurl's tests.json: keys planted in
# the user keyring, then arguments -> stdout, stderr and exit code. Each case runs in a fresh
# session keyring (keyctl session -) that does not link the user keyring, so the reader does not
# possess the key and must read it through the user permissions, as a systemd service would. The
# table runs as the current user and, when root, again as pstest1; as root it also checks that
# pstest2 cannot read pstest1's token.
. "$top_srcdir/tests/lib.sh"

for tool in keyctl flock; do
	command -v $tool >/dev/null 2>&1 || skip_all "$tool not found"
done
READER="$top_builddir/keyring/spotify-token"
[ -x "$READER" ] || bail "$READER is not built"

ps_tmpdir
# The shell tests that plant keys in a user keyring take this lock, and so does test_keys when
# it cannot have a user namespace of its own.
ps_lock_keyring
# Test users may not be able to reach the build tree: run a copy.
mkdir "$T/bin" "$T/out"
cp "$READER" "$T/bin/spotify-token"
chmod 755 "$T/bin" "$T/bin/spotify-token"
READER="$T/bin/spotify-token"
ps_valgrind_wrap "$READER"

TOKEN='BQD-abc_123.xyz~+/=='
NOW=$(date +%s)
EXP=$((NOW + 3600))
PAST=$((NOW - 10))
UTC=$(date -u -d "@$EXP" '+%Y-%m-%d %H:%M:%S UTC')
PAST_UTC=$(date -u -d "@$PAST" '+%Y-%m-%d %H:%M:%S UTC')
printf 'keyring = persistent\n' >"$T/persistent.conf"
printf '# the default\nkeyring = user\n' >"$T/user.conf"
printf 'colour = blue\n' >"$T/bad.conf"
chmod 644 "$T"/*.conf

# case.sh FIXTURE OUTDIR NOW READER [ARGS...]: clear the user keyring of spotify keys, plant
# FIXTURE, run the reader with ARGS and keep its stdout, stderr and exit code in OUTDIR. Runs
# inside `keyctl session -`. FIXTURE cleanup only clears (the user and persistent keyrings).
cat >"$T/case.sh" <<'EOF'
fixture=$1 out=$2 now=$3 reader=$4
shift 4
token='BQD-abc_123.xyz~+/=='
info() {
	printf '{"token_type":"Bearer","scope":"user-read-private user-read-email","expires_at":%s,"flow":"client_credentials","client_id":"abc123"}' "$1"
}
# put RING NAME PERM TIMEOUT: the payload on stdin. Setting the permissions needs possession: for
# the user keyring, link it into the session for a moment (the session and a persistent keyring
# from get_persistent @s are possessed already). A failure leaves $out/setup-failed.
put() {
	{
		[ "$1" != @u ] || keyctl link @u @s &&
			id=$(keyctl padd user "$2" "$1") &&
			keyctl setperm "$id" "$3" &&
			keyctl timeout "$id" "$4" &&
			{ [ "$1" != @u ] || keyctl unlink @u @s; }
	} >/dev/null 2>>"$out/setup-err" || echo "put $* ($(tail -1 "$out/setup-err"))" >>"$out/setup-failed"
}
# unplant RING...: no spotify key is left, not even an expired one: padd updates (and revives) a
# key in place, or makes one, and then it goes.
unplant() {
	for ring in "$@"; do
		for k in spotify:access_token spotify:token_info; do
			if id=$(printf x | keyctl padd user "$k" "$ring"); then
				keyctl unlink "$id" "$ring"
			elif id=$(keyctl search "$ring" user "$k"); then
				keyctl unlink "$id" "$ring"
			fi
		done
	done >/dev/null 2>&1
}
persistent() {
	p=$(keyctl get_persistent @s 2>/dev/null) || return 0
	unplant "$p"
	keyctl unlink "$p" @s >/dev/null 2>&1
}
both() { # both RING EXPIRES_AT [PERM]: a token and its info
	info "$2" | put "$1" spotify:token_info 0x3f0b0000 3600
	printf %s "$token" | put "$1" spotify:access_token "${3:-0x3f0b0000}" 3600
}

unplant @u
case $fixture in
cleanup)
	persistent
	exit 0
	;;
none) ;;
valid | linked | revoked) both @u $((now + 3600)) ;;
sessionkey) both @s $((now + 3600)) ;;
expinfo) both @u $((now - 10)) ;;
noinfo) printf %s "$token" | put @u spotify:access_token 0x3f0b0000 3600 ;;
badinfo)
	printf %s "$token" | put @u spotify:access_token 0x3f0b0000 3600
	printf 'not json' | put @u spotify:token_info 0x3f0b0000 3600
	;;
expkey)
	info $((now + 3600)) | put @u spotify:token_info 0x3f0b0000 1
	printf %s "$token" | put @u spotify:access_token 0x3f0b0000 1
	sleep 2
	;;
malformed) printf 'not a token' | put @u spotify:access_token 0x3f0b0000 3600 ;;
oversize) head -c 5000 /dev/zero | tr '\0' a | put @u spotify:access_token 0x3f0b0000 3600 ;;
wrongperm) both @u $((now + 3600)) 0x3f010000 ;;
persistent)
	p=$(keyctl get_persistent @s) && both "$p" $((now + 3600)) && keyctl unlink "$p" @s >/dev/null
	;;
*) echo "no fixture $fixture" >>"$out/setup-failed" ;;
esac
case $fixture in
linked) keyctl link @u @s ;;
revoked) keyctl revoke @s ;; # a process left behind after logout: pam_keyinit revoked its session
esac
if [ -e "$out/setup-failed" ]; then
	echo setup-failed >"$out/rc"
else
	"$reader" "$@" >"$out/stdout" 2>"$out/stderr"
	echo $? >"$out/rc"
fi
[ "$fixture" != persistent ] || persistent
exit 0
EOF

NO_TOKEN="spotify-token: no Spotify token in your keyring: log in again (pam_spotify stores one at session open)"
MALFORMED="spotify-token: key spotify:access_token in the user keyring holds malformed data: log in again or remove it with keyctl unlink"
SEE="; see 'spotify-token --help'"
STATUS_TAIL="scope:      user-read-private user-read-email\nflow:       client_credentials\nclient id:  abc123\n"

# NAME | FIXTURE | ARGUMENTS | EXIT | STDOUT | STDERR
# STDOUT and STDERR are printf %b strings and shell patterns (* for what depends on the clock);
# @TOKEN@ @EXP@ @UTC@ @PAST_UTC@ @T@ are replaced first.
TABLE=$(cat <<EOF
default prints the token | valid | | 0 | @TOKEN@\n |
--header | valid | --header | 0 | Authorization: Bearer @TOKEN@\n |
--json | valid | --json | 0 | {"access_token":"@TOKEN@","token_type":"Bearer","expires_at":@EXP@,"expires_in":*,"scope":"user-read-private user-read-email"}\n |
--env | valid | --env | 0 | export SPOTIFY_ACCESS_TOKEN='@TOKEN@'\n |
--status never prints the token | valid | --status | 0 | token:      present, in the user keyring\ntype:       Bearer\nexpires:    in *, at @UTC@\n$STATUS_TAIL |
--min-valid=N that the token meets | valid | --min-valid=3000 --header | 0 | Authorization: Bearer @TOKEN@\n |
--min-valid N (separate value) | valid | --min-valid 60 | 0 | @TOKEN@\n |
--min-valid=0 | valid | --min-valid=0 --env | 0 | export SPOTIFY_ACCESS_TOKEN='@TOKEN@'\n |
--min-valid longer than the token lives: a renewal is asked for, then exit 3 | valid | --min-valid=7200 | 3 | | spotify-token: *spotify-token: the Spotify token expires in * s, sooner than --min-valid=7200 asks, even after a renewal: tokens do not live that long, or renewal failed (see above)
no token | none | | 1 | | $NO_TOKEN
no token, --status | none | --status | 1 | | $NO_TOKEN
no token, --json | none | --json | 1 | | $NO_TOKEN
expired per token_info | expinfo | --header | 3 | | spotify-token: the Spotify token in your user keyring expired at @PAST_UTC@: log in again
expired per token_info, --status | expinfo | --status | 3 | token:      expired, in the user keyring\ntype:       Bearer\nexpired:    * ago, at @PAST_UTC@\n$STATUS_TAIL |
expired kernel timeout | expkey | | 3 | | spotify-token: the Spotify token in your user keyring has expired: log in again
malformed payload | malformed | | 1 | | $MALFORMED
payload longer than 4096 bytes | oversize | --header | 1 | | $MALFORMED
key with wrong permissions | wrongperm | | 1 | | spotify-token: key spotify:access_token in the user keyring is not readable by you (wrong permissions): remove it (keyctl show @u, then keyctl unlink ID) and log in again
no token_info: default output works | noinfo | | 0 | @TOKEN@\n |
no token_info: --json says what is missing | noinfo | --json | 0 | {"access_token":"@TOKEN@","token_type":null,"expires_at":null,"expires_in":null,"scope":null}\n | spotify-token: spotify:token_info is missing from the user keyring: token_type, expires_at, expires_in and scope are null; log in again to restore it
no token_info: --status says what is missing | noinfo | --status | 0 | token:      present, in the user keyring\ninfo:       spotify:token_info is missing from the user keyring: type, expiry, scope, flow and client id are unknown (log in again to restore it)\n |
no token_info: --min-valid asks for a renewal, then cannot check | noinfo | --min-valid=10 | 3 | | spotify-token: *spotify-token: cannot check --min-valid=10: spotify:token_info is missing from the user keyring; log in again
malformed token_info: --header works | badinfo | --header | 0 | Authorization: Bearer @TOKEN@\n |
malformed token_info: --status says so | badinfo | --status | 0 | token:      present, in the user keyring\ninfo:       spotify:token_info in the user keyring is malformed: type, expiry, scope, flow and client id are unknown (log in again to restore it)\n |
two output modes | valid | --json --header | 2 | | spotify-token: --json and --header cannot be used together; choose one output mode
unknown option | valid | --foo | 2 | | spotify-token: unknown option '--foo'$SEE
unknown option with a value is not echoed | valid | --token=BQDsecret | 2 | | spotify-token: unknown option '--token'$SEE
bad --min-valid | valid | --min-valid=-5 | 2 | | spotify-token: --min-valid needs a whole number of seconds from 0 to 2147483647, not '-5'
login runs the helper (config missing, or no helper installed yet, or root) | valid | login --config=@T@/missing.conf | 7 | | spotify-token: *
logout takes no output option | valid | logout --json | 2 | | spotify-token: logout takes no output option or --min-valid$SEE
--timeout goes with login only | valid | refresh --timeout=5 | 2 | | spotify-token: --timeout goes with login only$SEE
--help | none | --help | 0 | Usage: spotify-token [*\n |
--version | none | --version | 0 | spotify-token (pam_spotify) *\n |
session linking the user keyring | linked | --status | 0 | token:      present, in the user keyring\ntype:       Bearer\nexpires:    in *, at @UTC@\n$STATUS_TAIL |
a key of the session keyring's own | sessionkey | --status | 0 | token:      present, in the session keyring\ntype:       Bearer\nexpires:    in *, at @UTC@\n$STATUS_TAIL |
revoked session keyring still reads the user keyring | revoked | --header | 0 | Authorization: Bearer @TOKEN@\n |
keyring = persistent in --config | persistent | --config=@T@/persistent.conf | 0 | @TOKEN@\n |
keyring = persistent, --status | persistent | --status --config @T@/persistent.conf | 0 | token:      present, in the persistent keyring\ntype:       Bearer\nexpires:    in *, at @UTC@\n$STATUS_TAIL |
keyring = user: no persistent lookup | persistent | --config=@T@/user.conf | 1 | | $NO_TOKEN
--config naming a missing file is an error | persistent | --config=@T@/missing.conf | 7 | | spotify-token: @T@/missing.conf: cannot open (No such file or directory); create it, see pam_spotify.conf(5)
bad config, read after a miss | none | --config=@T@/bad.conf | 7 | | spotify-token: @T@/bad.conf:1: *
bad --config is an error even when the token is found | valid | --config=@T@/bad.conf | 7 | | spotify-token: @T@/bad.conf:1: *
EOF
)

trim() {
	local s=$1
	s=${s#"${s%%[![:space:]]*}"}
	printf '%s' "${s%"${s##*[![:space:]]}"}"
}

fill() {
	local s=$1
	s=${s//@TOKEN@/$TOKEN}
	s=${s//@EXP@/$EXP}
	s=${s//@PAST_UTC@/$PAST_UTC}
	s=${s//@UTC@/$UTC}
	s=${s//@T@/$T}
	printf '%s' "$s"
}

# slurp FILE VAR: the file's contents into VAR, trailing newlines kept.
slurp() {
	IFS= read -r -d '' "$2" <"$1" 2>/dev/null || true
}

# Neither stderr nor --status may show the token, not even inside a * of the expectations.
never_shows_token() { [[ $1 != *"$TOKEN"* ]]; }

# run_table WHO RUNNER...: every row of the table, each in a fresh session keyring.
run_table() {
	local who=$1 name fixture args rc out err argv want_out want_err got_rc got_out got_err o
	shift
	while IFS='|' read -r name fixture args rc out err; do
		name=$(trim "$name")
		fixture=$(trim "$fixture")
		read -r -a argv <<<"$(fill "$(trim "$args")")"
		rc=$(trim "$rc")
		want_out=$(printf '%b' "$(fill "$(trim "$out")")"; printf x)
		want_out=${want_out%x}
		want_err=$(fill "$(trim "$err")")
		[ -n "$want_err" ] && want_err="$want_err"$'\n'
		o=$(mktemp -d "$T/out/case.XXXXXX")
		chmod 777 "$o"
		"$@" bash "$T/case.sh" "$fixture" "$o" "$NOW" "$READER" "${argv[@]}" >/dev/null 2>&1
		got_rc='' got_out='' got_err=''
		slurp "$o/rc" got_rc
		slurp "$o/stdout" got_out
		slurp "$o/stderr" got_err
		# shellcheck disable=SC2053 # the expectations are patterns
		if [ "$got_rc" = "$rc"$'\n' ] && [[ $got_out == $want_out ]] &&
			[[ $got_err == $want_err ]] && never_shows_token "$got_err" &&
			{ [[ $args != *--status* ]] || never_shows_token "$got_out"; }; then
			ok "$who: $name"
		else
			not_ok "$who: $name"
			diag "  exit   ${got_rc%$'\n'}, want $rc $(cat "$o/setup-failed" 2>/dev/null)"
			diag "  stdout $(printf %q "$got_out")"
			diag "  want   $(printf %q "$want_out")"
			diag "  stderr $(printf %q "$got_err")"
			diag "  want   $(printf %q "$want_err")"
		fi
	done <<<"$TABLE"
	"$@" bash "$T/case.sh" cleanup "$T" "$NOW" "$READER" >/dev/null 2>&1
}

# fails COMMAND...: succeeds when COMMAND fails (quietly).
fails() { ! "$@" >/dev/null 2>&1; }

# Whether the user keyring of whoever runs "$@" already holds a Spotify token: then leave it be.
holds_token() {
	"$@" keyctl search @u user spotify:access_token >/dev/null 2>&1 ||
		"$@" keyctl search @u user spotify:token_info >/dev/null 2>&1
}

me=$(id -un)
if holds_token keyctl session -; then
	diag "$me's user keyring holds a Spotify token: the table does not run as $me"
	skip "$me: the table" "the user keyring holds a real Spotify token"
else
	run_table "$me" keyctl session -
fi

# Output errors are reported, not a silent death by SIGPIPE.
{
	sleep 0.3
	"$READER" --help 2>"$T/epipe.err"
	echo $? >"$T/epipe.rc"
} | true
check "a closed pipe on stdout: exit 1 and one line saying so" \
	test "$(cat "$T/epipe.rc"):$(cat "$T/epipe.err")" = \
	"1:spotify-token: cannot write to standard output: Broken pipe"
"$READER" --version >/dev/full 2>"$T/full.err"
check "a full disk on stdout: exit 1 and one line saying so" \
	test "$?:$(cat "$T/full.err")" = \
	"1:spotify-token: cannot write to standard output: No space left on device"

if [ "$(id -u)" -eq 0 ]; then
	ps_ensure_user pstest1
	ps_ensure_user pstest2
	chmod 755 "$T/out"
	run_table pstest1 as_user pstest1

	# A second user cannot read the first user's token, by name or by serial.
	o=$(mktemp -d "$T/out/plant.XXXXXX")
	chmod 777 "$o"
	as_user pstest1 bash -c '
		keyctl link @u @s
		id=$(printf %s "$1" | keyctl padd user spotify:access_token @u) &&
			keyctl setperm "$id" 0x3f0b0000 && keyctl timeout "$id" 60 && echo "$id" >"$2/id"' \
		_ "$TOKEN" "$o" >/dev/null 2>&1
	id=$(cat "$o/id" 2>/dev/null)
	check "pstest1's token was planted ($id)" [ -n "$id" ]
	o=$(mktemp -d "$T/out/cross.XXXXXX")
	chmod 777 "$o"
	as_user pstest2 bash -c '"$1" >"$2/stdout" 2>"$2/stderr"; echo $? >"$2/rc"' _ "$READER" "$o" \
		>/dev/null 2>&1
	check "pstest2's reader finds no token" \
		test "$(cat "$o/rc"):$(cat "$o/stdout"):$(cat "$o/stderr")" = "1::$NO_TOKEN"
	check "pstest2 cannot read pstest1's key by serial" fails as_user pstest2 keyctl pipe "$id"
	check "pstest1 still reads it, without possessing it" \
		test "$(as_user pstest1 "$READER" 2>/dev/null)" = "$TOKEN"
	as_user pstest1 keyctl unlink "$id" @u >/dev/null 2>&1
fi

done_testing
