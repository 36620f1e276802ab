//! Bounded memory: 1 GiB through pounce each way, with a slow reader and with a slow backend,
//! while pounce's RSS is sampled; and 10,000 idle keep-alive connections. Bodies are streamed
//! by a raw backend here (never held whole) and checked byte for byte.
//! `POUNCE_SOAK_GIB` makes the transfers larger (`make soak`).

mod support;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

const MIB: u64 = 1 << 20;

fn size() -> u64 {
    soak("POUNCE_SOAK_GIB", 1) << 30
}

/// The byte at `offset` of every test body: a pattern that catches lost or repeated data.
/// Kept as a table so checking and filling are slice compares and copies (fast unoptimized too).
fn pattern_table() -> &'static [u8] {
    static TABLE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| (0..(BUF + 251)).map(|i| (i % 251) as u8).collect())
}

const BUF: usize = 256 * 1024;

fn pattern_at(offset: u64, len: usize) -> &'static [u8] {
    let start = (offset % 251) as usize;
    &pattern_table()[start..start + len]
}

/// Reads `len` bytes (slowly while `slow` is set) that should be the pattern from `offset` on;
/// returns the bytes read.
fn drain_checked(r: &mut impl Read, offset: u64, len: u64, slow: &AtomicBool) -> u64 {
    let mut buf = vec![0u8; BUF];
    let mut got = 0u64;
    while got < len {
        let want = ((len - got) as usize).min(if slow.load(Ordering::Relaxed) { 64 * 1024 } else { buf.len() });
        let n = match r.read(&mut buf[..want]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        assert!(buf[..n] == *pattern_at(offset + got, n), "wrong bytes in {}..{}", offset + got, offset + got + n as u64);
        got += n as u64;
        if slow.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    got
}

fn write_pattern(w: &mut impl Write, len: u64, chunked: bool) -> std::io::Result<()> {
    let mut sent = 0u64;
    while sent < len {
        let n = ((len - sent) as usize).min(BUF);
        if chunked {
            w.write_all(format!("{:x}\r\n", n).as_bytes())?;
        }
        w.write_all(pattern_at(sent, n))?;
        if chunked {
            w.write_all(b"\r\n")?;
        }
        sent += n as u64;
    }
    if chunked {
        w.write_all(b"0\r\n\r\n")?;
    }
    Ok(())
}

/// A one-connection-at-a-time backend: `GET` gets `len` pattern bytes; a body is read (slowly
/// while `slow`) and checked, and the answer says how many bytes arrived.
struct StreamBackend {
    port: u16,
    slow: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl StreamBackend {
    fn start(len: u64) -> StreamBackend {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        l.set_nonblocking(true).expect("nonblocking");
        let (slow, received, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let (slow2, rec2, stop2) = (slow.clone(), received.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let Ok((c, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = c.set_nonblocking(false);
                let _ = c.set_read_timeout(Some(Duration::from_secs(30)));
                let mut r = BufReader::new(c);
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    head.push_str(&line);
                    if line == "\r\n" {
                        break;
                    }
                }
                let lower = head.to_ascii_lowercase();
                let mut w = r.get_ref().try_clone().expect("clone");
                if head.starts_with("GET") {
                    // One request per connection, and it says so (pounce keeps connections by default).
                    let _ = w.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", len).as_bytes());
                    let _ = write_pattern(&mut w, len, false);
                } else {
                    let got = if lower.contains("transfer-encoding: chunked") {
                        let mut dec = ChunkedReader { r: &mut r, left: 0, done: false };
                        drain_checked(&mut dec, 0, u64::MAX, &slow2)
                    } else {
                        let n = lower.split("content-length:").nth(1).and_then(|v| v.lines().next()).and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0);
                        drain_checked(&mut r, 0, n, &slow2)
                    };
                    rec2.store(got, Ordering::Relaxed);
                    let text = got.to_string();
                    let _ = w.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}", text.len(), text).as_bytes());
                }
            }
        });
        StreamBackend { port, slow, received, stop }
    }
}

impl Drop for StreamBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Chunked body reader for the backend above.
struct ChunkedReader<'a, R: BufRead> {
    r: &'a mut R,
    left: u64,
    done: bool,
}

impl<R: BufRead> Read for ChunkedReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        if self.left == 0 {
            let mut line = String::new();
            self.r.read_line(&mut line)?;
            if line.trim().is_empty() {
                line.clear();
                self.r.read_line(&mut line)?;
            }
            self.left = u64::from_str_radix(line.trim(), 16).map_err(|_| std::io::Error::other(format!("chunk line {:?}", line)))?;
            if self.left == 0 {
                let mut end = String::new();
                self.r.read_line(&mut end)?;
                self.done = true;
                return Ok(0);
            }
        }
        let n = (buf.len() as u64).min(self.left) as usize;
        let n = self.r.read(&mut buf[..n])?;
        self.left -= n as u64;
        if self.left == 0 {
            let mut crlf = [0u8; 2];
            self.r.read_exact(&mut crlf)?;
        }
        Ok(n)
    }
}

fn start_pounce(backend: &StreamBackend) -> Pounce {
    Pounce::start(
        &Conf::new()
            .http("client_max_body_size 0;")
            .http("proxy_read_timeout 60s;")
            .http("send_timeout 60s;")
            .http("client_body_timeout 60s;")
            .upstream(Upstream::new("app").server(format!("127.0.0.1:{}", backend.port)))
            .server(Server::new().location(Location::new("/").proxy_pass("http://app"))),
    )
}

/// Samples pounce's RSS every 50 ms while `f` runs; returns (baseline, peak) in KiB.
fn with_rss_sampling(pid: u32, f: impl FnOnce()) -> (u64, u64) {
    let base = rss_kib(pid);
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(base));
    let (d2, p2) = (done.clone(), peak.clone());
    let sampler = std::thread::spawn(move || {
        while !d2.load(Ordering::Relaxed) {
            p2.fetch_max(rss_kib(pid), Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    f();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    (base, peak.load(Ordering::Relaxed))
}

fn download(slow_reader: bool) {
    let len = size();
    let b = StreamBackend::start(len);
    let p = start_pounce(&b);
    let _ = p.get("/warm");
    let t = Instant::now();
    let mut got = 0;
    let (base, peak) = with_rss_sampling(p.child.id(), || {
        let mut s = connect(p.port);
        s.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
        let mut r = BufReader::new(s);
        let mut line = String::new();
        while r.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
            line.clear();
        }
        let slow = AtomicBool::new(slow_reader);
        if slow_reader {
            // Three seconds at about 1.3 MiB/s while the backend could send at full speed.
            let first = drain_checked(&mut (&mut r).take(4 * MIB), 0, 4 * MIB, &slow);
            slow.store(false, Ordering::Relaxed);
            got = first + drain_checked(&mut r, first, len - first, &slow);
        } else {
            got = drain_checked(&mut r, 0, len, &slow);
        }
    });
    let growth = peak.saturating_sub(base);
    println!(
        "download {} MiB{}: {} MiB in {:.1} s, pounce RSS {} KiB -> peak {} KiB (growth {} KiB)",
        len / MIB,
        if slow_reader { " (slow reader first)" } else { "" },
        got / MIB,
        t.elapsed().as_secs_f64(),
        base,
        peak,
        growth
    );
    assert_eq!(got, len, "every byte arrived, in order");
    assert!(growth < 32 * 1024, "RSS growth {} KiB", growth);
}

fn upload(slow_backend: bool, chunked: bool) {
    let len = size();
    let b = StreamBackend::start(0);
    b.slow.store(slow_backend, Ordering::Relaxed);
    let p = start_pounce(&b);
    let _ = p.get("/warm");
    let t = Instant::now();
    let mut answer = String::new();
    let slow_flag = b.slow.clone();
    let (base, peak) = with_rss_sampling(p.child.id(), || {
        let mut s = connect(p.port);
        let head = if chunked {
            "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_string()
        } else {
            format!("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", len)
        };
        s.write_all(head.as_bytes()).expect("head");
        let mut w = s.try_clone().expect("clone");
        let writer = std::thread::spawn(move || write_pattern(&mut w, len, chunked).is_ok());
        if slow_backend {
            std::thread::sleep(Duration::from_secs(3));
            slow_flag.store(false, Ordering::Relaxed);
        }
        assert!(writer.join().unwrap_or(false), "upload written");
        let resp = read_response(&mut BufReader::new(s), false).expect("answer");
        assert_eq!(resp.status, 200);
        answer = resp.text();
    });
    let growth = peak.saturating_sub(base);
    println!(
        "upload {} MiB{}{}: backend received {} bytes in {:.1} s, pounce RSS {} KiB -> peak {} KiB (growth {} KiB)",
        len / MIB,
        if chunked { " chunked" } else { "" },
        if slow_backend { " (slow backend first)" } else { "" },
        answer,
        t.elapsed().as_secs_f64(),
        base,
        peak,
        growth
    );
    assert_eq!(answer, len.to_string());
    assert_eq!(b.received.load(Ordering::Relaxed), len);
    assert!(growth < 32 * 1024, "RSS growth {} KiB", growth);
}

#[test]
fn download_of_1_gib_with_flat_memory() {
    download(false);
}

#[test]
fn download_of_1_gib_to_a_slow_reader_with_flat_memory() {
    download(true);
}

#[test]
fn upload_of_1_gib_with_flat_memory() {
    upload(false, false);
}

#[test]
fn chunked_upload_of_1_gib_to_a_slow_backend_with_flat_memory() {
    upload(true, true);
}

#[test]
fn ten_thousand_idle_keepalive_connections() {
    let limit = raise_nofile();
    assert!(limit >= 10_500, "this test needs an open-file limit of 10,500 (hard limit {})", limit);
    let b = Backend::named("a");
    let p = Pounce::start(
        &Conf::new()
            .events("worker_connections 10240;")
            .upstream(Upstream::new("app").server(b.addr()).line("keepalive 256;"))
            .server(Server::new().location(Location::new("/").proxy_pass("http://app"))),
    );
    let _ = p.get("/");
    let base = rss_kib(p.child.id());
    let mut held = Vec::with_capacity(10_000);
    let t = Instant::now();
    for i in 0..10_000 {
        let s = TcpStream::connect(("127.0.0.1", p.port)).unwrap_or_else(|e| panic!("connection {}: {}", i, e));
        held.push(s);
    }
    // One request on each (200 at a time, so the backend is not flooded), answered, then the
    // connections stay idle.
    for (batch_no, batch) in held.chunks_mut(200).enumerate() {
        for s in batch.iter_mut() {
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
        }
        for (i, s) in batch.iter_mut().enumerate() {
            s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
            let r = read_response(&mut BufReader::new(&*s), false).unwrap_or_else(|e| panic!("answer {}: {}", batch_no * 200 + i, e));
            assert_eq!(r.status, 200, "connection {}: {}", batch_no * 200 + i, r.raw_head);
        }
    }
    std::thread::sleep(Duration::from_millis(2500));
    let idle = rss_kib(p.child.id());
    // Still answering, next to all of them.
    assert_eq!(p.get("/").status, 200);
    let per_conn = (idle.saturating_sub(base) * 1024) / 10_000;
    println!(
        "10,000 idle keep-alive connections (set up in {:.1} s): pounce RSS {} KiB -> {} KiB, {} bytes per connection",
        t.elapsed().as_secs_f64(),
        base,
        idle,
        per_conn
    );
    assert!(idle - base < 64 * 1024, "idle connections cost {} KiB", idle - base);
}
