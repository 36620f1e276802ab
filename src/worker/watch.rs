//! A worker's watch over the servers its requests wait on (`upstream::frozen`): every
//! 100 ms, with `frozen_timeout`, it looks for requests a silent server has left waiting;
//! and whenever any server has gone out for its health (a failed check, a freeze, passive
//! failures), the requests waiting on it move to other servers where that is safe. One log
//! line per server tells how many moved and how many had to stay.

use super::Worker;
use crate::proxy::exchange::Moved;
use crate::reactor::Owner;
use crate::upstream::frozen::down_epoch;
use crate::upstream::ms_at;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// How often waiting requests are looked at for a frozen server.
pub(super) const SCAN: Duration = Duration::from_millis(100);

pub(super) struct Watch {
    /// The last `DOWN_EPOCH` acted on.
    epoch: u64,
    /// Some upstream has `frozen_timeout`: waiting requests are scanned.
    scan: bool,
    next_scan: Instant,
    /// Sessions with a backend connection (reused between passes).
    keys: Vec<usize>,
    /// This worker's share of each server's `suspects` (upstream, server, count), as its
    /// last scan counted them.
    votes: Vec<(usize, usize, u32)>,
}

impl Watch {
    pub(super) fn new(scan: bool, now: Instant) -> Watch {
        Watch { epoch: down_epoch(), scan, next_scan: now, keys: Vec::new(), votes: Vec::new() }
    }
}

fn requests(n: u32) -> String {
    format!("{} request{}", n, if n == 1 { "" } else { "s" })
}

/// Requests moved off one server, and those left on it.
struct Tally {
    upstream: usize,
    peer: usize,
    resent: u32,
    kept: u32,
}

impl Worker {
    /// Longest the loop may sleep while requests wait on backends (a server going out is
    /// acted on within this), or while this worker's votes stand (they are taken back at the
    /// next scan, not left to count for requests long answered). Idle workers sleep on.
    pub(super) fn watch_timeout(&self) -> Option<Duration> {
        // Every backend connection not in the idle pool belongs to a session.
        (self.ctx.backends.len() > self.ctx.keepalive.len() || !self.watch.votes.is_empty()).then_some(SCAN)
    }

    /// Once per loop pass (cheap: one relaxed load, and a scan every `SCAN` when asked for).
    pub(super) fn watch_servers(&mut self) {
        if self.watch.scan && self.ctx.now >= self.watch.next_scan {
            self.watch.next_scan = self.ctx.now + SCAN;
            self.find_frozen();
        }
        let epoch = down_epoch();
        if epoch != self.watch.epoch {
            self.watch.epoch = epoch;
            self.move_waiting();
        }
    }

    fn session_keys(&mut self) -> Vec<usize> {
        let mut keys = std::mem::take(&mut self.watch.keys);
        keys.clear();
        keys.extend(self.ctx.backends.iter().filter_map(|(_, o)| match o {
            Owner::Session(k) => Some(*k),
            Owner::Idle(_) => None,
        }));
        keys
    }

    /// Requests that have waited on a silent server for its `frozen_timeout` are counted
    /// (over all workers, in the server's `suspects`); with two of them it is declared frozen.
    fn find_frozen(&mut self) {
        let keys = self.session_keys();
        let rt = self.ctx.rt.clone();
        let now = self.ctx.now_ms;
        let mut stalled: Vec<(usize, usize, u64)> = Vec::new();
        for &key in &keys {
            let Some((upstream, peer, sent)) = self.sessions.get(key).and_then(|s| s.waiting_on()) else { continue };
            let (ups, sent) = (&rt.upstreams[upstream], ms_at(sent));
            let silent = ups.conf.frozen_timeout.is_some_and(|t| now.saturating_sub(sent) >= t.as_millis() as u64);
            if silent && ups.peers[peer].heard.load(Relaxed) < sent {
                stalled.push((upstream, peer, sent));
            }
        }
        self.watch.keys = keys;
        let mut votes: Vec<(usize, usize, u32)> = Vec::new();
        for &(u, p, _) in &stalled {
            match votes.iter_mut().find(|v| (v.0, v.1) == (u, p)) {
                Some(v) => v.2 += 1,
                None => votes.push((u, p, 1)),
            }
        }
        self.cast_votes(votes);
        for (upstream, peer, sent) in stalled {
            rt.upstreams[upstream].stalled(peer, sent, now);
        }
    }

    /// Replaces this worker's share of the servers' `suspects` with `votes`.
    fn cast_votes(&mut self, votes: Vec<(usize, usize, u32)>) {
        let rt = self.ctx.rt.clone();
        for &(u, p, n) in &self.watch.votes {
            rt.upstreams[u].peers[p].suspects.fetch_sub(n, Relaxed);
        }
        for &(u, p, n) in &votes {
            rt.upstreams[u].peers[p].suspects.fetch_add(n, Relaxed);
        }
        self.watch.votes = votes;
    }

    /// A worker that exits takes its votes back.
    pub(super) fn withdraw_votes(&mut self) {
        self.cast_votes(Vec::new());
    }

    /// A server went out: the requests waiting on it move where they safely can.
    fn move_waiting(&mut self) {
        let keys = self.session_keys();
        let mut tally: Vec<Tally> = Vec::new();
        for &key in &keys {
            let Some(s) = self.sessions.get_mut(key) else { continue };
            let Some((upstream, peer)) = s.backend() else { continue };
            let moved = match s.on_server_down(&mut self.ctx) {
                Ok(m) => m,
                Err(cause) => {
                    self.remove(key, cause);
                    continue;
                }
            };
            if moved == Moved::NotThere {
                continue;
            }
            let i = match tally.iter().position(|t| (t.upstream, t.peer) == (upstream, peer)) {
                Some(i) => i,
                None => {
                    tally.push(Tally { upstream, peer, resent: 0, kept: 0 });
                    tally.len() - 1
                }
            };
            match moved {
                Moved::Resent => tally[i].resent += 1,
                _ => tally[i].kept += 1,
            }
        }
        self.watch.keys = keys;
        let rt = self.ctx.rt.clone();
        for t in tally.iter().filter(|t| t.resent == 0) {
            let ups = &rt.upstreams[t.upstream];
            log::info!(
                "{} waiting on server {} in upstream \"{}\" stay (not idempotent, or no other server left)",
                requests(t.kept),
                ups.conf.servers[t.peer].addr,
                ups.conf.name
            );
        }
        for t in tally.iter().filter(|t| t.resent > 0) {
            let ups = &rt.upstreams[t.upstream];
            let kept = match t.kept {
                0 => String::new(),
                n => format!("; {} more stay (not idempotent, or no other server left) until they are answered or time out", n),
            };
            log::warn!(
                "{} waiting on server {} in upstream \"{}\" sent to other servers{}",
                requests(t.resent),
                ups.conf.servers[t.peer].addr,
                ups.conf.name,
                kept
            );
        }
    }
}
