//! The access log tells the truth (issue 14, point 3): bytes sent are counted for pounce's
//! own answers as nginx counts them; a client that resets before its response has gone to
//! the socket is logged as 499, once, with the bytes that did go — also when the whole
//! response was already in pounce's output buffer; `$upstream_status` and
//! `$upstream_response_time` list every try as `$upstream_addr` does; `log_format` with
//! nginx's variables and `escape=json`; `$uri` normalized, `$request_uri` raw.

mod support;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::os::fd::FromRawFd;
use std::time::Duration;
use support::json::Json;
use support::*;

/// The test's own line: easy to take apart.
const FIELDS: &str = "log_format t '$status $body_bytes_sent $bytes_sent $request_method $request_uri';";

/// The access-log lines whose request URI is `uri`, split into their fields.
fn lines_for(p: &Pounce, uri: &str) -> Vec<Vec<String>> {
    p.access_log().lines().map(|l| l.split(' ').map(String::from).collect::<Vec<_>>()).filter(|f| f.get(4).is_some_and(|u| u == uri)).collect()
}

/// Waits for exactly one line for `uri` (lines are flushed at the end of a loop pass).
fn one_line(p: &Pounce, uri: &str) -> Vec<String> {
    eventually(Duration::from_secs(5), || !lines_for(p, uri).is_empty());
    // Nothing more may come for it.
    std::thread::sleep(Duration::from_millis(100));
    let lines = lines_for(p, uri);
    assert_eq!(lines.len(), 1, "one line for {}: {:?}\n{}", uri, lines, p.access_log());
    lines.into_iter().next().unwrap_or_default()
}

fn num(f: &[String], i: usize) -> u64 {
    f[i].parse().unwrap_or_else(|_| panic!("field {} of {:?} is not a number", i, f))
}

/// Sends `raw` and returns the response and every byte received.
fn exchange(port: u16, raw: &[u8]) -> (Resp, usize) {
    let r = request(port, raw);
    let total = r.raw_head.len() + r.body.len();
    (r, total)
}

#[test]
fn own_answers_count_their_bytes() {
    let dir = TempDir::new("files");
    std::fs::write(dir.0.join("f.txt"), vec![b'z'; 12_345]).expect("file");
    let conf = Conf::new().http(FIELDS).http("access_log logs/access.log t;").server(
        Server::new()
            .location(Location::exact("/hello").line("return 200 \"hello\\n\";"))
            .location(Location::new("/files/").line(format!("alias {}/;", dir.0.display())))
            .location(Location::exact("/st").line("status;")),
    );
    let p = Pounce::start(&conf);

    let (r, total) = exchange(p.port, b"GET /hello HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert_eq!(r.text(), "hello\n");
    let f = one_line(&p, "/hello");
    assert_eq!((f[0].as_str(), num(&f, 1), num(&f, 2)), ("200", 6, total as u64), "return 200 \"hello\\n\" sends 6 body bytes");

    let (r, total) = exchange(p.port, b"GET /nothing-here HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 404);
    let f = one_line(&p, "/nothing-here");
    assert_eq!((num(&f, 1), num(&f, 2)), (r.body.len() as u64, total as u64), "an error page counts its body");
    assert!(r.body.len() > 100);

    let (r, total) = exchange(p.port, b"HEAD /hello HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200);
    let heads = || lines_for(&p, "/hello").into_iter().filter(|f| f[3] == "HEAD").collect::<Vec<_>>();
    eventually(Duration::from_secs(5), || !heads().is_empty());
    let head_lines = heads();
    assert_eq!(head_lines.len(), 1);
    assert_eq!((num(&head_lines[0], 1), num(&head_lines[0], 2)), (0, total as u64), "HEAD: no body bytes");

    let (r, total) = exchange(p.port, b"GET /files/f.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert_eq!(r.body.len(), 12_345);
    let f = one_line(&p, "/files/f.txt");
    assert_eq!((num(&f, 1), num(&f, 2)), (12_345, total as u64), "a static file counts what sendfile sent");

    let (r, total) = exchange(p.port, b"GET /st?format=json HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200);
    let f = one_line(&p, "/st?format=json");
    assert_eq!((num(&f, 1), num(&f, 2)), (r.body.len() as u64, total as u64), "the status page counts its body");

    // A request pounce refuses before it is parsed: the line is logged, HEAD gets no body.
    let mut s = connect(p.port);
    s.write_all(b"HEAD /bad\x01 HTTP/1.1\r\nHost: a\r\n\r\n").expect("send");
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got).to_string();
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
    assert!(text.ends_with("\r\n\r\n"), "an error answer to HEAD has no body: {text:?}");
}

/// A client socket that advertises a tiny receive window, so pounce's writes to it block
/// after a few kilobytes.
fn tiny_window_client(port: u16) -> TcpStream {
    // SAFETY: plain socket calls on a descriptor we own; it is handed to TcpStream at once.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0, "socket");
        let small: libc::c_int = 2048;
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, (&small as *const libc::c_int).cast(), std::mem::size_of::<libc::c_int>() as u32);
        let s = TcpStream::from_raw_fd(fd);
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be() },
            sin_zero: [0; 8],
        };
        let r = libc::connect(fd, (&addr as *const libc::sockaddr_in).cast(), std::mem::size_of::<libc::sockaddr_in>() as u32);
        assert_eq!(r, 0, "connect: {}", std::io::Error::last_os_error());
        s
    }
}

/// Asks for a body of `size` bytes without reading any of it, lets pounce write what the
/// socket takes, then resets. Returns the line's status and bytes sent.
fn reset_after(p: &Pounce, size: usize) -> (String, u64) {
    let uri = format!("/size/{}", size);
    let s = tiny_window_client(p.port);
    (&s).write_all(format!("GET {} HTTP/1.1\r\nHost: a\r\n\r\n", uri).as_bytes()).expect("send");
    // Until pounce's writes block: its socket's send queue stops growing.
    let me = s.local_addr().expect("addr").port();
    let queued = || support::netstat::tcp_sockets().iter().find(|t| t.local_port == p.port && t.remote_port == me).map_or(0, |t| t.tx_queue);
    let (mut last, mut same) = (0, 0);
    eventually(Duration::from_secs(5), || {
        std::thread::sleep(Duration::from_millis(50));
        let q = queued();
        same = if q == last && q > 0 { same + 1 } else { 0 };
        last = q;
        same >= 4
    });
    reset(&s);
    drop(s);
    let f = one_line(p, &uri);
    (f[0].clone(), num(&f, 2))
}

#[test]
fn a_client_that_resets_before_its_response_is_out_is_logged_499() {
    let b = Backend::with("big", |r| {
        let n: usize = r.path.rsplit('/').next().and_then(|n| n.parse().ok()).unwrap_or(0);
        Reply::ok(vec![b'x'; n])
    });
    let conf = Conf::new()
        .http(FIELDS)
        .http("access_log logs/access.log t;")
        .server(Server::new().location(Location::new("/").proxy_pass(format!("http://{}", b.addr()))));
    let p = Pounce::start(&conf);

    // Streaming when the client resets: 499, with what reached the socket.
    let (status, taken) = reset_after(&p, 4_000_000);
    assert_eq!(status, "499", "reset while streaming");
    assert!(taken > 0 && taken < 4_000_000, "bytes sent: {}", taken);

    // The whole response fits in the socket (`taken`) and pounce's output buffer (16 KiB):
    // the exchange is complete, its last 8 KB still in the buffer when the client resets.
    // That too is a response the client did not get: 499, logged once.
    for extra in [4_000, 8_000] {
        let (status, sent) = reset_after(&p, taken as usize + extra);
        eprintln!("socket took {} bytes, response {} more: {} with {} bytes sent", taken, extra, status, sent);
        assert_eq!(status, "499", "complete in pounce's buffer, not sent, client reset");
        assert!(sent < taken + extra as u64);
    }

    // A client that reads everything: 200 and every byte.
    let (r, total) = exchange(p.port, b"GET /size/100000 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert_eq!(r.body.len(), 100_000);
    let f = one_line(&p, "/size/100000");
    assert_eq!((f[0].as_str(), num(&f, 1), num(&f, 2)), ("200", 100_000, total as u64));
}

#[test]
fn upstream_fields_list_every_try() {
    let dead = free_port();
    let busy = Backend::with("busy", |_| Reply::status(503, "busy"));
    let good = Backend::named("good");
    let conf = Conf::new()
        .http("access_log logs/access.log;")
        .upstream(Upstream::new("u").server(format!("127.0.0.1:{}", dead)).server(busy.addr()).server(good.addr()))
        .server(Server::new().location(Location::new("/").proxy_pass("http://u").line("proxy_next_upstream error timeout http_503;")));
    let p = Pounce::start(&conf);
    let r = p.get("/tries");
    assert_eq!((r.status, r.text().as_str()), (200, "good"));
    eventually(Duration::from_secs(5), || p.access_log().contains("/tries"));
    let line = p.access_log().lines().find(|l| l.contains("/tries")).unwrap_or_default().to_string();
    // The default format, as before: combined, then the upstream fields.
    let want_addr = format!("upstream_addr=127.0.0.1:{}, {}, {} ", dead, busy.addr(), good.addr());
    assert!(line.contains(&want_addr), "{line}");
    assert!(line.contains(" upstream_status=502, 503, 200 "), "{line}");
    let times = line.split(" upstream_response_time=").nth(1).unwrap_or("");
    let times: Vec<&str> = times.split(", ").collect();
    assert_eq!(times.len(), 3, "{line}");
    assert!(times.iter().all(|t| t.len() >= 5 && t.as_bytes()[t.len() - 4] == b'.'), "{line}");
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(line.contains("] \"GET /tries HTTP/1.1\" 200 4 \"-\" \"-\" upstream_addr="), "{line}");
}

#[test]
fn json_format_and_nginx_variables() {
    let b = Backend::named("app");
    let conf = Conf::new()
        .http(
            "log_format j escape=json '{\"status\":$status,\"uri\":\"$uri\",\"request_uri\":\"$request_uri\",\"args\":\"$args\",\"is_args\":\"$is_args\",'
               '\"method\":\"$request_method\",\"host\":\"$host\",\"ua\":\"$http_user_agent\",\"trace\":\"$http_x_trace_id\",\"missing\":\"$http_x_none\",'
               '\"addr\":\"$remote_addr\",\"port\":\"$server_port\",\"proto\":\"$server_protocol\",\"conn\":\"$connection\",\"reqs\":\"$connection_requests\",'
               '\"time\":\"$time_iso8601\",\"msec\":$msec,\"rt\":$request_time,\"up\":\"$upstream_addr\",\"ups\":\"$upstream_status\",\"pid\":$pid,\"bytes\":$body_bytes_sent}';",
        )
        .http("access_log logs/access.log j;")
        .server(
            Server::new()
                .name("front.example")
                .location(Location::new("/app/").proxy_pass(format!("http://{}", b.addr())).line("proxy_set_header X-Uri $uri;"))
                .location(Location::new("/").line("return 200 ok;")),
        );
    let p = Pounce::start(&conf);
    let mut s = connect(p.port);
    s.write_all(b"GET /app/a/%62/../c;v=1?x=1&y=%22 HTTP/1.1\r\nHost: Front.Example:8080\r\nUser-Agent: t\"\\\xc3\xa9\r\nX-Trace-Id: abc\r\n\r\n")
        .expect("send");
    s.write_all(b"GET / HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n").expect("send");
    let mut r = BufReader::new(s);
    let first = read_response(&mut r, false).expect("first");
    let second = read_response(&mut r, false).expect("second");
    assert_eq!((first.status, second.status), (200, 200));
    assert_eq!(b.last().and_then(|q| q.header("x-uri").map(String::from)).as_deref(), Some("/app/a/c"), "$uri is the normalized path");
    eventually(Duration::from_secs(5), || p.access_log().lines().count() >= 2);
    let lines: Vec<Json> = p.access_log().lines().map(|l| Json::parse(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let a = &lines[0];
    let str_of = |j: &Json, k: &str| match j.get(k) {
        Json::Str(v) => v.clone(),
        other => panic!("{k} is {other:?} in {j:?}"),
    };
    assert_eq!(a.get("status").num(), 200.0);
    assert_eq!(str_of(a, "uri"), "/app/a/c");
    assert_eq!(str_of(a, "request_uri"), "/app/a/%62/../c;v=1?x=1&y=%22");
    assert_eq!(str_of(a, "args"), "x=1&y=%22");
    assert_eq!(str_of(a, "is_args"), "?");
    assert_eq!(str_of(a, "method"), "GET");
    assert_eq!(str_of(a, "host"), "front.example");
    assert_eq!(str_of(a, "ua"), "t\"\\\u{e9}", "quotes and backslashes escaped, UTF-8 as it is");
    assert_eq!(str_of(a, "trace"), "abc");
    assert_eq!(str_of(a, "missing"), "", "a missing value is empty in JSON");
    assert_eq!(str_of(a, "addr"), "127.0.0.1");
    assert_eq!(str_of(a, "port"), p.port.to_string());
    assert_eq!(str_of(a, "proto"), "HTTP/1.1");
    assert_eq!(str_of(a, "reqs"), "1");
    assert_eq!(str_of(a, "up"), b.addr());
    assert_eq!(str_of(a, "ups"), "200");
    assert_eq!(a.get("bytes").num(), 3.0);
    assert!(str_of(a, "time").ends_with("+00:00") && str_of(a, "time").contains('T'));
    assert!(a.get("msec").num() > 1.7e9);
    assert!(a.get("rt").num() >= 0.0);
    assert_eq!(a.get("pid").num() as u32, p.child.id());
    let b2 = &lines[1];
    assert_eq!(str_of(b2, "reqs"), "2", "the second request on the connection");
    assert_eq!(str_of(b2, "conn"), str_of(a, "conn"), "the same connection");
    assert_eq!(str_of(b2, "args"), "", "no query");
    assert_eq!(str_of(b2, "is_args"), "");
    assert_eq!(str_of(b2, "up"), "", "not proxied");
    assert_eq!(b2.get("bytes").num(), 2.0);
    // Another connection, another number.
    let _ = p.get("/again");
    eventually(Duration::from_secs(5), || p.access_log().lines().count() >= 3);
    let third = Json::parse(p.access_log().lines().nth(2).unwrap_or("")).expect("json");
    assert_ne!(str_of(&third, "conn"), str_of(a, "conn"));
}
