//! One client connection and, while a request is in flight, its backend connection.
//!
//! Bytes move through four pooled buffers: `cin` (client → pounce), `bout` (pounce →
//! backend), `bin` (backend → pounce) and `cout` (pounce → client). `pump` moves them until
//! nothing more can move: a full buffer stops its reader (back-pressure), and edge-triggered
//! readiness is remembered in flags so a reader resumes as soon as room appears.

use super::exchange::{BackendKind, Exchange, Fail, Handling, ReqBody, StatusReq, UpConn, MAX_FORM};
use super::route::{find_location, find_server};
use crate::backend::ajp_codec::{CPING_PACKET, CPONG, MAGIC_FROM_TOMCAT};
use crate::backend::http::put_template;
use crate::backend::{Adapter, BackendError, ForwardRequest, Protocol, Step};
use crate::buffer::Buf;
use crate::config::{access_allowed, next, AjpConf, Handler, Part, Settings};
use crate::files::{self, FileBody, Range};
use crate::http::request::{self, BodyKind, Parse};
use crate::http::status::{head_end, head_start, write_simple};
use crate::http::uri;
use crate::http::writer::ReqFacts;
use crate::logging::access::put_escaped;
use crate::upstream::keepalive::IdleConn;
use crate::upstream::{now_ms, sticky, Balancer};
use crate::worker::timer::TimerSlot;
use crate::worker::{client_token, Ctx, Owner};
use mio::net::TcpStream;
use mio::Interest;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// How long a closing connection keeps reading (and discarding) what the client still
/// sends, so that an unread request body does not turn our close into a reset that
/// destroys the response in flight (nginx's lingering close).
const LINGER: Duration = Duration::from_secs(2);

/// The handler of a request that matched no location in a server with a `root`.
const SERVE_ROOT: Handler = Handler::Static { alias: None };

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for (the rest of) a request head.
    Head,
    /// A request is being handled.
    Active,
    /// Write side shut; reading and dropping client bytes until EOF or the deadline.
    Lingering,
}

/// The session is finished and must be removed.
pub struct Closed;

type Res<T> = Result<T, Closed>;

/// Partial heads up to this size are moved out of their pooled buffer while the client is silent.
const HEAD_STASH_MAX: usize = 1024;

pub struct Session {
    pub key: usize,
    client: TcpStream,
    peer: SocketAddr,
    local_port: u16,
    listen: usize,
    cin: Option<Buf>,
    cout: Option<Buf>,
    c_readable: bool,
    c_writable: bool,
    c_eof: bool,
    /// The peer's FIN was reported (EPOLLRDHUP): read on until read() returns 0.
    c_rdhup: bool,
    state: State,
    /// Close once `cout` is flushed.
    closing: bool,
    served: u32,
    ex: Option<Exchange>,
    /// Last time the client sent bytes, and when writing to it last blocked.
    t_read: Instant,
    t_wblock: Instant,
    head_started: Option<Instant>,
    linger_until: Instant,
    pub timer: TimerSlot,
    /// Request line, referer and user agent of the current request, for the access log.
    log_fields: Vec<u8>,
    log_ends: [usize; 3],
    /// The normalized request path, when it differs from the raw one (`http::uri`).
    path_scratch: Vec<u8>,
    /// When the last exchange finished (or the connection was accepted).
    idle_since: Instant,
    /// A partial request head kept while the client is silent (`stash_partial_head`).
    head_stash: Vec<u8>,
}

impl Session {
    pub fn new(key: usize, client: TcpStream, peer: SocketAddr, local_port: u16, listen: usize, now: Instant) -> Session {
        Session {
            key,
            client,
            peer,
            local_port,
            listen,
            cin: None,
            cout: None,
            c_readable: false,
            c_writable: false,
            c_eof: false,
            c_rdhup: false,
            state: State::Head,
            closing: false,
            served: 0,
            ex: None,
            t_read: now,
            t_wblock: now,
            head_started: None,
            linger_until: now,
            timer: TimerSlot::default(),
            log_fields: Vec::new(),
            log_ends: [0; 3],
            path_scratch: Vec::new(),
            idle_since: now,
            head_stash: Vec::new(),
        }
    }

    pub fn register(&mut self, ctx: &mut Ctx) -> io::Result<()> {
        ctx.registry.register(&mut self.client, client_token(self.key), Interest::READABLE | Interest::WRITABLE)
    }

    /// True when no request is in progress and nothing is buffered (safe to drop at shutdown).
    pub fn is_idle(&self) -> bool {
        self.state == State::Head
            && self.head_stash.is_empty()
            && self.cin.as_ref().is_none_or(|b| b.is_empty())
            && self.cout.as_ref().is_none_or(|b| b.is_empty())
    }

    /// Idle (see `is_idle`) since at least `since`: no request and nothing to send since then.
    pub fn idle_before(&self, since: Instant) -> bool {
        self.is_idle() && self.idle_since <= since && self.t_read <= since
    }

    pub fn on_client_event(&mut self, ctx: &mut Ctx, ev: &mio::event::Event) -> Res<()> {
        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
            self.c_readable = true;
        }
        if ev.is_read_closed() || ev.is_error() {
            self.c_rdhup = true;
        }
        if ev.is_writable() || ev.is_write_closed() || ev.is_error() {
            self.c_writable = true;
        }
        self.pump(ctx)
    }

    pub fn on_backend_event(&mut self, ctx: &mut Ctx, ev: &mio::event::Event) -> Res<()> {
        let Some(ex) = self.ex.as_mut() else { return self.pump(ctx) };
        let Some(up) = ex.up.as_mut() else { return self.pump(ctx) };
        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
            up.readable = true;
        }
        if ev.is_read_closed() || ev.is_error() {
            up.rdhup = true;
        }
        if ev.is_writable() || ev.is_write_closed() || ev.is_error() {
            up.writable = true;
        }
        if !up.connected {
            match up.stream.take_error() {
                Ok(None) => match up.stream.peer_addr() {
                    Ok(_) => {
                        up.connected = true;
                        up.t_io = ctx.now;
                        if let BackendKind::Ajp { ping: Some(t), .. } = ex.kind {
                            up.ping_deadline = Some(ctx.now + t);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotConnected && !ev.is_error() && !ev.is_write_closed() => {}
                    Err(e) => self.upstream_failed(ctx, Fail::Error, &format!("connect() failed ({})", e))?,
                },
                Ok(Some(e)) | Err(e) => self.upstream_failed(ctx, Fail::Error, &format!("connect() failed ({})", e))?,
            }
        }
        self.pump(ctx)
    }

    /// Moves bytes in every direction until nothing more can move, then re-arms the timer.
    pub fn pump(&mut self, ctx: &mut Ctx) -> Res<()> {
        for _ in 0..10_000 {
            let mut progress = self.read_client(ctx)?;
            progress |= match self.state {
                State::Head => self.try_start_request(ctx)?,
                State::Active => self.drive_exchange(ctx)?,
                State::Lingering => {
                    if let Some(b) = self.cin.as_mut() {
                        b.clear();
                    }
                    if self.c_eof || ctx.now >= self.linger_until {
                        return Err(Closed);
                    }
                    false
                }
            };
            progress |= self.write_client(ctx)?;
            // Close once everything of the answer is out (a page or a file may still be coming).
            let answer_pending = self.ex.as_ref().is_some_and(|ex| !ex.resp_done);
            if self.closing && self.state != State::Lingering && !answer_pending && self.cout.as_ref().is_none_or(|b| b.is_empty()) {
                self.start_closing(ctx)?;
                progress = true;
            }
            if !progress {
                break;
            }
        }
        if self.state == State::Head && self.ex.is_none() {
            self.stash_partial_head(ctx);
            self.release_idle_buffers(ctx);
            if self.c_eof && self.cin.as_ref().is_none_or(|b| b.is_empty()) && self.cout.as_ref().is_none_or(|b| b.is_empty()) {
                return Err(Closed);
            }
        }
        self.set_deadline(ctx);
        Ok(())
    }

    // ---- client side -------------------------------------------------------------------

    fn read_client(&mut self, ctx: &mut Ctx) -> Res<bool> {
        if !self.c_readable || self.c_eof {
            return Ok(false);
        }
        if self.state == State::Head && self.closing {
            return Ok(false);
        }
        if self.cin.is_none() {
            match ctx.pool.get() {
                Some(mut b) => {
                    b.put_all(&self.head_stash);
                    self.head_stash.clear();
                    self.cin = Some(b);
                }
                None => return self.refuse_no_buffers(ctx),
            }
        }
        let Some(cin) = self.cin.as_mut() else { return Ok(false) };
        let mut progress = false;
        while !cin.is_full() {
            let want = cin.spare().len();
            match self.client.read(cin.spare()) {
                Ok(0) => {
                    self.c_eof = true;
                    progress = true;
                    break;
                }
                Ok(n) => {
                    cin.commit(n);
                    self.t_read = ctx.now;
                    progress = true;
                    // A short read drained the socket: skip the read that would only say
                    // EAGAIN (the next arrival raises a new edge), unless a FIN is pending.
                    if n < want && !self.c_rdhup {
                        self.c_readable = false;
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.c_readable = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("client {}: read error: {}", self.peer, e);
                    return Err(Closed);
                }
            }
        }
        Ok(progress)
    }

    fn write_client(&mut self, ctx: &mut Ctx) -> Res<bool> {
        let Some(cout) = self.cout.as_mut() else { return Ok(false) };
        let mut progress = false;
        while self.c_writable && !cout.is_empty() {
            let want = cout.len();
            match self.client.write(cout.data()) {
                Ok(0) => return Err(Closed),
                Ok(n) => {
                    cout.consume(n);
                    progress = true;
                    // A short write filled the socket buffer: wait for the next EPOLLOUT edge.
                    if n < want {
                        self.c_writable = false;
                        self.t_wblock = ctx.now;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.c_writable = false;
                    self.t_wblock = ctx.now;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("client {}: write error: {}", self.peer, e);
                    return Err(Closed);
                }
            }
        }
        Ok(progress)
    }

    /// No buffer could be had: answer 503 from a static string and close.
    fn refuse_no_buffers(&mut self, _ctx: &mut Ctx) -> Res<bool> {
        log::error!("client {}: buffer pool exhausted (worker_buffers), answering 503", self.peer);
        let _ = self.client.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        Err(Closed)
    }

    /// A client that sends its head in pieces (slowly, or a slowloris) does not keep a
    /// 16 KiB buffer between the pieces: once the socket is drained, a small partial head is
    /// moved aside and the buffer goes back to the pool until more bytes come.
    fn stash_partial_head(&mut self, ctx: &mut Ctx) {
        if self.c_readable || self.c_eof || self.closing {
            return;
        }
        if let Some(cin) = self.cin.as_ref().filter(|b| !b.is_empty() && b.len() <= HEAD_STASH_MAX) {
            self.head_stash.extend_from_slice(cin.data());
            ctx.pool.release(&mut self.cin);
        }
    }

    fn ensure_cout(&mut self, ctx: &mut Ctx) -> bool {
        if self.cout.is_none() {
            self.cout = ctx.pool.get();
        }
        self.cout.is_some()
    }

    fn release_idle_buffers(&mut self, ctx: &mut Ctx) {
        if self.cin.as_ref().is_some_and(|b| b.is_empty()) {
            ctx.pool.release(&mut self.cin);
        }
        if self.cout.as_ref().is_some_and(|b| b.is_empty()) {
            ctx.pool.release(&mut self.cout);
        }
    }

    /// Stops reading requests; after the output drains, shuts the write side and lingers.
    fn start_closing(&mut self, ctx: &mut Ctx) -> Res<()> {
        if self.c_eof {
            return Err(Closed);
        }
        let _ = self.client.shutdown(std::net::Shutdown::Write);
        self.state = State::Lingering;
        self.linger_until = ctx.now + LINGER;
        if let Some(ex) = self.ex.take() {
            self.teardown_exchange(ctx, ex);
        }
        Ok(())
    }

    // ---- request start -----------------------------------------------------------------

    fn try_start_request(&mut self, ctx: &mut Ctx) -> Res<bool> {
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
            Handler::Proxy { ajp: true, .. } if meta.upgrade => {
                let mut ex = Exchange::new(ctx.now, server_idx, loc_idx.unwrap_or(usize::MAX), Some(meta), Handling::Respond);
                ex.keep_alive = false;
                self.start_exchange(ex, meta.head_len);
                log::info!("client {}: protocol upgrade refused: AJP cannot carry it", self.peer);
                self.respond(ctx, 501, Some("WebSocket and other protocol upgrades cannot be carried over AJP\n"), settings)?;
            }
            Handler::Proxy { upstream, ajp } => {
                let upstream = *upstream;
                let ups = &rt.upstreams[upstream];
                let mut ex = Exchange::new(ctx.now, server_idx, loc_idx.unwrap_or(usize::MAX), Some(meta), Handling::Proxy { upstream });
                ex.keep_alive = keep_alive;
                ex.set_body(body);
                // Location values win over the upstream's (no copies: borrowed from the config).
                let (loc_ajp, up_ajp) = (&settings.ajp, &ups.conf.ajp);
                let secret = if *ajp { loc_ajp.secret.as_deref().or(up_ajp.secret.as_deref()) } else { None };
                if *ajp {
                    let ping = loc_ajp.ping.or(up_ajp.ping).unwrap_or(false);
                    ex.kind = BackendKind::Ajp {
                        packet_size: loc_ajp.packet_size.or(up_ajp.packet_size).unwrap_or(AjpConf::DEFAULT_PACKET_SIZE),
                        ping: ping.then(|| loc_ajp.ping_timeout.or(up_ajp.ping_timeout).unwrap_or(AjpConf::DEFAULT_PING_TIMEOUT)),
                    };
                }
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
                    req: &req,
                    meta: &meta,
                    client: self.peer,
                    local_port: self.local_port,
                    server_name: server.names.first().map(|s| s.as_str()).unwrap_or(""),
                    settings,
                    proxy_host: &ups.conf.name,
                    keepalive: ups.conf.keepalive > 0,
                    ajp_secret: secret,
                    route: None,
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
                        let fr = ForwardRequest {
                            req: &req,
                            meta: &meta,
                            client: self.peer,
                            local_port: self.local_port,
                            server_name: server.names.first().map(|s| s.as_str()).unwrap_or(""),
                            settings,
                            proxy_host: "",
                            keepalive: false,
                            ajp_secret: None,
                            route: None,
                        };
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
    fn start_exchange(&mut self, ex: Exchange, head_len: usize) {
        self.consume_head(head_len);
        self.ex = Some(ex);
        self.state = State::Active;
    }

    fn consume_head(&mut self, n: usize) {
        if let Some(cin) = self.cin.as_mut() {
            cin.consume(n);
        }
        self.head_started = None;
    }

    fn begin_log(&mut self, line: &[u8], referer: &[u8], ua: &[u8]) {
        fill_log(&mut self.log_fields, &mut self.log_ends, line, referer, ua);
    }

    /// Answers the current request from pounce itself (errors, `return`).
    fn respond(&mut self, ctx: &mut Ctx, code: u16, text: Option<&str>, settings: &Settings) -> Res<()> {
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

    // ---- pages generated by pounce (the status page) -------------------------------------

    /// Answers a status-page request once its body is complete.
    fn serve_status(&mut self, ctx: &mut Ctx) -> Res<bool> {
        let Some(ex) = self.ex.as_mut() else { return Ok(false) };
        if ex.handling != Handling::Status || !ex.body_done() || ex.writer.started {
            return Ok(false);
        }
        let Some(sr) = ex.status_req.take() else { return Ok(false) };
        ctx.publish();
        let rt = ctx.rt.clone();
        let resp = crate::status::handle(&rt, &crate::status::StatusRequest { method: &sr.method, target: &sr.target, accept: &sr.accept, body: &sr.form });
        if !self.ensure_cout(ctx) {
            return self.refuse_no_buffers(ctx);
        }
        let (Some(ex), Some(cout)) = (self.ex.as_mut(), self.cout.as_mut()) else { return Ok(false) };
        let keep = ex.keep_alive && !ctx.draining;
        use std::fmt::Write as _;
        let mut ok = head_start(cout, resp.status, &ctx.clock.http_date)
            && write!(cout, "Content-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n", resp.content_type, resp.body.len()).is_ok();
        if let Some(loc) = &resp.location {
            ok = ok && write!(cout, "Location: {}\r\n", loc).is_ok();
        }
        ok = ok && head_end(cout, keep);
        if !ok {
            return Err(Closed);
        }
        ex.writer.status = resp.status;
        ex.writer.started = true;
        ex.writer.keep_alive = keep;
        ex.writer.body_bytes = resp.body.len() as u64;
        if !keep {
            self.closing = true;
        }
        if sr.method == "HEAD" || resp.body.is_empty() {
            ex.writer.finished = true;
            ex.resp_done = true;
        } else {
            ex.page = Some(resp.body);
            ex.page_off = 0;
        }
        Ok(true)
    }

    /// Writes the head of a static-file answer and queues the file for sendfile(2).
    fn respond_static(&mut self, ctx: &mut Ctx, answer: StaticAnswer, head_only: bool, settings: &Settings) -> Res<()> {
        let file = match answer {
            StaticAnswer::Status(code) => return self.respond(ctx, code, None, settings),
            StaticAnswer::Redirect(to) => return self.respond(ctx, 301, Some(&to), settings),
            StaticAnswer::File(f) => f,
        };
        if !self.ensure_cout(ctx) {
            return self.refuse_no_buffers(ctx).map(|_| ());
        }
        let (Some(ex), Some(cout)) = (self.ex.as_mut(), self.cout.as_mut()) else { return Ok(()) };
        let keep = ex.keep_alive && !ctx.draining;
        use std::fmt::Write as _;
        let mut ok = head_start(cout, file.status, &ctx.clock.http_date)
            && write!(cout, "Content-Type: {}\r\nLast-Modified: {}\r\nETag: {}\r\nAccept-Ranges: bytes\r\n", file.content_type, file.last_modified, file.etag)
                .is_ok();
        if file.status != 304 {
            ok = ok && write!(cout, "Content-Length: {}\r\n", if file.status == 416 { 0 } else { file.length }).is_ok();
        }
        match file.status {
            206 => ok = ok && write!(cout, "Content-Range: bytes {}-{}/{}\r\n", file.offset, file.offset + file.length - 1, file.size).is_ok(),
            416 => ok = ok && write!(cout, "Content-Range: bytes */{}\r\n", file.size).is_ok(),
            _ => {}
        }
        ok = ok && head_end(cout, keep);
        if !ok {
            return Err(Closed);
        }
        ex.writer.status = file.status;
        ex.writer.started = true;
        ex.writer.keep_alive = keep;
        if !keep {
            self.closing = true;
        }
        if head_only || file.length == 0 || matches!(file.status, 304 | 416) {
            ex.writer.finished = true;
            ex.resp_done = true;
        } else {
            ex.file = Some(FileBody { file: file.file, offset: file.offset, remaining: file.length });
        }
        Ok(())
    }

    /// Sends a queued file with sendfile(2) once the head is out.
    fn send_file(&mut self, ctx: &mut Ctx) -> Res<bool> {
        let Some(ex) = self.ex.as_mut() else { return Ok(false) };
        let Some(body) = ex.file.as_mut() else { return Ok(false) };
        if !self.c_writable || self.cout.as_ref().is_some_and(|b| !b.is_empty()) {
            return Ok(false);
        }
        use std::os::fd::AsRawFd;
        let before = body.remaining;
        match files::send(self.client.as_raw_fd(), body) {
            Ok(blocked) => {
                let (left, sent) = (body.remaining, before - body.remaining);
                ex.writer.body_bytes += sent;
                if blocked {
                    self.c_writable = false;
                    self.t_wblock = ctx.now;
                }
                if left == 0 {
                    ex.file = None;
                    ex.writer.finished = true;
                    ex.resp_done = true;
                }
                Ok(sent > 0)
            }
            Err(e) => {
                log::info!("client {}: sendfile() failed: {}", self.peer, e);
                Err(Closed)
            }
        }
    }

    /// After a 101: copies bytes both ways (the sockets are read and written by the usual
    /// client and backend I/O, with the usual back-pressure) until either side closes.
    fn tunnel(&mut self, ctx: &mut Ctx) -> Res<bool> {
        let mut progress = self.backend_io(ctx)?;
        let Some(ex) = self.ex.as_mut() else { return Err(Closed) };
        let Some(up) = ex.up.as_mut() else { return Err(Closed) };
        if let (Some(cin), Some(bout)) = (self.cin.as_mut(), up.bout.as_mut()) {
            let n = bout.put(cin.data());
            cin.consume(n);
            progress |= n > 0;
        }
        if self.cout.is_none() {
            self.cout = ctx.pool.get();
        }
        if let (Some(bin), Some(cout)) = (up.bin.as_mut(), self.cout.as_mut()) {
            let n = cout.put(bin.data());
            bin.consume(n);
            progress |= n > 0;
        }
        let client_done = self.c_eof && self.cin.as_ref().is_none_or(|b| b.is_empty()) && up.bout.as_ref().is_none_or(|b| b.is_empty());
        let backend_done = up.eof && up.bin.as_ref().is_none_or(|b| b.is_empty()) && self.cout.as_ref().is_none_or(|b| b.is_empty());
        if client_done || backend_done {
            return Err(Closed);
        }
        Ok(progress)
    }

    /// Copies as much of a pending generated page into the client buffer as fits.
    fn copy_page(&mut self) -> bool {
        let (Some(ex), Some(cout)) = (self.ex.as_mut(), self.cout.as_mut()) else { return false };
        let Some(page) = ex.page.as_ref() else { return false };
        let n = cout.put(&page[ex.page_off..]);
        ex.page_off += n;
        if ex.page_off == page.len() {
            ex.page = None;
            ex.writer.finished = true;
            ex.resp_done = true;
        }
        n > 0
    }

    // ---- the exchange --------------------------------------------------------------------

    fn drive_exchange(&mut self, ctx: &mut Ctx) -> Res<bool> {
        let mut progress = self.move_request_body(ctx)?;
        progress |= self.serve_status(ctx)?;
        progress |= self.copy_page();
        progress |= self.send_file(ctx)?;
        if self.ex.as_ref().is_some_and(|ex| ex.tunnel) {
            return self.tunnel(ctx).map(|p| p || progress);
        }
        progress |= self.backend_io(ctx)?;
        progress |= self.decode_response(ctx)?;
        if let Some(ex) = self.ex.as_mut() {
            if ex.resp_done && !ex.body_done() && matches!(ex.handling, Handling::Proxy { .. }) {
                // The backend answered without taking the whole body (a `return` or an early
                // error in the backend): its connection cannot be reused, and the rest of the
                // body is read and dropped (client_body_timeout still applies), so the client
                // keeps its connection, as nginx discards a body it does not need.
                drop_backend(ctx, ex);
                ex.handling = Handling::Respond;
                progress = true;
            }
        }
        let done = self.ex.as_ref().is_some_and(|ex| ex.resp_done && (ex.body_done() || self.closing));
        if done {
            self.finish_exchange(ctx);
            progress = true;
        }
        Ok(progress)
    }

    /// Client body bytes → backend (or discarded when pounce answers itself).
    fn move_request_body(&mut self, ctx: &mut Ctx) -> Res<bool> {
        let Some(ex) = self.ex.as_mut() else { return Ok(false) };
        let Some(cin) = self.cin.as_mut() else { return Ok(false) };
        let max_body = ctx.rt.location_settings(ex.server, ex.loc).client_max_body_size;
        let mut progress = false;
        match ex.handling {
            Handling::Respond => {
                // Read and drop the body so the connection can be kept alive.
                while !ex.body_done() && !cin.is_empty() {
                    let mut sink = Discard;
                    match ex.body.feed(cin, &mut sink) {
                        Ok((0, _)) => break,
                        Ok(_) => progress = true,
                        Err(_) => {
                            self.closing = true;
                            return Ok(true);
                        }
                    }
                }
            }
            Handling::Status => {
                let Some(sr) = ex.status_req.as_mut() else { return Ok(false) };
                while !matches!(ex.body, ReqBody::Done) && !cin.is_empty() {
                    let mut sink = Collect { into: &mut sr.form, limit: MAX_FORM };
                    match ex.body.feed(cin, &mut sink) {
                        Ok((0, _)) => {
                            if sink.room() == 0 {
                                ex.keep_alive = false;
                                return self.abort_with(ctx, 413).map(|_| true);
                            }
                            break;
                        }
                        Ok(_) => progress = true,
                        Err(_) => {
                            ex.keep_alive = false;
                            return self.abort_with(ctx, 400).map(|_| true);
                        }
                    }
                }
            }
            Handling::Proxy { .. } => {
                let Some(up) = ex.up.as_mut() else { return Ok(false) };
                // Body bytes leave the client buffer only once they can reach a backend that
                // answered: until then a failure can still be retried elsewhere.
                if !up.connected || up.ping_deadline.is_some() {
                    return Ok(false);
                }
                if ex.continue_pending && !ex.writer.started {
                    ex.continue_pending = false;
                    if cin.is_empty() {
                        if self.cout.is_none() {
                            self.cout = ctx.pool.get();
                        }
                        if let Some(cout) = self.cout.as_mut() {
                            cout.put_all(b"HTTP/1.1 100 Continue\r\n\r\n");
                            progress = true;
                        }
                    }
                }
                let Some(bout) = up.bout.as_mut() else { return Ok(false) };
                while !matches!(ex.body, ReqBody::Done) && !cin.is_empty() {
                    let mut sink = Forward { adapter: &mut up.adapter, out: bout };
                    if sink.room() == 0 {
                        break;
                    }
                    match ex.body.feed(cin, &mut sink) {
                        Ok((0, _)) => break,
                        Ok((_, n)) => {
                            ex.body_taken += n as u64;
                            progress = true;
                            if ex.body_taken > max_body {
                                log::info!("client {}: chunked body over client_max_body_size", self.peer);
                                ex.keep_alive = false;
                                return self.abort_with(ctx, 413).map(|_| true);
                            }
                        }
                        Err(_) => {
                            log::info!("client {}: invalid chunked body", self.peer);
                            ex.keep_alive = false;
                            return self.abort_with(ctx, 400).map(|_| true);
                        }
                    }
                }
                if matches!(ex.body, ReqBody::Done) && up.adapter.encode_body_end(bout) {
                    progress = true;
                }
            }
        }
        if !ex.body_done() && self.c_eof && cin.is_empty() {
            log::info!("client {}: closed the connection while sending the request body", self.peer);
            return Err(Closed);
        }
        Ok(progress)
    }

    /// Writes the request to the backend and reads its response bytes.
    fn backend_io(&mut self, ctx: &mut Ctx) -> Res<bool> {
        let Some(ex) = self.ex.as_mut() else { return Ok(false) };
        let Some(up) = ex.up.as_mut() else { return Ok(false) };
        if !up.connected {
            return Ok(false);
        }
        let mut progress = false;
        let mut failure: Option<(Fail, String)> = None;
        // AJP CPING first: nothing of the request goes out before the CPONG.
        if up.ping_deadline.is_some() {
            while up.writable && up.ping_sent < CPING_PACKET.len() {
                match up.stream.write(&CPING_PACKET[up.ping_sent..]) {
                    Ok(n) => {
                        up.ping_sent += n;
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => up.writable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        failure = Some((Fail::Error, format!("CPING failed ({})", e)));
                        break;
                    }
                }
            }
        }
        // Write: the kept request head first, then framed body bytes.
        while up.writable && up.ping_deadline.is_none() && failure.is_none() {
            let head = ex.req_head.as_ref().map(|h| &h.data()[up.head_sent..]).filter(|d| !d.is_empty());
            let data = match head {
                Some(d) => d,
                None => match up.bout.as_ref() {
                    Some(b) if !b.is_empty() => b.data(),
                    _ => break,
                },
            };
            let from_head = head.is_some();
            let want = data.len();
            match up.stream.write(data) {
                Ok(n) => {
                    if n < want {
                        up.writable = false;
                    }
                    if from_head {
                        up.head_sent += n;
                        ex.sent = true;
                    } else if let Some(b) = up.bout.as_mut() {
                        b.consume(n);
                    }
                    up.t_io = ctx.now;
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => up.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failure = Some((Fail::Error, format!("send() failed ({})", e)));
                    break;
                }
            }
        }
        // Read.
        if failure.is_none() {
            if let Some(bin) = up.bin.as_mut() {
                while up.readable && !up.eof && !bin.is_full() {
                    let want = bin.spare().len();
                    match up.stream.read(bin.spare()) {
                        Ok(0) => {
                            up.eof = true;
                            progress = true;
                        }
                        Ok(n) => {
                            bin.commit(n);
                            up.t_io = ctx.now;
                            progress = true;
                            if n < want && !up.rdhup {
                                up.readable = false;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => up.readable = false,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            failure = Some((Fail::Error, format!("recv() failed ({})", e)));
                            break;
                        }
                    }
                }
            }
        }
        // The CPONG: exactly `41 42 00 01 09`, then the request may go.
        if failure.is_none() && up.ping_deadline.is_some() {
            if let Some(bin) = up.bin.as_mut() {
                if bin.len() >= 5 {
                    let d = bin.data();
                    if d[..2] == MAGIC_FROM_TOMCAT && d[2..5] == [0, 1, CPONG] {
                        bin.consume(5);
                        up.ping_deadline = None;
                        up.readable = true;
                        up.writable = true;
                        progress = true;
                    } else {
                        failure = Some((Fail::Error, "invalid CPONG".to_string()));
                    }
                } else if up.eof {
                    failure = Some((Fail::Error, "connection closed instead of CPONG".to_string()));
                }
            }
        }
        if let Some((kind, why)) = failure {
            self.upstream_failed(ctx, kind, &why)?;
            return Ok(true);
        }
        Ok(progress)
    }

    /// Backend bytes → the client's response.
    fn decode_response(&mut self, ctx: &mut Ctx) -> Res<bool> {
        let Some(ex) = self.ex.as_mut() else { return Ok(false) };
        if ex.resp_done || ex.up.is_none() {
            return Ok(false);
        }
        let rt = ctx.rt.clone();
        let ups = &rt.upstreams[ex.upstream()];
        let settings = rt.location_settings(ex.server, ex.loc);
        let mask = ex.retry_mask(settings, ups);
        let Some(up) = ex.up.as_mut() else { return Ok(false) };
        if up.ping_deadline.is_some() {
            return Ok(false);
        }
        let Some(bin) = up.bin.as_mut() else { return Ok(false) };
        if bin.is_empty() && !up.eof {
            return Ok(false);
        }
        if self.cout.is_none() {
            self.cout = ctx.pool.get();
        }
        let Some(cout) = self.cout.as_mut() else { return Ok(false) };
        let meta = ex.meta.unwrap_or_else(request::RequestMeta::placeholder);
        let host = match &ex.req_head {
            Some(h) => &h.data()[ex.host.0..ex.host.0 + ex.host.1],
            None => &b""[..],
        };
        let [r1, r2] = &ups.rewrite[up.peer];
        let facts = ReqFacts {
            head: meta.method == request::Method::Head,
            minor: meta.minor,
            keep_alive: ex.keep_alive && !ctx.draining,
            host,
            rewrite_from: [r1.as_bytes(), r2.as_bytes()],
            rewrite: settings.proxy_redirect,
            date: &ctx.clock.http_date,
            via: settings.proxy_via.value(),
        };
        let before = (bin.len(), cout.len());
        let was_started = ex.writer.started;
        let mut step = up.adapter.decode(bin, cout, &mut ex.writer, &facts, mask);
        if step == Ok(Step::Blocked) && up.eof && bin.is_empty() {
            step = up.adapter.eof(cout, &mut ex.writer);
        }
        let progress = before != (bin.len(), cout.len()) || ex.writer.started != was_started;
        if ex.writer.started && !was_started {
            ex.upstream_status = ex.writer.status;
            let t = ctx.now.duration_since(up.t_start);
            ex.upstream_time = Some(t);
            rt.upstreams[ex.upstream].peers[up.peer].last_response_us.store(t.as_micros() as u64, Relaxed);
            // The kept head is only needed for retries, which are over now.
            ctx.pool.release(&mut ex.req_head);
            ex.host = (0, 0);
        }
        match step {
            Ok(Step::Blocked) => Ok(progress),
            Ok(Step::RetryStatus(status)) => {
                ex.upstream_status = status;
                self.upstream_failed(ctx, Fail::Status(status), "")?;
                Ok(true)
            }
            Ok(Step::Done { .. }) if ex.writer.status == 101 => {
                // Switching protocols: from now on bytes are copied both ways as they are.
                ex.tunnel = true;
                ex.keep_alive = false;
                Ok(true)
            }
            Ok(Step::Done { reusable }) => {
                ex.resp_done = true;
                ex.reusable = reusable;
                if ex.upstream_time.is_none() {
                    ex.upstream_time = Some(ctx.now.duration_since(up.t_start));
                }
                Ok(true)
            }
            Err(BackendError::InvalidHeader(why)) => {
                self.upstream_failed(ctx, Fail::InvalidHeader, why)?;
                Ok(true)
            }
            Err(e) => {
                let why = match e {
                    BackendError::Protocol(w) => w,
                    _ => "upstream prematurely closed connection",
                };
                self.upstream_failed(ctx, Fail::Error, why)?;
                Ok(true)
            }
        }
    }

    // ---- upstream selection, failure and retry -----------------------------------------------

    /// Picks the next peer and connects to it (or takes an idle pooled connection).
    fn connect_upstream(&mut self, ctx: &mut Ctx) -> Res<()> {
        loop {
            let Some(ex) = self.ex.as_mut() else { return Ok(()) };
            let upstream = ex.upstream();
            let rt = ctx.rt.clone();
            let ups = &rt.upstreams[upstream];
            let settings = rt.location_settings(ex.server, ex.loc);
            let limit = if settings.proxy_next_upstream_tries == 0 { ups.max_tries() } else { settings.proxy_next_upstream_tries.min(ups.max_tries()) };
            if ex.tries >= limit {
                let status = ex.last_fail.map_or(502, Fail::status);
                return self.respond_error(ctx, status);
            }
            let now = now_ms();
            let sticky = ex.sticky_peer.take().filter(|&p| ex.tried & (1u128 << p) == 0 && ups.usable(p, now));
            if let (None, Some(named), Some(st)) = (sticky, ex.route_peer, &ups.conf.sticky) {
                // The session's server cannot take it (now or any more): fail over, or refuse.
                if st.force {
                    log::warn!("route of server {} unusable and sticky_force is on: 503, client: {}", ups.conf.servers[named].addr, self.peer);
                    return self.respond_error(ctx, 503);
                }
                ex.route_peer = None;
                ups.peers[named].failovers.fetch_add(1, Relaxed);
                log::warn!(
                    "session route of server {} in upstream \"{}\" is unusable, failing over, client: {}",
                    ups.conf.servers[named].addr,
                    ups.conf.name,
                    self.peer
                );
            }
            let picked = match sticky {
                Some(p) => {
                    ex.tried |= 1u128 << p;
                    Some(p)
                }
                None => ctx.balancers[upstream].get(ups, &mut ex.tried, now),
            };
            let Some(peer) = picked else {
                if ex.tries == 0 {
                    log::error!("no live upstreams while connecting to upstream \"{}\", client: {}", ups.conf.name, self.peer);
                }
                let status = ex.last_fail.map_or(502, Fail::status);
                return self.respond_error(ctx, status);
            };
            ex.tries += 1;
            ex.log_peer(peer);
            match self.open_backend(ctx, upstream, peer, true) {
                Ok(()) => return Ok(()),
                // Out of buffers is this worker's trouble, not the server's: no failure counted.
                Err(e) if e.kind() == io::ErrorKind::OutOfMemory => {
                    log::error!("buffer pool exhausted (worker_buffers), answering 503, client: {}", self.peer);
                    ctx.balancers[upstream].free(ups, peer, false, now_ms());
                    return self.respond_error(ctx, 503);
                }
                Err(e) => {
                    let Some(ex) = self.ex.as_mut() else { return Ok(()) };
                    log::error!(
                        "connect() to {} failed ({}) while connecting to upstream \"{}\", client: {}",
                        ups.conf.servers[peer].addr,
                        e,
                        ups.conf.name,
                        self.peer
                    );
                    ctx.balancers[upstream].free(ups, peer, true, now_ms());
                    ex.last_fail = Some(Fail::Error);
                    if settings.proxy_next_upstream & next::ERROR == 0 {
                        return self.respond_error(ctx, 502);
                    }
                }
            }
        }
    }

    /// Attaches a backend connection for `peer`: a pooled idle one if `may_reuse`, else new.
    fn open_backend(&mut self, ctx: &mut Ctx, upstream: usize, peer: usize, may_reuse: bool) -> io::Result<()> {
        let rt = ctx.rt.clone();
        let ups = &rt.upstreams[upstream];
        let Some(ex) = self.ex.as_mut() else { return Ok(()) };
        let meta = ex.meta.unwrap_or_else(request::RequestMeta::placeholder);
        let (bin, bout) = match (ctx.pool.get(), ctx.pool.get()) {
            (Some(a), Some(b)) => (a, b),
            (a, b) => {
                if let Some(a) = a {
                    ctx.pool.put(a);
                }
                if let Some(b) = b {
                    ctx.pool.put(b);
                }
                return Err(io::Error::new(io::ErrorKind::OutOfMemory, "buffer pool exhausted"));
            }
        };
        let mut reused = None;
        if may_reuse {
            while let Some(idle) = ctx.keepalive.take(upstream, peer) {
                if ctx.now.duration_since(idle.since) < ups.conf.keepalive_timeout && (meta.body == BodyKind::None || idle.is_clean()) {
                    reused = Some(idle);
                    break;
                }
                let mut s = idle.stream;
                ctx.close_backend(&mut s, idle.token);
            }
        }
        let (stream, connected, requests, token) = match reused {
            Some(idle) => {
                // Same registration, new owner: no epoll_ctl.
                if let Some(o) = ctx.backends.get_mut(idle.token) {
                    *o = Owner::Session(self.key);
                }
                (idle.stream, true, idle.requests, idle.token)
            }
            None => {
                let s = match TcpStream::connect(ups.conf.servers[peer].addr) {
                    Ok(s) => s,
                    Err(e) => {
                        ctx.pool.put(bin);
                        ctx.pool.put(bout);
                        return Err(e);
                    }
                };
                let mut s = s;
                let _ = s.set_nodelay(true);
                match ctx.register_backend(&mut s, self.key) {
                    Ok(id) => (s, false, 0, id),
                    Err(e) => {
                        ctx.pool.put(bin);
                        ctx.pool.put(bout);
                        return Err(e);
                    }
                }
            }
        };
        ups.peers[peer].in_flight.fetch_add(1, Relaxed);
        ups.peers[peer].requests.fetch_add(1, Relaxed);
        ex.up = Some(UpConn {
            stream,
            token,
            peer,
            connected,
            reused: connected,
            // Nothing can be pending on a pooled connection (its readiness would have closed
            // it while idle): no read until the backend's first edge.
            readable: false,
            writable: connected,
            eof: false,
            rdhup: false,
            bin: Some(bin),
            bout: Some(bout),
            head_sent: 0,
            adapter: ex.kind.adapter(&meta),
            t_start: ctx.now,
            t_io: ctx.now,
            requests,
            // A new connection is probed once connected; the deadline is set then.
            ping_deadline: match ex.kind {
                BackendKind::Ajp { ping: Some(t), .. } => Some(ctx.now + t),
                _ => None,
            },
            ping_sent: 0,
        });
        Ok(())
    }

    /// The current backend failed: count it, then retry elsewhere if that is safe, else answer
    /// 502/504 (or cut the client off if its response had already started).
    fn upstream_failed(&mut self, ctx: &mut Ctx, kind: Fail, why: &str) -> Res<()> {
        let rt = ctx.rt.clone();
        let Some(ex) = self.ex.as_mut() else { return Ok(()) };
        let Some(mut up) = ex.up.take() else { return Ok(()) };
        let upstream = ex.upstream();
        let ups = &rt.upstreams[upstream];
        let settings = rt.location_settings(ex.server, ex.loc);
        ctx.close_backend(&mut up.stream, up.token);
        ctx.pool.release(&mut up.bin);
        ctx.pool.release(&mut up.bout);
        ups.peers[up.peer].in_flight.fetch_sub(1, Relaxed);
        let addr = ups.conf.servers[up.peer].addr;
        // A pooled connection the backend had closed: not the server's fault, resend at once.
        let stale = up.reused && kind == Fail::Error && !up.adapter.response_started() && ex.body_taken == 0;
        if stale {
            log::debug!("upstream {}: pooled connection was closed, resending on a new one", addr);
            ex.sent = false;
            let peer = up.peer;
            drop(up);
            return match self.open_backend(ctx, upstream, peer, false) {
                Ok(()) => Ok(()),
                Err(e) => {
                    log::error!("connect() to {} failed ({}), client: {}", addr, e, self.peer);
                    let Some(ex) = self.ex.as_mut() else { return Ok(()) };
                    ctx.balancers[upstream].free(ups, peer, true, now_ms());
                    ex.last_fail = Some(Fail::Error);
                    self.connect_upstream(ctx)
                }
            };
        }
        let counts = kind.counts_as_failure();
        ctx.balancers[upstream].free(ups, up.peer, counts, now_ms());
        drop(up);
        match kind {
            Fail::Status(s) => log::warn!("upstream {} answered {} (proxy_next_upstream), client: {}", addr, s, self.peer),
            _ => log::error!("upstream {} failed: {} ({:?}), client: {}", addr, why, kind, self.peer),
        }
        ex.last_fail = Some(kind);
        if ex.writer.started {
            // Part of the response already went out: the client must see the truncation.
            log::error!("upstream {} failed after the response started; closing client {}", addr, self.peer);
            return Err(Closed);
        }
        let may_retry = settings.proxy_next_upstream & kind.bit() != 0
            && ex.body_taken == 0
            && (!ex.sent || ex.meta.is_some_and(|m| m.method.idempotent()) || settings.proxy_next_upstream & next::NON_IDEMPOTENT != 0);
        if may_retry {
            ex.sent = false;
            return self.connect_upstream(ctx);
        }
        self.respond_error(ctx, kind.status())
    }

    fn respond_error(&mut self, ctx: &mut Ctx, status: u16) -> Res<()> {
        let rt = ctx.rt.clone();
        let Some(ex) = self.ex.as_mut() else { return Ok(()) };
        if let Some(mut up) = ex.up.take() {
            ctx.close_backend(&mut up.stream, up.token);
            ctx.pool.release(&mut up.bin);
            ctx.pool.release(&mut up.bout);
            rt.upstreams[ex.upstream()].peers[up.peer].in_flight.fetch_sub(1, Relaxed);
        }
        ctx.pool.release(&mut ex.req_head);
        ex.handling = Handling::Respond;
        if !ex.body_done() && ex.body_taken > 0 {
            ex.keep_alive = false;
        }
        let settings = rt.location_settings(ex.server, ex.loc);
        self.respond(ctx, status, None, settings)
    }

    /// The request cannot go on (bad body): answer `status` if nothing was sent yet.
    fn abort_with(&mut self, ctx: &mut Ctx, status: u16) -> Res<()> {
        let started = self.ex.as_ref().is_some_and(|ex| ex.writer.started);
        if started {
            return Err(Closed);
        }
        self.respond_error(ctx, status)
    }

    /// The response is complete: log, pool the backend connection, go back to reading.
    fn finish_exchange(&mut self, ctx: &mut Ctx) {
        let Some(mut ex) = self.ex.take() else { return };
        self.write_access_log(ctx, &ex);
        self.served += 1;
        let body_complete = ex.body_done();
        let rt = ctx.rt.clone();
        if let Some(mut up) = ex.up.take() {
            let upstream = ex.upstream();
            let ups = &rt.upstreams[upstream];
            ups.peers[up.peer].in_flight.fetch_sub(1, Relaxed);
            ctx.balancers[upstream].free(ups, up.peer, false, now_ms());
            ups.account(up.peer, ex.head_bytes + ex.body_taken, ex.writer.body_bytes);
            ctx.pool.release(&mut up.bin);
            let bout_empty = up.bout.as_ref().is_none_or(|b| b.is_empty());
            ctx.pool.release(&mut up.bout);
            let requests = up.requests + 1;
            let poolable = ex.reusable
                && body_complete
                && up.adapter.request_complete()
                && bout_empty
                && ups.conf.keepalive > 0
                && requests < ups.conf.keepalive_requests
                && !ctx.draining;
            if poolable {
                let token = up.token;
                let idle = IdleConn { stream: up.stream, upstream, peer: up.peer, since: ctx.now, requests, token };
                let (key, evicted) = ctx.keepalive.put(idle, ups.conf.keepalive);
                if let Some(mut old) = evicted {
                    ctx.close_backend(&mut old.stream, old.token);
                }
                // Same registration, the pool owns it now: no epoll_ctl.
                if let Some(o) = ctx.backends.get_mut(token) {
                    *o = Owner::Idle(key);
                }
            } else {
                ctx.close_backend(&mut up.stream, up.token);
            }
        }
        ctx.pool.release(&mut ex.req_head);
        // A response that went out as keep-alive keeps the connection even while draining: the
        // client may already be sending its next request, which is then served with
        // Connection: close; an idle one is closed by the worker after DRAIN_IDLE_GRACE.
        let keep = ex.keep_alive && ex.writer.keep_alive && ex.writer.finished && body_complete;
        if !keep {
            self.closing = true;
        }
        self.state = State::Head;
        self.idle_since = ctx.now;
    }

    /// Drops an exchange without finishing it (client gone or closing).
    fn teardown_exchange(&mut self, ctx: &mut Ctx, mut ex: Exchange) {
        drop_backend(ctx, &mut ex);
        if ex.writer.started || ex.resp_done {
            self.write_access_log(ctx, &ex);
        }
        ctx.pool.release(&mut ex.req_head);
    }

    /// Releases everything this session holds. Called once, when it is removed.
    pub fn close(mut self, ctx: &mut Ctx) {
        if let Some(mut ex) = self.ex.take() {
            if !ex.writer.started && !ex.resp_done {
                // Client went away before any response: log it as nginx's 499.
                ex.writer.status = 499;
                self.write_access_log(ctx, &ex);
                ex.writer.status = 0;
            }
            self.teardown_exchange(ctx, ex);
        }
        ctx.pool.release(&mut self.cin);
        ctx.pool.release(&mut self.cout);
        let _ = ctx.registry.deregister(&mut self.client);
    }

    // ---- timeouts --------------------------------------------------------------------------

    fn set_deadline(&mut self, ctx: &mut Ctx) {
        let rt = &ctx.rt;
        let server = &rt.cfg.http.servers[self.ex.as_ref().map_or(rt.cfg.http.listens[self.listen].default_server, |e| e.server)];
        let file_pending = self.ex.as_ref().is_some_and(|ex| ex.file.is_some());
        let out_blocked = (file_pending || self.cout.as_ref().is_some_and(|b| !b.is_empty())) && !self.c_writable;
        let mut d: Option<Instant> = None;
        let mut min = |t: Instant| d = Some(d.map_or(t, |x| x.min(t)));
        match self.state {
            State::Lingering => min(self.linger_until),
            State::Head => {
                let s = &server.settings;
                if out_blocked {
                    min(self.t_wblock + s.send_timeout);
                } else if let Some(start) = self.head_started {
                    min(start + s.client_header_timeout);
                } else if self.served == 0 {
                    min(self.t_read + s.client_header_timeout);
                } else {
                    min(self.t_read + s.keepalive_timeout);
                }
            }
            State::Active => {
                if let Some(ex) = self.ex.as_ref().filter(|ex| ex.tunnel) {
                    // An idle tunnel lives for proxy_read_timeout after the last byte either way.
                    let s = rt.location_settings(ex.server, ex.loc);
                    let last = ex.up.as_ref().map_or(self.t_read, |u| u.t_io.max(self.t_read));
                    min(last + s.proxy_read_timeout);
                } else if let Some(ex) = self.ex.as_ref() {
                    let s = rt.location_settings(ex.server, ex.loc);
                    if out_blocked {
                        min(self.t_wblock + s.send_timeout);
                    }
                    if !ex.body_done() && !self.c_readable {
                        min(self.t_read + s.client_body_timeout);
                    }
                    if let Some(up) = ex.up.as_ref() {
                        if !up.connected {
                            min(up.t_start + s.proxy_connect_timeout);
                        } else if let Some(p) = up.ping_deadline {
                            min(p);
                        } else {
                            let head_pending = ex.req_head.as_ref().is_some_and(|h| up.head_sent < h.len());
                            let out_pending = head_pending || up.bout.as_ref().is_some_and(|b| !b.is_empty());
                            if out_pending && !up.writable {
                                min(up.t_io + s.proxy_send_timeout);
                            }
                            let request_sent = !out_pending && (ex.body_done() || ex.writer.started);
                            let room = up.bin.as_ref().is_some_and(|b| !b.is_full());
                            if !ex.resp_done && request_sent && room && !up.readable {
                                min(up.t_io + s.proxy_read_timeout);
                            }
                        }
                    }
                }
            }
        }
        self.timer.deadline = d;
        ctx.timers.arm(self.key, &mut self.timer);
    }

    /// A deadline passed: work out which wait it was and act as nginx does.
    pub fn on_timeout(&mut self, ctx: &mut Ctx) -> Res<()> {
        let now = ctx.now;
        let rt = ctx.rt.clone();
        match self.state {
            State::Lingering => return Err(Closed),
            State::Head => {
                let out_blocked = self.cout.as_ref().is_some_and(|b| !b.is_empty()) && !self.c_writable;
                if out_blocked {
                    log::info!("client {} timed out while sending response", self.peer);
                    return Err(Closed);
                }
                if self.head_started.is_some() || self.served == 0 && self.cin.as_ref().is_some_and(|b| !b.is_empty()) {
                    log::info!("client {} timed out while reading request headers", self.peer);
                    let server = rt.cfg.http.listens[self.listen].default_server;
                    self.begin_log(b"-", b"", b"");
                    let mut ex = Exchange::new(now, server, usize::MAX, None, Handling::Respond);
                    ex.keep_alive = false;
                    self.ex = Some(ex);
                    self.state = State::Active;
                    self.respond(ctx, 408, None, &rt.cfg.http.servers[server].settings)?;
                    return self.pump(ctx);
                }
                return Err(Closed);
            }
            State::Active => {}
        }
        let Some(ex) = self.ex.as_ref() else { return Err(Closed) };
        let s = rt.location_settings(ex.server, ex.loc);
        if ex.tunnel {
            let last = ex.up.as_ref().map_or(self.t_read, |u| u.t_io.max(self.t_read));
            if now >= last + s.proxy_read_timeout {
                log::info!("client {}: idle tunnel closed after proxy_read_timeout", self.peer);
                return Err(Closed);
            }
            self.set_deadline(ctx);
            return Ok(());
        }
        let out_blocked = (ex.file.is_some() || self.cout.as_ref().is_some_and(|b| !b.is_empty())) && !self.c_writable;
        if out_blocked && now >= self.t_wblock + s.send_timeout {
            log::info!("client {} timed out while sending response", self.peer);
            return Err(Closed);
        }
        if let Some(p) = ex.up.as_ref().and_then(|u| u.ping_deadline).filter(|&p| now >= p) {
            let _ = p;
            self.upstream_failed(ctx, Fail::Ping, "no CPONG within ajp_ping_timeout")?;
            return self.pump(ctx);
        }
        if let Some(up) = ex.up.as_ref() {
            let waited = now.duration_since(if up.connected { up.t_io } else { up.t_start });
            let limit = if !up.connected {
                s.proxy_connect_timeout
            } else if up.writable {
                s.proxy_read_timeout
            } else {
                s.proxy_send_timeout.min(s.proxy_read_timeout)
            };
            if waited >= limit {
                let what = if up.connected { "reading response header from upstream" } else { "connecting to upstream" };
                self.upstream_failed(ctx, Fail::Timeout, what)?;
                return self.pump(ctx);
            }
        }
        if !ex.body_done() && now >= self.t_read + s.client_body_timeout {
            log::info!("client {} timed out while sending the request body", self.peer);
            if let Some(ex) = self.ex.as_mut() {
                ex.keep_alive = false;
            }
            self.abort_with(ctx, 408)?;
            return self.pump(ctx);
        }
        // Not actually due (a deadline moved): recompute.
        self.set_deadline(ctx);
        Ok(())
    }

    fn write_access_log(&self, ctx: &mut Ctx, ex: &Exchange) {
        let rt = &ctx.rt;
        let settings = rt.location_settings(ex.server, ex.loc);
        let Some(idx) = settings.access_log else { return };
        let Some(log) = ctx.access.get_mut(idx) else { return };
        let line = log.line();
        use std::io::Write as _;
        let f = &self.log_fields;
        let _ = write!(line, "{} - - [{}] \"", self.peer.ip(), ctx.clock.log_time);
        line.extend_from_slice(&f[..self.log_ends[0]]);
        let _ = write!(line, "\" {} {} \"", ex.writer.status, ex.writer.body_bytes);
        line.extend_from_slice(if self.log_ends[1] > self.log_ends[0] { &f[self.log_ends[0]..self.log_ends[1]] } else { b"-" });
        line.extend_from_slice(b"\" \"");
        line.extend_from_slice(if self.log_ends[2] > self.log_ends[1] { &f[self.log_ends[1]..self.log_ends[2]] } else { b"-" });
        line.extend_from_slice(b"\" upstream_addr=");
        if ex.peers_used.is_empty() {
            line.push(b'-');
        } else if let Some(upstream) = ex.proxied_upstream() {
            for (i, &p) in ex.peers_used.iter().enumerate() {
                if i > 0 {
                    line.extend_from_slice(b", ");
                }
                let _ = write!(line, "{}", rt.upstreams[upstream].conf.servers[p as usize].addr);
            }
        }
        line.extend_from_slice(b" upstream_status=");
        if ex.upstream_status == 0 {
            line.push(b'-');
        } else {
            let _ = write!(line, "{}", ex.upstream_status);
        }
        let _ = write!(line, " request_time={:.3} upstream_response_time=", ctx.now.duration_since(ex.start).as_secs_f64());
        match ex.upstream_time {
            Some(t) => {
                let _ = write!(line, "{:.3}", t.as_secs_f64());
            }
            None => line.push(b'-'),
        }
        log.end_line();
    }
}

/// Closes the exchange's backend connection (not a failure: nothing is counted against the
/// server) and gives its buffers back.
fn drop_backend(ctx: &mut Ctx, ex: &mut Exchange) {
    let Some(mut up) = ex.up.take() else { return };
    let rt = ctx.rt.clone();
    let ups = &rt.upstreams[ex.upstream()];
    ctx.close_backend(&mut up.stream, up.token);
    ctx.pool.release(&mut up.bin);
    ctx.pool.release(&mut up.bout);
    ups.peers[up.peer].in_flight.fetch_sub(1, Relaxed);
    ctx.balancers[ex.upstream()].free(ups, up.peer, false, now_ms());
}

/// Renders a `return` text with variables.
fn render_template(parts: &[Part], fr: &ForwardRequest) -> String {
    let mut b = Buf::standalone(8192);
    put_template(&mut b, parts, fr);
    String::from_utf8_lossy(b.data()).into_owned()
}

/// Conditional and range headers of a static-file request.
struct StaticConditions<'a> {
    if_none_match: Option<&'a [u8]>,
    if_modified_since: Option<&'a [u8]>,
    range: Option<&'a [u8]>,
}

struct StaticFile {
    file: std::fs::File,
    status: u16,
    content_type: String,
    last_modified: String,
    etag: String,
    size: u64,
    offset: u64,
    length: u64,
}

enum StaticAnswer {
    Status(u16),
    Redirect(String),
    File(StaticFile),
}

/// Maps a request to a file and decides the answer (200/206/304/416, or an error status).
/// `uri` is the normalized path (`http::uri`); `target` the raw one, for its query.
fn static_answer(method: &str, target: &str, uri: &[u8], s: &Settings, alias: Option<&std::path::Path>, loc_path: &str, c: &StaticConditions) -> StaticAnswer {
    if method != "GET" && method != "HEAD" {
        return StaticAnswer::Status(405);
    }
    let Ok(uri) = std::str::from_utf8(uri) else { return StaticAnswer::Status(400) };
    let Some(root) = alias.or(s.root.as_deref()) else { return StaticAnswer::Status(404) };
    let mut path = files::map(uri, root, alias.map(|_| loc_path));
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return StaticAnswer::Status(403),
        Err(_) => return StaticAnswer::Status(404),
    };
    let meta = if meta.is_dir() {
        if !uri.ends_with('/') {
            let query = target.split_once('?').map_or(String::new(), |(_, q)| format!("?{}", q));
            return StaticAnswer::Redirect(format!("{}/{}", uri, query));
        }
        match s.index.iter().map(|i| path.join(i)).find_map(|p| std::fs::metadata(&p).ok().filter(|m| m.is_file()).map(|m| (p, m))) {
            Some((p, m)) => {
                path = p;
                m
            }
            // No listings.
            None => return StaticAnswer::Status(403),
        }
    } else {
        meta
    };
    if !meta.is_file() {
        return StaticAnswer::Status(404);
    }
    if s.disable_symlinks {
        if let Err(r) = files::check_symlinks(&path, root) {
            return StaticAnswer::Status(r.status());
        }
    }
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return StaticAnswer::Status(403),
        Err(_) => return StaticAnswer::Status(404),
    };
    use std::os::unix::fs::MetadataExt;
    let size = meta.len();
    let etag = files::etag(&meta);
    let last_modified = crate::logging::time::http_date(meta.mtime().max(0) as u64);
    let not_modified = match (c.if_none_match, c.if_modified_since) {
        (Some(inm), _) => files::none_match(inm, &etag),
        (None, Some(ims)) => request::trim(ims) == last_modified.as_bytes(),
        _ => false,
    };
    let (status, offset, length) = if not_modified {
        (304, 0, 0)
    } else {
        match c.range.map_or(Range::Full, |r| files::range(r, size)) {
            Range::Full => (200, 0, size),
            Range::Part(a, b) => (206, a, b - a + 1),
            Range::Unsatisfiable => (416, 0, 0),
        }
    };
    let content_type = files::content_type(&path, &s.types, &s.default_type).to_string();
    StaticAnswer::File(StaticFile { file, status, content_type, last_modified, etag, size, offset, length })
}

/// Keeps the request line, referer and user agent (escaped) for the access log line.
fn fill_log(fields: &mut Vec<u8>, ends: &mut [usize; 3], line: &[u8], referer: &[u8], ua: &[u8]) {
    fields.clear();
    put_escaped(fields, line);
    ends[0] = fields.len();
    put_escaped(fields, referer);
    ends[1] = fields.len();
    put_escaped(fields, ua);
    ends[2] = fields.len();
}

/// The request line for the log when the head could not be parsed.
fn cin_line(data: &[u8]) -> &[u8] {
    let end = data.iter().position(|&c| c == b'\r' || c == b'\n').unwrap_or(data.len()).min(1024);
    &data[..end]
}

fn request_log_fields<'b>(req: &httparse::Request<'_, 'b>, raw: &'b [u8]) -> (&'b [u8], &'b [u8], &'b [u8]) {
    let line = cin_line(raw);
    let get = |name: &str| req.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map_or(&b""[..], |h| h.value);
    (line, get("referer"), get("user-agent"))
}

/// Where decoded request-body bytes go.
pub trait BodySink {
    /// Takes some of `data`; returns how many bytes.
    fn take(&mut self, data: &[u8]) -> usize;
    fn room(&self) -> usize;
}

struct Discard;

impl BodySink for Discard {
    fn take(&mut self, data: &[u8]) -> usize {
        data.len()
    }
    fn room(&self) -> usize {
        usize::MAX
    }
}

/// Collects a small body (the status page's form), up to `limit` bytes.
struct Collect<'a> {
    into: &'a mut Vec<u8>,
    limit: usize,
}

impl BodySink for Collect<'_> {
    fn take(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.room());
        self.into.extend_from_slice(&data[..n]);
        n
    }
    fn room(&self) -> usize {
        self.limit - self.into.len()
    }
}

struct Forward<'a> {
    adapter: &'a mut Adapter,
    out: &'a mut Buf,
}

impl BodySink for Forward<'_> {
    fn take(&mut self, data: &[u8]) -> usize {
        self.adapter.encode_body(data, self.out)
    }
    fn room(&self) -> usize {
        // What the backend accepts now (AJP: one packet per GET_BODY_CHUNK), leaving room in
        // the buffer for framing (chunk lines, AJP packet headers).
        self.out.room().saturating_sub(24).min(self.adapter.body_credit())
    }
}

#[cfg(test)]
mod tests {
    /// An idle keep-alive connection costs its slab entry (no buffers): keep it small.
    #[test]
    fn idle_session_is_small() {
        let size = std::mem::size_of::<super::Session>();
        println!("Session: {} bytes", size);
        assert!(size <= 1024, "Session is {} bytes", size);
    }
}
