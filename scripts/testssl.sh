#!/usr/bin/env bash
# Runs testssl.sh (Debian package testssl.sh, installed when missing) against pounce
# terminating TLS on 127.0.0.1 with a fresh self-signed certificate — ECDSA P-256 by default,
# `KEY=rsa` for RSA 2048 — and prints a summary: protocols, cipher suites, vulnerabilities and
# every finding rated LOW or worse. Exits 1 if a weak protocol, cipher or known vulnerability
# is flagged (MEDIUM, HIGH or CRITICAL). Part of `make soak`.
#   scripts/testssl.sh [--full]   (--full: testssl's whole run instead of its quick checks)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v testssl >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq testssl.sh; }
command -v openssl >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl; }
[ -x target/release/pounce ] || cargo build --release -q

WORK=$(mktemp -d /tmp/pounce-testssl.XXXXXX)
PID=""
cleanup() {
    [ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
    [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/logs"
if [ "${KEY:-ec}" = rsa ]; then newkey=(-newkey rsa:2048); else newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256); fi
openssl req -x509 "${newkey[@]}" -nodes -days 2 -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$WORK/pounce.conf" <<CONF
worker_processes 1;
error_log logs/error.log warn;
pid logs/pounce.pid;
http {
    server {
        listen 127.0.0.1:$PORT ssl;
        server_name localhost;
        ssl_certificate cert.pem;
        ssl_certificate_key key.pem;
        add_header Strict-Transport-Security "max-age=63072000" always;
        add_header X-Frame-Options DENY always;
        add_header X-Content-Type-Options nosniff always;
        add_header Content-Security-Policy "default-src 'none'" always;
        add_header Referrer-Policy no-referrer always;
        location / { return 200 "ok\n"; }
    }
}
CONF
target/release/pounce -p "$WORK" -c "$WORK/pounce.conf" &
PID=$!
for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

args=(--quiet --color 0 --warnings off --jsonfile "$WORK/result.json")
[ "${1:-}" = --full ] || args+=(--protocols --std --server-preference --headers --vulnerable)
testssl "${args[@]}" "127.0.0.1:$PORT" >"$WORK/testssl.txt" 2>&1 || true

python3 - "$WORK/result.json" <<'PY'
import json, sys
found = json.load(open(sys.argv[1]))
order = ["OK", "INFO", "LOW", "MEDIUM", "HIGH", "CRITICAL"]
bad = [f for f in found if f.get("severity") in ("MEDIUM", "HIGH", "CRITICAL")]
print("testssl.sh findings by severity:", {s: sum(1 for f in found if f.get("severity") == s) for s in order})
for f in found:
    if f["id"] in ("SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3", "cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT",
                   "cipherlist_LOW", "cipherlist_3DES_IDEA", "cipherlist_OBSOLETED", "cipherlist_STRONG_NOFS", "cipherlist_STRONG_WITH_FS",
                   "HSTS", "secure_renego", "secure_client_renego", "heartbleed", "CCS", "ticketbleed", "ROBOT", "CRIME_TLS", "BREACH",
                   "POODLE_SSL", "fallback_SCSV", "SWEET32", "FREAK", "DROWN", "LOGJAM", "BEAST", "LUCKY13", "RC4"):
        print(f"  {f['id']:28} {f['severity']:8} {f['finding']}")
for f in found:
    if f.get("severity") == "LOW":
        print(f"  LOW: {f['id']}: {f['finding']}")
if bad:
    print("FLAGGED:")
    for f in bad:
        print(f"  {f['severity']}: {f['id']}: {f['finding']}")
    sys.exit(1)
print("no weak protocol, cipher or known vulnerability flagged")
PY
