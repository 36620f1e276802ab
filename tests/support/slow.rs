//! A backend that is slow on purpose, for the client-abort tests. Like an overloaded Tomcat it
//! has a short accept backlog (`listen(fd, backlog)` through libc) and takes one connection at
//! a time; a `Script` says what it does with each one (answer late, never answer, stall in the
//! middle of a body, read a request body slowly). It records, per connection, the request
//! line it read, the body bytes, and when the connection was closed from pounce's side.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the backend does with each connection, after reading the request head.
#[derive(Clone, Debug)]
pub enum Script {
    /// Waits, answers `200 ok` with `Connection: close`, and closes.
    AnswerAfter(Duration),
    /// Never answers; waits until pounce closes the connection.
    Silent,
    /// Sends `head` and then `part` bytes of body, then nothing more; waits until pounce closes.
    Stall { head: String, part: usize },
    /// Reads the request body `chunk` bytes every `every` (and never answers), until pounce
    /// closes; after `hurry()` as fast as the bytes come.
    SlowRead { chunk: usize, every: Duration },
}

/// What one accepted connection carried.
#[derive(Clone, Debug, Default)]
pub struct ConnRecord {
    /// The request line, once the whole head was read.
    pub request: Option<String>,
    /// Request body bytes read.
    pub body: u64,
    /// When pounce's side was seen closed (EOF or reset).
    pub closed: Option<Instant>,
    pub reset: bool,
}

pub struct SlowBackend {
    pub port: u16,
    conns: Arc<Mutex<Vec<ConnRecord>>>,
    open: Arc<AtomicBool>,
    hurry: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// A listening socket on 127.0.0.1 (any port) with the given accept backlog: with
/// `listen(fd, 1)` Linux completes at most two handshakes ahead of accept(); further SYNs are
/// dropped, so the connecting side stays in SYN-SENT and retransmits (after 1 s, 3 s, 7 s...).
pub fn listen_backlog(backlog: i32) -> TcpListener {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a fresh fd that is wrapped in a TcpListener (closed on drop).
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket");
        let l = TcpListener::from_raw_fd(fd);
        let mut a: libc::sockaddr_in = std::mem::zeroed();
        a.sin_family = libc::AF_INET as libc::sa_family_t;
        a.sin_addr = libc::in_addr { s_addr: u32::from_ne_bytes([127, 0, 0, 1]) };
        assert_eq!(libc::bind(fd, &a as *const _ as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_in>() as u32), 0, "bind");
        assert_eq!(libc::listen(fd, backlog), 0, "listen");
        l
    }
}

/// Fills the accept queue of a listener nobody accepts on: connects until a connect() does
/// not complete within 300 ms (its SYN was dropped). Keep the returned connections open.
pub fn fill_accept_queue(port: u16) -> Vec<TcpStream> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut held = Vec::new();
    while held.len() < 64 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => held.push(s),
            Err(_) => return held,
        }
    }
    panic!("the accept queue of port {} took 64 connections: is the backlog really short?", port);
}

impl SlowBackend {
    /// Accepting from the start.
    pub fn start(backlog: i32, script: Script) -> SlowBackend {
        let b = SlowBackend::start_closed(backlog, script);
        b.open();
        b
    }

    /// Listening but not accepting until `open()`: connections pile up in the accept queue.
    pub fn start_closed(backlog: i32, script: Script) -> SlowBackend {
        let listener = listen_backlog(backlog);
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (open, hurry, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let (c2, o2, h2, s2) = (conns.clone(), open.clone(), hurry.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                if !o2.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                match listener.accept() {
                    // One at a time: the next connection waits in the queue meanwhile.
                    Ok((s, _)) => serve(s, &script, &c2, &h2, &s2),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        SlowBackend { port, conns, open, hurry, stop, thread: Some(thread) }
    }

    pub fn open(&self) {
        self.open.store(true, Ordering::Relaxed);
    }

    /// A slow reader reads at full speed from now on.
    pub fn hurry(&self) {
        self.hurry.store(true, Ordering::Relaxed);
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Connections accepted so far, in order.
    pub fn conns(&self) -> Vec<ConnRecord> {
        self.conns.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Requests whose whole head was read.
    pub fn requests(&self) -> usize {
        self.conns().iter().filter(|c| c.request.is_some()).count()
    }

    /// Request body bytes read, on all connections.
    pub fn body_bytes(&self) -> u64 {
        self.conns().iter().map(|c| c.body).sum()
    }
}

impl Drop for SlowBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn update(conns: &Mutex<Vec<ConnRecord>>, i: usize, f: impl FnOnce(&mut ConnRecord)) {
    if let Ok(mut v) = conns.lock() {
        if let Some(c) = v.get_mut(i) {
            f(c);
        }
    }
}

/// One read with the socket's short timeout: Some(n) bytes (0 = EOF), None on timeout, Err on
/// a reset or other error.
fn read_some(s: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
    match s.read(buf) {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => Ok(None),
        Err(e) => Err(e),
    }
}

fn serve(mut s: TcpStream, script: &Script, conns: &Mutex<Vec<ConnRecord>>, hurry: &AtomicBool, stop: &AtomicBool) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_millis(20)));
    let i = match conns.lock() {
        Ok(mut v) => {
            v.push(ConnRecord::default());
            v.len() - 1
        }
        Err(_) => return,
    };
    let closed = |reset: bool| {
        update(conns, i, |c| {
            c.closed = Some(Instant::now());
            c.reset = reset;
        })
    };
    // The request head (and whatever body bytes came with it).
    let mut head = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let body_start = loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        match read_some(&mut s, &mut buf) {
            Ok(Some(0)) => return closed(false),
            Ok(Some(n)) => head.extend_from_slice(&buf[..n]),
            Ok(None) => {}
            Err(_) => return closed(true),
        }
        if let Some(p) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let line = String::from_utf8_lossy(&head[..head.iter().position(|&b| b == b'\r').unwrap_or(0)]).to_string();
    let extra = (head.len() - body_start) as u64;
    update(conns, i, |c| {
        c.request = Some(line);
        c.body = extra;
    });
    match script {
        Script::AnswerAfter(d) => {
            let until = Instant::now() + *d;
            while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            let _ = s.shutdown(Shutdown::Write);
            // Read what is left (nothing, or a body) until pounce closes, briefly.
            let until = Instant::now() + Duration::from_millis(200);
            while Instant::now() < until {
                match read_some(&mut s, &mut buf) {
                    Ok(Some(0)) | Err(_) => return,
                    _ => {}
                }
            }
        }
        Script::Silent | Script::Stall { .. } => {
            if let Script::Stall { head, part } = script {
                let mut out = head.clone().into_bytes();
                out.resize(out.len() + part, b'x');
                if s.write_all(&out).is_err() {
                    return closed(true);
                }
            }
            while !stop.load(Ordering::Relaxed) {
                match read_some(&mut s, &mut buf) {
                    Ok(Some(0)) => return closed(false),
                    Ok(Some(n)) => update(conns, i, |c| c.body += n as u64),
                    Ok(None) => {}
                    Err(_) => return closed(true),
                }
            }
        }
        Script::SlowRead { chunk, every } => {
            let _ = s.set_nonblocking(true);
            while !stop.load(Ordering::Relaxed) {
                let mut left = if hurry.load(Ordering::Relaxed) { usize::MAX } else { *chunk };
                while left > 0 {
                    let want = left.min(buf.len());
                    match s.read(&mut buf[..want]) {
                        Ok(0) => return closed(false),
                        Ok(n) => {
                            left -= n;
                            update(conns, i, |c| c.body += n as u64);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(_) => return closed(true),
                    }
                }
                std::thread::sleep(if hurry.load(Ordering::Relaxed) { Duration::from_millis(2) } else { *every });
            }
        }
    }
}
