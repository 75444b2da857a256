#!/bin/sh
# tests/tls/mkcerts.sh DIR: create throwaway TLS material for the tests in DIR.
#
# Owns the test PKI, nothing else. All keys are EC P-256 (fast to generate) and world-readable:
# this is test material only. Overwrites whatever is already in DIR.
#
#   ca.pem, ca.key                  test CA (30 days)
#   server.pem, server.key          from the CA; SAN IP:127.0.0.1, IP:::1, DNS:localhost; serverAuth
#   wrongname.pem, wrongname.key    from the CA; SAN DNS:other.example only (wrong name for 127.0.0.1)
#   selfsigned.pem, selfsigned.key  self-signed for 127.0.0.1 (not from the CA)
#   expired.pem, expired.key        from the CA for 127.0.0.1, but expired in the past
#
# Quiet on success; on failure prints a message to stderr and exits non-zero.

set -eu

die() {
	echo "mkcerts.sh: $*" >&2
	exit 1
}

[ $# -eq 1 ] || die "usage: mkcerts.sh DIR"
command -v openssl >/dev/null 2>&1 || die "openssl not found"

D=$1
mkdir -p "$D" || die "cannot create $D"
D=$(cd "$D" && pwd)
W=$(mktemp -d "${TMPDIR:-/tmp}/mkcerts.XXXXXX") || die "cannot create a temporary directory"
trap 'rm -rf "$W"' EXIT

# run COMMAND...: run an openssl command quietly; show its output only if it fails.
run() {
	"$@" >"$W/out.log" 2>&1 || {
		cat "$W/out.log" >&2
		die "failed: $*"
	}
}

# newkey NAME: an EC P-256 private key in $D/NAME.key.
newkey() {
	run openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$D/$1.key"
	chmod 0644 "$D/$1.key"
}

# extfile NAME SAN: an x509v3 extension file for a TLS server certificate.
extfile() {
	cat >"$W/$1.ext" <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = $2
EOF
}

# casigned NAME CN SAN: a server certificate for NAME signed by the test CA (30 days).
casigned() {
	newkey "$1"
	extfile "$1" "$3"
	run openssl req -new -key "$D/$1.key" -subj "/O=pam_spotify tests/CN=$2" -out "$W/$1.csr"
	run openssl x509 -req -in "$W/$1.csr" -CA "$D/ca.pem" -CAkey "$D/ca.key" \
		-set_serial "0x$(openssl rand -hex 16)" -days 30 -sha256 \
		-extfile "$W/$1.ext" -out "$D/$1.pem"
}

make_ca() {
	newkey ca
	run openssl req -x509 -new -key "$D/ca.key" -sha256 -days 30 \
		-subj "/O=pam_spotify tests/CN=pam_spotify test CA" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" \
		-addext "subjectKeyIdentifier=hash" \
		-out "$D/ca.pem"
}

make_selfsigned() {
	newkey selfsigned
	run openssl req -x509 -new -key "$D/selfsigned.key" -sha256 -days 30 \
		-subj "/O=pam_spotify tests/CN=127.0.0.1" \
		-addext "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost" \
		-addext "extendedKeyUsage=serverAuth" \
		-out "$D/selfsigned.pem"
}

# make_expired: OpenSSL 3.0's `x509 -req` cannot back-date, so use `openssl ca` with a throwaway
# minimal configuration and explicit start/end dates in the past.
make_expired() {
	newkey expired
	extfile expired "IP:127.0.0.1,IP:::1,DNS:localhost"
	: >"$W/index.txt"
	openssl rand -hex 16 >"$W/serial"
	cat >"$W/ca.cnf" <<EOF
[ ca ]
default_ca = test_ca
[ test_ca ]
database = $W/index.txt
new_certs_dir = $W
serial = $W/serial
certificate = $D/ca.pem
private_key = $D/ca.key
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none
[ policy_any ]
organizationName = optional
commonName = supplied
EOF
	run openssl req -new -key "$D/expired.key" -subj "/O=pam_spotify tests/CN=127.0.0.1" \
		-out "$W/expired.csr"
	run openssl ca -batch -notext -config "$W/ca.cnf" \
		-startdate 20200101000000Z -enddate 20200102000000Z \
		-extfile "$W/expired.ext" -in "$W/expired.csr" -out "$D/expired.pem"
}

# check: the CA verifies the good certificates, and does not verify the bad ones.
check() {
	for n in server wrongname; do
		run openssl verify -CAfile "$D/ca.pem" -purpose sslserver "$D/$n.pem"
	done
	if openssl verify -CAfile "$D/ca.pem" "$D/selfsigned.pem" >/dev/null 2>&1; then
		die "selfsigned.pem unexpectedly verifies against the CA"
	fi
	openssl verify -CAfile "$D/ca.pem" "$D/expired.pem" 2>&1 | grep -q "expired" ||
		die "expired.pem is not reported as expired"
}

make_ca
casigned server 127.0.0.1 "IP:127.0.0.1,IP:::1,DNS:localhost"
casigned wrongname other.example "DNS:other.example"
make_selfsigned
make_expired
check
