//! What a backend allows a kept connection, learned from what it does rather than assumed:
//! how long it keeps an idle connection (a `Keep-Alive: timeout=` response header, or the
//! age at which idle pooled connections are found closed) and how many requests it serves
//! on one (a `Keep-Alive: max=` header, or the count at which it closes connections). The
//! idle pool retires its connections before the backend would close them, and does not keep
//! one the backend is about to close, so requests rarely meet a connection closed under them
//! (which is resent, but costs a round trip).
//!
//! One observation of a close may be an accident (a restart, an error); a value learned from
//! closes is adopted when two closes in a row agree. The figures live in the shared per-peer
//! state, so every worker and the status page see them.

use super::PeerState;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// Idle closes younger than this are not a timeout (a restart, a reset).
const MIN_IDLE_TIMEOUT_MS: u64 = 1000;

/// What a response said about its connection's future.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeepAliveHint {
    /// The backend closes the connection after this response (HTTP `Connection: close`,
    /// AJP END_RESPONSE with reuse 0).
    pub closing: bool,
    /// `Keep-Alive: timeout=N` (seconds).
    pub timeout: Option<u32>,
    /// `Keep-Alive: max=N` (further requests it will serve on the connection).
    pub max: Option<u32>,
}

impl KeepAliveHint {
    /// Reads a `Keep-Alive` header value: `timeout=5, max=100` (either may be missing).
    pub fn parse_header(&mut self, value: &[u8]) {
        for part in value.split(|&c| c == b',') {
            let part = crate::http::request::trim(part);
            let Some(eq) = part.iter().position(|&c| c == b'=') else { continue };
            let (k, v) = (crate::http::request::trim(&part[..eq]), crate::http::request::trim(&part[eq + 1..]));
            let Some(n) = crate::http::request::parse_decimal(v).map(|n| n.min(u32::MAX as u64) as u32) else { continue };
            if k.eq_ignore_ascii_case(b"timeout") {
                self.timeout = Some(n);
            } else if k.eq_ignore_ascii_case(b"max") {
                self.max = Some(n);
            }
        }
    }
}

impl PeerState {
    /// A complete response on a connection that has now served `served` requests.
    pub(crate) fn learn_from_response(&self, served: u32, hint: KeepAliveHint) {
        if let Some(t) = hint.timeout.filter(|&t| t > 0) {
            store_if_changed(&self.backend_idle_ms, t.saturating_mul(1000));
        }
        if let Some(m) = hint.max {
            store_if_changed(&self.backend_max_requests, served.saturating_add(m));
        } else if hint.closing && served >= 2 && agrees(&self.close_seen, served, 0) {
            store_if_changed(&self.backend_max_requests, served);
        }
    }

    /// The backend closed a pooled connection that had been idle for `age`.
    pub(crate) fn learn_idle_close(&self, age: Duration, configured: Duration) {
        let ms = age.as_millis() as u64;
        if ms < MIN_IDLE_TIMEOUT_MS || age >= configured {
            return;
        }
        let ms = ms.min(u32::MAX as u64) as u32;
        // Closes by a timer agree within a tenth (the sweep of the backend's poller).
        if agrees(&self.idle_close_seen, ms, ms / 10) {
            let known = self.backend_idle_ms.load(Relaxed);
            if known == 0 || ms < known {
                self.backend_idle_ms.store(ms, Relaxed);
            }
        }
    }

    /// How long an idle connection to this server may be kept: `keepalive_timeout`, or less
    /// when the server is known to close idle connections sooner (with a margin of an
    /// eighth, so pounce closes first).
    pub(crate) fn idle_limit(&self, configured: Duration) -> Duration {
        match self.backend_idle_ms.load(Relaxed) {
            0 => configured,
            ms => configured.min(Duration::from_millis(ms as u64 - ms as u64 / 8)),
        }
    }

    /// Requests a connection to this server may serve: `keepalive_requests`, or fewer when
    /// the server is known to close connections after fewer.
    pub(crate) fn request_limit(&self, configured: u32) -> u32 {
        match self.backend_max_requests.load(Relaxed) {
            0 => configured,
            n => configured.min(n),
        }
    }
}

/// Records `value` as the latest observation; true when it agrees (within `slack`) with the
/// one before.
fn agrees(seen: &std::sync::atomic::AtomicU32, value: u32, slack: u32) -> bool {
    let before = seen.swap(value, Relaxed);
    before != 0 && before.abs_diff(value) <= slack
}

/// Shared cache lines are written only when the figure changes.
fn store_if_changed(a: &std::sync::atomic::AtomicU32, v: u32) {
    if a.load(Relaxed) != v {
        a.store(v, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_header() {
        let mut h = KeepAliveHint::default();
        h.parse_header(b"timeout=20");
        assert_eq!((h.timeout, h.max), (Some(20), None));
        let mut h = KeepAliveHint::default();
        h.parse_header(b" Max = 99 ,timeout=5, junk, x=");
        assert_eq!((h.timeout, h.max), (Some(5), Some(99)));
    }

    #[test]
    fn limits_from_headers_and_agreeing_closes() {
        let p = PeerState::default();
        let cfg = Duration::from_secs(60);
        assert_eq!(p.idle_limit(cfg), cfg);
        p.learn_from_response(3, KeepAliveHint { closing: false, timeout: Some(20), max: Some(97) });
        assert_eq!(p.idle_limit(cfg), Duration::from_millis(17_500));
        assert_eq!(p.request_limit(1000), 100);

        let p = PeerState::default();
        p.learn_from_response(57, KeepAliveHint { closing: true, ..Default::default() });
        assert_eq!(p.request_limit(1000), 1000, "one close is not a rule");
        p.learn_from_response(100, KeepAliveHint { closing: true, ..Default::default() });
        p.learn_from_response(100, KeepAliveHint { closing: true, ..Default::default() });
        assert_eq!(p.request_limit(1000), 100);
        p.learn_from_response(1, KeepAliveHint { closing: true, ..Default::default() });
        assert_eq!(p.request_limit(1000), 100, "a connection closed after its first request says nothing");

        let p = PeerState::default();
        p.learn_idle_close(Duration::from_millis(300), cfg);
        p.learn_idle_close(Duration::from_millis(300), cfg);
        assert_eq!(p.idle_limit(cfg), cfg, "too young to be a timeout");
        p.learn_idle_close(Duration::from_millis(20_100), cfg);
        assert_eq!(p.idle_limit(cfg), cfg);
        p.learn_idle_close(Duration::from_millis(20_900), cfg);
        assert_eq!(p.idle_limit(cfg), Duration::from_millis(20_900 - 20_900 / 8));
        p.learn_idle_close(Duration::from_secs(70), cfg);
        assert_eq!(p.idle_limit(cfg), Duration::from_millis(20_900 - 20_900 / 8), "older than ours: not learned");
    }
}
