"""The `failures` group of bench/run.py: what each balancer's clients see when a Tomcat of a
two-node cluster freezes (SIGSTOP for 10 s, then SIGCONT), dies (SIGKILL, started again 10 s
later), or when the balancer itself is reloaded six times, all under wrk load
(`-t2 -c32 -d20s --timeout 5s`, GETs of a static file). Not a timed test: a record of what
happened, one run per balancer and scenario, in one run of the rig.

Each balancer gets the cluster configuration its documentation recommends for this: pounce the
README's (active checks every second, `frozen_timeout 1s`), nginx passive health
(`max_fails=1 fail_timeout=10s`, retries on error and timeout; open-source nginx has no active
checks), HAProxy active checks every second with `option redispatch` and `retries 3`, mod_jk
CPING on connect and before each request (`ping_mode=A`, `ping_timeout=500`) with recovery
after 10 s.
"""
import os
import re
import signal
import subprocess
import time

SECS = 20
CONNS = 32
PATH = "/hello.txt"


def pounce_conf(port, upstreams, ajp):
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=10s;" for p in upstreams)
    return f"""
worker_processes 2;
error_log logs/error.log warn;
pid logs/pounce.pid;
events {{ worker_connections 20000; }}
http {{
    access_log off;
    upstream backends {{
{servers}
        keepalive 64;
        health_check interval=1s timeout=500ms fails=1 passes=2;
        frozen_timeout 1s;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{ proxy_pass {"ajp" if ajp else "http"}://backends; }}
    }}
}}
"""


def start_pounce(rig, name, upstreams, ajp):
    port = rig.free_port()
    d = os.path.join(rig.WORK, name)
    os.makedirs(os.path.join(d, "logs"), exist_ok=True)
    rig.write(os.path.join(d, "pounce.conf"), pounce_conf(port, upstreams, ajp))
    p = rig.Proc(name, [rig.POUNCE, "-p", d, "-c", os.path.join(d, "pounce.conf")])
    rig.wait_port(port)
    return port, p, lambda: os.kill(p.pid(), signal.SIGHUP), os.path.join(d, "logs", "error.log")


def start_nginx(rig, name, upstreams):
    port = rig.free_port()
    d = os.path.join(rig.WORK, name)
    os.makedirs(os.path.join(d, "logs"), exist_ok=True)
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=10s;" for p in upstreams)
    rig.write(os.path.join(d, "nginx.conf"), f"""
worker_processes 2;
pid {d}/nginx.pid;
error_log {d}/logs/error.log warn;
events {{ worker_connections 20000; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp; proxy_temp_path {d}/ptmp;
    upstream backends {{
{servers}
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port} reuseport;
        location / {{
            proxy_pass http://backends; proxy_http_version 1.1; proxy_set_header Connection "";
            proxy_next_upstream error timeout;
        }}
    }}
}}
""")
    pidfile = os.path.join(d, "nginx.pid")
    p = rig.Proc(name, ["nginx", "-p", d, "-c", os.path.join(d, "nginx.conf"), "-g", "daemon off;"], pidfile=pidfile)
    rig.wait_port(port)
    return port, p, lambda: os.kill(p.pid(), signal.SIGHUP), os.path.join(d, "logs", "error.log")


def start_haproxy(rig, name, upstreams):
    port = rig.free_port()
    d = os.path.join(rig.WORK, name)
    os.makedirs(d, exist_ok=True)
    servers = "\n".join(f"    server s{i} 127.0.0.1:{p} check inter 1s fall 1 rise 2" for i, p in enumerate(upstreams))
    rig.write(os.path.join(d, "haproxy.cfg"), f"""
global
    nbthread 2
    maxconn 8000
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout check 500ms
    option http-keep-alive
    option redispatch
    retries 3
frontend fe
    bind 127.0.0.1:{port}
    default_backend be
backend be
    balance roundrobin
    http-reuse safe
    option httpchk GET {PATH}
{servers}
""")
    # Master-worker mode: SIGUSR2 to the master reloads (what `systemctl reload haproxy` does).
    p = rig.Proc(name, ["haproxy", "-W", "-db", "-f", os.path.join(d, "haproxy.cfg")])
    rig.wait_port(port)
    return port, p, lambda: os.kill(p.p.pid, signal.SIGUSR2), None


def start_mod_jk(rig, name, upstreams):
    port = rig.free_port()
    d = os.path.join(rig.WORK, name)
    os.makedirs(os.path.join(d, "logs"), exist_ok=True)
    route = rig.jk_conf(d, upstreams, worker_extra="worker.{w}.ping_mode=A\nworker.{w}.ping_timeout=500\nworker.{w}.recover_time=10\n",
                        lb_extra="worker.lb.retries=2\n")
    p = rig.run_apache(name, d, port, route, log_level="warn")
    pidfile = os.path.join(d, "httpd.pid")
    # A graceful restart re-reads the configuration and lets requests in progress finish.
    return port, p, lambda: os.kill(int(open(pidfile).read().strip()), signal.SIGUSR1), None


def run_wrk(port, events):
    """wrk for SECS while `events` [(at_seconds, action)] happen; its figures."""
    argv = ["wrk", "-t2", f"-c{CONNS}", f"-d{SECS}s", "--latency", "--timeout", "5s", f"http://127.0.0.1:{port}{PATH}"]
    w = subprocess.Popen(["timeout", str(SECS + 30)] + argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t0 = time.time()
    for at, action in events:
        time.sleep(max(0, t0 + at - time.time()))
        action()
    out = w.communicate()[0]
    def ms(v, unit):
        return float(v) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]
    lat = re.search(r"Latency\s+([\d.]+)(us|ms|s|m)\s+([\d.]+)(us|ms|s|m)\s+([\d.]+)(us|ms|s|m)", out)
    errs = {k: int(v) for k, v in re.findall(r"(connect|read|write|timeout) (\d+)", out)}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    total = re.search(r"(\d+) requests in", out)
    return {
        "requests": int(total.group(1)) if total else 0,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "errors": sum(errs.values()),
        "timeouts": errs.get("timeout", 0),
        "max_ms": ms(lat.group(5), lat.group(6)) if lat else 0.0,
        "raw": out,
    }


def tomcat_pid(d):
    return int(open(os.path.join(d, "tomcat.pid")).read().strip())


def settle(rig, port, secs=40):
    """Waits until requests through `port` succeed steadily again (both nodes back)."""
    deadline = time.time() + secs
    while time.time() < deadline:
        r = subprocess.run(["wrk", "-t1", "-c4", "-d2s", "--timeout", "2s", f"http://127.0.0.1:{port}{PATH}"], capture_output=True, text=True).stdout
        if "Non-2xx" not in r and "Socket errors" not in r:
            return
    print(f"  (port {port} still not clean after {secs}s)", flush=True)


def run(rig, tomcats):
    """Every balancer through every scenario; returns the report's text."""
    https, ajps = [h for h, _, _ in tomcats], [a for _, a, _ in tomcats]
    victim = tomcats[1][2]
    balancers = [
        ("pounce http", lambda: start_pounce(rig, "pounce-fail-http", https, False)),
        ("pounce ajp", lambda: start_pounce(rig, "pounce-fail-ajp", ajps, True)),
        ("nginx", lambda: start_nginx(rig, "nginx-fail", https)),
        ("haproxy", lambda: start_haproxy(rig, "haproxy-fail", https)),
        ("apache mod_jk", lambda: start_mod_jk(rig, "jk-fail", ajps)),
    ]
    rows = []
    for name, start in balancers:
        port, proc, reload, log = start()
        subprocess.run(["wrk", "-t2", f"-c{CONNS}", "-d4s", f"http://127.0.0.1:{port}{PATH}"], capture_output=True)  # warm-up
        # Frozen: SIGSTOP at 5 s, SIGCONT 10 s later.
        pid = tomcat_pid(victim)
        r = run_wrk(port, [(5, lambda: os.kill(pid, signal.SIGSTOP)), (15, lambda: os.kill(pid, signal.SIGCONT))])
        rows.append((name, "node frozen 10 s", r))
        print(f"  {name}: frozen: {r['requests']} requests, non-2xx {r['non2xx']}, socket errors {r['errors']}, max {r['max_ms']:.0f} ms", flush=True)
        settle(rig, port)
        # Killed: SIGKILL at 5 s, started again at 15 s.
        def kill():
            os.kill(tomcat_pid(victim), signal.SIGKILL)
        def restart():
            http, ajp, d = tomcats[1]
            subprocess.run([os.path.join(rig.ROOT, "scripts", "tomcat.sh"), "stop", d])
            subprocess.run([os.path.join(rig.ROOT, "scripts", "tomcat.sh"), "start", d, "tomcat2", str(http), str(ajp)],
                           env=dict(os.environ, MAX_KEEPALIVE="-1"))
        r = run_wrk(port, [(5, kill), (15, restart)])
        rows.append((name, "node killed", r))
        print(f"  {name}: killed: {r['requests']} requests, non-2xx {r['non2xx']}, socket errors {r['errors']}, max {r['max_ms']:.0f} ms", flush=True)
        subprocess.run([os.path.join(rig.ROOT, "scripts", "tomcat.sh"), "wait", tomcats[1][2], "120"])
        settle(rig, port)
        # Six reloads of the balancer, 2.5 s apart.
        r = run_wrk(port, [(3 + 2.5 * i, reload) for i in range(6)])
        rows.append((name, "six reloads", r))
        print(f"  {name}: reloads: {r['requests']} requests, non-2xx {r['non2xx']}, socket errors {r['errors']}, max {r['max_ms']:.0f} ms", flush=True)
        proc.stop()
    lines = [f"\n### Failures under load: two Tomcats, wrk -t2 -c{CONNS} -d{SECS}s --timeout 5s, GET {PATH}\n",
             "One run per balancer and scenario. *Frozen*: one Tomcat SIGSTOPped at 5 s, SIGCONT at 15 s. "
             "*Killed*: SIGKILL at 5 s, started again at 15 s. *Six reloads*: the balancer reloaded every 2.5 s "
             "(pounce and nginx SIGHUP, HAProxy SIGUSR2 in master-worker mode, Apache graceful SIGUSR1). "
             "Socket errors include requests wrk gave up on after 5 s (timeouts); max latency counts answered requests only.\n",
             "| balancer | scenario | requests | non-2xx | socket errors (timeouts) | max latency ms |", "|---|---|---|---|---|---|"]
    for name, scenario, r in rows:
        lines.append(f"| {name} | {scenario} | {r['requests']:,} | {r['non2xx']} | {r['errors']} ({r['timeouts']}) | {r['max_ms']:,.0f} |")
    text = "\n".join(lines)
    print(text, flush=True)
    return text
