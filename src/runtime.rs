//! One configuration generation as the workers run it: the parsed config plus the shared
//! state of every upstream and every worker. A reload builds a new `Runtime`; old workers
//! keep theirs. Everything shared is an atomic: the status page reads it without stalling
//! anyone. What outlives a generation (counters moved on at a reload, the record of
//! reloads) is kept here too.

use crate::config::{Config, Settings};
use crate::ratelimit::Zones;
use crate::tls::Tls;
use crate::upstream::UpstreamState;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

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
    /// `limit_req_zone`s and `limit_conn_zone`s (kept across a reload when unchanged).
    pub(crate) zones: Zones,
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
        rt.zones = Zones::build(&rt.cfg.http.limit_zones, previous.map(|p| (&p.cfg.http.limit_zones[..], &p.zones)));
        Ok(rt)
    }

    /// A generation without TLS (unit tests of what does not need it).
    pub(crate) fn new(cfg: Config, generation: u64) -> Runtime {
        process_start();
        let upstreams = cfg.http.upstreams.iter().cloned().map(UpstreamState::new).collect();
        let workers = (0..cfg.worker_processes).map(|_| WorkerStats::default()).collect();
        let zones = Zones::build(&cfg.http.limit_zones, None);
        Runtime { cfg, upstreams, generation, workers, tls: Tls::default(), zones }
    }

    /// Moves the counters of servers that still exist (same upstream name and address) from
    /// an older generation into this one. Additive: called at a reload, and again while the
    /// old generation's workers finish, it moves each count exactly once.
    pub(crate) fn absorb_counters(&self, old: &Runtime) {
        for up in &self.upstreams {
            if let Some(o) = old.upstreams.iter().find(|o| o.conf.name == up.conf.name) {
                up.absorb(o);
            }
        }
        // TLS counters follow their listening address.
        for (i, stats) in self.tls.listeners() {
            let addr = self.cfg.http.listens[i].addr;
            if let Some((_, o)) = old.tls.listeners().find(|&(j, _)| old.cfg.http.listens[j].addr == addr) {
                stats.absorb(o);
            }
        }
    }

    /// Each worker slot goes on counting accepted connections from where the previous
    /// generation's worker in that slot was (before the new workers start).
    pub(crate) fn inherit_worker_totals(&self, old: &Runtime) {
        for (new, old) in self.workers.iter().zip(&old.workers) {
            new.accepted.store(old.accepted.load(Relaxed), Relaxed);
        }
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

/// The record of reloads (SIGHUP) since the process started, for the status page.
#[derive(Default)]
pub(crate) struct Reloads {
    attempts: AtomicU64,
    failures: AtomicU64,
    /// Unix time of the last attempt (0: none yet) and whether it worked.
    last_at: AtomicU64,
    last_ok: AtomicBool,
    /// Why the last attempt failed (only the master writes it, only on a reload).
    last_error: Mutex<String>,
}

/// What the status page shows of the last reload.
pub(crate) struct LastReload {
    pub(crate) unix_time: u64,
    pub(crate) success: bool,
    pub(crate) error: Option<String>,
}

pub(crate) fn reloads() -> &'static Reloads {
    static RELOADS: OnceLock<Reloads> = OnceLock::new();
    RELOADS.get_or_init(Reloads::default)
}

impl Reloads {
    /// Records a reload attempt: Ok, or the reason the running configuration was kept.
    pub(crate) fn record(&self, result: Result<(), &str>) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if let Ok(mut e) = self.last_error.lock() {
            *e = result.err().unwrap_or("").to_string();
        }
        self.attempts.fetch_add(1, Relaxed);
        if result.is_err() {
            self.failures.fetch_add(1, Relaxed);
        }
        self.last_ok.store(result.is_ok(), Relaxed);
        self.last_at.store(now, Relaxed);
    }

    /// The attempt recorded as a success did not stand after all: it is recorded again as
    /// the failure it was (by `record(Err)`), counted once.
    pub(crate) fn undo_success(&self) {
        self.attempts.fetch_sub(1, Relaxed);
    }

    /// Attempts and failures so far.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (self.attempts.load(Relaxed), self.failures.load(Relaxed))
    }

    pub(crate) fn last(&self) -> Option<LastReload> {
        let unix_time = self.last_at.load(Relaxed);
        if unix_time == 0 {
            return None;
        }
        let success = self.last_ok.load(Relaxed);
        let error = if success { None } else { self.last_error.lock().ok().map(|e| e.clone()) };
        Some(LastReload { unix_time, success, error })
    }
}
