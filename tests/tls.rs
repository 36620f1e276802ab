//! TLS termination end to end, with real TLS clients (Python's ssl module, `openssl s_client`,
//! curl) and certificates made at test time: what the client negotiates, what the backend
//! sees over HTTP and AJP, SNI, RSA and ECDSA in one server, old versions refused, resumption,
//! client certificates, reloads that swap (or fail to swap) a certificate, plain HTTP on the
//! TLS port, and `-t` on broken files.

mod support;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::ajp::AjpBackend;
use support::conf::{Conf, Location, Server, Upstream};
use support::tls::{tls_client, Key, Pki};
use support::*;

fn ssl_lines(cert: &Path, key: &Path) -> String {
    format!("ssl_certificate {}; ssl_certificate_key {};", cert.display(), key.display())
}

/// One TLS server on `{port}` (`localhost` certificate) proxying to `backend` over `scheme`.
fn tls_conf(pki: &Pki, scheme: &str, backend: &str, loc_extra: &str) -> Conf {
    let (cert, key) = pki.server("localhost", "localhost", Key::Ec);
    Conf::new().http("access_log logs/access.log;").upstream(Upstream::new("app").server(backend)).server(
        Server::new()
            .listen("127.0.0.1:{port} ssl")
            .line(ssl_lines(&cert, &key))
            .location(Location::new("/").proxy_pass(format!("{scheme}://app")).line(loc_extra)),
    )
}

#[test]
fn get_and_post_over_tls_to_http_with_ssl_variables() {
    let dir = TempDir::new("pki");
    let pki = Pki::new(&dir.0);
    let b = Backend::named("a");
    let vars = "proxy_set_header X-Proto $ssl_protocol; proxy_set_header X-Cipher $ssl_cipher; proxy_set_header X-Scheme $scheme; proxy_set_header X-Verify $ssl_client_verify; proxy_set_header X-Sni $ssl_server_name;";
    let p = Pounce::start(&tls_conf(&pki, "http", &b.addr(), vars));
    let ca = pki.ca();
    let r = tls_client(p.port, &["--ca", ca.to_str().expect("path"), "--path", "/x?y=1"]);
    assert!(r.ok(), "{}", r.error());
    assert_eq!((r.status(), r.body().as_str()), (200, "a"));
    assert_eq!(r.version(), "TLSv1.3");
    let seen = b.last().expect("request reached the backend");
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.header("x-scheme"), Some("https"));
    assert_eq!(seen.header("x-proto"), Some("TLSv1.3"));
    assert_eq!(seen.header("x-cipher"), Some(r.cipher().as_str()), "OpenSSL's suite name, as the client names it");
    assert_eq!(seen.header("x-verify"), Some("NONE"));
    assert_eq!(seen.header("x-sni"), Some("localhost"));
    let post = tls_client(p.port, &["--ca", ca.to_str().expect("path"), "--method", "POST", "--body", "form=1&x=2", "--version", "1.2"]);
    assert!(post.ok(), "{}", post.error());
    assert_eq!((post.status(), post.body().as_str(), post.version().as_str()), (200, "form=1&x=2", "TLSv1.2"));
    assert_eq!(b.last().expect("post").header("x-proto"), Some("TLSv1.2"));
    // curl, too.
    let out = Command::new("curl")
        .args([
            "-sS",
            "--cacert",
            ca.to_str().expect("path"),
            "--resolve",
            &format!("localhost:{}:127.0.0.1", p.port),
            &format!("https://localhost:{}/c", p.port),
        ])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a", "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn ajp_backend_sees_is_ssl_and_the_ssl_attributes() {
    let dir = TempDir::new("pki");
    let pki = Pki::new(&dir.0);
    let b = AjpBackend::echo("t");
    let (client_cert, client_key) = pki.client("alice", "alice");
    let conf = tls_conf(&pki, "ajp", &b.addr(), "");
    let ca = pki.ca();
    let conf = conf.http(format!("ssl_verify_client optional; ssl_client_certificate {};", ca.display()));
    let p = Pounce::start(&conf);
    let r = tls_client(p.port, &["--ca", ca.to_str().expect("path")]);
    assert!(r.ok(), "{}", r.error());
    let seen = b.last().expect("AJP request");
    assert!(seen.is_ssl, "is_ssl = 1");
    assert_eq!(seen.ssl_cipher.as_deref(), Some(r.cipher().as_str()));
    assert_eq!(seen.ssl_key_size, Some(if r.cipher().contains("128") { 128 } else { 256 }));
    assert_eq!(seen.ssl_session.as_ref().map(String::len), Some(64), "hex session identifier");
    assert!(seen.ssl_cert.is_none(), "no client certificate, no ssl_cert");
    assert!(seen.req_attrs.iter().any(|(k, v)| k == "AJP_SSL_PROTOCOL" && v == "TLSv1.3"), "{:?}", seen.req_attrs);
    // A POST over TLS to AJP: the body arrives by GET_BODY_CHUNK and is echoed.
    let post = tls_client(p.port, &["--ca", ca.to_str().expect("path"), "--method", "POST", "--body", "a=1&b=two"]);
    assert!(post.ok(), "{}", post.error());
    assert_eq!((post.status(), post.body().as_str()), (200, "a=1&b=two"));
    assert!(b.last().expect("AJP POST").is_ssl);
    let r = tls_client(p.port, &["--ca", ca.to_str().expect("path"), "--cert", client_cert.to_str().expect("p"), "--key", client_key.to_str().expect("p")]);
    assert!(r.ok(), "{}", r.error());
    let seen = b.last().expect("AJP request");
    let pem = seen.ssl_cert.expect("ssl_cert with a client certificate");
    let expected = std::fs::read_to_string(&client_cert).expect("client cert");
    assert_eq!(pem.trim(), expected.trim(), "the client certificate in PEM, as mod_jk sends it");
}

#[test]
fn sni_picks_the_server_and_its_certificate() {
    let dir = TempDir::new("pki");
    let pki = Pki::new(&dir.0);
    let (ca_cert, ca_key) = pki.server("a", "a.test", Key::Ec);
    let (cb_cert, cb_key) = pki.server("b", "b.test", Key::Ec);
    let conf = Conf::new()
        .server(
            Server::new()
                .listen("127.0.0.1:{port} ssl")
                .name("a.test")
                .line(ssl_lines(&ca_cert, &ca_key))
                .location(Location::new("/").line("return 200 \"A\";")),
        )
        .server(
            Server::new()
                .listen("127.0.0.1:{port} ssl")
                .name("b.test")
                .line(ssl_lines(&cb_cert, &cb_key))
                .location(Location::new("/").line("return 200 \"B\";")),
        );
    let p = Pounce::start(&conf);
    let ca = pki.ca();
    let ca = ca.to_str().expect("path");
    for (sni, cn) in [("a.test", "a.test"), ("b.test", "b.test")] {
        let r = tls_client(p.port, &["--ca", ca, "--sni", sni, "--host", sni]);
        assert!(r.ok(), "{}: {}", sni, r.error());
        assert_eq!(r.peer_cn(), cn, "SNI {} gets its server's certificate", sni);
        assert_eq!(r.body(), cn[..1].to_uppercase());
    }
    // Unknown or absent SNI: the default (first) server's certificate.
    for args in [vec!["--sni", "other.test", "--no-sni"], vec!["--no-sni"]] {
        let mut a = vec!["--ca", ca];
        a.extend(args);
        let r = tls_client(p.port, &a);
        assert!(r.ok(), "{}", r.error());
        assert_eq!(r.peer_cn(), "a.test");
    }
}

/// `openssl s_client` with the given extra arguments; its output (and whether it connected).
fn s_client(port: u16, extra: &[&str]) -> String {
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{}", port)])
        .args(extra)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    }
    let out = child.wait_with_output().expect("s_client");
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn rsa_and_ecdsa_in_one_server_by_what_the_client_supports() {
    let dir = TempDir::new("pki");
    let pki = Pki::new(&dir.0);
    let (ec, ec_key) = pki.server("ec", "localhost", Key::Ec);
    let (rsa, rsa_key) = pki.server("rsa", "localhost", Key::Rsa);
    let conf = Conf::new().server(
        Server::new()
            .listen("127.0.0.1:{port} ssl")
            .line(ssl_lines(&rsa, &rsa_key))
            .line(ssl_lines(&ec, &ec_key))
            .location(Location::new("/").line("return 200 \"ok\";")),
    );
    let p = Pounce::start(&conf);
    let any = s_client(p.port, &["-servername", "localhost"]);
    assert!(any.contains("Peer signature type: ECDSA") || any.contains("Server public key is 256 bit"), "ECDSA first: {}", any);
    let rsa_only = s_client(p.port, &["-servername", "localhost", "-sigalgs", "rsa_pss_rsae_sha256:RSA+SHA256"]);
    assert!(rsa_only.contains("Server public key is 2048 bit"), "an RSA-only client gets the RSA certificate: {}", rsa_only);
    let tls12_rsa = tls_client(p.port, &["--version", "1.2", "--ciphers", "ECDHE-RSA-AES128-GCM-SHA256"]);
    assert!(tls12_rsa.ok(), "{}", tls12_rsa.error());
    assert_eq!(tls12_rsa.cipher(), "ECDHE-RSA-AES128-GCM-SHA256");
}

#[test]
fn old_protocols_are_refused_and_logged() {
    let dir = TempDir::new("pki");
    let pki = Pki::new(&dir.0);
    let b = Backend::named("a");
    let p = Pounce::start(&tls_conf(&pki, "http", &b.addr(), ""));
    for v in ["1.0", "1.1"] {
        let r = tls_client(p.port, &["--version", v, "--no-request"]);
        assert!(!r.ok(), "TLS {} must be refused", v);
    }
    let out = s_client(p.port, &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]);
    assert!(out.contains("Cipher is (NONE)") || out.contains("no peer certificate available"), "no TLS 1.1 session: {}", out);
    assert!(eventually(Duration::from_secs(3), || p.error_log().contains("TLS handshake failed")), "{}", p.error_log());
    let log = p.error_log();
    assert!(log.lines().any(|l| l.contains("TLS handshake failed") && l.contains("127.0.0.1:")), "logged with the client address: {}", log);
    // And the others are still served.
    let r = tls_client(p.port, &[]);
    assert!(r.ok() && r.status() == 200, "{}", r.error());
}

#[test]
fn sessions_resume_over_tls12_and_tls13_across_workers() {
    let dir = TempDir::new("pki");
    let pki = Pki::new(&dir.0);
    let b = Backend::named("a");
    let p = Pounce::start(&tls_conf(&pki, "http", &b.addr(), "").workers(2));
    for v in ["1.2", "1.3"] {
        let r = tls_client(p.port, &["--version", v, "--connections", "8"]);
        assert!(r.ok(), "{}", r.error());
        let reused = r.reused();
        assert_eq!(reused.len(), 8);
        assert!(!reused[0], "the first connection is a full handshake");
        assert!(reused[1..].iter().all(|&x| x), "TLS {}: every later connection resumes, whichever worker takes it: {:?}", v, reused);
    }
    // With tickets off, nothing resumes.
    let p2 = Pounce::start(&tls_conf(&pki, "http", &b.addr(), "").http("ssl_session_tickets off;"));
    let r = tls_client(p2.port, &["--version", "1.3", "--connections", "3"]);
    assert!(r.ok(), "{}", r.error());
    assert_eq!(r.reused(), vec![false, false, false]);
}

#[test]
fn client_certificates_required_optional_and_absent() {
    let dir = TempDir::new("pki");
    let pki = Pki::new(&dir.0);
    let b = Backend::named("a");
    let (cc, ck) = pki.client("alice", "alice");
    let ca = pki.ca();
    let (cc, ck, ca_s) = (cc.to_str().expect("p"), ck.to_str().expect("p"), ca.to_str().expect("p"));
    let headers = "proxy_set_header X-Verify $ssl_client_verify; proxy_set_header X-Dn $ssl_client_s_dn; proxy_set_header X-Cert $ssl_client_escaped_cert;";
    let on = Pounce::start(&tls_conf(&pki, "http", &b.addr(), headers).http(format!("ssl_verify_client on; ssl_client_certificate {};", ca.display())));
    let without = tls_client(on.port, &["--ca", ca_s]);
    assert!(!without.ok() || without.status() == 0, "required: refused without a certificate");
    let with = tls_client(on.port, &["--ca", ca_s, "--cert", cc, "--key", ck]);
    assert!(with.ok(), "{}", with.error());
    let seen = b.last().expect("request");
    assert_eq!(seen.header("x-verify"), Some("SUCCESS"));
    assert_eq!(seen.header("x-dn"), Some("CN=alice,O=pounce tests,C=DE"), "RFC 2253, as nginx");
    assert!(seen.header("x-cert").is_some_and(|c| c.starts_with("-----BEGIN%20CERTIFICATE-----%0A")), "{:?}", seen.header("x-cert"));
    // A certificate from another CA is refused.
    let other = TempDir::new("pki-other");
    let stranger = Pki::new(&other.0);
    let (sc, sk) = stranger.client("mallory", "mallory");
    let bad = tls_client(on.port, &["--ca", ca_s, "--cert", sc.to_str().expect("p"), "--key", sk.to_str().expect("p")]);
    assert!(!bad.ok(), "a certificate of an unknown CA is refused");
    let opt = Pounce::start(&tls_conf(&pki, "http", &b.addr(), headers).http(format!("ssl_verify_client optional; ssl_client_certificate {};", ca.display())));
    let none = tls_client(opt.port, &["--ca", ca_s]);
    assert!(none.ok(), "{}", none.error());
    assert_eq!(b.last().expect("request").header("x-verify"), Some("NONE"));
    assert!(b.last().expect("request").header("x-dn").is_none(), "an empty variable sends no header");
    let with = tls_client(opt.port, &["--ca", ca_s, "--cert", cc, "--key", ck]);
    assert!(with.ok(), "{}", with.error());
    assert_eq!(b.last().expect("request").header("x-verify"), Some("SUCCESS"));
}

#[test]
fn reload_swaps_a_certificate_and_a_broken_key_keeps_the_old_one() {
    let dir = TempDir::new("pki");
    let pki = Pki::new(&dir.0);
    let (cert, key) = pki.server("site", "localhost", Key::Ec);
    let conf =
        Conf::new().server(Server::new().listen("127.0.0.1:{port} ssl").line(ssl_lines(&cert, &key)).location(Location::new("/").line("return 200 \"ok\";")));
    let p = Pounce::start(&conf);
    let serial = |port: u16| -> String {
        let out = s_client(port, &["-servername", "localhost"]);
        let pem_start = out.find("-----BEGIN CERTIFICATE-----").unwrap_or(0);
        let pem_end = out.find("-----END CERTIFICATE-----").map_or(out.len(), |e| e + 25);
        out[pem_start..pem_end].to_string()
    };
    let before = serial(p.port);
    assert!(before.contains("BEGIN CERTIFICATE"), "{}", before);
    // A renewed certificate in the same files: picked up by a reload.
    let (new_cert, new_key) = pki.server("renewed", "localhost", Key::Ec);
    std::fs::copy(&new_cert, &cert).expect("copy cert");
    std::fs::copy(&new_key, &key).expect("copy key");
    p.signal(libc::SIGHUP);
    assert!(eventually(Duration::from_secs(5), || serial(p.port) != before), "the new certificate is served after SIGHUP");
    let renewed = serial(p.port);
    // A broken key: the reload fails, says which file and why, and the running one serves on.
    std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n").expect("break key");
    p.signal(libc::SIGHUP);
    assert!(eventually(Duration::from_secs(5), || p.error_log().contains("reload failed")), "{}", p.error_log());
    let log = p.error_log();
    let line = log.lines().rfind(|l| l.contains("reload failed")).unwrap_or_default().to_string();
    assert!(line.contains(&key.display().to_string()), "names the file: {}", line);
    assert_eq!(serial(p.port), renewed, "still serving the certificate it had");
    let r = tls_client(p.port, &[]);
    assert!(r.ok() && r.body() == "ok", "{}", r.error());
}

#[test]
fn plain_http_on_the_tls_port_gets_400() {
    let dir = TempDir::new("pki");
    let pki = Pki::new(&dir.0);
    let b = Backend::named("a");
    let p = Pounce::start(&tls_conf(&pki, "http", &b.addr(), ""));
    let r = request(p.port, b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("The plain HTTP request was sent to HTTPS port"), "{}", r.text());
    assert_eq!(b.requests(), 0, "nothing reached the backend");
    // Garbage that is neither: closed, nothing else affected.
    let mut s = connect(p.port);
    s.write_all(&[0x01, 0x02, 0x03, 0xff, 0x00]).expect("garbage");
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    assert!(tls_client(p.port, &[]).ok());
}

#[test]
fn t_reports_missing_malformed_and_mismatched_files() {
    let dir = TempDir::new("pki");
    let pki = Pki::new(&dir.0);
    let (cert, key) = pki.server("good", "localhost", Key::Ec);
    let (_, other_key) = pki.server("other", "localhost", Key::Ec);
    let garbage = dir.0.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").expect("write");
    let missing = dir.0.join("missing.pem");
    let cases = [
        (missing.clone(), key.clone(), missing.display().to_string()),
        (garbage.clone(), key.clone(), format!("{}: no certificate in it", garbage.display())),
        (cert.clone(), other_key.clone(), format!("{}: the private key does not match the certificate", other_key.display())),
        (cert.clone(), garbage.clone(), format!("{}: no private key in it", garbage.display())),
    ];
    for (c, k, want) in cases {
        let conf = dir.0.join("t.conf");
        std::fs::write(&conf, format!("pid off;\nhttp {{\n server {{\n  listen 127.0.0.1:1 ssl;\n  {}\n }}\n}}\n", ssl_lines(&c, &k))).expect("conf");
        let out = Command::new(BIN).args(["-t", "-c"]).arg(&conf).output().expect("pounce -t");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}", err);
        assert!(err.contains(&want), "want {:?} in {:?}", want, err);
    }
}

#[test]
fn redirects_become_https_and_return_redirects_plain_to_tls() {
    let dir = TempDir::new("pki");
    let pki = Pki::new(&dir.0);
    let b = Backend::with("r", |_| Reply::Send {
        status: 302,
        headers: vec![("Location".into(), "http://app/next?a=1".into())],
        body: b"".to_vec(),
        framing: Framing::Length,
    });
    let (cert, key) = pki.server("localhost", "localhost", Key::Ec);
    let conf = Conf::new().upstream(Upstream::new("app").server(b.addr())).server(
        Server::new()
            .listen("127.0.0.1:{port} ssl")
            .line(ssl_lines(&cert, &key))
            .line("add_header Strict-Transport-Security \"max-age=63072000\" always;")
            .location(Location::new("/").proxy_pass("http://app")),
    );
    let p = Pounce::start(&conf);
    let r = tls_client(p.port, &["--host", "front.example"]);
    assert!(r.ok(), "{}", r.error());
    assert_eq!(r.status(), 302);
    assert_eq!(r.header("location").as_deref(), Some("https://front.example/next?a=1"), "proxy_redirect default uses the client's scheme");
    assert_eq!(r.header("strict-transport-security").as_deref(), Some("max-age=63072000"));
    // On a plain listener, `return 301 https://$host$request_uri;` sends clients to TLS.
    let plain = Pounce::start(&Conf::new().server(Server::new().location(Location::new("/").line("return 301 https://$host$request_uri;"))));
    let r = request(plain.port, b"GET /a/b?c=d HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("https://shop.example/a/b?c=d"));
}

#[test]
fn status_page_counts_handshakes_resumptions_and_failures_across_a_reload() {
    let dir = TempDir::new("pki");
    let pki = Pki::new(&dir.0);
    let b = Backend::named("a");
    let conf = tls_conf(&pki, "http", &b.addr(), "");
    let p = Pounce::start(&conf);
    let r = tls_client(p.port, &["--version", "1.3", "--connections", "3"]);
    assert!(r.ok(), "{}", r.error());
    assert_eq!(request(p.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").status, 400);
    assert!(!tls_client(p.port, &["--version", "1.1", "--no-request"]).ok());
    let tls = |p: &Pounce| -> (f64, f64, f64) {
        let j = p.harness_status().expect("status");
        let t = j.get("tls").arr().iter().find(|t| t.get("listen").str() == format!("127.0.0.1:{}", p.port)).cloned().expect("the TLS listener");
        (t.get("handshakes").num(), t.get("resumed").num(), t.get("handshake_failures").num())
    };
    assert!(eventually(Duration::from_secs(3), || tls(&p) == (3.0, 2.0, 2.0)), "{:?}", tls(&p));
    // Prometheus, labelled by listening address.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", p.status_port)).expect("status port");
    s.write_all(b"GET /?format=prometheus HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").expect("send");
    let prom = read_response(&mut std::io::BufReader::new(s), false).expect("prometheus").text();
    assert!(prom.contains(&format!("pounce_tls_handshakes_total{{listen=\"127.0.0.1:{}\"}} 3", p.port)), "{}", prom);
    assert!(prom.contains(&format!("pounce_tls_handshake_failures_total{{listen=\"127.0.0.1:{}\"}} 2", p.port)), "{}", prom);
    // A reload keeps counting from where it was, and keeps the ticket keys: a session from
    // before it resumes after it.
    let sess = dir.0.join("session.pem");
    let before = s_client(p.port, &["-servername", "localhost", "-tls1_2", "-sess_out", sess.to_str().expect("path")]);
    assert!(before.contains("New, TLSv1.2"), "{}", before);
    p.signal(libc::SIGHUP);
    assert!(eventually(Duration::from_secs(5), || p.error_log().contains("configuration generation 2 running")), "{}", p.error_log());
    let after = s_client(p.port, &["-servername", "localhost", "-tls1_2", "-sess_in", sess.to_str().expect("path")]);
    assert!(after.contains("Reused, TLSv1.2"), "the session resumed across the reload: {}", after);
    assert!(eventually(Duration::from_secs(3), || tls(&p) == (5.0, 3.0, 2.0)), "{:?}", tls(&p));
}
