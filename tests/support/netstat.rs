//! The machine's TCP sockets from /proc/net/tcp and /proc/net/tcp6, to see what pounce's
//! connections are doing (CLOSE-WAIT: the peer closed and pounce has not; SYN-SENT: a
//! connect() still under way).
#![allow(dead_code)]

pub const ESTABLISHED: u8 = 0x01;
pub const SYN_SENT: u8 = 0x02;
pub const CLOSE_WAIT: u8 = 0x08;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSocket {
    pub local_port: u16,
    pub remote_port: u16,
    /// The kernel's state number (`ESTABLISHED`, `SYN_SENT`, `CLOSE_WAIT`, ...).
    pub state: u8,
    /// Bytes written and not yet acknowledged by the peer.
    pub tx_queue: u64,
    /// Bytes received and not yet read by the application (for a listener: its accept queue).
    pub rx_queue: u64,
}

/// Every TCP socket of this network namespace, IPv4 and IPv6.
pub fn tcp_sockets() -> Vec<TcpSocket> {
    let mut v = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else { continue };
        // "  sl  local_address rem_address   st ..." then "0: 0100007F:1F90 00000000:0000 0A ..."
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let port = |i: usize| f.get(i)?.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
            let state = f.get(3).and_then(|s| u8::from_str_radix(s, 16).ok());
            // "tx_queue:rx_queue", hexadecimal.
            let queues = f.get(4).and_then(|q| q.split_once(':')).and_then(|(t, r)| Some((u64::from_str_radix(t, 16).ok()?, u64::from_str_radix(r, 16).ok()?)));
            if let (Some(l), Some(r), Some(st), Some((tx, rx))) = (port(1), port(2), state, queues) {
                v.push(TcpSocket { local_port: l, remote_port: r, state: st, tx_queue: tx, rx_queue: rx });
            }
        }
    }
    v
}

/// Sockets in CLOSE-WAIT whose local port is `port`: connections to a server on `port` that
/// the client closed and the server has not.
pub fn close_wait_on(port: u16) -> usize {
    tcp_sockets().iter().filter(|s| s.local_port == port && s.state == CLOSE_WAIT).count()
}

/// Connections towards `port` that are being set up or open (SYN-SENT or ESTABLISHED on the
/// connecting side): what could still carry a request to a server on `port`.
pub fn open_to(port: u16) -> usize {
    tcp_sockets().iter().filter(|s| s.remote_port == port && (s.state == SYN_SENT || s.state == ESTABLISHED)).count()
}

/// Bytes on their way to a server on `port` in the kernel: written by its clients and not yet
/// acknowledged, plus received by its connections and not yet read.
pub fn queued_to(port: u16) -> u64 {
    tcp_sockets()
        .iter()
        .map(|s| {
            if s.remote_port == port {
                s.tx_queue
            } else if s.local_port == port && s.remote_port != 0 {
                s.rx_queue
            } else {
                0
            }
        })
        .sum()
}

/// Sockets in SYN-SENT towards `port`: connect() calls to it still under way.
pub fn syn_sent_to(port: u16) -> usize {
    tcp_sockets().iter().filter(|s| s.remote_port == port && s.state == SYN_SENT).count()
}
