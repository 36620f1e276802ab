//! A backend connection while it serves one exchange: its socket, readiness, the two pooled
//! buffers it reads into and writes from, and its adapter. It is opened (or taken from the
//! idle pool) by `open`, and ends in exactly one place, `release`, which settles the peer's
//! accounting (in-flight count, the balancer's `free` with or without a failure, traffic)
//! and decides whether the connection goes back to the idle pool or is closed. A failure is
//! recorded there too, with its cause, for the status page.

use super::fail::Fail;
use crate::backend::{Adapter, Protocol};
use crate::buffer::Buf;
use crate::reactor::{Ctx, Owner};
use crate::upstream::keepalive::IdleConn;
use crate::upstream::stats::{Cause, Outcome};
use crate::upstream::{now_ms, Balancer};
use mio::event::Event;
use mio::net::TcpStream;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

pub(crate) struct UpConn {
    sock: Sock,
    /// Its id (and epoll token) in the worker's backend table.
    token: usize,
    pub(crate) upstream: usize,
    pub(crate) peer: usize,
    /// Taken from the idle pool (may have been closed by the backend meanwhile).
    pub(crate) reused: bool,
    pub(crate) bin: Buf,
    pub(crate) bout: Buf,
    pub(crate) adapter: Adapter,
    pub(crate) t_start: Instant,
    /// Last read or write progress.
    pub(crate) t_io: Instant,
    /// Requests served on this connection before this one.
    requests: u32,
    /// Its upstream watches for frozen servers: what arrives is noted (`frozen_timeout`).
    watched: bool,
    /// How far the connection got: what a failure is called on the status page.
    reach: Reach,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    Connecting,
    Refused,
    ConnectFailed,
    Connected,
}

/// How an exchange lets go of its backend connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Release {
    /// The response is complete; `reusable`: the backend allows keep-alive and all of the
    /// request went out, so the connection may be pooled.
    Done { reusable: bool },
    /// Ended without blame (client gone, the rest of the answer not wanted): closed.
    Close,
    /// The server failed: counted against it unless the failure only moves the request on.
    Failed(Fail),
    /// A pooled connection the backend had already closed: not the server's fault, and the
    /// same server is tried again on a new connection (the balancer's pick stands).
    Stale,
}

/// How a connect attempt stands.
pub(crate) enum Connect {
    Pending,
    Done,
    Failed(io::Error),
}

impl UpConn {
    /// Attaches a connection to `peer` for session `key`: an idle pooled one when `reuse`
    /// (one that must be checked clean when the request has a body that could not be resent),
    /// else a new one. `Ok((conn, connected))`; an `OutOfMemory` error when the pool has no
    /// buffers (this worker's trouble, not the server's).
    pub(crate) fn open(ctx: &mut Ctx, key: usize, upstream: usize, peer: usize, adapter: Adapter, reuse: Option<bool>) -> io::Result<(UpConn, bool)> {
        let (Some(bin), Some(bout)) = (ctx.pool.get(), ctx.pool.get()) else {
            return Err(io::Error::new(io::ErrorKind::OutOfMemory, "buffer pool exhausted"));
        };
        let rt = ctx.rt.clone();
        let ups = &rt.upstreams[upstream];
        let mut reused = None;
        if let Some(must_be_clean) = reuse {
            let idle_limit = ups.peers[peer].idle_limit(ups.conf.keepalive_timeout);
            while let Some(mut idle) = ctx.keepalive.take(upstream, peer) {
                if ctx.now.duration_since(idle.since) < idle_limit && (!must_be_clean || idle.is_clean()) {
                    reused = Some(idle);
                    break;
                }
                let mut s = idle.stream;
                ctx.close_backend(&mut s, idle.token);
            }
        }
        let (stream, connected, requests, token, tail, lowat_raised) = match reused {
            Some(idle) => {
                // Same registration, new owner: no epoll_ctl.
                if let Some(o) = ctx.backends.get_mut(idle.token) {
                    *o = Owner::Session(key);
                }
                (idle.stream, true, idle.requests, idle.token, idle.tail.is_some(), idle.sleeps_through_tail)
            }
            None => {
                let mut s = TcpStream::connect(ups.conf.servers[peer].addr).inspect_err(|e| {
                    ups.record_failure(peer, Outcome::failed(Cause::of_connect(e)));
                })?;
                let _ = s.set_nodelay(true);
                let id = ctx.register_backend(&mut s, key)?;
                (s, false, 0, id, false, false)
            }
        };
        ups.peers[peer].in_flight.fetch_add(1, Relaxed);
        ups.peers[peer].requests.fetch_add(1, Relaxed);
        ctx.keepalive.opened(upstream, peer);
        let mut up = UpConn {
            // Nothing but its tail can be pending on a pooled connection (other bytes would
            // have closed it while idle): no read until the backend's first edge.
            sock: Sock { stream, readable: false, writable: connected, rdhup: false, eof: false, lowat_raised },
            token,
            upstream,
            peer,
            reused: connected,
            bin,
            bout,
            adapter,
            t_start: ctx.now,
            t_io: ctx.now,
            requests,
            watched: ups.conf.frozen_timeout.is_some(),
            reach: if connected { Reach::Connected } else { Reach::Connecting },
        };
        if tail {
            up.adapter.after_unread_tail();
        }
        Ok((up, connected))
    }

    pub(crate) fn on_event(&mut self, ev: &Event) {
        let s = &mut self.sock;
        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
            s.readable = true;
        }
        if ev.is_read_closed() || ev.is_error() {
            s.rdhup = true;
        }
        if ev.is_writable() || ev.is_write_closed() || ev.is_error() {
            s.writable = true;
        }
    }

    /// Whether a non-blocking connect finished (called on the connection's events).
    pub(crate) fn poll_connect(&mut self, now: Instant) -> Connect {
        match self.sock.stream.take_error() {
            Ok(None) => match self.sock.stream.peer_addr() {
                Ok(_) => {
                    self.t_io = now;
                    self.reach = Reach::Connected;
                    Connect::Done
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected && !self.sock.rdhup => Connect::Pending,
                Err(e) => self.connect_failed(e),
            },
            Ok(Some(e)) | Err(e) => self.connect_failed(e),
        }
    }

    fn connect_failed(&mut self, e: io::Error) -> Connect {
        self.reach = if Cause::of_connect(&e) == Cause::Refused { Reach::Refused } else { Reach::ConnectFailed };
        Connect::Failed(e)
    }

    /// What the status page calls a failure of this connection (None: not the server's).
    fn outcome(&self, f: Fail) -> Option<Outcome> {
        let cause = match f {
            Fail::Status(s) => return f.counts_as_failure().then(|| Outcome::status(s, false)),
            Fail::Timeout if self.reach == Reach::Connected => Cause::Timeout,
            Fail::Timeout => Cause::ConnectTimeout,
            Fail::Handshake => Cause::Cping,
            Fail::Frozen => Cause::Frozen,
            Fail::InvalidHeader => Cause::InvalidResponse,
            Fail::Error => match self.reach {
                Reach::Refused => Cause::Refused,
                Reach::Connecting | Reach::ConnectFailed => Cause::ConnectError,
                Reach::Connected => Cause::Reset,
            },
        };
        Some(Outcome::failed(cause))
    }

    pub(crate) fn writable(&self) -> bool {
        self.sock.writable
    }

    pub(crate) fn readable(&self) -> bool {
        self.sock.readable
    }

    /// The backend closed its side (a read returned 0).
    pub(crate) fn eof(&self) -> bool {
        self.sock.eof
    }

    /// Writes `data` as far as the socket takes it; returns the bytes written.
    pub(crate) fn write(&mut self, data: &[u8], now: Instant) -> io::Result<usize> {
        let n = self.sock.write(data)?;
        if n > 0 {
            self.t_io = now;
        }
        Ok(n)
    }

    /// Writes what `bout` holds; true when something went.
    pub(crate) fn flush_out(&mut self, now: Instant) -> io::Result<bool> {
        if self.bout.is_empty() {
            return Ok(false);
        }
        let n = self.sock.write(self.bout.data())?;
        self.bout.consume(n);
        if n > 0 {
            self.t_io = now;
        }
        Ok(n > 0)
    }

    /// Reads backend bytes into `bin` until it is full or the socket is drained; true when
    /// something arrived (or the end of the stream).
    pub(crate) fn fill_in(&mut self, ctx: &Ctx) -> io::Result<bool> {
        let before = (self.bin.len(), self.sock.eof);
        self.sock.read_into(&mut self.bin)?;
        if self.bin.len() != before.0 {
            self.t_io = ctx.now;
            if self.watched {
                ctx.rt.upstreams[self.upstream].heard_from(self.peer, ctx.now_ms);
            }
        }
        Ok((self.bin.len(), self.sock.eof) != before)
    }

    /// Before sleeping on this connection: a socket that sleeps through a lone tail (see
    /// `release`) must wake for any byte again when what comes next may be that short.
    pub(crate) fn keep_waking(&mut self) {
        if self.sock.lowat_raised && (!self.bin.is_empty() || self.adapter.next_may_be_tiny()) {
            // Cannot fail on a connected TCP socket; if it did, proxy_read_timeout still ends the wait.
            if let Err(e) = set_rcvlowat(&self.sock.stream, 1) {
                log::error!("setsockopt(SO_RCVLOWAT) failed ({})", e);
            }
            self.sock.lowat_raised = false;
        }
    }

    /// Moves bytes from `from` towards the backend through `bout` (the tunnel).
    pub(crate) fn send_through(&mut self, from: &mut Buf, now: Instant) -> io::Result<bool> {
        let n = self.bout.put(from.data());
        from.consume(n);
        let wrote = self.flush_out(now)?;
        Ok(n > 0 || wrote)
    }

    /// The one way an exchange ends its backend connection.
    pub(crate) fn release(mut self, ctx: &mut Ctx, how: Release, traffic: (u64, u64)) {
        let rt = ctx.rt.clone();
        let ups = &rt.upstreams[self.upstream];
        let state = &ups.peers[self.peer];
        state.in_flight.fetch_sub(1, Relaxed);
        ctx.keepalive.finished(self.upstream, self.peer);
        if traffic != (0, 0) {
            ups.account(self.peer, traffic.0, traffic.1);
        }
        match how {
            Release::Done { .. } | Release::Close => ctx.balancers[self.upstream].free(ups, self.peer, false, now_ms()),
            Release::Failed(f) => {
                match (self.outcome(f), f) {
                    (Some(o), _) => ups.record_failure(self.peer, o),
                    // 403/404/429 only moved the request on: a response, not a failure.
                    (None, Fail::Status(s)) => ups.peers[self.peer].count_status(s),
                    (None, _) => {}
                }
                ctx.balancers[self.upstream].free(ups, self.peer, f.counts_as_failure(), now_ms())
            }
            Release::Stale => {}
        }
        let requests = self.requests + 1;
        if let Release::Done { .. } = how {
            state.learn_from_response(requests, self.adapter.keepalive_hint());
        }
        let tail = self.adapter.unread_tail();
        let poolable = how == Release::Done { reusable: true }
            && self.adapter.request_complete()
            && self.bout.is_empty()
            && ups.conf.keepalive.enabled()
            && requests < state.request_limit(ups.conf.keepalive_requests)
            && !ctx.draining;
        // A tail still to come (AJP's END_RESPONSE, written just after the body) must not
        // wake the worker on its own: the socket's low-water mark is raised above its length
        // once per connection, and the next response on it reads the tail first.
        let sleeps_through_tail = match tail {
            Some(t) if poolable && !self.sock.lowat_raised => set_rcvlowat(&self.sock.stream, t.len() + 1).is_ok(),
            _ => self.sock.lowat_raised,
        };
        if !poolable || (tail.is_some() && !sleeps_through_tail) {
            ctx.close_backend(&mut self.sock.stream, self.token);
            return;
        }
        let token = self.token;
        let idle = IdleConn { stream: self.sock.stream, upstream: self.upstream, peer: self.peer, since: ctx.now, requests, token, tail, sleeps_through_tail };
        match ctx.keepalive.offer(idle, ups.conf.keepalive.cap()) {
            Ok((key, evicted)) => {
                if let Some(mut old) = evicted {
                    ctx.close_backend(&mut old.stream, old.token);
                }
                // Same registration, the pool owns it now: no epoll_ctl.
                if let Some(o) = ctx.backends.get_mut(token) {
                    *o = Owner::Idle(key);
                }
            }
            Err((mut idle, _)) => ctx.close_backend(&mut idle.stream, idle.token),
        }
    }
}

/// The socket and what epoll last said of it (edge-triggered: cleared on `WouldBlock`).
struct Sock {
    stream: TcpStream,
    readable: bool,
    writable: bool,
    /// EPOLLRDHUP seen: keep reading until read() returns 0.
    rdhup: bool,
    eof: bool,
    /// SO_RCVLOWAT is above one byte: a lone unread tail does not wake the worker.
    lowat_raised: bool,
}

impl Sock {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut done = 0;
        while self.writable && done < data.len() {
            match self.stream.write(&data[done..]) {
                Ok(n) => {
                    done += n;
                    if done < data.len() {
                        self.writable = false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    fn read_into(&mut self, buf: &mut Buf) -> io::Result<()> {
        while self.readable && !self.eof && !buf.is_full() {
            let want = buf.spare().len();
            match self.stream.read(buf.spare()) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    buf.commit(n);
                    // A short read drained the socket (unless a FIN is pending).
                    if n < want && !self.rdhup {
                        self.readable = false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// SO_RCVLOWAT: epoll reports the socket readable once `bytes` are queued (or on FIN/error);
/// lowering it wakes a waiter at once when enough is already there (Linux ≥ 4.19).
fn set_rcvlowat(stream: &TcpStream, bytes: usize) -> io::Result<()> {
    let v = bytes as libc::c_int;
    // SAFETY: a socket this connection owns; the value is a c_int of its size.
    let r = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            &v as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
