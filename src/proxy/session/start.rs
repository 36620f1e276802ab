//! Starting a request: parse the head, route it to a server and location, and begin the
//! exchange its handler calls for (proxy, `return`, static file, status page).

use super::*;

impl Session {
    pub(super) fn try_start_request(&mut self, ctx: &mut Ctx) -> Res<bool> {
        if self.closing {
            return Ok(false);
        }
        let Some(cin) = self.cin.as_ref() else { return Ok(false) };
        if cin.is_empty() {
            self.head_started = None;
            return Ok(false);
        }
        if self.head_started.is_none() {
            self.head_started = Some(ctx.now);
        }
        let rt = ctx.rt.clone();
        let http = &rt.cfg.http;
        let mut headers = request::empty_headers();
        let parsed = request::parse(cin.data(), &mut headers, request::MAX_HEAD);
        let (req, meta) = match parsed {
            Parse::Partial => {
                if self.c_eof {
                    return Err(Closed);
                }
                return Ok(false);
            }
            Parse::Reject(status, why) => {
                log::info!("client {}: {} while reading request, answering {}", self.peer, why, status);
                let server = http.listens[self.listen].default_server;
                let settings = &http.servers[server].settings;
                fill_log(&mut self.log_fields, &mut self.log_ends, cin_line(cin.data()), b"", b"");
                let mut ex = Exchange::new(ctx.now, server, usize::MAX, None, Handling::Respond);
                ex.keep_alive = false;
                self.ex = Some(ex);
                self.state = State::Active;
                self.respond(ctx, status, None, settings)?;
                return Ok(true);
            }
            Parse::Done(req, meta) => (req, meta),
        };
        let host = req.headers.iter().find(|h| h.name.eq_ignore_ascii_case("host")).map(|h| h.value);
        let server_idx = find_server(http, self.listen, host);
        let server = &http.servers[server_idx];
        let server_name = server.names.first().map_or("", |s| s.as_str());
        let path = req.path.unwrap_or("/");
        // Locations match the path as Tomcat will read it; the raw path when nothing differs.
        let raw_path = uri::path_of(path.as_bytes());
        let route_path: &[u8] = if path == "*" {
            b"/"
        } else if uri::needs_normalizing(raw_path) {
            if let Err(e) = uri::normalize(raw_path, &mut self.path_scratch) {
                log::info!("client {}: {}, answering 400", self.peer, e.describe());
                fill_log(&mut self.log_fields, &mut self.log_ends, cin_line(cin.data()), b"", b"");
                let settings = &server.settings;
                let mut ex = Exchange::new(ctx.now, server_idx, usize::MAX, Some(meta), Handling::Respond);
                ex.keep_alive = false;
                self.start_exchange(ex, meta.head_len);
                self.respond(ctx, 400, None, settings)?;
                return Ok(true);
            }
            &self.path_scratch
        } else {
            raw_path
        };
        let loc_idx = find_location(server, route_path);
        let (settings, handler) = match loc_idx {
            Some(i) => (&server.locations[i].settings, &server.locations[i].handler),
            // No location matched: a server-level `root` serves files, as in nginx.
            None if server.settings.root.is_some() => (&server.settings, &SERVE_ROOT),
            None => (&server.settings, &Handler::None),
        };
        // The fields are copied only when this location logs.
        if settings.access_log.is_some() {
            let fields = request_log_fields(&req, cin.data());
            fill_log(&mut self.log_fields, &mut self.log_ends, fields.0, fields.1, fields.2);
        }
        let body = match meta.body {
            BodyKind::Length(n) if n > settings.client_max_body_size => {
                let mut ex = Exchange::new(ctx.now, server_idx, loc_idx.unwrap_or(usize::MAX), Some(meta), Handling::Respond);
                ex.keep_alive = false;
                self.start_exchange(ex, meta.head_len);
                log::info!(
                    "client {}: body of {} bytes is over client_max_body_size",
                    self.peer,
                    match meta.body {
                        BodyKind::Length(n) => n,
                        _ => 0,
                    }
                );
                self.respond(ctx, 413, None, settings)?;
                return Ok(true);
            }
            b => b,
        };
        if !settings.access.is_empty() && !access_allowed(&settings.access, self.peer.ip()) {
            log::error!("access forbidden by rule, client: {}, request: \"{}\"", self.peer, String::from_utf8_lossy(cin_line(cin.data())));
            let mut ex = Exchange::new(ctx.now, server_idx, loc_idx.unwrap_or(usize::MAX), Some(meta), Handling::Respond);
            ex.set_body(body);
            ex.keep_alive = meta.keep_alive && !ctx.draining;
            self.start_exchange(ex, meta.head_len);
            self.respond(ctx, 403, None, settings)?;
            return Ok(true);
        }
        let keep_alive =
            meta.keep_alive && !ctx.draining && self.served + 1 < settings.keepalive_requests && !settings.keepalive_timeout.is_zero() && !self.c_eof;
        match handler {
            Handler::Proxy { backend: BackendConf::Ajp(_), .. } if meta.upgrade => {
                let mut ex = Exchange::new(ctx.now, server_idx, loc_idx.unwrap_or(usize::MAX), Some(meta), Handling::Respond);
                ex.keep_alive = false;
                self.start_exchange(ex, meta.head_len);
                log::info!("client {}: protocol upgrade refused: AJP cannot carry it", self.peer);
                self.respond(ctx, 501, Some("WebSocket and other protocol upgrades cannot be carried over AJP\n"), settings)?;
            }
            Handler::Proxy { upstream, backend } => {
                let upstream = *upstream;
                let ups = &rt.upstreams[upstream];
                let mut ex = Exchange::new(ctx.now, server_idx, loc_idx.unwrap_or(usize::MAX), Some(meta), Handling::Proxy { upstream });
                ex.keep_alive = keep_alive;
                ex.set_body(body);
                // Location values win over the upstream's (no copies: borrowed from the config).
                let secret = match backend {
                    BackendConf::Ajp(p) => {
                        ex.kind = BackendKind::Ajp { packet_size: p.packet_size, ping: p.ping_timeout };
                        p.secret.as_deref()
                    }
                    BackendConf::Http => None,
                };
                // The response buffer is taken now and the backend's two must be there: an
                // exchange that starts can always finish, so a full pool answers 503 instead
                // of stalling half-way.
                if self.cout.is_none() {
                    self.cout = ctx.pool.get();
                }
                let head = if self.cout.is_some() && ctx.pool.available() >= 3 { ctx.pool.get() } else { None };
                let Some(mut head) = head else {
                    log::error!("client {}: buffer pool exhausted (worker_buffers), answering 503", self.peer);
                    ex.keep_alive = false;
                    self.start_exchange(ex, meta.head_len);
                    self.respond(ctx, 503, None, settings)?;
                    return Ok(true);
                };
                let fr = ForwardRequest {
                    proxy_host: &ups.conf.name,
                    keepalive: ups.conf.keepalive > 0,
                    ajp_secret: secret,
                    ..ForwardRequest::new(&req, &meta, self.peer, self.local_port, server_name, settings)
                };
                // Sticky routes: the server named by the session's route, if it can serve.
                if let Some(st) = &ups.conf.sticky {
                    let now = now_ms();
                    let cookies = req.headers.iter().filter(|h| h.name.eq_ignore_ascii_case("cookie")).map(|h| h.value);
                    let (mut usable, mut named) = (None, None);
                    sticky::for_each_route(path.as_bytes(), cookies, st, |route| match ups.peer_for_route(route) {
                        Some(p) if ups.usable(p, now) => {
                            usable = Some(p);
                            ControlFlow::Break(())
                        }
                        Some(p) => {
                            named.get_or_insert(p);
                            ControlFlow::Continue(())
                        }
                        None => ControlFlow::Continue(()),
                    });
                    ex.sticky_peer = usable;
                    ex.route_peer = usable.or(named);
                    if usable.is_none() && st.force {
                        if let Some(p) = named {
                            log::warn!(
                                "route of server {} in upstream \"{}\" is unusable and sticky_force is on: 503, client: {}",
                                ups.conf.servers[p].addr,
                                ups.conf.name,
                                self.peer
                            );
                            ctx.pool.put(head);
                            self.start_exchange(ex, meta.head_len);
                            self.respond(ctx, 503, None, settings)?;
                            return Ok(true);
                        }
                    }
                }
                let fr = ForwardRequest { route: ex.sticky_peer.and_then(|p| ups.conf.servers[p].route.as_deref()), ..fr };
                let host = ex.kind.adapter(&meta).encode_head(&fr, &mut head);
                self.consume_head(meta.head_len);
                self.state = State::Active;
                match host {
                    Some(span) => {
                        ex.head_bytes = head.len() as u64;
                        ex.req_head = Some(head);
                        ex.host = span;
                        self.ex = Some(ex);
                        self.connect_upstream(ctx)?;
                    }
                    None => {
                        ctx.pool.put(head);
                        self.ex = Some(ex);
                        log::info!("client {}: request head too large to forward", self.peer);
                        self.respond(ctx, 431, None, settings)?;
                    }
                }
            }
            Handler::Return { code, text } => {
                let code = *code;
                // Literal text is used as it is; variables are rendered (a `return` is not
                // the proxy path, so a small allocation here is fine).
                let rendered: Option<std::borrow::Cow<str>> = text.as_deref().map(|parts| match parts {
                    [] => std::borrow::Cow::Borrowed(""),
                    [Part::Lit(s)] => std::borrow::Cow::Borrowed(s.as_str()),
                    _ => {
                        let fr = ForwardRequest::new(&req, &meta, self.peer, self.local_port, server_name, settings);
                        std::borrow::Cow::Owned(render_template(parts, &fr))
                    }
                });
                let mut ex = Exchange::new(ctx.now, server_idx, loc_idx.unwrap_or(usize::MAX), Some(meta), Handling::Respond);
                ex.keep_alive = keep_alive;
                ex.set_body(body);
                self.start_exchange(ex, meta.head_len);
                self.respond(ctx, code, rendered.as_deref(), settings)?;
            }
            Handler::Static { alias } => {
                let loc_path = loc_idx.map_or("/", |i| server.locations[i].path.as_str());
                let mut ex = Exchange::new(ctx.now, server_idx, loc_idx.unwrap_or(usize::MAX), Some(meta), Handling::Respond);
                ex.keep_alive = keep_alive;
                ex.set_body(body);
                let hdr = |n: &str| req.headers.iter().find(|h| h.name.eq_ignore_ascii_case(n)).map(|h| h.value);
                let conditions = StaticConditions { if_none_match: hdr("if-none-match"), if_modified_since: hdr("if-modified-since"), range: hdr("range") };
                let answer = static_answer(req.method.unwrap_or(""), path, route_path, settings, alias.as_deref(), loc_path, &conditions);
                self.start_exchange(ex, meta.head_len);
                self.respond_static(ctx, answer, meta.method == request::Method::Head, settings)?;
            }
            Handler::Status => {
                let mut ex = Exchange::new(ctx.now, server_idx, loc_idx.unwrap_or(usize::MAX), Some(meta), Handling::Status);
                ex.keep_alive = keep_alive;
                ex.set_body(body);
                ex.continue_pending = false;
                ex.status_req = Some(Box::new(StatusReq {
                    method: req.method.unwrap_or("GET").to_string(),
                    target: path.to_string(),
                    accept: req.headers.iter().find(|h| h.name.eq_ignore_ascii_case("accept")).map_or_else(Vec::new, |h| h.value.to_vec()),
                    form: Vec::new(),
                }));
                self.start_exchange(ex, meta.head_len);
            }
            Handler::None => {
                let mut ex = Exchange::new(ctx.now, server_idx, loc_idx.unwrap_or(usize::MAX), Some(meta), Handling::Respond);
                ex.keep_alive = keep_alive;
                ex.set_body(body);
                self.start_exchange(ex, meta.head_len);
                self.respond(ctx, 404, None, settings)?;
            }
        }
        Ok(true)
    }

    /// The request head is handled: it leaves the buffer and `ex` becomes the exchange.
    pub(super) fn start_exchange(&mut self, ex: Exchange, head_len: usize) {
        self.consume_head(head_len);
        self.ex = Some(ex);
        self.state = State::Active;
    }

    pub(super) fn consume_head(&mut self, n: usize) {
        if let Some(cin) = self.cin.as_mut() {
            cin.consume(n);
        }
        self.head_started = None;
    }

    pub(super) fn begin_log(&mut self, line: &[u8], referer: &[u8], ua: &[u8]) {
        fill_log(&mut self.log_fields, &mut self.log_ends, line, referer, ua);
    }

    /// Answers the current request from pounce itself (errors, `return`).
    pub(super) fn respond(&mut self, ctx: &mut Ctx, code: u16, text: Option<&str>, settings: &Settings) -> Res<()> {
        let _ = settings;
        if !self.ensure_cout(ctx) {
            return self.refuse_no_buffers(ctx).map(|_| ());
        }
        let Some(ex) = self.ex.as_mut() else { return Ok(()) };
        let head_only = ex.meta.is_some_and(|m| m.method == request::Method::Head);
        let (Some(cout), keep) = (self.cout.as_mut(), ex.keep_alive) else { return Ok(()) };
        if !write_simple(cout, code, text, keep, head_only, &ctx.clock.http_date) {
            return Err(Closed);
        }
        ex.writer.status = code;
        ex.writer.started = true;
        ex.writer.finished = true;
        ex.writer.keep_alive = keep;
        ex.resp_done = true;
        if !keep {
            self.closing = true;
        }
        Ok(())
    }
}

/// Renders a `return` text with variables.
pub(super) fn render_template(parts: &[Part], fr: &ForwardRequest) -> String {
    let mut b = Buf::standalone(8192);
    put_template(&mut b, parts, fr);
    String::from_utf8_lossy(b.data()).into_owned()
}
