//! A worker: one thread, one `mio::Poll`, a slab of sessions, its own buffer pool, balancer
//! state, idle backend connections and timers. Nothing here is shared with other workers
//! except the read-only `Runtime` and the per-peer atomics inside it.

pub mod health;
pub mod listener;
pub mod timer;

use crate::buffer::BufferPool;
use crate::logging::access::AccessLog;
use crate::logging::time::Clock;
use crate::proxy::session::Session;
use crate::runtime::{Runtime, WorkerStats};
use crate::upstream::keepalive::KeepalivePool;
use crate::upstream::round_robin::RoundRobin;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use slab::Slab;
use std::rc::Rc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use timer::{settle, Due, Timers};

pub const WAKER: Token = Token(usize::MAX - 1);
const LISTENER_BASE: usize = usize::MAX - 2 - 4096;
/// Tokens of backend connections: this bit plus the connection's id in `Ctx::backends`.
const BACKEND_BIT: usize = 1 << (usize::BITS - 2);

pub fn client_token(key: usize) -> Token {
    Token(key)
}

pub fn backend_token(id: usize) -> Token {
    Token(BACKEND_BIT | id)
}

/// Who holds a backend connection now. Its epoll registration (and token) stays the same
/// for its whole life, so lending it from the idle pool to a session and back costs no
/// epoll_ctl.
#[derive(Clone, Copy, Debug)]
pub enum Owner {
    Session(usize),
    Idle(usize),
}

/// Commands from the master, read after every wake-up.
pub const CMD_RUN: u8 = 0;
/// Graceful: stop accepting, finish in-flight requests, exit.
pub const CMD_QUIT: u8 = 1;
/// Fast: exit now.
pub const CMD_STOP: u8 = 2;

pub struct Control {
    pub cmd: AtomicU8,
    pub waker: Waker,
}

impl Control {
    pub fn send(&self, cmd: u8) {
        self.cmd.store(cmd, Ordering::Release);
        let _ = self.waker.wake();
    }
}

/// How long a draining worker keeps idle keep-alive connections open for a request that may
/// already be on its way.
const DRAIN_IDLE_GRACE: Duration = Duration::from_millis(1000);

/// What sessions use of their worker.
pub struct Ctx {
    pub registry: Registry,
    /// This generation's runtime. An `Rc` around the shared `Arc`: sessions clone it freely
    /// without touching the atomic refcount that every worker shares.
    pub rt: Rc<Arc<Runtime>>,
    pub pool: BufferPool,
    pub timers: Timers,
    pub balancers: Vec<RoundRobin>,
    pub keepalive: KeepalivePool,
    pub access: Vec<AccessLog>,
    pub clock: Clock,
    pub now: Instant,
    pub draining: bool,
    /// Every open backend connection of this worker, by id (its token).
    pub backends: Slab<Owner>,
    /// Client connections open and accepted so far (published for the status page).
    pub conns: usize,
    pub accepted: u64,
    last_publish: Instant,
    pub id: usize,
}

impl Ctx {
    /// Registers a new backend connection for `session`; returns its id.
    pub fn register_backend(&mut self, stream: &mut mio::net::TcpStream, session: usize) -> std::io::Result<usize> {
        let id = self.backends.insert(Owner::Session(session));
        if let Err(e) = self.registry.register(stream, backend_token(id), Interest::READABLE | Interest::WRITABLE) {
            self.backends.remove(id);
            return Err(e);
        }
        Ok(id)
    }

    /// Forgets a backend connection that is being closed.
    pub fn close_backend(&mut self, stream: &mut mio::net::TcpStream, id: usize) {
        let _ = self.registry.deregister(stream);
        self.backends.try_remove(id);
    }

    /// Publishes this worker's figures for the status page, not counting `own` buffers
    /// (those of the status request being served).
    pub fn publish(&mut self, own: usize) {
        self.last_publish = self.now;
        if let Some(w) = self.rt.worker(self.id) {
            let st = self.pool.stats();
            WorkerStats::set(&w.connections, self.conns as u64);
            WorkerStats::set(&w.accepted, self.accepted);
            WorkerStats::set(&w.buffers_in_use, st.in_use.saturating_sub(own) as u64);
            WorkerStats::set(&w.buffers_high_water, st.high_water as u64);
            WorkerStats::set(&w.buffers_limit, st.limit as u64);
            WorkerStats::set(&w.idle_backend, self.keepalive.len() as u64);
        }
    }

    /// Publishes at most every 50 ms: shared cache lines are not written per request.
    fn publish_now_and_then(&mut self) {
        if self.now.duration_since(self.last_publish) >= Duration::from_millis(50) {
            self.publish(0);
        }
    }
}

pub struct Worker {
    id: usize,
    poll: Poll,
    listeners: Vec<(TcpListener, usize)>,
    sessions: Slab<Session>,
    ctx: Ctx,
    control: Arc<Control>,
    accept_retry: bool,
    /// The active health checks this worker runs.
    probes: Vec<health::Probe>,
}

impl Worker {
    /// Prepares a worker; `listeners` pairs each socket with its index in `cfg.http.listens`.
    pub fn new(id: usize, rt: Arc<Runtime>, poll: Poll, listeners: Vec<(std::net::TcpListener, usize)>, control: Arc<Control>) -> std::io::Result<Worker> {
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
        let conns = rt.cfg.worker_connections;
        let probes = health::probes_for(&rt, id, rt.cfg.worker_processes, Instant::now());
        let ctx = Ctx {
            registry,
            balancers: rt.upstreams.iter().map(RoundRobin::new).collect(),
            keepalive: KeepalivePool::new(rt.clone()),
            conns: 0,
            accepted: 0,
            last_publish: Instant::now(),
            id,
            // Four buffers per busy connection (client in/out, backend in/out) plus request heads.
            pool: BufferPool::new(rt.cfg.worker_buffers.unwrap_or(conns.saturating_mul(5).max(64))),
            timers: Timers::default(),
            access,
            clock: Clock::new(),
            now: Instant::now(),
            draining: false,
            backends: Slab::new(),
            rt: Rc::new(rt),
        };
        Ok(Worker { id, poll, listeners: mio_listeners, sessions: Slab::with_capacity(1024), ctx, control, accept_retry: false, probes })
    }

    pub fn run(mut self) {
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
            if let Err(e) = self.poll.poll(&mut events, Some(timeout + Duration::from_micros(500))) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    log::error!("worker {}: epoll_wait() failed: {}", self.id, e);
                    return;
                }
            }
            self.ctx.now = Instant::now();
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
                            if s.on_backend_event(&mut self.ctx, ev).is_err() {
                                self.remove(key);
                            }
                        }
                        // An idle backend connection stirred: closed, or stray bytes? (An edge
                        // queued while it was still busy is no reason to drop it.)
                        Some(Owner::Idle(idle)) if self.ctx.keepalive.get(idle).is_some_and(|c| !c.is_clean()) => {
                            if let Some(mut c) = self.ctx.keepalive.remove(idle) {
                                self.ctx.close_backend(&mut c.stream, c.token);
                            }
                        }
                        Some(Owner::Idle(_)) | None => {}
                    }
                } else {
                    let key = t.0;
                    let Some(s) = self.sessions.get_mut(key) else { continue };
                    if s.on_client_event(&mut self.ctx, ev).is_err() {
                        self.remove(key);
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
                if let Due::Fire = settle(&mut self.ctx.timers, key, queued, &mut s.timer, self.ctx.now) {
                    if s.on_timeout(&mut self.ctx).is_err() {
                        self.remove(key);
                    }
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
                        self.remove(k);
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
            self.remove(k);
        }
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
                    let local_port = self.ctx.rt.cfg.http.listens[listen_idx].addr.port();
                    let entry = self.sessions.vacant_entry();
                    let key = entry.key();
                    let mut s = Session::new(key, stream, addr, local_port, listen_idx, self.ctx.now);
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
                    // EMFILE and friends: try again shortly rather than spin.
                    log::error!("accept() failed: {}", e);
                    self.accept_retry = true;
                    break;
                }
            }
        }
    }

    fn remove(&mut self, key: usize) {
        if let Some(s) = self.sessions.try_remove(key) {
            s.close(&mut self.ctx);
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

    fn housekeeping(&mut self) {
        // Keep a few spare buffers for the next burst; give the rest back to the allocator.
        let in_use = self.ctx.pool.stats().in_use;
        if self.ctx.pool.trim(64.max(in_use / 4)) >= 64 {
            // glibc keeps freed 16 KiB chunks in its heap; hand the pages back to the kernel.
            // SAFETY: malloc_trim only releases free memory; it is safe to call at any time.
            unsafe {
                libc::malloc_trim(0);
            }
        }
        let now = self.ctx.now;
        let rt = &self.ctx.rt;
        for mut c in self.ctx.keepalive.expire(|c| now.duration_since(c.since) >= rt.upstreams[c.upstream].conf.keepalive_timeout) {
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
