//! The path a request is routed by. Locations (and static files) match the path the way
//! Tomcat (and mod_jk since 1.2.46) will read it: `%XX` decoded, `;parameters` dropped from
//! each segment, slashes merged, `.` and `..` resolved. So `/%61dmin`, `//admin` and
//! `/public/..;/admin` all meet the rules of `location /admin`. The request itself is
//! forwarded unchanged. A path that cannot be read one way only is refused with 400, as
//! nginx does: a malformed escape, an encoded NUL, or `..` climbing above the root.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriError {
    BadEscape,
    EncodedNul,
    AboveRoot,
}

impl UriError {
    pub fn describe(self) -> &'static str {
        match self {
            UriError::BadEscape => "malformed %-escape in the request path",
            UriError::EncodedNul => "encoded NUL in the request path",
            UriError::AboveRoot => "request path climbs above the root",
        }
    }
}

/// The path part of a request target (before `?`).
pub fn path_of(target: &[u8]) -> &[u8] {
    match target.iter().position(|&c| c == b'?') {
        Some(q) => &target[..q],
        None => target,
    }
}

/// True when `path` might read differently once normalized (the common case is false, and
/// then the raw path is used with no copy).
pub fn needs_normalizing(path: &[u8]) -> bool {
    let mut prev = 0u8;
    path.iter().any(|&c| {
        let hit = c == b'%' || c == b';' || (prev == b'/' && (c == b'/' || c == b'.'));
        prev = c;
        hit
    })
}

/// Writes the normalized form of `path` (no query) into `out`. A path that does not start
/// with `/` (`*`) is copied as it is.
pub fn normalize(path: &[u8], out: &mut Vec<u8>) -> Result<(), UriError> {
    out.clear();
    if path.first() != Some(&b'/') {
        out.extend_from_slice(path);
        return Ok(());
    }
    out.push(b'/');
    let mut seg = 1;
    let mut in_param = false;
    let mut i = 1;
    loop {
        let (c, raw) = match path.get(i) {
            None => {
                end_segment(out, seg)?;
                return Ok(());
            }
            Some(b'%') => {
                let v = path.get(i + 1..i + 3).and_then(|h| Some(hex(h[0])? << 4 | hex(h[1])?)).ok_or(UriError::BadEscape)?;
                if v == 0 {
                    return Err(UriError::EncodedNul);
                }
                i += 3;
                (v, false)
            }
            Some(&c) => {
                i += 1;
                (c, true)
            }
        };
        if c == b'/' {
            end_segment(out, seg)?;
            if out.last() != Some(&b'/') {
                out.push(b'/');
            }
            seg = out.len();
            in_param = false;
        } else if raw && c == b';' {
            in_param = true;
        } else if !in_param {
            out.push(c);
        }
    }
}

/// Resolves a finished `.` or `..` segment (`out[seg..]`).
fn end_segment(out: &mut Vec<u8>, seg: usize) -> Result<(), UriError> {
    match &out[seg..] {
        b"." => out.truncate(seg),
        b".." => {
            if seg <= 1 {
                return Err(UriError::AboveRoot);
            }
            // out[..seg] ends with "/"; drop the segment before it.
            let prev = out[..seg - 1].iter().rposition(|&c| c == b'/').unwrap_or(0);
            out.truncate(prev + 1);
        }
        _ => {}
    }
    Ok(())
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Result<String, UriError> {
        let mut out = Vec::new();
        normalize(p.as_bytes(), &mut out).map(|_| String::from_utf8(out).unwrap_or_default())
    }

    #[test]
    fn normalizes_like_tomcat() {
        assert_eq!(norm("/a/./b/../c"), Ok("/a/c".into()));
        assert_eq!(norm("/a/b/"), Ok("/a/b/".into()));
        assert_eq!(norm("/a%20b"), Ok("/a b".into()));
        assert_eq!(norm("/"), Ok("/".into()));
        assert_eq!(norm("/a/.."), Ok("/".into()));
        assert_eq!(norm("/a/."), Ok("/a/".into()));
        assert_eq!(norm("//admin//x"), Ok("/admin/x".into()));
        assert_eq!(norm("/%61dmin"), Ok("/admin".into()));
        assert_eq!(norm("/public/..;/admin"), Ok("/admin".into()));
        assert_eq!(norm("/app/page.jsp;jsessionid=abc.node1"), Ok("/app/page.jsp".into()));
        assert_eq!(norm("/a;x=1/b;y/c"), Ok("/a/b/c".into()));
        assert_eq!(norm("/a%3Bb"), Ok("/a;b".into()));
        assert_eq!(norm("/a%2fb"), Ok("/a/b".into()));
        assert_eq!(norm("/a/%2e%2E/b"), Ok("/b".into()));
        assert_eq!(norm("*"), Ok("*".into()));
    }

    #[test]
    fn refuses_what_reads_two_ways() {
        assert_eq!(norm("/../etc/passwd"), Err(UriError::AboveRoot));
        assert_eq!(norm("/%2e%2e/etc/passwd"), Err(UriError::AboveRoot));
        assert_eq!(norm("/a/..%2f..%2fetc"), Err(UriError::AboveRoot));
        assert_eq!(norm("/..;/x"), Err(UriError::AboveRoot));
        assert_eq!(norm("/a%00b"), Err(UriError::EncodedNul));
        assert_eq!(norm("/a%zz"), Err(UriError::BadEscape));
        assert_eq!(norm("/a%2"), Err(UriError::BadEscape));
    }

    #[test]
    fn fast_path() {
        assert!(!needs_normalizing(b"/app/index.jsp"));
        assert!(needs_normalizing(b"/app//x") && needs_normalizing(b"/a/./b") && needs_normalizing(b"/a%2e") && needs_normalizing(b"/a;b"));
        assert_eq!(path_of(b"/a?b=/../"), b"/a");
    }
}
