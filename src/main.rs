//! Command line: `pounce [-c FILE] [-p PREFIX] [-t | -T] [-s stop|quit|reload|reopen] [-V] [-h]`.

use std::path::{Path, PathBuf};

const USAGE: &str = "Usage: pounce [-c FILE] [-p PREFIX] [-t | -T] [-s stop|quit|reload|reopen] [-V] [-h]";

fn main() {
    std::process::exit(run());
}

fn run() -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = getopts::Options::new();
    opts.optopt("c", "", "configuration file (default: PREFIX/conf/pounce.conf)", "FILE");
    opts.optopt("p", "", "prefix for relative paths (default: current directory)", "PREFIX");
    opts.optflag("t", "", "test the configuration (and that every log file can be opened) and exit");
    opts.optflag("T", "", "as -t, then print every configuration file read, includes resolved");
    opts.optopt("s", "", "send a signal to the running master: stop, quit, reload, reopen", "SIGNAL");
    opts.optflag("V", "", "print the version and exit");
    opts.optflag("h", "", "print this help and exit");
    let m = match opts.parse(&args) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("pounce: {}\n{}", e, opts.usage(USAGE));
            return 2;
        }
    };
    if m.opt_present("h") {
        print!("{}", opts.usage(USAGE));
        return 0;
    }
    if m.opt_present("V") {
        println!("pounce version {}", env!("CARGO_PKG_VERSION"));
        return 0;
    }
    if !m.free.is_empty() {
        eprintln!("pounce: unexpected argument \"{}\"\n{}", m.free[0], opts.usage(USAGE));
        return 2;
    }
    let prefix = match m.opt_str("p") {
        Some(p) => PathBuf::from(p),
        None => std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
    };
    let conf = m.opt_str("c").map_or_else(|| prefix.join("conf/pounce.conf"), PathBuf::from);
    let (test, dump) = (m.opt_present("t"), m.opt_present("T"));
    let loaded = if dump { pounce::config::load_with_sources(&conf, &prefix) } else { pounce::config::load(&conf, &prefix).map(|c| (c, Vec::new())) };
    let (cfg, sources) = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}", e);
            if test || dump {
                eprintln!("pounce: configuration file {} test failed", conf.display());
            }
            return 1;
        }
    };
    if test || dump {
        return test_config(&cfg, &conf, dump.then_some(&sources[..]));
    }
    if let Some(sig) = m.opt_str("s") {
        return match pounce::master::send_signal(cfg.pid.as_deref(), &sig) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("pounce: {}", e);
                1
            }
        };
    }
    if let Err(e) = pounce::logging::init_error_log(cfg.error_log.as_deref(), cfg.error_level) {
        eprintln!("pounce: cannot open error log: {}", e);
        return 1;
    }
    pounce::master::block_signals();
    pounce::master::run(cfg)
}

/// `-t` and `-T`: the configuration is valid; so is every log file it names (opened, and
/// created if missing, as pounce will at start). `-T` then prints every file read, as
/// `nginx -T` does (the success line goes to stderr then, so stdout is the configuration).
fn test_config(cfg: &pounce::config::Config, conf: &Path, sources: Option<&[pounce::config::Source]>) -> i32 {
    let logs = cfg.error_log.iter().map(|p| ("error log", p)).chain(cfg.http.access_logs.iter().map(|p| ("access log", p)));
    for (what, path) in logs {
        if let Err(e) = pounce::logging::access::open_append(path) {
            eprintln!("pounce: cannot open {} \"{}\": {}", what, path.display(), e);
            eprintln!("pounce: configuration file {} test failed", conf.display());
            return 1;
        }
    }
    // Certificates and keys load, and pair up, as they will at start.
    if let Err(e) = pounce::master::check(cfg) {
        eprintln!("pounce: {}", e);
        eprintln!("pounce: configuration file {} test failed", conf.display());
        return 1;
    }
    let ok = format!("pounce: configuration file {} test is successful", conf.display());
    match sources {
        None => println!("{}", ok),
        Some(files) => {
            eprintln!("{}", ok);
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            for (path, text) in files {
                let _ = writeln!(out, "# configuration file {}:", path.display());
                let _ = out.write_all(text);
                let _ = writeln!(out, "{}", if text.ends_with(b"\n") { "" } else { "\n" });
            }
        }
    }
    0
}
