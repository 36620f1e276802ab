#!/usr/bin/env python3
"""pounce's benchmark harness: pounce against nginx, HAProxy, Apache mod_proxy and mod_jk, in
one run, on 127.0.0.1, configured alike (2 workers, backend keep-alive, round robin, access
logs off), with wrk as the client.

    bench/run.sh [--quick] [--duration S] [--reps N] [--only GROUP,...] [--write-results] [--compare OLD_BINARY]

GROUPs: defaults (the fast backend, each proxy as shipped: pounce with an upstream of just
its `server` lines, nginx with `keepalive 32`, HAProxy's defaults; 64 and 256 connections),
fast (a ~100-byte nginx backend: proxy overhead alone), tomcat (two Tomcat 10s: a
static file and a JSP, over HTTP and AJP), static (files served by pounce and nginx), idle
(10,000 idle keep-alive client connections: proxy RSS), tls (pounce, nginx and HAProxy
terminating TLS 1.2/1.3 with one ECDSA P-256 certificate: keep-alive, a new connection per
request (resumed), a full handshake per request (resumption off everywhere), 10,000 idle TLS
connections), failures (bench/failures.py: a Tomcat frozen, a Tomcat killed, six reloads of the
balancer, each under wrk load, through pounce, nginx, HAProxy and mod_jk), ajp (bench/ajp_cost.py:
pounce's CPU per request over HTTP, over AJP in one write and over AJP in three writes as
Tomcat writes it, with bench/twin.rs as the backend held equal), gzip
(bench/compression.py: CPU per MiB compressed, pounce against nginx at gzip levels 1 and 6,
static and proxied). Every target of a scenario is warmed
up, then measured --reps times in alternating order (A B C, C B A, ...); the table shows
medians. POUNCE_BIN=PATH measures that binary as "pounce". Everything started here is stopped at the end; nothing under /etc is touched.
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
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.environ.get("BENCH_WORK", os.path.join(ROOT, "bench", "work"))
# POUNCE_BIN: measure another build as "pounce" (an A/B of two older commits, with --compare).
POUNCE = os.environ.get("POUNCE_BIN") or os.path.join(ROOT, "target", "release", "pounce")
BODY_100 = "x" * 99 + "\n"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, secs=60):
    deadline = time.time() + secs
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port} after {secs}s")


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


class Proc:
    """A process (group) we started; stopped in reverse order at exit."""
    all = []

    def __init__(self, name, argv, pidfile=None, env=None, cwd=None):
        self.name = name
        self.pidfile = pidfile
        log = open(os.path.join(WORK, f"{name}.out"), "w")
        self.p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
        Proc.all.append(self)

    def pid(self):
        if self.pidfile:
            for _ in range(100):
                try:
                    return int(open(self.pidfile).read().strip())
                except (OSError, ValueError):
                    time.sleep(0.05)
        return self.p.pid

    def stop(self):
        try:
            os.killpg(self.p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        if self.pidfile:
            try:
                os.kill(int(open(self.pidfile).read().strip()), signal.SIGTERM)
            except (OSError, ValueError):
                pass
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.p.pid, signal.SIGKILL)


def tree(pid):
    """pid and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def cpu_seconds(pid):
    total = 0
    tick = os.sysconf("SC_CLK_TCK")
    for p in tree(pid):
        try:
            fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def rss_mib(pid):
    total = 0
    for p in tree(pid):
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


# ---- backends and proxies ---------------------------------------------------------------

def start_fast_backends():
    """Two nginx `return 200` backends (one process each), a 1 MiB file, and an upload sink."""
    ports = [free_port(), free_port()]
    os.makedirs(os.path.join(WORK, "www"), exist_ok=True)
    with open(os.path.join(WORK, "www", "1m.bin"), "wb") as f:
        f.write(os.urandom(1 << 20))
    for i, port in enumerate(ports):
        d = os.path.join(WORK, f"fast{i}")
        os.makedirs(os.path.join(d, "logs"), exist_ok=True)
        write(os.path.join(d, "nginx.conf"), f"""
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/logs/error.log crit;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {d}/tmp;
    server {{
        listen 127.0.0.1:{port} reuseport;
        location / {{ return 200 "{BODY_100}"; }}
        location /1m.bin {{ root {WORK}/www; }}
        location /upload {{ client_max_body_size 4m; client_body_buffer_size 2m; return 200 "ok\\n"; }}
    }}
}}
""")
        Proc(f"fast{i}", ["nginx", "-p", d, "-c", os.path.join(d, "nginx.conf"), "-g", "daemon off;"])
    for p in ports:
        wait_port(p)
    return ports


def start_tomcats():
    ports = []
    for i, route in enumerate(["tomcat1", "tomcat2"]):
        http, ajp = free_port(), free_port()
        d = os.path.join(WORK, route)
        env = dict(os.environ, MAX_KEEPALIVE="-1")
        subprocess.run([os.path.join(ROOT, "scripts", "tomcat.sh"), "start", d, route, str(http), str(ajp)], check=True, env=env)
        ports.append((http, ajp, d))
    for http, ajp, d in ports:
        subprocess.run([os.path.join(ROOT, "scripts", "tomcat.sh"), "wait", d, "120"], check=True)
    return ports


def stop_tomcats(ports):
    for _, _, d in ports:
        subprocess.run([os.path.join(ROOT, "scripts", "tomcat.sh"), "stop", d])


def start_pounce(name, upstreams, ajp=False, static_root=None, binary=None, tls=None,
                 keepalive="keepalive 64;\n        keepalive_requests 1000000;"):
    """keepalive: the upstream's keep-alive lines (None: none, pounce's defaults)."""
    port = free_port()
    d = os.path.join(WORK, name)
    os.makedirs(os.path.join(d, "logs"), exist_ok=True)
    scheme = "ajp" if ajp else "http"
    servers = "\n".join(f"        server 127.0.0.1:{p};" for p in upstreams)
    loc = f"root {static_root};" if static_root else f"proxy_pass {scheme}://backends;"
    write(os.path.join(d, "pounce.conf"), f"""
worker_processes 2;
error_log logs/error.log error;
pid logs/pounce.pid;
events {{ worker_connections 20000; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_max_body_size 4m;
    upstream backends {{
        {keepalive or "# no keep-alive lines: the defaults"}
{servers}
    }}
    server {{
        listen 127.0.0.1:{port} {"ssl" if tls else ""} reuseport;
        {f"ssl_certificate {tls['cert']}; ssl_certificate_key {tls['key']};" if tls else ""}
        {"ssl_session_tickets off;" if tls and tls.get("no_resumption") else ""}
        location / {{ {loc} }}
    }}
}}
""")
    p = Proc(name, [binary or POUNCE, "-p", d, "-c", os.path.join(d, "pounce.conf")])
    wait_port(port)
    return port, p


def start_nginx(name, upstreams, static_root=None, tls=None, keepalive=64):
    port = free_port()
    d = os.path.join(WORK, name)
    os.makedirs(os.path.join(d, "logs"), exist_ok=True)
    servers = "\n".join(f"        server 127.0.0.1:{p};" for p in upstreams)
    loc = f"root {static_root};" if static_root else "proxy_pass http://backends; proxy_http_version 1.1; proxy_set_header Connection \"\";"
    write(os.path.join(d, "nginx.conf"), f"""
worker_processes 2;
pid {d}/nginx.pid;
error_log {d}/logs/error.log crit;
events {{ worker_connections 20000; }}
http {{
    access_log off;
    sendfile on;
    keepalive_requests 1000000;
    client_max_body_size 4m;
    client_body_temp_path {d}/tmp; proxy_temp_path {d}/ptmp;
    upstream backends {{
{servers}
        keepalive {keepalive};
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} {"ssl" if tls else ""} reuseport;
        {f"ssl_certificate {tls['cert']}; ssl_certificate_key {tls['key']}; ssl_protocols TLSv1.2 TLSv1.3;" if tls else ""}
        {"ssl_session_tickets off; ssl_session_cache off;" if tls and tls.get("no_resumption") else ""}
        location / {{ {loc} }}
    }}
}}
""")
    p = Proc(name, ["nginx", "-p", d, "-c", os.path.join(d, "nginx.conf"), "-g", "daemon off;"])
    wait_port(port)
    return port, p


def start_haproxy(name, upstreams, tls=None):
    port = free_port()
    d = os.path.join(WORK, name)
    os.makedirs(d, exist_ok=True)
    servers = "\n".join(f"    server s{i} 127.0.0.1:{p}" for i, p in enumerate(upstreams))
    write(os.path.join(d, "haproxy.cfg"), f"""
global
    nbthread 2
    maxconn 8000
{"    tune.ssl.cachesize 0" if tls and tls.get("no_resumption") else ""}
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
frontend fe
    bind 127.0.0.1:{port}{f" ssl crt {tls['combined']} alpn http/1.1" if tls else ""}{" no-tls-tickets" if tls and tls.get("no_resumption") else ""}
    default_backend be
backend be
    balance roundrobin
    http-reuse safe
{servers}
""")
    p = Proc(name, ["haproxy", "-db", "-f", os.path.join(d, "haproxy.cfg")])
    wait_port(port)
    return port, p


APACHE_MODS = ["mpm_event", "authz_core", "proxy", "proxy_http", "proxy_ajp", "proxy_balancer", "slotmem_shm", "lbmethod_byrequests"]


def jk_conf(d, upstreams, worker_extra="", lb_extra=""):
    """workers.properties for mod_jk's lb over `upstreams`, and the httpd lines that use it."""
    workers = ",".join(f"w{i}" for i in range(len(upstreams)))
    props = "worker.list=lb\n" + "".join(
        f"worker.w{i}.type=ajp13\nworker.w{i}.host=127.0.0.1\nworker.w{i}.port={p}\nworker.w{i}.connection_pool_size=64\n"
        + worker_extra.format(w=f"w{i}") for i, p in enumerate(upstreams)
    ) + f"worker.lb.type=lb\nworker.lb.balance_workers={workers}\nworker.lb.sticky_session=false\n{lb_extra}"
    write(os.path.join(d, "workers.properties"), props)
    return f"""LoadModule jk_module /usr/lib/apache2/modules/mod_jk.so
JkWorkersFile {d}/workers.properties
JkLogFile {d}/logs/mod_jk.log
JkLogLevel error
JkShmFile {d}/logs/jk.shm
JkMount /* lb"""


def run_apache(name, d, port, route, log_level="crit"):
    """Apache (event MPM, two processes of 256 threads) in front with `route`'s lines."""
    mods = "\n".join(f"LoadModule {m}_module /usr/lib/apache2/modules/mod_{m}.so" for m in APACHE_MODS)
    write(os.path.join(d, "httpd.conf"), f"""
ServerRoot {d}
{mods}
User www-data
Group www-data
Listen 127.0.0.1:{port}
PidFile {d}/httpd.pid
ErrorLog {d}/logs/error.log
LogLevel {log_level}
ServerName localhost
StartServers 2
ServerLimit 2
ThreadsPerChild 256
MaxRequestWorkers 512
MaxKeepAliveRequests 0
KeepAliveTimeout 60
{route}
""")
    p = Proc(name, ["apache2", "-f", os.path.join(d, "httpd.conf"), "-DFOREGROUND"], env=dict(os.environ, APACHE_RUN_DIR=d))
    wait_port(port)
    return p


def start_apache(name, upstreams, mode):
    """mode: http (mod_proxy_balancer over HTTP), ajp (mod_proxy_ajp), jk (mod_jk)."""
    port = free_port()
    d = os.path.join(WORK, name)
    os.makedirs(os.path.join(d, "logs"), exist_ok=True)
    if mode == "jk":
        route = jk_conf(d, upstreams)
    else:
        scheme = "ajp" if mode == "ajp" else "http"
        members = "\n".join(f"    BalancerMember {scheme}://127.0.0.1:{p}" for p in upstreams)
        route = f"""<Proxy balancer://backends>
{members}
</Proxy>
ProxyPass / balancer://backends/
ProxyPassReverse / balancer://backends/"""
    return port, run_apache(name, d, port, route)


# ---- load ----------------------------------------------------------------------------------

def wrk(port, path, conns, secs, close=False, lua=None, scheme="http"):
    argv = ["wrk", "-t2", f"-c{conns}", f"-d{secs}s", "--latency", "--timeout", "5s"]
    if close:
        argv += ["-H", "Connection: close"]
    if lua:
        argv += ["-s", lua]
    argv.append(f"{scheme}://127.0.0.1:{port}{path}")
    out = subprocess.run(["timeout", str(secs + 30)] + argv, capture_output=True, text=True).stdout
    def num(pattern, scale=None):
        m = re.search(pattern, out)
        if not m:
            return 0.0
        v = float(m.group(1))
        unit = m.group(2) if m.lastindex and m.lastindex >= 2 else ""
        return v * {"us": 0.001, "ms": 1, "s": 1000, "KB": 1 / 1024, "MB": 1, "GB": 1024, "B": 1 / (1 << 20), "": 1}.get(unit, 1)
    if os.environ.get("BENCH_DEBUG"):
        print(" ".join(argv), "\n", out, file=sys.stderr)
    errs = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return {
        "rps": num(r"Requests/sec:\s+([\d.]+)"),
        "mbps": num(r"Transfer/sec:\s+([\d.]+)(KB|MB|GB|B)"),
        "p50": num(r"50%\s+([\d.]+)(us|ms|s)"),
        "p99": num(r"99%\s+([\d.]+)(us|ms|s)"),
        "non2xx": int(num(r"Non-2xx or 3xx responses: (\d+)")),
        "errors": errs,
        "requests": int(num(r"(\d+) requests in")),
    }


def measure(targets, path, conns, secs, reps, close=False, lua=None, scheme="http"):
    """Warm every target, then alternate; returns {name: [results]}."""
    results = {name: [] for name, _, _ in targets}
    for name, port, proc in targets:
        wrk(port, path, conns, 2, close, lua, scheme)
    order = list(targets)
    for rep in range(reps):
        for name, port, proc in (order if rep % 2 == 0 else list(reversed(order))):
            cpu0 = cpu_seconds(proc.pid()) if proc else 0
            r = wrk(port, path, conns, secs, close, lua, scheme)
            if lua:
                # wrk's Transfer/sec counts received bytes only: an upload's rate is req/s x 1 MiB.
                r["mbps"] = r["rps"]
            cpu = (cpu_seconds(proc.pid()) - cpu0) if proc else 0
            r["cpu_10k"] = cpu / max(r["requests"], 1) * 10000
            r["rss"] = rss_mib(proc.pid()) if proc else 0
            results[name].append(r)
    return results


def median(rs, key):
    return statistics.median(r[key] for r in rs)


def table(title, results, throughput=False):
    lines = [f"\n### {title}\n"]
    pounce = [n for n in results if n.startswith("pounce") and not n.startswith("pounce-before")]
    head = "| target | req/s | MB/s | p50 ms | p99 ms | non-2xx | socket errors | proxy RSS MiB | proxy CPU s / 10k req |" if throughput else \
        "| target | req/s | p50 ms | p99 ms | non-2xx | socket errors | proxy RSS MiB | proxy CPU s / 10k req |"
    lines.append(head)
    lines.append("|" + "---|" * (head.count("|") - 1))
    for name, rs in results.items():
        cells = [name, f"{median(rs, 'rps'):,.0f}"]
        if throughput:
            cells.append(f"{median(rs, 'mbps'):,.0f}")
        cells += [f"{median(rs, 'p50'):.2f}", f"{median(rs, 'p99'):.2f}", str(int(median(rs, 'non2xx'))), str(int(median(rs, 'errors'))),
                  f"{median(rs, 'rss'):.1f}" if median(rs, 'rss') else "-", f"{median(rs, 'cpu_10k'):.3f}" if median(rs, 'cpu_10k') else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    for p in pounce:
        ratios = []
        for name, rs in results.items():
            if name != p and not name.startswith("direct") and median(rs, "rps") > 0:
                ratios.append(f"{name} {median(results[p], 'rps') / median(rs, 'rps'):.2f}x")
        if ratios:
            lines.append(f"\n{p} req/s relative to: " + ", ".join(ratios))
        cpu = [f"{name} {median(results[p], 'cpu_10k') / median(rs, 'cpu_10k'):.2f}x" for name, rs in results.items()
               if name != p and median(rs, "cpu_10k") > 0 and median(results[p], "cpu_10k") > 0]
        if cpu:
            lines.append(f"\n{p} CPU per request relative to: " + ", ".join(cpu))
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def idle_connections(targets, n, tls=False):
    """Opens n keep-alive connections (TLS ones with `tls`) to each target, one request each,
    then measures the proxy's RSS while they are held."""
    connect = lambda port: socket.create_connection(("127.0.0.1", port), timeout=5)  # noqa: E731
    if tls:
        import ssl
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        connect = lambda port: ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),  # noqa: E731
                                               server_hostname="localhost")
    title = f"{n:,} idle TLS keep-alive client connections" if tls else f"{n:,} idle keep-alive client connections"
    out = [f"\n### {title}\n", "| target | connections held | proxy RSS MiB before | with the connections |", "|---|---|---|---|"]
    for name, port, proc in targets:
        before = rss_mib(proc.pid())
        socks, held = [], 0
        for _ in range(n):
            try:
                s = connect(port)
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                socks.append(s)
            except OSError:
                break
        for s in socks:
            try:
                s.settimeout(5)
                if s.recv(4096):
                    held += 1
            except OSError:
                pass
        time.sleep(1.5)  # let the proxy settle (pounce trims its buffer pool once a second)
        during = rss_mib(proc.pid())
        for s in socks:
            s.close()
        out.append(f"| {name} | {held} | {before:.1f} | {during:.1f} |")
        time.sleep(1)
    text = "\n".join(out)
    print(text, flush=True)
    return text


def make_tls_cert():
    """One ECDSA P-256 certificate for every proxy (and HAProxy's combined PEM)."""
    d = os.path.join(WORK, "tls")
    os.makedirs(d, exist_ok=True)
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-keyout", key, "-out", cert], check=True, capture_output=True)
    combined = os.path.join(d, "combined.pem")
    write(combined, open(cert).read() + open(key).read())
    return {"cert": cert, "key": key, "combined": combined}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a reduced set in under 3 minutes")
    ap.add_argument("--duration", type=int, default=None)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--only", default=None, help="groups to run (default: all; with --quick: fast,tomcat,static)")
    ap.add_argument("--write-results", action="store_true", help="write bench/RESULTS.md")
    ap.add_argument("--compare", metavar="BINARY", help="also run this pounce binary (say, a release build of the previous "
                    "commit) as \"pounce-before\" beside pounce in the fast and tomcat groups: a same-run before/after")
    args = ap.parse_args()
    secs = args.duration or (3 if args.quick else 10)
    groups = set((args.only or "defaults,fast,tomcat,ajp,static,idle,tls,failures,gzip").split(","))
    if args.quick and not args.only:
        groups &= {"fast", "tomcat", "static"}
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    report = []
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    tomcats = []
    try:
        if groups & {"defaults", "fast", "static", "idle", "tls"}:
            fast = start_fast_backends()
        if "defaults" in groups:
            t = [("pounce",) + start_pounce("pounce-defaults", fast, keepalive=None)]
            if args.compare:
                t.append(("pounce-before",) + start_pounce("pounce-before-defaults", fast, binary=args.compare, keepalive=None))
            t.append(("nginx keepalive 32",) + start_nginx("nginx-defaults", fast, keepalive=32))
            t.append(("haproxy",) + start_haproxy("haproxy-defaults", fast))
            for conns in (64, 256):
                report.append(table(f"As shipped: fast backend, pounce with no keep-alive lines, nginx `keepalive 32`, HAProxy defaults, "
                                    f"{conns} connections, {secs}s", measure(t, "/", conns, secs, args.reps)))
            for _, _, proc in t:
                proc.stop()
        if "tls" in groups:
            cert = make_tls_cert()
            t = [("pounce",) + start_pounce("pounce-tls", fast, tls=cert)]
            if args.compare:
                t.append(("pounce-before",) + start_pounce("pounce-before-tls", fast, binary=args.compare, tls=cert))
            t.append(("nginx",) + start_nginx("nginx-tls", fast, tls=cert))
            t.append(("haproxy",) + start_haproxy("haproxy-tls", fast, tls=cert))
            report.append(table(f"TLS (ECDSA P-256), keep-alive, 64 connections, fast backend, {secs}s", measure(t, "/", 64, secs, args.reps, scheme="https")))
            report.append(table(f"TLS, a new connection per request (wrk resumes the session), 64 connections, {secs}s",
                                measure(t, "/", 64, secs, args.reps, close=True, scheme="https")))
            if not args.quick:
                report.append(idle_connections([x for x in t if x[0] in ("pounce", "nginx", "haproxy")], 10000, tls=True))
            # Resumption off everywhere: every connection is a full handshake.
            full = dict(cert, no_resumption=True)
            t = [("pounce",) + start_pounce("pounce-tls-full", fast, tls=full)]
            if args.compare:
                t.append(("pounce-before",) + start_pounce("pounce-before-tls-full", fast, binary=args.compare, tls=full))
            t.append(("nginx",) + start_nginx("nginx-tls-full", fast, tls=full))
            t.append(("haproxy",) + start_haproxy("haproxy-tls-full", fast, tls=full))
            report.append(table(f"TLS, a full handshake per request (resumption off), 64 connections, {secs}s",
                                measure(t, "/", 64, secs, args.reps, close=True, scheme="https")))
        if "fast" in groups or "idle" in groups:
            t = [("direct (backend)", fast[0], None)]
            t.append(("pounce",) + start_pounce("pounce-fast", fast))
            if args.compare:
                t.append(("pounce-before",) + start_pounce("pounce-before-fast", fast, binary=args.compare))
            t.append(("nginx",) + start_nginx("nginx-fast", fast))
            t.append(("haproxy",) + start_haproxy("haproxy-fast", fast))
            if not args.quick:
                t.append(("apache mod_proxy",) + start_apache("apache-fast", fast, "http"))
            if "fast" in groups:
                report.append(table(f"Fast backend (100-byte body), keep-alive, 64 connections, {secs}s", measure(t, "/", 64, secs, args.reps)))
                if not args.quick:
                    report.append(table(f"Fast backend, keep-alive, 256 connections, {secs}s", measure(t, "/", 256, secs, args.reps)))
                    report.append(table(f"Fast backend, Connection: close, 64 connections, {secs}s", measure(t, "/", 64, secs, args.reps, close=True)))
                    report.append(table(f"1 MiB responses, 64 connections, {secs}s", measure(t, "/1m.bin", 64, secs, args.reps), throughput=True))
                    lua = os.path.join(WORK, "upload.lua")
                    write(lua, 'wrk.method = "POST"\nwrk.body = string.rep("u", 1048576)\nwrk.headers["Content-Type"] = "application/octet-stream"\n')
                    report.append(table(f"1 MiB uploads, 16 connections, {secs}s", measure(t, "/upload", 16, secs, args.reps, lua=lua), throughput=True))
            if "idle" in groups:
                report.append(idle_connections([x for x in t if x[2] is not None and x[0] in ("pounce", "nginx", "haproxy")], 10000))
        if "static" in groups:
            www = os.path.join(WORK, "www")
            write(os.path.join(www, "index.html"), BODY_100)
            t = [("pounce static",) + start_pounce("pounce-static", [1], static_root=www), ("nginx static",) + start_nginx("nginx-static", [1], static_root=www)]
            report.append(table(f"Static file (100 bytes) served by the proxy itself, keep-alive, 64 connections, {secs}s", measure(t, "/index.html", 64, secs, args.reps)))
        if "tomcat" in groups:
            tomcats = start_tomcats()
            https, ajps = [h for h, _, _ in tomcats], [a for _, a, _ in tomcats]
            t = [("direct (tomcat1 HTTP)", https[0], None)]
            t.append(("pounce http",) + start_pounce("pounce-tc-http", https))
            t.append(("pounce ajp",) + start_pounce("pounce-tc-ajp", ajps, ajp=True))
            if args.compare:
                t.append(("pounce-before http",) + start_pounce("pounce-before-tc-http", https, binary=args.compare))
                t.append(("pounce-before ajp",) + start_pounce("pounce-before-tc-ajp", ajps, ajp=True, binary=args.compare))
            t.append(("nginx",) + start_nginx("nginx-tc", https))
            if not args.quick:
                t.append(("haproxy",) + start_haproxy("haproxy-tc", https))
                t.append(("apache mod_proxy_http",) + start_apache("apache-tc-http", https, "http"))
                t.append(("apache mod_proxy_ajp",) + start_apache("apache-tc-ajp", ajps, "ajp"))
            t.append(("apache mod_jk",) + start_apache("apache-tc-jk", ajps, "jk"))
            for name, port, _ in t:
                wrk(port, "/session.jsp", 16, 5)  # JVM warm-up, JSP compilation
            report.append(table(f"Two Tomcats, static file, keep-alive, 64 connections, {secs}s", measure(t, "/hello.txt", 64, secs, args.reps)))
            if not args.quick:
                report.append(table(f"Two Tomcats, JSP, keep-alive, 64 connections, {secs}s", measure(t, "/small.jsp", 64, secs, args.reps)))
            for _, _, proc in t:
                if proc:
                    proc.stop()
        if "ajp" in groups:
            import ajp_cost
            report.append(ajp_cost.run(sys.modules[__name__], secs, args.reps))
        if "gzip" in groups:
            import compression
            report.append(compression.run(sys.modules[__name__], secs, args.reps))
        if "failures" in groups and not args.quick:
            import failures
            tomcats = tomcats or start_tomcats()
            report.append(failures.run(sys.modules[__name__], tomcats))
    finally:
        for p in reversed(Proc.all):
            p.stop()
        stop_tomcats(tomcats)
    if args.write_results:
        cpu = open("/proc/cpuinfo").read()
        model = re.search(r"model name\s*:\s*(.*)", cpu)
        header = f"""# Benchmark results

Latest full run: {started}, `bench/run.sh {' '.join(sys.argv[1:])}` on {os.cpu_count()} cores
({model.group(1) if model else 'unknown CPU'}), everything on 127.0.0.1: wrk (2 threads), the
proxies (2 workers each), nginx `return 200` backends and two Tomcat 10s share the machine, so
compare ratios within one run, not absolute numbers across machines.
"""
        with open(os.path.join(ROOT, "bench", "RESULTS.md"), "w") as f:
            f.write(header + "\n".join(report) + "\n\n" + PROFILE_NOTE + "\n" + AB_NOTE)


AB_NOTE = open(os.path.join(ROOT, "bench", "ab.md")).read() if os.path.exists(os.path.join(ROOT, "bench", "ab.md")) else ""
PROFILE_NOTE = open(os.path.join(ROOT, "bench", "profile.md")).read() if os.path.exists(os.path.join(ROOT, "bench", "profile.md")) else ""

if __name__ == "__main__":
    main()
