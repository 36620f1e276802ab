//! Plain TCP to the client.

use super::ready::Readiness;
use crate::files::{self, FileBody};
use mio::event::Event;
use mio::net::TcpStream;
use std::io::{self, Read, Write};

pub(crate) struct Plain {
    stream: TcpStream,
    ready: Readiness,
    /// A read returned 0.
    eof: bool,
}

impl Plain {
    pub(crate) fn new(stream: TcpStream) -> Plain {
        Plain { stream, ready: Readiness::default(), eof: false }
    }

    pub(super) fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// The socket and its readiness, for the PROXY protocol header before the first read.
    pub(super) fn raw_parts(&mut self) -> (&mut TcpStream, &mut Readiness) {
        (&mut self.stream, &mut self.ready)
    }

    pub(super) fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.stream.local_addr()
    }

    pub(super) fn on_event(&mut self, ev: &Event) {
        self.ready.on_event(ev);
    }

    pub(super) fn can_read(&self) -> bool {
        self.ready.readable && !self.eof
    }

    pub(super) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len();
        loop {
            match self.stream.read(buf) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(0);
                }
                Ok(n) => {
                    // A short read drained the socket: skip the read that would only say
                    // EAGAIN (the next arrival raises a new edge), unless a FIN is pending.
                    if n < want && !self.ready.rdhup {
                        self.ready.readable = false;
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.ready.readable = false;
                    return Err(e);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    pub(super) fn can_write(&self) -> bool {
        self.ready.writable
    }

    pub(super) fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        loop {
            match self.stream.write(data) {
                Ok(n) => {
                    // A short write filled the socket buffer: wait for the next EPOLLOUT edge.
                    if n < data.len() {
                        self.ready.writable = false;
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.ready.writable = false;
                    return Err(e);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    pub(super) fn send_file(&mut self, body: &mut FileBody) -> io::Result<u64> {
        use std::os::fd::AsRawFd;
        let before = body.remaining;
        if files::send(self.stream.as_raw_fd(), body)? {
            self.ready.writable = false;
        }
        Ok(before - body.remaining)
    }

    pub(super) fn peer_closed(&self) -> bool {
        self.eof || self.ready.rdhup
    }

    pub(super) fn read_closed(&self) -> bool {
        self.eof
    }

    pub(super) fn pending_output(&self) -> bool {
        false
    }

    pub(super) fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }
}
