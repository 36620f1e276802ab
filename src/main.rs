//! Command line: `pounce [-c FILE] [-p PREFIX] [-t] [-s stop|quit|reload] [-V] [-h]`.

use std::path::PathBuf;

fn usage(opts: &getopts::Options) -> String {
    opts.usage("Usage: pounce [-c FILE] [-p PREFIX] [-t] [-s stop|quit|reload] [-V] [-h]")
}

fn main() {
    std::process::exit(run());
}

fn run() -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = getopts::Options::new();
    opts.optopt("c", "", "configuration file (default: PREFIX/conf/pounce.conf)", "FILE");
    opts.optopt("p", "", "prefix for relative paths (default: current directory)", "PREFIX");
    opts.optflag("t", "", "test the configuration and exit");
    opts.optopt("s", "", "send a signal to the running master: stop, quit, reload", "SIGNAL");
    opts.optflag("V", "", "print the version and exit");
    opts.optflag("h", "", "print this help and exit");
    let m = match opts.parse(&args) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("pounce: {}\n{}", e, usage(&opts));
            return 2;
        }
    };
    if m.opt_present("h") {
        print!("{}", usage(&opts));
        return 0;
    }
    if m.opt_present("V") {
        println!("pounce version {}", env!("CARGO_PKG_VERSION"));
        return 0;
    }
    if !m.free.is_empty() {
        eprintln!("pounce: unexpected argument \"{}\"\n{}", m.free[0], usage(&opts));
        return 2;
    }
    let prefix = match m.opt_str("p") {
        Some(p) => PathBuf::from(p),
        None => std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
    };
    let conf = m.opt_str("c").map_or_else(|| prefix.join("conf/pounce.conf"), PathBuf::from);
    let cfg = match pounce::config::load(&conf, &prefix) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}", e);
            if m.opt_present("t") {
                eprintln!("pounce: configuration file {} test failed", conf.display());
            }
            return 1;
        }
    };
    if m.opt_present("t") {
        if let Err(e) = pounce::master::check(&cfg) {
            eprintln!("pounce: {}", e);
            eprintln!("pounce: configuration file {} test failed", conf.display());
            return 1;
        }
        println!("pounce: configuration file {} test is successful", conf.display());
        return 0;
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
