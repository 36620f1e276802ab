//! Servers that stop answering without closing their sockets — a long GC pause, threads all
//! stuck, a deadlock, a SIGSTOP. The kernel still accepts connections and takes requests for
//! such a JVM, so neither connect errors nor resets ever come; requests just wait.
//!
//! Two things take such a server out: an active check that times out (or a CPING that gets
//! no CPONG, or passive failures reaching `max_fails`), and, with `frozen_timeout`, what the
//! workers see themselves — a request written to the server longer ago than
//! `frozen_timeout`, and not one byte from the server on any connection since, while another
//! request waits on it too. A frozen server is out for `fail_timeout` (or until it is heard
//! from again, an active check's answer included).
//!
//! Whenever a server goes out for its health, the process-wide `DOWN_EPOCH` moves on; every
//! worker notices at its next loop pass and sends the requests waiting on that server
//! elsewhere when that is safe (`worker::watch`).

use super::UpstreamState;
use std::sync::atomic::{AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};

/// Moves on each time a server goes out for its health.
static DOWN_EPOCH: AtomicU64 = AtomicU64::new(0);

/// Acquire: pairs with `announce_down`, so a worker that sees the new epoch also sees why
/// (the server's `hc_down`, `frozen_until` or failure count).
pub(crate) fn down_epoch() -> u64 {
    DOWN_EPOCH.load(Acquire)
}

/// A server just went out (its state is stored before): every worker looks at the requests
/// waiting on it.
pub(crate) fn announce_down() {
    DOWN_EPOCH.fetch_add(1, Release);
}

impl UpstreamState {
    /// Out for its health right now: failing its checks, frozen, or within nginx's
    /// `fail_timeout` after `max_fails` failures (activation aside).
    pub(crate) fn failing(&self, peer: usize, now: u64) -> bool {
        let p = &self.conf.servers[peer];
        let s = &self.peers[peer];
        s.hc_down.load(Relaxed)
            || self.frozen(peer, now)
            || (p.max_fails > 0 && s.fails.load(Relaxed) >= p.max_fails && now.saturating_sub(s.checked.load(Relaxed)) <= p.fail_timeout.as_millis() as u64)
    }

    /// Bytes came from `peer`: a response, a CPONG, a check's answer. Only watched when the
    /// upstream has `frozen_timeout` (one relaxed load per read, a store at most once a
    /// millisecond).
    pub(crate) fn heard_from(&self, peer: usize, now: u64) {
        let s = &self.peers[peer];
        if s.heard.load(Relaxed) < now {
            s.heard.store(now, Relaxed);
        }
        if s.frozen_until.load(Relaxed) != 0 {
            self.thaw(peer, now, "answers again");
        }
    }

    /// A request was written to `peer` at `sent` (ms) and is still waiting at `now`: if the
    /// server has sent nothing at all since, for `frozen_timeout`, and another request waits
    /// on it the same way (`suspects`, counted by the workers' scans), it is declared frozen.
    /// True when this call declared it.
    pub(crate) fn stalled(&self, peer: usize, sent: u64, now: u64) -> bool {
        let Some(limit) = self.conf.frozen_timeout else { return false };
        let s = &self.peers[peer];
        let silent = now.saturating_sub(sent);
        if self.single() || silent < limit.as_millis() as u64 || s.heard.load(Relaxed) >= sent {
            return false;
        }
        // One slow request alone is not evidence: a live server answers the others.
        let waiting = s.suspects.load(Relaxed);
        if waiting < 2 {
            return false;
        }
        let conf = &self.conf.servers[peer];
        let until = now + conf.fail_timeout.max(limit).as_millis() as u64;
        if s.frozen_until.compare_exchange(0, until, Relaxed, Relaxed).is_err() {
            return false;
        }
        s.stats.frozen_since.store(now, Relaxed);
        s.stats.frozen_times.fetch_add(1, Relaxed);
        log::error!(
            "server {} in upstream \"{}\" stopped answering: nothing from it for {} ms while {} requests waited (frozen_timeout); out for {} ms",
            conf.addr,
            self.conf.name,
            silent,
            waiting,
            until - now
        );
        announce_down();
        true
    }

    /// Frozen at `now` (a freeze whose time is over ends here).
    pub(crate) fn frozen(&self, peer: usize, now: u64) -> bool {
        let until = self.peers[peer].frozen_until.load(Relaxed);
        if until == 0 {
            return false;
        }
        if now < until {
            return true;
        }
        self.thaw(peer, now, "is tried again (frozen for fail_timeout)");
        false
    }

    /// Ends a freeze (once, whichever worker comes first); `slow_start` ramps it up again.
    fn thaw(&self, peer: usize, now: u64, how: &str) {
        let s = &self.peers[peer];
        let until = s.frozen_until.load(Relaxed);
        if until == 0 || s.frozen_until.compare_exchange(until, 0, Relaxed, Relaxed).is_err() {
            return;
        }
        let conf = &self.conf.servers[peer];
        if !conf.slow_start.is_zero() {
            s.recovered_at.store(now, Relaxed);
        }
        let since = s.stats.frozen_since.load(Relaxed);
        log::warn!("server {} in upstream \"{}\" {}, {} ms after it stopped answering", conf.addr, self.conf.name, how, now.saturating_sub(since));
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Peer, Upstream};
    use crate::upstream::UpstreamState;
    use std::sync::atomic::Ordering::Relaxed;
    use std::time::Duration;

    fn two(frozen_timeout: Option<Duration>) -> UpstreamState {
        let servers = (0..2).map(|i| Peer::new(([127, 0, 0, 1], 1000 + i).into(), format!("p{}", i))).collect();
        UpstreamState::new(Upstream { servers, frozen_timeout, ..Upstream::new("u".into(), false) })
    }

    #[test]
    fn silence_with_two_waiting_freezes_until_heard_from() {
        let up = two(Some(Duration::from_millis(1000)));
        up.peers[0].suspects.store(2, Relaxed);
        let before = super::down_epoch();
        assert!(!up.stalled(0, 5_000, 5_900), "not yet frozen_timeout");
        up.heard_from(0, 5_100);
        assert!(!up.stalled(0, 5_000, 7_000), "it answered after the request was sent");
        assert!(up.stalled(0, 5_200, 6_300));
        assert!(!up.stalled(0, 5_200, 6_300), "declared once");
        assert!(super::down_epoch() > before);
        assert!(!up.usable(0, 6_400) && up.usable(1, 6_400));
        up.heard_from(0, 6_500);
        assert!(up.usable(0, 6_500), "heard from again");
    }

    #[test]
    fn one_slow_request_alone_is_not_a_freeze() {
        let up = two(Some(Duration::from_millis(1000)));
        up.peers[0].suspects.store(1, Relaxed);
        up.peers[0].in_flight.store(5, Relaxed);
        assert!(!up.stalled(0, 1_000, 60_000), "others in flight (streams, tunnels, uploads) are no evidence");
    }

    #[test]
    fn a_freeze_lasts_fail_timeout_and_off_means_never() {
        let up = two(Some(Duration::from_millis(500)));
        up.peers[1].suspects.store(3, Relaxed);
        assert!(up.stalled(1, 1_000, 1_600));
        assert!(up.frozen(1, 1_600 + 9_999));
        assert!(!up.frozen(1, 1_600 + 10_000), "fail_timeout (10s) is over");
        let off = two(None);
        off.peers[0].suspects.store(9, Relaxed);
        assert!(!off.stalled(0, 1_000, 600_000));
    }

    #[test]
    fn a_thawed_server_ramps_up_with_slow_start() {
        let mut up = two(Some(Duration::from_millis(500)));
        up.conf.servers[0].slow_start = Duration::from_secs(10);
        up.peers[0].suspects.store(2, Relaxed);
        assert!(up.stalled(0, 1_000, 2_000));
        up.heard_from(0, 4_000);
        assert_eq!(up.peers[0].recovered_at.load(Relaxed), 4_000);
        assert_eq!(up.weight(0, 4_000), 1, "from weight 1 up");
    }
}
