//! Logs: the access log (per worker, buffered) and the error log (the `log` facade through
//! env_logger, in nginx's line format). The error log's file can be reopened (log rotation)
//! and replaced (a reload with another `error_log`) while pounce runs.

pub mod access;
pub mod format;
pub mod time;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// This process's id, read once (`getpid` is a system call).
pub fn pid() -> u32 {
    static PID: OnceLock<u32> = OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// Where error-log lines go: a file (and its path, to reopen it), or stderr when None.
static ERROR_LOG: Mutex<Option<(PathBuf, File)>> = Mutex::new(None);

/// env_logger's target: whatever `ERROR_LOG` holds at the time of each line.
struct ErrorLogSink;

impl Write for ErrorLogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match ERROR_LOG.lock() {
            Ok(mut g) => match g.as_mut() {
                Some((_, f)) => f.write(buf),
                None => std::io::stderr().write(buf),
            },
            Err(_) => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The configured error log's level unless `RUST_LOG` says otherwise (then it rules, and a
/// reload does not change it).
fn rust_log() -> Option<String> {
    std::env::var("RUST_LOG").ok()
}

/// Sends the error log to `path` (stderr when None) at `level`. `RUST_LOG` overrides the level.
pub fn init_error_log(path: Option<&Path>, level: log::LevelFilter) -> std::io::Result<()> {
    set_error_log(path)?;
    let mut b = env_logger::Builder::new();
    // env_logger lets everything through; the level is the `log` crate's maximum, which a
    // reload can raise or lower.
    b.filter_level(log::LevelFilter::Trace);
    if let Some(spec) = rust_log() {
        b.parse_filters(&spec);
    }
    b.target(env_logger::Target::Pipe(Box::new(ErrorLogSink)));
    let pid = pid();
    b.format(move |buf, rec| {
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let level = match rec.level() {
            log::Level::Error => "error",
            log::Level::Warn => "warn",
            log::Level::Info => "info",
            log::Level::Debug | log::Level::Trace => "debug",
        };
        let thread = std::thread::current();
        writeln!(buf, "{} [{}] {}#{}: {}", time::error_log_time(secs), level, pid, thread.name().unwrap_or("main"), rec.args())
    });
    b.try_init().map_err(std::io::Error::other)?;
    set_error_level(level);
    Ok(())
}

/// The error log's level (unless `RUST_LOG` is set).
pub fn set_error_level(level: log::LevelFilter) {
    if rust_log().is_none() {
        log::set_max_level(level);
    }
}

/// Opens `path` for the error log (stderr when None) and switches to it; on failure the
/// current one stays.
pub fn set_error_log(path: Option<&Path>) -> std::io::Result<()> {
    let next = match path {
        Some(p) => Some((p.to_path_buf(), access::open_append(p)?)),
        None => None,
    };
    if let Ok(mut g) = ERROR_LOG.lock() {
        *g = next;
    }
    Ok(())
}

/// The error log's path now (None: stderr).
pub fn error_log_path() -> Option<PathBuf> {
    ERROR_LOG.lock().ok().and_then(|g| g.as_ref().map(|(p, _)| p.clone()))
}

/// Starts a new error-log file at the same path (log rotation).
pub fn reopen_error_log() -> std::io::Result<()> {
    match error_log_path() {
        Some(p) => set_error_log(Some(&p)),
        None => Ok(()),
    }
}
