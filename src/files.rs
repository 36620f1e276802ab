//! Static files (`root` / `alias` locations), as nginx serves them: the path comes normalized
//! (`http::uri`: decoded, dot segments resolved, an escape above the root refused), the file is found (directories
//! through `index`, or a redirect to the trailing slash), and the answer carries Content-Type,
//! Content-Length, Last-Modified and ETag, honours If-None-Match / If-Modified-Since (304) and
//! a single `Range: bytes=` (206, or 416). The body is sent with sendfile(2) by the session,
//! so a large file never passes through memory.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Why a URI cannot be mapped to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `..` above the root, or a symlink when `disable_symlinks on`.
    Forbidden,
    NotFound,
}

impl Refusal {
    pub(crate) fn status(self) -> u16 {
        match self {
            Refusal::Forbidden => 403,
            Refusal::NotFound => 404,
        }
    }
}

/// The file system path for a normalized URI: `root + uri`, or for an alias location
/// `alias + (uri minus the location prefix)`.
pub(crate) fn map(uri: &str, root: &Path, alias_prefix: Option<&str>) -> PathBuf {
    let rel = match alias_prefix {
        Some(prefix) => uri.strip_prefix(prefix).unwrap_or(uri),
        None => uri,
    };
    root.join(rel.trim_start_matches('/'))
}

/// With `disable_symlinks on`: the resolved path must be exactly the lexical one, inside the
/// (resolved) root; any symbolic link on the way is refused.
pub(crate) fn check_symlinks(path: &Path, root: &Path) -> Result<(), Refusal> {
    let real = path.canonicalize().map_err(|_| Refusal::NotFound)?;
    let real_root = root.canonicalize().map_err(|_| Refusal::NotFound)?;
    let rel = path.strip_prefix(root).map_err(|_| Refusal::Forbidden)?;
    if real != real_root.join(rel) || !real.starts_with(&real_root) {
        return Err(Refusal::Forbidden);
    }
    Ok(())
}

const TYPES: &[(&str, &str)] = &[
    ("html", "text/html"),
    ("htm", "text/html"),
    ("css", "text/css"),
    ("js", "application/javascript"),
    ("mjs", "application/javascript"),
    ("json", "application/json"),
    ("map", "application/json"),
    ("txt", "text/plain"),
    ("csv", "text/csv"),
    ("xml", "text/xml"),
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("gif", "image/gif"),
    ("svg", "image/svg+xml"),
    ("ico", "image/x-icon"),
    ("webp", "image/webp"),
    ("avif", "image/avif"),
    ("woff", "font/woff"),
    ("woff2", "font/woff2"),
    ("ttf", "font/ttf"),
    ("otf", "font/otf"),
    ("pdf", "application/pdf"),
    ("zip", "application/zip"),
    ("gz", "application/gzip"),
    ("tar", "application/x-tar"),
    ("wasm", "application/wasm"),
    ("mp4", "video/mp4"),
    ("webm", "video/webm"),
    ("mp3", "audio/mpeg"),
    ("ogg", "audio/ogg"),
];

/// Content-Type by extension: the location's `types` first, then the built-in table.
pub(crate) fn content_type<'a>(path: &Path, extra: &'a [(String, String)], default: &'a str) -> &'a str {
    let Some(ext) = path.extension().and_then(|e| e.to_str()) else { return default };
    if let Some((_, t)) = extra.iter().find(|(e, _)| e.eq_ignore_ascii_case(ext)) {
        return t;
    }
    TYPES.iter().find(|(e, _)| e.eq_ignore_ascii_case(ext)).map_or(default, |(_, t)| t)
}

/// nginx's ETag: `"<mtime hex>-<size hex>"`.
pub(crate) fn etag(meta: &std::fs::Metadata) -> String {
    format!("\"{:x}-{:x}\"", meta.mtime().max(0), meta.size())
}

/// If-None-Match matches this ETag (weak comparison; `*` matches anything).
pub(crate) fn none_match(header: &[u8], etag: &str) -> bool {
    header.split(|&c| c == b',').any(|t| {
        let t = crate::http::request::trim(t);
        let t = t.strip_prefix(b"W/").unwrap_or(t);
        t == b"*" || t == etag.as_bytes()
    })
}

/// The outcome of a `Range` header against a file of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Range {
    /// No usable single range: send the whole file.
    Full,
    /// Bytes `start..=end`.
    Part(u64, u64),
    Unsatisfiable,
}

/// A single `bytes=a-b`, `bytes=a-` or `bytes=-n`; several ranges or other units are ignored
/// (the whole file is sent), as nginx does when it does not build a multipart answer.
pub(crate) fn range(header: &[u8], size: u64) -> Range {
    let Some(spec) = std::str::from_utf8(header).ok().map(str::trim).and_then(|h| h.strip_prefix("bytes=")) else { return Range::Full };
    if spec.contains(',') {
        return Range::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return Range::Full };
    let num = |s: &str| -> Option<u64> { (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())).then(|| s.parse().ok()).flatten() };
    match (a.trim(), b.trim()) {
        ("", suffix) => match num(suffix) {
            Some(0) => Range::Unsatisfiable,
            Some(n) if size > 0 => Range::Part(size.saturating_sub(n), size - 1),
            Some(_) => Range::Unsatisfiable,
            None => Range::Full,
        },
        (start, "") => match num(start) {
            Some(s) if s < size => Range::Part(s, size - 1),
            Some(_) => Range::Unsatisfiable,
            None => Range::Full,
        },
        (start, end) => match (num(start), num(end)) {
            (Some(s), Some(e)) if s <= e && s < size => Range::Part(s, e.min(size - 1)),
            (Some(s), Some(e)) if s <= e => Range::Unsatisfiable,
            _ => Range::Full,
        },
    }
}

/// A file body still to be sent with sendfile(2).
pub(crate) struct FileBody {
    pub(crate) file: File,
    pub(crate) offset: u64,
    pub(crate) remaining: u64,
}

/// Sends as much of `body` to `fd` as the socket takes. Ok(true) when it would block.
pub(crate) fn send(fd: std::os::fd::RawFd, body: &mut FileBody) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    while body.remaining > 0 {
        let mut off = body.offset as libc::off_t;
        let chunk = body.remaining.min(1 << 30) as usize;
        // SAFETY: both fds are open for the duration of the call; `off` is a valid pointer.
        let n = unsafe { libc::sendfile(fd, body.file.as_raw_fd(), &mut off, chunk) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return match e.kind() {
                std::io::ErrorKind::WouldBlock => Ok(true),
                std::io::ErrorKind::Interrupted => continue,
                _ => Err(e),
            };
        }
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "file shrank while being sent"));
        }
        body.offset += n as u64;
        body.remaining -= n as u64;
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping() {
        assert_eq!(map("/img/a.png", Path::new("/srv/www"), None), PathBuf::from("/srv/www/img/a.png"));
        assert_eq!(map("/img/a.png", Path::new("/srv/pics/"), Some("/img/")), PathBuf::from("/srv/pics/a.png"));
    }

    #[test]
    fn ranges() {
        assert_eq!(range(b"bytes=0-9", 100), Range::Part(0, 9));
        assert_eq!(range(b"bytes=90-", 100), Range::Part(90, 99));
        assert_eq!(range(b"bytes=-10", 100), Range::Part(90, 99));
        assert_eq!(range(b"bytes=50-500", 100), Range::Part(50, 99));
        assert_eq!(range(b"bytes=100-", 100), Range::Unsatisfiable);
        assert_eq!(range(b"bytes=200-300", 100), Range::Unsatisfiable);
        assert_eq!(range(b"bytes=0-1,5-6", 100), Range::Full);
        assert_eq!(range(b"items=0-1", 100), Range::Full);
        assert_eq!(range(b"bytes=9-3", 100), Range::Full);
    }

    #[test]
    fn types_and_etags() {
        assert_eq!(content_type(Path::new("a/b.CSS"), &[], "application/octet-stream"), "text/css");
        assert_eq!(content_type(Path::new("a/b.xyz"), &[("xyz".into(), "chemical/x-xyz".into())], "d"), "chemical/x-xyz");
        assert_eq!(content_type(Path::new("a/noext"), &[], "d"), "d");
        assert!(none_match(b"\"x\", W/\"5-a\"", "\"5-a\""));
        assert!(none_match(b"*", "\"1\""));
        assert!(!none_match(b"\"6-a\"", "\"5-a\""));
    }
}
