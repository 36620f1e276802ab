//! Request smuggling and parsing: a table of malformed and ambiguous requests, each with the
//! answer a client must see. Behind pounce sits a strict backend that records every request
//! it receives and flags any head that a lenient parser could read differently (bare LF,
//! folded lines, two framings, a coding other than chunked): nothing may reach it that
//! pounce did not read one way only, and a refused request must not reach it at all.

mod support;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

/// What a strict HTTP/1.1 server made of one request.
#[derive(Debug, Clone)]
struct Seen {
    request_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

struct StrictBackend {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Heads that were ambiguous or malformed as they reached the backend.
    violations: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StrictBackend {
    fn start() -> StrictBackend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let violations = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, v2, st2) = (seen.clone(), violations.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !st2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((c, _)) => {
                        let (s3, v3) = (s2.clone(), v2.clone());
                        let _ = c.set_nonblocking(false);
                        let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
                        conns.push(std::thread::spawn(move || strict_serve(c, s3, v3)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        StrictBackend { port, seen, violations, stop, thread: Some(thread) }
    }

    fn seen_path(&self, needle: &str) -> Vec<Seen> {
        self.seen.lock().map(|v| v.iter().filter(|s| s.request_line.contains(needle)).cloned().collect()).unwrap_or_default()
    }
}

impl Drop for StrictBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads requests the way RFC 9112 demands of a strict recipient; an ambiguity is recorded as
/// a violation and ends the connection.
fn strict_serve(c: TcpStream, seen: Arc<Mutex<Vec<Seen>>>, violations: Arc<Mutex<Vec<String>>>) {
    let mut w = match c.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut r = BufReader::new(c);
    let flag = |why: String| {
        if let Ok(mut v) = violations.lock() {
            v.push(why);
        }
    };
    loop {
        let mut lines: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut line = Vec::new();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if !line.ends_with(b"\r\n") {
                return flag(format!("line not ended by CRLF: {:?}", String::from_utf8_lossy(&line)));
            }
            line.truncate(line.len() - 2);
            if line.is_empty() {
                break;
            }
            if line.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0 || (b < 32 && b != b'\t') || b == 127) {
                return flag(format!("control byte in {:?}", String::from_utf8_lossy(&line)));
            }
            lines.push(line);
        }
        let request_line = String::from_utf8_lossy(&lines[0]).to_string();
        let mut headers = Vec::new();
        for l in &lines[1..] {
            let text = String::from_utf8_lossy(l);
            if l[0] == b' ' || l[0] == b'\t' {
                return flag(format!("folded line {:?}", text));
            }
            let Some((name, value)) = text.split_once(':') else { return flag(format!("no colon in {:?}", text)) };
            if name.is_empty() || name.bytes().any(|b| !(b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))) {
                return flag(format!("bad field name {:?}", name));
            }
            headers.push((name.to_string(), value.trim().to_string()));
        }
        let count = |n: &str| headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(n)).count();
        let value = |n: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
        if count("host") != 1 {
            return flag(format!("{} Host headers in {:?}", count("host"), request_line));
        }
        let (cl, te) = (count("content-length"), count("transfer-encoding"));
        if cl > 1 || te > 1 || (cl == 1 && te == 1) {
            return flag(format!("ambiguous framing (CL {} TE {}) in {:?}", cl, te, request_line));
        }
        let mut body = Vec::new();
        if te == 1 {
            if value("transfer-encoding").as_deref() != Some("chunked") {
                return flag(format!("coding {:?}", value("transfer-encoding")));
            }
            match read_chunked(&mut r) {
                Ok(b) => body = b,
                Err(_) => return,
            }
        } else if let Some(v) = value("content-length") {
            let Ok(n) = v.parse::<usize>() else { return flag(format!("Content-Length {:?}", v)) };
            if v.len() > 1 && v.starts_with('0') {
                return flag(format!("Content-Length with leading zeros {:?}", v));
            }
            body.resize(n, 0);
            if r.read_exact(&mut body).is_err() {
                return;
            }
        }
        let path = request_line.split(' ').nth(1).unwrap_or("").to_string();
        let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Seen: {}\r\n\r\n", body.len(), path);
        if let Ok(mut s) = seen.lock() {
            s.push(Seen { request_line, headers, body: body.clone() });
        }
        if w.write_all(answer.as_bytes()).and_then(|_| w.write_all(&body)).is_err() {
            return;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    /// This status, then the connection is closed (framing in doubt).
    Refused(u16),
    /// This status from pounce itself; the connection may stay open.
    Answered(u16),
    /// Forwarded: the backend saw it (checked by the case's path) and answered 200.
    Passed,
}

struct Case {
    name: &'static str,
    raw: Vec<u8>,
    want: Want,
}

fn case(name: &'static str, raw: impl AsRef<[u8]>, want: Want) -> Case {
    Case { name, raw: raw.as_ref().to_vec(), want }
}

fn cases() -> Vec<Case> {
    use Want::*;
    let big_line = format!("GET /r/long{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
    let mut big_headers = String::from("GET /r/bighead HTTP/1.1\r\nHost: x\r\n");
    while big_headers.len() < 9000 {
        big_headers.push_str("X-Fill: 0123456789012345678901234567890123456789\r\n");
    }
    big_headers.push_str("\r\n");
    let one_huge_header = format!("GET /r/hugeheader HTTP/1.1\r\nHost: x\r\nX-Huge: {}\r\n\r\n", "v".repeat(9000));
    let mut many = String::from("GET /r/many HTTP/1.1\r\nHost: x\r\n");
    for i in 0..120 {
        many.push_str(&format!("X-{}: 1\r\n", i));
    }
    many.push_str("\r\n");
    let mut big_trailer = String::from("POST /r/bigtrailer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n");
    while big_trailer.len() < 12000 {
        big_trailer.push_str("X-Trailer: 0123456789012345678901234567890123456789\r\n");
    }
    big_trailer.push_str("\r\n");
    let long_ext = format!("POST /r/longext HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;{}\r\na\r\n0\r\n\r\n", "e".repeat(5000));
    vec![
        // Two framings, or one framing written twice.
        case("CL then TE", "POST /r/clte HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX", Refused(400)),
        case("TE then CL", "POST /r/tecl HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nX", Refused(400)),
        case("two different CLs", "POST /r/cl2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", Refused(400)),
        case("two equal CLs", "POST /r/cl2eq HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd", Refused(400)),
        case("CL list", "POST /r/cllist HTTP/1.1\r\nHost: x\r\nContent-Length: 4, 4\r\n\r\nabcd", Refused(400)),
        case("CL with plus sign", "POST /r/clplus HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\nabcd", Refused(400)),
        case("CL negative", "POST /r/clneg HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", Refused(400)),
        case("CL hex", "POST /r/clhex HTTP/1.1\r\nHost: x\r\nContent-Length: 0x4\r\n\r\nabcd", Refused(400)),
        case("CL overflow", "POST /r/clbig HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n", Refused(400)),
        case("CL with inner space", "POST /r/clspace HTTP/1.1\r\nHost: x\r\nContent-Length: 1 0\r\n\r\n0123456789", Refused(400)),
        case("CL leading zeros (one meaning)", "POST /p/clzeros HTTP/1.1\r\nHost: x\r\nContent-Length: 004\r\n\r\nabcd", Passed),
        case("CL named in Connection", "POST /p/clconn HTTP/1.1\r\nHost: x\r\nConnection: Content-Length\r\nContent-Length: 4\r\n\r\nabcd", Passed),
        // Transfer codings other than a lone "chunked".
        case("TE chunked, identity", "POST /r/teci HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", Refused(501)),
        case("TE identity", "POST /r/tei HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n", Refused(501)),
        case("TE gzip, chunked", "POST /r/tegz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", Refused(501)),
        case("TE twice", "POST /r/te2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", Refused(501)),
        case("TE xchunked", "POST /r/tex HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", Refused(501)),
        case("TE on HTTP/1.0", "POST /r/te10 HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", Refused(400)),
        case("TE Chunked in capitals", "POST /p/tecaps HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n", Passed),
        // Chunk framing.
        case("chunk size negative", "POST /r/chneg HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-4\r\nabcd\r\n0\r\n\r\n", Refused(400)),
        case("chunk size plus", "POST /r/chplus HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n+4\r\nabcd\r\n0\r\n\r\n", Refused(400)),
        case("chunk size 0x", "POST /r/ch0x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x4\r\nabcd\r\n0\r\n\r\n", Refused(400)),
        case(
            "chunk size overflow",
            "POST /r/chover HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\nabcd\r\n0\r\n\r\n",
            Refused(400),
        ),
        case("chunk data longer than its size", "POST /r/chlong HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n0\r\n\r\n", Refused(400)),
        case("chunk size ended by bare LF", "POST /r/chlf HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\nabcd\r\n0\r\n\r\n", Refused(400)),
        case("chunk extension too long", long_ext, Refused(400)),
        case("chunk extension (dropped)", "POST /p/chext HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4;name=value\r\nabcd\r\n0\r\n\r\n", Passed),
        case("trailers too large", big_trailer, Refused(400)),
        case("small trailer", "POST /p/trailer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\nX-T: 1\r\n\r\n", Passed),
        // Line endings, folding, whitespace, control bytes.
        case("bare LF head (one meaning)", "GET /p/barelf HTTP/1.1\nHost: x\n\n", Passed),
        case("bare CR in a value", "GET /r/barecr HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", Refused(400)),
        case("obs-fold continuation", "GET /r/fold HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", Refused(400)),
        case("space before colon", "GET /r/wsname HTTP/1.1\r\nHost: x\r\nX-A : a\r\n\r\n", Refused(400)),
        case("space before colon of CL", "POST /r/wscl HTTP/1.1\r\nHost: x\r\nContent-Length : 4\r\n\r\nabcd", Refused(400)),
        case("space before the first header", "GET /r/wsfirst HTTP/1.1\r\n Host: x\r\n\r\n", Refused(400)),
        case("NUL in request line", "GET /r/nul\0x HTTP/1.1\r\nHost: x\r\n\r\n", Refused(400)),
        case("NUL in a value", "GET /r/nulv HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n", Refused(400)),
        case("control byte in a value", "GET /r/ctl HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n", Refused(400)),
        case("DEL in target", "GET /r/del\x7f HTTP/1.1\r\nHost: x\r\n\r\n", Refused(400)),
        case("space inside target", "GET /r/a b HTTP/1.1\r\nHost: x\r\n\r\n", Refused(400)),
        case("bad character in name", "GET /r/badname HTTP/1.1\r\nHost: x\r\nX(A): 1\r\n\r\n", Refused(400)),
        case("empty header name", "GET /r/noname HTTP/1.1\r\nHost: x\r\n: 1\r\n\r\n", Refused(400)),
        case("tab in a value (allowed)", "GET /p/tab HTTP/1.1\r\nHost: x\r\nX-A: a\tb\r\n\r\n", Passed),
        // Target forms and versions.
        case("absolute form", "GET http://target.example/p/absolute?q=1 HTTP/1.1\r\nHost: other.example\r\n\r\n", Passed),
        case("absolute form with user info", "GET http://u@x/r/userinfo HTTP/1.1\r\nHost: x\r\n\r\n", Refused(400)),
        case("absolute form, other scheme", "GET ftp://x/r/ftp HTTP/1.1\r\nHost: x\r\n\r\n", Refused(400)),
        case("asterisk form with OPTIONS", "OPTIONS * HTTP/1.1\r\nHost: x\r\nX-Case: /p/asterisk\r\n\r\n", Passed),
        case("asterisk form with GET", "GET * HTTP/1.1\r\nHost: x\r\n\r\n", Refused(400)),
        case("HTTP/0.9 request", "GET /r/http09\r\n\r\n", Refused(400)),
        case("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Refused(505)),
        case("HTTP/3.0 line", "GET /r/h3 HTTP/3.0\r\nHost: x\r\n\r\n", Refused(505)),
        case("garbage", "HELLO\r\n\r\n", Refused(400)),
        // Host.
        case("no Host on 1.1", "GET /r/nohost HTTP/1.1\r\n\r\n", Refused(400)),
        case("two Hosts", "GET /r/twohosts HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Refused(400)),
        case("Host with a slash", "GET /r/hostslash HTTP/1.1\r\nHost: a/b\r\n\r\n", Refused(400)),
        case("Host with a space", "GET /r/hostspace HTTP/1.1\r\nHost: a b\r\n\r\n", Refused(400)),
        case("no Host on 1.0 (allowed)", "GET /p/nohost10 HTTP/1.0\r\n\r\n", Passed),
        // Sizes.
        case("request line too long", big_line, Refused(414)),
        case("headers too large", big_headers, Refused(431)),
        case("one header too large", one_huge_header, Refused(431)),
        case("too many headers", many, Refused(431)),
        // Expect and Upgrade.
        case("Expect other than 100-continue", "POST /r/expect HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nContent-Length: 4\r\n\r\nabcd", Refused(417)),
        case("Expect 100-continue", "POST /p/continue HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nabcd", Passed),
        case("Upgrade without Connection: upgrade", "GET /p/upgrade HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n", Passed),
        case("Upgrade where no proxy is configured", "GET /ret HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n", Answered(200)),
        case("Upgrade on HTTP/1.0", "GET /p/upgrade10 HTTP/1.0\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n", Passed),
        // Unsafe URIs: refused, or normalized for location matching (location /admin denies).
        case("dot-dot above the root", "GET /../r/above HTTP/1.1\r\nHost: x\r\n\r\n", Refused(400)),
        case("encoded dot-dot above the root", "GET /%2e%2e/r/above2 HTTP/1.1\r\nHost: x\r\n\r\n", Refused(400)),
        case("encoded slashes climbing", "GET /a/..%2f..%2fr/above3 HTTP/1.1\r\nHost: x\r\n\r\n", Refused(400)),
        case("encoded NUL", "GET /r/enc%00nul HTTP/1.1\r\nHost: x\r\n\r\n", Refused(400)),
        case("malformed escape", "GET /r/bad%zzescape HTTP/1.1\r\nHost: x\r\n\r\n", Refused(400)),
        case("encoded letter reaches the denied location", "GET /%61dmin/x HTTP/1.1\r\nHost: x\r\n\r\n", Answered(403)),
        case("double slash reaches the denied location", "GET //admin/x HTTP/1.1\r\nHost: x\r\n\r\n", Answered(403)),
        case("path parameter dot-dot (Tomcat reads /admin)", "GET /public/..;/admin/x HTTP/1.1\r\nHost: x\r\n\r\n", Answered(403)),
        case("dot segments resolved", "GET /p/x/../dots HTTP/1.1\r\nHost: x\r\n\r\n", Passed),
    ]
}

fn start(backend: &StrictBackend) -> Pounce {
    Pounce::start(
        &Conf::new()
            .http("client_max_body_size 1m;")
            .http("client_header_timeout 3s;")
            .http("client_body_timeout 3s;")
            .upstream(Upstream::new("app").server(format!("127.0.0.1:{}", backend.port)))
            .server(
                Server::new()
                    .location(Location::new("/").proxy_pass("http://app"))
                    .location(Location::new("/admin/").line("deny all;").proxy_pass("http://app"))
                    .location(Location::exact("/ret").line("return 200 \"plain answer\\n\";")),
            ),
    )
}

/// Sends the case, returns the final status and (when `check_close`) whether pounce closed the
/// connection after it.
fn run(port: u16, raw: &[u8], check_close: bool) -> (u16, bool) {
    let s = connect(port);
    s.set_read_timeout(Some(Duration::from_secs(8))).expect("timeout");
    // A refused request may be closed on before all of it is written.
    let _ = (&s).write_all(raw);
    let mut r = BufReader::new(s);
    let mut resp = match read_response(&mut r, false) {
        Ok(resp) => resp,
        Err(e) => panic!("no response: {}", e),
    };
    while (100..200).contains(&resp.status) {
        resp = read_response(&mut r, false).expect("final response");
    }
    if !check_close {
        return (resp.status, false);
    }
    let mut rest = [0u8; 1];
    let closed = matches!(r.read(&mut rest), Ok(0));
    (resp.status, closed)
}

#[test]
fn table_of_malformed_and_ambiguous_requests() {
    let backend = StrictBackend::start();
    let p = start(&backend);
    let table = cases();
    assert!(table.len() >= 40, "the table has {} cases", table.len());
    let mut failures = Vec::new();
    for c in &table {
        // A refused request's connection must be closed, so nothing after it is read.
        let mut raw = c.raw.clone();
        if matches!(c.want, Want::Refused(_)) {
            raw.extend_from_slice(b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n");
        }
        let t = std::time::Instant::now();
        let (status, closed) = run(p.port, &raw, matches!(c.want, Want::Refused(_)));
        let ok = match c.want {
            Want::Refused(s) => status == s && closed,
            Want::Answered(s) => status == s,
            Want::Passed => status == 200,
        };
        println!(
            "{:<48} {:>3} {:<6} {:>5} ms {}",
            c.name,
            status,
            if closed { "closed" } else { "" },
            t.elapsed().as_millis(),
            if ok { "ok" } else { "WRONG" }
        );
        if !ok {
            failures.push(format!("{}: got {} (closed: {}), want {:?}", c.name, status, closed, c.want));
        }
    }
    assert!(failures.is_empty(), "wrong answers:\n{}", failures.join("\n"));

    let violations = backend.violations.lock().map(|v| v.clone()).unwrap_or_default();
    assert!(violations.is_empty(), "the backend saw requests it could read differently: {:?}", violations);
    assert!(backend.seen_path("/r/").is_empty(), "refused requests reached the backend: {:?}", backend.seen_path("/r/"));
    assert!(backend.seen_path("/smuggled").is_empty(), "a smuggled request reached the backend");
    assert!(backend.seen_path("/admin").is_empty(), "a request got past the denied location");

    // What the passed ones looked like at the backend.
    let one = |needle: &str| -> Seen {
        let v = backend.seen_path(needle);
        assert_eq!(v.len(), 1, "{} reached the backend {} times", needle, v.len());
        v[0].clone()
    };
    assert_eq!(one("/p/clzeros").header("content-length"), Some("4"));
    assert_eq!(one("/p/clzeros").body, b"abcd");
    assert_eq!(one("/p/clconn").body, b"abcd");
    assert_eq!(one("/p/tecaps").body, b"abcd");
    assert_eq!(one("/p/chext").body, b"abcd");
    assert_eq!(one("/p/trailer").body, b"abcd");
    assert_eq!(one("/p/continue").body, b"abcd");
    assert!(one("/p/continue").header("expect").is_none(), "Expect is answered by pounce, not forwarded");
    let abs = one("/p/absolute");
    assert_eq!(abs.request_line, "GET /p/absolute?q=1 HTTP/1.1", "absolute form is forwarded in origin form");
    assert_eq!(abs.header("host"), Some("target.example"), "the target's authority is the Host");
    let star = backend.seen.lock().map(|v| v.iter().filter(|s| s.request_line.starts_with("OPTIONS * ")).count()).unwrap_or(0);
    assert_eq!(star, 1, "OPTIONS * is forwarded as it is");
    assert!(one("/p/upgrade ").header("upgrade").is_none(), "Upgrade without Connection: upgrade is dropped");
    assert!(one("/p/upgrade10").header("upgrade").is_none(), "no upgrade on HTTP/1.0");
    assert_eq!(one("/p/x/../dots").request_line, "GET /p/x/../dots HTTP/1.1", "the target is forwarded as the client sent it");
    let nohost = format!("127.0.0.1:{}", p.port);
    assert_eq!(one("/p/nohost10").header("host"), Some(nohost.as_str()), "HTTP/1.0 without Host gets the address it came to, not the upstream name");
    println!("{} cases; backend saw {} requests, 0 violations", table.len(), backend.seen.lock().map(|v| v.len()).unwrap_or(0));
}

#[test]
fn pipelined_requests_after_a_refused_one_are_never_forwarded() {
    let backend = StrictBackend::start();
    let p = start(&backend);
    // Valid first, then a smuggling attempt whose "body" holds a second request.
    let mut s = connect(p.port);
    s.write_all(
        b"GET /p/first HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /r/attack HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .expect("send");
    let mut r = BufReader::new(s);
    let first = read_response(&mut r, false).expect("first");
    assert_eq!((first.status, first.header("x-seen")), (200, Some("/p/first")));
    let second = read_response(&mut r, false).expect("second");
    assert_eq!(second.status, 400);
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    assert!(rest.is_empty(), "nothing after the 400: {:?}", String::from_utf8_lossy(&rest));
    std::thread::sleep(Duration::from_millis(200));
    assert!(backend.seen_path("/smuggled").is_empty() && backend.seen_path("/r/attack").is_empty());
    println!("pipelined: first answered 200, attack 400 and closed, backend saw {} request(s)", backend.seen.lock().map(|v| v.len()).unwrap_or(0));
}
