//! One client connection. Where it stands is one enum, `ClientPhase`: waiting for its PROXY
//! protocol header (on a `listen ... proxy_protocol` address), waiting for a request head, an
//! exchange in progress, closing once the last answer is out, or lingering. Bytes
//! move through the client's two pooled buffers (`Client`) and, while a request is proxied,
//! its backend connection's two; `pump` moves them until nothing more can move — a full
//! buffer stops its reader (back-pressure), and edge-triggered readiness is remembered so a
//! reader resumes as soon as room appears.
//!
//! This file holds the phases, the event entry points and the pump; `begin` turns a request
//! head into an exchange (parse, plan, begin), `preface` reads the PROXY protocol header,
//! `timeouts` arms and handles deadlines, and `access` writes the access log. The exchange
//! itself is `proxy::exchange`.

use super::client::Client;
use super::exchange::{Exchange, Moved, Phase};
use super::{Closed, Res, Wait};
use crate::ratelimit::{ConnHold, Marks};
use crate::reactor::timer::TimerSlot;
use crate::reactor::{client_token, Ctx};
use crate::transport::ClientTransport;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

mod access;
mod begin;
mod preface;
mod timeouts;

use access::LogFields;

/// How long a closing connection keeps reading (and discarding) what the client still
/// sends, so that an unread request body does not turn our close into a reset that
/// destroys the response in flight (nginx's lingering close).
const LINGER: Duration = Duration::from_secs(2);

/// Partial heads up to this size are moved out of their pooled buffer while the client is silent.
const HEAD_STASH_MAX: usize = 1024;

/// Where a client connection is. The exchange is kept inline (not boxed): a box would be
/// an allocation per request, and the session's size is checked by a test.
#[allow(clippy::large_enum_variant)]
enum ClientPhase {
    /// A `listen ... proxy_protocol` connection before its PROXY protocol header is whole:
    /// nothing else is read (the transport, TLS included, starts after the header).
    ProxyHeader,
    /// Waiting for (the rest of) a request head; `since`: when its first byte came.
    ReadingHead { since: Option<Instant> },
    /// A request is in hand.
    Exchange(Exchange),
    /// `limit_req` delays the request whose head is in `cin` until `until`; then it is begun
    /// again (the limits already decided). `ex` stands for it in the access log if the client
    /// leaves meanwhile. Boxed: rare, and the session's size is kept small.
    Delayed(Box<Delayed>),
    /// The last answer is in `cout`: no more requests; close once it is flushed.
    Closing,
    /// Our side is shut; reading and dropping what the client still sends, until its EOF
    /// or the deadline.
    Lingering { until: Instant },
}

/// A request `limit_req` delays.
struct Delayed {
    until: Instant,
    ex: Exchange,
}

pub(crate) struct Session {
    pub(crate) timer: TimerSlot<Wait>,
    client: Client,
    phase: ClientPhase,
    /// Requests answered on this connection.
    served: u32,
    /// When the last exchange finished (or the connection was accepted).
    idle_since: Instant,
    /// A partial request head kept while the client is silent (`stash_partial_head`).
    head_stash: Vec<u8>,
    /// The normalized request path, when it differs from the raw one (`http::uri`).
    path_scratch: Vec<u8>,
    /// Request line, referer and user agent of the current request, for the access log.
    log: LogFields,
    /// What `limit_req` and `limit_conn` decided of the current request.
    marks: Marks,
    /// The current request's counts in `limit_conn` zones, given back when it ends (boxed on
    /// the first request that needs it, then reused: the session's size is kept small).
    #[allow(clippy::box_collection)]
    holds: Option<Box<Vec<ConnHold>>>,
}

impl Session {
    /// A new connection; `proxy_protocol`: its address expects a PROXY protocol header first.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        key: usize,
        transport: ClientTransport,
        peer: SocketAddr,
        local_port: u16,
        listen: usize,
        now: Instant,
        serial: u64,
        proxy_protocol: bool,
    ) -> Session {
        let mut client = Client::new(key, transport, peer, local_port, listen, now);
        client.serial = serial;
        Session {
            timer: TimerSlot::default(),
            client,
            phase: if proxy_protocol { ClientPhase::ProxyHeader } else { ClientPhase::ReadingHead { since: None } },
            served: 0,
            idle_since: now,
            head_stash: Vec::new(),
            path_scratch: Vec::new(),
            log: LogFields::default(),
            marks: Marks::default(),
            holds: None,
        }
    }

    pub(crate) fn register(&mut self, ctx: &mut Ctx) -> io::Result<()> {
        self.client.transport.register(&ctx.registry, client_token(self.client.key))
    }

    /// True when no request is in progress and nothing is buffered (safe to drop at shutdown).
    pub(crate) fn is_idle(&self) -> bool {
        matches!(self.phase, ClientPhase::ReadingHead { .. } | ClientPhase::ProxyHeader)
            && self.head_stash.is_empty()
            && self.client.input_empty()
            && !self.client.output_pending()
    }

    /// Idle (see `is_idle`) since at least `since`: no request and nothing to send since then.
    pub(crate) fn idle_before(&self, since: Instant) -> bool {
        self.is_idle() && self.idle_since <= since && self.client.t_read <= since
    }

    pub(crate) fn on_client_event(&mut self, ctx: &mut Ctx, ev: &mio::event::Event) -> Res<()> {
        self.client.transport.on_event(ev);
        // The PROXY protocol header is read here, never in `pump`: a connection without one
        // pays this test per event, and `pump` stays as it is for it.
        if matches!(self.phase, ClientPhase::ProxyHeader) && !self.read_proxy_header(ctx)? {
            self.arm_timer(ctx);
            return Ok(());
        }
        self.pump(ctx)
    }

    pub(crate) fn on_backend_event(&mut self, ctx: &mut Ctx, ev: &mio::event::Event) -> Res<()> {
        if let ClientPhase::Exchange(ex) = &mut self.phase {
            ex.on_backend_event(&mut self.client, ctx, ev)?;
        }
        self.pump(ctx)
    }

    /// The server this session's request waits on, before any of its response came
    /// (upstream, server, when the request was last written to it).
    pub(crate) fn waiting_on(&self) -> Option<(usize, usize, Instant)> {
        match &self.phase {
            ClientPhase::Exchange(ex) => ex.waiting_on(),
            _ => None,
        }
    }

    /// The server this session's request uses (upstream, server), if any.
    pub(crate) fn backend(&mut self) -> Option<(usize, usize)> {
        match &mut self.phase {
            ClientPhase::Exchange(ex) => ex.upconn_mut().map(|up| (up.upstream, up.peer)),
            _ => None,
        }
    }

    /// A server went out for its health: if this session's request waits on it, it moves
    /// on when that is safe (`Exchange::server_down`).
    pub(crate) fn on_server_down(&mut self, ctx: &mut Ctx) -> Res<Moved> {
        let ClientPhase::Exchange(ex) = &mut self.phase else { return Ok(Moved::NotThere) };
        let moved = ex.server_down(&mut self.client, ctx)?;
        if moved == Moved::Resent {
            self.pump(ctx)?;
        }
        Ok(moved)
    }

    /// Moves bytes in every direction until nothing more can move, then re-arms the timer.
    pub(crate) fn pump(&mut self, ctx: &mut Ctx) -> Res<()> {
        debug_assert!(!matches!(self.phase, ClientPhase::ProxyHeader), "the PROXY header is read before pump");
        for _ in 0..10_000 {
            let mut progress = match self.phase {
                // No more requests are read; the answer goes out first.
                ClientPhase::Closing => false,
                _ => self.client.read(ctx, &mut self.head_stash)?,
            };
            progress |= match &mut self.phase {
                ClientPhase::ReadingHead { .. } => self.begin(ctx)?,
                ClientPhase::Exchange(ex) => {
                    let moved = ex.drive(&mut self.client, ctx)?;
                    // Over once its response has all gone to the socket: only then is it
                    // logged (with the bytes sent), and only then is the next request read.
                    if ex.is_done() && !self.client.output_pending() {
                        self.finish(ctx);
                    }
                    moved || matches!(self.phase, ClientPhase::ReadingHead { .. } | ClientPhase::Closing)
                }
                ClientPhase::Closing | ClientPhase::ProxyHeader => false,
                ClientPhase::Delayed(_) => {
                    // A client that leaves while its request waits ends it (nginx's
                    // `ngx_http_test_reading`): 499.
                    if self.client.transport.read_closed() || self.client.transport.peer_closed() {
                        return Err(Closed::ByClient);
                    }
                    false
                }
                ClientPhase::Lingering { until } => {
                    if let Some(b) = self.client.cin.as_mut() {
                        b.clear();
                    }
                    if self.client.transport.read_closed() || ctx.now >= *until {
                        return Err(Closed::ByUs);
                    }
                    false
                }
            };
            let hold = matches!(&self.phase, ClientPhase::Exchange(ex) if ex.holds_output(&self.client));
            if !hold {
                progress |= self.client.write(ctx)?;
            }
            if matches!(&self.phase, ClientPhase::Exchange(ex) if ex.is_done()) && !self.client.output_pending() {
                // Its last bytes just went: over now, not one loop pass later.
                self.finish(ctx);
                progress = true;
            }
            if matches!(self.phase, ClientPhase::Closing) && !self.client.output_pending() {
                self.start_lingering(ctx)?;
                progress = true;
            }
            if !progress {
                break;
            }
        }
        if matches!(self.phase, ClientPhase::ReadingHead { .. }) {
            self.stash_partial_head();
            self.client.release_idle_buffers();
            if self.client.transport.read_closed() && self.client.input_empty() && !self.client.output_pending() {
                return Err(Closed::ByUs);
            }
        }
        self.arm_timer(ctx);
        Ok(())
    }

    /// The exchange is complete and its response is out: log it, then wait for the next
    /// request or close.
    fn finish(&mut self, ctx: &mut Ctx) {
        let ClientPhase::Exchange(ex) = std::mem::replace(&mut self.phase, ClientPhase::Closing) else { return };
        self.write_access_log(ctx, &ex, ex.writer.status);
        self.served += 1;
        // The request is over: its limit_conn counts go back.
        self.marks = Marks::default();
        if let Some(h) = self.holds.as_mut() {
            h.clear();
        }
        // A response that went out as keep-alive keeps the connection even while draining:
        // the client may already be sending its next request, which is then served with
        // Connection: close; an idle one is closed by the worker after its grace time.
        let keep = ex.keep_alive && ex.writer.keep_alive && ex.writer.finished && ex.body_done();
        ex.teardown(ctx);
        // The next request's client is found again (realip); until then, the connection's peer.
        self.client.reset_client();
        self.phase = if keep { ClientPhase::ReadingHead { since: None } } else { ClientPhase::Closing };
        self.idle_since = ctx.now;
    }

    /// The answer is out: shut our side and read on until the client closes.
    fn start_lingering(&mut self, ctx: &mut Ctx) -> Res<()> {
        if self.client.transport.read_closed() {
            return Err(Closed::ByUs);
        }
        self.client.transport.shutdown_write();
        self.phase = ClientPhase::Lingering { until: ctx.now + LINGER };
        Ok(())
    }

    /// A client that sends its head in pieces (slowly, or a slowloris) does not keep a
    /// 16 KiB buffer between the pieces: once the socket is drained, a small partial head is
    /// moved aside and the buffer goes back to the pool until more bytes come.
    fn stash_partial_head(&mut self) {
        let t = &self.client.transport;
        if t.can_read() || t.read_closed() {
            return;
        }
        if let Some(cin) = self.client.cin.as_ref().filter(|b| !b.is_empty() && b.len() <= HEAD_STASH_MAX) {
            self.head_stash.extend_from_slice(cin.data());
            self.client.cin = None;
        }
    }

    /// Releases everything this session holds. Called once, when it is removed: a request
    /// still in progress is logged — 499 when the client left before its response had all
    /// gone to the socket, even if it was complete in `cout` — and its backend connection
    /// closed, never pooled.
    pub(crate) fn close(mut self, ctx: &mut Ctx, cause: Closed) {
        match std::mem::replace(&mut self.phase, ClientPhase::Closing) {
            ClientPhase::Exchange(ex) => {
                let tunnel = matches!(ex.phase, Phase::Tunnel(_));
                let status = if tunnel || (cause == Closed::ByUs && ex.writer.started) { ex.writer.status } else { 499 };
                self.write_access_log(ctx, &ex, status);
                ex.teardown(ctx);
            }
            ClientPhase::Delayed(d) => {
                self.write_access_log(ctx, &d.ex, 499);
                d.ex.teardown(ctx);
            }
            _ => {}
        }
        self.client.transport.deregister(&ctx.registry);
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
