//! nginx's smooth weighted round-robin with its passive health rules
//! (`ngx_http_upstream_round_robin.c`): `get` picks a peer, `free` records the outcome.
//! Weights and current weights are per worker, as in nginx without a shared zone; fail
//! counts and windows are shared by all workers.

use super::{Balancer, PeerState, UpstreamState};
use std::sync::atomic::Ordering::Relaxed;

pub struct RoundRobin {
    current: Vec<i64>,
    effective: Vec<i64>,
}

impl RoundRobin {
    pub fn new(up: &UpstreamState) -> RoundRobin {
        RoundRobin { current: vec![0; up.conf.servers.len()], effective: up.conf.servers.iter().map(|p| p.weight as i64).collect() }
    }

    fn pick(&mut self, up: &UpstreamState, tried: u128, now: u64, backup: bool) -> Option<usize> {
        let single = up.single();
        let mut best: Option<usize> = None;
        let mut total: i64 = 0;
        for (i, conf) in up.conf.servers.iter().enumerate() {
            if conf.backup != backup || tried & (1u128 << i) != 0 {
                continue;
            }
            if conf.down || (!single && !up.usable(i, now)) {
                continue;
            }
            self.current[i] += self.effective[i];
            total += self.effective[i];
            if self.effective[i] < conf.weight as i64 {
                self.effective[i] += 1;
            }
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        self.current[b] -= total;
        let state: &PeerState = &up.peers[b];
        if now.saturating_sub(state.checked.load(Relaxed)) > up.conf.servers[b].fail_timeout.as_millis() as u64 {
            state.checked.store(now, Relaxed);
        }
        Some(b)
    }
}

impl Balancer for RoundRobin {
    fn get(&mut self, up: &UpstreamState, tried: &mut u128, now: u64) -> Option<usize> {
        let b = self.pick(up, *tried, now, false).or_else(|| self.pick(up, *tried, now, true))?;
        *tried |= 1u128 << b;
        Some(b)
    }

    fn free(&mut self, up: &UpstreamState, peer: usize, failed: bool, now: u64) {
        let conf = &up.conf.servers[peer];
        let s = &up.peers[peer];
        if failed {
            s.failures.fetch_add(1, Relaxed);
            if up.single() {
                return;
            }
            let fails = s.fails.fetch_add(1, Relaxed) + 1;
            s.accessed.store(now, Relaxed);
            s.checked.store(now, Relaxed);
            if let Some(step) = conf.weight.checked_div(conf.max_fails) {
                self.effective[peer] = (self.effective[peer] - step as i64).max(0);
                if fails == conf.max_fails {
                    log::warn!("upstream server temporarily disabled: {} in upstream \"{}\"", conf.addr, up.conf.name);
                }
            }
        } else if s.accessed.load(Relaxed) < s.checked.load(Relaxed) {
            s.fails.store(0, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Peer, Upstream};
    use std::time::Duration;

    fn upstream(weights: &[(u32, bool)]) -> UpstreamState {
        let servers = weights
            .iter()
            .enumerate()
            .map(|(i, &(w, backup))| Peer {
                addr: ([127, 0, 0, 1], 1000 + i as u16).into(),
                name: format!("p{}", i),
                weight: w,
                max_fails: 1,
                fail_timeout: Duration::from_secs(10),
                backup,
                down: false,
            })
            .collect();
        UpstreamState::new(Upstream {
            name: "u".into(),
            servers,
            keepalive: 0,
            keepalive_timeout: Duration::from_secs(60),
            keepalive_requests: 100,
            implicit: false,
            ajp: Default::default(),
        })
    }

    #[test]
    fn smooth_5_1_1() {
        let up = upstream(&[(5, false), (1, false), (1, false)]);
        let mut rr = RoundRobin::new(&up);
        let order: String = (0..14)
            .map(|_| {
                let mut tried = 0;
                (b'a' + rr.get(&up, &mut tried, 1).expect("peer") as u8) as char
            })
            .collect();
        assert_eq!(order, "aabacaaaabacaa");
    }

    #[test]
    fn failure_window_trial_and_reset() {
        let up = upstream(&[(1, false), (1, false)]);
        let mut rr = RoundRobin::new(&up);
        rr.free(&up, 0, true, 1000);
        assert!(!up.usable(0, 1000));
        for _ in 0..4 {
            let mut tried = 0;
            assert_eq!(rr.get(&up, &mut tried, 2000), Some(1));
        }
        // After fail_timeout, one trial goes to peer 0 (checked moves to now).
        let mut seen0 = 0;
        for _ in 0..4 {
            let mut tried = 0;
            if rr.get(&up, &mut tried, 11_001) == Some(0) {
                seen0 += 1;
            }
        }
        assert!(seen0 >= 1);
        rr.free(&up, 0, false, 11_002);
        assert_eq!(up.peers[0].fails.load(Relaxed), 0);
    }

    #[test]
    fn backup_only_when_primaries_unusable() {
        let up = upstream(&[(1, false), (1, true)]);
        let mut rr = RoundRobin::new(&up);
        let mut tried = 0;
        assert_eq!(rr.get(&up, &mut tried, 1), Some(0));
        assert_eq!(rr.get(&up, &mut tried, 1), Some(1));
        assert_eq!(rr.get(&up, &mut tried, 1), None);
    }
}
