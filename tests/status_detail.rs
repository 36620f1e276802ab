//! The status page tells an operator what happened: each server's last health check (result,
//! latency, age) and why a down server is down (refused, timed out, CPING failed, a 5xx),
//! failed attempts by cause, retries, responses by status class, a response-time histogram,
//! counters that survive a reload, and the last reload's time and result, failed ones too.

mod support;
use std::time::Duration;
use support::ajp::{AjpBackend, Behaviour};
use support::json::Json;
use support::status::{server_in, status_json};
use support::*;

const PAGE: &str = "/pounce-status";

fn with_status(c: Conf, proxy: &str, extra: &str) -> Conf {
    c.server(Server::new().location(Location::new(PAGE).line("status; allow 127.0.0.1; deny all;")).location(Location::new("/").proxy_pass(proxy).line(extra)))
}

fn json(p: &Pounce) -> Json {
    status_json(p, PAGE)
}

/// The status JSON as the running generation `gen` sees it: right after a reload a new
/// connection may still be taken by a finishing worker of the old one, which shows its own view.
fn json_of(p: &Pounce, gen: f64) -> Json {
    let mut last = None;
    let served = eventually(Duration::from_secs(5), || {
        let j = json(p);
        let ok = j.get("generation").num() == gen;
        last = Some(j);
        ok
    });
    let j = last.expect("a status answer");
    assert!(served, "generation {} never answered: {:?}", gen, j);
    j
}

/// Prometheus text from the running generation `gen` (see `json_of`).
fn prometheus_of(p: &Pounce, gen: f64) -> String {
    let mut last = String::new();
    let served = eventually(Duration::from_secs(5), || {
        last = prometheus(p);
        sample(&last, "pounce_config_generation") == Some(gen)
    });
    assert!(served, "generation {} never answered: {}", gen, last);
    last
}

fn prometheus(p: &Pounce) -> String {
    let r = p.get(&format!("{}?format=prometheus", PAGE));
    assert_eq!(r.status, 200);
    r.text()
}

/// The value of the sample `name{labels}` (labels exactly as written), if present.
fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' ')?.parse().ok())
}

fn check<'a>(j: &'a Json, addr: &str) -> &'a Json {
    server_in(j, addr).get("last_check")
}

#[test]
fn health_checks_say_what_failed_and_how_long_it_took() {
    let ok = Backend::named("ok");
    let refused = format!("127.0.0.1:{}", free_port());
    let hang = Backend::with("hang", |_| Reply::Hang);
    let broken = Backend::with("broken", |_| Reply::status(500, "oops"));
    let up = Upstream::new("hc")
        .line("health_check interval=200ms timeout=300ms fails=1 passes=1 uri=/health;")
        .server(ok.addr())
        .server(&refused)
        .server(hang.addr())
        .server(broken.addr());
    let p = Pounce::start(&with_status(Conf::new().workers(2).upstream(up), "http://hc", ""));
    let all = [ok.addr(), refused.clone(), hang.addr(), broken.addr()];
    let settled = eventually(Duration::from_secs(5), || {
        let j = json(&p);
        all.iter().all(|a| !check(&j, a).get("result").str().is_empty()) && all[1..].iter().all(|a| server_in(&j, a).get("health").str() == "down")
    });
    let j = json(&p);
    assert!(settled, "every server checked, the bad ones down: {:?}", j);

    let c = check(&j, &ok.addr());
    assert_eq!((c.get("result").str(), c.get("detail").str(), c.get("status").num()), ("passed", "HTTP 200", 200.0));
    assert!(c.get("latency_ms").num() >= 0.0 && c.get("age_seconds").num() < 5.0, "{:?}", c);
    assert_eq!(server_in(&j, &ok.addr()).get("down_cause"), &Json::Null);
    for (addr, cause, detail) in
        [(&refused, "refused", "connection refused"), (&hang.addr(), "timeout", "timed out"), (&broken.addr(), "http_status", "HTTP 500")]
    {
        let s = server_in(&j, addr);
        let c = s.get("last_check");
        assert_eq!((c.get("result").str(), c.get("cause").str(), c.get("detail").str()), ("failed", cause, detail), "{}: {:?}", addr, s);
        assert_eq!((s.get("down_reason").str(), s.get("down_cause").str()), ("health_check", detail), "{:?}", s);
        assert!(s.get("down_since_seconds").num() >= 0.0, "{:?}", s);
        assert!(s.get("checks").num() >= 1.0 && s.get("check_failures").num() >= 1.0, "{:?}", s);
    }
    assert_eq!(check(&j, &broken.addr()).get("status").num(), 500.0);
    assert!(check(&j, &hang.addr()).get("latency_ms").num() >= 250.0, "a timeout takes the timeout: {:?}", check(&j, &hang.addr()));

    let html = p.get(PAGE).text();
    assert!(html.contains("<span class=\"passed\">passed</span>: HTTP 200"), "{}", html);
    for why in ["connection refused", "timed out", "HTTP 500"] {
        assert!(html.contains(&format!("<span class=\"failed\">failed</span>: {}", why)), "{}: {}", why, html);
        assert!(html.contains(&format!("checks: <span class=\"why\">{}</span>", why)), "{}: {}", why, html);
    }
    let text = prometheus(&p);
    let labels = format!("{{upstream=\"hc\",server=\"{}\"}}", refused);
    assert!(sample(&text, &format!("pounce_upstream_server_health_check_failures_total{}", labels)).is_some_and(|n| n >= 1.0), "{}", text);
    assert!(sample(&text, &format!("pounce_upstream_server_health_checks_total{}", labels)).is_some_and(|n| n >= 1.0));
    assert!(sample(&text, &format!("pounce_upstream_server_last_check_seconds{}", labels)).is_some());
    assert_eq!(sample(&text, &format!("pounce_upstream_server_up{}", labels)), Some(0.0));
}

#[test]
fn ajp_cping_failures_are_named() {
    let good = AjpBackend::echo("good");
    let mute = AjpBackend::start(Behaviour { answer_cping: false, handler: Box::new(|_| support::ajp::AjpReply::Hang) });
    let conf = Conf::new()
        .upstream(Upstream::new("checked").line("health_check interval=200ms timeout=300ms fails=1 passes=1;").server(good.addr()).server(mute.addr()))
        .upstream(Upstream::new("pinged").line("ajp_ping on; ajp_ping_timeout 300ms;").server(mute.addr()).server(good.addr()))
        .server(
            Server::new()
                .location(Location::new(PAGE).line("status;"))
                .location(Location::new("/checked").proxy_pass("ajp://checked"))
                .location(Location::new("/").proxy_pass("ajp://pinged")),
        );
    let p = Pounce::start(&conf);
    // Requests meet the mute server's missing CPONG and move on to the good one.
    for _ in 0..4 {
        assert_eq!(p.get("/x").text(), "good");
    }
    let j = json(&p);
    let pinged = j.get("upstreams").arr().iter().find(|u| u.get("name").str() == "pinged").expect("pinged");
    let s = pinged.get("servers").arr().iter().find(|s| s.get("address").str() == mute.addr()).expect("mute");
    assert_eq!(s.get("errors").get("cping").num(), 1.0, "{:?}", s);
    assert_eq!(s.get("retries").num(), 1.0, "{:?}", s);
    assert_eq!((s.get("last_failure").get("cause").str(), s.get("last_failure").get("detail").str()), ("cping", "CPING failed"));
    assert_eq!((s.get("health").str(), s.get("down_reason").str(), s.get("down_cause").str()), ("down", "passive", "CPING failed"));

    assert!(eventually(Duration::from_secs(5), || {
        let j = json(&p);
        let checked = j.get("upstreams").arr().iter().find(|u| u.get("name").str() == "checked").cloned().expect("checked");
        let by = |a: &str| checked.get("servers").arr().iter().find(|s| s.get("address").str() == a).cloned().expect("server");
        let (g, m) = (by(&good.addr()), by(&mute.addr()));
        g.get("last_check").get("detail").str() == "CPONG"
            && g.get("last_check").get("result").str() == "passed"
            && m.get("last_check").get("cause").str() == "cping"
            && m.get("down_cause").str() == "CPING failed"
            && m.get("down_reason").str() == "health_check"
    }));
    assert!(p.get(PAGE).text().contains("checks: <span class=\"why\">CPING failed</span>"));
}

#[test]
fn passive_failures_are_counted_by_cause() {
    let refused = format!("127.0.0.1:{}", free_port());
    let hang = Backend::with("hang", |_| Reply::Hang);
    let busy = Backend::with("busy", |_| Reply::status(503, "busy"));
    let good = Backend::named("good");
    let up = Upstream::new("app").server(&refused).server(hang.addr()).server(busy.addr()).server(good.addr());
    let p = Pounce::start(&with_status(Conf::new().upstream(up), "http://app", "proxy_read_timeout 300ms; proxy_next_upstream error timeout http_503;"));
    for _ in 0..8 {
        assert_eq!(p.get("/").text(), "good");
    }
    let j = json(&p);
    for (addr, cause, detail) in
        [(&refused, "refused", "connection refused"), (&hang.addr(), "timeout", "timed out"), (&busy.addr(), "http_status", "HTTP 503")]
    {
        let s = server_in(&j, addr);
        assert_eq!(s.get("errors").get(cause).num(), 1.0, "{}: {:?}", addr, s);
        let total: f64 = ["refused", "connect_error", "connect_timeout", "timeout", "cping", "reset", "invalid_response", "http_status"]
            .iter()
            .map(|k| s.get("errors").get(k).num())
            .sum();
        assert_eq!(total, 1.0, "one cause each: {:?}", s.get("errors"));
        assert_eq!(s.get("retries").num(), 1.0, "{:?}", s);
        assert_eq!(s.get("failures").num(), 1.0);
        assert_eq!((s.get("last_failure").get("cause").str(), s.get("last_failure").get("detail").str()), (cause, detail));
        assert!(s.get("last_failure").get("age_seconds").num() < 10.0);
        assert_eq!((s.get("health").str(), s.get("down_reason").str(), s.get("down_cause").str()), ("down", "passive", detail), "{:?}", s);
        assert!(s.get("down_for_ms").num() > 0.0);
    }
    let busy_s = server_in(&j, &busy.addr());
    assert_eq!(busy_s.get("last_failure").get("status").num(), 503.0);
    assert_eq!(busy_s.get("responses").get("5xx").num(), 1.0, "the retried 503 is a response");
    let g = server_in(&j, &good.addr());
    assert_eq!((g.get("responses").get("2xx").num(), g.get("requests").num(), g.get("retries").num()), (8.0, 8.0, 0.0));
    assert_eq!(g.get("last_failure"), &Json::Null);
    assert!(g.get("avg_response_ms").num() >= 0.0);

    let html = p.get(PAGE).text();
    assert!(html.contains("failed: <span class=\"why\">connection refused</span>; next try in"), "{}", html);
    assert!(html.contains("refused&nbsp;1"), "{}", html);
    assert!(html.contains("retried&nbsp;1"), "{}", html);
    let text = prometheus(&p);
    let l = |a: &str| format!("upstream=\"app\",server=\"{}\"", a);
    assert_eq!(sample(&text, &format!("pounce_upstream_server_errors_total{{{},kind=\"refused\"}}", l(&refused))), Some(1.0));
    assert_eq!(sample(&text, &format!("pounce_upstream_server_errors_total{{{},kind=\"timeout\"}}", l(&hang.addr()))), Some(1.0));
    assert_eq!(sample(&text, &format!("pounce_upstream_server_errors_total{{{},kind=\"http_status\"}}", l(&busy.addr()))), Some(1.0));
    assert_eq!(sample(&text, &format!("pounce_upstream_server_retries_total{{{}}}", l(&busy.addr()))), Some(1.0));
    assert_eq!(sample(&text, &format!("pounce_upstream_server_responses_total{{{},code=\"5xx\"}}", l(&busy.addr()))), Some(1.0));
}

#[test]
fn prometheus_histogram_and_classes_are_sane() {
    let a = Backend::named("a");
    let missing = Backend::with("missing", |_| Reply::status(404, "no"));
    let up = Upstream::new("app").line("sticky_route;").server(format!("{} route=a", a.addr())).server(missing.addr());
    let p = Pounce::start(&with_status(Conf::new().upstream(up), "http://app", ""));
    for _ in 0..10 {
        let _ = request(p.port, b"GET / HTTP/1.1\r\nHost: x\r\nCookie: JSESSIONID=1.a\r\nConnection: close\r\n\r\n");
    }
    let seen: Vec<u16> = (0..6).map(|_| p.get("/").status).collect();
    let not_found = seen.iter().filter(|&&s| s == 404).count() as f64;
    assert!(not_found >= 1.0, "{:?}", seen);
    let text = prometheus(&p);
    assert!(!text.contains("route=\"\""), "no empty route label:\n{}", text);
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap_or("");
        let decimals = value.split_once('.').map_or(0, |(_, d)| d.len());
        assert!(value.parse::<f64>().is_ok() && decimals <= 6, "a plain number without float noise: {}", line);
        assert!(!value.contains('e'), "{}", line);
    }
    for (labels, responses) in [
        (format!("upstream=\"app\",server=\"{}\",route=\"a\"", a.addr()), 10.0 + 6.0 - not_found),
        (format!("upstream=\"app\",server=\"{}\"", missing.addr()), not_found),
    ] {
        let bucket = |le: &str| sample(&text, &format!("pounce_upstream_server_response_seconds_bucket{{{},le=\"{}\"}}", labels, le)).expect(le);
        let les = ["0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "+Inf"];
        let counts: Vec<f64> = les.iter().map(|le| bucket(le)).collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "cumulative: {:?}", counts);
        assert_eq!(bucket("+Inf"), responses, "{}", labels);
        assert_eq!(sample(&text, &format!("pounce_upstream_server_response_seconds_count{{{}}}", labels)), Some(responses));
        let sum = sample(&text, &format!("pounce_upstream_server_response_seconds_sum{{{}}}", labels)).expect("sum");
        assert!(sum > 0.0 && sum < responses * 5.0, "{}", sum);
    }
    let code = |labels: String, class: &str| sample(&text, &format!("pounce_upstream_server_responses_total{{{},code=\"{}\"}}", labels, class));
    assert_eq!(code(format!("upstream=\"app\",server=\"{}\",route=\"a\"", a.addr()), "2xx"), Some(10.0 + 6.0 - not_found));
    assert_eq!(code(format!("upstream=\"app\",server=\"{}\"", missing.addr()), "4xx"), Some(not_found));
    assert_eq!(code(format!("upstream=\"app\",server=\"{}\"", missing.addr()), "2xx"), Some(0.0));
    assert!(text.contains("# TYPE pounce_upstream_server_response_seconds histogram"));
    assert_eq!(sample(&text, "pounce_reloads_total"), Some(0.0));
    assert_eq!(sample(&text, "pounce_last_reload_successful"), Some(1.0));
}

fn two(a: &Backend, b: &Backend) -> Conf {
    let up = Upstream::new("app").line("sticky_route;").server(format!("{} route=a", a.addr())).server(format!("{} route=b", b.addr()));
    with_status(Conf::new().workers(2).upstream(up), "http://app", "")
}

#[test]
fn counters_survive_a_reload_and_reloads_are_shown() {
    let (a, b, c) = (Backend::named("a"), Backend::named("b"), Backend::named("c"));
    let p = Pounce::start(&two(&a, &b));
    for _ in 0..10 {
        let _ = p.get("/");
    }
    let _ = request(p.port, b"GET / HTTP/1.1\r\nHost: x\r\nCookie: JSESSIONID=1.a\r\nConnection: close\r\n\r\n");
    let before = json(&p);
    let (ra, rb) = (server_in(&before, &a.addr()).get("requests").num(), server_in(&before, &b.addr()).get("requests").num());
    assert_eq!(ra + rb, 11.0);
    let accepted = |j: &Json| j.get("workers").arr().iter().map(|w| w.get("accepted").num()).sum::<f64>();
    let accepted_before = accepted(&before);
    let prom_before = prometheus(&p);
    let la = format!("upstream=\"app\",server=\"{}\",route=\"a\"", a.addr());
    let hist_a = sample(&prom_before, &format!("pounce_upstream_server_response_seconds_count{{{}}}", la));
    assert_eq!(hist_a, Some(ra));

    // The same configuration again: every counter goes on.
    p.signal(libc::SIGHUP);
    let j = json_of(&p, 2.0);
    assert_eq!(server_in(&j, &a.addr()).get("requests").num(), ra, "{:?}", j);
    assert_eq!(server_in(&j, &b.addr()).get("requests").num(), rb);
    assert_eq!(server_in(&j, &a.addr()).get("responses").get("2xx").num(), ra);
    assert!(accepted(&j) >= accepted_before, "worker totals go on: {} then {}", accepted_before, accepted(&j));
    assert_eq!((j.get("reloads").num(), j.get("reload_failures").num()), (1.0, 0.0));
    let last = j.get("last_reload");
    assert_eq!((last.get("success"), last.get("error")), (&Json::Bool(true), &Json::Null));
    assert!(last.get("unix_time").num() > 1.6e9 && last.get("age_seconds").num() < 10.0, "{:?}", last);
    let prom = prometheus_of(&p, 2.0);
    for name in ["pounce_upstream_server_requests_total", "pounce_upstream_server_response_seconds_count"] {
        assert_eq!(sample(&prom, &format!("{}{{{}}}", name, la)), Some(ra), "{}", name);
    }
    assert_eq!(sample(&prom, &format!("pounce_upstream_server_responses_total{{{},code=\"2xx\"}}", la)), Some(ra));
    assert_eq!(sample(&prom, "pounce_reloads_total"), Some(1.0));
    assert_eq!(sample(&prom, "pounce_last_reload_successful"), Some(1.0));
    assert!(sample(&prom, "pounce_last_reload_timestamp_seconds").is_some_and(|t| t > 1.6e9));
    assert!(eventually(Duration::from_secs(5), || p.get(PAGE).text().contains("data-result=\"ok\"")));

    // b leaves, c comes: a keeps counting from where it was, c starts at zero.
    let up = Upstream::new("app").line("sticky_route;").server(format!("{} route=a", a.addr())).server(format!("{} route=c", c.addr()));
    p.rewrite_conf(&with_status(Conf::new().workers(2).upstream(up), "http://app", ""));
    p.signal(libc::SIGHUP);
    json_of(&p, 3.0);
    for _ in 0..2 {
        let _ = request(p.port, b"GET / HTTP/1.1\r\nHost: x\r\nCookie: JSESSIONID=1.a\r\nConnection: close\r\n\r\n");
    }
    // A request the old generation still took is counted there and moves over within 500 ms.
    assert!(eventually(Duration::from_secs(5), || server_in(&json_of(&p, 3.0), &a.addr()).get("requests").num() == ra + 2.0));
    let j = json_of(&p, 3.0);
    assert_eq!(server_in(&j, &c.addr()).get("requests").num(), 0.0);
    assert!(j.get("upstreams").arr()[0].get("servers").arr().iter().all(|s| s.get("address").str() != b.addr()));

    // A broken configuration: the reload fails, is shown as failed, and nothing is lost.
    p.rewrite_conf_raw("worker_processes 2;\nhttp {\n  bogus_directive on;\n}\n");
    p.signal(libc::SIGHUP);
    assert!(eventually(Duration::from_secs(5), || json(&p).get("reload_failures").num() == 1.0));
    let j = json(&p);
    assert_eq!((j.get("generation").num(), j.get("reloads").num()), (3.0, 3.0), "the running configuration is kept");
    let last = j.get("last_reload");
    assert_eq!(last.get("success"), &Json::Bool(false));
    assert!(last.get("error").str().contains("pounce.conf:3: unknown directive \"bogus_directive\""), "{:?}", last);
    assert_eq!(server_in(&j, &a.addr()).get("requests").num(), ra + 2.0);
    let prom = prometheus(&p);
    assert_eq!(sample(&prom, "pounce_last_reload_successful"), Some(0.0));
    assert_eq!((sample(&prom, "pounce_reloads_total"), sample(&prom, "pounce_reload_failures_total")), (Some(3.0), Some(1.0)));
    let html = p.get(PAGE).text();
    assert!(html.contains("data-result=\"failed\""), "{}", html);
    assert!(html.contains("unknown directive &quot;bogus_directive&quot;"), "{}", html);
    assert_eq!(p.get("/").status, 200, "still serving");
}

#[test]
fn a_response_that_ends_after_a_reload_is_counted_once() {
    let slow = Backend::with("slow", |_| Reply::Delay(Duration::from_millis(1500), Box::new(Reply::ok("slow"))));
    let p = Pounce::start(&with_status(Conf::new().workers(2).upstream(Upstream::new("app").server(slow.addr())), "http://app", ""));
    let port = p.port;
    let client = std::thread::spawn(move || request(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").text());
    assert!(eventually(Duration::from_secs(5), || slow.requests() == 1));
    p.signal(libc::SIGHUP);
    let j = json_of(&p, 2.0);
    let s = server_in(&j, &slow.addr());
    assert_eq!(
        (s.get("requests").num(), s.get("in_flight").num(), s.get("responses").get("2xx").num()),
        (1.0, 0.0, 0.0),
        "still in the old generation: {:?}",
        s
    );
    assert_eq!(client.join().expect("client"), "slow");
    // The old generation's worker finished it; its counts move to the running one, once.
    assert!(eventually(Duration::from_secs(5), || server_in(&json(&p), &slow.addr()).get("responses").get("2xx").num() == 1.0));
    std::thread::sleep(Duration::from_millis(1200));
    let j = json_of(&p, 2.0);
    let s = server_in(&j, &slow.addr());
    assert_eq!((s.get("requests").num(), s.get("responses").get("2xx").num()), (1.0, 1.0), "{:?}", s);
    let text = prometheus_of(&p, 2.0);
    assert_eq!(sample(&text, &format!("pounce_upstream_server_response_seconds_count{{upstream=\"app\",server=\"{}\"}}", slow.addr())), Some(1.0));
    assert!(sample(&text, &format!("pounce_upstream_server_response_seconds_bucket{{upstream=\"app\",server=\"{}\",le=\"1\"}}", slow.addr())) == Some(0.0));
}

#[test]
fn a_failed_trial_keeps_the_time_a_server_went_out() {
    let refused = format!("127.0.0.1:{}", free_port());
    let good = Backend::named("good");
    let up = Upstream::new("app").server(format!("{} fail_timeout=1s", refused)).server(good.addr());
    let p = Pounce::start(&with_status(Conf::new().upstream(up), "http://app", ""));
    let t0 = std::time::Instant::now();
    assert!(eventually(Duration::from_secs(5), || {
        let _ = p.get("/");
        server_in(&json(&p), &refused).get("health").str() == "down"
    }));
    // After fail_timeout a trial request goes to it, fails, and it is out again.
    std::thread::sleep(Duration::from_millis(1300));
    assert!(eventually(Duration::from_secs(5), || {
        let _ = p.get("/");
        let j = json(&p);
        let s = server_in(&j, &refused);
        s.get("errors").get("refused").num() >= 2.0 && s.get("health").str() == "down"
    }));
    let j = json(&p);
    let s = server_in(&j, &refused);
    let since = s.get("down_since_seconds").num();
    assert!(since >= 1.2 && since <= t0.elapsed().as_secs_f64() + 0.1, "down since the first failure, not the trial: {} ({:?})", since, s);
    assert_eq!(s.get("down_cause").str(), "connection refused");
}
