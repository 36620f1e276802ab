//! Access logs: each worker renders lines into its own buffer (no allocation per line once
//! the buffer has grown) and appends them to the file in whole lines (O_APPEND), flushed at
//! the end of each event-loop pass rather than per request. `reopen` starts a new file at the
//! same path (log rotation: SIGUSR1, `pounce -s reopen`).

use super::format::{render, ValueSource};
use crate::config::LogFormat;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct AccessLog {
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    /// A variable's raw value before it is escaped into `buf`.
    scratch: Vec<u8>,
}

const FLUSH_AT: usize = 64 * 1024;

/// Opens `path` for appending, creating it (and its directory) when missing.
pub fn open_append(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

impl AccessLog {
    pub fn open(path: &Path) -> std::io::Result<AccessLog> {
        let file = open_append(path)?;
        Ok(AccessLog { path: path.to_path_buf(), file, buf: Vec::with_capacity(FLUSH_AT + 4096), scratch: Vec::with_capacity(256) })
    }

    /// Renders one line in `format`, its variables' values from `values`.
    pub fn write_line(&mut self, format: &LogFormat, values: &impl ValueSource) {
        render(&mut self.buf, &mut self.scratch, format, values);
        self.buf.push(b'\n');
        if self.buf.len() >= FLUSH_AT {
            self.flush();
        }
    }

    pub fn flush(&mut self) {
        if !self.buf.is_empty() {
            if let Err(e) = self.file.write_all(&self.buf) {
                log::error!("write() to access log \"{}\" failed: {}", self.path.display(), e);
            }
            self.buf.clear();
        }
    }

    /// Writes what is buffered to the old file, then continues in a new file at the same
    /// path. If it cannot be opened, the old one is kept and the error logged.
    pub fn reopen(&mut self) {
        self.flush();
        match open_append(&self.path) {
            Ok(f) => self.file = f,
            Err(e) => log::error!("cannot reopen access log \"{}\": {}", self.path.display(), e),
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.flush();
    }
}
