//! The one builder for pounce configuration text in tests.
//!
//! ```ignore
//! let conf = Conf::new()
//!     .http("access_log logs/access.log;")
//!     .upstream(Upstream::new("app").server(b.addr()).line("keepalive 4;"))
//!     .server(Server::new().location(Location::new("/").proxy_pass("http://app")));
//! let p = Pounce::start(&conf);
//! ```
//!
//! Lines are written as in the configuration file, `;` included (several directives may share
//! a line); the builder only supplies the structure: the preamble (workers, error log in the
//! test directory, pid file), the blocks and their braces. A `Server` listens on
//! `127.0.0.1:{port}` unless told otherwise; `Pounce::start` fills in `{port}`.
//!
//! Every configuration also gets the test harness's own server, on `127.0.0.1:{status_port}`
//! with nothing but the status page: at the end of each test `Pounce` reads each worker's
//! `buffers_in_use` there (see `Drop for Pounce`), so the tested servers are left as written.

use std::fmt::{self, Display, Formatter};

/// The placeholder of the tested port.
pub const PORT: &str = "{port}";
/// The placeholder of the harness's status port.
pub const STATUS_PORT: &str = "{status_port}";

/// A whole configuration.
#[derive(Clone, Debug)]
pub struct Conf {
    workers: usize,
    log_level: String,
    top: Vec<String>,
    events: Vec<String>,
    http: Vec<String>,
    upstreams: Vec<Upstream>,
    servers: Vec<Server>,
}

impl Default for Conf {
    fn default() -> Conf {
        Conf::new()
    }
}

impl Conf {
    /// One worker, `error_log logs/error.log info`, no servers yet.
    pub fn new() -> Conf {
        Conf { workers: 1, log_level: "info".into(), top: vec![], events: vec![], http: vec![], upstreams: vec![], servers: vec![] }
    }

    /// `worker_processes N;`
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// The error log's level (the file is always `logs/error.log`, which `Pounce` reads).
    pub fn error_log(mut self, level: &str) -> Self {
        self.log_level = level.into();
        self
    }

    /// A top-level line, e.g. `worker_shutdown_timeout 10s;`.
    pub fn top(mut self, line: impl Into<String>) -> Self {
        self.top.push(line.into());
        self
    }

    /// A line in `events { }`, e.g. `worker_connections 20;`.
    pub fn events(mut self, line: impl Into<String>) -> Self {
        self.events.push(line.into());
        self
    }

    /// A line in `http { }` (before the upstreams and servers).
    pub fn http(mut self, line: impl Into<String>) -> Self {
        self.http.push(line.into());
        self
    }

    pub fn upstream(mut self, u: Upstream) -> Self {
        self.upstreams.push(u);
        self
    }

    /// A server block; the first one is the default server of its address.
    pub fn server(mut self, s: Server) -> Self {
        self.servers.push(s);
        self
    }
}

/// `upstream NAME { ... }`
#[derive(Clone, Debug)]
pub struct Upstream {
    name: String,
    lines: Vec<String>,
}

impl Upstream {
    pub fn new(name: &str) -> Upstream {
        Upstream { name: name.into(), lines: vec![] }
    }

    /// `server SPEC;`: an address and its parameters, e.g. `format!("{} weight=5", a.addr())`.
    pub fn server(self, spec: impl Display) -> Self {
        self.line(format!("server {};", spec))
    }

    /// Any line, e.g. `keepalive 4;` (or several `server ...;` written out).
    pub fn line(mut self, line: impl Into<String>) -> Self {
        self.lines.push(line.into());
        self
    }
}

/// `server { ... }`
#[derive(Clone, Debug)]
pub struct Server {
    listens: Vec<String>,
    names: Vec<String>,
    lines: Vec<String>,
    locations: Vec<Location>,
}

impl Default for Server {
    fn default() -> Server {
        Server::new()
    }
}

impl Server {
    /// Listens on `127.0.0.1:{port}`.
    pub fn new() -> Server {
        Server { listens: vec![], names: vec![], lines: vec![], locations: vec![] }
    }

    /// `listen ARGS;` instead of the default `127.0.0.1:{port}` (call again for more).
    pub fn listen(mut self, args: impl Into<String>) -> Self {
        self.listens.push(args.into());
        self
    }

    /// `server_name NAMES;`
    pub fn name(mut self, names: impl Into<String>) -> Self {
        self.names.push(names.into());
        self
    }

    /// Any line at server level, e.g. `root /srv/www;`.
    pub fn line(mut self, line: impl Into<String>) -> Self {
        self.lines.push(line.into());
        self
    }

    pub fn location(mut self, l: Location) -> Self {
        self.locations.push(l);
        self
    }
}

/// `location [MODIFIER] PATH { ... }`
#[derive(Clone, Debug)]
pub struct Location {
    modifier: Option<String>,
    path: String,
    lines: Vec<String>,
}

impl Location {
    /// A prefix location.
    pub fn new(path: &str) -> Location {
        Location { modifier: None, path: path.into(), lines: vec![] }
    }

    /// `location = PATH`
    pub fn exact(path: &str) -> Location {
        Location::modified("=", path)
    }

    /// `location MODIFIER PATH`, e.g. `^~`.
    pub fn modified(modifier: &str, path: &str) -> Location {
        Location { modifier: Some(modifier.into()), path: path.into(), lines: vec![] }
    }

    /// `proxy_pass TARGET;`
    pub fn proxy_pass(self, target: impl Display) -> Self {
        self.line(format!("proxy_pass {};", target))
    }

    /// Any line in the location, e.g. `proxy_read_timeout 500ms;`.
    pub fn line(mut self, line: impl Into<String>) -> Self {
        self.lines.push(line.into());
        self
    }
}

fn lines(f: &mut Formatter<'_>, indent: &str, lines: &[String]) -> fmt::Result {
    for l in lines.iter().filter(|l| !l.trim().is_empty()) {
        writeln!(f, "{}{}", indent, l)?;
    }
    Ok(())
}

impl Display for Conf {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(f, "worker_processes {};", self.workers)?;
        writeln!(f, "error_log logs/error.log {};", self.log_level)?;
        writeln!(f, "pid logs/pounce.pid;")?;
        lines(f, "", &self.top)?;
        if !self.events.is_empty() {
            writeln!(f, "events {{")?;
            lines(f, " ", &self.events)?;
            writeln!(f, "}}")?;
        }
        writeln!(f, "http {{")?;
        lines(f, " ", &self.http)?;
        for u in &self.upstreams {
            write!(f, "{}", u)?;
        }
        for s in &self.servers {
            write!(f, "{}", s)?;
        }
        writeln!(f, " # The test harness's server: the buffer check at the end of every test (tests/support).")?;
        writeln!(f, " server {{")?;
        writeln!(f, "  listen 127.0.0.1:{};", STATUS_PORT)?;
        writeln!(f, "  access_log off;")?;
        writeln!(f, "  location / {{ status; allow all; }}")?;
        writeln!(f, " }}")?;
        writeln!(f, "}}")
    }
}

impl Display for Upstream {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(f, " upstream {} {{", self.name)?;
        lines(f, "  ", &self.lines)?;
        writeln!(f, " }}")
    }
}

impl Display for Server {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(f, " server {{")?;
        if self.listens.is_empty() {
            writeln!(f, "  listen 127.0.0.1:{};", PORT)?;
        }
        for l in &self.listens {
            writeln!(f, "  listen {};", l)?;
        }
        for n in &self.names {
            writeln!(f, "  server_name {};", n)?;
        }
        lines(f, "  ", &self.lines)?;
        for l in &self.locations {
            write!(f, "{}", l)?;
        }
        writeln!(f, " }}")
    }
}

impl Display for Location {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "  location ")?;
        if let Some(m) = &self.modifier {
            write!(f, "{} ", m)?;
        }
        write!(f, "{} {{", self.path)?;
        for l in self.lines.iter().map(|l| l.trim()).filter(|l| !l.is_empty()) {
            write!(f, " {}", l)?;
        }
        writeln!(f, " }}")
    }
}
