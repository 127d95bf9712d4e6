#!/usr/bin/env bash
# tests/support/certs.sh DIR NAME: a throwaway PKI for the TLS tests, made with the openssl
# command: DIR/NAME-ca.crt (a CA, EC P-256, one day), DIR/NAME-server.{crt,key} (for 127.0.0.1
# and localhost, signed by that CA) and DIR/NAME-client.{crt,key} (a client certificate for
# mutual TLS, signed by it too). Keys are mode 600. Prints nothing; exits non-zero on failure.
set -euo pipefail
dir=$1 name=$2
cd "$dir"
umask 077
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
openssl req -x509 "${ec[@]}" -keyout "$name-ca.key" -out "$name-ca.crt" -days 1 \
    -subj "/CN=$name test CA" -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
for who in server client; do
    if [[ $who == server ]]; then
        ext="subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth"
    else
        ext="extendedKeyUsage=clientAuth"
    fi
    openssl req -new "${ec[@]}" -keyout "$name-$who.key" -out "$name-$who.csr" \
        -subj "/CN=$name $who" 2>/dev/null
    openssl x509 -req -in "$name-$who.csr" -CA "$name-ca.crt" -CAkey "$name-ca.key" \
        -CAcreateserial -days 1 -out "$name-$who.crt" -extfile <(printf '%s\n' "$ext") 2>/dev/null
    rm -f "$name-$who.csr"
done
chmod 644 "$name-ca.crt" "$name-server.crt" "$name-client.crt"
