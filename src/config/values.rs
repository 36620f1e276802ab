//! Argument parsers shared by the directives: numbers, times, sizes, `on|off`, access rules,
//! listen addresses, `host[:port]` resolution and `$variable` templates. Each names the
//! directive in its error message.

use super::lexer::{err, ConfError, Directive};
use super::units::{parse_size, parse_time};
use super::{AccessRule, Part, Var};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

pub(super) fn time_arg(d: &Directive, s: &str) -> Result<Duration, ConfError> {
    parse_time(s).map_or_else(|| err(&d.pos, format!("invalid time \"{}\" in \"{}\" directive", s, d.name)), Ok)
}

/// A time that must not be zero (a timeout): `"NAME" must be positive` otherwise.
pub(super) fn positive_time_arg(d: &Directive, s: &str) -> Result<Duration, ConfError> {
    let t = time_arg(d, s)?;
    if t.is_zero() {
        return err(&d.pos, format!("\"{}\" must be positive", d.name));
    }
    Ok(t)
}

pub(super) fn size_arg(d: &Directive, s: &str) -> Result<u64, ConfError> {
    parse_size(s).map_or_else(|| err(&d.pos, format!("invalid size \"{}\" in \"{}\" directive", s, d.name)), Ok)
}

pub(super) fn num_arg(d: &Directive, s: &str) -> Result<u64, ConfError> {
    s.parse::<u64>().or_else(|_| err(&d.pos, format!("invalid number \"{}\" in \"{}\" directive", s, d.name)))
}

pub(super) fn on_off(d: &Directive, s: &str) -> Result<bool, ConfError> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => err(&d.pos, format!("invalid value \"{}\" in \"{}\" directive, it must be \"on\" or \"off\"", s, d.name)),
    }
}

/// `all`, `ADDR` or `ADDR/PREFIX` (IPv4 or IPv6).
pub(super) fn parse_rule(d: &Directive, allow: bool) -> Result<AccessRule, ConfError> {
    let a = &d.args[0];
    if a == "all" {
        return Ok(AccessRule { allow, net: std::net::Ipv4Addr::UNSPECIFIED.into(), prefix: 0 });
    }
    let (ip, prefix) = match a.split_once('/') {
        Some((ip, p)) => (ip, Some(p)),
        None => (a.as_str(), None),
    };
    let net: std::net::IpAddr = ip.parse().or_else(|_| err(&d.pos, format!("invalid address \"{}\" in \"{}\"", a, d.name)))?;
    let max = if net.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => match p.parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => return err(&d.pos, format!("invalid prefix in \"{}\"", a)),
        },
    };
    Ok(AccessRule { allow, net, prefix })
}

/// `[ADDR:]PORT`, `ADDR`, `[::1]:PORT`, `*:PORT`.
pub(super) fn parse_listen(d: &Directive, s: &str) -> Result<SocketAddr, ConfError> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(([0, 0, 0, 0], port).into());
    }
    if let Some(port) = s.strip_prefix("*:") {
        if let Ok(port) = port.parse::<u16>() {
            return Ok(([0, 0, 0, 0], port).into());
        }
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let addrs = resolve_addr(d, s, Some(80))?;
    Ok(addrs[0])
}

/// Resolves `host[:port]` (once, at load time); `default_port` when the port may be left out.
pub(super) fn resolve_addr(d: &Directive, s: &str, default_port: Option<u16>) -> Result<Vec<SocketAddr>, ConfError> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(vec![a]);
    }
    let has_port = s.rsplit_once(':').is_some_and(|(h, p)| !h.ends_with(':') && p.parse::<u16>().is_ok());
    let with_port = match (has_port, default_port) {
        (true, _) => s.to_string(),
        (false, Some(p)) => format!("{}:{}", s, p),
        (false, None) => return err(&d.pos, format!("no port in \"{}\"", s)),
    };
    // The fuzzer must not wait on DNS for every random host name it makes up.
    if cfg!(fuzzing) && !with_port.starts_with("localhost:") {
        return err(&d.pos, format!("host not found in \"{}\"", s));
    }
    match with_port.to_socket_addrs() {
        Ok(it) => {
            let v: Vec<SocketAddr> = it.collect();
            if v.is_empty() {
                err(&d.pos, format!("host not found in \"{}\"", s))
            } else {
                Ok(v)
            }
        }
        Err(_) => err(&d.pos, format!("host not found in \"{}\"", s)),
    }
}

/// Splits a `proxy_set_header` value into literal text and `$variables` (`${name}` too).
/// A piece of a text with variables: literal text or a variable's name.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Piece<'s> {
    Lit(&'s str),
    Var(&'s str),
}

/// Splits `s` into literal text and `$name` / `${name}` variables (names of letters, digits
/// and `_`), as nginx's script compiler reads them.
pub(super) fn split_template<'s>(d: &Directive, s: &'s str) -> Result<Vec<Piece<'s>>, ConfError> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            let start = i;
            while i < b.len() && b[i] != b'$' {
                i += 1;
            }
            out.push(Piece::Lit(&s[start..i]));
            continue;
        }
        i += 1;
        let (name, next) = if b.get(i) == Some(&b'{') {
            let end = s[i..].find('}').map_or_else(|| err(&d.pos, format!("unclosed variable in \"{}\"", s)), |e| Ok(i + e))?;
            (&s[i + 1..end], end + 1)
        } else {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            (&s[start..i], i)
        };
        if name.is_empty() {
            return err(&d.pos, format!("invalid variable name in \"{}\"", s));
        }
        out.push(Piece::Var(name));
        i = next;
    }
    Ok(out)
}

pub(super) fn template(d: &Directive, s: &str) -> Result<Vec<Part>, ConfError> {
    let mut parts: Vec<Part> = Vec::new();
    for piece in split_template(d, s)? {
        match piece {
            Piece::Lit(l) => match parts.last_mut() {
                Some(Part::Lit(prev)) => prev.push_str(l),
                _ => parts.push(Part::Lit(l.to_string())),
            },
            Piece::Var(name) => parts.push(Part::Var(Var::by_name(name).map_or_else(|| err(&d.pos, format!("unknown \"{}\" variable", name)), Ok)?)),
        }
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::super::lexer::Pos;
    use super::*;

    #[test]
    fn templates() {
        let d = Directive { name: "x".into(), args: vec![], pos: Pos { file: "f".into(), line: 1 }, block: None };
        assert_eq!(
            template(&d, "a$host:${server_port}b").expect("ok"),
            vec![Part::Lit("a".into()), Part::Var(Var::Host), Part::Lit(":".into()), Part::Var(Var::ServerPort), Part::Lit("b".into())]
        );
        assert!(template(&d, "$nope").is_err());
    }
}
