#!/usr/bin/env python3
"""User-space instructions per proxied request, counted by callgrind: repeatable even on a busy
machine, where wrk's figures drift. Each binary runs as a one-worker pounce (keep-alive to the
fast nginx backends of bench/run.py) under `valgrind --tool=callgrind`, serving N1 and then N2
requests from this script's own client; per request = (Ir(N2) - Ir(N1)) / (N2 - N1), so start-up
and shutdown cancel out. Each binary is measured twice, alternated; the lower figure is shown.

    python3 bench/instructions.py BINARY [BINARY ...] [options]

  --close               one request per connection (default: keep-alive over 4 connections)
  --proxy-protocol      `listen ... proxy_protocol` with realip; each connection starts with a
                        PROXY v1 header
  --header 'NAME: V'    a request header (e.g. 'Accept-Encoding: gzip'); repeatable
  --http 'LINES'        lines for pounce's http block (e.g. 'gzip on; gzip_types text/plain;' or
                        'limit_req_zone $binary_remote_addr zone=z:10m rate=100000000r/s;')
  --location 'LINES'    lines for the proxied location (e.g. 'limit_req zone=z burst=1000000 nodelay;')
  --tomcat http|ajp     proxy /hello.txt to the two Tomcats of bench/run.py over HTTP or AJP
                        instead of the fast backends (AJP against HTTP, the same Tomcats)
  --twin http|ajp       proxy to two bench/twin.rs backends answering alike over HTTP or AJP
                        (one write each): AJP against HTTP with the backend held equal
"""
import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the rig: fast backends, free ports, process cleanup)

run.WORK = os.environ.get("BENCH_WORK", os.path.join(run.ROOT, "bench", "work-instructions"))
PROXY_HEADER = b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\n"


def fill(s, buf, need):
    """`buf` with at least `need` bytes (more read from `s`)."""
    while len(buf) < need:
        more = s.recv(65536)
        if not more:
            raise SystemExit("pounce closed the connection early")
        buf += more
    return buf


def read_response(s, buf):
    """Reads one 200 response (Content-Length or chunked); returns what came after it."""
    while b"\r\n\r\n" not in buf:
        buf = fill(s, buf, len(buf) + 1)
    head, _, rest = buf.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"unexpected answer: {head[:200]!r}")
    fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in head.split(b"\r\n")[1:])}
    if b"content-length" in fields:
        length = int(fields[b"content-length"])
        rest = fill(s, rest, length)
        return rest[length:]
    while True:  # chunked (a compressed answer)
        while b"\r\n" not in rest:
            rest = fill(s, rest, len(rest) + 1)
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        rest = fill(s, rest, size + 2)
        rest = rest[size + 2:]
        if size == 0:
            return rest


def client(port, n, args):
    extra = "".join(f"{h}\r\n" for h in args.header)
    preface = PROXY_HEADER if args.proxy_protocol else b""
    path = "/hello.txt" if args.tomcat else "/"
    if args.close:
        req = f"GET {path} HTTP/1.1\r\nHost: a\r\n{extra}Connection: close\r\n\r\n".encode()
        for _ in range(n):
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(preface + req)
                read_response(s, b"")
        return
    req = f"GET {path} HTTP/1.1\r\nHost: a\r\n{extra}\r\n".encode()
    for _ in range(4):
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(preface)
            buf = b""
            for _ in range(n // 4):
                s.sendall(req)
                buf = read_response(s, buf)


def instructions(binary, tag, fast, n, args):
    """Ir of a one-worker pounce that served `n` requests."""
    port = run.free_port()
    d = os.path.join(run.WORK, tag)
    os.makedirs(os.path.join(d, "logs"), exist_ok=True)
    servers = " ".join(f"server 127.0.0.1:{p};" for p in fast)
    listen = f"127.0.0.1:{port}" + (" proxy_protocol" if args.proxy_protocol else "")
    realip = "set_real_ip_from 127.0.0.1; real_ip_header proxy_protocol;" if args.proxy_protocol else ""
    run.write(os.path.join(d, "pounce.conf"), f"""
worker_processes 1; error_log logs/error.log error; pid logs/pounce.pid;
events {{ worker_connections 1000; }}
http {{ access_log off; keepalive_requests 1000000; {args.http}
    upstream b {{ keepalive 64; {servers} }}
    server {{ listen {listen}; {realip} location / {{ proxy_pass {args.tomcat or args.twin or "http"}://b; {args.location} }} }} }}
""")
    out = os.path.join(d, "callgrind.out")
    p = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary, "-p", d, "-c", os.path.join(d, "pounce.conf")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run.wait_port(port, 120)  # the probe connection carries no PROXY header: pounce closes it quietly
        client(port, n, args)
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(60)
    return [int(line.split()[1]) for line in open(out) if line.startswith("totals:")][-1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--close", action="store_true")
    ap.add_argument("--proxy-protocol", action="store_true")
    ap.add_argument("--header", action="append", default=[])
    ap.add_argument("--http", default="")
    ap.add_argument("--location", default="")
    ap.add_argument("--tomcat", choices=["http", "ajp"])
    ap.add_argument("--twin", choices=["http", "ajp"])
    ap.add_argument("--n1", type=int, default=1000)
    ap.add_argument("--n2", type=int, default=5000)
    args = ap.parse_args()
    shutil.rmtree(run.WORK, ignore_errors=True)
    os.makedirs(run.WORK)
    bins = [os.path.abspath(b) for b in args.binaries]
    best = {}
    tomcats = []
    try:
        if args.tomcat:
            tomcats = run.start_tomcats()
            fast = [h if args.tomcat == "http" else a for h, a, _ in tomcats]
        elif args.twin:
            subprocess.run(["cargo", "build", "--release", "-q", "--example", "twin"], cwd=run.ROOT, check=True)
            fast = [run.free_port(), run.free_port()]
            for i, port in enumerate(fast):
                run.Proc(f"twin{i}", [os.path.join(run.ROOT, "target", "release", "examples", "twin"), str(port), args.twin])
                run.wait_port(port)
        else:
            fast = run.start_fast_backends()
        for rep in range(2):
            for b in bins if rep == 0 else bins[::-1]:
                tag = f"b{bins.index(b)}-{rep}"
                low = instructions(b, tag + "-n1", fast, args.n1, args)
                high = instructions(b, tag + "-n2", fast, args.n2, args)
                per = (high - low) / (args.n2 - args.n1)
                print(f"{b}: {per:,.0f} instructions per request", flush=True)
                best[b] = min(best.get(b, per), per)
    finally:
        for p in reversed(run.Proc.all):
            p.stop()
        run.stop_tomcats(tomcats)
    print("\n| binary | user-space instructions per proxied request |\n|---|---|")
    for b in bins:
        print(f"| {b} | {best[b]:,.0f} |")


if __name__ == "__main__":
    main()
