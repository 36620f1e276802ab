#!/usr/bin/env python3
"""The client of bench/instructions.sh: N requests to 127.0.0.1:PORT, keep-alive over 4
connections (ka) or one per connection (close), each connection opened with a PROXY v1 header (pp)."""
import socket, sys
port, n, mode, pp = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4] == "pp"
hdr = b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\n" if pp else b""
req = b"GET /p HTTP/1.1\r\nHost: a\r\n\r\n"
close_req = b"GET /p HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
def read_one(s, buf):
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, _, rest = buf.partition(b"\r\n\r\n")
    cl = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
    while len(rest) < cl:
        rest += s.recv(65536)
    assert head.startswith(b"HTTP/1.1 200"), head
    return rest[cl:]
if mode == "ka":
    per = n // 4
    for c in range(4):
        s = socket.create_connection(("127.0.0.1", port)); s.sendall(hdr); buf = b""
        for i in range(per):
            s.sendall(req); buf = read_one(s, buf)
        s.close()
else:
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port)); s.sendall(hdr + close_req); read_one(s, b""); s.close()
