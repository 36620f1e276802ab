//! The state of one request/response exchange inside a session.

use super::session::BodySink;
use crate::backend::{ajp::AjpAdapter, http::HttpAdapter, Adapter, RetryMask};
use crate::buffer::Buf;
use crate::config::{next, Settings};
use crate::http::chunked::{ChunkError, ChunkedDecoder};
use crate::http::request::{BodyKind, RequestMeta};
use crate::http::writer::ResponseWriter;
use crate::upstream::UpstreamState;
use mio::net::TcpStream;
use std::time::{Duration, Instant};

/// Which adapter talks to the backend, with its per-request parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Http,
    /// AJP13: packet size, and the CPING timeout when `ajp_ping` is on.
    Ajp {
        packet_size: usize,
        ping: Option<Duration>,
    },
}

impl BackendKind {
    pub fn adapter(self, meta: &RequestMeta) -> Adapter {
        match self {
            BackendKind::Http => Adapter::Http(HttpAdapter::new(meta.method, meta.body, meta.upgrade)),
            BackendKind::Ajp { packet_size, .. } => Adapter::Ajp(AjpAdapter::new(meta.body, packet_size)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    Proxy {
        upstream: usize,
    },
    /// pounce answers itself (error, `return`, 404).
    Respond,
    /// The status page: the (small) form body is collected, then the page is answered.
    Status,
}

/// A status-page request, kept until its body is in (not the hot path: allocations are fine).
pub struct StatusReq {
    pub method: String,
    pub target: String,
    pub accept: Vec<u8>,
    pub form: Vec<u8>,
}

/// Form bodies larger than this get 413.
pub const MAX_FORM: usize = 16 * 1024;

/// Why a backend attempt failed, in `proxy_next_upstream` terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fail {
    Error,
    /// No CPONG in time: a connect failure (nothing of the request was sent).
    Ping,
    Timeout,
    InvalidHeader,
    Status(u16),
}

impl Fail {
    pub fn bit(self) -> u16 {
        match self {
            Fail::Error | Fail::Ping => next::ERROR,
            Fail::Timeout => next::TIMEOUT,
            Fail::InvalidHeader => next::INVALID_HEADER,
            Fail::Status(s) => match s {
                500 => next::HTTP_500,
                502 => next::HTTP_502,
                503 => next::HTTP_503,
                504 => next::HTTP_504,
                403 => next::HTTP_403,
                404 => next::HTTP_404,
                429 => next::HTTP_429,
                _ => 0,
            },
        }
    }

    /// The status the client gets when no retry is left.
    pub fn status(self) -> u16 {
        match self {
            Fail::Timeout => 504,
            _ => 502,
        }
    }

    /// nginx: errors, timeouts, invalid headers and 500/502/503/504 count against the
    /// server; 403, 404 and 429 only move the request on.
    pub fn counts_as_failure(self) -> bool {
        !matches!(self, Fail::Status(403 | 404 | 429))
    }
}

/// The request body still to come from the client.
#[derive(Debug, Clone)]
pub enum ReqBody {
    Done,
    Length(u64),
    Chunked(ChunkedDecoder),
}

impl ReqBody {
    /// Moves body bytes from `cin` into `sink`, never more than the sink can take at that
    /// moment (its room is asked afresh each step: an AJP sink takes one packet per ask).
    /// Returns `(input bytes used, payload bytes moved)`.
    pub fn feed(&mut self, cin: &mut Buf, sink: &mut dyn BodySink) -> Result<(usize, usize), ChunkError> {
        let mut used_total = 0;
        let mut moved = 0;
        loop {
            match self {
                ReqBody::Done => break,
                ReqBody::Length(rem) => {
                    let n = (cin.len() as u64).min(*rem).min(sink.room() as u64) as usize;
                    if n == 0 {
                        break;
                    }
                    let taken = sink.take(&cin.data()[..n]);
                    if taken == 0 {
                        break;
                    }
                    cin.consume(taken);
                    *rem -= taken as u64;
                    used_total += taken;
                    moved += taken;
                    if *rem == 0 {
                        *self = ReqBody::Done;
                    }
                }
                ReqBody::Chunked(dec) => {
                    let limit = sink.room();
                    if limit == 0 {
                        break;
                    }
                    let (used, data) = dec.decode(cin.data(), limit)?;
                    if let Some((off, len)) = data {
                        // `limit` was the sink's room, so it takes all of it.
                        moved += sink.take(&cin.data()[off..off + len]);
                    }
                    let done = dec.is_done();
                    cin.consume(used);
                    used_total += used;
                    if done {
                        *self = ReqBody::Done;
                    } else if used == 0 {
                        break;
                    }
                }
            }
        }
        Ok((used_total, moved))
    }
}

/// A backend connection attached to an exchange.
pub struct UpConn {
    pub stream: TcpStream,
    /// Its id (and epoll token) in the worker's backend table.
    pub token: usize,
    pub peer: usize,
    pub connected: bool,
    /// Taken from the idle pool (may have been closed by the backend meanwhile).
    pub reused: bool,
    pub readable: bool,
    pub writable: bool,
    pub eof: bool,
    /// EPOLLRDHUP seen: keep reading until read() returns 0.
    pub rdhup: bool,
    pub bin: Option<Buf>,
    pub bout: Option<Buf>,
    /// Bytes of the kept request head already written on this connection.
    pub head_sent: usize,
    pub adapter: Adapter,
    pub t_start: Instant,
    /// Last read or write progress.
    pub t_io: Instant,
    /// Requests served on this connection before this one.
    pub requests: u32,
    /// AJP: a CPING must be answered before the request goes out, by this deadline.
    pub ping_deadline: Option<Instant>,
    /// Bytes of the CPING packet written so far.
    pub ping_sent: usize,
}

pub struct Exchange {
    pub start: Instant,
    pub server: usize,
    /// Location index, or usize::MAX when none matched.
    pub loc: usize,
    pub meta: Option<RequestMeta>,
    pub handling: Handling,
    /// The upstream this request was sent to (kept when pounce ends up answering itself).
    pub upstream: usize,
    pub keep_alive: bool,
    pub kind: BackendKind,
    pub body: ReqBody,
    /// Payload bytes taken from the client (once > 0 the request cannot be replayed).
    pub body_taken: u64,
    pub continue_pending: bool,
    pub tried: u128,
    pub tries: u32,
    /// The peer the session's route names and that can serve it (tried first).
    pub sticky_peer: Option<usize>,
    /// The peer the request's route named, when the request had one that matched.
    pub route_peer: Option<usize>,
    pub last_fail: Option<Fail>,
    /// The encoded request head, kept until the response starts so a retry can resend it.
    pub req_head: Option<Buf>,
    /// Client Host value inside `req_head`.
    pub host: (usize, usize),
    /// Size of the encoded request head (traffic accounting; `req_head` goes early).
    pub head_bytes: u64,
    pub up: Option<UpConn>,
    /// Some request byte reached a backend.
    pub sent: bool,
    pub writer: ResponseWriter,
    pub resp_done: bool,
    pub reusable: bool,
    pub upstream_status: u16,
    pub upstream_time: Option<Duration>,
    pub peers_used: PeerList,
    pub status_req: Option<Box<StatusReq>>,
    /// A generated page still to be copied into the client buffer, and how far it got.
    pub page: Option<Vec<u8>>,
    pub page_off: usize,
    /// A static file body still to be sent (sendfile).
    pub file: Option<crate::files::FileBody>,
    /// After a 101: bytes are copied both ways until either side closes.
    pub tunnel: bool,
}

/// The peers tried for one request, for `$upstream_addr` (no allocation).
#[derive(Default, Clone, Copy)]
pub struct PeerList {
    items: [u8; 8],
    len: u8,
}

impl PeerList {
    pub fn push(&mut self, p: usize) {
        if (self.len as usize) < self.items.len() {
            self.items[self.len as usize] = p as u8;
            self.len += 1;
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn iter(&self) -> impl Iterator<Item = &u8> {
        self.items[..self.len as usize].iter()
    }
}

impl Exchange {
    pub fn new(start: Instant, server: usize, loc: usize, meta: Option<RequestMeta>, handling: Handling) -> Exchange {
        let upstream = match handling {
            Handling::Proxy { upstream } => upstream,
            Handling::Respond | Handling::Status => usize::MAX,
        };
        Exchange {
            start,
            server,
            loc,
            meta,
            handling,
            upstream,
            keep_alive: false,
            kind: BackendKind::Http,
            body: ReqBody::Done,
            body_taken: 0,
            continue_pending: false,
            tried: 0,
            tries: 0,
            sticky_peer: None,
            route_peer: None,
            last_fail: None,
            req_head: None,
            host: (0, 0),
            head_bytes: 0,
            up: None,
            sent: false,
            writer: ResponseWriter::new(),
            resp_done: false,
            reusable: false,
            upstream_status: 0,
            upstream_time: None,
            peers_used: PeerList::default(),
            status_req: None,
            page: None,
            page_off: 0,
            file: None,
            tunnel: false,
        }
    }

    pub fn set_body(&mut self, kind: BodyKind) {
        self.body = match kind {
            BodyKind::None => ReqBody::Done,
            BodyKind::Length(n) => ReqBody::Length(n),
            BodyKind::Chunked => ReqBody::Chunked(ChunkedDecoder::new()),
        };
        self.continue_pending = self.meta.is_some_and(|m| m.expect_continue);
    }

    pub fn upstream(&self) -> usize {
        self.upstream
    }

    /// The upstream the request went to, if it was proxied at all.
    pub fn proxied_upstream(&self) -> Option<usize> {
        (self.upstream != usize::MAX).then_some(self.upstream)
    }

    pub fn body_done(&self) -> bool {
        matches!(self.body, ReqBody::Done)
    }

    pub fn log_peer(&mut self, p: usize) {
        self.peers_used.push(p);
    }

    /// May this request be sent (again) after a failure? Not once its body was consumed,
    /// and not once it was written if it is not idempotent (unless `non_idempotent`): the
    /// server may have acted on it. nginx's rule.
    pub fn may_resend(&self, settings: &Settings) -> bool {
        self.body_taken == 0 && (!self.sent || self.meta.is_some_and(|m| m.method.idempotent()) || settings.proxy_next_upstream & next::NON_IDEMPOTENT != 0)
    }

    /// Statuses worth seeing before they are forwarded: only while another try is possible.
    pub fn retry_mask(&self, settings: &Settings, ups: &UpstreamState) -> RetryMask {
        let statuses = settings.proxy_next_upstream
            & (next::HTTP_500 | next::HTTP_502 | next::HTTP_503 | next::HTTP_504 | next::HTTP_403 | next::HTTP_404 | next::HTTP_429);
        if statuses == 0 || self.body_taken > 0 {
            return RetryMask(0);
        }
        let idempotent = self.meta.is_some_and(|m| m.method.idempotent());
        if !idempotent && settings.proxy_next_upstream & next::NON_IDEMPOTENT == 0 {
            return RetryMask(0);
        }
        let limit = if settings.proxy_next_upstream_tries == 0 { ups.max_tries() } else { settings.proxy_next_upstream_tries.min(ups.max_tries()) };
        let all: u128 = if ups.conf.servers.len() >= 128 { u128::MAX } else { (1u128 << ups.conf.servers.len()) - 1 };
        if self.tries >= limit || self.tried & all == all {
            return RetryMask(0);
        }
        RetryMask(statuses)
    }
}
