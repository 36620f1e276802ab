#!/usr/bin/env bash
# `make run`: two local Tomcat 10 instances (jvmRoute tomcat1/tomcat2) and pounce in front
# of them with conf/pounce.conf on 127.0.0.1:8080 (and https on 127.0.0.1:8443 with a
# self-signed certificate made here). Ctrl-C stops everything started here.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-work}
mkdir -p "$WORK" logs
scripts/tomcat.sh install
# A self-signed certificate for https://localhost:8443 (kept once made).
if [ ! -s "$WORK/tls/localhost.pem" ]; then
    command -v openssl >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl; }
    mkdir -p "$WORK/tls"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
        -keyout "$WORK/tls/localhost.key" -out "$WORK/tls/localhost.pem" -subj /CN=localhost \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
fi
cleanup() {
    trap - INT TERM EXIT
    echo; echo "stopping pounce and the Tomcats..."
    [ -n "${POUNCE_PID:-}" ] && kill -TERM "$POUNCE_PID" 2>/dev/null && wait "$POUNCE_PID" 2>/dev/null || true
    scripts/tomcat.sh stop "$WORK/tomcat1" || true
    scripts/tomcat.sh stop "$WORK/tomcat2" || true
}
trap cleanup INT TERM EXIT
# Cluster nodes start one after another: each fetches the others' sessions as it starts.
scripts/tomcat.sh start "$WORK/tomcat1" tomcat1 18081 18009 14001 14001,14002
scripts/tomcat.sh wait "$WORK/tomcat1"
scripts/tomcat.sh start "$WORK/tomcat2" tomcat2 18082 18010 14002 14001,14002
scripts/tomcat.sh wait "$WORK/tomcat2"
target/release/pounce -p . -c conf/pounce.conf -t
target/release/pounce -p . -c conf/pounce.conf &
POUNCE_PID=$!
sleep 0.3
cat <<MSG

pounce is running on http://127.0.0.1:8080 and https://127.0.0.1:8443 in front of two
Tomcats (logs in logs/, $WORK/).
Try:
  curl -i http://127.0.0.1:8080/hello.txt
  curl -k -i https://127.0.0.1:8443/hello.txt        (self-signed: -k, or --cacert $WORK/tls/localhost.pem)
  curl -i -c /tmp/pounce-cookies -b /tmp/pounce-cookies http://127.0.0.1:8080/session.jsp   (repeat: same route, count grows)
  scripts/tomcat.sh stop $WORK/tomcat1        (then repeat the session request: it fails over, count continues)
  curl -s --data-binary @README.md http://127.0.0.1:8080/echo.jsp | head
  open http://127.0.0.1:8080/pounce-status   (status and manager page; ?format=json, ?format=prometheus)
  target/release/pounce -p . -c conf/pounce.conf -s reload
Press Ctrl-C to stop everything.
MSG
wait "$POUNCE_PID"
