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
            px.peers_used.push(peer);
            match self.open(c, ctx, peer, self.reuse_check()) {
                Ok(()) => return Ok(()),
                // Out of buffers is this worker's trouble, not the server's: no failure counted.
                Err(e) if e.kind() == io::ErrorKind::OutOfMemory => {
                    log::error!("buffer pool exhausted (worker_buffers), answering 503, client: {}", c.peer);
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
                    }
                    if settings.proxy_next_upstream & next::ERROR == 0 {
                        return self.respond_error(c, ctx, 502);
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
        if stale {
            log::debug!("upstream {}: pooled connection was closed, resending on a new one", addr);
            up.release(ctx, Release::Stale, (0, 0));
            return match self.open(c, ctx, peer, None) {
                Ok(()) => Ok(()),
                Err(e) => {
                    log::error!("connect() to {} failed ({}), client: {}", addr, e, c.peer);
                    ctx.balancers[upstream].free(ups, peer, true, now_ms());
                    if let Some(px) = self.proxy.as_mut() {
                        px.last_fail = Some(Fail::Error);
                    }
                    self.connect(c, ctx)
                }
            };
        }
        up.release(ctx, Release::Failed(kind), (0, 0));
        match kind {
            Fail::Status(s) => log::warn!("upstream {} answered {} (proxy_next_upstream), client: {}", addr, s, c.peer),
            _ => log::error!("upstream {} failed: {} ({:?}), client: {}", addr, why, kind, c.peer),
        }
        if let Some(px) = self.proxy.as_mut() {
            px.last_fail = Some(kind);
        }
        if self.writer.started {
            // Part of the response already went out: the client must see the truncation.
            log::error!("upstream {} failed after the response started; closing client {}", addr, c.peer);
            return Err(Closed::ByUs);
        }
        if settings.proxy_next_upstream & kind.bit() != 0 && self.may_resend(settings, sent) {
            return self.connect(c, ctx);
        }
        self.respond_error(c, ctx, kind.status())
    }

    /// pounce answers `status` in place of the backend: any backend connection is released
    /// without blame, and a request body half taken means the connection cannot be kept.
    pub(crate) fn respond_error(&mut self, c: &mut Client, ctx: &mut Ctx, status: u16) -> Res<()> {
        let traffic = self.traffic();
        if let Some(up) = self.take_upconn(Phase::Done) {
            up.release(ctx, Release::Close, traffic);
        }
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
