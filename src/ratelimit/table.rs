//! A table of at most `cap` entries by key, allocated in full when it is made and never
//! after: entries in a slab with a free list, found through an open-addressing index of
//! entry numbers (linear probing over at least twice as many slots as entries, deletion by
//! backward shift, so no tombstones build up and nothing is ever rehashed or grown). A zone's
//! memory is what its size says, whatever its clients do.

use super::key::Key;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, TryLockError};

const NIL: u32 = u32::MAX;

/// Locks a shard, counting in `waits` the times another thread held it (the zone's contention,
/// on the status page). The uncontended path is the lock's own compare-and-swap. A panic under
/// the lock cannot leave a state changed in a way that matters more than losing the limit: a
/// poisoned shard is used as it is.
pub(crate) fn lock_counting<'a, T>(m: &'a Mutex<T>, waits: &AtomicU64) -> MutexGuard<'a, T> {
    match m.try_lock() {
        Ok(g) => g,
        Err(TryLockError::WouldBlock) => {
            waits.fetch_add(1, Relaxed);
            m.lock().unwrap_or_else(|p| p.into_inner())
        }
        Err(TryLockError::Poisoned(p)) => p.into_inner(),
    }
}

pub(crate) struct Table<V> {
    entries: Vec<(Key, V)>,
    free: Vec<u32>,
    slots: Box<[u32]>,
    mask: usize,
    cap: usize,
    len: usize,
}

impl<V> Table<V> {
    pub(crate) fn new(cap: usize) -> Table<V> {
        let cap = cap.clamp(1, NIL as usize / 2);
        let n = (cap * 2).next_power_of_two();
        Table { entries: Vec::with_capacity(cap), free: Vec::with_capacity(cap), slots: vec![NIL; n].into_boxed_slice(), mask: n - 1, cap, len: 0 }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len >= self.cap
    }

    fn home(&self, key: &Key) -> usize {
        key.hash() as usize & self.mask
    }

    /// The slot holding `key`'s entry number, or the empty slot where it would go.
    fn probe(&self, key: &Key) -> (usize, Option<u32>) {
        let mut i = self.home(key);
        loop {
            match self.slots[i] {
                NIL => return (i, None),
                e if self.entries[e as usize].0 == *key => return (i, Some(e)),
                _ => i = (i + 1) & self.mask,
            }
        }
    }

    pub(crate) fn find(&self, key: &Key) -> Option<u32> {
        self.probe(key).1
    }

    /// Adds `key` (not in the table); None when the table is full.
    pub(crate) fn insert(&mut self, key: Key, v: V) -> Option<u32> {
        if self.is_full() {
            return None;
        }
        let (slot, found) = self.probe(&key);
        debug_assert!(found.is_none(), "inserted twice");
        let e = match self.free.pop() {
            Some(e) => {
                self.entries[e as usize] = (key, v);
                e
            }
            None => {
                self.entries.push((key, v));
                (self.entries.len() - 1) as u32
            }
        };
        self.slots[slot] = e;
        self.len += 1;
        Some(e)
    }

    /// Removes entry `e` (its slot closed up by moving later entries of the run back).
    pub(crate) fn remove(&mut self, e: u32) {
        let mut hole = self.home(&self.entries[e as usize].0);
        while self.slots[hole] != e {
            hole = (hole + 1) & self.mask;
        }
        let mut j = hole;
        loop {
            j = (j + 1) & self.mask;
            let s = self.slots[j];
            if s == NIL {
                break;
            }
            let home = self.home(&self.entries[s as usize].0);
            // `s` may fill the hole unless its home lies cyclically in (hole, j].
            let stays = if hole <= j { hole < home && home <= j } else { hole < home || home <= j };
            if !stays {
                self.slots[hole] = s;
                hole = j;
            }
        }
        self.slots[hole] = NIL;
        self.free.push(e);
        self.len -= 1;
    }

    pub(crate) fn get(&self, e: u32) -> &V {
        &self.entries[e as usize].1
    }

    pub(crate) fn get_mut(&mut self, e: u32) -> &mut V {
        &mut self.entries[e as usize].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::RandomState;
    use std::collections::HashMap;

    #[test]
    fn behaves_as_a_map_under_churn_and_never_grows() {
        let seed = RandomState::new();
        let mut t: Table<u64> = Table::new(100);
        let slots = t.slots.len();
        let mut model: HashMap<u32, u32> = HashMap::new();
        let mut x: u64 = 12345;
        for step in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = (x % 300) as u32;
            let k = Key::new(&n.to_be_bytes(), &seed).expect("key");
            match (t.find(&k), model.get(&n)) {
                (Some(e), Some(&me)) => {
                    assert_eq!(e, me);
                    assert_eq!(*t.get(e), u64::from(n));
                    if step % 2 == 0 {
                        t.remove(e);
                        model.remove(&n);
                    }
                }
                (None, None) => {
                    if let Some(e) = t.insert(k, u64::from(n)) {
                        model.insert(n, e);
                    } else {
                        assert_eq!(model.len(), 100, "refused only when full");
                    }
                }
                (a, b) => panic!("step {}: table {:?}, model {:?}", step, a, b),
            }
            assert_eq!(t.len(), model.len());
        }
        assert_eq!(t.slots.len(), slots);
        assert!(t.entries.capacity() <= 100 && t.free.capacity() <= 100);
    }
}
