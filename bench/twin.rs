//! One small backend that answers every request with the same 100-byte body over HTTP/1.1 or
//! AJP13, so that pounce's CPU per request over the two protocols can be compared with the
//! backend held equal, and AJP's cost split into pounce's own and the backend's write pattern:
//!
//!     cargo run --release --example twin -- PORT http|ajp|ajp-split
//!
//! `ajp` writes SEND_HEADERS, SEND_BODY_CHUNK and END_RESPONSE in one write(2), as `http`
//! writes its head and body; `ajp-split` writes them one by one, as Tomcat's AjpProcessor
//! does (it flushes after each). A thread per connection, blocking I/O, TCP_NODELAY (as
//! Tomcat). bench/ajp_cost.py drives it; it is not part of `make test`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Http,
    Ajp,
    AjpSplit,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or_else(|| usage());
    let mode = match args.next().as_deref() {
        Some("http") => Mode::Http,
        Some("ajp") => Mode::Ajp,
        Some("ajp-split") => Mode::AjpSplit,
        _ => usage(),
    };
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| {
        eprintln!("twin: cannot listen on 127.0.0.1:{port}: {e}");
        std::process::exit(1)
    });
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || serve(stream, mode));
    }
}

fn usage() -> ! {
    eprintln!("usage: twin PORT http|ajp|ajp-split");
    std::process::exit(2)
}

const BODY: &[u8] = &[b'x'; 100];

/// The three AJP packets of the answer, each a separate piece for `ajp-split`.
fn ajp_answer() -> [Vec<u8>; 3] {
    fn packet(payload: &[u8]) -> Vec<u8> {
        let mut p = vec![b'A', b'B'];
        p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        p.extend_from_slice(payload);
        p
    }
    fn string(v: &mut Vec<u8>, s: &[u8]) {
        v.extend_from_slice(&(s.len() as u16).to_be_bytes());
        v.extend_from_slice(s);
        v.push(0);
    }
    let mut head = vec![0x04, 0, 200];
    string(&mut head, b"OK");
    head.extend_from_slice(&2u16.to_be_bytes());
    head.extend_from_slice(&[0xA0, 0x01]);
    string(&mut head, b"text/plain");
    head.extend_from_slice(&[0xA0, 0x03]);
    string(&mut head, b"100");
    let mut chunk = vec![0x03];
    string(&mut chunk, BODY);
    [packet(&head), packet(&chunk), packet(&[0x05, 1])]
}

fn serve(mut s: TcpStream, mode: Mode) {
    let _ = s.set_nodelay(true);
    let http = [&b"HTTP/1.1 200 OK\r\nServer: twin\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n"[..], BODY].concat();
    let ajp = ajp_answer();
    let ajp_whole = ajp.concat();
    let cpong = [b'A', b'B', 0, 1, 9];
    let mut buf = vec![0u8; 64 * 1024];
    let mut have = 0;
    loop {
        let n = match s.read(&mut buf[have..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        have += n;
        let mut at = 0;
        loop {
            let rest = &buf[at..have];
            let (used, answer): (usize, &[u8]) = if mode == Mode::Http {
                match rest.windows(4).position(|w| w == b"\r\n\r\n") {
                    Some(end) => (end + 4, &http),
                    None => break,
                }
            } else {
                if rest.len() < 4 {
                    break;
                }
                let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
                if rest.len() < 4 + len {
                    break;
                }
                match rest.get(4) {
                    Some(10) => (4 + len, &cpong),
                    Some(2) => (4 + len, &ajp_whole),
                    // A body packet (none come with the benchmark's GETs): nothing to answer.
                    _ => (4 + len, &[][..]),
                }
            };
            at += used;
            let sent =
                if mode == Mode::AjpSplit && answer.len() == ajp_whole.len() { ajp.iter().try_for_each(|p| s.write_all(p)) } else { s.write_all(answer) };
            if sent.is_err() {
                return;
            }
        }
        buf.copy_within(at..have, 0);
        have -= at;
        if have == buf.len() {
            return;
        }
    }
}
