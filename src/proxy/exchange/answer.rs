//! Answers pounce writes itself: errors and `return` (one piece, into `cout` at once), and
//! static files (a head, then the file by sendfile(2), or compressed through `cout` when gzip
//! applies). The status page is in `drive.rs`.

use super::{Exchange, OwnBody};
use crate::config::Settings;
use crate::files::{self, FileBody, Range};
use crate::gzip::{self, Ask};
use crate::http::request;
use crate::http::status::{added_headers, head_end, head_start, write_simple};
use crate::http::writer::ReqFacts;
use crate::proxy::client::Client;
use crate::proxy::{Closed, Res};
use crate::reactor::Ctx;
use std::io;

impl Exchange {
    /// Answers from pounce itself (errors, `return`): the whole response goes into `cout`.
    pub(crate) fn answer(&mut self, c: &mut Client, ctx: &mut Ctx, code: u16, text: Option<&str>) -> Res<()> {
        let head_only = self.meta.method == request::Method::Head;
        let keep = self.keep_alive;
        let rt = ctx.rt.clone();
        let extra = &self.settings(&rt).add_header;
        let cout = c.ensure_cout(ctx)?;
        let mark = cout.len();
        let Some(head) = write_simple(cout, code, text, keep, head_only, &ctx.clock.http_date, extra) else { return Err(Closed::ByUs) };
        self.writer.head_bytes += head as u64;
        self.writer.body_bytes = (cout.len() - mark - head) as u64;
        self.writer.status = code;
        self.writer.started = true;
        self.writer.finished = true;
        self.writer.keep_alive = keep;
        self.phase = self.after_answer();
        Ok(())
    }

    /// Writes the head of a static-file answer and queues the file for sendfile(2).
    pub(crate) fn answer_static(&mut self, c: &mut Client, ctx: &mut Ctx, answer: StaticAnswer) -> Res<()> {
        let file = match answer {
            StaticAnswer::Status(code) => return self.answer(c, ctx, code, None),
            StaticAnswer::Redirect(to) => return self.answer(c, ctx, 301, Some(&to)),
            StaticAnswer::File(f) => f,
        };
        let keep = self.keep_alive && !ctx.draining;
        self.keep_alive = keep;
        let rt = ctx.rt.clone();
        let settings = self.settings(&rt);
        let head_only = self.meta.method == request::Method::Head;
        // gzip sees the file's 200: a compressed answer is the whole file (Range is ignored,
        // as in nginx, whose range filter skips a body of unknown length).
        let gz = match self.gzip {
            Some(client) if !head_only && matches!(file.status, 200 | 206 | 416) => {
                let hs: [(&[u8], &[u8]); 3] =
                    [(b"Content-Type", file.content_type.as_bytes()), (b"Last-Modified", file.last_modified.as_bytes()), (b"ETag", file.etag.as_bytes())];
                let ask = Ask { settings, client };
                let d = gzip::decide(&ask, 200, hs.into_iter(), Some(file.size), &ctx.clock.http_date);
                if d.compress {
                    return self.answer_compressed(c, ctx, file, ask);
                }
                d
            }
            _ => gzip::Decision::default(),
        };
        let cout = c.ensure_cout(ctx)?;
        let mark = cout.len();
        use std::fmt::Write as _;
        let mut ok = head_start(cout, file.status, &ctx.clock.http_date)
            && write!(cout, "Content-Type: {}\r\nLast-Modified: {}\r\nETag: {}\r\nAccept-Ranges: bytes\r\n", file.content_type, file.last_modified, file.etag)
                .is_ok();
        if file.status != 304 {
            ok = ok && write!(cout, "Content-Length: {}\r\n", if file.status == 416 { 0 } else { file.length }).is_ok();
        }
        if gz.vary {
            ok = ok && cout.put_all(b"Vary: Accept-Encoding\r\n");
        }
        match file.status {
            206 => ok = ok && write!(cout, "Content-Range: bytes {}-{}/{}\r\n", file.offset, file.offset + file.length - 1, file.size).is_ok(),
            416 => ok = ok && write!(cout, "Content-Range: bytes */{}\r\n", file.size).is_ok(),
            _ => {}
        }
        ok = ok && added_headers(cout, file.status, &settings.add_header);
        if !(ok && head_end(cout, keep)) {
            return Err(Closed::ByUs);
        }
        self.writer.head_bytes += (cout.len() - mark) as u64;
        self.writer.status = file.status;
        self.writer.started = true;
        self.writer.keep_alive = keep;
        if head_only || file.length == 0 || matches!(file.status, 304 | 416) {
            self.writer.finished = true;
            self.phase = self.after_answer();
        } else {
            self.phase = super::Phase::Answering(OwnBody::File(FileBody { file: file.file, offset: file.offset, remaining: file.length }));
        }
        Ok(())
    }
}

impl Exchange {
    /// A whole static file compressed: the head through the response writer (as a proxied
    /// response's), then the file read and compressed into `cout` as room appears.
    fn answer_compressed(&mut self, c: &mut Client, ctx: &mut Ctx, file: StaticFile, ask: Ask) -> Res<()> {
        let hs: [(&[u8], &[u8]); 3] =
            [(b"Content-Type", file.content_type.as_bytes()), (b"Last-Modified", file.last_modified.as_bytes()), (b"ETag", file.etag.as_bytes())];
        let cout = c.ensure_cout(ctx)?;
        let facts = ReqFacts {
            head: false,
            minor: self.meta.minor,
            keep_alive: self.keep_alive,
            scheme: "http",
            host: b"",
            rewrite_from: [b"", b""],
            rewrite: false,
            date: &ctx.clock.http_date,
            via: None,
            add_headers: &ask.settings.add_header,
            gzip: Some(ask),
        };
        if !self.writer.head(cout, 200, hs.into_iter(), Some(file.size), &facts) {
            return Err(Closed::ByUs);
        }
        self.keep_alive = self.writer.keep_alive;
        self.phase = super::Phase::Answering(OwnBody::Compressed(FileBody { file: file.file, offset: 0, remaining: file.size }));
        Ok(())
    }
}

/// Conditional and range headers of a static-file request.
pub(crate) struct StaticConditions<'a> {
    pub(crate) if_none_match: Option<&'a [u8]>,
    pub(crate) if_modified_since: Option<&'a [u8]>,
    pub(crate) range: Option<&'a [u8]>,
}

pub(crate) struct StaticFile {
    file: std::fs::File,
    status: u16,
    content_type: String,
    last_modified: String,
    etag: String,
    size: u64,
    offset: u64,
    length: u64,
}

pub(crate) enum StaticAnswer {
    Status(u16),
    Redirect(String),
    File(StaticFile),
}

/// Maps a request to a file and decides the answer (200/206/304/416, or an error status).
/// `uri` is the normalized path (`http::uri`); `target` the raw one, for its query.
pub(crate) fn static_answer(
    method: &str,
    target: &str,
    uri: &[u8],
    s: &Settings,
    alias: Option<&std::path::Path>,
    loc_path: &str,
    c: &StaticConditions,
) -> StaticAnswer {
    if method != "GET" && method != "HEAD" {
        return StaticAnswer::Status(405);
    }
    let Ok(uri) = std::str::from_utf8(uri) else { return StaticAnswer::Status(400) };
    let Some(root) = alias.or(s.root.as_deref()) else { return StaticAnswer::Status(404) };
    let mut path = files::map(uri, root, alias.map(|_| loc_path));
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return StaticAnswer::Status(403),
        Err(_) => return StaticAnswer::Status(404),
    };
    let meta = if meta.is_dir() {
        if !uri.ends_with('/') {
            let query = target.split_once('?').map_or(String::new(), |(_, q)| format!("?{}", q));
            return StaticAnswer::Redirect(format!("{}/{}", uri, query));
        }
        match s.index.iter().map(|i| path.join(i)).find_map(|p| std::fs::metadata(&p).ok().filter(|m| m.is_file()).map(|m| (p, m))) {
            Some((p, m)) => {
                path = p;
                m
            }
            // No listings.
            None => return StaticAnswer::Status(403),
        }
    } else {
        meta
    };
    if !meta.is_file() {
        return StaticAnswer::Status(404);
    }
    if s.disable_symlinks {
        if let Err(r) = files::check_symlinks(&path, root) {
            return StaticAnswer::Status(r.status());
        }
    }
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return StaticAnswer::Status(403),
        Err(_) => return StaticAnswer::Status(404),
    };
    use std::os::unix::fs::MetadataExt;
    let size = meta.len();
    let etag = files::etag(&meta);
    let last_modified = crate::logging::time::http_date(meta.mtime().max(0) as u64);
    let not_modified = match (c.if_none_match, c.if_modified_since) {
        (Some(inm), _) => files::none_match(inm, &etag),
        (None, Some(ims)) => request::trim(ims) == last_modified.as_bytes(),
        _ => false,
    };
    let (status, offset, length) = if not_modified {
        (304, 0, 0)
    } else {
        match c.range.map_or(Range::Full, |r| files::range(r, size)) {
            Range::Full => (200, 0, size),
            Range::Part(a, b) => (206, a, b - a + 1),
            Range::Unsatisfiable => (416, 0, 0),
        }
    };
    let content_type = files::content_type(&path, &s.types, &s.default_type).to_string();
    StaticAnswer::File(StaticFile { file, status, content_type, last_modified, etag, size, offset, length })
}
