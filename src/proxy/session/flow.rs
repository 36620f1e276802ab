//! Moving an exchange's bytes: the request body towards the backend (or a sink), backend
//! reads and writes, and the response decoded into the client's buffer.

use super::*;

impl Session {
    pub(super) fn drive_exchange(&mut self, ctx: &mut Ctx) -> Res<bool> {
        let mut progress = self.move_request_body(ctx)?;
        progress |= self.serve_status(ctx)?;
        progress |= self.copy_page();
        progress |= self.send_file(ctx)?;
        if self.ex.as_ref().is_some_and(|ex| ex.tunnel) {
            return self.tunnel(ctx).map(|p| p || progress);
        }
        progress |= self.backend_io(ctx)?;
        progress |= self.decode_response(ctx)?;
        if let Some(ex) = self.ex.as_mut() {
            if ex.resp_done && !ex.body_done() && matches!(ex.handling, Handling::Proxy { .. }) {
                // The backend answered without taking the whole body (a `return` or an early
                // error in the backend): its connection cannot be reused, and the rest of the
                // body is read and dropped (client_body_timeout still applies), so the client
                // keeps its connection, as nginx discards a body it does not need.
                drop_backend(ctx, ex);
                ex.handling = Handling::Respond;
                progress = true;
            }
        }
        let done = self.ex.as_ref().is_some_and(|ex| ex.resp_done && (ex.body_done() || self.closing));
        if done {
            self.finish_exchange(ctx);
            progress = true;
        }
        Ok(progress)
    }

    /// Client body bytes → backend (or discarded when pounce answers itself).
    pub(super) fn move_request_body(&mut self, ctx: &mut Ctx) -> Res<bool> {
        let Some(ex) = self.ex.as_mut() else { return Ok(false) };
        let Some(cin) = self.cin.as_mut() else { return Ok(false) };
        let max_body = ctx.rt.location_settings(ex.server, ex.loc).client_max_body_size;
        let mut progress = false;
        match ex.handling {
            Handling::Respond => {
                // Read and drop the body so the connection can be kept alive.
                while !ex.body_done() && !cin.is_empty() {
                    let mut sink = Discard;
                    match ex.body.feed(cin, &mut sink) {
                        Ok((0, _)) => break,
                        Ok(_) => progress = true,
                        Err(_) => {
                            self.closing = true;
                            return Ok(true);
                        }
                    }
                }
            }
            Handling::Status => {
                let Some(sr) = ex.status_req.as_mut() else { return Ok(false) };
                while !matches!(ex.body, ReqBody::Done) && !cin.is_empty() {
                    let mut sink = Collect { into: &mut sr.form, limit: MAX_FORM };
                    match ex.body.feed(cin, &mut sink) {
                        Ok((0, _)) => {
                            if sink.room() == 0 {
                                ex.keep_alive = false;
                                return self.abort_with(ctx, 413).map(|_| true);
                            }
                            break;
                        }
                        Ok(_) => progress = true,
                        Err(_) => {
                            ex.keep_alive = false;
                            return self.abort_with(ctx, 400).map(|_| true);
                        }
                    }
                }
            }
            Handling::Proxy { .. } => {
                let Some(up) = ex.up.as_mut() else { return Ok(false) };
                // Body bytes leave the client buffer only once they can reach a backend that
                // answered: until then a failure can still be retried elsewhere.
                if !up.connected || up.ping_deadline.is_some() {
                    return Ok(false);
                }
                if ex.continue_pending && !ex.writer.started {
                    ex.continue_pending = false;
                    if cin.is_empty() {
                        if self.cout.is_none() {
                            self.cout = ctx.pool.get();
                        }
                        if let Some(cout) = self.cout.as_mut() {
                            cout.put_all(b"HTTP/1.1 100 Continue\r\n\r\n");
                            progress = true;
                        }
                    }
                }
                let Some(bout) = up.bout.as_mut() else { return Ok(false) };
                while !matches!(ex.body, ReqBody::Done) && !cin.is_empty() {
                    let mut sink = Forward { adapter: &mut up.adapter, out: bout };
                    if sink.room() == 0 {
                        break;
                    }
                    match ex.body.feed(cin, &mut sink) {
                        Ok((0, _)) => break,
                        Ok((_, n)) => {
                            ex.body_taken += n as u64;
                            progress = true;
                            if ex.body_taken > max_body {
                                log::info!("client {}: chunked body over client_max_body_size", self.peer);
                                ex.keep_alive = false;
                                return self.abort_with(ctx, 413).map(|_| true);
                            }
                        }
                        Err(_) => {
                            log::info!("client {}: invalid chunked body", self.peer);
                            ex.keep_alive = false;
                            return self.abort_with(ctx, 400).map(|_| true);
                        }
                    }
                }
                if matches!(ex.body, ReqBody::Done) && up.adapter.encode_body_end(bout) {
                    progress = true;
                }
            }
        }
        if !ex.body_done() && self.c_eof && cin.is_empty() {
            log::info!("client {}: closed the connection while sending the request body", self.peer);
            return Err(Closed);
        }
        Ok(progress)
    }

    /// Writes the request to the backend and reads its response bytes.
    pub(super) fn backend_io(&mut self, ctx: &mut Ctx) -> Res<bool> {
        let Some(ex) = self.ex.as_mut() else { return Ok(false) };
        let Some(up) = ex.up.as_mut() else { return Ok(false) };
        if !up.connected {
            return Ok(false);
        }
        let mut progress = false;
        let mut failure: Option<(Fail, String)> = None;
        // AJP CPING first: nothing of the request goes out before the CPONG.
        if up.ping_deadline.is_some() {
            while up.writable && up.ping_sent < CPING_PACKET.len() {
                match up.stream.write(&CPING_PACKET[up.ping_sent..]) {
                    Ok(n) => {
                        up.ping_sent += n;
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => up.writable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        failure = Some((Fail::Error, format!("CPING failed ({})", e)));
                        break;
                    }
                }
            }
        }
        // Write: the kept request head first, then framed body bytes.
        while up.writable && up.ping_deadline.is_none() && failure.is_none() {
            let head = ex.req_head.as_ref().map(|h| &h.data()[up.head_sent..]).filter(|d| !d.is_empty());
            let data = match head {
                Some(d) => d,
                None => match up.bout.as_ref() {
                    Some(b) if !b.is_empty() => b.data(),
                    _ => break,
                },
            };
            let from_head = head.is_some();
            let want = data.len();
            match up.stream.write(data) {
                Ok(n) => {
                    if n < want {
                        up.writable = false;
                    }
                    if from_head {
                        up.head_sent += n;
                        ex.sent = true;
                    } else if let Some(b) = up.bout.as_mut() {
                        b.consume(n);
                    }
                    up.t_io = ctx.now;
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => up.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failure = Some((Fail::Error, format!("send() failed ({})", e)));
                    break;
                }
            }
        }
        // Read.
        if failure.is_none() {
            if let Some(bin) = up.bin.as_mut() {
                while up.readable && !up.eof && !bin.is_full() {
                    let want = bin.spare().len();
                    match up.stream.read(bin.spare()) {
                        Ok(0) => {
                            up.eof = true;
                            progress = true;
                        }
                        Ok(n) => {
                            bin.commit(n);
                            up.t_io = ctx.now;
                            progress = true;
                            if n < want && !up.rdhup {
                                up.readable = false;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => up.readable = false,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            failure = Some((Fail::Error, format!("recv() failed ({})", e)));
                            break;
                        }
                    }
                }
            }
        }
        // The CPONG: exactly `41 42 00 01 09`, then the request may go.
        if failure.is_none() && up.ping_deadline.is_some() {
            if let Some(bin) = up.bin.as_mut() {
                if bin.len() >= 5 {
                    let d = bin.data();
                    if d[..2] == MAGIC_FROM_TOMCAT && d[2..5] == [0, 1, CPONG] {
                        bin.consume(5);
                        up.ping_deadline = None;
                        up.readable = true;
                        up.writable = true;
                        progress = true;
                    } else {
                        failure = Some((Fail::Error, "invalid CPONG".to_string()));
                    }
                } else if up.eof {
                    failure = Some((Fail::Error, "connection closed instead of CPONG".to_string()));
                }
            }
        }
        if let Some((kind, why)) = failure {
            self.upstream_failed(ctx, kind, &why)?;
            return Ok(true);
        }
        Ok(progress)
    }

    /// Backend bytes → the client's response.
    pub(super) fn decode_response(&mut self, ctx: &mut Ctx) -> Res<bool> {
        let Some(ex) = self.ex.as_mut() else { return Ok(false) };
        if ex.resp_done || ex.up.is_none() {
            return Ok(false);
        }
        let rt = ctx.rt.clone();
        let ups = &rt.upstreams[ex.upstream()];
        let settings = rt.location_settings(ex.server, ex.loc);
        let mask = ex.retry_mask(settings, ups);
        let Some(up) = ex.up.as_mut() else { return Ok(false) };
        if up.ping_deadline.is_some() {
            return Ok(false);
        }
        let Some(bin) = up.bin.as_mut() else { return Ok(false) };
        if bin.is_empty() && !up.eof {
            return Ok(false);
        }
        if self.cout.is_none() {
            self.cout = ctx.pool.get();
        }
        let Some(cout) = self.cout.as_mut() else { return Ok(false) };
        let meta = ex.meta.unwrap_or_else(request::RequestMeta::placeholder);
        let host = match &ex.req_head {
            Some(h) => &h.data()[ex.host.0..ex.host.0 + ex.host.1],
            None => &b""[..],
        };
        let [r1, r2] = &ups.rewrite[up.peer];
        let facts = ReqFacts {
            head: meta.method == request::Method::Head,
            minor: meta.minor,
            keep_alive: ex.keep_alive && !ctx.draining,
            host,
            rewrite_from: [r1.as_bytes(), r2.as_bytes()],
            rewrite: settings.proxy_redirect,
            date: &ctx.clock.http_date,
            via: settings.proxy_via.value(),
        };
        let before = (bin.len(), cout.len());
        let was_started = ex.writer.started;
        let mut step = up.adapter.decode(bin, cout, &mut ex.writer, &facts, mask);
        if step == Ok(Step::Blocked) && up.eof && bin.is_empty() {
            step = up.adapter.eof(cout, &mut ex.writer);
        }
        let progress = before != (bin.len(), cout.len()) || ex.writer.started != was_started;
        if ex.writer.started && !was_started {
            ex.upstream_status = ex.writer.status;
            let t = ctx.now.duration_since(up.t_start);
            ex.upstream_time = Some(t);
            rt.upstreams[ex.upstream].peers[up.peer].last_response_us.store(t.as_micros() as u64, Relaxed);
            // The kept head is only needed for retries, which are over now.
            ctx.pool.release(&mut ex.req_head);
            ex.host = (0, 0);
        }
        match step {
            Ok(Step::Blocked) => Ok(progress),
            Ok(Step::RetryStatus(status)) => {
                ex.upstream_status = status;
                self.upstream_failed(ctx, Fail::Status(status), "")?;
                Ok(true)
            }
            Ok(Step::Done { .. }) if ex.writer.status == 101 => {
                // Switching protocols: from now on bytes are copied both ways as they are.
                ex.tunnel = true;
                ex.keep_alive = false;
                Ok(true)
            }
            Ok(Step::Done { reusable }) => {
                ex.resp_done = true;
                ex.reusable = reusable;
                if ex.upstream_time.is_none() {
                    ex.upstream_time = Some(ctx.now.duration_since(up.t_start));
                }
                Ok(true)
            }
            Err(BackendError::InvalidHeader(why)) => {
                self.upstream_failed(ctx, Fail::InvalidHeader, why)?;
                Ok(true)
            }
            Err(e) => {
                let why = match e {
                    BackendError::Protocol(w) => w,
                    _ => "upstream prematurely closed connection",
                };
                self.upstream_failed(ctx, Fail::Error, why)?;
                Ok(true)
            }
        }
    }
}

/// Where decoded request-body bytes go.
pub trait BodySink {
    /// Takes some of `data`; returns how many bytes.
    fn take(&mut self, data: &[u8]) -> usize;
    fn room(&self) -> usize;
}

pub(super) struct Discard;

impl BodySink for Discard {
    fn take(&mut self, data: &[u8]) -> usize {
        data.len()
    }
    fn room(&self) -> usize {
        usize::MAX
    }
}

/// Collects a small body (the status page's form), up to `limit` bytes.
pub(super) struct Collect<'a> {
    into: &'a mut Vec<u8>,
    limit: usize,
}

impl BodySink for Collect<'_> {
    fn take(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.room());
        self.into.extend_from_slice(&data[..n]);
        n
    }
    fn room(&self) -> usize {
        self.limit - self.into.len()
    }
}

pub(super) struct Forward<'a> {
    adapter: &'a mut Adapter,
    out: &'a mut Buf,
}

impl BodySink for Forward<'_> {
    fn take(&mut self, data: &[u8]) -> usize {
        self.adapter.encode_body(data, self.out)
    }
    fn room(&self) -> usize {
        // What the backend accepts now (AJP: one packet per GET_BODY_CHUNK), leaving room in
        // the buffer for framing (chunk lines, AJP packet headers).
        self.out.room().saturating_sub(24).min(self.adapter.body_credit())
    }
}
