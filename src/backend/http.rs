//! The HTTP/1.1 backend adapter: forwards the request head with hop-by-hop headers removed
//! and the proxy headers added, re-frames chunked request bodies, and parses the backend's
//! response (Content-Length, chunked or close-delimited) into the client's response.

use super::{BackendError, ForwardRequest, Handshake, KeepAliveHint, Protocol, RetryMask, Step};
use crate::buffer::{Buf, PutText};
use crate::config::{Part, Var};
use crate::http::chunked::{size_line, ChunkedDecoder};
use crate::http::request::{header, headers_named, host_name, parse_decimal, trim, BodyKind, Method, MAX_HEADERS};
use crate::http::writer::{hop_by_hop, ReqFacts, ResponseWriter};

enum Resp {
    Head,
    Length(u64),
    Chunked(ChunkedDecoder),
    Close,
    /// Body complete; the client's terminator may still have to be written.
    End,
}

pub struct HttpAdapter {
    chunked_body: bool,
    /// The client asked to upgrade: forward it, and accept a 101.
    upgrade: bool,
    /// The request body's end was written (the last chunk, or nothing for a length body).
    ended: bool,
    head_request: bool,
    resp: Resp,
    reusable: bool,
    started: bool,
    hint: KeepAliveHint,
}

impl HttpAdapter {
    pub fn new(method: Method, body: BodyKind, upgrade: bool) -> HttpAdapter {
        HttpAdapter {
            chunked_body: body == BodyKind::Chunked,
            upgrade,
            ended: false,
            head_request: method == Method::Head,
            resp: Resp::Head,
            reusable: false,
            started: false,
            hint: KeepAliveHint::default(),
        }
    }
}

/// Request headers pounce replaces or must not forward as they are.
fn dropped_request_header(name: &str) -> bool {
    const DROP: [&str; 7] = ["host", "content-length", "expect", "x-forwarded-for", "x-real-ip", "x-forwarded-proto", "proxy-authorization"];
    hop_by_hop(name.as_bytes()) || DROP.iter().any(|d| d.eq_ignore_ascii_case(name))
}

/// Does some Connection header name a header (beyond close / keep-alive / upgrade)?
/// Checked once per request so the per-header test below is skipped in the usual case.
pub fn connection_names_headers(req: &httparse::Request) -> bool {
    headers_named(req, "connection").any(|v| {
        v.split(|&c| c == b',').any(|t| {
            let t = trim(t);
            !t.is_empty() && !t.eq_ignore_ascii_case(b"close") && !t.eq_ignore_ascii_case(b"keep-alive") && !t.eq_ignore_ascii_case(b"upgrade")
        })
    })
}

/// Is `name` listed in one of the request's Connection headers (so hop-by-hop)?
pub fn connection_listed(req: &httparse::Request, name: &str) -> bool {
    headers_named(req, "connection").any(|v| {
        v.split(|&c| c == b',').any(|t| {
            let t = trim(t);
            !t.eq_ignore_ascii_case(b"close") && !t.eq_ignore_ascii_case(b"keep-alive") && t.eq_ignore_ascii_case(name.as_bytes())
        })
    })
}

/// Writes the value of one `proxy_set_header` variable.
pub fn put_var(out: &mut Buf, var: Var, fr: &ForwardRequest) -> bool {
    let req = fr.req;
    let path = req.path.unwrap_or("/");
    match var {
        Var::Host => match header(req, "host") {
            Some(h) => {
                let name = host_name(h);
                name.iter().all(|&c| out.put_all(&[c.to_ascii_lowercase()]))
            }
            None => out.put_all(host_name(fr.default_host.as_bytes())),
        },
        Var::HttpHost => out.put_all(header(req, "host").unwrap_or(b"")),
        Var::RemoteAddr => out.put_ip(fr.client.ip()),
        Var::RemotePort => out.put_num(fr.client.port() as u64),
        Var::RealipRemoteAddr => out.put_ip(fr.conn_peer().ip()),
        Var::RealipRemotePort => out.put_num(fr.conn_peer().port() as u64),
        // Empty without a PROXY protocol address (so a header set from it is not sent).
        Var::ProxyProtocolAddr => fr.proxy_protocol().is_none_or(|a| out.put_ip(a.ip())),
        Var::ProxyProtocolPort => fr.proxy_protocol().is_none_or(|a| out.put_num(a.port() as u64)),
        Var::Scheme => out.put_all(fr.scheme().as_bytes()),
        Var::ServerName => out.put_all(fr.server_name.as_bytes()),
        Var::ServerPort => out.put_num(fr.local_port as u64),
        Var::ProxyHost => out.put_all(fr.proxy_host.as_bytes()),
        Var::ProxyAddXForwardedFor => {
            let mut ok = true;
            for v in headers_named(req, "x-forwarded-for") {
                ok = ok && out.put_all(trim(v)) && out.put_all(b", ");
            }
            ok && out.put_ip(fr.client.ip())
        }
        Var::RequestUri => out.put_all(path.as_bytes()),
        Var::Uri => out.put_all(fr.uri),
        Var::Args => out.put_all(path.split_once('?').map_or("", |(_, a)| a).as_bytes()),
        Var::RequestMethod => out.put_all(req.method.unwrap_or("GET").as_bytes()),
        Var::SslProtocol | Var::SslCipher | Var::SslClientCert | Var::SslClientEscapedCert | Var::SslClientSDn => put_tls_var(out, var, fr),
        Var::SslClientVerify | Var::SslServerName | Var::SslSessionId | Var::SslSessionReused => put_tls_var(out, var, fr),
    }
}

/// nginx's `$ssl_*` variables: empty on a plain connection (so a header set from one is not
/// sent at all).
fn put_tls_var(out: &mut Buf, var: Var, fr: &ForwardRequest) -> bool {
    let Some(t) = fr.tls else { return true };
    let cert = t.client.as_ref();
    match var {
        Var::SslProtocol => out.put_all(t.protocol.as_bytes()),
        Var::SslCipher => out.put_all(t.cipher.as_bytes()),
        // nginx's (deprecated) form: every line after the first starts with a tab.
        Var::SslClientCert => cert.is_none_or(|c| {
            let pem = c.pem.trim_end().as_bytes();
            pem.split(|&b| b == b'\n').enumerate().all(|(i, line)| (i == 0 || out.put_all(b"\n\t")) && out.put_all(line))
        }),
        Var::SslClientEscapedCert => cert.is_none_or(|c| c.pem.bytes().all(|b| put_urlencoded(out, b))),
        Var::SslClientSDn => cert.is_none_or(|c| out.put_all(c.subject.as_bytes())),
        Var::SslClientVerify => out.put_all(t.client_verify().as_bytes()),
        Var::SslServerName => out.put_all(t.sni.as_deref().unwrap_or("").as_bytes()),
        Var::SslSessionId => {
            let mut hex = [0u8; 64];
            out.put_all(t.session_hex(&mut hex).as_bytes())
        }
        Var::SslSessionReused => out.put_all(if t.resumed { b"r" } else { b"." }),
        _ => true,
    }
}

/// One byte of nginx's `$ssl_client_escaped_cert` (URL encoding of everything but unreserved).
fn put_urlencoded(out: &mut Buf, b: u8) -> bool {
    if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
        out.put_all(&[b])
    } else {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        out.put_all(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]])
    }
}

pub fn put_template(out: &mut Buf, parts: &[Part], fr: &ForwardRequest) -> bool {
    parts.iter().all(|p| match p {
        Part::Lit(s) => out.put_all(s.as_bytes()),
        Part::Var(v) => put_var(out, *v, fr),
    })
}

impl Protocol for HttpAdapter {
    fn begin_handshake(&mut self, _out: &mut Buf) -> Option<std::time::Duration> {
        None
    }

    fn handshake_input(&mut self, _input: &mut Buf, _eof: bool) -> Result<Handshake, BackendError> {
        Ok(Handshake::Done)
    }

    fn encode_head(&mut self, fr: &ForwardRequest, out: &mut Buf) -> bool {
        let req = fr.req;
        let (Some(method), Some(path)) = (req.method, req.path) else { return false };
        let sets = &fr.settings.proxy_set_header;
        let is_set = |name: &str| sets.iter().any(|h| h.name.eq_ignore_ascii_case(name));
        let mut ok = out.put_all(method.as_bytes()) && out.put_all(b" ") && out.put_all(path.as_bytes()) && out.put_all(b" HTTP/1.1\r\nHost: ");
        // Without a Host from the client (HTTP/1.0), the server's name or address: never the
        // upstream's name, which a backend may refuse (Tomcat answers 400 to `tomcats_http`).
        ok = ok
            && match sets.iter().find(|h| h.name.eq_ignore_ascii_case("host")) {
                Some(h) => put_template(out, &h.value, fr),
                None => out.put_all(header(req, "host").map(trim).unwrap_or(fr.default_host.as_bytes())),
            };
        ok = ok && out.put_all(b"\r\n");
        let listed = connection_names_headers(req);
        for h in req.headers.iter() {
            if !ok {
                break;
            }
            if dropped_request_header(h.name) || is_set(h.name) || (listed && connection_listed(req, h.name)) {
                continue;
            }
            ok = out.put_all(h.name.as_bytes()) && out.put_all(b": ") && out.put_all(h.value) && out.put_all(b"\r\n");
        }
        if !is_set("x-real-ip") {
            ok = ok && out.put_all(b"X-Real-IP: ") && out.put_ip(fr.client.ip()) && out.put_all(b"\r\n");
        }
        if !is_set("x-forwarded-for") {
            ok = ok && out.put_all(b"X-Forwarded-For: ") && put_var(out, Var::ProxyAddXForwardedFor, fr) && out.put_all(b"\r\n");
        }
        if !is_set("x-forwarded-proto") {
            ok = ok && out.put_all(b"X-Forwarded-Proto: ") && out.put_all(fr.scheme().as_bytes()) && out.put_all(b"\r\n");
        }
        if let Some(via) = fr.settings.proxy_via.value() {
            ok = ok && out.put_all(b"Via: ") && out.put_all(via.as_bytes()) && out.put_all(b"\r\n");
        }
        if fr.meta.upgrade {
            ok = ok && out.put_all(b"Upgrade: ") && out.put_all(header(req, "upgrade").map(trim).unwrap_or(b"")) && out.put_all(b"\r\nConnection: upgrade\r\n");
        }
        for h in sets.iter().filter(|h| !h.name.eq_ignore_ascii_case("host")) {
            if !ok {
                break;
            }
            // nginx: a header whose value comes out empty is not sent.
            let mark = out.len();
            ok = out.put_all(h.name.as_bytes()) && out.put_all(b": ");
            let value_start = out.len();
            ok = ok && put_template(out, &h.value, fr);
            if ok && out.len() == value_start {
                out.truncate(mark);
            } else {
                ok = ok && out.put_all(b"\r\n");
            }
        }
        ok =
            ok && match fr.meta.body {
                BodyKind::None => {
                    // Keep an explicit "Content-Length: 0" for methods that normally carry a body.
                    if matches!(fr.meta.method, Method::Post | Method::Put | Method::Patch) {
                        out.put_all(b"Content-Length: 0\r\n")
                    } else {
                        true
                    }
                }
                BodyKind::Length(n) => out.put_all(b"Content-Length: ") && out.put_num(n) && out.put_all(b"\r\n"),
                BodyKind::Chunked => out.put_all(b"Transfer-Encoding: chunked\r\n"),
            } && (fr.meta.upgrade || is_set("connection") || out.put_all(if fr.keepalive { b"Connection: keep-alive\r\n" } else { b"Connection: close\r\n" }))
                && out.put_all(b"\r\n");
        ok
    }

    fn body_credit(&self) -> usize {
        usize::MAX
    }

    fn encode_body(&mut self, data: &[u8], out: &mut Buf) -> usize {
        if !self.chunked_body {
            return out.put(data);
        }
        let n = data.len().min(out.room().saturating_sub(20));
        if n == 0 {
            return 0;
        }
        let mut line = [0u8; 18];
        let l = size_line(n, &mut line);
        out.put(&line[..l]);
        out.put(&data[..n]);
        out.put(b"\r\n");
        n
    }

    fn encode_body_end(&mut self, out: &mut Buf) -> bool {
        if self.ended || (self.chunked_body && !out.put_all(b"0\r\n\r\n")) {
            return false;
        }
        self.ended = true;
        self.chunked_body
    }

    fn request_complete(&self) -> bool {
        self.ended
    }

    fn decode(&mut self, input: &mut Buf, out: &mut Buf, w: &mut ResponseWriter, facts: &ReqFacts, retry: RetryMask) -> Result<Step, BackendError> {
        if !input.is_empty() {
            self.started = true;
        }
        loop {
            match &mut self.resp {
                Resp::Head => {
                    if input.is_empty() {
                        return Ok(Step::Blocked);
                    }
                    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    let mut resp = httparse::Response::new(&mut headers);
                    let n = match resp.parse(input.data()) {
                        Ok(httparse::Status::Complete(n)) => n,
                        Ok(httparse::Status::Partial) if input.is_full() => return Err(BackendError::InvalidHeader("upstream sent too big header")),
                        Ok(httparse::Status::Partial) => return Ok(Step::Blocked),
                        Err(_) => return Err(BackendError::InvalidHeader("upstream sent invalid header")),
                    };
                    let status = resp.code.unwrap_or(0);
                    if !(100..=999).contains(&status) {
                        return Err(BackendError::InvalidHeader("upstream sent invalid status"));
                    }
                    if (100..200).contains(&status) && status != 101 {
                        input.consume(n);
                        continue;
                    }
                    if status == 101 && !self.upgrade {
                        return Err(BackendError::InvalidHeader("upstream switched protocols unasked"));
                    }
                    if retry.has(status) {
                        return Ok(Step::RetryStatus(status));
                    }
                    let minor = resp.version.unwrap_or(0);
                    let mut keep = minor == 1;
                    let mut length: Option<u64> = None;
                    let mut chunked = false;
                    for h in resp.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            match parse_decimal(h.value) {
                                Some(v) if length.is_none_or(|l| l == v) => length = Some(v),
                                _ => return Err(BackendError::InvalidHeader("upstream sent invalid Content-Length")),
                            }
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            if !trim(h.value).eq_ignore_ascii_case(b"chunked") {
                                return Err(BackendError::InvalidHeader("upstream sent unknown Transfer-Encoding"));
                            }
                            chunked = true;
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            for t in h.value.split(|&c| c == b',') {
                                let t = trim(t);
                                if t.eq_ignore_ascii_case(b"close") {
                                    keep = false;
                                } else if t.eq_ignore_ascii_case(b"keep-alive") && minor == 0 {
                                    keep = true;
                                }
                            }
                        } else if h.name.eq_ignore_ascii_case("keep-alive") {
                            self.hint.parse_header(h.value);
                        }
                    }
                    let bodiless = self.head_request || status == 204 || status == 304 || status == 101;
                    let next = if bodiless {
                        Resp::End
                    } else if chunked {
                        length = None;
                        Resp::Chunked(ChunkedDecoder::new())
                    } else if let Some(l) = length {
                        Resp::Length(l)
                    } else {
                        keep = false;
                        Resp::Close
                    };
                    let hs = resp.headers.iter().map(|h| (h.name.as_bytes(), h.value));
                    if !w.head(out, status, hs, if bodiless { length.or(Some(0)).filter(|_| !self.head_request) } else { length }, facts) {
                        if out.is_empty() {
                            return Err(BackendError::InvalidHeader("upstream sent too big header"));
                        }
                        return Ok(Step::Blocked);
                    }
                    self.reusable = keep && status != 101;
                    self.hint.closing = !keep;
                    input.consume(n);
                    self.resp = next;
                }
                Resp::Length(left) => {
                    if *left == 0 {
                        self.resp = Resp::End;
                        continue;
                    }
                    let taken = w.pass(out, input, (*left).min(usize::MAX as u64) as usize);
                    if taken == 0 {
                        return Ok(Step::Blocked);
                    }
                    *left -= taken as u64;
                }
                Resp::Chunked(dec) => {
                    let room = w.room(out);
                    let (mut used, data) = dec.decode(input.data(), room).map_err(|_| BackendError::Protocol("upstream sent invalid chunked response"))?;
                    if let Some((off, len)) = data {
                        let mut tmp_off = off;
                        let mut left = len;
                        while left > 0 {
                            // Within room the writer takes it all, unless it compresses.
                            let t = w.data(out, &input.data()[tmp_off..tmp_off + left]);
                            if t == 0 {
                                break;
                            }
                            tmp_off += t;
                            left -= t;
                        }
                        // What the writer did not take is decoded again next time.
                        dec.unread(left);
                        used -= left;
                    }
                    let done = dec.is_done();
                    input.consume(used);
                    if done {
                        self.resp = Resp::End;
                    } else if used == 0 {
                        return Ok(Step::Blocked);
                    }
                }
                Resp::Close => {
                    if w.pass(out, input, usize::MAX) == 0 {
                        return Ok(Step::Blocked);
                    }
                }
                Resp::End => {
                    if !w.finish(out) {
                        return Ok(Step::Blocked);
                    }
                    return Ok(Step::Done { reusable: self.reusable && input.is_empty() });
                }
            }
        }
    }

    fn eof(&mut self, out: &mut Buf, w: &mut ResponseWriter) -> Result<Step, BackendError> {
        match self.resp {
            Resp::Close => {
                self.resp = Resp::End;
                self.reusable = false;
                if !w.finish(out) {
                    return Ok(Step::Blocked);
                }
                Ok(Step::Done { reusable: false })
            }
            Resp::End => Ok(Step::Blocked),
            _ => Err(BackendError::PrematureClose),
        }
    }

    fn response_started(&self) -> bool {
        self.started
    }

    fn keepalive_hint(&self) -> KeepAliveHint {
        self.hint
    }

    /// An HTTP backend's pauses may be meant (streaming): what arrives goes out at once.
    fn hold_output(&self) -> bool {
        false
    }

    fn unread_tail(&self) -> Option<&'static [u8]> {
        None
    }

    fn after_unread_tail(&mut self) {}

    fn next_may_be_tiny(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::http::request::{empty_headers, parse, Parse, MAX_HEAD};

    fn encode(raw: &[u8], settings: &Settings) -> String {
        let mut h = empty_headers();
        let Parse::Done(req, meta) = parse(raw, &mut h, MAX_HEAD) else { panic!("parse") };
        let fr = ForwardRequest {
            proxy_host: "tomcats",
            keepalive: true,
            ..ForwardRequest::new(&req, &meta, "10.1.2.3:5555".parse().expect("addr"), 8080, "front", settings)
        };
        let mut out = Buf::standalone(4096);
        let mut a = HttpAdapter::new(meta.method, meta.body, meta.upgrade);
        assert!(a.encode_head(&fr, &mut out), "fits");
        String::from_utf8_lossy(out.data()).to_string()
    }

    #[test]
    fn forwarded_head() {
        let s = encode(
            b"GET /a?b=1 HTTP/1.1\r\nHost: Example.com:8080\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nX-Forwarded-For: 1.1.1.1\r\nKeep-Alive: 300\r\nAccept: */*\r\n\r\n",
            &Settings::default(),
        );
        assert_eq!(
            s,
            "GET /a?b=1 HTTP/1.1\r\nHost: Example.com:8080\r\nAccept: */*\r\nX-Real-IP: 10.1.2.3\r\nX-Forwarded-For: 1.1.1.1, 10.1.2.3\r\nX-Forwarded-Proto: http\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn set_header_and_chunked() {
        let st = Settings {
            proxy_set_header: vec![
                crate::config::HeaderSet { name: "Host".into(), value: vec![Part::Var(Var::ProxyHost)] },
                crate::config::HeaderSet { name: "X-Empty".into(), value: vec![] },
                crate::config::HeaderSet { name: "X-Port".into(), value: vec![Part::Lit("p".into()), Part::Var(Var::ServerPort)] },
            ],
            ..Settings::default()
        };
        let s = encode(b"POST /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nX-Empty: gone\r\n\r\n", &st);
        assert!(s.starts_with("POST /u HTTP/1.1\r\nHost: tomcats\r\n"), "{s}");
        assert!(!s.contains("X-Empty"));
        assert!(s.contains("X-Port: p8080\r\n"));
        assert!(s.ends_with("Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"));
        // nginx's recipe, `proxy_set_header Connection "";`, removes it.
        let st = Settings { proxy_set_header: vec![crate::config::HeaderSet { name: "Connection".into(), value: vec![] }], ..Settings::default() };
        assert!(!encode(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", &st).contains("Connection"));
    }

    #[test]
    fn decodes_chunked_response_in_pieces() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        for split in 1..raw.len() {
            let mut a = HttpAdapter::new(Method::Get, BodyKind::None, false);
            let mut input = Buf::standalone(1024);
            let mut out = Buf::standalone(1024);
            let mut w = ResponseWriter::new();
            input.put(&raw[..split]);
            let mut step = a.decode(&mut input, &mut out, &mut w, &ReqFacts::plain_get(), RetryMask(0)).expect("ok");
            input.put(&raw[split..]);
            if step == Step::Blocked {
                step = a.decode(&mut input, &mut out, &mut w, &ReqFacts::plain_get(), RetryMask(0)).expect("ok");
            }
            assert_eq!(step, Step::Done { reusable: true }, "split {split}");
            let s = String::from_utf8_lossy(out.data()).to_string();
            let (head, body) = s.split_once("\r\n\r\n").expect("head");
            assert_eq!(head, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked");
            let mut dec = ChunkedDecoder::new();
            let (mut at, mut payload) = (0, Vec::new());
            while !dec.is_done() {
                let (used, data) = dec.decode(&body.as_bytes()[at..], 100).expect("valid chunked output");
                if let Some((o, n)) = data {
                    payload.extend_from_slice(&body.as_bytes()[at + o..at + o + n]);
                }
                at += used;
            }
            assert_eq!(payload, b"abcde");
            assert_eq!(at, body.len());
        }
    }

    #[test]
    fn retry_status_and_invalid() {
        let mut a = HttpAdapter::new(Method::Get, BodyKind::None, false);
        let mut input = Buf::standalone(1024);
        let mut out = Buf::standalone(1024);
        let mut w = ResponseWriter::new();
        input.put(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(a.decode(&mut input, &mut out, &mut w, &ReqFacts::plain_get(), RetryMask(crate::config::next::HTTP_503)), Ok(Step::RetryStatus(503)));
        assert!(out.is_empty());
        let mut a = HttpAdapter::new(Method::Get, BodyKind::None, false);
        let mut input = Buf::standalone(1024);
        input.put(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
        assert!(matches!(a.decode(&mut input, &mut out, &mut w, &ReqFacts::plain_get(), RetryMask(0)), Err(BackendError::InvalidHeader(_))));
        let mut a = HttpAdapter::new(Method::Get, BodyKind::None, false);
        let mut input = Buf::standalone(1024);
        input.put(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
        assert_eq!(a.decode(&mut input, &mut out, &mut w, &ReqFacts::plain_get(), RetryMask(0)), Ok(Step::Blocked));
        assert_eq!(a.eof(&mut out, &mut w), Err(BackendError::PrematureClose));
    }
}
