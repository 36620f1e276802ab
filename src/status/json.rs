//! The JSON view (`?format=json`): every field of the snapshot, for scripts. Times are
//! fixed-point decimals; the manager's nonce is included for clients allowed to post.

use super::snapshot::{ServerView, Snapshot, UpstreamView};
use super::text::{decimal, json_str};
use crate::upstream::stats::Outcome;
use std::fmt::Write;

fn opt_str(s: Option<&str>) -> String {
    s.map_or_else(|| "null".to_string(), json_str)
}

fn opt_num(n: Option<String>) -> String {
    n.unwrap_or_else(|| "null".to_string())
}

fn outcome_fields(o: Outcome) -> String {
    format!(
        "\"cause\":{},\"status\":{},\"detail\":{}",
        opt_str(o.cause.map(|c| c.key())),
        if o.status == 0 { "null".to_string() } else { o.status.to_string() },
        json_str(&o.describe())
    )
}

pub(crate) fn render(s: &Snapshot) -> Vec<u8> {
    let mut o = String::new();
    let _ = write!(
        o,
        "{{\"version\":{},\"uptime_seconds\":{},\"generation\":{},\"buffer_size\":{},\"read_only\":{},\"nonce\":{},\"reloads\":{},\"reload_failures\":{},\"last_reload\":",
        json_str(s.version),
        decimal(s.uptime_ms, 3),
        s.generation,
        s.buffer_size,
        s.nonce.is_none(),
        opt_str(s.nonce),
        s.reloads,
        s.reload_failures,
    );
    match &s.last_reload {
        None => o.push_str("null"),
        Some(r) => {
            let _ = write!(
                o,
                "{{\"unix_time\":{},\"age_seconds\":{},\"success\":{},\"error\":{}}}",
                r.unix_time,
                s.unix_now.saturating_sub(r.unix_time),
                r.success,
                opt_str(r.error.as_deref())
            );
        }
    }
    o.push_str(",\"upstreams\":[");
    for (ui, u) in s.upstreams.iter().enumerate() {
        if ui > 0 {
            o.push(',');
        }
        upstream(&mut o, u);
    }
    o.push_str("],\"workers\":[");
    for (i, w) in s.workers.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let _ = write!(
            o,
            "{{\"id\":{},\"connections\":{},\"accepted\":{},\"buffers_in_use\":{},\"buffers_high_water\":{},\"buffers_limit\":{},\"idle_backend_connections\":{}}}",
            w.id, w.connections, w.accepted, w.buffers_in_use, w.buffers_high_water, w.buffers_limit, w.idle_backend
        );
    }
    o.push_str("],\"tls\":[");
    for (i, t) in s.tls.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let _ =
            write!(o, "{{\"listen\":{},\"handshakes\":{},\"resumed\":{},\"handshake_failures\":{}}}", json_str(&t.listen), t.handshakes, t.resumed, t.failures);
    }
    o.push_str("],\"limit_zones\":[");
    for (i, z) in s.limit_zones.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let _ = write!(
            o,
            "{{\"name\":{},\"kind\":\"{}\",\"rate\":{},\"states\":{},\"capacity\":{},\"passed\":{},\"delayed\":{},\"rejected\":{},\"lock_waits\":{}}}",
            json_str(&z.name),
            z.kind,
            z.rate,
            z.used,
            z.capacity,
            z.passed,
            z.delayed,
            z.rejected,
            z.lock_waits
        );
    }
    o.push_str("]}\n");
    o.into_bytes()
}

fn upstream(o: &mut String, u: &UpstreamView) {
    let _ = write!(
        o,
        "{{\"name\":{},\"method\":\"{}\",\"sticky_cookie\":{},\"health_check\":{},\"servers\":[",
        json_str(&u.name),
        u.method,
        opt_str(u.sticky.as_deref()),
        u.health_check
    );
    for (i, v) in u.servers.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        server(o, v);
    }
    o.push_str("]}");
}

fn server(o: &mut String, v: &ServerView) {
    let _ = write!(
        o,
        "{{\"index\":{},\"address\":{},\"name\":{},\"protocol\":\"{}\",\"route\":{},\"backup\":{},\"weight\":{},\"config_weight\":{},\"effective_weight\":{},\"state\":\"{}\",\"health\":\"{}\",\"down_reason\":{},\"down_since_seconds\":{},\"down_cause\":{},\"down_for_ms\":{},\"failed_checks\":{},",
        v.index,
        json_str(&v.addr),
        json_str(&v.name),
        v.protocol,
        opt_str(v.route.as_deref()),
        v.backup,
        v.weight,
        v.config_weight,
        v.effective_weight,
        v.activation,
        v.health,
        opt_str((!v.down_reason.is_empty()).then_some(v.down_reason)),
        opt_num(v.down_since_ms.map(|ms| decimal(ms, 3))),
        opt_str(v.down_cause.map(|c| c.describe()).as_deref()),
        v.down_for_ms,
        v.failed_checks,
    );
    let _ = write!(
        o,
        "\"live_sessions\":{},\"last_sticky_request_age_seconds\":{},\"drained\":{},\"frozen_times\":{},",
        v.live_sessions,
        opt_num(v.last_sticky_ms.map(|ms| decimal(ms, 3))),
        v.drained,
        v.frozen_times
    );
    let _ = write!(
        o,
        "\"in_flight\":{},\"requests\":{},\"failures\":{},\"failovers\":{},\"retries\":{},\"bytes_to_server\":{},\"bytes_from_server\":{},\"last_response_ms\":{},\"avg_response_ms\":{},\"idle_connections\":{},\"keepalive_demand\":{},\"backend_keepalive_timeout_ms\":{},\"backend_max_requests\":{},",
        v.in_flight,
        v.requests,
        v.failures,
        v.failovers,
        v.retries,
        v.bytes_to,
        v.bytes_from,
        decimal(v.last_response_us, 3),
        opt_num(v.latency_sum_us.checked_div(v.timed()).map(|us| decimal(us, 3))),
        v.idle_connections,
        v.keepalive_demand,
        opt_num((v.backend_idle_ms > 0).then(|| v.backend_idle_ms.to_string())),
        opt_num((v.backend_max_requests > 0).then(|| v.backend_max_requests.to_string()))
    );
    o.push_str("\"responses\":{");
    for (k, n) in v.responses.iter().enumerate() {
        let _ = write!(o, "{}\"{}xx\":{}", if k > 0 { "," } else { "" }, k + 1, n);
    }
    o.push_str("},\"errors\":{");
    for (k, (cause, n)) in v.errors.iter().enumerate() {
        let _ = write!(o, "{}\"{}\":{}", if k > 0 { "," } else { "" }, cause.key(), n);
    }
    let _ = write!(o, "}},\"checks\":{},\"check_failures\":{},\"last_check\":", v.checks, v.check_failures);
    match &v.last_check {
        None => o.push_str("null"),
        Some(c) => {
            let _ = write!(
                o,
                "{{\"result\":\"{}\",{},\"latency_ms\":{},\"age_seconds\":{}}}",
                if c.outcome.cause.is_none() { "passed" } else { "failed" },
                outcome_fields(c.outcome),
                decimal(c.latency_us, 3),
                decimal(c.age_ms, 3)
            );
        }
    }
    o.push_str(",\"last_failure\":");
    match v.last_failure {
        None => o.push_str("null"),
        Some((f, age)) => {
            let _ = write!(o, "{{{},\"age_seconds\":{}}}", outcome_fields(f), decimal(age, 3));
        }
    }
    o.push('}');
}
