"""The `gzip` group of bench/run.py: CPU per MiB compressed, pounce against nginx, at the same
gzip level, in one run. Each serves the same 1 MiB HTML-like page (about 4:1 at level 6) with
`gzip on; gzip_comp_level L;`, as a static file and proxied from one nginx backend that sends
it uncompressed; wrk (`-t2 -c4`, `Accept-Encoding: gzip`) asks for it, and the proxy's own
CPU time (user + system, /proc) is divided by the MiB it compressed. One worker each, access
logs off; every target is warmed up, then measured --reps times in alternating order, medians.
Before measuring, each proxy's compressed answer is gunzipped and compared with the page.
zlib-rs's level 1 is zlib-ng's quick strategy (faster, larger output than zlib's level 1), so
the level-1 round also has pounce at level 2, whose output is about the size of nginx's level 1.

    bench/run.sh --only gzip [--reps N] [--duration S]
"""
import gzip
import os
import socket
import statistics

PAGE = "page.html"
WORDS = ["<div class=\"row\">", "pounce", "tomcat", "gzip", "</div>\n", "balancer", "session", "<p>", "</p>", "route"]


def page(n=1 << 20):
    """HTML-like text, the same on every run (xorshift over a small vocabulary)."""
    out, x = [], 2654435761
    size = 0
    while size < n:
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        piece = WORDS[x % len(WORDS)] + f" {x % 1000} "
        out.append(piece)
        size += len(piece)
    return "".join(out)[:n].encode()


def pounce_conf(port, root, backend, level):
    return f"""
worker_processes 1;
error_log logs/error.log error;
pid logs/pounce.pid;
http {{
    access_log off;
    gzip on; gzip_comp_level {level};
    server {{
        listen 127.0.0.1:{port};
        location / {{ root {root}; }}
        location /proxied/ {{ proxy_pass http://127.0.0.1:{backend}; }}
    }}
}}
"""


def nginx_conf(d, port, root, backend, level):
    return f"""
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/logs/error.log crit;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    client_body_temp_path {d}/tmp; proxy_temp_path {d}/ptmp;
    gzip on; gzip_comp_level {level};
    upstream b {{ server 127.0.0.1:{backend}; keepalive 8; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{ root {root}; }}
        location /proxied/ {{ proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection ""; }}
    }}
}}
"""


def fetch_gzip(port, path):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    if b"content-encoding: gzip" not in head.lower():
        raise SystemExit(f"gzip bench: {path} on {port} was not compressed:\n{head.decode()}")
    if b"transfer-encoding: chunked" in head.lower():
        out = b""
        while True:
            line, _, body = body.partition(b"\r\n")
            n = int(line.split(b";")[0], 16)
            if n == 0:
                break
            out, body = out + body[:n], body[n + 2:]
        body = out
    return body


def run(rb, secs, reps):
    """rb: the bench/run.py module (its Proc, wrk, cpu_seconds, ...). Returns the report text."""
    www = os.path.join(rb.WORK, "gzip-www")
    os.makedirs(www, exist_ok=True)
    body = page()
    with open(os.path.join(www, PAGE), "wb") as f:
        f.write(body)
    os.makedirs(os.path.join(www, "proxied"), exist_ok=True)
    with open(os.path.join(www, "proxied", PAGE), "wb") as f:
        f.write(body)
    # The backend: nginx serving the page uncompressed.
    backend = rb.free_port()
    d = os.path.join(rb.WORK, "gzip-backend")
    os.makedirs(os.path.join(d, "logs"), exist_ok=True)
    rb.write(os.path.join(d, "nginx.conf"), f"""
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/logs/error.log crit;
events {{ worker_connections 1024; }}
http {{ access_log off; sendfile on; keepalive_requests 1000000;
    server {{ listen 127.0.0.1:{backend}; location / {{ root {www}; }} }} }}
""")
    rb.Proc("gzip-backend", ["nginx", "-p", d, "-c", os.path.join(d, "nginx.conf"), "-g", "daemon off;"])
    rb.wait_port(backend)
    lua = os.path.join(rb.WORK, "gzip.lua")
    rb.write(lua, 'wrk.headers["Accept-Encoding"] = "gzip"\n')
    mib = len(body) / (1 << 20)
    lines = ["\n### gzip: CPU per MiB compressed (1 MiB HTML-like page, wrk -t2 -c4, one worker each)\n",
             "| round | served | target | compressed size | req/s | proxy CPU ms / MiB |", "|---|---|---|---|---|---|"]
    for level, pounce_levels in ((1, (1, 2)), (6, (6,))):
        targets = []
        for pl in pounce_levels:
            port = rb.free_port()
            pd = os.path.join(rb.WORK, f"gzip-pounce-{pl}")
            os.makedirs(os.path.join(pd, "logs"), exist_ok=True)
            rb.write(os.path.join(pd, "pounce.conf"), pounce_conf(port, www, backend, pl))
            targets.append((f"pounce level {pl}", port, rb.Proc(f"gzip-pounce-{pl}", [rb.POUNCE, "-p", pd, "-c", os.path.join(pd, "pounce.conf")])))
        port = rb.free_port()
        nd = os.path.join(rb.WORK, f"gzip-nginx-{level}")
        os.makedirs(os.path.join(nd, "logs"), exist_ok=True)
        rb.write(os.path.join(nd, "nginx.conf"), nginx_conf(nd, port, www, backend, level))
        targets.append((f"nginx level {level}", port, rb.Proc(f"gzip-nginx-{level}", ["nginx", "-p", nd, "-c", os.path.join(nd, "nginx.conf"), "-g", "daemon off;"])))
        for _, port, _ in targets:
            rb.wait_port(port)
        for served, path in (("static", f"/{PAGE}"), ("proxied", f"/proxied/{PAGE}")):
            sizes = {}
            for name, port, _ in targets:
                gz = fetch_gzip(port, path)
                if gzip.decompress(gz) != body:
                    raise SystemExit(f"gzip bench: {name}'s {path} does not gunzip to the page")
                sizes[name] = len(gz)
            results = {name: [] for name, _, _ in targets}
            for name, port, _ in targets:
                rb.wrk(port, path, 4, 2, lua=lua)
            for rep in range(reps):
                for name, port, proc in (targets if rep % 2 == 0 else list(reversed(targets))):
                    cpu0 = rb.cpu_seconds(proc.pid())
                    r = rb.wrk(port, path, 4, secs, lua=lua)
                    cpu = rb.cpu_seconds(proc.pid()) - cpu0
                    results[name].append((r["rps"], cpu * 1000 / max(r["requests"] * mib, 1e-9)))
            for name, rs in results.items():
                rps = statistics.median(x for x, _ in rs)
                ms = statistics.median(y for _, y in rs)
                lines.append(f"| level {level} | {served} | {name} | {sizes[name]:,} ({len(body) / sizes[name]:.2f}:1) | {rps:,.0f} | {ms:.1f} |")
        for _, _, proc in targets:
            proc.stop()
    text = "\n".join(lines)
    print(text, flush=True)
    return text
