//! TLS for tests: certificates made at test time with the `openssl` command (a CA, server
//! certificates (ECDSA P-256 or RSA) signed by it, client certificates), and a real TLS client,
//! Python's `ssl` module (`tls_client.py`), whose findings come back as JSON.
#![allow(dead_code)]

use super::json::Json;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A test certificate authority in a directory, and the certificates it signs.
pub struct Pki {
    pub dir: PathBuf,
}

#[derive(Clone, Copy, PartialEq)]
pub enum Key {
    Ec,
    Rsa,
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("the openssl command (Debian package openssl)");
    assert!(out.status.success(), "openssl {:?}: {}", args, String::from_utf8_lossy(&out.stderr));
}

fn keygen(key: Key) -> Vec<&'static str> {
    match key {
        Key::Ec => vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        Key::Rsa => vec!["-newkey", "rsa:2048"],
    }
}

impl Pki {
    /// A new CA (`ca.pem`, `ca.key`) in `dir`.
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).expect("pki dir");
        let mut args = vec!["req", "-x509"];
        args.extend(keygen(Key::Ec));
        args.extend([
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/O=pounce tests/CN=Pounce Test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(&args, dir);
        Pki { dir: dir.to_path_buf() }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn issue(&self, stem: &str, subject: &str, key: Key, ext: &str) -> (PathBuf, PathBuf) {
        let (k, csr, crt, extf) = (format!("{stem}.key"), format!("{stem}.csr"), format!("{stem}.pem"), format!("{stem}.ext"));
        std::fs::write(self.dir.join(&extf), ext).expect("ext file");
        let mut args = vec!["req", "-new"];
        args.extend(keygen(key));
        args.extend(["-nodes", "-keyout", &k, "-out", &csr, "-subj", subject]);
        openssl(&args, &self.dir);
        openssl(
            &["x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-out", &crt, "-extfile", &extf],
            &self.dir,
        );
        (self.dir.join(crt), self.dir.join(k))
    }

    /// A server certificate for `name` (and 127.0.0.1): `(cert, key)` paths.
    pub fn server(&self, stem: &str, name: &str, key: Key) -> (PathBuf, PathBuf) {
        let ext = format!("subjectAltName=DNS:{name},IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n");
        self.issue(stem, &format!("/O=pounce tests/CN={name}"), key, &ext)
    }

    /// A client certificate with common name `cn`.
    pub fn client(&self, stem: &str, cn: &str) -> (PathBuf, PathBuf) {
        self.issue(stem, &format!("/C=DE/O=pounce tests/CN={cn}"), Key::Ec, "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")
    }
}

/// What one run of the Python TLS client found.
pub struct TlsRun(pub Json);

impl TlsRun {
    pub fn ok(&self) -> bool {
        self.0.get("ok") == &Json::Bool(true)
    }
    pub fn error(&self) -> String {
        self.0.get("error").str().to_string()
    }
    pub fn version(&self) -> String {
        self.0.get("version").str().to_string()
    }
    pub fn cipher(&self) -> String {
        self.0.get("cipher").str().to_string()
    }
    /// The server certificate's common name.
    pub fn peer_cn(&self) -> String {
        self.0.get("peer_cn").str().to_string()
    }
    pub fn status(&self) -> u16 {
        self.0.get("status").num() as u16
    }
    pub fn body(&self) -> String {
        self.0.get("body").str().to_string()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.0.get("headers").arr().iter().find(|h| h.arr().first().is_some_and(|n| n.str().eq_ignore_ascii_case(name))).map(|h| h.arr()[1].str().to_string())
    }
    /// Per connection of a `--connections N` run: was its session resumed?
    pub fn reused(&self) -> Vec<bool> {
        self.0.get("reused").arr().iter().map(|v| v == &Json::Bool(true)).collect()
    }
}

/// Runs `tls_client.py` against 127.0.0.1:`port` with `args` (see its --help).
pub fn tls_client(port: u16, args: &[&str]) -> TlsRun {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/tls_client.py");
    let out = Command::new("python3").arg(script).arg("--port").arg(port.to_string()).args(args).output().expect("python3");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    match Json::parse(text.trim()) {
        Ok(j) => TlsRun(j),
        Err(e) => panic!("tls_client.py {:?}: {} (stdout {:?}, stderr {:?})", args, e, text, String::from_utf8_lossy(&out.stderr)),
    }
}
