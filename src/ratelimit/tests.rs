//! The checks as a request meets them: several limits on one request, dry runs, limit_conn,
//! and zones kept across a reload.

use super::*;
use crate::config::load_text;
use std::path::Path;

fn conf(http: &str) -> crate::config::Config {
    let text = format!("http {{\n{}\n server {{ listen 127.0.0.1:1; location / {{ return 204; }} }}\n}}\n", http);
    load_text(text.as_bytes(), Path::new("t.conf"), Path::new("/nonexistent")).expect("valid")
}

fn who(ip: &str) -> Who<'static> {
    Who { client: ip.parse().expect("ip"), server_name: "s", request: b"GET / HTTP/1.1", host: None }
}

#[test]
fn burst_then_refusal_and_delays() {
    let c = conf("limit_req_zone $binary_remote_addr zone=a:1m rate=1r/s;\n limit_req zone=a burst=2;");
    let zones = Zones::build(&c.http.limit_zones, None);
    let s = &c.http.servers[0].settings;
    let run = |t: u64| {
        let mut m = Marks::default();
        let v = limit_req(&zones, &c.http, s, &who("10.0.0.1"), t, &mut m);
        (v, m.req)
    };
    assert_eq!(run(0), (Verdict::Go, Some(ReqStatus::Passed)));
    assert_eq!(run(0), (Verdict::Delay(1000), Some(ReqStatus::Delayed)));
    assert_eq!(run(0), (Verdict::Delay(2000), Some(ReqStatus::Delayed)));
    assert_eq!(run(0), (Verdict::Refuse(503), Some(ReqStatus::Rejected)));
    // Another address has its own bucket.
    let mut m = Marks::default();
    assert_eq!(limit_req(&zones, &c.http, s, &who("10.0.0.2"), 0, &mut m), Verdict::Go);
    let v = zones.views(&c.http.limit_zones);
    assert_eq!((v[0].passed, v[0].delayed, v[0].rejected, v[0].used), (2, 2, 1, 2));
}

#[test]
fn several_limits_the_longest_delay_wins_and_a_refusal_unholds() {
    let c = conf(
        "limit_req_zone $binary_remote_addr zone=a:1m rate=1r/s;\n limit_req_zone $server_name zone=b:1m rate=2r/s;\n limit_req zone=a burst=5;\n limit_req zone=b burst=1 nodelay;",
    );
    let zones = Zones::build(&c.http.limit_zones, None);
    let s = &c.http.servers[0].settings;
    let run = |t: u64| {
        let mut m = Marks::default();
        (limit_req(&zones, &c.http, s, &who("10.0.0.1"), t, &mut m), m.req)
    };
    // a is held, b (the last) decides; then a is accounted and delays by its own excess.
    assert_eq!(run(0), (Verdict::Go, Some(ReqStatus::Passed)));
    assert_eq!(run(0), (Verdict::Delay(1000), Some(ReqStatus::Delayed)), "b at 1000 (nodelay), a at 1000: 1 s");
    assert_eq!(run(0), (Verdict::Refuse(503), Some(ReqStatus::Rejected)), "b over its burst: 2000 > 1000");
    // The refused request changed nothing in a (it was only held): a second later a is at
    // 1000 - 1000 + 1000, not 2000.
    assert_eq!(run(1000), (Verdict::Delay(1000), Some(ReqStatus::Delayed)));
}

#[test]
fn dry_run_lets_everything_through_and_says_what_would_have_been() {
    let c = conf("limit_req_zone $binary_remote_addr zone=a:1m rate=1r/m;\n limit_req zone=a;\n limit_req_dry_run on;");
    let zones = Zones::build(&c.http.limit_zones, None);
    let s = &c.http.servers[0].settings;
    let mut m = Marks::default();
    assert_eq!(limit_req(&zones, &c.http, s, &who("10.0.0.1"), 0, &mut m), Verdict::Go);
    let mut m = Marks::default();
    assert_eq!(limit_req(&zones, &c.http, s, &who("10.0.0.1"), 0, &mut m), Verdict::Go);
    assert_eq!(m.req, Some(ReqStatus::RejectedDryRun));
}

#[test]
fn limit_conn_counts_until_the_hold_is_dropped() {
    let c = conf("limit_conn_zone $binary_remote_addr zone=c:1m;\n limit_conn c 1;\n limit_conn_status 429;");
    let zones = Zones::build(&c.http.limit_zones, None);
    let s = &c.http.servers[0].settings;
    let mut first = Vec::new();
    let mut m = Marks::default();
    assert_eq!(limit_conn(&zones, &c.http, s, &who("10.0.0.1"), &mut first, &mut m), Verdict::Go);
    assert_eq!(m.conn, Some(ConnStatus::Passed));
    let (mut second, mut m2) = (Vec::new(), Marks::default());
    assert_eq!(limit_conn(&zones, &c.http, s, &who("10.0.0.1"), &mut second, &mut m2), Verdict::Refuse(429));
    assert_eq!(m2.conn, Some(ConnStatus::Rejected));
    first.clear();
    let mut m3 = Marks::default();
    assert_eq!(limit_conn(&zones, &c.http, s, &who("10.0.0.1"), &mut second, &mut m3), Verdict::Go);
}

#[test]
fn a_reload_keeps_unchanged_zones() {
    let old = conf("limit_req_zone $binary_remote_addr zone=a:1m rate=1r/s;\n limit_conn_zone $binary_remote_addr zone=c:1m;\n limit_req_zone $server_name zone=b:1m rate=1r/s;");
    let new = conf("limit_req_zone $binary_remote_addr zone=a:1m rate=5r/s;\n limit_conn_zone $binary_remote_addr zone=c:2m;\n limit_req_zone $remote_addr zone=b:1m rate=1r/s;");
    let zo = Zones::build(&old.http.limit_zones, None);
    let zn = Zones::build(&new.http.limit_zones, Some((&old.http.limit_zones, &zo)));
    assert!(zn.shares(&zo, 0), "same key and size: kept (a new rate applies to it, as nginx)");
    assert!(!zn.shares(&zo, 1), "another size: a new zone");
    assert!(!zn.shares(&zo, 2), "another key: a new zone");
}
