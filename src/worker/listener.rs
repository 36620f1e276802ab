//! Listening sockets: one per worker per address, all bound with SO_REUSEPORT so the
//! kernel spreads new connections across workers without an accept lock.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::FromRawFd;

fn cvt(r: libc::c_int, what: &str) -> std::io::Result<libc::c_int> {
    if r < 0 {
        let e = std::io::Error::last_os_error();
        return Err(std::io::Error::new(e.kind(), format!("{}() failed ({})", what, e)));
    }
    Ok(r)
}

fn set_opt(fd: libc::c_int, level: libc::c_int, name: libc::c_int, what: &str) -> std::io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: fd is a socket we own; the option value is a valid c_int for its size.
    let r = unsafe { libc::setsockopt(fd, level, name, &one as *const _ as *const libc::c_void, std::mem::size_of::<libc::c_int>() as libc::socklen_t) };
    cvt(r, what).map(|_| ())
}

/// A non-blocking listening socket on `addr` with SO_REUSEADDR and SO_REUSEPORT.
pub(crate) fn bind_reuseport(addr: SocketAddr, backlog: i32) -> std::io::Result<TcpListener> {
    let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: plain socket(2) call; the fd is wrapped in a TcpListener (closed on drop) below
    // or closed on every error path.
    let fd = cvt(unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) }, "socket")?;
    // SAFETY: fd is a fresh, owned socket.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    set_opt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, "setsockopt(SO_REUSEADDR)")?;
    set_opt(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, "setsockopt(SO_REUSEPORT)")?;
    if addr.is_ipv6() {
        set_opt(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, "setsockopt(IPV6_V6ONLY)")?;
    }
    let (storage, len) = sockaddr(addr);
    // SAFETY: storage holds a valid sockaddr of `len` bytes for this family.
    cvt(unsafe { libc::bind(fd, &storage as *const _ as *const libc::sockaddr, len) }, &format!("bind() to {}", addr))?;
    // SAFETY: fd is a bound socket.
    cvt(unsafe { libc::listen(fd, backlog) }, &format!("listen() on {}", addr))?;
    Ok(listener)
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in.
            let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) };
            (storage, std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t)
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr = libc::in6_addr { s6_addr: a.ip().octets() };
            sin6.sin6_scope_id = a.scope_id();
            (storage, std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t)
        }
    }
}
