#!/bin/bash
# units.sh: the installed systemd units of the system service (helper/pam_spotify.service.in and
# .socket.in, substituted by make) name what configure chose (the helper, RUNDIR) and the example
# configuration's client_secret_file, pass systemd-analyze verify without a word about them, and
# keep the service's exposure level (systemd-analyze security) below 2.0 and at most the figure
# pam_spotify_helper(8) states. Runs no service: systemd need not be PID 1.
. "$top_srcdir/tests/lib.sh"

command -v systemd-analyze >/dev/null 2>&1 ||
	skip_all "systemd-analyze is not installed (Debian package systemd)"
[ -n "${PS_UNITDIR:-}" ] || skip_all "configured --without-systemdsystemunitdir: no units"
svc=$PS_UNITDIR/pam_spotify.service
sock=$PS_UNITDIR/pam_spotify.socket
[ -f "$svc" ] && [ -f "$sock" ] && [ -x "$PS_HELPER" ] ||
	skip_all "the units or the helper are not installed ($PS_UNITDIR, $PS_HELPER): run make install"

# value FILE KEY: the values of KEY= in FILE, one a line
value() { sed -n "s/^$2=//p" "$1"; }

expect "no @placeholder@ is left in the installed units" '! grep -n "@[a-z_]*@" "$svc" "$sock"'
expect "the service runs the installed helper ($PS_HELPER service)" \
	'[ "$(value "$svc" ExecStart)" = "$PS_HELPER service" ]'
expect "the socket is RUNDIR/service.sock ($PS_RUNDIR/service.sock), mode 0666, in a 0755 directory" \
	'[ "$(value "$sock" ListenStream)" = "$PS_RUNDIR/service.sock" ] &&
	[ "$(value "$sock" SocketMode)" = 0666 ] && [ "$(value "$sock" DirectoryMode)" = 0755 ]'
expect "the service writes nowhere but RUNDIR" '[ "$(value "$svc" ReadWritePaths)" = "$PS_RUNDIR" ]'
expect "the service runs as _pam_spotify, with no capabilities" \
	'[ "$(value "$svc" User)" = _pam_spotify ] && [ "$(value "$svc" Group)" = _pam_spotify ] &&
	[ "$(value "$svc" CapabilityBoundingSet)" = "" ] && grep -q -x "CapabilityBoundingSet=" "$svc"'
secret=$(sed -n 's/^client_secret_file = //p' "$top_srcdir/pam/pam_spotify.conf.example")
expect "LoadCredential= loads the example configuration's client_secret_file (${secret:-none found})" \
	'[ -n "$secret" ] && [ "$(value "$svc" LoadCredential)" = "client_secret:$secret" ]'

# verify: syntax, the ExecStart binary, the socket and service pair. Lines about other units of
# the host (systemd also loads what they depend on) are not ours to fail on.
out=$(systemd-analyze verify --man=no --generators=no "$sock" "$svc" 2>&1)
rc=$?
ours=$(grep -F pam_spotify <<<"$out" | paste -s -d ';')
expect "systemd-analyze verify: no warning about the units (status $rc${ours:+: $ours})" \
	'[ "$rc" -eq 0 ] && [ -z "$ours" ]'

# security: --threshold is on the 0 to 100 scale of which the printed level (0.0 to 10.0) is a
# tenth; above it, the command fails.
sec=$(systemd-analyze security --offline=true --threshold=20 "$svc" 2>&1)
rc=$?
level=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$sec")
documented=$(sed -n 's/.*rates its exposure level \([0-9.]*\).*/\1/p' \
	"$top_srcdir/man/pam_spotify_helper.8")
expect "systemd-analyze security: exposure level ${level:-?} is at most 2.0 (status $rc)" \
	'[ "$rc" -eq 0 ] && [ -n "$level" ]'
expect "exposure level ${level:-?} is at most the ${documented:-?} that pam_spotify_helper(8) states" \
	'awk -v l="$level" -v d="$documented" "BEGIN { exit !(l != \"\" && d != \"\" && l + 0 <= d + 0) }"'
[ "$t_failed" -eq 0 ] || grep -F '✗' <<<"$sec" | sed 's/  */ /g; s/^/# /'
done_testing
