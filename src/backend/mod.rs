//! Backend adapters: how a request is put on the wire to a backend and how its response is
//! turned into an HTTP/1.1 response for the client. The session drives I/O and retries; an
//! adapter only encodes and decodes, in pooled buffers, so the HTTP and AJP adapters are
//! interchangeable behind `Protocol`. Everything protocol-specific lives in its adapter,
//! including a handshake before the request (AJP's CPING/CPONG), which the session drives as
//! a phase without knowing what it says.
//!
//! Adding a protocol (FastCGI, HTTP/2 to backends): a module here implementing `Protocol`, a
//! variant of `Adapter` (and of `dispatch!`), and a variant of `config::BackendConf` with its
//! parameters; the session does not change.

pub mod ajp;
pub mod ajp_codec;
pub mod http;

use crate::buffer::Buf;
use crate::config::{BackendConf, Settings};
use crate::http::request::RequestMeta;
use crate::http::writer::{ReqFacts, ResponseWriter};
use crate::tls::info::TlsInfo;
use crate::transport::proxy_protocol::ConnOrigin;
pub use crate::upstream::limits::KeepAliveHint;
use std::net::SocketAddr;
use std::time::Duration;

/// Everything an adapter may put into the forwarded request.
pub struct ForwardRequest<'a, 'b> {
    pub req: &'a httparse::Request<'a, 'b>,
    pub meta: &'a RequestMeta,
    /// The client's address (`$remote_addr`): the connection's peer or the one realip trusts.
    pub client: SocketAddr,
    /// Where the client's address came from, when realip or a PROXY protocol header is in
    /// play (`$realip_remote_addr`, `$proxy_protocol_addr`); None: `client` is the peer.
    pub(crate) origin: Option<&'a ConnOrigin>,
    pub local_port: u16,
    pub server_name: &'a str,
    /// What stands for Host when the client sent none (HTTP/1.0): the server's name, or the
    /// address the client connected to, with the port unless it is 80.
    pub default_host: &'a str,
    /// The normalized path (`$uri`); the raw target is `req.path` (`$request_uri`).
    pub uri: &'a [u8],
    pub settings: &'a Settings,
    /// Name of the upstream (`$proxy_host`).
    pub proxy_host: &'a str,
    /// The upstream keeps idle connections: ask the backend to keep this one (so it also
    /// says for how long), rather than to close it.
    pub keepalive: bool,
    /// How this location speaks to the backend (each adapter reads its own parameters,
    /// such as AJP's secret).
    pub backend: &'a BackendConf,
    /// The route the request was sent to by stickiness (AJP attribute 0x06).
    pub route: Option<&'a str>,
    /// The client's TLS connection, if it has one (`$scheme` https, AJP `is_ssl`, `$ssl_*`).
    pub(crate) tls: Option<&'a TlsInfo>,
}

impl ForwardRequest<'_, '_> {
    /// The connection's peer (`$realip_remote_addr`).
    pub fn conn_peer(&self) -> SocketAddr {
        self.origin.map_or(self.client, |o| o.peer)
    }

    /// The client a PROXY protocol header relayed (`$proxy_protocol_addr`).
    pub fn proxy_protocol(&self) -> Option<SocketAddr> {
        self.origin.and_then(|o| o.proxy_protocol)
    }

    /// `https` for a TLS client, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

impl<'a, 'b> ForwardRequest<'a, 'b> {
    /// The request as the client sent it; the upstream's fields (`proxy_host`, `keepalive`,
    /// `backend`, `route`) are neutral until the proxy path sets them, `default_host` is the
    /// server's name and `uri` the raw path until the session sets them.
    pub fn new(
        req: &'a httparse::Request<'a, 'b>,
        meta: &'a RequestMeta,
        client: SocketAddr,
        local_port: u16,
        server_name: &'a str,
        settings: &'a Settings,
    ) -> Self {
        let uri = crate::http::uri::path_of(req.path.unwrap_or("/").as_bytes());
        ForwardRequest {
            req,
            meta,
            client,
            origin: None,
            local_port,
            server_name,
            default_host: server_name,
            uri,
            settings,
            proxy_host: "",
            keepalive: false,
            backend: &BackendConf::Http,
            route: None,
            tls: None,
        }
    }
}

/// One step of response decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Waiting for backend bytes or for room in the client buffer.
    Blocked,
    /// A complete head arrived with a status the session may retry on; nothing was written.
    RetryStatus(u16),
    /// The response is complete; `reusable`: the backend connection may be pooled.
    Done { reusable: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendError {
    /// The response head is malformed or too large (`proxy_next_upstream invalid_header`).
    InvalidHeader(&'static str),
    /// The body or framing broke after the head (nothing can be retried).
    Protocol(&'static str),
    /// The backend closed the connection before the response was complete.
    PrematureClose,
    /// The adapter's handshake failed (a wrong or missing CPONG): a connect failure, nothing
    /// of the request was sent.
    Handshake(&'static str),
}

/// Where an adapter's handshake stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// More backend bytes are needed.
    Pending,
    /// Done: the request may go out.
    Done,
}

/// The adapter interface. Encoding writes into the session's pooled buffers; decoding reads
/// backend bytes from `input` and writes the client's response through `writer` into `out`.
pub trait Protocol {
    /// A step due on every connection (new or reused) before the request goes out: writes
    /// its bytes into `out` and returns its time limit. `None`: the request goes out at once.
    fn begin_handshake(&mut self, out: &mut Buf) -> Option<Duration>;
    /// Backend bytes while the handshake is in progress (`eof`: the backend closed).
    fn handshake_input(&mut self, input: &mut Buf, eof: bool) -> Result<Handshake, BackendError>;
    /// Encodes the request head; false when it does not fit in one buffer.
    fn encode_head(&mut self, fr: &ForwardRequest, out: &mut Buf) -> bool;
    /// Body bytes the backend will take now (AJP sends body only when asked).
    fn body_credit(&self) -> usize;
    /// Frames request body bytes into `out`; returns how many of `data` were taken.
    fn encode_body(&mut self, data: &[u8], out: &mut Buf) -> usize;
    /// Called whenever the request body is complete; writes any end marker that is due
    /// (HTTP: the last chunk, once; AJP: an empty packet per unanswered GET_BODY_CHUNK).
    /// Returns true when it wrote something.
    fn encode_body_end(&mut self, out: &mut Buf) -> bool;
    /// Everything the backend is owed of the request went out (needed before pooling).
    fn request_complete(&self) -> bool;
    /// Decodes as much of `input` as fits into `out`.
    fn decode(&mut self, input: &mut Buf, out: &mut Buf, w: &mut ResponseWriter, facts: &ReqFacts, retry: RetryMask) -> Result<Step, BackendError>;
    /// The backend closed its side: a normal end for close-delimited bodies, else an error.
    fn eof(&mut self, out: &mut Buf, w: &mut ResponseWriter) -> Result<Step, BackendError>;
    /// True once any byte of a response was received (a stale pooled connection fails before).
    fn response_started(&self) -> bool;
    /// What the complete response said about keeping its connection (`upstream::limits`).
    fn keepalive_hint(&self) -> KeepAliveHint;
    /// The response is incomplete and the backend has not asked for what came so far to be
    /// flushed: a small piece decoded for the client may wait for the rest (AJP, whose
    /// Tomcat flushes the headers on their own and marks an application's flush explicitly).
    fn hold_output(&self) -> bool;
    /// The response ended before the last bytes the backend owes for it, known exactly (AJP:
    /// a body complete by its Content-Length, END_RESPONSE still to come). The connection
    /// can be pooled; the next response on it skips them (`after_unread_tail`).
    fn unread_tail(&self) -> Option<&'static [u8]>;
    /// This connection's previous response left its `unread_tail`: it comes first.
    fn after_unread_tail(&mut self);
    /// What the backend sends next may be shorter than a tail plus one byte, so a socket
    /// that sleeps through a lone tail (`UpConn`'s raised low-water mark) must not wait on it.
    fn next_may_be_tiny(&self) -> bool;
}

/// Statuses the session wants to see before they are written (`proxy_next_upstream http_5xx`).
#[derive(Debug, Clone, Copy, Default)]
pub struct RetryMask(pub u16);

impl RetryMask {
    pub fn has(self, status: u16) -> bool {
        use crate::config::next::*;
        let bit = match status {
            500 => HTTP_500,
            502 => HTTP_502,
            503 => HTTP_503,
            504 => HTTP_504,
            403 => HTTP_403,
            404 => HTTP_404,
            429 => HTTP_429,
            _ => return false,
        };
        self.0 & bit != 0
    }
}

/// The adapters, dispatched without a heap allocation or a virtual call.
pub enum Adapter {
    Http(http::HttpAdapter),
    Ajp(ajp::AjpAdapter),
}

impl Adapter {
    /// The adapter for one request to a location's backend.
    pub fn for_request(conf: &BackendConf, meta: &RequestMeta) -> Adapter {
        match conf {
            BackendConf::Http => Adapter::Http(http::HttpAdapter::new(meta.method, meta.body, meta.upgrade)),
            BackendConf::Ajp(p) => Adapter::Ajp(ajp::AjpAdapter::new(meta.body, p.packet_size).with_ping(p.ping_timeout)),
        }
    }

    /// Can the protocol carry a protocol upgrade (WebSocket)? AJP cannot.
    pub fn can_upgrade(conf: &BackendConf) -> bool {
        match conf {
            BackendConf::Http => true,
            BackendConf::Ajp(_) => false,
        }
    }
}

/// Calls the same method on whichever adapter this is (a `match`, no virtual call).
macro_rules! dispatch {
    ($self:ident, $a:ident => $call:expr) => {
        match $self {
            Adapter::Http($a) => $call,
            Adapter::Ajp($a) => $call,
        }
    };
}

impl Protocol for Adapter {
    fn begin_handshake(&mut self, out: &mut Buf) -> Option<Duration> {
        dispatch!(self, a => a.begin_handshake(out))
    }
    fn handshake_input(&mut self, input: &mut Buf, eof: bool) -> Result<Handshake, BackendError> {
        dispatch!(self, a => a.handshake_input(input, eof))
    }
    fn encode_head(&mut self, fr: &ForwardRequest, out: &mut Buf) -> bool {
        dispatch!(self, a => a.encode_head(fr, out))
    }
    fn body_credit(&self) -> usize {
        dispatch!(self, a => a.body_credit())
    }
    fn encode_body(&mut self, data: &[u8], out: &mut Buf) -> usize {
        dispatch!(self, a => a.encode_body(data, out))
    }
    fn encode_body_end(&mut self, out: &mut Buf) -> bool {
        dispatch!(self, a => a.encode_body_end(out))
    }
    fn request_complete(&self) -> bool {
        dispatch!(self, a => a.request_complete())
    }
    fn decode(&mut self, input: &mut Buf, out: &mut Buf, w: &mut ResponseWriter, facts: &ReqFacts, retry: RetryMask) -> Result<Step, BackendError> {
        dispatch!(self, a => a.decode(input, out, w, facts, retry))
    }
    fn eof(&mut self, out: &mut Buf, w: &mut ResponseWriter) -> Result<Step, BackendError> {
        dispatch!(self, a => a.eof(out, w))
    }
    fn response_started(&self) -> bool {
        dispatch!(self, a => a.response_started())
    }
    fn keepalive_hint(&self) -> KeepAliveHint {
        dispatch!(self, a => a.keepalive_hint())
    }
    fn hold_output(&self) -> bool {
        dispatch!(self, a => a.hold_output())
    }
    fn unread_tail(&self) -> Option<&'static [u8]> {
        dispatch!(self, a => a.unread_tail())
    }
    fn after_unread_tail(&mut self) {
        dispatch!(self, a => a.after_unread_tail())
    }
    fn next_may_be_tiny(&self) -> bool {
        dispatch!(self, a => a.next_may_be_tiny())
    }
}
