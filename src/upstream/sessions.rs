//! How many sticky sessions a server has lately served: distinct session ids seen within a
//! window (Tomcat's 30-minute session timeout by default), estimated with HyperLogLog in
//! fixed memory and without a lock, whichever worker sees the request. The window is kept as
//! six sub-windows, each its own sketch: a sub-window older than the window is cleared and
//! reused, so sessions that stopped coming age out.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};

/// Sub-windows per window.
const SLOTS: usize = 6;
/// Registers per sketch (standard error about 1.04 / sqrt(256) = 6.5%).
const REGISTERS: usize = 256;

#[derive(Debug)]
struct Slot {
    /// Which sub-window (its number since the clock's start, plus one; 0 = never used).
    epoch: AtomicU64,
    registers: [AtomicU8; REGISTERS],
}

impl Default for Slot {
    fn default() -> Self {
        Slot { epoch: AtomicU64::new(0), registers: std::array::from_fn(|_| AtomicU8::new(0)) }
    }
}

/// The live sessions of one server.
#[derive(Debug, Default)]
pub(crate) struct LiveSessions {
    slots: [Slot; SLOTS],
}

impl LiveSessions {
    /// A request of a session (its id's `hash`) reached the server at `now_ms`; `window_ms` is
    /// the window.
    pub(crate) fn record(&self, h: u64, now_ms: u64, window_ms: u64) {
        let epoch = now_ms / (window_ms / SLOTS as u64).max(1) + 1;
        let slot = &self.slots[(epoch % SLOTS as u64) as usize];
        let held = slot.epoch.load(Relaxed);
        if held != epoch && slot.epoch.compare_exchange(held, epoch, Relaxed, Relaxed).is_ok() {
            // This sub-window's slot last held one a whole window ago: start it afresh.
            for r in &slot.registers {
                r.store(0, Relaxed);
            }
        }
        let register = (h as usize) & (REGISTERS - 1);
        let rank = ((h >> 8) | (1 << 55)).trailing_zeros() as u8 + 1;
        slot.registers[register].fetch_max(rank, Relaxed);
    }

    /// Distinct sessions seen within the window before `now_ms` (an estimate).
    pub(crate) fn estimate(&self, now_ms: u64, window_ms: u64) -> u64 {
        let epoch = now_ms / (window_ms / SLOTS as u64).max(1) + 1;
        let mut union = [0u8; REGISTERS];
        for slot in &self.slots {
            let e = slot.epoch.load(Relaxed);
            if e == 0 || e + (SLOTS as u64) <= epoch {
                continue;
            }
            for (u, r) in union.iter_mut().zip(&slot.registers) {
                *u = (*u).max(r.load(Relaxed));
            }
        }
        let m = REGISTERS as f64;
        let sum: f64 = union.iter().map(|&r| 2f64.powi(-(r as i32))).sum();
        let zeros = union.iter().filter(|&&r| r == 0).count();
        let raw = 0.7213 / (1.0 + 1.079 / m) * m * m / sum;
        let estimate = if raw <= 2.5 * m && zeros > 0 { m * (m / zeros as f64).ln() } else { raw };
        estimate.round() as u64
    }
}

impl LiveSessions {
    /// Takes in what an older generation's sketch saw (a reload must not make a draining
    /// server look drained): per sub-window, the newer one wins and equal ones merge.
    /// Repeating it changes nothing.
    pub(crate) fn absorb(&self, old: &LiveSessions) {
        for (new, old) in self.slots.iter().zip(&old.slots) {
            let (n, o) = (new.epoch.load(Relaxed), old.epoch.load(Relaxed));
            if o == 0 || o < n {
                continue;
            }
            if o > n && new.epoch.compare_exchange(n, o, Relaxed, Relaxed).is_ok() {
                for r in &new.registers {
                    r.store(0, Relaxed);
                }
            }
            if new.epoch.load(Relaxed) == o {
                for (nr, or) in new.registers.iter().zip(&old.registers) {
                    nr.fetch_max(or.load(Relaxed), Relaxed);
                }
            }
        }
    }
}

/// A 64-bit hash of a session id (FNV-1a, then a finalizer that spreads its bits).
pub(crate) fn hash(id: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in id {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: u64 = 30 * 60 * 1000;

    #[test]
    fn counts_distinct_sessions_approximately() {
        let s = LiveSessions::default();
        for n in [0u64, 1, 10, 100, 1000, 20_000] {
            let s2 = LiveSessions::default();
            for i in 0..n {
                let id = format!("{:032X}.tomcat1", i * 7919);
                s2.record(hash(id.as_bytes()), 1000, WINDOW);
                s2.record(hash(id.as_bytes()), 2000, WINDOW); // repeats do not count
            }
            let e = s2.estimate(3000, WINDOW) as f64;
            let err = if n == 0 { e } else { (e - n as f64).abs() / n as f64 };
            assert!(if n < 100 { (e - n as f64).abs() <= 2.0 } else { err < 0.2 }, "{} sessions estimated as {}", n, e);
        }
        assert_eq!(s.estimate(0, WINDOW), 0);
    }

    #[test]
    fn sessions_age_out_of_the_window() {
        let s = LiveSessions::default();
        for i in 0..500u32 {
            s.record(hash(format!("old-{}", i).as_bytes()), 60_000, WINDOW);
        }
        for i in 0..50u32 {
            s.record(hash(format!("new-{}", i).as_bytes()), 25 * 60_000, WINDOW);
        }
        let both = s.estimate(26 * 60_000, WINDOW);
        assert!((450..=650).contains(&both), "within the window: {}", both);
        let later = s.estimate(WINDOW + 10 * 60_000, WINDOW);
        assert!((40..=60).contains(&later), "the old ones aged out: {}", later);
        assert_eq!(s.estimate(3 * WINDOW, WINDOW), 0, "everything aged out");
        // A slot reused after a whole window starts empty.
        s.record(hash(b"again"), 3 * WINDOW, WINDOW);
        assert_eq!(s.estimate(3 * WINDOW + 1, WINDOW), 1);
    }

    #[test]
    fn a_reload_keeps_the_sessions_seen() {
        let old = LiveSessions::default();
        let new = LiveSessions::default();
        for i in 0..300u32 {
            old.record(hash(format!("s-{}", i).as_bytes()), 60_000, WINDOW);
        }
        for i in 200..400u32 {
            new.record(hash(format!("s-{}", i).as_bytes()), 60_000, WINDOW);
        }
        new.absorb(&old);
        new.absorb(&old);
        let e = new.estimate(61_000, WINDOW);
        assert!((340..=460).contains(&e), "the union of both generations: {}", e);
    }
}
