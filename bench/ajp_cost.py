"""The `ajp` group of bench/run.py: AJP's cost against HTTP's with the backend held equal: pounce (2 workers, the shipped
upstream defaults but keepalive_requests, so the kernel counters of its backend connections
last the run) in front of bench/twin.rs answering the same 100-byte body over HTTP (one
write), AJP in one write, and AJP in three writes as Tomcat's AjpProcessor makes them. wrk -t2
-c64, alternated, medians; pounce's CPU per request and the kernel's segment counts on its
backend connections (`ss -tin`).

    bench/run.sh --only ajp [--reps N] [--duration S]

In the full run too; BENCH_SYSCALLS=1 adds perf stat's
counts of pounce's recvfrom, sendto and epoll_wait per request; POUNCE_BIN measures another
build. Not part of `make test`; run on a quiet machine.
"""
import os
import re
import subprocess


def segments(backend_port):
    """Data segments in and pure ACKs out summed over pounce's connections to the backend."""
    out = subprocess.run(["ss", "-tinH", "state", "established", f"dst 127.0.0.1:{backend_port}"], capture_output=True, text=True).stdout
    segs_in = sum(int(x) for x in re.findall(r"data_segs_in:(\d+)", out))
    segs_out = sum(int(x) for x in re.findall(r"\bsegs_out:(\d+)", out))
    data_out = sum(int(x) for x in re.findall(r"data_segs_out:(\d+)", out))
    return segs_in, segs_out - data_out


def syscalls(R, pid):
    """perf stat's counts of pounce's reads, writes and waits while wrk runs (None without perf)."""
    ev = "syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_epoll_wait"
    out = os.path.join(R.WORK, "perf-stat.txt")
    try:
        return subprocess.Popen(["perf", "stat", "-x,", "-e", ev, "-p", ",".join(map(str, R.tree(pid))), "-o", out],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out
    except OSError:
        return None


def read_perf(handle):
    p, out = handle
    p.send_signal(2)
    p.wait()
    counts = {}
    for line in open(out):
        f = line.strip().split(",")
        if len(f) > 3 and f[0].isdigit():
            counts[f[2].split("sys_enter_")[-1]] = int(f[0])
    return counts


def run(R, secs, reps):
    """Measures the three setups with the rig `R` (bench/run.py's module); prints and returns
    a report section in Markdown. Stops what it started."""
    with_syscalls = os.environ.get("BENCH_SYSCALLS") == "1"
    os.makedirs(R.WORK, exist_ok=True)
    subprocess.run(["cargo", "build", "--release", "-q", "--example", "twin"], cwd=R.ROOT, check=True)
    twin = os.path.join(R.ROOT, "target", "release", "examples", "twin")
    targets, procs = [], []
    try:
        for mode in ["http", "ajp", "ajp-split"]:
            port = R.free_port()
            procs.append(R.Proc(f"twin-{mode}", [twin, str(port), mode]))
            R.wait_port(port)
            name = {"http": "HTTP", "ajp": "AJP, one write", "ajp-split": "AJP, three writes (as Tomcat)"}[mode]
            port_p, proc = R.start_pounce(f"cost-{mode}", [port], ajp=mode != "http",
                                           keepalive="keepalive_requests 1000000;  # keep-alive size: the defaults")
            procs.append(proc)
            targets.append((name, port_p, proc, port))
        for name, port, _, _ in targets:
            R.wrk(port, "/hello", 64, 2)
        rows = {name: [] for name, _, _, _ in targets}
        for rep in range(reps):
            for name, port, proc, backend in (targets if rep % 2 == 0 else list(reversed(targets))):
                perf = syscalls(R, proc.pid()) if with_syscalls else None
                seg0, cpu0 = segments(backend), R.cpu_seconds(proc.pid())
                r = R.wrk(port, "/hello", 64, secs)
                seg1, cpu1 = segments(backend), R.cpu_seconds(proc.pid())
                n = max(r["requests"], 1)
                r["cpu_10k"] = (cpu1 - cpu0) / n * 10000
                r["segs_in"] = (seg1[0] - seg0[0]) / n
                r["acks_out"] = (seg1[1] - seg0[1]) / n
                for k, v in (read_perf(perf).items() if perf else []):
                    r[k] = v / n
                rows[name].append(r)
    finally:
        for p in reversed(procs):
            p.stop()
    cols = ["recvfrom", "sendto", "epoll_wait"] if with_syscalls else []
    lines = [f"\n### AJP against HTTP, the backend held equal (bench/twin.rs), 64 connections, {secs}s\n",
             "pounce with the shipped upstream defaults; the backend answers the same 100 bytes over HTTP, over AJP in "
             "one write, and over AJP in three writes as Tomcat's AjpProcessor does (bench/ab.md). Segments and ACKs "
             "from `ss -tin` on pounce's backend connections.\n",
             "| pounce over | req/s | p99 ms | pounce CPU s/10k req | backend data segments in / req | pure ACKs out / req |"
             + "".join(f" {c} / req |" for c in cols),
             "|---" * (6 + len(cols)) + "|"]
    for name, rs in rows.items():
        lines.append(f"| {name} | {R.median(rs, 'rps'):,.0f} | {R.median(rs, 'p99'):.2f} | {R.median(rs, 'cpu_10k'):.3f} | "
                     f"{R.median(rs, 'segs_in'):.2f} | {R.median(rs, 'acks_out'):.2f} |" + "".join(f" {R.median(rs, c):.2f} |" for c in cols))
    text = "\n".join(lines) + "\n"
    print(text, flush=True)
    return text
