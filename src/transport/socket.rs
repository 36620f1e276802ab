//! What the client transports need of a socket beyond `Read` and `Write`: a trait, so the
//! fuzzer can replay bytes through the same code a `TcpStream` goes through.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

/// What the TLS and PROXY-header readers need of a client socket.
pub(crate) trait ClientIo: Read + Write {
    fn peek(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Bytes waiting to be read (FIONREAD).
    fn available(&self) -> io::Result<usize>;
    fn shutdown_write(&self);
    /// The address the client connected to.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

impl ClientIo for mio::net::TcpStream {
    fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        mio::net::TcpStream::peek(self, buf)
    }
    fn available(&self) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD on a socket we own writes one c_int.
        if unsafe { libc::ioctl(self.as_raw_fd(), libc::FIONREAD, &mut n) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n.max(0) as usize)
    }
    fn shutdown_write(&self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        mio::net::TcpStream::local_addr(self)
    }
}
