//! The directive table: one row per directive (name, blocks it may be written in, argument
//! count, whether it takes a block, parse function), as nginx's command tables. A new
//! directive is one row here and one function in the module of its area.

use super::builder::ctx::{EVENTS, HTTP, LOCATION, MAIN, SERVER, SETTINGS, UPSTREAM};
use super::builder::{Args, Args::*, Row, Set};
use super::{gzip, limit, logformat, realip, server, settings, ssl, top, upstream};

const fn simple(name: &'static str, ctx: u8, args: Args, set: Set) -> Row {
    Row { name, ctx, args, block: false, set }
}

const fn block(name: &'static str, ctx: u8, args: Args, set: Set) -> Row {
    Row { name, ctx, args, block: true, set }
}

#[rustfmt::skip]
pub(super) const TABLE: &[Row] = &[
    // top level and events (top.rs)
    simple("worker_processes",          MAIN,                Exactly(1),   top::worker_processes),
    simple("worker_shutdown_timeout",   MAIN,                Exactly(1),   top::worker_shutdown_timeout),
    simple("error_log",                 MAIN,                Range(1, 2),  top::error_log),
    simple("pid",                       MAIN,                Exactly(1),   top::pid),
    block("events",                     MAIN,                Exactly(0),   top::events),
    block("http",                       MAIN,                Exactly(0),   top::http),
    simple("worker_connections",        EVENTS,              Exactly(1),   top::worker_connections),
    simple("worker_buffers",            EVENTS,              Exactly(1),   top::worker_buffers),
    simple("use",                       EVENTS,              Any,          top::ignored),
    simple("multi_accept",              EVENTS,              Any,          top::ignored),
    simple("accept_mutex",              EVENTS,              Any,          top::ignored),
    // settings inherited http → server → location (settings.rs)
    simple("access_log",                SETTINGS,            Range(1, 2),  logformat::access_log),
    simple("log_format",                HTTP,                AtLeast(2),   logformat::log_format),
    simple("keepalive_timeout",         SETTINGS,            Range(1, 2),  settings::keepalive_timeout),
    simple("keepalive_requests",        SETTINGS,            Exactly(1),   settings::keepalive_requests),
    simple("client_header_timeout",     SETTINGS,            Exactly(1),   settings::client_header_timeout),
    simple("client_body_timeout",       SETTINGS,            Exactly(1),   settings::client_body_timeout),
    simple("client_max_body_size",      SETTINGS,            Exactly(1),   settings::client_max_body_size),
    simple("send_timeout",              SETTINGS,            Exactly(1),   settings::send_timeout),
    simple("proxy_connect_timeout",     SETTINGS,            Exactly(1),   settings::proxy_connect_timeout),
    simple("proxy_read_timeout",        SETTINGS,            Exactly(1),   settings::proxy_read_timeout),
    simple("proxy_send_timeout",        SETTINGS,            Exactly(1),   settings::proxy_send_timeout),
    simple("proxy_next_upstream",       SETTINGS,            Range(1, 12), settings::proxy_next_upstream),
    simple("proxy_next_upstream_tries", SETTINGS,            Exactly(1),   settings::proxy_next_upstream_tries),
    simple("proxy_set_header",          SETTINGS,            Exactly(2),   settings::proxy_set_header),
    simple("proxy_redirect",            SETTINGS,            Exactly(1),   settings::proxy_redirect),
    simple("proxy_http_version",        SETTINGS,            Exactly(1),   settings::proxy_http_version),
    simple("proxy_via",                 SETTINGS,            Exactly(1),   settings::proxy_via),
    simple("proxy_ignore_client_abort", SETTINGS,            Exactly(1),   settings::proxy_ignore_client_abort),
    simple("add_header",                SETTINGS,            Range(2, 3),  ssl::add_header),
    // gzip, inherited http → server → location (gzip.rs)
    simple("gzip",                      SETTINGS,            Exactly(1),   gzip::gzip),
    simple("gzip_types",                SETTINGS,            AtLeast(1),   gzip::types),
    simple("gzip_min_length",           SETTINGS,            Exactly(1),   gzip::min_length),
    simple("gzip_comp_level",           SETTINGS,            Exactly(1),   gzip::comp_level),
    simple("gzip_vary",                 SETTINGS,            Exactly(1),   gzip::vary),
    simple("gzip_proxied",              SETTINGS,            AtLeast(1),   gzip::proxied),
    simple("gzip_http_version",         SETTINGS,            Exactly(1),   gzip::http_version),
    // TLS, inherited http → server (ssl.rs)
    simple("ssl_certificate",           HTTP | SERVER,       Exactly(1),   ssl::certificate),
    simple("ssl_certificate_key",       HTTP | SERVER,       Exactly(1),   ssl::certificate_key),
    simple("ssl_protocols",             HTTP | SERVER,       AtLeast(1),   ssl::protocols),
    simple("ssl_session_tickets",       HTTP | SERVER,       Exactly(1),   ssl::session_tickets),
    simple("ssl_session_timeout",       HTTP | SERVER,       Exactly(1),   ssl::session_timeout),
    simple("ssl_verify_client",         HTTP | SERVER,       Exactly(1),   ssl::verify_client),
    simple("ssl_client_certificate",    HTTP | SERVER,       Exactly(1),   ssl::client_certificate),
    simple("ssl_handshake_timeout",     HTTP | SERVER,       Exactly(1),   ssl::handshake_timeout),
    simple("ssl_prefer_server_ciphers", HTTP | SERVER,       Exactly(1),   ssl::prefer_server_ciphers),
    simple("allow",                     SETTINGS,            Exactly(1),   settings::access_rule),
    simple("deny",                      SETTINGS,            Exactly(1),   settings::access_rule),
    simple("root",                      SETTINGS,            Exactly(1),   settings::root),
    simple("index",                     SETTINGS,            AtLeast(1),   settings::index),
    block("types",                      SETTINGS,            Exactly(0),   settings::types),
    simple("default_type",              SETTINGS,            Exactly(1),   settings::default_type),
    simple("disable_symlinks",          SETTINGS,            Exactly(1),   settings::disable_symlinks),
    simple("ajp_secret",                SETTINGS | UPSTREAM, Exactly(1),   settings::ajp_secret),
    simple("ajp_packet_size",           SETTINGS | UPSTREAM, Exactly(1),   settings::ajp_packet_size),
    simple("ajp_ping",                  SETTINGS | UPSTREAM, Exactly(1),   settings::ajp_ping),
    simple("ajp_ping_timeout",          SETTINGS | UPSTREAM, Exactly(1),   settings::ajp_ping_timeout),
    // upstream blocks (upstream.rs)
    block("upstream",                   HTTP,                Exactly(1),   upstream::upstream),
    simple("server",                    UPSTREAM,            AtLeast(1),   upstream::server),
    simple("keepalive",                 UPSTREAM,            Exactly(1),   upstream::keepalive),
    simple("keepalive_timeout",         UPSTREAM,            Exactly(1),   upstream::keepalive_timeout),
    simple("keepalive_requests",        UPSTREAM,            Exactly(1),   upstream::keepalive_requests),
    simple("balance",                   UPSTREAM,            Exactly(1),   upstream::balance),
    simple("sticky_route",              UPSTREAM,            Range(0, 1),  upstream::sticky_route),
    simple("sticky_force",              UPSTREAM,            Exactly(1),   upstream::sticky_force),
    simple("sessions_window",           UPSTREAM,            Exactly(1),   upstream::sessions_window),
    simple("drain_idle",                UPSTREAM,            Exactly(1),   upstream::drain_idle),
    simple("health_check",              UPSTREAM,            Any,          upstream::health_check),
    simple("frozen_timeout",            UPSTREAM,            Exactly(1),   upstream::frozen_timeout),
    // server and location blocks (server.rs); `location` in a location says nesting is unsupported
    block("server",                     HTTP,                Exactly(0),   server::server),
    simple("listen",                    SERVER,              AtLeast(1),   server::listen),
    simple("server_name",               SERVER,              AtLeast(1),   server::server_name),
    block("location",                   SERVER | LOCATION,   Range(1, 2),  server::location),
    simple("proxy_pass",                LOCATION,            Exactly(1),   server::proxy_pass),
    simple("return",                    LOCATION,            Range(1, 2),  server::return_),
    simple("status",                    LOCATION,            Range(0, 1),  server::status),
    simple("alias",                     LOCATION,            Exactly(1),   server::alias),
    // client addresses: realip and the PROXY protocol (realip.rs)
    simple("set_real_ip_from",          SETTINGS,            Exactly(1),   realip::set_real_ip_from),
    simple("real_ip_header",            SETTINGS,            Exactly(1),   realip::real_ip_header),
    simple("real_ip_recursive",         SETTINGS,            Exactly(1),   realip::real_ip_recursive),
    simple("proxy_protocol_timeout",    HTTP | SERVER,       Exactly(1),   realip::proxy_protocol_timeout),
    // request and connection limits (limit.rs)
    simple("limit_req_zone",            HTTP,                Range(2, 3),  limit::limit_req_zone),
    simple("limit_req",                 SETTINGS,            Range(1, 3),  limit::limit_req),
    simple("limit_req_status",          SETTINGS,            Exactly(1),   limit::limit_req_status),
    simple("limit_req_log_level",       SETTINGS,            Exactly(1),   limit::limit_req_log_level),
    simple("limit_req_dry_run",         SETTINGS,            Exactly(1),   limit::limit_req_dry_run),
    simple("limit_conn_zone",           HTTP,                Exactly(2),   limit::limit_conn_zone),
    simple("limit_conn",                SETTINGS,            Exactly(2),   limit::limit_conn),
    simple("limit_conn_status",         SETTINGS,            Exactly(1),   limit::limit_conn_status),
    simple("limit_conn_log_level",      SETTINGS,            Exactly(1),   limit::limit_conn_log_level),
    simple("limit_conn_dry_run",        SETTINGS,            Exactly(1),   limit::limit_conn_dry_run),
];

#[cfg(test)]
mod tests {
    use super::super::builder::ctx;
    use super::super::unknown;
    use super::*;
    use std::path::Path;

    #[test]
    fn a_name_has_one_row_per_block() {
        for (i, a) in TABLE.iter().enumerate() {
            assert!(a.ctx != 0, "{} is allowed nowhere", a.name);
            for b in &TABLE[i + 1..] {
                assert!(a.name != b.name || a.ctx & b.ctx == 0, "two rows for \"{}\" in one block", a.name);
            }
        }
    }

    #[test]
    fn nginx_only_names_are_not_pounce_directives() {
        for row in TABLE {
            assert!(unknown::nginx_only(row.name).is_none(), "\"{}\" is in the table and in the list of nginx-only directives", row.name);
        }
    }

    /// The configuration reference (README.md) names every directive of the table, in a table
    /// row's first column or a heading.
    #[test]
    fn every_row_is_documented() {
        let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).expect("README.md");
        let start = readme.find("## Configuration reference").expect("a configuration reference");
        let rest = &readme[start + 3..];
        let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
        let documented: Vec<&str> =
            section.lines().filter_map(|l| if let Some(row) = l.strip_prefix("| ") { row.split(" | ").next() } else { l.strip_prefix("### ") }).collect();
        let word = |text: &str, name: &str| {
            text.match_indices(name).any(|(i, _)| {
                let ident = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
                !ident(text[..i].chars().next_back()) && !ident(text[i + name.len()..].chars().next())
            })
        };
        for row in TABLE {
            assert!(documented.iter().any(|cell| word(cell, row.name)), "\"{}\" is not in README.md's configuration reference", row.name);
        }
    }

    /// Every row, in every block it is allowed in, with its least and most arguments (all
    /// "0"): a configuration or an error other than "not allowed here", never a panic (the
    /// parse functions index `args` as far as their row allows).
    #[test]
    fn rows_take_their_argument_counts() {
        let wrap = |c: u8, d: &str| match c {
            ctx::MAIN => d.to_string(),
            ctx::EVENTS => format!("events {{ {} }}", d),
            ctx::HTTP => format!("http {{ {} }}", d),
            ctx::SERVER => format!("http {{ server {{ {} }} }}", d),
            ctx::LOCATION => format!("http {{ server {{ location / {{ {} }} }} }}", d),
            _ => format!("http {{ upstream u {{ {} }} }}", d),
        };
        for row in TABLE {
            let (min, max) = row.args.bounds();
            for n in [min, max.min(min + 3)] {
                let mut d = std::iter::once(row.name).chain(std::iter::repeat_n("0", n)).collect::<Vec<_>>().join(" ");
                d.push_str(if row.block { " { }" } else { ";" });
                for bit in (0..6).map(|b| 1u8 << b).filter(|b| row.ctx & b != 0) {
                    let text = wrap(bit, &d);
                    let r = super::super::load_text(text.as_bytes(), Path::new("t.conf"), Path::new("/nonexistent"));
                    if let Err(e) = r {
                        assert!(!e.msg.contains("not allowed here"), "{}: {}", text, e);
                    }
                }
            }
        }
    }
}
