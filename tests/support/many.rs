//! A backend listening on many ports at once (a 1,024-server upstream without 1,024
//! processes): one thread, one mio poll over every listener and connection. Each answers
//! `200` with its port as the body (and `X-Port`), keeps connections alive, and counts the
//! requests each port got.

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub struct ManyPorts {
    pub ports: Vec<u16>,
    /// Requests per port, in the order of `ports`.
    pub hits: Arc<Vec<AtomicUsize>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ManyPorts {
    pub fn start(n: usize) -> ManyPorts {
        let mut listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0".parse().expect("addr")).expect("bind")).collect();
        let ports: Vec<u16> = listeners.iter().map(|l| l.local_addr().expect("addr").port()).collect();
        let hits: Arc<Vec<AtomicUsize>> = Arc::new((0..n).map(|_| AtomicUsize::new(0)).collect());
        let stop = Arc::new(AtomicBool::new(false));
        let poll = Poll::new().expect("poll");
        for (i, l) in listeners.iter_mut().enumerate() {
            poll.registry().register(l, Token(i), Interest::READABLE).expect("register");
        }
        let (h, st) = (hits.clone(), stop.clone());
        let thread = std::thread::spawn(move || serve(poll, listeners, h, st));
        ManyPorts { ports, hits, stop, thread: Some(thread) }
    }

    pub fn hits(&self, i: usize) -> usize {
        self.hits[i].load(Ordering::Relaxed)
    }
}

impl Drop for ManyPorts {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Conn {
    stream: TcpStream,
    /// Which listener (port index) accepted it.
    port: usize,
    input: Vec<u8>,
}

fn serve(mut poll: Poll, listeners: Vec<TcpListener>, hits: Arc<Vec<AtomicUsize>>, stop: Arc<AtomicBool>) {
    let n = listeners.len();
    let mut conns: HashMap<usize, Conn> = HashMap::new();
    let mut next = n;
    let mut events = Events::with_capacity(1024);
    while !stop.load(Ordering::Relaxed) {
        if poll.poll(&mut events, Some(Duration::from_millis(50))).is_err() {
            continue;
        }
        for ev in events.iter() {
            let t = ev.token().0;
            if t < n {
                while let Ok((mut s, _)) = listeners[t].accept() {
                    let _ = s.set_nodelay(true);
                    if poll.registry().register(&mut s, Token(next), Interest::READABLE).is_ok() {
                        conns.insert(next, Conn { stream: s, port: t, input: Vec::new() });
                        next += 1;
                    }
                }
                continue;
            }
            let Some(c) = conns.get_mut(&t) else { continue };
            let mut closed = false;
            let mut buf = [0u8; 4096];
            loop {
                match c.stream.read(&mut buf) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(k) => c.input.extend_from_slice(&buf[..k]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
            // Answer every complete head (GETs: no bodies).
            while let Some(end) = c.input.windows(4).position(|w| w == b"\r\n\r\n") {
                c.input.drain(..end + 4);
                hits[c.port].fetch_add(1, Ordering::Relaxed);
                let body = c.stream.local_addr().map(|a| a.port().to_string()).unwrap_or_default();
                let resp = format!("HTTP/1.1 200 OK\r\nX-Port: {}\r\nContent-Length: {}\r\n\r\n{}", body, body.len(), body);
                // Small answers to a socket that has room: a blocking retry loop is enough.
                let mut out = resp.as_bytes();
                while !out.is_empty() {
                    match c.stream.write(out) {
                        Ok(k) => out = &out[k..],
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(1)),
                        Err(_) => {
                            closed = true;
                            break;
                        }
                    }
                }
            }
            if closed {
                if let Some(mut c) = conns.remove(&t) {
                    let _ = poll.registry().deregister(&mut c.stream);
                }
            }
        }
    }
}
