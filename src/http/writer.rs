//! The client side of a proxied response, shared by both backend adapters: writes the
//! rewritten head, then frames the body for this client (Content-Length, chunked or
//! close-delimited) and ends it. A response that `gzip` compresses (`crate::gzip`) has its
//! headers changed here and its body compressed on the way into `out`.

use super::chunked::size_line;
use super::status::{bodiless, reason};
use crate::buffer::{Buf, PutText};
use crate::config::AddHeader;
use crate::gzip::{self, stream::GzipStream, Ask};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutFraming {
    /// No body (HEAD, 1xx, 204, 304).
    None,
    /// Content-Length from the backend: bytes left.
    Length(u64),
    /// Re-framed as chunked for an HTTP/1.1 client.
    Chunked,
    /// Body ends when pounce closes the connection (HTTP/1.0 client, unknown length).
    Close,
    /// Compressed (`ResponseWriter::gzip`), chunked for an HTTP/1.1 client, else
    /// close-delimited; `ratio_x100` is `$gzip_ratio` in hundredths once the stream ended
    /// whole. Kept here, in the enum's padding, to keep idle sessions small.
    Gzip { chunked: bool, ratio_x100: Option<u32> },
}

/// Facts about the request that shape the response to the client.
pub struct ReqFacts<'a> {
    pub head: bool,
    pub minor: u8,
    pub keep_alive: bool,
    /// The scheme and authority the client addressed (`http`, its Host): what redirects to
    /// the backend are rewritten to.
    pub scheme: &'a str,
    pub host: &'a [u8],
    /// Prefixes of redirect targets that point at the backend (`http://10.0.0.5:8080`).
    pub rewrite_from: [&'a [u8]; 2],
    pub rewrite: bool,
    /// `Date` for responses that come without one (RFC 9110 §6.6.1: Tomcat's AJP connector
    /// sends none).
    pub date: &'a str,
    /// `Via` value to add (proxy_via).
    pub via: Option<&'a str>,
    /// `add_header` lines of the location.
    pub add_headers: &'a [AddHeader],
    /// The location has `gzip on`: its settings and what the request allows.
    pub gzip: Option<Ask<'a>>,
}

#[cfg(test)]
impl ReqFacts<'static> {
    /// An HTTP/1.1 keep-alive GET to host `h`, no rewriting: what the adapters' tests decode for.
    pub(crate) fn plain_get() -> ReqFacts<'static> {
        ReqFacts {
            head: false,
            minor: 1,
            keep_alive: true,
            host: b"h",
            rewrite_from: [b"", b""],
            rewrite: false,
            scheme: "http",
            date: "",
            via: None,
            add_headers: &[],
            gzip: None,
        }
    }
}

pub struct ResponseWriter {
    pub framing: OutFraming,
    pub keep_alive: bool,
    pub status: u16,
    /// Body bytes written for the client (without chunk framing).
    pub body_bytes: u64,
    /// Bytes of response heads written for the client (a `100 Continue` included): what
    /// `$body_bytes_sent` leaves out of the bytes sent.
    pub head_bytes: u64,
    pub started: bool,
    pub finished: bool,
    /// The deflate state of a compressed response (`OutFraming::Gzip`), until it ends.
    gzip: Option<Box<GzipStream>>,
}

/// Response headers that concern one hop only, never forwarded.
pub fn hop_by_hop(name: &[u8]) -> bool {
    const HOP: [&[u8]; 8] = [b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"trailer", b"upgrade", b"proxy-authenticate"];
    HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

impl ResponseWriter {
    pub fn new() -> ResponseWriter {
        ResponseWriter { framing: OutFraming::None, keep_alive: false, status: 0, body_bytes: 0, head_bytes: 0, started: false, finished: false, gzip: None }
    }

    /// Writes the status line and headers. `content_length` is the backend's declared body
    /// length (None when unknown). Returns false when the head does not fit in `out`.
    pub fn head<'h>(
        &mut self,
        out: &mut Buf,
        status: u16,
        headers: impl Iterator<Item = (&'h [u8], &'h [u8])> + Clone,
        content_length: Option<u64>,
        facts: &ReqFacts,
    ) -> bool {
        // Two copies: without gzip (the hot path) every gzip step compiles away.
        if facts.gzip.is_some() {
            self.head_as::<true>(out, status, headers, content_length, facts)
        } else {
            self.head_as::<false>(out, status, headers, content_length, facts)
        }
    }

    fn head_as<'h, const GZIP: bool>(
        &mut self,
        out: &mut Buf,
        status: u16,
        headers: impl Iterator<Item = (&'h [u8], &'h [u8])> + Clone,
        content_length: Option<u64>,
        facts: &ReqFacts,
    ) -> bool {
        self.status = status;
        self.keep_alive = facts.keep_alive;
        let no_body = facts.head || bodiless(status);
        let gz = match &facts.gzip {
            Some(ask) if GZIP && !no_body => gzip::decide(ask, status, headers.clone(), content_length, facts.date),
            _ => gzip::Decision::default(),
        };
        self.framing = if no_body {
            OutFraming::None
        } else if gz.compress {
            self.keep_alive &= facts.minor >= 1;
            OutFraming::Gzip { chunked: facts.minor >= 1, ratio_x100: None }
        } else if let Some(n) = content_length {
            OutFraming::Length(n)
        } else if facts.minor >= 1 {
            OutFraming::Chunked
        } else {
            self.keep_alive = false;
            OutFraming::Close
        };
        let mark = out.len();
        let mut ok =
            out.put_all(b"HTTP/1.1 ") && out.put_num(status as u64) && out.put_all(b" ") && out.put_all(reason(status).as_bytes()) && out.put_all(b"\r\n");
        let mut dated = false;
        // No Content-Length on a re-chunked body, nor on a status that never has a body:
        // Tomcat's AJP connector sends `Content-Length: 0` with a 304, which RFC 9110 §8.6
        // forbids unless it is the length a 200 would have (httpd drops it too).
        let length_dropped = self.framing == OutFraming::Chunked || bodiless(status);
        for (name, value) in headers {
            if !ok {
                break;
            }
            dated |= name.eq_ignore_ascii_case(b"date");
            let upgrade_kept = status == 101 && name.eq_ignore_ascii_case(b"upgrade");
            if (hop_by_hop(name) && !upgrade_kept) || (length_dropped && name.eq_ignore_ascii_case(b"content-length")) {
                continue;
            }
            if gz.compress && (gzip::dropped(name) || name.eq_ignore_ascii_case(b"etag")) {
                // A compressed body has neither the length nor the ranges of the original,
                // and is only weakly the same entity.
                let weak = if name.eq_ignore_ascii_case(b"etag") { gzip::weak_etag(value) } else { None };
                if let Some(prefix) = weak {
                    ok = out.put_all(name) && out.put_all(b": ") && out.put_all(prefix) && out.put_all(value) && out.put_all(b"\r\n");
                }
                continue;
            }
            ok = out.put_all(name) && out.put_all(b": ");
            let is_redirect_header = name.eq_ignore_ascii_case(b"location") || name.eq_ignore_ascii_case(b"refresh");
            ok = ok && if facts.rewrite && is_redirect_header { put_rewritten(out, value, facts) } else { out.put_all(value) } && out.put_all(b"\r\n");
        }
        if !dated && !facts.date.is_empty() {
            ok = ok && out.put_all(b"Date: ") && out.put_all(facts.date.as_bytes()) && out.put_all(b"\r\n");
        }
        if gz.compress {
            ok = ok && out.put_all(b"Content-Encoding: gzip\r\n");
        }
        if gz.vary {
            ok = ok && out.put_all(b"Vary: Accept-Encoding\r\n");
        }
        if let Some(via) = facts.via {
            ok = ok && out.put_all(b"Via: ") && out.put_all(via.as_bytes()) && out.put_all(b"\r\n");
        }
        ok = ok && super::status::added_headers(out, status, facts.add_headers);
        ok =
            ok && match self.framing {
                OutFraming::Chunked | OutFraming::Gzip { chunked: true, .. } => out.put_all(b"Transfer-Encoding: chunked\r\n"),
                _ => true,
            } && if status == 101 {
                // Switching protocols: the connection becomes a tunnel.
                out.put_all(b"Connection: upgrade\r\n")
            } else if !self.keep_alive {
                out.put_all(b"Connection: close\r\n")
            } else if facts.minor == 0 {
                out.put_all(b"Connection: keep-alive\r\n")
            } else {
                true
            } && out.put_all(b"\r\n");
        if !ok {
            // Roll back: nothing partial may reach the client.
            out.truncate(mark);
            return false;
        }
        self.started = true;
        self.head_bytes += (out.len() - mark) as u64;
        if let (true, Some(ask)) = (gz.compress, &facts.gzip) {
            self.gzip = Some(GzipStream::new(ask.settings.gzip_comp_level, content_length, facts.minor >= 1));
        }
        if self.framing == OutFraming::None || self.framing == OutFraming::Length(0) {
            self.finished = true;
        }
        true
    }

    /// Payload bytes that fit in `out` now, framing included.
    pub fn room(&self, out: &Buf) -> usize {
        match self.framing {
            OutFraming::Chunked => out.room().saturating_sub(20),
            OutFraming::Length(left) => out.room().min(left as usize),
            OutFraming::Close => out.room(),
            OutFraming::Gzip { .. } => out.room(),
            OutFraming::None => 0,
        }
    }

    /// Writes body bytes; returns how many were taken (fewer when `out` is full).
    pub fn data(&mut self, out: &mut Buf, data: &[u8]) -> usize {
        let n = data.len().min(self.room(out));
        if n == 0 {
            return 0;
        }
        match self.framing {
            OutFraming::Chunked => {
                let mut line = [0u8; 18];
                let l = size_line(n, &mut line);
                out.put(&line[..l]);
                out.put(&data[..n]);
                out.put(b"\r\n");
            }
            OutFraming::Length(left) => {
                out.put(&data[..n]);
                self.framing = OutFraming::Length(left - n as u64);
                if left == n as u64 {
                    self.finished = true;
                }
            }
            OutFraming::Close => {
                out.put(&data[..n]);
            }
            OutFraming::Gzip { .. } => {
                let Some(gz) = self.gzip.as_mut() else { return 0 };
                let (taken, produced) = gz.write(out, &data[..n]);
                self.body_bytes += produced as u64;
                return taken;
            }
            OutFraming::None => return 0,
        }
        self.body_bytes += n as u64;
        n
    }

    /// Moves up to `max` body bytes from `input` to the client; returns how many went.
    pub fn pass(&mut self, out: &mut Buf, input: &mut Buf, max: usize) -> usize {
        let n = input.len().min(max);
        let taken = if n == 0 { 0 } else { self.data(out, &input.data()[..n]) };
        input.consume(taken);
        taken
    }

    /// The backend's body ended. Returns false when the terminator did not fit yet (call
    /// again after `out` drains). A Content-Length body that ended short stays unfinished:
    /// the caller must close the client connection so the truncation is visible.
    pub fn finish(&mut self, out: &mut Buf) -> bool {
        match self.framing {
            OutFraming::Chunked if !self.finished => {
                if !out.put_all(b"0\r\n\r\n") {
                    return false;
                }
                self.finished = true;
            }
            OutFraming::Close => {
                self.finished = true;
                self.keep_alive = false;
            }
            OutFraming::Gzip { chunked, .. } if !self.finished => {
                let Some(gz) = self.gzip.as_mut() else { return true };
                let (done, produced) = gz.finish(out);
                self.body_bytes += produced as u64;
                if !done {
                    return false;
                }
                // The deflate state goes as soon as the stream ends.
                self.framing = OutFraming::Gzip { chunked, ratio_x100: gz.ratio_x100() };
                self.gzip = None;
                self.finished = true;
                self.keep_alive &= chunked;
            }
            _ => {}
        }
        true
    }

    /// `$gzip_ratio` in hundredths of a compressed body that ended whole; None for any other.
    pub fn gzip_ratio_x100(&self) -> Option<u32> {
        match self.framing {
            OutFraming::Gzip { ratio_x100, .. } => ratio_x100,
            _ => None,
        }
    }

    /// Records a body pounce compressed whole itself and sends as it is (the status page):
    /// its ratio, for the access log.
    pub fn compressed_whole(&mut self, original: u64, compressed: u64) {
        self.framing = OutFraming::Gzip { chunked: false, ratio_x100: gzip::stream::ratio_x100(original, compressed) };
    }

    /// A compressed response owes output: input zlib has not written out, or an end not all
    /// written (the exchange must come back to it though the backend has nothing more).
    pub fn flush_due(&self) -> bool {
        self.gzip.as_ref().is_some_and(|gz| gz.pending())
    }

    /// Pushes out what zlib holds of a compressed response, so the client has everything
    /// the backend sent so far (called when the backend's input has run dry). Returns false
    /// when `out` filled first.
    pub fn flush(&mut self, out: &mut Buf) -> bool {
        let Some(gz) = self.gzip.as_mut() else { return true };
        let (done, produced) = gz.flush(out);
        self.body_bytes += produced as u64;
        done
    }
}

impl Default for ResponseWriter {
    fn default() -> Self {
        Self::new()
    }
}

/// Writes a Location/Refresh value with a backend prefix replaced by the scheme and authority
/// the client addressed (`https://` for a TLS client).
fn put_rewritten(out: &mut Buf, value: &[u8], facts: &ReqFacts) -> bool {
    // Refresh: "5; url=http://…"; Location: the URL itself.
    let url_at = find_url(value);
    let url = &value[url_at..];
    for from in facts.rewrite_from {
        if from.is_empty() || facts.host.is_empty() {
            continue;
        }
        if url.len() >= from.len() && url[..from.len()].eq_ignore_ascii_case(from) && matches!(url.get(from.len()), None | Some(b'/') | Some(b'?')) {
            return out.put_all(&value[..url_at])
                && out.put_all(facts.scheme.as_bytes())
                && out.put_all(b"://")
                && out.put_all(facts.host)
                && out.put_all(&url[from.len()..]);
        }
    }
    out.put_all(value)
}

fn find_url(value: &[u8]) -> usize {
    let lower_has = |i: usize| value.len() >= i + 4 && value[i..i + 4].eq_ignore_ascii_case(b"url=");
    if value.starts_with(b"http") || value.starts_with(b"/") {
        return 0;
    }
    (0..value.len()).find(|&i| lower_has(i)).map_or(0, |i| i + 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(minor: u8, keep_alive: bool) -> ReqFacts<'static> {
        ReqFacts {
            head: false,
            minor,
            keep_alive,
            scheme: "http",
            host: b"front.example:8080",
            rewrite_from: [b"http://127.0.0.1:9000", b"http://backend"],
            rewrite: true,
            date: "",
            via: None,
            add_headers: &[],
            gzip: None,
        }
    }

    #[test]
    fn chunked_for_unknown_length() {
        let mut out = Buf::standalone(1024);
        let mut w = ResponseWriter::new();
        let hs: [(&[u8], &[u8]); 2] = [(b"Content-Type", b"text/plain"), (b"Connection", b"keep-alive")];
        assert!(w.head(&mut out, 200, hs.into_iter(), None, &facts(1, true)));
        assert_eq!(w.data(&mut out, b"hello"), 5);
        assert!(w.finish(&mut out));
        assert_eq!(
            String::from_utf8_lossy(out.data()),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        );
    }

    #[test]
    fn close_delimited_for_http10_and_redirect_rewrite() {
        let mut out = Buf::standalone(1024);
        let mut w = ResponseWriter::new();
        let hs: [(&[u8], &[u8]); 1] = [(b"Location", b"http://127.0.0.1:9000/next?a=1")];
        assert!(w.head(&mut out, 302, hs.into_iter(), None, &facts(0, true)));
        assert_eq!(w.framing, OutFraming::Close);
        assert!(!w.keep_alive);
        let s = String::from_utf8_lossy(out.data()).to_string();
        assert!(s.contains("Location: http://front.example:8080/next?a=1\r\n"), "{s}");
        assert!(s.contains("Connection: close\r\n"));
    }

    #[test]
    fn date_added_when_missing_and_no_length_on_304() {
        let mut out = Buf::standalone(1024);
        let mut w = ResponseWriter::new();
        let f = ReqFacts { date: "Sun, 06 Nov 1994 08:49:37 GMT", ..facts(1, true) };
        let hs: [(&[u8], &[u8]); 2] = [(b"ETag", b"W/\"1\""), (b"Content-Length", b"0")];
        assert!(w.head(&mut out, 304, hs.into_iter(), Some(0), &f));
        assert_eq!(String::from_utf8_lossy(out.data()), "HTTP/1.1 304 Not Modified\r\nETag: W/\"1\"\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n");
        let mut out = Buf::standalone(1024);
        let hs: [(&[u8], &[u8]); 2] = [(b"date", b"x"), (b"Content-Length", b"2")];
        assert!(ResponseWriter::new().head(&mut out, 200, hs.into_iter(), Some(2), &f));
        assert_eq!(String::from_utf8_lossy(out.data()), "HTTP/1.1 200 OK\r\ndate: x\r\nContent-Length: 2\r\n\r\n", "the backend's Date is kept");
    }

    #[test]
    fn gzip_changes_the_head_and_compresses_the_body() {
        use crate::config::Settings;
        use crate::gzip::{Ask, ClientGzip};
        let s = Settings { gzip: true, gzip_vary: true, ..Settings::default() };
        let client = ClientGzip { accepts: true, minor: 1, ..ClientGzip::default() };
        let f = ReqFacts { gzip: Some(Ask { settings: &s, client }), ..facts(1, true) };
        let mut out = Buf::standalone(4096);
        let mut w = ResponseWriter::new();
        let hs: [(&[u8], &[u8]); 4] = [(b"Content-Type", b"text/html"), (b"Content-Length", b"3000"), (b"ETag", b"\"x\""), (b"Accept-Ranges", b"bytes")];
        assert!(w.head(&mut out, 200, hs.into_iter(), Some(3000), &f));
        assert_eq!(w.framing, OutFraming::Gzip { chunked: true, ratio_x100: None });
        assert_eq!(
            String::from_utf8_lossy(out.data()),
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nETag: W/\"x\"\r\nContent-Encoding: gzip\r\nVary: Accept-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        out.clear();
        let body = [b'a'; 3000];
        assert_eq!(w.data(&mut out, &body), 3000);
        assert!(w.finish(&mut out) && w.finished && w.keep_alive);
        assert!(out.data().ends_with(b"\r\n0\r\n\r\n"));
        assert!((20..100).contains(&w.body_bytes), "3000 bytes compressed to {} (counted without chunk framing)", w.body_bytes);
        // The same response to a HEAD: untouched.
        let head = ReqFacts { head: true, ..f };
        let mut out = Buf::standalone(4096);
        assert!(ResponseWriter::new().head(&mut out, 200, hs.into_iter(), Some(3000), &head));
        assert!(String::from_utf8_lossy(out.data()).contains("Content-Length: 3000\r\n"));
        assert!(!String::from_utf8_lossy(out.data()).contains("gzip"));
    }

    #[test]
    fn length_passthrough_and_head_too_big() {
        let mut out = Buf::standalone(64);
        let mut w = ResponseWriter::new();
        let long = [b'x'; 100];
        let hs: [(&[u8], &[u8]); 1] = [(b"X-Long", &long)];
        assert!(!w.head(&mut out, 200, hs.into_iter(), Some(3), &facts(1, true)));
        assert!(out.is_empty());
        let hs: [(&[u8], &[u8]); 1] = [(b"Content-Length", b"3")];
        assert!(w.head(&mut out, 200, hs.into_iter(), Some(3), &facts(1, true)));
        assert_eq!(w.data(&mut out, b"abcdef"), 3);
        assert!(w.finished);
    }
}
