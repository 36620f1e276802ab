//! The manager is safe to open in an operator's browser: a cross-site POST (form or fetch,
//! with the Origin or Referer a browser sends) is refused and changes nothing, a POST needs
//! the instance's nonce, every answer forbids framing, `status read_only` takes no POST,
//! and a change that is taken is logged with the client's address and what it changed.

mod support;
use support::json::Json;
use support::status::{nonce, post_form, server_in, status_json};
use support::*;

const PAGE: &str = "/pounce-status";

fn conf(a: &Backend, b: &Backend) -> Conf {
    Conf::new().workers(2).upstream(Upstream::new("app").server(a.addr()).server(b.addr())).server(
        Server::new()
            .location(Location::new(PAGE).line("status; allow 127.0.0.1; deny all;"))
            .location(Location::new("/view").line("status read_only;"))
            .location(Location::new("/").proxy_pass("http://app")),
    )
}

/// (weight, state) of a server as the JSON shows it.
fn weight_state(p: &Pounce, addr: &str) -> (f64, String) {
    let j = status_json(p, PAGE);
    let s = server_in(&j, addr);
    (s.get("weight").num(), s.get("state").str().to_string())
}

#[test]
fn cross_site_posts_are_refused_and_change_nothing() {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let p = Pounce::start(&conf(&a, &b));
    let host = format!("127.0.0.1:{}", p.port);
    let n = nonce(&p, PAGE);
    let form = format!("nonce={}&upstream=app&server={}&state=stopped&weight=9", n, b.addr());
    // What a browser sends for a form or a fetch() from another site; the last two are what
    // it sends for a page that hides its referrer, and for a sandboxed one.
    for headers in [
        "Origin: http://evil.example\r\nReferer: http://evil.example/attack.html\r\n".to_string(),
        "Referer: http://evil.example/attack.html\r\n".to_string(),
        format!("Origin: http://127.0.0.1:{}\r\n", p.port + 1),
        format!("Origin: http://{}.evil.example\r\n", host),
        "Origin: null\r\n".to_string(),
    ] {
        for target in [PAGE.to_string(), format!("{}?format=json", PAGE)] {
            let r = post_form(&p, &target, &host, &headers, &form);
            assert_eq!(r.status, 403, "{:?} to {} -> {}", headers, target, r.text());
            assert!(r.text().contains("cross-site request refused"), "{}", r.text());
            assert_eq!(r.header("x-frame-options"), Some("DENY"));
        }
    }
    assert_eq!(weight_state(&p, &b.addr()), (1.0, "active".to_string()), "nothing changed");
    let log = p.error_log();
    assert!(
        log.contains("status page: POST from 127.0.0.1:") && log.contains("refused: cross-site request refused: it comes from http://evil.example"),
        "{}",
        log
    );

    // The same request from the page's own origin goes through.
    let r = post_form(&p, PAGE, &host, &format!("Origin: http://{}\r\nReferer: http://{}{}\r\n", host, host, PAGE), &form);
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(weight_state(&p, &b.addr()), (9.0, "stopped".to_string()));
}

#[test]
fn a_post_needs_the_instance_nonce() {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let p = Pounce::start(&conf(&a, &b));
    let host = format!("127.0.0.1:{}", p.port);
    let same_origin = format!("Origin: http://{}\r\n", host);
    let change = format!("upstream=app&server={}&state=disabled", a.addr());
    for (form, want) in [
        (change.clone(), "missing \"nonce\""),
        (format!("nonce=&{}", change), "wrong \"nonce\""),
        (format!("nonce={}&{}", "0".repeat(32), change), "wrong \"nonce\""),
    ] {
        for headers in ["", same_origin.as_str()] {
            let r = post_form(&p, PAGE, &host, headers, &form);
            assert_eq!(r.status, 403, "{} -> {}", form, r.text());
            assert!(r.text().contains(want), "{}", r.text());
        }
    }
    assert_eq!(weight_state(&p, &a.addr()).1, "active");

    // The nonce is one per instance: every worker shows the same (connections are spread
    // over both), a reload keeps it, another pounce has its own.
    let n = nonce(&p, PAGE);
    for _ in 0..12 {
        assert_eq!(nonce(&p, PAGE), n);
        assert!(p.get(PAGE).text().contains(&format!("name=\"nonce\" value=\"{}\"", n)));
    }
    p.signal(libc::SIGHUP);
    assert!(eventually(std::time::Duration::from_secs(5), || status_json(&p, PAGE).get("generation").num() == 2.0));
    assert_eq!(nonce(&p, PAGE), n, "kept across a reload");
    let other = Pounce::start(&conf(&a, &b));
    assert_ne!(nonce(&other, PAGE), n, "another instance has its own");
    let r = post_form(&other, PAGE, "x", "", &format!("nonce={}&{}", n, change));
    assert_eq!(r.status, 403, "one instance's nonce does not work on another");

    // A script's way: the nonce from the JSON, the change as JSON; no Origin, no Referer.
    let r = post_form(&p, &format!("{}?format=json", PAGE), "x", "", &format!("nonce={}&{}", n, change));
    assert_eq!(r.status, 200, "{}", r.text());
    let j = Json::parse(&r.text()).expect("json");
    assert_eq!(j.get("state").str(), "disabled");
    assert_eq!(weight_state(&p, &a.addr()).1, "disabled");
}

#[test]
fn a_change_is_logged_with_the_client_and_what_changed() {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let p = Pounce::start(&conf(&a, &b));
    let host = format!("127.0.0.1:{}", p.port);
    let form = format!("nonce={}&upstream=app&server={}&weight=7&state=stopped", nonce(&p, PAGE), b.addr());
    let r = post_form(&p, &format!("{}?refresh=5", PAGE), &host, &format!("Origin: http://{}\r\n", host), &form);
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/pounce-status?refresh=5"), "back to the page, still refreshing");
    let line = p.error_log().lines().find(|l| l.contains("manager: client")).map(str::to_string).unwrap_or_default();
    assert!(line.contains("[warn]"), "{}", line);
    assert!(line.contains("manager: client 127.0.0.1:"), "{}", line);
    assert!(line.contains(&format!("changed server {} in upstream \"app\": weight 1 -> 7, state active -> stopped", b.addr())), "{}", line);
}

#[test]
fn every_answer_forbids_framing() {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let p = Pounce::start(&conf(&a, &b));
    let refused = post_form(&p, PAGE, "x", "Origin: http://evil.example\r\n", "upstream=app");
    for (what, r) in [
        ("html", p.get(PAGE)),
        ("json", p.get(&format!("{}?format=json", PAGE))),
        ("prometheus", p.get(&format!("{}?format=prometheus", PAGE))),
        ("read-only", p.get("/view")),
        ("refusal", refused),
    ] {
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{}", what);
        let csp = r.header("content-security-policy").unwrap_or("");
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("form-action 'self'"), "{}: {}", what, csp);
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{}", what);
    }
    // The page has no script to inject into; the auto-refresh is a meta tag.
    let html = p.get(&format!("{}?refresh=5", PAGE)).text();
    assert!(!html.contains("<script"));
    assert!(html.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
    assert!(html.contains("action=\"/pounce-status?refresh=5\""));
    assert!(!p.get(PAGE).text().contains("http-equiv=\"refresh\""), "off unless asked for");
}

#[test]
fn read_only_status_shows_everything_and_takes_no_post() {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let p = Pounce::start(&conf(&a, &b));
    let _ = p.get("/");
    let r = p.get("/view");
    assert_eq!(r.status, 200);
    let html = r.text();
    assert!(html.contains(&format!("data-server=\"{}\"", a.addr())) && html.contains(&format!("data-server=\"{}\"", b.addr())));
    assert!(!html.contains("<form"), "no manager forms");
    assert!(!html.contains("name=\"nonce\""));
    assert!(html.contains("id=\"read-only\""));
    let r = p.get("/view?format=json");
    let j = Json::parse(&r.text()).expect("json");
    assert_eq!(j.get("read_only"), &Json::Bool(true));
    assert_eq!(j.get("nonce"), &Json::Null, "no nonce where nothing may be posted");
    assert_eq!(server_in(&j, &a.addr()).get("requests").num() + server_in(&j, &b.addr()).get("requests").num(), 1.0);
    assert!(p.get("/view?format=prometheus").text().contains("pounce_upstream_server_requests_total"));
    // Even with the right nonce (from the managing location of the same instance).
    let host = format!("127.0.0.1:{}", p.port);
    let form = format!("nonce={}&upstream=app&server={}&state=stopped", nonce(&p, PAGE), a.addr());
    for target in ["/view", "/view?format=json"] {
        let r = post_form(&p, target, &host, &format!("Origin: http://{}\r\n", host), &form);
        assert_eq!(r.status, 403, "{}", r.text());
        assert!(r.text().contains("read-only"), "{}", r.text());
    }
    assert_eq!(weight_state(&p, &a.addr()).1, "active");
    // A bad parameter is a configuration error with its line.
    let dir = TempDir::new("status-ro");
    let path = dir.0.join("bad.conf");
    std::fs::write(&path, "http {\n server {\n  listen 127.0.0.1:1;\n  location /s { status readonly; }\n }\n}\n").expect("write");
    let out = std::process::Command::new(BIN).arg("-t").arg("-p").arg(&dir.0).arg("-c").arg(&path).output().expect("pounce -t");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.conf:4: invalid parameter \"readonly\" in \"status\""), "{}", err);
}
