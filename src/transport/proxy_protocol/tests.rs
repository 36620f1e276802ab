//! The PROXY protocol parser against the spec's vectors and against broken, truncated and
//! oversized headers.

use super::parse::{parse, Header, Parsed, Relayed, V1_MAX, V2_MAX};
use std::net::SocketAddr;

const SIG: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

fn relayed(src: &str, dst: &str) -> Header {
    Header::Relayed(Relayed { src: src.parse().expect("src"), dst: dst.parse().expect("dst") })
}

/// A version 2 header: command byte, family byte, and the bytes after the length.
fn v2(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
    let mut h = SIG.to_vec();
    h.extend([ver_cmd, fam]);
    h.extend((body.len() as u16).to_be_bytes());
    h.extend(body);
    h
}

fn v2_tcp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, tlvs: &[u8]) -> Vec<u8> {
    let mut b = [src, dst].concat();
    b.extend(sport.to_be_bytes());
    b.extend(dport.to_be_bytes());
    b.extend(tlvs);
    v2(0x21, 0x11, &b)
}

fn v2_tcp6(src: &str, dst: &str, sport: u16, dport: u16) -> Vec<u8> {
    let (s, d): (std::net::Ipv6Addr, std::net::Ipv6Addr) = (src.parse().expect("v6"), dst.parse().expect("v6"));
    let mut b = [s.octets(), d.octets()].concat();
    b.extend(sport.to_be_bytes());
    b.extend(dport.to_be_bytes());
    v2(0x21, 0x21, &b)
}

/// `header` parses to `want` with its own length, also with the client's bytes behind it,
/// and every shorter prefix of it is `Incomplete`.
fn check_valid(header: &[u8], want: Header) {
    assert_eq!(parse(header), Parsed::Done { len: header.len(), header: want }, "{:?}", header.escape_ascii().to_string());
    let mut more = header.to_vec();
    more.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(parse(&more), Parsed::Done { len: header.len(), header: want });
    for cut in 0..header.len() {
        assert_eq!(parse(&header[..cut]), Parsed::Incomplete, "{} of {} bytes of {:?}", cut, header.len(), header.escape_ascii().to_string());
    }
}

fn check_invalid(data: &[u8]) {
    assert!(matches!(parse(data), Parsed::Invalid(_)), "{:?} parsed as {:?}", data.escape_ascii().to_string(), parse(data));
    // Nothing that follows mends it.
    let mut more = data.to_vec();
    more.extend_from_slice(b"\r\n\r\nGET / HTTP/1.1\r\n");
    assert!(matches!(parse(&more), Parsed::Invalid(_)), "{:?} + more parsed as {:?}", data.escape_ascii().to_string(), parse(&more));
}

#[test]
fn v1_tcp4_and_tcp6() {
    // The spec's example.
    check_valid(b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", relayed("192.168.0.1:56324", "192.168.0.11:443"));
    check_valid(b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n", relayed("255.255.255.255:65535", "255.255.255.255:65535"));
    check_valid(b"PROXY TCP4 0.0.0.0 1.2.3.4 0 0\r\n", relayed("0.0.0.0:0", "1.2.3.4:0"));
    check_valid(b"PROXY TCP6 2001:db8::1 2001:db8::2 40000 443\r\n", relayed("[2001:db8::1]:40000", "[2001:db8::2]:443"));
    check_valid(b"PROXY TCP6 ::ffff:10.1.2.3 ::1 1 2\r\n", relayed("[::ffff:10.1.2.3]:1", "[::1]:2"));
    // The longest TCP6 line the spec names (104 bytes).
    let f = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    let line = format!("PROXY TCP6 {f} {f} 65535 65535\r\n");
    assert_eq!(line.len(), 104);
    check_valid(line.as_bytes(), relayed(&format!("[{f}]:65535"), &format!("[{f}]:65535")));
}

#[test]
fn v1_unknown() {
    check_valid(b"PROXY UNKNOWN\r\n", Header::Local);
    // The spec's worst case, 107 bytes: what follows UNKNOWN is ignored.
    let f = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    let line = format!("PROXY UNKNOWN {f} {f} 65535 65535\r\n");
    assert_eq!(line.len(), V1_MAX);
    check_valid(line.as_bytes(), Header::Local);
    check_valid(b"PROXY UNKNOWN anything at all\r\n", Header::Local);
}

#[test]
fn v1_malformed() {
    for bad in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
        b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
        b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
        b"PROXY TCP4 ::1 ::1 1 2\r\n",
        b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP6 ::1%eth0 ::1 1 2\r\n",
        b"PROXY TCP4\r\n",
        b"PROXY UNKNOWNX\r\n",
        b"PROXY UNK\r\n",
        b"PROXY\r\n",
        b"PROXY \r\n",
    ] {
        check_invalid(bad);
    }
}

#[test]
fn v1_garbage_is_refused_before_the_crlf() {
    for early in [&b"G"[..], b"PROXX", b"PROXY X", b"PROXY TCP4x", b"PROXY TCP4 1.2.3.a", b"PROXY TCP4 1.2.3.4  ", b"PROXY TCP6 ::1 ::1 1 2 3", b"PROXY UNK "] {
        assert!(matches!(parse(early), Parsed::Invalid(_)), "{:?}: {:?}", early.escape_ascii().to_string(), parse(early));
    }
}

/// Found by the fuzzer: a line whose CR has come but not its LF was `Incomplete` however
/// malformed, while its prefixes without the CR were already `Invalid`.
#[test]
fn v1_malformed_before_the_lf_is_refused_at_the_cr() {
    let crash = b"PROXY PRTCP6 OXY 2001: TCP6 db8::1 T2001:dl\xf4::2 40000 443\r";
    assert!(matches!(parse(crash), Parsed::Invalid(_)));
    assert!(matches!(parse(b"PROXY TCP4 1.2.3.x 5.6.7.8 1 2\r"), Parsed::Invalid(_)));
    assert_eq!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r"), Parsed::Incomplete);
}

#[test]
fn v1_oversized() {
    // UNKNOWN takes anything, but not past 107 bytes.
    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.resize(V1_MAX, b'x');
    check_invalid(&long);
    long.truncate(V1_MAX - 1);
    assert_eq!(parse(&long), Parsed::Incomplete);
    // The CRLF must end within the first 107 bytes: a CR as the 107th byte is too late.
    long.push(b'\r');
    check_invalid(&long);
    long.truncate(V1_MAX - 2);
    long.extend(b"\r\n");
    assert_eq!(parse(&long), Parsed::Done { len: V1_MAX, header: Header::Local });
}

#[test]
fn v2_tcp4_tcp6() {
    check_valid(&v2_tcp4([192, 168, 0, 1], [192, 168, 0, 11], 56324, 443, &[]), relayed("192.168.0.1:56324", "192.168.0.11:443"));
    check_valid(&v2_tcp6("2001:db8::1", "2001:db8::2", 40000, 443), relayed("[2001:db8::1]:40000", "[2001:db8::2]:443"));
}

#[test]
fn v2_tlvs_are_skipped() {
    // NOOP, an AWS VPC endpoint id (0xEA) and a CRC32C: skipped, not checked.
    let mut tlvs = vec![0x04, 0, 2, 0, 0];
    tlvs.extend([0xEA, 0, 23, 0x01]);
    tlvs.extend(b"vpce-08d2bf15fac5001c9");
    tlvs.extend([0x03, 0, 4, 1, 2, 3, 4]);
    check_valid(&v2_tcp4([10, 0, 0, 1], [10, 0, 0, 2], 1000, 80, &tlvs), relayed("10.0.0.1:1000", "10.0.0.2:80"));
    // A TLV that runs past the header, and a stray byte after the last one.
    check_invalid(&v2_tcp4([10, 0, 0, 1], [10, 0, 0, 2], 1000, 80, &[0x04, 0, 9, 0]));
    check_invalid(&v2_tcp4([10, 0, 0, 1], [10, 0, 0, 2], 1000, 80, &[0x04, 0, 0, 0xff]));
}

#[test]
fn v2_local_and_unspecified() {
    // LOCAL (a health check): the family and any bytes are ignored.
    check_valid(&v2(0x20, 0x00, &[]), Header::Local);
    check_valid(&v2(0x20, 0x11, &[1, 2, 3]), Header::Local);
    // PROXY with UNSPEC: nothing to use.
    check_valid(&v2(0x21, 0x00, &[]), Header::Local);
    // AF_UNIX stream (216 bytes of addresses) and UDP over IPv4: not a TCP client's address.
    check_valid(&v2(0x21, 0x31, &[0u8; 216]), Header::Local);
    check_valid(&v2(0x21, 0x12, &[1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]), Header::Local);
}

#[test]
fn v2_malformed() {
    let good = v2_tcp4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2, &[]);
    let with = |at: usize, b: u8| {
        let mut h = good.clone();
        h[at] = b;
        h
    };
    check_invalid(&with(11, b'X')); // the signature
    check_invalid(&with(0, b'\n'));
    check_invalid(&with(12, 0x11)); // version 1 in a version 2 header
    check_invalid(&with(12, 0x31)); // version 3
    check_invalid(&with(12, 0x22)); // command 2
    check_invalid(&with(13, 0x41)); // family 4
    check_invalid(&with(13, 0x13)); // transport 3
                                    // An address block shorter than its family: 8 bytes for TCP over IPv4, 12 for IPv6.
    check_invalid(&v2(0x21, 0x11, &[0; 8]));
    check_invalid(&v2(0x21, 0x21, &[0; 12]));
}

#[test]
fn v2_oversized() {
    let body = vec![0u8; V2_MAX - 16 + 1];
    let h = v2(0x21, 0x00, &body);
    // Refused from its first 16 bytes: the length says too much.
    assert!(matches!(parse(&h[..16]), Parsed::Invalid(_)));
    // The longest one taken.
    check_valid(&v2(0x21, 0x00, &body[1..]), Header::Local);
    // 0xffff: never waited for.
    let mut huge = SIG.to_vec();
    huge.extend([0x21, 0x11, 0xff, 0xff]);
    check_invalid(&huge);
}

#[test]
fn empty_and_nonsense() {
    assert_eq!(parse(b""), Parsed::Incomplete);
    for bad in [&b"\x16\x03\x01\x00"[..], b"\0", b" PROXY", b"\r\r"] {
        check_invalid(bad);
    }
}

#[test]
fn socket_address_of_relayed_client() {
    let Parsed::Done { header: Header::Relayed(r), .. } = parse(b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\n") else { panic!("valid") };
    assert_eq!(r.src, SocketAddr::from(([203, 0, 113, 7], 51000)));
}
