//! The balancer of upstreams of more than `SMOOTH_MAX` (8) servers. nginx's smooth
//! round-robin looks at every server on every request, which costs about 10 ns a server
//! (1.4 µs at 128, more for least_conn; `bench/select.rs`); here each
//! worker keeps its servers in a min-heap by *pass* (stride scheduling: a server's pass grows
//! by `STRIDE_ONE / weight` each time it is chosen), so a pick looks at the few servers at
//! the top: O(log n). Weighted shares are the same as smooth round-robin's and as smooth.
//!
//! Health is read for the server at the top only: one that cannot take requests now (failed
//! within `fail_timeout`, down, draining) gives up its turn (its pass moves a turn beyond the
//! chosen server's), so it is looked at again once per round and a recovered server rejoins
//! in step with the others. Servers the request already tried are set aside for this pick. `backup` servers
//! have their own heap, used only when no primary can be chosen.
//!
//! least_conn and by_traffic compare the next *two* servers in this order and take the less
//! loaded per weight (the "power of two choices", as nginx's `random two least_conn`): an
//! exact minimum over 1,024 shared counters would cost what this module avoids.

use super::round_robin::{note_pick, record_outcome};
use super::tried::Tried;
use super::{Balancer, UpstreamState};
use crate::config::Balance;

/// The pass a server of weight 1 advances per pick (weights go up to 1,000).
const STRIDE_ONE: u64 = 1 << 24;

pub(crate) struct Stride {
    pass: Vec<u64>,
    primary: Heap,
    backup: Heap,
    /// Servers taken off the heap during one pick, and whether they gave up their turn
    /// (reused: no allocation per request).
    aside: Vec<(u32, Aside)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Aside {
    /// The request tried it already: back as it was.
    Tried,
    /// It cannot take requests now: it gives up its turn.
    Skipped,
}

impl Stride {
    pub(crate) fn new(up: &UpstreamState) -> Stride {
        let n = up.conf.servers.len();
        // Start spread out, so the first round is not a burst on server 0.
        let pass: Vec<u64> = (0..n).map(|i| STRIDE_ONE / up.conf.servers[i].weight.max(1) as u64 * i as u64 / n as u64).collect();
        let mut s = Stride { pass, primary: Heap::default(), backup: Heap::default(), aside: Vec::with_capacity(8) };
        for (i, p) in up.conf.servers.iter().enumerate() {
            let heap = if p.backup { &mut s.backup } else { &mut s.primary };
            heap.push(i as u32, &s.pass);
        }
        s
    }

    /// Up to two servers that may take the request, in turn order. Every server looked at
    /// leaves the heap for this pick (into `aside`, to be pushed back): those the request
    /// tried, and those that cannot take requests now.
    fn candidates(&mut self, backup: bool, up: &UpstreamState, tried: &Tried, now: u64, want: usize) -> ([u32; 2], usize) {
        let Stride { pass, primary, backup: backups, aside } = self;
        let heap = if backup { backups } else { primary };
        let mut found = ([0u32; 2], 0);
        while found.1 < want {
            let Some(i) = heap.pop(pass) else { break };
            let p = i as usize;
            if tried.contains(p) {
                aside.push((i, Aside::Tried));
            } else if up.takes_new(p) && up.usable(p, now) {
                found.0[found.1] = i;
                found.1 += 1;
            } else {
                aside.push((i, Aside::Skipped));
            }
        }
        found
    }

    fn pick(&mut self, backup: bool, up: &UpstreamState, tried: &Tried, now: u64) -> Option<usize> {
        let want = if up.conf.balance == Balance::RoundRobin { 1 } else { 2 };
        let (cands, found) = self.candidates(backup, up, tried, now, want);
        let chosen = match found {
            0 => None,
            1 => Some(cands[0] as usize),
            _ => {
                let (a, b) = (cands[0] as usize, cands[1] as usize);
                // Less load per weight wins; a tie keeps the turn order. The other keeps its
                // place: it is compared again on the next pick.
                let (ma, mb) = (up.load(a) as u128, up.load(b) as u128);
                let (wa, wb) = (up.weight(a, now) as u128, up.weight(b, now) as u128);
                let (winner, loser) = if mb * wa < ma * wb { (b, a) } else { (a, b) };
                // The loser stays at the front but banks no credit for the turns it lost.
                self.pass[loser] = self.pass[loser].max(self.pass[winner]);
                Some(winner)
            }
        };
        // Where the round stands: servers passed over move a turn beyond it, so each is
        // looked at once per round (none chosen: nobody's turn went by).
        let now_pass = chosen.map(|c| self.pass[c]);
        if let Some(c) = chosen {
            self.pass[c] += stride(up, c, now);
        }
        let heap = if backup { &mut self.backup } else { &mut self.primary };
        for &i in &cands[..found] {
            heap.push(i, &self.pass);
        }
        for (i, why) in self.aside.drain(..) {
            if let (Aside::Skipped, Some(at)) = (why, now_pass) {
                let p = i as usize;
                self.pass[p] = self.pass[p].max(at) + stride(up, p, now);
            }
            heap.push(i, &self.pass);
        }
        chosen
    }
}

/// How far a server's pass moves when it is chosen (or gives up its turn).
fn stride(up: &UpstreamState, peer: usize, now: u64) -> u64 {
    STRIDE_ONE / up.weight(peer, now).max(1) as u64
}

impl Balancer for Stride {
    fn get(&mut self, up: &UpstreamState, tried: &mut Tried, now: u64) -> Option<usize> {
        if up.conf.balance == Balance::ByTraffic {
            up.decay_traffic(now);
        }
        let b = self.pick(false, up, tried, now).or_else(|| self.pick(true, up, tried, now))?;
        note_pick(up, b, now);
        tried.insert(b, up.conf.servers.len());
        Some(b)
    }

    fn free(&mut self, up: &UpstreamState, peer: usize, failed: bool, now: u64) {
        record_outcome(up, peer, failed, now);
    }
}

/// A binary min-heap of server indices ordered by their pass (then index).
#[derive(Default)]
struct Heap {
    items: Vec<u32>,
}

impl Heap {
    fn less(pass: &[u64], a: u32, b: u32) -> bool {
        (pass[a as usize], a) < (pass[b as usize], b)
    }

    fn push(&mut self, i: u32, pass: &[u64]) {
        self.items.push(i);
        let mut at = self.items.len() - 1;
        while at > 0 {
            let parent = (at - 1) / 2;
            if !Self::less(pass, self.items[at], self.items[parent]) {
                break;
            }
            self.items.swap(at, parent);
            at = parent;
        }
    }

    fn pop(&mut self, pass: &[u64]) -> Option<u32> {
        let last = self.items.pop()?;
        let Some(top) = self.items.first_mut() else { return Some(last) };
        let out = std::mem::replace(top, last);
        self.sift_top(pass);
        Some(out)
    }

    /// Restores the order after the top's pass grew.
    fn sift_top(&mut self, pass: &[u64]) {
        let n = self.items.len();
        let mut at = 0;
        loop {
            let (l, r) = (2 * at + 1, 2 * at + 2);
            let mut m = at;
            if l < n && Self::less(pass, self.items[l], self.items[m]) {
                m = l;
            }
            if r < n && Self::less(pass, self.items[r], self.items[m]) {
                m = r;
            }
            if m == at {
                return;
            }
            self.items.swap(at, m);
            at = m;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Peer, Upstream};
    use std::sync::atomic::Ordering::Relaxed;

    fn upstream(n: usize, weight: impl Fn(usize) -> u32, backup: impl Fn(usize) -> bool, balance: Balance) -> UpstreamState {
        let servers = (0..n)
            .map(|i| Peer { weight: weight(i), backup: backup(i), ..Peer::new(([127, 0, (i / 250) as u8, (i % 250) as u8 + 1], 80).into(), format!("s{}", i)) })
            .collect();
        UpstreamState::new(Upstream { servers, balance, ..Upstream::new("big".into(), false) })
    }

    fn picks(up: &UpstreamState, s: &mut Stride, n: usize, now: u64) -> Vec<usize> {
        let mut count = vec![0; up.conf.servers.len()];
        for _ in 0..n {
            let mut tried = Tried::new(up.conf.servers.len());
            count[s.get(up, &mut tried, now).expect("a server")] += 1;
        }
        count
    }

    #[test]
    fn equal_weights_take_turns() {
        let up = upstream(1024, |_| 1, |_| false, Balance::RoundRobin);
        let mut s = Stride::new(&up);
        assert!(picks(&up, &mut s, 1024 * 3, 1).iter().all(|&c| c == 3), "each server exactly once per round");
    }

    #[test]
    fn weights_set_the_shares() {
        let up = upstream(300, |i| if i % 3 == 0 { 5 } else { 1 }, |_| false, Balance::RoundRobin);
        let mut s = Stride::new(&up);
        let rounds = 10;
        let c = picks(&up, &mut s, (100 * 5 + 200) * rounds, 1);
        for (i, n) in c.iter().enumerate() {
            let want = if i % 3 == 0 { 5 * rounds } else { rounds };
            assert!(n.abs_diff(want) <= 1, "server {i}: {n} picks, want {want}");
        }
    }

    #[test]
    fn unusable_and_tried_servers_are_skipped_and_backups_wait() {
        let up = upstream(200, |_| 1, |i| i >= 190, Balance::RoundRobin);
        for i in 0..180 {
            up.peers[i].activation.store(super::super::activation::STOPPED, Relaxed);
        }
        let mut s = Stride::new(&up);
        let c = picks(&up, &mut s, 100, 1);
        assert!(c[..180].iter().all(|&n| n == 0) && c[190..].iter().all(|&n| n == 0));
        assert!(c[180..190].iter().all(|&n| n == 10), "{:?}", &c[180..190]);
        // One request's retries: every usable primary once, then the backups, then none.
        let mut tried = Tried::new(200);
        let mut seen = Vec::new();
        while let Some(p) = s.get(&up, &mut tried, 1) {
            seen.push(p);
        }
        seen.sort();
        assert_eq!(seen, (180..200).collect::<Vec<_>>());
        // A stopped server that comes back rejoins at once, in step with the rest.
        up.peers[0].activation.store(super::super::activation::ACTIVE, Relaxed);
        let c = picks(&up, &mut s, 110, 1);
        assert!((9..=11).contains(&c[0]), "{}", c[0]);
    }

    #[test]
    fn least_conn_passes_a_loaded_server_by() {
        let up = upstream(256, |_| 1, |_| false, Balance::LeastConn);
        up.peers[7].in_flight.store(100, Relaxed);
        let mut s = Stride::new(&up);
        let c = picks(&up, &mut s, 255 * 4, 1);
        assert_eq!(c[7], 0, "a loaded server loses to every idle one it is compared with");
        assert!(c.iter().enumerate().all(|(i, &n)| i == 7 || n == 4), "the others share the work: {:?}", c);
        up.peers[7].in_flight.store(0, Relaxed);
        let c = picks(&up, &mut s, 256 * 4, 1);
        assert!((3..=5).contains(&c[7]), "back to its share once it is not busier, no burst: {}", c[7]);
    }

    #[test]
    fn by_traffic_passes_a_busy_server_by() {
        let up = upstream(200, |_| 1, |_| false, Balance::ByTraffic);
        up.account(42, 1 << 20, 0);
        let mut s = Stride::new(&up);
        let c = picks(&up, &mut s, 199 * 3, 1);
        assert_eq!(c[42], 0);
        assert!(c.iter().enumerate().all(|(i, &n)| i == 42 || n == 3), "{:?}", c);
    }
}
