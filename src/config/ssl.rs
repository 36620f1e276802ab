//! The `ssl_*` directives of `http` and `server` blocks (inherited http → server, as nginx),
//! and `add_header`. Certificates and keys are only named here; `crate::tls` loads and checks
//! them when a configuration generation is built (and for `-t`).

use super::builder::{Builder, Scope};
use super::lexer::{err, resolve, ConfError, Directive};
use super::values::{on_off, positive_time_arg, time_arg};
use super::{AddHeader, SslProtocols, VerifyClient};

type Done = Result<(), ConfError>;

/// `ssl_certificate FILE;` (a server may have several: RSA and ECDSA, paired in order with
/// `ssl_certificate_key`).
pub(super) fn certificate(b: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.patch(d)?.ssl_certificate.get_or_insert_with(Vec::new).push(resolve(&b.prefix, &d.args[0]));
    Ok(())
}

pub(super) fn certificate_key(b: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.patch(d)?.ssl_certificate_key.get_or_insert_with(Vec::new).push(resolve(&b.prefix, &d.args[0]));
    Ok(())
}

/// `ssl_protocols TLSv1.2 TLSv1.3;` — older versions are named as such, since nginx
/// configurations carry them.
pub(super) fn protocols(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    let mut p = SslProtocols { tls12: false, tls13: false };
    for a in &d.args {
        match a.as_str() {
            "TLSv1.2" => p.tls12 = true,
            "TLSv1.3" => p.tls13 = true,
            "SSLv2" | "SSLv3" | "TLSv1" | "TLSv1.1" => return err(&d.pos, format!("\"{}\" is not offered: pounce speaks TLSv1.2 and TLSv1.3 only", a)),
            _ => return err(&d.pos, format!("invalid value \"{}\" in \"ssl_protocols\" directive", a)),
        }
    }
    s.patch(d)?.ssl_protocols = Some(p);
    Ok(())
}

pub(super) fn session_tickets(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.patch(d)?.ssl_session_tickets = Some(on_off(d, &d.args[0])?);
    Ok(())
}

pub(super) fn session_timeout(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    let t = time_arg(d, &d.args[0])?;
    if t.is_zero() || t.as_secs() > u32::MAX as u64 {
        return err(&d.pos, "\"ssl_session_timeout\" must be between 1s and 136 years");
    }
    s.patch(d)?.ssl_session_timeout = Some(t);
    Ok(())
}

pub(super) fn verify_client(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.patch(d)?.ssl_verify_client = Some(match d.args[0].as_str() {
        "off" => VerifyClient::Off,
        "on" => VerifyClient::On,
        "optional" => VerifyClient::Optional,
        "optional_no_ca" => return err(&d.pos, "\"optional_no_ca\" is not supported: a client certificate is always verified"),
        v => return err(&d.pos, format!("invalid value \"{}\" in \"ssl_verify_client\" directive, it must be \"on\", \"optional\" or \"off\"", v)),
    });
    Ok(())
}

pub(super) fn client_certificate(b: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.patch(d)?.ssl_client_certificate = Some(Some(resolve(&b.prefix, &d.args[0])));
    Ok(())
}

pub(super) fn handshake_timeout(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    let t = positive_time_arg(d, &d.args[0])?;
    s.patch(d)?.ssl_handshake_timeout = Some(t);
    Ok(())
}

pub(super) fn prefer_server_ciphers(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.patch(d)?.ssl_prefer_server_ciphers = Some(on_off(d, &d.args[0])?);
    Ok(())
}

/// `add_header NAME VALUE [always];` — a level with its own `add_header` lines replaces the
/// outer level's, as nginx inherits them.
pub(super) fn add_header(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    let name = &d.args[0];
    if name.is_empty() || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_') {
        return err(&d.pos, format!("invalid header name \"{}\"", name));
    }
    let value = &d.args[1];
    if value.contains('$') {
        return err(&d.pos, "variables in \"add_header\" values are not supported");
    }
    if value.bytes().any(|c| c == b'\r' || c == b'\n' || c == 0) {
        return err(&d.pos, "invalid character in \"add_header\" value");
    }
    let always = match d.args.get(2).map(String::as_str) {
        None => false,
        Some("always") => true,
        Some(v) => return err(&d.pos, format!("invalid parameter \"{}\"", v)),
    };
    s.patch(d)?.add_header.get_or_insert_with(Vec::new).push(AddHeader { name: name.clone(), value: value.clone(), always });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::parser::tests::load_str;
    use super::super::{SslProtocols, VerifyClient};
    use std::time::Duration;

    #[test]
    fn ssl_settings_inherit_and_pair() {
        let c = load_str(
            "http {\n ssl_session_timeout 10m;\n ssl_protocols TLSv1.3;\n add_header X-A 1;\n server {\n  listen 127.0.0.1:1 ssl;\n  ssl_certificate a.pem;\n  ssl_certificate_key a.key;\n  ssl_certificate b.pem;\n  ssl_certificate_key b.key;\n  ssl_verify_client optional;\n  ssl_client_certificate ca.pem;\n  location / { add_header X-B 2 always; }\n  location /x { }\n }\n}\n",
        )
        .expect("valid");
        let s = &c.http.servers[0].settings;
        assert_eq!(s.ssl_certificate.len(), 2);
        assert!(s.ssl_certificate_key[1].ends_with("b.key"));
        assert_eq!(s.ssl_session_timeout, Duration::from_secs(600));
        assert_eq!(s.ssl_protocols, SslProtocols { tls12: false, tls13: true });
        assert_eq!(s.ssl_verify_client, VerifyClient::Optional);
        assert!(c.http.listens[0].ssl);
        let locs = &c.http.servers[0].locations;
        assert_eq!(locs[0].settings.add_header.len(), 1, "a level with its own add_header replaces the outer ones");
        assert!(locs[0].settings.add_header[0].always);
        assert_eq!(locs[1].settings.add_header[0].name, "X-A", "inherited");
    }

    #[test]
    fn ssl_errors() {
        let cases = [
            ("http {\n server {\n  listen 443 ssl;\n }\n}\n", "t.conf:3: no \"ssl_certificate\" is defined for the \"listen ... ssl\" directive"),
            ("http {\n ssl_protocols TLSv1.1 TLSv1.2;\n}\n", "t.conf:2: \"TLSv1.1\" is not offered"),
            ("http {\n ssl_verify_client maybe;\n}\n", "t.conf:2: invalid value \"maybe\" in \"ssl_verify_client\""),
            ("http {\n server {\n  location / { ssl_certificate a.pem; }\n }\n}\n", "t.conf:3: \"ssl_certificate\" directive is not allowed here"),
            ("http {\n add_header X-A $host;\n}\n", "t.conf:2: variables in \"add_header\" values are not supported"),
            ("http {\n server {\n  listen 1 http2;\n }\n}\n", "t.conf:3: the \"http2\" parameter of \"listen\" is not supported"),
            ("http {\n ssl_ciphers HIGH;\n}\n", "t.conf:2: \"ssl_ciphers\" is an nginx directive pounce does not support; rustls offers"),
        ];
        for (text, want) in cases {
            let got = load_str(text).expect_err(text).to_string();
            assert!(got.starts_with(want), "for {:?}: got {:?}, want {:?}", text, got, want);
        }
    }
}
