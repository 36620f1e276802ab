//! The client side of a session as an exchange sees it: the transport, the two pooled
//! buffers (`cin`: client → pounce, `cout`: pounce → client) and the times the timeouts are
//! measured from. Reads stop when `cin` is full and writes when the transport cannot take
//! more: that is the back-pressure.

use super::{Closed, Res};
use crate::buffer::Buf;
use crate::reactor::Ctx;
use crate::transport::proxy_protocol::ConnOrigin;
use crate::transport::ClientTransport;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

pub(crate) struct Client {
    /// The session's key (and the client's token); backend connections are registered
    /// as belonging to it.
    pub(crate) key: usize,
    pub(crate) transport: ClientTransport,
    /// The client's address, as everything that names the client reads it (`$remote_addr`,
    /// error and access logs, X-Real-IP and X-Forwarded-For, AJP's remote_addr, allow/deny):
    /// the connection's peer, or during a request the address realip trusts (`set_real_client`).
    pub(crate) peer: SocketAddr,
    /// Where the client's address came from, once realip or a PROXY protocol header is in
    /// play; None on an ordinary connection. Boxed: an ordinary connection carries one pointer
    /// for it (the idle session's size is bounded), and only those connections allocate, once.
    pub(crate) origin: Option<Box<ConnOrigin>>,
    pub(crate) local_port: u16,
    /// Index of the listening address it came in on.
    pub(crate) listen: usize,
    pub(crate) cin: Option<Buf>,
    pub(crate) cout: Option<Buf>,
    /// Last time the client sent bytes, and when writing to it last blocked.
    pub(crate) t_read: Instant,
    pub(crate) t_wblock: Instant,
    /// Bytes handed to the socket since the current request began (`$bytes_sent`).
    pub(crate) sent: u64,
    /// The connection's serial number (`$connection`), unique in the process.
    pub(crate) serial: u64,
}

/// The current request's client is `addr`, the address realip found (`peer` and `origin`
/// are a `Client`'s, passed apart so that the request head in `cin` may stay borrowed).
pub(crate) fn set_real_client(peer: &mut SocketAddr, origin: &mut Option<Box<ConnOrigin>>, addr: SocketAddr) {
    let conn_peer = *peer;
    origin.get_or_insert_with(|| Box::new(ConnOrigin { peer: conn_peer, proxy_protocol: None }));
    *peer = addr;
}

impl Client {
    pub(crate) fn new(key: usize, transport: ClientTransport, peer: SocketAddr, local_port: u16, listen: usize, now: Instant) -> Client {
        Client { key, transport, peer, origin: None, local_port, listen, cin: None, cout: None, t_read: now, t_wblock: now, sent: 0, serial: 0 }
    }

    /// The connection's peer, as the socket has it (`$realip_remote_addr`).
    pub(crate) fn conn_peer(&self) -> SocketAddr {
        self.origin.as_ref().map_or(self.peer, |o| o.peer)
    }

    /// The client's address in the connection's PROXY protocol header (`$proxy_protocol_addr`).
    pub(crate) fn proxy_protocol(&self) -> Option<SocketAddr> {
        self.origin.as_ref().and_then(|o| o.proxy_protocol)
    }

    /// The connection's PROXY protocol header named `src` as the client.
    pub(crate) fn set_proxy_protocol(&mut self, src: SocketAddr) {
        let peer = self.peer;
        self.origin.get_or_insert_with(|| Box::new(ConnOrigin { peer, proxy_protocol: None })).proxy_protocol = Some(src);
    }

    /// Between requests the client is the connection's peer again.
    pub(crate) fn reset_client(&mut self) {
        if let Some(o) = &self.origin {
            self.peer = o.peer;
        }
    }

    /// Reads what the client sent into `cin` (taking a buffer when needed; `stash` holds a
    /// partial head kept aside while the client was silent). True on any progress.
    pub(crate) fn read(&mut self, ctx: &mut Ctx, stash: &mut Vec<u8>) -> Res<bool> {
        if !self.transport.can_read() {
            return Ok(false);
        }
        if self.cin.is_none() {
            match ctx.pool.get() {
                Some(mut b) => {
                    b.put_all(stash);
                    stash.clear();
                    self.cin = Some(b);
                }
                None => return Err(self.refuse_no_buffers()),
            }
        }
        let Some(cin) = self.cin.as_mut() else { return Ok(false) };
        let mut progress = false;
        while !cin.is_full() && self.transport.can_read() {
            match self.transport.read(cin.spare()) {
                Ok(0) => {
                    progress = true;
                    break;
                }
                Ok(n) => {
                    cin.commit(n);
                    self.t_read = ctx.now;
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    log::debug!("client {}: read error: {}", self.peer, e);
                    return Err(Closed::ByClient);
                }
            }
        }
        Ok(progress)
    }

    /// Writes `cout` to the client as far as it takes it (and what the transport still holds).
    pub(crate) fn write(&mut self, ctx: &mut Ctx) -> Res<bool> {
        let mut progress = false;
        if self.transport.pending_output() {
            progress = self.transport.flush().map_err(|e| {
                log::debug!("client {}: write error: {}", self.peer, e);
                Closed::ByClient
            })?;
            if self.transport.pending_output() {
                self.t_wblock = ctx.now;
            }
        }
        let Some(cout) = self.cout.as_mut() else { return Ok(progress) };
        while self.transport.can_write() && !cout.is_empty() {
            match self.transport.write(cout.data()) {
                Ok(0) => return Err(Closed::ByClient),
                Ok(n) => {
                    cout.consume(n);
                    self.sent += n as u64;
                    progress = true;
                    if !self.transport.can_write() {
                        self.t_wblock = ctx.now;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.t_wblock = ctx.now,
                Err(e) => {
                    log::debug!("client {}: write error: {}", self.peer, e);
                    return Err(Closed::ByClient);
                }
            }
        }
        Ok(progress)
    }

    /// Sends part of a file straight to the socket (after what `cout` holds).
    pub(crate) fn send_file(&mut self, file: &mut crate::files::FileBody) -> io::Result<u64> {
        let sent = self.transport.send_file(file)?;
        self.sent += sent;
        Ok(sent)
    }

    /// Makes sure there is a `cout` to write an answer into.
    pub(crate) fn ensure_cout(&mut self, ctx: &mut Ctx) -> Res<&mut Buf> {
        if self.cout.is_none() {
            self.cout = ctx.pool.get();
        }
        if self.cout.is_none() {
            return Err(self.refuse_no_buffers());
        }
        self.cout.as_mut().ok_or(Closed::ByUs)
    }

    /// No buffer could be had: a 503 from a static string, then close.
    pub(crate) fn refuse_no_buffers(&mut self) -> Closed {
        log::error!("client {}: buffer pool exhausted (worker_buffers), answering 503", self.peer);
        self.transport.write_last_words(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        Closed::ByUs
    }

    /// Bytes of an answer are waiting for the client to take them.
    pub(crate) fn output_pending(&self) -> bool {
        self.cout.as_ref().is_some_and(|b| !b.is_empty()) || self.transport.pending_output()
    }

    /// The client sent nothing that is still unread.
    pub(crate) fn input_empty(&self) -> bool {
        self.cin.as_ref().is_none_or(|b| b.is_empty())
    }

    /// Gives back buffers that hold nothing (between requests).
    pub(crate) fn release_idle_buffers(&mut self) {
        if self.cin.as_ref().is_some_and(|b| b.is_empty()) {
            self.cin = None;
        }
        if self.cout.as_ref().is_some_and(|b| b.is_empty()) {
            self.cout = None;
        }
    }
}
