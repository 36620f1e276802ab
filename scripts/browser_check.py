#!/usr/bin/env python3
"""Checks pounce's status page in a real headless Chromium, through chromedriver's
WebDriver HTTP API (Python standard library only).

  scripts/browser_check.py [--attack URL] [--down SERVER] URL SCREENSHOT.png SERVER_TO_DRAIN [SERVER ...]

In a 1280x800 window: loads URL; checks that every server given is rendered with its manager
forms (nonce included) and its health, last check, responses, errors, traffic and response-time
cells, that the reload line and the auto-refresh links are there, and that the page needs no
horizontal scrolling and shows every manager control without scrolling. A --down server must
show as down with the reason its checks fail; the others as up with a passed check. With
--attack, first opens that page (another origin, which posts to the status page behind the
operator's back with fetch() and a form) and checks that the browser lands on pounce's 403
refusal. Then clicks the "drain" button of SERVER_TO_DRAIN, checks that the page shows it as
disabled, and saves a screenshot. Exits non-zero with a message on any failure. Talks only to
127.0.0.1.
"""
import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", shutil.which("chromedriver") or "/usr/bin/chromedriver")
WIDTH, HEIGHT = 1280, 800


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Driver:
    def __init__(self):
        self.port = free_port()
        self.proc = subprocess.Popen([CHROMEDRIVER, f"--port={self.port}", "--allowed-ips=127.0.0.1"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{self.port}"
        self.profile = None
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                self.call("GET", "/status")
                break
            except OSError:
                time.sleep(0.1)
        else:
            self.proc.terminate()
            raise SystemExit("chromedriver did not start")
        self.profile = tempfile.mkdtemp(prefix="pounce-chromium-")
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--hide-scrollbars", f"--user-data-dir={self.profile}",
                     f"--window-size={WIDTH},{HEIGHT}"]}}}}
        self.session = self.call("POST", "/session", caps)["sessionId"]

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read() or b"{}").get("value")

    def s(self, method, path, body=None):
        return self.call(method, f"/session/{self.session}{path}", body)

    def find_all(self, css):
        return [list(e.values())[0] for e in self.s("POST", "/elements", {"using": "css selector", "value": css})]

    def attr(self, el, name):
        return self.s("GET", f"/element/{el}/attribute/{name}")

    def js(self, script, *args):
        return self.s("POST", "/execute/sync", {"script": script, "args": list(args)})

    def text(self, css):
        """innerText of the first element matching css, or None."""
        return self.js("const e = document.querySelector(arguments[0]); return e ? e.innerText : null;", css)

    def close(self):
        try:
            self.s("DELETE", "")
        finally:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            if self.profile:
                shutil.rmtree(self.profile, ignore_errors=True)


def fail(msg):
    raise SystemExit(msg)


def wait_for(what, f, limit=10):
    deadline = time.time() + limit
    last = None
    while time.time() < deadline:
        try:
            last = f()
            if last:
                return last
        except urllib.error.HTTPError as e:
            # The page was replaced between two calls (a stale element): look again.
            last = e
        time.sleep(0.1)
    fail(f"{what}: not seen within {limit} s (last: {last!r})")


def check_attack(d, attack, url):
    """The attacker's page posts to the status page; the browser must end on pounce's 403."""
    d.s("POST", "/url", {"url": attack})
    wait_for("the attack page's form lands on the status page",
             lambda: d.s("GET", "/url").startswith(url.split("?")[0]))
    body = wait_for("pounce's refusal", lambda: d.text("body"))
    if "cross-site request refused" not in body:
        fail(f"the cross-site form was not refused; the browser shows: {body[:300]!r}")
    print("cross-site form and fetch from another origin: refused (403)")


def check_rows(d, servers, down):
    rows = {d.attr(r, "data-server"): r for r in d.find_all("tr.server")}
    for srv in servers:
        if srv not in rows:
            fail(f"server {srv} is not on the page (found {sorted(rows)})")
        row = f'tr.server[data-server="{srv}"]'
        for form in ("form.set", "form.drain"):
            if not d.find_all(f"{row} {form}"):
                fail(f"server {srv} has no {form}")
            if not d.find_all(f'{row} {form} input[name="nonce"]'):
                fail(f"server {srv}: {form} carries no nonce")
        if not d.find_all(f'{row} form.set input[name="weight"]'):
            fail(f"server {srv} has no weight input")
        cells = {c: d.text(f"{row} td.{c}") for c in ("health", "check", "requests", "responses", "errors", "traffic", "time")}
        missing = [c for c, t in cells.items() if t is None]
        if missing:
            fail(f"server {srv} lacks the cells {missing}")
        if srv in down:
            if not cells["health"].startswith("down") or "connection refused" not in cells["health"]:
                fail(f"server {srv} should show down with its reason: {cells['health']!r}")
            if not cells["check"].startswith("failed: connection refused"):
                fail(f"server {srv}: last check {cells['check']!r}")
        else:
            if cells["health"] != "up" or not cells["check"].startswith("passed: HTTP 200"):
                fail(f"server {srv} should be up with a passed check: {cells['health']!r}, {cells['check']!r}")
            if "2xx" not in cells["responses"] or "last" not in cells["time"]:
                fail(f"server {srv}: responses {cells['responses']!r}, response time {cells['time']!r}")
    head = d.text("table.upstream tr")
    if "from server" not in head or "bytes to" not in head:
        fail(f"the traffic column does not say to/from the server: {head!r}")
    if not d.text("#reload") or len(d.find_all("a.refresh")) != 2:
        fail("no reload line or no auto-refresh links")
    return rows


def check_layout(d):
    """At 1280 px: no horizontal scrolling, every manager control on screen."""
    m = d.js("""
        const out = {width: window.innerWidth, height: window.innerHeight,
                     scroll: document.documentElement.scrollWidth, off: []};
        for (const e of document.querySelectorAll('td.manage input:not([type=hidden]), td.manage select, td.manage button')) {
            const r = e.getBoundingClientRect();
            if (r.left < 0 || r.top < 0 || r.right > window.innerWidth || r.bottom > window.innerHeight || r.width === 0)
                out.off.push(e.closest('tr').dataset.server + ' ' + (e.name || e.tagName) + ' at ' + JSON.stringify(r));
        }
        out.controls = document.querySelectorAll('td.manage button').length;
        return out;""")
    if m["width"] != WIDTH:
        fail(f"the window is {m['width']} px wide, not {WIDTH}")
    if m["scroll"] > m["width"]:
        fail(f"the page is {m['scroll']} px wide: it scrolls sideways at {WIDTH} px")
    if m["off"] or m["controls"] == 0:
        fail(f"manager controls off screen at {WIDTH}x{HEIGHT}: {m['off']}")
    print(f"layout in a {WIDTH}x{HEIGHT} window: page {m['scroll']} px wide, {m['controls']} manager buttons all in the {m['width']}x{m['height']} view")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--attack", help="a page of another origin that posts to the status page")
    ap.add_argument("--down", action="append", default=[], help="a server that must show as down")
    ap.add_argument("url")
    ap.add_argument("shot")
    ap.add_argument("drain")
    ap.add_argument("servers", nargs="*")
    a = ap.parse_args()
    servers = [a.drain] + a.servers
    d = Driver()
    try:
        if a.attack:
            check_attack(d, a.attack, a.url)
        d.s("POST", "/url", {"url": a.url})
        rows = check_rows(d, servers, a.down)
        check_layout(d)
        before = d.attr(rows[a.drain], "data-state")
        button = d.find_all(f'tr.server[data-server="{a.drain}"] form.drain button')[0]
        d.s("POST", f"/element/{button}/click", {})

        def drained():
            r = d.find_all(f'tr.server[data-server="{a.drain}"]')
            return r and d.attr(r[0], "data-state") == "disabled"
        wait_for(f"{a.drain} shown as disabled after the drain click", drained)
        check_layout(d)
        png = base64.b64decode(d.s("GET", "/screenshot"))
        with open(a.shot, "wb") as f:
            f.write(png)
        print(f"browser check ok: {len(servers)} servers rendered, {a.drain} drained ({before} -> disabled), screenshot {a.shot}")
    finally:
        d.close()


if __name__ == "__main__":
    main()
