//! The AJP13 adapter through the real binary, against the AJP backend in the support code.

mod support;
use std::io::{BufReader, Write};
use std::time::{Duration, Instant};
use support::ajp::{AjpBackend, AjpReply, Behaviour};
use support::*;

fn conf(servers: &str, upstream_extra: &str, loc_extra: &str) -> Conf {
    Conf::new()
        .http("access_log logs/access.log;")
        .http("client_max_body_size 20m;")
        .upstream(Upstream::new("tc").line(servers).line(upstream_extra))
        .server(Server::new().location(Location::new("/").proxy_pass("ajp://tc").line(loc_extra)))
}

#[test]
fn forward_request_fields_and_response() {
    let b = AjpBackend::echo("t1");
    let p = Pounce::start(&conf(&format!("server {};", b.addr()), "keepalive 4;", "ajp_secret s3cret;"));
    let r = request(p.port, b"GET /app/page.jsp?a=1&b=%C3%A9 HTTP/1.1\r\nHost: front.example:8080\r\nUser-Agent: t\r\nCookie: a=1\r\nCookie: b=2\r\nX-Custom: v\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "t1");
    assert_eq!(r.header("x-backend"), Some("t1"));
    let seen = b.last().expect("seen");
    assert_eq!(seen.method, 2);
    assert_eq!(seen.protocol, "HTTP/1.1");
    assert_eq!(seen.uri, "/app/page.jsp");
    assert_eq!(seen.query.as_deref(), Some("a=1&b=%C3%A9"));
    assert_eq!(seen.remote_addr, "127.0.0.1");
    assert_eq!(seen.server_name, "front.example");
    assert_eq!(seen.server_port, p.port);
    assert_eq!(seen.secret.as_deref(), Some("s3cret"));
    assert_eq!(seen.header("host"), Some("front.example:8080"));
    assert_eq!(seen.headers.iter().filter(|(n, _)| n == "cookie").count(), 2, "each Cookie its own pair");
    assert_eq!(seen.header("X-Custom"), Some("v"));
    assert!(seen.header("connection").is_none());
    assert_eq!(seen.header("content-length"), Some("0"), "body-less requests say so (as mod_jk)");
    assert!(seen.req_attrs.iter().any(|(k, _)| k == "AJP_REMOTE_PORT"));

    let r = request(p.port, b"PATCH /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi");
    assert_eq!(r.text(), "hi");
    let seen = b.last().expect("seen");
    assert_eq!((seen.method, seen.stored_method.as_deref()), (0xFF, Some("PATCH")));

    let r = request(p.port, b"HEAD /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
}

#[test]
fn five_mib_upload_by_get_body_chunk() {
    let b = AjpBackend::echo("t1");
    let p = Pounce::start(&conf(&format!("server {};", b.addr()), "keepalive 4;", ""));
    let body: Vec<u8> = (0..5 * 1024 * 1024u32).map(|i| (i * 13 % 251) as u8).collect();
    // Content-Length upload.
    let mut s = connect(p.port);
    s.write_all(format!("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes()).expect("head");
    let w = {
        let mut s2 = s.try_clone().expect("clone");
        let body = body.clone();
        std::thread::spawn(move || s2.write_all(&body).expect("body"))
    };
    let mut rd = BufReader::new(s.try_clone().expect("clone"));
    let r = read_response(&mut rd, false).expect("response");
    w.join().expect("writer");
    assert_eq!(r.status, 200);
    assert!(r.body == body, "5 MiB echoed ({} bytes)", r.body.len());
    let seen = b.last().expect("seen");
    assert!(seen.body_packets.iter().all(|&n| n <= 8186), "no packet over P-6");
    assert!(seen.body_packets.len() >= 5 * 1024 * 1024 / 8186, "one packet per GET_BODY_CHUNK");
    // Chunked upload of unknown length, on the same keep-alive connection.
    s.write_all(b"POST /up2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n").expect("head");
    let w = {
        let mut s2 = s.try_clone().expect("clone");
        let body = body.clone();
        std::thread::spawn(move || {
            for piece in body.chunks(100_000) {
                s2.write_all(format!("{:x}\r\n", piece.len()).as_bytes()).expect("size");
                s2.write_all(piece).expect("data");
                s2.write_all(b"\r\n").expect("crlf");
            }
            s2.write_all(b"0\r\n\r\n").expect("end");
        })
    };
    let r = read_response(&mut rd, false).expect("response");
    w.join().expect("writer");
    assert!(r.body == body, "chunked 5 MiB echoed");
    let seen = b.last().expect("seen");
    assert_eq!(seen.body_packets.last(), Some(&0), "ended by the empty packet");
    assert!(seen.header("content-length").is_none());
    assert_eq!(seen.header("transfer-encoding"), Some("chunked"));
    assert_eq!(b.connections(), 1, "both exchanges on one AJP connection");
}

#[test]
fn reuse_zero_closes_and_reuse_one_pools() {
    let reuse = AjpBackend::echo("keep");
    let noreuse = AjpBackend::start(Behaviour {
        answer_cping: true,
        handler: Box::new(|_| AjpReply::Send { status: 200, headers: vec![], body: b"x".to_vec(), reuse: false }),
    });
    let p = Pounce::start(&conf(&format!("server {};", reuse.addr()), "keepalive 4;", ""));
    for _ in 0..10 {
        assert_eq!(p.get("/").status, 200);
    }
    assert_eq!(reuse.connections(), 1);
    let p2 = Pounce::start(&conf(&format!("server {};", noreuse.addr()), "keepalive 4;", ""));
    for _ in 0..10 {
        assert_eq!(p2.get("/").status, 200);
    }
    assert_eq!(noreuse.connections(), 10, "reuse=0: a new connection each time");
}

#[test]
fn cping_failure_moves_to_the_next_server() {
    let mute = AjpBackend::start(Behaviour { answer_cping: false, handler: Box::new(|_| AjpReply::Hang) });
    let good = AjpBackend::echo("good");
    let p = Pounce::start(&conf(&format!("server {}; server {};", mute.addr(), good.addr()), "ajp_ping on; ajp_ping_timeout 300ms;", ""));
    for _ in 0..3 {
        let t = Instant::now();
        let r = request(p.port, b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc");
        assert_eq!(r.status, 200, "even a POST: nothing was sent before the CPONG");
        assert_eq!(r.text(), "abc");
        assert!(t.elapsed() < Duration::from_secs(2));
    }
    assert_eq!(mute.requests(), 0);
    assert!(mute.cpings.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    assert!(good.cpings.load(std::sync::atomic::Ordering::Relaxed) >= 3, "every request probed");
}

#[test]
fn malformed_packet_gives_502() {
    let bad = AjpBackend::start(Behaviour { answer_cping: true, handler: Box::new(|_| AjpReply::Raw(vec![0x12, 0x34, 0x00, 0x02, 0x05, 0x01])) });
    let p = Pounce::start(&conf(&format!("server {};", bad.addr()), "", ""));
    assert_eq!(p.get("/").status, 502);
    let trunc =
        AjpBackend::start(Behaviour { answer_cping: true, handler: Box::new(|_| AjpReply::Raw(vec![0x41, 0x42, 0x00, 0x05, 0x04, 0x00, 0xc8, 0x00, 0x09])) });
    let p = Pounce::start(&conf(&format!("server {};", trunc.addr()), "", ""));
    assert_eq!(p.get("/").status, 502);
    assert!(eventually(Duration::from_secs(2), || p.error_log().contains("AJP")), "{}", p.error_log());
}

#[test]
fn closed_mid_response_truncates_visibly() {
    // Headers with Content-Length 100, 5 body bytes, then the connection closes.
    let mut raw = vec![0x41, 0x42, 0x00, 0x0E, 0x04, 0x00, 0xC8, 0x00, 0x00, 0x00, 0x00, 0x01, 0xA0, 0x03, 0x00, 0x03, b'1', b'0', b'0', 0x00];
    raw[3] = (raw.len() - 4) as u8;
    raw.extend_from_slice(&[0x41, 0x42, 0x00, 0x09, 0x03, 0x00, 0x05, b'h', b'e', b'l', b'l', b'o', 0x00]);
    let b = AjpBackend::start(Behaviour { answer_cping: true, handler: Box::new(move |_| AjpReply::Raw(raw.clone())) });
    let p = Pounce::start(&conf(&format!("server {};", b.addr()), "", ""));
    let mut s = connect(p.port);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
    let r = read_response(&mut BufReader::new(s), false);
    assert!(r.is_err(), "the client sees a short body and a closed connection: {:?}", r.map(|r| r.status));
}

#[test]
fn proxy_next_upstream_applies_to_ajp() {
    let busy = AjpBackend::start(Behaviour {
        answer_cping: true,
        handler: Box::new(|_| AjpReply::Send { status: 503, headers: vec![], body: b"busy".to_vec(), reuse: true }),
    });
    let good = AjpBackend::echo("good");
    let servers = format!("server {}; server {};", busy.addr(), good.addr());
    let p = Pounce::start(&conf(&servers, "", "proxy_next_upstream error timeout http_503;"));
    for _ in 0..4 {
        assert_eq!(p.get("/").text(), "good");
    }
    let p2 = Pounce::start(&conf(&servers, "", ""));
    let statuses: Vec<u16> = (0..4).map(|_| p2.get("/").status).collect();
    assert!(statuses.contains(&503), "{:?}", statuses);
    // A dead AJP server is retried on the next one for a GET.
    let p3 = Pounce::start(&conf(&format!("server 127.0.0.1:{}; server {};", free_port(), good.addr()), "", ""));
    for _ in 0..3 {
        assert_eq!(p3.get("/").text(), "good");
    }
}

#[test]
fn a_small_response_in_pieces_goes_out_whole_unless_tomcat_flushes() {
    use support::ajp::{body_chunks, end_response, send_headers};
    // As Tomcat writes a small response: SEND_HEADERS flushed on its own, then (here 1.5 s
    // later, so the order is plain) the body and END_RESPONSE; with `flush` the application
    // flushed after its headers (Tomcat's flush packet follows them).
    let b = AjpBackend::start(Behaviour {
        answer_cping: true,
        handler: Box::new(|r| {
            let head = send_headers(200, &[("Content-Type".into(), "text/plain".into()), ("Content-Length".into(), "5".into())]);
            let first = if r.uri == "/flush" { [head, body_chunks(b"")].concat() } else { head };
            AjpReply::Pieces { pieces: vec![first, [body_chunks(b"hello"), end_response(true)].concat()], gap: Duration::from_millis(1500) }
        }),
    });
    let p = Pounce::start(&conf(&format!("server {};", b.addr()), "", ""));
    for (path, head_first) in [("/whole", false), ("/flush", true)] {
        let mut s = connect(p.port);
        s.write_all(format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", path).as_bytes()).expect("send");
        // Within a second (the body is not sent yet) the head has come only if Tomcat flushed.
        s.set_read_timeout(Some(Duration::from_millis(1000))).expect("timeout");
        let mut first = [0u8; 512];
        let early = match std::io::Read::read(&mut s, &mut first) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => 0,
            Err(e) => panic!("{}: {}", path, e),
        };
        let early_text = String::from_utf8_lossy(&first[..early]).to_string();
        println!("{}: before the body was sent the client had {:?}", path, early_text);
        if head_first {
            assert!(early_text.starts_with("HTTP/1.1 200 OK\r\n") && !early_text.ends_with("hello"), "a flushed head goes out at once: {:?}", early_text);
        } else {
            assert_eq!(early, 0, "the head waits for its body: {:?}", early_text);
        }
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut rest = Vec::from(&first[..early]);
        let mut buf = [0u8; 512];
        while !rest.ends_with(b"hello") {
            let n = std::io::Read::read(&mut s, &mut buf).expect("the rest");
            assert!(n > 0, "{}: closed early: {:?}", path, String::from_utf8_lossy(&rest));
            rest.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&rest).to_string();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n") && text.contains("Content-Length: 5\r\n"), "{}", text);
    }
}
