//! The proxy proper: a session per client connection (`session`), the exchange of one
//! request and its response inside it (`exchange`), the plan that decides what a request
//! gets (`plan`), backend connections (`upconn`) and the request body's way (`body`).

pub(crate) mod body;
pub(crate) mod client;
pub(crate) mod exchange;
pub(crate) mod fail;
pub(crate) mod plan;
pub(crate) mod realip;
pub(crate) mod route;
pub(crate) mod session;
pub(crate) mod upconn;

/// The session is finished and must be removed, and by whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    /// The client left (EOF, reset, or an I/O error on its side): a request still in
    /// progress is logged as 499.
    ByClient,
    /// pounce ends it (a timeout, a protocol error, a backend failure mid-response, or a
    /// normal close).
    ByUs,
}

pub(crate) type Res<T> = Result<T, Closed>;

/// What a session's timer stands for: each deadline is armed with the wait it ends, so an
/// expiry knows its reason (docs/LIFECYCLE.md lists them with their directives).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// The PROXY protocol header of a `listen ... proxy_protocol` connection:
    /// `proxy_protocol_timeout`.
    ProxyHeader,
    /// A TLS handshake: `ssl_handshake_timeout`.
    ClientHandshake,
    /// The first request, or the rest of a started head: `client_header_timeout`.
    ClientHeader,
    /// An idle keep-alive connection: `keepalive_timeout`.
    KeepaliveIdle,
    /// A write to the client is blocked: `send_timeout`.
    ClientSend,
    /// The gap between two reads of the request body: `client_body_timeout`.
    ClientBody,
    /// The TCP connect to a backend: `proxy_connect_timeout`.
    BackendConnect,
    /// The adapter's handshake (AJP's CPONG): its own limit (`ajp_ping_timeout`).
    BackendHandshake,
    /// A write to the backend is blocked: `proxy_send_timeout`.
    BackendSend,
    /// Waiting for backend bytes: `proxy_read_timeout`.
    BackendRead,
    /// A tunnel with no byte either way: `proxy_read_timeout`.
    TunnelIdle,
    /// A lingering close.
    Linger,
    /// A request delayed by `limit_req` until its turn.
    LimitDelay,
}
