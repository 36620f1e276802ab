//! The `server { ... }` block and `location` blocks in it: listen addresses, names, and the
//! content handlers (`proxy_pass`, `return`, `status`, static files).

use super::builder::{bad_arity, inner, Builder, ListenDecl, LocationScope, PendingProxy, Scope, ServerScope};
use super::lexer::{err, resolve, ConfError, Directive};
use super::values::{parse_listen, template};
use super::{BackendConf, Handler, Location, Match, Server, SettingsPatch, StatusAccess};
use std::net::SocketAddr;

type Done = Result<(), ConfError>;

pub(super) fn server(b: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    let http = s.http(d)?;
    let list = inner(d);
    let mut srv = ServerScope { index: b.cfg.http.servers.len(), ..ServerScope::default() };
    // Locations last, so they inherit every server setting wherever it is written.
    b.walk(list, &mut Scope::Server(&mut srv), |d| d.name != "location")?;
    if srv.listens.is_empty() {
        let addr: SocketAddr = ([0, 0, 0, 0], 80).into();
        b.listen_decl.push(ListenDecl { addr, server: srv.index, default: false, ssl: false, proxy_protocol: false, pos: d.pos.clone() });
    }
    srv.settings = srv.patch.over(&http.settings);
    b.walk(list, &mut Scope::Server(&mut srv), |d| d.name == "location")?;
    b.cfg.http.servers.push(Server { names: srv.names, locations: srv.locations, settings: srv.settings });
    Ok(())
}

/// `listen [ADDR:]PORT [ssl] [proxy_protocol] [reuseport] [default_server]`.
pub(super) fn listen(b: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    let srv = s.server(d)?;
    let addr = parse_listen(d, &d.args[0])?;
    let (mut default, mut ssl, mut proxy_protocol) = (false, false, false);
    for flag in &d.args[1..] {
        match flag.as_str() {
            "reuseport" => {}
            "ssl" => ssl = true,
            "proxy_protocol" => proxy_protocol = true,
            "http2" | "quic" => return err(&d.pos, format!("the \"{}\" parameter of \"listen\" is not supported (HTTP/1.1 only)", flag)),
            "default_server" | "default" => default = true,
            _ => return err(&d.pos, format!("invalid parameter \"{}\"", flag)),
        }
    }
    if srv.listens.contains(&addr) {
        return err(&d.pos, format!("duplicate listen {}", addr));
    }
    srv.listens.push(addr);
    b.listen_decl.push(ListenDecl { addr, server: srv.index, default, ssl, proxy_protocol, pos: d.pos.clone() });
    Ok(())
}

pub(super) fn server_name(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.server(d)?.names.extend(d.args.iter().map(|n| n.to_ascii_lowercase()));
    Ok(())
}

/// `location [=|^~] PATH { ... }`, read once its server's own settings are known.
pub(super) fn location(b: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    let Scope::Server(srv) = s else { return err(&d.pos, "nested locations are not supported") };
    let (kind, path) = match d.args.as_slice() {
        [p] => (Match::Prefix, p.clone()),
        [m, p] if m == "=" => (Match::Exact, p.clone()),
        [m, p] if m == "^~" => (Match::PrefixStop, p.clone()),
        [m, _] if m == "~" || m == "~*" => return err(&d.pos, "regular expression locations are not supported"),
        _ => return bad_arity(d),
    };
    if !path.starts_with('/') {
        return err(&d.pos, format!("location \"{}\" must start with \"/\"", path));
    }
    let mut loc = LocationScope {
        server: srv.index,
        index: srv.locations.len(),
        patch: SettingsPatch::default(),
        handler: Handler::None,
        ajp: srv.settings.ajp.clone(),
        alias: None,
    };
    b.walk(inner(d), &mut Scope::Location(&mut loc), |_| true)?;
    let mut settings = loc.patch.over(&srv.settings);
    settings.ajp = loc.ajp;
    if loc.alias.is_some() && loc.patch.root.is_some() {
        return err(&d.pos, "\"alias\" and \"root\" in the same location");
    }
    let mut handler = loc.handler;
    if handler == Handler::None && (loc.alias.is_some() || settings.root.is_some()) {
        handler = Handler::Static { alias: loc.alias };
    } else if loc.alias.is_some() {
        return err(&d.pos, "\"alias\" conflicts with another content handler in this location");
    }
    if srv.locations.iter().any(|l| l.path == path && (l.kind == Match::Exact) == (kind == Match::Exact)) {
        return err(&d.pos, format!("duplicate location \"{}\"", path));
    }
    srv.locations.push(Location { kind, path, handler, settings });
    Ok(())
}

/// `proxy_pass http://UPSTREAM|HOST:PORT` or `ajp://...`; the target is resolved once every
/// upstream block is known.
pub(super) fn proxy_pass(b: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    let loc = s.location(d)?;
    if loc.handler != Handler::None {
        return err(&d.pos, "\"proxy_pass\" directive is duplicate");
    }
    let (target, ajp) = match (d.args[0].strip_prefix("http://"), d.args[0].strip_prefix("ajp://")) {
        (Some(t), _) => (t, false),
        (_, Some(t)) => (t, true),
        _ => return err(&d.pos, format!("invalid URL prefix in \"{}\" (use http:// or ajp://)", d.args[0])),
    };
    if target.contains('/') {
        return err(&d.pos, "a URI part in \"proxy_pass\" is not supported; name the upstream or host:port only");
    }
    b.pending_proxy.push(PendingProxy { server: loc.server, location: loc.index, target: target.to_string(), pos: d.pos.clone(), ajp });
    loc.handler = Handler::Proxy { upstream: usize::MAX, backend: BackendConf::Http };
    Ok(())
}

/// `status [read_only]`.
pub(super) fn status(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    let loc = s.location(d)?;
    if loc.handler != Handler::None {
        return err(&d.pos, "\"status\" conflicts with another content handler in this location");
    }
    let access = match d.args.first().map(String::as_str) {
        None => StatusAccess::Manage,
        Some("read_only") => StatusAccess::ReadOnly,
        Some(a) => return err(&d.pos, format!("invalid parameter \"{}\" in \"status\" (only \"read_only\")", a)),
    };
    loc.handler = Handler::Status(access);
    Ok(())
}

/// `return CODE [TEXT|URL]`.
pub(super) fn return_(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    let loc = s.location(d)?;
    if loc.handler != Handler::None {
        return err(&d.pos, "\"return\" conflicts with another content handler in this location");
    }
    let code = match d.args[0].parse::<u16>() {
        Ok(c) if (100..=999).contains(&c) => c,
        _ => return err(&d.pos, format!("invalid return code \"{}\"", d.args[0])),
    };
    let text = match d.args.get(1) {
        Some(t) => Some(template(d, t)?),
        None => None,
    };
    loc.handler = Handler::Return { code, text };
    Ok(())
}

pub(super) fn alias(b: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    let loc = s.location(d)?;
    if loc.alias.is_some() {
        return err(&d.pos, "\"alias\" directive is duplicate");
    }
    loc.alias = Some(resolve(&b.prefix, &d.args[0]));
    Ok(())
}
