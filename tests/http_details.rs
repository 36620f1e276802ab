//! HTTP details (issue 14, point 6): a request line with `HTTP/1.2` (any 1.x above 1.1) is
//! served as HTTP/1.1 (RFC 9112 §2.6); error answers to HEAD carry no body; a chunk whose
//! declared size alone is over `client_max_body_size` gets 413 at once. (Date and 304 over AJP
//! against real Tomcat: `tests/tomcat_host.rs`.)

mod support;
use std::io::{BufReader, Read, Write};
use std::time::Duration;
use support::*;

#[test]
fn http_1_2_is_served_as_http_1_1() {
    let b = Backend::named("app");
    let conf = Conf::new()
        .server(Server::new().location(Location::new("/").proxy_pass(format!("http://{}", b.addr()))).location(Location::exact("/r").line("return 200 r;")));
    let p = Pounce::start(&conf);
    let mut s = connect(p.port);
    // Two requests on one connection: 1.x is 1.1, so the connection stays open.
    s.write_all(b"GET /a HTTP/1.2\r\nHost: x\r\n\r\nGET /r HTTP/1.9\r\nHost: x\r\nConnection: close\r\n\r\n").expect("send");
    let mut r = BufReader::new(s);
    let first = read_response(&mut r, false).expect("first");
    assert_eq!((first.status, first.raw_head.lines().next()), (200, Some("HTTP/1.1 200 OK")));
    assert_eq!(first.text(), "app");
    assert_eq!(first.header("connection"), None, "kept alive, as HTTP/1.1");
    let second = read_response(&mut r, false).expect("second");
    assert_eq!((second.status, second.text().as_str()), (200, "r"));
    assert_eq!(b.last().map(|q| q.path), Some("/a".to_string()));
    // Other versions are still refused.
    assert_eq!(request(p.port, b"GET / HTTP/2.0\r\nHost: x\r\n\r\n").status, 505);
    assert_eq!(request(p.port, b"GET / HTTP/1.10\r\nHost: x\r\n\r\n").status, 400);
}

/// Sends `raw` (a HEAD request) and returns everything pounce answers until it closes.
fn head_exchange(port: u16, raw: &[u8]) -> String {
    let mut s = connect(port);
    s.write_all(raw).expect("send");
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    String::from_utf8_lossy(&got).to_string()
}

#[test]
fn error_answers_to_head_have_no_body() {
    let dead = free_port();
    let conf = Conf::new().server(
        Server::new()
            .location(Location::new("/dead/").proxy_pass(format!("http://127.0.0.1:{}", dead)))
            .location(Location::new("/no/").line("deny all;"))
            .location(Location::exact("/r").line("return 404;")),
    );
    let p = Pounce::start(&conf);
    let long = format!("HEAD /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
    let cases: [(&[u8], &str); 7] = [
        (b"HEAD /x HTTP/1.1\r\nHost: x\r\nBad\x01: v\r\nConnection: close\r\n\r\n", "400"),
        (b"HEAD /x HTTP/1.1\r\nConnection: close\r\n\r\n", "400"),
        (b"HEAD /x HTTP/2.0\r\nHost: x\r\n\r\n", "505"),
        (long.as_bytes(), "414"),
        (b"HEAD /dead/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "502"),
        (b"HEAD /no/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "403"),
        (b"HEAD /r HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "404"),
    ];
    for (raw, status) in cases {
        let text = head_exchange(p.port, raw);
        assert!(text.starts_with(&format!("HTTP/1.1 {} ", status)), "{:?}", text);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        assert_eq!(body, "", "HEAD {}: no body after the head", status);
        // The head still says how long the page would be, as for GET.
        let length: usize = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).and_then(|v| v.parse().ok()).unwrap_or(0);
        assert!(length > 0, "{}", head);
    }
}

#[test]
fn a_chunk_declaring_more_than_the_limit_gets_413_at_once() {
    let b = Backend::named("app");
    let conf = Conf::new().http("client_max_body_size 1m;").server(Server::new().location(Location::new("/").proxy_pass(format!("http://{}", b.addr()))));
    let p = Pounce::start(&conf);
    for (what, first) in [("the first chunk", &b"6400000\r\n"[..]), ("a later chunk", b"5\r\nhello\r\n6400000\r\nabc")] {
        let mut s = connect(p.port);
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        s.write_all(b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n").expect("head");
        s.write_all(first).expect("chunk line");
        // No more bytes are sent: the answer must come anyway.
        let r = read_response(&mut BufReader::new(s), false).unwrap_or_else(|e| panic!("{}: no answer before the chunk's bytes: {}", what, e));
        assert_eq!(r.status, 413, "{}", what);
        assert_eq!(r.header("connection"), Some("close"));
    }
    // A body within the limit still goes through.
    let mut s = connect(p.port);
    s.write_all(b"POST /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n").expect("send");
    let r = read_response(&mut BufReader::new(s), false).expect("response");
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    // The refused bodies never reached the backend whole (its connection was closed).
    let reached: Vec<String> = b.seen.lock().map(|v| v.iter().map(|q| q.path.clone()).collect()).unwrap_or_default();
    assert_eq!(reached, vec!["/ok".to_string()]);
}
