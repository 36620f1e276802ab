#!/usr/bin/env python3
"""A real TLS client for pounce's tests (Python's ssl module): connects to 127.0.0.1:PORT,
optionally sends an HTTP request, and prints one JSON object with what it found: ok/error,
the negotiated version and cipher, the server certificate's common name, the response status,
headers and body, and for --connections N whether each connection resumed the session."""
import argparse
import json
import socket
import ssl
import sys

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--ca")
ap.add_argument("--sni", help="server name to send (and to check the certificate against)")
ap.add_argument("--no-sni", action="store_true")
ap.add_argument("--cert")
ap.add_argument("--key")
ap.add_argument("--version", choices=["1.0", "1.1", "1.2", "1.3"])
ap.add_argument("--ciphers")
ap.add_argument("--method", default="GET")
ap.add_argument("--path", default="/")
ap.add_argument("--host", default="localhost")
ap.add_argument("--body", default="")
ap.add_argument("--no-request", action="store_true")
ap.add_argument("--connections", type=int, default=1, help="connect N times, resuming the first session")
ap.add_argument("--proxy-header", help="bytes (hex) sent before the TLS handshake: a PROXY protocol header")
a = ap.parse_args()

VERSIONS = {"1.0": ssl.TLSVersion.TLSv1, "1.1": ssl.TLSVersion.TLSv1_1, "1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
if a.ca:
    ctx.load_verify_locations(a.ca)
else:
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
if a.no_sni:
    ctx.check_hostname = False
if a.cert:
    ctx.load_cert_chain(a.cert, a.key)
if a.version:
    if a.version in ("1.0", "1.1"):
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = VERSIONS[a.version]
    ctx.maximum_version = VERSIONS[a.version]
if a.ciphers:
    ctx.set_ciphers(a.ciphers)

out = {"ok": False, "reused": []}


def read_response(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError("closed before the response head: %r" % data)
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = [l.split(":", 1) for l in lines[1:]]
    headers = [[n.strip(), v.strip()] for n, v in headers]
    length = next((int(v) for n, v in headers if n.lower() == "content-length"), None)
    if a.method != "HEAD" and length is not None:
        while len(rest) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
    return status, headers, rest


session = None
try:
    for i in range(a.connections):
        raw = socket.create_connection(("127.0.0.1", a.port), timeout=10)
        if a.proxy_header:
            raw.sendall(bytes.fromhex(a.proxy_header))
        s = ctx.wrap_socket(raw, server_hostname=None if a.no_sni else (a.sni or "localhost"), session=session)
        out["version"] = s.version()
        out["cipher"] = s.cipher()[0]
        cert = s.getpeercert()
        if cert:
            out["peer_cn"] = next((v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"), "")
        else:
            der = s.getpeercert(binary_form=True)
            out["peer_der_len"] = len(der or b"")
        if not a.no_request:
            body = a.body.encode()
            req = "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % (a.method, a.path, a.host, len(body))
            s.sendall(req.encode() + body)
            status, headers, rest = read_response(s)
            out["status"], out["headers"], out["body"] = status, headers, rest.decode("utf-8", "replace")
        out["reused"].append(bool(s.session_reused))
        session = s.session
        try:
            s.close()
        except OSError:
            pass
    out["ok"] = True
except Exception as e:  # the test asserts on what went wrong
    out["error"] = "%s: %s" % (type(e).__name__, e)
print(json.dumps(out))
