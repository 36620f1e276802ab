#!/usr/bin/env python3
"""The cost of limit_req / limit_conn per request: one pounce binary, the same fast backend (a
second pounce answering `return 200` with 100 bytes), three configurations side by side:
no limits, a limit_req zone at a rate no client reaches, and that plus a limit_conn zone.

    bench/limits_ab.py [--binary target/release/pounce] [--reps N] [--duration S]

req/s and the proxy's CPU (user + system) per request, 2 workers, wrk -t1 -c32 (one client
address: every request has the same key, so both workers meet on one shard: the worst case for
contention, counted as the zones' lock waits), the variants alternated --reps times; medians.
Needs a quiet machine. (Instructions per request, repeatable on a busy one: bench/instructions.py
with the zones as --http and the limits as --location lines.)
Everything started here is stopped at the end.
"""
import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import free_port, wait_port  # noqa: E402  (the rig's)

BODY = "x" * 100
VARIANTS = {
    "no limits": ("", ""),
    "limit_req": (
        "limit_req_zone $binary_remote_addr zone=req:10m rate=100000000r/s;",
        "limit_req zone=req burst=1000000 nodelay;",
    ),
    "limit_req + limit_conn": (
        "limit_req_zone $binary_remote_addr zone=req:10m rate=100000000r/s; limit_conn_zone $binary_remote_addr zone=conn:10m;",
        "limit_req zone=req burst=1000000 nodelay; limit_conn conn 10000;",
    ),
}


def start(binary, conf_text, tag):
    d = tempfile.mkdtemp(prefix="limits-ab-%s-" % tag)
    os.makedirs(os.path.join(d, "logs"))
    conf = os.path.join(d, "pounce.conf")
    with open(conf, "w") as f:
        f.write(conf_text)
    cmd = [binary, "-p", d, "-c", conf]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=d), d


def stop(proc, d):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    shutil.rmtree(d, ignore_errors=True)


def proxy_conf(workers, port, backend, variant):
    zones, limits = VARIANTS[variant]
    return (
        "worker_processes %d;\nerror_log logs/error.log error;\nevents { worker_connections 1024; }\n"
        "http {\n access_log off;\n %s\n upstream b { server 127.0.0.1:%d; keepalive 64; }\n"
        " server { listen 127.0.0.1:%d; location / { proxy_pass http://b; %s } location = /status { status read_only; } }\n}\n"
    ) % (workers, zones, backend, port, limits)


def backend_conf(port):
    return (
        "worker_processes 1;\nerror_log logs/error.log error;\nevents { worker_connections 1024; }\n"
        'http {\n access_log off;\n server { listen 127.0.0.1:%d; location / { return 200 "%s"; } }\n}\n'
    ) % (port, BODY)


def lock_waits(port):
    """The zones' lock waits and passed requests, from the status JSON."""
    import json
    import urllib.request

    j = json.load(urllib.request.urlopen("http://127.0.0.1:%d/status?format=json" % port))
    return sum(z["lock_waits"] for z in j["limit_zones"]), sum(z["passed"] for z in j["limit_zones"])


def cpu_ticks(pid):
    total = 0
    for task in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/stat" % (pid, task)) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total


def wrk_run(port, pid, duration):
    before = cpu_ticks(pid)
    out = subprocess.run(["wrk", "-t1", "-c32", "-d%ds" % duration, "http://127.0.0.1:%d/" % port], capture_output=True, text=True).stdout
    used = cpu_ticks(pid) - before
    m = re.search(r"(\d+) requests in", out)
    reqs = int(m.group(1))
    if "Non-2xx" in out or "Socket errors" in out:
        sys.exit("wrk saw errors: %s" % out)
    return reqs / duration, used / os.sysconf("SC_CLK_TCK") / reqs * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="target/release/pounce")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--duration", type=int, default=10)
    a = ap.parse_args()
    a.binary = os.path.abspath(a.binary)
    bport = free_port()
    backend, bdir = start(a.binary, backend_conf(bport), "backend")
    try:
        wait_port(bport)
        procs = {}
        for v in VARIANTS:
            port = free_port()
            proc, d = start(a.binary, proxy_conf(2, port, bport, v), "wrk")
            procs[v] = (port, proc, d)
            wait_port(port)
        results = {v: [] for v in VARIANTS}
        order = list(VARIANTS)
        for rep in range(a.reps):
            for v in order if rep % 2 == 0 else reversed(order):
                port, proc, _ = procs[v]
                results[v].append(wrk_run(port, proc.pid, a.duration))
        print("| configuration | req/s | proxy CPU µs / request | lock waits per 1,000 zone lookups |\n|---|---|---|---|")
        for v, r in results.items():
            waits, passed = lock_waits(procs[v][0])
            share = "%.2f" % (waits * 1000 / passed) if passed else "—"
            print("| %s | %s | %.2f | %s |" % (v, format(int(statistics.median(x[0] for x in r)), ","), statistics.median(x[1] for x in r), share))
        for _, proc, d in procs.values():
            stop(proc, d)
    finally:
        stop(backend, bdir)


if __name__ == "__main__":
    main()
