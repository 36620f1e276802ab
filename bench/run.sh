#!/usr/bin/env bash
# `make bench` / `make bench-quick`: installs what is missing (Debian packages), builds pounce
# in release mode, raises the fd limit, and runs bench/run.py (see its --help).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for cmd in wrk nginx haproxy apache2; do command -v "$cmd" >/dev/null || need+=("$cmd"); done
command -v ss >/dev/null || need+=(iproute2)  # the ajp group reads the kernel's segment counts
[ -e /usr/lib/apache2/modules/mod_jk.so ] || need+=(libapache2-mod-jk)
[ -x /usr/share/tomcat10/bin/catalina.sh ] || need+=(tomcat10)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
# The packaged services must not hold ports or CPU during a run; we never touch /etc.
for svc in nginx haproxy apache2 tomcat10; do
    if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
        echo "bench: note: system service $svc is running and will compete for CPU" >&2
    fi
done
cargo build --release -q
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec python3 bench/run.py "$@"
