//! A small AJP13 server (the Tomcat side) for tests: parses FORWARD_REQUEST, pulls the body
//! with GET_BODY_CHUNK as Tomcat does, answers with SEND_HEADERS / SEND_BODY_CHUNK /
//! END_RESPONSE, and can misbehave on purpose.
#![allow(dead_code)]

use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct AjpReq {
    pub method: u8,
    pub stored_method: Option<String>,
    pub protocol: String,
    pub uri: String,
    pub remote_addr: String,
    pub server_name: String,
    pub server_port: u16,
    pub headers: Vec<(String, String)>,
    pub query: Option<String>,
    pub secret: Option<String>,
    pub route: Option<String>,
    pub req_attrs: Vec<(String, String)>,
    /// `is_ssl` and the SSL attributes (0x07 cert, 0x08 cipher, 0x09 session, 0x0B key size).
    pub is_ssl: bool,
    pub ssl_cert: Option<String>,
    pub ssl_cipher: Option<String>,
    pub ssl_session: Option<String>,
    pub ssl_key_size: Option<u16>,
    pub body: Vec<u8>,
    /// Sizes of the body packets received, in order (the first one unsolicited or not).
    pub body_packets: Vec<usize>,
    pub conn: usize,
}

impl AjpReq {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

pub enum AjpReply {
    Send {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        reuse: bool,
    },
    /// Raw bytes from "Tomcat", then close.
    Raw(Vec<u8>),
    /// Raw pieces written one by one with `gap` between them, as Tomcat writes a response in
    /// several flushes; the connection stays open unless the last piece ends with an
    /// END_RESPONSE without reuse (then it is closed, as Tomcat does) or is empty (closed
    /// then, as Tomcat closes an idle connection).
    Pieces {
        pieces: Vec<Vec<u8>>,
        gap: Duration,
    },
    /// Answer nothing, keep the connection.
    Hang,
}

pub struct Behaviour {
    pub answer_cping: bool,
    pub handler: Box<dyn Fn(&AjpReq) -> AjpReply + Send + Sync>,
}

pub struct AjpBackend {
    pub port: u16,
    pub conns: Arc<AtomicUsize>,
    pub reqs: Arc<AtomicUsize>,
    pub cpings: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<AjpReq>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

const CODES: [&str; 14] = [
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "authorization",
    "connection",
    "content-type",
    "content-length",
    "cookie",
    "cookie2",
    "host",
    "pragma",
    "referer",
    "user-agent",
];

impl AjpBackend {
    /// Echo: 200, body = the request body (or "name" when empty), X-Backend header, reuse=1.
    pub fn echo(name: &str) -> AjpBackend {
        let n = name.to_string();
        AjpBackend::start(Behaviour {
            answer_cping: true,
            handler: Box::new(move |r| AjpReply::Send {
                status: 200,
                headers: vec![("X-Backend".into(), n.clone()), ("Content-Type".into(), "application/octet-stream".into())],
                body: if r.body.is_empty() { n.clone().into_bytes() } else { r.body.clone() },
                reuse: true,
            }),
        })
    }

    pub fn start(b: Behaviour) -> AjpBackend {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        l.set_nonblocking(true).expect("nb");
        let conns = Arc::new(AtomicUsize::new(0));
        let reqs = Arc::new(AtomicUsize::new(0));
        let cpings = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let b = Arc::new(b);
        let (c2, r2, p2, s2, st2) = (conns.clone(), reqs.clone(), cpings.clone(), seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut workers: Vec<JoinHandle<()>> = Vec::new();
            while !st2.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((s, _)) => {
                        let id = c2.fetch_add(1, Ordering::Relaxed) + 1;
                        let (b, r3, p3, s3, st3) = (b.clone(), r2.clone(), p2.clone(), s2.clone(), st2.clone());
                        let _ = s.set_nonblocking(false);
                        workers.push(std::thread::spawn(move || serve(s, id, &b, &r3, &p3, &s3, &st3)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
                workers.retain(|w| !w.is_finished());
            }
            for w in workers {
                let _ = w.join();
            }
        });
        AjpBackend { port, conns, reqs, cpings, seen, stop, thread: Some(thread) }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn last(&self) -> Option<AjpReq> {
        self.seen.lock().ok().and_then(|v| v.last().cloned())
    }

    pub fn requests(&self) -> usize {
        self.reqs.load(Ordering::Relaxed)
    }

    pub fn connections(&self) -> usize {
        self.conns.load(Ordering::Relaxed)
    }
}

impl Drop for AjpBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_packet(s: &mut TcpStream, stop: &AtomicBool) -> Option<Vec<u8>> {
    let mut h = [0u8; 4];
    super::backend::read_exact_patient(s, stop, &mut h)?;
    assert_eq!(&h[..2], &[0x12, 0x34], "pounce sent a packet with a wrong magic");
    let len = u16::from_be_bytes([h[2], h[3]]) as usize;
    let mut p = vec![0u8; len];
    super::backend::read_exact_patient(s, stop, &mut p)?;
    Some(p)
}

struct Cur<'a>(&'a [u8], usize);

impl Cur<'_> {
    fn u8(&mut self) -> u8 {
        let v = self.0[self.1];
        self.1 += 1;
        v
    }
    fn u16(&mut self) -> u16 {
        let v = u16::from_be_bytes([self.0[self.1], self.0[self.1 + 1]]);
        self.1 += 2;
        v
    }
    fn string(&mut self) -> Option<String> {
        let n = self.u16();
        if n == 0xFFFF {
            return None;
        }
        let s = String::from_utf8_lossy(&self.0[self.1..self.1 + n as usize]).to_string();
        assert_eq!(self.0[self.1 + n as usize], 0, "AJP string without NUL");
        self.1 += n as usize + 1;
        Some(s)
    }
}

fn parse_forward(p: &[u8], conn: usize) -> AjpReq {
    let mut c = Cur(p, 0);
    assert_eq!(c.u8(), 2, "FORWARD_REQUEST");
    let mut r = AjpReq { conn, method: c.u8(), ..Default::default() };
    r.protocol = c.string().unwrap_or_default();
    r.uri = c.string().unwrap_or_default();
    r.remote_addr = c.string().unwrap_or_default();
    let _remote_host = c.string();
    r.server_name = c.string().unwrap_or_default();
    r.server_port = c.u16();
    r.is_ssl = c.u8() == 1;
    let n = c.u16();
    for _ in 0..n {
        let peek = u16::from_be_bytes([p[c.1], p[c.1 + 1]]);
        let name = if peek & 0xFF00 == 0xA000 {
            c.u16();
            CODES[(peek & 0xFF) as usize - 1].to_string()
        } else {
            c.string().unwrap_or_default()
        };
        let value = c.string().unwrap_or_default();
        r.headers.push((name, value));
    }
    loop {
        match c.u8() {
            0xFF => break,
            0x05 => r.query = c.string(),
            0x07 => r.ssl_cert = c.string(),
            0x08 => r.ssl_cipher = c.string(),
            0x09 => r.ssl_session = c.string(),
            0x0B => r.ssl_key_size = Some(c.u16()),
            0x06 => r.route = c.string(),
            0x0C => r.secret = c.string(),
            0x0D => r.stored_method = c.string(),
            0x0A => {
                let k = c.string().unwrap_or_default();
                let v = c.string().unwrap_or_default();
                r.req_attrs.push((k, v));
            }
            other => panic!("unexpected attribute {:#x}", other),
        }
    }
    assert_eq!(c.1, p.len(), "FORWARD_REQUEST ends at are_done");
    r
}

fn send_packet(s: &mut TcpStream, payload: &[u8]) -> bool {
    let mut v = Vec::new();
    put_packet(&mut v, payload);
    s.write_all(&v).is_ok()
}

fn put_packet(v: &mut Vec<u8>, payload: &[u8]) {
    v.extend_from_slice(&[0x41, 0x42]);
    v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    v.extend_from_slice(payload);
}

/// A SEND_HEADERS packet with `headers` as given (common names coded as Tomcat does).
pub fn send_headers(status: u16, headers: &[(String, String)]) -> Vec<u8> {
    let mut h = vec![0x04];
    h.extend_from_slice(&status.to_be_bytes());
    put_string(&mut h, status.to_string().as_bytes());
    h.extend_from_slice(&(headers.len() as u16).to_be_bytes());
    for (n, v) in headers {
        match n.as_str() {
            "Content-Type" => h.extend_from_slice(&[0xA0, 0x01]),
            "Content-Length" => h.extend_from_slice(&[0xA0, 0x03]),
            "Set-Cookie" => h.extend_from_slice(&[0xA0, 0x07]),
            _ => put_string(&mut h, n.as_bytes()),
        }
        put_string(&mut h, v.as_bytes());
    }
    let mut out = Vec::new();
    put_packet(&mut out, &h);
    out
}

/// SEND_BODY_CHUNK packets carrying `body`; an empty body gives one empty chunk: Tomcat's
/// flush packet.
pub fn body_chunks(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let pieces: Vec<&[u8]> = if body.is_empty() { vec![&[][..]] } else { body.chunks(8184).collect() };
    for piece in pieces {
        let mut c = vec![0x03];
        put_string(&mut c, piece);
        put_packet(&mut out, &c);
    }
    out
}

/// END_RESPONSE.
pub fn end_response(reuse: bool) -> Vec<u8> {
    let mut out = Vec::new();
    put_packet(&mut out, &[0x05, u8::from(reuse)]);
    out
}

fn put_string(v: &mut Vec<u8>, s: &[u8]) {
    v.extend_from_slice(&(s.len() as u16).to_be_bytes());
    v.extend_from_slice(s);
    v.push(0);
}

fn serve(mut s: TcpStream, conn: usize, b: &Behaviour, reqs: &AtomicUsize, cpings: &AtomicUsize, seen: &Mutex<Vec<AjpReq>>, stop: &AtomicBool) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    loop {
        let Some(p) = read_packet(&mut s, stop) else { return };
        if p == [0x0A] {
            cpings.fetch_add(1, Ordering::Relaxed);
            if b.answer_cping {
                if !send_packet(&mut s, &[0x09]) {
                    return;
                }
                continue;
            }
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(10));
            }
            return;
        }
        let mut r = parse_forward(&p, conn);
        reqs.fetch_add(1, Ordering::Relaxed);
        let cl: Option<usize> = r.header("content-length").and_then(|v| v.parse().ok());
        // Like Tomcat: no Content-Length means unknown length, read until the empty packet.
        let chunked = cl.is_none();
        // The body, as Tomcat reads it: the unsolicited first packet, then GET_BODY_CHUNK.
        let mut need_more = match cl {
            Some(n) if n > 0 => {
                let Some(first) = read_packet(&mut s, stop) else { return };
                let n1 = u16::from_be_bytes([first[0], first[1]]) as usize;
                r.body.extend_from_slice(&first[2..2 + n1]);
                r.body_packets.push(n1);
                r.body.len() < n
            }
            _ => chunked,
        };
        while need_more {
            if !send_packet(&mut s, &[0x06, 0x1F, 0xFA]) {
                return;
            }
            let Some(pk) = read_packet(&mut s, stop) else { return };
            let n = if pk.len() >= 2 { u16::from_be_bytes([pk[0], pk[1]]) as usize } else { 0 };
            r.body_packets.push(n);
            if n == 0 {
                break;
            }
            r.body.extend_from_slice(&pk[2..2 + n]);
            need_more = match cl {
                Some(total) => r.body.len() < total,
                None => true,
            };
        }
        if let Ok(mut v) = seen.lock() {
            let mut kept = r.clone();
            if kept.body.len() > 4096 {
                kept.body.clear();
            }
            v.push(kept);
        }
        match (b.handler)(&r) {
            AjpReply::Hang => {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                return;
            }
            AjpReply::Raw(bytes) => {
                let _ = s.write_all(&bytes);
                std::thread::sleep(Duration::from_millis(20));
                let _ = s.shutdown(Shutdown::Both);
                return;
            }
            AjpReply::Pieces { pieces, gap } => {
                for (i, p) in pieces.iter().enumerate() {
                    if i > 0 {
                        std::thread::sleep(gap);
                    }
                    if s.write_all(p).is_err() {
                        return;
                    }
                }
                if pieces.last().is_some_and(|p| p.is_empty() || p.ends_with(&end_response(false))) {
                    let _ = s.shutdown(Shutdown::Both);
                    return;
                }
            }
            AjpReply::Send { status, headers, body, reuse } => {
                let mut hs = headers.clone();
                if !hs.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-length")) && status != 304 && status != 204 {
                    hs.push(("Content-Length".into(), body.len().to_string()));
                }
                // The whole answer in one write, so END_RESPONSE arrives with the body (the
                // connection is back in pounce's pool when the client has its answer).
                let mut out = send_headers(status, &hs);
                if r.method != 3 {
                    out.extend(body_chunks(&body));
                }
                out.extend(end_response(reuse));
                if s.write_all(&out).is_err() {
                    return;
                }
                if !reuse {
                    let _ = s.shutdown(Shutdown::Both);
                    return;
                }
            }
        }
    }
}
