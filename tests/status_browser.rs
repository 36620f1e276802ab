//! The status page in a real headless Chromium (Debian's chromium + chromium-driver): every
//! server and its forms rendered, a drain submitted through the form shows up, a screenshot is
//! saved. Skipped when Chromium is absent, except in CI (CI=true), where it must run.

mod support;
use std::process::Command;
use support::json::Json;
use support::*;

#[test]
fn status_page_in_a_real_browser() {
    let present = std::path::Path::new("/usr/bin/chromium").exists() && std::path::Path::new("/usr/bin/chromedriver").exists();
    if !present {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("chromium and chromium-driver are required in CI");
        }
        eprintln!("SKIPPED: chromium / chromedriver not installed (apt-get install chromium chromium-driver)");
        return;
    }
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let p = Pounce::start(
        &Conf::new()
            .upstream(
                Upstream::new("tomcats")
                    .line("sticky_route;")
                    .server(format!("{} route=tomcat1 weight=2", a.addr()))
                    .server(format!("{} route=tomcat2", b.addr())),
            )
            .server(
                Server::new()
                    .location(Location::new("/pounce-status").line("status; allow 127.0.0.1; deny all;"))
                    .location(Location::new("/").proxy_pass("http://tomcats")),
            ),
    );
    for _ in 0..12 {
        let _ = p.get("/");
    }
    let shot = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/browser_check.py"))
        .arg(format!("http://127.0.0.1:{}/pounce-status", p.port))
        .arg(&shot)
        .arg(b.addr())
        .arg(a.addr())
        .output()
        .expect("run browser_check.py");
    println!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "browser check failed");
    let png = std::fs::read(&shot).expect("screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real screenshot");
    // The drain really happened on the server side too.
    let j = Json::parse(&p.get("/pounce-status?format=json").text()).expect("json");
    let state = j.get("upstreams").arr()[0].get("servers").arr().iter().find(|s| s.get("address").str() == b.addr()).map(|s| s.get("state").str().to_string());
    assert_eq!(state.as_deref(), Some("disabled"));
    if let Ok(dest) = std::env::var("POUNCE_SCREENSHOT") {
        std::fs::copy(&shot, dest).expect("copy screenshot");
    }
}
