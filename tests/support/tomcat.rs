//! Real Tomcat 10 instances for tests, through scripts/tomcat.sh (own CATALINA_BASE each,
//! free 127.0.0.1 ports). In CI (CI=true) a missing Tomcat fails the test; elsewhere the
//! test is skipped with a loud message (`require`).
#![allow(dead_code)]

use super::{free_port, TempDir};
use std::process::Command;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/tomcat.sh");

/// Whether Tomcat can be used; panics in CI when it cannot.
pub fn require_tomcat() -> bool {
    let present = std::path::Path::new("/usr/share/tomcat10/bin/catalina.sh").exists();
    super::require::require("Tomcat 10", present, "scripts/test-deps.sh, or apt-get install tomcat10")
}

pub struct Tomcat {
    pub dir: TempDir,
    pub route: String,
    pub http: u16,
    pub ajp: u16,
    pub cluster: u16,
}

/// Options for starting instances.
#[derive(Default, Clone)]
pub struct Opts {
    pub ajp_secret: Option<String>,
    pub packet_size: Option<u32>,
    /// Cluster ports of every node, to join a static-membership cluster.
    pub cluster: Option<Vec<u16>>,
    /// Tomcat's maxKeepAliveRequests (default 100; -1 = unlimited).
    pub max_keepalive: Option<i32>,
    /// A client certificate subject (as Java prints it) the realm gives role `certuser`.
    pub cert_user: Option<String>,
}

impl Tomcat {
    /// Starts `routes.len()` instances (in parallel) and waits until each answers.
    pub fn start_many(routes: &[&str], opts: &Opts) -> Vec<Tomcat> {
        let cluster_ports: Vec<u16> = match &opts.cluster {
            Some(p) => p.clone(),
            None => Vec::new(),
        };
        let nodes: Vec<Tomcat> = routes
            .iter()
            .enumerate()
            .map(|(i, r)| Tomcat {
                dir: TempDir::new(&format!("tomcat-{}", r)),
                route: r.to_string(),
                http: free_port(),
                ajp: free_port(),
                cluster: cluster_ports.get(i).copied().unwrap_or(0),
            })
            .collect();
        if cluster_ports.is_empty() {
            for t in &nodes {
                t.launch(opts, &cluster_ports);
            }
            for t in &nodes {
                t.wait();
            }
        } else {
            // One after another: a starting node fetches the others' sessions (DeltaManager).
            for t in &nodes {
                t.launch(opts, &cluster_ports);
                t.wait();
            }
        }
        nodes
    }

    pub fn cluster_ports(n: usize) -> Vec<u16> {
        (0..n).map(|_| free_port()).collect()
    }

    fn launch(&self, opts: &Opts, cluster_ports: &[u16]) {
        let mut cmd = Command::new(SCRIPT);
        cmd.arg("start").arg(&self.dir.0).arg(&self.route).arg(self.http.to_string()).arg(self.ajp.to_string());
        if self.cluster != 0 {
            let all: Vec<String> = cluster_ports.iter().map(|p| p.to_string()).collect();
            cmd.arg(self.cluster.to_string()).arg(all.join(","));
        }
        if let Some(s) = &opts.ajp_secret {
            cmd.env("AJP_SECRET", s);
        }
        if let Some(p) = opts.packet_size {
            cmd.env("AJP_PACKET_SIZE", p.to_string());
        }
        if let Some(k) = opts.max_keepalive {
            cmd.env("MAX_KEEPALIVE", k.to_string());
        }
        if let Some(u) = &opts.cert_user {
            cmd.env("CERT_USER", u);
        }
        let st = cmd.status().expect("run tomcat.sh start");
        assert!(st.success(), "tomcat.sh start failed");
    }

    pub fn wait(&self) {
        let st = Command::new(SCRIPT).arg("wait").arg(&self.dir.0).arg("120").status().expect("tomcat.sh wait");
        assert!(st.success(), "tomcat {} did not come up", self.route);
    }

    /// Restarts a stopped instance with the same ports and options.
    pub fn restart(&self, opts: &Opts, cluster_ports: &[u16]) {
        self.launch(opts, cluster_ports);
        self.wait();
    }

    pub fn stop(&self) {
        let _ = Command::new(SCRIPT).arg("stop").arg(&self.dir.0).status();
    }

    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.0.join("tomcat.pid")).ok()?.trim().parse().ok()
    }

    /// SIGSTOP: the kernel still accepts connections, nothing answers.
    pub fn freeze(&self) {
        if let Some(p) = self.pid() {
            // SAFETY: signalling a process this test started.
            unsafe { libc::kill(p, libc::SIGSTOP) };
        }
    }

    pub fn thaw(&self) {
        if let Some(p) = self.pid() {
            // SAFETY: as above.
            unsafe { libc::kill(p, libc::SIGCONT) };
        }
    }

    pub fn access_log(&self) -> String {
        let mut all = String::new();
        if let Ok(rd) = std::fs::read_dir(self.dir.0.join("logs")) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with("access") {
                    all.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
                }
            }
        }
        all
    }
}

impl Drop for Tomcat {
    fn drop(&mut self) {
        self.thaw();
        self.stop();
    }
}
