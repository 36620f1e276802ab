//! The open-file limit against what the configuration needs: every worker connection may
//! hold a client and a backend socket. At start the soft limit is raised as far as needed
//! (up to the hard limit, as systemd expects services to do); what is still missing is said
//! at once, rather than met later as accept() errors and 502s.

use crate::config::Config;

/// File descriptors the configuration can use at its peak.
pub fn needed(cfg: &Config) -> libc::rlim_t {
    let w = cfg.worker_processes as libc::rlim_t;
    let listens = cfg.http.listens.len() as libc::rlim_t;
    let probes: libc::rlim_t = cfg.http.upstreams.iter().filter(|u| u.health_check.is_some()).map(|u| u.servers.len() as libc::rlim_t).sum();
    // Per worker: its epoll and waker, its listening sockets (and the master's copies), its
    // access logs, a client and a backend connection per worker_connections. Then the
    // process's own: std streams, error log, pid file; and the health probes.
    w * (2 + 2 * listens + cfg.http.access_logs.len() as libc::rlim_t + 2 * cfg.worker_connections as libc::rlim_t) + 8 + probes
}

fn get() -> Option<libc::rlimit> {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit fills the struct we pass.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0).then_some(r)
}

/// Checks (and at start, raises) RLIMIT_NOFILE for `cfg`. A shortfall is logged as a
/// warning, and at start also printed.
pub fn check_open_files(cfg: &Config, at_start: bool) {
    let need = needed(cfg);
    let Some(mut r) = get() else { return };
    if r.rlim_cur < need && at_start && r.rlim_max > r.rlim_cur {
        let raised = libc::rlimit { rlim_cur: need.min(r.rlim_max), rlim_max: r.rlim_max };
        // SAFETY: setrlimit with a soft limit within the hard one.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            r = raised;
        }
    }
    if r.rlim_cur < need {
        let msg = format!(
            "the open file limit (RLIMIT_NOFILE) is {}, below the {} that worker_processes {} x worker_connections {} need (a client and a backend connection each): raise it (ulimit -n, systemd's LimitNOFILE=) or lower worker_connections",
            r.rlim_cur, need, cfg.worker_processes, cfg.worker_connections
        );
        if at_start {
            eprintln!("pounce: warning: {}", msg);
        }
        log::warn!("{}", msg);
    }
}
