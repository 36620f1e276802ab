//! What a session gives the access log: the request's fields, kept while it is in flight,
//! and the line written when its exchange ends.

use super::Session;
use crate::logging::access::put_escaped;
use crate::proxy::exchange::Exchange;
use crate::reactor::Ctx;

/// Request line, referer and user agent (escaped), for the access log line.
#[derive(Default)]
pub(super) struct LogFields {
    fields: Vec<u8>,
    ends: [usize; 3],
}

impl LogFields {
    pub(super) fn fill(&mut self, line: &[u8], referer: &[u8], ua: &[u8]) {
        self.fields.clear();
        put_escaped(&mut self.fields, line);
        self.ends[0] = self.fields.len();
        put_escaped(&mut self.fields, referer);
        self.ends[1] = self.fields.len();
        put_escaped(&mut self.fields, ua);
        self.ends[2] = self.fields.len();
    }

    fn field(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.fields[start..self.ends[i]]
    }
}

impl Session {
    /// Writes the exchange's line, with `status` (499 for a client that left).
    pub(super) fn write_access_log(&self, ctx: &mut Ctx, ex: &Exchange, status: u16) {
        let rt = &ctx.rt;
        let settings = rt.location_settings(ex.server, ex.loc);
        let Some(idx) = settings.access_log else { return };
        let Some(log) = ctx.access.get_mut(idx) else { return };
        let line = log.line();
        use std::io::Write as _;
        let _ = write!(line, "{} - - [{}] \"", self.client.peer.ip(), ctx.clock.log_time);
        line.extend_from_slice(self.log.field(0));
        let _ = write!(line, "\" {} {} \"", status, ex.writer.body_bytes);
        let referer = self.log.field(1);
        line.extend_from_slice(if referer.is_empty() { b"-" } else { referer });
        line.extend_from_slice(b"\" \"");
        let ua = self.log.field(2);
        line.extend_from_slice(if ua.is_empty() { b"-" } else { ua });
        line.extend_from_slice(b"\" upstream_addr=");
        match ex.proxy.as_ref().filter(|p| !p.peers_used.is_empty()) {
            None => line.push(b'-'),
            Some(px) => {
                for (i, p) in px.peers_used.iter().enumerate() {
                    if i > 0 {
                        line.extend_from_slice(b", ");
                    }
                    let _ = write!(line, "{}", rt.upstreams[px.upstream].conf.servers[p].addr);
                }
            }
        }
        line.extend_from_slice(b" upstream_status=");
        match ex.proxy.as_ref().map_or(0, |p| p.upstream_status) {
            0 => line.push(b'-'),
            s => {
                let _ = write!(line, "{}", s);
            }
        }
        let _ = write!(line, " request_time={:.3} upstream_response_time=", ctx.now.duration_since(ex.start).as_secs_f64());
        match ex.proxy.as_ref().and_then(|p| p.upstream_time) {
            Some(t) => {
                let _ = write!(line, "{:.3}", t.as_secs_f64());
            }
            None => line.push(b'-'),
        }
        log.end_line();
    }
}

/// The request line for the log when the head could not be parsed.
pub(super) fn cin_line(data: &[u8]) -> &[u8] {
    let end = data.iter().position(|&c| c == b'\r' || c == b'\n').unwrap_or(data.len()).min(1024);
    &data[..end]
}

pub(super) fn request_log_fields<'b>(req: &httparse::Request<'_, 'b>, raw: &'b [u8]) -> (&'b [u8], &'b [u8], &'b [u8]) {
    use crate::http::request::header;
    (cin_line(raw), header(req, "referer").unwrap_or(b""), header(req, "user-agent").unwrap_or(b""))
}
