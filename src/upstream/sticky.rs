//! Session routes as mod_jk reads them (`jk_lb_worker.c`): the `;jsessionid=` path parameter
//! first, then every `JSESSIONID` cookie in order (quotes stripped, empty values ignored);
//! the route is the text after the **first** `.` of the session id, so routes may contain
//! dots themselves (`tomcat-6.0.26-1`).

use crate::config::Sticky;
use std::ops::ControlFlow;

/// The route part of a session id, if any.
pub(crate) fn route_of(session_id: &[u8]) -> Option<&[u8]> {
    let dot = session_id.iter().position(|&c| c == b'.')?;
    let route = &session_id[dot + 1..];
    (!route.is_empty()).then_some(route)
}

/// Calls `f` with each candidate route in mod_jk's order until it breaks.
/// `f` gets the session id and its route.
pub(crate) fn for_each_route<'a>(
    target: &'a [u8],
    cookies: impl Iterator<Item = &'a [u8]>,
    sticky: &Sticky,
    mut f: impl FnMut(&'a [u8], &'a [u8]) -> ControlFlow<()>,
) {
    let path = target.split(|&c| c == b'?').next().unwrap_or(b"");
    if let Some(id) = path_param(path, sticky.path_param.as_bytes()) {
        if let Some(r) = route_of(id) {
            if f(id, r).is_break() {
                return;
            }
        }
    }
    for header in cookies {
        let mut rest = header;
        while let Some((id, after)) = next_cookie(rest, sticky.cookie.as_bytes()) {
            rest = after;
            if let Some(r) = route_of(id) {
                if f(id, r).is_break() {
                    return;
                }
            }
        }
    }
}

/// `;NAME=value` in the path: the value up to `?`, `;`, `/` or the end.
fn path_param<'a>(path: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let mut i = 0;
    while i + name.len() + 1 < path.len() {
        if path[i] == b';' && path[i + 1..].starts_with(name) && path.get(i + 1 + name.len()) == Some(&b'=') {
            let start = i + 2 + name.len();
            let end = path[start..].iter().position(|&c| matches!(c, b'?' | b';' | b'/')).map_or(path.len(), |e| start + e);
            let v = &path[start..end];
            return (!v.is_empty()).then_some(v);
        }
        i += 1;
    }
    None
}

/// The next `NAME=value` in a Cookie header (name at the start or after `;`, `,` or space);
/// returns the unquoted value and the rest of the header.
fn next_cookie<'a>(h: &'a [u8], name: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    let mut i = 0;
    while i + name.len() <= h.len() {
        let at_boundary = i == 0 || matches!(h[i - 1], b';' | b',' | b' ' | b'\t');
        if at_boundary && h[i..].starts_with(name) {
            let mut j = i + name.len();
            while j < h.len() && (h[j] == b' ' || h[j] == b'\t') {
                j += 1;
            }
            if h.get(j) == Some(&b'=') {
                let start = j + 1;
                let end = h[start..].iter().position(|&c| c == b';' || c == b',').map_or(h.len(), |e| start + e);
                let mut v = crate::http::request::trim(&h[start..end]);
                if v.len() >= 2 && v[0] == b'"' && v[v.len() - 1] == b'"' {
                    v = &v[1..v.len() - 1];
                }
                if !v.is_empty() {
                    return Some((v, &h[end..]));
                }
                i = end;
                continue;
            }
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sticky() -> Sticky {
        Sticky {
            cookie: "JSESSIONID".into(),
            path_param: "jsessionid".into(),
            force: false,
            window: Sticky::DEFAULT_WINDOW,
            drain_idle: Sticky::DEFAULT_DRAIN_IDLE,
        }
    }

    fn all(target: &str, cookies: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        for_each_route(target.as_bytes(), cookies.iter().map(|c| c.as_bytes()), &sticky(), |_, r| {
            out.push(String::from_utf8_lossy(r).to_string());
            ControlFlow::Continue(())
        });
        out
    }

    #[test]
    fn cookie_and_path_parameter() {
        assert_eq!(all("/a", &["JSESSIONID=ABC.tomcat1"]), vec!["tomcat1"]);
        assert_eq!(all("/a;jsessionid=XYZ.tomcat2?q=1", &["JSESSIONID=ABC.tomcat1"]), vec!["tomcat2", "tomcat1"], "path first");
        assert_eq!(all("/a;jsessionid=XYZ.t2/b", &[]), vec!["t2"]);
        assert_eq!(all("/a?x=;jsessionid=XYZ.t2", &[]), Vec::<String>::new(), "not in the query");
    }

    #[test]
    fn route_after_the_first_dot() {
        assert_eq!(all("/", &["JSESSIONID=ABC.tomcat-6.0.26-1"]), vec!["tomcat-6.0.26-1"]);
        assert_eq!(all("/", &["JSESSIONID=ABC"]), Vec::<String>::new(), "no route");
        assert_eq!(all("/", &["JSESSIONID=ABC."]), Vec::<String>::new(), "empty route");
    }

    #[test]
    fn several_cookies_spacing_and_quotes() {
        assert_eq!(all("/", &["a=1; JSESSIONID = \"Q.one\" ;b=2", "JSESSIONID=R.two,JSESSIONID=S.three"]), vec!["one", "two", "three"]);
        assert_eq!(all("/", &["XJSESSIONID=A.no; JSESSIONID=; JSESSIONID=B.yes"]), vec!["yes"], "names must match whole, empty ignored");
        assert_eq!(all("/", &["jsessionid=A.case"]), Vec::<String>::new(), "cookie names are case-sensitive");
    }
}
