//! One request and its response inside a session. Where it stands is one enum, `Phase`,
//! whose variants carry their own data (a backend connection exists exactly in the phases
//! that talk to a backend; a page or a file exactly while pounce is sending one), and driving
//! it is one `match` (`drive.rs`). The rest of the exchange is what every phase shares: the
//! request's facts, its body still to come, the response writer and, for proxied requests,
//! what retries need (`ProxyState`). docs/LIFECYCLE.md describes the phases.

mod answer;
mod drive;
mod tries;
mod upstream;
mod waits;

pub(crate) use answer::{static_answer, StaticAnswer, StaticConditions};
pub(crate) use tries::Tries;
pub(crate) use upstream::Moved;

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
use crate::proxy::plan::ProxyPlan;
use crate::reactor::Ctx;
use crate::upstream::tried::Tried;
use crate::upstream::UpstreamState;
use std::time::Instant;

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
    /// A static file compressed with gzip: read and compressed into `cout` as room appears.
    Compressed(FileBody),
}

/// A status-page request, kept until its body is in (not the hot path: allocations are fine).
pub(crate) use crate::status::StatusRequest as StatusReq;

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
    /// The session id's hash, recorded as a live session of the server its route picks.
    pub(crate) session: Option<u64>,
    pub(crate) last_fail: Option<Fail>,
    /// The encoded request head (its first `head_len` bytes), kept until the response starts
    /// so a retry can resend it; behind it, the client's authority (`authority`).
    pub(crate) head: Option<Buf>,
    pub(crate) head_len: u32,
    /// Where the authority the client addressed sits in `head` (its Host, or the server's
    /// name or address): what `proxy_redirect` rewrites backend URLs to.
    pub(crate) authority: (u32, u32),
    /// For the access log: every server tried, with its status and time.
    pub(crate) history: Tries,
}

impl ProxyState {
    /// The state of a request `pp` sends to an upstream of `servers` servers, with its
    /// encoded head (`head_len` bytes, then the client's authority at `authority`).
    pub(crate) fn new(pp: &ProxyPlan, servers: usize, head: Buf, head_len: usize, authority: (usize, usize)) -> ProxyState {
        ProxyState {
            upstream: pp.upstream,
            tried: Tried::new(servers),
            tries: 0,
            history: Tries::default(),
            sticky_peer: pp.sticky_peer,
            route_peer: pp.route_peer,
            session: pp.session,
            last_fail: None,
            head: Some(head),
            head_len: head_len as u32,
            authority: (authority.0 as u32, authority.1 as u32),
        }
    }

    /// The encoded request head.
    pub(crate) fn head(&self) -> &[u8] {
        self.head.as_ref().map_or(&[][..], |h| &h.data()[..(self.head_len as usize).min(h.len())])
    }

    /// The client's authority, while the head is kept.
    pub(crate) fn authority(&self) -> &[u8] {
        let (at, len) = (self.authority.0 as usize, self.authority.1 as usize);
        self.head.as_ref().and_then(|h| h.data().get(at..at + len)).unwrap_or(b"")
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
    /// The location has `gzip on`: what the request allows.
    pub(crate) gzip: Option<crate::gzip::ClientGzip>,
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
            gzip: None,
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
        let head = self.proxy.as_ref().map_or(0, |p| p.head_len as u64);
        (head + self.body_taken, self.writer.body_bytes)
    }

    /// Lets go of the backend connection, if the phase has one, ending the current try.
    pub(crate) fn release_upconn(&mut self, ctx: &mut Ctx, how: Release) {
        let traffic = self.traffic();
        if let Some(up) = self.take_upconn(Phase::Done) {
            if let Some(px) = self.proxy.as_mut() {
                px.history.end(ctx.now.duration_since(up.t_start));
            }
            up.release(ctx, how, traffic);
        }
    }

    /// Ends the exchange where it stands (the client left or the connection closes): a
    /// backend connection is closed, never pooled; nothing is counted against the server.
    pub(crate) fn teardown(mut self, ctx: &mut Ctx) {
        self.release_upconn(ctx, Release::Close);
    }
}
