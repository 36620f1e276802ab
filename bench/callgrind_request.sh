#!/usr/bin/env bash
# Instructions a pounce binary spends on one proxied request, counted by callgrind (repeatable
# on a busy machine, unlike wall time): pounce (one worker) in front of an nginx `return 200`
# backend (99-byte text/html body), N keep-alive requests from ab with Accept-Encoding: gzip.
#   bench/callgrind_request.sh BINARY "HTTP-LINES" N TAG   -> total instructions of the run
# Per request: run with N=1000 and N=3000, (I3000 - I1000) / 2000 (start-up cancels out).
# HTTP-LINES go into pounce's http block ("" for none, "gzip on;" ...).
set -u
BIN=$1; GZ=$2; N=$3; TAG=$4
D=${BENCH_WORK:-/tmp/pounce-callgrind}/$TAG; rm -rf $D; mkdir -p $D/logs
BPORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
cat > $D/nginx.conf <<N
worker_processes 1; pid $D/nginx.pid; error_log $D/logs/nerr.log crit;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$BPORT; location / { default_type text/html; return 200 "$(printf 'x%.0s' $(seq 1 99))"; } } }
N
nginx -p $D -c $D/nginx.conf -g "daemon off;" & NG=$!
cat > $D/pounce.conf <<P
worker_processes 1; error_log logs/error.log error; pid logs/pounce.pid;
http { access_log off; $GZ
  upstream b { server 127.0.0.1:$BPORT; keepalive 8; }
  server { listen 127.0.0.1:$PORT; location / { proxy_pass http://b; } } }
P
valgrind --tool=callgrind --callgrind-out-file=$D/cg.out $BIN -p $D -c $D/pounce.conf > $D/vg.log 2>&1 & VG=$!
for i in $(seq 1 300); do curl -s -o /dev/null http://127.0.0.1:$PORT/ && break; sleep 0.2; done
ab -q -k -n $N -c 1 -H "Accept-Encoding: gzip" http://127.0.0.1:$PORT/ > $D/ab.log 2>&1
kill -TERM $VG; wait $VG 2>/dev/null
kill $NG; wait $NG 2>/dev/null
grep -h "^summary" $D/cg.out | awk "{print \$2}"
