//! Client aborts (session-core renovation, item 3): a client that leaves is noticed in every
//! phase of its request — while pounce connects to the backend, while it sends the request
//! body, while it waits for the response head, while it streams the response. Then the
//! backend connection is closed rather than pooled, nothing more is forwarded for that
//! request, a request not yet written to a backend is never sent, the access log says 499,
//! pounce holds no CLOSE-WAIT connection and the buffers are back at once.
//! `proxy_ignore_client_abort on` (nginx's directive) keeps the request going instead.
//!
//! The backend is `support::slow::SlowBackend`: a short accept backlog (listen(fd, 1)) and one
//! connection at a time, as an overloaded Tomcat. Each test reports every broken promise it
//! finds, not only the first.

mod support;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::netstat::{close_wait_on, open_to, queued_to, syn_sent_to};
use support::slow::{fill_accept_queue, Script, SlowBackend};
use support::*;

/// How soon after the client left pounce must have acted on it (closed the backend
/// connection, written the log line, returned the buffers). It acts on the client's FIN or
/// reset event; the rest is slack for a loaded machine.
const NOTICE: Duration = Duration::from_secs(2);

/// What a test found wrong, reported together at the end.
#[derive(Default)]
struct Findings(Vec<String>);

impl Findings {
    fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.0.push(what.into());
        }
    }

    fn assert_none(self, p: &Pounce) {
        assert!(
            self.0.is_empty(),
            "{} broken:\n- {}\naccess log:\n{}\nerror log (tail):\n{}",
            self.0.len(),
            self.0.join("\n- "),
            p.access_log(),
            p.error_log_tail(20)
        );
    }
}

/// A condition that must come true soon: Err says what is still wrong.
type Check<'a> = Box<dyn Fn() -> Result<(), String> + 'a>;

/// Polls every check until all hold or `limit` passes (one window for all, so a test's
/// timeline stays short); records those that never held, with the time since `left`.
fn settle(left: Instant, limit: Duration, checks: Vec<Check>, f: &mut Findings) {
    let deadline = Instant::now() + limit;
    loop {
        let failing: Vec<String> = checks.iter().filter_map(|c| c().err()).collect();
        if failing.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            for e in failing {
                f.check(false, format!("{} ({:.1} s after the client left)", e, left.elapsed().as_secs_f64()));
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What every phase must show once the client has left: a 499 line for `path` in the access
/// log, no CLOSE-WAIT connection on pounce's port, every buffer back (one worker: its figures
/// are published right before the page is rendered).
fn after_the_client_left<'a>(p: &'a Pounce, path: &'a str) -> Vec<Check<'a>> {
    vec![
        Box::new(move || {
            let lines = log_lines(p, path);
            if lines.iter().any(|l| is_499(l)) {
                Ok(())
            } else {
                Err(format!("no 499 line for {} in the access log: {:?}", path, lines))
            }
        }),
        Box::new(move || match close_wait_on(p.port) {
            0 => Ok(()),
            n => Err(format!("{} connection(s) on pounce's port in CLOSE-WAIT", n)),
        }),
        Box::new(move || match p.buffers_in_use() {
            Ok((v, _)) if v.iter().all(|&n| n == 0) => Ok(()),
            Ok((_, text)) => Err(format!("buffers still in use: {}", text)),
            Err(e) => Err(e),
        }),
    ]
}

/// The backend's first connection was closed by pounce (EOF or reset): not kept, not pooled.
fn backend_closed<'a>(b: &'a SlowBackend, phase: &'a str) -> Check<'a> {
    Box::new(move || {
        let c = b.conns().first().cloned().unwrap_or_default();
        if c.closed.is_some() {
            Ok(())
        } else {
            Err(format!("{}: the backend connection is still open (kept or pooled: pounce did not act on the abort); the backend saw {:?}", phase, c))
        }
    })
}

fn report_close(b: &SlowBackend, left: Instant, phase: &str) {
    let c = b.conns().first().cloned().unwrap_or_default();
    match c.closed {
        Some(t) => println!(
            "{}: the backend connection was closed {} ms after the client left (reset: {})",
            phase,
            t.saturating_duration_since(left).as_millis(),
            c.reset
        ),
        None => println!("{}: the backend connection is still open", phase),
    }
}

/// The access-log lines of requests whose path starts with `path`.
fn log_lines(p: &Pounce, path: &str) -> Vec<String> {
    p.access_log().lines().filter(|l| l.contains(&format!(" {}", path))).map(String::from).collect()
}

fn is_499(line: &str) -> bool {
    line.contains("HTTP/1.1\" 499 ")
}

/// Reads a response head, through the blank line.
fn read_head(r: &mut impl BufRead) -> String {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).expect("response head") == 0 || line == "\r\n" {
            return head;
        }
        head.push_str(&line);
    }
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", path).into_bytes()
}

/// Linux retransmits an unanswered SYN 1, 3, 7 and 15 s after the first: the first of those
/// after `now`, for a connect() that began at `first_syn`.
fn next_syn_retransmission(first_syn: Instant, now: Instant) -> Instant {
    [1, 3, 7, 15].iter().map(|&s| first_syn + Duration::from_secs(s)).find(|&t| t > now).unwrap_or(now)
}

/// One server proxying to `backend`, with an access log and pooled backend connections (so
/// that "closed rather than pooled" can be seen: a pooled connection stays open).
fn conf(backend: &SlowBackend) -> Conf {
    Conf::new()
        .http("access_log logs/access.log;")
        .http("client_max_body_size 0;")
        .upstream(Upstream::new("app").server(backend.addr()).line("keepalive 4;"))
        .server(Server::new().location(Location::new("/").proxy_pass("http://app")))
}

// ---- the scenario --------------------------------------------------------------------------

/// 200 clients each send a GET and close at once, in front of a backend with a short accept
/// backlog that answers one request every 100 ms. Seen before: 20 s later pounce still held
/// 61 client connections in CLOSE-WAIT and about 300 pooled buffers, and went on forwarding
/// the abandoned requests to the backend one by one.
#[test]
fn two_hundred_clients_that_leave_at_once_are_forgotten() {
    const CLIENTS: usize = 200;
    // What may legitimately reach the backend: only requests pounce wrote before it noticed
    // the aborts, and only on connections the backend's kernel completed. With listen(fd, 1)
    // the kernel completes at most 2 handshakes ahead of accept() (backlog + 1) and the
    // backend holds 1 more in service; every other SYN is dropped, so those connect()s sit in
    // SYN-SENT until the first retransmission a second later — by then every abort has been
    // noticed (each client's FIN arrives right behind its GET) and they must have been
    // abandoned. Hence at most 3.
    const ON_ITS_WAY: usize = 3;
    let b = SlowBackend::start(1, Script::AnswerAfter(Duration::from_millis(100)));
    let p = Pounce::start(&conf(&b));
    for i in 0..CLIENTS {
        let mut s = TcpStream::connect(("127.0.0.1", p.port)).expect("connect");
        s.write_all(&get(&format!("/scenario/{}", i))).expect("send");
    }
    let left = Instant::now();
    let mut f = Findings::default();

    // Nothing more can reach the backend once pounce has no connection to it being set up or
    // open and the backend has read what was in its queue. Wait for that (up to 12 s: long
    // enough to see requests still trickling in with the SYN retransmissions).
    let (mut last, mut since) = (b.requests(), Instant::now());
    let quiet = loop {
        let n = b.requests();
        if n != last || open_to(b.port) > 0 {
            (last, since) = (n, Instant::now());
        }
        if since.elapsed() >= Duration::from_secs(1) {
            break true;
        }
        if left.elapsed() >= Duration::from_secs(12) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let forwarded = b.requests();
    println!(
        "{} clients left at once; {:.1} s later the backend had read {} request(s) on {} connection(s), pounce had {} connection(s) to it under way or open, {} client connection(s) in CLOSE-WAIT",
        CLIENTS,
        left.elapsed().as_secs_f64(),
        forwarded,
        b.conns().len(),
        open_to(b.port),
        close_wait_on(p.port)
    );
    f.check(
        quiet,
        format!(
            "{:.0} s after the clients left pounce still had {} connection(s) to the backend under way or open, and the backend had read {} request(s)",
            left.elapsed().as_secs_f64(),
            open_to(b.port),
            forwarded
        ),
    );
    f.check(forwarded <= ON_ITS_WAY, format!("the backend read {} abandoned requests; at most {} were on their way", forwarded, ON_ITS_WAY));

    let checks: Vec<Check> = vec![
        Box::new(|| match close_wait_on(p.port) {
            0 => Ok(()),
            n => Err(format!("{} client connection(s) in CLOSE-WAIT", n)),
        }),
        Box::new(|| match p.buffers_in_use() {
            Ok((v, _)) if v.iter().all(|&n| n == 0) => Ok(()),
            Ok((_, text)) => Err(format!("buffers still in use: {}", text)),
            Err(e) => Err(e),
        }),
        Box::new(|| {
            let lines = log_lines(&p, "/scenario/");
            let aborted = lines.iter().filter(|l| is_499(l)).count();
            if lines.len() == CLIENTS && aborted == CLIENTS {
                Ok(())
            } else {
                Err(format!("the access log has {} line(s) for the {} aborted requests, {} of them 499", lines.len(), CLIENTS, aborted))
            }
        }),
    ];
    settle(left, NOTICE, checks, &mut f);
    f.assert_none(&p);
}

// ---- one test per phase --------------------------------------------------------------------

/// The backend's accept queue is full, so pounce's connect() hangs in SYN-SENT; the client
/// leaves. The connect must be abandoned: when the backend then accepts again, the request
/// never arrives.
#[test]
fn abort_while_connecting() {
    let b = SlowBackend::start_closed(1, Script::AnswerAfter(Duration::ZERO));
    let fillers = fill_accept_queue(b.port);
    assert!(!fillers.is_empty(), "the accept queue took no connection");
    let p = Pounce::start(&conf(&b));
    let mut c = connect(p.port);
    c.write_all(&get("/connecting")).expect("send");
    assert!(eventually(Duration::from_secs(3), || syn_sent_to(b.port) >= 1), "pounce's connect() to the backend is under way (SYN-SENT)");
    let first_syn = Instant::now();
    drop(c);
    let left = Instant::now();
    let mut f = Findings::default();
    let mut checks = after_the_client_left(&p, "/connecting");
    checks.push(Box::new(|| match syn_sent_to(b.port) {
        0 => Ok(()),
        n => Err(format!("{} connect() to the backend still under way (SYN-SENT)", n)),
    }));
    settle(left, NOTICE, checks, &mut f);

    // The backend accepts again: a connect() still pending completes with its next SYN
    // retransmission and delivers the request.
    drop(fillers);
    b.open();
    let wait_until = next_syn_retransmission(first_syn, Instant::now()) + Duration::from_secs(1);
    let delivered = eventually(wait_until.saturating_duration_since(Instant::now()), || b.requests() > 0);
    println!("connecting: the backend received {} request(s) after it accepted again", b.requests());
    f.check(!delivered, format!("the request reached the backend after the client had left: {:?}", b.conns()));
    f.assert_none(&p);
}

/// A large upload to a backend that reads it slowly (16 KiB every 100 ms); the client stops
/// sending and closes. After that the backend reads as fast as it can, so it sees the end of
/// the connection as soon as pounce closes it.
#[test]
fn abort_while_sending_the_body() {
    let b = SlowBackend::start(1, Script::SlowRead { chunk: 16 * 1024, every: Duration::from_millis(100) });
    let p = Pounce::start(&conf(&b));
    let mut c = connect(p.port);
    // 64 MiB announced, 192 KiB sent: little enough to be taken in by pounce and the sockets
    // on the way, so the client's FIN is not stuck behind unsent bytes.
    c.write_all(format!("POST /sending HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", 64 << 20).as_bytes()).expect("head");
    c.write_all(&vec![b'u'; 192 * 1024]).expect("part of the body");
    assert!(eventually(Duration::from_secs(5), || b.body_bytes() >= 32 * 1024), "the body is on its way to the backend: {:?}", b.conns());
    drop(c);
    let left = Instant::now();
    let (at_abort, in_kernel) = (b.body_bytes(), queued_to(b.port));
    b.hurry();
    let mut f = Findings::default();
    let mut checks = after_the_client_left(&p, "/sending");
    checks.push(backend_closed(&b, "sending (FIN)"));
    settle(left, NOTICE, checks, &mut f);
    report_close(&b, left, "sending (FIN)");
    // Not asserted: the FIN comes behind body bytes that pounce may read and pass on first.
    println!(
        "sending (FIN): the client sent {} body bytes; when it left the backend had read {} and {} were queued in the kernel on the way; the backend read {} in all",
        192 * 1024,
        at_abort,
        in_kernel,
        b.body_bytes()
    );
    f.assert_none(&p);
}

/// The same with a client that is still pushing body bytes (held back by the slow backend)
/// and resets the connection: a FIN would wait behind its unsent bytes, a reset is seen at
/// once.
#[test]
fn reset_while_sending_the_body() {
    let b = SlowBackend::start(1, Script::SlowRead { chunk: 16 * 1024, every: Duration::from_millis(100) });
    let p = Pounce::start(&conf(&b));
    let abort = Arc::new(AtomicBool::new(false));
    let (port, a2) = (p.port, abort.clone());
    let client = std::thread::spawn(move || {
        let mut c = connect(port);
        c.set_write_timeout(Some(Duration::from_millis(50))).expect("timeout");
        c.write_all(format!("POST /resetting HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", 64 << 20).as_bytes()).expect("head");
        let piece = vec![b'u'; 64 * 1024];
        let mut sent = 0u64;
        while !a2.load(Ordering::Relaxed) {
            if let Ok(n) = c.write(&piece) {
                sent += n as u64;
            }
        }
        reset(&c);
        drop(c);
        sent
    });
    assert!(eventually(Duration::from_secs(5), || b.body_bytes() >= 256 * 1024), "the body is on its way to the backend: {:?}", b.conns());
    abort.store(true, Ordering::Relaxed);
    let sent = client.join().expect("client");
    let left = Instant::now();
    // The queues first: a 16 KiB read by the backend in between is then counted in both.
    let in_kernel = queued_to(b.port);
    let at_abort = b.body_bytes();
    b.hurry();
    let mut f = Findings::default();
    let mut checks = after_the_client_left(&p, "/resetting");
    checks.push(backend_closed(&b, "sending (reset)"));
    settle(left, NOTICE, checks, &mut f);
    report_close(&b, left, "sending (reset)");
    // What may still reach the backend: what it had read, what was in the kernel between
    // pounce and the backend, and what pounce may move before its event loop sees the reset
    // (its two 16 KiB buffers on the way, and one more read from the client socket).
    let allowed = at_abort + in_kernel + 48 * 1024;
    let total = b.body_bytes();
    println!(
        "sending (reset): the client sent {} body bytes; when it left the backend had read {} and {} were queued in the kernel on the way; the backend read {} in all",
        sent, at_abort, in_kernel, total
    );
    f.check(
        total <= allowed,
        format!("{} body bytes were forwarded after the client's reset, beyond the {} on their way", total.saturating_sub(at_abort + in_kernel), in_kernel),
    );
    f.assert_none(&p);
}

/// The backend read the request and never answers; the client leaves.
#[test]
fn abort_while_waiting_for_the_response_head() {
    let b = SlowBackend::start(1, Script::Silent);
    let p = Pounce::start(&conf(&b));
    let mut c = connect(p.port);
    c.write_all(&get("/waiting")).expect("send");
    assert!(eventually(Duration::from_secs(5), || b.requests() == 1), "the request reached the backend");
    drop(c);
    let left = Instant::now();
    let mut f = Findings::default();
    let mut checks = after_the_client_left(&p, "/waiting");
    checks.push(backend_closed(&b, "waiting for the head"));
    settle(left, NOTICE, checks, &mut f);
    report_close(&b, left, "waiting for the head");
    f.assert_none(&p);
}

/// The backend sent the head and 64 KiB of a 10 MiB body, then stalls; the client read all
/// of it and leaves.
#[test]
fn abort_while_streaming_the_response() {
    const PART: usize = 64 * 1024;
    let b = SlowBackend::start(1, Script::Stall { head: format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", 10 << 20), part: PART });
    let p = Pounce::start(&conf(&b));
    let mut c = connect(p.port);
    c.write_all(&get("/streaming")).expect("send");
    let mut r = BufReader::new(c);
    let head = read_head(&mut r);
    assert!(head.starts_with("HTTP/1.1 200"), "the response head: {:?}", head);
    let mut got = 0;
    let mut buf = vec![0u8; 16 * 1024];
    while got < PART {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    assert_eq!(got, PART, "the client received the part the backend sent");
    drop(r);
    let left = Instant::now();
    let mut f = Findings::default();
    let mut checks = after_the_client_left(&p, "/streaming");
    checks.push(backend_closed(&b, "streaming"));
    settle(left, NOTICE, checks, &mut f);
    report_close(&b, left, "streaming");
    f.assert_none(&p);
}

// ---- proxy_ignore_client_abort -------------------------------------------------------------

/// With `proxy_ignore_client_abort on` the request of a client that sent a GET and left still
/// reaches the backend: the connect() under way when the client left completes once the
/// backend accepts again (with the next SYN retransmission, a second after the first SYN:
/// pounce has long seen the client leave by then).
fn ignored_abort_is_still_delivered(conf: Conf, b: &SlowBackend, fillers: Vec<TcpStream>) {
    let p = Pounce::start(&conf);
    let mut c = connect(p.port);
    c.write_all(&get("/ignored")).expect("send");
    assert!(eventually(Duration::from_secs(3), || syn_sent_to(b.port) >= 1), "pounce's connect() to the backend is under way (SYN-SENT)");
    let first_syn = Instant::now();
    drop(c);
    drop(fillers);
    b.open();
    let wait_until = next_syn_retransmission(first_syn, Instant::now()) + Duration::from_secs(1);
    let delivered = eventually(wait_until.saturating_duration_since(Instant::now()), || b.requests() == 1);
    assert!(delivered, "the request was not delivered although proxy_ignore_client_abort is on: {:?}\n{}", b.conns(), p.error_log_tail(20));
}

fn closed_backend() -> (SlowBackend, Vec<TcpStream>) {
    let b = SlowBackend::start_closed(1, Script::AnswerAfter(Duration::ZERO));
    let fillers = fill_accept_queue(b.port);
    (b, fillers)
}

#[test]
fn proxy_ignore_client_abort_in_location() {
    let (b, fillers) = closed_backend();
    let conf = Conf::new()
        .upstream(Upstream::new("app").server(b.addr()))
        .server(Server::new().location(Location::new("/").proxy_pass("http://app").line("proxy_ignore_client_abort on;")));
    ignored_abort_is_still_delivered(conf, &b, fillers);
}

#[test]
fn proxy_ignore_client_abort_in_server() {
    let (b, fillers) = closed_backend();
    let conf = Conf::new()
        .upstream(Upstream::new("app").server(b.addr()))
        .server(Server::new().line("proxy_ignore_client_abort on;").location(Location::new("/").proxy_pass("http://app")));
    ignored_abort_is_still_delivered(conf, &b, fillers);
}

#[test]
fn proxy_ignore_client_abort_in_http() {
    let (b, fillers) = closed_backend();
    let conf = Conf::new()
        .http("proxy_ignore_client_abort on;")
        .upstream(Upstream::new("app").server(b.addr()))
        .server(Server::new().location(Location::new("/").proxy_pass("http://app")));
    ignored_abort_is_still_delivered(conf, &b, fillers);
}
