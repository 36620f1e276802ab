//! What a session gives the access log. The request values its format needs are captured
//! when the request starts (the head leaves its buffer long before the line is written);
//! the line itself is written once, when the exchange is over: its response handed to the
//! socket in full (`Session::finish`), or the connection closed first (`Session::close`: 499
//! when the client left). Values are rendered straight into the worker's log buffer.

use super::Session;
use crate::config::{Capture, LogVar};
use crate::http::request::{header, host_name};
use crate::logging::format::ValueSource;
use crate::logging::time::Clock;
use crate::proxy::exchange::Exchange;
use crate::reactor::Ctx;
use crate::runtime::Runtime;
use std::io::Write as _;
use std::time::{Duration, Instant};

/// The captured request values of the current request (buffers reused from request to
/// request: no allocation once they have grown).
#[derive(Default)]
pub(super) struct LogFields {
    bytes: Vec<u8>,
    /// Per capture of the format: its value's place in `bytes`, or None when missing.
    spans: Vec<Option<(u32, u32)>>,
}

/// What the request head offers the captures.
pub(super) struct HeadView<'a, 'h, 'b> {
    /// The parsed head, if it could be parsed.
    pub(super) req: Option<&'a httparse::Request<'h, 'b>>,
    /// The request line as received (empty when there was none).
    pub(super) line: &'a [u8],
    /// The normalized path.
    pub(super) uri: &'a [u8],
    pub(super) server_name: &'a str,
}

impl LogFields {
    /// Copies what `captures` ask for out of the request head.
    pub(super) fn capture(&mut self, captures: &[Capture], h: &HeadView) {
        self.bytes.clear();
        self.spans.clear();
        let path = h.req.and_then(|r| r.path);
        for c in captures {
            let start = self.bytes.len();
            let value: Option<&[u8]> = match c {
                Capture::Request => Some(h.line).filter(|l| !l.is_empty()),
                Capture::Method => h.req.and_then(|r| r.method).map(str::as_bytes),
                Capture::RequestUri => path.map(str::as_bytes),
                Capture::Uri => h.req.map(|_| h.uri),
                Capture::Args => path.and_then(|p| p.split_once('?')).map(|(_, a)| a.as_bytes()),
                Capture::Host => match h.req.and_then(|r| header(r, "host")) {
                    Some(v) => {
                        // Lower-cased as it is copied; the span below takes it in.
                        self.bytes.extend(host_name(v).iter().map(u8::to_ascii_lowercase));
                        Some(&[][..])
                    }
                    None => Some(h.server_name.as_bytes()),
                },
                // An empty header logs as a missing one.
                Capture::Header(name) => h.req.and_then(|r| header(r, name)).filter(|v| !v.is_empty()),
            };
            let span = value.map(|v| {
                self.bytes.extend_from_slice(v);
                (start as u32, (self.bytes.len() - start) as u32)
            });
            self.spans.push(span);
        }
    }

    /// Nothing captured (a request whose head never came): every value is missing.
    pub(super) fn clear(&mut self) {
        self.bytes.clear();
        self.spans.clear();
    }

    fn get(&self, i: u8) -> Option<&[u8]> {
        let (at, len) = (*self.spans.get(i as usize)?)?;
        self.bytes.get(at as usize..(at + len) as usize)
    }
}

impl Session {
    /// Writes the exchange's line, with `status` (499 for a client that left).
    pub(super) fn write_access_log(&self, ctx: &mut Ctx, ex: &Exchange, status: u16) {
        let Ctx { rt, access, clock, now, .. } = ctx;
        let rt: &Runtime = rt;
        let Some(al) = rt.location_settings(ex.server, ex.loc).access_log else { return };
        let (Some(log), Some(format)) = (access.get_mut(al.file), rt.cfg.http.log_formats.get(al.format)) else { return };
        log.write_line(format, &Line { s: self, ex, status, rt, clock, now: *now });
    }
}

/// One request's line: where each variable's value comes from.
struct Line<'a> {
    s: &'a Session,
    ex: &'a Exchange,
    status: u16,
    rt: &'a Runtime,
    clock: &'a Clock,
    now: Instant,
}

/// A decimal number, without `fmt`'s machinery (a log line has several).
fn put_uint(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// `1.234`: seconds with milliseconds, as nginx writes times.
fn put_secs(out: &mut Vec<u8>, d: Duration) {
    put_uint(out, d.as_secs());
    let ms = d.subsec_millis();
    out.extend_from_slice(&[b'.', b'0' + (ms / 100) as u8, b'0' + (ms / 10 % 10) as u8, b'0' + (ms % 10) as u8]);
}

impl ValueSource for Line<'_> {
    fn value(&self, var: LogVar, out: &mut Vec<u8>) -> bool {
        let (s, ex) = (self.s, self.ex);
        let c = &s.client;
        let tries = ex.proxy.as_ref().map(|p| (p.upstream, &p.history)).filter(|(_, h)| !h.is_empty());
        match var {
            LogVar::Status => {
                let st = self.status.min(999);
                out.extend_from_slice(&[b'0' + (st / 100) as u8, b'0' + (st / 10 % 10) as u8, b'0' + (st % 10) as u8]);
            }
            LogVar::BytesSent => put_uint(out, c.sent),
            LogVar::BodyBytesSent => put_uint(out, c.sent.saturating_sub(ex.writer.head_bytes)),
            LogVar::RequestTime => put_secs(out, self.now.saturating_duration_since(ex.start)),
            LogVar::Msec => put_secs(out, Duration::from_millis(self.clock.unix_ms)),
            LogVar::TimeLocal => out.extend_from_slice(self.clock.log_time.as_bytes()),
            LogVar::TimeIso8601 => out.extend_from_slice(self.clock.iso8601.as_bytes()),
            LogVar::Captured(i) => match s.log.get(i) {
                Some(v) => out.extend_from_slice(v),
                None => return false,
            },
            LogVar::IsArgs(i) => {
                if s.log.get(i).is_some() {
                    out.push(b'?');
                }
            }
            LogVar::RemoteAddr => {
                let _ = write!(out, "{}", c.peer.ip());
            }
            LogVar::RemotePort => put_uint(out, c.peer.port().into()),
            LogVar::RealipRemoteAddr => {
                let _ = write!(out, "{}", c.conn_peer().ip());
            }
            LogVar::RealipRemotePort => put_uint(out, c.conn_peer().port().into()),
            LogVar::ProxyProtocolAddr => match c.proxy_protocol() {
                Some(a) => {
                    let _ = write!(out, "{}", a.ip());
                }
                None => return false,
            },
            LogVar::ProxyProtocolPort => match c.proxy_protocol() {
                Some(a) => put_uint(out, a.port().into()),
                None => return false,
            },
            // pounce authenticates nobody.
            LogVar::RemoteUser => return false,
            LogVar::ServerName => {
                let names = &self.rt.cfg.http.servers[ex.server].names;
                out.extend_from_slice(names.first().map_or("", String::as_str).as_bytes());
            }
            LogVar::ServerPort => put_uint(out, c.local_port.into()),
            LogVar::ServerProtocol => {
                let _ = write!(out, "HTTP/1.{}", ex.meta.minor);
            }
            LogVar::Scheme => out.extend_from_slice(b"http"),
            LogVar::Connection => put_uint(out, c.serial),
            LogVar::ConnectionRequests => put_uint(out, u64::from(s.served) + 1),
            LogVar::Pid => put_uint(out, crate::logging::pid().into()),
            LogVar::LimitReqStatus => match s.marks.req {
                Some(st) => out.extend_from_slice(st.text().as_bytes()),
                None => return false,
            },
            LogVar::LimitConnStatus => match s.marks.conn {
                Some(st) => out.extend_from_slice(st.text().as_bytes()),
                None => return false,
            },
            LogVar::GzipRatio => match ex.writer.gzip_ratio_x100() {
                None => return false,
                Some(r) => {
                    // nginx's "%ui.%02ui".
                    put_uint(out, u64::from(r / 100));
                    out.extend_from_slice(&[b'.', b'0' + (r % 100 / 10) as u8, b'0' + (r % 10) as u8]);
                }
            },
            LogVar::UpstreamAddr => {
                let Some((ups, h)) = tries else { return false };
                let servers = &self.rt.upstreams[ups].conf.servers;
                for (i, t) in h.iter().enumerate() {
                    out.extend_from_slice(if i > 0 { b", " } else { b"" });
                    let _ = write!(out, "{}", servers[t.peer].addr);
                }
            }
            LogVar::UpstreamStatus => {
                let Some((_, h)) = tries else { return false };
                for (i, t) in h.iter().enumerate() {
                    out.extend_from_slice(if i > 0 { b", " } else { b"" });
                    match t.status {
                        Some(st) => put_uint(out, st.into()),
                        None => out.push(b'-'),
                    }
                }
            }
            LogVar::UpstreamResponseTime => {
                let Some((_, h)) = tries else { return false };
                for (i, t) in h.iter().enumerate() {
                    out.extend_from_slice(if i > 0 { b", " } else { b"" });
                    match t.time {
                        Some(d) => put_secs(out, d),
                        None => out.push(b'-'),
                    }
                }
            }
        }
        true
    }
}

/// The request line for the log when the head could not be parsed.
pub(super) fn cin_line(data: &[u8]) -> &[u8] {
    let end = data.iter().position(|&c| c == b'\r' || c == b'\n').unwrap_or(data.len()).min(1024);
    &data[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_times() {
        let mut o = Vec::new();
        for n in [0, 7, 10, 499, u64::MAX] {
            o.clear();
            put_uint(&mut o, n);
            assert_eq!(o, n.to_string().as_bytes());
        }
        o.clear();
        put_secs(&mut o, Duration::from_micros(61_042_999));
        assert_eq!(o, b"61.042");
        o.clear();
        put_secs(&mut o, Duration::ZERO);
        assert_eq!(o, b"0.000");
    }
}
