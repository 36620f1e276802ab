//! A bounded load generator for the "under load" tests: keep-alive clients that send GETs and
//! POSTs as fast as answers come, and count every outcome by phase, method and status. Unlike
//! wrk it tells which method failed how, and how a connection ended, which these tests need.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Status(u16),
    /// connect() refused: nothing listens (expected after a graceful stop closed listeners).
    Refused,
    /// A fresh connection closed or reset before any byte of a response.
    NewConnLost,
    /// A reused keep-alive connection closed before any byte of a response (the race every
    /// keep-alive client knows; idempotent requests may be resent).
    ReusedConnLost,
    /// The response broke off or could not be read.
    Broken,
}

#[derive(Default, Debug, Clone)]
pub struct Tally {
    /// (phase, method, outcome) -> count
    pub counts: BTreeMap<(usize, &'static str, Outcome), u64>,
    /// POST ids sent, with their outcome, to check what the backends executed.
    pub posts: Vec<(String, Outcome)>,
    pub latencies: Vec<Duration>,
    /// The longest a GET took to be answered.
    pub slowest_get: Duration,
}

impl Tally {
    pub fn count(&self, phase: Option<usize>, method: Option<&str>, f: impl Fn(Outcome) -> bool) -> u64 {
        self.counts.iter().filter(|((p, m, o), _)| phase.is_none_or(|ph| ph == *p) && method.is_none_or(|mm| mm == *m) && f(*o)).map(|(_, n)| *n).sum()
    }

    pub fn report(&self, phases: &[&str]) -> String {
        let mut out = String::new();
        for (i, name) in phases.iter().enumerate() {
            let mut line = format!("  phase {} ({}):", i, name);
            for ((p, m, o), n) in &self.counts {
                if *p == i {
                    line.push_str(&format!(" {} {:?}={}", m, o, n));
                }
            }
            out.push_str(&line);
            out.push('\n');
        }
        out
    }
}

pub struct Load {
    stop: Arc<AtomicBool>,
    pub phase: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<Tally>>,
}

/// What a client sends: every `post_every`-th request is a POST (0: never).
#[derive(Clone, Copy)]
pub struct Mix {
    pub post_every: usize,
    /// Stop after a refused connect (the server is gone) instead of retrying.
    pub stop_on_refused: bool,
}

impl Load {
    pub fn start(port: u16, clients: usize, mix: Mix) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let phase = Arc::new(AtomicUsize::new(0));
        let threads = (0..clients)
            .map(|c| {
                let (stop, phase) = (stop.clone(), phase.clone());
                std::thread::spawn(move || client(port, c, mix, &stop, &phase))
            })
            .collect();
        Load { stop, phase, threads }
    }

    pub fn set_phase(&self, p: usize) {
        self.phase.store(p, Ordering::SeqCst);
    }

    pub fn finish(self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Tally::default();
        for t in self.threads {
            if let Ok(t) = t.join() {
                for (k, n) in t.counts {
                    *all.counts.entry(k).or_default() += n;
                }
                all.posts.extend(t.posts);
                all.latencies.extend(t.latencies);
                all.slowest_get = all.slowest_get.max(t.slowest_get);
            }
        }
        all.latencies.sort();
        all
    }
}

fn client(port: u16, id: usize, mix: Mix, stop: &AtomicBool, phase: &AtomicUsize) -> Tally {
    let mut tally = Tally::default();
    let mut conn: Option<(BufReader<TcpStream>, usize)> = None;
    let mut seq = 0usize;
    // Bounded in time even if the test forgets to stop it.
    let deadline = Instant::now() + Duration::from_secs(900);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        seq += 1;
        let ph = phase.load(Ordering::SeqCst);
        let post = mix.post_every > 0 && seq.is_multiple_of(mix.post_every);
        let method = if post { "POST" } else { "GET" };
        let req_id = format!("{}-{}", id, seq);
        if conn.is_none() {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(15)));
                    let _ = s.set_nodelay(true);
                    conn = Some((BufReader::new(s), 0));
                }
                Err(_) => {
                    *tally.counts.entry((ph, method, Outcome::Refused)).or_default() += 1;
                    if mix.stop_on_refused {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            }
        }
        let Some((r, used)) = conn.as_mut() else { continue };
        let raw = if post {
            format!("POST /post/{} HTTP/1.1\r\nHost: load\r\nX-Req: {}\r\nContent-Length: {}\r\n\r\n{}", req_id, req_id, req_id.len(), req_id)
        } else {
            format!("GET /get/{} HTTP/1.1\r\nHost: load\r\nX-Req: {}\r\n\r\n", req_id, req_id)
        };
        let reused = *used > 0;
        let t = Instant::now();
        let outcome = match r.get_mut().write_all(raw.as_bytes()) {
            Err(_) => {
                if reused {
                    Outcome::ReusedConnLost
                } else {
                    Outcome::NewConnLost
                }
            }
            Ok(()) => match super::read_response(r, false) {
                Ok(resp) => {
                    *used += 1;
                    let close = resp.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
                    if close {
                        conn = None;
                    }
                    Outcome::Status(resp.status)
                }
                Err(e) => {
                    conn = None;
                    let nothing = e.kind() == std::io::ErrorKind::UnexpectedEof && e.to_string().contains("eof in head: \"\"")
                        || e.kind() == std::io::ErrorKind::ConnectionReset;
                    match (nothing, reused) {
                        (true, true) => Outcome::ReusedConnLost,
                        (true, false) => Outcome::NewConnLost,
                        (false, _) => Outcome::Broken,
                    }
                }
            },
        };
        if matches!(outcome, Outcome::Status(_)) {
            tally.latencies.push(t.elapsed());
            if !post {
                tally.slowest_get = tally.slowest_get.max(t.elapsed());
            }
        } else {
            conn = None;
        }
        // Counted in the phase in which the request ended.
        let ph = phase.load(Ordering::SeqCst);
        *tally.counts.entry((ph, method, outcome)).or_default() += 1;
        if post {
            tally.posts.push((req_id, outcome));
        }
    }
    tally
}

/// A helper process's shared record of what it executed (one line per request).
pub fn read_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path).map(|s| s.lines().map(str::to_string).collect()).unwrap_or_default()
}
