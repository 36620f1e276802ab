//! Keep-alive to the backends as shipped: on without a `keepalive` line, the idle pool sized
//! by demand (it grows to the concurrency the backend saw, shrinks once demand falls, stays
//! within `keepalive N`), `keepalive off` closing every connection, connections the backend
//! closed resent invisibly, and the backend's own limits learned from what it says.

mod support;
use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

fn conf(b: &Backend, upstream_lines: &[&str]) -> Conf {
    let mut up = Upstream::new("app").server(b.addr());
    for l in upstream_lines {
        up = up.line(*l);
    }
    Conf::new().error_log("debug").upstream(up).server(Server::new().location(Location::new("/").proxy_pass("http://app")))
}

/// The status JSON's figures for the one server.
fn server_json(p: &Pounce) -> support::json::Json {
    let j = p.harness_status().expect("status");
    j.get("upstreams").arr().iter().find(|u| u.get("name").str() == "app").expect("upstream").get("servers").arr()[0].clone()
}

/// `clients` keep-alive clients at once, `each` requests each; all must get 200.
fn burst(p: &Pounce, clients: usize, each: usize) {
    let port = p.port;
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            std::thread::spawn(move || {
                let mut s = connect(port);
                let mut r = BufReader::new(s.try_clone().expect("clone"));
                for i in 0..each {
                    s.write_all(format!("GET /{}/{} HTTP/1.1\r\nHost: x\r\n\r\n", c, i).as_bytes()).expect("send");
                    assert_eq!(read_response(&mut r, false).expect("answer").status, 200);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client");
    }
}

/// A backend that takes 30 ms per request, so that concurrent clients overlap there.
fn slow_backend() -> Backend {
    Backend::with("slow", |_| Reply::Delay(Duration::from_millis(30), Box::new(Reply::ok("ok"))))
}

#[test]
fn the_pool_grows_with_concurrency_and_shrinks_when_demand_falls() {
    let b = slow_backend();
    let p = Pounce::start(&conf(&b, &[]));
    burst(&p, 12, 8);
    // The demand is published with the worker's once-a-second housekeeping.
    let mut s = server_json(&p);
    eventually(Duration::from_secs(3), || {
        s = server_json(&p);
        s.get("keepalive_demand").num() > 0.0
    });
    let (idle, demand, conns) = (s.get("idle_connections").num(), s.get("keepalive_demand").num(), b.connections());
    println!("12 clients x 8 requests: {} backend connections, then {} idle, demand {}", conns, idle, demand);
    assert_eq!(b.requests(), 96);
    assert_eq!(b.last().and_then(|r| r.header("connection").map(str::to_string)).as_deref(), Some("keep-alive"), "keep-alive without a keepalive line");
    assert!(conns <= 12, "never more connections than requests at once: {}", conns);
    assert!(idle >= 4.0 && idle <= conns as f64, "the pool kept what the concurrency needed: {} idle of {}", idle, conns);
    assert!(demand >= idle, "the demand the pool keeps for: {}", demand);

    // The same concurrency again: the kept connections serve it, nothing much is opened.
    burst(&p, 12, 4);
    let more = b.connections() - conns;
    println!("again: {} more connections", more);
    assert!(more <= 12 - idle as usize + 1, "{} new connections with {} idle ready", more, idle);

    // Demand falls to one request at a time: after two demand windows (5 s each) the pool
    // keeps one connection, which still serves.
    let shrunk = eventually(Duration::from_secs(16), || {
        assert_eq!(p.get("/one").status, 200);
        std::thread::sleep(Duration::from_millis(200));
        server_json(&p).get("idle_connections").num() == 1.0
    });
    let s = server_json(&p);
    println!("after demand fell: {} idle, demand {}", s.get("idle_connections").num(), s.get("keepalive_demand").num());
    assert!(shrunk, "the pool shrank to one connection: {:?}", s);
    let conns = b.connections();
    for _ in 0..10 {
        assert_eq!(p.get("/seq").status, 200);
    }
    assert_eq!(b.connections(), conns, "sequential requests reuse the one kept connection");
}

#[test]
fn keepalive_n_caps_the_pool_and_off_closes_every_connection() {
    let b = slow_backend();
    let p = Pounce::start(&conf(&b, &["keepalive 3;"]));
    burst(&p, 10, 4);
    let idle = server_json(&p).get("idle_connections").num();
    println!("keepalive 3 after 10 clients at once: {} idle", idle);
    assert!((1.0..=3.0).contains(&idle), "at most 3 idle: {}", idle);

    let b = Backend::named("plain");
    let p = Pounce::start(&conf(&b, &["keepalive off;"]));
    for _ in 0..5 {
        assert_eq!(p.get("/").status, 200);
    }
    assert_eq!(b.last().and_then(|r| r.header("connection").map(str::to_string)).as_deref(), Some("close"));
    assert_eq!(b.connections(), 5, "one connection per request");
    assert_eq!(server_json(&p).get("idle_connections").num(), 0.0);
}

#[test]
fn connections_the_backend_closed_are_resent_invisibly() {
    // Every answer is followed by a silent close (as a backend closing idle connections).
    let b = Backend::with("closer", |_| Reply::RawThenClose(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()));
    let p = Pounce::start(&conf(&b, &[]));
    for i in 0..20 {
        let r = p.get("/x");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]), "request {}", i);
        if i % 2 == 0 {
            std::thread::sleep(Duration::from_millis(15));
        }
    }
    let err = p.error_log();
    assert!(!err.contains("temporarily disabled") && !err.contains("[error]"), "no failure was seen or counted: {err}");
    assert!(server_json(&p).get("backend_keepalive_timeout_ms").num().is_nan(), "closes at once teach no timeout");
}

#[test]
fn the_backends_limits_are_learned_and_kept() {
    // Like httpd: it announces its limits (1 s idle, 5 requests a connection) and closes a
    // connection after its fifth request without a word, and idle ones after a second.
    let per_conn: Arc<Mutex<HashMap<usize, usize>>> = Arc::default();
    let closed = Arc::new(AtomicUsize::new(0));
    let (pc, cl) = (per_conn.clone(), closed.clone());
    let b = Backend::with("limited", move |r| {
        let n = {
            let mut m = pc.lock().expect("lock");
            let n = m.entry(r.conn).or_insert(0);
            *n += 1;
            *n
        };
        let head = format!("HTTP/1.1 200 OK\r\nKeep-Alive: timeout=1, max={}\r\nContent-Length: 2\r\n\r\nok", 5 - n);
        if n == 5 {
            cl.fetch_add(1, Ordering::Relaxed);
            Reply::RawThenClose(head.into_bytes())
        } else {
            Reply::Raw(head.into_bytes())
        }
    });
    let p = Pounce::start(&conf(&b, &[]));
    for i in 0..12 {
        assert_eq!(p.get("/").status, 200, "request {}", i);
    }
    let s = server_json(&p);
    println!(
        "learned: idle {} ms, {} requests a connection; {} backend connections",
        s.get("backend_keepalive_timeout_ms").num(),
        s.get("backend_max_requests").num(),
        b.connections()
    );
    assert_eq!(s.get("backend_keepalive_timeout_ms").num(), 1000.0);
    assert_eq!(s.get("backend_max_requests").num(), 5.0);
    assert_eq!(b.connections(), 3, "12 requests, 5 a connection");
    // Idle for longer than the backend allows: pounce does not use the old connection.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(p.get("/later").status, 200);
    let resent = p.error_log().matches("pooled connection was closed").count();
    assert_eq!(resent, 0, "no request met a connection the backend had closed: {}", p.error_log());
}
