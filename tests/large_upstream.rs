//! An upstream of 1,024 servers (one backend process listening on 1,024 ports): every
//! balancing method spreads requests over all of them, sticky routes find their server
//! among them, retries go elsewhere, and each request carries the right server's answer.

mod support;
use std::io::{BufReader, Write};
use support::many::ManyPorts;
use support::*;

const SERVERS: usize = 1024;

/// An upstream of `servers` (each `127.0.0.1:PORT` and its parameters) plus `lines`.
fn conf(servers: impl Iterator<Item = String>, lines: &[&str]) -> Conf {
    let mut up = Upstream::new("big");
    for s in servers {
        up = up.server(s);
    }
    for l in lines {
        up = up.line(*l);
    }
    Conf::new()
        .events("worker_connections 4096;")
        .http("keepalive_requests 100000;")
        .upstream(up)
        .server(Server::new().location(Location::new("/").proxy_pass("http://big")))
}

/// Every port of `b` with route `tN`; `extra(N)` adds parameters.
fn routed<'a>(b: &'a ManyPorts, extra: impl Fn(usize) -> &'static str + 'a) -> impl Iterator<Item = String> + 'a {
    b.ports.iter().enumerate().map(move |(i, port)| format!("127.0.0.1:{} route=t{} {}", port, i, extra(i)))
}

/// `n` requests on one keep-alive client connection; the port each was answered from.
fn requests(p: &Pounce, n: usize, cookie: impl Fn(usize) -> Option<String>) -> Vec<u16> {
    let mut s = connect(p.port);
    let mut r = BufReader::new(s.try_clone().expect("clone"));
    (0..n)
        .map(|i| {
            let c = cookie(i).map_or(String::new(), |c| format!("Cookie: JSESSIONID={}\r\n", c));
            s.write_all(format!("GET /{} HTTP/1.1\r\nHost: x\r\n{}\r\n", i, c).as_bytes()).expect("send");
            let resp = read_response(&mut r, false).expect("answer");
            assert_eq!(resp.status, 200, "request {}: {}", i, resp.text());
            resp.text().parse().expect("the backend's port")
        })
        .collect()
}

#[test]
fn every_method_spreads_requests_over_all_1024_servers() {
    raise_nofile();
    let b = ManyPorts::start(SERVERS);
    for (method, rounds) in [("round_robin", 2), ("least_conn", 1), ("by_traffic", 1)] {
        let before: Vec<usize> = (0..SERVERS).map(|i| b.hits(i)).collect();
        let p = Pounce::start(&conf(routed(&b, |_| ""), &[&format!("balance {};", method)]));
        let ports = requests(&p, SERVERS * rounds, |_| None);
        let got: Vec<usize> = (0..SERVERS).map(|i| b.hits(i) - before[i]).collect();
        // Sequential requests: every server equally idle, so each takes its turn.
        let uneven: Vec<(usize, usize)> = got.iter().copied().enumerate().filter(|&(_, n)| n != rounds).take(5).collect();
        println!("{}: {} requests over {} servers, uneven: {:?}", method, ports.len(), SERVERS, uneven);
        assert!(uneven.is_empty(), "{}: every server gets {} request(s); these did not: {:?}", method, rounds, uneven);
        for (i, port) in ports.iter().enumerate().step_by(97) {
            assert!(b.ports.contains(port), "request {} answered from {}", i, port);
        }
    }
}

#[test]
fn sticky_routes_find_their_server_among_1024() {
    raise_nofile();
    let b = ManyPorts::start(SERVERS);
    // Server 777 is down: its sessions fail over; every other route reaches its own server.
    let p = Pounce::start(&conf(routed(&b, |i| if i == 777 { "down" } else { "" }), &["sticky_route;"]));
    let targets: Vec<usize> = (0..200).map(|i| (i * 389 + 7) % SERVERS).chain([777, 0, 1023]).collect();
    let ports = requests(&p, targets.len(), |i| Some(format!("ABC{}.t{}", i, targets[i])));
    for (i, &t) in targets.iter().enumerate() {
        if t == 777 {
            assert_ne!(ports[i], b.ports[777], "a down server gets nothing, sticky or not");
            assert!(b.ports.contains(&ports[i]), "the session failed over to a live server");
        } else {
            assert_eq!(ports[i], b.ports[t], "route t{} must reach server {}", t, t);
        }
    }
    let j = p.harness_status().expect("status");
    let servers = j.get("upstreams").arr()[0].get("servers").arr();
    assert_eq!(servers.len(), SERVERS);
    assert_eq!(servers[777].get("failovers").num(), 1.0);
    assert_eq!(servers[1023].get("requests").num(), 1.0);
}

#[test]
fn retries_move_on_among_1024_servers() {
    raise_nofile();
    let b = ManyPorts::start(SERVERS - 8);
    // Eight dead servers first in turn order (nothing listens on their ports), never taken
    // out (max_fails=0): the first request tries each of them once, then a live one.
    let dead: Vec<String> = (0..8).map(|_| format!("127.0.0.1:{} max_fails=0", free_port())).collect();
    let live = b.ports.iter().map(|port| format!("127.0.0.1:{}", port));
    let p = Pounce::start(&conf(dead.into_iter().chain(live), &[]));
    let ports = requests(&p, 64, |_| None);
    assert!(ports.iter().all(|port| b.ports.contains(port)), "every request answered by a live server");
    let err = p.error_log();
    let refused = err.matches("connect() to").count() + err.matches("connect() failed").count();
    println!("64 requests with 8 dead servers among 1,024: {} failed connects", refused);
    assert_eq!(refused, 8, "each dead server tried once, then passed by until its turn comes again: {}", err);
}
