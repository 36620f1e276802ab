//! Choosing a backend server, connecting (or reusing a pooled connection), failures and
//! retries, and finishing an exchange.

use super::*;

impl Session {
    /// Picks the next peer and connects to it (or takes an idle pooled connection).
    pub(super) fn connect_upstream(&mut self, ctx: &mut Ctx) -> Res<()> {
        loop {
            let Some(ex) = self.ex.as_mut() else { return Ok(()) };
            let upstream = ex.upstream();
            let rt = ctx.rt.clone();
            let ups = &rt.upstreams[upstream];
            let settings = rt.location_settings(ex.server, ex.loc);
            let limit = if settings.proxy_next_upstream_tries == 0 { ups.max_tries() } else { settings.proxy_next_upstream_tries.min(ups.max_tries()) };
            if ex.tries >= limit {
                let status = ex.last_fail.map_or(502, Fail::status);
                return self.respond_error(ctx, status);
            }
            let now = now_ms();
            let sticky = ex.sticky_peer.take().filter(|&p| ex.tried & (1u128 << p) == 0 && ups.usable(p, now));
            if let (None, Some(named), Some(st)) = (sticky, ex.route_peer, &ups.conf.sticky) {
                // The session's server cannot take it (now or any more): fail over, or refuse.
                if st.force {
                    log::warn!("route of server {} unusable and sticky_force is on: 503, client: {}", ups.conf.servers[named].addr, self.peer);
                    return self.respond_error(ctx, 503);
                }
                ex.route_peer = None;
                ups.peers[named].failovers.fetch_add(1, Relaxed);
                log::warn!(
                    "session route of server {} in upstream \"{}\" is unusable, failing over, client: {}",
                    ups.conf.servers[named].addr,
                    ups.conf.name,
                    self.peer
                );
            }
            let picked = match sticky {
                Some(p) => {
                    ex.tried |= 1u128 << p;
                    Some(p)
                }
                None => ctx.balancers[upstream].get(ups, &mut ex.tried, now),
            };
            let Some(peer) = picked else {
                if ex.tries == 0 {
                    log::error!("no live upstreams while connecting to upstream \"{}\", client: {}", ups.conf.name, self.peer);
                }
                let status = ex.last_fail.map_or(502, Fail::status);
                return self.respond_error(ctx, status);
            };
            ex.tries += 1;
            ex.log_peer(peer);
            match self.open_backend(ctx, upstream, peer, true) {
                Ok(()) => return Ok(()),
                // Out of buffers is this worker's trouble, not the server's: no failure counted.
                Err(e) if e.kind() == io::ErrorKind::OutOfMemory => {
                    log::error!("buffer pool exhausted (worker_buffers), answering 503, client: {}", self.peer);
                    ctx.balancers[upstream].free(ups, peer, false, now_ms());
                    return self.respond_error(ctx, 503);
                }
                Err(e) => {
                    let Some(ex) = self.ex.as_mut() else { return Ok(()) };
                    log::error!(
                        "connect() to {} failed ({}) while connecting to upstream \"{}\", client: {}",
                        ups.conf.servers[peer].addr,
                        e,
                        ups.conf.name,
                        self.peer
                    );
                    ctx.balancers[upstream].free(ups, peer, true, now_ms());
                    ex.last_fail = Some(Fail::Error);
                    if settings.proxy_next_upstream & next::ERROR == 0 {
                        return self.respond_error(ctx, 502);
                    }
                }
            }
        }
    }

    /// Attaches a backend connection for `peer`: a pooled idle one if `may_reuse`, else new.
    pub(super) fn open_backend(&mut self, ctx: &mut Ctx, upstream: usize, peer: usize, may_reuse: bool) -> io::Result<()> {
        let rt = ctx.rt.clone();
        let ups = &rt.upstreams[upstream];
        let Some(ex) = self.ex.as_mut() else { return Ok(()) };
        let meta = ex.meta.unwrap_or_else(request::RequestMeta::placeholder);
        let (bin, bout) = match (ctx.pool.get(), ctx.pool.get()) {
            (Some(a), Some(b)) => (a, b),
            (a, b) => {
                if let Some(a) = a {
                    ctx.pool.put(a);
                }
                if let Some(b) = b {
                    ctx.pool.put(b);
                }
                return Err(io::Error::new(io::ErrorKind::OutOfMemory, "buffer pool exhausted"));
            }
        };
        let mut reused = None;
        if may_reuse {
            while let Some(idle) = ctx.keepalive.take(upstream, peer) {
                if ctx.now.duration_since(idle.since) < ups.conf.keepalive_timeout && (meta.body == BodyKind::None || idle.is_clean()) {
                    reused = Some(idle);
                    break;
                }
                let mut s = idle.stream;
                ctx.close_backend(&mut s, idle.token);
            }
        }
        let (stream, connected, requests, token) = match reused {
            Some(idle) => {
                // Same registration, new owner: no epoll_ctl.
                if let Some(o) = ctx.backends.get_mut(idle.token) {
                    *o = Owner::Session(self.key);
                }
                (idle.stream, true, idle.requests, idle.token)
            }
            None => {
                let s = match TcpStream::connect(ups.conf.servers[peer].addr) {
                    Ok(s) => s,
                    Err(e) => {
                        ctx.pool.put(bin);
                        ctx.pool.put(bout);
                        return Err(e);
                    }
                };
                let mut s = s;
                let _ = s.set_nodelay(true);
                match ctx.register_backend(&mut s, self.key) {
                    Ok(id) => (s, false, 0, id),
                    Err(e) => {
                        ctx.pool.put(bin);
                        ctx.pool.put(bout);
                        return Err(e);
                    }
                }
            }
        };
        ups.peers[peer].in_flight.fetch_add(1, Relaxed);
        ups.peers[peer].requests.fetch_add(1, Relaxed);
        ex.up = Some(UpConn {
            stream,
            token,
            peer,
            connected,
            reused: connected,
            // Nothing can be pending on a pooled connection (its readiness would have closed
            // it while idle): no read until the backend's first edge.
            readable: false,
            writable: connected,
            eof: false,
            rdhup: false,
            bin: Some(bin),
            bout: Some(bout),
            head_sent: 0,
            adapter: ex.kind.adapter(&meta),
            t_start: ctx.now,
            t_io: ctx.now,
            requests,
            // A new connection is probed once connected; the deadline is set then.
            ping_deadline: match ex.kind {
                BackendKind::Ajp { ping: Some(t), .. } => Some(ctx.now + t),
                _ => None,
            },
            ping_sent: 0,
        });
        Ok(())
    }

    /// The current backend failed: count it, then retry elsewhere if that is safe, else answer
    /// 502/504 (or cut the client off if its response had already started).
    pub(super) fn upstream_failed(&mut self, ctx: &mut Ctx, kind: Fail, why: &str) -> Res<()> {
        let rt = ctx.rt.clone();
        let Some(ex) = self.ex.as_mut() else { return Ok(()) };
        let Some(mut up) = ex.up.take() else { return Ok(()) };
        let upstream = ex.upstream();
        let ups = &rt.upstreams[upstream];
        let settings = rt.location_settings(ex.server, ex.loc);
        ctx.close_backend(&mut up.stream, up.token);
        ctx.pool.release(&mut up.bin);
        ctx.pool.release(&mut up.bout);
        ups.peers[up.peer].in_flight.fetch_sub(1, Relaxed);
        let addr = ups.conf.servers[up.peer].addr;
        // A pooled connection the backend had closed: not the server's fault, resend at once
        // (a non-idempotent request only if it was not written: the server may have died on it).
        let stale = up.reused && kind == Fail::Error && !up.adapter.response_started() && ex.may_resend(settings);
        if stale {
            log::debug!("upstream {}: pooled connection was closed, resending on a new one", addr);
            ex.sent = false;
            let peer = up.peer;
            drop(up);
            return match self.open_backend(ctx, upstream, peer, false) {
                Ok(()) => Ok(()),
                Err(e) => {
                    log::error!("connect() to {} failed ({}), client: {}", addr, e, self.peer);
                    let Some(ex) = self.ex.as_mut() else { return Ok(()) };
                    ctx.balancers[upstream].free(ups, peer, true, now_ms());
                    ex.last_fail = Some(Fail::Error);
                    self.connect_upstream(ctx)
                }
            };
        }
        let counts = kind.counts_as_failure();
        ctx.balancers[upstream].free(ups, up.peer, counts, now_ms());
        drop(up);
        match kind {
            Fail::Status(s) => log::warn!("upstream {} answered {} (proxy_next_upstream), client: {}", addr, s, self.peer),
            _ => log::error!("upstream {} failed: {} ({:?}), client: {}", addr, why, kind, self.peer),
        }
        ex.last_fail = Some(kind);
        if ex.writer.started {
            // Part of the response already went out: the client must see the truncation.
            log::error!("upstream {} failed after the response started; closing client {}", addr, self.peer);
            return Err(Closed);
        }
        let may_retry = settings.proxy_next_upstream & kind.bit() != 0 && ex.may_resend(settings);
        if may_retry {
            ex.sent = false;
            return self.connect_upstream(ctx);
        }
        self.respond_error(ctx, kind.status())
    }

    pub(super) fn respond_error(&mut self, ctx: &mut Ctx, status: u16) -> Res<()> {
        let rt = ctx.rt.clone();
        let Some(ex) = self.ex.as_mut() else { return Ok(()) };
        if let Some(mut up) = ex.up.take() {
            ctx.close_backend(&mut up.stream, up.token);
            ctx.pool.release(&mut up.bin);
            ctx.pool.release(&mut up.bout);
            rt.upstreams[ex.upstream()].peers[up.peer].in_flight.fetch_sub(1, Relaxed);
        }
        ctx.pool.release(&mut ex.req_head);
        ex.handling = Handling::Respond;
        if !ex.body_done() && ex.body_taken > 0 {
            ex.keep_alive = false;
        }
        let settings = rt.location_settings(ex.server, ex.loc);
        self.respond(ctx, status, None, settings)
    }

    /// The request cannot go on (bad body): answer `status` if nothing was sent yet.
    pub(super) fn abort_with(&mut self, ctx: &mut Ctx, status: u16) -> Res<()> {
        let started = self.ex.as_ref().is_some_and(|ex| ex.writer.started);
        if started {
            return Err(Closed);
        }
        self.respond_error(ctx, status)
    }

    /// The response is complete: log, pool the backend connection, go back to reading.
    pub(super) fn finish_exchange(&mut self, ctx: &mut Ctx) {
        let Some(mut ex) = self.ex.take() else { return };
        self.write_access_log(ctx, &ex);
        self.served += 1;
        let body_complete = ex.body_done();
        let rt = ctx.rt.clone();
        if let Some(mut up) = ex.up.take() {
            let upstream = ex.upstream();
            let ups = &rt.upstreams[upstream];
            ups.peers[up.peer].in_flight.fetch_sub(1, Relaxed);
            ctx.balancers[upstream].free(ups, up.peer, false, now_ms());
            ups.account(up.peer, ex.head_bytes + ex.body_taken, ex.writer.body_bytes);
            ctx.pool.release(&mut up.bin);
            let bout_empty = up.bout.as_ref().is_none_or(|b| b.is_empty());
            ctx.pool.release(&mut up.bout);
            let requests = up.requests + 1;
            let poolable = ex.reusable
                && body_complete
                && up.adapter.request_complete()
                && bout_empty
                && ups.conf.keepalive > 0
                && requests < ups.conf.keepalive_requests
                && !ctx.draining;
            if poolable {
                let token = up.token;
                let idle = IdleConn { stream: up.stream, upstream, peer: up.peer, since: ctx.now, requests, token };
                let (key, evicted) = ctx.keepalive.put(idle, ups.conf.keepalive);
                if let Some(mut old) = evicted {
                    ctx.close_backend(&mut old.stream, old.token);
                }
                // Same registration, the pool owns it now: no epoll_ctl.
                if let Some(o) = ctx.backends.get_mut(token) {
                    *o = Owner::Idle(key);
                }
            } else {
                ctx.close_backend(&mut up.stream, up.token);
            }
        }
        ctx.pool.release(&mut ex.req_head);
        // A response that went out as keep-alive keeps the connection even while draining: the
        // client may already be sending its next request, which is then served with
        // Connection: close; an idle one is closed by the worker after DRAIN_IDLE_GRACE.
        let keep = ex.keep_alive && ex.writer.keep_alive && ex.writer.finished && body_complete;
        if !keep {
            self.closing = true;
        }
        self.state = State::Head;
        self.idle_since = ctx.now;
    }

    /// Drops an exchange without finishing it (client gone or closing).
    pub(super) fn teardown_exchange(&mut self, ctx: &mut Ctx, mut ex: Exchange) {
        drop_backend(ctx, &mut ex);
        if ex.writer.started || ex.resp_done {
            self.write_access_log(ctx, &ex);
        }
        ctx.pool.release(&mut ex.req_head);
    }

    /// Releases everything this session holds. Called once, when it is removed.
    pub fn close(mut self, ctx: &mut Ctx) {
        if let Some(mut ex) = self.ex.take() {
            if !ex.writer.started && !ex.resp_done {
                // Client went away before any response: log it as nginx's 499.
                ex.writer.status = 499;
                self.write_access_log(ctx, &ex);
                ex.writer.status = 0;
            }
            self.teardown_exchange(ctx, ex);
        }
        ctx.pool.release(&mut self.cin);
        ctx.pool.release(&mut self.cout);
        let _ = ctx.registry.deregister(&mut self.client);
    }
}

/// Closes the exchange's backend connection (not a failure: nothing is counted against the
/// server) and gives its buffers back.
pub(super) fn drop_backend(ctx: &mut Ctx, ex: &mut Exchange) {
    let Some(mut up) = ex.up.take() else { return };
    let rt = ctx.rt.clone();
    let ups = &rt.upstreams[ex.upstream()];
    ctx.close_backend(&mut up.stream, up.token);
    ctx.pool.release(&mut up.bin);
    ctx.pool.release(&mut up.bout);
    ups.peers[up.peer].in_flight.fetch_sub(1, Relaxed);
    ctx.balancers[ex.upstream()].free(ups, up.peer, false, now_ms());
}
