//! The status page in a real headless Chromium (Debian's chromium + chromium-driver, which
//! `make test` installs), 1280x800: every server with its forms and what happened to it (a dead
//! backup shows down and why), the manager controls on screen without scrolling, a page of
//! another origin that posts to the manager refused, a drain submitted through the form taken,
//! a screenshot saved. Without Chromium the test fails in CI and says SKIPPED loudly elsewhere.

mod support;
use std::process::Command;
use std::time::Duration;
use support::json::Json;
use support::*;

/// A page of another origin that changes a server behind the operator's back: a fetch(),
/// then a form that submits itself. Neither can know the nonce.
fn attack_page(port: u16, server: &str) -> String {
    let target = format!("http://127.0.0.1:{}/pounce-status", port);
    let form = format!("upstream=tomcats&server={}&state=stopped&weight=9", server);
    format!(
        "<!doctype html><html><body><h1>cute cats</h1>\
<form id=\"f\" method=\"post\" action=\"{target}\"><input name=\"upstream\" value=\"tomcats\"><input name=\"server\" value=\"{server}\">\
<input name=\"state\" value=\"stopped\"><input name=\"weight\" value=\"9\"></form>\
<script>fetch(\"{target}?format=json\", {{method: \"POST\", mode: \"no-cors\", headers: {{\"Content-Type\": \"application/x-www-form-urlencoded\"}}, body: \"{form}\"}})\
.finally(() => document.getElementById(\"f\").submit());</script></body></html>"
    )
}

#[test]
fn status_page_in_a_real_browser() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let driver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    let present = std::path::Path::new(&chromium).exists() && std::path::Path::new(&driver).exists();
    if !require::require("Chromium with chromedriver", present, "scripts/test-deps.sh, or apt-get install chromium chromium-driver") {
        return;
    }
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let dead = format!("127.0.0.1:{}", free_port());
    let p = Pounce::start(
        &Conf::new()
            .upstream(
                Upstream::new("tomcats")
                    .line("sticky_route;")
                    .line("health_check interval=300ms timeout=1s fails=1 passes=1 uri=/health;")
                    .server(format!("{} route=tomcat1 weight=2", a.addr()))
                    .server(format!("{} route=tomcat2", b.addr()))
                    .server(format!("{} route=tomcat3 backup", dead)),
            )
            .server(
                Server::new()
                    .location(Location::new("/pounce-status").line("status; allow 127.0.0.1; deny all;"))
                    .location(Location::new("/").proxy_pass("http://tomcats")),
            ),
    );
    let evil = Backend::with("evil", {
        let page = attack_page(p.port, &b.addr());
        move |_| Reply::Send {
            status: 200,
            headers: vec![("Content-Type".into(), "text/html".into())],
            body: page.clone().into_bytes(),
            framing: Framing::Length,
        }
    });
    for _ in 0..12 {
        let _ = p.get("/");
    }
    let status = |p: &Pounce| Json::parse(&p.get("/pounce-status?format=json").text()).expect("json");
    assert!(
        eventually(Duration::from_secs(5), || {
            let j = status(&p);
            let servers = j.get("upstreams").arr()[0].get("servers").arr().to_vec();
            servers.iter().all(|s| !s.get("last_check").get("result").str().is_empty()) && servers[2].get("health").str() == "down"
        }),
        "every server checked once, the dead one down"
    );
    let shot = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/browser_check.py"))
        .arg("--attack")
        .arg(format!("http://127.0.0.1:{}/cats.html", evil.port))
        .arg("--down")
        .arg(&dead)
        .arg(format!("http://127.0.0.1:{}/pounce-status", p.port))
        .arg(&shot)
        .arg(b.addr())
        .arg(a.addr())
        .arg(&dead)
        .env("CHROMIUM", &chromium)
        .env("CHROMEDRIVER", &driver)
        .output()
        .expect("run browser_check.py");
    println!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "browser check failed");
    let png = std::fs::read(&shot).expect("screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real screenshot");
    // The browser sent both forged requests, and pounce refused them for their origin.
    let log = p.error_log();
    let refusals = log.matches(&format!("refused: cross-site request refused: it comes from http://127.0.0.1:{}", evil.port)).count();
    assert_eq!(refusals, 2, "the fetch and the form: {}", log);
    // Only the operator's drain happened on the server side: not the attacker's stop.
    let j = status(&p);
    let sb = j.get("upstreams").arr()[0].get("servers").arr().iter().find(|s| s.get("address").str() == b.addr()).cloned().expect("b");
    assert_eq!((sb.get("state").str(), sb.get("weight").num()), ("disabled", 1.0));
    assert!(log.contains(&format!("changed server {} in upstream \"tomcats\": weight 1 -> 1, state active -> disabled", b.addr())), "{}", log);
    if let Ok(dest) = std::env::var("POUNCE_SCREENSHOT") {
        std::fs::copy(&shot, dest).expect("copy screenshot");
    }
}
