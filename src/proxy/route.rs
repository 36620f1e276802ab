//! Which `server {}` answers a request (listen address + Host, as nginx) and which
//! `location {}` inside it (exact match first, then the longest prefix).

use crate::config::{Http, Match, Server};
use crate::http::request::host_name;

pub(crate) fn find_server(http: &Http, listen: usize, host: Option<&[u8]>) -> usize {
    let l = &http.listens[listen];
    let by_name = host.and_then(|h| pick_by_name(l.servers.iter().map(|&s| http.servers[s].names.as_slice()), host_name(h)));
    by_name.map_or(l.default_server, |i| l.servers[i])
}

/// Which of several servers' `server_name` lists matches `name` (a Host without its port, or
/// an SNI): exact names first, then `*.example.com`, `www.example.*` and `.example.com`
/// wildcards, as nginx orders them. The position in `servers`, if any matches.
pub(crate) fn pick_by_name<'a>(servers: impl Iterator<Item = &'a [String]> + Clone, name: &[u8]) -> Option<usize> {
    let matches = |pat: &str| -> bool {
        let p = pat.as_bytes();
        if let Some(suffix) = pat.strip_prefix('*') {
            name.len() > suffix.len() && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
        } else if let Some(prefix) = pat.strip_suffix('*') {
            name.len() > prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
        } else if let Some(dotted) = pat.strip_prefix('.') {
            name.eq_ignore_ascii_case(dotted.as_bytes()) || (name.len() > pat.len() && name[name.len() - pat.len()..].eq_ignore_ascii_case(p))
        } else {
            name.eq_ignore_ascii_case(p)
        }
    };
    let wildcard = |n: &String| n.starts_with('*') || n.ends_with('*') || n.starts_with('.');
    for exact in [true, false] {
        if let Some(i) = servers.clone().position(|names| names.iter().filter(|n| exact != wildcard(n)).any(|n| matches(n))) {
            return Some(i);
        }
    }
    None
}

/// Index of the location for `path` (the part of the target before `?`).
pub(crate) fn find_location(server: &Server, path: &[u8]) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (i, loc) in server.locations.iter().enumerate() {
        let lp = loc.path.as_bytes();
        match loc.kind {
            Match::Exact => {
                if lp == path {
                    return Some(i);
                }
            }
            Match::Prefix | Match::PrefixStop => {
                if path.starts_with(lp) && best.is_none_or(|(_, len)| lp.len() > len) {
                    best = Some((i, lp.len()));
                }
            }
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Handler, Listen, Location, Settings};

    fn loc(kind: Match, path: &str) -> Location {
        Location { kind, path: path.into(), handler: Handler::None, settings: Settings::default() }
    }

    #[test]
    fn locations() {
        let s = Server {
            names: vec![],
            locations: vec![loc(Match::Prefix, "/"), loc(Match::Prefix, "/app/"), loc(Match::Exact, "/app/x"), loc(Match::PrefixStop, "/app/static/")],
            settings: Settings::default(),
        };
        assert_eq!(find_location(&s, b"/other"), Some(0));
        assert_eq!(find_location(&s, b"/app/y"), Some(1));
        assert_eq!(find_location(&s, b"/app/x"), Some(2));
        assert_eq!(find_location(&s, b"/app/xy"), Some(1));
        assert_eq!(find_location(&s, b"/app/static/a.css"), Some(3));
    }

    #[test]
    fn servers_by_host() {
        let mk = |names: &[&str]| Server { names: names.iter().map(|s| s.to_string()).collect(), locations: vec![], settings: Settings::default() };
        let http = Http {
            servers: vec![mk(&["default"]), mk(&["a.example"]), mk(&["*.example"])],
            listens: vec![Listen { addr: ([127, 0, 0, 1], 1).into(), ssl: false, proxy_protocol: false, servers: vec![0, 1, 2], default_server: 0 }],
            ..Default::default()
        };
        assert_eq!(find_server(&http, 0, Some(b"A.Example:8080")), 1);
        assert_eq!(find_server(&http, 0, Some(b"b.example")), 2);
        assert_eq!(find_server(&http, 0, Some(b"nothing")), 0);
        assert_eq!(find_server(&http, 0, None), 0);
    }
}
