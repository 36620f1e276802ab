#!/usr/bin/env python3
"""Checks pounce's status page in a real headless Chromium, through chromedriver's
WebDriver HTTP API (Python standard library only).

  scripts/browser_check.py URL SCREENSHOT.png SERVER_TO_DRAIN [SERVER ...]

Loads URL, checks that every server given is rendered with its manager forms, clicks the
"drain" button of SERVER_TO_DRAIN, checks that the page then shows it as disabled, and saves a
screenshot. Exits non-zero with a message on any failure. Talks only to 127.0.0.1.
"""
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", shutil.which("chromedriver") or "/usr/bin/chromedriver")


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
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                self.call("GET", "/status")
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise SystemExit("chromedriver did not start")
        self.profile = tempfile.mkdtemp(prefix="pounce-chromium-")
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", f"--user-data-dir={self.profile}", "--window-size=1760,520"]}}}}
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

    def close(self):
        try:
            self.s("DELETE", "")
        finally:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            shutil.rmtree(self.profile, ignore_errors=True)


def main():
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    url, shot, drain, servers = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[3:]
    d = Driver()
    try:
        d.s("POST", "/url", {"url": url})
        rows = {d.attr(r, "data-server"): r for r in d.find_all("tr.server")}
        for srv in servers:
            if srv not in rows:
                raise SystemExit(f"server {srv} is not on the page (found {sorted(rows)})")
            for form in ("form.set", "form.drain"):
                if not d.find_all(f'tr.server[data-server="{srv}"] {form}'):
                    raise SystemExit(f"server {srv} has no {form}")
            if not d.find_all(f'tr.server[data-server="{srv}"] form.set input[name="weight"]'):
                raise SystemExit(f"server {srv} has no weight input")
        before = d.attr(rows[drain], "data-state")
        button = d.find_all(f'tr.server[data-server="{drain}"] form.drain button')[0]
        d.s("POST", f"/element/{button}/click", {})
        deadline = time.time() + 10
        state = before
        while time.time() < deadline:
            try:
                rows = d.find_all(f'tr.server[data-server="{drain}"]')
                state = d.attr(rows[0], "data-state") if rows else None
            except urllib.error.HTTPError:
                # The form's answer replaced the page between the two calls (a stale element).
                state = None
            if state == "disabled":
                break
            time.sleep(0.1)
        if state != "disabled":
            raise SystemExit(f"after the drain click the page shows {drain} as {state!r}")
        png = base64.b64decode(d.s("GET", "/screenshot"))
        with open(shot, "wb") as f:
            f.write(png)
        print(f"browser check ok: {len(servers)} servers rendered, {drain} drained ({before} -> disabled), screenshot {shot}")
    finally:
        d.close()


if __name__ == "__main__":
    main()
