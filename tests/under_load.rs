//! pounce under load while things go wrong: backends killed and frozen, a reload with a changed
//! upstream, a graceful stop. A load generator (support/load.rs) runs keep-alive GETs and
//! POSTs through pounce the whole time and counts every outcome; the counts are printed.
//!
//! This file has its own `main` (harness = false) because the dying backends must be separate
//! processes to be killed and frozen: the test binary starts copies of itself as backends
//! (`POUNCE_TEST_BACKEND=port,name,log,delay_ms`). Arguments: an optional name filter.

mod support;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::load::{read_lines, Load, Mix, Outcome, Tally};
use support::*;

/// Seconds per phase (longer under `make soak`).
fn phase_secs(default: u64) -> Duration {
    Duration::from_secs(soak("POUNCE_SOAK_SECONDS", default))
}

fn main() {
    if let Ok(spec) = std::env::var("POUNCE_TEST_BACKEND") {
        serve_backend(&spec);
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tests: [(&str, fn()); 5] = [
        ("dying_backends_kill_and_freeze_under_load", dying_backends_kill_and_freeze_under_load),
        ("frozen_server_found_by_silence_costs_no_get", frozen_server_found_by_silence_costs_no_get),
        ("frozen_server_found_by_health_check_costs_no_get", frozen_server_found_by_health_check_costs_no_get),
        ("reload_with_a_changed_upstream_under_load", reload_with_a_changed_upstream_under_load),
        ("graceful_stop_under_load", graceful_stop_under_load),
    ];
    if args.iter().any(|a| a == "--list") {
        for (name, _) in &tests {
            println!("{}: test", name);
        }
        return;
    }
    let filter = args.iter().find(|a| !a.starts_with('-'));
    let mut failed = Vec::new();
    let mut ran = 0;
    for (name, f) in tests {
        if filter.is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        ran += 1;
        println!("test {} ...", name);
        match std::panic::catch_unwind(f) {
            Ok(()) => println!("test {} ... ok", name),
            Err(_) => {
                println!("test {} ... FAILED", name);
                failed.push(name);
            }
        }
    }
    println!("\ntest result: {}. {} passed; {} failed", if failed.is_empty() { "ok" } else { "FAILED" }, ran - failed.len(), failed.len());
    if !failed.is_empty() {
        std::process::exit(1);
    }
}

// ---- backend processes -----------------------------------------------------------------

/// Runs in a child process: a backend that answers every request after `delay_ms`, with its
/// name, and appends the X-Req id of every POST it receives to `log` (one line each, so what
/// it executed survives a SIGKILL).
fn serve_backend(spec: &str) {
    let parts: Vec<&str> = spec.split(',').collect();
    let (Some(port), Some(name), Some(log), Some(delay)) = (parts.first(), parts.get(1), parts.get(2), parts.get(3)) else { return };
    let (Ok(port), Ok(delay)) = (port.parse::<u16>(), delay.parse::<u64>()) else { return };
    let (name, log) = (name.to_string(), PathBuf::from(log));
    let n = name.clone();
    let _b = Backend::start_on(
        port,
        &name,
        Arc::new(move |r: &Req| {
            if r.method == "POST" {
                use std::io::Write;
                // One write(2) per line: O_APPEND keeps concurrent lines whole.
                if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&log) {
                    let _ = f.write_all(format!("{}\n", r.header("x-req").unwrap_or("?")).as_bytes());
                }
            }
            let reply = Reply::Send { status: 200, headers: vec![("X-Backend".into(), n.clone())], body: n.clone().into_bytes(), framing: Framing::Length };
            Reply::Delay(Duration::from_millis(delay), Box::new(reply))
        }),
    );
    // Until killed (bounded, should the test die without killing us).
    std::thread::sleep(Duration::from_secs(600));
}

struct BackendProcess {
    child: Child,
}

impl BackendProcess {
    fn start(port: u16, name: &str, log: &Path, delay_ms: u64) -> BackendProcess {
        let exe = std::env::current_exe().expect("own path");
        let child = Command::new(exe)
            .env("POUNCE_TEST_BACKEND", format!("{},{},{},{}", port, name, log.display(), delay_ms))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn backend process");
        let ok = eventually(Duration::from_secs(10), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        assert!(ok, "backend {} did not start", name);
        BackendProcess { child }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    fn kill(&mut self) {
        self.signal(libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for BackendProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn outcome_is(o: Outcome, statuses: &[u16]) -> bool {
    matches!(o, Outcome::Status(s) if statuses.contains(&s))
}

/// Every POST id the backends executed, with how often.
fn executed(logs: &[&Path]) -> std::collections::HashMap<String, usize> {
    let mut m = std::collections::HashMap::new();
    for l in logs {
        for id in read_lines(l) {
            *m.entry(id).or_insert(0) += 1;
        }
    }
    m
}

// ---- scenarios ---------------------------------------------------------------------------

fn dying_backends_kill_and_freeze_under_load() {
    let dir = TempDir::new("dying");
    let (log_a, log_b) = (dir.0.join("a.log"), dir.0.join("b.log"));
    let (port_a, port_b) = (free_port(), free_port());
    // 20 ms per answer: with 16 clients about 8 requests are in flight at each server.
    let mut a = BackendProcess::start(port_a, "a", &log_a, 20);
    let mut b = BackendProcess::start(port_b, "b", &log_b, 20);
    let p = Pounce::start(
        &Conf::new()
            .http("proxy_connect_timeout 1s;")
            .http("proxy_read_timeout 1s;")
            .upstream(
                Upstream::new("app")
                    .server(format!("127.0.0.1:{} max_fails=1 fail_timeout=2s", port_a))
                    .server(format!("127.0.0.1:{} max_fails=1 fail_timeout=2s", port_b))
                    .line("keepalive 32;")
                    .line("health_check interval=300ms timeout=300ms fails=1 passes=2 uri=/health;"),
            )
            .server(Server::new().location(Location::new("/").proxy_pass("http://app"))),
    );
    let clients = 16;
    let load = Load::start(p.port, clients, Mix { post_every: 4, stop_on_refused: false });
    let phases = ["warm", "b killed", "b restarted", "a frozen", "a resumed", "settled"];
    std::thread::sleep(phase_secs(2));
    let rss_before = rss_kib(p.child.id());

    load.set_phase(1);
    b.signal(libc::SIGKILL);
    let _ = b.child.wait();
    std::thread::sleep(phase_secs(3));

    load.set_phase(2);
    let _b2 = BackendProcess::start(port_b, "b", &log_b, 20);
    std::thread::sleep(phase_secs(3));

    load.set_phase(3);
    a.signal(libc::SIGSTOP);
    std::thread::sleep(phase_secs(3));

    load.set_phase(4);
    a.signal(libc::SIGCONT);
    std::thread::sleep(phase_secs(3));
    load.set_phase(5);
    std::thread::sleep(Duration::from_secs(1));
    let rss_peak = rss_kib(p.child.id());
    let tally: Tally = load.finish();
    // Buffers go back to the allocator within a few housekeeping rounds.
    std::thread::sleep(Duration::from_secs(3));
    let rss_after = rss_kib(p.child.id());

    let total = tally.count(None, None, |_| true);
    let get_errors = tally.count(None, Some("GET"), |o| !outcome_is(o, &[200]));
    let post_502 = tally.count(None, Some("POST"), |o| outcome_is(o, &[502]));
    let post_504 = tally.count(None, Some("POST"), |o| outcome_is(o, &[504]));
    let post_other = tally.count(None, Some("POST"), |o| !outcome_is(o, &[200, 502, 504]));
    let executed = executed(&[&log_a, &log_b]);
    let twice: Vec<_> = executed.iter().filter(|(_, &n)| n > 1).collect();
    let missing: Vec<&String> = tally.posts.iter().filter(|(id, o)| *o == Outcome::Status(200) && !executed.contains_key(id)).map(|(id, _)| id).collect();
    let ok_not_executed = missing.len();
    if !missing.is_empty() {
        println!("answered 200 but in no backend's log: {:?}", missing);
    }
    let log = p.error_log();
    println!("{} requests by {} clients:\n{}", total, clients, tally.report(&phases));
    println!(
        "GET errors: {}; POST 502: {} (b killed), 504: {} (a frozen), other: {}; POSTs executed twice: {}; RSS KiB before {} peak {} after {}; p50 {:.2} ms p99 {:.2} ms max {:.0} ms",
        get_errors,
        post_502,
        post_504,
        post_other,
        twice.len(),
        rss_before,
        rss_peak,
        rss_after,
        percentile_ms(&tally.latencies, 50),
        percentile_ms(&tally.latencies, 99),
        percentile_ms(&tally.latencies, 100)
    );
    for l in log.lines().filter(|l| l.contains("[error]") || l.contains("[warn]") || l.contains("health")).take(12) {
        println!("  log: {}", l);
    }

    assert!(total > 1000, "the load ran");
    assert_eq!(get_errors, 0, "idempotent requests are retried and never fail");
    assert_eq!(post_other, 0, "a POST gets 200, or 502/504 when its server died under it; nothing else");
    // Only requests in flight when it happened fail: at most one per client per event.
    assert!(post_502 <= clients as u64, "POST 502s: {}", post_502);
    assert!(post_504 <= clients as u64, "POST 504s: {}", post_504);
    assert!(tally.count(Some(1), Some("POST"), |o| outcome_is(o, &[502])) == post_502, "502s only when b was killed");
    assert!(twice.is_empty(), "a POST was executed twice: {:?}", twice);
    assert_eq!(ok_not_executed, 0, "every POST answered 200 was executed");
    assert!(tally.count(Some(5), None, |o| outcome_is(o, &[200])) > 0, "serving normally at the end");
    assert!(rss_after <= rss_before + 8 * 1024, "memory returns: before {} after {} KiB", rss_before, rss_after);
    let says = |s: &str| log.contains(s);
    assert!(says(&format!("127.0.0.1:{}", port_b)) && (says("failed") || says("reset") || says("prematurely")), "the log names the killed server");
    assert!(says("timed out"), "the log says the frozen server timed out");
    assert!(says("health check"), "the log has the health checks' verdicts");
    a.kill();
}

/// How a frozen server is to be found.
#[derive(Clone, Copy, PartialEq)]
enum Finder {
    /// `frozen_timeout`: no byte from it while requests wait.
    Silence,
    /// An active check times out.
    HealthCheck,
}

fn frozen_server_found_by_silence_costs_no_get() {
    frozen_server_costs_no_get(Finder::Silence);
}

fn frozen_server_found_by_health_check_costs_no_get() {
    frozen_server_costs_no_get(Finder::HealthCheck);
}

/// One of two servers is SIGSTOPped under load (its kernel still takes connections and
/// requests: nothing fails, requests just wait) and resumed later. With a read timeout far
/// beyond the bound, only the frozen-server watch can answer the GETs waiting on it in time.
fn frozen_server_costs_no_get(finder: Finder) {
    let dir = TempDir::new("frozen");
    let (log_a, log_b) = (dir.0.join("a.log"), dir.0.join("b.log"));
    let (port_a, port_b) = (free_port(), free_port());
    let a = BackendProcess::start(port_a, "a", &log_a, 5);
    let _b = BackendProcess::start(port_b, "b", &log_b, 5);
    let watch = match finder {
        Finder::Silence => "frozen_timeout 1s;",
        Finder::HealthCheck => "health_check interval=500ms timeout=400ms fails=1 passes=1 uri=/health;",
    };
    let p = Pounce::start(
        &Conf::new()
            .workers(2)
            .http("proxy_read_timeout 20s;")
            .upstream(
                Upstream::new("app")
                    .server(format!("127.0.0.1:{} max_fails=1 fail_timeout=3s", port_a))
                    .server(format!("127.0.0.1:{} max_fails=1 fail_timeout=3s", port_b))
                    .line("keepalive 32;")
                    .line(watch),
            )
            .server(Server::new().location(Location::new("/").proxy_pass("http://app"))),
    );
    let clients = 16;
    let load = Load::start(p.port, clients, Mix { post_every: 5, stop_on_refused: false });
    let phases = ["warm", "a frozen", "a resumed"];
    std::thread::sleep(phase_secs(2));
    load.set_phase(1);
    a.signal(libc::SIGSTOP);
    let addr_a = format!("127.0.0.1:{}", port_a);
    let health = |what: &str| p.harness_status().map(|j| status::server_in(&j, &addr_a).get(what).str().to_string()).unwrap_or_default();
    let shown_down = eventually(Duration::from_secs(3), || health("health") == "down");
    let reason = health("down_reason");
    std::thread::sleep(phase_secs(4));
    load.set_phase(2);
    a.signal(libc::SIGCONT);
    let shown_up = eventually(Duration::from_secs(8), || health("health") == "up");
    std::thread::sleep(phase_secs(2));
    let tally = load.finish();

    let total = tally.count(None, None, |_| true);
    let get_errors = tally.count(None, Some("GET"), |o| !outcome_is(o, &[200]));
    let post_errors = tally.count(None, Some("POST"), |o| !outcome_is(o, &[200]));
    let executed = executed(&[&log_a, &log_b]);
    let twice: Vec<_> = executed.iter().filter(|(_, &n)| n > 1).collect();
    let log = p.error_log();
    println!("{} requests by {} clients:\n{}", total, clients, tally.report(&phases));
    println!(
        "GET errors: {}, slowest GET {} ms; POST errors: {}; POSTs executed twice: {}; a shown down: {} ({}), up again: {}",
        get_errors,
        tally.slowest_get.as_millis(),
        post_errors,
        twice.len(),
        shown_down,
        reason,
        shown_up
    );
    let story: Vec<&str> = log.lines().filter(|l| l.contains("[error]") || l.contains("[warn]")).collect();
    for l in story.iter().take(12) {
        println!("  log: {}", l);
    }
    assert!(total > 500, "the load ran");
    assert_eq!(get_errors, 0, "every GET is answered 200");
    assert!(tally.slowest_get < Duration::from_millis(2500), "every GET within 2.5 s: the slowest took {:?}", tally.slowest_get);
    // A POST waiting on the frozen server is not sent again: it waits (proxy_read_timeout is
    // longer than the freeze) and is answered when the server resumes.
    assert_eq!(post_errors, 0, "POSTs are answered once the server resumes");
    assert!(twice.is_empty(), "a POST was executed twice: {:?}", twice);
    assert!(shown_down, "the frozen server is shown down");
    assert_eq!(reason, if finder == Finder::Silence { "frozen" } else { "health_check" });
    assert!(shown_up, "and up again after it resumes");
    assert!(tally.count(Some(2), Some("GET"), |o| outcome_is(o, &[200])) > 0, "serving at the end");
    let says = |s: &str| log.contains(s);
    match finder {
        // Back when it is heard from again, or tried again after fail_timeout (whichever the
        // timing of the resume makes first).
        Finder::Silence => assert!(says("stopped answering") && (says("answers again") || says("is tried again")), "the log tells the freeze and the return"),
        Finder::HealthCheck => assert!(says("is down") && says("is up again"), "the log tells the checks' verdicts"),
    }
    assert!(says("sent to other servers"), "the log tells how many requests moved");
    assert!(story.len() <= 12, "a few lines tell the story, not one per request: {}", story.len());
}

fn reload_with_a_changed_upstream_under_load() {
    let (a, b, c) = (Backend::named("a"), Backend::named("b"), Backend::named("c"));
    let conf = |x: &Backend, y: &Backend| {
        Conf::new()
            .workers(2)
            .upstream(Upstream::new("app").server(x.addr()).server(y.addr()).line("keepalive 16;"))
            .server(Server::new().location(Location::new("/").proxy_pass("http://app")))
    };
    let p = Pounce::start(&conf(&a, &b));
    let load = Load::start(p.port, 8, Mix { post_every: 4, stop_on_refused: false });
    std::thread::sleep(phase_secs(2));
    let c_before = c.requests();
    load.set_phase(1);
    p.rewrite_conf(&conf(&b, &c));
    p.signal(libc::SIGHUP);
    std::thread::sleep(phase_secs(3));
    let a_settled = a.requests();
    load.set_phase(2);
    std::thread::sleep(phase_secs(2));
    let tally = load.finish();
    let total = tally.count(None, None, |_| true);
    let failed = tally.count(None, None, |o| !outcome_is(o, &[200]));
    println!("{} requests, {} failed:\n{}", total, failed, tally.report(&["before", "reload", "after"]));
    println!("requests at a (removed): {}, at c (added): {} (0 before the reload)", a.requests(), c.requests());
    assert!(total > 1000);
    assert_eq!(failed, 0, "no request fails across a reload");
    assert_eq!(c_before, 0);
    assert!(c.requests() > 0, "the new server gets requests");
    assert_eq!(a.requests(), a_settled, "the removed server gets none once the old workers are gone");
    assert!(p.error_log().contains("configuration generation 2 running"));
}

fn graceful_stop_under_load() {
    let grace = 3;
    let slow =
        Backend::with(
            "slow",
            |r: &Req| {
                if r.path.starts_with("/hang") {
                    Reply::Hang
                } else {
                    Reply::Delay(Duration::from_millis(150), Box::new(Reply::ok("done")))
                }
            },
        );
    let mut p = Pounce::start(
        &Conf::new()
            .workers(2)
            .top(format!("worker_shutdown_timeout {}s;", grace))
            .http("proxy_read_timeout 60s;")
            .upstream(Upstream::new("app").server(slow.addr()))
            .server(Server::new().location(Location::new("/").proxy_pass("http://app"))),
    );
    // One request that never ends, to see the grace period cut it.
    let port = p.port;
    let hanging = std::thread::spawn(move || {
        let mut s = connect(port);
        use std::io::{Read, Write};
        let _ = s.write_all(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        buf.len()
    });
    let load = Load::start(p.port, 8, Mix { post_every: 4, stop_on_refused: true });
    std::thread::sleep(Duration::from_secs(1));
    load.set_phase(1);
    let t = Instant::now();
    p.signal(libc::SIGQUIT);
    let status = p.wait_exit(Duration::from_secs(grace + 8));
    let took = t.elapsed();
    let tally = load.finish();
    let hung_bytes = hanging.join().unwrap_or(0);
    let total = tally.count(None, None, |_| true);
    let served_after_quit = tally.count(Some(1), None, |o| outcome_is(o, &[200]));
    let bad = tally.count(None, None, |o| !matches!(o, Outcome::Status(200) | Outcome::Refused));
    println!("{} requests:\n{}", total, tally.report(&["running", "after SIGQUIT"]));
    println!(
        "exit after {} ms (worker_shutdown_timeout {}s) with {:?}; completed after SIGQUIT: {}; other failures: {}; the hanging request got {} bytes",
        took.as_millis(),
        grace,
        status.map(|s| s.code()),
        served_after_quit,
        bad,
        hung_bytes
    );
    assert!(status.is_some_and(|s| s.success()), "exited cleanly");
    assert!(took >= Duration::from_millis(grace * 1000 - 200), "the hanging request held the stop until the grace period ended");
    assert!(took < Duration::from_millis(grace * 1000 + 2500), "exit within the grace period");
    assert!(served_after_quit >= 8, "in-flight requests completed");
    assert_eq!(bad, 0, "requests either complete or find the listener closed (refused), nothing in between");
    assert!(tally.count(Some(1), None, |o| o == Outcome::Refused) >= 1, "new connections are refused once the listeners are closed");
}
