//! Client request heads: parsed with httparse, then checked the way nginx checks them, so
//! that everything pounce forwards has one unambiguous meaning.

pub const MAX_HEADERS: usize = 100;
/// Default limit for a whole request head (request line plus headers).
pub const MAX_HEAD: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Trace,
    Patch,
    Lock,
    Other,
}

impl Method {
    pub fn parse(m: &str) -> Method {
        match m {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "TRACE" => Method::Trace,
            "PATCH" => Method::Patch,
            "LOCK" => Method::Lock,
            _ => Method::Other,
        }
    }

    /// nginx's rule for `proxy_next_upstream`: POST, LOCK and PATCH are not retried once
    /// sent. Unknown extension methods are treated the same way, to be safe.
    pub fn idempotent(self) -> bool {
        !matches!(self, Method::Post | Method::Lock | Method::Patch | Method::Other)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    None,
    Length(u64),
    Chunked,
}

/// What the rest of pounce needs to know about a parsed request, besides its raw head.
#[derive(Debug, Clone, Copy)]
pub struct RequestMeta {
    /// Bytes of the head including the empty line.
    pub head_len: usize,
    pub method: Method,
    pub minor: u8,
    pub keep_alive: bool,
    pub body: BodyKind,
    pub expect_continue: bool,
    /// `Upgrade` with `Connection: upgrade` (WebSocket and friends).
    pub upgrade: bool,
}

impl RequestMeta {
    /// Stand-in for answers given before a request could be parsed.
    pub fn placeholder() -> RequestMeta {
        RequestMeta { head_len: 0, method: Method::Get, minor: 1, keep_alive: false, body: BodyKind::None, expect_continue: false, upgrade: false }
    }
}

/// Result of looking at the start of the client's buffer.
pub enum Parse<'b, 'h> {
    /// Not a whole head yet.
    Partial,
    Done(httparse::Request<'h, 'b>, RequestMeta),
    /// Answer with this status and close.
    Reject(u16, &'static str),
    /// An HTTP/1.x request with x above 1: to be served as HTTP/1.1 (RFC 9112 §2.6) once the
    /// minor version digit at this offset reads `1`.
    Downgrade(usize),
}

pub fn empty_headers() -> [httparse::Header<'static>; MAX_HEADERS] {
    [httparse::EMPTY_HEADER; MAX_HEADERS]
}

/// Parses and validates a request head at the start of `buf`.
pub fn parse<'b, 'h>(buf: &'b [u8], headers: &'h mut [httparse::Header<'b>], max_head: usize) -> Parse<'b, 'h> {
    let mut req = httparse::Request::new(&mut *headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() >= max_head {
                return if memchr_nl(&buf[..max_head]) { Parse::Reject(431, "request header too large") } else { Parse::Reject(414, "request line too long") };
            }
            return Parse::Partial;
        }
        Err(httparse::Error::TooManyHeaders) => return Parse::Reject(431, "too many request headers"),
        Err(httparse::Error::Version) => {
            match later_minor(buf) {
                Some(Some(at)) => return Parse::Downgrade(at),
                Some(None) if buf.len() < max_head => return Parse::Partial,
                _ => {}
            }
            // "PRI * HTTP/2.0" (an HTTP/2 preface) and any HTTP/2+ request line.
            return if buf.starts_with(b"PRI * HTTP/2") || looks_like_other_version(buf) {
                Parse::Reject(505, "HTTP version not supported")
            } else {
                Parse::Reject(400, "invalid HTTP version")
            };
        }
        Err(_) => return Parse::Reject(400, "malformed request"),
    };
    if head_len > max_head {
        let line_len = buf.iter().position(|&c| c == b'\n').unwrap_or(head_len);
        return if line_len >= max_head { Parse::Reject(414, "request line too long") } else { Parse::Reject(431, "request header too large") };
    }
    let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Parse::Reject(400, "malformed request");
    };
    // Absolute form (`GET http://host/path`): routed and forwarded as origin form, with the
    // target's authority as Host (RFC 9112 3.2.2), as nginx does.
    let (path, authority) = match split_absolute(path) {
        Some(Some((origin, authority))) => (origin, Some(authority)),
        Some(None) => return Parse::Reject(400, "invalid authority in absolute request target"),
        None if path.starts_with('/') || (method == "OPTIONS" && path == "*") => (path, None),
        None => return Parse::Reject(400, "invalid request target"),
    };
    let method_kind = Method::parse(method);
    let mut keep_alive = minor == 1;
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut te_seen = false;
    let mut host_seen = false;
    let mut expect_continue = false;
    let mut upgrade_header = false;
    let mut connection_upgrade = false;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let Some(n) = parse_decimal(h.value) else { return Parse::Reject(400, "invalid Content-Length") };
            if content_length.is_some() {
                return Parse::Reject(400, "duplicate Content-Length");
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if te_seen {
                return Parse::Reject(501, "several Transfer-Encoding headers");
            }
            te_seen = true;
            if trim(h.value).eq_ignore_ascii_case(b"chunked") {
                chunked = true;
            } else {
                return Parse::Reject(501, "unsupported transfer coding");
            }
        } else if name.eq_ignore_ascii_case("host") {
            if host_seen {
                return Parse::Reject(400, "duplicate Host");
            }
            host_seen = true;
            if !valid_host(trim(h.value)) {
                return Parse::Reject(400, "invalid Host");
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&c| c == b',') {
                let t = trim(token);
                if t.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if t.eq_ignore_ascii_case(b"keep-alive") && minor == 0 {
                    keep_alive = true;
                } else if t.eq_ignore_ascii_case(b"upgrade") {
                    connection_upgrade = true;
                }
            }
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade_header = !trim(h.value).is_empty();
        } else if name.eq_ignore_ascii_case("expect") {
            if trim(h.value).eq_ignore_ascii_case(b"100-continue") {
                expect_continue = minor == 1;
            } else {
                return Parse::Reject(417, "unsupported Expect");
            }
        }
    }
    if minor == 1 && !host_seen {
        return Parse::Reject(400, "missing Host");
    }
    if chunked && content_length.is_some() {
        return Parse::Reject(400, "both Content-Length and Transfer-Encoding");
    }
    if chunked && minor == 0 {
        return Parse::Reject(400, "Transfer-Encoding in an HTTP/1.0 request");
    }
    let body = match (chunked, content_length) {
        (true, _) => BodyKind::Chunked,
        (false, Some(0)) | (false, None) => BodyKind::None,
        (false, Some(n)) => BodyKind::Length(n),
    };
    // The parsed request is rebuilt over the whole header array (room for a Host).
    let mut n = req.headers.len();
    if let Some(authority) = authority {
        let room = headers.len();
        match headers[..n].iter_mut().find(|h| h.name.eq_ignore_ascii_case("host")) {
            Some(h) => h.value = authority,
            None if n < room => {
                headers[n] = httparse::Header { name: "Host", value: authority };
                n += 1;
            }
            None => return Parse::Reject(431, "too many request headers"),
        }
    }
    let req = httparse::Request { method: Some(method), path: Some(path), version: Some(minor), headers: &mut headers[..n] };
    let meta = RequestMeta {
        head_len,
        method: method_kind,
        minor,
        keep_alive,
        body,
        expect_continue: expect_continue && body != BodyKind::None,
        upgrade: upgrade_header && connection_upgrade && minor == 1,
    };
    Parse::Done(req, meta)
}

/// For an absolute-form target: `Some(Some((origin form, authority)))` (origin `/` when the
/// target has no path), `Some(None)` when the authority is not a valid host (user info, a
/// bad character) or no path follows it; `None` for other forms.
#[allow(clippy::option_option)]
fn split_absolute(target: &str) -> Option<Option<(&str, &[u8])>> {
    let rest = target.strip_prefix("http://").or_else(|| target.strip_prefix("https://"))?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest.as_bytes()[..end];
    let origin = match &rest[end..] {
        "" => "/",
        o if o.starts_with('?') => return Some(None),
        o => o,
    };
    Some(valid_host(authority).then_some((origin, authority)))
}

fn memchr_nl(b: &[u8]) -> bool {
    b.contains(&b'\n')
}

/// For a request line ending in `HTTP/1.2` … `HTTP/1.9`: the offset of its minor digit
/// (`Some(None)`: the line may be that, but has not ended yet).
#[allow(clippy::option_option)]
fn later_minor(buf: &[u8]) -> Option<Option<usize>> {
    let line_end = buf.iter().position(|&c| c == b'\r' || c == b'\n');
    let line = &buf[..line_end.unwrap_or(buf.len())];
    let sp = line.iter().rposition(|&c| c == b' ')?;
    match &line[sp + 1..] {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', m] if (b'2'..=b'9').contains(m) => Some(line_end.map(|e| e - 1)),
        _ => None,
    }
}

/// A request line that names a well-formed HTTP version other than 1.x (`HTTP/2`,
/// `HTTP/3.0`): 505 rather than 400.
fn looks_like_other_version(buf: &[u8]) -> bool {
    let line_end = buf.iter().position(|&c| c == b'\r' || c == b'\n').unwrap_or(buf.len());
    let line = &buf[..line_end];
    let Some(sp) = line.iter().rposition(|&c| c == b' ') else { return false };
    let Some(v) = line[sp + 1..].strip_prefix(b"HTTP/") else { return false };
    match v {
        b"1.0" | b"1.1" => false,
        [major] | [major, b'.', _] if major.is_ascii_digit() => v.last().is_some_and(u8::is_ascii_digit),
        _ => false,
    }
}

/// The value of the first header called `name` (case-insensitive): the one lookup every
/// part of pounce uses.
pub fn header<'b>(req: &httparse::Request<'_, 'b>, name: &str) -> Option<&'b [u8]> {
    req.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
}

/// The values of every header called `name`, in order.
pub fn headers_named<'r, 'b>(req: &'r httparse::Request<'_, 'b>, name: &'r str) -> impl Iterator<Item = &'b [u8]> + 'r {
    req.headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
}

pub fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&c| c != b' ' && c != b'\t').unwrap_or(v.len());
    let end = v.iter().rposition(|&c| c != b' ' && c != b'\t').map_or(start, |e| e + 1);
    &v[start..end]
}

/// Digits only: no sign, no spaces inside, no overflow.
pub fn parse_decimal(v: &[u8]) -> Option<u64> {
    let v = trim(v);
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for &c in v {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (c - b'0') as u64;
    }
    Some(n)
}

/// A Host header value: host name, IPv4 or [IPv6], optional port; no slashes, no spaces.
fn valid_host(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= 255
        && v.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b':' | b'[' | b']'))
        && !v.starts_with(b".")
}

/// `host` without the port, lower-cased into `out` (for server_name matching).
pub fn host_name(v: &[u8]) -> &[u8] {
    let v = trim(v);
    if v.starts_with(b"[") {
        return match v.iter().position(|&c| c == b']') {
            Some(e) => &v[..=e],
            None => v,
        };
    }
    match v.iter().rposition(|&c| c == b':') {
        Some(p) => &v[..p],
        None => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(raw: &[u8]) -> u16 {
        let mut h = empty_headers();
        match parse(raw, &mut h, MAX_HEAD) {
            Parse::Partial => 0,
            Parse::Done(..) => 200,
            Parse::Reject(s, _) => s,
            Parse::Downgrade(_) => 101,
        }
    }

    #[test]
    fn later_minor_versions_are_served_as_1_1() {
        let mut raw = b"GET / HTTP/1.2\r\nHost: a\r\n\r\n".to_vec();
        let mut h = empty_headers();
        let Parse::Downgrade(at) = parse(&raw, &mut h, MAX_HEAD) else { panic!("HTTP/1.2 is 1.1") };
        raw[at] = b'1';
        let mut h = empty_headers();
        assert!(matches!(parse(&raw, &mut h, MAX_HEAD), Parse::Done(_, m) if m.minor == 1));
        assert_eq!(status_of(b"GET / HTTP/1.9\nHost: a\n\n"), 101);
        assert_eq!(status_of(b"GET / HTTP/1.2"), 0, "an incomplete line waits");
    }

    #[test]
    fn accepts_and_classifies() {
        let mut h = empty_headers();
        let raw = b"POST /a?b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello";
        match parse(raw, &mut h, MAX_HEAD) {
            Parse::Done(req, m) => {
                assert_eq!(req.path, Some("/a?b"));
                assert_eq!(m.body, BodyKind::Length(5));
                assert!(m.keep_alive && m.expect_continue);
                assert_eq!(m.head_len, raw.len() - 5);
                assert_eq!(m.method, Method::Post);
            }
            _ => panic!("should parse"),
        }
    }

    #[test]
    fn rejects() {
        assert_eq!(status_of(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
        assert_eq!(status_of(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"), 400);
        assert_eq!(status_of(b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"), 501);
        assert_eq!(status_of(b"GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status_of(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
        assert_eq!(status_of(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
        assert_eq!(status_of(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 505);
        assert_eq!(status_of(b"GET / HTTP/3.0\r\nHost: a\r\n\r\n"), 505);
        assert_eq!(status_of(b"GET / HTTP/1.10\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status_of(b"GET / HTTP/1.x\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status_of(b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status_of(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"), 400);
        assert_eq!(status_of(b"GET / HTTP/1.1\r\nHost: x\r\nExpect: bogus\r\n\r\n"), 417);
        assert_eq!(status_of(b"GET / HTTP/1.1\r\nHost: x\r\n"), 0);
        assert_eq!(status_of(b"GET / HTTP/1.0\r\n\r\n"), 200);
        let long = [b"GET /".as_slice(), &[b'a'; 9000]].concat();
        assert_eq!(status_of(&long), 414);
        let mut big = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
        while big.len() < 9000 {
            big.extend_from_slice(b"X-Filler: 0123456789012345678901234567890123456789\r\n");
        }
        assert_eq!(status_of(&big), 431);
    }

    #[test]
    fn absolute_form_becomes_origin_form() {
        let mut h = empty_headers();
        match parse(b"GET http://Example.com:8080/a?b HTTP/1.1\r\nHost: other\r\n\r\n", &mut h, MAX_HEAD) {
            Parse::Done(req, _) => {
                assert_eq!(req.path, Some("/a?b"));
                let host: Vec<_> = headers_named(&req, "host").collect();
                assert_eq!(host, vec![b"Example.com:8080".as_slice()]);
            }
            _ => panic!("should parse"),
        }
        let mut h = empty_headers();
        match parse(b"GET http://a.example HTTP/1.0\r\n\r\n", &mut h, MAX_HEAD) {
            Parse::Done(req, _) => {
                assert_eq!(req.path, Some("/"));
                assert_eq!(req.headers.len(), 1);
                assert_eq!((req.headers[0].name, req.headers[0].value), ("Host", b"a.example".as_slice()));
            }
            _ => panic!("should parse"),
        }
        assert_eq!(status_of(b"GET http://user@a.example/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status_of(b"GET ftp://a.example/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status_of(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), 200);
        assert_eq!(status_of(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    }

    #[test]
    fn hosts() {
        assert_eq!(host_name(b"Example.com:8080"), b"Example.com");
        assert_eq!(host_name(b"[::1]:80"), b"[::1]");
        assert_eq!(parse_decimal(b" 42 "), Some(42));
        assert_eq!(parse_decimal(b"4 2"), None);
    }
}
