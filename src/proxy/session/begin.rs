//! A request's start: parse the head, plan it (`proxy::plan`: server, location, action), then
//! begin the exchange the plan calls for. Everything that needs the parsed head is worked out
//! first (the plan, the encoded backend head, a rendered `return` text, a static file's
//! answer); then the head leaves `cin` and the exchange starts.

use super::access::{cin_line, HeadView};
use super::{ClientPhase, Delayed, Session};
use crate::backend::http::put_template;
use crate::backend::{Adapter, ForwardRequest, Protocol};
use crate::buffer::{Buf, StackText};
use crate::config::Part;
use crate::http::request::{self, header, Method, Parse, RequestMeta};
use crate::proxy::client::set_real_client;
use crate::proxy::exchange::{static_answer, Exchange, Phase, ProxyState, StaticAnswer, StaticConditions, StatusReq};
use crate::proxy::plan::{self, Action, ConnFacts, ProxyPlan, Refusal};
use crate::proxy::{Closed, Res};
use crate::ratelimit::{self, ReqStatus, Verdict, Who};
use crate::reactor::Ctx;
use crate::runtime::Runtime;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Duration;

/// What the parsed head led to, held until the head has left `cin`.
enum Start<'c> {
    /// pounce answers itself.
    Answer(Exchange, u16, Option<Cow<'c, str>>),
    Static(Exchange, StaticAnswer),
    /// The exchange is set up in its first phase (status page: collecting its form).
    Ready(Exchange),
    Proxy(Exchange),
    /// The client already left: logged as 499, nothing sent.
    Abandon(Exchange),
}

impl Session {
    /// Starts the request at the head of `cin` once it is complete. True when one started.
    pub(super) fn begin(&mut self, ctx: &mut Ctx) -> Res<bool> {
        let now = ctx.now;
        let Some(cin) = self.client.cin.as_ref() else { return Ok(false) };
        if cin.is_empty() {
            self.phase = ClientPhase::ReadingHead { since: None };
            return Ok(false);
        }
        if let ClientPhase::ReadingHead { since: since @ None } = &mut self.phase {
            *since = Some(now);
        }
        let rt = ctx.rt.clone();
        let mut headers = request::empty_headers();
        let (req, meta) = match request::parse(cin.data(), &mut headers, request::MAX_HEAD) {
            Parse::Partial if self.client.transport.read_closed() => return Err(Closed::ByUs),
            Parse::Partial => return Ok(false),
            Parse::Downgrade(at) => {
                // HTTP/1.2 and later 1.x: served as HTTP/1.1 (RFC 9112 §2.6); read again.
                if let Some(cin) = self.client.cin.as_mut() {
                    cin.data_mut()[at] = b'1';
                }
                return Ok(true);
            }
            Parse::Reject(status, why) => {
                log::info!("client {}: {} while reading request, answering {}", self.client.peer, why, status);
                let line = cin_line(cin.data());
                let server = rt.cfg.http.listens[self.client.listen].default_server;
                if let Some(al) = rt.cfg.http.servers[server].settings.access_log {
                    let server_name = rt.cfg.http.servers[server].names.first().map_or("", String::as_str);
                    self.log.capture(&rt.cfg.http.log_formats[al.format].captures, &HeadView { req: None, line, uri: b"", server_name });
                }
                let mut meta = RequestMeta::placeholder();
                if line.starts_with(b"HEAD ") {
                    // An error answer to HEAD has no body either.
                    meta.method = Method::Head;
                }
                self.client.sent = 0;
                let ex = Exchange::new(now, server, None, meta, false);
                return self.start(ctx, Start::Answer(ex, status, None), 0).map(|_| true);
            }
            Parse::Done(req, meta) => (req, meta),
        };
        let c = &self.client;
        let conn = ConnFacts {
            listen: c.listen,
            peer: c.conn_peer(),
            origin: c.origin.as_deref(),
            served: self.served,
            client_closed: c.transport.peer_closed(),
            draining: ctx.draining,
        };
        let plan = plan::plan(&req, &meta, conn, &rt, &mut self.path_scratch);
        // The request's client is the one realip found, if it found one.
        if let Some(real) = plan.real_client {
            set_real_client(&mut self.client.peer, &mut self.client.origin, real);
        }
        let (peer, local_port) = (self.client.peer, self.client.local_port);
        let settings = plan.settings;
        let srv = &rt.cfg.http.servers[plan.server];
        let server_name = srv.names.first().map_or("", |s| s.as_str());
        if let Some(al) = settings.access_log {
            let head = HeadView { req: Some(&req), line: cin_line(cin.data()), uri: plan.route_path, server_name };
            self.log.capture(&rt.cfg.http.log_formats[al.format].captures, &head);
        }
        self.client.sent = 0;
        // Made only for the rare request without Host (its buffer is not even zeroed otherwise).
        let made: StackText<320>;
        let default_host = match header(&req, "host") {
            Some(_) => server_name,
            None => {
                made = default_host(&srv.names, local_port, || self.client.transport.local_addr());
                std::str::from_utf8(made.as_bytes()).unwrap_or("")
            }
        };
        let fr = ForwardRequest {
            default_host,
            tls: self.client.transport.tls_info(),
            uri: plan.route_path,
            origin: self.client.origin.as_deref(),
            ..ForwardRequest::new(&req, &meta, peer, local_port, server_name, settings)
        };
        let mut ex = Exchange::new(now, plan.server, plan.loc, meta, plan.keep_alive);
        if plan.reads_body {
            ex = ex.expect_body();
        }
        ex.abort_with_client = !settings.proxy_ignore_client_abort;
        if settings.gzip {
            ex.gzip = Some(crate::gzip::ClientGzip::of(&req, meta.minor));
        }
        // nginx's preaccess phase: after the location, before access rules and content.
        let limited = (!settings.limit_req.is_empty() || !settings.limit_conn.is_empty())
            && match &plan.action {
                Action::Return { .. } | Action::Abandon => false,
                Action::Refuse(r) => !r.before_limits(),
                _ => true,
            };
        let verdict = if limited {
            let who = Who { client: peer.ip(), server_name, request: cin_line(cin.data()), host: header(&req, "host") };
            let mut none = Vec::new();
            let holds = if settings.limit_conn.is_empty() { &mut none } else { &mut **self.holds.get_or_insert_with(Box::default) };
            ratelimit::check(&rt.zones, &rt.cfg.http, settings, &who, ctx.now_ms, &mut self.marks, holds)
        } else {
            Verdict::Go
        };
        match verdict {
            Verdict::Delay(ms) => {
                self.phase = ClientPhase::Delayed(Box::new(Delayed { until: now + Duration::from_millis(ms), ex }));
                return Ok(true);
            }
            _ if self.marks.req == Some(ReqStatus::Delayed) => {
                // Begun again after its delay: timed from its first start.
                if let ClientPhase::ReadingHead { since: Some(t) } = self.phase {
                    ex.start = t;
                }
            }
            _ => {}
        }
        let action = if let Verdict::Refuse(code) = verdict { Action::Refuse(Refusal::Limited(code)) } else { plan.action };
        let start = match action {
            Action::Refuse(r) => {
                log_refusal(&rt, r, peer, cin_line(cin.data()));
                Start::Answer(ex, r.status(), r.text().map(Cow::Borrowed))
            }
            Action::Return { code, text } => Start::Answer(ex, code, text.map(|parts| render(parts, &fr))),
            Action::Static { alias, loc_path } => {
                let conditions = StaticConditions {
                    if_none_match: header(&req, "if-none-match"),
                    if_modified_since: header(&req, "if-modified-since"),
                    range: header(&req, "range"),
                };
                let answer = static_answer(req.method.unwrap_or(""), req.path.unwrap_or("/"), plan.route_path, settings, alias, loc_path, &conditions);
                Start::Static(ex, answer)
            }
            Action::StatusPage(access) => {
                ex.continue_pending = false;
                let text = |name: &str| header(&req, name).map(|v| String::from_utf8_lossy(v).into_owned());
                ex.phase = Phase::CollectingForm(Box::new(StatusReq {
                    method: req.method.unwrap_or("GET").to_string(),
                    target: req.path.unwrap_or("/").to_string(),
                    accept: header(&req, "accept").map_or_else(Vec::new, <[u8]>::to_vec),
                    form: Vec::new(),
                    client: peer,
                    host: text("host").unwrap_or_default(),
                    origin: text("origin"),
                    referer: text("referer"),
                    access,
                }));
                Start::Ready(ex)
            }
            Action::Proxy(pp) => match backend_head(ctx, &mut self.client.cout, &rt, &pp, &fr) {
                Ok(px) => {
                    ex.proxy = Some(px);
                    Start::Proxy(ex)
                }
                Err(status) => {
                    ex.keep_alive &= status != 503;
                    Start::Answer(ex, status, None)
                }
            },
            Action::Abandon => {
                log::info!("client {} closed the connection before its request could be sent", peer);
                Start::Abandon(ex)
            }
        };
        self.start(ctx, start, meta.head_len).map(|_| true)
    }

    /// The head leaves `cin` and the exchange begins.
    fn start(&mut self, ctx: &mut Ctx, start: Start, head_len: usize) -> Res<()> {
        if let Some(cin) = self.client.cin.as_mut() {
            cin.consume(head_len);
        }
        let c = &mut self.client;
        let ex = match start {
            Start::Answer(mut ex, code, text) => {
                let r = ex.answer(c, ctx, code, text.as_deref());
                self.phase = ClientPhase::Exchange(ex);
                return r;
            }
            Start::Static(mut ex, answer) => {
                let r = ex.answer_static(c, ctx, answer);
                self.phase = ClientPhase::Exchange(ex);
                return r;
            }
            Start::Ready(ex) => ex,
            Start::Proxy(mut ex) => {
                let r = ex.connect(c, ctx);
                self.phase = ClientPhase::Exchange(ex);
                return r;
            }
            Start::Abandon(ex) => {
                self.phase = ClientPhase::Exchange(ex);
                return Err(Closed::ByClient);
            }
        };
        self.phase = ClientPhase::Exchange(ex);
        Ok(())
    }
}

/// A `return` text: literal text as it is, variables rendered (a `return` is not the proxy
/// path, so a small allocation here is fine).
fn render<'c>(parts: &'c [Part], fr: &ForwardRequest) -> Cow<'c, str> {
    match parts {
        [] => Cow::Borrowed(""),
        [Part::Lit(s)] => Cow::Borrowed(s.as_str()),
        _ => {
            let mut b = Buf::standalone(8192);
            put_template(&mut b, parts, fr);
            Cow::Owned(String::from_utf8_lossy(b.data()).into_owned())
        }
    }
}

/// What stands for Host when the client sent none: the server's first plain name (no
/// wildcard, no `_`, which backends may refuse), else the address the client connected to;
/// with the port unless it is 80.
fn default_host(names: &[String], port: u16, local: impl FnOnce() -> std::io::Result<SocketAddr>) -> StackText<320> {
    use std::fmt::Write as _;
    let mut out = StackText::new();
    let plain = |n: &&String| !n.is_empty() && !n.starts_with('.') && n.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-');
    let _ = match (names.iter().find(plain), local()) {
        (Some(name), _) => write!(out, "{}", name),
        (None, Ok(SocketAddr::V6(a))) => write!(out, "[{}]", a.ip()),
        (None, Ok(a)) => write!(out, "{}", a.ip()),
        (None, Err(_)) => write!(out, "localhost"),
    };
    if port != 80 {
        let _ = write!(out, ":{}", port);
    }
    out
}

/// Encodes the request for its backend into a pooled buffer, kept for retries. The response
/// buffer is taken now and the backend's two must be there: an exchange that starts can
/// always finish, so a full pool answers 503 instead of stalling half-way. Err: the status
/// pounce answers instead (503 out of buffers, 431 a head too large to forward).
fn backend_head(ctx: &mut Ctx, cout: &mut Option<Buf>, rt: &Runtime, pp: &ProxyPlan, fr: &ForwardRequest) -> Result<ProxyState, u16> {
    let ups = &rt.upstreams[pp.upstream];
    if cout.is_none() {
        *cout = ctx.pool.get();
    }
    let head = if cout.is_some() && ctx.pool.available() >= 3 { ctx.pool.get() } else { None };
    let Some(mut head) = head else {
        log::error!("client {}: buffer pool exhausted (worker_buffers), answering 503", fr.client);
        return Err(503);
    };
    let fr = ForwardRequest {
        proxy_host: &ups.conf.name,
        keepalive: ups.conf.keepalive.enabled(),
        backend: pp.backend,
        route: pp.sticky_peer.and_then(|p| ups.conf.servers[p].route.as_deref()),
        ..*fr
    };
    if !Adapter::for_request(pp.backend, fr.meta).encode_head(&fr, &mut head) {
        log::info!("client {}: request head too large to forward", fr.client);
        return Err(431);
    }
    // Behind the head, the authority the client addressed, for redirect rewriting (left
    // empty in the rare head that fills the buffer: then nothing is rewritten).
    let head_len = head.len();
    let authority = header(fr.req, "host").map_or(fr.default_host.as_bytes(), request::trim);
    let span = if head.put_all(authority) { (head_len, authority.len()) } else { (0, 0) };
    Ok(ProxyState::new(pp, ups.conf.servers.len(), head, head_len, span))
}

/// The error-log line of a refusal.
fn log_refusal(rt: &Runtime, r: Refusal, peer: SocketAddr, line: &[u8]) {
    match r {
        Refusal::BadPath(e) => log::info!("client {}: {}, answering 400", peer, e.describe()),
        Refusal::BodyTooLarge(n) => log::info!("client {}: body of {} bytes is over client_max_body_size", peer, n),
        Refusal::Forbidden => log::error!("access forbidden by rule, client: {}, request: \"{}\"", peer, String::from_utf8_lossy(line)),
        Refusal::UpgradeUnsupported => log::info!("client {}: protocol upgrade refused: AJP cannot carry it", peer),
        Refusal::StickyForced { upstream, peer: server } => {
            let ups = &rt.upstreams[upstream];
            log::warn!(
                "route of server {} in upstream \"{}\" is unusable and sticky_force is on: 503, client: {}",
                ups.conf.servers[server].addr,
                ups.conf.name,
                peer
            );
        }
        Refusal::NotFound | Refusal::Limited(_) => {}
    }
}
