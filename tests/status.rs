//! The status and manager page: every view, the manager actions, access rules, reloads.

mod support;
use std::io::{BufReader, Write};
use std::time::Duration;
use support::json::Json;
use support::*;

fn conf(a: &Backend, b: &Backend) -> Conf {
    Conf::new()
        .workers(2)
        .upstream(
            Upstream::new("app").line("sticky_route;").line("keepalive 4;").server(format!("{} route=a", a.addr())).server(format!("{} route=b", b.addr())),
        )
        .server(
            Server::new()
                .location(Location::new("/pounce-status").line("status; allow 127.0.0.1; deny all;"))
                .location(Location::new("/").proxy_pass("http://app")),
        )
}

fn json(p: &Pounce) -> Json {
    status::status_json(p, "/pounce-status")
}

fn server<'a>(j: &'a Json, addr: &str) -> &'a Json {
    status::server_in(j, addr)
}

/// A manager POST as a script sends it: the nonce from the JSON, no Origin.
fn post(p: &Pounce, form: &str, query: &str) -> Resp {
    let form = format!("nonce={}&{}", status::nonce(p, "/pounce-status"), form);
    status::post_form(p, &format!("/pounce-status{}", query), "x", "", &form)
}

#[test]
fn json_counts_what_happened_and_manager_actions_work() {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let p = Pounce::start(&conf(&a, &b));
    for _ in 0..5 {
        assert_eq!(request(p.port, b"GET / HTTP/1.1\r\nHost: x\r\nCookie: JSESSIONID=1.a\r\nConnection: close\r\n\r\n").text(), "a");
    }
    let j = json(&p);
    assert_eq!(j.get("generation").num(), 1.0);
    assert!(j.get("uptime_seconds").num() >= 0.0);
    let sa = server(&j, &a.addr());
    assert_eq!(sa.get("requests").num(), 5.0);
    assert_eq!(sa.get("route").str(), "a");
    assert_eq!(sa.get("protocol").str(), "http");
    assert_eq!(sa.get("state").str(), "active");
    assert_eq!(sa.get("health").str(), "up");
    let idle = sa.get("idle_connections").num();
    assert!((1.0..=2.0).contains(&idle), "one pooled connection per worker that served: {}", idle);
    assert!(sa.get("bytes_from_server").num() >= 5.0, "response bytes from the server");
    assert!(sa.get("bytes_to_server").num() >= 5.0 * 30.0, "request heads sent to it");
    assert_eq!(server(&j, &b.addr()).get("requests").num(), 0.0);
    assert_eq!(j.get("workers").arr().len(), 2);
    assert!(j.get("workers").arr().iter().any(|w| w.get("buffers_high_water").num() >= 1.0), "{:?}", j.get("workers"));

    // GET never changes anything, whatever its query says.
    assert_eq!(p.get(&format!("/pounce-status?upstream=app&server={}&state=stopped", a.addr())).status, 200);
    assert_eq!(server(&json(&p), &a.addr()).get("state").str(), "active");

    // Drain b: new sessions avoid it, its sticky sessions still reach it.
    let r = post(&p, &format!("upstream=app&server={}&state=disabled", b.addr()), "");
    assert_eq!(r.status, 303, "a browser form gets redirected back");
    assert_eq!(r.header("location"), Some("/pounce-status"));
    assert_eq!(server(&json(&p), &b.addr()).get("state").str(), "disabled");
    for _ in 0..6 {
        assert_eq!(p.get("/").text(), "a");
    }
    assert_eq!(request(p.port, b"GET / HTTP/1.1\r\nHost: x\r\nCookie: JSESSIONID=9.b\r\nConnection: close\r\n\r\n").text(), "b");

    // Weights change the distribution.
    let r = post(&p, &format!("upstream=app&server={}&state=active&weight=3", b.addr()), "?format=json");
    assert_eq!(r.status, 200);
    let changed = Json::parse(&r.text()).expect("json");
    assert_eq!((changed.get("weight").num(), changed.get("state").str()), (3.0, "active"));
    let seen: String = (0..40).map(|_| p.get("/").text()).collect();
    let (na, nb) = (seen.matches('a').count(), seen.matches('b').count());
    println!("weight 1:3 gave a={} b={}", na, nb);
    assert!(nb >= 2 * na, "a={} b={}", na, nb);

    // Bad input: 400; unknown names: 404.
    for (form, want) in [
        ("upstream=app", 400),
        (&format!("upstream=app&server={}&weight=0", a.addr()) as &str, 400),
        (&format!("upstream=app&server={}&state=sleepy", a.addr()), 400),
        (&format!("upstream=app&server={}", a.addr()), 400),
        ("upstream=nope&server=1&state=active", 404),
        ("upstream=app&server=10.9.9.9:1&state=active", 404),
    ] {
        let r = post(&p, form, "");
        assert_eq!(r.status, want, "{} -> {}", form, r.text());
        assert!(!r.text().trim().is_empty(), "a message says what is wrong");
    }

    // A killed server shows down (passive health): requests sticky to it find it dead.
    drop(a);
    for _ in 0..4 {
        let r = request(p.port, b"GET / HTTP/1.1\r\nHost: x\r\nCookie: JSESSIONID=1.a\r\nConnection: close\r\n\r\n");
        assert_eq!(r.text(), "b", "failed over");
    }
    let j = json(&p);
    let sa = j.get("upstreams").arr()[0].get("servers").arr()[0].clone();
    assert_eq!(sa.get("health").str(), "down", "{:?}", sa);
    assert_eq!(sa.get("down_reason").str(), "passive");
    assert!(sa.get("failures").num() >= 1.0);
}

#[test]
fn prometheus_text_parses_line_by_line() {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let p = Pounce::start(&conf(&a, &b));
    let _ = p.get("/");
    let r = p.get("/pounce-status?format=prometheus");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").is_some_and(|c| c.starts_with("text/plain; version=0.0.4")));
    let text = r.text();
    let mut samples = 0;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name, tail) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            assert!(kind == "HELP" || kind == "TYPE", "{}", line);
            assert!(valid_metric_name(name), "{}", line);
            if kind == "TYPE" {
                assert!(["counter", "gauge", "histogram"].contains(&tail), "{}", line);
            }
            continue;
        }
        assert!(valid_sample(line), "not a valid sample line: {:?}", line);
        samples += 1;
    }
    assert!(samples > 20);
    assert!(
        text.contains(&format!("pounce_upstream_server_requests_total{{upstream=\"app\",server=\"{}\",route=\"a\"}} 1", a.addr()))
            || text.contains(&format!("pounce_upstream_server_requests_total{{upstream=\"app\",server=\"{}\",route=\"b\"}} 1", b.addr()))
    );
    assert!(text.contains("pounce_config_generation 1"));
}

fn valid_metric_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':') && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}

/// `name{label="value",...} number` with Prometheus escaping in values.
fn valid_sample(line: &str) -> bool {
    let (head, value) = match line.rsplit_once(' ') {
        Some(x) => x,
        None => return false,
    };
    if value.parse::<f64>().is_err() {
        return false;
    }
    let (name, labels) = match head.find('{') {
        Some(i) => (&head[..i], Some(&head[i..])),
        None => (head, None),
    };
    if !valid_metric_name(name) {
        return false;
    }
    let Some(labels) = labels else { return true };
    let Some(inner) = labels.strip_prefix('{').and_then(|l| l.strip_suffix('}')) else { return false };
    let b = inner.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        if start == i || !(b[start].is_ascii_alphabetic() || b[start] == b'_') || b.get(i) != Some(&b'=') || b.get(i + 1) != Some(&b'"') {
            return false;
        }
        i += 2;
        loop {
            match b.get(i) {
                None => return false,
                Some(b'\\') => i += 2,
                Some(b'"') => break,
                Some(_) => i += 1,
            }
        }
        i += 1;
        match b.get(i) {
            None => break,
            Some(b',') => i += 1,
            _ => return false,
        }
    }
    true
}

#[test]
fn access_rules_deny_other_addresses() {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let p = Pounce::start(&conf(&a, &b));
    assert_eq!(p.get("/pounce-status").status, 200);
    let mut s = connect_from([127, 0, 0, 2].into(), p.port);
    s.write_all(b"GET /pounce-status?format=json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("send");
    let r = read_response(&mut BufReader::new(s), false).expect("response");
    assert_eq!(r.status, 403);
    let mut s = connect_from([127, 0, 0, 2].into(), p.port);
    s.write_all(b"POST /pounce-status HTTP/1.1\r\nHost: x\r\nContent-Length: 36\r\nConnection: close\r\n\r\nupstream=app&server=0&state=stopped")
        .expect("send");
    assert_eq!(read_response(&mut BufReader::new(s), false).expect("response").status, 403);
    assert_eq!(server(&json(&p), &a.addr()).get("state").str(), "active", "a denied POST changed nothing");
    // The proxied location has no rules.
    let mut s = connect_from([127, 0, 0, 2].into(), p.port);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("send");
    assert_eq!(read_response(&mut BufReader::new(s), false).expect("response").status, 200);
}

#[test]
fn manager_changes_survive_a_reload() {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let p = Pounce::start(&conf(&a, &b));
    assert_eq!(post(&p, &format!("upstream=app&server={}&state=stopped&weight=7", b.addr()), "").status, 303);
    p.signal(libc::SIGHUP);
    assert!(eventually(Duration::from_secs(5), || json(&p).get("generation").num() == 2.0));
    let sb = json(&p);
    let sb = server(&sb, &b.addr());
    assert_eq!((sb.get("state").str(), sb.get("weight").num()), ("stopped", 7.0));
    for _ in 0..4 {
        assert_eq!(p.get("/").text(), "a");
    }
}

#[test]
fn html_page_has_every_server_and_its_forms() {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let p = Pounce::start(&conf(&a, &b));
    let r = p.get("/pounce-status");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").is_some_and(|c| c.starts_with("text/html")));
    let html = r.text();
    for addr in [a.addr(), b.addr()] {
        assert!(html.contains(&format!("data-server=\"{}\"", addr)));
        assert!(html.contains(&format!("name=\"server\" value=\"{}\"", addr)));
    }
    assert_eq!(html.matches("class=\"drain\"").count(), 2);
    assert_eq!(html.matches("<form method=\"post\" action=\"/pounce-status\"").count(), 4);
    let nonce = status::nonce(&p, "/pounce-status");
    assert_eq!(html.matches(&format!("<input type=\"hidden\" name=\"nonce\" value=\"{}\">", nonce)).count(), 4, "every form carries the nonce");
    // JSON by Accept header too.
    let r = request(p.port, b"GET /pounce-status HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nConnection: close\r\n\r\n");
    assert!(Json::parse(&r.text()).is_ok());
}
