//! One consistent-enough reading of every shared counter, taken once per page.

use super::guard;
use crate::config::{Balance, StatusAccess};
use crate::runtime::{process_start, reloads, LastReload, Runtime};
use crate::upstream::stats::{Cause, LastCheck, Outcome};
use crate::upstream::{activation, now_ms};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{SystemTime, UNIX_EPOCH};

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
    /// Why it is down: "health_check", "frozen", "passive" or "" when up.
    pub(crate) down_reason: &'static str,
    /// How long it has been down (ms), and what took it down.
    pub(crate) down_since_ms: Option<u64>,
    pub(crate) down_cause: Option<Outcome>,
    /// For passive downs: milliseconds until the next trial request.
    pub(crate) down_for_ms: u64,
    /// Consecutive failed active checks.
    pub(crate) failed_checks: u32,
    pub(crate) in_flight: u32,
    pub(crate) requests: u64,
    pub(crate) failures: u64,
    pub(crate) failovers: u64,
    pub(crate) retries: u64,
    /// Failed attempts by cause.
    pub(crate) errors: Vec<(Cause, u64)>,
    /// Responses by class, 1xx to 5xx.
    pub(crate) responses: [u64; 5],
    /// Request bytes sent to the server, response body bytes received from it.
    pub(crate) bytes_to: u64,
    pub(crate) bytes_from: u64,
    pub(crate) last_response_us: u64,
    /// Response-time histogram: count per bucket (not cumulative), and the sum.
    pub(crate) latency: [u64; 15],
    pub(crate) latency_sum_us: u64,
    pub(crate) checks: u64,
    pub(crate) check_failures: u64,
    pub(crate) last_check: Option<LastCheck>,
    /// The last failed attempt and how long ago (ms).
    pub(crate) last_failure: Option<(Outcome, u64)>,
    pub(crate) idle_connections: u32,
    /// Sticky sessions seen within the window, the age of the last sticky request (ms), and
    /// whether a disabled server is drained.
    pub(crate) live_sessions: u64,
    pub(crate) last_sticky_ms: Option<u64>,
    pub(crate) drained: bool,
    /// Times it was declared frozen (`frozen_timeout`).
    pub(crate) frozen_times: u64,
    /// Connections the workers' pools aim to keep (their recent peaks of concurrent requests).
    pub(crate) keepalive_demand: u32,
    /// What the server was seen to allow a kept connection (0 = not known).
    pub(crate) backend_idle_ms: u32,
    pub(crate) backend_max_requests: u32,
}

impl ServerView {
    /// Responses timed (the histogram's count).
    pub(crate) fn timed(&self) -> u64 {
        self.latency.iter().sum()
    }
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

/// A `listen ... ssl` address and its handshakes.
pub(crate) struct TlsView {
    pub(crate) listen: String,
    pub(crate) handshakes: u64,
    pub(crate) resumed: u64,
    pub(crate) failures: u64,
}

pub(crate) struct Snapshot {
    pub(crate) version: &'static str,
    pub(crate) uptime_ms: u64,
    pub(crate) generation: u64,
    pub(crate) buffer_size: usize,
    /// The manager's nonce; None on a read-only page.
    pub(crate) nonce: Option<&'static str>,
    pub(crate) reloads: u64,
    pub(crate) reload_failures: u64,
    pub(crate) last_reload: Option<LastReload>,
    /// Unix time now (the last reload's age).
    pub(crate) unix_now: u64,
    pub(crate) upstreams: Vec<UpstreamView>,
    pub(crate) workers: Vec<WorkerView>,
    pub(crate) tls: Vec<TlsView>,
    /// `limit_req_zone`s and `limit_conn_zone`s.
    pub(crate) limit_zones: Vec<crate::ratelimit::ZoneView>,
}

pub(crate) fn take(rt: &Runtime, access: StatusAccess) -> Snapshot {
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
                    let st = &s.stats;
                    let hc_down = s.hc_down.load(Relaxed);
                    let frozen_until = s.frozen_until.load(Relaxed);
                    let frozen = !hc_down && frozen_until > now;
                    let checked = s.checked.load(Relaxed);
                    let passive_down = !u.single()
                        && c.max_fails > 0
                        && s.fails.load(Relaxed) >= c.max_fails
                        && now.saturating_sub(checked) <= c.fail_timeout.as_millis() as u64;
                    let passive_down = passive_down && !frozen;
                    let down_for_ms = match (frozen, passive_down) {
                        (true, _) => frozen_until.saturating_sub(now),
                        (_, true) => (checked + c.fail_timeout.as_millis() as u64).saturating_sub(now),
                        _ => 0,
                    };
                    let last_check = st.last_check(now);
                    let last_failure = st.last_failure(now);
                    let (down_since_ms, down_cause) = if hc_down {
                        (Some(now.saturating_sub(st.hc_down_since.load(Relaxed))), last_check.as_ref().map(|c| c.outcome))
                    } else if frozen {
                        (Some(now.saturating_sub(st.frozen_since.load(Relaxed))), Some(Outcome::failed(Cause::Frozen)))
                    } else if passive_down {
                        let since = match st.passive_down_since.load(Relaxed) {
                            0 => checked,
                            t => t,
                        };
                        (Some(now.saturating_sub(since)), last_failure.map(|f| f.0))
                    } else {
                        (None, None)
                    };
                    ServerView {
                        index: i,
                        addr: c.addr.to_string(),
                        name: c.name.clone(),
                        protocol: u.conf.protocol.name(),
                        route: c.route.clone().filter(|r| !r.is_empty()),
                        backup: c.backup,
                        weight: s.weight.load(Relaxed),
                        config_weight: c.weight,
                        effective_weight: u.weight(i, now),
                        activation: activation::name(s.activation.load(Relaxed)),
                        health: if hc_down || frozen || passive_down { "down" } else { "up" },
                        down_reason: if hc_down {
                            "health_check"
                        } else if frozen {
                            "frozen"
                        } else if passive_down {
                            "passive"
                        } else {
                            ""
                        },
                        down_since_ms,
                        down_cause,
                        down_for_ms,
                        failed_checks: s.hc_fails.load(Relaxed),
                        in_flight: s.in_flight.load(Relaxed),
                        requests: s.requests.load(Relaxed),
                        failures: s.failures.load(Relaxed),
                        failovers: s.failovers.load(Relaxed),
                        retries: st.retries.load(Relaxed),
                        errors: Cause::ALL.iter().map(|&c| (c, st.errors[c as usize].load(Relaxed))).collect(),
                        responses: std::array::from_fn(|k| st.responses[k].load(Relaxed)),
                        bytes_to: s.bytes_in.load(Relaxed),
                        bytes_from: s.bytes_out.load(Relaxed),
                        last_response_us: s.last_response_us.load(Relaxed),
                        latency: std::array::from_fn(|k| st.latency[k].load(Relaxed)),
                        latency_sum_us: st.latency_sum_us.load(Relaxed),
                        checks: st.checks.load(Relaxed),
                        check_failures: st.check_failures.load(Relaxed),
                        last_check,
                        last_failure,
                        idle_connections: s.idle.load(Relaxed),
                        live_sessions: u.live_sessions(i, now),
                        last_sticky_ms: match s.last_sticky.load(Relaxed) {
                            0 => None,
                            t => Some(now.saturating_sub(t)),
                        },
                        drained: u.drained(i, now),
                        frozen_times: st.frozen_times.load(Relaxed),
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
    let tls = rt
        .tls
        .listeners()
        .map(|(i, t)| TlsView {
            listen: rt.cfg.http.listens[i].addr.to_string(),
            handshakes: t.handshakes.load(Relaxed),
            resumed: t.resumed.load(Relaxed),
            failures: t.failures.load(Relaxed),
        })
        .collect();
    let (reloads_n, reload_failures) = reloads().counts();
    Snapshot {
        version: env!("CARGO_PKG_VERSION"),
        uptime_ms: process_start().elapsed().as_millis() as u64,
        generation: rt.generation,
        buffer_size: crate::buffer::BUF_SIZE,
        nonce: if access == StatusAccess::Manage { guard::nonce() } else { None },
        reloads: reloads_n,
        reload_failures,
        last_reload: reloads().last(),
        unix_now: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        upstreams,
        workers,
        tls,
        limit_zones: rt.zones.views(&rt.cfg.http.limit_zones),
    }
}
