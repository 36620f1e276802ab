#!/usr/bin/env bash
# Drains a server before a restart (a Tomcat cluster's rolling restart):
#   scripts/drain.sh STATUS_URL UPSTREAM SERVER [DEADLINE_SECONDS]
# STATUS_URL is pounce's status location (http://127.0.0.1:8080/pounce-status). SERVER is the
# server's address (127.0.0.1:18009), its index or its name as written. The server is set to
# `disabled` through the manager (mod_jk's disabled: no new sessions, its sticky sessions still
# reach it), then the script waits until pounce reports it `drained` (no sticky request reached
# it for the upstream's drain_idle) or DEADLINE_SECONDS (default 600) pass, printing its live
# sessions as it goes. Exit status: 0 drained, 1 the deadline passed first, 2 an error.
# Needs curl and python3.
set -euo pipefail
if [ $# -lt 3 ]; then
    sed -n '2,11p' "$0" >&2
    exit 2
fi
url=$1 upstream=$2 server=$3 deadline=${4:-600}
json() { curl -fsS --max-time 10 "$url?format=json"; }

# The server's fields as `name=value` lines, from the status JSON on stdin.
fields() {
    python3 -c '
import json, sys
upstream, server = sys.argv[1], sys.argv[2]
page = json.load(sys.stdin)
for u in page["upstreams"]:
    if u["name"] != upstream:
        continue
    for s in u["servers"]:
        if server in (s["address"], s["name"], str(s["index"])):
            print("nonce=%s" % (page.get("nonce") or ""))
            for k in ("address", "state", "drained", "live_sessions", "last_sticky_request_age_seconds", "in_flight"):
                print("%s=%s" % (k, s.get(k)))
            sys.exit(0)
sys.exit("no server %s in upstream %s" % (server, upstream))
' "$upstream" "$server"
}

page=$(json) || { echo "drain.sh: cannot read $url?format=json" >&2; exit 2; }
info=$(fields <<<"$page") || exit 2
get() { sed -n "s/^$1=//p" <<<"$info"; }
nonce=$(get nonce)
addr=$(get address)
if [ -z "$nonce" ]; then
    echo "drain.sh: the status page is read-only (no nonce): cannot disable $addr" >&2
    exit 2
fi
if [ "$(get state)" = active ]; then
    curl -fsS --max-time 10 -o /dev/null -d "nonce=$nonce&upstream=$upstream&server=$addr&state=disabled" "$url?format=json" ||
        { echo "drain.sh: the manager refused to disable $addr" >&2; exit 2; }
    echo "drain.sh: $addr in upstream $upstream disabled: no new sessions go to it"
fi
start=$(date +%s)
while :; do
    info=$(json | fields) || exit 2
    if [ "$(get drained)" = True ]; then
        echo "drain.sh: $addr is drained ($(get live_sessions) sessions seen within the window, none active lately): safe to restart"
        exit 0
    fi
    now=$(date +%s)
    if [ $((now - start)) -ge "$deadline" ]; then
        echo "drain.sh: $addr not drained after ${deadline}s: about $(get live_sessions) live sessions, last sticky request $(get last_sticky_request_age_seconds)s ago" >&2
        exit 1
    fi
    echo "drain.sh: waiting: about $(get live_sessions) live sessions, last sticky request $(get last_sticky_request_age_seconds)s ago, $(get in_flight) in flight"
    sleep 2
done
