//! Upstream selection, passive health, retries and failure answers, through the real binary.

mod support;
use std::time::{Duration, Instant};
use support::*;

fn conf(servers: &str, loc_extra: &str) -> Conf {
    Conf::new()
        .http("access_log logs/access.log;")
        .upstream(Upstream::new("app").line(servers))
        .server(Server::new().location(Location::new("/").proxy_pass("http://app").line(loc_extra)))
}

fn who(p: &Pounce) -> String {
    let r = p.get("/");
    assert_eq!(r.status, 200, "{:?}", r);
    r.text()
}

#[test]
fn smooth_weighted_round_robin_5_1_1() {
    let (a, b, c) = (Backend::named("a"), Backend::named("b"), Backend::named("c"));
    let p = Pounce::start(&conf(&format!("server {} weight=5; server {}; server {};", a.addr(), b.addr(), c.addr()), ""));
    let order: String = (0..14).map(|_| who(&p)).collect();
    assert_eq!(order, "aabacaaaabacaa");
}

#[test]
fn dead_server_retried_then_marked_down_and_brought_back() {
    let a = Backend::named("a");
    let dead_port = free_port();
    let p = Pounce::start(&conf(&format!("server {} max_fails=1 fail_timeout=1s; server 127.0.0.1:{} max_fails=1 fail_timeout=1s;", a.addr(), dead_port), ""));
    // Every request succeeds: the dead one is retried on the live one.
    for _ in 0..6 {
        assert_eq!(who(&p), "a");
    }
    assert!(eventually(Duration::from_secs(2), || p.error_log().contains("temporarily disabled")), "{}", p.error_log());
    let before = p.error_log().matches(&format!("127.0.0.1:{}", dead_port)).count();
    // Within fail_timeout the dead server is not even tried.
    for _ in 0..4 {
        assert_eq!(who(&p), "a");
    }
    let during = p.error_log().matches(&format!("127.0.0.1:{}", dead_port)).count();
    assert_eq!(before, during, "no attempt while unavailable");
    // It comes back: a server now listens on that port; after fail_timeout it gets a trial
    // request and then its share of traffic.
    let revived = Backend::named_on(dead_port, "b");
    std::thread::sleep(Duration::from_millis(1100));
    let seen: String = (0..6).map(|_| who(&p)).collect();
    assert!(seen.contains('b'), "the server came back: {seen}");
    drop(revived);
}

#[test]
fn all_dead_gives_502_at_once() {
    let p = Pounce::start(&conf(&format!("server 127.0.0.1:{}; server 127.0.0.1:{};", free_port(), free_port()), "proxy_connect_timeout 10s;"));
    let t = Instant::now();
    let r = p.get("/");
    assert_eq!(r.status, 502);
    assert!(t.elapsed() < Duration::from_secs(2));
    // Both are now down: "no live upstreams", still at once.
    let t = Instant::now();
    assert_eq!(p.get("/").status, 502);
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(eventually(Duration::from_secs(2), || p.error_log().contains("no live upstreams")), "{}", p.error_log());
}

#[test]
fn hanging_backend_gives_504() {
    let h = Backend::with("hang", |_| Reply::Hang);
    let p = Pounce::start(&conf(&format!("server {};", h.addr()), "proxy_read_timeout 500ms;"));
    let t = Instant::now();
    let r = p.get("/");
    assert_eq!(r.status, 504);
    assert!(t.elapsed() >= Duration::from_millis(450) && t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[test]
fn timeout_retried_on_next_server_for_get() {
    let h = Backend::with("hang", |_| Reply::Hang);
    let a = Backend::named("a");
    let p = Pounce::start(&conf(&format!("server {}; server {};", h.addr(), a.addr()), "proxy_read_timeout 300ms;"));
    for _ in 0..4 {
        assert_eq!(who(&p), "a");
    }
}

#[test]
fn backup_only_when_primaries_are_down() {
    let a = Backend::named("a");
    let bk = Backend::named("backup");
    let p = Pounce::start(&conf(&format!("server {}; server {} backup;", a.addr(), bk.addr()), ""));
    for _ in 0..5 {
        assert_eq!(who(&p), "a");
    }
    assert_eq!(bk.requests(), 0);
    let p2 = Pounce::start(&conf(&format!("server 127.0.0.1:{}; server {} backup;", free_port(), bk.addr()), ""));
    for _ in 0..3 {
        assert_eq!(who(&p2), "backup");
    }
}

#[test]
fn down_server_never_used() {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let p = Pounce::start(&conf(&format!("server {}; server {} down;", a.addr(), b.addr()), ""));
    for _ in 0..5 {
        assert_eq!(who(&p), "a");
    }
    assert_eq!(b.requests(), 0);
}

#[test]
fn post_not_retried_after_send_unless_non_idempotent() {
    let reset = Backend::with("reset", |_| Reply::Reset);
    let a = Backend::named("a");
    let servers = format!("server {}; server {};", reset.addr(), a.addr());
    let p = Pounce::start(&conf(&servers, ""));
    let post = b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let statuses: Vec<u16> = (0..4).map(|_| request(p.port, post).status).collect();
    assert!(statuses.contains(&502), "a POST that reached the resetting server is not retried: {:?}", statuses);
    let p2 = Pounce::start(&conf(&servers, "proxy_next_upstream error timeout non_idempotent;"));
    let statuses: Vec<u16> = (0..4).map(|_| request(p2.port, post).status).collect();
    assert!(statuses.iter().all(|&s| s == 200), "with non_idempotent it is: {:?}", statuses);
}

#[test]
fn http_503_moves_on_when_listed() {
    let busy = Backend::with("busy", |_| Reply::status(503, "busy"));
    let a = Backend::named("a");
    let servers = format!("server {}; server {};", busy.addr(), a.addr());
    let p = Pounce::start(&conf(&servers, "proxy_next_upstream error timeout http_503;"));
    for _ in 0..4 {
        assert_eq!(who(&p), "a");
    }
    let p2 = Pounce::start(&conf(&servers, ""));
    let got: Vec<u16> = (0..4).map(|_| p2.get("/").status).collect();
    assert!(got.contains(&503), "without http_503 the 503 is passed on: {:?}", got);
}

#[test]
fn tries_are_capped() {
    let dead: Vec<String> = (0..3).map(|_| format!("server 127.0.0.1:{};", free_port())).collect();
    let a = Backend::named("a");
    let p = Pounce::start(&conf(&format!("{} server {};", dead.join(" "), a.addr()), "proxy_next_upstream_tries 2;"));
    let r = p.get("/");
    assert_eq!(r.status, 502, "two dead servers tried, then give up");
}
