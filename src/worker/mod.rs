//! A worker: one thread, one `mio::Poll`, a slab of sessions, its own buffer pool, balancer
//! state, idle backend connections and timers. Nothing here is shared with other workers
//! except the read-only `Runtime` and the per-peer atomics inside it.

pub(crate) mod health;
pub(crate) mod listener;
mod watch;

use crate::logging::access::AccessLog;
use crate::proxy::session::Session;
use crate::proxy::Closed;
use crate::reactor::timer::{settle, Due};
use crate::reactor::{Ctx, Owner, BACKEND_BIT};
use crate::runtime::Runtime;
use crate::transport::{ClientTransport, Plain, TlsConn};
use crate::upstream::keepalive::{IdleConn, Peek};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) const WAKER: Token = Token(usize::MAX - 1);
const LISTENER_BASE: usize = usize::MAX - 2 - 4096;

/// Commands from the master, read after every wake-up.
pub(crate) const CMD_RUN: u8 = 0;
/// Graceful: stop accepting, finish in-flight requests, exit.
pub(crate) const CMD_QUIT: u8 = 1;
/// Fast: exit now.
pub(crate) const CMD_STOP: u8 = 2;

pub(crate) struct Control {
    pub(crate) cmd: AtomicU8,
    /// The access logs are to be reopened (SIGUSR1): set by the master, taken by the worker.
    pub(crate) reopen: AtomicBool,
    pub(crate) waker: Waker,
}

impl Control {
    pub(crate) fn send(&self, cmd: u8) {
        self.cmd.store(cmd, Ordering::Release);
        let _ = self.waker.wake();
    }

    pub(crate) fn reopen_logs(&self) {
        self.reopen.store(true, Ordering::Release);
        let _ = self.waker.wake();
    }
}

/// How long a draining worker keeps idle keep-alive connections open for a request that may
/// already be on its way.
const DRAIN_IDLE_GRACE: Duration = Duration::from_millis(1000);
/// Timer entries purged in one pass worth handing their memory back to the kernel (about
/// 100 KiB).
const PURGED_WORTH_TRIM: usize = 4096;

pub(crate) struct Worker {
    id: usize,
    poll: Poll,
    listeners: Vec<(TcpListener, usize)>,
    sessions: Slab<Session>,
    ctx: Ctx,
    control: Arc<Control>,
    accept_retry: bool,
    /// accept() failures not reported yet, and when the last report was written.
    accept_errors: u64,
    accept_error_logged: Option<Instant>,
    /// The active health checks this worker runs.
    probes: Vec<health::Probe>,
    /// Servers that go out while requests wait on them (`watch`).
    watch: watch::Watch,
}

impl Worker {
    /// Prepares a worker; `listeners` pairs each socket with its index in `cfg.http.listens`.
    pub(crate) fn new(
        id: usize,
        rt: Arc<Runtime>,
        poll: Poll,
        listeners: Vec<(std::net::TcpListener, usize)>,
        control: Arc<Control>,
    ) -> std::io::Result<Worker> {
        let registry = poll.registry().try_clone()?;
        let mut mio_listeners = Vec::new();
        for (i, (l, idx)) in listeners.into_iter().enumerate() {
            l.set_nonblocking(true)?;
            let mut ml = TcpListener::from_std(l);
            registry.register(&mut ml, Token(LISTENER_BASE + i), Interest::READABLE)?;
            mio_listeners.push((ml, idx));
        }
        let mut access = Vec::new();
        for path in &rt.cfg.http.access_logs {
            access.push(AccessLog::open(path).map_err(|e| std::io::Error::new(e.kind(), format!("cannot open access log \"{}\": {}", path.display(), e)))?);
        }
        let probes = health::probes_for(&rt, id, rt.cfg.worker_processes, Instant::now());
        let watch = watch::Watch::new(rt.upstreams.iter().any(|u| u.conf.frozen_timeout.is_some()), Instant::now());
        let ctx = Ctx::new(id, rt, registry, access);
        Ok(Worker {
            id,
            poll,
            listeners: mio_listeners,
            sessions: Slab::with_capacity(1024),
            ctx,
            control,
            accept_retry: false,
            accept_errors: 0,
            accept_error_logged: None,
            probes,
            watch,
        })
    }

    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut last_housekeeping = Instant::now();
        let mut drain_deadline: Option<Instant> = None;
        log::debug!("worker {} started (generation {})", self.id, self.ctx.rt.generation);
        loop {
            let mut timeout = self.ctx.timers.next_due(Instant::now()).map_or(Duration::from_secs(1), |d| d.min(Duration::from_secs(1)));
            if self.accept_retry {
                timeout = timeout.min(Duration::from_millis(100));
            }
            if let Some(due) = self.probes.iter().map(|p| p.due()).min() {
                timeout = timeout.min(due.saturating_duration_since(Instant::now()));
            }
            if let Some(limit) = self.watch_timeout() {
                timeout = timeout.min(limit);
            }
            if let Err(e) = self.poll.poll(&mut events, Some(timeout + Duration::from_micros(500))) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    log::error!("worker {}: epoll_wait() failed: {}", self.id, e);
                    return;
                }
            }
            self.ctx.now = Instant::now();
            self.ctx.now_ms = crate::upstream::ms_at(self.ctx.now);
            self.ctx.clock.tick();
            for ev in events.iter() {
                let t = ev.token();
                if t == WAKER {
                    continue;
                }
                if t.0 >= LISTENER_BASE {
                    self.accept(t.0 - LISTENER_BASE);
                } else if t.0 & health::PROBE_BIT != 0 {
                    if let Some(p) = self.probes.get_mut(t.0 & !health::PROBE_BIT) {
                        p.on_event(&self.ctx.rt, &self.ctx.registry);
                    }
                } else if t.0 & BACKEND_BIT != 0 {
                    match self.ctx.backends.get(t.0 & !BACKEND_BIT).copied() {
                        Some(Owner::Session(key)) => {
                            let Some(s) = self.sessions.get_mut(key) else { continue };
                            if let Err(cause) = s.on_backend_event(&mut self.ctx, ev) {
                                self.remove(key, cause);
                            }
                        }
                        // An idle backend connection stirred: closed, or stray bytes? (An edge
                        // queued while it was still busy is no reason to drop it.)
                        Some(Owner::Idle(idle)) if ev.is_readable() || ev.is_read_closed() || ev.is_error() => self.idle_backend_stirred(idle),
                        Some(Owner::Idle(_)) | None => {}
                    }
                } else {
                    let key = t.0;
                    let Some(s) = self.sessions.get_mut(key) else { continue };
                    if let Err(cause) = s.on_client_event(&mut self.ctx, ev) {
                        self.remove(key, cause);
                    }
                }
            }
            if self.accept_retry {
                self.accept_retry = false;
                for i in 0..self.listeners.len() {
                    self.accept(i);
                }
            }
            if !self.ctx.draining {
                for (i, p) in self.probes.iter_mut().enumerate() {
                    if p.due() <= self.ctx.now {
                        p.tick(&self.ctx.rt, &self.ctx.registry, i, self.ctx.now);
                    }
                }
            }
            while let Some((queued, key)) = self.ctx.timers.pop_due(self.ctx.now) {
                let Some(s) = self.sessions.get_mut(key) else { continue };
                if let Due::Fire(wait) = settle(&mut self.ctx.timers, key, queued, &mut s.timer, self.ctx.now) {
                    if let Err(cause) = s.on_timeout(&mut self.ctx, wait) {
                        self.remove(key, cause);
                    }
                }
            }
            self.watch_servers();
            if self.control.reopen.load(Ordering::Relaxed) && self.control.reopen.swap(false, Ordering::AcqRel) {
                for log in &mut self.ctx.access {
                    log.reopen();
                }
            }
            match self.control.cmd.load(Ordering::Acquire) {
                CMD_STOP => break,
                CMD_QUIT if !self.ctx.draining => {
                    self.start_draining();
                    drain_deadline = Some(self.ctx.now + self.ctx.rt.cfg.worker_shutdown_timeout);
                }
                _ => {}
            }
            if self.ctx.draining {
                // Idle connections get a moment first: a request already on its way is served
                // (with Connection: close) instead of meeting a closed connection.
                if let Some(cutoff) = self.ctx.now.checked_sub(DRAIN_IDLE_GRACE) {
                    let idle: Vec<usize> = self.sessions.iter().filter(|(_, s)| s.idle_before(cutoff)).map(|(k, _)| k).collect();
                    for k in idle {
                        self.remove(k, Closed::ByUs);
                    }
                }
                if self.sessions.is_empty() || drain_deadline.is_some_and(|d| self.ctx.now >= d) {
                    break;
                }
            }
            if self.ctx.now.duration_since(last_housekeeping) >= Duration::from_secs(1) {
                last_housekeeping = self.ctx.now;
                self.housekeeping();
            }
            for log in &mut self.ctx.access {
                log.flush();
            }
            self.ctx.conns = self.sessions.len();
            self.ctx.publish_now_and_then();
        }
        let keys: Vec<usize> = self.sessions.iter().map(|(k, _)| k).collect();
        for k in keys {
            self.remove(k, Closed::ByUs);
        }
        self.withdraw_votes();
        for mut c in self.ctx.keepalive.drain() {
            self.ctx.close_backend(&mut c.stream, c.token);
        }
        for log in &mut self.ctx.access {
            log.flush();
        }
        log::debug!("worker {} exiting", self.id);
    }

    fn accept(&mut self, i: usize) {
        if self.ctx.draining {
            return;
        }
        let Some((listener, listen_idx)) = self.listeners.get(i) else { return };
        let listen_idx = *listen_idx;
        loop {
            match listener.accept() {
                Ok((stream, addr)) => {
                    if self.sessions.len() >= self.ctx.rt.cfg.worker_connections {
                        log::error!("{} worker_connections are not enough, dropping connection from {}", self.ctx.rt.cfg.worker_connections, addr);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let listen = &self.ctx.rt.cfg.http.listens[listen_idx];
                    let (local_port, proxy_protocol) = (listen.addr.port(), listen.proxy_protocol);
                    let entry = self.sessions.vacant_entry();
                    let key = entry.key();
                    let transport = match self.ctx.rt.tls.listener(listen_idx) {
                        Some(tls) => ClientTransport::Tls(Box::new(TlsConn::new(stream, addr, tls.clone()))),
                        None => ClientTransport::Plain(Plain::new(stream)),
                    };
                    let serial = self.ctx.next_serial();
                    let mut s = Session::new(key, transport, addr, local_port, listen_idx, self.ctx.now, serial, proxy_protocol);
                    if let Err(e) = s.register(&mut self.ctx) {
                        log::error!("register client {}: {}", addr, e);
                        continue;
                    }
                    entry.insert(s);
                    self.ctx.accepted += 1;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted || e.kind() == std::io::ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    // EMFILE and friends: try again shortly rather than spin; said once a
                    // second at most.
                    self.accept_errors += 1;
                    if self.accept_error_logged.is_none_or(|t| self.ctx.now.duration_since(t) >= Duration::from_secs(1)) {
                        let more = if self.accept_errors > 1 { format!(" ({} times since the last report)", self.accept_errors) } else { String::new() };
                        log::error!("accept() failed: {}{}", e, more);
                        self.accept_error_logged = Some(self.ctx.now);
                        self.accept_errors = 0;
                    }
                    self.accept_retry = true;
                    break;
                }
            }
        }
    }

    fn remove(&mut self, key: usize, cause: Closed) {
        if let Some(s) = self.sessions.try_remove(key) {
            s.close(&mut self.ctx, cause);
        }
    }

    fn start_draining(&mut self) {
        log::info!("worker {}: gracefully shutting down", self.id);
        // Connections the kernel already accepted for us are taken and served, not reset
        // when the listening socket closes.
        for i in 0..self.listeners.len() {
            self.accept(i);
        }
        self.ctx.draining = true;
        for (mut l, _) in self.listeners.drain(..) {
            let _ = self.ctx.registry.deregister(&mut l);
        }
        for mut c in self.ctx.keepalive.drain() {
            self.ctx.close_backend(&mut c.stream, c.token);
        }
        for p in &mut self.probes {
            p.stop(&self.ctx.registry);
        }
    }

    /// An idle backend connection stirred: closed by the backend (whose idle timeout this
    /// may teach), or stray bytes? Either way it goes. (An edge queued while it was still
    /// busy is no reason to drop it.)
    fn idle_backend_stirred(&mut self, key: usize) {
        let peek = match self.ctx.keepalive.get_mut(key) {
            Some(c) => c.peek(),
            None => return,
        };
        if peek == Peek::Clean {
            return;
        }
        if let Some(mut c) = self.ctx.keepalive.remove(key) {
            if peek == Peek::Closed {
                let ups = &self.ctx.rt.upstreams[c.upstream];
                ups.peers[c.peer].learn_idle_close(self.ctx.now.duration_since(c.since), ups.conf.keepalive_timeout);
            }
            self.ctx.close_backend(&mut c.stream, c.token);
        }
    }

    fn housekeeping(&mut self) {
        // Timer entries of sessions gone (a storm of short connections leaves many).
        let sessions = &self.sessions;
        let purged = self.ctx.timers.purge(sessions.len(), |key, at| sessions.get(key).is_some_and(|s| s.timer.waits_on(at)));
        // Keep a few spare buffers for the next burst; give the rest back to the allocator.
        let in_use = self.ctx.pool.stats().in_use;
        if self.ctx.pool.trim(64.max(in_use / 4)) >= 64 || purged >= PURGED_WORTH_TRIM {
            // glibc keeps freed 16 KiB chunks in its heap; hand the pages back to the kernel.
            // SAFETY: malloc_trim only releases free memory; it is safe to call at any time.
            unsafe {
                libc::malloc_trim(0);
            }
        }
        let now = self.ctx.now;
        let rt = self.ctx.rt.clone();
        let limit = |c: &IdleConn| {
            let ups = &rt.upstreams[c.upstream];
            ups.peers[c.peer].idle_limit(ups.conf.keepalive_timeout)
        };
        for mut c in self.ctx.keepalive.expire(now, limit) {
            self.ctx.close_backend(&mut c.stream, c.token);
        }
        let st = self.ctx.pool.stats();
        log::debug!(
            "worker {}: {} connections ({} accepted), buffers in use {} (high-water {}, limit {})",
            self.id,
            self.sessions.len(),
            self.ctx.accepted,
            st.in_use,
            st.high_water,
            st.limit
        );
    }
}
