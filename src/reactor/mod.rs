//! What a connection's state machine may use of its worker: the poll registry, the clock,
//! the buffer pool, timers, balancers, idle backend connections, access logs and the table
//! of backend connections by token. One `Ctx` per worker; nothing in it is shared with other
//! workers except the read-only `Runtime` and the atomics inside it.
//!
//! It sits below both the worker's event loop and the sessions the loop drives, so neither
//! imports the other's internals.

pub(crate) mod timer;

use crate::buffer::BufferPool;
use crate::logging::access::AccessLog;
use crate::logging::time::Clock;
use crate::runtime::{Runtime, WorkerStats};
use crate::upstream::keepalive::KeepalivePool;
use crate::upstream::Scheduler;
use mio::{Interest, Registry, Token};
use slab::Slab;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use timer::Timers;

/// Tokens of backend connections: this bit plus the connection's id in `Ctx::backends`.
pub(crate) const BACKEND_BIT: usize = 1 << (usize::BITS - 2);

pub(crate) fn client_token(key: usize) -> Token {
    Token(key)
}

pub(crate) fn backend_token(id: usize) -> Token {
    Token(BACKEND_BIT | id)
}

/// Who holds a backend connection now. Its epoll registration (and token) stays the same
/// for its whole life, so lending it from the idle pool to a session and back costs no
/// epoll_ctl.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Owner {
    Session(usize),
    Idle(usize),
}

/// What sessions use of their worker.
pub(crate) struct Ctx {
    pub(crate) registry: Registry,
    /// This generation's runtime. An `Rc` around the shared `Arc`: sessions clone it freely
    /// without touching the atomic refcount that every worker shares.
    #[allow(clippy::redundant_allocation)]
    pub(crate) rt: Rc<Arc<Runtime>>,
    pub(crate) pool: BufferPool,
    pub(crate) timers: Timers,
    pub(crate) balancers: Vec<Scheduler>,
    pub(crate) keepalive: KeepalivePool,
    pub(crate) access: Vec<AccessLog>,
    pub(crate) clock: Clock,
    pub(crate) now: Instant,
    /// `now` on the shared millisecond clock (`upstream::now_ms`).
    pub(crate) now_ms: u64,
    pub(crate) draining: bool,
    /// Every open backend connection of this worker, by id (its token).
    pub(crate) backends: Slab<Owner>,
    /// Client connections open and accepted so far (published for the status page).
    pub(crate) conns: usize,
    pub(crate) accepted: u64,
    last_publish: Instant,
    pub(crate) id: usize,
    /// Connection serial numbers this worker may hand out (taken from the process's counter
    /// a block at a time).
    serials: std::ops::Range<u64>,
}

/// The next block of connection serial numbers, for any worker of any generation.
fn serial_block() -> std::ops::Range<u64> {
    use std::sync::atomic::{AtomicU64, Ordering};
    const BLOCK: u64 = 1024;
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let start = NEXT.fetch_add(BLOCK, Ordering::Relaxed);
    start..start + BLOCK
}

impl Ctx {
    pub(crate) fn new(id: usize, rt: Arc<Runtime>, registry: Registry, access: Vec<AccessLog>) -> Ctx {
        let conns = rt.cfg.worker_connections;
        let now = Instant::now();
        Ctx {
            registry,
            balancers: rt.upstreams.iter().map(Scheduler::new).collect(),
            keepalive: KeepalivePool::new(rt.clone(), now),
            conns: 0,
            // A reload's worker goes on from its slot's count (`Runtime::inherit_worker_totals`).
            accepted: rt.worker(id).map_or(0, |w| w.accepted.load(std::sync::atomic::Ordering::Relaxed)),
            last_publish: now,
            id,
            // A proxied exchange holds up to five buffers (client in/out, request head,
            // backend in/out).
            pool: BufferPool::new(rt.cfg.worker_buffers.unwrap_or(conns.saturating_mul(5).max(64))),
            timers: Timers::default(),
            access,
            clock: Clock::new(),
            now,
            now_ms: crate::upstream::ms_at(now),
            draining: false,
            backends: Slab::new(),
            rt: Rc::new(rt),
            serials: 0..0,
        }
    }

    /// A serial number for a new client connection (`$connection`).
    pub(crate) fn next_serial(&mut self) -> u64 {
        if self.serials.is_empty() {
            self.serials = serial_block();
        }
        let n = self.serials.start;
        self.serials.start += 1;
        n
    }

    /// Registers a new backend connection for `session`; returns its id.
    pub(crate) fn register_backend(&mut self, stream: &mut mio::net::TcpStream, session: usize) -> std::io::Result<usize> {
        let id = self.backends.insert(Owner::Session(session));
        if let Err(e) = self.registry.register(stream, backend_token(id), Interest::READABLE | Interest::WRITABLE) {
            self.backends.remove(id);
            return Err(e);
        }
        Ok(id)
    }

    /// Forgets a backend connection that is being closed.
    pub(crate) fn close_backend(&mut self, stream: &mut mio::net::TcpStream, id: usize) {
        let _ = self.registry.deregister(stream);
        self.backends.try_remove(id);
    }

    /// Publishes this worker's figures for the status page, not counting `own` buffers
    /// (those of the status request being served).
    pub(crate) fn publish(&mut self, own: usize) {
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
    pub(crate) fn publish_now_and_then(&mut self) {
        if self.now.duration_since(self.last_publish) >= Duration::from_millis(50) {
            self.publish(0);
        }
    }
}
