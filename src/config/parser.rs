//! Directive tree → `Config`: every directive checked for its context, argument count and
//! types, every reference resolved, every error reported as `FILE:LINE: message`.

use super::lexer::{err, resolve, ConfError, Directive, Pos};
use super::units::{parse_size, parse_time};
use super::*;
use std::net::{SocketAddr, ToSocketAddrs};

/// Directives that set inheritable values, allowed in http, server and location.
const SETTINGS: &[&str] = &[
    "access_log",
    "keepalive_timeout",
    "keepalive_requests",
    "client_header_timeout",
    "client_body_timeout",
    "client_max_body_size",
    "send_timeout",
    "proxy_connect_timeout",
    "proxy_read_timeout",
    "proxy_send_timeout",
    "proxy_next_upstream",
    "proxy_next_upstream_tries",
    "proxy_set_header",
    "proxy_redirect",
    "proxy_http_version",
    "ajp_secret",
    "ajp_packet_size",
    "ajp_ping",
    "ajp_ping_timeout",
    "allow",
    "deny",
    "root",
    "index",
    "types",
    "default_type",
    "disable_symlinks",
    "proxy_via",
];

/// Every directive pounce knows, to tell "unknown" from "not allowed here".
const KNOWN: &[&str] = &[
    "worker_processes",
    "worker_connections",
    "worker_buffers",
    "worker_shutdown_timeout",
    "error_log",
    "pid",
    "events",
    "http",
    "upstream",
    "server",
    "keepalive",
    "listen",
    "server_name",
    "location",
    "proxy_pass",
    "return",
    "balance",
    "sticky_route",
    "sticky_force",
    "health_check",
    "status",
    "alias",
];

fn misplaced<T>(d: &Directive) -> Result<T, ConfError> {
    if KNOWN.contains(&d.name.as_str()) || SETTINGS.contains(&d.name.as_str()) {
        err(&d.pos, format!("\"{}\" directive is not allowed here", d.name))
    } else {
        err(&d.pos, format!("unknown directive \"{}\"", d.name))
    }
}

fn nargs(d: &Directive, min: usize, max: usize) -> Result<(), ConfError> {
    if d.args.len() < min || d.args.len() > max {
        return err(&d.pos, format!("invalid number of arguments in \"{}\" directive", d.name));
    }
    Ok(())
}

fn simple(d: &Directive) -> Result<(), ConfError> {
    if d.block.is_some() {
        return err(&d.pos, format!("directive \"{}\" has no opening \"{{\"", d.name));
    }
    Ok(())
}

fn block(d: &Directive) -> Result<&[Directive], ConfError> {
    match &d.block {
        Some(b) => Ok(b),
        None => err(&d.pos, format!("directive \"{}\" has no opening \"{{\"", d.name)),
    }
}

fn time_arg(d: &Directive, s: &str) -> Result<Duration, ConfError> {
    parse_time(s).map_or_else(|| err(&d.pos, format!("invalid time \"{}\" in \"{}\" directive", s, d.name)), Ok)
}

fn size_arg(d: &Directive, s: &str) -> Result<u64, ConfError> {
    parse_size(s).map_or_else(|| err(&d.pos, format!("invalid size \"{}\" in \"{}\" directive", s, d.name)), Ok)
}

fn on_off(d: &Directive, s: &str) -> Result<bool, ConfError> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => err(&d.pos, format!("invalid value \"{}\" in \"{}\" directive, it must be \"on\" or \"off\"", s, d.name)),
    }
}

/// The `ajp_*` directives, in a location (settings) or an upstream block.
fn ajp_directive(d: &Directive, ajp: &mut AjpConf) -> Result<bool, ConfError> {
    match d.name.as_str() {
        "ajp_secret" => {
            nargs(d, 1, 1)?;
            if d.args[0].is_empty() {
                return err(&d.pos, "\"ajp_secret\" must not be empty");
            }
            ajp.secret = Some(d.args[0].clone());
        }
        "ajp_packet_size" => {
            nargs(d, 1, 1)?;
            let n = size_arg(d, &d.args[0])?;
            if !(8192..=65536).contains(&n) {
                return err(&d.pos, "\"ajp_packet_size\" must be between 8192 and 65536 (and equal Tomcat's packetSize)");
            }
            ajp.packet_size = Some(n as usize);
        }
        "ajp_ping" => {
            nargs(d, 1, 1)?;
            ajp.ping = Some(on_off(d, &d.args[0])?);
        }
        "ajp_ping_timeout" => {
            nargs(d, 1, 1)?;
            let t = time_arg(d, &d.args[0])?;
            if t.is_zero() {
                return err(&d.pos, "\"ajp_ping_timeout\" must be positive");
            }
            ajp.ping_timeout = Some(t);
        }
        _ => return Ok(false),
    }
    Ok(true)
}

fn num_arg(d: &Directive, s: &str) -> Result<u64, ConfError> {
    s.parse::<u64>().or_else(|_| err(&d.pos, format!("invalid number \"{}\" in \"{}\" directive", s, d.name)))
}

struct Builder {
    prefix: PathBuf,
    cfg: Config,
    /// Per upstream name: where it was defined (for duplicate detection).
    upstream_pos: Vec<Pos>,
    /// proxy_pass targets to resolve after all upstream blocks are known.
    pending_proxy: Vec<(usize, usize, String, Pos, bool)>,
    /// listen directives: (addr, server index, default_server, pos)
    listen_decl: Vec<(SocketAddr, usize, bool, Pos)>,
}

pub(super) fn build(tree: Vec<Directive>, path: &Path, prefix: &Path) -> Result<Config, ConfError> {
    let mut b = Builder {
        prefix: prefix.to_path_buf(),
        cfg: Config {
            path: path.to_path_buf(),
            prefix: prefix.to_path_buf(),
            worker_processes: 1,
            worker_connections: 10240,
            worker_buffers: None,
            worker_shutdown_timeout: Duration::from_secs(30),
            error_log: None,
            error_level: log::LevelFilter::Error,
            pid: Some(resolve(prefix, "logs/pounce.pid")),
            http: Http::default(),
        },
        upstream_pos: Vec::new(),
        pending_proxy: Vec::new(),
        listen_decl: Vec::new(),
    };
    let mut http_seen: Option<Pos> = None;
    for d in &tree {
        match d.name.as_str() {
            "worker_processes" => {
                simple(d)?;
                nargs(d, 1, 1)?;
                b.cfg.worker_processes = if d.args[0] == "auto" {
                    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
                } else {
                    match num_arg(d, &d.args[0])? {
                        0 => return err(&d.pos, "\"worker_processes\" must be at least 1"),
                        n if n > 1024 => return err(&d.pos, "\"worker_processes\" is too large (at most 1024)"),
                        n => n as usize,
                    }
                };
            }
            "worker_shutdown_timeout" => {
                simple(d)?;
                nargs(d, 1, 1)?;
                b.cfg.worker_shutdown_timeout = time_arg(d, &d.args[0])?;
            }
            "error_log" => {
                simple(d)?;
                nargs(d, 1, 2)?;
                b.cfg.error_log = match d.args[0].as_str() {
                    "stderr" => None,
                    p => Some(resolve(prefix, p)),
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
            }
            "pid" => {
                simple(d)?;
                nargs(d, 1, 1)?;
                b.cfg.pid = if d.args[0] == "off" { None } else { Some(resolve(prefix, &d.args[0])) };
            }
            "events" => {
                nargs(d, 0, 0)?;
                for e in block(d)? {
                    match e.name.as_str() {
                        "worker_connections" => {
                            simple(e)?;
                            nargs(e, 1, 1)?;
                            let n = num_arg(e, &e.args[0])?;
                            if !(2..=1_000_000).contains(&n) {
                                return err(&e.pos, "\"worker_connections\" must be between 2 and 1000000");
                            }
                            b.cfg.worker_connections = n as usize;
                        }
                        "worker_buffers" => {
                            simple(e)?;
                            nargs(e, 1, 1)?;
                            let n = num_arg(e, &e.args[0])?;
                            if !(16..=100_000_000).contains(&n) {
                                return err(&e.pos, "\"worker_buffers\" must be between 16 and 100000000");
                            }
                            b.cfg.worker_buffers = Some(n as usize);
                        }
                        "use" | "multi_accept" | "accept_mutex" => {}
                        _ => return misplaced(e),
                    }
                }
            }
            "http" => {
                nargs(d, 0, 0)?;
                if http_seen.is_some() {
                    return err(&d.pos, "\"http\" directive is duplicate");
                }
                http_seen = Some(d.pos.clone());
                b.http(block(d)?)?;
            }
            _ => return misplaced(d),
        }
    }
    b.resolve_proxies()?;
    b.collect_listens()?;
    Ok(b.cfg)
}

impl Builder {
    fn http(&mut self, list: &[Directive]) -> Result<(), ConfError> {
        // Upstream blocks first, so proxy_pass may name one defined later in the file.
        for d in list.iter().filter(|d| d.name == "upstream") {
            self.upstream(d)?;
        }
        let mut patch = SettingsPatch::default();
        let mut servers = Vec::new();
        for d in list {
            match d.name.as_str() {
                "upstream" => {}
                "server" => servers.push(d),
                n if SETTINGS.contains(&n) => self.setting(d, &mut patch)?,
                _ => return misplaced(d),
            }
        }
        let http_settings = patch.over(&Settings::default());
        for d in servers {
            self.server(d, &http_settings)?;
        }
        Ok(())
    }

    fn upstream(&mut self, d: &Directive) -> Result<(), ConfError> {
        nargs(d, 1, 1)?;
        let name = d.args[0].clone();
        if let Some(i) = self.cfg.http.upstreams.iter().position(|u| u.name == name) {
            return err(&d.pos, format!("duplicate upstream \"{}\" (first defined at {})", name, self.upstream_pos[i]));
        }
        let mut up = Upstream::new(name, false);
        for e in block(d)? {
            simple(e)?;
            if ajp_directive(e, &mut up.ajp)? {
                continue;
            }
            match e.name.as_str() {
                "server" => {
                    if e.args.is_empty() {
                        return nargs(e, 1, 1);
                    }
                    up.servers.extend(self.peer(e)?);
                }
                "keepalive" => {
                    nargs(e, 1, 1)?;
                    up.keepalive = num_arg(e, &e.args[0])? as usize;
                    if up.keepalive == 0 {
                        return err(&e.pos, "\"keepalive\" must be at least 1");
                    }
                }
                "keepalive_timeout" => {
                    nargs(e, 1, 1)?;
                    up.keepalive_timeout = time_arg(e, &e.args[0])?;
                }
                "balance" => {
                    nargs(e, 1, 1)?;
                    up.balance = match e.args[0].as_str() {
                        "round_robin" => Balance::RoundRobin,
                        "least_conn" => Balance::LeastConn,
                        "by_traffic" => Balance::ByTraffic,
                        m => return err(&e.pos, format!("unknown balancing method \"{}\" (round_robin, least_conn, by_traffic)", m)),
                    };
                }
                "sticky_route" => {
                    nargs(e, 0, 1)?;
                    let cookie = e.args.first().cloned().unwrap_or_else(|| "JSESSIONID".into());
                    let force = up.sticky.as_ref().is_some_and(|s| s.force);
                    up.sticky = Some(Sticky { path_param: cookie.to_ascii_lowercase(), cookie, force });
                }
                "sticky_force" => {
                    nargs(e, 1, 1)?;
                    let on = on_off(e, &e.args[0])?;
                    match up.sticky.as_mut() {
                        Some(s) => s.force = on,
                        None => return err(&e.pos, "\"sticky_force\" needs \"sticky_route\" before it"),
                    }
                }
                "health_check" => {
                    let mut hc = HealthCheck::default();
                    for a in &e.args {
                        let (k, v) = a.split_once('=').unwrap_or((a.as_str(), ""));
                        match k {
                            "interval" => hc.interval = time_arg(e, v)?,
                            "timeout" => hc.timeout = time_arg(e, v)?,
                            "fails" => hc.fails = (num_arg(e, v)? as u32).max(1),
                            "passes" => hc.passes = (num_arg(e, v)? as u32).max(1),
                            "uri" if v.starts_with('/') => hc.uri = v.to_string(),
                            _ => return err(&e.pos, format!("invalid parameter \"{}\"", a)),
                        }
                    }
                    if hc.interval.is_zero() || hc.timeout.is_zero() {
                        return err(&e.pos, "health_check interval and timeout must be positive");
                    }
                    up.health_check = Some(hc);
                }
                "keepalive_requests" => {
                    nargs(e, 1, 1)?;
                    up.keepalive_requests = num_arg(e, &e.args[0])?.min(u32::MAX as u64) as u32;
                }
                _ => return misplaced(e),
            }
        }
        if up.servers.is_empty() {
            return err(&d.pos, format!("no servers are inside upstream \"{}\"", up.name));
        }
        if up.servers.len() > MAX_SERVERS {
            return err(&d.pos, format!("too many servers in upstream \"{}\" (at most {})", up.name, MAX_SERVERS));
        }
        self.cfg.http.upstreams.push(up);
        self.upstream_pos.push(d.pos.clone());
        Ok(())
    }

    /// `server HOST:PORT [weight=N] [max_fails=N] [fail_timeout=TIME] [backup] [down]`:
    /// one peer per address the host resolves to, as nginx does.
    fn peer(&self, d: &Directive) -> Result<Vec<Peer>, ConfError> {
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
        Ok(addrs.into_iter().map(|addr| Peer { addr, ..p.clone() }).collect())
    }

    fn server(&mut self, d: &Directive, http: &Settings) -> Result<(), ConfError> {
        nargs(d, 0, 0)?;
        let idx = self.cfg.http.servers.len();
        let mut patch = SettingsPatch::default();
        let mut names = Vec::new();
        let mut locs = Vec::new();
        let mut listens: Vec<SocketAddr> = Vec::new();
        for e in block(d)? {
            match e.name.as_str() {
                "listen" => {
                    simple(e)?;
                    if e.args.is_empty() {
                        return nargs(e, 1, 1);
                    }
                    let addr = parse_listen(e, &e.args[0])?;
                    let mut default = false;
                    for flag in &e.args[1..] {
                        match flag.as_str() {
                            "reuseport" => {}
                            "default_server" | "default" => default = true,
                            _ => return err(&e.pos, format!("invalid parameter \"{}\"", flag)),
                        }
                    }
                    if listens.contains(&addr) {
                        return err(&e.pos, format!("duplicate listen {}", addr));
                    }
                    listens.push(addr);
                    self.listen_decl.push((addr, idx, default, e.pos.clone()));
                }
                "server_name" => {
                    simple(e)?;
                    if e.args.is_empty() {
                        return nargs(e, 1, 1);
                    }
                    names.extend(e.args.iter().map(|n| n.to_ascii_lowercase()));
                }
                "location" => locs.push(e),
                n if SETTINGS.contains(&n) => self.setting(e, &mut patch)?,
                _ => return misplaced(e),
            }
        }
        if listens.is_empty() {
            let addr: SocketAddr = ([0, 0, 0, 0], 80).into();
            self.listen_decl.push((addr, idx, false, d.pos.clone()));
        }
        let settings = patch.over(http);
        let mut locations: Vec<Location> = Vec::new();
        for e in locs {
            let loc = self.location(e, idx, locations.len(), &settings)?;
            if locations.iter().any(|l| l.path == loc.path && (l.kind == Match::Exact) == (loc.kind == Match::Exact)) {
                return err(&e.pos, format!("duplicate location \"{}\"", loc.path));
            }
            locations.push(loc);
        }
        self.cfg.http.servers.push(Server { names, locations, settings });
        Ok(())
    }

    fn location(&mut self, d: &Directive, server: usize, index: usize, parent: &Settings) -> Result<Location, ConfError> {
        let (kind, path) = match d.args.as_slice() {
            [p] => (Match::Prefix, p.clone()),
            [m, p] if m == "=" => (Match::Exact, p.clone()),
            [m, p] if m == "^~" => (Match::PrefixStop, p.clone()),
            [m, _] if m == "~" || m == "~*" => return err(&d.pos, "regular expression locations are not supported"),
            _ => return err(&d.pos, "invalid number of arguments in \"location\" directive"),
        };
        if !path.starts_with('/') {
            return err(&d.pos, format!("location \"{}\" must start with \"/\"", path));
        }
        let mut patch = SettingsPatch::default();
        let mut handler = Handler::None;
        let mut ajp = parent.ajp.clone();
        let mut alias: Option<PathBuf> = None;
        for e in block(d)? {
            match e.name.as_str() {
                "proxy_pass" => {
                    simple(e)?;
                    nargs(e, 1, 1)?;
                    if handler != Handler::None {
                        return err(&e.pos, "\"proxy_pass\" directive is duplicate");
                    }
                    let (target, ajp) = match (e.args[0].strip_prefix("http://"), e.args[0].strip_prefix("ajp://")) {
                        (Some(t), _) => (t, false),
                        (_, Some(t)) => (t, true),
                        _ => return err(&e.pos, format!("invalid URL prefix in \"{}\" (use http:// or ajp://)", e.args[0])),
                    };
                    if target.contains('/') {
                        return err(&e.pos, "a URI part in \"proxy_pass\" is not supported; name the upstream or host:port only");
                    }
                    self.pending_proxy.push((server, index, target.to_string(), e.pos.clone(), ajp));
                    handler = Handler::Proxy { upstream: usize::MAX, backend: BackendConf::Http };
                }
                "status" => {
                    simple(e)?;
                    nargs(e, 0, 0)?;
                    if handler != Handler::None {
                        return err(&e.pos, "\"status\" conflicts with another content handler in this location");
                    }
                    handler = Handler::Status;
                }
                "return" => {
                    simple(e)?;
                    nargs(e, 1, 2)?;
                    if handler != Handler::None {
                        return err(&e.pos, "\"return\" conflicts with another content handler in this location");
                    }
                    let code = match e.args[0].parse::<u16>() {
                        Ok(c) if (100..=999).contains(&c) => c,
                        _ => return err(&e.pos, format!("invalid return code \"{}\"", e.args[0])),
                    };
                    let text = match e.args.get(1) {
                        Some(t) => Some(template(e, t)?),
                        None => None,
                    };
                    handler = Handler::Return { code, text };
                }
                "alias" => {
                    simple(e)?;
                    nargs(e, 1, 1)?;
                    if alias.is_some() {
                        return err(&e.pos, "\"alias\" directive is duplicate");
                    }
                    alias = Some(resolve(&self.prefix, &e.args[0]));
                }
                "location" => return err(&e.pos, "nested locations are not supported"),
                n if n.starts_with("ajp_") && ajp_directive(e, &mut ajp)? => {}
                n if SETTINGS.contains(&n) => self.setting(e, &mut patch)?,
                _ => return misplaced(e),
            }
        }
        let mut settings = patch.over(parent);
        settings.ajp = ajp;
        if alias.is_some() && patch.root.is_some() {
            return err(&d.pos, "\"alias\" and \"root\" in the same location");
        }
        if handler == Handler::None && (alias.is_some() || settings.root.is_some()) {
            handler = Handler::Static { alias };
        } else if alias.is_some() {
            return err(&d.pos, "\"alias\" conflicts with another content handler in this location");
        }
        Ok(Location { kind, path, handler, settings })
    }

    fn setting(&mut self, d: &Directive, p: &mut SettingsPatch) -> Result<(), ConfError> {
        if d.name != "types" {
            simple(d)?;
        }
        let a = &d.args;
        match d.name.as_str() {
            "access_log" => {
                nargs(d, 1, 2)?;
                p.access_log = Some(if a[0] == "off" {
                    None
                } else {
                    if let Some(fmt) = a.get(1) {
                        if fmt != "combined" && fmt != "upstream" {
                            return err(&d.pos, format!("unknown log format \"{}\" (pounce writes \"combined\" with upstream fields)", fmt));
                        }
                    }
                    let path = resolve(&self.prefix, &a[0]);
                    let logs = &mut self.cfg.http.access_logs;
                    Some(logs.iter().position(|l| *l == path).unwrap_or_else(|| {
                        logs.push(path);
                        logs.len() - 1
                    }))
                });
            }
            "keepalive_timeout" => {
                nargs(d, 1, 2)?;
                p.keepalive_timeout = Some(time_arg(d, &a[0])?);
            }
            "keepalive_requests" => {
                nargs(d, 1, 1)?;
                p.keepalive_requests = Some(num_arg(d, &a[0])?.min(u32::MAX as u64) as u32);
            }
            "client_header_timeout" => {
                nargs(d, 1, 1)?;
                p.client_header_timeout = Some(time_arg(d, &a[0])?);
            }
            "client_body_timeout" => {
                nargs(d, 1, 1)?;
                p.client_body_timeout = Some(time_arg(d, &a[0])?);
            }
            "client_max_body_size" => {
                nargs(d, 1, 1)?;
                // 0 disables the check, as in nginx.
                p.client_max_body_size = Some(match size_arg(d, &a[0])? {
                    0 => u64::MAX,
                    n => n,
                });
            }
            "send_timeout" => {
                nargs(d, 1, 1)?;
                p.send_timeout = Some(time_arg(d, &a[0])?);
            }
            "proxy_connect_timeout" => {
                nargs(d, 1, 1)?;
                p.proxy_connect_timeout = Some(time_arg(d, &a[0])?);
            }
            "proxy_read_timeout" => {
                nargs(d, 1, 1)?;
                p.proxy_read_timeout = Some(time_arg(d, &a[0])?);
            }
            "proxy_send_timeout" => {
                nargs(d, 1, 1)?;
                p.proxy_send_timeout = Some(time_arg(d, &a[0])?);
            }
            "proxy_next_upstream" => {
                nargs(d, 1, 12)?;
                let mut bits = 0;
                for w in a {
                    bits |= match w.as_str() {
                        "error" => next::ERROR,
                        "timeout" => next::TIMEOUT,
                        "invalid_header" => next::INVALID_HEADER,
                        "http_500" => next::HTTP_500,
                        "http_502" => next::HTTP_502,
                        "http_503" => next::HTTP_503,
                        "http_504" => next::HTTP_504,
                        "http_403" => next::HTTP_403,
                        "http_404" => next::HTTP_404,
                        "http_429" => next::HTTP_429,
                        "non_idempotent" => next::NON_IDEMPOTENT,
                        "off" if a.len() == 1 => next::OFF,
                        _ => return err(&d.pos, format!("invalid value \"{}\" in \"proxy_next_upstream\" directive", w)),
                    };
                }
                p.proxy_next_upstream = Some(bits);
            }
            "proxy_next_upstream_tries" => {
                nargs(d, 1, 1)?;
                p.proxy_next_upstream_tries = Some(num_arg(d, &a[0])?.min(u32::MAX as u64) as u32);
            }
            "proxy_set_header" => {
                nargs(d, 2, 2)?;
                if !a[0].bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_') || a[0].is_empty() {
                    return err(&d.pos, format!("invalid header name \"{}\"", a[0]));
                }
                let value = template(d, &a[1])?;
                let list = p.proxy_set_header.get_or_insert_with(Vec::new);
                list.retain(|h| !h.name.eq_ignore_ascii_case(&a[0]));
                list.push(HeaderSet { name: a[0].clone(), value });
            }
            "proxy_redirect" => {
                nargs(d, 1, 1)?;
                p.proxy_redirect = Some(match a[0].as_str() {
                    "default" => true,
                    "off" => false,
                    _ => return err(&d.pos, "\"proxy_redirect\" takes \"default\" or \"off\""),
                });
            }
            n if n.starts_with("ajp_") => {
                let mut ajp = p.ajp.clone().unwrap_or_default();
                ajp_directive(d, &mut ajp)?;
                p.ajp = Some(ajp);
            }
            "root" => {
                nargs(d, 1, 1)?;
                p.root = Some(Some(resolve(&self.prefix, &d.args[0])));
            }
            "index" => {
                if a.is_empty() {
                    return nargs(d, 1, 1);
                }
                p.index = Some(a.clone());
            }
            "default_type" => {
                nargs(d, 1, 1)?;
                p.default_type = Some(a[0].clone());
            }
            "disable_symlinks" => {
                nargs(d, 1, 1)?;
                p.disable_symlinks = Some(on_off(d, &a[0])?);
            }
            "proxy_via" => {
                nargs(d, 1, 1)?;
                p.proxy_via = Some(match a[0].as_str() {
                    "off" => Via::Off,
                    "on" => Via::On,
                    "full" => Via::Full,
                    _ => return err(&d.pos, "\"proxy_via\" takes \"off\", \"on\" or \"full\""),
                });
            }
            "types" => {
                nargs(d, 0, 0)?;
                let list = p.types.get_or_insert_with(Vec::new);
                for t in block(d)? {
                    simple(t)?;
                    if t.args.is_empty() {
                        return err(&t.pos, format!("no extensions for type \"{}\"", t.name));
                    }
                    for ext in &t.args {
                        list.push((ext.clone(), t.name.clone()));
                    }
                }
                return Ok(());
            }
            "allow" | "deny" => {
                nargs(d, 1, 1)?;
                let rule = parse_rule(d, d.name == "allow")?;
                p.access.get_or_insert_with(Vec::new).push(rule);
            }
            "proxy_http_version" => {
                // pounce always speaks HTTP/1.1 to backends; accepted for nginx configs.
                nargs(d, 1, 1)?;
                if a[0] != "1.1" && a[0] != "1.0" {
                    return err(&d.pos, format!("invalid value \"{}\" in \"proxy_http_version\" directive", a[0]));
                }
            }
            _ => return misplaced(d),
        }
        Ok(())
    }

    /// Turns every `proxy_pass` target into an upstream index, creating implicit upstreams
    /// for `host:port` targets (shared when two locations name the same one).
    fn resolve_proxies(&mut self) -> Result<(), ConfError> {
        for (server, loc, target, pos, ajp) in std::mem::take(&mut self.pending_proxy) {
            let idx = match self.cfg.http.upstreams.iter().position(|u| u.name == target && !u.implicit) {
                Some(i) => i,
                None => match self.cfg.http.upstreams.iter().position(|u| u.implicit && u.name == target) {
                    Some(i) => i,
                    None => {
                        let d = Directive { name: "proxy_pass".into(), args: vec![target.clone()], pos: pos.clone(), block: None };
                        let addrs = resolve_addr(&d, &target, Some(if ajp { 8009 } else { 80 })).map_err(|_| ConfError {
                            pos: Some(pos.clone()),
                            msg: format!("unknown upstream \"{}\": no upstream block has that name and it is not a host[:port]", target),
                        })?;
                        let servers = addrs.into_iter().map(|addr| Peer::new(addr, target.clone())).collect();
                        let mut up = Upstream::new(target.clone(), true);
                        up.servers = servers;
                        self.cfg.http.upstreams.push(up);
                        self.cfg.http.upstreams.len() - 1
                    }
                },
            };
            let up = &mut self.cfg.http.upstreams[idx];
            let location = &mut self.cfg.http.servers[server].locations[loc];
            let backend = if ajp { BackendConf::Ajp(location.settings.ajp.resolve(&up.ajp)) } else { BackendConf::Http };
            if ajp {
                up.protocol = BackendProtocol::Ajp;
            }
            location.handler = Handler::Proxy { upstream: idx, backend };
        }
        Ok(())
    }

    fn collect_listens(&mut self) -> Result<(), ConfError> {
        let mut listens: Vec<Listen> = Vec::new();
        let mut default_pos: Vec<Option<Pos>> = Vec::new();
        for (addr, server, default, pos) in std::mem::take(&mut self.listen_decl) {
            let i = match listens.iter().position(|l| l.addr == addr) {
                Some(i) => i,
                None => {
                    listens.push(Listen { addr, servers: Vec::new(), default_server: server });
                    default_pos.push(None);
                    listens.len() - 1
                }
            };
            listens[i].servers.push(server);
            if default {
                if let Some(first) = &default_pos[i] {
                    return err(&pos, format!("a duplicate default server for {} (first at {})", addr, first));
                }
                default_pos[i] = Some(pos);
                listens[i].default_server = server;
            }
        }
        self.cfg.http.listens = listens;
        Ok(())
    }
}

/// `all`, `ADDR` or `ADDR/PREFIX` (IPv4 or IPv6).
fn parse_rule(d: &Directive, allow: bool) -> Result<AccessRule, ConfError> {
    let a = &d.args[0];
    if a == "all" {
        return Ok(AccessRule { allow, net: std::net::Ipv4Addr::UNSPECIFIED.into(), prefix: 0 });
    }
    let (ip, prefix) = match a.split_once('/') {
        Some((ip, p)) => (ip, Some(p)),
        None => (a.as_str(), None),
    };
    let net: std::net::IpAddr = ip.parse().or_else(|_| err(&d.pos, format!("invalid address \"{}\" in \"{}\"", a, d.name)))?;
    let max = if net.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => match p.parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => return err(&d.pos, format!("invalid prefix in \"{}\"", a)),
        },
    };
    Ok(AccessRule { allow, net, prefix })
}

/// `[ADDR:]PORT`, `ADDR`, `[::1]:PORT`, `*:PORT`.
fn parse_listen(d: &Directive, s: &str) -> Result<SocketAddr, ConfError> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(([0, 0, 0, 0], port).into());
    }
    if let Some(port) = s.strip_prefix("*:") {
        if let Ok(port) = port.parse::<u16>() {
            return Ok(([0, 0, 0, 0], port).into());
        }
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let addrs = resolve_addr(d, s, Some(80))?;
    Ok(addrs[0])
}

/// Resolves `host[:port]` (once, at load time); `default_port` when the port may be left out.
fn resolve_addr(d: &Directive, s: &str, default_port: Option<u16>) -> Result<Vec<SocketAddr>, ConfError> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(vec![a]);
    }
    let has_port = s.rsplit_once(':').is_some_and(|(h, p)| !h.ends_with(':') && p.parse::<u16>().is_ok());
    let with_port = match (has_port, default_port) {
        (true, _) => s.to_string(),
        (false, Some(p)) => format!("{}:{}", s, p),
        (false, None) => return err(&d.pos, format!("no port in \"{}\"", s)),
    };
    // The fuzzer must not wait on DNS for every random host name it makes up.
    if cfg!(fuzzing) && !with_port.starts_with("localhost:") {
        return err(&d.pos, format!("host not found in \"{}\"", s));
    }
    match with_port.to_socket_addrs() {
        Ok(it) => {
            let v: Vec<SocketAddr> = it.collect();
            if v.is_empty() {
                err(&d.pos, format!("host not found in \"{}\"", s))
            } else {
                Ok(v)
            }
        }
        Err(_) => err(&d.pos, format!("host not found in \"{}\"", s)),
    }
}

/// Splits a `proxy_set_header` value into literal text and `$variables` (`${name}` too).
fn template(d: &Directive, s: &str) -> Result<Vec<Part>, ConfError> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            let start = i;
            while i < b.len() && b[i] != b'$' {
                i += 1;
            }
            lit.push_str(&s[start..i]);
            continue;
        }
        i += 1;
        let (name, next) = if b.get(i) == Some(&b'{') {
            let end = s[i..].find('}').map_or_else(|| err(&d.pos, format!("unclosed variable in \"{}\"", s)), |e| Ok(i + e))?;
            (&s[i + 1..end], end + 1)
        } else {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            (&s[start..i], i)
        };
        let var = Var::by_name(name).map_or_else(|| err(&d.pos, format!("unknown \"{}\" variable", name)), Ok)?;
        if !lit.is_empty() {
            parts.push(Part::Lit(std::mem::take(&mut lit)));
        }
        parts.push(Part::Var(var));
        i = next;
    }
    if !lit.is_empty() {
        parts.push(Part::Lit(lit));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> Result<Config, ConfError> {
        let dir = std::env::temp_dir().join(format!("pounce-conf-{}-{:?}", std::process::id(), std::thread::current().id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("t.conf");
        std::fs::write(&path, text).expect("write");
        let r = super::super::load(&path, &dir);
        let _ = std::fs::remove_dir_all(&dir);
        r.map_err(|mut e| {
            if let Some(p) = &mut e.pos {
                p.file = "t.conf".into();
            }
            e
        })
    }

    #[test]
    fn full_example() {
        let c = load_str(
            "worker_processes 2;\nhttp {\n keepalive_timeout 5s;\n upstream b { server 127.0.0.1:81 weight=5 max_fails=3 fail_timeout=2s; server 127.0.0.1:82 backup; keepalive 8; }\n server { listen 127.0.0.1:8080; server_name A.example; client_max_body_size 2m;\n location / { proxy_pass http://b; proxy_read_timeout 3s; }\n location = /x { return 204; }\n location /h { proxy_pass http://127.0.0.1:9; }\n }\n}\n",
        )
        .expect("valid");
        assert_eq!(c.worker_processes, 2);
        let s = &c.http.servers[0];
        assert_eq!(s.names, vec!["a.example"]);
        assert_eq!(s.locations[0].handler, Handler::Proxy { upstream: 0, backend: BackendConf::Http });
        assert_eq!(s.locations[0].settings.proxy_read_timeout, Duration::from_secs(3));
        assert_eq!(s.locations[0].settings.keepalive_timeout, Duration::from_secs(5));
        assert_eq!(s.locations[0].settings.client_max_body_size, 2 << 20);
        assert_eq!(s.locations[1].kind, Match::Exact);
        assert_eq!(s.locations[2].handler, Handler::Proxy { upstream: 1, backend: BackendConf::Http });
        let up = &c.http.upstreams[0];
        assert_eq!((up.servers[0].weight, up.servers[0].max_fails, up.keepalive), (5, 3, 8));
        assert!(up.servers[1].backup);
        assert!(c.http.upstreams[1].implicit);
        assert_eq!(c.http.listens.len(), 1);
    }

    #[test]
    fn errors_name_file_and_line() {
        let cases = [
            ("http {\n  bogus 1;\n}\n", "t.conf:2: unknown directive \"bogus\""),
            ("http {\n server {\n  listen 80;\n  listen 80;\n }\n}\n", "t.conf:4: duplicate listen 0.0.0.0:80"),
            (
                "http {\n server {\n  location / {\n   proxy_pass http://nosuch_upstream_xyz;\n  }\n }\n}\n",
                "t.conf:4: unknown upstream \"nosuch_upstream_xyz\"",
            ),
            ("http {\n keepalive_timeout 5x;\n}\n", "t.conf:2: invalid time \"5x\" in \"keepalive_timeout\" directive"),
            ("http {\n upstream u {\n  server 127.0.0.1:1 weight=abc;\n }\n}\n", "t.conf:3: invalid number \"abc\""),
            ("http {\n send_timeout;\n}\n", "t.conf:2: invalid number of arguments in \"send_timeout\" directive"),
            ("listen 80;\n", "t.conf:1: \"listen\" directive is not allowed here"),
            ("http {\n upstream u { }\n}\n", "t.conf:2: no servers are inside upstream \"u\""),
            ("http {\n client_max_body_size 1q;\n}\n", "t.conf:2: invalid size \"1q\""),
            ("events {\n worker_buffers 8;\n}\nhttp { }\n", "t.conf:2: \"worker_buffers\" must be between 16 and 100000000"),
        ];
        for (text, want) in cases {
            let got = load_str(text).expect_err(text).to_string();
            assert!(got.starts_with(want), "for {:?}: got {:?}, want {:?}", text, got, want);
        }
    }

    #[test]
    fn access_rules() {
        let c =
            load_str("http {\n server {\n  listen 127.0.0.1:1;\n  location /s { status; allow 127.0.0.1; allow 10.0.0.0/8; allow ::1; deny all; }\n }\n}\n")
                .expect("valid");
        let loc = &c.http.servers[0].locations[0];
        assert_eq!(loc.handler, Handler::Status);
        let ok = |ip: &str| access_allowed(&loc.settings.access, ip.parse().expect("ip"));
        assert!(ok("127.0.0.1") && ok("10.2.3.4") && ok("::1") && ok("::ffff:127.0.0.1"));
        assert!(!ok("127.0.0.2") && !ok("11.0.0.1") && !ok("::2"));
        assert!(load_str("http { server { location / { deny 1.2.3.4/33; } } }").is_err());
    }

    #[test]
    fn templates() {
        let d = Directive { name: "x".into(), args: vec![], pos: Pos { file: "f".into(), line: 1 }, block: None };
        assert_eq!(
            template(&d, "a$host:${server_port}b").expect("ok"),
            vec![Part::Lit("a".into()), Part::Var(Var::Host), Part::Lit(":".into()), Part::Var(Var::ServerPort), Part::Lit("b".into())]
        );
        assert!(template(&d, "$nope").is_err());
    }
}
