//! What the status page and Prometheus tell of a server beyond its balancing state: the last
//! active check (result, time, latency), the last failure and its cause, errors by cause,
//! retries, responses by status class and a response-time histogram. Each is a relaxed atomic
//! written where the event happens: three `fetch_add`s per response, a few more only on a
//! failure or a check. A reload moves the counters to the next configuration generation.

use super::{now_ms, PeerState, UpstreamState};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Why an attempt or an active check failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cause {
    Refused = 1,
    ConnectError,
    ConnectTimeout,
    /// No (complete) answer in time once connected.
    Timeout,
    /// AJP: the CPING got no CPONG (a wrong answer, or none in time).
    Cping,
    /// Reset or closed by the server once connected.
    Reset,
    InvalidResponse,
    /// A status that counts as a failure (a `proxy_next_upstream` 5xx, a check's non-2xx/3xx).
    Status,
    /// The server stopped answering (`frozen_timeout`, or a request moved off a server that
    /// went down while it waited).
    Frozen,
}

impl Cause {
    pub(crate) const ALL: [Cause; 9] = [
        Cause::Refused,
        Cause::ConnectError,
        Cause::ConnectTimeout,
        Cause::Timeout,
        Cause::Cping,
        Cause::Reset,
        Cause::InvalidResponse,
        Cause::Status,
        Cause::Frozen,
    ];

    /// A failed connect(2).
    pub(crate) fn of_connect(e: &io::Error) -> Cause {
        if e.kind() == io::ErrorKind::ConnectionRefused {
            Cause::Refused
        } else {
            Cause::ConnectError
        }
    }

    /// Its name in JSON and in Prometheus labels.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Cause::Refused => "refused",
            Cause::ConnectError => "connect_error",
            Cause::ConnectTimeout => "connect_timeout",
            Cause::Timeout => "timeout",
            Cause::Cping => "cping",
            Cause::Reset => "reset",
            Cause::InvalidResponse => "invalid_response",
            Cause::Status => "http_status",
            Cause::Frozen => "frozen",
        }
    }

    fn text(self) -> &'static str {
        match self {
            Cause::Refused => "connection refused",
            Cause::ConnectError => "connect error",
            Cause::ConnectTimeout => "connect timed out",
            Cause::Timeout => "timed out",
            Cause::Cping => "CPING failed",
            Cause::Reset => "connection reset or closed",
            Cause::InvalidResponse => "invalid response",
            Cause::Status => "bad status",
            Cause::Frozen => "stopped answering",
        }
    }

    fn from_u8(n: u8) -> Option<Cause> {
        Cause::ALL.get(usize::from(n).wrapping_sub(1)).copied()
    }
}

/// The outcome of a check or an attempt: passed (`cause` None) or why not, with the HTTP
/// status when there was one. Stored packed in one atomic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) cause: Option<Cause>,
    pub(crate) status: u16,
}

impl Outcome {
    pub(crate) const PASSED: Outcome = Outcome { cause: None, status: 0 };

    pub(crate) fn failed(cause: Cause) -> Outcome {
        Outcome { cause: Some(cause), status: 0 }
    }

    pub(crate) fn status(status: u16, passed: bool) -> Outcome {
        Outcome { cause: (!passed).then_some(Cause::Status), status }
    }

    fn pack(self) -> u64 {
        u64::from(self.cause.map_or(0, |c| c as u8)) | u64::from(self.status) << 8
    }

    fn unpack(v: u64) -> Outcome {
        Outcome { cause: Cause::from_u8(v as u8), status: (v >> 8) as u16 }
    }

    /// "HTTP 200", "CPONG", "connection refused", "HTTP 503", ...
    pub(crate) fn describe(self) -> String {
        match (self.cause, self.status) {
            (None, 0) => "CPONG".to_string(),
            (None | Some(Cause::Status), s) => format!("HTTP {}", s),
            (Some(c), _) => c.text().to_string(),
        }
    }
}

/// Upper bounds of the response-time histogram's buckets in microseconds (1 ms to 30 s, as
/// Prometheus' default buckets with finer steps below 5 ms and one for slow answers), then +Inf.
pub(crate) const BUCKETS_US: [u64; 14] =
    [1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000];

/// One server's figures for the status page (part of its `PeerState`).
#[derive(Default, Debug)]
pub(crate) struct ServerStats {
    /// Failed attempts by `Cause` (index = the cause's number; 0 is unused).
    pub(crate) errors: [AtomicU64; 10],
    /// Failed attempts after which the request went on to another try.
    pub(crate) retries: AtomicU64,
    /// Responses by status class, 1xx to 5xx.
    pub(crate) responses: [AtomicU64; 5],
    /// Times to the response head: per bucket of `BUCKETS_US` (not cumulative), then +Inf.
    pub(crate) latency: [AtomicU64; 15],
    pub(crate) latency_sum_us: AtomicU64,
    pub(crate) checks: AtomicU64,
    pub(crate) check_failures: AtomicU64,
    /// The last failed attempt (`Outcome` packed) and when (`now_ms`, 0 = never).
    last_fail: AtomicU64,
    last_fail_at: AtomicU64,
    /// The last active check, when it ended and how long it took.
    last_check: AtomicU64,
    last_check_at: AtomicU64,
    last_check_us: AtomicU64,
    /// When the active checks took it out (`now_ms`; meaningful while `hc_down`).
    pub(crate) hc_down_since: AtomicU64,
    /// When failed attempts took it out (nginx's `max_fails`; meaningful while that holds).
    pub(crate) passive_down_since: AtomicU64,
    /// When it was last declared frozen (ms), and how many times it was.
    pub(crate) frozen_since: AtomicU64,
    pub(crate) frozen_times: AtomicU64,
}

/// The last check: its outcome, latency (µs) and age (ms).
pub(crate) struct LastCheck {
    pub(crate) outcome: Outcome,
    pub(crate) latency_us: u64,
    pub(crate) age_ms: u64,
}

impl ServerStats {
    pub(crate) fn record_check(&self, outcome: Outcome, latency: Duration, now: u64) {
        self.checks.fetch_add(1, Relaxed);
        if outcome.cause.is_some() {
            self.check_failures.fetch_add(1, Relaxed);
        }
        self.last_check.store(outcome.pack(), Relaxed);
        self.last_check_us.store(latency.as_micros() as u64, Relaxed);
        self.last_check_at.store(now, Relaxed);
    }

    pub(crate) fn last_check(&self, now: u64) -> Option<LastCheck> {
        let at = self.last_check_at.load(Relaxed);
        (at != 0).then(|| LastCheck {
            outcome: Outcome::unpack(self.last_check.load(Relaxed)),
            latency_us: self.last_check_us.load(Relaxed),
            age_ms: now.saturating_sub(at),
        })
    }

    /// The last failed attempt and how long ago (ms).
    pub(crate) fn last_failure(&self, now: u64) -> Option<(Outcome, u64)> {
        let at = self.last_fail_at.load(Relaxed);
        (at != 0).then(|| (Outcome::unpack(self.last_fail.load(Relaxed)), now.saturating_sub(at)))
    }

    /// The counters a reload moves to the next generation, in a fixed order.
    fn counters(&self) -> impl Iterator<Item = &AtomicU64> {
        self.errors.iter().chain([&self.retries]).chain(&self.responses).chain(&self.latency).chain([
            &self.latency_sum_us,
            &self.checks,
            &self.check_failures,
            &self.frozen_times,
        ])
    }

    /// Moves `old`'s counters into these, and keeps its latest events where they are newer.
    fn absorb(&self, old: &ServerStats) {
        for (new, old) in self.counters().zip(old.counters()) {
            new.fetch_add(old.swap(0, Relaxed), Relaxed);
        }
        let newer = |at: &AtomicU64, old_at: &AtomicU64| old_at.load(Relaxed) > at.load(Relaxed);
        if newer(&self.last_fail_at, &old.last_fail_at) {
            self.last_fail.store(old.last_fail.load(Relaxed), Relaxed);
            self.last_fail_at.store(old.last_fail_at.load(Relaxed), Relaxed);
        }
        if newer(&self.last_check_at, &old.last_check_at) {
            self.last_check.store(old.last_check.load(Relaxed), Relaxed);
            self.last_check_us.store(old.last_check_us.load(Relaxed), Relaxed);
            self.last_check_at.store(old.last_check_at.load(Relaxed), Relaxed);
        }
    }
}

impl PeerState {
    /// A response head arrived after `elapsed` (from the start of the attempt).
    pub(crate) fn record_response(&self, status: u16, elapsed: Duration) {
        let us = elapsed.as_micros() as u64;
        self.last_response_us.store(us, Relaxed);
        let st = &self.stats;
        if let Some(class) = st.responses.get(usize::from(status / 100).wrapping_sub(1)) {
            class.fetch_add(1, Relaxed);
        }
        let bucket = BUCKETS_US.partition_point(|&b| b < us);
        st.latency[bucket].fetch_add(1, Relaxed);
        st.latency_sum_us.fetch_add(us, Relaxed);
    }

    fn record_failure(&self, outcome: Outcome, now: u64) {
        let st = &self.stats;
        if let Some(c) = outcome.cause {
            st.errors[c as usize].fetch_add(1, Relaxed);
        }
        if outcome.cause == Some(Cause::Status) {
            self.count_status(outcome.status);
        }
        st.last_fail.store(outcome.pack(), Relaxed);
        st.last_fail_at.store(now, Relaxed);
    }

    /// A response that was not passed on (a retried status): its class only.
    pub(crate) fn count_status(&self, status: u16) {
        if let Some(class) = self.stats.responses.get(usize::from(status / 100).wrapping_sub(1)) {
            class.fetch_add(1, Relaxed);
        }
    }

    /// The counters a reload moves, besides those of `stats`.
    fn counters(&self) -> [&AtomicU64; 5] {
        [&self.requests, &self.failures, &self.failovers, &self.bytes_in, &self.bytes_out]
    }
}

impl UpstreamState {
    /// An attempt on `peer` failed in a way that counts against it (called before the
    /// balancer counts it): its cause, and since when it is down when this failure is the
    /// one that takes it out (nginx's `max_fails` within `fail_timeout`; a failed trial
    /// request of a server already out keeps the time it went out).
    pub(crate) fn record_failure(&self, peer: usize, outcome: Outcome) {
        let now = now_ms();
        let (conf, s) = (&self.conf.servers[peer], &self.peers[peer]);
        s.record_failure(outcome, now);
        if self.single() || conf.max_fails == 0 {
            return;
        }
        let fails = s.fails.load(Relaxed);
        let out = fails >= conf.max_fails && now.saturating_sub(s.checked.load(Relaxed)) <= conf.fail_timeout.as_millis() as u64;
        if !out && fails + 1 >= conf.max_fails {
            s.stats.passive_down_since.store(now, Relaxed);
        }
    }

    /// Moves the counters of servers that still exist (same address) from the same upstream
    /// of an older generation into this one; their latest events come along where newer.
    /// Called at a reload, then again while the old generation's workers finish (moving
    /// what they counted meanwhile), so no count is lost or counted twice.
    pub(crate) fn absorb(&self, old_up: &UpstreamState) {
        for (i, p) in self.conf.servers.iter().enumerate() {
            let Some(j) = old_up.conf.servers.iter().position(|q| q.addr == p.addr) else { continue };
            let (new, old) = (&self.peers[i], &old_up.peers[j]);
            for (n, o) in new.counters().into_iter().zip(old.counters()) {
                n.fetch_add(o.swap(0, Relaxed), Relaxed);
            }
            if new.last_response_us.load(Relaxed) == 0 {
                new.last_response_us.store(old.last_response_us.load(Relaxed), Relaxed);
            }
            // Live sessions and the last sticky request: a draining server stays undrained.
            new.last_sticky.fetch_max(old.last_sticky.load(Relaxed), Relaxed);
            let window = |u: &UpstreamState| u.conf.sticky.as_ref().map(|s| s.window);
            if window(self).is_some() && window(self) == window(old_up) {
                new.live.absorb(&old.live);
            }
            new.stats.absorb(&old.stats);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Peer, Upstream};

    fn upstream(ports: &[u16]) -> UpstreamState {
        let servers = ports.iter().map(|&p| Peer::new(([127, 0, 0, 1], p).into(), format!("p{}", p))).collect();
        UpstreamState::new(Upstream { servers, ..Upstream::new("u".into(), false) })
    }

    #[test]
    fn outcomes_pack_and_describe() {
        for o in [Outcome::PASSED, Outcome::status(200, true), Outcome::status(503, false), Outcome::failed(Cause::Refused), Outcome::failed(Cause::Cping)] {
            assert_eq!(Outcome::unpack(o.pack()), o);
        }
        assert_eq!(Outcome::status(200, true).describe(), "HTTP 200");
        assert_eq!(Outcome::status(503, false).describe(), "HTTP 503");
        assert_eq!(Outcome::PASSED.describe(), "CPONG");
        assert_eq!(Outcome::failed(Cause::Refused).describe(), "connection refused");
        assert_eq!(Outcome::unpack(0x0900), Outcome::status(9, true), "cause 0 is a pass");
        assert_eq!(Cause::from_u8(10), None);
    }

    #[test]
    fn responses_fill_class_and_bucket() {
        let up = upstream(&[1]);
        let p = &up.peers[0];
        p.record_response(200, Duration::from_micros(1_000));
        p.record_response(204, Duration::from_micros(1_001));
        p.record_response(503, Duration::from_secs(100));
        p.record_response(0, Duration::ZERO);
        let n = |a: &[AtomicU64]| a.iter().map(|v| v.load(Relaxed)).collect::<Vec<_>>();
        assert_eq!(n(&p.stats.responses), [0, 2, 0, 0, 1]);
        let lat = n(&p.stats.latency);
        assert_eq!((lat[0], lat[1], lat[14]), (2, 1, 1), "le is inclusive; beyond the last bound is +Inf: {:?}", lat);
        assert_eq!(p.stats.latency_sum_us.load(Relaxed), 100_002_001);
    }

    #[test]
    fn passive_down_since_is_when_it_went_out() {
        let up = upstream(&[1, 2]);
        let s = &up.peers[0];
        up.record_failure(0, Outcome::failed(Cause::Refused));
        let went_out = s.stats.passive_down_since.load(Relaxed);
        assert!(went_out > 0);
        // The balancer counts it (max_fails=1): out. A failed trial keeps the time it went out.
        s.fails.store(1, Relaxed);
        s.checked.store(now_ms(), Relaxed);
        s.stats.passive_down_since.store(1, Relaxed);
        up.record_failure(0, Outcome::failed(Cause::Timeout));
        assert_eq!(s.stats.passive_down_since.load(Relaxed), 1);
        assert_eq!(s.stats.errors[Cause::Refused as usize].load(Relaxed) + s.stats.errors[Cause::Timeout as usize].load(Relaxed), 2);
        let single = upstream(&[3]);
        single.record_failure(0, Outcome::failed(Cause::Reset));
        assert_eq!(single.peers[0].stats.passive_down_since.load(Relaxed), 0, "one server is never out (nginx)");
    }

    #[test]
    fn absorb_moves_counters_of_servers_that_remain() {
        let (old, new) = (upstream(&[1, 2]), upstream(&[2, 3]));
        old.peers[1].requests.store(7, Relaxed);
        old.record_failure(1, Outcome::failed(Cause::Timeout));
        old.peers[0].requests.store(5, Relaxed);
        new.peers[0].requests.store(1, Relaxed);
        new.absorb(&old);
        assert_eq!(new.peers[0].requests.load(Relaxed), 8);
        assert_eq!(new.peers[0].stats.errors[Cause::Timeout as usize].load(Relaxed), 1);
        assert_eq!(new.peers[0].stats.last_failure(now_ms()).map(|f| f.0), Some(Outcome::failed(Cause::Timeout)));
        assert_eq!(new.peers[1].requests.load(Relaxed), 0, "a new server starts at zero");
        // What the old generation counts later moves once, not twice.
        old.peers[1].requests.fetch_add(2, Relaxed);
        new.absorb(&old);
        new.absorb(&old);
        assert_eq!(new.peers[0].requests.load(Relaxed), 10);
    }
}
