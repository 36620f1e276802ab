//! Client addresses: `set_real_ip_from`, `real_ip_header`, `real_ip_recursive` (nginx's
//! realip module, inherited http → server → location) and `proxy_protocol_timeout` (how long a
//! `listen ... proxy_protocol` connection has to send its header).

use super::builder::{Builder, Scope};
use super::lexer::{err, ConfError, Directive};
use super::values::{on_off, positive_time_arg};
use std::net::IpAddr;

type Done = Result<(), ConfError>;

/// An address block: `10.0.0.0/8`, `2001:db8::/32`, or one address (all bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub net: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// Prefix 0 matches every address, IPv4 or IPv6; an IPv4-mapped IPv6 address is matched
    /// as the IPv4 address it carries (as nginx's `ngx_cidr_match`).
    pub fn matches(&self, ip: IpAddr) -> bool {
        if self.prefix == 0 {
            return true;
        }
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX << (32 - u32::from(self.prefix.min(32)));
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX << (128 - u32::from(self.prefix.min(128)));
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }

    /// `ADDR` or `ADDR/PREFIX`; None when it is neither.
    pub(super) fn parse(text: &str) -> Option<Result<Cidr, String>> {
        let (ip, prefix) = match text.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (text, None),
        };
        let net: IpAddr = ip.parse().ok()?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        Some(match prefix {
            None => Ok(Cidr { net, prefix: max }),
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && p.bytes().all(|c| c.is_ascii_digit()) => Ok(Cidr { net, prefix: n }),
                _ => Err(format!("invalid prefix in \"{}\"", text)),
            },
        })
    }
}

/// `real_ip_header`: where a trusted peer's claim of the client's address is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RealIpHeader {
    /// `X-Real-IP` (the default).
    XRealIp,
    /// `X-Forwarded-For`: every such header, read from the last address backwards.
    XForwardedFor,
    /// `proxy_protocol`: the address of the connection's PROXY protocol header.
    ProxyProtocol,
    /// Any other header, by its name in lower case.
    Other(String),
}

/// `set_real_ip_from ADDR|CIDR|unix:` (repeatable): peers trusted to say who the client is.
pub(super) fn set_real_ip_from(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    let a = &d.args[0];
    let list = s.patch(d)?.set_real_ip_from.get_or_insert_with(Vec::new);
    // pounce listens on TCP only: no connection comes over a UNIX socket, so `unix:` trusts
    // nothing (accepted for nginx configurations).
    if a == "unix:" {
        return Ok(());
    }
    match Cidr::parse(a) {
        Some(Ok(c)) => list.push(c),
        Some(Err(e)) => return err(&d.pos, e),
        None => return err(&d.pos, format!("invalid address \"{}\" in \"set_real_ip_from\" (an address or a CIDR block; host names are not resolved)", a)),
    }
    Ok(())
}

/// `real_ip_header X-Real-IP|X-Forwarded-For|proxy_protocol|NAME`.
pub(super) fn real_ip_header(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    let a = &d.args[0];
    let patch = s.patch(d)?;
    if patch.real_ip_header.is_some() {
        return err(&d.pos, "\"real_ip_header\" directive is duplicate");
    }
    let h = match a.as_str() {
        "X-Real-IP" => RealIpHeader::XRealIp,
        "X-Forwarded-For" => RealIpHeader::XForwardedFor,
        "proxy_protocol" => RealIpHeader::ProxyProtocol,
        n if !n.is_empty() && n.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_') => RealIpHeader::Other(n.to_ascii_lowercase()),
        _ => return err(&d.pos, format!("invalid header name \"{}\" in \"real_ip_header\"", a)),
    };
    patch.real_ip_header = Some(h);
    Ok(())
}

pub(super) fn real_ip_recursive(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.patch(d)?.real_ip_recursive = Some(on_off(d, &d.args[0])?);
    Ok(())
}

pub(super) fn proxy_protocol_timeout(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    let t = positive_time_arg(d, &d.args[0])?;
    s.patch(d)?.proxy_protocol_timeout = Some(t);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::parser::tests::load_str;
    use super::*;

    fn cidr(s: &str) -> Cidr {
        match Cidr::parse(s) {
            Some(Ok(c)) => c,
            other => panic!("{}: {:?}", s, other),
        }
    }

    #[test]
    fn cidr_matching() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let c = cidr("10.0.0.0/8");
        assert!(c.matches(ip("10.0.0.0")) && c.matches(ip("10.255.255.255")) && c.matches(ip("::ffff:10.1.2.3")));
        assert!(!c.matches(ip("11.0.0.0")) && !c.matches(ip("9.255.255.255")) && !c.matches(ip("::a00:1")));
        let one = cidr("192.168.1.7");
        assert_eq!(one.prefix, 32);
        assert!(one.matches(ip("192.168.1.7")) && !one.matches(ip("192.168.1.6")));
        // Host bits in the block are ignored, as nginx does (with a warning there).
        assert!(cidr("172.16.5.4/12").matches(ip("172.31.0.1")));
        assert!(!cidr("172.16.5.4/12").matches(ip("172.32.0.1")));
        let v6 = cidr("2001:db8::/32");
        assert!(v6.matches(ip("2001:db8:ffff::1")) && !v6.matches(ip("2001:db9::1")) && !v6.matches(ip("10.0.0.1")));
        assert!(cidr("::1").matches(ip("::1")) && !cidr("::1").matches(ip("::2")));
        assert!(cidr("0.0.0.0/0").matches(ip("2001:db8::1")) && cidr("::/0").matches(ip("1.2.3.4")));
        assert!(cidr("1.2.3.4/31").matches(ip("1.2.3.5")) && !cidr("1.2.3.4/31").matches(ip("1.2.3.6")));
        assert!(cidr("2001:db8::1/128").matches(ip("2001:db8::1")) && !cidr("2001:db8::1/127").matches(ip("2001:db8::2")));
        for bad in ["10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/+8", "10.0.0.0/a"] {
            assert!(matches!(Cidr::parse(bad), Some(Err(_))), "{}", bad);
        }
        for not_addr in ["example.com", "10.0.0", "", "/8"] {
            assert!(Cidr::parse(not_addr).is_none(), "{}", not_addr);
        }
    }

    #[test]
    fn directives_and_inheritance() {
        let c = load_str(
            "http {\n set_real_ip_from 10.0.0.0/8;\n set_real_ip_from ::1;\n set_real_ip_from unix:;\n real_ip_header X-Forwarded-For;\n \
             server {\n  listen 127.0.0.1:1 proxy_protocol;\n  proxy_protocol_timeout 5s;\n  location /a { real_ip_recursive on; }\n  \
             location /b { set_real_ip_from 192.168.0.0/16; real_ip_header proxy_protocol; }\n  location /c { real_ip_header CF-Connecting-IP; }\n }\n}\n",
        )
        .expect("valid");
        assert!(c.http.listens[0].proxy_protocol && !c.http.listens[0].ssl);
        let srv = &c.http.servers[0];
        assert_eq!(srv.settings.proxy_protocol_timeout, std::time::Duration::from_secs(5));
        let [a, b, cc] = [&srv.locations[0].settings, &srv.locations[1].settings, &srv.locations[2].settings];
        assert_eq!(a.set_real_ip_from, vec![cidr("10.0.0.0/8"), cidr("::1")]);
        assert_eq!((&a.real_ip_header, a.real_ip_recursive), (&RealIpHeader::XForwardedFor, true));
        assert_eq!(b.set_real_ip_from, vec![cidr("192.168.0.0/16")]);
        assert_eq!((&b.real_ip_header, b.real_ip_recursive), (&RealIpHeader::ProxyProtocol, false));
        assert_eq!(cc.real_ip_header, RealIpHeader::Other("cf-connecting-ip".into()));
        let d = load_str("http { server { listen 127.0.0.1:1; } }").expect("valid");
        let s = &d.http.servers[0].settings;
        assert!(s.set_real_ip_from.is_empty() && s.real_ip_header == RealIpHeader::XRealIp && !s.real_ip_recursive && !d.http.listens[0].proxy_protocol);
        assert_eq!(s.proxy_protocol_timeout, std::time::Duration::from_secs(30));
    }

    #[test]
    fn errors_name_file_and_line() {
        for (text, msg) in [
            ("http {\n set_real_ip_from 10.0.0.0/33;\n}\n", "t.conf:2: invalid prefix in \"10.0.0.0/33\""),
            ("http {\n set_real_ip_from lb.example.com;\n}\n", "t.conf:2: invalid address \"lb.example.com\" in \"set_real_ip_from\""),
            ("http {\n real_ip_header X-Real-IP;\n real_ip_header X-Forwarded-For;\n}\n", "t.conf:3: \"real_ip_header\" directive is duplicate"),
            ("http {\n real_ip_header \"X Real\";\n}\n", "t.conf:2: invalid header name"),
            ("http {\n real_ip_recursive maybe;\n}\n", "t.conf:2:"),
            ("http {\n server {\n  proxy_protocol_timeout 0;\n }\n}\n", "t.conf:3: \"proxy_protocol_timeout\" must be positive"),
            ("http {\n server {\n  location / { proxy_protocol_timeout 5s; }\n }\n}\n", "t.conf:3: \"proxy_protocol_timeout\" directive is not allowed here"),
            ("http {\n server {\n  listen 1 proxy_protocols;\n }\n}\n", "t.conf:3: invalid parameter \"proxy_protocols\""),
        ] {
            let e = load_str(text).expect_err(text).to_string();
            assert!(e.contains(msg), "{:?}: {}", text, e);
        }
    }
}
