//! A `limit_conn_zone`: per key, the requests in progress (nginx's limit_conn counts a request
//! from the moment it passes until it ends, so a keep-alive connection counts only while one of
//! its requests runs). A state lives while its count is above 0; the count is given back by
//! dropping the `ConnHold` the request keeps. A full zone refuses new keys (nginx: "could not
//! allocate node"); nothing is evicted, since every state belongs to a request in progress.

use super::bucket::SHARDS;
use super::key::Key;
use super::table::{lock_counting, Table};
use std::collections::hash_map::RandomState;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

#[repr(align(128))]
struct Slot {
    shard: Mutex<Table<u32>>,
    /// Passed and rejected requests; lock waits.
    counts: [AtomicU64; 3],
}

pub(crate) struct ConnZone {
    slots: Box<[Slot]>,
    pub(crate) seed: RandomState,
    pub(crate) capacity: usize,
}

/// Why a request was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Its key has `limit` requests in progress.
    Limit,
    /// The zone has no room for another key.
    NoRoom,
}

/// One request counted under a key; the count goes back when it is dropped.
pub(crate) struct ConnHold {
    zone: Arc<ConnZone>,
    key: Key,
}

impl ConnZone {
    pub(crate) fn new(capacity: usize) -> ConnZone {
        let cap = capacity.div_ceil(SHARDS).max(1);
        let slots = (0..SHARDS).map(|_| Slot { shard: Mutex::new(Table::new(cap)), counts: Default::default() }).collect();
        ConnZone { slots, seed: RandomState::new(), capacity: cap * SHARDS }
    }

    fn lock(&self, key: &Key) -> MutexGuard<'_, Table<u32>> {
        let slot = &self.slots[key.shard(SHARDS)];
        lock_counting(&slot.shard, &slot.counts[2])
    }

    /// Counts a request under `key` unless `limit` are in progress already.
    pub(crate) fn enter(self: &Arc<Self>, key: Key, limit: u32) -> Result<ConnHold, Refused> {
        let mut m = self.lock(&key);
        let r = match m.find(&key) {
            Some(e) if *m.get(e) >= limit => Err(Refused::Limit),
            Some(e) => {
                *m.get_mut(e) += 1;
                Ok(())
            }
            None => m.insert(key, 1).map(|_| ()).ok_or(Refused::NoRoom),
        };
        drop(m);
        let counts = &self.slots[key.shard(SHARDS)].counts;
        match r {
            Ok(()) => {
                counts[0].fetch_add(1, Relaxed);
                Ok(ConnHold { zone: Arc::clone(self), key })
            }
            Err(e) => {
                counts[1].fetch_add(1, Relaxed);
                Err(e)
            }
        }
    }

    /// Passed and rejected requests, lock waits, and the keys with requests in progress.
    pub(crate) fn totals(&self) -> ([u64; 3], usize) {
        let mut t = [0u64; 3];
        let mut used = 0;
        for slot in self.slots.iter() {
            for (t, c) in t.iter_mut().zip(&slot.counts) {
                *t += c.load(Relaxed);
            }
            used += slot.shard.lock().map_or(0, |m| m.len());
        }
        (t, used)
    }
}

impl Drop for ConnHold {
    fn drop(&mut self) {
        let mut m = self.zone.lock(&self.key);
        if let Some(e) = m.find(&self.key) {
            let n = m.get_mut(e);
            *n -= 1;
            if *n == 0 {
                m.remove(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_requests_in_progress_per_key() {
        let z = Arc::new(ConnZone::new(512));
        let k = |n: u8| Key::new(&[10, 0, 0, n], &z.seed).expect("key");
        let a1 = z.enter(k(1), 2).expect("first");
        let a2 = z.enter(k(1), 2).expect("second");
        assert_eq!(z.enter(k(1), 2).err(), Some(Refused::Limit), "the third while two are in progress");
        let b = z.enter(k(2), 2).expect("another key");
        drop(a1);
        let a3 = z.enter(k(1), 2).expect("room again once one ended");
        drop((a2, a3, b));
        assert_eq!(z.totals(), ([4, 1, 0], 0), "states go with their last request");
    }

    #[test]
    fn a_full_zone_refuses_new_keys() {
        let z = Arc::new(ConnZone::new(16)); // one key per shard
        let holds: Vec<ConnHold> = (0..=255u8).filter_map(|n| z.enter(Key::new(&[n], &z.seed).expect("key"), 1).ok()).collect();
        assert_eq!(holds.len(), 16);
        let (counts, used) = z.totals();
        assert_eq!((counts, used), ([16, 240, 0], 16));
        drop(holds);
        assert!(z.enter(Key::new(&[0], &z.seed).expect("key"), 1).is_ok());
    }
}
