//! Scriptable HTTP/1.1 backends on 127.0.0.1: each connection in its own thread, each request
//! answered by a handler's `Reply` (framed, raw, hung, reset, delayed), every request recorded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Which connection (1-based, per backend) carried it.
    pub conn: usize,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Framing {
    Length,
    Chunked,
    Close,
}

pub enum Reply {
    Send {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        framing: Framing,
    },
    /// Raw bytes, then the connection stays open for more requests.
    Raw(Vec<u8>),
    /// Raw bytes, then a silent close (as Tomcat closing an idle keep-alive connection).
    RawThenClose(Vec<u8>),
    /// Never answer; hold the connection until the backend stops.
    Hang,
    /// Close with a TCP reset.
    Reset,
    /// Close without answering.
    Close,
    Delay(Duration, Box<Reply>),
}

impl Reply {
    pub fn ok(body: impl Into<Vec<u8>>) -> Reply {
        Reply::Send { status: 200, headers: vec![], body: body.into(), framing: Framing::Length }
    }
    pub fn status(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply::Send { status, headers: vec![], body: body.into(), framing: Framing::Length }
    }
}

type Handler = Arc<dyn Fn(&Req) -> Reply + Send + Sync>;

pub struct Backend {
    pub port: u16,
    pub name: String,
    pub conns: Arc<AtomicUsize>,
    pub reqs: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<Req>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    /// Answers every request with 200, body = its name (or the request body for POST/PUT),
    /// and `X-Backend: name`.
    pub fn named(name: &str) -> Backend {
        let n = name.to_string();
        Backend::start(
            name,
            Arc::new(move |r: &Req| {
                let body = if r.method == "POST" || r.method == "PUT" { r.body.clone() } else { n.clone().into_bytes() };
                Reply::Send { status: 200, headers: vec![("X-Backend".into(), n.clone())], body, framing: Framing::Length }
            }),
        )
    }

    pub fn with(name: &str, f: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> Backend {
        Backend::start(name, Arc::new(f))
    }

    /// Like `named`, on a given port.
    pub fn named_on(port: u16, name: &str) -> Backend {
        let n = name.to_string();
        Backend::start_on(
            port,
            name,
            Arc::new(move |_: &Req| Reply::Send {
                status: 200,
                headers: vec![("X-Backend".into(), n.clone())],
                body: n.clone().into_bytes(),
                framing: Framing::Length,
            }),
        )
    }

    pub fn start(name: &str, handler: Handler) -> Backend {
        Backend::start_on(0, name, handler)
    }

    /// A backend on a given port (0 = any), e.g. to bring a "dead" server back.
    pub fn start_on(port: u16, name: &str, handler: Handler) -> Backend {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind backend");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let conns = Arc::new(AtomicUsize::new(0));
        let reqs = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (c2, r2, s2, st2, nm) = (conns.clone(), reqs.clone(), seen.clone(), stop.clone(), name.to_string());
        let thread = std::thread::spawn(move || {
            let mut workers = Vec::new();
            while !st2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let id = c2.fetch_add(1, Ordering::Relaxed) + 1;
                        let (h, r3, s3, st3) = (handler.clone(), r2.clone(), s2.clone(), st2.clone());
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_nodelay(true);
                        workers.push(std::thread::spawn(move || serve_conn(s, id, h, r3, s3, st3)));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(2)),
                    Err(_) => break,
                }
                workers.retain(|w: &JoinHandle<()>| !w.is_finished());
            }
            for w in workers {
                let _ = w.join();
            }
            let _ = nm;
        });
        Backend { port, name: name.to_string(), conns, reqs, seen, stop, thread: Some(thread) }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> usize {
        self.reqs.load(Ordering::Relaxed)
    }

    pub fn connections(&self) -> usize {
        self.conns.load(Ordering::Relaxed)
    }

    pub fn last(&self) -> Option<Req> {
        self.seen.lock().ok().and_then(|v| v.last().cloned())
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_conn(s: TcpStream, id: usize, h: Handler, reqs: Arc<AtomicUsize>, seen: Arc<Mutex<Vec<Req>>>, stop: Arc<AtomicBool>) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let mut w = match s.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut r = BufReader::new(s);
    loop {
        let req = match read_request(&mut r, id, &stop) {
            Some(req) => req,
            None => return,
        };
        reqs.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut v) = seen.lock() {
            if v.len() < 10_000 {
                v.push(Req { body: if req.body.len() > 4096 { Vec::new() } else { req.body.clone() }, ..req.clone() });
            }
        }
        let head_req = req.method == "HEAD";
        let mut reply = h(&req);
        loop {
            match reply {
                Reply::Delay(d, next) => {
                    let until = Instant::now() + d;
                    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    reply = *next;
                }
                Reply::Hang => {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    return;
                }
                Reply::Reset => {
                    reset(&w);
                    return;
                }
                Reply::Close => {
                    let _ = w.shutdown(Shutdown::Both);
                    return;
                }
                Reply::Raw(bytes) => {
                    if w.write_all(&bytes).is_err() {
                        return;
                    }
                    break;
                }
                Reply::RawThenClose(bytes) => {
                    let _ = w.write_all(&bytes);
                    std::thread::sleep(Duration::from_millis(5));
                    let _ = w.shutdown(Shutdown::Both);
                    return;
                }
                Reply::Send { status, headers, body, framing } => {
                    let mut head = format!("HTTP/1.1 {} X\r\n", status);
                    for (n, v) in &headers {
                        head.push_str(&format!("{}: {}\r\n", n, v));
                    }
                    match framing {
                        Framing::Length => head.push_str(&format!("Content-Length: {}\r\n", body.len())),
                        Framing::Chunked => head.push_str("Transfer-Encoding: chunked\r\n"),
                        Framing::Close => head.push_str("Connection: close\r\n"),
                    }
                    head.push_str("\r\n");
                    if w.write_all(head.as_bytes()).is_err() {
                        return;
                    }
                    if !head_req {
                        let ok = match framing {
                            Framing::Chunked => {
                                let mut ok = true;
                                for piece in body.chunks(7001) {
                                    ok = ok
                                        && w.write_all(format!("{:x}\r\n", piece.len()).as_bytes()).is_ok()
                                        && w.write_all(piece).is_ok()
                                        && w.write_all(b"\r\n").is_ok();
                                }
                                ok && w.write_all(b"0\r\n\r\n").is_ok()
                            }
                            _ => w.write_all(&body).is_ok(),
                        };
                        if !ok {
                            return;
                        }
                    }
                    if framing == Framing::Close {
                        let _ = w.shutdown(Shutdown::Both);
                        return;
                    }
                    break;
                }
            }
        }
        if req.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) {
            let _ = w.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// Closes a socket with RST (SO_LINGER 0).
pub fn reset(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let l = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt on a socket we own, with a valid linger struct.
    unsafe {
        libc::setsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_LINGER, &l as *const _ as *const libc::c_void, std::mem::size_of::<libc::linger>() as u32);
    }
    let _ = s.shutdown(Shutdown::Both);
}

fn read_line_patient(r: &mut BufReader<TcpStream>, stop: &AtomicBool, line: &mut Vec<u8>) -> Option<()> {
    loop {
        match r.read_until(b'\n', line) {
            Ok(0) => return None,
            Ok(_) if line.ends_with(b"\n") => return Some(()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                if stop.load(Ordering::Relaxed) {
                    return None;
                }
            }
            Err(_) => return None,
        }
    }
}

/// Reads exactly `buf.len()` bytes through read timeouts, giving up when `stop` is set.
pub fn read_exact_patient(r: &mut impl Read, stop: &AtomicBool, buf: &mut [u8]) -> Option<()> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => return None,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                if stop.load(Ordering::Relaxed) {
                    return None;
                }
            }
            Err(_) => return None,
        }
    }
    Some(())
}

fn read_request(r: &mut BufReader<TcpStream>, conn: usize, stop: &AtomicBool) -> Option<Req> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        read_line_patient(r, stop, &mut line)?;
        let end = line == b"\r\n" || line == b"\n";
        head.extend_from_slice(&line);
        if end && head.len() > 2 {
            break;
        }
        if end {
            head.clear();
        }
    }
    let mut hs = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut hs);
    req.parse(&head).ok()?;
    let method = req.method?.to_string();
    let path = req.path?.to_string();
    let headers: Vec<(String, String)> = req.headers.iter().map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).to_string())).collect();
    let get = |n: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut line = Vec::new();
            read_line_patient(r, stop, &mut line)?;
            let text = String::from_utf8_lossy(&line).to_string();
            let size = usize::from_str_radix(text.trim().split(';').next()?, 16).ok()?;
            if size == 0 {
                let mut t = Vec::new();
                read_line_patient(r, stop, &mut t)?;
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            read_exact_patient(r, stop, &mut body[start..])?;
            let mut crlf = [0u8; 2];
            read_exact_patient(r, stop, &mut crlf)?;
        }
    } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(n, 0);
        read_exact_patient(r, stop, &mut body)?;
    }
    Some(Req { method, path, headers, body, conn })
}
