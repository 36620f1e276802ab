//! Draining a real Tomcat node by its live sessions (the rolling-restart step): sessions made
//! on both nodes, one node disabled with `scripts/drain.sh`; its sessions keep reaching it
//! (their counters go on), new sessions go to the other node, and once its users stop it is
//! reported drained and the script exits 0.

mod support;
use std::process::Command;
use std::time::{Duration, Instant};
use support::json::Json;
use support::tomcat::{require_tomcat, Opts, Tomcat};
use support::*;

/// session.jsp with an optional cookie: (route, count, the session cookie to send next time).
fn visit(port: u16, cookie: Option<&str>) -> (String, u32, String) {
    let c = cookie.map(|c| format!("Cookie: {}\r\n", c)).unwrap_or_default();
    let r = request(port, format!("GET /session.jsp HTTP/1.1\r\nHost: localhost\r\n{}Connection: close\r\n\r\n", c).as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let field = |name: &str| r.text().lines().find_map(|l| l.strip_prefix(&format!("{}=", name)).map(str::to_string)).unwrap_or_default();
    let set = r.header("set-cookie").and_then(|v| v.split(';').next()).map(str::to_string);
    (field("route"), field("count").parse().unwrap_or(0), set.or(cookie.map(str::to_string)).unwrap_or_default())
}

#[test]
fn a_disabled_tomcat_keeps_its_sessions_then_reports_drained() {
    if !require_tomcat() {
        return;
    }
    let nodes = Tomcat::start_many(&["tomcat1", "tomcat2"], &Opts::default());
    let conf = Conf::new()
        .upstream(
            Upstream::new("tomcats")
                .line("sticky_route; drain_idle 2s;")
                .server(format!("127.0.0.1:{} route=tomcat1", nodes[0].ajp))
                .server(format!("127.0.0.1:{} route=tomcat2", nodes[1].ajp)),
        )
        .server(Server::new().location(Location::new("/").proxy_pass("ajp://tomcats")));
    let p = Pounce::start(&conf);
    // Ten users; round robin puts about half on each node.
    let mut users: Vec<(String, u32, String)> = (0..10).map(|_| visit(p.port, None)).collect();
    let on1: Vec<usize> = (0..users.len()).filter(|&i| users[i].0 == "tomcat1").collect();
    assert!(!on1.is_empty() && on1.len() < users.len(), "sessions on both nodes: {:?}", users);
    for u in users.iter_mut() {
        let (route, count, cookie) = visit(p.port, Some(&u.2));
        assert_eq!((route.as_str(), count), (u.0.as_str(), u.1 + 1), "sticky");
        *u = (route, count, cookie);
    }
    let addr1 = format!("127.0.0.1:{}", nodes[0].ajp);
    let node1 = |p: &Pounce| -> Json {
        let j = p.harness_status().expect("status");
        j.get("upstreams").arr()[0].get("servers").arr().iter().find(|s| s.get("address").str() == addr1).cloned().expect("tomcat1")
    };
    // An estimate (HyperLogLog, 256 registers): two of a handful of sessions may share a
    // register (about 4% for five), so one fewer is counted then.
    let live = node1(&p).get("live_sessions").num() as usize;
    assert!(live == on1.len() || live + 1 == on1.len(), "live sessions of tomcat1: {} for {}", live, on1.len());

    let port = p.status_port;
    let a1 = addr1.clone();
    let drainer = std::thread::spawn(move || {
        let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/drain.sh"))
            .args([&format!("http://127.0.0.1:{}/", port), "tomcats", &a1, "60"])
            .output()
            .expect("drain.sh");
        (out.status.code(), String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
    });
    assert!(eventually(Duration::from_secs(10), || node1(&p).get("state").str() == "disabled"), "drain.sh disabled tomcat1");
    // For three seconds its users go on, on tomcat1; new users land on tomcat2.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        for &i in &on1 {
            let (route, count, cookie) = visit(p.port, Some(&users[i].2));
            assert_eq!((route.as_str(), count), ("tomcat1", users[i].1 + 1), "a session of the draining node stays there");
            users[i] = (route, count, cookie);
        }
        assert_eq!(visit(p.port, None).0, "tomcat2", "a new session goes to the other node");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(node1(&p).get("drained"), &Json::Bool(false));
    // The users stop: 2 s later tomcat1 is drained.
    let (code, out) = drainer.join().expect("drainer");
    println!("{}", out);
    assert_eq!(code, Some(0), "{}", out);
    assert_eq!(node1(&p).get("drained"), &Json::Bool(true));
    assert!(node1(&p).get("live_sessions").num() as usize + 1 >= on1.len(), "its sessions were seen within the window");
}
