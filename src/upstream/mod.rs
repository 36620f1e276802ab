//! Upstream groups at run time: the state all workers share (per-peer health, activation,
//! weights and counters, as atomics), the per-worker balancer, sticky routes, and the
//! per-worker pool of idle backend connections.

pub(crate) mod bench;
pub(crate) mod frozen;
pub(crate) mod keepalive;
pub(crate) mod large;
pub(crate) mod limits;
pub(crate) mod round_robin;
pub(crate) mod sessions;
pub(crate) mod stats;
pub(crate) mod sticky;
pub(crate) mod tried;

use crate::config::{Balance, Upstream};
use large::Stride;
use round_robin::RoundRobin;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Instant;
use tried::Tried;

/// mod_jk's activation states.
pub(crate) mod activation {
    pub(crate) const ACTIVE: u8 = 0;
    /// Only requests sticky to it (draining).
    pub(crate) const DISABLED: u8 = 1;
    /// Nothing.
    pub(crate) const STOPPED: u8 = 2;

    pub(crate) fn name(a: u8) -> &'static str {
        match a {
            ACTIVE => "active",
            DISABLED => "disabled",
            _ => "stopped",
        }
    }
}

/// Upstreams up to this size find a route's server by comparing routes; larger ones hash.
const ROUTE_SEARCH_MAX: usize = 16;

/// Traffic counters of `balance by_traffic` are halved this often (mod_jk's maintenance).
const TRAFFIC_DECAY_MS: u64 = 60_000;

/// Milliseconds on a monotonic clock shared by every worker (health times are compared
/// across threads, so they cannot be per-worker `Instant`s stored in atomics).
pub(crate) fn now_ms() -> u64 {
    ms_at(Instant::now())
}

/// `t` on the `now_ms` clock (a worker converts the time it already read).
pub(crate) fn ms_at(t: Instant) -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    t.saturating_duration_since(*START.get_or_init(Instant::now)).as_millis() as u64 + 1
}

/// What every worker sees of one peer. Races between workers are benign: like nginx with a
/// shared zone, a failure counted twice or a trial let through twice changes nothing lasting.
/// Aligned to its own cache lines: workers update different peers without false sharing.
#[derive(Default, Debug)]
#[repr(align(128))]
pub(crate) struct PeerState {
    pub(crate) fails: AtomicU32,
    /// When the last failure happened (ms).
    pub(crate) accessed: AtomicU64,
    /// When the current failure window / trial started (ms).
    pub(crate) checked: AtomicU64,
    pub(crate) in_flight: AtomicU32,
    pub(crate) requests: AtomicU64,
    pub(crate) failures: AtomicU64,
    /// Requests whose route named this peer but went elsewhere because it was unusable.
    pub(crate) failovers: AtomicU64,
    /// Runtime activation (`activation::*`) and weight: the manager page may change them.
    pub(crate) activation: AtomicU8,
    pub(crate) weight: AtomicU32,
    /// Active health: failing its checks, and the consecutive results so far.
    pub(crate) hc_down: AtomicBool,
    pub(crate) hc_fails: AtomicU32,
    pub(crate) hc_passes: AtomicU32,
    /// When it last came back (ms), for `slow_start`; 0 = not ramping.
    pub(crate) recovered_at: AtomicU64,
    /// Bytes moved, decayed (by_traffic), and in total each way.
    pub(crate) traffic: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    /// Time to the response head of the last request, in microseconds.
    pub(crate) last_response_us: AtomicU64,
    /// Idle pooled connections to it, summed over workers.
    pub(crate) idle: AtomicU32,
    /// Connections the workers' pools aim to keep for it (their recent peaks, summed).
    pub(crate) keep_demand: AtomicU32,
    /// What the server allows a kept connection (`limits`): idle time in ms and requests;
    /// 0 = not known. And the last close of each kind seen, to confirm a value.
    pub(crate) backend_idle_ms: AtomicU32,
    pub(crate) backend_max_requests: AtomicU32,
    pub(crate) idle_close_seen: AtomicU32,
    pub(crate) close_seen: AtomicU32,
    /// Weight or activation was changed from the manager page (kept across reloads).
    pub(crate) overridden: AtomicBool,
    /// Health-check details, failure causes, responses by class, response times.
    pub(crate) stats: stats::ServerStats,
    /// Sticky sessions seen lately, and when the last sticky request came (ms; 0: never).
    pub(crate) live: sessions::LiveSessions,
    pub(crate) last_sticky: AtomicU64,
    /// When a byte last came from it (ms; watched only with `frozen_timeout`), and until
    /// when it is out as frozen (0: it is not).
    pub(crate) heard: AtomicU64,
    pub(crate) frozen_until: AtomicU64,
    /// Requests, over all workers, whose whole request went out and that have had nothing
    /// back for `frozen_timeout` (each worker's scan adds its own and takes them back).
    pub(crate) suspects: AtomicU32,
}

/// An upstream's configuration plus the shared state of its peers.
#[derive(Debug)]
pub(crate) struct UpstreamState {
    pub(crate) conf: Upstream,
    pub(crate) peers: Vec<PeerState>,
    /// Per peer: redirect prefixes that point at it (`http://ADDR`, `http://NAME`), which
    /// `proxy_redirect default` rewrites to the client's host.
    pub(crate) rewrite: Vec<[String; 2]>,
    /// Server by route (`route=`) for upstreams too large to search for it (a few servers
    /// are found faster by comparing their routes).
    routes: Option<HashMap<Box<[u8]>, usize>>,
    last_decay: AtomicU64,
}

impl UpstreamState {
    pub(crate) fn new(conf: Upstream) -> UpstreamState {
        let peers = conf
            .servers
            .iter()
            .map(|p| {
                let s = PeerState::default();
                s.weight.store(p.weight, Relaxed);
                let a = if p.down {
                    activation::STOPPED
                } else if p.disabled {
                    activation::DISABLED
                } else {
                    activation::ACTIVE
                };
                s.activation.store(a, Relaxed);
                s
            })
            .collect();
        let rewrite = conf.servers.iter().map(|p| [format!("http://{}", p.addr), format!("http://{}", conf.name)]).collect();
        let routes = (conf.servers.len() > ROUTE_SEARCH_MAX).then(|| {
            let mut map = HashMap::new();
            for (i, p) in conf.servers.iter().enumerate() {
                if let Some(r) = &p.route {
                    // The first server with a route keeps it, as the search does.
                    map.entry(r.as_bytes().into()).or_insert(i);
                }
            }
            map
        });
        UpstreamState { conf, peers, rewrite, routes, last_decay: AtomicU64::new(now_ms()) }
    }

    /// Activation and health allow requests: active health always, passive health (nginx's
    /// fail window) and a freeze unless it is the only server (nginx: then it is always
    /// tried).
    pub(crate) fn usable(&self, peer: usize, now: u64) -> bool {
        let s = &self.peers[peer];
        if s.activation.load(Relaxed) == activation::STOPPED || s.hc_down.load(Relaxed) {
            return false;
        }
        self.single() || !self.failing(peer, now)
    }

    /// A sticky request of the session whose id hashes to `session` goes to `peer`.
    pub(crate) fn record_sticky(&self, peer: usize, session: u64, now: u64) {
        let Some(st) = &self.conf.sticky else { return };
        let s = &self.peers[peer];
        s.live.record(session, now, st.window.as_millis() as u64);
        s.last_sticky.store(now, Relaxed);
    }

    /// Distinct sticky sessions that reached `peer` within the window (an estimate).
    pub(crate) fn live_sessions(&self, peer: usize, now: u64) -> u64 {
        self.conf.sticky.as_ref().map_or(0, |st| self.peers[peer].live.estimate(now, st.window.as_millis() as u64))
    }

    /// A disabled (draining) server no sticky request has reached for `drain_idle`, with
    /// nothing in flight on it: its sessions are gone, it can be restarted.
    pub(crate) fn drained(&self, peer: usize, now: u64) -> bool {
        let s = &self.peers[peer];
        // A request still in progress there (a long download, a tunnel) is not over.
        if s.activation.load(Relaxed) == activation::ACTIVE || s.in_flight.load(Relaxed) > 0 {
            return false;
        }
        let last = s.last_sticky.load(Relaxed);
        self.conf.sticky.as_ref().is_none_or(|st| last == 0 || now.saturating_sub(last) >= st.drain_idle.as_millis() as u64)
    }

    /// May get requests that are not sticky to it (active, not disabled or stopped).
    pub(crate) fn takes_new(&self, peer: usize) -> bool {
        self.peers[peer].activation.load(Relaxed) == activation::ACTIVE
    }

    /// nginx: with one server and no backup, failures never make it unavailable.
    pub(crate) fn single(&self) -> bool {
        self.conf.servers.len() == 1
    }

    /// Total number of tries a request may make (all peers, backups included).
    pub(crate) fn max_tries(&self) -> u32 {
        self.conf.servers.len() as u32
    }

    /// The weight to balance with now: the runtime weight, ramped up during `slow_start`.
    pub(crate) fn weight(&self, peer: usize, now: u64) -> u32 {
        let s = &self.peers[peer];
        let w = s.weight.load(Relaxed).max(1);
        let ramp = self.conf.servers[peer].slow_start.as_millis() as u64;
        let since = s.recovered_at.load(Relaxed);
        if ramp == 0 || since == 0 {
            return w;
        }
        let elapsed = now.saturating_sub(since);
        if elapsed >= ramp {
            s.recovered_at.store(0, Relaxed);
            return w;
        }
        ((w as u64 * elapsed / ramp) as u32).max(1)
    }

    /// Carries manager changes (weight, activation) over from the previous generation for
    /// servers that still exist (same upstream name and address).
    /// What was learned of a server's connection limits is kept too.
    pub(crate) fn inherit_overrides(&self, old: &UpstreamState) {
        let by_addr: HashMap<_, _> = old.conf.servers.iter().enumerate().map(|(j, q)| (q.addr, j)).collect();
        for (i, p) in self.conf.servers.iter().enumerate() {
            let Some(&j) = by_addr.get(&p.addr) else { continue };
            let o = &old.peers[j];
            self.peers[i].backend_idle_ms.store(o.backend_idle_ms.load(Relaxed), Relaxed);
            self.peers[i].backend_max_requests.store(o.backend_max_requests.load(Relaxed), Relaxed);
            if o.overridden.load(Relaxed) {
                self.peers[i].weight.store(o.weight.load(Relaxed), Relaxed);
                self.peers[i].activation.store(o.activation.load(Relaxed), Relaxed);
                self.peers[i].overridden.store(true, Relaxed);
            }
        }
    }

    /// The peer whose route is `route`, if any.
    pub(crate) fn peer_for_route(&self, route: &[u8]) -> Option<usize> {
        match &self.routes {
            Some(map) => map.get(route).copied(),
            None => self.conf.servers.iter().position(|p| p.route.as_deref().is_some_and(|r| r.as_bytes() == route)),
        }
    }

    /// Records bytes moved by a finished request (status page, by_traffic).
    pub(crate) fn account(&self, peer: usize, bytes_in: u64, bytes_out: u64) {
        let s = &self.peers[peer];
        s.bytes_in.fetch_add(bytes_in, Relaxed);
        s.bytes_out.fetch_add(bytes_out, Relaxed);
        if self.conf.balance == Balance::ByTraffic {
            s.traffic.fetch_add(bytes_in + bytes_out, Relaxed);
        }
    }

    /// The load least_conn and by_traffic compare: in-flight requests or decayed bytes.
    pub(crate) fn load(&self, peer: usize) -> u64 {
        match self.conf.balance {
            Balance::RoundRobin => 0,
            Balance::LeastConn => self.peers[peer].in_flight.load(Relaxed) as u64,
            Balance::ByTraffic => self.peers[peer].traffic.load(Relaxed),
        }
    }

    /// Halves the by_traffic counters once per decay period (whichever worker comes first).
    pub(crate) fn decay_traffic(&self, now: u64) {
        let last = self.last_decay.load(Relaxed);
        if now.saturating_sub(last) >= TRAFFIC_DECAY_MS && self.last_decay.compare_exchange(last, now, Relaxed, Relaxed).is_ok() {
            for s in &self.peers {
                let _ = s.traffic.fetch_update(Relaxed, Relaxed, |t| Some(t / 2));
            }
        }
    }

    /// Of the candidates in `cand`, those with the lowest load per weight under the
    /// upstream's method (all of them for round_robin); ties are left to round-robin.
    pub(crate) fn least_loaded(&self, cand: u128, now: u64) -> u128 {
        let metric = |i: usize| self.load(i);
        if self.conf.balance == Balance::RoundRobin {
            return cand;
        }
        if self.conf.balance == Balance::ByTraffic {
            self.decay_traffic(now);
        }
        let mut best: Option<(u64, u64)> = None; // (metric, weight) of the lowest ratio so far
        let mut set: u128 = 0;
        for i in 0..self.conf.servers.len() {
            if cand & (1u128 << i) == 0 {
                continue;
            }
            let (m, w) = (metric(i) as u128, self.weight(i, now) as u128);
            match best {
                // m/w < bm/bw  <=>  m*bw < bm*w
                Some((bm, bw)) if m * bw as u128 > bm as u128 * w => {}
                Some((bm, bw)) if m * bw as u128 == bm as u128 * w => set |= 1u128 << i,
                _ => {
                    best = Some((m as u64, w as u64));
                    set = 1u128 << i;
                }
            }
        }
        set
    }
}

/// Chooses peers for requests of one upstream in one worker. `tried` holds the peers this
/// request has already used (they are skipped); `free` reports how the exchange ended.
pub(crate) trait Balancer {
    fn get(&mut self, up: &UpstreamState, tried: &mut Tried, now: u64) -> Option<usize>;
    fn free(&mut self, up: &UpstreamState, peer: usize, failed: bool, now: u64);
}

/// Upstreams up to this size use nginx's smooth round-robin, which looks at every server per
/// request; larger ones the stride heap (`large`), whose cost hardly grows with their size
/// (`bench/select.rs`: from about 8 servers on it is the cheaper).
pub(crate) const SMOOTH_MAX: usize = 8;

/// A worker's balancer for one upstream: nginx's smooth round-robin for up to `SMOOTH_MAX`
/// servers, the stride heap beyond.
pub(crate) enum Scheduler {
    Smooth(RoundRobin),
    Stride(Stride),
}

impl Scheduler {
    pub(crate) fn new(up: &UpstreamState) -> Scheduler {
        if up.conf.servers.len() <= SMOOTH_MAX {
            Scheduler::Smooth(RoundRobin::new(up))
        } else {
            Scheduler::Stride(Stride::new(up))
        }
    }
}

impl Balancer for Scheduler {
    fn get(&mut self, up: &UpstreamState, tried: &mut Tried, now: u64) -> Option<usize> {
        match self {
            Scheduler::Smooth(b) => b.get(up, tried, now),
            Scheduler::Stride(b) => b.get(up, tried, now),
        }
    }

    fn free(&mut self, up: &UpstreamState, peer: usize, failed: bool, now: u64) {
        match self {
            Scheduler::Smooth(b) => b.free(up, peer, failed, now),
            Scheduler::Stride(b) => b.free(up, peer, failed, now),
        }
    }
}
