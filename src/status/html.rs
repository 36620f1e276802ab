//! The HTML view for a browser: one table per upstream, a row per server with its manager
//! forms right after its address (so they are on screen at 1280 px without scrolling), what
//! happened to it (health and why, the last check, responses, errors, retries), and the
//! workers. `?refresh=SECONDS` reloads the page by itself.

use super::snapshot::{ServerView, Snapshot, UpstreamView};
use super::text::{age, bytes, html_escape, ms, utc};
use std::fmt::Write;

const STYLE: &str = "body{font:13px system-ui,sans-serif;margin:1em;color:#222}\
h1{font-size:1.5em;margin:0 0 .2em}h2{font-size:1.15em;margin:1em 0 .1em}p{margin:.2em 0}\
table{border-collapse:collapse;margin:.4em 0 1em}th,td{border:1px solid #ccc;padding:.2em .4em;text-align:right;white-space:nowrap;vertical-align:top}\
th{background:#f0f0f0;font-weight:600}td.l,th.l{text-align:left}small,.dim{color:#666}\
.up{color:#070}.down{color:#b00;font-weight:bold}.active{color:#070}.disabled{color:#a60;font-weight:bold}.stopped{color:#777;font-weight:bold}\
.failed{color:#b00}.passed{color:#070}form{margin:0;display:inline}input[type=number]{width:3.2em}button,select{font:inherit}\
td.responses,td.errors,td.health{white-space:normal;max-width:11em}td.health{min-width:7.5em}td.errors{min-width:6.5em}\
.meta a,.meta b{margin:0 .15em}.warn{color:#b00;font-weight:bold}";

pub(crate) fn page(s: &Snapshot, path: &str, refresh: Option<u32>) -> Vec<u8> {
    let mut o = String::new();
    let base = html_escape(path);
    let action = match refresh {
        Some(r) => format!("{}?refresh={}", base, r),
        None => base.clone(),
    };
    let _ = write!(o, "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>pounce status</title>\n");
    if let Some(r) = refresh {
        let _ = writeln!(o, "<meta http-equiv=\"refresh\" content=\"{}\">", r);
    }
    let _ = writeln!(o, "<style>{}</style></head><body>\n<h1>pounce {}</h1>", STYLE, html_escape(s.version));
    let _ = write!(o, "<p class=\"meta\">up {} &middot; configuration generation {} &middot; ", age(s.uptime_ms), s.generation);
    reload_line(&mut o, s);
    let _ = write!(o, "</p>\n<p class=\"meta\">auto-refresh:");
    for (r, text) in [(None, "off"), (Some(5), "5 s"), (Some(30), "30 s")] {
        let href = r.map_or(base.clone(), |r| format!("{}?refresh={}", base, r));
        if r == refresh {
            let _ = write!(o, " <b>{}</b>", text);
        } else {
            let _ = write!(o, " <a href=\"{}\" class=\"refresh\">{}</a>", href, text);
        }
    }
    let _ = writeln!(
        o,
        " &middot; <a href=\"{b}?format=json\">JSON</a> &middot; <a href=\"{b}?format=prometheus\">Prometheus</a>{}</p>",
        if s.nonce.is_none() { " &middot; <b id=\"read-only\">read-only</b>" } else { "" },
        b = base
    );
    for u in &s.upstreams {
        upstream(&mut o, u, s.nonce, &action);
    }
    o.push_str("<h2>workers</h2>\n<table class=\"workers\"><tr><th>worker</th><th>connections</th><th>accepted</th><th>buffers in use</th><th>high-water</th><th>limit</th><th>idle backend conns</th></tr>\n");
    for w in &s.workers {
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            w.id, w.connections, w.accepted, w.buffers_in_use, w.buffers_high_water, w.buffers_limit, w.idle_backend
        );
    }
    o.push_str("</table>\n");
    if !s.tls.is_empty() {
        o.push_str("<h2>TLS</h2>\n<table class=\"tls\"><tr><th>listen</th><th>handshakes</th><th>resumed</th><th>failed handshakes</th></tr>\n");
        for t in &s.tls {
            let _ = writeln!(o, "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", html_escape(&t.listen), t.handshakes, t.resumed, t.failures);
        }
        o.push_str("</table>\n");
    }
    if !s.limit_zones.is_empty() {
        o.push_str("<h2>Limits</h2>\n<table class=\"limits\"><tr><th>zone</th><th>kind</th><th>rate r/s</th><th>states</th><th>capacity</th><th>passed</th><th>delayed</th><th>rejected</th></tr>\n");
        for z in &s.limit_zones {
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                html_escape(&z.name),
                z.kind,
                z.rate,
                z.used,
                z.capacity,
                z.passed,
                z.delayed,
                z.rejected
            );
        }
        o.push_str("</table>\n");
    }
    let _ = write!(
        o,
        "<p><small>bytes to server: the requests pounce sent it; from server: the response bodies it sent back &middot; response time: from the start of an attempt (connect included) to the response head &middot; buffers are {} KiB each</small></p>\n</body></html>\n",
        s.buffer_size / 1024
    );
    o.into_bytes()
}

fn reload_line(o: &mut String, s: &Snapshot) {
    match &s.last_reload {
        None => o.push_str("<span id=\"reload\">no reload yet</span>"),
        Some(r) => {
            let when = format!("{} ({} ago)", utc(r.unix_time), age(s.unix_now.saturating_sub(r.unix_time) * 1000));
            match &r.error {
                None => {
                    let _ = write!(o, "<span id=\"reload\" data-result=\"ok\">last reload {}: <span class=\"up\">ok</span></span>", when);
                }
                Some(e) => {
                    let _ = write!(
                        o,
                        "<span id=\"reload\" data-result=\"failed\">last reload {}: <span class=\"warn\">failed</span>, the running configuration was kept: {}</span>",
                        when,
                        html_escape(e)
                    );
                }
            }
        }
    }
    let _ = write!(o, " <small>({} reloads, {} failed)</small>", s.reloads, s.reload_failures);
}

fn upstream(o: &mut String, u: &UpstreamView, nonce: Option<&str>, action: &str) {
    let _ = write!(
        o,
        "<h2 id=\"up-{n}\">upstream {n}</h2>\n<small>balance {} &middot; sticky {} &middot; active health checks {}</small>\n<table class=\"upstream\" data-upstream=\"{n}\">\n\
<tr><th class=\"l\">server</th>{}<th class=\"l\">health</th><th class=\"l\">last check</th><th>requests</th><th class=\"l\">responses</th><th class=\"l\">errors</th><th>bytes to /<br>from server</th><th>response<br>time</th></tr>\n",
        u.method,
        u.sticky.as_deref().map_or("off".to_string(), html_escape),
        if u.health_check { "on" } else { "off" },
        // With the manager, the state is its form's select; without, a column of its own.
        if nonce.is_some() { "<th class=\"l\">state and weight</th>" } else { "<th class=\"l\">state</th>" },
        n = html_escape(&u.name)
    );
    for v in &u.servers {
        let addr = html_escape(&v.addr);
        let _ = write!(
            o,
            "<tr class=\"server\" data-server=\"{addr}\" data-state=\"{}\" data-health=\"{}\"><td class=\"l\"><b>{addr}</b><br><small>{}</small></td>",
            v.activation,
            v.health,
            server_facts(v)
        );
        match nonce {
            Some(nonce) => manage_cell(o, &html_escape(&u.name), v, nonce, action),
            None => {
                let _ = write!(o, "<td class=\"l state {st}\">{st}</td>", st = v.activation);
            }
        }
        let _ = write!(o, "<td class=\"l health\">{}</td>", health_cell(v));
        let _ = write!(o, "<td class=\"l check\">{}</td>", check_cell(v, u.health_check));
        let _ = write!(
            o,
            "<td class=\"requests\">{}<br><small>{} in flight &middot; {} idle</small>{}</td>",
            v.requests,
            v.in_flight,
            v.idle_connections,
            sessions_line(v, u.sticky.is_some())
        );
        let _ = write!(o, "<td class=\"l responses\">{}</td>", responses_cell(v));
        let _ = write!(o, "<td class=\"l errors\">{}</td>", errors_cell(v));
        let _ = write!(o, "<td class=\"traffic\">{}<br>{}</td>", bytes(v.bytes_to), bytes(v.bytes_from));
        let avg = v.latency_sum_us.checked_div(v.timed()).map_or("-".to_string(), ms);
        let last = if v.timed() == 0 { "-".to_string() } else { ms(v.last_response_us) };
        let _ = writeln!(o, "<td class=\"time\">last {}<br><small>avg {}</small></td></tr>", last, avg);
    }
    o.push_str("</table>\n");
}

/// Live sticky sessions, and for a disabled server whether it is drained.
fn sessions_line(v: &ServerView, sticky: bool) -> String {
    let drain = match (v.activation, v.drained) {
        ("active", _) => String::new(),
        (_, true) => " &middot; <b class=\"drained\">drained</b>".to_string(),
        (_, false) => {
            format!(" &middot; <span class=\"draining\">draining</span>{}", v.last_sticky_ms.map_or(String::new(), |a| format!(", last {} ago", age(a))))
        }
    };
    if !sticky {
        return if drain.is_empty() { drain } else { format!("<br><small>{}</small>", drain.trim_start_matches(" &middot; ")) };
    }
    format!("<br><small><span class=\"sessions\">{} sessions</span>{}</small>", v.live_sessions, drain)
}

/// Protocol, route, backup, and the weight in use when slow_start ramps it.
fn server_facts(v: &ServerView) -> String {
    let mut f = vec![v.protocol.to_string()];
    if let Some(r) = &v.route {
        f.push(format!("route {}", html_escape(r)));
    }
    if v.backup {
        f.push("backup".into());
    }
    if v.effective_weight != v.weight {
        f.push(format!("effective weight {}", v.effective_weight));
    }
    if v.weight != v.config_weight {
        f.push(format!("configured weight {}", v.config_weight));
    }
    f.join(" &middot; ")
}

fn manage_cell(o: &mut String, up: &str, v: &ServerView, nonce: &str, action: &str) {
    let sel = |st: &str| if v.activation == st { " selected" } else { "" };
    let hidden = format!(
        "<input type=\"hidden\" name=\"nonce\" value=\"{}\"><input type=\"hidden\" name=\"upstream\" value=\"{}\"><input type=\"hidden\" name=\"server\" value=\"{}\">",
        html_escape(nonce),
        up,
        html_escape(&v.addr)
    );
    let _ = write!(
        o,
        "<td class=\"l manage\"><form method=\"post\" action=\"{action}\" class=\"set\">{hidden}\
<select name=\"state\" class=\"state {st}\" title=\"state\" aria-label=\"state\"><option{}>active</option><option{}>disabled</option><option{}>stopped</option></select> \
<input type=\"number\" name=\"weight\" min=\"1\" max=\"1000\" value=\"{w}\" title=\"weight\" aria-label=\"weight\"> <button type=\"submit\">apply</button></form> \
<form method=\"post\" action=\"{action}\" class=\"drain\">{hidden}<input type=\"hidden\" name=\"state\" value=\"disabled\"><button type=\"submit\" name=\"drain\">drain</button></form></td>",
        sel("active"),
        sel("disabled"),
        sel("stopped"),
        w = v.weight,
        st = v.activation,
    );
}

fn health_cell(v: &ServerView) -> String {
    if v.health == "up" {
        return "<span class=\"up\">up</span>".to_string();
    }
    let since = v.down_since_ms.map_or(String::new(), |d| format!(" for {}", age(d)));
    let why = v.down_cause.map_or("unknown".to_string(), |c| html_escape(&c.describe()));
    match v.down_reason {
        "health_check" => format!("<span class=\"down\">down</span>{}<br><small>checks: <span class=\"why\">{}</span></small>", since, why),
        "frozen" => format!(
            "<span class=\"down\">down</span>{}<br><small><span class=\"why\">frozen: stopped answering</span>; next try in {}</small>",
            since,
            age(v.down_for_ms)
        ),
        _ => format!(
            "<span class=\"down\">down</span>{}<br><small>failed: <span class=\"why\">{}</span>; next try in {}</small>",
            since,
            why,
            age(v.down_for_ms)
        ),
    }
}

fn check_cell(v: &ServerView, enabled: bool) -> String {
    let Some(c) = &v.last_check else {
        return if enabled { "<span class=\"dim\">pending</span>".to_string() } else { "<span class=\"dim\">off</span>".to_string() };
    };
    let (class, word) = if c.outcome.cause.is_none() { ("passed", "passed") } else { ("failed", "failed") };
    format!(
        "<span class=\"{}\">{}</span>: {}<br><small>{} &middot; {} ago &middot; {}/{} failed</small>",
        class,
        word,
        html_escape(&c.outcome.describe()),
        ms(c.latency_us),
        age(c.age_ms),
        v.check_failures,
        v.checks
    )
}

fn responses_cell(v: &ServerView) -> String {
    let parts: Vec<String> = v.responses.iter().enumerate().filter(|(_, &n)| n > 0).map(|(k, n)| format!("{}xx&nbsp;{}", k + 1, n)).collect();
    if parts.is_empty() {
        "-".to_string()
    } else {
        parts.join(" ")
    }
}

fn errors_cell(v: &ServerView) -> String {
    let mut parts: Vec<String> = v.errors.iter().filter(|(_, n)| *n > 0).map(|(c, n)| format!("{}&nbsp;{}", c.key().replace('_', "&nbsp;"), n)).collect();
    if v.retries > 0 {
        parts.push(format!("retried&nbsp;{}", v.retries));
    }
    if v.failovers > 0 {
        parts.push(format!("failovers&nbsp;{}", v.failovers));
    }
    let last = v.last_failure.map_or(String::new(), |(f, a)| format!("<br><small>last {} ago: {}</small>", age(a), html_escape(&f.describe())));
    if parts.is_empty() && last.is_empty() {
        return "-".to_string();
    }
    format!("{}{}", if parts.is_empty() { "-".to_string() } else { parts.join(" ") }, last)
}
