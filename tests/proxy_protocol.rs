//! PROXY protocol and real client addresses (issue 17, point 2 and its part of point 4):
//! clients relayed with PROXY protocol headers, versions 1 and 2, IPv4 and IPv6, are seen with
//! their own address by HTTP and AJP backends and in the access log; a header in pieces is
//! waited for; a missing, malformed, truncated or late header closes only that connection,
//! with an error-log line; the header comes before a TLS handshake; realip from
//! X-Forwarded-For (recursive or not) believes trusted peers only; allow/deny judge the real
//! address; and real HAProxy in TCP mode (`send-proxy`, `send-proxy-v2`) in front works as the
//! README's scale-out example says.

mod support;
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use support::ajp::AjpBackend;
use support::conf::{Conf, Location, Server, Upstream};
use support::tls::{tls_client, Key, Pki};
use support::*;

/// The test's access-log line: the addresses, then the request.
const FORMAT: &str = "log_format pp '$remote_addr $remote_port $realip_remote_addr $proxy_protocol_addr $proxy_protocol_port \"$request\" $status';";

fn v1(src: &str, dst: &str) -> Vec<u8> {
    let (s, d): (SocketAddr, SocketAddr) = (src.parse().expect("src"), dst.parse().expect("dst"));
    let fam = if s.is_ipv4() { "TCP4" } else { "TCP6" };
    format!("PROXY {} {} {} {} {}\r\n", fam, s.ip(), d.ip(), s.port(), d.port()).into_bytes()
}

fn v2(src: &str, dst: &str) -> Vec<u8> {
    let (s, d): (SocketAddr, SocketAddr) = (src.parse().expect("src"), dst.parse().expect("dst"));
    let mut body = Vec::new();
    let fam = match (s, d) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            body.extend(s.ip().octets());
            body.extend(d.ip().octets());
            0x11
        }
        (SocketAddr::V6(s), SocketAddr::V6(d)) => {
            body.extend(s.ip().octets());
            body.extend(d.ip().octets());
            0x21
        }
        _ => panic!("one family"),
    };
    body.extend(s.port().to_be_bytes());
    body.extend(d.port().to_be_bytes());
    // A TLV (NOOP) such as balancers add: skipped.
    body.extend([0x04, 0, 3, 0, 0, 0]);
    v2_raw(0x21, fam, &body)
}

fn v2_raw(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend([ver_cmd, fam]);
    h.extend((body.len() as u16).to_be_bytes());
    h.extend(body);
    h
}

const GET: &[u8] = b"GET /who HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";

/// `header` then `request` on a new connection, in one write; the response.
fn via(port: u16, header: &[u8], request: &[u8]) -> Resp {
    let mut s = connect(port);
    s.write_all(&[header, request].concat()).expect("send");
    read_response(&mut BufReader::new(s), false).expect("response")
}

/// The connection is closed without an answer (EOF or reset), within a few seconds.
fn refused(mut s: TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

/// Access-log lines for `/who` and `/admin` requests, split into fields.
fn log_lines(p: &Pounce) -> Vec<Vec<String>> {
    p.access_log().lines().map(|l| l.split(' ').map(String::from).collect()).collect()
}

/// pounce on a `proxy_protocol` port that trusts 127.0.0.1's headers, before `backend`.
/// `server_extra`: lines for the tested server only (the harness's own server, whose status page
/// the harness polls from 127.0.0.1, must not inherit them from `http`).
fn pp_conf(scheme: &str, backend: &str, server_extra: &str) -> Conf {
    Conf::new().http(FORMAT).http("access_log logs/access.log pp;").upstream(Upstream::new("app").server(backend).line("keepalive off;")).server(
        Server::new()
            .listen("127.0.0.1:{port} proxy_protocol")
            .line("set_real_ip_from 127.0.0.1; real_ip_header proxy_protocol;")
            .line(server_extra)
            .location(Location::new("/").proxy_pass(format!("{scheme}://app")))
            .location(Location::new("/admin/").line("allow 203.0.113.0/24; deny all; return 200 \"admin\\n\";")),
    )
}

#[test]
fn v1_and_v2_clients_ipv4_and_ipv6_reach_the_backend_and_the_log_with_their_address() {
    let b = Backend::named("app");
    let p = Pounce::start(&pp_conf("http", &b.addr(), ""));
    let cases = [
        (v1("203.0.113.7:51000", "192.0.2.1:443"), "203.0.113.7", "51000"),
        (v1("[2001:db8::7]:51001", "[2001:db8::1]:443"), "2001:db8::7", "51001"),
        (v2("198.51.100.9:40000", "192.0.2.1:80"), "198.51.100.9", "40000"),
        (v2("[2001:db8:1::9]:40001", "[2001:db8::1]:80"), "2001:db8:1::9", "40001"),
    ];
    for (header, ip, port) in &cases {
        let r = via(p.port, header, GET);
        assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(header));
        let seen = b.last().expect("the request reached the backend");
        assert_eq!(seen.header("x-real-ip"), Some(*ip));
        assert_eq!(seen.header("x-forwarded-for"), Some(*ip));
        assert!(eventually(Duration::from_secs(5), || log_lines(&p).iter().any(|f| f[0] == *ip)), "access log:\n{}", p.access_log());
        let line = log_lines(&p).into_iter().find(|f| f[0] == *ip).unwrap_or_default();
        // $remote_addr $remote_port $realip_remote_addr $proxy_protocol_addr $proxy_protocol_port
        assert_eq!(&line[..5], &[ip.to_string(), port.to_string(), "127.0.0.1".into(), ip.to_string(), port.to_string()], "{:?}", line);
    }
    // Keep-alive: every request of the connection is the relayed client's.
    let mut s = connect(p.port);
    s.write_all(&v2("192.0.2.55:7000", "192.0.2.1:80")).expect("header");
    let mut r = BufReader::new(s.try_clone().expect("clone"));
    for _ in 0..3 {
        s.write_all(b"GET /who HTTP/1.1\r\nHost: a\r\n\r\n").expect("request");
        assert_eq!(read_response(&mut r, false).expect("response").status, 200);
        assert_eq!(b.last().expect("request").header("x-real-ip"), Some("192.0.2.55"));
    }
}

#[test]
fn ajp_backend_gets_the_relayed_remote_addr() {
    let b = AjpBackend::echo("t");
    let p = Pounce::start(&pp_conf("ajp", &b.addr(), ""));
    assert_eq!(via(p.port, &v2("203.0.113.70:4711", "192.0.2.1:80"), GET).status, 200);
    let seen = b.last().expect("forwarded");
    assert_eq!(seen.remote_addr, "203.0.113.70");
    assert!(seen.req_attrs.iter().any(|(k, v)| k == "AJP_REMOTE_PORT" && v == "4711"), "{:?}", seen.req_attrs);
    assert_eq!(via(p.port, &v1("[2001:db8::70]:4712", "[2001:db8::1]:80"), GET).status, 200);
    assert_eq!(b.last().expect("forwarded").remote_addr, "2001:db8::70");
}

#[test]
fn a_header_in_pieces_is_waited_for() {
    let b = Backend::named("app");
    let p = Pounce::start(&pp_conf("http", &b.addr(), ""));
    for (header, ip) in [(v1("203.0.113.8:1234", "192.0.2.1:80"), "203.0.113.8"), (v2("[2001:db8::8]:1234", "[2001:db8::1]:80"), "2001:db8::8")] {
        let mut s = connect(p.port);
        // Byte by byte, then the rest of the header with the request in one write.
        let (head, tail) = header.split_at(header.len() - 3);
        for byte in head {
            s.write_all(&[*byte]).expect("byte");
            std::thread::sleep(Duration::from_millis(3));
        }
        s.write_all(&[tail, GET].concat()).expect("tail");
        let r = read_response(&mut BufReader::new(s), false).expect("response");
        assert_eq!(r.status, 200);
        assert_eq!(b.last().expect("request").header("x-real-ip"), Some(ip));
    }
}

#[test]
fn missing_malformed_truncated_or_late_headers_close_that_connection_only() {
    let b = Backend::named("app");
    let conf = pp_conf("http", &b.addr(), "").http("proxy_protocol_timeout 1s;");
    let p = Pounce::start(&conf);
    // A silent client, held open while the others come and go.
    let silent = connect(p.port);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("missing", GET.to_vec(), "broken PROXY protocol header: not a PROXY protocol header: \"GET /who HTTP/1.1\""),
        ("LF only", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n".to_vec(), "broken PROXY protocol header: a line ended by LF alone"),
        ("leading zero", b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n".to_vec(), "broken PROXY protocol header: malformed version 1 header"),
        ("no CRLF", [&b"PROXY UNKNOWN "[..], &[b'x'; 120]].concat(), "no CRLF within the first 107 bytes"),
        ("v2 version 3", v2_raw(0x31, 0x11, &[0; 12]), "broken PROXY protocol header: unsupported version"),
        ("v2 too long", v2_raw(0x21, 0x11, &[0; 600]), "version 2 header longer than 536 bytes"),
        ("v2 short block", v2_raw(0x21, 0x21, &[0; 12]), "address block shorter than its family needs"),
    ];
    for (what, bytes, logged) in &cases {
        let mut s = connect(p.port);
        let _ = s.write_all(bytes);
        assert!(refused(s), "{}: answered", what);
        assert!(eventually(Duration::from_secs(5), || p.error_log().contains(logged)), "{}: no \"{}\" in\n{}", what, logged, p.error_log_tail(10));
        // A good client is served meanwhile.
        assert_eq!(via(p.port, &v1("203.0.113.1:1", "192.0.2.1:80"), GET).status, 200, "after {}", what);
    }
    // Truncated: part of a header, then the client closes its side.
    for part in [&v1("203.0.113.2:2", "192.0.2.1:80")[..20], &v2("203.0.113.2:2", "192.0.2.1:80")[..20]] {
        let mut s = connect(p.port);
        s.write_all(part).expect("part");
        s.shutdown(std::net::Shutdown::Write).expect("shutdown");
        assert!(refused(s), "truncated: answered");
    }
    assert!(eventually(Duration::from_secs(5), || p.error_log().matches("truncated PROXY protocol header: the connection closed after 20 bytes").count() == 2));
    // The silent one is closed by proxy_protocol_timeout, logged.
    assert!(refused(silent), "the silent client was answered");
    assert!(eventually(Duration::from_secs(5), || p.error_log().contains("no complete PROXY protocol header within proxy_protocol_timeout")));
    // Each error line names the peer.
    for l in p.error_log().lines().filter(|l| l.contains("PROXY protocol header")) {
        assert!(l.contains("client 127.0.0.1:"), "{}", l);
    }
    // Not one of them reached the backend or the access log.
    assert!(b.seen.lock().expect("seen").iter().all(|r| r.header("x-real-ip") == Some("203.0.113.1")));
    assert!(log_lines(&p).iter().all(|f| f[0] == "203.0.113.1"), "{}", p.access_log());
}

#[test]
fn unknown_and_local_headers_keep_the_connections_address() {
    let b = Backend::named("app");
    let p = Pounce::start(&pp_conf("http", &b.addr(), ""));
    for header in [b"PROXY UNKNOWN\r\n".to_vec(), v2_raw(0x20, 0x00, &[]), v2_raw(0x21, 0x31, &[0; 216])] {
        assert_eq!(via(p.port, &header, GET).status, 200);
        assert_eq!(b.last().expect("request").header("x-real-ip"), Some("127.0.0.1"));
    }
    // A client connecting without a header is no less refused for that.
    let mut s = connect(p.port);
    s.write_all(GET).expect("send");
    assert!(refused(s));
}

#[test]
fn the_header_comes_before_the_tls_handshake() {
    let dir = TempDir::new("pki");
    let pki = Pki::new(&dir.0);
    let (cert, key) = pki.server("localhost", "localhost", Key::Ec);
    let b = Backend::named("tls");
    let conf = Conf::new().upstream(Upstream::new("app").server(b.addr())).server(
        Server::new()
            .listen("127.0.0.1:{port} ssl proxy_protocol")
            .line(format!("ssl_certificate {}; ssl_certificate_key {};", cert.display(), key.display()))
            .line("set_real_ip_from 127.0.0.1; real_ip_header proxy_protocol;")
            .location(Location::new("/").proxy_pass("http://app")),
    );
    let p = Pounce::start(&conf);
    let ca = pki.ca();
    let hex = |h: Vec<u8>| h.iter().map(|b| format!("{:02x}", b)).collect::<String>();
    for (header, ip) in [(v1("203.0.113.9:5555", "192.0.2.1:443"), "203.0.113.9"), (v2("[2001:db8::9]:5555", "[2001:db8::1]:443"), "2001:db8::9")] {
        let r = tls_client(p.port, &["--ca", ca.to_str().expect("path"), "--proxy-header", &hex(header)]);
        assert!(r.ok(), "{}", r.error());
        assert_eq!(r.status(), 200);
        let seen = b.last().expect("request");
        assert_eq!((seen.header("x-real-ip"), seen.header("x-forwarded-proto")), (Some(ip), Some("https")));
    }
    // A TLS client without the header: its ClientHello is not a PROXY header.
    let r = tls_client(p.port, &["--ca", ca.to_str().expect("path")]);
    assert!(!r.ok(), "a handshake without the header succeeded");
    assert!(eventually(Duration::from_secs(5), || p.error_log().contains("not a PROXY protocol header: \"16 03")), "{}", p.error_log_tail(5));
}

/// pounce behind proxies that say who the client is in X-Forwarded-For. The realip lines are
/// the locations' own: with them at server level the server's `real_ip_recursive` would decide
/// for every location (nginx applies the server's settings first, a location's only when those
/// found nothing).
fn xff_conf(backend: &str, from: &str) -> Conf {
    let realip = format!("set_real_ip_from {from}; set_real_ip_from 10.0.0.0/8; real_ip_header X-Forwarded-For;");
    Conf::new().http(FORMAT).http("access_log logs/access.log pp;").upstream(Upstream::new("app").server(backend).line("keepalive off;")).server(
        Server::new()
            .location(Location::new("/").line(&realip).proxy_pass("http://app"))
            .location(Location::new("/deep/").line(&realip).line("real_ip_recursive on;").proxy_pass("http://app"))
            .location(Location::new("/admin/").line(&realip).line("allow 203.0.113.0/24; deny all; return 200 \"admin\\n\";")),
    )
}

fn get_xff(port: u16, path: &str, xff: &str) -> Resp {
    request(port, format!("GET {path} HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: {xff}\r\nConnection: close\r\n\r\n").as_bytes())
}

#[test]
fn x_forwarded_for_from_trusted_peers_recursive_or_not() {
    let b = Backend::named("app");
    let p = Pounce::start(&xff_conf(&b.addr(), "127.0.0.1"));
    let chain = "203.0.113.9, 198.51.100.2, 10.1.1.1";
    // Off: the last address is the client.
    assert_eq!(get_xff(p.port, "/who", chain).status, 200);
    let seen = b.last().expect("request");
    assert_eq!(seen.header("x-real-ip"), Some("10.1.1.1"));
    // X-Forwarded-For goes on with the address found appended (nginx's $proxy_add_x_forwarded_for).
    assert_eq!(seen.header("x-forwarded-for"), Some("203.0.113.9, 198.51.100.2, 10.1.1.1, 10.1.1.1"));
    // On: back past every trusted proxy, to the first address no set_real_ip_from covers.
    assert_eq!(get_xff(p.port, "/deep/who", chain).status, 200);
    assert_eq!(b.last().expect("request").header("x-real-ip"), Some("198.51.100.2"));
    assert!(
        eventually(Duration::from_secs(5), || log_lines(&p).iter().any(|f| f[0] == "198.51.100.2" && f[2] == "127.0.0.1" && f[3] == "-")),
        "{}",
        p.access_log()
    );
    // Garbage is no address: the peer stays the client.
    assert_eq!(get_xff(p.port, "/who", "unknown").status, 200);
    assert_eq!(b.last().expect("request").header("x-real-ip"), Some("127.0.0.1"));
}

#[test]
fn a_spoofed_x_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let b = Backend::named("app");
    // Only 127.0.0.1 is trusted; 127.0.0.2 is another client.
    let p = Pounce::start(&xff_conf(&b.addr(), "127.0.0.1"));
    let mut s = connect_from([127, 0, 0, 2].into(), p.port);
    s.write_all(b"GET /deep/who HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.66\r\nX-Real-IP: 203.0.113.66\r\nConnection: close\r\n\r\n").expect("send");
    assert_eq!(read_response(&mut BufReader::new(s), false).expect("response").status, 200);
    let seen = b.last().expect("request");
    assert_eq!(seen.header("x-real-ip"), Some("127.0.0.2"), "the claim of an untrusted peer was believed");
    assert_eq!(seen.header("x-forwarded-for"), Some("203.0.113.66, 127.0.0.2"), "its claim is passed on, with its own address last");
    // Nor does its claim open an allow rule.
    let mut s = connect_from([127, 0, 0, 2].into(), p.port);
    s.write_all(b"GET /admin/ HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.66\r\nConnection: close\r\n\r\n").expect("send");
    assert_eq!(read_response(&mut BufReader::new(s), false).expect("response").status, 403);
    assert!(
        eventually(Duration::from_secs(5), || log_lines(&p).iter().any(|f| f[0] == "127.0.0.2" && f.last().is_some_and(|s| s == "403"))),
        "{}",
        p.access_log()
    );
    assert!(p.error_log().contains("access forbidden by rule, client: 127.0.0.2"), "{}", p.error_log_tail(5));
}

#[test]
fn allow_and_deny_judge_the_real_address() {
    let b = Backend::named("app");
    let p = Pounce::start(&pp_conf("http", &b.addr(), ""));
    let r = via(p.port, &v1("203.0.113.77:1", "192.0.2.1:80"), b"GET /admin/ HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, "admin\n"));
    let r = via(p.port, &v2("198.51.100.77:1", "192.0.2.1:80"), b"GET /admin/ HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 403);
    assert!(eventually(Duration::from_secs(5), || p.error_log().contains("access forbidden by rule, client: 198.51.100.77:1")), "{}", p.error_log_tail(5));
    // X-Forwarded-For: the trusted proxy's word opens it, as it would for nginx.
    let p2 = Pounce::start(&xff_conf(&b.addr(), "127.0.0.1"));
    assert_eq!(get_xff(p2.port, "/admin/", "203.0.113.5").status, 200);
    assert_eq!(get_xff(p2.port, "/admin/", "198.51.100.5").status, 403);
}

/// HAProxy in TCP mode in front of pounce, as in the README's scale-out example.
#[test]
fn haproxy_in_tcp_mode_sends_proxy_v1_and_v2() {
    let present = std::process::Command::new("haproxy").arg("-v").output().is_ok_and(|o| o.status.success());
    if !support::require::require("haproxy", present, "apt-get install haproxy") {
        return;
    }
    let b = Backend::named("app");
    let p = Pounce::start(&pp_conf("http", &b.addr(), ""));
    let dir = TempDir::new("haproxy");
    let (v2_port, v1_port, v6_port) = (free_port(), free_port(), free_port());
    let cfg = format!(
        "global\n  maxconn 100\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
         frontend v2\n  bind 127.0.0.1:{v2_port}\n  bind [::1]:{v6_port}\n  default_backend pounce_v2\n\
         frontend v1\n  bind 127.0.0.1:{v1_port}\n  default_backend pounce_v1\n\
         backend pounce_v2\n  server p1 127.0.0.1:{port} send-proxy-v2 check\n\
         backend pounce_v1\n  server p1 127.0.0.1:{port} send-proxy\n",
        port = p.port
    );
    let path = dir.0.join("haproxy.cfg");
    std::fs::write(&path, cfg).expect("haproxy.cfg");
    let mut h = std::process::Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("haproxy");
    let up = eventually(Duration::from_secs(10), || [v2_port, v1_port].iter().all(|port| TcpStream::connect(("127.0.0.1", *port)).is_ok()));
    let check = |port: u16, from: std::net::Ipv4Addr| {
        let mut s = connect_from(from, port);
        s.write_all(GET).expect("send");
        read_response(&mut BufReader::new(s), false).map(|r| r.status)
    };
    let v2_seen = up.then(|| check(v2_port, [127, 0, 0, 3].into()));
    let v2_addr = b.last().and_then(|r| r.header("x-real-ip").map(String::from));
    let v1_seen = up.then(|| check(v1_port, [127, 0, 0, 4].into()));
    let v1_addr = b.last().and_then(|r| r.header("x-real-ip").map(String::from));
    let v6_seen = up.then(|| {
        let mut s = TcpStream::connect(("::1", v6_port)).expect("connect [::1]");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        s.write_all(GET).expect("send");
        read_response(&mut BufReader::new(s), false).map(|r| r.status)
    });
    let v6_addr = b.last().and_then(|r| r.header("x-real-ip").map(String::from));
    let _ = h.kill();
    let out = h.wait_with_output().map(|o| String::from_utf8_lossy(&o.stderr).to_string()).unwrap_or_default();
    assert!(up, "haproxy did not start: {}", out);
    assert_eq!((v2_seen.and_then(Result::ok), v2_addr.as_deref()), (Some(200), Some("127.0.0.3")), "send-proxy-v2: {}", out);
    assert_eq!((v1_seen.and_then(Result::ok), v1_addr.as_deref()), (Some(200), Some("127.0.0.4")), "send-proxy: {}", out);
    assert_eq!((v6_seen.and_then(Result::ok), v6_addr.as_deref()), (Some(200), Some("::1")), "IPv6 through send-proxy-v2: {}", out);
    // HAProxy's health checks (with send-proxy-v2: a LOCAL header, then a close) are not errors.
    assert!(!p.error_log().contains("broken PROXY protocol header"), "{}", p.error_log_tail(10));
}

/// `limit_req` keys on the address realip took from the PROXY header: two clients relayed by
/// the same balancer have a bucket each, and one's refusals do not touch the other.
#[test]
fn limits_count_each_relayed_client_apart() {
    let b = Backend::named("b");
    let conf = pp_conf("http", &b.addr(), "limit_req zone=one; limit_req_status 429;").http("limit_req_zone $binary_remote_addr zone=one:1m rate=1r/m;");
    let p = Pounce::start(&conf);
    let front = format!("127.0.0.1:{}", p.port);
    let statuses = |client: &str| -> Vec<u16> { (0..2).map(|_| via(p.port, &v1(client, &front), GET).status).collect() };
    assert_eq!(statuses("198.51.100.7:40000"), vec![200, 429], "the first client's second request is over its rate");
    assert_eq!(statuses("198.51.100.8:40000"), vec![200, 429], "another relayed client has its own bucket");
    // An IPv6 client relayed in a version 2 header: its own bucket too.
    assert_eq!(via(p.port, &v2("[2001:db8::9]:40000", &format!("[::1]:{}", p.port)), GET).status, 200);
    let log = p.access_log();
    assert!(log.lines().any(|l| l.starts_with("198.51.100.8 ") && l.ends_with(" 429")), "{}", log);
}
