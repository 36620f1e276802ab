//! Through pounce to real Tomcat 10 (issue 14, points 5 and 6): responses over AJP carry a
//! Date (Tomcat's AJP connector sends none) and a 304 no `Content-Length: 0`; an HTTP/1.0
//! request without Host reaches Tomcat with a usable server name over AJP and HTTP (an
//! upstream named `tomcats_http` is not a host Tomcat accepts); Tomcat's absolute redirects
//! come back to the client's own host when Host is overridden. `where.jsp` in the demo webapp
//! says what server name and port Tomcat saw, and redirects absolutely with `?redirect`.

mod support;
use support::tomcat::{require_tomcat, Opts, Tomcat};
use support::*;

fn get(port: u16, raw: &str) -> Resp {
    request(port, raw.as_bytes())
}

/// An RFC 9110 IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
fn is_http_date(v: &str) -> bool {
    let b = v.as_bytes();
    v.len() == 29 && v.ends_with(" GMT") && b[3] == b',' && b[7] == b' ' && b[19] == b':' && b[22] == b':'
}

#[test]
fn tomcat_date_304_host_and_redirects() {
    if !require_tomcat() {
        return;
    }
    let nodes = Tomcat::start_many(&["tomcat1"], &Opts { ajp_secret: Some("s3cret".into()), ..Default::default() });
    let t = &nodes[0];

    // AJP.
    let ajp = Pounce::start(
        &Conf::new()
            .upstream(Upstream::new("tomcats").server(format!("127.0.0.1:{}", t.ajp)))
            .server(Server::new().name("front.example").location(Location::new("/").proxy_pass("ajp://tomcats").line("ajp_secret s3cret;"))),
    );
    let r = get(ajp.port, "GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(r.header("date").is_some_and(is_http_date), "a Date over AJP: {}", r.raw_head);
    assert_eq!(r.raw_head.matches("Date: ").count(), 1);
    let last_modified = r.header("last-modified").expect("Last-Modified").to_string();
    let r = get(ajp.port, &format!("GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nIf-Modified-Since: {}\r\nConnection: close\r\n\r\n", last_modified));
    assert_eq!(r.status, 304);
    assert!(r.header("date").is_some_and(is_http_date), "{}", r.raw_head);
    assert_eq!(r.header("content-length"), None, "no Content-Length: 0 on a 304 (RFC 9110 §8.6): {}", r.raw_head);
    assert!(r.header("etag").is_some());
    // HTTP/1.0 without Host: the server's name and the port the client came to, not "".
    let r = get(ajp.port, "GET /where.jsp HTTP/1.0\r\n\r\n");
    assert_eq!(r.text(), format!("server=front.example\nport={}", ajp.port), "{}", r.raw_head);
    let r = get(ajp.port, "GET /where.jsp?redirect HTTP/1.0\r\n\r\n");
    assert_eq!(r.header("location").map(String::from), Some(format!("http://front.example:{}/hello.txt", ajp.port)));

    // HTTP, to an upstream whose name is not a valid host, as in the README.
    let http = Pounce::start(
        &Conf::new()
            .upstream(Upstream::new("tomcats_http").server(format!("127.0.0.1:{}", t.http)))
            .server(Server::new().location(Location::new("/").proxy_pass("http://tomcats_http"))),
    );
    let r = get(http.port, "GET /where.jsp HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200, "Tomcat refuses Host: tomcats_http with 400: {}", r.text());
    assert_eq!(r.text(), format!("server=127.0.0.1\nport={}", http.port));
    let r = get(http.port, "GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert_eq!(r.raw_head.matches("Date: ").count(), 1, "Tomcat's own Date over HTTP, not a second one: {}", r.raw_head);

    // Host overridden: Tomcat redirects to the name it was given; the client gets its own.
    let overridden = Pounce::start(
        &Conf::new()
            .upstream(Upstream::new("tomcats").server(format!("127.0.0.1:{}", t.http)))
            .server(Server::new().location(Location::new("/").proxy_pass("http://tomcats").line("proxy_set_header Host $proxy_host;"))),
    );
    let r = get(overridden.port, "GET /where.jsp HTTP/1.1\r\nHost: front.example:8080\r\nConnection: close\r\n\r\n");
    assert_eq!(r.text(), "server=tomcats\nport=80", "Tomcat was given the upstream's name");
    let r = get(overridden.port, "GET /where.jsp?redirect HTTP/1.1\r\nHost: front.example:8080\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("http://front.example:8080/hello.txt"), "{}", r.raw_head);
    assert_eq!(r.header("refresh"), Some("0; url=http://front.example:8080/hello.txt"));
    let implicit = Pounce::start(
        &Conf::new()
            .server(Server::new().location(Location::new("/").proxy_pass(format!("http://127.0.0.1:{}", t.http)).line("proxy_set_header Host $proxy_host;"))),
    );
    let r = get(implicit.port, "GET /where.jsp?redirect HTTP/1.1\r\nHost: front.example\r\nConnection: close\r\n\r\n");
    assert_eq!(r.header("location"), Some("http://front.example/hello.txt"), "the issue's case: {}", r.raw_head);
}
