#!/usr/bin/env bash
# Writes a throwaway TLS setup for tests into DIR (created if missing):
#   ca.pem, ca.key          test CA
#   server.pem, server.key  server certificate signed by the CA, for localhost and 127.0.0.1
#   self-signed.pem, self-signed.key  a self-signed server certificate for the name localhost only (no IP address)
#   other-ca.pem            a CA that signed nothing here (a client trusting only it must refuse the server)
# EC P-256 keys, valid 10 years. Tests run it at test time (TLSTests.swift, Clients/python/tests/test_tls.py).
set -euo pipefail
dir=${1:?usage: scripts/gen-tls-fixtures.sh DIR}
mkdir -p "$dir"
cd "$dir"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ca() {
    key "$1.key"
    openssl req -x509 -new -key "$1.key" -out "$1.pem" -days 3650 -subj "/CN=$2" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash"
}
server_extensions="subjectAltName=DNS:localhost,IP:127.0.0.1
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid"

ca ca "Condense test CA"
ca other-ca "Condense unrelated CA"
rm other-ca.key

key server.key
openssl req -new -key server.key -out server.csr -subj "/CN=localhost"
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 3650 \
    -extfile <(printf '%s\n' "$server_extensions") 2>/dev/null
rm -f server.csr ca.srl

key self-signed.key
openssl req -x509 -new -key self-signed.key -out self-signed.pem -days 3650 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost" -addext "extendedKeyUsage=serverAuth"
