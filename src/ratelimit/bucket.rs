//! A `limit_req_zone`: nginx's leaky bucket per key, in key-hashed shards of their own lock.
//!
//! The arithmetic is nginx's (`ngx_http_limit_req_module.c`): a key's `excess` is kept in
//! thousandths of a request, the rate in thousandths of a request per second, and on each
//! request `excess = excess - rate * ms / 1000 + 1000` (never below 0), where `ms` is the time
//! since the key's last request. Over `burst` the request is refused and nothing is stored.
//! Each shard keeps its states in least-recently-used order, as nginx's queue: a new key first
//! drops up to two states idle for a minute whose excess has leaked away, and when the shard is
//! full it drops the least recently used one; a state held by a request in progress (several
//! `limit_req` on one request) is never dropped, and when only such remain the request is
//! refused (nginx's "could not allocate node").

use super::key::Key;
use super::table::{lock_counting, Table};
use std::collections::hash_map::RandomState;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};

/// Shards of a zone (a power of two).
pub(crate) const SHARDS: usize = 16;
const NIL: u32 = u32::MAX;

/// nginx's step for one request: `excess` after `ms` at `rate`, plus this request.
/// Times that went backwards count as 0, or as 1 ms when by more than a minute (nginx).
pub(crate) fn leak(excess: u64, rate: u64, ms: i64) -> u64 {
    let ms = if ms < -60_000 { 1 } else { ms.max(0) };
    let e = excess as i128 - rate as i128 * ms as i128 / 1000 + 1000;
    e.clamp(0, u64::MAX as i128) as u64
}

/// The delay nginx gives a request that left `excess` under a limit with threshold `delay`.
pub(crate) fn delay_ms(excess: u64, delay: u64, rate: u64) -> u64 {
    if excess <= delay {
        0
    } else {
        ((excess - delay) as u128 * 1000 / rate.max(1) as u128) as u64
    }
}

/// What a lookup found (nginx's `ngx_http_limit_req_lookup` results).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Looked {
    /// Over the burst (`NGX_BUSY`), with the excess it would have had.
    Busy(u64),
    /// No room for a new state (`NGX_ERROR`).
    NoRoom,
    /// The last limit: accounted, with its excess (`NGX_OK`).
    Passed(u64),
    /// Not the last limit: held until the others are looked up (`NGX_AGAIN`).
    Held(Held),
}

/// A state held by a request between its lookup and its accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Held {
    shard: u16,
    index: u32,
}

/// Outcomes a zone counts, for the status page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Passed = 0,
    Delayed = 1,
    Rejected = 2,
}

struct State {
    /// Time of the last accounted request (ms).
    last: u64,
    /// Thousandths of a request.
    excess: u64,
    /// Requests holding it.
    count: u32,
    /// Neighbours in the recency list (towards the most / the least recent).
    newer: u32,
    older: u32,
}

struct Shard {
    states: Table<State>,
    newest: u32,
    oldest: u32,
}

/// A shard with its counters, on cache lines of its own.
#[repr(align(128))]
struct Slot {
    shard: Mutex<Shard>,
    /// Passed, delayed, rejected; and lock waits.
    counts: [AtomicU64; 4],
}

pub(crate) struct ReqZone {
    slots: Box<[Slot]>,
    pub(crate) seed: RandomState,
    pub(crate) capacity: usize,
}

impl ReqZone {
    /// A zone of `capacity` states (spread over the shards; each gets at least one).
    pub(crate) fn new(capacity: usize) -> ReqZone {
        ReqZone::with_shards(capacity, SHARDS)
    }

    /// As `new`, with `shards` (a power of two) shards: 1 is the single-lock zone the
    /// contention benchmark compares against.
    pub(crate) fn with_shards(capacity: usize, shards: usize) -> ReqZone {
        let cap = capacity.div_ceil(shards).max(1);
        let slots =
            (0..shards).map(|_| Slot { shard: Mutex::new(Shard { states: Table::new(cap), newest: NIL, oldest: NIL }), counts: Default::default() }).collect();
        ReqZone { slots, seed: RandomState::new(), capacity: cap * shards }
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, Shard> {
        let slot = &self.slots[shard];
        lock_counting(&slot.shard, &slot.counts[3])
    }

    /// nginx's lookup of `key` at `now` (ms). `account`: this is the request's last limit, so
    /// its state is updated now; otherwise it is held for `account`/`unhold`.
    pub(crate) fn lookup(&self, key: &Key, rate: u64, burst: u64, now: u64, account: bool) -> Looked {
        let shard = key.shard(self.slots.len());
        let mut s = self.lock(shard);
        if let Some(i) = s.states.find(key) {
            s.touch(i);
            let st = s.states.get_mut(i);
            let ms = now.wrapping_sub(st.last) as i64;
            let excess = leak(st.excess, rate, ms);
            if excess > burst {
                return Looked::Busy(excess);
            }
            if account {
                st.excess = excess;
                if ms != 0 {
                    st.last = now;
                }
                return Looked::Passed(excess);
            }
            st.count += 1;
            return Looked::Held(Held { shard: shard as u16, index: i });
        }
        s.expire(now, rate, 1);
        if s.states.is_full() {
            s.expire(now, rate, 0);
        }
        let (last, count) = if account { (now, 0) } else { (0, 1) };
        let Some(i) = s.states.insert(*key, State { last, excess: 0, count, newer: NIL, older: NIL }) else { return Looked::NoRoom };
        s.link_newest(i);
        if account {
            Looked::Passed(0)
        } else {
            Looked::Held(Held { shard: shard as u16, index: i })
        }
    }

    /// nginx's accounting of a held state once the request passed every limit: its excess
    /// brought to `now` with this request, stored; returns it.
    pub(crate) fn account(&self, h: Held, rate: u64, now: u64) -> u64 {
        let mut s = self.lock(h.shard as usize);
        let st = s.states.get_mut(h.index);
        let ms = now.wrapping_sub(st.last) as i64;
        let excess = leak(st.excess, rate, ms);
        if ms != 0 {
            st.last = now;
        }
        st.excess = excess;
        st.count = st.count.saturating_sub(1);
        excess
    }

    /// Lets go of a held state (the request was refused by a later limit).
    pub(crate) fn unhold(&self, h: Held) {
        let mut s = self.lock(h.shard as usize);
        let st = s.states.get_mut(h.index);
        st.count = st.count.saturating_sub(1);
    }

    /// Counts a request's outcome in the shard of `key`.
    pub(crate) fn count(&self, key: &Key, o: Outcome) {
        self.slots[key.shard(self.slots.len())].counts[o as usize].fetch_add(1, Relaxed);
    }

    /// Passed, delayed and rejected requests, lock waits, and the states in use.
    pub(crate) fn totals(&self) -> ([u64; 4], usize) {
        let mut t = [0u64; 4];
        let mut used = 0;
        for slot in self.slots.iter() {
            for (t, c) in t.iter_mut().zip(&slot.counts) {
                *t += c.load(Relaxed);
            }
            used += slot.shard.lock().map_or(0, |s| s.states.len());
        }
        (t, used)
    }
}

impl Shard {
    fn unlink(&mut self, i: u32) {
        let st = self.states.get(i);
        let (newer, older) = (st.newer, st.older);
        match newer {
            NIL => self.newest = older,
            n => self.states.get_mut(n).older = older,
        }
        match older {
            NIL => self.oldest = newer,
            o => self.states.get_mut(o).newer = newer,
        }
    }

    fn link_newest(&mut self, i: u32) {
        let newest = self.newest;
        let st = self.states.get_mut(i);
        st.newer = NIL;
        st.older = newest;
        match newest {
            NIL => self.oldest = i,
            n => self.states.get_mut(n).newer = i,
        }
        self.newest = i;
    }

    /// Moves state `i` to the most recent end.
    fn touch(&mut self, i: u32) {
        if self.newest != i {
            self.unlink(i);
            self.link_newest(i);
        }
    }

    /// nginx's `ngx_http_limit_req_expire`: `n == 1` drops up to two of the least recent
    /// states idle for a minute with nothing left to leak; `n == 0` first drops the least
    /// recent one whatever it holds. A state held by a request stops it.
    fn expire(&mut self, now: u64, rate: u64, mut n: u32) {
        while n < 3 {
            let i = self.oldest;
            if i == NIL {
                return;
            }
            let st = self.states.get(i);
            if st.count > 0 {
                return;
            }
            if n != 0 {
                let ms = (now as i64).wrapping_sub(st.last as i64).unsigned_abs();
                if ms < 60_000 {
                    return;
                }
                if st.excess as i128 - rate as i128 * ms as i128 / 1000 > 0 {
                    return;
                }
            }
            n += 1;
            self.unlink(i);
            self.states.remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1 << 31;

    fn key(zone: &ReqZone, n: u32) -> Key {
        Key::new(&n.to_be_bytes(), &zone.seed).expect("key")
    }

    /// nginx's arithmetic for a scripted sequence of (ms, request) at 2 r/s (rate 2000),
    /// burst 3: a new key starts at excess 0; each request adds 1000 and 2 thousandths leak
    /// per ms; a refused request changes nothing; a drained key is at 0 again.
    #[test]
    fn a_scripted_sequence_as_nginx_computes_it() {
        let z = ReqZone::new(256);
        let k = key(&z, 1);
        let script = [
            (0, Looked::Passed(0)),
            (0, Looked::Passed(1000)),
            (100, Looked::Passed(1800)), // 1000 - 200 + 1000
            (100, Looked::Passed(2800)), // the same ms: nothing leaks
            (150, Looked::Busy(3700)),   // 2800 - 100 + 1000 > 3000: refused, not stored
            (150, Looked::Busy(3700)),
            (600, Looked::Passed(2800)), // 2800 - 1000 + 1000, from the last accounted (100)
            (600, Looked::Busy(3800)),
            (10_600, Looked::Passed(0)), // 2800 - 20000 + 1000 < 0: 0
        ];
        for (i, (at, want)) in script.into_iter().enumerate() {
            assert_eq!(z.lookup(&k, 2000, 3000, T0 + at, true), want, "step {} at {} ms", i, at);
        }
    }

    /// A state and its key within nginx's 128 bytes, index slots included (README).
    #[test]
    fn a_state_is_smaller_than_nginx_counts_it() {
        let entry = std::mem::size_of::<(Key, State)>();
        println!("limit_req state: {} bytes + 4 (free list) + 8..16 (index)", entry);
        assert!(entry + 4 + 16 <= 128, "{} bytes", entry);
    }

    #[test]
    fn nginx_example_rate_10_burst_5() {
        // rate=10r/s burst=5: twelve requests in the same millisecond, six pass.
        let z = ReqZone::new(256);
        let k = key(&z, 7);
        let passed = (0..12).filter(|_| matches!(z.lookup(&k, 10_000, 5000, T0, true), Looked::Passed(_))).count();
        assert_eq!(passed, 6);
        // Without nodelay they are delayed by excess / rate: the sixth by 500 ms.
        assert_eq!(delay_ms(5000, 0, 10_000), 500);
        assert_eq!(delay_ms(5000, 2000, 10_000), 300, "delay=2: the first two excess requests go at once");
        assert_eq!(delay_ms(5000, u64::MAX, 10_000), 0, "nodelay");
        // 1r/m is 16 thousandths per second: one excess request waits 62.5 s.
        assert_eq!(delay_ms(1000, 0, 1000 / 60), 62_500);
    }

    #[test]
    fn clock_going_back() {
        assert_eq!(leak(500, 1000, -10), 1500, "a little back counts as 0 ms");
        assert_eq!(leak(500, 1000, -120_000), 1499, "far back counts as 1 ms");
        assert_eq!(leak(500, 1000, 10_000), 0, "drained: the request itself is absorbed too");
    }

    #[test]
    fn a_full_zone_evicts_the_least_recent_key() {
        let z = ReqZone::new(16); // one state per shard
        let now = T0;
        // Fill: every new key passes (the previous one of its shard is dropped).
        for n in 0..200 {
            assert_eq!(z.lookup(&key(&z, n), 1000, 0, now, true), Looked::Passed(0), "key {}", n);
        }
        let (_, used) = z.totals();
        assert!(used <= z.capacity, "{} states in a zone of {}", used, z.capacity);
        // The newest key is still limited; an old one was forgotten and passes again.
        assert!(matches!(z.lookup(&key(&z, 199), 1000, 0, now, true), Looked::Busy(_)));
        assert_eq!(z.lookup(&key(&z, 0), 1000, 0, now, true), Looked::Passed(0));
    }

    #[test]
    fn held_states_are_not_evicted_and_a_full_shard_refuses() {
        let z = ReqZone::new(16);
        let a = key(&z, 1);
        let shard = a.shard(SHARDS);
        let Looked::Held(h) = z.lookup(&a, 1000, 0, T0, false) else { panic!("held") };
        // Another key of the same shard finds no room while `a` is held.
        let b = (2..10_000).map(|n| key(&z, n)).find(|k| k.shard(SHARDS) == shard).expect("a key of the same shard");
        assert_eq!(z.lookup(&b, 1000, 0, T0, true), Looked::NoRoom);
        // Accounted (a new held state starts at last = 0: its excess leaks away, as nginx).
        assert_eq!(z.account(h, 1000, T0), 0);
        assert_eq!(z.lookup(&b, 1000, 0, T0, true), Looked::Passed(0));
    }

    #[test]
    fn idle_drained_states_expire_first() {
        let z = ReqZone::new(32); // two per shard
        let a = key(&z, 1);
        let shard = a.shard(SHARDS);
        let same: Vec<Key> = (2..100_000).map(|n| key(&z, n)).filter(|k| k.shard(SHARDS) == shard).take(2).collect();
        let rate = 1000 / 60; // 1r/m
        z.lookup(&a, rate, 1000, T0, true);
        z.lookup(&same[0], rate, 1000, T0 + 59_000, true);
        z.lookup(&same[0], rate, 1000, T0 + 59_000, true);
        // A minute later `a` is idle and drained: the new key's expire(1) drops it, and stops
        // at `same[0]`, which is recent.
        assert_eq!(z.lookup(&same[1], rate, 1000, T0 + 61_000, true), Looked::Passed(0));
        assert_eq!(z.totals().1, 2);
        // 1000 - 16 * 2000 / 1000 + 1000: `same[0]` kept its state.
        assert_eq!(z.lookup(&same[0], rate, 1000, T0 + 61_000, true), Looked::Busy(1968));
    }
}
