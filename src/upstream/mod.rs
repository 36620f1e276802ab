//! Upstream groups at run time: the state all workers share (per-peer health and counters,
//! as atomics), the per-worker balancer, and the per-worker pool of idle backend connections.

pub mod keepalive;
pub mod round_robin;

use crate::config::Upstream;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Instant;

/// Peers per upstream: the `tried` set of a request is one u128.
pub const MAX_PEERS: usize = 128;

/// Milliseconds on a monotonic clock shared by every worker (health times are compared
/// across threads, so they cannot be per-worker `Instant`s stored in atomics).
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// What every worker sees of one peer. Races between workers are benign: like nginx with a
/// shared zone, a failure counted twice or a trial let through twice changes nothing lasting.
#[derive(Default, Debug)]
pub struct PeerState {
    pub fails: AtomicU32,
    /// When the last failure happened (ms).
    pub accessed: AtomicU64,
    /// When the current failure window / trial started (ms).
    pub checked: AtomicU64,
    pub in_flight: AtomicU32,
    pub requests: AtomicU64,
    pub failures: AtomicU64,
}

/// An upstream's configuration plus the shared state of its peers.
#[derive(Debug)]
pub struct UpstreamState {
    pub conf: Upstream,
    pub peers: Vec<PeerState>,
    /// Per peer: redirect prefixes that point at it (`http://ADDR`, `http://NAME`), which
    /// `proxy_redirect default` rewrites to the client's host.
    pub rewrite: Vec<[String; 2]>,
}

impl UpstreamState {
    pub fn new(conf: Upstream) -> UpstreamState {
        let peers = conf.servers.iter().map(|_| PeerState::default()).collect();
        let rewrite = conf.servers.iter().map(|p| [format!("http://{}", p.addr), format!("http://{}", conf.name)]).collect();
        UpstreamState { conf, peers, rewrite }
    }

    /// Whether passive health currently lets `peer` be chosen (nginx's fail window test).
    pub fn usable(&self, peer: usize, now: u64) -> bool {
        let p = &self.conf.servers[peer];
        if p.down {
            return false;
        }
        let s = &self.peers[peer];
        !(p.max_fails > 0 && s.fails.load(Relaxed) >= p.max_fails && now.saturating_sub(s.checked.load(Relaxed)) <= p.fail_timeout.as_millis() as u64)
    }

    /// nginx: with one primary and no backup, failures never make the peer unavailable.
    pub fn single(&self) -> bool {
        self.conf.servers.len() == 1
    }

    /// Total number of tries a request may make (all peers, backups included).
    pub fn max_tries(&self) -> u32 {
        self.conf.servers.len() as u32
    }
}

/// Chooses peers for requests of one upstream in one worker. `tried` holds the peers this
/// request has already used (they are skipped); `free` reports how the exchange ended.
pub trait Balancer {
    fn get(&mut self, up: &UpstreamState, tried: &mut u128, now: u64) -> Option<usize>;
    fn free(&mut self, up: &UpstreamState, peer: usize, failed: bool, now: u64);
}
