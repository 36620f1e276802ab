//! The first client phase of a `listen ... proxy_protocol` connection: its PROXY protocol
//! header (`transport::proxy_protocol`). A valid header moves the connection on to reading its
//! first request (or TLS handshake), with the relayed client's address kept for realip
//! (`real_ip_header proxy_protocol`) and `$proxy_protocol_addr`; anything else closes it,
//! with one error-log line that names the peer and why. `proxy_protocol_timeout` is armed by
//! `timeouts.rs`. `Session::on_client_event` calls it, so `pump` never meets this phase.

use super::{ClientPhase, Session};
use crate::proxy::{Closed, Res};
use crate::reactor::Ctx;
use crate::transport::proxy_protocol::{Header, HeaderRead};

impl Session {
    /// Reads the header as far as the client has sent it; true once it is whole.
    pub(super) fn read_proxy_header(&mut self, ctx: &mut Ctx) -> Res<bool> {
        let c = &mut self.client;
        match c.transport.read_proxy_header() {
            HeaderRead::Pending => Ok(false),
            HeaderRead::Done(header) => {
                if let Header::Relayed(r) = header {
                    c.set_proxy_protocol(r.src);
                }
                // The header and the request (or handshake) have their own time limits.
                c.t_read = ctx.now;
                self.phase = ClientPhase::ReadingHead { since: None };
                Ok(true)
            }
            HeaderRead::Closed => {
                // A balancer's TCP health check: connect, then close.
                log::debug!("client {} closed the connection before a PROXY protocol header", c.peer);
                Err(Closed::ByClient)
            }
            HeaderRead::Truncated(n) => {
                log::error!("client {}: truncated PROXY protocol header: the connection closed after {} bytes", c.peer, n);
                Err(Closed::ByClient)
            }
            HeaderRead::Invalid(why, seen) => {
                log::error!("client {}: broken PROXY protocol header: {}: \"{}\", closing the connection", c.peer, why, seen);
                Err(Closed::ByUs)
            }
            HeaderRead::Error(e) => {
                log::info!("client {}: reading the PROXY protocol header failed: {}", c.peer, e);
                Err(Closed::ByClient)
            }
        }
    }
}
