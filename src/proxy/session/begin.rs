//! A request's start: parse the head, plan it (`proxy::plan`: server, location, action), then
//! begin the exchange the plan calls for. Everything that needs the parsed head is worked out
//! first (the plan, the encoded backend head, a rendered `return` text, a static file's
//! answer); then the head leaves `cin` and the exchange starts.

use super::access::{cin_line, request_log_fields};
use super::{ClientPhase, Session};
use crate::backend::http::put_template;
use crate::backend::{Adapter, ForwardRequest, Protocol};
use crate::buffer::Buf;
use crate::config::Part;
use crate::http::request::{self, header, Parse, RequestMeta};
use crate::proxy::exchange::{static_answer, Exchange, Phase, ProxyState, StaticAnswer, StaticConditions, StatusReq};
use crate::proxy::plan::{self, Action, ConnFacts, Refusal};
use crate::proxy::{Closed, Res};
use crate::reactor::Ctx;
use std::borrow::Cow;

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
            Parse::Reject(status, why) => {
                log::info!("client {}: {} while reading request, answering {}", self.client.peer, why, status);
                self.log.fill(cin_line(cin.data()), b"", b"");
                let server = rt.cfg.http.listens[self.client.listen].default_server;
                let ex = Exchange::new(now, server, None, RequestMeta::placeholder(), false);
                return self.start(ctx, Start::Answer(ex, status, None), 0).map(|_| true);
            }
            Parse::Done(req, meta) => (req, meta),
        };
        let (peer, local_port) = (self.client.peer, self.client.local_port);
        let conn =
            ConnFacts { listen: self.client.listen, peer, served: self.served, client_closed: self.client.transport.peer_closed(), draining: ctx.draining };
        let plan = plan::plan(&req, &meta, conn, &rt, &mut self.path_scratch);
        let settings = plan.settings;
        if settings.access_log.is_some() {
            let (line, referer, ua) = request_log_fields(&req, cin.data());
            self.log.fill(line, referer, ua);
        }
        let srv = &rt.cfg.http.servers[plan.server];
        let server_name = srv.names.first().map_or("", |s| s.as_str());
        let mut ex = Exchange::new(now, plan.server, plan.loc, meta, plan.keep_alive);
        if plan.reads_body {
            ex = ex.expect_body();
        }
        ex.abort_with_client = !settings.proxy_ignore_client_abort;
        let path = req.path.unwrap_or("/");
        let start = match plan.action {
            Action::Refuse(r) => {
                match r {
                    Refusal::BadPath(e) => log::info!("client {}: {}, answering 400", peer, e.describe()),
                    Refusal::BodyTooLarge(n) => log::info!("client {}: body of {} bytes is over client_max_body_size", peer, n),
                    Refusal::Forbidden => {
                        log::error!("access forbidden by rule, client: {}, request: \"{}\"", peer, String::from_utf8_lossy(cin_line(cin.data())))
                    }
                    Refusal::UpgradeUnsupported => log::info!("client {}: protocol upgrade refused: AJP cannot carry it", peer),
                    Refusal::StickyForced { upstream, peer } => {
                        let ups = &rt.upstreams[upstream];
                        log::warn!(
                            "route of server {} in upstream \"{}\" is unusable and sticky_force is on: 503, client: {}",
                            ups.conf.servers[peer].addr,
                            ups.conf.name,
                            peer
                        );
                    }
                    Refusal::NotFound => {}
                }
                Start::Answer(ex, r.status(), r.text().map(Cow::Borrowed))
            }
            Action::Return { code, text } => {
                // Literal text is used as it is; variables are rendered (a `return` is not
                // the proxy path, so a small allocation here is fine).
                let rendered = text.map(|parts| match parts {
                    [] => Cow::Borrowed(""),
                    [Part::Lit(s)] => Cow::Borrowed(s.as_str()),
                    _ => Cow::Owned(render_template(parts, &ForwardRequest::new(&req, &meta, peer, local_port, server_name, settings))),
                });
                Start::Answer(ex, code, rendered)
            }
            Action::Static { alias, loc_path } => {
                let conditions = StaticConditions {
                    if_none_match: header(&req, "if-none-match"),
                    if_modified_since: header(&req, "if-modified-since"),
                    range: header(&req, "range"),
                };
                let answer = static_answer(req.method.unwrap_or(""), path, plan.route_path, settings, alias, loc_path, &conditions);
                Start::Static(ex, answer)
            }
            Action::StatusPage => {
                ex.continue_pending = false;
                ex.phase = Phase::CollectingForm(Box::new(StatusReq {
                    method: req.method.unwrap_or("GET").to_string(),
                    target: path.to_string(),
                    accept: header(&req, "accept").map_or_else(Vec::new, <[u8]>::to_vec),
                    form: Vec::new(),
                }));
                Start::Ready(ex)
            }
            Action::Proxy(pp) => {
                let ups = &rt.upstreams[pp.upstream];
                // The response buffer is taken now and the backend's two must be there: an
                // exchange that starts can always finish, so a full pool answers 503 instead
                // of stalling half-way.
                if self.client.cout.is_none() {
                    self.client.cout = ctx.pool.get();
                }
                let head = if self.client.cout.is_some() && ctx.pool.available() >= 3 { ctx.pool.get() } else { None };
                match head {
                    None => {
                        log::error!("client {}: buffer pool exhausted (worker_buffers), answering 503", peer);
                        ex.keep_alive = false;
                        Start::Answer(ex, 503, None)
                    }
                    Some(mut head) => {
                        let fr = ForwardRequest {
                            proxy_host: &ups.conf.name,
                            keepalive: ups.conf.keepalive > 0,
                            backend: pp.backend,
                            route: pp.sticky_peer.and_then(|p| ups.conf.servers[p].route.as_deref()),
                            ..ForwardRequest::new(&req, &meta, peer, local_port, server_name, settings)
                        };
                        match Adapter::for_request(pp.backend, &meta).encode_head(&fr, &mut head) {
                            Some(host) => {
                                ex.proxy = Some(ProxyState::new(pp.upstream, head, host, pp.sticky_peer, pp.route_peer));
                                Start::Proxy(ex)
                            }
                            None => {
                                log::info!("client {}: request head too large to forward", peer);
                                Start::Answer(ex, 431, None)
                            }
                        }
                    }
                }
            }
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

/// Renders a `return` text with variables.
fn render_template(parts: &[Part], fr: &ForwardRequest) -> String {
    let mut b = Buf::standalone(8192);
    put_template(&mut b, parts, fr);
    String::from_utf8_lossy(b.data()).into_owned()
}
