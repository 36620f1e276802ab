//! nginx's smooth weighted round-robin with its passive health rules
//! (`ngx_http_upstream_round_robin.c`): `get` picks a peer, `free` records the outcome.
//! Weights and current weights are per worker, as in nginx without a shared zone; fail
//! counts and windows are shared by all workers. least_conn and by_traffic first narrow the
//! candidates to the least loaded per weight, then round-robin breaks the tie (as nginx's
//! least_conn does).

use super::tried::Tried;
use super::{Balancer, UpstreamState};
use std::sync::atomic::Ordering::Relaxed;

pub(crate) struct RoundRobin {
    current: Vec<i64>,
    effective: Vec<i64>,
}

impl RoundRobin {
    pub(crate) fn new(up: &UpstreamState) -> RoundRobin {
        RoundRobin { current: vec![0; up.conf.servers.len()], effective: up.conf.servers.iter().map(|p| p.weight as i64).collect() }
    }

    fn pick(&mut self, up: &UpstreamState, tried: u128, now: u64, backup: bool) -> Option<usize> {
        let mut cand: u128 = 0;
        for (i, conf) in up.conf.servers.iter().enumerate() {
            if conf.backup == backup && tried & (1u128 << i) == 0 && up.takes_new(i) && up.usable(i, now) {
                cand |= 1u128 << i;
            }
        }
        let cand = up.least_loaded(cand, now);
        let mut best: Option<usize> = None;
        let mut total: i64 = 0;
        for i in 0..up.conf.servers.len() {
            if cand & (1u128 << i) == 0 {
                continue;
            }
            let weight = up.weight(i, now) as i64;
            self.effective[i] = self.effective[i].min(weight);
            self.current[i] += self.effective[i];
            total += self.effective[i];
            if self.effective[i] < weight {
                self.effective[i] += 1;
            }
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        self.current[b] -= total;
        Some(b)
    }
}

/// nginx: choosing a server whose failure window is over starts its trial (`checked` = now).
pub(crate) fn note_pick(up: &UpstreamState, peer: usize, now: u64) {
    let state = &up.peers[peer];
    if now.saturating_sub(state.checked.load(Relaxed)) > up.conf.servers[peer].fail_timeout.as_millis() as u64 {
        state.checked.store(now, Relaxed);
    }
}

/// Passive health after a request (nginx's `free`): a failure is counted (and may take the
/// server out for `fail_timeout`); a success after a trial ends the failure window. True
/// when a failure was counted against the window.
pub(crate) fn record_outcome(up: &UpstreamState, peer: usize, failed: bool, now: u64) -> bool {
    let conf = &up.conf.servers[peer];
    let s = &up.peers[peer];
    if failed {
        s.failures.fetch_add(1, Relaxed);
        if up.single() {
            return false;
        }
        let fails = s.fails.fetch_add(1, Relaxed) + 1;
        s.accessed.store(now, Relaxed);
        s.checked.store(now, Relaxed);
        if conf.max_fails > 0 && fails == conf.max_fails {
            log::warn!("upstream server temporarily disabled: {} in upstream \"{}\"", conf.addr, up.conf.name);
            // Out now, counted where every worker sees it (unless it already was, for its
            // checks or a freeze): the requests waiting on it move.
            if !s.hc_down.load(Relaxed) && s.frozen_until.load(Relaxed) == 0 {
                super::frozen::announce_down();
            }
        }
        return true;
    }
    if s.accessed.load(Relaxed) < s.checked.load(Relaxed) {
        let was_down = conf.max_fails > 0 && s.fails.load(Relaxed) >= conf.max_fails;
        s.fails.store(0, Relaxed);
        if was_down && !conf.slow_start.is_zero() {
            s.recovered_at.store(now, Relaxed);
        }
    }
    false
}

impl Balancer for RoundRobin {
    fn get(&mut self, up: &UpstreamState, tried: &mut Tried, now: u64) -> Option<usize> {
        let mask = tried.mask();
        let b = self.pick(up, mask, now, false).or_else(|| self.pick(up, mask, now, true))?;
        note_pick(up, b, now);
        tried.insert(b, up.conf.servers.len());
        Some(b)
    }

    fn free(&mut self, up: &UpstreamState, peer: usize, failed: bool, now: u64) {
        if record_outcome(up, peer, failed, now) {
            let conf = &up.conf.servers[peer];
            if let Some(step) = conf.weight.checked_div(conf.max_fails) {
                self.effective[peer] = (self.effective[peer] - step as i64).max(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Balance, Peer, Upstream};
    use std::time::Duration;

    fn upstream(weights: &[(u32, bool)]) -> UpstreamState {
        let servers = weights
            .iter()
            .enumerate()
            .map(|(i, &(w, backup))| Peer { weight: w, backup, ..Peer::new(([127, 0, 0, 1], 1000 + i as u16).into(), format!("p{}", i)) })
            .collect();
        UpstreamState::new(Upstream { servers, ..Upstream::new("u".into(), false) })
    }

    fn order(up: &UpstreamState, rr: &mut RoundRobin, n: usize, now: u64) -> String {
        (0..n)
            .map(|_| {
                let mut tried = Tried::new(up.conf.servers.len());
                (b'a' + rr.get(up, &mut tried, now).expect("peer") as u8) as char
            })
            .collect()
    }

    #[test]
    fn smooth_5_1_1() {
        let up = upstream(&[(5, false), (1, false), (1, false)]);
        let mut rr = RoundRobin::new(&up);
        assert_eq!(order(&up, &mut rr, 14, 1), "aabacaaaabacaa");
    }

    #[test]
    fn failure_window_trial_and_reset() {
        let up = upstream(&[(1, false), (1, false)]);
        let mut rr = RoundRobin::new(&up);
        rr.free(&up, 0, true, 1000);
        assert!(!up.usable(0, 1000));
        assert_eq!(order(&up, &mut rr, 4, 2000), "bbbb");
        // After fail_timeout, one trial goes to peer 0 (checked moves to now).
        assert!(order(&up, &mut rr, 4, 11_001).contains('a'));
        rr.free(&up, 0, false, 11_002);
        assert_eq!(up.peers[0].fails.load(Relaxed), 0);
    }

    #[test]
    fn backup_only_when_primaries_unusable() {
        let up = upstream(&[(1, false), (1, true)]);
        let mut rr = RoundRobin::new(&up);
        let mut tried = Tried::new(2);
        assert_eq!(rr.get(&up, &mut tried, 1), Some(0));
        assert_eq!(rr.get(&up, &mut tried, 1), Some(1));
        assert_eq!(rr.get(&up, &mut tried, 1), None);
    }

    #[test]
    fn disabled_and_stopped_get_no_new_requests() {
        let up = upstream(&[(1, false), (1, false), (1, false)]);
        up.peers[1].activation.store(super::super::activation::DISABLED, Relaxed);
        up.peers[2].activation.store(super::super::activation::STOPPED, Relaxed);
        let mut rr = RoundRobin::new(&up);
        assert_eq!(order(&up, &mut rr, 4, 1), "aaaa");
        assert!(up.usable(1, 1), "a disabled peer still serves its sticky sessions");
        assert!(!up.usable(2, 1));
    }

    #[test]
    fn least_conn_prefers_fewer_in_flight_per_weight() {
        let mut up = upstream(&[(1, false), (2, false), (1, false)]);
        up.conf.balance = Balance::LeastConn;
        up.peers[0].in_flight.store(1, Relaxed);
        up.peers[1].in_flight.store(1, Relaxed); // 1/2: the least loaded by weight... tied with c (0/1)? no: c has 0
        up.peers[2].in_flight.store(0, Relaxed);
        let mut rr = RoundRobin::new(&up);
        assert_eq!(order(&up, &mut rr, 3, 1), "ccc");
        up.peers[2].in_flight.store(1, Relaxed);
        assert_eq!(order(&up, &mut rr, 2, 1), "bb", "1/2 beats 1/1");
    }

    #[test]
    fn by_traffic_prefers_fewer_bytes_and_decays() {
        let mut up = upstream(&[(1, false), (1, false)]);
        up.conf.balance = Balance::ByTraffic;
        up.account(0, 1000, 1000);
        let mut rr = RoundRobin::new(&up);
        assert_eq!(order(&up, &mut rr, 3, 1), "bbb");
        up.account(1, 5000, 0);
        assert_eq!(order(&up, &mut rr, 2, 1), "aa");
        let later = super::super::now_ms() + 61_000;
        up.least_loaded(3, later);
        assert_eq!(up.peers[1].traffic.load(Relaxed), 2500, "halved after a decay period");
    }

    #[test]
    fn slow_start_ramps_the_weight() {
        let up = UpstreamState::new(Upstream {
            servers: vec![Peer { weight: 10, slow_start: Duration::from_secs(10), ..Peer::new(([127, 0, 0, 1], 1).into(), "a".into()) }],
            ..Upstream::new("u".into(), false)
        });
        up.peers[0].recovered_at.store(1000, Relaxed);
        assert_eq!(up.weight(0, 1000), 1);
        assert_eq!(up.weight(0, 6000), 5);
        assert_eq!(up.weight(0, 11_000), 10);
        assert_eq!(up.peers[0].recovered_at.load(Relaxed), 0);
    }
}
