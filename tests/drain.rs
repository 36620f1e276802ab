//! Draining a server by its live sessions: sticky sessions counted per server, a disabled
//! server keeps its sessions while new ones go elsewhere, and is reported drained once its
//! sessions stop; `scripts/drain.sh` disables a server through the manager and waits for that
//! (exit 0), or gives up at its deadline (exit 1).

mod support;
use std::process::Command;
use std::time::{Duration, Instant};
use support::json::Json;
use support::*;

fn conf(a: &Backend, b: &Backend, drain_idle: &str) -> Conf {
    Conf::new()
        .upstream(
            Upstream::new("app")
                .line(format!("sticky_route; drain_idle {}; sessions_window 10m;", drain_idle))
                .server(format!("{} route=a", a.addr()))
                .server(format!("{} route=b", b.addr())),
        )
        .server(Server::new().location(Location::new("/").proxy_pass("http://app")))
}

fn get(p: &Pounce, cookie: Option<&str>) -> Resp {
    let c = cookie.map(|c| format!("Cookie: JSESSIONID={}\r\n", c)).unwrap_or_default();
    request(p.port, format!("GET / HTTP/1.1\r\nHost: x\r\n{}Connection: close\r\n\r\n", c).as_bytes())
}

fn server(p: &Pounce, addr: &str) -> Json {
    let j = p.harness_status().expect("status");
    j.get("upstreams").arr().iter().flat_map(|u| u.get("servers").arr()).find(|s| s.get("address").str() == addr).cloned().expect("server")
}

fn drain_sh(p: &Pounce, server: &str, deadline: u64) -> (i32, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/drain.sh");
    let out = Command::new(script).args([&format!("http://127.0.0.1:{}/", p.status_port), "app", server, &deadline.to_string()]).output().expect("drain.sh");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
}

#[test]
fn live_sessions_are_counted_and_a_disabled_server_drains() {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let p = Pounce::start(&conf(&a, &b, "1500ms"));
    // 40 sessions on a, each seen several times; 10 on b.
    for round in 0..3 {
        for i in 0..40 {
            assert_eq!(get(&p, Some(&format!("S{:03}.a", i))).text(), "a", "round {}", round);
        }
    }
    for i in 0..10 {
        assert_eq!(get(&p, Some(&format!("T{:03}.b", i))).text(), "b");
    }
    let sa = server(&p, &a.addr());
    let live = sa.get("live_sessions").num();
    assert!((36.0..=44.0).contains(&live), "about 40 live sessions on a: {}", live);
    assert!((8.0..=12.0).contains(&server(&p, &b.addr()).get("live_sessions").num()));
    assert_eq!(sa.get("drained"), &Json::Bool(false), "an active server is not drained");

    // Disabled by drain.sh in the background: its sessions still reach it, new ones do not.
    let addr_a = a.addr();
    let port = p.status_port;
    let drainer = std::thread::spawn(move || {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/drain.sh");
        let t = Instant::now();
        let out = Command::new(script).args([&format!("http://127.0.0.1:{}/", port), "app", &addr_a, "30"]).output().expect("drain.sh");
        (out.status.code(), String::from_utf8_lossy(&out.stdout).to_string(), t.elapsed())
    });
    assert!(eventually(Duration::from_secs(5), || server(&p, &a.addr()).get("state").str() == "disabled"), "drain.sh disabled it");
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_eq!(get(&p, Some("S001.a")).text(), "a", "a session of the draining server stays on it");
        assert_eq!(get(&p, None).text(), "b", "a new session goes elsewhere");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(server(&p, &a.addr()).get("drained"), &Json::Bool(false), "sessions still came within drain_idle");
    // The sessions stop; 1.5 s later the server is drained and drain.sh says so.
    let (code, out, took) = drainer.join().expect("drainer");
    println!("{}", out);
    assert_eq!(code, Some(0), "{}", out);
    assert!(out.contains("is drained"), "{}", out);
    assert!(took >= Duration::from_secs(4), "it waited for the sessions to stop: {:?}", took);
    assert_eq!(server(&p, &a.addr()).get("drained"), &Json::Bool(true));

    // Prometheus has it too.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", p.status_port)).expect("status");
    use std::io::Write;
    s.write_all(b"GET /?format=prometheus HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").expect("send");
    let prom = read_response(&mut std::io::BufReader::new(s), false).expect("prometheus").text();
    assert!(prom.contains(&format!("pounce_upstream_server_drained{{upstream=\"app\",server=\"{}\",route=\"a\"}} 1", a.addr())), "{}", prom);
    assert!(prom.contains("pounce_upstream_server_live_sessions{"), "{}", prom);
}

#[test]
fn drain_sh_gives_up_at_its_deadline_while_sessions_keep_coming() {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let p = Pounce::start(&conf(&a, &b, "10s"));
    assert_eq!(get(&p, Some("S1.a")).text(), "a");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (port, stop2) = (p.port, stop.clone());
    let user = std::thread::spawn(move || {
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = request(port, b"GET / HTTP/1.1\r\nHost: x\r\nCookie: JSESSIONID=S1.a\r\nConnection: close\r\n\r\n");
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let (code, out) = drain_sh(&p, &a.addr(), 3);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = user.join();
    println!("{}", out);
    assert_eq!(code, 1, "{}", out);
    assert!(out.contains("not drained after 3s"), "{}", out);
    // Errors: an unknown server, exit 2.
    let (code, out) = drain_sh(&p, "127.0.0.1:1", 3);
    assert_eq!(code, 2, "{}", out);
}

#[test]
fn a_reload_keeps_a_draining_server_undrained() {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let p = Pounce::start(&conf(&a, &b, "10s"));
    for i in 0..20 {
        assert_eq!(get(&p, Some(&format!("S{:03}.a", i))).text(), "a");
    }
    // drain.sh disables a, then gives up at its 1 s deadline: its sessions came just now.
    let (code, out) = drain_sh(&p, &a.addr(), 1);
    assert_eq!(code, 1, "{}", out);
    p.signal(libc::SIGHUP);
    assert!(eventually(Duration::from_secs(10), || p.error_log().contains("configuration generation 2 running")), "{}", p.error_log());
    let sa = server(&p, &a.addr());
    println!("after the reload: state {}, live_sessions {}, drained {:?}", sa.get("state").str(), sa.get("live_sessions").num(), sa.get("drained"));
    assert_eq!(sa.get("state").str(), "disabled", "the manager's change is kept");
    assert!((17.0..=23.0).contains(&sa.get("live_sessions").num()), "its sessions are still counted");
    assert_eq!(sa.get("drained"), &Json::Bool(false), "a reload does not make a draining server look drained");
    // The page says so too.
    let html = request(p.status_port, b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").text();
    assert!(html.contains("sessions</span>") && html.contains("class=\"draining\"") && !html.contains("class=\"drained\""), "{}", html);
}
