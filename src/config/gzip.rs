//! The gzip directives (nginx's `ngx_http_gzip_filter_module` and the `gzip_*` settings of its
//! core module): `gzip`, `gzip_types`, `gzip_min_length`, `gzip_comp_level`, `gzip_vary`,
//! `gzip_proxied`, `gzip_http_version`. Each is an inheritable setting (http → server →
//! location); what they decide per response is `crate::gzip`.

use super::builder::{Builder, Scope};
use super::lexer::{err, ConfError, Directive};
use super::values::{num_arg, on_off, size_arg};

type Done = Result<(), ConfError>;

/// `gzip_types`: the MIME types compressed besides `text/html`, which always is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum GzipTypes {
    /// Only `text/html` (nginx's default).
    #[default]
    HtmlOnly,
    /// `text/html` and these, in lower case.
    List(Vec<String>),
    /// `gzip_types *`: every type.
    Any,
}

impl GzipTypes {
    /// Is a response of this MIME type (without parameters, any case) compressed?
    pub fn matches(&self, mime: &[u8]) -> bool {
        if mime.eq_ignore_ascii_case(b"text/html") {
            return true;
        }
        match self {
            GzipTypes::HtmlOnly => false,
            GzipTypes::List(types) => types.iter().any(|t| mime.eq_ignore_ascii_case(t.as_bytes())),
            GzipTypes::Any => true,
        }
    }
}

/// `gzip_proxied`: which responses to proxied requests (those with a `Via` header) are
/// compressed, as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proxied(pub u16);

impl Proxied {
    pub const OFF: Proxied = Proxied(1);
    pub const EXPIRED: u16 = 2;
    pub const NO_CACHE: u16 = 4;
    pub const NO_STORE: u16 = 8;
    pub const PRIVATE: u16 = 16;
    pub const NO_LAST_MODIFIED: u16 = 32;
    pub const NO_ETAG: u16 = 64;
    pub const AUTH: u16 = 128;
    pub const ANY: u16 = 256;

    pub fn has(self, bit: u16) -> bool {
        self.0 & bit != 0
    }
}

pub(super) fn gzip(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.patch(d)?.gzip = Some(on_off(d, &d.args[0])?);
    Ok(())
}

pub(super) fn types(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    let mut list = Vec::new();
    let mut any = false;
    for t in &d.args {
        if t == "*" {
            any = true;
        } else if t.contains('/') && !t.starts_with('/') && !t.ends_with('/') {
            let t = t.to_ascii_lowercase();
            if !list.contains(&t) {
                list.push(t);
            }
        } else {
            return err(&d.pos, format!("invalid MIME type \"{}\" in \"gzip_types\" directive", t));
        }
    }
    s.patch(d)?.gzip_types = Some(if any {
        GzipTypes::Any
    } else if list.iter().all(|t| t == "text/html") {
        GzipTypes::HtmlOnly
    } else {
        GzipTypes::List(list)
    });
    Ok(())
}

pub(super) fn min_length(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.patch(d)?.gzip_min_length = Some(size_arg(d, &d.args[0])?);
    Ok(())
}

pub(super) fn comp_level(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    let level = num_arg(d, &d.args[0])?;
    if !(1..=9).contains(&level) {
        return err(&d.pos, format!("\"gzip_comp_level\" must be between 1 and 9, not {}", level));
    }
    s.patch(d)?.gzip_comp_level = Some(level as u32);
    Ok(())
}

pub(super) fn vary(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.patch(d)?.gzip_vary = Some(on_off(d, &d.args[0])?);
    Ok(())
}

pub(super) fn proxied(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    let mut bits = 0;
    for w in &d.args {
        bits |= match w.as_str() {
            "off" => Proxied::OFF.0,
            "expired" => Proxied::EXPIRED,
            "no-cache" => Proxied::NO_CACHE,
            "no-store" => Proxied::NO_STORE,
            "private" => Proxied::PRIVATE,
            "no_last_modified" => Proxied::NO_LAST_MODIFIED,
            "no_etag" => Proxied::NO_ETAG,
            "auth" => Proxied::AUTH,
            "any" => Proxied::ANY,
            _ => return err(&d.pos, format!("invalid value \"{}\" in \"gzip_proxied\" directive", w)),
        };
    }
    s.patch(d)?.gzip_proxied = Some(Proxied(bits));
    Ok(())
}

pub(super) fn http_version(_: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    s.patch(d)?.gzip_http_version = Some(match d.args[0].as_str() {
        "1.0" => 0,
        "1.1" => 1,
        v => return err(&d.pos, format!("invalid value \"{}\" in \"gzip_http_version\" directive, it must be \"1.0\" or \"1.1\"", v)),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::parser::tests::load_str;
    use super::*;

    #[test]
    fn defaults_inheritance_and_errors() {
        let c = load_str(
            "http {\n gzip on;\n gzip_types text/css;\n server {\n  listen 127.0.0.1:1;\n  gzip_comp_level 6;\n  location /a { gzip_types *; gzip_vary on; }\n  location /b { gzip off; gzip_proxied expired auth; gzip_min_length 1k; }\n  location /c { }\n }\n}\n",
        )
        .expect("valid");
        let [a, b, cc] = [0, 1, 2].map(|i| &c.http.servers[0].locations[i].settings);
        assert!(a.gzip && a.gzip_vary && a.gzip_types == GzipTypes::Any && a.gzip_comp_level == 6 && a.gzip_min_length == 20);
        assert!(!b.gzip && b.gzip_min_length == 1024 && b.gzip_proxied == Proxied(Proxied::EXPIRED | Proxied::AUTH));
        assert_eq!(cc.gzip_types, GzipTypes::List(vec!["text/css".into()]));
        assert!(cc.gzip_types.matches(b"Text/HTML") && cc.gzip_types.matches(b"text/css") && !cc.gzip_types.matches(b"image/png"));
        assert!(cc.gzip && !cc.gzip_vary && cc.gzip_proxied == Proxied::OFF && cc.gzip_http_version == 1);
        assert!(GzipTypes::HtmlOnly.matches(b"text/html") && !GzipTypes::HtmlOnly.matches(b"text/plain"));
        for bad in ["gzip_comp_level 0;", "gzip_comp_level 10;", "gzip_types html;", "gzip_proxied sometimes;", "gzip maybe;", "gzip_http_version 2.0;"] {
            let e = load_str(&format!("http {{\n {}\n}}\n", bad)).expect_err(bad);
            assert!(e.to_string().starts_with("t.conf:2: "), "{}: {}", bad, e);
        }
    }
}
