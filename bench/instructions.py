#!/usr/bin/env python3
"""User-space instructions per proxied request, counted by callgrind: repeatable even on a busy
machine, where wrk's figures drift. Each binary runs as a one-worker pounce (keep-alive to two
fast nginx backends) under `valgrind --tool=callgrind`, instrumented only while wrk -t1 -c8
runs for 8 s after a 3 s warm-up; twice each, alternated; the lower figure is shown.

    python3 bench/instructions.py BINARY [BINARY ...]   (e.g. target/release/pounce /tmp/pounce-old)
"""
import os
import re
import shutil
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the rig: fast backends, free ports, process cleanup)

run.WORK = os.environ.get("BENCH_WORK", os.path.join(run.ROOT, "bench", "work-instructions"))


def per_request(binary, tag, fast):
    port = run.free_port()
    d = os.path.join(run.WORK, tag)
    os.makedirs(os.path.join(d, "logs"), exist_ok=True)
    servers = " ".join(f"server 127.0.0.1:{p};" for p in fast)
    run.write(os.path.join(d, "pounce.conf"), f"""
worker_processes 1; error_log logs/error.log error; pid logs/pounce.pid;
events {{ worker_connections 1000; }}
http {{ access_log off; keepalive_requests 1000000;
    upstream b {{ keepalive 64; {servers} }}
    server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://b; }} }} }}
""")
    out = os.path.join(d, "callgrind.out")
    p = subprocess.Popen(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                          binary, "-p", d, "-c", os.path.join(d, "pounce.conf")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run.wait_port(port, 120)
        url = f"http://127.0.0.1:{port}/"
        subprocess.run(["wrk", "-t1", "-c8", "-d3s", url], capture_output=True)
        subprocess.run(["callgrind_control", "-i", "on", str(p.pid)], capture_output=True)
        res = subprocess.run(["wrk", "-t1", "-c8", "-d8s", url], capture_output=True, text=True).stdout
        subprocess.run(["callgrind_control", "-i", "off", str(p.pid)], capture_output=True)
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(60)
    requests = int(re.search(r"(\d+) requests in", res).group(1))
    totals = [int(line.split()[1]) for line in open(out) if line.startswith("totals:")]
    return totals[-1] / requests, requests


def main():
    bins = sys.argv[1:]
    if not bins:
        sys.exit(__doc__)
    shutil.rmtree(run.WORK, ignore_errors=True)
    os.makedirs(run.WORK)
    best = {b: None for b in bins}
    try:
        fast = run.start_fast_backends()
        for rep in range(2):
            for i, b in enumerate(bins if rep == 0 else bins[::-1]):
                per, n = per_request(b, f"b{bins.index(b)}-{rep}", fast)
                print(f"{b}: {per:,.0f} instructions per request ({n} requests)", flush=True)
                best[b] = per if best[b] is None else min(best[b], per)
    finally:
        for p in reversed(run.Proc.all):
            p.stop()
    print("\n| binary | user-space instructions per proxied request |\n|---|---|")
    for b in bins:
        print(f"| {b} | {best[b]:,.0f} |")


if __name__ == "__main__":
    main()
