//! A proxied exchange and its servers: picking the next one (the session's sticky route
//! first, then the balancer), connecting or reusing a pooled connection, and what a failure
//! leads to — a retry elsewhere when that is safe, else 502/504, or a cut-off client when
//! its response had already started.

use super::{Exchange, Phase};
use crate::backend::Adapter;
use crate::config::{next, BackendConf, Handler};
use crate::proxy::client::Client;
use crate::proxy::fail::Fail;
use crate::proxy::upconn::{Release, UpConn};
use crate::proxy::{Closed, Res};
use crate::reactor::Ctx;
use crate::runtime::Runtime;
use crate::upstream::{now_ms, Balancer};
use std::io;
use std::sync::atomic::Ordering::Relaxed;

/// What became of a request whose server went out while it waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Moved {
    /// It was not waiting on a server that is out.
    NotThere,
    /// Sent to another server.
    Resent,
    /// Left where it is: not safe to send twice, or nowhere else to go.
    Kept,
}

/// The backend configuration of a proxy location.
fn backend_conf(rt: &Runtime, server: usize, loc: usize) -> &BackendConf {
    match rt.cfg.http.servers[server].locations.get(loc).map(|l| &l.handler) {
        Some(Handler::Proxy { backend, .. }) => backend,
        _ => &BackendConf::Http,
    }
}

impl Exchange {
    /// Picks the next server and attaches a connection to it (a pooled one or a new one);
    /// answers 502/503/504 itself when no try is left.
    pub(crate) fn connect(&mut self, c: &mut Client, ctx: &mut Ctx) -> Res<()> {
        let rt = ctx.rt.clone();
        loop {
            let Some(px) = self.proxy.as_mut() else { return Ok(()) };
            let upstream = px.upstream;
            let ups = &rt.upstreams[upstream];
            let settings = rt.location_settings(self.server, self.loc);
            if px.tries >= Self::try_limit(settings, ups) {
                let status = px.last_fail.map_or(502, Fail::status);
                return self.respond_error(c, ctx, status);
            }
            let now = now_ms();
            let sticky = px.sticky_peer.take().filter(|&p| !px.tried.contains(p) && ups.usable(p, now));
            if let (None, Some(named), Some(st)) = (sticky, px.route_peer, &ups.conf.sticky) {
                // The session's server cannot take it (now or any more): fail over, or refuse.
                if st.force {
                    log::warn!("route of server {} unusable and sticky_force is on: 503, client: {}", ups.conf.servers[named].addr, c.peer);
                    return self.respond_error(c, ctx, 503);
                }
                px.route_peer = None;
                ups.peers[named].failovers.fetch_add(1, Relaxed);
                log::warn!(
                    "session route of server {} in upstream \"{}\" is unusable, failing over, client: {}",
                    ups.conf.servers[named].addr,
                    ups.conf.name,
                    c.peer
                );
            }
            let picked = match sticky {
                Some(p) => {
                    px.tried.insert(p, ups.conf.servers.len());
                    if let Some(h) = px.session {
                        ups.record_sticky(p, h, now);
                    }
                    Some(p)
                }
                None => ctx.balancers[upstream].get(ups, &mut px.tried, now),
            };
            let Some(peer) = picked else {
                if px.tries == 0 {
                    log::error!("no live upstreams while connecting to upstream \"{}\", client: {}", ups.conf.name, c.peer);
                }
                let status = px.last_fail.map_or(502, Fail::status);
                return self.respond_error(c, ctx, status);
            };
            px.tries += 1;
            match self.open(c, ctx, peer, self.reuse_check()) {
                Ok(()) => {
                    if let Some(px) = self.proxy.as_mut() {
                        px.history.start(peer);
                    }
                    return Ok(());
                }
                // Out of buffers or of file descriptors is this process's trouble, not the
                // server's: no failure counted.
                Err(e) if e.kind() == io::ErrorKind::OutOfMemory => {
                    log::error!("buffer pool exhausted (worker_buffers), answering 503, client: {}", c.peer);
                    ctx.balancers[upstream].free(ups, peer, false, now_ms());
                    return self.respond_error(c, ctx, 503);
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    log::error!(
                        "socket() for a connection to {} failed ({}): the open file limit is reached, answering 503, client: {}",
                        ups.conf.servers[peer].addr,
                        e,
                        c.peer
                    );
                    ctx.balancers[upstream].free(ups, peer, false, now_ms());
                    return self.respond_error(c, ctx, 503);
                }
                Err(e) => {
                    log::error!(
                        "connect() to {} failed ({}) while connecting to upstream \"{}\", client: {}",
                        ups.conf.servers[peer].addr,
                        e,
                        ups.conf.name,
                        c.peer
                    );
                    // No connection came of the pick: its failure is settled here.
                    ctx.balancers[upstream].free(ups, peer, true, now_ms());
                    if let Some(px) = self.proxy.as_mut() {
                        px.last_fail = Some(Fail::Error);
                        px.history.start(peer);
                        px.history.set_status(Fail::Error.status());
                        px.history.end(std::time::Duration::ZERO);
                    }
                    if settings.proxy_next_upstream & next::ERROR == 0 {
                        return self.respond_error(c, ctx, 502);
                    }
                    if self.proxy.as_ref().is_some_and(|px| px.tries < Self::try_limit(settings, ups)) {
                        ups.peers[peer].stats.retries.fetch_add(1, Relaxed);
                    }
                }
            }
        }
    }

    /// Attaches a connection to `peer` and enters the phase it allows.
    fn open(&mut self, c: &Client, ctx: &mut Ctx, peer: usize, reuse: Option<bool>) -> io::Result<()> {
        let rt = ctx.rt.clone();
        let Some(px) = self.proxy.as_ref() else { return Ok(()) };
        let adapter = Adapter::for_request(backend_conf(&rt, self.server, self.loc), &self.meta);
        let (up, connected) = UpConn::open(ctx, c.key, px.upstream, peer, adapter, reuse)?;
        self.phase = if connected { Self::connected(up, ctx) } else { Phase::Connecting(up) };
        Ok(())
    }

    /// The current backend failed: count it, then retry elsewhere if that is safe, else
    /// answer 502/504 (or cut the client off if its response had already started).
    pub(crate) fn upstream_failed(&mut self, c: &mut Client, ctx: &mut Ctx, kind: Fail, why: &str) -> Res<()> {
        let rt = ctx.rt.clone();
        let settings = rt.location_settings(self.server, self.loc);
        let sent = self.request_sent();
        let Some(up) = self.take_upconn(Phase::Done) else { return Ok(()) };
        let Some(upstream) = self.proxy.as_ref().map(|p| p.upstream) else { return Ok(()) };
        let ups = &rt.upstreams[upstream];
        let addr = ups.conf.servers[up.peer].addr;
        let peer = up.peer;
        // A pooled connection the backend had closed: not the server's fault, resend at once
        // (a non-idempotent request only if it was not written: the server may have died on it).
        let stale = up.reused && kind == Fail::Error && !crate::backend::Protocol::response_started(&up.adapter) && self.may_resend(settings, sent);
        let took = ctx.now.duration_since(up.t_start);
        if stale {
            log::debug!("upstream {}: pooled connection was closed, resending on a new one", addr);
            up.release(ctx, Release::Stale, (0, 0));
            // The same try goes on, on a new connection.
            return match self.open(c, ctx, peer, None) {
                Ok(()) => Ok(()),
                Err(e) => {
                    log::error!("connect() to {} failed ({}), client: {}", addr, e, c.peer);
                    ctx.balancers[upstream].free(ups, peer, true, now_ms());
                    if let Some(px) = self.proxy.as_mut() {
                        px.last_fail = Some(Fail::Error);
                        px.history.set_status(Fail::Error.status());
                        px.history.end(took);
                    }
                    self.connect(c, ctx)
                }
            };
        }
        up.release(ctx, Release::Failed(kind), (0, 0));
        match kind {
            Fail::Status(s) => log::warn!("upstream {} answered {} (proxy_next_upstream), client: {}", addr, s, c.peer),
            // The worker tells the story once for all the requests it moves.
            Fail::Frozen => log::info!("upstream {}: {}, client: {}", addr, why, c.peer),
            _ => log::error!("upstream {} failed: {} ({:?}), client: {}", addr, why, kind, c.peer),
        }
        if let Some(px) = self.proxy.as_mut() {
            px.last_fail = Some(kind);
            // A status that moved the request on is the try's; other failures count as the
            // answer they would give (502, 504), as nginx logs them.
            if !self.writer.started {
                px.history.set_status(match kind {
                    Fail::Status(s) => s,
                    k => k.status(),
                });
            }
            px.history.end(took);
        }
        if self.writer.started {
            // Part of the response already went out: the client must see the truncation.
            log::error!("upstream {} failed after the response started; closing client {}", addr, c.peer);
            return Err(Closed::ByUs);
        }
        if settings.proxy_next_upstream & kind.bit() != 0 && self.may_resend(settings, sent) {
            if self.proxy.as_ref().is_some_and(|px| px.tries < Self::try_limit(settings, ups)) {
                ups.peers[peer].stats.retries.fetch_add(1, Relaxed);
            }
            return self.connect(c, ctx);
        }
        self.respond_error(c, ctx, kind.status())
    }

    /// The server this exchange waits on for a response: all of the request went out (an
    /// upload still coming in is not waiting on the server) and nothing came back yet.
    /// (upstream, server, the connection's last I/O: the request's last write).
    pub(crate) fn waiting_on(&self) -> Option<(usize, usize, std::time::Instant)> {
        match &self.phase {
            Phase::AwaitingResponse(up) if up.bout.is_empty() && self.body_done() && !crate::backend::Protocol::response_started(&up.adapter) => {
                Some((up.upstream, up.peer, up.t_io))
            }
            _ => None,
        }
    }

    /// The server of this exchange went out for its health (a failed check, a freeze) while
    /// the request waited on it. Before any of the response went to the client (a head held
    /// back for its body is dropped with the connection), the request goes to another
    /// server if a retry is allowed and safe — nothing of it sent yet, or it is idempotent
    /// (nginx's rule for timeouts) — and another server can take it; otherwise it stays,
    /// and ends as its timeout says.
    pub(crate) fn server_down(&mut self, c: &mut Client, ctx: &mut Ctx) -> Res<Moved> {
        let (upstream, peer, sent) = match &self.phase {
            Phase::Connecting(up) | Phase::Handshake { up, .. } => (up.upstream, up.peer, false),
            Phase::SendingHead { up, sent } => (up.upstream, up.peer, *sent > 0),
            // Nothing of the response has gone to the client in this phase.
            Phase::AwaitingResponse(up) => (up.upstream, up.peer, true),
            _ => return Ok(Moved::NotThere),
        };
        let rt = ctx.rt.clone();
        let ups = &rt.upstreams[upstream];
        if ups.single() || !ups.failing(peer, ctx.now_ms) {
            return Ok(Moved::NotThere);
        }
        let settings = rt.location_settings(self.server, self.loc);
        let Some(px) = self.proxy.as_ref() else { return Ok(Moved::NotThere) };
        let elsewhere = px.tries < Self::try_limit(settings, ups)
            && (0..ups.conf.servers.len()).any(|p| p != peer && !px.tried.contains(p) && ups.takes_new(p) && ups.usable(p, ctx.now_ms));
        if settings.proxy_next_upstream & next::TIMEOUT == 0 || !self.may_resend(settings, sent) || !elsewhere {
            return Ok(Moved::Kept);
        }
        self.upstream_failed(c, ctx, Fail::Frozen, "server went out while the request waited, sent to another")?;
        Ok(Moved::Resent)
    }

    /// pounce answers `status` in place of the backend: any backend connection is released
    /// without blame, and a request body half taken means the connection cannot be kept.
    pub(crate) fn respond_error(&mut self, c: &mut Client, ctx: &mut Ctx, status: u16) -> Res<()> {
        self.release_upconn(ctx, Release::Close);
        if let Some(px) = self.proxy.as_mut() {
            px.head = None;
        }
        if !self.body_done() && self.body_taken > 0 {
            self.keep_alive = false;
        }
        self.answer(c, ctx, status, None)
    }

    /// The request cannot go on (a bad body, a timeout): answer `status` if nothing of the
    /// response went out yet, else close.
    pub(crate) fn abort_with(&mut self, c: &mut Client, ctx: &mut Ctx, status: u16) -> Res<()> {
        if self.writer.started {
            return Err(Closed::ByUs);
        }
        self.respond_error(c, ctx, status)
    }
}
