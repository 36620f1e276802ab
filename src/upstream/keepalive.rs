//! Idle backend connections kept per worker, per upstream, sized by demand. The balancer
//! picks a server first, then an idle connection to exactly that server is reused (the most
//! recently used one, so the oldest age out).
//!
//! How many are kept: for each server, as many as this worker recently had requests in
//! flight to it at once — the peak of the current and the previous `DEMAND_WINDOW` (HAProxy
//! estimates its need of idle server connections the same way). A connection whose release
//! would leave more connections (in flight plus idle) than that peak is closed; at each
//! window's end the idle ones beyond the new estimate are closed, oldest first. At least one
//! per server is kept while `keepalive_timeout` allows. Within that:
//! - `keepalive N` caps the upstream's idle connections in this worker (least recently used
//!   evicted, as nginx's `keepalive`);
//! - a worker never keeps more than `worker_connections` idle connections in all;
//! - idle connections are closed after `keepalive_timeout`, or sooner when the server is
//!   known to close them sooner, and never kept past the requests the server allows
//!   (`limits`).
//!
//! Two intrusive lists thread the idle connections through one slab: per upstream by age
//! (eviction) and per server by age (reuse, shrinking, expiry), so every operation is O(1)
//! and nothing is allocated per request.

use crate::runtime::Runtime;
use mio::net::TcpStream;
use slab::Slab;
use std::io::Read;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one window of demand lasts; the estimate is the peak of the last two.
pub(crate) const DEMAND_WINDOW: Duration = Duration::from_secs(5);

pub(crate) struct IdleConn {
    pub(crate) stream: TcpStream,
    pub(crate) upstream: usize,
    pub(crate) peer: usize,
    pub(crate) since: Instant,
    /// Requests already served on this connection.
    pub(crate) requests: u32,
    /// Its id (and epoll token) in the worker's backend table.
    pub(crate) token: usize,
    /// Bytes its last response still owes, exactly (`Protocol::unread_tail`): the next
    /// response on it reads them first.
    pub(crate) tail: Option<&'static [u8]>,
    /// Its low-water mark is raised so that the tail alone does not wake the worker.
    pub(crate) sleeps_through_tail: bool,
}

impl IdleConn {
    /// Still open with nothing pending? (A peek: EOF or stray bytes both mean no.)
    pub(crate) fn is_clean(&mut self) -> bool {
        self.peek() == Peek::Clean
    }

    /// What it holds. A tail it owes that has come whole is read here, so that a close
    /// behind it is seen; the start of a tail is left for the next response.
    pub(crate) fn peek(&mut self) -> Peek {
        let mut b = [0u8; 16];
        let want = self.tail.map_or(1, |t| (t.len() + 1).min(b.len()));
        match self.stream.peek(&mut b[..want]) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Peek::Clean,
            Ok(0) => Peek::Closed,
            Ok(n) => match self.tail {
                Some(t) if n == t.len() && b[..n] == *t => match self.stream.read(&mut b[..n]) {
                    Ok(read) if read == n => {
                        self.tail = None;
                        self.peek()
                    }
                    _ => Peek::Closed,
                },
                Some(t) if t.starts_with(&b[..n]) => Peek::Clean,
                _ => Peek::Data,
            },
            Err(_) => Peek::Closed,
        }
    }
}

/// What an idle connection holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peek {
    Clean,
    /// The backend closed it (or reset it).
    Closed,
    /// Stray bytes: it cannot be reused.
    Data,
}

const NIL: usize = usize::MAX;

#[derive(Clone, Copy)]
struct Link {
    prev: usize,
    next: usize,
}

/// A list threaded through the slab: `first` is the oldest.
#[derive(Clone, Copy)]
struct Ends {
    first: usize,
    last: usize,
    len: usize,
}

impl Default for Ends {
    fn default() -> Ends {
        Ends { first: NIL, last: NIL, len: 0 }
    }
}

struct Entry {
    conn: IdleConn,
    in_upstream: Link,
    in_peer: Link,
}

/// The two lists an entry is on.
#[derive(Clone, Copy)]
enum On {
    Upstream,
    Peer,
}

fn link(e: &mut Entry, on: On) -> &mut Link {
    match on {
        On::Upstream => &mut e.in_upstream,
        On::Peer => &mut e.in_peer,
    }
}

/// This worker's demand on one server and its idle connections to it.
#[derive(Default)]
struct PeerPool {
    idle: Ends,
    /// Requests in flight to it from this worker now.
    busy: u32,
    /// The most in flight at once in this window and in the previous one.
    peak: u32,
    prev_peak: u32,
    /// What this worker added to the shared `keep_demand` (status page).
    published: u32,
}

impl PeerPool {
    /// Connections (in flight plus idle) worth keeping for this server now.
    fn need(&self) -> u32 {
        self.peak.max(self.prev_peak).max(1)
    }
}

#[derive(Default)]
struct UpPool {
    idle: Ends,
    peers: Vec<PeerPool>,
}

pub(crate) struct KeepalivePool {
    conns: Slab<Entry>,
    ups: Vec<UpPool>,
    /// Idle connections this worker may hold in all (`worker_connections`).
    total_max: usize,
    window_start: Instant,
    /// For the shared per-peer idle counts and demand (status page).
    rt: Arc<Runtime>,
}

/// Why a released connection is not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// More than recent demand needs.
    Demand,
    /// The worker holds `worker_connections` idle connections already.
    Full,
}

impl KeepalivePool {
    pub(crate) fn new(rt: Arc<Runtime>, now: Instant) -> KeepalivePool {
        let ups =
            rt.upstreams.iter().map(|u| UpPool { idle: Ends::default(), peers: (0..u.conf.servers.len()).map(|_| PeerPool::default()).collect() }).collect();
        KeepalivePool { conns: Slab::new(), ups, total_max: rt.cfg.worker_connections, window_start: now, rt }
    }

    fn ends(&mut self, upstream: usize, peer: usize, on: On) -> &mut Ends {
        match on {
            On::Upstream => &mut self.ups[upstream].idle,
            On::Peer => &mut self.ups[upstream].peers[peer].idle,
        }
    }

    fn push_back(&mut self, key: usize, on: On) {
        let (u, p) = (self.conns[key].conn.upstream, self.conns[key].conn.peer);
        let last = self.ends(u, p, on).last;
        *link(&mut self.conns[key], on) = Link { prev: last, next: NIL };
        if last != NIL {
            link(&mut self.conns[last], on).next = key;
        }
        let ends = self.ends(u, p, on);
        if ends.first == NIL {
            ends.first = key;
        }
        ends.last = key;
        ends.len += 1;
    }

    fn unlink(&mut self, key: usize, on: On) {
        let (u, p) = (self.conns[key].conn.upstream, self.conns[key].conn.peer);
        let Link { prev, next } = *link(&mut self.conns[key], on);
        if prev != NIL {
            link(&mut self.conns[prev], on).next = next;
        }
        if next != NIL {
            link(&mut self.conns[next], on).prev = prev;
        }
        let ends = self.ends(u, p, on);
        if ends.first == key {
            ends.first = next;
        }
        if ends.last == key {
            ends.last = prev;
        }
        ends.len -= 1;
    }

    /// Takes `key` out of both lists and the slab.
    fn take_key(&mut self, key: usize) -> IdleConn {
        self.unlink(key, On::Upstream);
        self.unlink(key, On::Peer);
        let c = self.conns.remove(key).conn;
        self.rt.upstreams[c.upstream].peers[c.peer].idle.fetch_sub(1, Relaxed);
        c
    }

    /// A request to `peer` starts (on a pooled or a new connection).
    pub(crate) fn opened(&mut self, upstream: usize, peer: usize) {
        let p = &mut self.ups[upstream].peers[peer];
        p.busy += 1;
        p.peak = p.peak.max(p.busy);
    }

    /// A request to `peer` ended; its connection is offered to the pool (or closed) next.
    pub(crate) fn finished(&mut self, upstream: usize, peer: usize) {
        let p = &mut self.ups[upstream].peers[peer];
        p.busy = p.busy.saturating_sub(1);
    }

    /// Keeps a released connection if demand and the bounds allow: `Ok` with its key and,
    /// when the upstream was at its `cap`, the least recently used connection evicted for it
    /// (for the caller to close); `Err` hands the connection back to be closed.
    pub(crate) fn offer(&mut self, conn: IdleConn, cap: usize) -> Result<(usize, Option<IdleConn>), (IdleConn, Refused)> {
        let (u, p) = (conn.upstream, conn.peer);
        let pp = &self.ups[u].peers[p];
        if (pp.idle.len as u32).saturating_add(pp.busy) >= pp.need() {
            return Err((conn, Refused::Demand));
        }
        let evicted = if self.ups[u].idle.len >= cap && self.ups[u].idle.first != NIL { Some(self.take_key(self.ups[u].idle.first)) } else { None };
        if self.conns.len() >= self.total_max {
            return Err((conn, Refused::Full));
        }
        self.rt.upstreams[u].peers[p].idle.fetch_add(1, Relaxed);
        let key = self.conns.insert(Entry { conn, in_upstream: Link { prev: NIL, next: NIL }, in_peer: Link { prev: NIL, next: NIL } });
        self.push_back(key, On::Upstream);
        self.push_back(key, On::Peer);
        Ok((key, evicted))
    }

    /// Takes the most recently used idle connection to `peer`.
    pub(crate) fn take(&mut self, upstream: usize, peer: usize) -> Option<IdleConn> {
        let key = self.ups[upstream].peers[peer].idle.last;
        (key != NIL).then(|| self.take_key(key))
    }

    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut IdleConn> {
        self.conns.get_mut(key).map(|e| &mut e.conn)
    }

    /// Removes a connection by key (it became readable: closed by the backend, or stray data).
    pub(crate) fn remove(&mut self, key: usize) -> Option<IdleConn> {
        self.conns.contains(key).then(|| self.take_key(key))
    }

    /// Housekeeping: removes connections idle for longer than `limit(conn)` allows, and, once
    /// a demand window is over, those beyond each server's new estimate (oldest first).
    pub(crate) fn expire(&mut self, now: Instant, limit: impl Fn(&IdleConn) -> Duration) -> Vec<IdleConn> {
        let mut out = Vec::new();
        let rotate = now.duration_since(self.window_start) >= DEMAND_WINDOW;
        if rotate {
            self.window_start = now;
        }
        for u in 0..self.ups.len() {
            for p in 0..self.ups[u].peers.len() {
                if rotate {
                    let pp = &mut self.ups[u].peers[p];
                    pp.prev_peak = pp.peak;
                    pp.peak = pp.busy;
                }
                self.publish(u, p);
                loop {
                    let pp = &self.ups[u].peers[p];
                    let key = pp.idle.first;
                    if key == NIL {
                        break;
                    }
                    let too_many = (pp.idle.len as u32).saturating_add(pp.busy) > pp.need();
                    let c = &self.conns[key].conn;
                    if !too_many && now.duration_since(c.since) < limit(c) {
                        break;
                    }
                    out.push(self.take_key(key));
                }
            }
        }
        out
    }

    /// Shares this worker's estimate for `peer` with the status page.
    fn publish(&mut self, u: usize, p: usize) {
        let pp = &mut self.ups[u].peers[p];
        let need = if pp.peak.max(pp.prev_peak) == 0 { 0 } else { pp.need() };
        if need != pp.published {
            let shared = &self.rt.upstreams[u].peers[p].keep_demand;
            shared.fetch_add(need.wrapping_sub(pp.published), Relaxed);
            pp.published = need;
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.conns.len()
    }

    /// Everything, for closing (the worker stops or drains).
    pub(crate) fn drain(&mut self) -> Vec<IdleConn> {
        for u in 0..self.ups.len() {
            for p in 0..self.ups[u].peers.len() {
                let pp = &mut self.ups[u].peers[p];
                (pp.peak, pp.prev_peak) = (0, 0);
                self.publish(u, p);
            }
        }
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        keys.into_iter().map(|k| self.take_key(k)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Peer, Upstream};
    use std::net::TcpListener;

    struct Rig {
        pool: KeepalivePool,
        listener: TcpListener,
        accepted: Vec<std::net::TcpStream>,
        now: Instant,
    }

    impl Rig {
        fn new(servers: usize, worker_connections: usize) -> Rig {
            let mut cfg = crate::config::load_text(b"http { }", std::path::Path::new("t.conf"), std::path::Path::new("/")).expect("config");
            let servers = (0..servers).map(|i| Peer::new(([127, 0, 0, 1], 1000 + i as u16).into(), format!("s{}", i))).collect();
            cfg.http.upstreams.push(Upstream { servers, ..Upstream::new("u".into(), false) });
            cfg.worker_connections = worker_connections;
            let rt = Arc::new(Runtime::new(cfg, 1));
            let now = Instant::now();
            Rig { pool: KeepalivePool::new(rt, now), listener: TcpListener::bind("127.0.0.1:0").expect("bind"), accepted: vec![], now }
        }

        fn conn(&mut self, peer: usize) -> IdleConn {
            let s = std::net::TcpStream::connect(self.listener.local_addr().expect("addr")).expect("connect");
            self.accepted.push(self.listener.accept().expect("accept").0);
            IdleConn { stream: TcpStream::from_std(s), upstream: 0, peer, since: self.now, requests: 1, token: 0, tail: None, sleeps_through_tail: false }
        }

        /// `n` requests at once to `peer`, then all released; returns how many were kept.
        fn burst(&mut self, peer: usize, n: usize, cap: usize) -> usize {
            for _ in 0..n {
                self.pool.opened(0, peer);
            }
            let mut kept = 0;
            for _ in 0..n {
                self.pool.finished(0, peer);
                let c = self.conn(peer);
                kept += self.pool.offer(c, cap).is_ok() as usize;
            }
            kept
        }

        fn idle(&self, peer: usize) -> usize {
            self.pool.ups[0].peers[peer].idle.len
        }

        fn window(&mut self) -> usize {
            self.now += DEMAND_WINDOW;
            self.pool.expire(self.now, |_| Duration::from_secs(3600)).len()
        }
    }

    #[test]
    fn grows_with_concurrency_and_shrinks_when_demand_falls() {
        let mut r = Rig::new(2, 1000);
        assert_eq!(r.burst(0, 20, usize::MAX), 20, "20 at once: all 20 kept");
        assert_eq!(r.burst(1, 3, usize::MAX), 3);
        // Sequential reuse: one connection serves, the pool stays as it is.
        for _ in 0..50 {
            let c = r.pool.take(0, 0).expect("idle");
            r.pool.opened(0, 0);
            r.pool.finished(0, 0);
            assert!(r.pool.offer(c, usize::MAX).is_ok());
        }
        assert_eq!(r.idle(0), 20);
        assert_eq!(r.window(), 0, "the previous window's peak still stands");
        assert_eq!(r.idle(0), 20);
        assert_eq!(r.window(), 21, "two quiet windows: down to one per server");
        assert_eq!((r.idle(0), r.idle(1)), (1, 1));
        assert_eq!(r.pool.len(), 2);
        assert_eq!(r.pool.rt.upstreams[0].peers[0].idle.load(Relaxed), 1);
    }

    #[test]
    fn no_more_than_demand_the_cap_and_the_worker_bound() {
        let mut r = Rig::new(2, 1000);
        // 5 in flight at most: a sixth connection released would exceed the need.
        for _ in 0..5 {
            r.pool.opened(0, 0);
        }
        for _ in 0..5 {
            r.pool.finished(0, 0);
        }
        for _ in 0..5 {
            let c = r.conn(0);
            assert!(r.pool.offer(c, usize::MAX).is_ok());
        }
        let c = r.conn(0);
        assert!(matches!(r.pool.offer(c, usize::MAX), Err((_, Refused::Demand))));
        // `keepalive 3`: the least recently used go first.
        let mut r = Rig::new(1, 1000);
        for _ in 0..10 {
            r.pool.opened(0, 0);
        }
        let mut evicted = 0;
        for _ in 0..10 {
            r.pool.finished(0, 0);
            let c = r.conn(0);
            let Ok((_, old)) = r.pool.offer(c, 3) else { panic!("the cap evicts, it does not refuse") };
            evicted += old.is_some() as usize;
        }
        assert_eq!((r.idle(0), evicted), (3, 7));
        // worker_connections 4: never more than 4 idle in all.
        let mut r = Rig::new(2, 4);
        assert_eq!(r.burst(0, 3, usize::MAX) + r.burst(1, 3, usize::MAX), 4);
        assert_eq!(r.pool.len(), 4);
    }

    #[test]
    fn expiry_closed_connections_and_drain() {
        let mut r = Rig::new(2, 1000);
        r.burst(0, 4, usize::MAX);
        r.burst(1, 4, usize::MAX);
        // The server closes one: the peek says so, and it can be removed by key.
        let key = r.pool.ups[0].peers[1].idle.first;
        r.accepted.clear();
        assert!(eventually(|| r.pool.get_mut(key).map(IdleConn::peek) == Some(Peek::Closed)));
        let c = r.pool.remove(key).expect("there");
        assert_eq!(c.peer, 1);
        assert!(r.pool.remove(key).is_none());
        // Server 0 allows 10 s of idleness, server 1 an hour.
        r.now += Duration::from_secs(11);
        let gone = r.pool.expire(r.now, |c| if c.peer == 0 { Duration::from_secs(10) } else { Duration::from_secs(3600) });
        assert_eq!(gone.len(), 4);
        assert_eq!((r.idle(0), r.idle(1)), (0, 3));
        assert_eq!(r.pool.drain().len(), 3);
        assert_eq!(r.pool.len(), 0);
        assert_eq!(r.pool.rt.upstreams[0].peers[1].idle.load(Relaxed), 0);
        assert_eq!(r.pool.rt.upstreams[0].peers[1].keep_demand.load(Relaxed), 0);
    }

    fn eventually(mut f: impl FnMut() -> bool) -> bool {
        (0..200).any(|_| {
            f() || {
                std::thread::sleep(Duration::from_millis(5));
                false
            }
        })
    }
}
