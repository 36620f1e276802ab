//! One configuration generation as the workers run it: the parsed config plus the shared
//! state of every upstream and every worker. A reload builds a new `Runtime`; old workers
//! keep theirs. Everything shared is an atomic: the status page reads it without stalling
//! anyone.

use crate::config::{Config, Settings};
use crate::tls::Tls;
use crate::upstream::UpstreamState;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Instant;

/// What a worker publishes about itself (updated as it goes, and once a second).
/// Aligned to its own cache lines: each worker writes only its own.
#[derive(Default, Debug)]
#[repr(align(128))]
pub(crate) struct WorkerStats {
    pub(crate) connections: AtomicU64,
    pub(crate) accepted: AtomicU64,
    pub(crate) buffers_in_use: AtomicU64,
    pub(crate) buffers_high_water: AtomicU64,
    pub(crate) buffers_limit: AtomicU64,
    pub(crate) idle_backend: AtomicU64,
}

pub(crate) struct Runtime {
    pub(crate) cfg: Config,
    pub(crate) upstreams: Vec<UpstreamState>,
    pub(crate) generation: u64,
    pub(crate) workers: Vec<WorkerStats>,
    /// Certificates and TLS configurations of the `listen ... ssl` addresses.
    pub(crate) tls: Tls,
}

/// When the process started (uptime on the status page).
pub(crate) fn process_start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

impl Runtime {
    /// A generation, its certificates and keys loaded and checked (`FILE: what is wrong`).
    /// `previous`: the running generation, whose TLS ticket keys are kept.
    pub(crate) fn build(cfg: Config, generation: u64, previous: Option<&Runtime>) -> Result<Runtime, String> {
        let tls = Tls::build(&cfg, previous.map(|p| &p.tls))?;
        let mut rt = Runtime::new(cfg, generation);
        rt.tls = tls;
        Ok(rt)
    }

    /// A generation without TLS (unit tests of what does not need it).
    pub(crate) fn new(cfg: Config, generation: u64) -> Runtime {
        process_start();
        let upstreams = cfg.http.upstreams.iter().cloned().map(UpstreamState::new).collect();
        let workers = (0..cfg.worker_processes).map(|_| WorkerStats::default()).collect();
        Runtime { cfg, upstreams, generation, workers, tls: Tls::default() }
    }

    /// Keeps runtime changes made on the manager page across a reload.
    pub(crate) fn inherit_overrides(&self, old: &Runtime) {
        for up in &self.upstreams {
            if let Some(o) = old.upstreams.iter().find(|o| o.conf.name == up.conf.name) {
                up.inherit_overrides(o);
            }
        }
    }

    /// Settings of a location, or of its server when no location matched.
    pub(crate) fn location_settings(&self, server: usize, loc: usize) -> &Settings {
        let s = &self.cfg.http.servers[server];
        s.locations.get(loc).map_or(&s.settings, |l| &l.settings)
    }

    pub(crate) fn worker(&self, id: usize) -> Option<&WorkerStats> {
        self.workers.get(id)
    }
}

impl WorkerStats {
    pub(crate) fn set(v: &AtomicU64, n: u64) {
        v.store(n, Relaxed);
    }
}
