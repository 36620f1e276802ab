//! Idle backend connections kept per worker, per upstream (nginx's `keepalive N`): the
//! balancer picks a peer first, then an idle connection to exactly that peer is reused.
//! Least recently used connections are evicted first.

use crate::runtime::Runtime;
use mio::net::TcpStream;
use slab::Slab;
use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

pub(crate) struct IdleConn {
    pub(crate) stream: TcpStream,
    pub(crate) upstream: usize,
    pub(crate) peer: usize,
    pub(crate) since: Instant,
    /// Requests already served on this connection.
    pub(crate) requests: u32,
    /// Its id (and epoll token) in the worker's backend table.
    pub(crate) token: usize,
}

impl IdleConn {
    /// Still open with nothing pending? (A peek: EOF or stray bytes both mean no.)
    pub(crate) fn is_clean(&self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.stream.peek(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

pub(crate) struct KeepalivePool {
    conns: Slab<IdleConn>,
    /// Per upstream: idle keys, least recently used first.
    lru: Vec<VecDeque<usize>>,
    /// For the shared per-peer idle counts (status page).
    rt: Arc<Runtime>,
}

impl KeepalivePool {
    pub(crate) fn new(rt: Arc<Runtime>) -> KeepalivePool {
        KeepalivePool { conns: Slab::new(), lru: (0..rt.upstreams.len()).map(|_| VecDeque::new()).collect(), rt }
    }

    fn counted_out(&self, c: IdleConn) -> IdleConn {
        self.rt.upstreams[c.upstream].peers[c.peer].idle.fetch_sub(1, Relaxed);
        c
    }

    /// Stores a connection; returns its key and, when the upstream's cache was full, the
    /// evicted least recently used connection for the caller to close.
    pub(crate) fn put(&mut self, conn: IdleConn, max: usize) -> (usize, Option<IdleConn>) {
        let up = conn.upstream;
        let evicted = if self.lru[up].len() >= max { self.lru[up].pop_front().map(|k| self.conns.remove(k)) } else { None };
        let evicted = evicted.map(|c| self.counted_out(c));
        self.rt.upstreams[up].peers[conn.peer].idle.fetch_add(1, Relaxed);
        let key = self.conns.insert(conn);
        self.lru[up].push_back(key);
        (key, evicted)
    }

    /// Takes the most recently used idle connection to `peer`.
    pub(crate) fn take(&mut self, upstream: usize, peer: usize) -> Option<IdleConn> {
        let list = &mut self.lru[upstream];
        let pos = list.iter().rposition(|&k| self.conns[k].peer == peer)?;
        let key = list.remove(pos)?;
        let c = self.conns.remove(key);
        Some(self.counted_out(c))
    }

    pub(crate) fn get(&self, key: usize) -> Option<&IdleConn> {
        self.conns.get(key)
    }

    /// Removes a connection by key (it became readable: closed by the backend, or stray data).
    pub(crate) fn remove(&mut self, key: usize) -> Option<IdleConn> {
        let conn = self.conns.try_remove(key)?;
        let list = &mut self.lru[conn.upstream];
        if let Some(pos) = list.iter().position(|&k| k == key) {
            list.remove(pos);
        }
        Some(self.counted_out(conn))
    }

    /// Removes every connection idle since before `deadline_of(upstream)`.
    pub(crate) fn expire(&mut self, mut too_old: impl FnMut(&IdleConn) -> bool) -> Vec<IdleConn> {
        let mut out = Vec::new();
        for list in &mut self.lru {
            while let Some(&k) = list.front() {
                if !too_old(&self.conns[k]) {
                    break;
                }
                list.pop_front();
                let c = self.conns.remove(k);
                self.rt.upstreams[c.upstream].peers[c.peer].idle.fetch_sub(1, Relaxed);
                out.push(c);
            }
        }
        out
    }

    pub(crate) fn len(&self) -> usize {
        self.conns.len()
    }

    pub(crate) fn drain(&mut self) -> Vec<IdleConn> {
        for l in &mut self.lru {
            l.clear();
        }
        let all: Vec<IdleConn> = self.conns.drain().collect();
        all.into_iter().map(|c| self.counted_out(c)).collect()
    }
}
