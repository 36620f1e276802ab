//! The inheritable settings (http → server → location), each stored in the block's
//! `SettingsPatch`; and the `ajp_*` directives, which `upstream` blocks take too.

use super::builder::{inner, no_opening, Builder, Scope};
use super::lexer::{err, resolve, ConfError, Directive};
use super::values::{num_arg, on_off, parse_rule, positive_time_arg, size_arg, template, time_arg};
use super::{next, HeaderSet, Via};

type Done = Result<(), ConfError>;

pub(super) fn keepalive_timeout(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.patch(d)?.keepalive_timeout = Some(time_arg(d, &d.args[0])?);
    Ok(())
}

pub(super) fn keepalive_requests(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.patch(d)?.keepalive_requests = Some(num_arg(d, &d.args[0])?.min(u32::MAX as u64) as u32);
    Ok(())
}

pub(super) fn client_header_timeout(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.patch(d)?.client_header_timeout = Some(time_arg(d, &d.args[0])?);
    Ok(())
}

pub(super) fn client_body_timeout(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.patch(d)?.client_body_timeout = Some(time_arg(d, &d.args[0])?);
    Ok(())
}

pub(super) fn client_max_body_size(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    // 0 disables the check, as in nginx.
    s.patch(d)?.client_max_body_size = Some(match size_arg(d, &d.args[0])? {
        0 => u64::MAX,
        n => n,
    });
    Ok(())
}

pub(super) fn send_timeout(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.patch(d)?.send_timeout = Some(time_arg(d, &d.args[0])?);
    Ok(())
}

pub(super) fn proxy_connect_timeout(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.patch(d)?.proxy_connect_timeout = Some(time_arg(d, &d.args[0])?);
    Ok(())
}

pub(super) fn proxy_read_timeout(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.patch(d)?.proxy_read_timeout = Some(time_arg(d, &d.args[0])?);
    Ok(())
}

pub(super) fn proxy_send_timeout(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.patch(d)?.proxy_send_timeout = Some(time_arg(d, &d.args[0])?);
    Ok(())
}

pub(super) fn proxy_next_upstream(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    let mut bits = 0;
    for w in &d.args {
        bits |= match w.as_str() {
            "error" => next::ERROR,
            "timeout" => next::TIMEOUT,
            "invalid_header" => next::INVALID_HEADER,
            "http_500" => next::HTTP_500,
            "http_502" => next::HTTP_502,
            "http_503" => next::HTTP_503,
            "http_504" => next::HTTP_504,
            "http_403" => next::HTTP_403,
            "http_404" => next::HTTP_404,
            "http_429" => next::HTTP_429,
            "non_idempotent" => next::NON_IDEMPOTENT,
            "off" if d.args.len() == 1 => next::OFF,
            _ => return err(&d.pos, format!("invalid value \"{}\" in \"proxy_next_upstream\" directive", w)),
        };
    }
    s.patch(d)?.proxy_next_upstream = Some(bits);
    Ok(())
}

pub(super) fn proxy_next_upstream_tries(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.patch(d)?.proxy_next_upstream_tries = Some(num_arg(d, &d.args[0])?.min(u32::MAX as u64) as u32);
    Ok(())
}

pub(super) fn proxy_set_header(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    let a = &d.args;
    if !a[0].bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_') || a[0].is_empty() {
        return err(&d.pos, format!("invalid header name \"{}\"", a[0]));
    }
    let value = template(d, &a[1])?;
    let list = s.patch(d)?.proxy_set_header.get_or_insert_with(Vec::new);
    list.retain(|h| !h.name.eq_ignore_ascii_case(&a[0]));
    list.push(HeaderSet { name: a[0].clone(), value });
    Ok(())
}

pub(super) fn proxy_redirect(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.patch(d)?.proxy_redirect = Some(match d.args[0].as_str() {
        "default" => true,
        "off" => false,
        _ => return err(&d.pos, "\"proxy_redirect\" takes \"default\" or \"off\""),
    });
    Ok(())
}

/// pounce always speaks HTTP/1.1 to backends; accepted for nginx configurations.
pub(super) fn proxy_http_version(_: &mut Builder, d: &Directive, _: &mut Scope) -> Done {
    if d.args[0] != "1.1" && d.args[0] != "1.0" {
        return err(&d.pos, format!("invalid value \"{}\" in \"proxy_http_version\" directive", d.args[0]));
    }
    Ok(())
}

pub(super) fn proxy_via(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.patch(d)?.proxy_via = Some(match d.args[0].as_str() {
        "off" => Via::Off,
        "on" => Via::On,
        "full" => Via::Full,
        _ => return err(&d.pos, "\"proxy_via\" takes \"off\", \"on\" or \"full\""),
    });
    Ok(())
}

pub(super) fn proxy_ignore_client_abort(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.patch(d)?.proxy_ignore_client_abort = Some(on_off(d, &d.args[0])?);
    Ok(())
}

/// `allow` and `deny`.
pub(super) fn access_rule(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    let rule = parse_rule(d, d.name == "allow")?;
    s.patch(d)?.access.get_or_insert_with(Vec::new).push(rule);
    Ok(())
}

pub(super) fn root(b: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.patch(d)?.root = Some(Some(resolve(&b.prefix, &d.args[0])));
    Ok(())
}

pub(super) fn index(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.patch(d)?.index = Some(d.args.clone());
    Ok(())
}

/// `types { TYPE EXT...; ... }`: its lines are MIME mappings, not directives.
pub(super) fn types(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    let list = s.patch(d)?.types.get_or_insert_with(Vec::new);
    for t in inner(d) {
        if t.block.is_some() {
            return no_opening(t);
        }
        if t.args.is_empty() {
            return err(&t.pos, format!("no extensions for type \"{}\"", t.name));
        }
        for ext in &t.args {
            list.push((ext.clone(), t.name.clone()));
        }
    }
    Ok(())
}

pub(super) fn default_type(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.patch(d)?.default_type = Some(d.args[0].clone());
    Ok(())
}

pub(super) fn disable_symlinks(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.patch(d)?.disable_symlinks = Some(on_off(d, &d.args[0])?);
    Ok(())
}

pub(super) fn ajp_secret(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    if d.args[0].is_empty() {
        return err(&d.pos, "\"ajp_secret\" must not be empty");
    }
    s.ajp(d)?.secret = Some(d.args[0].clone());
    Ok(())
}

pub(super) fn ajp_packet_size(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    let n = size_arg(d, &d.args[0])?;
    if !(8192..=65536).contains(&n) {
        return err(&d.pos, "\"ajp_packet_size\" must be between 8192 and 65536 (and equal Tomcat's packetSize)");
    }
    s.ajp(d)?.packet_size = Some(n as usize);
    Ok(())
}

pub(super) fn ajp_ping(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.ajp(d)?.ping = Some(on_off(d, &d.args[0])?);
    Ok(())
}

pub(super) fn ajp_ping_timeout(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    let t = positive_time_arg(d, &d.args[0])?;
    s.ajp(d)?.ping_timeout = Some(t);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::parser::tests::load_str;
    use super::super::{access_allowed, Handler, StatusAccess};

    #[test]
    fn access_rules() {
        let c =
            load_str("http {\n server {\n  listen 127.0.0.1:1;\n  location /s { status; allow 127.0.0.1; allow 10.0.0.0/8; allow ::1; deny all; }\n }\n}\n")
                .expect("valid");
        let loc = &c.http.servers[0].locations[0];
        assert_eq!(loc.handler, Handler::Status(StatusAccess::Manage));
        let ok = |ip: &str| access_allowed(&loc.settings.access, ip.parse().expect("ip"));
        assert!(ok("127.0.0.1") && ok("10.2.3.4") && ok("::1") && ok("::ffff:127.0.0.1"));
        assert!(!ok("127.0.0.2") && !ok("11.0.0.1") && !ok("::2"));
        assert!(load_str("http { server { location / { deny 1.2.3.4/33; } } }").is_err());
    }
}
