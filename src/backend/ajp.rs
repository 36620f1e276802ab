//! The AJP13 backend adapter (the role of mod_jk / mod_proxy_ajp): FORWARD_REQUEST with
//! coded headers and attributes, the request body sent one packet per GET_BODY_CHUNK (plus
//! the unsolicited first packet for a Content-Length body), and SEND_HEADERS /
//! SEND_BODY_CHUNK / END_RESPONSE turned into the client's HTTP/1.1 response. Body chunks are
//! streamed through, so packets larger than a pooled buffer are fine.

use super::ajp_codec::*;
use super::http::{connection_listed, connection_names_headers, put_template};
use super::{BackendError, ForwardRequest, Handshake, KeepAliveHint, Protocol, RetryMask, Step};
use crate::buffer::{Buf, PutText, StackText};
use crate::config::BackendConf;
use crate::http::request::{header, host_name, BodyKind};
use crate::http::status::bodiless;
use crate::http::writer::{hop_by_hop, ReqFacts, ResponseWriter};
use std::time::Duration;

enum RState {
    /// The connection's previous response ended with its body; its END_RESPONSE comes
    /// first (`after_unread_tail`).
    PriorEnd,
    Packet,
    /// Inside a SEND_BODY_CHUNK: data bytes left, then bytes to skip (the trailing NUL).
    Chunk {
        left: usize,
        skip: usize,
    },
    Done,
}

pub struct AjpAdapter {
    packet_size: usize,
    /// One body packet may be sent now, of at most this many bytes.
    credit: Option<u32>,
    /// Tomcat asked for body (GET_BODY_CHUNK) and has not been answered yet.
    asked: bool,
    /// The unsolicited first body packet of a Content-Length request is still owed.
    first_pending: bool,
    state: RState,
    headers_sent: bool,
    started: bool,
    /// END_RESPONSE said the connection will not be reused.
    closing: bool,
    /// Tomcat sent a flush packet (the application flushed): no output is held back any more.
    flushed: bool,
    /// Body bytes the response still declares, once its head came (0 for HEAD and bodiless
    /// statuses); None: unknown (no Content-Length) or too large to count.
    body_due: Option<u32>,
    /// `ajp_ping on`: a CPING must be answered by a CPONG within this time before each request.
    ping: Option<Duration>,
    /// The response ended with the last byte of its declared body; END_RESPONSE is still
    /// to come (`unread_tail`).
    ended_early: bool,
    /// A CPING is out and its CPONG not yet in.
    handshaking: bool,
    /// The previous response's END_RESPONSE was read first (a pooled connection).
    after_tail: bool,
}

/// END_RESPONSE with reuse: what a response that ended with its body still owes.
const END_REUSE: [u8; 6] = [0x41, 0x42, 0x00, 0x02, END_RESPONSE, 1];

impl AjpAdapter {
    pub fn new(body: BodyKind, packet_size: usize) -> AjpAdapter {
        let max = packet_size - 6;
        let (credit, first_pending) = match body {
            BodyKind::Length(n) if n > 0 => (Some((n as usize).min(max) as u32), true),
            _ => (None, false),
        };
        AjpAdapter {
            packet_size,
            credit,
            asked: false,
            first_pending,
            state: RState::Packet,
            headers_sent: false,
            started: false,
            closing: false,
            flushed: false,
            body_due: None,
            ping: None,
            ended_early: false,
            handshaking: false,
            after_tail: false,
        }
    }

    /// CPING/CPONG before the request (mod_jk's `ping_mode` C+P), answered within `timeout`.
    pub fn with_ping(mut self, timeout: Option<Duration>) -> AjpAdapter {
        self.ping = timeout;
        self
    }

    /// Skips the END_RESPONSE the previous response left unread, and what may come before it
    /// (an application's flush after its body: Tomcat's flush packet; bytes past its
    /// Content-Length). One saying the connection will not be reused is dropped too: Tomcat
    /// closes it next, and the request is resent as on any pooled connection the backend
    /// closed. False: more bytes are needed.
    fn skip_prior_end(&mut self, input: &mut Buf) -> Result<bool, BackendError> {
        let stray = BackendError::Protocol("stray bytes before the AJP response");
        loop {
            let d = input.data();
            let Some((len, ty)) = packet_head(d, self.packet_size).map_err(|_| stray)? else { return Ok(false) };
            let whole = 4 + len;
            match ty {
                SEND_BODY_CHUNK if whole <= input.capacity() => {
                    if d.len() < whole {
                        return Ok(false);
                    }
                    input.consume(whole);
                }
                END_RESPONSE if len == 2 => {
                    if d.len() < whole {
                        return Ok(false);
                    }
                    if d[5] > 1 {
                        return Err(stray);
                    }
                    self.closing = d[5] == 0;
                    self.after_tail = true;
                    input.consume(whole);
                    self.state = RState::Packet;
                    return Ok(true);
                }
                _ => return Err(stray),
            }
        }
    }

    /// The declared body is all here and nothing else is: the response can end now, its
    /// END_RESPONSE read with the next response (Tomcat writes it as a separate segment a
    /// moment later; waking for it alone would cost a read and a sleep per request).
    fn may_end_with_body(&self, input: &Buf) -> bool {
        self.body_due == Some(0) && input.is_empty() && self.request_complete()
    }

    fn end_early(&mut self, out: &mut Buf, w: &mut ResponseWriter) -> Step {
        if !w.finish(out) {
            return Step::Blocked;
        }
        self.state = RState::Done;
        self.ended_early = true;
        Step::Done { reusable: true }
    }

    fn error(&self, e: AjpError) -> BackendError {
        if self.headers_sent {
            BackendError::Protocol(e.describe())
        } else {
            BackendError::InvalidHeader(e.describe())
        }
    }
}

/// Request headers that never go to Tomcat (hop-by-hop, or handled by pounce). As both httpd
/// modules do, `Transfer-Encoding: chunked` is passed on so servlets can see it; Tomcat
/// itself does not act on it over AJP.
fn dropped(name: &[u8]) -> bool {
    (hop_by_hop(name) && !name.eq_ignore_ascii_case(b"transfer-encoding")) || name.eq_ignore_ascii_case(b"expect")
}

impl AjpAdapter {
    /// Encodes FORWARD_REQUEST (§3): coded headers, then the attributes.
    fn encode_forward(&mut self, fr: &ForwardRequest, out: &mut Buf) -> Option<()> {
        let req = fr.req;
        let method = req.method?;
        let target = req.path?;
        let (uri, query) = match target.split_once('?') {
            Some((u, q)) => (u, Some(q)),
            None => (target, None),
        };
        let sets = &fr.settings.proxy_set_header;
        let is_set = |name: &str| sets.iter().any(|h| h.name.eq_ignore_ascii_case(name));
        let host_header = header(req, "host");
        // Without a Host (HTTP/1.0), the server's name or address: never empty, or Tomcat
        // builds its redirects to `http://:PORT/`.
        let server_name: &[u8] = host_header.map(host_name).unwrap_or(host_name(fr.default_host.as_bytes()));
        let mut ip = StackText::<64>::new();
        ip.put_ip(fr.client.ip());
        let mut w = PacketWriter::begin(out);
        let code = method_code(method);
        w.u8(FORWARD_REQUEST).u8(code.unwrap_or(0xFF));
        w.string(Some(if fr.meta.minor == 0 { b"HTTP/1.0" } else { b"HTTP/1.1" }));
        w.string(Some(uri.as_bytes())).string(Some(ip.as_bytes())).string(None).string(Some(server_name));
        // is_ssl: Tomcat then reports https, isSecure() and port 443 by default.
        w.u16(fr.local_port).u8(fr.tls.is_some() as u8);
        let count_at = w.offset();
        w.u16(0);
        let mut count: u16 = 0;
        let mut has_length = false;
        let listed = connection_names_headers(req);
        for h in req.headers.iter() {
            let name = h.name.as_bytes();
            if dropped(name) || is_set(h.name) || (listed && connection_listed(req, h.name)) {
                continue;
            }
            if name.eq_ignore_ascii_case(b"content-length") {
                has_length = true;
            }
            match request_header_code(name) {
                Some(c) => w.u16(c),
                None => w.string(Some(name)),
            };
            w.string(Some(h.value));
            count += 1;
        }
        for h in sets.iter() {
            // The value is a template: write a length placeholder, the text, then patch it.
            match request_header_code(h.name.as_bytes()) {
                Some(c) => w.u16(c),
                None => w.string(Some(h.name.as_bytes())),
            };
            let len_at = w.offset();
            w.u16(0);
            let start = w.offset();
            let ok = put_template(w.buf(), &h.value, fr);
            let len = w.offset() - start;
            w.patch_u16(len_at, len as u16);
            w.u8(0);
            if !ok {
                return None;
            }
            count += 1;
        }
        // mod_jk adds "content-length: 0" to body-less requests so Tomcat never asks for a body.
        if fr.meta.body == BodyKind::None && !has_length {
            w.u16(request_header_code(b"content-length").unwrap_or(0xA008)).string(Some(b"0"));
            count += 1;
        }
        w.patch_u16(count_at, count);
        if let Some(q) = query {
            w.u8(attr::QUERY_STRING).string(Some(q.as_bytes()));
        }
        if let Some(t) = fr.tls {
            // As mod_jk: the client certificate (PEM), cipher, session and key size, and the
            // protocol as a request attribute Tomcat knows.
            if let Some(c) = &t.client {
                w.u8(attr::SSL_CERT).string(Some(c.pem.as_bytes()));
            }
            let mut hex = [0u8; 64];
            w.u8(attr::SSL_CIPHER).string(Some(t.cipher.as_bytes()));
            w.u8(attr::SSL_SESSION).string(Some(t.session_hex(&mut hex).as_bytes()));
            w.u8(attr::SSL_KEY_SIZE).u16(t.key_bits);
            w.u8(attr::REQ_ATTRIBUTE).string(Some(b"AJP_SSL_PROTOCOL")).string(Some(t.protocol.as_bytes()));
        }
        if let Some(route) = fr.route {
            w.u8(attr::ROUTE).string(Some(route.as_bytes()));
        }
        let secret = match fr.backend {
            BackendConf::Ajp(p) => p.secret.as_deref(),
            BackendConf::Http => None,
        };
        if let Some(secret) = secret {
            w.u8(attr::SECRET).string(Some(secret.as_bytes()));
        }
        let mut port = StackText::<8>::new();
        port.put_num(fr.client.port() as u64);
        w.u8(attr::REQ_ATTRIBUTE).string(Some(b"AJP_REMOTE_PORT")).string(Some(port.as_bytes()));
        if code.is_none() {
            w.u8(attr::STORED_METHOD).string(Some(method.as_bytes()));
        }
        w.u8(attr::ARE_DONE);
        w.finish(self.packet_size).then_some(())
    }
}

impl Protocol for AjpAdapter {
    fn begin_handshake(&mut self, out: &mut Buf) -> Option<Duration> {
        let timeout = self.ping?;
        self.handshaking = out.put_all(&CPING_PACKET);
        self.handshaking.then_some(timeout)
    }

    /// The CPONG is exactly `41 42 00 01 09`; anything else fails the connection.
    fn handshake_input(&mut self, input: &mut Buf, eof: bool) -> Result<Handshake, BackendError> {
        let before_tail = matches!(self.state, RState::PriorEnd) && !self.skip_prior_end(input)?;
        if eof && (before_tail || (input.is_empty() && self.after_tail)) {
            // Closed while pooled, before or behind its tail: stale, resent on a new connection.
            return Err(BackendError::PrematureClose);
        }
        if before_tail {
            return Ok(Handshake::Pending);
        }
        if input.len() >= 5 {
            let d = input.data();
            if d[..2] != MAGIC_FROM_TOMCAT || d[2..5] != [0, 1, CPONG] {
                return Err(BackendError::Handshake("invalid CPONG"));
            }
            input.consume(5);
            self.handshaking = false;
            return Ok(Handshake::Done);
        }
        if eof {
            return Err(BackendError::Handshake("connection closed instead of CPONG"));
        }
        Ok(Handshake::Pending)
    }

    fn encode_head(&mut self, fr: &ForwardRequest, out: &mut Buf) -> bool {
        self.encode_forward(fr, out).is_some()
    }

    fn body_credit(&self) -> usize {
        self.credit.map_or(0, |c| c as usize)
    }

    fn encode_body(&mut self, data: &[u8], out: &mut Buf) -> usize {
        let Some(max) = self.credit.map(|c| c as usize) else { return 0 };
        let n = data.len().min(max).min(out.room().saturating_sub(6));
        if n == 0 || !put_body_packet(out, &data[..n]) {
            return 0;
        }
        // Exactly one packet per GET_BODY_CHUNK (or the first, unsolicited one).
        self.credit = None;
        self.asked = false;
        self.first_pending = false;
        n
    }

    fn encode_body_end(&mut self, out: &mut Buf) -> bool {
        // Nothing is sent unasked: only a pending GET_BODY_CHUNK gets the empty packet.
        if self.asked && out.put_all(&EMPTY_BODY_PACKET) {
            self.asked = false;
            self.credit = None;
            return true;
        }
        false
    }

    fn request_complete(&self) -> bool {
        !self.asked && !self.first_pending
    }

    fn decode(&mut self, input: &mut Buf, out: &mut Buf, w: &mut ResponseWriter, facts: &ReqFacts, retry: RetryMask) -> Result<Step, BackendError> {
        if matches!(self.state, RState::PriorEnd) && !self.skip_prior_end(input)? {
            return Ok(Step::Blocked);
        }
        if !input.is_empty() {
            self.started = true;
        }
        loop {
            match self.state {
                RState::Done => return Ok(Step::Blocked),
                RState::PriorEnd => return Err(BackendError::Protocol("AJP END_RESPONSE expected")),
                RState::Chunk { left, skip } => {
                    if left > 0 {
                        let taken = w.pass(out, input, left);
                        if taken == 0 {
                            return Ok(Step::Blocked);
                        }
                        self.body_due = self.body_due.map(|due| due.saturating_sub(taken as u32));
                        self.state = RState::Chunk { left: left - taken, skip };
                    } else if skip > 0 {
                        let n = input.len().min(skip);
                        if n == 0 {
                            return Ok(Step::Blocked);
                        }
                        input.consume(n);
                        self.state = RState::Chunk { left: 0, skip: skip - n };
                    } else {
                        self.state = RState::Packet;
                    }
                }
                RState::Packet => {
                    if self.may_end_with_body(input) {
                        return Ok(self.end_early(out, w));
                    }
                    let d = input.data();
                    let Some((len, ty)) = packet_head(d, self.packet_size).map_err(|e| self.error(e))? else { return Ok(Step::Blocked) };
                    let whole = 4 + len;
                    match ty {
                        SEND_BODY_CHUNK => {
                            if d.len() < 7 {
                                return Ok(Step::Blocked);
                            }
                            let n = u16::from_be_bytes([d[5], d[6]]) as usize;
                            if n + 3 > len {
                                return Err(self.error(AjpError::BadChunk));
                            }
                            if n == 0 {
                                // A flush: nothing to forward, but what came goes out now.
                                if d.len() < whole {
                                    return Ok(Step::Blocked);
                                }
                                input.consume(whole);
                                self.flushed = true;
                                continue;
                            }
                            if !self.headers_sent {
                                return Err(BackendError::InvalidHeader("AJP body chunk before SEND_HEADERS"));
                            }
                            input.consume(7);
                            self.state = RState::Chunk { left: n, skip: len - 3 - n };
                        }
                        SEND_HEADERS => {
                            if self.headers_sent {
                                return Err(BackendError::Protocol("second AJP SEND_HEADERS"));
                            }
                            if whole > input.capacity() {
                                return Err(BackendError::InvalidHeader("AJP SEND_HEADERS larger than a buffer"));
                            }
                            if d.len() < whole {
                                return Ok(Step::Blocked);
                            }
                            let sh = SendHeaders::parse(&d[5..whole]).map_err(|e| BackendError::InvalidHeader(e.describe()))?;
                            if !(100..=999).contains(&sh.status) {
                                return Err(BackendError::InvalidHeader("AJP response with an invalid status"));
                            }
                            if retry.has(sh.status) {
                                return Ok(Step::RetryStatus(sh.status));
                            }
                            if !w.head(out, sh.status, sh.pairs(), sh.content_length, facts) {
                                if out.is_empty() {
                                    return Err(BackendError::InvalidHeader("AJP response head too large"));
                                }
                                return Ok(Step::Blocked);
                            }
                            self.headers_sent = true;
                            self.body_due = if facts.head || bodiless(sh.status) { Some(0) } else { sh.content_length.and_then(|n| u32::try_from(n).ok()) };
                            input.consume(whole);
                        }
                        END_RESPONSE => {
                            if d.len() < whole {
                                return Ok(Step::Blocked);
                            }
                            if len < 2 {
                                return Err(self.error(AjpError::Truncated));
                            }
                            let reuse = match d[5] {
                                1 => true,
                                0 => false,
                                _ => return Err(self.error(AjpError::BadReuse)),
                            };
                            if !self.headers_sent {
                                return Err(BackendError::InvalidHeader("AJP END_RESPONSE without SEND_HEADERS"));
                            }
                            if !w.finish(out) {
                                return Ok(Step::Blocked);
                            }
                            input.consume(whole);
                            self.state = RState::Done;
                            self.closing = !reuse;
                            return Ok(Step::Done { reusable: reuse && self.request_complete() && input.is_empty() });
                        }
                        GET_BODY_CHUNK => {
                            if d.len() < whole {
                                return Ok(Step::Blocked);
                            }
                            if len < 3 {
                                return Err(self.error(AjpError::Truncated));
                            }
                            let asked = u16::from_be_bytes([d[5], d[6]]) as usize;
                            input.consume(whole);
                            self.asked = true;
                            self.credit = Some(asked.min(self.packet_size - 6) as u32);
                            // Returning lets the session send the packet before reading on.
                            return Ok(Step::Blocked);
                        }
                        other => return Err(self.error(AjpError::UnknownType(other))),
                    }
                }
            }
        }
    }

    fn eof(&mut self, _out: &mut Buf, _w: &mut ResponseWriter) -> Result<Step, BackendError> {
        match self.state {
            RState::Done => Ok(Step::Blocked),
            _ => Err(BackendError::PrematureClose),
        }
    }

    fn response_started(&self) -> bool {
        self.started
    }

    fn keepalive_hint(&self) -> KeepAliveHint {
        KeepAliveHint { closing: self.closing, timeout: None, max: None }
    }

    /// Tomcat writes SEND_HEADERS and flushes it on its own, then the body and END_RESPONSE:
    /// a small response arrives in two pieces. Until the end, or until Tomcat forwards an
    /// application's flush (a flush packet, with its default `ajpFlush`), the head may wait
    /// for the body, so the client gets one write instead of two.
    fn hold_output(&self) -> bool {
        self.headers_sent && !self.flushed && !matches!(self.state, RState::Done)
    }

    fn unread_tail(&self) -> Option<&'static [u8]> {
        self.ended_early.then_some(&END_REUSE[..])
    }

    fn after_unread_tail(&mut self) {
        self.state = RState::PriorEnd;
    }

    /// A CPONG, the lone END_RESPONSE of a response of unknown length, or the last bytes
    /// of a body chunk are shorter than an unread tail.
    fn next_may_be_tiny(&self) -> bool {
        match self.state {
            RState::PriorEnd | RState::Done => false,
            RState::Chunk { left, skip } => left + skip <= END_REUSE.len(),
            RState::Packet if !self.headers_sent => self.handshaking,
            RState::Packet => self.body_due.is_none_or(|due| due == 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::http::request::{empty_headers, parse, Parse, MAX_HEAD};

    fn encode(raw: &[u8], secret: Option<&str>) -> Vec<u8> {
        let mut h = empty_headers();
        let Parse::Done(req, meta) = parse(raw, &mut h, MAX_HEAD) else { panic!("parse") };
        let settings = Settings::default();
        let backend = BackendConf::Ajp(crate::config::AjpParams { secret: secret.map(str::to_string), packet_size: 8192, ping_timeout: None });
        let fr = ForwardRequest {
            proxy_host: "tomcats",
            keepalive: true,
            backend: &backend,
            ..ForwardRequest::new(&req, &meta, "127.0.0.1:54321".parse().expect("addr"), 80, "localhost", &settings)
        };
        let mut out = Buf::standalone(8192);
        let mut a = AjpAdapter::new(meta.body, 8192);
        assert!(a.encode_head(&fr, &mut out), "fits");
        out.data().to_vec()
    }

    #[test]
    fn forward_request_fields() {
        let p = encode(b"PATCH /a/b?x=1 HTTP/1.1\r\nHost: localhost:8080\r\nConnection: keep-alive\r\nX-Custom: v\r\n\r\n", Some("s3cret"));
        assert_eq!(&p[..2], &[0x12, 0x34]);
        assert_eq!(u16::from_be_bytes([p[2], p[3]]) as usize, p.len() - 4);
        assert_eq!(p[4], FORWARD_REQUEST);
        assert_eq!(p[5], 0xFF, "PATCH goes as stored_method");
        let s = String::from_utf8_lossy(&p).to_string();
        assert!(s.contains("/a/b\0") && !s.contains("/a/b?"), "uri without query");
        assert!(s.contains("x=1\0"));
        assert!(s.contains("X-Custom\0") && !s.contains("keep-alive"), "Connection dropped");
        let secret = [0x0C, 0x00, 0x06, b's', b'3', b'c', b'r', b'e', b't', 0x00];
        assert!(p.windows(secret.len()).any(|w| w == secret));
        let stored = [0x0D, 0x00, 0x05, b'P', b'A', b'T', b'C', b'H', 0x00];
        assert!(p.windows(stored.len()).any(|w| w == stored));
        assert_eq!(*p.last().expect("byte"), 0xFF);
        assert!(s.contains("AJP_REMOTE_PORT\0\0\x0554321\0"));
    }

    #[test]
    fn body_packets_follow_the_protocol() {
        let mut a = AjpAdapter::new(BodyKind::Length(20000), 8192);
        let mut out = Buf::standalone(16384);
        assert_eq!(a.body_credit(), 8186, "the first packet is sent unasked");
        assert_eq!(a.encode_body(&[7u8; 10000], &mut out), 8186);
        assert_eq!(&out.data()[..6], &[0x12, 0x34, 0x1F, 0xFC, 0x1F, 0xFA]);
        assert_eq!(a.body_credit(), 0, "then only when asked");
        assert!(a.request_complete(), "first packet sent, nothing asked");
        let mut input = Buf::standalone(64);
        input.put(&[0x41, 0x42, 0x00, 0x03, 0x06, 0x1F, 0xFA]);
        let mut cout = Buf::standalone(1024);
        let mut w = ResponseWriter::new();
        assert_eq!(a.decode(&mut input, &mut cout, &mut w, &ReqFacts::plain_get(), RetryMask(0)), Ok(Step::Blocked));
        assert_eq!(a.body_credit(), 8186);
        assert!(!a.request_complete(), "an ask is pending");
        out.clear();
        assert_eq!(a.encode_body(&[7u8; 3628], &mut out), 3628, "one packet answers the ask");
        assert_eq!(&out.data()[..6], &[0x12, 0x34, 0x0E, 0x2E, 0x0E, 0x2C]);
        assert_eq!(a.encode_body(&[7u8; 10], &mut out), 0, "no second packet for one ask");
    }

    #[test]
    fn end_of_body_only_when_asked() {
        let mut a = AjpAdapter::new(BodyKind::None, 8192);
        let mut out = Buf::standalone(64);
        assert!(!a.encode_body_end(&mut out));
        assert!(out.is_empty(), "never an unsolicited packet");
        let mut input = Buf::standalone(64);
        input.put(&[0x41, 0x42, 0x00, 0x03, 0x06, 0x1F, 0xFA]);
        let mut cout = Buf::standalone(1024);
        let mut w = ResponseWriter::new();
        let _ = a.decode(&mut input, &mut cout, &mut w, &ReqFacts::plain_get(), RetryMask(0));
        assert!(a.encode_body_end(&mut out));
        assert_eq!(out.data(), &EMPTY_BODY_PACKET);
        assert!(a.request_complete());
    }

    #[test]
    fn response_headers_chunks_and_end() {
        let mut a = AjpAdapter::new(BodyKind::None, 8192);
        let mut input = Buf::standalone(4096);
        let mut out = Buf::standalone(4096);
        let mut w = ResponseWriter::new();
        input.put(&[0x41, 0x42, 0x00, 0x21, 0x04, 0x00, 0xc8, 0x00, 0x03, b'2', b'0', b'0', 0x00, 0x00, 0x02, 0xa0, 0x01, 0x00, 0x0a]);
        input.put(b"text/plain\0");
        input.put(&[0xa0, 0x03, 0x00, 0x02, b'1', b'2', 0x00]);
        input.put(&[0x41, 0x42, 0x00, 0x04, 0x03, 0x00, 0x00, 0x00]); // flush
        input.put(&[0x41, 0x42, 0x00, 0x10, 0x03, 0x00, 0x0C]);
        input.put(b"hello world\n\0");
        input.put(&[0x41, 0x42, 0x00, 0x02, 0x05, 0x01]);
        let step = a.decode(&mut input, &mut out, &mut w, &ReqFacts::plain_get(), RetryMask(0));
        assert_eq!(step, Ok(Step::Done { reusable: true }));
        let s = String::from_utf8_lossy(out.data()).to_string();
        assert_eq!(s, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nhello world\n");
    }

    #[test]
    fn cping_handshake() {
        let mut a = AjpAdapter::new(BodyKind::None, 8192);
        let mut out = Buf::standalone(64);
        assert_eq!(a.begin_handshake(&mut out), None, "no ping unless asked");
        let mut a = a.with_ping(Some(Duration::from_millis(300)));
        assert_eq!(a.begin_handshake(&mut out), Some(Duration::from_millis(300)));
        assert_eq!(out.data(), &CPING_PACKET);
        let mut input = Buf::standalone(64);
        input.put(&[0x41, 0x42, 0x00]);
        assert_eq!(a.handshake_input(&mut input, false), Ok(Handshake::Pending));
        assert!(a.handshake_input(&mut input, true).is_err(), "closed before the CPONG");
        input.put(&[0x01, 0x09, 0x41]);
        assert_eq!(a.handshake_input(&mut input, false), Ok(Handshake::Done));
        assert_eq!(input.data(), &[0x41], "only the CPONG is consumed");
        let mut bad = Buf::standalone(64);
        bad.put(&[0x41, 0x42, 0x00, 0x02, 0x05, 0x01]);
        assert!(a.handshake_input(&mut bad, false).is_err(), "anything but a CPONG");
    }

    #[test]
    fn malformed_responses_are_errors() {
        let cases: [&[u8]; 4] = [
            &[0x12, 0x34, 0x00, 0x01, 0x09],                   // wrong magic
            &[0x41, 0x42, 0x00, 0x04, 0x03, 0x00, 0x05, 0x00], // chunk longer than packet
            &[0x41, 0x42, 0x00, 0x01, 0x09],                   // CPONG in an exchange
            &[0x41, 0x42, 0x00, 0x02, 0x05, 0x01],             // END without headers
        ];
        for c in cases {
            let mut a = AjpAdapter::new(BodyKind::None, 8192);
            let mut input = Buf::standalone(64);
            input.put(c);
            let mut out = Buf::standalone(1024);
            let mut w = ResponseWriter::new();
            assert!(a.decode(&mut input, &mut out, &mut w, &ReqFacts::plain_get(), RetryMask(0)).is_err(), "{:02x?}", c);
            assert!(out.is_empty());
        }
    }

    /// SEND_HEADERS 200 with `Content-Length: 12`, then "hello world\n" in one chunk.
    fn small_response(input: &mut Buf) {
        input.put(&[0x41, 0x42, 0x00, 0x12, 0x04, 0x00, 0xc8, 0x00, 0x03, b'2', b'0', b'0', 0x00, 0x00, 0x01]);
        input.put(&[0xa0, 0x03, 0x00, 0x02, b'1', b'2', 0x00]);
        input.put(&[0x41, 0x42, 0x00, 0x10, 0x03, 0x00, 0x0C]);
        input.put(b"hello world\n\0");
    }

    #[test]
    fn a_response_complete_by_its_length_ends_before_end_response() {
        let mut a = AjpAdapter::new(BodyKind::None, 8192);
        let (mut input, mut out, mut w) = (Buf::standalone(4096), Buf::standalone(4096), ResponseWriter::new());
        small_response(&mut input);
        let step = a.decode(&mut input, &mut out, &mut w, &ReqFacts::plain_get(), RetryMask(0));
        assert_eq!(step, Ok(Step::Done { reusable: true }));
        assert!(String::from_utf8_lossy(out.data()).ends_with("\r\n\r\nhello world\n"));
        assert_eq!(a.unread_tail(), Some(&END_REUSE[..]), "END_RESPONSE still owed");
        // With END_RESPONSE already in, it is read as always: nothing owed.
        let mut b = AjpAdapter::new(BodyKind::None, 8192);
        let (mut out, mut w) = (Buf::standalone(4096), ResponseWriter::new());
        small_response(&mut input);
        input.put(&END_REUSE);
        assert_eq!(b.decode(&mut input, &mut out, &mut w, &ReqFacts::plain_get(), RetryMask(0)), Ok(Step::Done { reusable: true }));
        assert_eq!(b.unread_tail(), None);
        assert!(input.is_empty());
    }

    #[test]
    fn the_next_response_skips_the_tail_and_says_what_may_come_alone() {
        let mut a = AjpAdapter::new(BodyKind::None, 8192);
        a.after_unread_tail();
        let (mut input, mut out, mut w) = (Buf::standalone(4096), Buf::standalone(4096), ResponseWriter::new());
        input.put(&END_REUSE[..3]);
        assert_eq!(a.decode(&mut input, &mut out, &mut w, &ReqFacts::plain_get(), RetryMask(0)), Ok(Step::Blocked));
        assert!(!a.response_started(), "a tail is not a response");
        input.put(&END_REUSE[3..]);
        assert_eq!(a.decode(&mut input, &mut out, &mut w, &ReqFacts::plain_get(), RetryMask(0)), Ok(Step::Blocked));
        assert!(!a.response_started() && !a.next_may_be_tiny(), "SEND_HEADERS or GET_BODY_CHUNK next: 7 bytes or more");
        // A head without Content-Length: its END_RESPONSE may come alone.
        input.put(&[0x41, 0x42, 0x00, 0x08, 0x04, 0x00, 0xc8, 0x00, 0x00, 0x00, 0x00, 0x00]);
        assert_eq!(a.decode(&mut input, &mut out, &mut w, &ReqFacts::plain_get(), RetryMask(0)), Ok(Step::Blocked));
        assert!(a.response_started() && a.next_may_be_tiny());
        // An application's flush after its body (Tomcat's flush packet), or bytes past its
        // Content-Length, may come before the END_RESPONSE: skipped with it.
        let mut f = AjpAdapter::new(BodyKind::None, 8192);
        f.after_unread_tail();
        input.clear();
        input.put(&[0x41, 0x42, 0x00, 0x04, 0x03, 0x00, 0x00, 0x00]);
        input.put(&[0x41, 0x42, 0x00, 0x06, 0x03, 0x00, 0x02, b'x', b'y', 0x00]);
        input.put(&END_REUSE);
        assert_eq!(f.decode(&mut input, &mut out, &mut w, &ReqFacts::plain_get(), RetryMask(0)), Ok(Step::Blocked));
        assert!(input.is_empty() && !f.response_started());
        // Anything but END_RESPONSE where the tail should be is a broken backend.
        let mut c = AjpAdapter::new(BodyKind::None, 8192);
        c.after_unread_tail();
        input.clear();
        input.put(&[0x41, 0x42, 0x00, 0x04, 0x06, 0x1F, 0xFA, 0x00]);
        assert!(matches!(c.decode(&mut input, &mut out, &mut w, &ReqFacts::plain_get(), RetryMask(0)), Err(BackendError::Protocol(_))));
    }

    #[test]
    fn a_cpong_behind_the_tail() {
        let mut a = AjpAdapter::new(BodyKind::None, 8192).with_ping(Some(Duration::from_millis(300)));
        a.after_unread_tail();
        let mut out = Buf::standalone(64);
        assert!(a.begin_handshake(&mut out).is_some());
        let mut input = Buf::standalone(64);
        input.put(&END_REUSE);
        assert_eq!(a.handshake_input(&mut input, false), Ok(Handshake::Pending));
        assert!(a.next_may_be_tiny(), "a CPONG is 5 bytes");
        input.put(&[0x41, 0x42, 0x00, 0x01, CPONG]);
        assert_eq!(a.handshake_input(&mut input, false), Ok(Handshake::Done));
        // A tail that said "closing", then the close: a stale connection, not a CPING failure.
        let mut b = AjpAdapter::new(BodyKind::None, 8192).with_ping(Some(Duration::from_millis(300)));
        b.after_unread_tail();
        assert!(b.begin_handshake(&mut out).is_some());
        input.put(&[0x41, 0x42, 0x00, 0x02, END_RESPONSE, 0]);
        assert_eq!(b.handshake_input(&mut input, true), Err(BackendError::PrematureClose));
        // Closed before its tail came: stale too, not a CPING failure.
        let mut c = AjpAdapter::new(BodyKind::None, 8192).with_ping(Some(Duration::from_millis(300)));
        c.after_unread_tail();
        assert!(c.begin_handshake(&mut out).is_some());
        input.clear();
        assert_eq!(c.handshake_input(&mut input, true), Err(BackendError::PrematureClose));
    }
}
