//! Driving an exchange: one `match` on its phase, each arm one step of that phase. Steps
//! move bytes and, where the phase's work is over, move the exchange to the next phase.

use super::{Exchange, OwnBody, Phase, MAX_FORM};
use crate::backend::{BackendError, Handshake, Protocol, Step};
use crate::files::FileBody;
use crate::http::request::{self, BodyKind};
use crate::http::writer::ReqFacts;
use crate::proxy::body::{Collect, Discard, Forward};
use crate::proxy::client::Client;
use crate::proxy::fail::Fail;
use crate::proxy::upconn::{Connect, Release, UpConn};
use crate::proxy::{Closed, Res};
use crate::reactor::Ctx;
use mio::event::Event;

impl Exchange {
    /// Moves the exchange as far as it can go now; true on any progress. An error closes
    /// the client connection.
    pub(crate) fn drive(&mut self, c: &mut Client, ctx: &mut Ctx) -> Res<bool> {
        if self.abort_with_client && self.proxying() && c.transport.peer_closed() {
            // nginx's proxy_ignore_client_abort off: the request is abandoned, its backend
            // connection closed (never pooled), and nothing more is sent for it.
            log::info!("client {} closed the connection while its request was in progress, so the upstream connection is closed too", c.peer);
            return Err(Closed::ByClient);
        }
        let mut progress = self.move_body(c, ctx)?;
        progress |= match self.phase {
            // Advanced by the connection's events (`on_backend_event`).
            Phase::Connecting(_) => false,
            Phase::Handshake { .. } => self.handshake(c, ctx)?,
            Phase::SendingHead { .. } | Phase::AwaitingResponse(_) | Phase::Streaming(_) => self.forward(c, ctx)?,
            Phase::Tunnel(_) => self.tunnel(c, ctx)?,
            Phase::CollectingForm(_) => self.serve_status(c, ctx)?,
            Phase::Answering(_) => self.send_own_body(c)?,
            Phase::Discarding => {
                let over = self.body_done() || !self.keep_alive;
                if over {
                    self.phase = Phase::Done;
                }
                over
            }
            Phase::Done => false,
        };
        Ok(progress)
    }

    /// Readiness on the backend connection; a connect in progress is checked here.
    pub(crate) fn on_backend_event(&mut self, c: &mut Client, ctx: &mut Ctx, ev: &Event) -> Res<()> {
        let Some(up) = self.upconn_mut() else { return Ok(()) };
        up.on_event(ev);
        let Phase::Connecting(up) = &mut self.phase else { return Ok(()) };
        match up.poll_connect(ctx.now) {
            Connect::Pending => Ok(()),
            Connect::Done => {
                if let Some(up) = self.take_upconn(Phase::Done) {
                    self.phase = Self::connected(up, ctx);
                }
                Ok(())
            }
            Connect::Failed(e) => self.upstream_failed(c, ctx, Fail::Error, &format!("connect() failed ({})", e)),
        }
    }

    /// A connection is ready: the adapter's handshake first, if it has one.
    pub(super) fn connected(mut up: UpConn, ctx: &Ctx) -> Phase {
        match up.adapter.begin_handshake(&mut up.bout) {
            Some(limit) => Phase::Handshake { up, deadline: ctx.now + limit },
            None => Phase::SendingHead { up, sent: 0 },
        }
    }

    /// Client body bytes to where this phase sends them: the backend (once it can take
    /// them), the status page's form, or nowhere.
    fn move_body(&mut self, c: &mut Client, ctx: &mut Ctx) -> Res<bool> {
        if self.body_done() {
            return Ok(self.end_body());
        }
        let Some(cin) = c.cin.as_mut() else { return Ok(false) };
        let mut progress = false;
        match &mut self.phase {
            Phase::SendingHead { up, .. } | Phase::AwaitingResponse(up) | Phase::Streaming(up) => {
                if self.continue_pending && !self.writer.started {
                    self.continue_pending = false;
                    if cin.is_empty() {
                        if c.cout.is_none() {
                            c.cout = ctx.pool.get();
                        }
                        if let Some(cout) = c.cout.as_mut() {
                            const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
                            if cout.put_all(CONTINUE) {
                                self.writer.head_bytes += CONTINUE.len() as u64;
                            }
                            progress = true;
                        }
                    }
                }
                let max_body = ctx.rt.location_settings(self.server, self.loc).client_max_body_size;
                while !self.body.is_done() && !cin.is_empty() {
                    let mut sink = Forward { adapter: &mut up.adapter, out: &mut up.bout };
                    if crate::proxy::body::BodySink::room(&sink) == 0 {
                        break;
                    }
                    match self.body.feed(cin, &mut sink) {
                        Ok((0, _)) => break,
                        Ok((_, n)) => {
                            self.body_taken += n as u64;
                            progress = true;
                            if self.body_taken > max_body {
                                log::info!("client {}: chunked body over client_max_body_size", c.peer);
                                self.keep_alive = false;
                                return self.abort_with(c, ctx, 413).map(|_| true);
                            }
                        }
                        Err(_) => {
                            log::info!("client {}: invalid chunked body", c.peer);
                            self.keep_alive = false;
                            return self.abort_with(c, ctx, 400).map(|_| true);
                        }
                    }
                }
            }
            Phase::CollectingForm(sr) => {
                while !self.body.is_done() && !cin.is_empty() {
                    let mut sink = Collect { into: &mut sr.form, limit: MAX_FORM };
                    match self.body.feed(cin, &mut sink) {
                        Ok((0, _)) => {
                            if crate::proxy::body::BodySink::room(&sink) == 0 {
                                self.keep_alive = false;
                                return self.abort_with(c, ctx, 413).map(|_| true);
                            }
                            break;
                        }
                        Ok(_) => progress = true,
                        Err(_) => {
                            self.keep_alive = false;
                            return self.abort_with(c, ctx, 400).map(|_| true);
                        }
                    }
                }
            }
            Phase::Answering(_) | Phase::Discarding => {
                // Read and drop the body so the connection can be kept alive.
                while !self.body.is_done() && !cin.is_empty() {
                    match self.body.feed(cin, &mut Discard) {
                        Ok((0, _)) => break,
                        Ok(_) => progress = true,
                        Err(_) => {
                            self.keep_alive = false;
                            return Ok(true);
                        }
                    }
                }
            }
            // The body waits in `cin` until a backend has answered the connect (and its
            // handshake): until then a failure can still be retried elsewhere.
            Phase::Connecting(_) | Phase::Handshake { .. } | Phase::Tunnel(_) | Phase::Done => {}
        }
        if self.proxying() {
            // A chunk that declares more than client_max_body_size gets 413 at once, as in
            // nginx, not after its bytes have come (or while they wait for the backend).
            let max_body = ctx.rt.location_settings(self.server, self.loc).client_max_body_size;
            let pending = c.cin.as_ref().map_or(&[][..], |b| b.data());
            if !self.body.is_done() && self.body.declared_ahead(pending) > max_body {
                log::info!("client {}: a chunk of the request body declares more than client_max_body_size", c.peer);
                self.keep_alive = false;
                return self.abort_with(c, ctx, 413).map(|_| true);
            }
        }
        if !self.body.is_done() && c.transport.read_closed() && c.input_empty() {
            log::info!("client {}: closed the connection while sending the request body", c.peer);
            return Err(Closed::ByClient);
        }
        Ok(progress | self.end_body())
    }

    /// Once the body is complete, the adapter writes any end marker it owes.
    fn end_body(&mut self) -> bool {
        if !self.body.is_done() {
            return false;
        }
        match &mut self.phase {
            Phase::SendingHead { up, .. } | Phase::AwaitingResponse(up) | Phase::Streaming(up) => up.adapter.encode_body_end(&mut up.bout),
            _ => false,
        }
    }

    /// The adapter's handshake: its bytes out, the answer in.
    fn handshake(&mut self, c: &mut Client, ctx: &mut Ctx) -> Res<bool> {
        let Phase::Handshake { up, .. } = &mut self.phase else { return Ok(false) };
        let now = ctx.now;
        let io = up.flush_out(now).and_then(|w| Ok(w | up.fill_in(ctx)?));
        let progress = match io {
            Ok(p) => p,
            Err(e) => return self.upstream_failed(c, ctx, Fail::Error, &format!("handshake failed ({})", e)).map(|_| true),
        };
        let eof = up.eof();
        match up.adapter.handshake_input(&mut up.bin, eof) {
            Ok(Handshake::Pending) => {
                up.keep_waking();
                Ok(progress)
            }
            Ok(Handshake::Done) => {
                if let Some(up) = self.take_upconn(Phase::Done) {
                    self.phase = Phase::SendingHead { up, sent: 0 };
                }
                Ok(true)
            }
            // Closed under us: a stale pooled connection is resent on a new one.
            Err(BackendError::PrematureClose) => self.upstream_failed(c, ctx, Fail::Error, "connection closed during the handshake").map(|_| true),
            Err(e) => self.upstream_failed(c, ctx, Fail::Handshake, describe(e)).map(|_| true),
        }
    }

    /// The request out (head, then body), the response in and decoded for the client.
    fn forward(&mut self, c: &mut Client, ctx: &mut Ctx) -> Res<bool> {
        let now = ctx.now;
        let mut progress = false;
        let io: std::io::Result<()> = (|| {
            if let Phase::SendingHead { up, sent } = &mut self.phase {
                let head = self.proxy.as_ref().map_or(&[][..], |p| p.head());
                let n = up.write(&head[*sent..], now)?;
                *sent += n;
                progress |= n > 0;
                if *sent < head.len() {
                    // Read anyway: a backend that closes or resets is noticed.
                    progress |= up.fill_in(ctx)?;
                    return Ok(());
                }
                if let Some(up) = self.take_upconn(Phase::Done) {
                    self.phase = Phase::AwaitingResponse(up);
                }
            }
            if let Some(up) = self.upconn_mut() {
                progress |= up.flush_out(now)?;
                progress |= up.fill_in(ctx)?;
            }
            Ok(())
        })();
        if let Err(e) = io {
            let what = if self.request_sent() && !self.writer.started { "recv()/send()" } else { "I/O" };
            return self.upstream_failed(c, ctx, Fail::Error, &format!("{} failed ({})", what, e)).map(|_| true);
        }
        if matches!(self.phase, Phase::AwaitingResponse(_) | Phase::Streaming(_)) {
            progress |= self.decode(c, ctx)?;
        }
        Ok(progress)
    }

    /// Backend bytes → the client's response.
    fn decode(&mut self, c: &mut Client, ctx: &mut Ctx) -> Res<bool> {
        let rt = ctx.rt.clone();
        let Some(px) = self.proxy.as_ref() else { return Ok(false) };
        let ups = &rt.upstreams[px.upstream];
        let settings = rt.location_settings(self.server, self.loc);
        let mask = self.retry_mask(settings, ups);
        let (Phase::AwaitingResponse(up) | Phase::Streaming(up)) = &mut self.phase else { return Ok(false) };
        if up.bin.is_empty() && !up.eof() && !self.writer.flush_due() {
            return Ok(false);
        }
        if c.cout.is_none() {
            c.cout = ctx.pool.get();
        }
        let Some(cout) = c.cout.as_mut() else { return Ok(false) };
        let Some(px) = self.proxy.as_mut() else { return Ok(false) };
        let [r1, r2] = &ups.rewrite[up.peer];
        let facts = ReqFacts {
            head: self.meta.method == request::Method::Head,
            minor: self.meta.minor,
            keep_alive: self.keep_alive && !ctx.draining,
            host: px.authority(),
            rewrite_from: [r1.as_bytes(), r2.as_bytes()],
            rewrite: settings.proxy_redirect,
            scheme: if c.transport.tls_info().is_some() { "https" } else { "http" },
            date: &ctx.clock.http_date,
            via: settings.proxy_via.value(),
            add_headers: &settings.add_header,
            gzip: self.gzip.map(|client| crate::gzip::Ask { settings, client }),
        };
        let before = (up.bin.len(), cout.len());
        let was_started = self.writer.started;
        let mut step = up.adapter.decode(&mut up.bin, cout, &mut self.writer, &facts, mask);
        if step == Ok(Step::Blocked) && up.eof() && up.bin.is_empty() {
            step = up.adapter.eof(cout, &mut self.writer);
        }
        if step == Ok(Step::Blocked) && self.writer.flush_due() && !up.adapter.hold_output() {
            // The backend's input ran dry: what zlib holds goes to the client now, as an
            // uncompressed response's bytes would (a partial flush waits for room).
            self.writer.flush(cout);
        }
        if step == Ok(Step::Blocked) {
            up.keep_waking();
        }
        let progress = before != (up.bin.len(), cout.len()) || self.writer.started != was_started;
        if self.writer.started && !was_started {
            px.history.set_status(self.writer.status);
            let t = ctx.now.duration_since(up.t_start);
            ups.peers[up.peer].record_response(self.writer.status, t);
            // The kept head is only needed for retries, which are over now.
            px.head = None;
        }
        if self.writer.started && matches!(self.phase, Phase::AwaitingResponse(_)) {
            if let Some(up) = self.take_upconn(Phase::Done) {
                self.phase = Phase::Streaming(up);
            }
        }
        match step {
            Ok(Step::Blocked) => Ok(progress),
            Ok(Step::RetryStatus(status)) => self.upstream_failed(c, ctx, Fail::Status(status), "").map(|_| true),
            Ok(Step::Done { .. }) if self.writer.status == 101 => {
                // Switching protocols: from now on bytes are copied both ways as they are.
                self.keep_alive = false;
                if let Some(up) = self.take_upconn(Phase::Done) {
                    self.phase = Phase::Tunnel(up);
                }
                Ok(true)
            }
            Ok(Step::Done { reusable }) => {
                self.response_complete(ctx, reusable);
                Ok(true)
            }
            Err(BackendError::InvalidHeader(why)) => self.upstream_failed(c, ctx, Fail::InvalidHeader, why).map(|_| true),
            Err(e) => self.upstream_failed(c, ctx, Fail::Error, describe(e)).map(|_| true),
        }
    }

    /// The backend's response is all in `cout`: its connection is released (pooled only if
    /// the whole request went out too); an unfinished request body is read and dropped (a
    /// backend that answers early, as nginx discards a body it does not need).
    fn response_complete(&mut self, ctx: &mut Ctx, reusable: bool) {
        let body_done = self.body_done();
        self.release_upconn(ctx, if body_done { Release::Done { reusable } } else { Release::Close });
        self.phase = if body_done { Phase::Done } else { Phase::Discarding };
    }

    /// After a 101: copies bytes both ways (with the usual back-pressure) until either side
    /// closes.
    fn tunnel(&mut self, c: &mut Client, ctx: &mut Ctx) -> Res<bool> {
        let Phase::Tunnel(up) = &mut self.phase else { return Ok(false) };
        let now = ctx.now;
        let mut progress = false;
        let io = (|| -> std::io::Result<()> {
            progress |= up.fill_in(ctx)?;
            if let Some(cin) = c.cin.as_mut() {
                progress |= up.send_through(cin, now)?;
            }
            Ok(())
        })();
        if let Err(e) = io {
            log::info!("client {}: tunnel to the backend ended ({})", c.peer, e);
            return Err(Closed::ByUs);
        }
        if c.cout.is_none() {
            c.cout = ctx.pool.get();
        }
        if let Some(cout) = c.cout.as_mut() {
            let n = cout.put(up.bin.data());
            up.bin.consume(n);
            progress |= n > 0;
        }
        let client_done = c.transport.read_closed() && c.input_empty() && up.bout.is_empty();
        let backend_done = up.eof() && up.bin.is_empty() && !c.output_pending();
        if client_done || backend_done {
            return Err(Closed::ByUs);
        }
        Ok(progress)
    }

    /// Copies a pending page into `cout`, or sends a file once the head is out.
    fn send_own_body(&mut self, c: &mut Client) -> Res<bool> {
        let Phase::Answering(body) = &mut self.phase else { return Ok(false) };
        let (progress, finished) = match body {
            OwnBody::Page { bytes, off } => {
                let Some(cout) = c.cout.as_mut() else { return Ok(false) };
                let n = cout.put(&bytes[*off..]);
                *off += n;
                (n > 0, *off == bytes.len())
            }
            OwnBody::Compressed(file) => {
                let Some(cout) = c.cout.as_mut() else { return Ok(false) };
                let before = cout.len();
                if let Err(e) = compress_file(file, cout, &mut self.writer) {
                    log::error!("client {}: reading a file to compress failed: {}", c.peer, e);
                    return Err(Closed::ByUs);
                }
                let done = file.remaining == 0 && self.writer.finish(cout);
                (cout.len() != before, done)
            }
            OwnBody::File(file) => {
                if !c.transport.can_write() || c.output_pending() {
                    return Ok(false);
                }
                match c.send_file(file) {
                    Ok(sent) => {
                        self.writer.body_bytes += sent;
                        (sent > 0, file.remaining == 0)
                    }
                    Err(e) => {
                        log::info!("client {}: sendfile() failed: {}", c.peer, e);
                        return Err(Closed::ByClient);
                    }
                }
            }
        };
        if finished {
            self.writer.finished = true;
            self.phase = self.after_answer();
        }
        Ok(progress || finished)
    }

    /// Where an exchange goes once pounce's own answer is complete.
    pub(super) fn after_answer(&self) -> Phase {
        if self.body_done() || !self.keep_alive {
            Phase::Done
        } else {
            Phase::Discarding
        }
    }

    /// The status page, once its form body is in.
    fn serve_status(&mut self, c: &mut Client, ctx: &mut Ctx) -> Res<bool> {
        if !self.body_done() {
            return Ok(false);
        }
        let Phase::CollectingForm(sr) = std::mem::replace(&mut self.phase, Phase::Done) else { return Ok(false) };
        // The page reports the buffers of everyone but the request asking for it, so an
        // idle worker shows 0.
        ctx.publish(c.cin.is_some() as usize + c.cout.is_some() as usize);
        let rt = ctx.rt.clone();
        let mut resp = crate::status::handle(&rt, &sr);
        let head_only = sr.method == "HEAD";
        // The page goes through gzip as any response (nginx's filter sees every answer);
        // it is small and whole, so it is compressed in one piece.
        let mut gz = match self.gzip {
            Some(client) if !head_only && !resp.body.is_empty() => {
                let ask = crate::gzip::Ask { settings: self.settings(&rt), client };
                let hs: [(&[u8], &[u8]); 2] = [(b"Content-Type", resp.content_type.as_bytes()), (b"Cache-Control", b"no-store")];
                crate::gzip::decide(&ask, resp.status, hs.into_iter(), Some(resp.body.len() as u64), &ctx.clock.http_date)
            }
            _ => crate::gzip::Decision::default(),
        };
        if gz.compress {
            match crate::gzip::compress_whole(&resp.body, self.settings(&rt).gzip_comp_level) {
                Some(z) => {
                    self.writer.compressed_whole(resp.body.len() as u64, z.len() as u64);
                    resp.body = z;
                }
                None => gz.compress = false,
            }
        }
        let keep = self.keep_alive && !ctx.draining;
        self.keep_alive = keep;
        let cout = c.ensure_cout(ctx)?;
        let mark = cout.len();
        use crate::http::status::{added_headers, head_end, head_start};
        use std::fmt::Write as _;
        let mut ok = head_start(cout, resp.status, &ctx.clock.http_date)
            && write!(
                cout,
                "Content-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{}",
                resp.content_type,
                resp.body.len(),
                crate::status::HEADERS
            )
            .is_ok();
        if gz.compress {
            ok = ok && cout.put_all(b"Content-Encoding: gzip\r\n");
        }
        if gz.vary {
            ok = ok && cout.put_all(b"Vary: Accept-Encoding\r\n");
        }
        if let Some(loc) = &resp.location {
            ok = ok && write!(cout, "Location: {}\r\n", loc).is_ok();
        }
        ok = ok && added_headers(cout, resp.status, &self.settings(&rt).add_header);
        if !(ok && head_end(cout, keep)) {
            return Err(Closed::ByUs);
        }
        self.writer.head_bytes += (cout.len() - mark) as u64;
        self.writer.status = resp.status;
        self.writer.started = true;
        self.writer.keep_alive = keep;
        self.writer.body_bytes = if head_only { 0 } else { resp.body.len() as u64 };
        if head_only || resp.body.is_empty() {
            self.writer.finished = true;
            self.phase = self.after_answer();
        } else {
            self.phase = Phase::Answering(OwnBody::Page { bytes: resp.body, off: 0 });
        }
        Ok(true)
    }

    /// A request with a body (that could not be replayed from a dead pooled connection)
    /// needs its pooled connection checked first.
    pub(super) fn reuse_check(&self) -> Option<bool> {
        Some(self.meta.body != BodyKind::None)
    }
}

/// Reads a static file into its compressed response while `cout` has room. The file is read
/// in pieces on the stack; what zlib did not take of a piece is read again next time.
fn compress_file(file: &mut FileBody, cout: &mut crate::buffer::Buf, writer: &mut crate::http::writer::ResponseWriter) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut piece = [0u8; 16 * 1024];
    while file.remaining > 0 {
        let want = file.remaining.min(piece.len() as u64) as usize;
        let n = match file.file.read_at(&mut piece[..want], file.offset) {
            Ok(0) => return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "file shrank while being sent")),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let taken = writer.data(cout, &piece[..n]);
        file.offset += taken as u64;
        file.remaining -= taken as u64;
        if taken < n {
            break;
        }
    }
    Ok(())
}

/// What a backend error says in the error log.
fn describe(e: BackendError) -> &'static str {
    match e {
        BackendError::InvalidHeader(w) | BackendError::Protocol(w) | BackendError::Handshake(w) => w,
        BackendError::PrematureClose => "upstream prematurely closed connection",
    }
}
