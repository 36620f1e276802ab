//! gzip compression of responses with nginx's rules (`ngx_http_gzip_filter_module`'s header
//! filter and `ngx_http_gzip_ok`): what the request allows (`ClientGzip`, looked at only when
//! the location has `gzip on`), whether a response is compressed and whether it gets
//! `Vary: Accept-Encoding` (`decide`), and how its headers change (`weak_etag`, dropped
//! headers). The compression itself, streamed into the client's buffer, is `stream`.

pub mod stream;

use crate::config::{Proxied, Settings};
use crate::http::request::trim;

/// What the request says about compression.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientGzip {
    /// Its Accept-Encoding names `gzip` with a non-zero q.
    pub accepts: bool,
    /// It has a `Via` header: it came through a proxy (`gzip_proxied`).
    pub via: bool,
    pub authorization: bool,
    /// HTTP/1.`minor` (`gzip_http_version`).
    pub minor: u8,
}

impl ClientGzip {
    /// Reads the request's headers (the first Accept-Encoding counts, as in nginx).
    pub fn of(req: &httparse::Request, minor: u8) -> ClientGzip {
        let mut c = ClientGzip { minor, ..ClientGzip::default() };
        let mut ae_seen = false;
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("accept-encoding") {
                if !ae_seen {
                    c.accepts = accepts_gzip(h.value);
                    ae_seen = true;
                }
            } else if h.name.eq_ignore_ascii_case("via") {
                c.via = true;
            } else if h.name.eq_ignore_ascii_case("authorization") {
                c.authorization = true;
            }
        }
        c
    }
}

/// Does an Accept-Encoding value accept gzip? The first `gzip` coding decides: accepted
/// unless its q is 0 or unreadable (nginx's `ngx_http_gzip_accept_encoding`); `x-gzip` and
/// `*` are not gzip to nginx, nor here.
pub fn accepts_gzip(value: &[u8]) -> bool {
    for item in value.split(|&c| c == b',') {
        let mut parts = item.split(|&c| c == b';');
        if !trim(parts.next().unwrap_or(b"")).eq_ignore_ascii_case(b"gzip") {
            continue;
        }
        for param in parts {
            let param = trim(param);
            if param.len() >= 2 && param[0].eq_ignore_ascii_case(&b'q') {
                let v = trim(&param[1..]);
                return v.first() == Some(&b'=') && quality(trim(&v[1..])).is_some_and(|q| q > 0);
            }
        }
        return true;
    }
    false
}

/// A qvalue (RFC 9110 §12.4.2) in thousandths: `0`, `0.5`, `1.000`...; None if malformed.
fn quality(v: &[u8]) -> Option<u32> {
    let (int, frac) = match v.iter().position(|&c| c == b'.') {
        Some(dot) => (&v[..dot], &v[dot + 1..]),
        None => (v, &b""[..]),
    };
    if int.len() != 1 || frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let whole = match int[0] {
        b'0' => 0,
        b'1' => 1000,
        _ => return None,
    };
    let mut thousandths = 0;
    for (i, d) in frac.iter().enumerate() {
        thousandths += (d - b'0') as u32 * [100, 10, 1][i];
    }
    (whole + thousandths <= 1000).then_some(whole + thousandths)
}

/// A location's gzip settings with the request's facts: what the response writer needs.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub settings: &'a Settings,
    pub client: ClientGzip,
}

/// What becomes of one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Decision {
    /// Compress it.
    pub compress: bool,
    /// Add `Vary: Accept-Encoding` (compressible, with `gzip_vary on`; also when this client
    /// does not get it compressed, so caches keep the variants apart).
    pub vary: bool,
}

/// The response headers the decision reads.
#[derive(Default)]
struct Facts<'h> {
    mime: Option<&'h [u8]>,
    encoded: bool,
    no_transform: bool,
    cache_control: bool,
    no_cache: bool,
    no_store: bool,
    private: bool,
    expires: Option<&'h [u8]>,
    date: Option<&'h [u8]>,
    last_modified: bool,
    etag: bool,
}

impl<'h> Facts<'h> {
    fn read(headers: impl Iterator<Item = (&'h [u8], &'h [u8])>) -> Facts<'h> {
        let mut f = Facts::default();
        for (name, value) in headers {
            if name.eq_ignore_ascii_case(b"content-type") {
                let mime = value.split(|&c| c == b';').next().unwrap_or(b"");
                f.mime.get_or_insert(trim(mime));
            } else if name.eq_ignore_ascii_case(b"content-encoding") {
                f.encoded |= !trim(value).is_empty();
            } else if name.eq_ignore_ascii_case(b"cache-control") {
                f.cache_control = true;
                for d in value.split(|&c| c == b',') {
                    let d = trim(d.split(|&c| c == b'=').next().unwrap_or(b""));
                    f.no_transform |= d.eq_ignore_ascii_case(b"no-transform");
                    f.no_cache |= d.eq_ignore_ascii_case(b"no-cache");
                    f.no_store |= d.eq_ignore_ascii_case(b"no-store");
                    f.private |= d.eq_ignore_ascii_case(b"private");
                }
            } else if name.eq_ignore_ascii_case(b"expires") {
                f.expires = Some(trim(value));
            } else if name.eq_ignore_ascii_case(b"date") {
                f.date = Some(trim(value));
            } else if name.eq_ignore_ascii_case(b"last-modified") {
                f.last_modified = true;
            } else if name.eq_ignore_ascii_case(b"etag") {
                f.etag = true;
            }
        }
        f
    }
}

/// Decides for a response with a body (the caller rules out HEAD and bodiless statuses:
/// nginx's `header_only`). `length`: its Content-Length, if known; `now`: the HTTP date
/// standing for a missing `Date`.
pub fn decide<'h>(ask: &Ask, status: u16, headers: impl Iterator<Item = (&'h [u8], &'h [u8])>, length: Option<u64>, now: &str) -> Decision {
    let s = ask.settings;
    if !matches!(status, 200 | 403 | 404) || length.is_some_and(|n| n < s.gzip_min_length) {
        return Decision::default();
    }
    let f = Facts::read(headers);
    // `no-transform` (RFC 9110 §7.7) forbids changing the content coding: nginx ignores it,
    // pounce honours it.
    if f.encoded || f.no_transform || !f.mime.is_some_and(|m| s.gzip_types.matches(m)) {
        return Decision::default();
    }
    let c = ask.client;
    let compress = c.accepts && c.minor >= s.gzip_http_version && (!c.via || proxied_ok(s.gzip_proxied, &c, &f, now));
    Decision { compress, vary: s.gzip_vary }
}

/// A small body held whole (pounce's own pages), compressed in one piece at `level`; None
/// if zlib failed (writing into a Vec cannot, but then the body goes as it is).
pub fn compress_whole(body: &[u8], level: u32) -> Option<Vec<u8>> {
    use std::io::Write as _;
    let mut z = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 2 + 64), flate2::Compression::new(level));
    z.write_all(body).ok()?;
    z.finish().ok()
}

/// `gzip_proxied` for a request that came through a proxy (`ngx_http_gzip_ok`'s order).
fn proxied_ok(p: Proxied, c: &ClientGzip, f: &Facts, now: &str) -> bool {
    if p.has(Proxied::OFF.0) {
        return false;
    }
    if p.has(Proxied::ANY) || (c.authorization && p.has(Proxied::AUTH)) {
        return true;
    }
    if let Some(expires) = f.expires {
        let date = f.date.unwrap_or(now.as_bytes());
        return p.has(Proxied::EXPIRED) && matches!((http_time(expires), http_time(date)), (Some(e), Some(d)) if e < d);
    }
    if f.cache_control {
        return (p.has(Proxied::NO_CACHE) && f.no_cache) || (p.has(Proxied::NO_STORE) && f.no_store) || (p.has(Proxied::PRIVATE) && f.private);
    }
    let refused = (p.has(Proxied::NO_LAST_MODIFIED) && f.last_modified) || (p.has(Proxied::NO_ETAG) && f.etag);
    !refused
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) in seconds since 1970; the obsolete
/// RFC 850 and asctime forms are not read (an unreadable Expires is not "expired", as nginx).
pub fn http_time(v: &[u8]) -> Option<u64> {
    if v.len() != 29 || &v[3..5] != b", " || &v[25..] != b" GMT" {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> { v[r].iter().try_fold(0u64, |n, &c| c.is_ascii_digit().then(|| n * 10 + (c - b'0') as u64)) };
    const MONTHS: [&[u8]; 12] = [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"];
    let month = MONTHS.iter().position(|m| *m == &v[8..11])? as u64 + 1;
    let (day, year, h, m, s) = (num(5..7)?, num(12..16)?, num(17..19)?, num(20..22)?, num(23..25)?);
    if v[7] != b' ' || v[11] != b' ' || v[16] != b' ' || v[19] != b':' || v[22] != b':' || year < 1970 || h > 23 || m > 59 || s > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, mo) = if month <= 2 { (year - 1, month + 9) } else { (year, month - 3) };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + h * 3600 + m * 60 + s)
}

/// The ETag of a compressed response: a strong one made weak (`W/` before it), a weak one
/// kept, anything malformed dropped (nginx's `ngx_http_weak_etag`). Returns the prefix to
/// write before the value, or None to drop the header.
pub fn weak_etag(value: &[u8]) -> Option<&'static [u8]> {
    let v = trim(value);
    if v.starts_with(b"W/") {
        Some(b"")
    } else if v.starts_with(b"\"") {
        Some(b"W/")
    } else {
        None
    }
}

/// Headers a compressed response does not carry: its length and ranges are those of the
/// uncompressed body.
pub fn dropped(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"accept-ranges")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GzipTypes;

    #[test]
    fn accept_encoding_as_nginx() {
        for yes in ["gzip", "gzip, deflate, br", "deflate,gzip", "GZIP;q=0.5", "br, gzip ; q=1.0", "gzip;q=0.001", "identity, gzip;Q=1"] {
            assert!(accepts_gzip(yes.as_bytes()), "{yes}");
        }
        for no in ["", "deflate", "x-gzip", "*", "gzip;q=0", "gzip; q=0.000", "gzip;q=0.", "gzip;q=2", "gzip;q=abc", "gzipx", "gzip;q=0, gzip"] {
            assert!(!accepts_gzip(no.as_bytes()), "{no}");
        }
    }

    #[test]
    fn dates() {
        assert_eq!(http_time(b"Sun, 06 Nov 1994 08:49:37 GMT"), Some(784111777));
        assert_eq!(http_time(b"Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(http_time(b"Tue, 29 Feb 2000 12:00:00 GMT"), Some(951825600));
        assert_eq!(http_time(b"Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(http_time(b"0"), None);
        assert_eq!(http_time(b"Sun, 06 Xyz 1994 08:49:37 GMT"), None);
    }

    fn ask(s: &Settings, client: ClientGzip) -> Ask<'_> {
        Ask { settings: s, client }
    }

    #[test]
    fn decisions() {
        let s = Settings { gzip: true, gzip_vary: true, gzip_types: GzipTypes::List(vec!["text/css".into()]), ..Settings::default() };
        let c = ClientGzip { accepts: true, minor: 1, ..ClientGzip::default() };
        let now = "Sun, 06 Nov 1994 08:49:37 GMT";
        let d = |c: ClientGzip, status: u16, hs: &[(&[u8], &[u8])], len: Option<u64>| decide(&ask(&s, c), status, hs.iter().copied(), len, now);
        let html: &[(&[u8], &[u8])] = &[(b"Content-Type", b"text/html; charset=utf-8")];
        assert_eq!(d(c, 200, html, None), Decision { compress: true, vary: true });
        assert_eq!(d(c, 404, &[(b"content-type", b"TEXT/CSS")], Some(20)), Decision { compress: true, vary: true });
        assert_eq!(d(ClientGzip { accepts: false, ..c }, 200, html, None), Decision { compress: false, vary: true }, "Vary without gzip");
        assert_eq!(d(ClientGzip { minor: 0, ..c }, 200, html, None), Decision { compress: false, vary: true }, "gzip_http_version 1.1");
        assert_eq!(d(c, 200, html, Some(19)), Decision::default(), "under gzip_min_length");
        for status in [201, 206, 301, 500] {
            assert_eq!(d(c, status, html, None), Decision::default(), "{status}");
        }
        assert_eq!(d(c, 200, &[(b"Content-Type", b"image/png")], None), Decision::default());
        assert_eq!(d(c, 200, &[], None), Decision::default(), "no Content-Type");
        assert_eq!(d(c, 200, &[html[0], (b"Content-Encoding", b"br")], None), Decision::default());
        assert!(d(c, 200, &[html[0], (b"Content-Encoding", b"")], None).compress, "an empty Content-Encoding is none");
        assert_eq!(d(c, 200, &[html[0], (b"Cache-Control", b"public, no-transform")], None), Decision::default());
        // gzip_proxied off (the default): a request with Via is not compressed.
        let via = ClientGzip { via: true, ..c };
        assert!(!d(via, 200, html, None).compress);
    }

    #[test]
    fn proxied_rules() {
        let now = "Sun, 06 Nov 1994 08:49:37 GMT";
        let via = ClientGzip { accepts: true, minor: 1, via: true, authorization: false };
        let with = |bits: u16, c: ClientGzip, hs: &[(&[u8], &[u8])]| {
            let s = Settings { gzip: true, gzip_proxied: Proxied(bits), ..Settings::default() };
            let mut all: Vec<(&[u8], &[u8])> = vec![(b"Content-Type", b"text/html")];
            all.extend_from_slice(hs);
            decide(&ask(&s, c), 200, all.into_iter(), None, now).compress
        };
        assert!(with(Proxied::ANY, via, &[]));
        assert!(!with(Proxied::OFF.0 | Proxied::ANY, via, &[]));
        assert!(with(Proxied::AUTH, ClientGzip { authorization: true, ..via }, &[]));
        // Without Authorization, nginx goes on to the other rules: no Expires, no
        // Cache-Control and no no_last_modified/no_etag flag: compressed.
        assert!(with(Proxied::AUTH, via, &[]));
        assert!(!with(Proxied::AUTH, via, &[(b"Cache-Control", b"max-age=60")]));
        let past: (&[u8], &[u8]) = (b"Expires", b"Sat, 05 Nov 1994 08:49:37 GMT");
        let future: (&[u8], &[u8]) = (b"Expires", b"Mon, 07 Nov 1994 08:49:37 GMT");
        assert!(with(Proxied::EXPIRED, via, &[past]));
        assert!(!with(Proxied::EXPIRED, via, &[future]));
        assert!(!with(Proxied::EXPIRED, via, &[(b"Expires", b"0")]), "unreadable");
        assert!(!with(Proxied::NO_CACHE, via, &[past]), "Expires decides before Cache-Control");
        assert!(with(Proxied::NO_CACHE, via, &[(b"Cache-Control", b"no-cache")]));
        assert!(with(Proxied::NO_STORE | Proxied::PRIVATE, via, &[(b"Cache-Control", b"max-age=0, private")]));
        assert!(!with(Proxied::NO_STORE, via, &[(b"Cache-Control", b"max-age=60")]));
        assert!(with(Proxied::NO_LAST_MODIFIED, via, &[]));
        assert!(!with(Proxied::NO_LAST_MODIFIED, via, &[(b"Last-Modified", b"x")]));
        assert!(!with(Proxied::NO_ETAG, via, &[(b"ETag", b"\"1\"")]));
        assert!(with(Proxied::NO_ETAG, via, &[(b"Last-Modified", b"x")]));
    }

    #[test]
    fn etags() {
        assert_eq!(weak_etag(b"\"abc\""), Some(&b"W/"[..]));
        assert_eq!(weak_etag(b"W/\"abc\""), Some(&b""[..]));
        assert_eq!(weak_etag(b"abc"), None);
    }
}
