//! The PROXY protocol header that a `listen ... proxy_protocol` address expects before anything
//! else on a connection (before the TLS ClientHello on an `ssl` one): how it is read off the
//! socket. The header is only peeked at (MSG_PEEK into a stack array) until it is whole, so a
//! client that sends it in pieces holds no pooled buffer and costs no memory here; once it is
//! whole, exactly its bytes are taken off the socket, and the transport's first read sees the
//! byte after it. The session's `ClientPhase::ProxyHeader` drives this (`session/preface.rs`).

mod parse;
#[cfg(test)]
mod tests;

#[cfg(fuzzing)]
pub(crate) use parse::{parse, V1_MAX, V2_MAX};
pub(crate) use parse::{Header, Parsed, MAX_HEADER};

use super::ready::Readiness;
use super::socket::ClientIo;
use std::io::{self, ErrorKind};
use std::net::SocketAddr;

/// Where a client's address came from, once it is not simply the connection's peer: the
/// peer as the socket has it (`$realip_remote_addr`) and the client a PROXY protocol header
/// relayed (`$proxy_protocol_addr`). Kept (boxed) only by connections that have either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnOrigin {
    pub(crate) peer: SocketAddr,
    pub(crate) proxy_protocol: Option<SocketAddr>,
}

/// Where reading the header stands.
#[derive(Debug)]
pub(crate) enum HeaderRead {
    /// Not whole yet, and nothing more to read now: wait for the next readable event.
    Pending,
    /// The header was valid and is off the socket.
    Done(Header),
    /// The client closed before sending a byte (a balancer's TCP health check).
    Closed,
    /// The client closed after `n` bytes, before the header was whole.
    Truncated(usize),
    /// The bytes cannot begin a valid header: why, and the start of what came (`excerpt`).
    Invalid(&'static str, String),
    /// The socket failed.
    Error(io::Error),
}

/// Reads the header from `io`, whose readiness is `ready`, without taking any byte after it.
pub(crate) fn read_header<S: ClientIo>(io: &mut S, ready: &mut Readiness) -> HeaderRead {
    let mut buf = [0u8; MAX_HEADER];
    loop {
        if !ready.readable {
            return HeaderRead::Pending;
        }
        let n = match io.peek(&mut buf) {
            Ok(0) => return HeaderRead::Closed,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                ready.readable = false;
                return HeaderRead::Pending;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return HeaderRead::Error(e),
        };
        return match parse::parse(&buf[..n]) {
            Parsed::Done { len, header } => match take(io, &mut buf[..len]) {
                Ok(()) => HeaderRead::Done(header),
                Err(e) => HeaderRead::Error(e),
            },
            // The FIN has come (EPOLLRDHUP): every byte the client sent is in the peek.
            Parsed::Incomplete if ready.rdhup => HeaderRead::Truncated(n),
            Parsed::Incomplete => {
                // What came is all there is for now; the next arrival raises a new edge.
                ready.readable = false;
                HeaderRead::Pending
            }
            Parsed::Invalid(why) => HeaderRead::Invalid(why, excerpt(&buf[..n])),
        };
    }
}

/// Takes exactly the header's bytes, already seen in the kernel, off the socket.
fn take<S: ClientIo>(io: &mut S, buf: &mut [u8]) -> io::Result<()> {
    let mut at = 0;
    while at < buf.len() {
        match io.read(&mut buf[at..]) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => at += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// What came, for the error log: text up to its first CR or LF (at most 107 bytes), as
/// nginx's "broken header" line shows it, or the first 16 bytes in hex when it is binary.
fn excerpt(data: &[u8]) -> String {
    if data.first().is_some_and(|c| c.is_ascii_graphic()) {
        let end = data.iter().position(|&c| c == b'\r' || c == b'\n').unwrap_or(data.len()).min(parse::V1_MAX);
        return data[..end].escape_ascii().to_string();
    }
    data.iter().take(16).map(|b| format!("{:02x}", b)).collect::<Vec<_>>().join(" ")
}
