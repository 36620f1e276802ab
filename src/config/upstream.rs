//! The `upstream NAME { ... }` block and its directives: servers, keep-alive, balancing,
//! sticky sessions, active health checks and frozen-server detection.

use super::builder::{inner, Builder, Scope};
use super::lexer::{err, ConfError, Directive};
use super::values::{num_arg, on_off, resolve_addr, time_arg};
use super::{Balance, HealthCheck, Keepalive, Peer, Sticky, Upstream, MAX_SERVERS};
use std::time::Duration;

type Done = Result<(), ConfError>;

pub(super) fn upstream(b: &mut Builder, d: &Directive, _: &mut Scope) -> Done {
    let name = d.args[0].clone();
    if let Some(i) = b.cfg.http.upstreams.iter().position(|u| u.name == name) {
        return err(&d.pos, format!("duplicate upstream \"{}\" (first defined at {})", name, b.upstream_pos[i]));
    }
    let mut up = Upstream::new(name, false);
    b.walk(inner(d), &mut Scope::Upstream(&mut up), |_| true)?;
    if up.servers.is_empty() {
        return err(&d.pos, format!("no servers are inside upstream \"{}\"", up.name));
    }
    if up.servers.len() > MAX_SERVERS {
        return err(&d.pos, format!("too many servers in upstream \"{}\" (at most {})", up.name, MAX_SERVERS));
    }
    b.cfg.http.upstreams.push(up);
    b.upstream_pos.push(d.pos.clone());
    Ok(())
}

/// `server HOST:PORT [weight=N] [max_fails=N] [fail_timeout=TIME] [backup] [down] ...`:
/// one peer per address the host resolves to, as nginx does.
pub(super) fn server(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    let addrs = resolve_addr(d, &d.args[0], None)?;
    let mut p = Peer::new(addrs[0], d.args[0].clone());
    for a in &d.args[1..] {
        let (k, v) = a.split_once('=').unwrap_or((a.as_str(), ""));
        match (k, v.is_empty()) {
            ("weight", false) => {
                p.weight = num_arg(d, v)? as u32;
                if p.weight == 0 || p.weight > 1000 {
                    return err(&d.pos, format!("invalid weight \"{}\" (1..1000)", v));
                }
            }
            ("max_fails", false) => p.max_fails = num_arg(d, v)? as u32,
            ("fail_timeout", false) => p.fail_timeout = time_arg(d, v)?,
            ("backup", true) => p.backup = true,
            ("down", true) => p.down = true,
            ("disabled", true) => p.disabled = true,
            ("route", false) => p.route = Some(v.to_string()),
            ("slow_start", false) => p.slow_start = time_arg(d, v)?,
            _ => return err(&d.pos, format!("invalid parameter \"{}\"", a)),
        }
    }
    s.upstream(d)?.servers.extend(addrs.into_iter().map(|addr| Peer { addr, ..p.clone() }));
    Ok(())
}

/// `keepalive auto|N|off`: `auto` (the default) sizes the idle pool by demand, N caps it,
/// `off` (or 0) sends `Connection: close`.
pub(super) fn keepalive(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    let k = match d.args[0].as_str() {
        "off" => Keepalive::Off,
        "auto" => Keepalive::Auto,
        v => match num_arg(d, v)? as usize {
            0 => Keepalive::Off,
            n => Keepalive::Max(n),
        },
    };
    s.upstream(d)?.keepalive = k;
    Ok(())
}

pub(super) fn keepalive_timeout(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.upstream(d)?.keepalive_timeout = time_arg(d, &d.args[0])?;
    Ok(())
}

/// `frozen_timeout TIME|off;`: how long a server may send nothing at all while requests
/// wait on it before it counts as frozen.
pub(super) fn frozen_timeout(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    let t = match d.args[0].as_str() {
        "off" => None,
        a => Some(time_arg(d, a)?),
    };
    if t.is_some_and(|t| t < Duration::from_millis(100)) {
        return err(&d.pos, "\"frozen_timeout\" must be at least 100ms (or off)");
    }
    s.upstream(d)?.frozen_timeout = t;
    Ok(())
}

pub(super) fn keepalive_requests(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.upstream(d)?.keepalive_requests = num_arg(d, &d.args[0])?.min(u32::MAX as u64) as u32;
    Ok(())
}

pub(super) fn balance(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.upstream(d)?.balance = match d.args[0].as_str() {
        "round_robin" => Balance::RoundRobin,
        "least_conn" => Balance::LeastConn,
        "by_traffic" => Balance::ByTraffic,
        m => return err(&d.pos, format!("unknown balancing method \"{}\" (round_robin, least_conn, by_traffic)", m)),
    };
    Ok(())
}

pub(super) fn sticky_route(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    let up = s.upstream(d)?;
    let cookie = d.args.first().cloned().unwrap_or_else(|| "JSESSIONID".into());
    let (force, window, drain_idle) =
        up.sticky.as_ref().map_or((false, Sticky::DEFAULT_WINDOW, Sticky::DEFAULT_DRAIN_IDLE), |s| (s.force, s.window, s.drain_idle));
    up.sticky = Some(Sticky { path_param: cookie.to_ascii_lowercase(), cookie, force, window, drain_idle });
    Ok(())
}

/// `sessions_window TIME;`: how long a session counts as live after its last request.
pub(super) fn sessions_window(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    let t = time_arg(d, &d.args[0])?;
    if t.as_secs() < 6 {
        return err(&d.pos, "\"sessions_window\" must be at least 6s");
    }
    match s.upstream(d)?.sticky.as_mut() {
        Some(s) => s.window = t,
        None => return err(&d.pos, "\"sessions_window\" needs \"sticky_route\" before it"),
    }
    Ok(())
}

/// `drain_idle TIME;`: a disabled server with no sticky request for this long is drained.
pub(super) fn drain_idle(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    let t = time_arg(d, &d.args[0])?;
    match s.upstream(d)?.sticky.as_mut() {
        Some(s) => s.drain_idle = t,
        None => return err(&d.pos, "\"drain_idle\" needs \"sticky_route\" before it"),
    }
    Ok(())
}

pub(super) fn sticky_force(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    let on = on_off(d, &d.args[0])?;
    match s.upstream(d)?.sticky.as_mut() {
        Some(s) => s.force = on,
        None => return err(&d.pos, "\"sticky_force\" needs \"sticky_route\" before it"),
    }
    Ok(())
}

/// `health_check [interval=TIME] [fails=N] [passes=N] [uri=PATH] [timeout=TIME]`.
pub(super) fn health_check(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    let mut hc = HealthCheck::default();
    for a in &d.args {
        let (k, v) = a.split_once('=').unwrap_or((a.as_str(), ""));
        match k {
            "interval" => hc.interval = time_arg(d, v)?,
            "timeout" => hc.timeout = time_arg(d, v)?,
            "fails" => hc.fails = (num_arg(d, v)? as u32).max(1),
            "passes" => hc.passes = (num_arg(d, v)? as u32).max(1),
            "uri" if v.starts_with('/') => hc.uri = v.to_string(),
            _ => return err(&d.pos, format!("invalid parameter \"{}\"", a)),
        }
    }
    if hc.interval.is_zero() || hc.timeout.is_zero() {
        return err(&d.pos, "health_check interval and timeout must be positive");
    }
    s.upstream(d)?.health_check = Some(hc);
    Ok(())
}
