//! A hook for the selection micro-benchmark (`bench/select.rs`, `cargo run --release
//! --example select`): one upstream of N servers and a worker's balancer, picking a server
//! the way a request does. Not used by pounce itself.

use super::tried::Tried;
use super::{Balancer, Scheduler, UpstreamState};
use crate::config::{Balance, Peer, Upstream};
use std::sync::atomic::Ordering::Relaxed;

/// An upstream of `servers` servers with its balancer, for timing `pick`.
pub struct SelectBench {
    up: UpstreamState,
    scheduler: Scheduler,
    sticky: bool,
    routes: Vec<String>,
}

impl SelectBench {
    /// `method`: `round_robin`, `least_conn`, `by_traffic` or `sticky` (round_robin with
    /// every request carrying a route).
    pub fn new(servers: usize, method: &str) -> SelectBench {
        let balance = match method {
            "least_conn" => Balance::LeastConn,
            "by_traffic" => Balance::ByTraffic,
            _ => Balance::RoundRobin,
        };
        let routes: Vec<String> = (0..servers).map(|i| format!("tomcat{}", i)).collect();
        let peers = (0..servers)
            .map(|i| Peer { route: Some(routes[i].clone()), ..Peer::new(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 8009).into(), format!("s{}", i)) })
            .collect();
        let up = UpstreamState::new(Upstream { servers: peers, balance, ..Upstream::new("bench".into(), false) });
        let scheduler = Scheduler::new(&up);
        SelectBench { up, scheduler, sticky: method == "sticky", routes }
    }

    /// One request's choice of server (`n` varies the sticky route), and its end: the
    /// in-flight count and the balancer's `free`, as a request does. Returns the server.
    pub fn pick(&mut self, n: usize, now: u64) -> usize {
        let servers = self.up.conf.servers.len();
        let mut tried = Tried::new(servers);
        let sticky = if self.sticky { self.up.peer_for_route(self.routes[n % servers].as_bytes()).filter(|&p| self.up.usable(p, now)) } else { None };
        let peer = match sticky {
            Some(p) => {
                tried.insert(p, servers);
                p
            }
            None => self.scheduler.get(&self.up, &mut tried, now).unwrap_or(0),
        };
        let state = &self.up.peers[peer];
        state.in_flight.fetch_add(1, Relaxed);
        if self.up.conf.balance == Balance::ByTraffic {
            self.up.account(peer, 300, 100);
        }
        state.in_flight.fetch_sub(1, Relaxed);
        self.scheduler.free(&self.up, peer, false, now);
        peer
    }
}
