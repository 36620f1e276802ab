//! Access logs: nginx's "combined" format plus the upstream fields, written by each worker
//! into its own buffer and appended to the file in whole lines (O_APPEND), flushed at the
//! end of each event-loop pass rather than per request.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

pub struct AccessLog {
    file: File,
    buf: Vec<u8>,
}

const FLUSH_AT: usize = 64 * 1024;

impl AccessLog {
    pub fn open(path: &Path) -> std::io::Result<AccessLog> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(AccessLog { file, buf: Vec::with_capacity(FLUSH_AT) })
    }

    /// The buffer to append one line to; `end_line` must follow.
    pub fn line(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    pub fn end_line(&mut self) {
        self.buf.push(b'\n');
        if self.buf.len() >= FLUSH_AT {
            self.flush();
        }
    }

    pub fn flush(&mut self) {
        if !self.buf.is_empty() {
            if let Err(e) = self.file.write_all(&self.buf) {
                log::error!("access log write failed: {}", e);
            }
            self.buf.clear();
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Copies `v` into a quoted log field, escaping quotes, backslashes and control bytes as
/// nginx does (`\x22`).
pub fn put_escaped(out: &mut Vec<u8>, v: &[u8]) {
    for &c in v {
        if c == b'"' || c == b'\\' || !(0x20..0x7f).contains(&c) {
            let hex = b"0123456789ABCDEF";
            out.extend_from_slice(&[b'\\', b'x', hex[(c >> 4) as usize], hex[(c & 15) as usize]]);
        } else {
            out.push(c);
        }
    }
}
