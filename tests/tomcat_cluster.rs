//! The scenario operators build with mod_jk: two clustered Tomcats (DeltaManager, static
//! membership, JvmRouteBinderValve) behind pounce over AJP with sticky routes. A node stopped
//! or frozen under a live session costs the client nothing.

mod support;
use std::time::{Duration, Instant};
use support::tomcat::{require_tomcat, Opts, Tomcat};
use support::*;

struct Session {
    cookie: Option<String>,
}

struct Page {
    route: String,
    count: u32,
    status: u16,
}

impl Session {
    fn get(&mut self, p: &Pounce) -> Page {
        let c = self.cookie.as_ref().map(|c| format!("Cookie: {}\r\n", c)).unwrap_or_default();
        let r = request(p.port, format!("GET /session.jsp HTTP/1.1\r\nHost: localhost\r\n{}Connection: close\r\n\r\n", c).as_bytes());
        if let Some(sc) = r.header("set-cookie") {
            self.cookie = sc.split(';').next().map(String::from);
        }
        let text = r.text();
        let field = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)).unwrap_or("").trim().to_string();
        Page { route: field("route="), count: field("count=").parse().unwrap_or(0), status: r.status }
    }
}

fn catalina_out(t: &Tomcat) -> String {
    std::fs::read_to_string(t.dir.0.join("logs/catalina.out")).unwrap_or_default()
}

#[test]
fn cluster_survives_losing_a_node() {
    if !require_tomcat() {
        return;
    }
    let ports = Tomcat::cluster_ports(2);
    let opts = Opts { cluster: Some(ports.clone()), ..Default::default() };
    let nodes = Tomcat::start_many(&["tomcat1", "tomcat2"], &opts);
    assert!(
        eventually(Duration::from_secs(60), || nodes.iter().all(|n| catalina_out(n).contains("Replication member added"))),
        "cluster membership did not form"
    );
    let p = Pounce::start(
        &Conf::new()
            .workers(2)
            .http("access_log logs/access.log;")
            .upstream(
                Upstream::new("tc")
                    .line("sticky_route JSESSIONID;")
                    .line("keepalive 8;")
                    .line("ajp_ping on;")
                    .line("ajp_ping_timeout 500ms;")
                    .line("health_check interval=500ms fails=1 passes=1;")
                    .server(format!("127.0.0.1:{} route=tomcat1 max_fails=1 fail_timeout=5s", nodes[0].ajp))
                    .server(format!("127.0.0.1:{} route=tomcat2 max_fails=1 fail_timeout=5s", nodes[1].ajp)),
            )
            .server(Server::new().location(Location::new("/").proxy_pass("ajp://tc").line("proxy_read_timeout 10s;"))),
    );
    let node = |route: &str| nodes.iter().position(|n| n.route == route).expect("route");

    // 20 requests stay on one jvmRoute, the counter going 1..20.
    let mut s = Session { cookie: None };
    let first = s.get(&p);
    assert_eq!((first.status, first.count), (200, 1));
    let home = first.route.clone();
    for i in 2..=20 {
        let pg = s.get(&p);
        assert_eq!((pg.status, pg.route.as_str(), pg.count), (200, home.as_str(), i));
    }
    assert!(s.cookie.as_deref().is_some_and(|c| c.ends_with(&format!(".{}", home))));
    // DeltaManager replicates asynchronously (channelSendOptions 8: a frozen member must not
    // stall the survivors): give the last change time to reach the other node.
    std::thread::sleep(Duration::from_millis(2000));

    // The session's Tomcat is stopped: the next request is answered by the other, counter 21.
    let h = node(&home);
    let other = nodes[1 - h].route.clone();
    nodes[h].stop();
    let pg = s.get(&p);
    assert_eq!((pg.status, pg.route.as_str(), pg.count), (200, other.as_str(), 21), "transparent failover; pounce's log:\n{}", p.error_log());
    assert!(s.cookie.as_deref().is_some_and(|c| c.ends_with(&format!(".{}", other))), "the route now names the survivor: {:?}", s.cookie);
    for i in 22..=25 {
        let pg = s.get(&p);
        assert_eq!((pg.status, pg.route.as_str(), pg.count), (200, other.as_str(), i));
    }

    // It comes back: the health check puts it in rotation within about one interval.
    nodes[h].restart(&opts, &ports);
    let back = Instant::now();
    assert!(eventually(Duration::from_secs(10), || p.error_log().matches("is up again").count() >= 1), "{}", p.error_log());
    println!("back in rotation {:?} after the restarted Tomcat answered", back.elapsed());
    assert!(back.elapsed() < Duration::from_millis(1500));
    assert!(eventually(Duration::from_secs(60), || catalina_out(&nodes[h]).contains("Replication member added")), "rejoined the cluster");
    let routes: Vec<String> = (0..6).map(|_| Session { cookie: None }.get(&p).route).collect();
    assert!(routes.contains(&"tomcat1".to_string()) && routes.contains(&"tomcat2".to_string()), "new sessions balanced again: {:?}", routes);
    std::thread::sleep(Duration::from_millis(500));

    // The sticky Tomcat is frozen (the kernel still accepts its connections).
    let n = s.get(&p).count;
    std::thread::sleep(Duration::from_millis(2000)); // replication is asynchronous
    let sticky = node(&other);
    nodes[sticky].freeze();
    let t = Instant::now();
    let pg = s.get(&p);
    let took = t.elapsed();
    println!("frozen node: answered by {} in {:?}", pg.route, took);
    assert_eq!((pg.status, pg.route.as_str(), pg.count), (200, home.as_str(), n + 1), "answered by the survivor, session intact");
    assert!(took < Duration::from_millis(1500), "within about a second, not a timeout: {:?}", took);
    for _ in 0..3 {
        assert_eq!(s.get(&p).status, 200);
    }
    nodes[sticky].thaw();
}
