//! Malformed and oversized requests get the right status, and pounce keeps serving.

mod support;
use std::io::{BufReader, Read, Write};
use std::time::{Duration, Instant};
use support::*;

fn start() -> (Backend, Pounce) {
    let b = Backend::named("a");
    let conf = Conf::new()
        .http("client_max_body_size 1k;")
        .http("client_header_timeout 500ms;")
        .upstream(Upstream::new("app").server(b.addr()))
        .server(Server::new().location(Location::new("/").proxy_pass("http://app")));
    (b, Pounce::start(&conf))
}

/// Sends `raw`, returns the status and whether pounce closed the connection afterwards.
fn status_and_closed(port: u16, raw: &[u8]) -> (u16, bool) {
    let s = connect(port);
    (&s).write_all(raw).expect("send");
    let mut r = BufReader::new(s);
    let resp = read_response(&mut r, false).expect("response");
    let mut rest = [0u8; 1];
    let closed = matches!(r.read(&mut rest), Ok(0));
    (resp.status, closed)
}

#[test]
fn statuses_for_bad_requests() {
    let (b, p) = start();
    let big_line = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
    let mut big_headers = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    while big_headers.len() < 9000 {
        big_headers.push_str("X-Fill: 0123456789012345678901234567890123456789\r\n");
    }
    big_headers.push_str("\r\n");
    let mut many = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..120 {
        many.push_str(&format!("X-{}: 1\r\n", i));
    }
    many.push_str("\r\n");
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("garbage", b"HELLO\r\n\r\n".to_vec(), 400),
        ("CL and TE", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(), 400),
        ("two CLs", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd".to_vec(), 400),
        ("invalid chunk", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n".to_vec(), 400),
        ("body over limit", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n".to_vec(), 413),
        ("long line", big_line.into_bytes(), 414),
        ("big headers", big_headers.into_bytes(), 431),
        ("too many headers", many.into_bytes(), 431),
        ("unknown coding", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(), 501),
        ("HTTP/2 line", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n".to_vec(), 505),
        ("no Host on 1.1", b"GET / HTTP/1.1\r\n\r\n".to_vec(), 400),
    ];
    for (what, raw, want) in cases {
        let (got, closed) = status_and_closed(p.port, &raw);
        assert_eq!(got, want, "{}", what);
        assert!(closed, "{}: connection closed after an error", what);
    }
    assert_eq!(b.requests(), 0, "no bad request reached the backend");
    assert_eq!(p.get("/").status, 200, "still serving");
}

#[test]
fn chunked_body_over_limit_gets_413() {
    let (b, p) = start();
    let mut raw = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        raw.extend_from_slice(b"400\r\n");
        raw.extend_from_slice(&[b'x'; 1024]);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let (got, _) = status_and_closed(p.port, &raw);
    assert_eq!(got, 413);
    drop(b);
}

#[test]
fn header_timeout_gives_408() {
    let (_b, p) = start();
    let mut s = connect(p.port);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").expect("partial head");
    let t = Instant::now();
    let r = read_response(&mut BufReader::new(s), false).expect("408");
    assert_eq!(r.status, 408);
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[test]
fn idle_connection_without_request_is_closed_silently() {
    let (_b, p) = start();
    let mut s = connect(p.port);
    let mut buf = [0u8; 64];
    let t = Instant::now();
    let n = s.read(&mut buf).expect("eof, not an error");
    assert_eq!(n, 0);
    assert!(t.elapsed() < Duration::from_secs(3));
}
