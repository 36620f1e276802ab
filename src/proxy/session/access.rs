//! What a session gives the access log: the request's fields, kept while it is in flight.

use super::*;

impl Session {
    pub(super) fn write_access_log(&self, ctx: &mut Ctx, ex: &Exchange) {
        let rt = &ctx.rt;
        let settings = rt.location_settings(ex.server, ex.loc);
        let Some(idx) = settings.access_log else { return };
        let Some(log) = ctx.access.get_mut(idx) else { return };
        let line = log.line();
        use std::io::Write as _;
        let f = &self.log_fields;
        let _ = write!(line, "{} - - [{}] \"", self.peer.ip(), ctx.clock.log_time);
        line.extend_from_slice(&f[..self.log_ends[0]]);
        let _ = write!(line, "\" {} {} \"", ex.writer.status, ex.writer.body_bytes);
        line.extend_from_slice(if self.log_ends[1] > self.log_ends[0] { &f[self.log_ends[0]..self.log_ends[1]] } else { b"-" });
        line.extend_from_slice(b"\" \"");
        line.extend_from_slice(if self.log_ends[2] > self.log_ends[1] { &f[self.log_ends[1]..self.log_ends[2]] } else { b"-" });
        line.extend_from_slice(b"\" upstream_addr=");
        if ex.peers_used.is_empty() {
            line.push(b'-');
        } else if let Some(upstream) = ex.proxied_upstream() {
            for (i, &p) in ex.peers_used.iter().enumerate() {
                if i > 0 {
                    line.extend_from_slice(b", ");
                }
                let _ = write!(line, "{}", rt.upstreams[upstream].conf.servers[p as usize].addr);
            }
        }
        line.extend_from_slice(b" upstream_status=");
        if ex.upstream_status == 0 {
            line.push(b'-');
        } else {
            let _ = write!(line, "{}", ex.upstream_status);
        }
        let _ = write!(line, " request_time={:.3} upstream_response_time=", ctx.now.duration_since(ex.start).as_secs_f64());
        match ex.upstream_time {
            Some(t) => {
                let _ = write!(line, "{:.3}", t.as_secs_f64());
            }
            None => line.push(b'-'),
        }
        log.end_line();
    }
}

/// Keeps the request line, referer and user agent (escaped) for the access log line.
pub(super) fn fill_log(fields: &mut Vec<u8>, ends: &mut [usize; 3], line: &[u8], referer: &[u8], ua: &[u8]) {
    fields.clear();
    put_escaped(fields, line);
    ends[0] = fields.len();
    put_escaped(fields, referer);
    ends[1] = fields.len();
    put_escaped(fields, ua);
    ends[2] = fields.len();
}

/// The request line for the log when the head could not be parsed.
pub(super) fn cin_line(data: &[u8]) -> &[u8] {
    let end = data.iter().position(|&c| c == b'\r' || c == b'\n').unwrap_or(data.len()).min(1024);
    &data[..end]
}

pub(super) fn request_log_fields<'b>(req: &httparse::Request<'_, 'b>, raw: &'b [u8]) -> (&'b [u8], &'b [u8], &'b [u8]) {
    let line = cin_line(raw);
    let get = |name: &str| req.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map_or(&b""[..], |h| h.value);
    (line, get("referer"), get("user-agent"))
}
