//! Process hygiene (issue 14, point 4): the pid file is locked, so a second pounce refuses
//! to start and leaves the first one controllable; a failed start removes no one else's pid
//! file; `-t` opens every log file; `-s reopen` and SIGUSR1 reopen every log after a rename;
//! a changed `error_log` takes effect on reload; a low open-file limit is said at start and
//! accept() errors do not flood the log; `-T` prints every file read; relative includes
//! resolve against the configuration's directory, whatever the working directory.

mod support;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::*;

fn conf(b: &Backend) -> Conf {
    Conf::new().http("access_log logs/access.log;").server(Server::new().location(Location::new("/").proxy_pass(format!("http://{}", b.addr()))))
}

/// Runs pounce with `args` (after `-p DIR -c CONF`), at most 10 s.
fn pounce(p: &Pounce, args: &[&str]) -> Output {
    run_bounded(Command::new(BIN).arg("-p").arg(&p.dir.0).arg("-c").arg(&p.conf).args(args))
}

fn run_bounded(cmd: &mut Command) -> Output {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().expect("output");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    panic!("pounce {:?} did not exit within 10 s: {:?}", cmd, child.wait_with_output().map(|o| String::from_utf8_lossy(&o.stderr).to_string()));
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// A GET that may fail (no panic): its status.
fn try_get(port: u16) -> Option<u16> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    read_response(&mut std::io::BufReader::new(s), false).ok().map(|r| r.status)
}

fn listeners_on(port: u16) -> usize {
    let out = Command::new("ss").args(["-Hltn", &format!("sport = :{}", port)]).output().expect("ss");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
fn a_second_pounce_with_the_same_pid_file_refuses_to_start() {
    let b = Backend::named("a");
    let mut p = Pounce::start(&conf(&b));
    let pid_path = p.dir.0.join("logs/pounce.pid");
    let first = p.child.id().to_string();
    assert_eq!(listeners_on(p.port), 1);

    // The same configuration again: same ports (SO_REUSEPORT would let it bind), same pid file.
    let second = run_bounded(Command::new(BIN).arg("-p").arg(&p.dir.0).arg("-c").arg(&p.conf));
    assert_eq!(second.status.code(), Some(1), "the second one exits");
    assert!(stderr(&second).contains(&format!("is locked by a running pounce (pid {})", first)), "{}", stderr(&second));
    assert_eq!(listeners_on(p.port), 1, "it bound nothing: the traffic is not split");
    assert_eq!(std::fs::read_to_string(&pid_path).expect("pid file").trim(), first, "the first one's pid file is untouched");
    assert_eq!(p.get("/").text(), "a");

    // The first one is still under control.
    let out = pounce(&p, &["-s", "reload"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(eventually(Duration::from_secs(5), || p.error_log().contains("configuration generation 2 running")), "{}", p.error_log_tail(10));
    let out = pounce(&p, &["-s", "stop"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(p.wait_exit(Duration::from_secs(5)).is_some_and(|s| s.success()));
    assert!(!pid_path.exists(), "removed by its owner at exit");

    // A stale pid file (a crash) names a pid that may be anyone's now: never signalled.
    std::fs::write(&pid_path, "1\n").expect("stale pid file");
    let out = pounce(&p, &["-s", "stop"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no pounce is running"), "{}", stderr(&out));
}

#[test]
fn a_failed_start_removes_only_its_own_pid_file() {
    let dir = TempDir::new("failed-start");
    // A port taken without SO_REUSEPORT: pounce cannot bind it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let path = dir.0.join("p.conf");
    std::fs::write(&path, format!("pid logs/p.pid;\nerror_log logs/error.log info;\nhttp {{ server {{ listen 127.0.0.1:{}; }} }}\n", port)).expect("conf");
    let out = run_bounded(Command::new(BIN).arg("-p").arg(&dir.0).arg("-c").arg(&path));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("bind"), "{}", stderr(&out));
    assert!(!dir.0.join("logs/p.pid").exists(), "its own pid file does not linger");
}

#[test]
fn dash_t_opens_every_log_file() {
    let dir = TempDir::new("dash-t");
    let check = |text: &str| {
        let path = dir.0.join("t.conf");
        std::fs::write(&path, text).expect("conf");
        run_bounded(Command::new(BIN).arg("-t").arg("-p").arg(&dir.0).arg("-c").arg(&path))
    };
    // A log path that cannot be opened for writing (here: a directory).
    std::fs::create_dir_all(dir.0.join("logs/isadir.log")).expect("dir");
    let out = check("http { server { listen 127.0.0.1:1; access_log logs/isadir.log; } }\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot open access log") && stderr(&out).contains("isadir.log"), "{}", stderr(&out));
    assert!(stderr(&out).contains("test failed"));
    let out = check("error_log logs/isadir.log;\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot open error log"), "{}", stderr(&out));
    // One under a file: no directory can be made there.
    std::fs::write(dir.0.join("plain"), "x").expect("file");
    let out = check("http { access_log plain/a.log; }\n");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // Logs that can be made are made, as pounce will at start.
    let out = check("error_log new/error.log;\nhttp { access_log new/access.log; }\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.0.join("new/error.log").exists() && dir.0.join("new/access.log").exists());
}

#[test]
fn reopen_after_a_rename_reaches_every_log() {
    let b = Backend::named("a");
    let p = Pounce::start(&conf(&b).workers(2));
    let logs = p.dir.0.join("logs");
    let requests = |tag: &str| {
        // Fresh connections, spread over both workers by SO_REUSEPORT.
        for i in 0..20 {
            assert_eq!(p.get(&format!("/{}/{}", tag, i)).status, 200);
        }
    };
    let count = |file: &str, tag: &str| std::fs::read_to_string(logs.join(file)).unwrap_or_default().matches(&format!("GET /{}/", tag)).count();

    requests("before");
    assert!(eventually(Duration::from_secs(5), || count("access.log", "before") == 20));
    // logrotate's way: rename, then ask for new files.
    std::fs::rename(logs.join("access.log"), logs.join("access.log.1")).expect("rename");
    std::fs::rename(logs.join("error.log"), logs.join("error.log.1")).expect("rename");
    let out = Command::new(BIN).arg("-p").arg(&p.dir.0).arg("-c").arg(&p.conf).args(["-s", "reopen"]).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        eventually(Duration::from_secs(5), || std::fs::read_to_string(logs.join("error.log")).is_ok_and(|l| l.contains("logs reopened"))),
        "a new error log"
    );
    // The workers reopen on their next loop pass; requests after that go to the new file.
    std::thread::sleep(Duration::from_millis(300));
    requests("after");
    assert!(eventually(Duration::from_secs(5), || count("access.log", "after") == 20), "every worker writes the new file: {}", count("access.log", "after"));
    assert_eq!(count("access.log.1", "after"), 0, "nothing more in the renamed file");
    assert_eq!(count("access.log.1", "before"), 20);
    assert!(!std::fs::read_to_string(logs.join("error.log.1")).unwrap_or_default().contains("logs reopened"));

    // SIGUSR1 is the same.
    std::fs::rename(logs.join("access.log"), logs.join("access.log.2")).expect("rename");
    p.signal(libc::SIGUSR1);
    assert!(eventually(Duration::from_secs(5), || logs.join("access.log").exists()));
    requests("third");
    assert!(eventually(Duration::from_secs(5), || count("access.log", "third") == 20));
    assert_eq!(count("access.log.2", "third"), 0);
}

#[test]
fn a_changed_error_log_takes_effect_on_reload() {
    let b = Backend::named("a");
    let c = conf(&b);
    let p = Pounce::start(&c);
    let text = c.to_string().replace("error_log logs/error.log info;", "error_log logs/other.log info;");
    p.rewrite_conf_raw(&text);
    p.signal(libc::SIGHUP);
    let other = p.dir.0.join("logs/other.log");
    assert!(
        eventually(Duration::from_secs(5), || std::fs::read_to_string(&other).is_ok_and(|l| l.contains("configuration generation 2 running"))),
        "the reload is logged in the new file: {}",
        p.error_log_tail(5)
    );
    assert!(p.error_log().contains("error log moves to"), "the old file says where it went");
    // A new error log that cannot be opened fails the reload, which keeps the running one.
    std::fs::create_dir_all(p.dir.0.join("logs/dir.log")).expect("dir");
    p.rewrite_conf_raw(&c.to_string().replace("error_log logs/error.log info;", "error_log logs/dir.log info;"));
    p.signal(libc::SIGHUP);
    assert!(eventually(Duration::from_secs(5), || std::fs::read_to_string(&other).is_ok_and(|l| l.contains("reload failed"))));
    assert_eq!(p.get("/").text(), "a");
    // Back to the first file (the harness reads it at the end).
    p.rewrite_conf(&c);
    p.signal(libc::SIGHUP);
    assert!(eventually(Duration::from_secs(5), || p.error_log().contains("configuration generation 3 running")));
}

/// `ulimit -n N` for the pounce about to start (soft and hard).
fn nofile(cmd: &mut Command, soft: u64, hard: u64) {
    // SAFETY: setrlimit in the child between fork and exec touches nothing else.
    unsafe {
        cmd.pre_exec(move || {
            let r = libc::rlimit { rlim_cur: soft as libc::rlim_t, rlim_max: hard as libc::rlim_t };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn soft_nofile(pid: u32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", pid)).expect("limits");
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("line");
    line.split_whitespace().nth(3).and_then(|v| v.parse().ok()).expect("soft limit")
}

#[test]
fn a_low_open_file_limit_is_said_at_start() {
    let b = Backend::named("a");
    // ulimit -n 24 with the default worker_connections (10240): said at once, once.
    let p =
        Pounce::start_with(&Conf::new().server(Server::new().location(Location::new("/").proxy_pass(format!("http://{}", b.addr())))), |c| nofile(c, 24, 24));
    let warned = |p: &Pounce| p.error_log().matches("the open file limit (RLIMIT_NOFILE) is 24, below the").count();
    assert_eq!(warned(&p), 1, "{}", p.error_log_tail(5));
    assert_eq!(p.get("/").text(), "a");
    // Past the limit: accept() fails; said once a second, not ten times.
    let held: Vec<std::net::TcpStream> = (0..40).filter_map(|_| std::net::TcpStream::connect(p.addr()).ok()).collect();
    std::thread::sleep(Duration::from_millis(2500));
    let failures = p.error_log().matches("accept() failed").count();
    assert!((1..=4).contains(&failures), "{} accept() reports in 2.5 s:\n{}", failures, p.error_log_tail(8));
    drop(held);
    assert!(eventually(Duration::from_secs(5), || try_get(p.port) == Some(200)), "served again once connections are closed");

    // A soft limit below what is needed but a hard one above: raised, nothing to say.
    let q = Pounce::start_with(&Conf::new().events("worker_connections 100;").server(Server::new().location(Location::new("/").line("return 200;"))), |c| {
        nofile(c, 64, 4096)
    });
    assert_eq!(warned(&q), 0);
    assert!(!q.error_log().contains("open file limit"), "{}", q.error_log_tail(5));
    assert!(soft_nofile(q.child.id()) >= 200, "raised to what 100 connections need");
}

#[test]
fn dash_capital_t_prints_every_file_read() {
    let dir = TempDir::new("dump");
    std::fs::create_dir_all(dir.0.join("conf/conf.d")).expect("dir");
    std::fs::create_dir_all(dir.0.join("conf/snippets")).expect("dir");
    let main = dir.0.join("conf/main.conf");
    std::fs::write(&main, "# main\nhttp {\n include conf.d/*.conf;\n}\n").expect("main");
    std::fs::write(dir.0.join("conf/conf.d/a.conf"), "upstream u { include snippets/servers.conf; }\n").expect("a");
    std::fs::write(dir.0.join("conf/snippets/servers.conf"), "server 127.0.0.1:9;").expect("snippet");
    let out = run_bounded(Command::new(BIN).arg("-T").arg("-p").arg(dir.0.join("elsewhere")).arg("-c").arg(&main).current_dir("/"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("test is successful"));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let expect = format!(
        "# configuration file {}:\n# main\nhttp {{\n include conf.d/*.conf;\n}}\n\n# configuration file {}:\nupstream u {{ include snippets/servers.conf; }}\n\n# configuration file {}:\nserver 127.0.0.1:9;\n\n",
        main.display(),
        dir.0.join("conf/conf.d/a.conf").display(),
        dir.0.join("conf/snippets/servers.conf").display()
    );
    assert_eq!(text, expect);
}

#[test]
fn relative_includes_resolve_against_the_configuration_directory() {
    // Under systemd the working directory is `/` and the prefix may be anywhere: an include
    // written relative to the configuration still finds its file, at any depth (nginx: the
    // directory of the main file).
    let dir = TempDir::new("include");
    std::fs::create_dir_all(dir.0.join("etc/conf.d")).expect("dir");
    let main = dir.0.join("etc/pounce.conf");
    std::fs::write(&main, "pid off;\nhttp {\n include conf.d/*.conf;\n}\n").expect("main");
    std::fs::write(dir.0.join("etc/conf.d/a.conf"), "include upstreams.inc;\n").expect("a");
    std::fs::write(dir.0.join("etc/upstreams.inc"), "upstream u { server 127.0.0.1:9; }\n").expect("inc");
    let out = run_bounded(Command::new(BIN).arg("-t").arg("-p").arg(dir.0.join("var")).arg("-c").arg(&main).current_dir("/"));
    assert!(out.status.success(), "{}", stderr(&out));
    // A relative -c is taken from the working directory, and its includes from its directory.
    let out = run_bounded(Command::new(BIN).arg("-t").arg("-p").arg(dir.0.join("var")).arg("-c").arg("etc/pounce.conf").current_dir(&dir.0));
    assert!(out.status.success(), "{}", stderr(&out));
}
