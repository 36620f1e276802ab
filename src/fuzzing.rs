//! Entry points for the cargo-fuzz targets that need crate-private parts (built only with
//! `--cfg fuzzing`, as cargo fuzz does).

use crate::transport::tls::{ClientIo, TlsConn};
use std::io::{self, Read, Write};
use std::sync::OnceLock;

/// A client that sends `data` in pieces of `piece` bytes, then closes; what pounce writes is
/// dropped.
struct Replay<'a> {
    data: &'a [u8],
    at: usize,
    piece: usize,
}

impl Read for Replay<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at >= self.data.len() {
            return Ok(0);
        }
        let n = buf.len().min(self.piece).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Write for Replay<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ClientIo for Replay<'_> {
    fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.data.len() - self.at.min(self.data.len()));
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        Ok(n)
    }
    fn available(&self) -> io::Result<usize> {
        Ok(self.data.len().saturating_sub(self.at))
    }
    fn shutdown_write(&self) {}
    fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        Ok(std::net::SocketAddr::from(([127, 0, 0, 1], 443)))
    }
}

/// The TLS listener of a configuration with a certificate made once by the `openssl`
/// command (no key is kept in the repository).
fn listener() -> &'static crate::runtime::Runtime {
    static RT: OnceLock<crate::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("pounce-fuzz-tls-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let (cert, key) = (dir.join("c.pem"), dir.join("k.pem"));
        let made = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=localhost"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output();
        assert!(made.is_ok_and(|o| o.status.success()), "the openssl command makes the fuzzer's certificate");
        let text = format!("http {{ server {{ listen 127.0.0.1:1 ssl; ssl_certificate {}; ssl_certificate_key {}; }} }}", cert.display(), key.display());
        let cfg = crate::config::load_text(text.as_bytes(), &dir.join("f.conf"), &dir).expect("fuzz configuration");
        crate::runtime::Runtime::build(cfg, 1, None).expect("fuzz TLS configuration")
    })
}

/// Drives the TLS front end (sniffing, the acceptor, the handshake, records) with `data` as
/// what a client sends, in pieces of `piece` bytes: it must end in an error, an EOF or
/// plaintext, never a panic or a loop.
pub fn tls_front(data: &[u8], piece: usize) {
    let rt = listener();
    let Some(l) = rt.tls.listener(0) else { return };
    let io = Replay { data, at: 0, piece: piece.max(1) };
    let mut conn = TlsConn::new(io, "127.0.0.1:9".parse().expect("addr"), l.clone());
    // The replayed client has sent everything and closed: as a socket's EPOLLRDHUP says.
    conn.set_ready(true, true, true);
    let mut plain = [0u8; 4096];
    for _ in 0..10_000 {
        match conn.read(&mut plain) {
            Ok(0) => return,
            Ok(_) => {
                let _ = conn.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => conn.set_ready(true, true, true),
            Err(_) => return,
        }
        if conn.read_closed() {
            return;
        }
    }
    panic!("the TLS front end did not finish with {} bytes", data.len());
}

/// The PROXY protocol header parser on `data` as the first bytes of a connection: never a
/// panic, and monotone as the socket reader relies on — a complete header is complete with
/// exactly its bytes and every shorter prefix is `Incomplete`; an `Incomplete` input is
/// shorter than what the reader peeks at and all its prefixes are `Incomplete` too; an
/// `Invalid` one stays invalid whatever follows. The same bytes as an X-Forwarded-For
/// address must not panic realip's parser either.
pub fn proxy_header(data: &[u8]) {
    use crate::transport::proxy_protocol::{parse, Parsed, MAX_HEADER, V1_MAX, V2_MAX};
    let _ = crate::proxy::realip::parse_addr(data);
    let whole = parse(data);
    let prefixes_incomplete = |n: usize| (0..n).all(|cut| parse(&data[..cut]) == Parsed::Incomplete);
    match whole {
        Parsed::Done { len, .. } => {
            assert!(len <= data.len() && len <= V1_MAX.max(V2_MAX), "a header of {} bytes", len);
            assert_eq!(parse(&data[..len]), whole, "the header alone");
            assert!(prefixes_incomplete(len), "a prefix of a valid header is not Incomplete");
        }
        Parsed::Incomplete => {
            assert!(data.len() < MAX_HEADER, "Incomplete after {} bytes: the reader would wait past its peek", data.len());
            assert!(prefixes_incomplete(data.len()), "a prefix of an incomplete header is not Incomplete");
        }
        Parsed::Invalid(_) => {
            let mut more = data.to_vec();
            more.extend_from_slice(b" 1 2\r\n\r\n");
            assert!(matches!(parse(&more), Parsed::Invalid(_)), "invalid bytes mended by what follows");
        }
    }
}
