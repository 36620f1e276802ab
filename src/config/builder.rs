//! What a directive table row is, the state a configuration is built in, and the reading of a
//! block: each directive looked up in the table for the block it is in, checked for its `{`
//! and its argument count, then handed to its row's function (nginx's `ngx_conf_handler`).

use super::lexer::{err, ConfError, Directive, Pos};
use super::{unknown, AjpConf, Config, Handler, Location, Settings, SettingsPatch, Upstream};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The blocks a directive may be written in (a row's `ctx`), as bits.
pub(super) mod ctx {
    pub const MAIN: u8 = 1;
    pub const EVENTS: u8 = 2;
    pub const HTTP: u8 = 4;
    pub const SERVER: u8 = 8;
    pub const LOCATION: u8 = 16;
    pub const UPSTREAM: u8 = 32;
    /// The inheritable settings: http → server → location.
    pub const SETTINGS: u8 = HTTP | SERVER | LOCATION;
}

/// How many arguments a directive takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Args {
    Exactly(usize),
    Range(usize, usize),
    AtLeast(usize),
    Any,
}

impl Args {
    /// The least and the most arguments (`usize::MAX`: no limit).
    pub(super) fn bounds(self) -> (usize, usize) {
        match self {
            Args::Exactly(n) => (n, n),
            Args::Range(min, max) => (min, max),
            Args::AtLeast(n) => (n, usize::MAX),
            Args::Any => (0, usize::MAX),
        }
    }
}

/// A row's parse function: checks the arguments and stores them in the block being read.
pub(super) type Set = fn(&mut Builder, &Directive, &mut Scope) -> Result<(), ConfError>;

/// One directive, as nginx's `ngx_command_t`: a name may have several rows (for different
/// blocks).
pub(super) struct Row {
    pub name: &'static str,
    /// Bits of `ctx`: where it may be written.
    pub ctx: u8,
    pub args: Args,
    /// Takes a `{ ... }` block (and must have one); otherwise it must end with `;`.
    pub block: bool,
    pub set: Set,
}

/// An `http` block being read.
#[derive(Default)]
pub(super) struct HttpScope {
    pub patch: SettingsPatch,
    /// Its final settings, once its own directives are read (its servers are read last).
    pub settings: Settings,
}

/// A `server` block being read.
#[derive(Default)]
pub(super) struct ServerScope {
    /// Its index in `Http::servers`.
    pub index: usize,
    pub patch: SettingsPatch,
    pub names: Vec<String>,
    pub listens: Vec<SocketAddr>,
    /// Its final settings, once its own directives are read (its locations are read last).
    pub settings: Settings,
    pub locations: Vec<Location>,
}

/// A `location` block being read.
pub(super) struct LocationScope {
    pub server: usize,
    /// Its index in `Server::locations`.
    pub index: usize,
    pub patch: SettingsPatch,
    pub handler: Handler,
    /// The server's AJP parameters, this location's own over them.
    pub ajp: AjpConf,
    pub alias: Option<PathBuf>,
}

/// The block a directive is read in, with what its directives fill in.
pub(super) enum Scope<'a> {
    Main,
    Events,
    Http(&'a mut HttpScope),
    Server(&'a mut ServerScope),
    Location(&'a mut LocationScope),
    Upstream(&'a mut Upstream),
}

impl Scope<'_> {
    pub(super) fn ctx(&self) -> u8 {
        match self {
            Scope::Main => ctx::MAIN,
            Scope::Events => ctx::EVENTS,
            Scope::Http(_) => ctx::HTTP,
            Scope::Server(_) => ctx::SERVER,
            Scope::Location(_) => ctx::LOCATION,
            Scope::Upstream(_) => ctx::UPSTREAM,
        }
    }

    // The accessors below fail only where the table lets a row into a block its function
    // does not handle; they answer as for a misplaced directive rather than panic.

    pub(super) fn patch(&mut self, d: &Directive) -> Result<&mut SettingsPatch, ConfError> {
        match self {
            Scope::Http(h) => Ok(&mut h.patch),
            Scope::Server(s) => Ok(&mut s.patch),
            Scope::Location(l) => Ok(&mut l.patch),
            _ => misplaced(d),
        }
    }

    /// Where an `ajp_*` directive goes: an upstream's or a location's parameters, or the
    /// settings patch of http and server.
    pub(super) fn ajp(&mut self, d: &Directive) -> Result<&mut AjpConf, ConfError> {
        match self {
            Scope::Upstream(u) => Ok(&mut u.ajp),
            Scope::Location(l) => Ok(&mut l.ajp),
            _ => Ok(self.patch(d)?.ajp.get_or_insert_with(AjpConf::default)),
        }
    }

    pub(super) fn http(&mut self, d: &Directive) -> Result<&mut HttpScope, ConfError> {
        match self {
            Scope::Http(h) => Ok(h),
            _ => misplaced(d),
        }
    }

    pub(super) fn server(&mut self, d: &Directive) -> Result<&mut ServerScope, ConfError> {
        match self {
            Scope::Server(s) => Ok(s),
            _ => misplaced(d),
        }
    }

    pub(super) fn location(&mut self, d: &Directive) -> Result<&mut LocationScope, ConfError> {
        match self {
            Scope::Location(l) => Ok(l),
            _ => misplaced(d),
        }
    }

    pub(super) fn upstream(&mut self, d: &Directive) -> Result<&mut Upstream, ConfError> {
        match self {
            Scope::Upstream(u) => Ok(u),
            _ => misplaced(d),
        }
    }
}

/// A `proxy_pass` target, resolved once every upstream block is known.
pub(super) struct PendingProxy {
    pub server: usize,
    pub location: usize,
    pub target: String,
    pub pos: Pos,
    pub ajp: bool,
}

/// A `listen` directive (or a server's implied `listen 80`).
pub(super) struct ListenDecl {
    pub addr: SocketAddr,
    pub server: usize,
    pub default: bool,
    pub ssl: bool,
    pub proxy_protocol: bool,
    pub pos: Pos,
}

pub(super) struct Builder {
    pub table: &'static [Row],
    pub prefix: PathBuf,
    pub cfg: Config,
    /// Per upstream: where it was defined (for duplicate detection).
    pub upstream_pos: Vec<Pos>,
    pub pending_proxy: Vec<PendingProxy>,
    pub listen_decl: Vec<ListenDecl>,
    pub http_seen: bool,
}

impl Builder {
    /// Reads the directives of `list` that `pick` selects, in order, as written in `scope`.
    pub(super) fn walk(&mut self, list: &[Directive], scope: &mut Scope, pick: impl Fn(&Directive) -> bool) -> Result<(), ConfError> {
        for d in list.iter().filter(|d| pick(d)) {
            let row = find(self.table, d, scope.ctx())?;
            check(row, d)?;
            (row.set)(self, d, scope)?;
        }
        Ok(())
    }
}

/// The row for `d` written in a block of kind `here`, or the error that explains why none is.
pub(super) fn find(table: &'static [Row], d: &Directive, here: u8) -> Result<&'static Row, ConfError> {
    let mut rows = table.iter().filter(|r| r.name == d.name).peekable();
    if rows.peek().is_none() {
        return err(&d.pos, unknown::message(&d.name, table.iter().map(|r| (r.name, r.ctx & here != 0))));
    }
    match rows.find(|r| r.ctx & here != 0) {
        Some(row) => Ok(row),
        None => misplaced(d),
    }
}

/// The block and argument count the row asks for (a `;` where a block belongs is reported
/// after the argument count, a block where `;` belongs before it).
fn check(row: &Row, d: &Directive) -> Result<(), ConfError> {
    if !row.block && d.block.is_some() {
        return no_opening(d);
    }
    let (min, max) = row.args.bounds();
    if d.args.len() < min || d.args.len() > max {
        return bad_arity(d);
    }
    if row.block && d.block.is_none() {
        return no_opening(d);
    }
    Ok(())
}

/// The directives inside a block directive (checked to be there before its function runs).
pub(super) fn inner(d: &Directive) -> &[Directive] {
    d.block.as_deref().unwrap_or_default()
}

pub(super) fn misplaced<T>(d: &Directive) -> Result<T, ConfError> {
    err(&d.pos, format!("\"{}\" directive is not allowed here", d.name))
}

pub(super) fn bad_arity<T>(d: &Directive) -> Result<T, ConfError> {
    err(&d.pos, format!("invalid number of arguments in \"{}\" directive", d.name))
}

/// Said both of a block directive ended by `;` and of a simple one given a block.
pub(super) fn no_opening<T>(d: &Directive) -> Result<T, ConfError> {
    err(&d.pos, format!("directive \"{}\" has no opening \"{{\"", d.name))
}
