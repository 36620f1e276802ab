//! Bad and hostile input on a TLS port: 2,000 connections each holding half a ClientHello
//! (no pooled buffer held, normal clients unaffected, all ended by `ssl_handshake_timeout`),
//! garbage, truncated and oversized records, and a TLS 1.2 renegotiation attempt. Each gets a
//! clear outcome for that client and nothing is lost for the others.

mod support;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::conf::{Conf, Location, Server};
use support::tls::{tls_client, Key, Pki};
use support::*;

fn tls_server(pki: &Pki, extra: &str) -> Conf {
    let (cert, key) = pki.server("localhost", "localhost", Key::Ec);
    Conf::new().events("worker_connections 16384;").server(
        Server::new()
            .listen("127.0.0.1:{port} ssl")
            .line(format!("ssl_certificate {}; ssl_certificate_key {};", cert.display(), key.display()))
            .line(extra)
            .location(Location::new("/").line("return 200 \"ok\";")),
    )
}

/// A real ClientHello (Python's ssl module writes it into a memory BIO).
fn client_hello() -> Vec<u8> {
    let script = "import ssl,sys\nc=ssl.create_default_context()\ni,o=ssl.MemoryBIO(),ssl.MemoryBIO()\ns=c.wrap_bio(i,o,server_hostname='localhost')\ntry:\n s.do_handshake()\nexcept ssl.SSLWantReadError:\n pass\nsys.stdout.write(o.read().hex())";
    let out = Command::new("python3").args(["-c", script]).output().expect("python3");
    let hex = String::from_utf8_lossy(&out.stdout).to_string();
    let bytes: Vec<u8> = (0..hex.len() / 2).filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()).collect();
    assert!(bytes.len() > 100 && bytes[0] == 0x16, "a TLS handshake record: {}", hex);
    bytes
}

/// Reads until EOF or reset (true), or nothing within `limit` (false).
fn closed_by_server(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).expect("timeout");
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn two_thousand_half_client_hellos_hold_no_buffers_and_are_ended_by_the_timeout() {
    raise_nofile();
    let dir = TempDir::new("pki");
    let pki = Pki::new(&dir.0);
    let p = Pounce::start(&tls_server(&pki, "ssl_handshake_timeout 4s;"));
    let count = soak("POUNCE_SOAK_SLOWLORIS", 2000) as usize;
    let hello = client_hello();
    let half = &hello[..hello.len() / 2];
    let rss_before = rss_kib(p.child.id());
    let mut held: Vec<TcpStream> = Vec::with_capacity(count);
    let t0 = Instant::now();
    while held.len() < count && t0.elapsed() < Duration::from_secs(60) {
        let mut s = TcpStream::connect(("127.0.0.1", p.port)).expect("connect");
        s.write_all(half).expect("half a ClientHello");
        held.push(s);
    }
    // Normal clients are served meanwhile.
    let mut served = 0;
    for _ in 0..10 {
        let r = tls_client(p.port, &[]);
        assert!(r.ok() && r.status() == 200, "a normal client during the flood: {}", r.error());
        served += 1;
    }
    let rss_with = rss_kib(p.child.id());
    let (buffers, json) = p.buffers_in_use().expect("status");
    println!(
        "{} connections with half a ClientHello ({} bytes each): pounce RSS {} KiB before, {} KiB with them ({} bytes each); buffers in use {:?}; {} normal clients served",
        held.len(),
        half.len(),
        rss_before,
        rss_with,
        rss_with.saturating_sub(rss_before) * 1024 / held.len() as u64,
        buffers,
        served
    );
    assert!(buffers.iter().all(|&b| b == 0), "handshakes in progress hold no pooled buffers: {}", json);
    // The partial ClientHello stays in the kernel until its record is whole: about 1 KiB each.
    assert!(rss_with.saturating_sub(rss_before) < held.len() as u64 * 4, "memory per pending handshake");
    // All ended by ssl_handshake_timeout (4 s from accept).
    let deadline = t0 + Duration::from_secs(12);
    let mut ended = 0;
    for s in held.iter_mut() {
        if closed_by_server(s, deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(50))) {
            ended += 1;
        }
    }
    println!("ended by ssl_handshake_timeout: {} of {}", ended, held.len());
    assert_eq!(ended, held.len());
    assert!(p.error_log().contains("TLS handshake timed out"), "logged");
}

#[test]
fn garbage_truncated_and_oversized_records_end_only_that_client() {
    let dir = TempDir::new("pki");
    let pki = Pki::new(&dir.0);
    let p = Pounce::start(&tls_server(&pki, "ssl_handshake_timeout 3s;"));
    let hello = client_hello();
    // A handshake record of garbage.
    let mut garbage = vec![0x16, 0x03, 0x01, 0x00, 0x40];
    garbage.extend((0..64u8).map(|i| i.wrapping_mul(37)));
    // A record that claims more than a record may carry (2^14 + 2048 is TLS's limit).
    let oversized = vec![0x16, 0x03, 0x01, 0xFF, 0xFF, 0x01, 0x00, 0xFF, 0xF0];
    // A ClientHello cut short, then the client closes its side.
    let truncated = hello[..hello.len() - 10].to_vec();
    // A ClientHello whose handshake message claims 1 MiB, sent in many records.
    let mut huge = Vec::new();
    let mut body = vec![0x01, 0x10, 0x00, 0x00];
    body.extend(std::iter::repeat_n(0x41, 64 * 1024));
    for chunk in body.chunks(16 * 1024) {
        huge.extend([0x16, 0x03, 0x01]);
        huge.extend((chunk.len() as u16).to_be_bytes());
        huge.extend(chunk);
    }
    for (name, bytes, half_close) in [("garbage", garbage, false), ("oversized", oversized, false), ("truncated", truncated, true), ("huge", huge, false)] {
        let mut s = connect(p.port);
        let _ = s.write_all(&bytes);
        if half_close {
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
        assert!(closed_by_server(&mut s, Duration::from_secs(6)), "{}: the server ends the connection", name);
        let r = tls_client(p.port, &[]);
        assert!(r.ok() && r.status() == 200, "after {}: others are served: {}", name, r.error());
    }
    let log = p.error_log();
    assert!(log.matches("TLS handshake failed").count() >= 3, "each failure is logged: {}", log);
}

#[test]
fn renegotiation_is_refused_and_the_connection_goes_on_or_ends_cleanly() {
    let dir = TempDir::new("pki");
    let pki = Pki::new(&dir.0);
    let p = Pounce::start(&tls_server(&pki, ""));
    // s_client's "R" asks for a renegotiation (TLS 1.2); then a request on the same connection.
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{}", p.port), "-tls1_2", "-servername", "localhost"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"R\n");
        std::thread::sleep(Duration::from_millis(500));
        let _ = stdin.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    }
    let out = child.wait_with_output().expect("s_client");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("RENEGOTIATING"), "the client tried: {}", text);
    assert!(!text.contains("Secure Renegotiation IS supported") || !text.contains("HTTP/1.1 200"), "no renegotiated session: {}", text);
    // pounce is unharmed.
    let r = tls_client(p.port, &["--version", "1.2"]);
    assert!(r.ok() && r.status() == 200, "{}", r.error());
}
