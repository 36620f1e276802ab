//! Signals and workers: reload under load with nothing lost, a bad reload keeps the old
//! config, graceful and fast stops, two workers sharing a port.

mod support;
use std::io::{BufReader, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

fn conf(workers: usize, backend: &Backend) -> Conf {
    Conf::new()
        .workers(workers)
        .top("worker_shutdown_timeout 10s;")
        .upstream(Upstream::new("app").server(backend.addr()).line("keepalive 4;"))
        .server(Server::new().location(Location::new("/").proxy_pass("http://app")))
}

/// Runs `clients` threads doing requests (new connection each, and keep-alive) until stopped;
/// returns (ok, failed) counts and the bodies seen.
fn load(port: u16, clients: usize, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(usize, usize, Vec<String>)> {
    std::thread::spawn(move || {
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                let (ok, failed, stop, seen) = (ok.clone(), failed.clone(), stop.clone(), seen.clone());
                std::thread::spawn(move || {
                    let deadline = Instant::now() + Duration::from_secs(30);
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        let raw = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
                        let result = std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
                            s.set_read_timeout(Some(Duration::from_secs(10)))?;
                            s.write_all(raw)?;
                            read_response(&mut BufReader::new(s), false)
                        });
                        match result {
                            Ok(r) if r.status == 200 => {
                                ok.fetch_add(1, Ordering::Relaxed);
                                let t = r.text();
                                let mut v = seen.lock().expect("lock");
                                if !v.contains(&t) {
                                    v.push(t);
                                }
                            }
                            _ => {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            let _ = h.join();
        }
        let seen = seen.lock().expect("lock").clone();
        (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed), seen)
    })
}

#[test]
fn reload_under_load_loses_nothing_and_bad_reload_keeps_serving() {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let p = Pounce::start(&conf(2, &a));
    let stop = Arc::new(AtomicBool::new(false));
    let l = load(p.port, 4, stop.clone());
    std::thread::sleep(Duration::from_millis(300));
    p.rewrite_conf(&conf(2, &b));
    p.signal(libc::SIGHUP);
    assert!(eventually(Duration::from_secs(5), || p.get("/").text() == "b"), "new config serves");
    std::thread::sleep(Duration::from_millis(300));
    // A broken config: logged, old one keeps serving.
    p.rewrite_conf_raw("http {\n  nonsense;\n}\n");
    p.signal(libc::SIGHUP);
    assert!(eventually(Duration::from_secs(5), || p.error_log().contains("reload failed")), "{}", p.error_log());
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let (ok, failed, seen) = l.join().expect("load");
    println!("reload under load: {} ok, {} failed, backends seen {:?}", ok, failed, seen);
    assert_eq!(failed, 0, "no request failed across reloads");
    assert!(ok > 50);
    assert!(p.error_log().contains("unknown directive \"nonsense\""), "the error names the problem");
    assert_eq!(p.get("/").text(), "b");
}

#[test]
fn sigquit_finishes_in_flight_requests() {
    let slow = Backend::with("slow", |_| Reply::Delay(Duration::from_millis(800), Box::new(Reply::ok("done"))));
    let mut p = Pounce::start(&conf(1, &slow));
    let port = p.port;
    let inflight = std::thread::spawn(move || request(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert!(eventually(Duration::from_secs(2), || slow.requests() == 1));
    p.signal(libc::SIGQUIT);
    let r = inflight.join().expect("client");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "done");
    assert_eq!(r.header("connection"), Some("close"), "no keep-alive while shutting down");
    let st = p.wait_exit(Duration::from_secs(5)).expect("exits after the request");
    assert!(st.success());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "listener closed");
    assert!(!p.dir.0.join("logs/pounce.pid").exists(), "pid file removed");
}

#[test]
fn sigterm_stops_at_once_and_s_stop_works() {
    let a = Backend::named("a");
    let mut p = Pounce::start(&conf(2, &a));
    let pid_text = std::fs::read_to_string(p.dir.0.join("logs/pounce.pid")).expect("pid file");
    assert_eq!(pid_text.trim(), p.child.id().to_string());
    let out = std::process::Command::new(BIN).arg("-p").arg(&p.dir.0).arg("-c").arg(&p.conf).arg("-s").arg("stop").output().expect("pounce -s stop");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let st = p.wait_exit(Duration::from_secs(3)).expect("stopped");
    assert!(st.success());
}

#[test]
fn two_workers_share_the_port_and_both_serve() {
    let a = Backend::with("slowish", |_| Reply::Delay(Duration::from_millis(30), Box::new(Reply::ok("a"))));
    let p = Pounce::start(&conf(2, &a).error_log("debug"));
    let out = std::process::Command::new("ss").args(["-Hltn", &format!("sport = :{}", p.port)]).output();
    if let Ok(out) = out {
        let n = String::from_utf8_lossy(&out.stdout).lines().count();
        assert_eq!(n, 2, "one SO_REUSEPORT listener per worker");
    }
    let handles: Vec<_> = (0..40)
        .map(|_| {
            let port = p.port;
            std::thread::spawn(move || request(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").status)
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().expect("client"), 200);
    }
    let log = p.error_log();
    assert!(log.contains("worker 0 started") && log.contains("worker 1 started"), "{}", log);
    // Each worker reports how many connections it accepted: both must have taken some.
    let accepted = |w: usize, log: &str| -> u64 {
        log.lines()
            .filter_map(|l| l.split(&format!("worker {}: ", w)).nth(1))
            .filter_map(|rest| rest.split(" accepted").next()?.rsplit('(').next()?.parse().ok())
            .max()
            .unwrap_or(0)
    };
    assert!(
        eventually(Duration::from_secs(4), || {
            let log = p.error_log();
            accepted(0, &log) > 0 && accepted(1, &log) > 0 && accepted(0, &log) + accepted(1, &log) >= 40
        }),
        "{}",
        p.error_log()
    );
}
