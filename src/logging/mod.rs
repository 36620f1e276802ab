//! Logs: the access log (per worker, buffered) and the error log (the `log` facade through
//! env_logger, in nginx's line format).

pub mod access;
pub mod format;
pub mod time;

use std::io::Write;
use std::sync::OnceLock;

/// This process's id, read once (`getpid` is a system call).
pub fn pid() -> u32 {
    static PID: OnceLock<u32> = OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// Sends the error log to `path` (stderr when None) at `level`. `RUST_LOG` overrides the level.
pub fn init_error_log(path: Option<&std::path::Path>, level: log::LevelFilter) -> std::io::Result<()> {
    let mut b = env_logger::Builder::new();
    b.filter_level(level);
    if let Ok(spec) = std::env::var("RUST_LOG") {
        b.parse_filters(&spec);
    }
    if let Some(p) = path {
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let f = std::fs::OpenOptions::new().create(true).append(true).open(p)?;
        b.target(env_logger::Target::Pipe(Box::new(f)));
    }
    let pid = std::process::id();
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
    b.try_init().map_err(std::io::Error::other)
}
