//! Plain TCP to the client.

use crate::files::{self, FileBody};
use mio::event::Event;
use mio::net::TcpStream;
use std::io::{self, Read, Write};

pub(crate) struct Plain {
    stream: TcpStream,
    readable: bool,
    writable: bool,
    /// EPOLLRDHUP (or an error) was reported: the client sent its FIN; read on until 0.
    rdhup: bool,
    /// A read returned 0.
    eof: bool,
}

impl Plain {
    pub(crate) fn new(stream: TcpStream) -> Plain {
        Plain { stream, readable: false, writable: false, rdhup: false, eof: false }
    }

    pub(super) fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    pub(super) fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.stream.local_addr()
    }

    pub(super) fn on_event(&mut self, ev: &Event) {
        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
            self.readable = true;
        }
        if ev.is_read_closed() || ev.is_error() {
            self.rdhup = true;
        }
        if ev.is_writable() || ev.is_write_closed() || ev.is_error() {
            self.writable = true;
        }
    }

    pub(super) fn can_read(&self) -> bool {
        self.readable && !self.eof
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
                    if n < want && !self.rdhup {
                        self.readable = false;
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return Err(e);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    pub(super) fn can_write(&self) -> bool {
        self.writable
    }

    pub(super) fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        loop {
            match self.stream.write(data) {
                Ok(n) => {
                    // A short write filled the socket buffer: wait for the next EPOLLOUT edge.
                    if n < data.len() {
                        self.writable = false;
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.writable = false;
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
            self.writable = false;
        }
        Ok(before - body.remaining)
    }

    pub(super) fn peer_closed(&self) -> bool {
        self.eof || self.rdhup
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
