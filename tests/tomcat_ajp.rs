//! Through pounce to real Tomcat 10 over its AJP connector.

mod support;
use std::io::{BufReader, Write};
use support::tomcat::{require_tomcat, Opts, Tomcat};
use support::*;

fn conf(ajp_port: u16, secret: &str) -> Conf {
    Conf::new()
        .http("access_log logs/access.log;")
        .http("client_max_body_size 10m;")
        .upstream(Upstream::new("tc").server(format!("127.0.0.1:{}", ajp_port)).line("keepalive 8;"))
        .server(Server::new().location(Location::new("/").proxy_pass("ajp://tc").line(secret)))
}

/// Local addresses of the established connections to `port` (pounce's AJP connections).
fn established_to(port: u16) -> Vec<String> {
    let out = std::process::Command::new("ss").args(["-Htn", "state", "established", "dport", "=", &format!(":{}", port)]).output().expect("ss");
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.split_whitespace().nth(2).map(String::from)).collect()
}

#[test]
fn tomcat_over_ajp() {
    if !require_tomcat() {
        return;
    }
    let secured = Tomcat::start_many(&["tomcat1"], &Opts { ajp_secret: Some("s3cret".into()), ..Default::default() });
    let open = Tomcat::start_many(&["tomcat2"], &Opts { max_keepalive: Some(-1), ..Default::default() });
    let (t1, t2) = (&secured[0], &open[0]);

    // The secret: right gets through, wrong gets Tomcat's own 403.
    let wrong = Pounce::start(&conf(t1.ajp, "ajp_secret nope;"));
    assert_eq!(wrong.get("/hello.txt").status, 403);
    let p = Pounce::start(&conf(t1.ajp, "ajp_secret s3cret;"));
    let r = p.get("/hello.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello from the pounce demo\n");
    assert_eq!(r.raw_head.lines().next(), Some("HTTP/1.1 200 OK"), "our reason phrase, not Tomcat's \"200\"");
    let last_modified = r.header("last-modified").expect("Last-Modified").to_string();

    // 304 and HEAD.
    let r =
        request(p.port, format!("GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nIf-Modified-Since: {}\r\nConnection: close\r\n\r\n", last_modified).as_bytes());
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    let r = request(p.port, b"HEAD /hello.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("27"));

    // A UTF-8 path and a query string.
    let r = p.get("/h%C3%A9llo.txt");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "h\u{e9}llo in UTF-8\n");

    // A JSP with a session: the cookie carries the jvmRoute, the counter counts.
    let r = p.get("/session.jsp");
    let cookie = r.header("set-cookie").expect("cookie").split(';').next().expect("pair").to_string();
    assert!(cookie.starts_with("JSESSIONID=") && cookie.ends_with(".tomcat1"), "{}", cookie);
    let mut last = String::new();
    for _ in 0..3 {
        let raw = format!("GET /session.jsp HTTP/1.1\r\nHost: localhost\r\nCookie: other=1; {}\r\nCookie: x=\"y\"\r\nAccept-Language: fr\r\nX-A: 1\r\nX-B: 2\r\nX-C: 3\r\nConnection: close\r\n\r\n", cookie);
        last = request(p.port, raw.as_bytes()).text();
    }
    assert!(last.contains("count=4") && last.contains("route=tomcat1"), "{}", last);

    // A 1 MiB POST echoed byte for byte, with a query string.
    let body: Vec<u8> = (0..1024 * 1024u32).map(|i| (i * 17 % 256) as u8).collect();
    let mut raw = format!(
        "POST /echo.jsp?x=1&y=%C3%A9 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    let r = request(p.port, &raw);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-query"), Some("x=1&y=%C3%A9"));
    assert!(r.body == body, "1 MiB echoed ({} bytes back)", r.body.len());
    // The same as a chunked upload of unknown length.
    let mut s = connect(p.port);
    s.write_all(b"POST /echo.jsp HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").expect("head");
    for piece in body.chunks(50_000) {
        s.write_all(format!("{:x}\r\n", piece.len()).as_bytes()).expect("size");
        s.write_all(piece).expect("data");
        s.write_all(b"\r\n").expect("crlf");
    }
    s.write_all(b"0\r\n\r\n").expect("end");
    let r = read_response(&mut BufReader::new(s), false).expect("response");
    assert!(r.body == body, "chunked 1 MiB echoed ({} bytes back)", r.body.len());

    // 300 keep-alive requests against Tomcat's default maxKeepAliveRequests (100): no errors.
    let mut s = connect(p.port);
    let mut rd = BufReader::new(s.try_clone().expect("clone"));
    for i in 0..300 {
        s.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("send");
        assert_eq!(read_response(&mut rd, false).expect("response").status, 200, "request {}", i);
    }

    // 1000 keep-alive requests over a handful of AJP connections.
    let p2 = Pounce::start(&conf(t2.ajp, ""));
    let mut s = connect(p2.port);
    let mut rd = BufReader::new(s.try_clone().expect("clone"));
    let mut seen: Vec<String> = Vec::new();
    for i in 0..1000 {
        s.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("send");
        assert_eq!(read_response(&mut rd, false).expect("response").status, 200, "request {}", i);
        if i % 50 == 0 {
            for c in established_to(t2.ajp) {
                if !seen.contains(&c) {
                    seen.push(c);
                }
            }
        }
    }
    println!("1000 requests used {} AJP connection(s): {:?}", seen.len(), seen);
    assert!((1..=4).contains(&seen.len()), "{} AJP connections", seen.len());
    let log = t2.access_log();
    assert!(log.matches("GET /hello.txt").count() >= 1000);
}
