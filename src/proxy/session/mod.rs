//! One client connection and, while a request is in flight, its backend connection.
//!
//! Bytes move through four pooled buffers: `cin` (client → pounce), `bout` (pounce →
//! backend), `bin` (backend → pounce) and `cout` (pounce → client). `pump` moves them until
//! nothing more can move: a full buffer stops its reader (back-pressure), and edge-triggered
//! readiness is remembered in flags so a reader resumes as soon as room appears.
//!
//! This file holds the state, the event entry points and the client-side I/O; the rest of
//! `impl Session` is split by job: `start` (parse and route a request), `flow` (move an
//! exchange's bytes), `upstream` (pick, connect, fail over, finish), `pages` (answers pounce
//! writes itself: status page, static files, tunnel), `timeouts`, and `access` (log fields).

use super::exchange::{BackendKind, Exchange, Fail, Handling, ReqBody, StatusReq, UpConn, MAX_FORM};
use super::route::{find_location, find_server};
use crate::backend::ajp_codec::{CPING_PACKET, CPONG, MAGIC_FROM_TOMCAT};
use crate::backend::http::put_template;
use crate::backend::{Adapter, BackendError, ForwardRequest, Protocol, Step};
use crate::buffer::Buf;
use crate::config::{access_allowed, next, BackendConf, Handler, Part, Settings};
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

mod access;
mod flow;
mod pages;
mod start;
mod timeouts;
mod upstream;

use access::{cin_line, fill_log, request_log_fields};
pub use flow::BodySink;
use pages::{static_answer, StaticConditions};
use upstream::drop_backend;

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
