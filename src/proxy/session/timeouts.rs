//! A session's deadline: the earliest wait of its phase, armed with the wait it stands for,
//! and what each expiry does. An exchange's own waits are the exchange's
//! (`exchange/waits.rs`); here are the connection's: the PROXY protocol header, the head, idle
//! keep-alive, a blocked write while closing, and the lingering close.

use super::{ClientPhase, Session};
use crate::http::request::RequestMeta;
use crate::proxy::exchange::Exchange;
use crate::proxy::{Closed, Res, Wait};
use crate::reactor::Ctx;

impl Session {
    pub(super) fn arm_timer(&mut self, ctx: &mut Ctx) {
        let rt = &ctx.rt;
        let c = &self.client;
        self.timer.deadline = match &self.phase {
            ClientPhase::Lingering { until } => Some((*until, Wait::Linger)),
            ClientPhase::ProxyHeader => {
                // The listen address's default server: no request has named a server yet.
                let s = &rt.cfg.http.servers[rt.cfg.http.listens[c.listen].default_server].settings;
                Some((c.t_read + s.proxy_protocol_timeout, Wait::ProxyHeader))
            }
            ClientPhase::Delayed(d) => Some((d.until, Wait::LimitDelay)),
            ClientPhase::Exchange(ex) => ex.deadline(c, rt),
            ClientPhase::ReadingHead { since } => {
                let s = &rt.cfg.http.servers[rt.cfg.http.listens[c.listen].default_server].settings;
                if let Some(limit) = c.transport.handshake_timeout() {
                    // From accept: no plaintext byte has come yet.
                    Some((c.t_read + limit, Wait::ClientHandshake))
                } else if c.output_pending() && !c.transport.can_write() {
                    Some((c.t_wblock + s.send_timeout, Wait::ClientSend))
                } else if let Some(start) = since {
                    Some((*start + s.client_header_timeout, Wait::ClientHeader))
                } else if self.served == 0 {
                    Some((c.t_read + s.client_header_timeout, Wait::ClientHeader))
                } else {
                    Some((c.t_read + s.keepalive_timeout, Wait::KeepaliveIdle))
                }
            }
            ClientPhase::Closing => {
                let s = &rt.cfg.http.servers[rt.cfg.http.listens[c.listen].default_server].settings;
                (c.output_pending() && !c.transport.can_write()).then_some((c.t_wblock + s.send_timeout, Wait::ClientSend))
            }
        };
        ctx.timers.arm(self.client.key, &mut self.timer);
    }

    /// The armed deadline passed; `wait` says which one.
    pub(crate) fn on_timeout(&mut self, ctx: &mut Ctx, wait: Wait) -> Res<()> {
        if let ClientPhase::Delayed(d) = &self.phase {
            // Its turn: begun again from its head, still in `cin` (`begin` skips limit_req,
            // whose mark says it was delayed), timed from when it first began.
            let since = Some(d.ex.start);
            self.phase = ClientPhase::ReadingHead { since };
            return self.pump(ctx);
        }
        if let ClientPhase::Exchange(ex) = &mut self.phase {
            ex.on_timeout(wait, &mut self.client, ctx)?;
            return self.pump(ctx);
        }
        match wait {
            Wait::ProxyHeader => {
                log::error!("client {}: no complete PROXY protocol header within proxy_protocol_timeout, closing the connection", self.client.peer);
                Err(Closed::ByUs)
            }
            Wait::ClientSend => {
                log::info!("client {} timed out while sending response", self.client.peer);
                Err(Closed::ByUs)
            }
            Wait::ClientHandshake => {
                log::info!("client {}: TLS handshake timed out", self.client.peer);
                Err(Closed::ByUs)
            }
            Wait::ClientHeader => {
                let started = matches!(self.phase, ClientPhase::ReadingHead { since: Some(_) }) || (self.served == 0 && !self.client.input_empty());
                if !started {
                    // A connection that never sent a byte is closed silently, as nginx does.
                    return Err(Closed::ByUs);
                }
                log::info!("client {} timed out while reading request headers", self.client.peer);
                self.log.clear();
                self.client.sent = 0;
                let server = ctx.rt.cfg.http.listens[self.client.listen].default_server;
                let mut ex = Exchange::new(ctx.now, server, None, RequestMeta::placeholder(), false);
                let r = ex.answer(&mut self.client, ctx, 408, None);
                self.phase = ClientPhase::Exchange(ex);
                r?;
                self.pump(ctx)
            }
            _ => Err(Closed::ByUs),
        }
    }
}
