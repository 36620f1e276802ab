//! Sticky routes, activation states, balancing methods, active health checks and slow start,
//! through the real binary against support backends.

mod support;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

/// A backend that answers with its route and sets `JSESSIONID=<n>.<route>`.
fn tomcat_like(route: &str) -> Backend {
    let r = route.to_string();
    let n = Arc::new(AtomicUsize::new(0));
    Backend::with(route, move |req| {
        let id = n.fetch_add(1, Ordering::Relaxed);
        let mut headers = vec![("X-Backend".into(), r.clone())];
        if req.header("cookie").is_none() {
            headers.push(("Set-Cookie".into(), format!("JSESSIONID=S{:04}.{}; Path=/; HttpOnly", id, r)));
        }
        Reply::Send { status: 200, headers, body: r.clone().into_bytes(), framing: Framing::Length }
    })
}

fn conf(upstream_body: &str) -> Conf {
    Conf::new().upstream(Upstream::new("app").line(upstream_body)).server(Server::new().location(Location::new("/").proxy_pass("http://app")))
}

fn get_with_cookie(p: &Pounce, path: &str, cookie: Option<&str>) -> Resp {
    let c = cookie.map(|c| format!("Cookie: {}\r\n", c)).unwrap_or_default();
    request(p.port, format!("GET {} HTTP/1.1\r\nHost: x\r\n{}Connection: close\r\n\r\n", path, c).as_bytes())
}

#[test]
fn sticky_to_the_route_for_50_requests() {
    let (a, b, c) = (tomcat_like("t1"), tomcat_like("t2"), tomcat_like("t3"));
    let p = Pounce::start(&conf(&format!("sticky_route;\n server {} route=t1; server {} route=t2; server {} route=t3;", a.addr(), b.addr(), c.addr())));
    for _ in 0..50 {
        assert_eq!(get_with_cookie(&p, "/x", Some("foo=1; JSESSIONID=ABC.t2")).text(), "t2");
    }
    // The path parameter wins over the cookie.
    assert_eq!(get_with_cookie(&p, "/x;jsessionid=Q.t3?y=1", Some("JSESSIONID=ABC.t2")).text(), "t3");
    // A route nobody has, or no route at all: balanced.
    let seen: Vec<String> = (0..6).map(|_| get_with_cookie(&p, "/", Some("JSESSIONID=ABC.nobody")).text()).collect();
    assert!(seen.contains(&"t1".to_string()) && seen.contains(&"t2".to_string()) && seen.contains(&"t3".to_string()), "{:?}", seen);
    // A session created through pounce stays where it was made.
    let first = get_with_cookie(&p, "/", None);
    let cookie = first.header("set-cookie").expect("cookie").split(';').next().expect("pair").to_string();
    for _ in 0..10 {
        assert_eq!(get_with_cookie(&p, "/", Some(&cookie)).text(), first.text());
    }
}

#[test]
fn failover_when_the_routes_server_is_down_and_sticky_force() {
    let a = tomcat_like("t1");
    let dead = free_port();
    let body = format!("sticky_route JSESSIONID;\n server {} route=t1; server 127.0.0.1:{} route=t2;", a.addr(), dead);
    let p = Pounce::start(&conf(&body));
    for _ in 0..3 {
        let r = get_with_cookie(&p, "/", Some("JSESSIONID=ABC.t2"));
        assert_eq!((r.status, r.text()), (200, "t1".to_string()), "failed over without a client error");
    }
    assert!(eventually(Duration::from_secs(2), || p.error_log().contains("failing over")), "{}", p.error_log());
    let forced = Pounce::start(&conf(&format!("{}\n sticky_force on;", body)));
    // First request: the dead server is tried and fails; with force there is no failover.
    let statuses: Vec<u16> = (0..3).map(|_| get_with_cookie(&forced, "/", Some("JSESSIONID=ABC.t2")).status).collect();
    assert!(statuses.iter().all(|&s| s == 503), "{:?}", statuses);
    assert_eq!(get_with_cookie(&forced, "/", Some("JSESSIONID=ABC.t1")).text(), "t1");
}

#[test]
fn disabled_server_gets_only_sticky_traffic() {
    let (a, b) = (tomcat_like("t1"), tomcat_like("t2"));
    let p = Pounce::start(&conf(&format!("sticky_route;\n server {} route=t1; server {} route=t2 disabled;", a.addr(), b.addr())));
    for _ in 0..10 {
        assert_eq!(get_with_cookie(&p, "/", None).text(), "t1", "no new sessions on a disabled server");
    }
    for _ in 0..5 {
        assert_eq!(get_with_cookie(&p, "/", Some("JSESSIONID=Z.t2")).text(), "t2", "its sessions still reach it");
    }
    let stopped = Pounce::start(&conf(&format!("sticky_route;\n server {} route=t1; server {} route=t2 down;", a.addr(), b.addr())));
    assert_eq!(get_with_cookie(&stopped, "/", Some("JSESSIONID=Z.t2")).text(), "t1", "a stopped server gets nothing");
}

/// Runs `threads` clients for `for_how_long`; returns how many answers each backend gave.
fn hammer(port: u16, threads: usize, for_how_long: Duration) -> (usize, usize) {
    let (fast, slow) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let stop = Arc::new(AtomicBool::new(false));
    let hs: Vec<_> = (0..threads)
        .map(|_| {
            let (f, s, st) = (fast.clone(), slow.clone(), stop.clone());
            std::thread::spawn(move || {
                while !st.load(Ordering::Relaxed) {
                    let r = request(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                    if r.text() == "fast" {
                        f.fetch_add(1, Ordering::Relaxed);
                    } else {
                        s.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(for_how_long);
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        let _ = h.join();
    }
    (fast.load(Ordering::Relaxed), slow.load(Ordering::Relaxed))
}

#[test]
fn least_conn_sends_new_requests_away_from_a_slow_server() {
    let fast = Backend::with("fast", |_| Reply::ok("fast"));
    let slow = Backend::with("slow", |_| Reply::Delay(Duration::from_millis(300), Box::new(Reply::ok("slow"))));
    let p = Pounce::start(&conf(&format!("balance least_conn;\n server {}; server {};", slow.addr(), fast.addr())));
    let (f, s) = hammer(p.port, 4, Duration::from_millis(1500));
    println!("least_conn: fast {} slow {}", f, s);
    assert!(f > 10 * s.max(1), "fast {} vs slow {}", f, s);
    let rr = Pounce::start(&conf(&format!("server {}; server {};", slow.addr(), fast.addr())));
    let (f2, s2) = hammer(rr.port, 4, Duration::from_millis(1500));
    println!("round_robin: fast {} slow {}", f2, s2);
    assert!(s2 * 3 > s.max(1) * 3 && s2 >= 4, "round robin keeps feeding the slow server: {} vs {}", s2, s);
}

#[test]
fn by_traffic_favours_the_server_that_moved_fewer_bytes() {
    let big = Backend::with("big", |_| Reply::ok(vec![b'x'; 200_000]));
    let small = Backend::with("small", |_| Reply::ok("s"));
    let p = Pounce::start(&conf(&format!("balance by_traffic;\n server {}; server {};", big.addr(), small.addr())));
    for _ in 0..20 {
        assert_eq!(p.get("/").status, 200);
    }
    println!("by_traffic: big {} small {}", big.requests(), small.requests());
    assert!(big.requests() <= 2, "the server that moved 200 kB per request gets few: {}", big.requests());
    assert!(small.requests() >= 18);
}

#[test]
fn active_health_check_marks_down_and_back_without_client_requests() {
    let a = Backend::named("a");
    let b_port = free_port();
    let b = Backend::named_on(b_port, "b");
    let p = Pounce::start(&conf(&format!(
        "health_check interval=200ms fails=2 passes=2 uri=/health;\n server {} weight=10; server 127.0.0.1:{} weight=10 slow_start=3s;",
        a.addr(),
        b_port
    )));
    assert!(eventually(Duration::from_secs(3), || b.requests() >= 2), "b is probed");
    assert_eq!(b.last().map(|r| r.path), Some("/health".to_string()));
    let t = Instant::now();
    drop(b);
    assert!(eventually(Duration::from_secs(3), || p.error_log().contains("is down")), "{}", p.error_log());
    println!("marked down after {:?}", t.elapsed());
    for _ in 0..5 {
        assert_eq!(p.get("/").text(), "a", "no request goes to the down server");
    }
    let b = Backend::named_on(b_port, "b");
    assert!(eventually(Duration::from_secs(3), || p.error_log().contains("is up again")), "{}", p.error_log());
    // Right after it came back, slow_start keeps its share small.
    let early: String = (0..20).map(|_| p.get("/").text()).collect();
    let early_b = early.matches('b').count();
    println!("first 20 after recovery: {} to b", early_b);
    assert!(early_b <= 5, "{}", early);
    std::thread::sleep(Duration::from_secs(3));
    let later: String = (0..20).map(|_| p.get("/").text()).collect();
    assert!(later.matches('b').count() >= 8, "ramped up: {}", later);
    drop(b);
}

#[test]
fn proxy_next_upstream_conditions() {
    let good = Backend::named("good");
    type Case = (&'static str, fn() -> Reply, u16);
    let cases: [Case; 4] = [
        ("http_500", || Reply::status(500, "e"), 500),
        ("http_502", || Reply::status(502, "e"), 502),
        ("http_504", || Reply::status(504, "e"), 504),
        ("invalid_header", || Reply::Raw(b"HTTP/1.1 abc\r\n\r\n".to_vec()), 502),
    ];
    for (cond, make, without) in cases {
        let bad = Backend::with("bad", move |_| make());
        let servers = format!("server {}; server {};", bad.addr(), good.addr());
        let with = Pounce::start(
            &Conf::new()
                .upstream(Upstream::new("app").line(&servers))
                .server(Server::new().location(Location::new("/").proxy_pass("http://app").line(format!("proxy_next_upstream error timeout {};", cond)))),
        );
        for _ in 0..3 {
            assert_eq!(with.get("/").text(), "good", "{} listed: retried", cond);
        }
        let without_p = Pounce::start(&conf(&servers));
        let statuses: Vec<u16> = (0..4).map(|_| without_p.get("/").status).collect();
        assert!(statuses.contains(&without), "{} not listed: {:?}", cond, statuses);
    }
}
