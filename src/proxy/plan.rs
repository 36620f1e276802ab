//! What a request gets, decided before anything is done: the `server {}` and `location {}`
//! that answer it, whether the connection may be kept, and the action — proxy to an upstream
//! (with the server its sticky route names), a static file, the status page, a `return`, or a
//! refusal pounce writes itself. A pure function of the request, the configuration and the
//! shared runtime state (server health and activation, for sticky routes): it does no I/O
//! and logs nothing, so it is unit-tested without sockets. The session then begins what the
//! plan says (`session/begin.rs`).

use super::realip;
use super::route::{find_location, find_server};
use crate::backend::Adapter;
use crate::config::{access_allowed, BackendConf, Handler, Part, Settings, StatusAccess};
use crate::http::request::{header, headers_named, BodyKind, RequestMeta};
use crate::http::uri::{self, UriError};
use crate::runtime::Runtime;
use crate::transport::proxy_protocol::ConnOrigin;
use crate::upstream::{now_ms, sessions, sticky};
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::path::Path;

/// What the plan needs to know of the connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnFacts<'o> {
    /// The listening address (index) the request came in on.
    pub(crate) listen: usize,
    /// The connection's peer (`$realip_remote_addr`); the request's client may be another
    /// (`Plan::real_client`).
    pub(crate) peer: SocketAddr,
    /// The connection's PROXY protocol address, if any (`Client::origin`).
    pub(crate) origin: Option<&'o ConnOrigin>,
    /// Requests already served on this connection.
    pub(crate) served: u32,
    /// The client already closed its side.
    pub(crate) client_closed: bool,
    /// The worker is shutting down: no keep-alive.
    pub(crate) draining: bool,
}

#[derive(Debug)]
pub(crate) struct Plan<'c, 'r> {
    pub(crate) server: usize,
    pub(crate) loc: Option<usize>,
    pub(crate) settings: &'c Settings,
    /// The client's address realip trusts, when it found one; else the client is the
    /// connection's peer (`$remote_addr`, allow/deny, the access log, X-Forwarded-For, AJP's
    /// remote_addr).
    pub(crate) real_client: Option<SocketAddr>,
    /// The connection may be kept after this request.
    pub(crate) keep_alive: bool,
    /// The request body is read (forwarded, collected or discarded); `false` when the
    /// connection closes after the answer anyway and the body is left unread.
    pub(crate) reads_body: bool,
    /// The path locations matched: as Tomcat will read it (decoded, normalized), or raw.
    pub(crate) route_path: &'r [u8],
    pub(crate) action: Action<'c>,
}

#[derive(Debug, PartialEq)]
pub(crate) enum Action<'c> {
    /// pounce refuses the request itself.
    Refuse(Refusal),
    /// `return CODE [TEXT]`.
    Return {
        code: u16,
        text: Option<&'c [Part]>,
    },
    /// A file from `root` or `alias`.
    Static {
        alias: Option<&'c Path>,
        loc_path: &'c str,
    },
    /// The status and manager page, and whether it takes changes.
    StatusPage(StatusAccess),
    Proxy(ProxyPlan<'c>),
    /// The client already left: nothing goes to a backend (logged as 499).
    Abandon,
}

#[derive(Debug, PartialEq)]
pub(crate) struct ProxyPlan<'c> {
    pub(crate) upstream: usize,
    pub(crate) backend: &'c BackendConf,
    /// The server the session's route names and that can take it now.
    pub(crate) sticky_peer: Option<usize>,
    /// The server the route named, usable or not (failover is counted against it).
    pub(crate) route_peer: Option<usize>,
    /// The hash of the session id whose route picked `sticky_peer` (live-session counts).
    pub(crate) session: Option<u64>,
}

/// Why pounce answers a request itself with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A path that cannot be read unambiguously (a malformed escape, `%00`, `..` above /).
    BadPath(UriError),
    /// Content-Length over `client_max_body_size`.
    BodyTooLarge(u64),
    /// `deny` matched.
    Forbidden,
    /// A protocol upgrade towards a backend protocol that cannot carry one (AJP).
    UpgradeUnsupported,
    /// The session's server is unusable and `sticky_force` is on.
    StickyForced { upstream: usize, peer: usize },
    /// No location and no handler.
    NotFound,
    /// `limit_req` or `limit_conn` refused it, with its `_status` (`ratelimit`, logged there).
    Limited(u16),
}

impl Refusal {
    /// Answered before nginx's preaccess phase, so before the limits: a malformed path, a
    /// body over the limit (nginx checks it when it picks the location).
    pub(crate) fn before_limits(self) -> bool {
        matches!(self, Refusal::BadPath(_) | Refusal::BodyTooLarge(_) | Refusal::Limited(_))
    }

    pub(crate) fn status(self) -> u16 {
        match self {
            Refusal::BadPath(_) => 400,
            Refusal::BodyTooLarge(_) => 413,
            Refusal::Forbidden => 403,
            Refusal::UpgradeUnsupported => 501,
            Refusal::StickyForced { .. } => 503,
            Refusal::NotFound => 404,
            Refusal::Limited(code) => code,
        }
    }

    pub(crate) fn text(self) -> Option<&'static str> {
        match self {
            Refusal::UpgradeUnsupported => Some("WebSocket and other protocol upgrades cannot be carried over AJP\n"),
            _ => None,
        }
    }
}

/// The handler of a request that matched no location in a server with a `root`.
const SERVE_ROOT: Handler = Handler::Static { alias: None };

/// Plans a parsed request. `scratch` holds the normalized path when it differs from the raw one.
pub(crate) fn plan<'c, 'r>(req: &httparse::Request<'_, 'r>, meta: &RequestMeta, conn: ConnFacts, rt: &'c Runtime, scratch: &'r mut Vec<u8>) -> Plan<'c, 'r> {
    // Without `set_real_ip_from` (the usual case) realip is one test of a length.
    let realip_of =
        |s: &Settings| if s.set_real_ip_from.is_empty() { None } else { realip::client(s, conn.peer, conn.origin.and_then(|o| o.proxy_protocol), req) };
    let http = &rt.cfg.http;
    let server = find_server(http, conn.listen, header(req, "host"));
    let srv = &http.servers[server];
    // realip with the server's settings first (nginx's post-read phase).
    let server_client = realip_of(&srv.settings);
    let path: &'r str = req.path.unwrap_or("/");
    // Locations match the path as Tomcat will read it; the raw path when nothing differs.
    let raw_path = uri::path_of(path.as_bytes());
    let normalized = if path == "*" {
        Ok(&b"/"[..])
    } else if uri::needs_normalizing(raw_path) {
        uri::normalize(raw_path, scratch).map(|()| &scratch[..])
    } else {
        Ok(raw_path)
    };
    let route_path = match normalized {
        Ok(p) => p,
        Err(e) => {
            let action = Action::Refuse(Refusal::BadPath(e));
            return Plan {
                server,
                loc: None,
                settings: &srv.settings,
                real_client: server_client,
                keep_alive: false,
                reads_body: false,
                route_path: b"/",
                action,
            };
        }
    };
    let loc = find_location(srv, route_path);
    let (settings, handler) = match loc {
        Some(i) => (&srv.locations[i].settings, &srv.locations[i].handler),
        // No location matched: a server-level `root` serves files, as in nginx.
        None if srv.settings.root.is_some() => (&srv.settings, &SERVE_ROOT),
        None => (&srv.settings, &Handler::None),
    };
    // Then with the location's, if the server's found nothing (nginx's pre-access phase).
    let real_client = if server_client.is_none() && loc.is_some() { realip_of(settings) } else { server_client };
    let refuse =
        |r: Refusal, keep_alive: bool| Plan { server, loc, settings, real_client, keep_alive, reads_body: keep_alive, route_path, action: Action::Refuse(r) };
    if let BodyKind::Length(n) = meta.body {
        if n > settings.client_max_body_size {
            return refuse(Refusal::BodyTooLarge(n), false);
        }
    }
    if !settings.access.is_empty() && !access_allowed(&settings.access, real_client.unwrap_or(conn.peer).ip()) {
        return refuse(Refusal::Forbidden, meta.keep_alive && !conn.draining);
    }
    let keep_alive =
        meta.keep_alive && !conn.draining && conn.served + 1 < settings.keepalive_requests && !settings.keepalive_timeout.is_zero() && !conn.client_closed;
    let action = match handler {
        Handler::Proxy { backend, .. } if meta.upgrade && !Adapter::can_upgrade(backend) => return refuse(Refusal::UpgradeUnsupported, false),
        Handler::Proxy { .. } if conn.client_closed && !settings.proxy_ignore_client_abort => Action::Abandon,
        Handler::Proxy { upstream, backend } => {
            let ups = &rt.upstreams[*upstream];
            let (mut sticky_peer, mut route_peer, mut session) = (None, None, None);
            if let Some(st) = &ups.conf.sticky {
                let now = now_ms();
                let (mut usable, mut named) = (None, None);
                sticky::for_each_route(path.as_bytes(), headers_named(req, "cookie"), st, |id, route| match ups.peer_for_route(route) {
                    Some(p) if ups.usable(p, now) => {
                        usable = Some(p);
                        session = Some(sessions::hash(id));
                        ControlFlow::Break(())
                    }
                    Some(p) => {
                        named.get_or_insert(p);
                        ControlFlow::Continue(())
                    }
                    None => ControlFlow::Continue(()),
                });
                if let (None, Some(peer), true) = (usable, named, st.force) {
                    return refuse(Refusal::StickyForced { upstream: *upstream, peer }, keep_alive);
                }
                sticky_peer = usable;
                route_peer = usable.or(named);
            }
            Action::Proxy(ProxyPlan { upstream: *upstream, backend, sticky_peer, route_peer, session })
        }
        Handler::Return { code, text } => Action::Return { code: *code, text: text.as_deref() },
        Handler::Static { alias } => Action::Static { alias: alias.as_deref(), loc_path: loc.map_or("/", |i| srv.locations[i].path.as_str()) },
        Handler::Status(access) => Action::StatusPage(*access),
        Handler::None => return refuse(Refusal::NotFound, keep_alive),
    };
    Plan { server, loc, settings, real_client, keep_alive, reads_body: true, route_path, action }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{empty_headers, parse, Parse, MAX_HEAD};
    use crate::upstream::activation;
    use std::path::PathBuf;
    use std::sync::atomic::Ordering::Relaxed;

    fn runtime(conf: &str) -> Runtime {
        let cfg = crate::config::load_text(conf.as_bytes(), &PathBuf::from("/nonexistent/t.conf"), &PathBuf::from("/nonexistent")).expect("valid config");
        Runtime::new(cfg, 1)
    }

    fn conn() -> ConnFacts<'static> {
        ConnFacts { listen: 0, peer: "127.0.0.1:5555".parse().expect("addr"), origin: None, served: 0, client_closed: false, draining: false }
    }

    /// Plans `raw` and hands the result to `check` (the plan borrows the request).
    fn with_plan(rt: &Runtime, raw: &str, conn: ConnFacts, check: impl FnOnce(&Plan)) {
        let mut h = empty_headers();
        let Parse::Done(req, meta) = parse(raw.as_bytes(), &mut h, MAX_HEAD) else { panic!("parse {raw:?}") };
        let mut scratch = Vec::new();
        let p = plan(&req, &meta, conn, rt, &mut scratch);
        check(&p);
    }

    const CONF: &str = "http {
        upstream app { sticky_route; server 127.0.0.1:1 route=a; server 127.0.0.1:2 route=b; }
        upstream forced { sticky_route; sticky_force on; server 127.0.0.1:3 route=a; server 127.0.0.1:4 route=b; }
        server {
            listen 127.0.0.1:8080;
            server_name one.example;
            location / { proxy_pass http://app; }
            location /ajp/ { proxy_pass ajp://app; }
            location /forced/ { proxy_pass http://forced; }
            location = /hello { return 200 \"hi\"; }
            location /static/ { root /srv; }
            location /status { status; allow 10.0.0.0/8; deny all; }
            location /small/ { client_max_body_size 10; proxy_pass http://app; }
            location /keep/ { proxy_ignore_client_abort on; proxy_pass http://app; }
        }
        server { listen 127.0.0.1:8080; server_name two.example; }
    }";

    #[test]
    fn server_location_and_action() {
        let rt = runtime(CONF);
        with_plan(&rt, "GET /x HTTP/1.1\r\nHost: one.example\r\n\r\n", conn(), |p| {
            assert_eq!((p.server, p.loc), (0, Some(0)));
            assert!(p.keep_alive);
            assert!(matches!(
                &p.action,
                Action::Proxy(ProxyPlan { upstream: 0, backend: BackendConf::Http, sticky_peer: None, route_peer: None, session: None })
            ));
        });
        with_plan(&rt, "GET /hello HTTP/1.1\r\nHost: one.example\r\n\r\n", conn(), |p| {
            assert!(matches!(p.action, Action::Return { code: 200, text: Some(_) }));
        });
        with_plan(&rt, "GET /static/a.css HTTP/1.1\r\nHost: one.example\r\n\r\n", conn(), |p| {
            assert_eq!(p.action, Action::Static { alias: None, loc_path: "/static/" });
        });
        with_plan(&rt, "GET /x HTTP/1.1\r\nHost: two.example\r\n\r\n", conn(), |p| {
            assert_eq!((p.server, p.action.clone_refusal()), (1, Some(Refusal::NotFound)));
        });
        with_plan(&rt, "GET /x HTTP/1.0\r\nHost: one.example\r\n\r\n", conn(), |p| assert!(!p.keep_alive, "HTTP/1.0 without keep-alive"));
    }

    #[test]
    fn refusals() {
        let rt = runtime(CONF);
        with_plan(&rt, "GET /status HTTP/1.1\r\nHost: one.example\r\n\r\n", conn(), |p| {
            assert_eq!(p.action, Action::Refuse(Refusal::Forbidden));
            assert!(p.keep_alive, "a 403 keeps the connection");
        });
        let inside = ConnFacts { peer: "10.1.2.3:1".parse().expect("addr"), ..conn() };
        with_plan(&rt, "GET /status HTTP/1.1\r\nHost: one.example\r\n\r\n", inside, |p| assert_eq!(p.action, Action::StatusPage(StatusAccess::Manage)));
        with_plan(&rt, "POST /small/ HTTP/1.1\r\nHost: one.example\r\nContent-Length: 11\r\n\r\n", conn(), |p| {
            assert_eq!((p.action.clone_refusal(), p.keep_alive, p.reads_body), (Some(Refusal::BodyTooLarge(11)), false, false));
        });
        with_plan(&rt, "GET /a/%2e%2e/%2e%2e/x HTTP/1.1\r\nHost: one.example\r\n\r\n", conn(), |p| {
            assert!(matches!(p.action, Action::Refuse(Refusal::BadPath(_))));
        });
        with_plan(&rt, "GET /ajp/ws HTTP/1.1\r\nHost: one.example\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n", conn(), |p| {
            assert_eq!((p.action.clone_refusal(), p.keep_alive), (Some(Refusal::UpgradeUnsupported), false));
        });
        with_plan(&rt, "GET /ws HTTP/1.1\r\nHost: one.example\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n", conn(), |p| {
            assert!(matches!(p.action, Action::Proxy(_)), "HTTP carries upgrades");
        });
    }

    #[test]
    fn normalized_path_picks_the_location() {
        let rt = runtime(CONF);
        with_plan(&rt, "GET /%73tatic/../static/x.css HTTP/1.1\r\nHost: one.example\r\n\r\n", conn(), |p| {
            assert_eq!(p.route_path, b"/static/x.css");
            assert_eq!(p.loc, Some(4));
        });
    }

    #[test]
    fn sticky_routes_and_force() {
        let rt = runtime(CONF);
        with_plan(&rt, "GET / HTTP/1.1\r\nHost: one.example\r\nCookie: JSESSIONID=X.b\r\n\r\n", conn(), |p| {
            assert!(matches!(p.action, Action::Proxy(ProxyPlan { sticky_peer: Some(1), route_peer: Some(1), session: Some(_), .. })));
        });
        rt.upstreams[0].peers[1].activation.store(activation::STOPPED, Relaxed);
        with_plan(&rt, "GET /;jsessionid=X.b HTTP/1.1\r\nHost: one.example\r\n\r\n", conn(), |p| {
            assert!(matches!(p.action, Action::Proxy(ProxyPlan { sticky_peer: None, route_peer: Some(1), .. })), "fails over: {:?}", p.action);
        });
        rt.upstreams[1].peers[1].activation.store(activation::STOPPED, Relaxed);
        with_plan(&rt, "GET /forced/ HTTP/1.1\r\nHost: one.example\r\nCookie: JSESSIONID=X.b\r\n\r\n", conn(), |p| {
            assert_eq!(p.action, Action::Refuse(Refusal::StickyForced { upstream: 1, peer: 1 }));
        });
    }

    #[test]
    fn a_client_that_already_left_is_not_proxied() {
        let rt = runtime(CONF);
        let gone = ConnFacts { client_closed: true, ..conn() };
        with_plan(&rt, "GET /x HTTP/1.1\r\nHost: one.example\r\n\r\n", gone, |p| assert_eq!(p.action, Action::Abandon));
        with_plan(&rt, "GET /keep/x HTTP/1.1\r\nHost: one.example\r\n\r\n", gone, |p| {
            assert!(matches!(p.action, Action::Proxy(_)), "proxy_ignore_client_abort on");
            assert!(!p.keep_alive);
        });
        with_plan(&rt, "GET /hello HTTP/1.1\r\nHost: one.example\r\n\r\n", gone, |p| assert!(matches!(p.action, Action::Return { .. })));
    }

    #[test]
    fn keep_alive_limits() {
        let rt = runtime(CONF);
        with_plan(&rt, "GET /x HTTP/1.1\r\nHost: one.example\r\n\r\n", ConnFacts { served: 999, ..conn() }, |p| assert!(!p.keep_alive, "keepalive_requests"));
        with_plan(&rt, "GET /x HTTP/1.1\r\nHost: one.example\r\n\r\n", ConnFacts { draining: true, ..conn() }, |p| assert!(!p.keep_alive));
    }

    /// realip as nginx phases it: the server's settings first; the location's only when those
    /// found nothing; allow/deny judge the address found.
    #[test]
    fn real_client_address() {
        let rt = runtime(
            "http { server { listen 127.0.0.1:8080; set_real_ip_from 127.0.0.1;
                location / { return 200; }
                location /pp/ { set_real_ip_from 10.0.0.0/8; real_ip_header proxy_protocol; return 200; }
                location /admin/ { allow 203.0.113.0/24; deny all; return 200; }
            } }",
        );
        let get = |path: &str, xri: &str| format!("GET {path} HTTP/1.1\r\nHost: a\r\nX-Real-IP: {xri}\r\n\r\n");
        let origin = ConnOrigin { peer: "10.1.1.1:4000".parse().expect("addr"), proxy_protocol: Some("198.51.100.7:5000".parse().expect("addr")) };
        let lb = ConnFacts { peer: origin.peer, origin: Some(&origin), ..conn() };
        let client = |p: &Plan| p.real_client.map_or("the peer".to_string(), |a| a.to_string());
        // Trusted by the server's settings: X-Real-IP.
        with_plan(&rt, &get("/", "203.0.113.5"), conn(), |p| assert_eq!(client(p), "203.0.113.5:0"));
        // Untrusted peer: its claim is ignored, the peer stays the client.
        with_plan(&rt, &get("/", "203.0.113.5"), lb, |p| assert_eq!(client(p), "the peer"));
        // The server's settings found nothing, so the location's apply: the PROXY header.
        with_plan(&rt, &get("/pp/", "203.0.113.5"), lb, |p| assert_eq!(client(p), "198.51.100.7:5000"));
        // The server's settings found something: the location's are not asked.
        with_plan(&rt, &get("/pp/", "203.0.113.5"), conn(), |p| assert_eq!(client(p), "203.0.113.5:0"));
        // allow/deny judge the real address, not the peer's.
        with_plan(&rt, &get("/admin/", "203.0.113.5"), conn(), |p| assert!(matches!(p.action, Action::Return { .. })));
        with_plan(&rt, &get("/admin/", "198.51.100.1"), conn(), |p| assert_eq!(p.action.clone_refusal(), Some(Refusal::Forbidden)));
        // A bad path is refused with the server's finding.
        with_plan(&rt, &get("/a/%2e%2e/%2e%2e/x", "203.0.113.5"), conn(), |p| assert_eq!(client(p), "203.0.113.5:0"));
    }

    impl Action<'_> {
        fn clone_refusal(&self) -> Option<Refusal> {
            match self {
                Action::Refuse(r) => Some(*r),
                _ => None,
            }
        }
    }
}
