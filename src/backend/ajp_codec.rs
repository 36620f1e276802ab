//! AJP13 bytes (../shared/ajp13.md §1–§5): packets are built in place in pooled buffers and
//! parsed from them, with no allocation. Every length is checked; a malformed packet is an
//! error, never a panic.

use crate::buffer::Buf;

pub const MAGIC_TO_TOMCAT: [u8; 2] = [0x12, 0x34];
pub const MAGIC_FROM_TOMCAT: [u8; 2] = [0x41, 0x42];
pub const DEFAULT_PACKET_SIZE: usize = 8192;

pub const FORWARD_REQUEST: u8 = 2;
pub const SEND_BODY_CHUNK: u8 = 3;
pub const SEND_HEADERS: u8 = 4;
pub const END_RESPONSE: u8 = 5;
pub const GET_BODY_CHUNK: u8 = 6;
pub const CPONG: u8 = 9;
pub const CPING: u8 = 10;

pub const CPING_PACKET: [u8; 5] = [0x12, 0x34, 0x00, 0x01, CPING];
/// End of the request body (§4.1).
pub const EMPTY_BODY_PACKET: [u8; 4] = [0x12, 0x34, 0x00, 0x00];

pub mod attr {
    pub const REMOTE_USER: u8 = 0x03;
    pub const QUERY_STRING: u8 = 0x05;
    pub const ROUTE: u8 = 0x06;
    pub const SSL_CERT: u8 = 0x07;
    pub const SSL_CIPHER: u8 = 0x08;
    pub const SSL_SESSION: u8 = 0x09;
    pub const SSL_KEY_SIZE: u8 = 0x0B;
    pub const REQ_ATTRIBUTE: u8 = 0x0A;
    pub const SECRET: u8 = 0x0C;
    pub const STORED_METHOD: u8 = 0x0D;
    pub const ARE_DONE: u8 = 0xFF;
}

const METHODS: [&str; 27] = [
    "OPTIONS",
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "TRACE",
    "PROPFIND",
    "PROPPATCH",
    "MKCOL",
    "COPY",
    "MOVE",
    "LOCK",
    "UNLOCK",
    "ACL",
    "REPORT",
    "VERSION-CONTROL",
    "CHECKIN",
    "CHECKOUT",
    "UNCHECKOUT",
    "SEARCH",
    "MKWORKSPACE",
    "UPDATE",
    "LABEL",
    "MERGE",
    "BASELINE-CONTROL",
    "MKACTIVITY",
];

/// The method byte (§3.2): 1..=27, or None for a method sent as stored_method.
pub fn method_code(m: &str) -> Option<u8> {
    METHODS.iter().position(|&x| x == m).map(|i| i as u8 + 1)
}

const REQUEST_HEADERS: [&str; 14] = [
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "authorization",
    "connection",
    "content-type",
    "content-length",
    "cookie",
    "cookie2",
    "host",
    "pragma",
    "referer",
    "user-agent",
];

const RESPONSE_HEADERS: [&[u8]; 11] = [
    b"Content-Type",
    b"Content-Language",
    b"Content-Length",
    b"Date",
    b"Last-Modified",
    b"Location",
    b"Set-Cookie",
    b"Set-Cookie2",
    b"Servlet-Engine",
    b"Status",
    b"WWW-Authenticate",
];

/// Code of a request header name (§3.3), compared case-insensitively.
pub fn request_header_code(name: &[u8]) -> Option<u16> {
    REQUEST_HEADERS.iter().position(|h| h.as_bytes().eq_ignore_ascii_case(name)).map(|i| 0xA001 + i as u16)
}

/// Builds one packet in `out`; the length is patched in `finish`.
pub struct PacketWriter<'a> {
    out: &'a mut Buf,
    start: usize,
    ok: bool,
}

impl<'a> PacketWriter<'a> {
    pub fn begin(out: &'a mut Buf) -> PacketWriter<'a> {
        let start = out.len();
        let ok = out.put_all(&MAGIC_TO_TOMCAT) && out.put_all(&[0, 0]);
        PacketWriter { out, start, ok }
    }

    #[inline(always)]
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.ok = self.ok && self.out.put_all(&[v]);
        self
    }

    #[inline(always)]
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.ok = self.ok && self.out.put_all(&v.to_be_bytes());
        self
    }

    #[inline(always)]
    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.ok = self.ok && self.out.put_all(b);
        self
    }

    /// An AJP string (length, bytes, NUL); None = the null string `FF FF`.
    #[inline]
    pub fn string(&mut self, s: Option<&[u8]>) -> &mut Self {
        match s {
            None => self.u16(0xFFFF),
            Some(b) if b.len() < 0xFFFF => {
                // Written in place with one bounds check (a request head has a dozen); the
                // pieces one by one only where the buffer must be compacted first.
                let n = b.len();
                if let Some(dst) = self.out.spare().get_mut(..n + 3) {
                    dst[..2].copy_from_slice(&(n as u16).to_be_bytes());
                    dst[2..2 + n].copy_from_slice(b);
                    dst[2 + n] = 0;
                    if self.ok {
                        self.out.commit(n + 3);
                    }
                    return self;
                }
                self.u16(n as u16).raw(b).u8(0)
            }
            Some(_) => {
                self.ok = false;
                self
            }
        }
    }

    /// The buffer itself, to append text in place (e.g. a rendered header template).
    pub fn buf(&mut self) -> &mut Buf {
        self.out
    }

    /// Offset in the buffer where the next byte goes.
    pub fn offset(&self) -> usize {
        self.out.len()
    }

    /// Patches a u16 written earlier at buffer offset `at`.
    pub fn patch_u16(&mut self, at: usize, v: u16) {
        if self.ok {
            self.out.data_mut()[at..at + 2].copy_from_slice(&v.to_be_bytes());
        }
    }

    /// Ends the packet; false (and nothing kept) when it overflowed the buffer or `max_packet`.
    pub fn finish(self, max_packet: usize) -> bool {
        let len = self.out.len() - self.start;
        if !self.ok || len > max_packet || len - 4 > 0xFFFF {
            self.out.truncate(self.start);
            return false;
        }
        let payload = (len - 4) as u16;
        self.out.data_mut()[self.start + 2..self.start + 4].copy_from_slice(&payload.to_be_bytes());
        true
    }
}

/// A request-body packet with `data` (§4.1): `12 34 | n+2 | n | data`.
pub fn put_body_packet(out: &mut Buf, data: &[u8]) -> bool {
    let n = data.len();
    if n > 0xFFFF - 2 || out.room() < n + 6 {
        return false;
    }
    out.put(&MAGIC_TO_TOMCAT);
    out.put(&((n + 2) as u16).to_be_bytes());
    out.put(&(n as u16).to_be_bytes());
    out.put(data);
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AjpError {
    BadMagic,
    BadLength,
    Truncated,
    UnknownType(u8),
    BadHeaderCode,
    BadChunk,
    BadReuse,
}

impl AjpError {
    pub fn describe(self) -> &'static str {
        match self {
            AjpError::BadMagic => "AJP packet with a wrong magic",
            AjpError::BadLength => "AJP packet length out of range",
            AjpError::Truncated => "truncated AJP packet",
            AjpError::UnknownType(_) => "unexpected AJP packet type",
            AjpError::BadHeaderCode => "AJP response header code out of range",
            AjpError::BadChunk => "AJP body chunk longer than its packet",
            AjpError::BadReuse => "invalid AJP END_RESPONSE reuse flag",
        }
    }
}

/// Reads a packet header from Tomcat: `(payload length, type)` once 5 bytes are there.
pub fn packet_head(input: &[u8], packet_size: usize) -> Result<Option<(usize, u8)>, AjpError> {
    if input.len() >= 2 && input[..2] != MAGIC_FROM_TOMCAT {
        return Err(AjpError::BadMagic);
    }
    if input.len() < 4 {
        return Ok(None);
    }
    let len = u16::from_be_bytes([input[2], input[3]]) as usize;
    if len == 0 || len > packet_size - 4 {
        return Err(AjpError::BadLength);
    }
    if input.len() < 5 {
        return Ok(None);
    }
    Ok(Some((len, input[4])))
}

/// A cursor over a payload with checked reads.
#[derive(Clone)]
pub struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    pub fn new(b: &'a [u8]) -> Reader<'a> {
        Reader { b, i: 0 }
    }

    pub fn u8(&mut self) -> Result<u8, AjpError> {
        let v = *self.b.get(self.i).ok_or(AjpError::Truncated)?;
        self.i += 1;
        Ok(v)
    }

    pub fn u16(&mut self) -> Result<u16, AjpError> {
        let s = self.b.get(self.i..self.i + 2).ok_or(AjpError::Truncated)?;
        self.i += 2;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }

    pub fn peek_u16(&self) -> Result<u16, AjpError> {
        let s = self.b.get(self.i..self.i + 2).ok_or(AjpError::Truncated)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }

    /// A string; the null string reads as empty.
    pub fn string(&mut self) -> Result<&'a [u8], AjpError> {
        let n = self.u16()?;
        if n == 0xFFFF {
            return Ok(b"");
        }
        let n = n as usize;
        let s = self.b.get(self.i..self.i + n).ok_or(AjpError::Truncated)?;
        if self.b.get(self.i + n) != Some(&0) {
            return Err(AjpError::Truncated);
        }
        self.i += n + 1;
        Ok(s)
    }

    pub fn at_end(&self) -> bool {
        self.i >= self.b.len()
    }
}

/// A parsed SEND_HEADERS payload (after the type byte): status and headers, validated.
pub struct SendHeaders<'a> {
    pub status: u16,
    pub content_length: Option<u64>,
    headers: &'a [u8],
    count: u16,
}

impl<'a> SendHeaders<'a> {
    pub fn parse(payload: &'a [u8]) -> Result<SendHeaders<'a>, AjpError> {
        let mut r = Reader::new(payload);
        let status = r.u16()?;
        let _message = r.string()?;
        let count = r.u16()?;
        let headers = &payload[r.i..];
        let mut sh = SendHeaders { status, content_length: None, headers, count };
        let mut cl = None;
        for h in sh.iter() {
            let (name, value) = h?;
            if name.eq_ignore_ascii_case(b"content-length") {
                cl = Some(crate::http::request::parse_decimal(value).ok_or(AjpError::Truncated)?);
            }
        }
        sh.content_length = cl;
        Ok(sh)
    }

    pub fn iter(&self) -> HeaderIter<'a> {
        HeaderIter { r: Reader::new(self.headers), left: self.count }
    }

    /// Headers after validation (errors were ruled out by `parse`).
    pub fn pairs(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone {
        self.iter().map_while(Result::ok)
    }
}

#[derive(Clone)]
pub struct HeaderIter<'a> {
    r: Reader<'a>,
    left: u16,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = Result<(&'a [u8], &'a [u8]), AjpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let item = (|| {
            let peek = self.r.peek_u16()?;
            let name: &'a [u8] = if peek & 0xFF00 == 0xA000 {
                self.r.u16()?;
                let code = (peek & 0xFF) as usize;
                if code == 0 || code > RESPONSE_HEADERS.len() {
                    return Err(AjpError::BadHeaderCode);
                }
                RESPONSE_HEADERS[code - 1]
            } else {
                self.r.string()?
            };
            let value = self.r.string()?;
            Ok((name, value))
        })();
        if item.is_err() {
            self.left = 0;
        }
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace().map(|b| u8::from_str_radix(b, 16).expect("hex")).collect()
    }

    /// The worked FORWARD_REQUEST of ajp13.md §9.2.
    #[test]
    fn worked_forward_request_vector() {
        let mut out = Buf::standalone(1024);
        let mut w = PacketWriter::begin(&mut out);
        w.u8(FORWARD_REQUEST).u8(method_code("GET").expect("GET"));
        w.string(Some(b"HTTP/1.1")).string(Some(b"/hello.txt")).string(Some(b"127.0.0.1")).string(Some(b"127.0.0.1")).string(Some(b"localhost"));
        w.u16(80).u8(0).u16(2);
        w.u16(request_header_code(b"Host").expect("code")).string(Some(b"localhost"));
        w.u16(request_header_code(b"user-agent").expect("code")).string(Some(b"curl/8.0"));
        w.u8(attr::QUERY_STRING).string(Some(b"x=1")).u8(attr::ARE_DONE);
        assert!(w.finish(8192));
        let want = hex("12 34 00 66 02 02 00 08 48 54 54 50 2f 31 2e 31
             00 00 0a 2f 68 65 6c 6c 6f 2e 74 78 74 00 00 09
             31 32 37 2e 30 2e 30 2e 31 00 00 09 31 32 37 2e
             30 2e 30 2e 31 00 00 09 6c 6f 63 61 6c 68 6f 73
             74 00 00 50 00 00 02 a0 0b 00 09 6c 6f 63 61 6c
             68 6f 73 74 00 a0 0e 00 08 63 75 72 6c 2f 38 2e
             30 00 05 00 03 78 3d 31 00 ff");
        assert_eq!(out.data(), &want[..]);
    }

    #[test]
    fn small_packets() {
        let mut out = Buf::standalone(64);
        assert!(put_body_packet(&mut out, b"hello"));
        assert_eq!(out.data(), &hex("12 34 00 07 00 05 68 65 6C 6C 6F")[..]);
        assert_eq!(CPING_PACKET, [0x12, 0x34, 0x00, 0x01, 0x0A]);
        let mut out = Buf::standalone(64);
        let mut w = PacketWriter::begin(&mut out);
        w.u8(attr::SECRET).string(Some(b"s3cret"));
        assert!(w.finish(8192));
        assert_eq!(&out.data()[4..], &hex("0C 00 06 73 33 63 72 65 74 00")[..]);
        assert_eq!(method_code("PATCH"), None);
        assert_eq!(method_code("BASELINE-CONTROL"), Some(26));
    }

    /// A packet of one string written into a buffer of `cap` bytes holding `kept` filler
    /// bytes after `consumed` were read: what the buffer then holds, None if it failed.
    fn one_string_packet(cap: usize, consumed: usize, kept: usize, s: &[u8]) -> Option<Vec<u8>> {
        let mut out = Buf::standalone(cap);
        assert!(out.put_all(&vec![9; consumed + kept]));
        out.consume(consumed);
        let mut w = PacketWriter::begin(&mut out);
        w.string(Some(s));
        w.finish(8192).then(|| out.data().to_vec())
    }

    #[test]
    fn strings_at_the_buffer_end() {
        // The free tail is too short for the string, the consumed front is not: the pieces
        // path, whose last byte compacts the buffer.
        let pieces = one_string_packet(32, 10, 10, b"abcdef");
        assert_eq!(pieces, Some(hex("09 09 09 09 09 09 09 09 09 09 12 34 00 09 00 06 61 62 63 64 65 66 00")));
        // The packet header ends exactly at the buffer's end: the string's own look for room
        // compacts it first.
        assert_eq!(one_string_packet(16, 10, 2, b"ab"), Some(hex("09 09 12 34 00 05 00 02 61 62 00")));
        // No room at all: the packet fails whole, and a later string cannot revive it.
        let mut out = Buf::standalone(12);
        let mut w = PacketWriter::begin(&mut out);
        w.string(Some(b"too long here")).string(Some(b"x"));
        assert!(!w.finish(8192));
        assert!(out.is_empty());
    }

    #[test]
    fn decodes_send_headers_vector() {
        let p = hex("41 42 00 21 04 00 c8 00 03 32 30 30 00 00 02 a0 01 00 0a 74 65 78 74 2f 70 6c 61 69 6e 00 a0 03 00 02 31 32 00");
        assert_eq!(packet_head(&p, 8192), Ok(Some((33, SEND_HEADERS))));
        let sh = SendHeaders::parse(&p[5..]).expect("valid");
        assert_eq!(sh.status, 200);
        assert_eq!(sh.content_length, Some(12));
        let hs: Vec<(&[u8], &[u8])> = sh.pairs().collect();
        assert_eq!(hs, vec![(&b"Content-Type"[..], &b"text/plain"[..]), (&b"Content-Length"[..], &b"12"[..])]);
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(packet_head(&hex("12 34 00 01 09"), 8192), Err(AjpError::BadMagic));
        assert_eq!(packet_head(&hex("41 42 20 00 03"), 8192), Err(AjpError::BadLength));
        assert_eq!(packet_head(&hex("41 42 00 00"), 8192), Err(AjpError::BadLength));
        // String length running past the payload.
        assert!(SendHeaders::parse(&hex("00 c8 00 09")).is_err());
        // Header codes A0 00 and A0 0C are out of range.
        assert_eq!(SendHeaders::parse(&hex("00 c8 00 00 00 00 01 a0 00 00 00 00")).err(), Some(AjpError::BadHeaderCode));
        assert_eq!(SendHeaders::parse(&hex("00 c8 00 00 00 00 01 a0 0c 00 00 00")).err(), Some(AjpError::BadHeaderCode));
        // A string without its NUL.
        assert!(SendHeaders::parse(&hex("00 c8 00 03 32 30 30 01 00 00")).is_err());
        // Overflowing packet in the writer.
        let mut out = Buf::standalone(16);
        let mut w = PacketWriter::begin(&mut out);
        w.raw(&[0; 20]);
        assert!(!w.finish(8192));
        assert!(out.is_empty());
    }
}
