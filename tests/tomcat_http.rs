//! Through pounce to two real Tomcat 10 instances over HTTP.

mod support;
use std::io::{BufReader, Write};
use support::tomcat::{require_tomcat, Opts, Tomcat};
use support::*;

#[test]
fn tomcat_over_http() {
    if !require_tomcat() {
        return;
    }
    let nodes = Tomcat::start_many(&["tomcat1", "tomcat2"], &Opts::default());
    let p = Pounce::start(
        &Conf::new()
            .http("access_log logs/access.log;")
            .http("client_max_body_size 10m;")
            .upstream(
                Upstream::new("tomcats").server(format!("127.0.0.1:{}", nodes[0].http)).server(format!("127.0.0.1:{}", nodes[1].http)).line("keepalive 8;"),
            )
            .server(Server::new().location(Location::new("/").proxy_pass("http://tomcats"))),
    );

    // A static file, byte for byte.
    let r = p.get("/hello.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello from the pounce demo\n");

    // Sessions: the cookie carries the jvmRoute; without a cookie requests are balanced.
    let mut routes = Vec::new();
    for _ in 0..4 {
        let r = p.get("/session.jsp");
        assert_eq!(r.status, 200);
        let cookie = r.header("set-cookie").expect("session cookie").to_string();
        let route = cookie.split(';').next().and_then(|c| c.split('.').nth(1)).expect("route suffix").to_string();
        assert!(r.text().contains(&format!("route={}", route)), "{}", r.text());
        routes.push(route);
    }
    assert!(routes.contains(&"tomcat1".to_string()) && routes.contains(&"tomcat2".to_string()), "{:?}", routes);

    // A 1 MiB POST echoed back by a JSP.
    let body: Vec<u8> = (0..1024 * 1024u32).map(|i| (i * 31 % 256) as u8).collect();
    let mut raw = format!(
        "POST /echo.jsp?x=1&y=%C3%A9 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    let r = request(p.port, &raw);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-query"), Some("x=1&y=%C3%A9"));
    assert!(r.body == body, "1 MiB echoed byte for byte ({} bytes back)", r.body.len());

    // 300 keep-alive requests: Tomcat closes each pooled connection after 100 requests,
    // pounce notices and no client sees an error.
    let mut s = connect(p.port);
    let mut rd = BufReader::new(s.try_clone().expect("clone"));
    for i in 0..300 {
        s.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("send");
        let r = read_response(&mut rd, false).expect("response");
        assert_eq!(r.status, 200, "request {}", i);
    }
    let err = p.error_log();
    assert!(!err.contains("temporarily disabled"), "{}", err);
}
