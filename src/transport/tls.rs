//! TLS to the client: a rustls connection over the socket, behind the same interface as plain
//! TCP. rustls is sans-I/O: bytes read from the socket are fed to it, plaintext is taken out,
//! and its records are written when it has some. The handshake runs inside `read` (and
//! `flush`) before the first plaintext byte, so the session never sees it.
//!
//! A connection first sniffs one byte: a TLS record starts with 0x16; an ASCII letter is a
//! plain HTTP request sent to the TLS port, answered with nginx's 400 and drained until the
//! client closes. Then rustls' `Acceptor` reads the ClientHello, its SNI picks the server
//! block (and so the certificate and client verification), and the handshake completes on a
//! `ServerConnection`. No pooled buffer is held for any of this: rustls keeps the partial
//! records itself.

use super::ready::Readiness;
pub(crate) use super::socket::ClientIo;
use crate::files::FileBody;
use crate::tls::info::TlsInfo;
use crate::tls::TlsListener;
use mio::event::Event;
use rustls::server::Acceptor;
use rustls::ServerConnection;
use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// Plaintext waiting in rustls beyond this holds back `write` (back-pressure).
const SEND_LIMIT: usize = 32 * 1024;

/// The most of a first record waited for in the kernel (TLS's record limit, 2^14 + 2048):
/// a header that claims more is handed to rustls, which refuses it.
const MAX_FIRST_RECORD: usize = 5 + 16384 + 2048;

enum State {
    /// Nothing read yet: is it TLS at all? And is its first record all there? Until it is, the
    /// bytes stay in the kernel: a client that sends half a ClientHello costs no memory here.
    Sniffing,
    /// Reading the ClientHello; the server block is not known yet.
    Accepting(Box<Acceptor>),
    /// The handshake, then application data.
    Open(Box<ServerConnection>),
    /// Plain HTTP on the TLS port: answered with 400; what the client sends is dropped.
    Rejected,
    /// The handshake or a record failed: nothing more is read or written.
    Failed,
}

pub(crate) struct TlsConn<S: ClientIo> {
    io: S,
    peer: SocketAddr,
    listener: Arc<TlsListener>,
    state: State,
    ready: Readiness,
    /// The client's stream ended (EOF, or its close_notify).
    eof: bool,
    /// rustls may hold decrypted plaintext not yet read (no epoll edge will announce it).
    plaintext: bool,
    info: Option<Box<TlsInfo>>,
}

/// nginx's answer to plain HTTP on a TLS port.
const PLAIN_HTTP_BODY: &str = "<html>\r\n<head><title>400 The plain HTTP request was sent to HTTPS port</title></head>\r\n<body>\r\n\
<center><h1>400 Bad Request</h1></center>\r\n<center>The plain HTTP request was sent to HTTPS port</center>\r\n<hr><center>pounce</center>\r\n</body>\r\n</html>\r\n";

impl<S: ClientIo> TlsConn<S> {
    pub(crate) fn new(io: S, peer: SocketAddr, listener: Arc<TlsListener>) -> TlsConn<S> {
        TlsConn { io, peer, listener, state: State::Sniffing, ready: Readiness::default(), eof: false, plaintext: false, info: None }
    }

    pub(crate) fn io_mut(&mut self) -> &mut S {
        &mut self.io
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    pub(crate) fn on_event(&mut self, ev: &Event) {
        self.ready.on_event(ev);
    }

    /// Readiness as the fuzzer sets it (`closed`: the client sent everything and its FIN).
    #[cfg(fuzzing)]
    pub(crate) fn set_ready(&mut self, readable: bool, writable: bool, closed: bool) {
        self.ready.readable |= readable;
        self.ready.writable |= writable;
        self.ready.rdhup |= closed;
    }

    pub(crate) fn can_read(&self) -> bool {
        (self.ready.readable && !self.eof) || self.plaintext
    }

    pub(crate) fn can_write(&self) -> bool {
        self.ready.writable && matches!(&self.state, State::Open(c) if !c.is_handshaking())
    }

    pub(crate) fn peer_closed(&self) -> bool {
        self.eof || self.ready.rdhup
    }

    pub(crate) fn read_closed(&self) -> bool {
        self.eof
    }

    pub(crate) fn pending_output(&self) -> bool {
        matches!(&self.state, State::Open(c) if c.wants_write())
    }

    /// The handshake is not over (a client still owes its part of it).
    pub(crate) fn handshaking(&self) -> bool {
        match &self.state {
            State::Open(c) => c.is_handshaking(),
            State::Sniffing | State::Accepting(_) | State::Rejected => true,
            State::Failed => false,
        }
    }

    pub(crate) fn handshake_timeout(&self) -> std::time::Duration {
        self.listener.handshake_timeout
    }

    pub(crate) fn info(&self) -> Option<&TlsInfo> {
        self.info.as_deref()
    }

    /// The PROXY protocol header that comes before the ClientHello: read off the socket before
    /// rustls sees a byte (only while nothing has been sniffed yet).
    pub(crate) fn read_proxy_header(&mut self) -> super::proxy_protocol::HeaderRead {
        debug_assert!(matches!(self.state, State::Sniffing));
        super::proxy_protocol::read_header(&mut self.io, &mut self.ready)
    }

    /// Plaintext from the client, running the handshake as far as its bytes allow.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match &mut self.state {
                State::Sniffing => self.sniff()?,
                State::Accepting(_) => self.accept()?,
                State::Rejected => return self.drain(),
                State::Failed => return Err(ErrorKind::InvalidData.into()),
                State::Open(conn) => {
                    match conn.reader().read(buf) {
                        Ok(0) if !buf.is_empty() => {
                            // The client's close_notify.
                            self.eof = true;
                            self.plaintext = false;
                            return Ok(0);
                        }
                        Ok(n) => {
                            self.plaintext = n == buf.len();
                            return Ok(n);
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => self.plaintext = false,
                        Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                            self.eof = true;
                            return Ok(0);
                        }
                        Err(e) => return Err(e),
                    }
                    if !self.ready.readable || self.eof {
                        return Err(ErrorKind::WouldBlock.into());
                    }
                    self.receive()?;
                }
            }
        }
    }

    /// The first byte decides: a TLS handshake record, or plain HTTP (or nothing yet).
    fn sniff(&mut self) -> io::Result<()> {
        if !self.ready.readable {
            return Err(ErrorKind::WouldBlock.into());
        }
        let mut first = [0u8; 5];
        match self.io.peek(&mut first) {
            Ok(0) => {
                self.eof = true;
                self.state = State::Failed;
                Err(ErrorKind::UnexpectedEof.into())
            }
            Ok(n) if first[0] == 0x16 => {
                // The record header, then the whole record (a ClientHello), before rustls
                // takes any of it; the next bytes raise a new edge.
                let whole = 5 + u16::from_be_bytes([first[3], first[4]]) as usize;
                if n < 5 || self.io.available()? < whole.min(MAX_FIRST_RECORD) {
                    if self.ready.rdhup {
                        self.eof = true;
                        return Err(self.fail("connection closed during the handshake"));
                    }
                    self.ready.readable = false;
                    return Err(ErrorKind::WouldBlock.into());
                }
                self.state = State::Accepting(Box::default());
                Ok(())
            }
            Ok(_) if first[0].is_ascii_alphabetic() => {
                log::info!("client {}: plain HTTP request sent to a TLS port, answering 400", self.peer);
                self.listener.stats.failures.fetch_add(1, Relaxed);
                let answer = format!(
                    "HTTP/1.1 400 Bad Request\r\nServer: pounce\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                    PLAIN_HTTP_BODY.len(),
                    PLAIN_HTTP_BODY
                );
                let _ = self.io.write(answer.as_bytes());
                self.io.shutdown_write();
                self.state = State::Rejected;
                Ok(())
            }
            Ok(_) => Err(self.fail("not a TLS handshake")),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                self.ready.readable = false;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Feeds the ClientHello to the acceptor; once it is whole, SNI chooses the server block.
    fn accept(&mut self) -> io::Result<()> {
        let State::Accepting(acceptor) = &mut self.state else { return Ok(()) };
        if !self.ready.readable {
            return Err(ErrorKind::WouldBlock.into());
        }
        match acceptor.read_tls(&mut self.io) {
            Ok(0) => {
                self.eof = true;
                return Err(self.fail("connection closed during the handshake"));
            }
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                self.ready.readable = false;
                return Err(e);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        match acceptor.accept() {
            Ok(None) => Ok(()),
            Ok(Some(accepted)) => {
                let config = self.listener.config_for(accepted.client_hello().server_name());
                match accepted.into_connection(config) {
                    Ok(mut conn) => {
                        conn.set_buffer_limit(Some(SEND_LIMIT));
                        self.state = State::Open(Box::new(conn));
                        self.flush().map(|_| ())
                    }
                    Err((e, mut alert)) => {
                        let _ = alert.write(&mut self.io);
                        Err(self.fail(&e.to_string()))
                    }
                }
            }
            Err((e, mut alert)) => {
                let _ = alert.write(&mut self.io);
                Err(self.fail(&e.to_string()))
            }
        }
    }

    /// Reads records from the socket into rustls and processes them; answers the handshake.
    fn receive(&mut self) -> io::Result<()> {
        let State::Open(conn) = &mut self.state else { return Ok(()) };
        match conn.read_tls(&mut self.io) {
            Ok(0) => self.eof = true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => self.ready.readable = false,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        let handshaking = conn.is_handshaking();
        if let Err(e) = conn.process_new_packets() {
            // The alert rustls queued tells the client why.
            let _ = conn.write_tls(&mut self.io);
            return Err(self.fail(&e.to_string()));
        }
        if handshaking && !conn.is_handshaking() {
            let info = TlsInfo::of(conn);
            let stats = &self.listener.stats;
            stats.handshakes.fetch_add(1, Relaxed);
            if info.resumed {
                stats.resumed.fetch_add(1, Relaxed);
            }
            self.info = Some(Box::new(info));
        }
        if self.eof && conn.is_handshaking() {
            return Err(self.fail("connection closed during the handshake"));
        }
        self.flush().map(|_| ())
    }

    /// Plain HTTP was answered: drop what the client still sends until it closes (a close with
    /// unread data would reset the connection and could destroy the answer).
    fn drain(&mut self) -> io::Result<usize> {
        let mut scratch = [0u8; 4096];
        while self.ready.readable {
            match self.io.read(&mut scratch) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(0);
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.ready.readable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Err(ErrorKind::WouldBlock.into())
    }

    /// Records rustls has for the client (handshake messages, encrypted data) to the socket;
    /// true when something went.
    pub(crate) fn flush(&mut self) -> io::Result<bool> {
        let State::Open(conn) = &mut self.state else { return Ok(false) };
        let mut progress = false;
        while self.ready.writable && conn.wants_write() {
            match conn.write_tls(&mut self.io) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(_) => progress = true,
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.ready.writable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(progress)
    }

    /// Plaintext to the client: taken into rustls (up to its limit) and sent as far as the
    /// socket takes it.
    pub(crate) fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.flush()?;
        let State::Open(conn) = &mut self.state else { return Err(ErrorKind::NotConnected.into()) };
        let n = conn.writer().write(data)?;
        self.flush()?;
        if n == 0 {
            self.ready.writable = false;
            return Err(ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    /// A file through the TLS layer (no sendfile: its bytes must be encrypted), 16 KiB at a
    /// time through a stack buffer.
    pub(crate) fn send_file(&mut self, body: &mut FileBody) -> io::Result<u64> {
        use std::os::unix::fs::FileExt;
        let mut chunk = [0u8; 16 * 1024];
        let mut sent = 0u64;
        while body.remaining > 0 && self.ready.writable {
            let want = (body.remaining as usize).min(chunk.len());
            let n = body.file.read_at(&mut chunk[..want], body.offset)?;
            if n == 0 {
                return Err(io::Error::new(ErrorKind::UnexpectedEof, "file shrank while being sent"));
            }
            let taken = match self.write(&chunk[..n]) {
                Ok(t) => t,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            };
            body.offset += taken as u64;
            body.remaining -= taken as u64;
            sent += taken as u64;
            if taken < n {
                break;
            }
        }
        Ok(sent)
    }

    /// Our side is done: close_notify, then the socket's write side.
    pub(crate) fn shutdown_write(&mut self) {
        if let State::Open(conn) = &mut self.state {
            conn.send_close_notify();
            let _ = self.flush();
        }
        self.io.shutdown_write();
    }

    /// Best effort, never blocks (the pool had no buffer for an answer).
    pub(crate) fn write_last_words(&mut self, bytes: &[u8]) {
        if matches!(&self.state, State::Open(c) if !c.is_handshaking()) {
            let _ = self.write(bytes);
        }
    }

    /// The handshake (or a record) failed: counted, logged with the client's address.
    fn fail(&mut self, why: &str) -> io::Error {
        if self.handshaking() {
            self.listener.stats.failures.fetch_add(1, Relaxed);
            log::info!("client {}: TLS handshake failed: {}", self.peer, why);
        } else {
            log::info!("client {}: TLS error: {}", self.peer, why);
        }
        self.state = State::Failed;
        io::Error::new(ErrorKind::InvalidData, why.to_string())
    }
}
