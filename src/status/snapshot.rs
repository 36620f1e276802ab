//! One consistent-enough reading of every shared counter, taken once per page.

use crate::config::Balance;
use crate::runtime::{process_start, Runtime};
use crate::upstream::{activation, now_ms};
use std::sync::atomic::Ordering::Relaxed;

pub(crate) struct ServerView {
    pub(crate) index: usize,
    pub(crate) addr: String,
    pub(crate) name: String,
    pub(crate) protocol: &'static str,
    pub(crate) route: Option<String>,
    pub(crate) backup: bool,
    pub(crate) weight: u32,
    pub(crate) config_weight: u32,
    pub(crate) effective_weight: u32,
    pub(crate) activation: &'static str,
    /// "up" or "down".
    pub(crate) health: &'static str,
    /// Why it is down: "health_check", "passive" or "" when up.
    pub(crate) down_reason: &'static str,
    /// For passive downs: milliseconds until the next trial request.
    pub(crate) down_for_ms: u64,
    pub(crate) failed_checks: u32,
    pub(crate) in_flight: u32,
    pub(crate) requests: u64,
    pub(crate) failures: u64,
    pub(crate) failovers: u64,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) last_response_ms: f64,
    pub(crate) idle_connections: u32,
    /// Connections the workers' pools aim to keep (their recent peaks of concurrent requests).
    pub(crate) keepalive_demand: u32,
    /// What the server was seen to allow a kept connection (0 = not known).
    pub(crate) backend_idle_ms: u32,
    pub(crate) backend_max_requests: u32,
}

pub(crate) struct UpstreamView {
    pub(crate) name: String,
    pub(crate) method: &'static str,
    pub(crate) sticky: Option<String>,
    pub(crate) health_check: bool,
    pub(crate) servers: Vec<ServerView>,
}

pub(crate) struct WorkerView {
    pub(crate) id: usize,
    pub(crate) connections: u64,
    pub(crate) accepted: u64,
    pub(crate) buffers_in_use: u64,
    pub(crate) buffers_high_water: u64,
    pub(crate) buffers_limit: u64,
    pub(crate) idle_backend: u64,
}

pub(crate) struct Snapshot {
    pub(crate) version: &'static str,
    pub(crate) uptime_s: f64,
    pub(crate) generation: u64,
    pub(crate) buffer_size: usize,
    pub(crate) upstreams: Vec<UpstreamView>,
    pub(crate) workers: Vec<WorkerView>,
}

pub(crate) fn take(rt: &Runtime) -> Snapshot {
    let now = now_ms();
    let upstreams = rt
        .upstreams
        .iter()
        .filter(|u| !u.conf.implicit || u.peers.iter().any(|p| p.requests.load(Relaxed) > 0))
        .map(|u| UpstreamView {
            name: u.conf.name.clone(),
            method: match u.conf.balance {
                Balance::RoundRobin => "round_robin",
                Balance::LeastConn => "least_conn",
                Balance::ByTraffic => "by_traffic",
            },
            sticky: u.conf.sticky.as_ref().map(|s| s.cookie.clone()),
            health_check: u.conf.health_check.is_some(),
            servers: u
                .conf
                .servers
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let s = &u.peers[i];
                    let hc_down = s.hc_down.load(Relaxed);
                    let passive_down = !u.single() && c.max_fails > 0 && s.fails.load(Relaxed) >= c.max_fails && {
                        now.saturating_sub(s.checked.load(Relaxed)) <= c.fail_timeout.as_millis() as u64
                    };
                    let down_for_ms = if passive_down { (s.checked.load(Relaxed) + c.fail_timeout.as_millis() as u64).saturating_sub(now) } else { 0 };
                    ServerView {
                        index: i,
                        addr: c.addr.to_string(),
                        name: c.name.clone(),
                        protocol: u.conf.protocol.name(),
                        route: c.route.clone(),
                        backup: c.backup,
                        weight: s.weight.load(Relaxed),
                        config_weight: c.weight,
                        effective_weight: u.weight(i, now),
                        activation: activation::name(s.activation.load(Relaxed)),
                        health: if hc_down || passive_down { "down" } else { "up" },
                        down_reason: if hc_down {
                            "health_check"
                        } else if passive_down {
                            "passive"
                        } else {
                            ""
                        },
                        down_for_ms,
                        failed_checks: s.hc_fails.load(Relaxed),
                        in_flight: s.in_flight.load(Relaxed),
                        requests: s.requests.load(Relaxed),
                        failures: s.failures.load(Relaxed),
                        failovers: s.failovers.load(Relaxed),
                        bytes_in: s.bytes_in.load(Relaxed),
                        bytes_out: s.bytes_out.load(Relaxed),
                        last_response_ms: s.last_response_us.load(Relaxed) as f64 / 1000.0,
                        idle_connections: s.idle.load(Relaxed),
                        keepalive_demand: s.keep_demand.load(Relaxed),
                        backend_idle_ms: s.backend_idle_ms.load(Relaxed),
                        backend_max_requests: s.backend_max_requests.load(Relaxed),
                    }
                })
                .collect(),
        })
        .collect();
    let workers = rt
        .workers
        .iter()
        .enumerate()
        .map(|(id, w)| WorkerView {
            id,
            connections: w.connections.load(Relaxed),
            accepted: w.accepted.load(Relaxed),
            buffers_in_use: w.buffers_in_use.load(Relaxed),
            buffers_high_water: w.buffers_high_water.load(Relaxed),
            buffers_limit: w.buffers_limit.load(Relaxed),
            idle_backend: w.idle_backend.load(Relaxed),
        })
        .collect();
    Snapshot {
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: process_start().elapsed().as_secs_f64(),
        generation: rt.generation,
        buffer_size: crate::buffer::BUF_SIZE,
        upstreams,
        workers,
    }
}
