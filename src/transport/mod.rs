//! The client side's transport: the one way a session reads, writes, shuts down and
//! registers its client connection. Plain TCP today; a TLS connection (rustls over the same
//! socket, `tls.rs`) is another variant with the same interface, and so will be an HTTP/2 connection
//! that carries several exchanges. The exchange logic above never sees which one it has.
//!
//! Readiness is edge-triggered: the transport remembers what epoll last reported and clears
//! it when a read or write meets `WouldBlock`, so callers loop on `can_read`/`can_write`.

mod plain;
pub(crate) mod proxy_protocol;
mod ready;
mod socket;
pub(crate) mod tls;

pub(crate) use plain::Plain;
pub(crate) use tls::TlsConn;

use crate::files::FileBody;
use crate::tls::info::TlsInfo;
use mio::event::Event;
use mio::{Interest, Registry, Token};
use std::io;
use std::time::Duration;

/// A client connection, whatever carries it. Dispatch is a `match`, never a virtual call.
pub(crate) enum ClientTransport {
    Plain(Plain),
    /// Boxed: a rustls connection is large, and an idle plain session stays small.
    Tls(Box<TlsConn<mio::net::TcpStream>>),
}

macro_rules! dispatch {
    ($self:ident, $t:ident => $call:expr) => {
        match $self {
            ClientTransport::Plain($t) => $call,
            ClientTransport::Tls($t) => $call,
        }
    };
}

impl ClientTransport {
    pub(crate) fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        match self {
            ClientTransport::Plain(t) => registry.register(t.stream_mut(), token, Interest::READABLE | Interest::WRITABLE),
            ClientTransport::Tls(t) => registry.register(t.io_mut(), token, Interest::READABLE | Interest::WRITABLE),
        }
    }

    pub(crate) fn deregister(&mut self, registry: &Registry) {
        let _ = match self {
            ClientTransport::Plain(t) => registry.deregister(t.stream_mut()),
            ClientTransport::Tls(t) => registry.deregister(t.io_mut()),
        };
    }

    /// The address the client connected to (a system call: only when it is needed).
    pub(crate) fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        dispatch!(self, t => t.local_addr())
    }

    /// Reads the PROXY protocol header in front of the client's bytes (`listen ...
    /// proxy_protocol`); only before the first `read`, which then starts after it.
    pub(crate) fn read_proxy_header(&mut self) -> proxy_protocol::HeaderRead {
        match self {
            ClientTransport::Plain(t) => {
                let (stream, ready) = t.raw_parts();
                proxy_protocol::read_header(stream, ready)
            }
            ClientTransport::Tls(t) => t.read_proxy_header(),
        }
    }

    /// Takes note of what epoll reported.
    pub(crate) fn on_event(&mut self, ev: &Event) {
        dispatch!(self, t => t.on_event(ev))
    }

    /// A read may return bytes (or the end of the stream) now.
    pub(crate) fn can_read(&self) -> bool {
        dispatch!(self, t => t.can_read())
    }

    /// Reads what the client sent: `Ok(0)` when it closed its side; `WouldBlock` when
    /// nothing is there.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        dispatch!(self, t => t.read(buf))
    }

    /// A write may take bytes now.
    pub(crate) fn can_write(&self) -> bool {
        dispatch!(self, t => t.can_write())
    }

    /// Writes to the client; fewer bytes than offered (or `WouldBlock`) when it cannot take
    /// more now.
    pub(crate) fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        dispatch!(self, t => t.write(data))
    }

    /// Sends part of a file (sendfile(2) where the transport allows it); returns the bytes
    /// sent, fewer than asked when the connection cannot take more now.
    pub(crate) fn send_file(&mut self, body: &mut FileBody) -> io::Result<u64> {
        dispatch!(self, t => t.send_file(body))
    }

    /// The client closed its sending side (or the connection broke): no more requests will
    /// come, and by nginx's rule a request still in progress is abandoned.
    pub(crate) fn peer_closed(&self) -> bool {
        dispatch!(self, t => t.peer_closed())
    }

    /// A read returned the end of the stream.
    pub(crate) fn read_closed(&self) -> bool {
        dispatch!(self, t => t.read_closed())
    }

    /// Bytes accepted by `write` that have not reached the socket yet (a TLS layer's
    /// records); plain TCP has none.
    pub(crate) fn pending_output(&self) -> bool {
        dispatch!(self, t => t.pending_output())
    }

    /// Sends what the transport holds (a TLS layer's records); true when something went.
    pub(crate) fn flush(&mut self) -> io::Result<bool> {
        match self {
            ClientTransport::Plain(_) => Ok(false),
            ClientTransport::Tls(t) => t.flush(),
        }
    }

    /// While a TLS handshake is not over: how long it may take (`ssl_handshake_timeout`).
    pub(crate) fn handshake_timeout(&self) -> Option<Duration> {
        match self {
            ClientTransport::Tls(t) if t.handshaking() => Some(t.handshake_timeout()),
            _ => None,
        }
    }

    /// What the TLS handshake established (none on plain TCP).
    pub(crate) fn tls_info(&self) -> Option<&TlsInfo> {
        match self {
            ClientTransport::Plain(_) => None,
            ClientTransport::Tls(t) => t.info(),
        }
    }

    /// Ends our sending side (the start of a lingering close).
    pub(crate) fn shutdown_write(&mut self) {
        dispatch!(self, t => t.shutdown_write())
    }

    /// A last word before closing, when no buffer could be had (best effort, never blocks).
    pub(crate) fn write_last_words(&mut self, bytes: &[u8]) {
        match self {
            ClientTransport::Plain(t) => {
                let _ = t.write(bytes);
            }
            ClientTransport::Tls(t) => t.write_last_words(bytes),
        }
    }
}
