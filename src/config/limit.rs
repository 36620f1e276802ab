//! `limit_req_zone`, `limit_req`, `limit_conn_zone`, `limit_conn` and their `_status`,
//! `_log_level` and `_dry_run` settings, as nginx's limit_req and limit_conn modules read
//! them. Zones are http-level and read before every other http directive, so a `limit_req`
//! may name a zone written further down; one name space holds both kinds (nginx's shared
//! memory zones).

use super::builder::{Builder, Scope};
use super::lexer::{err, ConfError, Directive};
use super::values::{num_arg, on_off};

type Done = Result<(), ConfError>;

/// nginx's smallest zone: 8 pages.
pub const MIN_ZONE_SIZE: u64 = 8 * 4096;
/// Bytes a `limit_req` state is counted at (nginx's on 64-bit platforms).
pub const REQ_STATE_BYTES: u64 = 128;
/// Bytes a `limit_conn` state is counted at (nginx's on 64-bit platforms).
pub const CONN_STATE_BYTES: u64 = 64;
/// `limit_req` (and `limit_conn`) directives one level may have.
pub const MAX_LIMITS: usize = 8;

/// A piece of a zone's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    /// `$binary_remote_addr`: the client address, 4 or 16 bytes.
    BinaryRemoteAddr,
    /// `$remote_addr`: the client address as text.
    RemoteAddr,
    /// `$server_name`: the server block's first name.
    ServerName,
    Lit(String),
}

/// A zone's kind and what it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneKind {
    /// `limit_req_zone`: the rate in thousandths of a request per second (nginx's `rate`).
    Req { rate: u64 },
    /// `limit_conn_zone`.
    Conn,
}

/// A `limit_req_zone` or `limit_conn_zone`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitZone {
    pub name: String,
    pub kind: ZoneKind,
    /// The key as written (a reload keeps a zone's state when its key and size are the same).
    pub key_text: String,
    pub key: Vec<KeyPart>,
    pub size: u64,
}

impl LimitZone {
    /// The states the zone holds (its size over nginx's state size).
    pub fn capacity(&self) -> usize {
        let per = if matches!(self.kind, ZoneKind::Req { .. }) { REQ_STATE_BYTES } else { CONN_STATE_BYTES };
        (self.size / per) as usize
    }
}

/// `limit_req zone=NAME [burst=N] [nodelay | delay=N]`, in thousandths as nginx keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitReq {
    /// Index in `Http::limit_zones`.
    pub zone: usize,
    pub burst: u64,
    /// Excess up to which a request is not delayed (`nodelay`: every excess).
    pub delay: u64,
}

/// `limit_conn NAME N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitConn {
    pub zone: usize,
    pub conn: u32,
}

/// `limit_req_log_level` / `limit_conn_log_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LimitLogLevel {
    Info,
    Notice,
    Warn,
    Error,
}

impl LimitLogLevel {
    /// Delays are logged one level lower than refusals (nginx: `limit_log_level + 1`).
    pub fn lower(self) -> LimitLogLevel {
        match self {
            LimitLogLevel::Info | LimitLogLevel::Notice => LimitLogLevel::Info,
            LimitLogLevel::Warn => LimitLogLevel::Notice,
            LimitLogLevel::Error => LimitLogLevel::Warn,
        }
    }

    /// pounce's logger has no notice: it goes with info (as in `error_log`).
    pub fn level(self) -> log::Level {
        match self {
            LimitLogLevel::Info | LimitLogLevel::Notice => log::Level::Info,
            LimitLogLevel::Warn => log::Level::Warn,
            LimitLogLevel::Error => log::Level::Error,
        }
    }
}

fn key(d: &Directive, text: &str) -> Result<Vec<KeyPart>, ConfError> {
    let mut parts = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let Some(at) = rest.find('$') else {
            parts.push(KeyPart::Lit(rest.to_string()));
            break;
        };
        if at > 0 {
            parts.push(KeyPart::Lit(rest[..at].to_string()));
        }
        let var = &rest[at + 1..];
        let var = var.strip_prefix('{').map_or(var, |v| v);
        let len = var.bytes().take_while(|c| c.is_ascii_alphanumeric() || *c == b'_').count();
        let name = &var[..len];
        parts.push(match name {
            "binary_remote_addr" => KeyPart::BinaryRemoteAddr,
            "remote_addr" => KeyPart::RemoteAddr,
            "server_name" => KeyPart::ServerName,
            _ => {
                return err(
                    &d.pos,
                    format!("unsupported variable \"${}\" in \"{}\" key (pounce has $binary_remote_addr, $remote_addr, $server_name)", name, d.name),
                )
            }
        });
        let braced = rest[at + 1..].starts_with('{');
        let after = &var[len..];
        rest = if braced {
            match after.strip_prefix('}') {
                Some(r) => r,
                None => return err(&d.pos, format!("the closing bracket in \"{}\" variable is missing", name)),
            }
        } else {
            after
        };
    }
    Ok(parts)
}

/// `zone=NAME:SIZE`.
fn zone_param(d: &Directive, v: &str) -> Result<(String, u64), ConfError> {
    let Some((name, size)) = v.split_once(':').filter(|(n, _)| !n.is_empty()) else {
        return err(&d.pos, format!("invalid zone size \"zone={}\"", v));
    };
    let Some(size) = super::units::parse_size(size) else {
        return err(&d.pos, format!("invalid zone size \"zone={}\"", v));
    };
    if size < MIN_ZONE_SIZE {
        return err(&d.pos, format!("zone \"{}\" is too small (at least {} bytes: 32k)", name, MIN_ZONE_SIZE));
    }
    Ok((name.to_string(), size))
}

/// `rate=Nr/s` or `rate=Nr/m`, in thousandths of a request per second.
fn rate_param(d: &Directive, v: &str) -> Result<u64, ConfError> {
    let (n, scale) = match (v.strip_suffix("r/s"), v.strip_suffix("r/m")) {
        (Some(n), _) => (n, 1),
        (_, Some(n)) => (n, 60),
        _ => (v, 1),
    };
    match n.parse::<u64>() {
        Ok(n) if n > 0 && n <= 1_000_000_000 => Ok((n * 1000 / scale).max(1)),
        _ => err(&d.pos, format!("invalid rate \"rate={}\"", v)),
    }
}

fn add_zone(b: &mut Builder, d: &Directive, z: LimitZone) -> Done {
    if let Some(old) = b.cfg.http.limit_zones.iter().find(|o| o.name == z.name) {
        return err(&d.pos, format!("{} \"{}\" is already bound to key \"{}\"", d.name, z.name, old.key_text));
    }
    b.cfg.http.limit_zones.push(z);
    Ok(())
}

/// `limit_req_zone KEY zone=NAME:SIZE rate=RATE;`
pub(super) fn limit_req_zone(b: &mut Builder, d: &Directive, _: &mut Scope) -> Done {
    let key_parts = key(d, &d.args[0])?;
    let (mut zone, mut rate) = (None, None);
    for a in &d.args[1..] {
        if let Some(v) = a.strip_prefix("zone=") {
            zone = Some(zone_param(d, v)?);
        } else if let Some(v) = a.strip_prefix("rate=") {
            rate = Some(rate_param(d, v)?);
        } else {
            return err(&d.pos, format!("invalid parameter \"{}\"", a));
        }
    }
    let Some((name, size)) = zone else { return err(&d.pos, "\"limit_req_zone\" must have \"zone\" parameter") };
    let kind = ZoneKind::Req { rate: rate.unwrap_or(1000) };
    add_zone(b, d, LimitZone { name, kind, key_text: d.args[0].clone(), key: key_parts, size })
}

/// `limit_conn_zone KEY zone=NAME:SIZE;`
pub(super) fn limit_conn_zone(b: &mut Builder, d: &Directive, _: &mut Scope) -> Done {
    let key_parts = key(d, &d.args[0])?;
    let Some(v) = d.args[1].strip_prefix("zone=") else { return err(&d.pos, format!("invalid parameter \"{}\"", d.args[1])) };
    let (name, size) = zone_param(d, v)?;
    add_zone(b, d, LimitZone { name, kind: ZoneKind::Conn, key_text: d.args[0].clone(), key: key_parts, size })
}

/// The zone named `name` of the kind `req` says, or the error.
fn find_zone(b: &Builder, d: &Directive, name: &str, req: bool) -> Result<usize, ConfError> {
    let what = if req { "limit_req_zone" } else { "limit_conn_zone" };
    match b.cfg.http.limit_zones.iter().position(|z| z.name == name) {
        Some(i) if matches!(b.cfg.http.limit_zones[i].kind, ZoneKind::Req { .. }) == req => Ok(i),
        _ => err(&d.pos, format!("unknown {} \"{}\"", what, name)),
    }
}

fn positive(d: &Directive, what: &str, v: &str) -> Result<u64, ConfError> {
    match v.parse::<u64>() {
        Ok(n) if n > 0 && n <= 1_000_000_000 => Ok(n),
        _ => err(&d.pos, format!("invalid {} value \"{}={}\"", what, what, v)),
    }
}

/// `limit_req zone=NAME [burst=N] [nodelay | delay=N];`
pub(super) fn limit_req(b: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    let (mut zone, mut burst, mut delay) = (None, 0, 0);
    for a in &d.args {
        if let Some(v) = a.strip_prefix("zone=") {
            zone = Some(find_zone(b, d, v, true)?);
        } else if let Some(v) = a.strip_prefix("burst=") {
            burst = positive(d, "burst", v)? * 1000;
        } else if let Some(v) = a.strip_prefix("delay=") {
            delay = positive(d, "delay", v)? * 1000;
        } else if a == "nodelay" {
            delay = u64::MAX;
        } else {
            return err(&d.pos, format!("invalid parameter \"{}\"", a));
        }
    }
    let Some(zone) = zone else { return err(&d.pos, "\"limit_req\" must have \"zone\" parameter") };
    let list = s.patch(d)?.limit_req.get_or_insert_with(Vec::new);
    if list.iter().any(|l| l.zone == zone) {
        return err(&d.pos, "\"limit_req\" directive is duplicate");
    }
    if list.len() == MAX_LIMITS {
        return err(&d.pos, format!("too many \"limit_req\" directives in one block (at most {})", MAX_LIMITS));
    }
    list.push(LimitReq { zone, burst, delay });
    Ok(())
}

/// `limit_conn NAME N;`
pub(super) fn limit_conn(b: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    let zone = find_zone(b, d, &d.args[0], false)?;
    let n = num_arg(d, &d.args[1])?;
    if n == 0 || n > 65535 {
        return err(&d.pos, format!("connection limit must be between 1 and 65535, not \"{}\"", d.args[1]));
    }
    let list = s.patch(d)?.limit_conn.get_or_insert_with(Vec::new);
    if list.iter().any(|l| l.zone == zone) {
        return err(&d.pos, "\"limit_conn\" directive is duplicate");
    }
    if list.len() == MAX_LIMITS {
        return err(&d.pos, format!("too many \"limit_conn\" directives in one block (at most {})", MAX_LIMITS));
    }
    list.push(LimitConn { zone, conn: n as u32 });
    Ok(())
}

fn status_code(d: &Directive) -> Result<u16, ConfError> {
    match d.args[0].parse::<u16>() {
        Ok(n @ 400..=599) => Ok(n),
        _ => err(&d.pos, format!("value must be between 400 and 599 in \"{}\" directive", d.name)),
    }
}

fn log_level(d: &Directive) -> Result<LimitLogLevel, ConfError> {
    Ok(match d.args[0].as_str() {
        "info" => LimitLogLevel::Info,
        "notice" => LimitLogLevel::Notice,
        "warn" => LimitLogLevel::Warn,
        "error" => LimitLogLevel::Error,
        v => return err(&d.pos, format!("invalid value \"{}\" in \"{}\" directive (info, notice, warn or error)", v, d.name)),
    })
}

pub(super) fn limit_req_status(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.patch(d)?.limit_req_status = Some(status_code(d)?);
    Ok(())
}

pub(super) fn limit_conn_status(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.patch(d)?.limit_conn_status = Some(status_code(d)?);
    Ok(())
}

pub(super) fn limit_req_log_level(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.patch(d)?.limit_req_log_level = Some(log_level(d)?);
    Ok(())
}

pub(super) fn limit_conn_log_level(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.patch(d)?.limit_conn_log_level = Some(log_level(d)?);
    Ok(())
}

pub(super) fn limit_req_dry_run(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.patch(d)?.limit_req_dry_run = Some(on_off(d, &d.args[0])?);
    Ok(())
}

pub(super) fn limit_conn_dry_run(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.patch(d)?.limit_conn_dry_run = Some(on_off(d, &d.args[0])?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::parser::tests::load_str;
    use super::*;

    fn error(text: &str) -> String {
        load_str(text).expect_err(text).to_string()
    }

    #[test]
    fn zones_limits_and_inheritance() {
        let c = load_str(
            "http {\n limit_req zone=one burst=5 nodelay;\n limit_req_zone $binary_remote_addr zone=one:1m rate=10r/s;\n limit_req_zone \"${server_name}x\" zone=two:64k rate=30r/m;\n limit_conn_zone $remote_addr zone=addr:32k;\n limit_req_status 429;\n server {\n  listen 127.0.0.1:1;\n  location / { limit_req zone=two delay=2; limit_conn addr 3; }\n  location /b { limit_req_log_level warn; }\n }\n}\n",
        )
        .expect("valid");
        let z = &c.http.limit_zones;
        assert_eq!(z[0].kind, ZoneKind::Req { rate: 10_000 });
        assert_eq!(z[0].capacity(), 8192, "1m holds 8192 states of 128 bytes, as nginx");
        assert_eq!(z[1].kind, ZoneKind::Req { rate: 500 });
        assert_eq!(z[1].key, vec![KeyPart::ServerName, KeyPart::Lit("x".into())]);
        assert_eq!((z[2].kind, z[2].capacity()), (ZoneKind::Conn, 512));
        let s = &c.http.servers[0];
        // A level with its own limit_req does not inherit the parent's (nginx).
        assert_eq!(s.locations[0].settings.limit_req, vec![LimitReq { zone: 1, burst: 0, delay: 2000 }]);
        assert_eq!(s.locations[0].settings.limit_conn, vec![LimitConn { zone: 2, conn: 3 }]);
        assert_eq!(s.locations[1].settings.limit_req, vec![LimitReq { zone: 0, burst: 5000, delay: u64::MAX }]);
        assert_eq!(s.locations[1].settings.limit_req_status, 429);
        assert_eq!(s.locations[1].settings.limit_req_log_level, LimitLogLevel::Warn);
        assert_eq!(s.locations[0].settings.limit_conn_status, 503);
        assert_eq!(s.locations[0].settings.limit_req_log_level, LimitLogLevel::Error);
    }

    #[test]
    fn errors_name_file_and_line() {
        let cases = [
            ("http {\n server {\n  limit_req zone=nope;\n }\n}\n", "t.conf:3: unknown limit_req_zone \"nope\""),
            ("http {\n limit_conn_zone $binary_remote_addr zone=c:1m;\n limit_req zone=c;\n}\n", "t.conf:3: unknown limit_req_zone \"c\""),
            ("http {\n limit_conn nope 1;\n}\n", "t.conf:2: unknown limit_conn_zone \"nope\""),
            ("http {\n limit_req_zone $binary_remote_addr zone=a:1m rate=fast;\n}\n", "t.conf:2: invalid rate \"rate=fast\""),
            ("http {\n limit_req_zone $binary_remote_addr zone=a:1m rate=0r/s;\n}\n", "t.conf:2: invalid rate \"rate=0r/s\""),
            ("http {\n limit_req_zone $binary_remote_addr zone=a:4k rate=1r/s;\n}\n", "t.conf:2: zone \"a\" is too small"),
            ("http {\n limit_req_zone $binary_remote_addr zone=a rate=1r/s;\n}\n", "t.conf:2: invalid zone size \"zone=a\""),
            ("http {\n limit_req_zone $binary_remote_addr rate=1r/s;\n}\n", "t.conf:2: \"limit_req_zone\" must have \"zone\" parameter"),
            ("http {\n limit_req_zone $http_x zone=a:1m rate=1r/s;\n}\n", "t.conf:2: unsupported variable \"$http_x\""),
            (
                "http {\n limit_req_zone $binary_remote_addr zone=a:1m rate=1r/s;\n limit_conn_zone $remote_addr zone=a:1m;\n}\n",
                "t.conf:3: limit_conn_zone \"a\" is already bound to key \"$binary_remote_addr\"",
            ),
            ("http {\n limit_req_zone $binary_remote_addr zone=a:1m rate=1r/s;\n limit_req zone=a burst=0;\n}\n", "t.conf:3: invalid burst value \"burst=0\""),
            (
                "http {\n limit_req_zone $binary_remote_addr zone=a:1m rate=1r/s;\n limit_req zone=a;\n limit_req zone=a;\n}\n",
                "t.conf:4: \"limit_req\" directive is duplicate",
            ),
            ("http {\n limit_req_status 200;\n}\n", "t.conf:2: value must be between 400 and 599"),
            ("http {\n limit_conn_log_level loud;\n}\n", "t.conf:2: invalid value \"loud\""),
            ("http {\n limit_conn_zone $binary_remote_addr zone=c:1m;\n limit_conn c 0;\n}\n", "t.conf:3: connection limit must be between 1 and 65535"),
            (
                "http {\n server {\n  limit_req_zone $binary_remote_addr zone=a:1m rate=1r/s;\n }\n}\n",
                "t.conf:3: \"limit_req_zone\" directive is not allowed here",
            ),
        ];
        for (text, want) in cases {
            let got = error(text);
            assert!(got.starts_with(want), "for {:?}: got {:?}, want {:?}", text, got, want);
        }
    }
}
