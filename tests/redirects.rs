//! Redirects and Host (issue 14, point 5): with Host overridden (`proxy_set_header Host
//! $proxy_host`), `proxy_redirect default` still turns the backend's absolute Location and
//! Refresh into the client's scheme, host and port; an HTTP/1.0 request without Host sends
//! the matched server's name (or the address the client connected to) as Host over HTTP and
//! as the server name over AJP, never the upstream's name or nothing. (The same against real
//! Tomcat: `tests/tomcat_host.rs`.)

mod support;
use std::sync::Arc;
use support::ajp::AjpBackend;
use support::*;

/// A backend on a known port that redirects, absolutely, both ways a backend names itself:
/// by its address (`/addr`) or by the Host it was given (`/host`, the upstream's name here).
fn redirecting_backend() -> Backend {
    let port = free_port();
    Backend::start_on(
        port,
        "app",
        Arc::new(move |r: &Req| {
            let me = match r.path.as_str() {
                "/addr" => format!("http://127.0.0.1:{}", port),
                "/host" => format!("http://{}", r.header("host").unwrap_or("")),
                _ => return Reply::ok(format!("host={}", r.header("host").unwrap_or("-"))),
            };
            Reply::Send {
                status: 302,
                headers: vec![("Location".into(), format!("{}/next?a=1", me)), ("Refresh".into(), format!("0; url={}/next", me))],
                body: Vec::new(),
                framing: Framing::Length,
            }
        }),
    )
}

fn conf(b: &Backend, names: &str) -> Conf {
    Conf::new().upstream(Upstream::new("tomcats_http").server(b.addr())).server(
        Server::new()
            .name(names)
            .location(Location::new("/").proxy_pass("http://tomcats_http").line("proxy_set_header Host $proxy_host;"))
            .location(Location::new("/own/").proxy_pass("http://tomcats_http")),
    )
}

fn get(port: u16, raw: &str) -> Resp {
    request(port, raw.as_bytes())
}

#[test]
fn location_reaches_the_client_with_its_own_host_when_host_is_overridden() {
    let b = redirecting_backend();
    let p = Pounce::start(&conf(&b, "front.example"));
    // The backend was given the upstream's name as Host...
    let r = get(p.port, "GET /plain HTTP/1.1\r\nHost: front.example:8080\r\nConnection: close\r\n\r\n");
    assert_eq!(r.text(), "host=tomcats_http");
    // ...and whichever way it names itself, the client is sent back to where it came from.
    for path in ["/addr", "/host"] {
        let r = get(p.port, &format!("GET {} HTTP/1.1\r\nHost: front.example:8080\r\nConnection: close\r\n\r\n", path));
        assert_eq!(r.status, 302);
        assert_eq!(r.header("location"), Some("http://front.example:8080/next?a=1"), "{}", path);
        assert_eq!(r.header("refresh"), Some("0; url=http://front.example:8080/next"), "{}", path);
    }
    // HTTP/1.0 without Host: the server's name and the port the client connected to.
    let r = get(p.port, "GET /addr HTTP/1.0\r\n\r\n");
    assert_eq!(r.header("location").map(String::from), Some(format!("http://front.example:{}/next?a=1", p.port)));
    // proxy_redirect off leaves it alone.
    let off = Pounce::start(&conf(&b, "front.example").http("proxy_redirect off;"));
    let r = get(off.port, "GET /addr HTTP/1.1\r\nHost: front.example\r\nConnection: close\r\n\r\n");
    assert_eq!(r.header("location").map(String::from), Some(format!("http://127.0.0.1:{}/next?a=1", b.port)));
}

#[test]
fn http_1_0_without_host_gets_the_servers_name_or_address() {
    let b = redirecting_backend();
    // A plain server_name: that, with the port unless it is 80.
    let p = Pounce::start(&conf(&b, "_ *.example.com front.example"));
    let r = get(p.port, "GET /own/x HTTP/1.0\r\n\r\n");
    assert_eq!(r.text(), format!("host=front.example:{}", p.port), "not the upstream's name \"tomcats_http\"");
    // No usable name (`_` and wildcards are not host names): the address the client connected to.
    let q = Pounce::start(&conf(&b, "_ *.example.com"));
    let r = get(q.port, "GET /own/x HTTP/1.0\r\n\r\n");
    assert_eq!(r.text(), format!("host=127.0.0.1:{}", q.port));
    let r = get(q.port, "GET /addr HTTP/1.0\r\n\r\n");
    assert_eq!(r.header("location").map(String::from), Some(format!("http://127.0.0.1:{}/next?a=1", q.port)));
    // A Host from the client goes as it is.
    let r = get(q.port, "GET /own/x HTTP/1.0\r\nHost: given.example\r\n\r\n");
    assert_eq!(r.text(), "host=given.example");

    // Over AJP the server name field is never empty (Tomcat would redirect to http://:PORT/).
    let a = AjpBackend::echo("tc");
    let ajp = |names: &str| {
        Conf::new()
            .upstream(Upstream::new("tomcats_ajp").server(a.addr()))
            .server(Server::new().name(names).location(Location::new("/").proxy_pass("ajp://tomcats_ajp")))
    };
    let named = Pounce::start(&ajp("front.example"));
    assert_eq!(get(named.port, "GET / HTTP/1.0\r\n\r\n").status, 200);
    let seen = a.last().expect("a request");
    assert_eq!((seen.server_name.as_str(), seen.server_port), ("front.example", named.port));
    assert_eq!(seen.header("host"), None, "no Host was sent by the client, none is made up");
    let unnamed = Pounce::start(&ajp("_"));
    assert_eq!(get(unnamed.port, "GET / HTTP/1.0\r\n\r\n").status, 200);
    let seen = a.last().expect("a request");
    assert_eq!((seen.server_name.as_str(), seen.server_port), ("127.0.0.1", unnamed.port));
}
