//! A small AJP response ends with its body: Tomcat writes SEND_HEADERS, the body and
//! END_RESPONSE as separate segments, and pounce does not wait (nor wake) for the last one.
//! It answers the client once the declared body is in, pools the connection with the
//! END_RESPONSE still owed, and reads it first with the next response on that connection.
//! Here the support backend sends END_RESPONSE long after the body, so each case is plain.

mod support;
use std::io::{BufReader, Write};
use std::time::{Duration, Instant};
use support::ajp::{body_chunks, end_response, send_headers, AjpBackend, AjpReply, AjpReq, Behaviour};
use support::*;

const HEAD: u8 = 3;

fn conf(backend: &AjpBackend, upstream_extra: &str) -> Conf {
    Conf::new()
        .upstream(Upstream::new("tc").line(format!("server {};", backend.addr())).line("keepalive 4;").line(upstream_extra))
        .server(Server::new().location(Location::new("/").proxy_pass("ajp://tc").line("proxy_read_timeout 10s;")))
}

/// `/nolen`: a body of unknown length, its END_RESPONSE `gap` later; anything else: "hello"
/// with its Content-Length (no body for HEAD), END_RESPONSE `gap` later, with `reuse`
/// (`/flushed`: a flush packet before it); `/bye`: then the connection is closed another
/// `gap` later.
fn late_end(gap: Duration, reuse: bool) -> Behaviour {
    Behaviour {
        answer_cping: true,
        handler: Box::new(move |r: &AjpReq| {
            let first = if r.uri == "/nolen" {
                [send_headers(200, &[("Content-Type".into(), "text/plain".into())]), body_chunks(b"abc")].concat()
            } else {
                let head = send_headers(200, &[("Content-Type".into(), "text/plain".into()), ("Content-Length".into(), "5".into())]);
                if r.method == HEAD {
                    head
                } else {
                    [head, body_chunks(b"hello")].concat()
                }
            };
            // `/flushed`: the application flushed after its body (Tomcat's flush packet).
            let flush = if r.uri == "/flushed" { body_chunks(b"") } else { Vec::new() };
            let mut pieces = vec![first, [flush, end_response(reuse)].concat()];
            if r.uri == "/bye" {
                // Then closed, as Tomcat closes a connection idle for its keepAliveTimeout.
                pieces.push(Vec::new());
            }
            AjpReply::Pieces { pieces, gap }
        }),
    }
}

/// Sends `raw` on the client connection and reads the response, timing it.
fn timed(c: &mut BufReader<std::net::TcpStream>, raw: &str) -> (Resp, Duration) {
    let t = Instant::now();
    c.get_mut().write_all(raw.as_bytes()).expect("send");
    let r = read_response(c, raw.starts_with("HEAD")).expect("response");
    (r, t.elapsed())
}

#[test]
fn the_client_has_its_answer_before_end_response_and_the_connection_is_reused() {
    let b = AjpBackend::start(late_end(Duration::from_millis(800), true));
    let p = Pounce::start(&conf(&b, ""));
    let mut c = BufReader::new(connect(p.port));
    let (r, took) = timed(&mut c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((r.status, r.text().as_str(), r.header("content-length")), (200, "hello", Some("5")));
    assert!(took < Duration::from_millis(500), "answered when the body was in, not at END_RESPONSE: {:?}", took);
    // The same backend connection serves the next ones: its END_RESPONSE comes first.
    let (r, _) = timed(&mut c, "HEAD /b HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((r.status, r.body.len(), r.header("content-length")), (200, 0, Some("5")));
    let (r, _) = timed(&mut c, "GET /c HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    // A flush packet before the END_RESPONSE is skipped with it.
    let (r, _) = timed(&mut c, "GET /flushed HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    let (r, _) = timed(&mut c, "GET /d HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, "hello"), "{}", p.error_log());
    assert_eq!((b.requests(), b.connections()), (5, 1), "one backend connection for all five");
    assert!(!p.error_log().contains("failed"), "{}", p.error_log());
}

#[test]
fn an_end_response_that_closes_the_connection_costs_no_request() {
    let b = AjpBackend::start(late_end(Duration::from_millis(300), false));
    let p = Pounce::start(&conf(&b, ""));
    let mut c = BufReader::new(connect(p.port));
    let (r, took) = timed(&mut c, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    assert!(took < Duration::from_millis(250), "{:?}", took);
    // At once: sent on the pooled connection, which Tomcat closes after its END_RESPONSE
    // (without reuse) instead of reading it: resent on a new connection.
    let (r, _) = timed(&mut c, "GET /2 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    assert_eq!(b.connections(), 2);
    // After a pause: the closing END_RESPONSE and the close reached the idle connection,
    // which pounce dropped from its pool.
    std::thread::sleep(Duration::from_millis(700));
    let (r, _) = timed(&mut c, "GET /3 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    assert_eq!((b.requests(), b.connections()), (3, 3));
    assert!(!p.error_log().contains("failed"), "no server failure: {}", p.error_log());
}

#[test]
fn cping_and_a_response_of_unknown_length_still_wake_pounce() {
    // The pooled connection sleeps through a lone END_RESPONSE (its low-water mark is raised
    // once), so what may come alone and shorter must wake it: a CPONG (5 bytes), and the
    // END_RESPONSE of a response without Content-Length.
    let b = AjpBackend::start(late_end(Duration::from_millis(300), true));
    let p = Pounce::start(&conf(&b, "ajp_ping on; ajp_ping_timeout 3s;"));
    let mut c = BufReader::new(connect(p.port));
    let (r, took) = timed(&mut c, "GET /cl HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    assert!(took < Duration::from_millis(250), "{:?}", took);
    // Its CPONG comes behind the END_RESPONSE still owed; its own END_RESPONSE comes alone.
    let (r, took) = timed(&mut c, "GET /nolen HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((r.status, r.text().as_str(), r.header("transfer-encoding")), (200, "abc", Some("chunked")));
    assert!(took < Duration::from_millis(2000), "the lone END_RESPONSE woke pounce: {:?}", took);
    // Nothing owed now: the CPONG comes alone.
    let (r, took) = timed(&mut c, "GET /cl HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    assert!(took < Duration::from_millis(1500), "the lone CPONG woke pounce: {:?}", took);
    assert_eq!((b.requests(), b.connections(), b.cpings.load(std::sync::atomic::Ordering::Relaxed)), (3, 1, 3));
}

#[test]
fn a_request_with_a_body_takes_a_connection_whose_end_response_came() {
    // A body that may not be resent goes only on a connection checked clean: an owed
    // END_RESPONSE that has arrived is read there, and the connection is used.
    let b = AjpBackend::start(late_end(Duration::from_millis(100), true));
    let p = Pounce::start(&conf(&b, ""));
    let mut c = BufReader::new(connect(p.port));
    let (r, _) = timed(&mut c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 200);
    std::thread::sleep(Duration::from_millis(400));
    let (r, _) = timed(&mut c, "POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\ndata");
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    assert_eq!(b.last().map(|q| q.body), Some(b"data".to_vec()));
    assert_eq!((b.requests(), b.connections()), (2, 1));
    // A close behind the END_RESPONSE is seen too: the body goes on a new connection.
    let (r, _) = timed(&mut c, "GET /bye HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 200);
    std::thread::sleep(Duration::from_millis(500));
    let (r, _) = timed(&mut c, "POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\ndata");
    assert_eq!((r.status, r.text().as_str()), (200, "hello"), "{}", p.error_log());
    assert_eq!((b.requests(), b.connections()), (4, 2));
}
