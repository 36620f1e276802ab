//! `frozen_timeout` must not take out a server that is merely slow or busy with long
//! exchanges: one slow request alone, uploads whose bodies are still coming, and streams a
//! slow client holds are no evidence of a freeze. (A frozen server under load is in
//! tests/under_load.rs, which freezes backend processes.)

mod support;
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use support::*;

fn conf(slow: &Backend, other: &Backend) -> Conf {
    Conf::new()
        .workers(2)
        .upstream(
            Upstream::new("app")
                .server(format!("{} max_fails=1 fail_timeout=10s", slow.addr()))
                .server(format!("{} max_fails=1 fail_timeout=10s", other.addr()))
                .line("frozen_timeout 300ms;"),
        )
        .server(Server::new().location(Location::new("/").proxy_pass("http://app")).location(Location::new("/pounce-status").line("status;")))
}

fn health(p: &Pounce, addr: &str) -> String {
    status::server_in(&status::status_json(p, "/pounce-status"), addr).get("health").str().to_string()
}

#[test]
fn a_slow_request_alone_is_not_a_freeze() {
    let slow = Backend::with("slow", |_| Reply::Delay(Duration::from_millis(1500), Box::new(Reply::ok("late"))));
    let other = Backend::named("other");
    let p = Pounce::start(&conf(&slow, &other));
    // Round robin: of two requests one meets the slow server; it waits 1.5 s, five times
    // frozen_timeout, with nothing else on that server.
    let t = Instant::now();
    let bodies: Vec<String> = (0..2).map(|_| p.get("/report").text()).collect();
    println!("answers {:?} after {:?}", bodies, t.elapsed());
    assert!(bodies.iter().any(|b| b == "late"), "the slow server answered its request: {:?}", bodies);
    assert_eq!(health(&p, &slow.addr()), "up", "{}", p.error_log());
    assert!(!p.error_log().contains("stopped answering"), "{}", p.error_log());
}

#[test]
fn uploads_still_coming_are_not_waiting_on_the_server() {
    let slow = Backend::named("slow");
    let other = Backend::named("other");
    let p = Pounce::start(&conf(&slow, &other));
    // Four uploads that trickle their bodies for 1.5 s: the server has the heads and part of
    // the bodies, and nothing to answer yet.
    let uploads: Vec<_> = (0..4)
        .map(|_| {
            let port = p.port;
            std::thread::spawn(move || {
                let mut s = connect(port);
                let _ = s.write_all(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nConnection: close\r\n\r\n");
                for b in b"abcdef" {
                    std::thread::sleep(Duration::from_millis(250));
                    let _ = s.write_all(&[*b]);
                }
                let mut out = Vec::new();
                let _ = s.read_to_end(&mut out);
                String::from_utf8_lossy(&out).to_string()
            })
        })
        .collect();
    let answers: Vec<String> = uploads.into_iter().map(|h| h.join().unwrap_or_default()).collect();
    for a in &answers {
        assert!(a.starts_with("HTTP/1.1 200"), "{}", a);
    }
    assert_eq!(health(&p, &slow.addr()), "up");
    assert_eq!(health(&p, &other.addr()), "up");
    assert!(!p.error_log().contains("stopped answering"), "{}", p.error_log());
}

#[test]
fn two_requests_unanswered_for_frozen_timeout_take_a_server_out_and_move() {
    // The same rule from the other side: two GETs that get nothing back for frozen_timeout
    // (a backend that never answers) take the server out, and both GETs are answered by the
    // other server long before any read timeout.
    let stuck = Backend::with("stuck", |_| Reply::Hang);
    let other = Backend::named("other");
    let p = Pounce::start(&conf(&stuck, &other).http("proxy_read_timeout 30s;"));
    let t = Instant::now();
    let gets: Vec<_> = (0..4)
        .map(|_| {
            let port = p.port;
            std::thread::spawn(move || request(port, b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
        })
        .collect();
    let answers: Vec<Resp> = gets.into_iter().map(|h| h.join().expect("client")).collect();
    let took = t.elapsed();
    println!("statuses {:?} in {:?}", answers.iter().map(|r| (r.status, r.text())).collect::<Vec<_>>(), took);
    assert!(answers.iter().all(|r| r.status == 200 && r.text() == "other"), "every GET answered by the other server");
    assert!(took < Duration::from_secs(3), "within frozen_timeout and a scan, not the read timeout: {:?}", took);
    let j = status::status_json(&p, "/pounce-status");
    let s = status::server_in(&j, &stuck.addr());
    assert_eq!((s.get("health").str(), s.get("down_reason").str()), ("down", "frozen"));
    assert!(s.get("frozen_times").num() >= 1.0);
    assert!(s.get("retries").num() >= 2.0, "moved requests count as retries");
    let log = p.error_log();
    assert!(log.contains("stopped answering") && log.contains("sent to other servers"), "{}", log);
}
