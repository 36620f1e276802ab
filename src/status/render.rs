//! The three views of a snapshot: HTML for a browser (with the manager forms), JSON, and the
//! Prometheus text exposition format.

use super::snapshot::{ServerView, Snapshot};
use std::fmt::Write;

pub(crate) fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn opt_json(s: &Option<String>) -> String {
    s.as_deref().map_or_else(|| "null".to_string(), json_str)
}

pub(crate) fn json(s: &Snapshot) -> Vec<u8> {
    let mut o = String::new();
    let _ = write!(
        o,
        "{{\"version\":{},\"uptime_seconds\":{:.3},\"generation\":{},\"buffer_size\":{},\"upstreams\":[",
        json_str(s.version),
        s.uptime_s,
        s.generation,
        s.buffer_size
    );
    for (ui, u) in s.upstreams.iter().enumerate() {
        if ui > 0 {
            o.push(',');
        }
        let _ = write!(
            o,
            "{{\"name\":{},\"method\":\"{}\",\"sticky_cookie\":{},\"health_check\":{},\"servers\":[",
            json_str(&u.name),
            u.method,
            opt_json(&u.sticky),
            u.health_check
        );
        for (i, v) in u.servers.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            let _ = write!(
                o,
                "{{\"index\":{},\"address\":{},\"name\":{},\"protocol\":\"{}\",\"route\":{},\"backup\":{},\"weight\":{},\"config_weight\":{},\"effective_weight\":{},\"state\":\"{}\",\"health\":\"{}\",\"down_reason\":{},\"down_for_ms\":{},\"failed_checks\":{},\"in_flight\":{},\"requests\":{},\"failures\":{},\"failovers\":{},\"bytes_in\":{},\"bytes_out\":{},\"last_response_ms\":{:.3},\"idle_connections\":{},\"keepalive_demand\":{},\"backend_keepalive_timeout_ms\":{},\"backend_max_requests\":{}}}",
                v.index,
                json_str(&v.addr),
                json_str(&v.name),
                v.protocol,
                opt_json(&v.route),
                v.backup,
                v.weight,
                v.config_weight,
                v.effective_weight,
                v.activation,
                v.health,
                if v.down_reason.is_empty() { "null".to_string() } else { json_str(v.down_reason) },
                v.down_for_ms,
                v.failed_checks,
                v.in_flight,
                v.requests,
                v.failures,
                v.failovers,
                v.bytes_in,
                v.bytes_out,
                v.last_response_ms,
                v.idle_connections,
                v.keepalive_demand,
                opt_num(v.backend_idle_ms),
                opt_num(v.backend_max_requests)
            );
        }
        o.push_str("]}");
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
    o.push_str("]}\n");
    o.into_bytes()
}

/// A learned figure: null while not known (0).
fn opt_num(n: u32) -> String {
    if n == 0 {
        "null".into()
    } else {
        n.to_string()
    }
}

/// A label value with Prometheus escaping (`\`, `"`, newline).
fn label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

pub(crate) fn prometheus(s: &Snapshot) -> Vec<u8> {
    let mut o = String::new();
    let servers: Vec<(&str, &ServerView)> = s.upstreams.iter().flat_map(|u| u.servers.iter().map(move |v| (u.name.as_str(), v))).collect();
    let labels =
        |up: &str, v: &ServerView| format!("upstream=\"{}\",server=\"{}\",route=\"{}\"", label(up), label(&v.addr), label(v.route.as_deref().unwrap_or("")));
    type Metric = (&'static str, &'static str, &'static str, fn(&ServerView) -> f64);
    let per_server: [Metric; 15] = [
        ("pounce_upstream_server_up", "gauge", "1 when the server can take requests (health), 0 when it is down.", |v| f64::from(u8::from(v.health == "up"))),
        ("pounce_upstream_server_weight", "gauge", "Configured or manager-set weight.", |v| v.weight as f64),
        ("pounce_upstream_server_effective_weight", "gauge", "Weight in use now (ramped during slow_start).", |v| v.effective_weight as f64),
        ("pounce_upstream_server_active", "gauge", "1 when the activation state is active.", |v| f64::from(u8::from(v.activation == "active"))),
        ("pounce_upstream_server_disabled", "gauge", "1 when the activation state is disabled (draining: sticky requests only).", |v| {
            f64::from(u8::from(v.activation == "disabled"))
        }),
        ("pounce_upstream_server_stopped", "gauge", "1 when the activation state is stopped.", |v| f64::from(u8::from(v.activation == "stopped"))),
        ("pounce_upstream_server_in_flight", "gauge", "Requests in progress.", |v| v.in_flight as f64),
        ("pounce_upstream_server_requests_total", "counter", "Requests sent to the server.", |v| v.requests as f64),
        ("pounce_upstream_server_failures_total", "counter", "Failed attempts (errors, timeouts, invalid responses).", |v| v.failures as f64),
        ("pounce_upstream_server_failovers_total", "counter", "Requests whose sticky route named this server but that went elsewhere.", |v| v.failovers as f64),
        ("pounce_upstream_server_received_bytes_total", "counter", "Request bytes sent to the server.", |v| v.bytes_in as f64),
        ("pounce_upstream_server_sent_bytes_total", "counter", "Response body bytes received from the server.", |v| v.bytes_out as f64),
        ("pounce_upstream_server_last_response_seconds", "gauge", "Time to the response head of the last request.", |v| v.last_response_ms / 1000.0),
        ("pounce_upstream_server_idle_connections", "gauge", "Idle pooled connections, all workers.", |v| v.idle_connections as f64),
        ("pounce_upstream_server_keepalive_demand", "gauge", "Connections the idle pools aim to keep: recent peak of concurrent requests, all workers.", |v| {
            v.keepalive_demand as f64
        }),
    ];
    for (name, kind, help, f) in per_server {
        let _ = writeln!(o, "# HELP {} {}\n# TYPE {} {}", name, help, name, kind);
        for (up, v) in &servers {
            let _ = writeln!(o, "{}{{{}}} {}", name, labels(up, v), f(v));
        }
    }
    type WMetric = (&'static str, &'static str, &'static str, fn(&super::snapshot::WorkerView) -> u64);
    let per_worker: [WMetric; 5] = [
        ("pounce_worker_connections", "gauge", "Client connections open in the worker.", |w| w.connections),
        ("pounce_worker_accepted_connections_total", "counter", "Client connections accepted by the worker.", |w| w.accepted),
        ("pounce_worker_buffers_in_use", "gauge", "Pooled buffers checked out.", |w| w.buffers_in_use),
        ("pounce_worker_buffers_high_water", "gauge", "Most pooled buffers ever checked out at once.", |w| w.buffers_high_water),
        ("pounce_worker_buffers_limit", "gauge", "Pool limit (beyond it requests get 503).", |w| w.buffers_limit),
    ];
    for (name, kind, help, f) in per_worker {
        let _ = writeln!(o, "# HELP {} {}\n# TYPE {} {}", name, help, name, kind);
        for w in &s.workers {
            let _ = writeln!(o, "{}{{worker=\"{}\"}} {}", name, w.id, f(w));
        }
    }
    let _ = writeln!(
        o,
        "# HELP pounce_uptime_seconds Seconds since the process started.\n# TYPE pounce_uptime_seconds gauge\npounce_uptime_seconds {:.3}",
        s.uptime_s
    );
    let _ = writeln!(
        o,
        "# HELP pounce_config_generation Configuration generation (1 + reloads).\n# TYPE pounce_config_generation gauge\npounce_config_generation {}",
        s.generation
    );
    let _ = writeln!(o, "# HELP pounce_build_info Version of pounce.\n# TYPE pounce_build_info gauge\npounce_build_info{{version=\"{}\"}} 1", label(s.version));
    o.into_bytes()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{} B", n),
    }
}

pub(crate) fn html(s: &Snapshot, path: &str) -> Vec<u8> {
    let mut o = String::new();
    let action = html_escape(path);
    let _ = write!(
        o,
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>pounce status</title>\n<style>\
body{{font:14px system-ui,sans-serif;margin:1.5em;color:#222}}table{{border-collapse:collapse;margin:.5em 0 1.5em}}\
th,td{{border:1px solid #ccc;padding:.3em .5em;text-align:right;white-space:nowrap}}th{{background:#f0f0f0}}td.l{{text-align:left}}\
.up{{color:#070}}.down{{color:#b00;font-weight:bold}}.disabled{{color:#a60}}.stopped{{color:#777}}form{{margin:0;display:inline}}\
input[type=number]{{width:4em}}h2{{margin-bottom:.2em}}small{{color:#666}}</style></head><body>\n\
<h1>pounce {}</h1>\n<p>up {:.0} s &middot; configuration generation {} &middot; <a href=\"{}?format=json\">JSON</a> &middot; <a href=\"{}?format=prometheus\">Prometheus</a></p>\n",
        html_escape(s.version),
        s.uptime_s,
        s.generation,
        action,
        action
    );
    for u in &s.upstreams {
        let _ = write!(
            o,
            "<h2 id=\"up-{n}\">upstream {n}</h2>\n<small>balance {} &middot; sticky {} &middot; active health checks {}</small>\n<table class=\"upstream\" data-upstream=\"{n}\">\n<tr><th>server</th><th>protocol</th><th>route</th><th>weight</th><th>effective</th><th>state</th><th>health</th><th>in flight</th><th>requests</th><th>failures</th><th>failovers</th><th>in</th><th>out</th><th>last response</th><th>idle conns</th><th>manage</th></tr>\n",
            u.method,
            u.sticky.as_deref().map_or("off".to_string(), html_escape),
            if u.health_check { "on" } else { "off" },
            n = html_escape(&u.name)
        );
        for v in &u.servers {
            let health = match v.down_reason {
                "health_check" => format!("<span class=\"down\">down</span> (failing checks: {})", v.failed_checks),
                "passive" => format!("<span class=\"down\">down</span> for {:.1} s more", v.down_for_ms as f64 / 1000.0),
                _ => "<span class=\"up\">up</span>".to_string(),
            };
            let sel = |st: &str| if v.activation == st { " selected" } else { "" };
            let _ = writeln!(
                o,
                "<tr class=\"server\" data-server=\"{addr}\" data-state=\"{state}\"><td class=\"l\">{addr}{backup}</td><td>{proto}</td><td>{route}</td><td>{w}</td><td>{ew}</td><td class=\"{state}\">{state}</td><td class=\"l\">{health}</td><td>{inf}</td><td>{req}</td><td>{fail}</td><td>{fo}</td><td>{bin}</td><td>{bout}</td><td>{last:.1} ms</td><td>{idle}</td>\
<td class=\"l\"><form method=\"post\" action=\"{action}\" class=\"set\"><input type=\"hidden\" name=\"upstream\" value=\"{up}\"><input type=\"hidden\" name=\"server\" value=\"{addr}\">\
weight <input type=\"number\" name=\"weight\" min=\"1\" max=\"1000\" value=\"{w}\"> <select name=\"state\"><option{s1}>active</option><option{s2}>disabled</option><option{s3}>stopped</option></select> <button type=\"submit\">apply</button></form> \
<form method=\"post\" action=\"{action}\" class=\"drain\"><input type=\"hidden\" name=\"upstream\" value=\"{up}\"><input type=\"hidden\" name=\"server\" value=\"{addr}\"><input type=\"hidden\" name=\"state\" value=\"disabled\"><button type=\"submit\" name=\"drain\">drain</button></form></td></tr>",
                addr = html_escape(&v.addr),
                backup = if v.backup { " <small>(backup)</small>" } else { "" },
                proto = v.protocol,
                route = v.route.as_deref().map_or("-".to_string(), html_escape),
                w = v.weight,
                ew = v.effective_weight,
                state = v.activation,
                health = health,
                inf = v.in_flight,
                req = v.requests,
                fail = v.failures,
                fo = v.failovers,
                bin = bytes(v.bytes_in),
                bout = bytes(v.bytes_out),
                last = v.last_response_ms,
                idle = v.idle_connections,
                action = action,
                up = html_escape(&u.name),
                s1 = sel("active"),
                s2 = sel("disabled"),
                s3 = sel("stopped"),
            );
        }
        o.push_str("</table>\n");
    }
    o.push_str("<h2>workers</h2>\n<table class=\"workers\"><tr><th>worker</th><th>connections</th><th>accepted</th><th>buffers in use</th><th>high-water</th><th>limit</th><th>idle backend conns</th></tr>\n");
    for w in &s.workers {
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            w.id, w.connections, w.accepted, w.buffers_in_use, w.buffers_high_water, w.buffers_limit, w.idle_backend
        );
    }
    let _ = write!(o, "</table>\n<p><small>buffers are {} KiB each</small></p>\n</body></html>\n", s.buffer_size / 1024);
    o.into_bytes()
}
