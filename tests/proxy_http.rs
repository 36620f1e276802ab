//! The HTTP path end to end: the real pounce binary between a client socket and small
//! backends, asserting on the bytes each side sees.

mod support;
use std::io::{BufReader, Write};
use std::time::Duration;
use support::*;

fn conf_one(backend: &Backend, extra_upstream: &str, extra_loc: &str) -> Conf {
    Conf::new()
        .http("access_log logs/access.log;")
        .upstream(Upstream::new("app").server(backend.addr()).line(extra_upstream))
        .server(Server::new().location(Location::new("/").proxy_pass("http://app").line(extra_loc)))
}

#[test]
fn get_post_head_byte_for_byte() {
    let b = Backend::named("a");
    let p = Pounce::start(&conf_one(&b, "keepalive 4;", ""));
    let r = request(p.port, b"GET /hello?x=1 HTTP/1.1\r\nHost: front.example:8080\r\nUser-Agent: t\r\nConnection: keep-alive, X-Drop\r\nX-Drop: 1\r\nX-Forwarded-For: 10.9.9.9\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"a");
    assert_eq!(r.header("X-Backend"), Some("a"));
    let seen = b.last().expect("backend saw the request");
    assert_eq!(seen.path, "/hello?x=1");
    assert_eq!(seen.header("host"), Some("front.example:8080"));
    assert_eq!(seen.header("x-forwarded-for"), Some("10.9.9.9, 127.0.0.1"));
    assert_eq!(seen.header("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("user-agent"), Some("t"));
    assert!(seen.header("x-drop").is_none(), "headers named in Connection are hop-by-hop");
    assert_eq!(seen.header("connection"), Some("keep-alive"), "upstream keep-alive: asked for, so the backend says for how long");

    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let mut raw = format!("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).into_bytes();
    raw.extend_from_slice(&body);
    let r = request(p.port, &raw);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, body, "POST body echoed byte for byte");

    let r = request(p.port, b"HEAD /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("1"));
    assert!(r.body.is_empty());

    let log = p.access_log();
    assert!(log.contains("\"GET /hello?x=1 HTTP/1.1\" 200 1 \"-\" \"t\" upstream_addr=127.0.0.1:"), "{log}");
    assert!(log.contains("upstream_status=200 request_time="), "{log}");
}

#[test]
fn chunked_upload_and_download_5mib() {
    let b = Backend::with("echo", |r| Reply::Send { status: 200, headers: vec![], body: r.body.clone(), framing: Framing::Chunked });
    let p = Pounce::start(&conf_one(&b, "", "client_max_body_size 10m;"));
    let body: Vec<u8> = (0..5 * 1024 * 1024u32).map(|i| (i * 7 % 256) as u8).collect();
    let mut s = connect(p.port);
    s.write_all(b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n").expect("head");
    let writer = {
        let mut s2 = s.try_clone().expect("clone");
        let body = body.clone();
        std::thread::spawn(move || {
            for piece in body.chunks(65_000) {
                s2.write_all(format!("{:x}\r\n", piece.len()).as_bytes()).expect("size");
                s2.write_all(piece).expect("data");
                s2.write_all(b"\r\n").expect("crlf");
            }
            s2.write_all(b"0\r\n\r\n").expect("end");
        })
    };
    let r = read_response(&mut BufReader::new(s), false).expect("response");
    writer.join().expect("writer");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.body.len(), body.len());
    assert!(r.body == body, "5 MiB came back byte for byte");
}

#[test]
fn close_delimited_and_length_downloads() {
    let big: Vec<u8> = (0..5 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let b2 = big.clone();
    let b = Backend::with("dl", move |r| {
        let framing = if r.path == "/close" { Framing::Close } else { Framing::Length };
        Reply::Send { status: 200, headers: vec![], body: b2.clone(), framing }
    });
    let p = Pounce::start(&conf_one(&b, "keepalive 2;", ""));
    let r = request(p.port, b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.header("transfer-encoding"), Some("chunked"), "unknown length is re-framed for a 1.1 client");
    assert!(r.body == big);
    let r = request(p.port, b"GET /close HTTP/1.0\r\n\r\n");
    assert!(r.header("transfer-encoding").is_none());
    assert!(r.body == big, "close-delimited for a 1.0 client");
    let r = request(p.port, b"GET /len HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(r.header("content-length"), Some(big.len().to_string().as_str()));
    assert!(r.body == big);
}

#[test]
fn backend_connections_are_reused() {
    let b = Backend::named("a");
    let p = Pounce::start(&conf_one(&b, "keepalive 8;", ""));
    let mut s = connect(p.port);
    let mut r = BufReader::new(s.try_clone().expect("clone"));
    for i in 0..50 {
        s.write_all(format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", i).as_bytes()).expect("send");
        let resp = read_response(&mut r, false).expect("resp");
        assert_eq!(resp.status, 200);
    }
    for _ in 0..50 {
        assert_eq!(p.get("/fresh-client").status, 200);
    }
    assert_eq!(b.requests(), 100);
    assert!(b.connections() <= 2, "100 requests used {} backend connections", b.connections());
}

#[test]
fn pipelined_requests_answered_in_order() {
    let b = Backend::with("slowfirst", |r| {
        let body = r.path.clone().into_bytes();
        if r.path == "/1" {
            Reply::Delay(Duration::from_millis(200), Box::new(Reply::ok(body)))
        } else {
            Reply::ok(body)
        }
    });
    let p = Pounce::start(&conf_one(&b, "keepalive 4;", ""));
    let mut s = connect(p.port);
    s.write_all(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\nPOST /3 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("send");
    let mut r = BufReader::new(s);
    let bodies: Vec<String> = (0..4).map(|_| read_response(&mut r, false).expect("resp").text()).collect();
    assert_eq!(bodies, vec!["/1", "/2", "/3", "/4"]);
}

#[test]
fn stale_pooled_connection_is_retried_silently() {
    // Like Tomcat closing idle keep-alive connections: every response is followed by a close.
    let b = Backend::with("closer", |_| Reply::RawThenClose(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()));
    let p = Pounce::start(&conf_one(&b, "keepalive 4;", ""));
    for _ in 0..20 {
        let r = p.get("/x");
        assert_eq!(r.status, 200, "{:?}", r);
        assert_eq!(r.body, b"ok");
        std::thread::sleep(Duration::from_millis(15));
    }
    let err = p.error_log();
    assert!(!err.contains("temporarily disabled"), "no health failure: {err}");
}

#[test]
fn a_written_post_is_not_resent_when_its_pooled_connection_dies() {
    // The backend takes the POST and dies on it (closes without answering): it may have acted
    // on it, so pounce answers 502 instead of sending it again, as nginx does. A GET is resent.
    let b = Backend::with("dies-on-post", |r| if r.method == "POST" || r.path == "/die" { Reply::Close } else { Reply::ok("ok") });
    let p = Pounce::start(&conf_one(&b, "keepalive 4;", ""));
    let post = b"POST /order HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    assert_eq!(p.get("/warm").status, 200, "a pooled connection now exists");
    let r = request(p.port, post);
    let posts = b.seen.lock().map(|v| v.iter().filter(|q| q.method == "POST").count()).unwrap_or(0);
    println!("POST on a pooled connection that dies: {}, backend saw it {} time(s)", r.status, posts);
    assert_eq!((r.status, posts), (502, 1));
    assert_eq!(p.get("/warm").status, 200);
    let _ = p.get("/die");
    let gets = b.seen.lock().map(|v| v.iter().filter(|q| q.path == "/die").count()).unwrap_or(0);
    assert!(gets >= 2, "an idempotent request is resent: seen {} times", gets);
}

#[test]
fn redirects_are_rewritten_to_the_client_host() {
    use std::sync::atomic::{AtomicU16, Ordering};
    use std::sync::Arc;
    let own = Arc::new(AtomicU16::new(0));
    let o2 = own.clone();
    let b = Backend::with("redir", move |r| {
        let target = if r.path == "/refresh" { "Refresh" } else { "Location" };
        let value = format!("{}http://127.0.0.1:{}/next?a=1", if target == "Refresh" { "0; url=" } else { "" }, o2.load(Ordering::Relaxed));
        Reply::Send {
            status: 302,
            headers: vec![(target.into(), value), ("X-Other".into(), "http://127.0.0.1/keep".into())],
            body: vec![],
            framing: Framing::Length,
        }
    });
    own.store(b.port, Ordering::Relaxed);
    let p = Pounce::start(&conf_one(&b, "", ""));
    let r = request(p.port, b"GET / HTTP/1.1\r\nHost: www.example:8080\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("http://www.example:8080/next?a=1"));
    assert_eq!(r.header("x-other"), Some("http://127.0.0.1/keep"));
    let r = request(p.port, b"GET /refresh HTTP/1.1\r\nHost: www.example\r\nConnection: close\r\n\r\n");
    assert_eq!(r.header("refresh"), Some("0; url=http://www.example/next?a=1"));
}

#[test]
fn expect_100_continue() {
    let b = Backend::named("a");
    let p = Pounce::start(&conf_one(&b, "", ""));
    let mut s = connect(p.port);
    s.write_all(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n").expect("head");
    let mut r = BufReader::new(s.try_clone().expect("clone"));
    let interim = read_response(&mut r, false).expect("100");
    assert_eq!(interim.status, 100);
    s.write_all(b"hello").expect("body");
    let fin = read_response(&mut r, false).expect("final");
    assert_eq!(fin.status, 200);
    assert_eq!(fin.body, b"hello");
    assert!(b.last().expect("seen").header("expect").is_none());
}

#[test]
fn return_and_unknown_location() {
    let b = Backend::named("a");
    let p = Pounce::start(
        &Conf::new().upstream(Upstream::new("app").server(b.addr())).server(
            Server::new()
                .location(Location::exact("/ping").line("return 200 pong;"))
                .location(Location::new("/old").line("return 301 http://new.example/;"))
                .location(Location::new("/app/").proxy_pass("http://app")),
        ),
    );
    let r = p.get("/ping");
    assert_eq!((r.status, r.text()), (200, "pong".to_string()));
    let r = p.get("/old/x");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("http://new.example/"));
    assert_eq!(p.get("/nothing").status, 404);
    assert_eq!(p.get("/app/x").text(), "a");
}

#[test]
fn early_answer_before_the_body_keeps_the_client_connection() {
    use std::io::Read;
    // A backend that answers as soon as it has the head, as nginx's `return` does.
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for s in l.incoming().take(4) {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly");
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    let p = Pounce::start(
        &Conf::new()
            .http("client_max_body_size 10m;")
            // This backend answers once per connection and then only reads: no keep-alive.
            .upstream(Upstream::new("app").server(format!("127.0.0.1:{}", port)).line("keepalive off;"))
            .server(Server::new().location(Location::new("/").proxy_pass("http://app"))),
    );
    let mut s = connect(p.port);
    let body = vec![b'u'; 1 << 20];
    s.write_all(format!("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes()).expect("head");
    let mut w = s.try_clone().expect("clone");
    let writer = std::thread::spawn(move || w.write_all(&body).is_ok());
    let mut r = BufReader::new(s.try_clone().expect("clone"));
    let first = read_response(&mut r, false).expect("early answer");
    assert_eq!((first.status, first.text().as_str()), (200, "early"));
    assert!(writer.join().expect("writer"), "the rest of the body was read, not refused");
    s.write_all(b"GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("next");
    let second = read_response(&mut r, false).expect("the connection still works");
    assert_eq!(second.text(), "early");
}
