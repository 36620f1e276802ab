//! Answers pounce writes itself: the status page, static files (sent with sendfile), and
//! the WebSocket tunnel's byte copying.

use super::*;

impl Session {
    /// Answers a status-page request once its body is complete.
    pub(super) fn serve_status(&mut self, ctx: &mut Ctx) -> Res<bool> {
        let Some(ex) = self.ex.as_mut() else { return Ok(false) };
        if ex.handling != Handling::Status || !ex.body_done() || ex.writer.started {
            return Ok(false);
        }
        let Some(sr) = ex.status_req.take() else { return Ok(false) };
        // The page reports the buffers of everyone but the request asking for it, so an
        // idle worker shows 0.
        let own = self.cin.is_some() as usize + self.cout.is_some() as usize;
        ctx.publish(own);
        let rt = ctx.rt.clone();
        let resp = crate::status::handle(&rt, &crate::status::StatusRequest { method: &sr.method, target: &sr.target, accept: &sr.accept, body: &sr.form });
        if !self.ensure_cout(ctx) {
            return self.refuse_no_buffers(ctx);
        }
        let (Some(ex), Some(cout)) = (self.ex.as_mut(), self.cout.as_mut()) else { return Ok(false) };
        let keep = ex.keep_alive && !ctx.draining;
        use std::fmt::Write as _;
        let mut ok = head_start(cout, resp.status, &ctx.clock.http_date)
            && write!(cout, "Content-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n", resp.content_type, resp.body.len()).is_ok();
        if let Some(loc) = &resp.location {
            ok = ok && write!(cout, "Location: {}\r\n", loc).is_ok();
        }
        ok = ok && head_end(cout, keep);
        if !ok {
            return Err(Closed);
        }
        ex.writer.status = resp.status;
        ex.writer.started = true;
        ex.writer.keep_alive = keep;
        ex.writer.body_bytes = resp.body.len() as u64;
        if !keep {
            self.closing = true;
        }
        if sr.method == "HEAD" || resp.body.is_empty() {
            ex.writer.finished = true;
            ex.resp_done = true;
        } else {
            ex.page = Some(resp.body);
            ex.page_off = 0;
        }
        Ok(true)
    }

    /// Writes the head of a static-file answer and queues the file for sendfile(2).
    pub(super) fn respond_static(&mut self, ctx: &mut Ctx, answer: StaticAnswer, head_only: bool, settings: &Settings) -> Res<()> {
        let file = match answer {
            StaticAnswer::Status(code) => return self.respond(ctx, code, None, settings),
            StaticAnswer::Redirect(to) => return self.respond(ctx, 301, Some(&to), settings),
            StaticAnswer::File(f) => f,
        };
        if !self.ensure_cout(ctx) {
            return self.refuse_no_buffers(ctx).map(|_| ());
        }
        let (Some(ex), Some(cout)) = (self.ex.as_mut(), self.cout.as_mut()) else { return Ok(()) };
        let keep = ex.keep_alive && !ctx.draining;
        use std::fmt::Write as _;
        let mut ok = head_start(cout, file.status, &ctx.clock.http_date)
            && write!(cout, "Content-Type: {}\r\nLast-Modified: {}\r\nETag: {}\r\nAccept-Ranges: bytes\r\n", file.content_type, file.last_modified, file.etag)
                .is_ok();
        if file.status != 304 {
            ok = ok && write!(cout, "Content-Length: {}\r\n", if file.status == 416 { 0 } else { file.length }).is_ok();
        }
        match file.status {
            206 => ok = ok && write!(cout, "Content-Range: bytes {}-{}/{}\r\n", file.offset, file.offset + file.length - 1, file.size).is_ok(),
            416 => ok = ok && write!(cout, "Content-Range: bytes */{}\r\n", file.size).is_ok(),
            _ => {}
        }
        ok = ok && head_end(cout, keep);
        if !ok {
            return Err(Closed);
        }
        ex.writer.status = file.status;
        ex.writer.started = true;
        ex.writer.keep_alive = keep;
        if !keep {
            self.closing = true;
        }
        if head_only || file.length == 0 || matches!(file.status, 304 | 416) {
            ex.writer.finished = true;
            ex.resp_done = true;
        } else {
            ex.file = Some(FileBody { file: file.file, offset: file.offset, remaining: file.length });
        }
        Ok(())
    }

    /// Sends a queued file with sendfile(2) once the head is out.
    pub(super) fn send_file(&mut self, ctx: &mut Ctx) -> Res<bool> {
        let Some(ex) = self.ex.as_mut() else { return Ok(false) };
        let Some(body) = ex.file.as_mut() else { return Ok(false) };
        if !self.c_writable || self.cout.as_ref().is_some_and(|b| !b.is_empty()) {
            return Ok(false);
        }
        use std::os::fd::AsRawFd;
        let before = body.remaining;
        match files::send(self.client.as_raw_fd(), body) {
            Ok(blocked) => {
                let (left, sent) = (body.remaining, before - body.remaining);
                ex.writer.body_bytes += sent;
                if blocked {
                    self.c_writable = false;
                    self.t_wblock = ctx.now;
                }
                if left == 0 {
                    ex.file = None;
                    ex.writer.finished = true;
                    ex.resp_done = true;
                }
                Ok(sent > 0)
            }
            Err(e) => {
                log::info!("client {}: sendfile() failed: {}", self.peer, e);
                Err(Closed)
            }
        }
    }

    /// After a 101: copies bytes both ways (the sockets are read and written by the usual
    /// client and backend I/O, with the usual back-pressure) until either side closes.
    pub(super) fn tunnel(&mut self, ctx: &mut Ctx) -> Res<bool> {
        let mut progress = self.backend_io(ctx)?;
        let Some(ex) = self.ex.as_mut() else { return Err(Closed) };
        let Some(up) = ex.up.as_mut() else { return Err(Closed) };
        if let (Some(cin), Some(bout)) = (self.cin.as_mut(), up.bout.as_mut()) {
            let n = bout.put(cin.data());
            cin.consume(n);
            progress |= n > 0;
        }
        if self.cout.is_none() {
            self.cout = ctx.pool.get();
        }
        if let (Some(bin), Some(cout)) = (up.bin.as_mut(), self.cout.as_mut()) {
            let n = cout.put(bin.data());
            bin.consume(n);
            progress |= n > 0;
        }
        let client_done = self.c_eof && self.cin.as_ref().is_none_or(|b| b.is_empty()) && up.bout.as_ref().is_none_or(|b| b.is_empty());
        let backend_done = up.eof && up.bin.as_ref().is_none_or(|b| b.is_empty()) && self.cout.as_ref().is_none_or(|b| b.is_empty());
        if client_done || backend_done {
            return Err(Closed);
        }
        Ok(progress)
    }

    /// Copies as much of a pending generated page into the client buffer as fits.
    pub(super) fn copy_page(&mut self) -> bool {
        let (Some(ex), Some(cout)) = (self.ex.as_mut(), self.cout.as_mut()) else { return false };
        let Some(page) = ex.page.as_ref() else { return false };
        let n = cout.put(&page[ex.page_off..]);
        ex.page_off += n;
        if ex.page_off == page.len() {
            ex.page = None;
            ex.writer.finished = true;
            ex.resp_done = true;
        }
        n > 0
    }
}

/// Conditional and range headers of a static-file request.
pub(super) struct StaticConditions<'a> {
    pub(super) if_none_match: Option<&'a [u8]>,
    pub(super) if_modified_since: Option<&'a [u8]>,
    pub(super) range: Option<&'a [u8]>,
}

pub(super) struct StaticFile {
    file: std::fs::File,
    status: u16,
    content_type: String,
    last_modified: String,
    etag: String,
    size: u64,
    offset: u64,
    length: u64,
}

pub(super) enum StaticAnswer {
    Status(u16),
    Redirect(String),
    File(StaticFile),
}

/// Maps a request to a file and decides the answer (200/206/304/416, or an error status).
/// `uri` is the normalized path (`http::uri`); `target` the raw one, for its query.
pub(super) fn static_answer(
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
