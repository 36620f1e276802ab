//! The PROXY protocol header, versions 1 and 2 (haproxy's doc/proxy-protocol.txt), parsed
//! strictly from the bytes a connection has sent so far. `parse` is a pure function of those
//! bytes, and monotone: a prefix of a valid header is `Incomplete`, never `Invalid`, and once
//! bytes are `Invalid` no byte that follows can mend them — so a caller can peek at the socket
//! as often as bytes come and abort as soon as the header cannot be valid.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest version 1 header, CRLF included (the spec's worst case: `PROXY UNKNOWN` with
/// two full IPv6 addresses and ports).
pub(crate) const V1_MAX: usize = 107;

/// The longest version 2 header pounce takes, TLVs included: the spec's suggested 536 bytes
/// (the smallest TCP MSS), room for the addresses and the TLVs balancers send (AWS's VPC
/// endpoint, HAProxy's SSL and unique-id TLVs). A header that says it is longer is refused.
pub(crate) const V2_MAX: usize = 536;

/// Bytes a reader needs to see at once: enough for the longest header of either version.
pub(crate) const MAX_HEADER: usize = V2_MAX;

/// Version 2's signature: CR LF CR LF NUL CR LF "QUIT" LF.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
const V1_PREFIX: &[u8] = b"PROXY ";

/// The client a balancer relayed the connection for, and the address it had connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Relayed {
    pub(crate) src: SocketAddr,
    pub(crate) dst: SocketAddr,
}

/// A complete, valid header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Header {
    /// `PROXY TCP4|TCP6 ...`, or version 2's PROXY command for TCP over IPv4 or IPv6.
    Relayed(Relayed),
    /// A valid header without an address to use: version 1's `UNKNOWN`, version 2's LOCAL
    /// command (a balancer's health check), or an address family or transport pounce does not
    /// take (UNSPEC, AF_UNIX, UDP). The connection's own addresses stand.
    Local,
}

/// What the bytes so far are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// Everything so far can begin a valid header: more bytes are needed.
    Incomplete,
    /// A valid header of `len` bytes; what follows belongs to the client's protocol.
    Done { len: usize, header: Header },
    /// Not a valid header, whatever follows; the reason, for the error log.
    Invalid(&'static str),
}

/// Parses the start of a connection.
pub(crate) fn parse(data: &[u8]) -> Parsed {
    match data.first() {
        None => Parsed::Incomplete,
        Some(b'\r') => v2(data),
        Some(b'P') => v1(data),
        Some(_) => Parsed::Invalid("not a PROXY protocol header"),
    }
}

/// `a` begins `b`, or `b` begins `a`: the bytes so far agree with a fixed prefix.
fn agrees(data: &[u8], prefix: &[u8]) -> bool {
    let n = data.len().min(prefix.len());
    data[..n] == prefix[..n]
}

fn v1(data: &[u8]) -> Parsed {
    if !agrees(data, V1_PREFIX) {
        return Parsed::Invalid("not a PROXY protocol header");
    }
    let window = &data[..data.len().min(V1_MAX)];
    let Some(end) = window.iter().position(|&c| c == b'\r' || c == b'\n') else {
        if data.len() >= V1_MAX {
            return Parsed::Invalid("no CRLF within the first 107 bytes (version 1)");
        }
        return match v1_prefix_ok(&data[V1_PREFIX.len().min(data.len())..]) {
            true => Parsed::Incomplete,
            false => Parsed::Invalid("malformed version 1 header"),
        };
    };
    if window[end] == b'\n' {
        return Parsed::Invalid("a line ended by LF alone (version 1 needs CRLF)");
    }
    match window.get(end + 1) {
        // The LF is still to come: what precedes the CR must still be able to begin a line.
        None if end + 1 < V1_MAX && v1_prefix_ok(&data[V1_PREFIX.len().min(end)..end]) => return Parsed::Incomplete,
        None if end + 1 < V1_MAX => return Parsed::Invalid("malformed version 1 header"),
        None => return Parsed::Invalid("no CRLF within the first 107 bytes (version 1)"),
        Some(b'\n') => {}
        Some(_) => return Parsed::Invalid("a CR not followed by LF (version 1)"),
    }
    if end < V1_PREFIX.len() {
        return Parsed::Invalid("malformed version 1 header");
    }
    match v1_line(&data[V1_PREFIX.len()..end]) {
        Some(header) => Parsed::Done { len: end + 2, header },
        None => Parsed::Invalid("malformed version 1 header"),
    }
}

/// The part of a version 1 line after `PROXY `, without its CRLF.
fn v1_line(line: &[u8]) -> Option<Header> {
    // UNKNOWN: whatever precedes the CRLF is ignored (the spec).
    if line == b"UNKNOWN" || line.starts_with(b"UNKNOWN ") {
        return Some(Header::Local);
    }
    let mut fields = line.split(|&c| c == b' ');
    let v6 = match fields.next()? {
        b"TCP4" => false,
        b"TCP6" => true,
        _ => return None,
    };
    let (src, dst, sport, dport) = (fields.next()?, fields.next()?, fields.next()?, fields.next()?);
    if fields.next().is_some() {
        return None;
    }
    let (src, dst) = (v1_addr(src, v6)?, v1_addr(dst, v6)?);
    Some(Header::Relayed(Relayed { src: SocketAddr::new(src, v1_port(sport)?), dst: SocketAddr::new(dst, v1_port(dport)?) }))
}

/// An address in its canonical text: dotted decimal without leading zeros for TCP4, hex
/// groups for TCP6 (Rust's parsers are that strict).
fn v1_addr(text: &[u8], v6: bool) -> Option<IpAddr> {
    let s = std::str::from_utf8(text).ok()?;
    if v6 {
        s.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    } else {
        s.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    }
}

/// A port: decimal, 0..=65535, no leading zero.
fn v1_port(text: &[u8]) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || (text.len() > 1 && text[0] == b'0') || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// Can these bytes (after `PROXY `, no CR or LF yet) begin a valid line? Only the characters
/// each field may hold: a client sending garbage is refused at once, not at the timeout.
fn v1_prefix_ok(rest: &[u8]) -> bool {
    let Some(proto_end) = rest.iter().position(|&c| c == b' ') else {
        // The protocol's name is still coming.
        return [&b"UNKNOWN"[..], b"TCP4", b"TCP6"].iter().any(|p| rest.len() <= p.len() && agrees(rest, p));
    };
    let v6 = match &rest[..proto_end] {
        b"UNKNOWN" => return true,
        b"TCP4" => false,
        b"TCP6" => true,
        _ => return false,
    };
    let mut fields = rest[proto_end + 1..].split(|&c| c == b' ').peekable();
    let mut i = 0;
    while let Some(f) = fields.next() {
        let chars_ok = match i {
            0 | 1 if v6 => f.iter().all(|c| c.is_ascii_hexdigit() || *c == b':' || *c == b'.'),
            0 | 1 => f.iter().all(|c| c.is_ascii_digit() || *c == b'.'),
            2 | 3 => f.iter().all(u8::is_ascii_digit),
            _ => false,
        };
        // Only the field still coming may be empty (one space between fields).
        if !chars_ok || (f.is_empty() && fields.peek().is_some()) {
            return false;
        }
        i += 1;
    }
    true
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn v2(data: &[u8]) -> Parsed {
    if !agrees(data, &V2_SIGNATURE) {
        return Parsed::Invalid("not a PROXY protocol header");
    }
    if data.len() < 16 {
        return Parsed::Incomplete;
    }
    let (ver_cmd, fam, len) = (data[12], data[13], be16(&data[14..16]) as usize);
    if ver_cmd >> 4 != 2 {
        return Parsed::Invalid("unsupported version (version 2 signature, version byte not 2)");
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => return Parsed::Invalid("unknown command (version 2)"),
    };
    let (family, transport) = (fam >> 4, fam & 0x0f);
    if family > 3 || transport > 2 {
        return Parsed::Invalid("unknown address family or transport (version 2)");
    }
    let total = 16 + len;
    if total > V2_MAX {
        return Parsed::Invalid("version 2 header longer than 536 bytes");
    }
    if data.len() < total {
        return Parsed::Incomplete;
    }
    let body = &data[16..total];
    // LOCAL: the family and whatever follows are ignored (the spec); so is an UNSPEC family.
    if local || family == 0 {
        return Parsed::Done { len: total, header: Header::Local };
    }
    let addr_len = match family {
        1 => 12,
        2 => 36,
        _ => 216,
    };
    if body.len() < addr_len {
        return Parsed::Invalid("address block shorter than its family needs (version 2)");
    }
    if !tlvs_ok(&body[addr_len..]) {
        return Parsed::Invalid("malformed TLV (version 2)");
    }
    let header = match (family, transport) {
        (1, 1) => {
            let ip = |at: usize| IpAddr::V4(Ipv4Addr::new(body[at], body[at + 1], body[at + 2], body[at + 3]));
            Header::Relayed(Relayed { src: SocketAddr::new(ip(0), be16(&body[8..])), dst: SocketAddr::new(ip(4), be16(&body[10..])) })
        }
        (2, 1) => {
            let ip = |at: usize| {
                let mut o = [0u8; 16];
                o.copy_from_slice(&body[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(o))
            };
            Header::Relayed(Relayed { src: SocketAddr::new(ip(0), be16(&body[32..])), dst: SocketAddr::new(ip(16), be16(&body[34..])) })
        }
        // AF_UNIX, UDP, or an UNSPEC transport: nothing pounce can use as a TCP client's address.
        _ => Header::Local,
    };
    Parsed::Done { len: total, header }
}

/// The TLVs after the addresses tile them exactly (type, 16-bit length, value); their
/// contents are skipped.
fn tlvs_ok(mut rest: &[u8]) -> bool {
    while !rest.is_empty() {
        if rest.len() < 3 {
            return false;
        }
        let n = 3 + be16(&rest[1..3]) as usize;
        if n > rest.len() {
            return false;
        }
        rest = &rest[n..];
    }
    true
}
