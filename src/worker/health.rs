//! Active health checks (`health_check` in an upstream): every server is probed by exactly
//! one worker (they are dealt out round-robin), from that worker's event loop, without
//! blocking. HTTP upstreams get `GET uri` (2xx/3xx is healthy), AJP upstreams a CPING that
//! must be answered by a CPONG. `fails` failed probes in a row take a server out (shared
//! atomics, so every worker stops using it), `passes` good ones bring it back. Each probe's
//! outcome, end time and latency are kept for the status page (`upstream::stats`).

use crate::config::{BackendProtocol, HealthCheck};
use crate::runtime::Runtime;
use crate::upstream::stats::{Cause, Outcome};
use crate::upstream::{now_ms, UpstreamState};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use std::io::{self, Read, Write};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// Tokens of probe sockets: this bit plus the probe's index.
pub(crate) const PROBE_BIT: usize = 1 << (usize::BITS - 3);

#[derive(Debug, PartialEq, Eq)]
enum St {
    Idle,
    Connecting,
    Talking,
}

pub(crate) struct Probe {
    upstream: usize,
    peer: usize,
    /// What to send: the HTTP request or the CPING packet.
    request: Vec<u8>,
    ajp: bool,
    st: St,
    stream: Option<TcpStream>,
    sent: usize,
    got: [u8; 16],
    got_len: usize,
    next_at: Instant,
    deadline: Instant,
    /// When the current probe began (its latency on the status page).
    started: Instant,
}

/// The probes this worker owns: server number `g` (counted over all upstreams with a
/// `health_check`) belongs to worker `g % workers`.
pub(crate) fn probes_for(rt: &Runtime, worker: usize, workers: usize, now: Instant) -> Vec<Probe> {
    let mut out = Vec::new();
    let mut g = 0;
    for (ui, up) in rt.upstreams.iter().enumerate() {
        let Some(hc) = &up.conf.health_check else { continue };
        for (pi, p) in up.conf.servers.iter().enumerate() {
            if g % workers.max(1) == worker {
                let request = if up.conf.protocol == BackendProtocol::Ajp {
                    crate::backend::ajp_codec::CPING_PACKET.to_vec()
                } else {
                    format!("GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: pounce-health-check\r\nConnection: close\r\n\r\n", hc.uri, p.name).into_bytes()
                };
                // Spread the first probes a little so servers are not all hit at once.
                let first = now + Duration::from_millis(50 * (out.len() as u64 % 20));
                out.push(Probe {
                    upstream: ui,
                    peer: pi,
                    request,
                    ajp: up.conf.protocol == BackendProtocol::Ajp,
                    st: St::Idle,
                    stream: None,
                    sent: 0,
                    got: [0; 16],
                    got_len: 0,
                    next_at: first,
                    deadline: first,
                    started: first,
                });
            }
            g += 1;
        }
    }
    out
}

impl Probe {
    /// When this probe next needs the loop's attention.
    pub(crate) fn due(&self) -> Instant {
        if self.st == St::Idle {
            self.next_at
        } else {
            self.deadline
        }
    }

    /// Starts a due probe, or fails one past its deadline.
    pub(crate) fn tick(&mut self, rt: &Runtime, registry: &Registry, index: usize, now: Instant) {
        let up = &rt.upstreams[self.upstream];
        let Some(hc) = &up.conf.health_check else { return };
        match self.st {
            St::Idle if now >= self.next_at => {
                self.next_at = now + hc.interval;
                self.deadline = now + hc.timeout;
                self.started = now;
                match TcpStream::connect(up.conf.servers[self.peer].addr) {
                    Ok(mut s) => {
                        if registry.register(&mut s, Token(PROBE_BIT | index), Interest::READABLE | Interest::WRITABLE).is_ok() {
                            self.stream = Some(s);
                            self.st = St::Connecting;
                            self.sent = 0;
                            self.got_len = 0;
                        } else {
                            self.finish(up, hc, registry, Outcome::failed(Cause::ConnectError), "cannot register");
                        }
                    }
                    Err(e) => self.finish(up, hc, registry, Outcome::failed(Cause::of_connect(&e)), &format!("connect() failed ({})", e)),
                }
            }
            St::Connecting if now >= self.deadline => self.finish(up, hc, registry, Outcome::failed(Cause::ConnectTimeout), "connect timed out"),
            St::Talking if now >= self.deadline => {
                let cause = if self.ajp { Cause::Cping } else { Cause::Timeout };
                self.finish(up, hc, registry, Outcome::failed(cause), "timed out")
            }
            _ => {}
        }
    }

    /// Drives the probe on readiness.
    pub(crate) fn on_event(&mut self, rt: &Runtime, registry: &Registry) {
        let up = &rt.upstreams[self.upstream];
        let Some(hc) = &up.conf.health_check else { return };
        let Some(s) = self.stream.as_mut() else { return };
        if self.st == St::Connecting {
            match s.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => return self.finish(up, hc, registry, Outcome::failed(Cause::of_connect(&e)), &format!("connect() failed ({})", e)),
            }
            match s.peer_addr() {
                Ok(_) => self.st = St::Talking,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => return self.finish(up, hc, registry, Outcome::failed(Cause::of_connect(&e)), &format!("connect() failed ({})", e)),
            }
        }
        // Once connected, an AJP probe that goes wrong is a failed CPING.
        let (lost, garbled) = if self.ajp { (Cause::Cping, Cause::Cping) } else { (Cause::Reset, Cause::InvalidResponse) };
        while self.sent < self.request.len() {
            match s.write(&self.request[self.sent..]) {
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.finish(up, hc, registry, Outcome::failed(lost), &format!("send() failed ({})", e)),
            }
        }
        let need = if self.ajp { 5 } else { 12 };
        while self.got_len < need {
            match s.read(&mut self.got[self.got_len..need]) {
                Ok(0) => return self.finish(up, hc, registry, Outcome::failed(lost), "closed before answering"),
                Ok(n) => self.got_len += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.finish(up, hc, registry, Outcome::failed(lost), &format!("recv() failed ({})", e)),
            }
        }
        let outcome = if self.ajp {
            if self.got[..5] == [0x41, 0x42, 0x00, 0x01, 0x09] {
                Outcome::PASSED
            } else {
                Outcome::failed(garbled)
            }
        } else {
            // "HTTP/1.x NNN": 2xx and 3xx are healthy.
            let code = std::str::from_utf8(&self.got[9..12]).ok().and_then(|c| c.parse::<u16>().ok()).filter(|c| (100..=999).contains(c));
            match code {
                Some(c) if self.got.starts_with(b"HTTP/1.") && self.got[8] == b' ' => Outcome::status(c, (200..400).contains(&c)),
                _ => Outcome::failed(garbled),
            }
        };
        self.finish(up, hc, registry, outcome, "bad answer");
    }

    /// Settles a probe: its result on the status page, and the server's health.
    fn finish(&mut self, up: &UpstreamState, hc: &HealthCheck, registry: &Registry, outcome: Outcome, why: &str) {
        if let Some(mut s) = self.stream.take() {
            let _ = registry.deregister(&mut s);
        }
        self.st = St::Idle;
        let conf = &up.conf.servers[self.peer];
        let state = &up.peers[self.peer];
        let now = now_ms();
        state.stats.record_check(outcome, self.started.elapsed(), now);
        let why = match outcome.cause {
            Some(Cause::Status | Cause::InvalidResponse | Cause::Cping) => outcome.describe(),
            _ => why.to_string(),
        };
        if matches!(outcome.cause, None | Some(Cause::Status)) {
            // It answered: not frozen, whatever the answer.
            up.heard_from(self.peer, now);
        }
        if outcome.cause.is_none() {
            state.hc_fails.store(0, Relaxed);
            let passes = state.hc_passes.fetch_add(1, Relaxed) + 1;
            if state.hc_down.load(Relaxed) && passes >= hc.passes {
                state.hc_down.store(false, Relaxed);
                // Passive failures from before the outage no longer count.
                state.fails.store(0, Relaxed);
                if !conf.slow_start.is_zero() {
                    state.recovered_at.store(now, Relaxed);
                }
                log::warn!("health check: server {} in upstream \"{}\" is up again", conf.addr, up.conf.name);
            }
        } else {
            state.hc_passes.store(0, Relaxed);
            let fails = state.hc_fails.fetch_add(1, Relaxed) + 1;
            if !state.hc_down.load(Relaxed) && fails >= hc.fails {
                state.stats.hc_down_since.store(now, Relaxed);
                state.hc_down.store(true, Relaxed);
                log::warn!("health check: server {} in upstream \"{}\" is down: {}", conf.addr, up.conf.name, why);
                crate::upstream::frozen::announce_down();
            } else {
                log::debug!("health check of {} failed: {}", conf.addr, why);
            }
        }
    }

    pub(crate) fn stop(&mut self, registry: &Registry) {
        if let Some(mut s) = self.stream.take() {
            let _ = registry.deregister(&mut s);
        }
        self.st = St::Idle;
    }
}
