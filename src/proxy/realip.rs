//! nginx's realip module: which address a request's client has when a trusted proxy in front
//! of pounce says so. A connection's peer that `set_real_ip_from` trusts may name the client
//! in `real_ip_header` — X-Real-IP, X-Forwarded-For, another header, or the connection's PROXY
//! protocol header; a peer that is not trusted names nobody, whatever it sends. With
//! `real_ip_recursive on`, X-Forwarded-For is read backwards past every trusted address;
//! with `off` its last address is the client. A pure function of the settings, the
//! connection's addresses and the request head (`plan` calls it, as nginx runs it in its
//! post-read phase with the server's settings and again in its pre-access phase with the
//! location's, when the first found nothing).

use crate::config::{Cidr, RealIpHeader, Settings};
use crate::http::request::headers_named;
use std::net::{IpAddr, SocketAddr};

/// The client's address as `s` says to trust it, or None when the realip settings change
/// nothing (no `set_real_ip_from`, an untrusted peer, no header, no address in it).
pub(crate) fn client(s: &Settings, peer: SocketAddr, proxy_protocol: Option<SocketAddr>, req: &httparse::Request) -> Option<SocketAddr> {
    if s.set_real_ip_from.is_empty() {
        return None;
    }
    let from = &s.set_real_ip_from[..];
    match &s.real_ip_header {
        // The peer (the balancer) must be trusted; the header's address is taken with its port.
        RealIpHeader::ProxyProtocol => proxy_protocol.filter(|_| trusted(from, peer.ip())),
        RealIpHeader::XForwardedFor => {
            let last_first = req.headers.iter().rev().filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for")).map(|h| h.value);
            forwarded(from, peer, last_first, s.real_ip_recursive)
        }
        RealIpHeader::XRealIp => single(from, peer, headers_named(req, "x-real-ip").next(), s.real_ip_recursive),
        RealIpHeader::Other(name) => single(from, peer, headers_named(req, name).next(), s.real_ip_recursive),
    }
}

fn trusted(from: &[Cidr], ip: IpAddr) -> bool {
    from.iter().any(|c| c.matches(ip))
}

fn single(from: &[Cidr], peer: SocketAddr, value: Option<&[u8]>, recursive: bool) -> Option<SocketAddr> {
    let mut addr = peer;
    match walk(from, &mut addr, value?, recursive) {
        Walk::Declined => None,
        Walk::Ok | Walk::Done => Some(addr),
    }
}

/// Every X-Forwarded-For header, given the last one first (nginx's
/// `ngx_http_get_forwarded_addr`).
fn forwarded<'a>(from: &[Cidr], peer: SocketAddr, last_first: impl Iterator<Item = &'a [u8]>, recursive: bool) -> Option<SocketAddr> {
    let mut addr = peer;
    let mut rc = Walk::Declined;
    let mut found = false;
    for value in last_first {
        rc = walk(from, &mut addr, value, recursive);
        if !recursive {
            break;
        }
        if rc == Walk::Declined && found {
            rc = Walk::Done;
            break;
        }
        if rc != Walk::Ok {
            break;
        }
        found = true;
    }
    (rc != Walk::Declined).then_some(addr)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walk {
    /// Nothing taken from this value (`addr` is untouched).
    Declined,
    /// Addresses taken, and a stop before the value's start (an untrusted or unreadable one).
    Done,
    /// Addresses taken up to the value's start, or its last one when not recursive.
    Ok,
}

/// One header value, from its end: while `addr` is trusted, the address before it in the list
/// becomes `addr` (nginx's `ngx_http_get_forwarded_addr_internal`).
fn walk(from: &[Cidr], addr: &mut SocketAddr, value: &[u8], recursive: bool) -> Walk {
    let mut found = false;
    let mut end = value.len();
    loop {
        if !trusted(from, addr.ip()) {
            return if found { Walk::Done } else { Walk::Declined };
        }
        while end > 1 && matches!(value[end - 1], b' ' | b',') {
            end -= 1;
        }
        let start = value[..end].iter().rposition(|&c| c == b' ' || c == b',').map_or(0, |i| i + 1);
        match parse_addr(&value[start..end]) {
            Some(a) => *addr = a,
            None => return if found { Walk::Done } else { Walk::Declined },
        }
        found = true;
        if !recursive || start == 0 {
            return Walk::Ok;
        }
        end = start - 1;
    }
}

/// `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:80` (the port is
/// 0 when none is given), as nginx's `ngx_parse_addr_port`.
pub(crate) fn parse_addr(text: &[u8]) -> Option<SocketAddr> {
    let s = std::str::from_utf8(text).ok()?;
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 0));
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(a);
    }
    let ip = s.strip_prefix('[')?.strip_suffix(']')?.parse::<std::net::Ipv6Addr>().ok()?;
    Some(SocketAddr::new(ip.into(), 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(from: &[&str], header: RealIpHeader, recursive: bool) -> Settings {
        let from = from
            .iter()
            .map(|f| {
                let (ip, prefix) = f.split_once('/').unwrap_or((f, if f.contains(':') { "128" } else { "32" }));
                Cidr { net: ip.parse().expect("ip"), prefix: prefix.parse().expect("prefix") }
            })
            .collect();
        Settings { set_real_ip_from: from, real_ip_header: header, real_ip_recursive: recursive, ..Settings::default() }
    }

    /// The client realip finds for a request with `headers` from `peer`.
    fn run(s: &Settings, peer: &str, pp: Option<&str>, headers: &[(&str, &str)]) -> Option<String> {
        let hs: Vec<httparse::Header> = headers.iter().map(|(n, v)| httparse::Header { name: n, value: v.as_bytes() }).collect();
        let mut storage = hs.clone();
        let req = httparse::Request { method: Some("GET"), path: Some("/"), version: Some(1), headers: &mut storage };
        client(s, peer.parse().expect("peer"), pp.map(|p| p.parse().expect("pp")), &req).map(|a| a.to_string())
    }

    const XFF: RealIpHeader = RealIpHeader::XForwardedFor;

    #[test]
    fn x_forwarded_for_from_a_trusted_peer() {
        let s = settings(&["10.0.0.0/8"], XFF, false);
        // Not recursive: the last address, whatever it is.
        assert_eq!(run(&s, "10.0.0.1:5000", None, &[("X-Forwarded-For", "203.0.113.9, 10.1.1.1")]).as_deref(), Some("10.1.1.1:0"));
        assert_eq!(run(&s, "10.0.0.1:5000", None, &[("X-Forwarded-For", "203.0.113.9")]).as_deref(), Some("203.0.113.9:0"));
        // Spaces and commas at the end are skipped; a port is kept.
        assert_eq!(run(&s, "10.0.0.1:5000", None, &[("X-Forwarded-For", "1.1.1.1, 203.0.113.9:4711 ,, ")]).as_deref(), Some("203.0.113.9:4711"));
        assert_eq!(run(&s, "10.0.0.1:5000", None, &[("X-Forwarded-For", "[2001:db8::7]:99")]).as_deref(), Some("[2001:db8::7]:99"));
        // Not an address: nothing changes.
        assert_eq!(run(&s, "10.0.0.1:5000", None, &[("X-Forwarded-For", "unknown")]), None);
        assert_eq!(run(&s, "10.0.0.1:5000", None, &[("X-Forwarded-For", "")]), None);
        // No header: nothing changes.
        assert_eq!(run(&s, "10.0.0.1:5000", None, &[]), None);
    }

    #[test]
    fn spoofed_headers_from_an_untrusted_peer_are_ignored() {
        let s = settings(&["10.0.0.0/8"], XFF, true);
        assert_eq!(run(&s, "198.51.100.1:5000", None, &[("X-Forwarded-For", "1.2.3.4")]), None);
        let s = settings(&["10.0.0.0/8"], RealIpHeader::XRealIp, false);
        assert_eq!(run(&s, "198.51.100.1:5000", None, &[("X-Real-IP", "1.2.3.4")]), None);
        let s = settings(&["10.0.0.0/8"], RealIpHeader::ProxyProtocol, false);
        assert_eq!(run(&s, "198.51.100.1:5000", Some("1.2.3.4:99"), &[]), None);
        // No set_real_ip_from at all: realip is off.
        let s = settings(&[], XFF, true);
        assert_eq!(run(&s, "10.0.0.1:5000", None, &[("X-Forwarded-For", "1.2.3.4")]), None);
    }

    #[test]
    fn recursive_walks_back_past_trusted_proxies() {
        let s = settings(&["10.0.0.0/8", "192.168.0.0/16"], XFF, true);
        let xff = [("X-Forwarded-For", "203.0.113.9, 198.51.100.2, 192.168.1.1, 10.2.2.2")];
        // The first untrusted address from the right is the client.
        assert_eq!(run(&s, "10.0.0.1:1", None, &xff).as_deref(), Some("198.51.100.2:0"));
        // Off: the last one, trusted or not.
        let off = settings(&["10.0.0.0/8", "192.168.0.0/16"], XFF, false);
        assert_eq!(run(&off, "10.0.0.1:1", None, &xff).as_deref(), Some("10.2.2.2:0"));
        // All trusted: the first of the list.
        assert_eq!(run(&s, "10.0.0.1:1", None, &[("X-Forwarded-For", "10.9.9.9, 10.8.8.8")]).as_deref(), Some("10.9.9.9:0"));
        // Garbage in the middle stops the walk at the last good address.
        assert_eq!(run(&s, "10.0.0.1:1", None, &[("X-Forwarded-For", "203.0.113.9, bogus, 10.8.8.8")]).as_deref(), Some("10.8.8.8:0"));
        // Several headers: the last one first, on into the earlier ones while trusted.
        let two = [("X-Forwarded-For", "203.0.113.9, 10.7.7.7"), ("X-Forwarded-For", "10.8.8.8")];
        assert_eq!(run(&s, "10.0.0.1:1", None, &two).as_deref(), Some("203.0.113.9:0"));
        assert_eq!(run(&off, "10.0.0.1:1", None, &two).as_deref(), Some("10.8.8.8:0"));
        let stop = [("X-Forwarded-For", "203.0.113.9"), ("X-Forwarded-For", "198.51.100.2")];
        assert_eq!(run(&s, "10.0.0.1:1", None, &stop).as_deref(), Some("198.51.100.2:0"));
    }

    #[test]
    fn x_real_ip_other_headers_and_proxy_protocol() {
        let s = settings(&["127.0.0.1"], RealIpHeader::XRealIp, false);
        assert_eq!(run(&s, "127.0.0.1:1", None, &[("x-real-ip", "203.0.113.5")]).as_deref(), Some("203.0.113.5:0"));
        assert_eq!(run(&s, "127.0.0.1:1", None, &[("X-Forwarded-For", "203.0.113.5")]), None);
        let s = settings(&["127.0.0.1"], RealIpHeader::Other("cf-connecting-ip".into()), false);
        assert_eq!(run(&s, "127.0.0.1:1", None, &[("CF-Connecting-IP", "2001:db8::5")]).as_deref(), Some("[2001:db8::5]:0"));
        let s = settings(&["127.0.0.0/8"], RealIpHeader::ProxyProtocol, false);
        assert_eq!(run(&s, "127.0.0.1:1", Some("203.0.113.5:4000"), &[("X-Real-IP", "1.1.1.1")]).as_deref(), Some("203.0.113.5:4000"));
        // A connection without a PROXY header address (UNKNOWN, LOCAL): nothing.
        assert_eq!(run(&s, "127.0.0.1:1", None, &[]), None);
        // An IPv4 peer trusted through its IPv4-mapped IPv6 form, and the other way round.
        let s = settings(&["::ffff:127.0.0.1"], RealIpHeader::XRealIp, false);
        assert_eq!(run(&s, "127.0.0.1:1", None, &[("X-Real-IP", "203.0.113.5")]), None);
        let s = settings(&["127.0.0.1"], RealIpHeader::XRealIp, false);
        assert_eq!(run(&s, "[::ffff:127.0.0.1]:1", None, &[("X-Real-IP", "203.0.113.5")]).as_deref(), Some("203.0.113.5:0"));
    }

    #[test]
    fn addresses_as_nginx_reads_them() {
        let p = |s: &str| parse_addr(s.as_bytes()).map(|a| a.to_string());
        assert_eq!(p("1.2.3.4").as_deref(), Some("1.2.3.4:0"));
        assert_eq!(p("1.2.3.4:8080").as_deref(), Some("1.2.3.4:8080"));
        assert_eq!(p("::1").as_deref(), Some("[::1]:0"));
        assert_eq!(p("[::1]").as_deref(), Some("[::1]:0"));
        assert_eq!(p("[::1]:8").as_deref(), Some("[::1]:8"));
        for bad in ["", "1.2.3", "1.2.3.4:", "1.2.3.4:99999", "[::1", "host", "1.2.3.4 "] {
            assert_eq!(p(bad), None, "{:?}", bad);
        }
    }
}
