//! The typed configuration the workers run from.
//!
//! `lexer` turns text into a directive tree; `parser` reads it through the directive table
//! (`directives`: one row per directive, as nginx's command tables, dispatched by `builder`)
//! into a `Config`, with the parse functions by area in `top`, `settings`, `upstream` and
//! `server`, and argument parsers in `values` and `units`. Settings that nginx inherits
//! (http → server → location) are merged here so a location carries its final values and the
//! hot path never looks anything up twice.

mod builder;
mod directives;
mod gzip;
mod lexer;
mod limit;
mod logformat;
mod parser;
mod realip;
mod server;
mod settings;
mod ssl;
mod top;
mod units;
mod unknown;
mod upstream;
mod values;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use gzip::{GzipTypes, Proxied};
pub use lexer::{ConfError, Source};
pub use limit::{KeyPart, LimitConn, LimitLogLevel, LimitReq, LimitZone, ZoneKind, MAX_LIMITS};
pub use logformat::{AccessLogRef, Capture, Escape, LogFormat, LogPart, LogVar};
pub use realip::{Cidr, RealIpHeader};

/// Servers an upstream may have (beyond 8 its balancer is the stride heap of
/// `upstream::large`, whose cost per request hardly grows with the number of servers).
pub const MAX_SERVERS: usize = 4096;

/// Loads and validates the configuration at `path`. Relative paths in it are resolved
/// against `prefix`, except `include`s: those against the directory of `path`, as nginx does.
pub fn load(path: &Path, prefix: &Path) -> Result<Config, ConfError> {
    let tree = lexer::parse_file(path, None)?;
    parser::build(tree, path, prefix)
}

/// As `load`, and every file read with its text, the main one first (`pounce -T`).
pub fn load_with_sources(path: &Path, prefix: &Path) -> Result<(Config, Vec<Source>), ConfError> {
    let mut sources = Vec::new();
    let tree = lexer::parse_file(path, Some(&mut sources))?;
    Ok((parser::build(tree, path, prefix)?, sources))
}

/// Validates configuration text as if it had been read from `path` (the fuzz target's entry).
pub fn load_text(text: &[u8], path: &Path, prefix: &Path) -> Result<Config, ConfError> {
    let tree = lexer::parse_text(text, path)?;
    parser::build(tree, path, prefix)
}

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub prefix: PathBuf,
    pub worker_processes: usize,
    pub worker_connections: usize,
    /// Buffers (16 KiB each) a worker's pool may hand out; `None`: 5 × worker_connections.
    pub worker_buffers: Option<usize>,
    pub worker_shutdown_timeout: Duration,
    /// `None` = stderr.
    pub error_log: Option<PathBuf>,
    pub error_level: log::LevelFilter,
    pub pid: Option<PathBuf>,
    pub http: Http,
}

#[derive(Debug, Clone, Default)]
pub struct Http {
    pub upstreams: Vec<Upstream>,
    pub servers: Vec<Server>,
    /// Every distinct listening address with the servers that share it.
    pub listens: Vec<Listen>,
    /// Access log files, opened once per worker; settings refer to them by index.
    pub access_logs: Vec<PathBuf>,
    /// `log_format`s, `combined` first; settings refer to them by index.
    pub log_formats: Vec<LogFormat>,
    /// `limit_req_zone`s and `limit_conn_zone`s; `limit_req`/`limit_conn` refer to them by index.
    pub limit_zones: Vec<LimitZone>,
}

#[derive(Debug, Clone)]
pub struct Listen {
    pub addr: SocketAddr,
    /// `listen ... ssl`: connections are TLS (on any of its servers' `listen`, as nginx).
    pub ssl: bool,
    /// `listen ... proxy_protocol`: every connection starts with a PROXY protocol header (on
    /// any of its servers' `listen`, as `ssl`).
    pub proxy_protocol: bool,
    /// Indices into `Http::servers`; the first is the default server unless one says `default_server`.
    pub servers: Vec<usize>,
    pub default_server: usize,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub names: Vec<String>,
    pub locations: Vec<Location>,
    /// Settings at server level (used before a location is known: header timeout, keep-alive).
    pub settings: Settings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// `location = /x`
    Exact,
    /// `location ^~ /x`: a prefix that, when longest, stops regex matching (pounce has none).
    PrefixStop,
    /// `location /x`
    Prefix,
}

#[derive(Debug, Clone)]
pub struct Location {
    pub kind: Match,
    pub path: String,
    pub handler: Handler,
    pub settings: Settings,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Handler {
    /// `proxy_pass`: index into `Http::upstreams`, and how to speak to it.
    Proxy { upstream: usize, backend: BackendConf },
    /// `return CODE [TEXT|URL]`, with variables (`$scheme`, `$host`, `$request_uri`, ...).
    Return { code: u16, text: Option<Vec<Part>> },
    /// Static files from `root` (in the settings), or from `alias` when set.
    Static { alias: Option<PathBuf> },
    /// `status [read_only]`: the status and manager page, served by the worker itself.
    Status(StatusAccess),
    /// No content handler: 404.
    None,
}

/// What the status page lets its clients do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusAccess {
    /// Read, and change servers' weight and state (the manager).
    Manage,
    /// `status read_only`: read only; a POST gets 403.
    ReadOnly,
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    pub servers: Vec<Peer>,
    /// Idle connections kept per worker: sized by demand, capped, or none.
    pub keepalive: Keepalive,
    pub keepalive_timeout: Duration,
    pub keepalive_requests: u32,
    /// Made from `proxy_pass http://host:port` rather than an `upstream` block.
    pub implicit: bool,
    /// AJP parameters set in the upstream block (a location's own values win).
    pub ajp: AjpConf,
    pub balance: Balance,
    pub sticky: Option<Sticky>,
    pub health_check: Option<HealthCheck>,
    /// What its locations speak to it (active checks use it: AJP gets CPING).
    pub protocol: BackendProtocol,
    /// `frozen_timeout`: a server that has sent nothing for this long while requests wait on
    /// it is taken out and its waiting requests sent elsewhere (None: off).
    pub frozen_timeout: Option<Duration>,
}

impl Upstream {
    pub(crate) fn new(name: String, implicit: bool) -> Upstream {
        Upstream {
            name,
            servers: Vec::new(),
            keepalive: Keepalive::Auto,
            keepalive_timeout: Duration::from_secs(60),
            keepalive_requests: 1000,
            implicit,
            ajp: AjpConf::default(),
            balance: Balance::RoundRobin,
            sticky: None,
            health_check: None,
            protocol: BackendProtocol::Http,
            frozen_timeout: None,
        }
    }
}

/// `keepalive auto|N|off`: how many idle connections a worker keeps for an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keepalive {
    /// No keep-alive to the backends: `Connection: close` on every request.
    Off,
    /// The default: as many as recent demand needs (`upstream::keepalive`).
    Auto,
    /// As demand needs, but never more than N per worker for the whole upstream.
    Max(usize),
}

impl Keepalive {
    pub fn enabled(self) -> bool {
        self != Keepalive::Off
    }

    /// The most idle connections a worker keeps for the upstream.
    pub fn cap(self) -> usize {
        match self {
            Keepalive::Off => 0,
            Keepalive::Auto => usize::MAX,
            Keepalive::Max(n) => n,
        }
    }
}

/// `balance` methods (mod_proxy_balancer's byrequests / bybusyness / bytraffic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    LeastConn,
    ByTraffic,
}

/// `sticky_route [COOKIE]` and `sticky_force`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sticky {
    /// Cookie carrying the session id (`JSESSIONID`).
    pub cookie: String,
    /// Path parameter carrying it (`;jsessionid=`): the cookie name in lower case.
    pub path_param: String,
    /// Answer 503 rather than move a session whose server is unusable.
    pub force: bool,
    /// Sessions seen within this window count as live (`sessions_window`, Tomcat's 30 min).
    pub window: Duration,
    /// A disabled server is drained once no sticky request reached it for this long.
    pub drain_idle: Duration,
}

impl Sticky {
    pub(crate) const DEFAULT_WINDOW: Duration = Duration::from_secs(30 * 60);
    pub(crate) const DEFAULT_DRAIN_IDLE: Duration = Duration::from_secs(5 * 60);
}

/// `health_check [interval=TIME] [fails=N] [passes=N] [uri=PATH] [timeout=TIME]`.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub interval: Duration,
    pub fails: u32,
    pub passes: u32,
    pub uri: String,
    pub timeout: Duration,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck { interval: Duration::from_secs(5), fails: 1, passes: 1, uri: "/".into(), timeout: Duration::from_secs(1) }
    }
}

/// The protocols pounce speaks to backends: one adapter each (`backend::Adapter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendProtocol {
    Http,
    Ajp,
}

impl BackendProtocol {
    pub fn name(self) -> &'static str {
        match self {
            BackendProtocol::Http => "http",
            BackendProtocol::Ajp => "ajp",
        }
    }
}

/// How a location speaks to its upstream, resolved at load time: the protocol and its
/// parameters (a location's `ajp_*` values over its upstream's, then the defaults).
#[derive(Debug, Clone, PartialEq)]
pub enum BackendConf {
    Http,
    Ajp(AjpParams),
}

impl BackendConf {
    pub fn protocol(&self) -> BackendProtocol {
        match self {
            BackendConf::Http => BackendProtocol::Http,
            BackendConf::Ajp(_) => BackendProtocol::Ajp,
        }
    }
}

/// AJP parameters of one location, final.
#[derive(Debug, Clone, PartialEq)]
pub struct AjpParams {
    pub secret: Option<String>,
    pub packet_size: usize,
    /// CPING before every request (`ajp_ping on`), answered within this time.
    pub ping_timeout: Option<Duration>,
}

/// `ajp_secret`, `ajp_packet_size`, `ajp_ping`, `ajp_ping_timeout`; unset = inherit/default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AjpConf {
    pub secret: Option<String>,
    pub packet_size: Option<usize>,
    pub ping: Option<bool>,
    pub ping_timeout: Option<Duration>,
}

impl AjpConf {
    pub(crate) const DEFAULT_PACKET_SIZE: usize = 8192;
    pub(crate) const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(10);

    /// `self` (the location's) over `base` (the upstream's), then the defaults.
    pub(crate) fn resolve(&self, base: &AjpConf) -> AjpParams {
        let ping = self.ping.or(base.ping).unwrap_or(false);
        AjpParams {
            secret: self.secret.clone().or_else(|| base.secret.clone()),
            packet_size: self.packet_size.or(base.packet_size).unwrap_or(Self::DEFAULT_PACKET_SIZE),
            ping_timeout: ping.then(|| self.ping_timeout.or(base.ping_timeout).unwrap_or(Self::DEFAULT_PING_TIMEOUT)),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Peer {
    pub addr: SocketAddr,
    /// As written in the configuration (`host:port`).
    pub name: String,
    pub weight: u32,
    pub max_fails: u32,
    pub fail_timeout: Duration,
    pub backup: bool,
    /// `down`: mod_jk's *stopped* activation (no requests at all).
    pub down: bool,
    /// `disabled`: mod_jk's *disabled* activation (only requests sticky to it: draining).
    pub disabled: bool,
    /// The route (Tomcat's jvmRoute) this server answers for.
    pub route: Option<String>,
    /// Ramp the weight up over this time after the server comes back (0 = off).
    pub slow_start: Duration,
}

impl Peer {
    pub(crate) fn new(addr: SocketAddr, name: String) -> Peer {
        Peer {
            addr,
            name,
            weight: 1,
            max_fails: 1,
            fail_timeout: Duration::from_secs(10),
            backup: false,
            down: false,
            disabled: false,
            route: None,
            slow_start: Duration::ZERO,
        }
    }
}

/// Conditions of `proxy_next_upstream`, as bits.
pub mod next {
    pub const ERROR: u16 = 1;
    pub const TIMEOUT: u16 = 2;
    pub const INVALID_HEADER: u16 = 4;
    pub const HTTP_500: u16 = 8;
    pub const HTTP_502: u16 = 16;
    pub const HTTP_503: u16 = 32;
    pub const HTTP_504: u16 = 64;
    pub const HTTP_403: u16 = 128;
    pub const HTTP_404: u16 = 256;
    pub const HTTP_429: u16 = 512;
    pub const NON_IDEMPOTENT: u16 = 1024;
    pub const OFF: u16 = 0;
}

/// A value of `proxy_set_header`: literal text and variables.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Lit(String),
    Var(Var),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    Host,
    HttpHost,
    RemoteAddr,
    RemotePort,
    Scheme,
    ServerName,
    ServerPort,
    ProxyHost,
    ProxyAddXForwardedFor,
    RequestUri,
    Uri,
    Args,
    RequestMethod,
    SslProtocol,
    SslCipher,
    SslClientCert,
    SslClientEscapedCert,
    SslClientSDn,
    SslClientVerify,
    SslServerName,
    SslSessionId,
    SslSessionReused,
    ProxyProtocolAddr,
    ProxyProtocolPort,
    RealipRemoteAddr,
    RealipRemotePort,
}

impl Var {
    pub(crate) fn by_name(name: &str) -> Option<Var> {
        Some(match name {
            "host" => Var::Host,
            "http_host" => Var::HttpHost,
            "remote_addr" => Var::RemoteAddr,
            "remote_port" => Var::RemotePort,
            "scheme" => Var::Scheme,
            "server_name" => Var::ServerName,
            "server_port" => Var::ServerPort,
            "proxy_host" => Var::ProxyHost,
            "proxy_add_x_forwarded_for" => Var::ProxyAddXForwardedFor,
            "request_uri" => Var::RequestUri,
            "uri" => Var::Uri,
            "args" => Var::Args,
            "request_method" => Var::RequestMethod,
            "ssl_protocol" => Var::SslProtocol,
            "ssl_cipher" => Var::SslCipher,
            "ssl_client_cert" => Var::SslClientCert,
            "ssl_client_escaped_cert" => Var::SslClientEscapedCert,
            "ssl_client_s_dn" => Var::SslClientSDn,
            "ssl_client_verify" => Var::SslClientVerify,
            "ssl_server_name" => Var::SslServerName,
            "ssl_session_id" => Var::SslSessionId,
            "ssl_session_reused" => Var::SslSessionReused,
            "proxy_protocol_addr" => Var::ProxyProtocolAddr,
            "proxy_protocol_port" => Var::ProxyProtocolPort,
            "realip_remote_addr" => Var::RealipRemoteAddr,
            "realip_remote_port" => Var::RealipRemotePort,
            _ => return None,
        })
    }
}

/// `allow` / `deny` with an address, a CIDR or `all`; the first rule that matches decides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AccessRule {
    pub allow: bool,
    pub net: std::net::IpAddr,
    pub prefix: u8,
}

impl AccessRule {
    /// Prefix 0 (`all`) matches every address, IPv4 or IPv6.
    pub fn matches(&self, ip: std::net::IpAddr) -> bool {
        Cidr { net: self.net, prefix: self.prefix }.matches(ip)
    }
}

/// nginx's access check: the first matching rule decides; no rule matching allows.
pub fn access_allowed(rules: &[AccessRule], ip: std::net::IpAddr) -> bool {
    rules.iter().find(|r| r.matches(ip)).is_none_or(|r| r.allow)
}

#[derive(Debug, Clone, PartialEq)]
pub struct HeaderSet {
    pub name: String,
    pub value: Vec<Part>,
}

/// Declares the inheritable settings once: the struct with its defaults, and a patch of
/// optional values per level that is laid over the parent's.
macro_rules! settings {
    ($($field:ident : $ty:ty = $default:expr),* $(,)?) => {
        #[derive(Debug, Clone, PartialEq)]
        pub struct Settings { $(pub $field: $ty),* }

        impl Default for Settings {
            fn default() -> Self { Settings { $($field: $default),* } }
        }

        #[derive(Debug, Clone, Default)]
        pub(crate) struct SettingsPatch { $(pub(crate) $field: Option<$ty>),* }

        impl SettingsPatch {
            pub(crate) fn over(&self, parent: &Settings) -> Settings {
                Settings { $($field: self.$field.clone().unwrap_or_else(|| parent.$field.clone())),* }
            }
        }
    };
}

settings! {
    access_log: Option<AccessLogRef> = None,
    keepalive_timeout: Duration = Duration::from_secs(75),
    keepalive_requests: u32 = 1000,
    client_header_timeout: Duration = Duration::from_secs(60),
    client_body_timeout: Duration = Duration::from_secs(60),
    client_max_body_size: u64 = 1 << 20,
    send_timeout: Duration = Duration::from_secs(60),
    proxy_connect_timeout: Duration = Duration::from_secs(60),
    proxy_read_timeout: Duration = Duration::from_secs(60),
    proxy_send_timeout: Duration = Duration::from_secs(60),
    proxy_next_upstream: u16 = next::ERROR | next::TIMEOUT,
    proxy_next_upstream_tries: u32 = 0,
    proxy_set_header: Vec<HeaderSet> = Vec::new(),
    proxy_redirect: bool = true,
    ajp: AjpConf = AjpConf::default(),
    access: Vec<AccessRule> = Vec::new(),
    root: Option<PathBuf> = None,
    index: Vec<String> = vec!["index.html".to_string()],
    types: Vec<(String, String)> = Vec::new(),
    default_type: String = "application/octet-stream".to_string(),
    disable_symlinks: bool = false,
    proxy_via: Via = Via::Off,
    proxy_ignore_client_abort: bool = false,
    add_header: Vec<AddHeader> = Vec::new(),
    ssl_certificate: Vec<PathBuf> = Vec::new(),
    ssl_certificate_key: Vec<PathBuf> = Vec::new(),
    ssl_protocols: SslProtocols = SslProtocols::default(),
    ssl_session_tickets: bool = true,
    ssl_session_timeout: Duration = Duration::from_secs(300),
    ssl_verify_client: VerifyClient = VerifyClient::Off,
    ssl_client_certificate: Option<PathBuf> = None,
    ssl_handshake_timeout: Duration = Duration::from_secs(60),
    ssl_prefer_server_ciphers: bool = true,
    // gzip (config/gzip.rs), nginx's defaults
    gzip: bool = false,
    gzip_types: GzipTypes = GzipTypes::default(),
    gzip_min_length: u64 = 20,
    gzip_comp_level: u32 = 1,
    gzip_vary: bool = false,
    gzip_proxied: Proxied = Proxied::OFF,
    gzip_http_version: u8 = 1,
    set_real_ip_from: Vec<Cidr> = Vec::new(),
    real_ip_header: RealIpHeader = RealIpHeader::XRealIp,
    real_ip_recursive: bool = false,
    proxy_protocol_timeout: Duration = Duration::from_secs(30),
    limit_req: Vec<LimitReq> = Vec::new(),
    limit_req_status: u16 = 503,
    limit_req_log_level: LimitLogLevel = LimitLogLevel::Error,
    limit_req_dry_run: bool = false,
    limit_conn: Vec<LimitConn> = Vec::new(),
    limit_conn_status: u16 = 503,
    limit_conn_log_level: LimitLogLevel = LimitLogLevel::Error,
    limit_conn_dry_run: bool = false,
}

/// `add_header NAME VALUE [always]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AddHeader {
    pub name: String,
    pub value: String,
    /// Added to every response, not only to 2xx and 3xx ones.
    pub always: bool,
}

/// `ssl_protocols`: the TLS versions offered (rustls has nothing older than TLS 1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SslProtocols {
    pub tls12: bool,
    pub tls13: bool,
}

impl Default for SslProtocols {
    fn default() -> Self {
        SslProtocols { tls12: true, tls13: true }
    }
}

/// `ssl_verify_client`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyClient {
    Off,
    /// A certificate signed by `ssl_client_certificate` is required.
    On,
    /// One is asked for; a client without one is let in (a bad one is refused).
    Optional,
}

/// `proxy_via off|on|full` (Apache's ProxyVia).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Off,
    On,
    Full,
}

impl Via {
    /// The value pounce adds, if any.
    pub fn value(self) -> Option<&'static str> {
        match self {
            Via::Off => None,
            Via::On => Some("1.1 pounce"),
            Via::Full => Some(concat!("1.1 pounce (pounce/", env!("CARGO_PKG_VERSION"), ")")),
        }
    }
}
