//! Connection and memory limits, and slow clients: `worker_connections`, `worker_buffers`,
//! `send_timeout`, and 2,000 slowloris connections next to a normal client.

mod support;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::*;

fn conf(events: &str, http_extra: &str, backend: &str) -> Conf {
    Conf::new()
        .events(events)
        .http(http_extra)
        .upstream(Upstream::new("app").server(backend))
        .server(Server::new().location(Location::new("/").proxy_pass("http://app")).location(Location::new("/pounce-status").line("status;")))
}

fn keepalive_get(s: &mut BufReader<TcpStream>, path: &str) -> std::io::Result<Resp> {
    s.get_mut().write_all(format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", path).as_bytes())?;
    read_response(s, false)
}

#[test]
fn worker_connections_caps_connections_with_a_log_line() {
    let b = Backend::named("a");
    let p = Pounce::start(&conf("worker_connections 20;", "", &b.addr()));
    // Hold 20 connections, each with one answered request.
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut r = BufReader::new(connect(p.port));
        assert_eq!(keepalive_get(&mut r, "/").expect("answer").status, 200);
        held.push(r);
    }
    // The next ones are closed at once, without an answer.
    let mut refused = 0;
    for _ in 0..5 {
        let mut s = connect(p.port);
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut buf = [0u8; 64];
        if matches!(s.read(&mut buf), Ok(0) | Err(_)) {
            refused += 1;
        }
    }
    let log = p.error_log();
    let lines = log.lines().filter(|l| l.contains("20 worker_connections are not enough")).count();
    println!("20 held, 5 more tried: {} refused, {} error-log lines", refused, lines);
    assert_eq!(refused, 5);
    assert!(lines >= 5, "error log: {}", log);
    // Held connections still work, and closing some makes room again.
    assert_eq!(keepalive_get(&mut held[0], "/").expect("held").status, 200);
    held.truncate(10);
    assert!(eventually(Duration::from_secs(5), || p.get("/").status == 200), "room again after closing");
}

#[test]
fn buffer_pool_limit_answers_503_and_never_grows_past_it() {
    // The backend holds every answer for a second, so buffers stay taken.
    let b = Backend::with("slow", |_r| Reply::Delay(Duration::from_millis(1500), Box::new(Reply::ok("slow"))));
    let p = Pounce::start(&conf("worker_connections 100; worker_buffers 16;", "", &b.addr()));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let port = p.port;
            std::thread::spawn(move || request(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").status)
        })
        .collect();
    let statuses: Vec<u16> = clients.into_iter().map(|c| c.join().expect("client")).collect();
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    let unavailable = statuses.iter().filter(|&&s| s == 503).count();
    println!("8 concurrent slow requests with 16 buffers: {} x 200, {} x 503", ok, unavailable);
    assert_eq!(ok + unavailable, 8, "only 200 or 503: {:?}", statuses);
    assert!(ok >= 2 && unavailable >= 1, "{:?}", statuses);
    assert!(p.error_log().contains("buffer pool exhausted"), "logged");
    // The server was not blamed for it, and pounce serves again once buffers are free.
    let r = p.get("/");
    assert_eq!(r.status, 200);
    let status = p.get("/pounce-status?format=json").text();
    let j = support::json::Json::parse(&status).expect("json");
    let w = &j.get("workers").arr()[0];
    let (high, limit) = (w.get("buffers_high_water").num(), w.get("buffers_limit").num());
    println!("buffers: high-water {} of limit {}", high, limit);
    assert_eq!(limit, 16.0);
    assert!(high <= limit && high >= 10.0, "high-water {} limit {}", high, limit);
    let server = &j.get("upstreams").arr()[0].get("servers").arr()[0];
    assert_eq!(server.get("failures").num(), 0.0, "no failure counted against the server: {}", status);
}

#[test]
fn send_timeout_closes_a_client_that_stops_reading() {
    let big = vec![b'x'; 32 << 20];
    let b = Backend::with("big", move |_r| Reply::ok(big.clone()));
    let p = Pounce::start(&conf("", "send_timeout 1s;", &b.addr()));
    let mut s = connect(p.port);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
    // Read nothing for a while: pounce's writes block, and send_timeout expires.
    std::thread::sleep(Duration::from_millis(3000));
    let t = Instant::now();
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
    println!("stalled reader: got {} of {} bytes after the pause, then the connection ended ({} ms)", total, 32 << 20, t.elapsed().as_millis());
    assert!(total < 32 << 20, "the connection was closed before the whole body");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(p.error_log().contains("timed out"), "logged: {}", p.error_log());
}

#[test]
fn two_thousand_slowloris_connections_do_not_slow_a_normal_client() {
    raise_nofile();
    let count = soak("POUNCE_SOAK_SLOWLORIS", 2000) as usize;
    let b = Backend::named("a");
    let p = Pounce::start(&conf("worker_connections 16384;", "client_header_timeout 8s;", &b.addr()));
    let measure = |n: usize| -> Vec<Duration> {
        let mut r = BufReader::new(connect(p.port));
        let mut v: Vec<Duration> = (0..n)
            .map(|_| {
                let t = Instant::now();
                let resp = keepalive_get(&mut r, "/").expect("normal request");
                assert_eq!(resp.status, 200);
                t.elapsed()
            })
            .collect();
        v.sort();
        v
    };
    let baseline = measure(200);
    let rss_before = rss_kib(p.child.id());

    // 2,000 connections that send a request head one byte every two seconds.
    let head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: 0123456789\r\n\r\n";
    let mut slow: Vec<TcpStream> = Vec::with_capacity(count);
    let t_open = Instant::now();
    while slow.len() < count && t_open.elapsed() < Duration::from_secs(60) {
        match TcpStream::connect(("127.0.0.1", p.port)) {
            Ok(s) => slow.push(s),
            Err(e) => panic!("slowloris connection {}: {}", slow.len(), e),
        }
    }
    let mut under_attack = Vec::new();
    let start = Instant::now();
    let mut sent = 0;
    while start.elapsed() < Duration::from_secs(6) {
        for s in slow.iter_mut() {
            let _ = s.write_all(&head[sent..sent + 1]);
        }
        sent += 1;
        // Normal requests between the trickles, for two seconds.
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(2) {
            under_attack.extend(measure(20));
        }
    }
    under_attack.sort();
    let pounce_rss = rss_kib(p.child.id());
    println!(
        "normal client: baseline p50 {:.2} ms p99 {:.2} ms; with {} slowloris connections ({} requests) p50 {:.2} ms p99 {:.2} ms max {:.2} ms; pounce RSS {} KiB",
        percentile_ms(&baseline, 50),
        percentile_ms(&baseline, 99),
        slow.len(),
        under_attack.len(),
        percentile_ms(&under_attack, 50),
        percentile_ms(&under_attack, 99),
        percentile_ms(&under_attack, 100),
        pounce_rss
    );
    // A silent slowloris holds no pooled buffer, only its few bytes (moved aside).
    let growth = pounce_rss.saturating_sub(rss_before);
    println!("pounce RSS {} KiB before the slowloris connections, {} KiB with them: {} bytes each", rss_before, pounce_rss, growth * 1024 / slow.len() as u64);
    assert!(growth < slow.len() as u64 * 4, "RSS growth {} KiB for {} connections", growth, slow.len());
    // Generous bound (a loaded 2-core CI box); the normal latency is about a millisecond.
    assert!(percentile_ms(&under_attack, 99) < 250.0, "p99 under attack");
    assert!(under_attack.len() >= 100);

    // client_header_timeout ends them: each gets 408 or is closed.
    std::thread::sleep(Duration::from_secs(4));
    let mut ended = 0;
    for s in slow.iter_mut() {
        s.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            Ok(0) => ended += 1,
            Ok(n) if buf[..n].starts_with(b"HTTP/1.1 408") => ended += 1,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => ended += 1,
            Err(_) => {}
        }
    }
    println!("after client_header_timeout: {} of {} slowloris connections ended by pounce", ended, slow.len());
    assert_eq!(ended, slow.len());
}

#[test]
fn a_head_sent_in_pieces_with_pauses_arrives_whole() {
    // Between the pieces the partial head is moved out of its buffer and back.
    let b = Backend::named("a");
    let p = Pounce::start(&conf("", "", &b.addr()));
    let mut s = connect(p.port);
    for piece in ["GET /pie", "ces?x=1 HTTP/1.1\r\nHo", "st: x\r\nX-Long: ", &"v".repeat(700), "\r\n", "\r\n"] {
        s.write_all(piece.as_bytes()).expect("piece");
        std::thread::sleep(Duration::from_millis(150));
    }
    let r = read_response(&mut BufReader::new(s), false).expect("answer");
    let seen = b.last().expect("the backend got it");
    println!("head in 6 pieces: {} from the backend, which saw {} with X-Long of {} bytes", r.status, seen.path, seen.header("x-long").map_or(0, str::len));
    assert_eq!(r.status, 200);
    assert_eq!(seen.path, "/pieces?x=1");
    assert_eq!(seen.header("x-long").map(str::len), Some(700));
}
