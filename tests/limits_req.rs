//! `limit_req` and `limit_conn` with nginx's semantics, through the real binary: the exact
//! pass/refuse counts of nginx's leaky bucket (rates slow enough, 1r/m, that the machine's
//! speed cannot change a count), delays on a timer, concurrent requests per key, a zone full
//! of keys, the error log's words, `$limit_req_status`/`$limit_conn_status`, the status page,
//! reloads and configuration errors.

mod support;
use std::io::{BufReader, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

const LOG: &str = "log_format lim '$remote_addr $request_uri $status $limit_req_status $limit_conn_status';";

/// A server proxying `/` to `backend`, with `zones` in http and `limits` in the location.
fn conf(zones: &str, limits: &str, backend: &str) -> Conf {
    Conf::new().http(LOG).http(zones).upstream(Upstream::new("app").server(backend)).server(
        Server::new()
            .location(Location::new("/").proxy_pass("http://app").line("access_log logs/access.log lim;").line(limits))
            .location(Location::exact("/r").line("return 204;").line(limits)),
    )
}

/// One GET on a new connection from `local` (a 127.0.0.x address).
fn get_from(local: Ipv4Addr, port: u16, path: &str) -> u16 {
    let mut s = connect_from(local, port);
    s.write_all(format!("GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path).as_bytes()).expect("send");
    read_response(&mut BufReader::new(s), false).expect("answer").status
}

fn statuses(p: &Pounce, n: usize, path: &str) -> Vec<u16> {
    (0..n).map(|_| p.get(path).status).collect()
}

/// The zone named `name` in the status JSON: (passed, delayed, rejected, states, capacity).
fn zone(p: &Pounce, name: &str) -> (u64, u64, u64, u64, u64) {
    let j = p.harness_status().expect("status");
    let z = j.get("limit_zones").arr().iter().find(|z| z.get("name").str() == name).cloned().expect("the zone on the status page");
    let n = |k: &str| z.get(k).num() as u64;
    (n("passed"), n("delayed"), n("rejected"), n("states"), n("capacity"))
}

/// The access-log lines of the tested server (`$remote_addr $request_uri $status ...`).
fn log_lines(p: &Pounce, lines: usize) -> Vec<String> {
    assert!(eventually(Duration::from_secs(5), || p.access_log().lines().count() >= lines), "access log: {}", p.access_log());
    p.access_log().lines().map(str::to_string).collect()
}

#[test]
fn burst_with_nodelay_passes_exactly_burst_plus_one() {
    // nginx: excess starts at 0 and grows by 1000 per request (1r/m leaks 16 a second), so
    // twelve requests at once: 0, 1000, ..., 5000 pass (burst=5), 6000 and above are refused.
    let b = Backend::named("a");
    // Two workers: connections land on either, the zone is the same.
    let p = Pounce::start(&conf("limit_req_zone $binary_remote_addr zone=one:1m rate=1r/m;", "limit_req zone=one burst=5 nodelay;", &b.addr()).workers(2));
    let got = statuses(&p, 12, "/");
    assert_eq!(got, [[200; 6], [503; 6]].concat());
    assert_eq!(b.requests(), 6, "refused requests never reach the backend");
    assert_eq!(zone(&p, "one"), (6, 0, 6, 1, 8192));
    let prom = request(p.status_port, b"GET /?format=prometheus HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").text();
    assert!(prom.contains("pounce_limit_requests_total{zone=\"one\",kind=\"limit_req\",outcome=\"rejected\"} 6"), "{}", prom);
    assert!(prom.contains("pounce_limit_zone_states{zone=\"one\"} 1"), "{}", prom);
    let log = p.error_log();
    assert!(log.contains("limiting requests, excess: ") && log.contains(" by zone \"one\", client: 127.0.0.1, server: "), "{}", log);
    let lines = log_lines(&p, 12);
    assert_eq!(lines.iter().filter(|l| l.ends_with(" 200 PASSED -")).count(), 6, "{:?}", lines);
    assert_eq!(lines.iter().filter(|l| l.ends_with(" 503 REJECTED -")).count(), 6, "{:?}", lines);
}

#[test]
fn without_burst_the_second_request_is_refused_with_limit_req_status() {
    let b = Backend::named("a");
    let p = Pounce::start(&conf("limit_req_zone $binary_remote_addr zone=one:1m rate=1r/m;", "limit_req zone=one; limit_req_status 429;", &b.addr()));
    assert_eq!(statuses(&p, 3, "/"), [200, 429, 429]);
    // Another address has its own bucket.
    assert_eq!(get_from(Ipv4Addr::new(127, 0, 0, 2), p.port, "/"), 200);
    assert_eq!(get_from(Ipv4Addr::new(127, 0, 0, 2), p.port, "/"), 429);
    // A `return` is answered before nginx's preaccess phase: never limited.
    assert_eq!(statuses(&p, 3, "/r"), [204, 204, 204]);
    // A refusal on a keep-alive connection keeps it.
    let mut s = BufReader::new(connect(p.port));
    for want in [429, 429] {
        s.get_mut().write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
        assert_eq!(read_response(&mut s, false).expect("answer").status, want);
    }
}

#[test]
fn excess_requests_wait_their_turn_without_nodelay() {
    // 2r/s, burst 2: of three requests at once the first goes at once and the others wait
    // until the bucket has room: the third is let go 1 s after the first arrived. (Only that
    // lower bound is checked: the machine may be slower, never faster.)
    let b = Backend::named("a");
    let p = Pounce::start(&conf("limit_req_zone $binary_remote_addr zone=one:1m rate=2r/s;", "limit_req zone=one burst=2;", &b.addr()));
    let start = Instant::now();
    let port = p.port;
    let clients: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(move || (request(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").status, start.elapsed())))
        .collect();
    let mut done: Vec<(u16, Duration)> = clients.into_iter().map(|c| c.join().expect("client")).collect();
    done.sort_by_key(|d| d.1);
    assert!(done.iter().all(|d| d.0 == 200), "{:?}", done);
    assert!(done[2].1 >= Duration::from_millis(950), "the third waited for its turn: {:?}", done);
    let (passed, delayed, rejected, _, _) = zone(&p, "one");
    assert_eq!((passed, delayed, rejected), (1, 2, 0));
    assert!(p.error_log().contains("delaying request, excess: "), "{}", p.error_log());
    let lines = log_lines(&p, 3);
    assert_eq!(lines.iter().filter(|l| l.ends_with(" 200 DELAYED -")).count(), 2, "{:?}", lines);
}

#[test]
fn a_client_that_leaves_while_delayed_is_logged_499_and_never_forwarded() {
    let b = Backend::named("a");
    let p = Pounce::start(&conf("limit_req_zone $binary_remote_addr zone=one:1m rate=1r/m;", "limit_req zone=one burst=3;", &b.addr()));
    assert_eq!(p.get("/").status, 200);
    // The second waits 60 s; its client gives up.
    let mut s = connect(p.port);
    s.write_all(b"GET /waits HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
    assert!(eventually(Duration::from_secs(5), || zone(&p, "one").1 == 1), "delayed");
    drop(s);
    let lines = log_lines(&p, 2);
    assert!(lines.iter().any(|l| l.contains("/waits 499 DELAYED")), "{:?}", lines);
    assert_eq!(b.requests(), 1);
}

#[test]
fn dry_run_refuses_nothing_and_says_what_it_would_have_done() {
    let b = Backend::named("a");
    let p = Pounce::start(&conf("limit_req_zone $binary_remote_addr zone=one:1m rate=1r/m;", "limit_req zone=one; limit_req_dry_run on;", &b.addr()));
    assert_eq!(statuses(&p, 3, "/"), [200, 200, 200]);
    let lines = log_lines(&p, 3);
    assert_eq!(lines.iter().filter(|l| l.ends_with(" 200 REJECTED_DRY_RUN -")).count(), 2, "{:?}", lines);
    assert!(p.error_log().contains("limiting requests, dry run, excess: "), "{}", p.error_log());
}

/// A backend whose `/slow` answers only once the gate opens (bounded: 20 s).
fn gated_backend(gate: Arc<AtomicBool>) -> Backend {
    Backend::with("gated", move |r: &Req| {
        if r.path.starts_with("/slow") {
            let until = Instant::now() + Duration::from_secs(20);
            while !gate.load(Ordering::Relaxed) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Reply::ok("done")
    })
}

#[test]
fn limit_conn_refuses_the_request_over_n_in_progress() {
    let gate = Arc::new(AtomicBool::new(false));
    let b = gated_backend(gate.clone());
    let p = Pounce::start(&conf("limit_conn_zone $binary_remote_addr zone=addr:1m;", "limit_conn addr 2;", &b.addr()));
    // Two keep-alive connections, each with one answered request: idle, they count nothing.
    let mut idle: Vec<BufReader<TcpStream>> = (0..2).map(|_| BufReader::new(connect(p.port))).collect();
    for s in &mut idle {
        s.get_mut().write_all(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
        assert_eq!(read_response(s, false).expect("answer").status, 200);
    }
    // Two requests in progress at the slow backend...
    let port = p.port;
    let slow: Vec<_> =
        (0..2).map(|_| std::thread::spawn(move || request(port, b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").status)).collect();
    assert!(eventually(Duration::from_secs(10), || b.requests() == 4), "both slow requests reached the backend");
    // ... so the third of the same address is refused, on a new or a kept connection.
    assert_eq!(p.get("/fast").status, 503);
    idle[0].get_mut().write_all(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
    assert_eq!(read_response(&mut idle[0], false).expect("answer").status, 503);
    // Another address is not.
    assert_eq!(get_from(Ipv4Addr::new(127, 0, 0, 3), p.port, "/fast"), 200);
    gate.store(true, Ordering::Relaxed);
    assert_eq!(slow.into_iter().map(|t| t.join().expect("client")).collect::<Vec<_>>(), [200, 200]);
    // Their counts went back with their end.
    assert!(eventually(Duration::from_secs(5), || zone(&p, "addr").3 == 0), "no key in progress");
    assert_eq!(p.get("/fast").status, 200);
    let (passed, _, rejected, _, capacity) = zone(&p, "addr");
    assert_eq!((passed, rejected, capacity), (6, 2, 16384));
    assert!(p.error_log().contains("limiting connections by zone \"addr\", client: 127.0.0.1"), "{}", p.error_log());
    let lines = log_lines(&p, 8);
    assert_eq!(lines.iter().filter(|l| l.ends_with(" 503 - REJECTED")).count(), 2, "{:?}", lines);
}

#[test]
fn a_zone_full_of_keys_keeps_answering_and_forgets_the_oldest() {
    // 32k holds 256 states (16 shards of 16): 600 addresses overflow it many times.
    let b = Backend::named("a");
    let p = Pounce::start(&conf("limit_req_zone $binary_remote_addr zone=small:32k rate=1r/m;", "limit_req zone=small;", &b.addr()).workers(2));
    let addr = |i: u32| Ipv4Addr::new(127, 0, 1 + (i / 250) as u8, 1 + (i % 250) as u8);
    for i in 0..600 {
        assert_eq!(get_from(addr(i), p.port, "/"), 200, "new address {}", i);
    }
    let (passed, _, rejected, states, capacity) = zone(&p, "small");
    assert_eq!((passed, rejected, capacity), (600, 0, 256));
    assert!(states <= capacity, "{} states in a zone of {}", states, capacity);
    // The most recent address is still remembered (and limited); the first was forgotten.
    assert_eq!(get_from(addr(599), p.port, "/"), 503);
    assert_eq!(get_from(addr(0), p.port, "/"), 200);
    // Nothing else was disturbed.
    assert_eq!(p.get("/r").status, 204);
    assert!(!p.error_log().contains("could not allocate"), "{}", p.error_log());
}

#[test]
fn a_reload_keeps_an_unchanged_zone_and_starts_a_changed_one_empty() {
    let b = Backend::named("a");
    let zones = |size: &str| format!("limit_req_zone $binary_remote_addr zone=one:{} rate=1r/m;", size);
    let c = conf(&zones("1m"), "limit_req zone=one;", &b.addr());
    let p = Pounce::start(&c);
    assert_eq!(statuses(&p, 2, "/"), [200, 503]);
    let reload = |c: &Conf, generation: f64| {
        p.rewrite_conf(c);
        p.signal(libc::SIGHUP);
        assert!(eventually(Duration::from_secs(10), || p.harness_status().is_ok_and(|j| j.get("generation").num() == generation)), "reloaded");
    };
    reload(&c.clone().http("keepalive_timeout 30s;"), 2.0);
    assert_eq!(p.get("/").status, 503, "the state survived the reload");
    assert_eq!(zone(&p, "one").2, 2, "and so did the counters");
    reload(&conf(&zones("2m"), "limit_req zone=one;", &b.addr()), 3.0);
    // The old generation's workers may still take a connection or two while they quit (503:
    // their zone remembers); the new generation's zone starts empty: one 200, then 503 from
    // either.
    assert!(eventually(Duration::from_secs(10), || p.get("/").status == 200), "a zone of another size starts empty");
    assert_eq!(p.get("/").status, 503);
}

#[test]
fn configuration_errors_name_file_and_line() {
    let dir = TempDir::new("limits-conf");
    let cases = [
        ("http {\n server {\n  location / { limit_req zone=nope; }\n }\n}\n", "pounce.conf:3: unknown limit_req_zone \"nope\""),
        ("http {\n limit_req_zone $binary_remote_addr zone=a:1m rate=ten;\n}\n", "pounce.conf:2: invalid rate \"rate=ten\""),
        ("http {\n limit_conn_zone $binary_remote_addr zone=a:8k;\n}\n", "pounce.conf:2: zone \"a\" is too small"),
    ];
    for (text, want) in cases {
        let path = dir.0.join("pounce.conf");
        std::fs::write(&path, text).expect("write");
        let out = std::process::Command::new(BIN).arg("-t").arg("-p").arg(&dir.0).arg("-c").arg(&path).output().expect("pounce -t");
        let said = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{}", text);
        assert!(said.contains(want), "for {:?}: {}", text, said);
    }
}

#[test]
fn limits_come_before_access_rules_as_in_nginx() {
    // nginx's preaccess phase runs before its access phase: a denied client still spends its
    // rate, and once over it gets the limit's status rather than 403.
    let c = Conf::new()
        .http("limit_req_zone $binary_remote_addr zone=one:1m rate=1r/m;")
        .server(Server::new().location(Location::new("/").line("deny all;").line("limit_req zone=one;").line("root /nonexistent;")));
    let p = Pounce::start(&c);
    assert_eq!(statuses(&p, 2, "/x"), [403, 503]);
}

#[test]
fn a_delayed_request_keeps_its_body_and_its_pipelined_successor() {
    // The body (and a pipelined request behind it) arrive while the request waits: both are
    // read on, held in the connection's buffer, and served in order once its turn comes.
    let b = Backend::named("a");
    let p = Pounce::start(&conf("limit_req_zone $binary_remote_addr zone=one:1m rate=4r/s;", "limit_req zone=one burst=3;", &b.addr()));
    assert_eq!(p.get("/").status, 200);
    let mut s = BufReader::new(connect(p.port));
    s.get_mut().write_all(b"POST /one HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello worldGET /two HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
    let first = read_response(&mut s, false).expect("first");
    assert_eq!((first.status, first.text().as_str()), (200, "hello world"));
    assert_eq!(read_response(&mut s, false).expect("second").status, 200);
    let (passed, delayed, _, _, _) = zone(&p, "one");
    assert_eq!((passed, delayed), (1, 2), "both waited their turn");
}
