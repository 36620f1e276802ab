//! Deadlines of a session: which timeout applies now, and what happens when it expires.

use super::*;

impl Session {
    pub(super) fn set_deadline(&mut self, ctx: &mut Ctx) {
        let rt = &ctx.rt;
        let server = &rt.cfg.http.servers[self.ex.as_ref().map_or(rt.cfg.http.listens[self.listen].default_server, |e| e.server)];
        let file_pending = self.ex.as_ref().is_some_and(|ex| ex.file.is_some());
        let out_blocked = (file_pending || self.cout.as_ref().is_some_and(|b| !b.is_empty())) && !self.c_writable;
        let mut d: Option<Instant> = None;
        let mut min = |t: Instant| d = Some(d.map_or(t, |x| x.min(t)));
        match self.state {
            State::Lingering => min(self.linger_until),
            State::Head => {
                let s = &server.settings;
                if out_blocked {
                    min(self.t_wblock + s.send_timeout);
                } else if let Some(start) = self.head_started {
                    min(start + s.client_header_timeout);
                } else if self.served == 0 {
                    min(self.t_read + s.client_header_timeout);
                } else {
                    min(self.t_read + s.keepalive_timeout);
                }
            }
            State::Active => {
                if let Some(ex) = self.ex.as_ref().filter(|ex| ex.tunnel) {
                    // An idle tunnel lives for proxy_read_timeout after the last byte either way.
                    let s = rt.location_settings(ex.server, ex.loc);
                    let last = ex.up.as_ref().map_or(self.t_read, |u| u.t_io.max(self.t_read));
                    min(last + s.proxy_read_timeout);
                } else if let Some(ex) = self.ex.as_ref() {
                    let s = rt.location_settings(ex.server, ex.loc);
                    if out_blocked {
                        min(self.t_wblock + s.send_timeout);
                    }
                    if !ex.body_done() && !self.c_readable {
                        min(self.t_read + s.client_body_timeout);
                    }
                    if let Some(up) = ex.up.as_ref() {
                        if !up.connected {
                            min(up.t_start + s.proxy_connect_timeout);
                        } else if let Some(p) = up.ping_deadline {
                            min(p);
                        } else {
                            let head_pending = ex.req_head.as_ref().is_some_and(|h| up.head_sent < h.len());
                            let out_pending = head_pending || up.bout.as_ref().is_some_and(|b| !b.is_empty());
                            if out_pending && !up.writable {
                                min(up.t_io + s.proxy_send_timeout);
                            }
                            let request_sent = !out_pending && (ex.body_done() || ex.writer.started);
                            let room = up.bin.as_ref().is_some_and(|b| !b.is_full());
                            if !ex.resp_done && request_sent && room && !up.readable {
                                min(up.t_io + s.proxy_read_timeout);
                            }
                        }
                    }
                }
            }
        }
        self.timer.deadline = d;
        ctx.timers.arm(self.key, &mut self.timer);
    }

    /// A deadline passed: work out which wait it was and act as nginx does.
    pub fn on_timeout(&mut self, ctx: &mut Ctx) -> Res<()> {
        let now = ctx.now;
        let rt = ctx.rt.clone();
        match self.state {
            State::Lingering => return Err(Closed),
            State::Head => {
                let out_blocked = self.cout.as_ref().is_some_and(|b| !b.is_empty()) && !self.c_writable;
                if out_blocked {
                    log::info!("client {} timed out while sending response", self.peer);
                    return Err(Closed);
                }
                if self.head_started.is_some() || self.served == 0 && self.cin.as_ref().is_some_and(|b| !b.is_empty()) {
                    log::info!("client {} timed out while reading request headers", self.peer);
                    let server = rt.cfg.http.listens[self.listen].default_server;
                    self.begin_log(b"-", b"", b"");
                    let mut ex = Exchange::new(now, server, usize::MAX, None, Handling::Respond);
                    ex.keep_alive = false;
                    self.ex = Some(ex);
                    self.state = State::Active;
                    self.respond(ctx, 408, None, &rt.cfg.http.servers[server].settings)?;
                    return self.pump(ctx);
                }
                return Err(Closed);
            }
            State::Active => {}
        }
        let Some(ex) = self.ex.as_ref() else { return Err(Closed) };
        let s = rt.location_settings(ex.server, ex.loc);
        if ex.tunnel {
            let last = ex.up.as_ref().map_or(self.t_read, |u| u.t_io.max(self.t_read));
            if now >= last + s.proxy_read_timeout {
                log::info!("client {}: idle tunnel closed after proxy_read_timeout", self.peer);
                return Err(Closed);
            }
            self.set_deadline(ctx);
            return Ok(());
        }
        let out_blocked = (ex.file.is_some() || self.cout.as_ref().is_some_and(|b| !b.is_empty())) && !self.c_writable;
        if out_blocked && now >= self.t_wblock + s.send_timeout {
            log::info!("client {} timed out while sending response", self.peer);
            return Err(Closed);
        }
        if let Some(p) = ex.up.as_ref().and_then(|u| u.ping_deadline).filter(|&p| now >= p) {
            let _ = p;
            self.upstream_failed(ctx, Fail::Ping, "no CPONG within ajp_ping_timeout")?;
            return self.pump(ctx);
        }
        if let Some(up) = ex.up.as_ref() {
            let waited = now.duration_since(if up.connected { up.t_io } else { up.t_start });
            let limit = if !up.connected {
                s.proxy_connect_timeout
            } else if up.writable {
                s.proxy_read_timeout
            } else {
                s.proxy_send_timeout.min(s.proxy_read_timeout)
            };
            if waited >= limit {
                let what = if up.connected { "reading response header from upstream" } else { "connecting to upstream" };
                self.upstream_failed(ctx, Fail::Timeout, what)?;
                return self.pump(ctx);
            }
        }
        if !ex.body_done() && now >= self.t_read + s.client_body_timeout {
            log::info!("client {} timed out while sending the request body", self.peer);
            if let Some(ex) = self.ex.as_mut() {
                ex.keep_alive = false;
            }
            self.abort_with(ctx, 408)?;
            return self.pump(ctx);
        }
        // Not actually due (a deadline moved): recompute.
        self.set_deadline(ctx);
        Ok(())
    }
}
