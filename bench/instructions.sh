#!/usr/bin/env bash
# Instructions per proxied request, by callgrind (repeatable on a busy machine, unlike wrk):
#   bench/instructions.sh BINARY [ka|close] [plain|pp]
# One worker proxies GET to a local nginx `return 200` backend; a Python client sends 500 and
# then 2,500 requests (ka: over 4 keep-alive connections; close: one per connection; pp: a
# PROXY v1 header first on each connection, with `listen ... proxy_protocol` and
# `real_ip_header proxy_protocol`). Prints (Ir(2500) - Ir(500)) / 2000: start-up cancels out.
set -euo pipefail
BIN=$(realpath "$1"); MODE=${2:-ka}; PP=${3:-plain}
HERE=$(cd "$(dirname "$0")" && pwd)
W=$(mktemp -d /tmp/pounce-instr.XXXX); trap 'kill $(cat $W/nginx.pid 2>/dev/null) 2>/dev/null; rm -rf $W' EXIT
BPORT=$((30000 + RANDOM % 5000))
cat > $W/nginx.conf <<NGX
daemon on; worker_processes 1; error_log $W/nginx.err; pid $W/nginx.pid;
events { worker_connections 1024; }
http { access_log off; server { listen 127.0.0.1:$BPORT; keepalive_requests 100000; location / { return 200 "hello world\n"; } } }
NGX
nginx -c $W/nginx.conf -p $W >/dev/null 2>&1
run() {
    local n=$1 d=$W/run$1 port=$((35000 + RANDOM % 5000)) listen extra=""
    mkdir -p $d/logs
    listen="127.0.0.1:$port"
    [ "$PP" = pp ] && { listen="$listen proxy_protocol"; extra="set_real_ip_from 127.0.0.1; real_ip_header proxy_protocol;"; }
    printf 'worker_processes 1;\nerror_log logs/error.log error;\npid logs/p.pid;\nevents { worker_connections 1024; }\nhttp { upstream app { server 127.0.0.1:%s; } server { listen %s; %s location / { proxy_pass http://app; } } }\n' "$BPORT" "$listen" "$extra" > $d/p.conf
    valgrind --tool=callgrind --callgrind-out-file=$d/cg.out "$BIN" -p $d -c $d/p.conf >/dev/null 2>$d/vg.log &
    local vp=$!
    for _ in $(seq 1 100); do python3 -c "import socket;socket.create_connection(('127.0.0.1',$port)).close()" 2>/dev/null && break; sleep 0.3; done
    python3 "$HERE/instructions_client.py" $port $n $MODE $([ "$PP" = pp ] && echo pp || echo no)
    kill -TERM $vp; wait $vp 2>/dev/null || true
    grep -a '^totals:\|^summary:' $d/cg.out | awk '{print $2}' | sort -n | tail -1
}
a=$(run 500); b=$(run 2500)
echo "$(basename "$BIN") $MODE $PP: $(( (b - a) / 2000 )) instructions per request ($a, $b)"
