#!/usr/bin/env python3
"""The cost of limit_req / limit_conn per request: one pounce binary, the same fast backend (a
second pounce answering `return 200` with 100 bytes), three configurations side by side:
no limits, a limit_req zone at a rate no client reaches, and that plus a limit_conn zone.

    bench/limits_ab.py [--binary target/release/pounce] [--mode callgrind|wrk] ...

callgrind: user-space instructions per proxied request (1 worker), from two runs of N1 and N2
requests (ab -k -c 4) under valgrind --tool=callgrind: (Ir(N2) - Ir(N1)) / (N2 - N1), so start-up
and shutdown cancel out. Repeatable even on a busy machine.
wrk: req/s and the proxy's CPU (user + system) per request, 2 workers, wrk -t1 -c32 (one client
address: every request has the same key, so both workers meet on one shard: the worst case for
contention, counted as the zones' lock waits), the variants alternated --reps times; medians.
Needs a quiet machine.
Everything started here is stopped at the end.
"""
import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

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


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, limit=30.0):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def start(binary, conf_text, tag, wrap=None):
    d = tempfile.mkdtemp(prefix="limits-ab-%s-" % tag)
    os.makedirs(os.path.join(d, "logs"))
    conf = os.path.join(d, "pounce.conf")
    with open(conf, "w") as f:
        f.write(conf_text)
    cmd = (wrap or []) + [binary, "-p", d, "-c", conf]
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


def ab(port, n):
    out = subprocess.run(["ab", "-q", "-k", "-n", str(n), "-c", "4", "http://127.0.0.1:%d/" % port], capture_output=True, text=True).stdout
    failed = int(re.search(r"Failed requests:\s+(\d+)", out).group(1))
    non2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
    if failed or non2xx:
        sys.exit("ab saw failures: %s" % out)


def callgrind_ir(binary, backend, variant, n):
    port = free_port()
    out_dir = tempfile.mkdtemp(prefix="limits-ab-cg-")
    out = os.path.join(out_dir, "cg.out")
    wrap = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out]
    proc, d = start(binary, proxy_conf(1, port, backend, variant), "cg", wrap)
    try:
        if not wait_port(port, 60):
            sys.exit("pounce under valgrind did not start")
        ab(port, n)
    finally:
        stop(proc, d)
    with open(out) as f:
        text = f.read()
    shutil.rmtree(out_dir, ignore_errors=True)
    m = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
    return int(m.group(1))


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
    ap.add_argument("--mode", choices=["callgrind", "wrk"], default="callgrind")
    ap.add_argument("--n1", type=int, default=2000)
    ap.add_argument("--n2", type=int, default=12000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--duration", type=int, default=10)
    a = ap.parse_args()
    a.binary = os.path.abspath(a.binary)
    bport = free_port()
    backend, bdir = start(a.binary, backend_conf(bport), "backend")
    try:
        if not wait_port(bport):
            sys.exit("the backend did not start")
        if a.mode == "callgrind":
            print("| configuration | instructions per request |\n|---|---|")
            for v in VARIANTS:
                ir1 = callgrind_ir(a.binary, bport, v, a.n1)
                ir2 = callgrind_ir(a.binary, bport, v, a.n2)
                print("| %s | %s |" % (v, format((ir2 - ir1) // (a.n2 - a.n1), ",")), flush=True)
            return
        procs = {}
        for v in VARIANTS:
            port = free_port()
            proc, d = start(a.binary, proxy_conf(2, port, bport, v), "wrk")
            procs[v] = (port, proc, d)
            if not wait_port(port):
                sys.exit("pounce (%s) did not start" % v)
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
