//! Directives of the top level and of `events`, and the `http` block.

use super::builder::{inner, Builder, HttpScope, Scope};
use super::lexer::{err, resolve, ConfError, Directive};
use super::values::{num_arg, time_arg};
use super::Settings;

type Done = Result<(), ConfError>;

pub(super) fn worker_processes(b: &mut Builder, d: &Directive, _: &mut Scope) -> Done {
    b.cfg.worker_processes = if d.args[0] == "auto" {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    } else {
        match num_arg(d, &d.args[0])? {
            0 => return err(&d.pos, "\"worker_processes\" must be at least 1"),
            n if n > 1024 => return err(&d.pos, "\"worker_processes\" is too large (at most 1024)"),
            n => n as usize,
        }
    };
    Ok(())
}

pub(super) fn worker_shutdown_timeout(b: &mut Builder, d: &Directive, _: &mut Scope) -> Done {
    b.cfg.worker_shutdown_timeout = time_arg(d, &d.args[0])?;
    Ok(())
}

pub(super) fn error_log(b: &mut Builder, d: &Directive, _: &mut Scope) -> Done {
    b.cfg.error_log = match d.args[0].as_str() {
        "stderr" => None,
        p => Some(resolve(&b.prefix, p)),
    };
    if let Some(level) = d.args.get(1) {
        b.cfg.error_level = match level.as_str() {
            "debug" => log::LevelFilter::Debug,
            "info" | "notice" => log::LevelFilter::Info,
            "warn" => log::LevelFilter::Warn,
            "error" | "crit" | "alert" | "emerg" => log::LevelFilter::Error,
            _ => return err(&d.pos, format!("invalid log level \"{}\"", level)),
        };
    }
    Ok(())
}

pub(super) fn pid(b: &mut Builder, d: &Directive, _: &mut Scope) -> Done {
    b.cfg.pid = if d.args[0] == "off" { None } else { Some(resolve(&b.prefix, &d.args[0])) };
    Ok(())
}

pub(super) fn events(b: &mut Builder, d: &Directive, _: &mut Scope) -> Done {
    b.walk(inner(d), &mut Scope::Events, |_| true)
}

pub(super) fn worker_connections(b: &mut Builder, d: &Directive, _: &mut Scope) -> Done {
    let n = num_arg(d, &d.args[0])?;
    if !(2..=1_000_000).contains(&n) {
        return err(&d.pos, "\"worker_connections\" must be between 2 and 1000000");
    }
    b.cfg.worker_connections = n as usize;
    Ok(())
}

pub(super) fn worker_buffers(b: &mut Builder, d: &Directive, _: &mut Scope) -> Done {
    let n = num_arg(d, &d.args[0])?;
    if !(16..=100_000_000).contains(&n) {
        return err(&d.pos, "\"worker_buffers\" must be between 16 and 100000000");
    }
    b.cfg.worker_buffers = Some(n as usize);
    Ok(())
}

/// nginx directives accepted for compatibility, with nothing for pounce to do.
pub(super) fn ignored(_: &mut Builder, _: &Directive, _: &mut Scope) -> Done {
    Ok(())
}

pub(super) fn http(b: &mut Builder, d: &Directive, _: &mut Scope) -> Done {
    if b.http_seen {
        return err(&d.pos, "\"http\" directive is duplicate");
    }
    b.http_seen = true;
    let list = inner(d);
    let mut http = HttpScope::default();
    // Upstream blocks first, so proxy_pass may name one defined later in the file; server
    // blocks last, so they inherit every http setting wherever it is written.
    // Log formats likewise, so access_log may name one written further down.
    // Limit zones too, so limit_req and limit_conn may name one written further down.
    let first = |d: &Directive| matches!(d.name.as_str(), "upstream" | "log_format" | "limit_req_zone" | "limit_conn_zone");
    b.walk(list, &mut Scope::Http(&mut http), first)?;
    b.walk(list, &mut Scope::Http(&mut http), |d| !first(d) && d.name != "server")?;
    http.settings = http.patch.over(&Settings::default());
    b.walk(list, &mut Scope::Http(&mut http), |d| d.name == "server")
}
