//! The Prometheus text exposition format (`?format=prometheus`). Server metrics are labelled
//! `upstream`, `server` and `route` (left out when the server has none); times are seconds
//! written in fixed point from integer microseconds, so no float noise.

use super::snapshot::{ServerView, Snapshot, WorkerView};
use super::text::decimal;
use crate::upstream::stats::BUCKETS_US;
use std::fmt::Write;

/// A label value with Prometheus escaping (`\`, `"`, newline).
/// A metric family: name, help, and its value for one item.
type Metric<T> = (&'static str, &'static str, fn(&T) -> u64);

fn label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn family(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {} {}\n# TYPE {} {}", name, help, name, kind);
}

/// Seconds from microseconds.
fn secs(us: u64) -> String {
    decimal(us, 6)
}

type ServerMetric = (&'static str, &'static str, &'static str, fn(&ServerView) -> String);

const PER_SERVER: [ServerMetric; 20] = [
    ("pounce_upstream_server_up", "gauge", "1 when the server can take requests (health), 0 when it is down.", |v| u8::from(v.health == "up").to_string()),
    ("pounce_upstream_server_weight", "gauge", "Configured or manager-set weight.", |v| v.weight.to_string()),
    ("pounce_upstream_server_effective_weight", "gauge", "Weight in use now (ramped during slow_start).", |v| v.effective_weight.to_string()),
    ("pounce_upstream_server_active", "gauge", "1 when the activation state is active.", |v| u8::from(v.activation == "active").to_string()),
    ("pounce_upstream_server_disabled", "gauge", "1 when the activation state is disabled (draining: sticky requests only).", |v| {
        u8::from(v.activation == "disabled").to_string()
    }),
    ("pounce_upstream_server_stopped", "gauge", "1 when the activation state is stopped.", |v| u8::from(v.activation == "stopped").to_string()),
    ("pounce_upstream_server_drained", "gauge", "1 when a disabled server has had no sticky request for drain_idle (safe to restart).", |v| {
        u8::from(v.drained).to_string()
    }),
    ("pounce_upstream_server_live_sessions", "gauge", "Sticky sessions seen within sessions_window (an estimate).", |v| v.live_sessions.to_string()),
    ("pounce_upstream_server_in_flight", "gauge", "Requests in progress.", |v| v.in_flight.to_string()),
    ("pounce_upstream_server_requests_total", "counter", "Attempts sent to the server.", |v| v.requests.to_string()),
    (
        "pounce_upstream_server_failures_total",
        "counter",
        "Failed attempts that count against the server (errors, timeouts, invalid responses, retried 5xx).",
        |v| v.failures.to_string(),
    ),
    (
        "pounce_upstream_server_frozen_total",
        "counter",
        "Times the server was declared frozen (nothing from it for frozen_timeout while requests waited).",
        |v| v.frozen_times.to_string(),
    ),
    ("pounce_upstream_server_retries_total", "counter", "Failed attempts after which the request went on to another try.", |v| v.retries.to_string()),
    ("pounce_upstream_server_failovers_total", "counter", "Requests whose sticky route named this server but that went elsewhere.", |v| {
        v.failovers.to_string()
    }),
    ("pounce_upstream_server_request_bytes_total", "counter", "Request bytes sent to the server.", |v| v.bytes_to.to_string()),
    ("pounce_upstream_server_response_bytes_total", "counter", "Response body bytes received from the server.", |v| v.bytes_from.to_string()),
    ("pounce_upstream_server_last_response_seconds", "gauge", "Time to the response head of the last request.", |v| secs(v.last_response_us)),
    ("pounce_upstream_server_idle_connections", "gauge", "Idle pooled connections, all workers.", |v| v.idle_connections.to_string()),
    ("pounce_upstream_server_keepalive_demand", "gauge", "Connections the idle pools aim to keep: recent peak of concurrent requests, all workers.", |v| {
        v.keepalive_demand.to_string()
    }),
    ("pounce_upstream_server_health_checks_total", "counter", "Active health checks run.", |v| v.checks.to_string()),
];

type WorkerMetric = (&'static str, &'static str, &'static str, fn(&WorkerView) -> u64);

const PER_WORKER: [WorkerMetric; 5] = [
    ("pounce_worker_connections", "gauge", "Client connections open in the worker.", |w| w.connections),
    ("pounce_worker_accepted_connections_total", "counter", "Client connections accepted by the worker slot.", |w| w.accepted),
    ("pounce_worker_buffers_in_use", "gauge", "Pooled buffers checked out.", |w| w.buffers_in_use),
    ("pounce_worker_buffers_high_water", "gauge", "Most pooled buffers ever checked out at once.", |w| w.buffers_high_water),
    ("pounce_worker_buffers_limit", "gauge", "Pool limit (beyond it requests get 503).", |w| w.buffers_limit),
];

pub(crate) fn render(s: &Snapshot) -> Vec<u8> {
    let mut o = String::new();
    let servers: Vec<(String, &ServerView)> = s
        .upstreams
        .iter()
        .flat_map(|u| {
            u.servers.iter().map(move |v| {
                let route = v.route.as_deref().map_or(String::new(), |r| format!(",route=\"{}\"", label(r)));
                (format!("upstream=\"{}\",server=\"{}\"{}", label(&u.name), label(&v.addr), route), v)
            })
        })
        .collect();
    for (name, kind, help, f) in PER_SERVER {
        family(&mut o, name, kind, help);
        for (labels, v) in &servers {
            let _ = writeln!(o, "{}{{{}}} {}", name, labels, f(v));
        }
    }
    family(&mut o, "pounce_upstream_server_health_check_failures_total", "counter", "Active health checks that failed.");
    for (labels, v) in &servers {
        let _ = writeln!(o, "pounce_upstream_server_health_check_failures_total{{{}}} {}", labels, v.check_failures);
    }
    family(&mut o, "pounce_upstream_server_last_check_seconds", "gauge", "Duration of the last active health check.");
    for (labels, v) in &servers {
        if let Some(c) = &v.last_check {
            let _ = writeln!(o, "pounce_upstream_server_last_check_seconds{{{}}} {}", labels, secs(c.latency_us));
        }
    }
    family(&mut o, "pounce_upstream_server_responses_total", "counter", "Responses from the server by status class.");
    for (labels, v) in &servers {
        for (k, n) in v.responses.iter().enumerate() {
            let _ = writeln!(o, "pounce_upstream_server_responses_total{{{},code=\"{}xx\"}} {}", labels, k + 1, n);
        }
    }
    family(&mut o, "pounce_upstream_server_errors_total", "counter", "Failed attempts by cause.");
    for (labels, v) in &servers {
        for (cause, n) in &v.errors {
            let _ = writeln!(o, "pounce_upstream_server_errors_total{{{},kind=\"{}\"}} {}", labels, cause.key(), n);
        }
    }
    family(&mut o, "pounce_upstream_server_response_seconds", "histogram", "Time from the start of an attempt to the response head.");
    for (labels, v) in &servers {
        let mut cumulative = 0;
        for (k, n) in v.latency.iter().enumerate() {
            cumulative += n;
            let le = BUCKETS_US.get(k).map_or_else(|| "+Inf".to_string(), |&b| trim(&secs(b)));
            let _ = writeln!(o, "pounce_upstream_server_response_seconds_bucket{{{},le=\"{}\"}} {}", labels, le, cumulative);
        }
        let _ = writeln!(o, "pounce_upstream_server_response_seconds_sum{{{}}} {}", labels, secs(v.latency_sum_us));
        let _ = writeln!(o, "pounce_upstream_server_response_seconds_count{{{}}} {}", labels, cumulative);
    }
    for (name, kind, help, f) in PER_WORKER {
        family(&mut o, name, kind, help);
        for w in &s.workers {
            let _ = writeln!(o, "{}{{worker=\"{}\"}} {}", name, w.id, f(w));
        }
    }
    let tls: [Metric<super::snapshot::TlsView>; 3] = [
        ("pounce_tls_handshakes_total", "TLS handshakes completed (resumed ones included).", |t| t.handshakes),
        ("pounce_tls_resumed_total", "TLS handshakes that resumed a session.", |t| t.resumed),
        ("pounce_tls_handshake_failures_total", "TLS handshakes that failed (plain HTTP on the port included).", |t| t.failures),
    ];
    if !s.tls.is_empty() {
        for (name, help, f) in tls {
            family(&mut o, name, "counter", help);
            for t in &s.tls {
                let _ = writeln!(o, "{}{{listen=\"{}\"}} {}", name, label(&t.listen), f(t));
            }
        }
    }
    if !s.limit_zones.is_empty() {
        family(&mut o, "pounce_limit_requests_total", "counter", "Requests by limit_req/limit_conn zone and outcome (dry runs counted as if real).");
        for z in &s.limit_zones {
            for (outcome, n) in [("passed", z.passed), ("delayed", z.delayed), ("rejected", z.rejected)] {
                let _ = writeln!(o, "pounce_limit_requests_total{{zone=\"{}\",kind=\"{}\",outcome=\"{}\"}} {}", label(&z.name), z.kind, outcome, n);
            }
        }
        family(&mut o, "pounce_limit_zone_states", "gauge", "Keys a limit zone holds now.");
        for z in &s.limit_zones {
            let _ = writeln!(o, "pounce_limit_zone_states{{zone=\"{}\"}} {}", label(&z.name), z.used);
        }
        family(&mut o, "pounce_limit_lock_waits_total", "counter", "Times a worker found a limit zone's shard locked by another (contention).");
        for z in &s.limit_zones {
            let _ = writeln!(o, "pounce_limit_lock_waits_total{{zone=\"{}\"}} {}", label(&z.name), z.lock_waits);
        }
    }
    let mut top = |name: &str, kind: &str, help: &str, value: String| {
        family(&mut o, name, kind, help);
        let _ = writeln!(o, "{} {}", name, value);
    };
    top("pounce_uptime_seconds", "gauge", "Seconds since the process started.", decimal(s.uptime_ms, 3));
    top("pounce_config_generation", "gauge", "Configuration generation (1 + successful reloads).", s.generation.to_string());
    top("pounce_reloads_total", "counter", "Reloads attempted (SIGHUP), failed ones included.", s.reloads.to_string());
    top("pounce_reload_failures_total", "counter", "Reloads that failed (the running configuration was kept).", s.reload_failures.to_string());
    let ok = s.last_reload.as_ref().is_none_or(|r| r.success);
    top("pounce_last_reload_successful", "gauge", "1 unless the last reload failed.", u8::from(ok).to_string());
    let at = s.last_reload.as_ref().map_or(0, |r| r.unix_time);
    top("pounce_last_reload_timestamp_seconds", "gauge", "Unix time of the last reload attempt (0: none yet).", at.to_string());
    family(&mut o, "pounce_build_info", "gauge", "Version of pounce.");
    let _ = writeln!(o, "pounce_build_info{{version=\"{}\"}} 1", label(s.version));
    o.into_bytes()
}

/// "0.001000" → "0.001", "1.000000" → "1" (bucket bounds as people write them).
fn trim(s: &str) -> String {
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}
