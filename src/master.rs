//! The master thread: holds the pid file (locked), owns the listening sockets, starts one
//! worker per core, and turns signals into actions — SIGHUP reload, SIGUSR1 reopen the logs,
//! SIGQUIT graceful stop, SIGTERM/SIGINT fast stop. Signals are blocked in every thread and
//! taken synchronously with sigtimedwait, so no handler runs inside a worker.
//! It also carries what outlives a generation: each reload's result, and the counters of the
//! generations still finishing, moved into the running one.

use crate::config::{self, Config};
use crate::pidfile::PidFile;
use crate::runtime::{reloads, Runtime};
use crate::worker::{listener::bind_reuseport, Control, Worker, CMD_QUIT, CMD_RUN, CMD_STOP, WAKER};
use mio::{Poll, Waker};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU8};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

struct WorkerHandle {
    control: Arc<Control>,
    thread: JoinHandle<()>,
    id: usize,
}

/// Sockets by (address, worker slot), kept across reloads so no queued connection is lost.
type Sockets = HashMap<(SocketAddr, usize), TcpListener>;

pub fn signal_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data initialised by sigemptyset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGHUP, libc::SIGTERM, libc::SIGINT, libc::SIGQUIT, libc::SIGUSR1] {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Blocks the control signals in this thread (and every thread it starts later).
pub fn block_signals() {
    let set = signal_set();
    // SAFETY: set is a valid, initialised sigset.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

fn wait_signal(timeout: Duration) -> Option<i32> {
    let set = signal_set();
    let ts = libc::timespec { tv_sec: timeout.as_secs() as libc::time_t, tv_nsec: timeout.subsec_nanos() as libc::c_long };
    // SAFETY: set and ts are valid for the call; info may be null.
    let r = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    (r > 0).then_some(r)
}

/// Makes sure every (listen address, worker slot) has a socket; returns the dup'd sockets
/// for each worker.
pub fn prepare_sockets(cfg: &Config, sockets: &mut Sockets) -> std::io::Result<Vec<Vec<(TcpListener, usize)>>> {
    let mut per_worker = Vec::new();
    for w in 0..cfg.worker_processes {
        let mut mine = Vec::new();
        for (idx, l) in cfg.http.listens.iter().enumerate() {
            let key = (l.addr, w);
            if let std::collections::hash_map::Entry::Vacant(e) = sockets.entry(key) {
                e.insert(bind_reuseport(l.addr, 4096)?);
            }
            if let Some(s) = sockets.get(&key) {
                mine.push((s.try_clone()?, idx));
            }
        }
        per_worker.push(mine);
    }
    Ok(per_worker)
}

fn spawn_workers(rt: &Arc<Runtime>, per_worker: Vec<Vec<(TcpListener, usize)>>) -> std::io::Result<Vec<WorkerHandle>> {
    let mut out = Vec::new();
    for (id, listeners) in per_worker.into_iter().enumerate() {
        match spawn_one(rt, id, listeners) {
            Ok(w) => out.push(w),
            Err(e) => {
                // The generation does not start: the workers it already has stop again.
                for w in &out {
                    w.control.send(CMD_STOP);
                }
                join_all(out.into_iter().map(|w| (w, Instant::now())).collect());
                return Err(e);
            }
        }
    }
    Ok(out)
}

/// Moves what the finishing generations counted into the running one; forgets those whose
/// workers have all exited (after a last move).
fn absorb_finishing(rt: &Runtime, finishing: &mut Vec<Arc<Runtime>>) {
    let done: Vec<bool> = finishing.iter().map(|old| Arc::strong_count(old) == 1).collect();
    // Pairs with the release of the exited workers' last reference: their counts are seen.
    std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
    for old in finishing.iter() {
        rt.absorb_counters(old);
    }
    let mut done = done.into_iter();
    finishing.retain(|_| !done.next().unwrap_or(false));
}

fn spawn_one(rt: &Arc<Runtime>, id: usize, listeners: Vec<(TcpListener, usize)>) -> std::io::Result<WorkerHandle> {
    let poll = Poll::new()?;
    let waker = Waker::new(poll.registry(), WAKER)?;
    // The worker is built on its own thread (it holds thread-local handles); whether it
    // started comes back over a channel, so a reload with, say, an unwritable access log
    // fails here and the old generation keeps serving.
    let (tx, rx) = std::sync::mpsc::channel();
    let control = Arc::new(Control { cmd: AtomicU8::new(CMD_RUN), reopen: AtomicBool::new(false), waker });
    let (rt2, control2) = (rt.clone(), control.clone());
    let thread = std::thread::Builder::new().name(format!("worker-{}", id)).spawn(move || match Worker::new(id, rt2, poll, listeners, control2) {
        Ok(w) => {
            let _ = tx.send(Ok(()));
            w.run();
        }
        Err(e) => {
            let _ = tx.send(Err(e));
        }
    })?;
    match rx.recv() {
        Ok(Ok(())) => Ok(WorkerHandle { control, thread, id }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => Err(std::io::Error::other("worker thread died while starting")),
    }
}

/// What the master holds while pounce runs.
struct Master {
    /// Held (and at exit removed) for the master's whole life.
    pid_file: Option<PidFile>,
    sockets: Sockets,
    generation: u64,
    rt: Arc<Runtime>,
    workers: Vec<WorkerHandle>,
    /// Old generations draining after a reload, with their deadline.
    retiring: Vec<(WorkerHandle, Instant)>,
    /// Runtimes of older generations whose workers are still finishing.
    finishing: Vec<Arc<Runtime>>,
}

/// Runs until stopped. Returns the process exit code.
pub fn run(cfg: Config) -> i32 {
    if let Err(e) = crate::status::init_nonce() {
        eprintln!("pounce: {}", e);
        log::error!("{}", e);
        return 1;
    }
    // The pid file first: a second pounce with the same file stops here, before it binds
    // anything. A failed start below removes only the file this process holds.
    let pid_file = match cfg.pid.as_deref().map(PidFile::acquire).transpose() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("pounce: {}", e);
            log::error!("{}", e);
            return 1;
        }
    };
    crate::limits::check_open_files(&cfg, true);
    let mut sockets: Sockets = HashMap::new();
    let per_worker = match prepare_sockets(&cfg, &mut sockets) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("pounce: {}", e);
            log::error!("{}", e);
            return 1;
        }
    };
    let rt = match Runtime::build(cfg, 1, None) {
        Ok(rt) => Arc::new(rt),
        Err(e) => {
            eprintln!("pounce: {}", e);
            log::error!("{}", e);
            return 1;
        }
    };
    let workers = match spawn_workers(&rt, per_worker) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("pounce: cannot start workers: {}", e);
            log::error!("cannot start workers: {}", e);
            return 1;
        }
    };
    log::info!("pounce {} started: {} workers, {} listening addresses", env!("CARGO_PKG_VERSION"), workers.len(), rt.cfg.http.listens.len());
    let mut m = Master { pid_file, sockets, generation: 1, rt, workers, retiring: Vec::new(), finishing: Vec::new() };
    let code = loop {
        match wait_signal(Duration::from_millis(500)) {
            Some(libc::SIGHUP) => {
                log::info!("reloading configuration ({})", m.rt.cfg.path.display());
                if let Err(e) = m.reload() {
                    log::error!("reload failed, keeping the running configuration: {}", e);
                }
            }
            Some(libc::SIGUSR1) => m.reopen_logs(),
            Some(libc::SIGQUIT) => {
                log::info!("graceful shutdown requested");
                for w in &m.workers {
                    w.control.send(CMD_QUIT);
                }
                // Close our copies so the kernel refuses new connections once workers close theirs.
                m.sockets.clear();
                let deadline = Instant::now() + m.rt.cfg.worker_shutdown_timeout + Duration::from_secs(5);
                join_all(m.workers.drain(..).map(|w| (w, deadline)).chain(m.retiring.drain(..)).collect());
                break 0;
            }
            Some(libc::SIGTERM) | Some(libc::SIGINT) => {
                log::info!("shutting down");
                for w in m.workers.iter().chain(m.retiring.iter().map(|(w, _)| w)) {
                    w.control.send(CMD_STOP);
                }
                let deadline = Instant::now() + Duration::from_secs(5);
                join_all(m.workers.drain(..).map(|w| (w, deadline)).chain(m.retiring.drain(..)).collect());
                break 0;
            }
            _ => {}
        }
        m.tend_workers();
    };
    log::info!("exit");
    drop(m);
    code
}

impl Master {
    /// SIGHUP: a new generation of workers on the configuration read again; the old one
    /// drains. Err: why the running configuration stays. The attempt is recorded for the
    /// status page (a success before the new workers serve, so their page shows it).
    fn reload(&mut self) -> Result<(), String> {
        let r = self.switch_config();
        if let Err(e) = &r {
            reloads().record(Err(e));
        }
        r
    }

    fn switch_config(&mut self) -> Result<(), String> {
        let new_cfg = config::load(&self.rt.cfg.path, &self.rt.cfg.prefix).map_err(|e| e.to_string())?;
        let per_worker = prepare_sockets(&new_cfg, &mut self.sockets).map_err(|e| e.to_string())?;
        // A new error_log is opened before anything changes, and used once the reload stands.
        let error_log = new_cfg.error_log.clone();
        if error_log != crate::logging::error_log_path() {
            if let Some(p) = &error_log {
                crate::logging::access::open_append(p).map_err(|e| format!("cannot open error log \"{}\": {}", p.display(), e))?;
            }
        }
        if new_cfg.pid.as_deref() != self.pid_file.as_ref().map(PidFile::path) {
            log::warn!("the \"pid\" path changed: that takes effect when pounce is restarted");
        }
        crate::limits::check_open_files(&new_cfg, false);
        let level = new_cfg.error_level;
        let new_rt = Arc::new(Runtime::build(new_cfg, self.generation + 1, Some(&self.rt))?);
        new_rt.inherit_overrides(&self.rt);
        new_rt.inherit_worker_totals(&self.rt);
        // The counters move before the new workers serve, so their page never shows zeros.
        new_rt.absorb_counters(&self.rt);
        reloads().record(Ok(()));
        let new_workers = match spawn_workers(&new_rt, per_worker) {
            Ok(w) => w,
            Err(e) => {
                self.rt.absorb_counters(&new_rt);
                reloads().undo_success();
                return Err(e.to_string());
            }
        };
        self.generation += 1;
        switch_error_log(error_log.as_deref());
        crate::logging::set_error_level(level);
        let deadline = Instant::now() + self.rt.cfg.worker_shutdown_timeout + Duration::from_secs(5);
        for w in self.workers.drain(..) {
            w.control.send(CMD_QUIT);
            self.retiring.push((w, deadline));
        }
        self.workers = new_workers;
        self.finishing.push(std::mem::replace(&mut self.rt, new_rt));
        absorb_finishing(&self.rt, &mut self.finishing);
        retain_used_sockets(&self.rt.cfg, &mut self.sockets);
        log::info!("configuration generation {} running", self.generation);
        Ok(())
    }

    /// SIGUSR1 (log rotation): the files were renamed; every log goes on in a new file at
    /// its path — the error log here, the access logs in each worker, old generations too.
    fn reopen_logs(&self) {
        if let Err(e) = crate::logging::reopen_error_log() {
            log::error!("cannot reopen the error log: {}", e);
        }
        log::info!("logs reopened");
        for w in self.workers.iter().chain(self.retiring.iter().map(|(w, _)| w)) {
            w.control.reopen_logs();
        }
    }

    /// Joins old generations that finished draining (stopping those that overstayed), and
    /// replaces a worker that died, as nginx's master respawns workers.
    fn tend_workers(&mut self) {
        let now = Instant::now();
        let mut still = Vec::new();
        for (w, deadline) in self.retiring.drain(..) {
            if w.thread.is_finished() {
                let _ = w.thread.join();
            } else {
                if now >= deadline {
                    w.control.send(CMD_STOP);
                }
                still.push((w, deadline));
            }
        }
        self.retiring = still;
        absorb_finishing(&self.rt, &mut self.finishing);
        for handle in self.workers.iter_mut() {
            if handle.thread.is_finished() {
                let id = handle.id;
                log::error!("worker {} exited unexpectedly; starting a new one", id);
                let listeners: Vec<(TcpListener, usize)> = self
                    .rt
                    .cfg
                    .http
                    .listens
                    .iter()
                    .enumerate()
                    .filter_map(|(idx, l)| self.sockets.get(&(l.addr, id)).and_then(|s| s.try_clone().ok()).map(|s| (s, idx)))
                    .collect();
                match spawn_one(&self.rt, id, listeners) {
                    Ok(h) => {
                        let old = std::mem::replace(handle, h);
                        let _ = old.thread.join();
                    }
                    Err(e) => log::error!("cannot restart worker {}: {}", id, e),
                }
            }
        }
    }
}

/// The error log moves to the reloaded configuration's `error_log`.
fn switch_error_log(path: Option<&std::path::Path>) {
    if path.map(std::path::Path::to_path_buf) == crate::logging::error_log_path() {
        return;
    }
    log::info!("error log moves to {}", path.map_or("stderr".to_string(), |p| p.display().to_string()));
    if let Err(e) = crate::logging::set_error_log(path) {
        log::error!("cannot open the new error log, keeping this one: {}", e);
    }
}

fn retain_used_sockets(cfg: &Config, sockets: &mut Sockets) {
    sockets.retain(|(addr, w), _| *w < cfg.worker_processes && cfg.http.listens.iter().any(|l| l.addr == *addr));
}

fn join_all(list: Vec<(WorkerHandle, Instant)>) {
    for (w, deadline) in list {
        while !w.thread.is_finished() {
            if Instant::now() >= deadline {
                w.control.send(CMD_STOP);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = w.thread.join();
    }
}

/// What `-t` checks beyond the configuration's syntax: every certificate and key it names.
pub fn check(cfg: &Config) -> Result<(), String> {
    crate::tls::Tls::build(cfg, None).map(|_| ())
}

/// `pounce -s SIGNAL`: signals the master whose pid is in the (locked) pid file.
pub fn send_signal(cfg_pid: Option<&std::path::Path>, name: &str) -> Result<(), String> {
    let sig = match name {
        "stop" => libc::SIGTERM,
        "quit" => libc::SIGQUIT,
        "reload" => libc::SIGHUP,
        "reopen" => libc::SIGUSR1,
        _ => return Err(format!("invalid option: \"-s {}\" (use stop, quit, reload, reopen)", name)),
    };
    let path = cfg_pid.ok_or("no pid file is configured (\"pid off\")")?;
    let pid = crate::pidfile::running_pid(path)?;
    // SAFETY: kill(2) with a pid read from our pid file and a valid signal number.
    if unsafe { libc::kill(pid, sig) } != 0 {
        return Err(format!("kill({}, {}) failed: {}", pid, name, std::io::Error::last_os_error()));
    }
    Ok(())
}
