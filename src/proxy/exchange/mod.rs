//! One request and its response inside a session. Where it stands is one enum, `Phase`,
//! whose variants carry their own data (a backend connection exists exactly in the phases
//! that talk to a backend; a page or a file exactly while pounce is sending one), and driving
//! it is one `match` (`drive.rs`). The rest of the exchange is what every phase shares: the
//! request's facts, its body still to come, the response writer and, for proxied requests,
//! what retries need (`ProxyState`). docs/LIFECYCLE.md describes the phases.

mod answer;
mod drive;
mod upstream;
mod waits;

pub(crate) use answer::{static_answer, StaticAnswer, StaticConditions};

use super::body::ReqBody;
use super::client::Client;
use super::fail::Fail;
use super::upconn::{Release, UpConn};
use crate::backend::Protocol;
use crate::buffer::Buf;
use crate::config::{next, Settings};
use crate::files::FileBody;
use crate::http::request::RequestMeta;
use crate::http::writer::ResponseWriter;
use crate::reactor::Ctx;
use crate::upstream::tried::Tried;
use crate::upstream::UpstreamState;
use std::time::{Duration, Instant};

/// Where an exchange is.
pub(crate) enum Phase {
    /// A TCP connect to the chosen server is in progress.
    Connecting(UpConn),
    /// The adapter's handshake runs before the request goes out (AJP's CPING/CPONG).
    Handshake { up: UpConn, deadline: Instant },
    /// The kept request head is being written (`sent` bytes so far); body bytes queue behind it.
    SendingHead { up: UpConn, sent: usize },
    /// The head went out; the body follows as it comes, and the response head is awaited.
    AwaitingResponse(UpConn),
    /// The response head went to the client; its body follows (and the rest of the request
    /// body, if the backend answered early).
    Streaming(UpConn),
    /// After a 101: bytes are copied both ways until either side closes.
    Tunnel(UpConn),
    /// The status page collects its (small) form body before it answers.
    CollectingForm(Box<StatusReq>),
    /// pounce answers itself; its head is in `cout` and this body remains to be sent.
    Answering(OwnBody),
    /// The response is complete; the rest of the request body is read and dropped, so the
    /// connection can be kept.
    Discarding,
    /// The response is complete and nothing more is owed: the session logs and moves on.
    Done,
}

/// The body of an answer pounce writes itself.
pub(crate) enum OwnBody {
    /// A generated page, copied into `cout` as room appears.
    Page { bytes: Vec<u8>, off: usize },
    /// A static file, sent with sendfile(2).
    File(FileBody),
}

/// A status-page request, kept until its body is in (not the hot path: allocations are fine).
pub(crate) struct StatusReq {
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) accept: Vec<u8>,
    pub(crate) form: Vec<u8>,
}

/// Form bodies larger than this get 413.
pub(crate) const MAX_FORM: usize = 16 * 1024;

/// Less than this much of a response may wait for more when its adapter allows it (nginx's
/// `postpone_output`): one write, one segment for the client instead of several.
const POSTPONE_OUTPUT: usize = 1460;

/// What a proxied request carries from try to try.
pub(crate) struct ProxyState {
    pub(crate) upstream: usize,
    /// Servers already tried (by index) and how many tries so far.
    pub(crate) tried: Tried,
    pub(crate) tries: u32,
    /// The server the session's route names and that can serve it (tried first).
    pub(crate) sticky_peer: Option<usize>,
    /// The server the request's route named, when the request had one that matched.
    pub(crate) route_peer: Option<usize>,
    pub(crate) last_fail: Option<Fail>,
    /// The encoded request head, kept until the response starts so a retry can resend it.
    pub(crate) head: Option<Buf>,
    /// Where the client's Host value sits inside `head` (for redirect rewriting).
    pub(crate) host: (usize, usize),
    /// Size of the encoded head (traffic accounting; `head` goes early).
    pub(crate) head_bytes: u64,
    /// For the access log.
    pub(crate) peers_used: PeerList,
    pub(crate) upstream_status: u16,
    pub(crate) upstream_time: Option<Duration>,
}

impl ProxyState {
    pub(crate) fn new(upstream: usize, servers: usize, head: Buf, host: (usize, usize), sticky_peer: Option<usize>, route_peer: Option<usize>) -> ProxyState {
        ProxyState {
            upstream,
            tried: Tried::new(servers),
            tries: 0,
            sticky_peer,
            route_peer,
            last_fail: None,
            head_bytes: head.len() as u64,
            head: Some(head),
            host,
            peers_used: PeerList::default(),
            upstream_status: 0,
            upstream_time: None,
        }
    }
}

/// The servers tried for one request, for `$upstream_addr` (no allocation; the first 8).
#[derive(Default, Clone, Copy)]
pub(crate) struct PeerList {
    items: [u16; 8],
    len: u8,
}

impl PeerList {
    pub(crate) fn push(&mut self, p: usize) {
        if (self.len as usize) < self.items.len() {
            self.items[self.len as usize] = p as u16;
            self.len += 1;
        }
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.items[..self.len as usize].iter().map(|&p| p as usize)
    }
}

pub(crate) struct Exchange {
    pub(crate) start: Instant,
    pub(crate) server: usize,
    /// Location index, or usize::MAX when none matched.
    pub(crate) loc: usize,
    pub(crate) meta: RequestMeta,
    /// The client may send another request after this one.
    pub(crate) keep_alive: bool,
    pub(crate) body: ReqBody,
    /// Payload bytes taken from the client (once > 0 the request cannot be replayed).
    pub(crate) body_taken: u64,
    pub(crate) continue_pending: bool,
    /// `proxy_ignore_client_abort off` (the default): a client that leaves ends the request.
    pub(crate) abort_with_client: bool,
    pub(crate) proxy: Option<ProxyState>,
    pub(crate) writer: ResponseWriter,
    pub(crate) phase: Phase,
}

impl Exchange {
    /// An exchange for a request pounce answers itself; `phase` is set by the answer.
    pub(crate) fn new(start: Instant, server: usize, loc: Option<usize>, meta: RequestMeta, keep_alive: bool) -> Exchange {
        Exchange {
            start,
            server,
            loc: loc.unwrap_or(usize::MAX),
            meta,
            keep_alive,
            body: ReqBody::Done,
            body_taken: 0,
            continue_pending: false,
            abort_with_client: true,
            proxy: None,
            writer: ResponseWriter::new(),
            phase: Phase::Done,
        }
    }

    /// The request body still to come, as its head announced it.
    pub(crate) fn expect_body(mut self) -> Exchange {
        self.body = ReqBody::new(self.meta.body);
        self.continue_pending = self.meta.expect_continue;
        self
    }

    pub(crate) fn body_done(&self) -> bool {
        self.body.is_done()
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    pub(crate) fn settings<'r>(&self, rt: &'r crate::runtime::Runtime) -> &'r Settings {
        rt.location_settings(self.server, self.loc)
    }

    /// The backend connection, in the phases that have one.
    pub(crate) fn upconn(&self) -> Option<&UpConn> {
        match &self.phase {
            Phase::Connecting(up) | Phase::AwaitingResponse(up) | Phase::Streaming(up) | Phase::Tunnel(up) => Some(up),
            Phase::Handshake { up, .. } | Phase::SendingHead { up, .. } => Some(up),
            _ => None,
        }
    }

    pub(crate) fn upconn_mut(&mut self) -> Option<&mut UpConn> {
        match &mut self.phase {
            Phase::Connecting(up) | Phase::AwaitingResponse(up) | Phase::Streaming(up) | Phase::Tunnel(up) => Some(up),
            Phase::Handshake { up, .. } | Phase::SendingHead { up, .. } => Some(up),
            _ => None,
        }
    }

    /// Takes the backend connection out, leaving `next` as the phase.
    pub(crate) fn take_upconn(&mut self, next: Phase) -> Option<UpConn> {
        match std::mem::replace(&mut self.phase, next) {
            Phase::Connecting(up) | Phase::AwaitingResponse(up) | Phase::Streaming(up) | Phase::Tunnel(up) => Some(up),
            Phase::Handshake { up, .. } | Phase::SendingHead { up, .. } => Some(up),
            other => {
                self.phase = other;
                None
            }
        }
    }

    /// A request byte may have reached the backend on the current try.
    pub(crate) fn request_sent(&self) -> bool {
        match &self.phase {
            Phase::SendingHead { sent, .. } => *sent > 0,
            Phase::AwaitingResponse(_) | Phase::Streaming(_) | Phase::Tunnel(_) => true,
            _ => false,
        }
    }

    /// The phases in which a client that leaves abandons a request still being worked on.
    pub(crate) fn proxying(&self) -> bool {
        matches!(self.phase, Phase::Connecting(_) | Phase::Handshake { .. } | Phase::SendingHead { .. } | Phase::AwaitingResponse(_) | Phase::Streaming(_))
    }

    /// May this request be sent (again) after a failure? Not once its body was consumed,
    /// and not once it was written if it is not idempotent (unless `non_idempotent`): the
    /// server may have acted on it. nginx's rule.
    pub(crate) fn may_resend(&self, settings: &Settings, sent: bool) -> bool {
        self.body_taken == 0 && (!sent || self.meta.method.idempotent() || settings.proxy_next_upstream & next::NON_IDEMPOTENT != 0)
    }

    /// Tries a request may make: the upstream's servers, capped by `proxy_next_upstream_tries`.
    pub(crate) fn try_limit(settings: &Settings, ups: &UpstreamState) -> u32 {
        if settings.proxy_next_upstream_tries == 0 {
            ups.max_tries()
        } else {
            settings.proxy_next_upstream_tries.min(ups.max_tries())
        }
    }

    /// Statuses worth seeing before they are forwarded: only while another try is possible.
    pub(crate) fn retry_mask(&self, settings: &Settings, ups: &UpstreamState) -> crate::backend::RetryMask {
        use crate::backend::RetryMask;
        let statuses = settings.proxy_next_upstream
            & (next::HTTP_500 | next::HTTP_502 | next::HTTP_503 | next::HTTP_504 | next::HTTP_403 | next::HTTP_404 | next::HTTP_429);
        let Some(px) = self.proxy.as_ref() else { return RetryMask(0) };
        if statuses == 0 || self.body_taken > 0 {
            return RetryMask(0);
        }
        if !self.meta.method.idempotent() && settings.proxy_next_upstream & next::NON_IDEMPOTENT == 0 {
            return RetryMask(0);
        }
        if px.tries >= Self::try_limit(settings, ups) || px.tried.count() >= ups.conf.servers.len() {
            return RetryMask(0);
        }
        RetryMask(statuses)
    }

    /// May the client's output wait for more of the response? A small piece of a response
    /// still coming, when the adapter says the backend did not ask for a flush.
    pub(crate) fn holds_output(&self, c: &Client) -> bool {
        match &self.phase {
            Phase::Streaming(up) => !self.writer.finished && up.adapter.hold_output() && c.cout.as_ref().is_some_and(|b| b.len() < POSTPONE_OUTPUT),
            _ => false,
        }
    }

    /// Bytes moved for the server's traffic counters.
    pub(crate) fn traffic(&self) -> (u64, u64) {
        let head = self.proxy.as_ref().map_or(0, |p| p.head_bytes);
        (head + self.body_taken, self.writer.body_bytes)
    }

    /// Ends the exchange where it stands (the client left or the connection closes): a
    /// backend connection is closed, never pooled; nothing is counted against the server.
    pub(crate) fn teardown(mut self, ctx: &mut Ctx) {
        let traffic = self.traffic();
        if let Some(up) = self.take_upconn(Phase::Done) {
            up.release(ctx, Release::Close, traffic);
        }
    }
}
