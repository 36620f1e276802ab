//! An exchange's deadlines: which waits its phase has now (the earliest is armed, with its
//! reason), and what each one's expiry does — as nginx does it.

use super::{Exchange, OwnBody, Phase};
use crate::proxy::client::Client;
use crate::proxy::fail::Fail;
use crate::proxy::{Closed, Res, Wait};
use crate::reactor::Ctx;
use crate::runtime::Runtime;
use std::time::Instant;

impl Exchange {
    /// The earliest deadline of this exchange, with the wait it stands for.
    pub(crate) fn deadline(&self, c: &Client, rt: &Runtime) -> Option<(Instant, Wait)> {
        let s = self.settings(rt);
        if let Phase::Tunnel(up) = &self.phase {
            // An idle tunnel lives for proxy_read_timeout after the last byte either way.
            return Some((up.t_io.max(c.t_read) + s.proxy_read_timeout, Wait::TunnelIdle));
        }
        let mut best: Option<(Instant, Wait)> = None;
        let mut consider = |t: Instant, w: Wait| {
            if best.is_none_or(|(b, _)| t < b) {
                best = Some((t, w));
            }
        };
        let file_pending = matches!(self.phase, Phase::Answering(OwnBody::File(_)));
        if (file_pending || c.output_pending()) && !c.transport.can_write() {
            consider(c.t_wblock + s.send_timeout, Wait::ClientSend);
        }
        if !self.body_done() && !c.transport.can_read() {
            consider(c.t_read + s.client_body_timeout, Wait::ClientBody);
        }
        match &self.phase {
            Phase::Connecting(up) => consider(up.t_start + s.proxy_connect_timeout, Wait::BackendConnect),
            Phase::Handshake { deadline, .. } => consider(*deadline, Wait::BackendHandshake),
            Phase::SendingHead { up, .. } if !up.writable() => consider(up.t_io + s.proxy_send_timeout, Wait::BackendSend),
            Phase::AwaitingResponse(up) | Phase::Streaming(up) => {
                let out_pending = !up.bout.is_empty();
                if out_pending && !up.writable() {
                    consider(up.t_io + s.proxy_send_timeout, Wait::BackendSend);
                }
                let request_sent = !out_pending && (self.body_done() || self.writer.started);
                if request_sent && !up.bin.is_full() && !up.readable() {
                    consider(up.t_io + s.proxy_read_timeout, Wait::BackendRead);
                }
            }
            _ => {}
        }
        best
    }

    /// `wait` expired.
    pub(crate) fn on_timeout(&mut self, wait: Wait, c: &mut Client, ctx: &mut Ctx) -> Res<()> {
        match wait {
            Wait::ClientSend => {
                log::info!("client {} timed out while sending response", c.peer);
                Err(Closed::ByUs)
            }
            Wait::ClientBody => {
                log::info!("client {} timed out while sending the request body", c.peer);
                self.keep_alive = false;
                self.abort_with(c, ctx, 408)
            }
            Wait::BackendConnect => self.upstream_failed(c, ctx, Fail::Timeout, "timed out connecting to upstream"),
            Wait::BackendHandshake => self.upstream_failed(c, ctx, Fail::Handshake, "no answer to the handshake in time (ajp_ping_timeout)"),
            Wait::BackendSend => self.upstream_failed(c, ctx, Fail::Timeout, "timed out sending request to upstream"),
            Wait::BackendRead => {
                let what = if self.writer.started { "timed out reading upstream" } else { "timed out reading response header from upstream" };
                self.upstream_failed(c, ctx, Fail::Timeout, what)
            }
            Wait::TunnelIdle => {
                log::info!("client {}: idle tunnel closed after proxy_read_timeout", c.peer);
                Err(Closed::ByUs)
            }
            // The session's own waits.
            Wait::ProxyHeader | Wait::ClientHandshake | Wait::ClientHeader | Wait::KeepaliveIdle | Wait::Linger | Wait::LimitDelay => Ok(()),
        }
    }
}
