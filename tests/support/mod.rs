//! Test support: start the real `pounce` binary with a generated config, small scriptable
//! backends on 127.0.0.1, and a client that reads responses byte for byte. Everything binds
//! port 0 or asks the kernel for a free port, and every process or thread started here is
//! stopped when its handle drops.
#![allow(dead_code)]

pub mod ajp;
pub mod backend;
pub mod conf;
pub mod json;
pub mod load;
pub mod many;
pub mod netstat;
pub mod require;
pub mod slow;
pub mod status;
pub mod tls;
pub mod tomcat;
pub mod ws;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use backend::{reset, Backend, Framing, Reply, Req};
#[allow(unused_imports)]
pub use conf::{Conf, Location, Server, Upstream};

pub const BIN: &str = env!("CARGO_BIN_EXE_pounce");

/// A port nobody uses right now (bound then released), for a process started later. It is
/// taken from just below the kernel's ephemeral range: a port from binding port 0 comes from
/// the range every outgoing connection draws its local port from, and one released seconds
/// before use (a second Tomcat starting after the first) was seen taken meanwhile.
pub fn free_port() -> u16 {
    // Tests of one binary run on parallel threads and pounce binds with SO_REUSEPORT, so two
    // pounces given the same port would both bind it and share its connections: a port is
    // handed out once per process.
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    for _ in 0..1000 {
        let port = unused_port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
    panic!("no free port not handed out already");
}

fn unused_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse::<u16>().ok()))
        .unwrap_or(32768);
    let from = low.saturating_sub(12_000).max(1024);
    if low > from {
        for _ in 0..500 {
            let r = std::collections::hash_map::RandomState::new().build_hasher().finish();
            let port = from + (r % u64::from(low - from)) as u16;
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// Waits until the pounce just started on `port` serves: its master logged "started" (or,
/// with a quieter error log, it has stayed up a moment) and the port accepts connections.
/// False if it exited first (e.g. its port was taken meanwhile).
fn wait_serving(child: &mut Child, port: u16, dir: &Path) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        let started = std::fs::read_to_string(dir.join("logs/error.log")).is_ok_and(|l| l.contains(" started: "));
        if (started || t0.elapsed() > Duration::from_millis(500)) && TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return matches!(child.try_wait(), Ok(None));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("pounce did not start listening on {}: {}", port, std::fs::read_to_string(dir.join("logs/error.log")).unwrap_or_default());
}

/// A fresh scratch directory under the target dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let dir = base.join(format!("{}-{}-{}", tag, std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("logs")).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A running pounce.
pub struct Pounce {
    pub child: Child,
    pub dir: TempDir,
    pub port: u16,
    /// The harness's own server (status page only; see `conf.rs`).
    pub status_port: u16,
    pub conf: PathBuf,
    /// Set when the test stopped pounce on purpose (a stop signal): no buffer check then.
    stopped: std::cell::Cell<bool>,
}

/// How long the check at the end of a test waits for every worker's buffers to come back.
/// Workers publish their figures at most every 50 ms and an idle worker's loop wakes at least
/// once a second, so a few seconds are plenty for buffers that were returned.
pub const BUFFER_CHECK_LIMIT: Duration = Duration::from_secs(5);

impl Pounce {
    /// Writes `conf` (with `{port}` and `{status_port}` replaced by free ports) and starts
    /// pounce; waits until it serves. A port released by `free_port` can be taken by someone
    /// else before pounce binds it (another test, or a client connection's local port): then
    /// pounce exits with "bind() failed" and is started again on other ports. Any other exit
    /// fails at once, with what `pounce -t` says about the configuration.
    pub fn start(conf: &Conf) -> Pounce {
        Pounce::start_with(conf, |_| {})
    }

    /// As `start`, with `prepare` applied to the command first (an environment variable, a
    /// `pre_exec` that lowers a limit, ...).
    pub fn start_with(conf: &Conf, prepare: impl Fn(&mut Command)) -> Pounce {
        let text = conf.to_string();
        let dir = TempDir::new("pounce");
        let path = dir.0.join("pounce.conf");
        for attempt in 1..=5 {
            let (port, status_port) = (free_port(), free_port());
            if port == status_port {
                continue;
            }
            std::fs::write(&path, fill_ports(&text, port, status_port)).expect("write conf");
            let _ = std::fs::remove_file(dir.0.join("logs/error.log"));
            let mut cmd = Command::new(BIN);
            cmd.arg("-p").arg(&dir.0).arg("-c").arg(&path).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::inherit());
            prepare(&mut cmd);
            let mut child = cmd.spawn().expect("spawn pounce");
            if wait_serving(&mut child, port, &dir.0) {
                return Pounce { child, dir, port, status_port, conf: path, stopped: std::cell::Cell::new(false) };
            }
            let log = std::fs::read_to_string(dir.0.join("logs/error.log")).unwrap_or_default();
            if !log.contains("bind()") {
                let t = Command::new(BIN).arg("-t").arg("-p").arg(&dir.0).arg("-c").arg(&path).output().expect("pounce -t");
                panic!("pounce exited at start: {}{}\nerror log: {}", String::from_utf8_lossy(&t.stdout), String::from_utf8_lossy(&t.stderr), log);
            }
            eprintln!("pounce exited at start on port {} (attempt {}); trying other ports", port, attempt);
        }
        panic!("pounce did not start: {}", std::fs::read_to_string(dir.0.join("logs/error.log")).unwrap_or_default());
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Sends a signal; a stop signal (TERM, INT, QUIT, KILL) also turns the buffer check off.
    pub fn signal(&self, sig: i32) {
        if [libc::SIGTERM, libc::SIGINT, libc::SIGQUIT, libc::SIGKILL].contains(&sig) {
            self.stopped.set(true);
        }
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Waits for the process to exit; None if it is still running after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("logs/error.log")).unwrap_or_default()
    }

    /// The last `n` lines of the error log.
    pub fn error_log_tail(&self, n: usize) -> String {
        let log = self.error_log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("logs/access.log")).unwrap_or_default()
    }

    /// Replaces the config file (same ports) for a reload.
    pub fn rewrite_conf(&self, conf: &Conf) {
        let text = conf.to_string();
        self.rewrite_conf_raw(&text);
    }

    /// Replaces the config file with text as it is (`{port}` and `{status_port}` filled in),
    /// for a configuration written broken on purpose.
    pub fn rewrite_conf_raw(&self, text: &str) {
        std::fs::write(&self.conf, fill_ports(text, self.port, self.status_port)).expect("rewrite conf");
    }

    pub fn get(&self, path: &str) -> Resp {
        request(self.port, &format!("GET {} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", path).into_bytes())
    }

    /// The status JSON from the harness's own server.
    pub fn harness_status(&self) -> Result<json::Json, String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.status_port)).map_err(|e| format!("connect to the status port {}: {}", self.status_port, e))?;
        let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
        let _ = s.set_write_timeout(Some(Duration::from_secs(3)));
        s.write_all(b"GET /?format=json HTTP/1.1\r\nHost: harness\r\nConnection: close\r\n\r\n").map_err(|e| format!("send: {}", e))?;
        let r = read_response(&mut BufReader::new(s), false).map_err(|e| format!("status answer: {}", e))?;
        if r.status != 200 {
            return Err(format!("status page answered {}: {}", r.status, r.text()));
        }
        json::Json::parse(&r.text()).map_err(|e| format!("{}: {}", e, r.text()))
    }

    /// Each worker's `buffers_in_use` (status JSON), and the workers' figures as text.
    pub fn buffers_in_use(&self) -> Result<(Vec<u64>, String), String> {
        let j = self.harness_status()?;
        let workers = j.get("workers").arr();
        let text = workers.iter().map(worker_text).collect::<Vec<_>>().join("; ");
        let counts: Vec<f64> = workers.iter().map(|w| w.get("buffers_in_use").num()).collect();
        if counts.is_empty() || counts.iter().any(|n| n.is_nan()) {
            return Err(format!("no workers' buffers_in_use in the status JSON: {:?}", j.get("workers")));
        }
        Ok((counts.iter().map(|&n| n as u64).collect(), text))
    }

    /// Polls the status page until every worker shows `buffers_in_use: 0`; the last reading
    /// (or error) if that did not happen within `limit`. The worker that serves the page
    /// publishes its figures right before, the others within a second (an idle loop wakes at
    /// least once a second): with several workers a zero must hold for over a second.
    pub fn wait_buffers_free(&self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let mut zero_since: Option<Instant> = None;
        loop {
            let last = match self.buffers_in_use() {
                Ok((v, text)) if !v.is_empty() && v.iter().all(|&n| n == 0) => {
                    let since = *zero_since.get_or_insert_with(Instant::now);
                    if v.len() == 1 || since.elapsed() > Duration::from_millis(1100) {
                        return Ok(());
                    }
                    text
                }
                Ok((_, text)) => {
                    zero_since = None;
                    text
                }
                Err(e) => {
                    zero_since = None;
                    e
                }
            };
            if Instant::now() >= deadline {
                return Err(last);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Panics unless every worker's buffers are back within `limit`.
    pub fn assert_buffers_free(&self, limit: Duration) {
        if let Err(e) = self.wait_buffers_free(limit) {
            panic!("buffers still in use {:?} later: {}\nerror log (tail):\n{}", limit, e, self.error_log_tail(30));
        }
    }
}

/// One worker's figures from the status JSON, compactly.
fn worker_text(w: &json::Json) -> String {
    ["id", "connections", "buffers_in_use", "buffers_high_water", "idle_backend_connections"]
        .iter()
        .map(|k| format!("{}={}", k, w.get(k).num()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn fill_ports(text: &str, port: u16, status_port: u16) -> String {
    text.replace(conf::PORT, &port.to_string()).replace(conf::STATUS_PORT, &status_port.to_string())
}

impl Drop for Pounce {
    /// The buffer check at the end of every test: once its connections have closed, each
    /// worker's `buffers_in_use` must be back to 0. Skipped when the test already failed, when
    /// pounce exited, or when the test stopped it on purpose.
    fn drop(&mut self) {
        let running = matches!(self.child.try_wait(), Ok(None));
        let failure = if running && !self.stopped.get() && !std::thread::panicking() {
            self.wait_buffers_free(BUFFER_CHECK_LIMIT).err().map(|e| {
                format!("buffer check: buffers still in use {:?} after the test: {}\nerror log (tail):\n{}", BUFFER_CHECK_LIMIT, e, self.error_log_tail(30))
            })
        } else {
            None
        };
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(f) = failure {
            panic!("{}", f);
        }
    }
}

// ---- client --------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub raw_head: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

pub fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    s.set_write_timeout(Some(Duration::from_secs(20))).expect("timeout");
    s
}

/// Sends raw bytes on a new connection and reads one response.
pub fn request(port: u16, raw: &[u8]) -> Resp {
    let mut s = connect(port);
    s.write_all(raw).expect("send");
    let mut r = BufReader::new(s);
    read_response(&mut r, raw.starts_with(b"HEAD")).expect("response")
}

/// Reads one response; `head_request` = no body whatever the headers say.
pub fn read_response(r: &mut impl BufRead, head_request: bool) -> std::io::Result<Resp> {
    let mut raw_head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("eof in head: {:?}", raw_head)));
        }
        raw_head.push_str(&line);
        if line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut lines = raw_head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> =
        lines.filter(|l| !l.is_empty()).filter_map(|l| l.split_once(':').map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))).collect();
    let get = |n: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if (100..200).contains(&status) {
        return Ok(Resp { status, headers, body, raw_head });
    }
    if head_request || status == 204 || status == 304 {
    } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        body = read_chunked(r)?;
    } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else {
        r.read_to_end(&mut body)?;
    }
    Ok(Resp { status, headers, body, raw_head })
}

pub fn read_chunked(r: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line)?;
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad chunk line {:?}", line)))?;
        if size == 0 {
            loop {
                let mut t = String::new();
                r.read_line(&mut t)?;
                if t == "\r\n" || t.is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf)?;
    }
}

/// Polls `f` until it returns true or `limit` passes.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

pub fn path_exists(p: &Path) -> bool {
    p.exists()
}

/// Connects to 127.0.0.1:`port` from a given local address (e.g. 127.0.0.2).
pub fn connect_from(local: std::net::Ipv4Addr, port: u16) -> TcpStream {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a fresh fd that is wrapped in a TcpStream (closed on drop).
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket");
        let s = TcpStream::from_raw_fd(fd);
        let mut a: libc::sockaddr_in = std::mem::zeroed();
        a.sin_family = libc::AF_INET as libc::sa_family_t;
        a.sin_addr = libc::in_addr { s_addr: u32::from_ne_bytes(local.octets()) };
        assert_eq!(libc::bind(fd, &a as *const _ as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_in>() as u32), 0, "bind");
        a.sin_port = port.to_be();
        a.sin_addr = libc::in_addr { s_addr: u32::from_ne_bytes([127, 0, 0, 1]) };
        assert_eq!(libc::connect(fd, &a as *const _ as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_in>() as u32), 0, "connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        s
    }
}

/// Resident memory of a process, in KiB (from /proc).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{}/status", pid))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// Raises this process's open-file limit to its hard limit (children inherit it); returns it.
pub fn raise_nofile() -> u64 {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
    }
    r.rlim_cur
}

/// Percentile (0..=100) of durations, in milliseconds.
pub fn percentile_ms(sorted: &[Duration], pct: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) * pct) / 100;
    sorted[i].as_secs_f64() * 1000.0
}

/// A scale knob for `make soak`: the environment variable's value, or `default`.
pub fn soak(var: &str, default: u64) -> u64 {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
