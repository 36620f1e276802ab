//! Deadlines for sessions: one min-heap per worker holding at most about one entry per
//! session. A session that moves its deadline later does not push again; when its old entry
//! comes due, the worker sees the real deadline is later and re-queues it ("lazy" timers),
//! so resetting a timeout on every read costs nothing. Each deadline carries the wait `W` it
//! stands for, so an expiry says why it fired instead of the session working it out again.
//! A closed session's entry stays until it comes due; `purge` drops such entries once they
//! outnumber the live ones, so the heap follows concurrency, not connection rate × timeout.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
}

/// A session's view of its timer: when it wants to be woken and for what.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TimerSlot<W: Copy> {
    pub(crate) deadline: Option<(Instant, W)>,
    /// The earliest entry it has in the heap.
    queued: Option<Instant>,
}

impl<W: Copy> TimerSlot<W> {
    /// Whether the heap entry queued at `at` is this slot's (not a stale one).
    pub(crate) fn waits_on(&self, at: Instant) -> bool {
        self.queued == Some(at)
    }
}

impl<W: Copy> Default for TimerSlot<W> {
    fn default() -> Self {
        TimerSlot { deadline: None, queued: None }
    }
}

impl Timers {
    /// Makes sure `slot.deadline` will fire for `key`.
    pub(crate) fn arm<W: Copy>(&mut self, key: usize, slot: &mut TimerSlot<W>) {
        if let Some((d, _)) = slot.deadline {
            if slot.queued.is_none_or(|q| d < q) {
                self.heap.push(Reverse((d, key)));
                slot.queued = Some(d);
            }
        }
    }

    /// Time until the next entry is due.
    pub(crate) fn next_due(&self, now: Instant) -> Option<std::time::Duration> {
        self.heap.peek().map(|Reverse((t, _))| t.saturating_duration_since(now))
    }

    /// Pops the next entry due at `now`: `(queued_time, key)`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, usize)> {
        match self.heap.peek() {
            Some(Reverse((t, _))) if *t <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// When entries outnumber twice the `sessions` (plus some slack), drops those `live`
    /// does not claim and hands back the memory; returns how many went. Without it a storm of
    /// short connections (`Connection: close`) left one entry each until its timeout passed:
    /// a heap of connection rate × timeout entries, whose memory stayed after the storm.
    pub(crate) fn purge(&mut self, sessions: usize, live: impl Fn(usize, Instant) -> bool) -> usize {
        let before = self.heap.len();
        if before <= 2 * sessions + PURGE_SLACK {
            return 0;
        }
        self.heap.retain(|Reverse((at, key))| live(*key, *at));
        self.heap.shrink_to(2 * self.heap.len() + PURGE_SLACK);
        before - self.heap.len()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.heap.len()
    }
}

/// Entries beyond twice the sessions that are left alone (a purge is O(entries)).
const PURGE_SLACK: usize = 1024;

/// What a popped entry means for the session that owns `slot`.
pub(crate) enum Due<W> {
    /// The deadline for this wait passed: handle its expiry.
    Fire(W),
    /// A stale entry: nothing to do.
    Ignore,
}

/// Reconciles a popped entry with the session's slot, re-queueing a later deadline.
pub(crate) fn settle<W: Copy>(timers: &mut Timers, key: usize, queued_at: Instant, slot: &mut TimerSlot<W>, now: Instant) -> Due<W> {
    if slot.queued != Some(queued_at) {
        return Due::Ignore;
    }
    slot.queued = None;
    match slot.deadline {
        Some((d, wait)) if d <= now => {
            slot.deadline = None;
            Due::Fire(wait)
        }
        Some(_) => {
            timers.arm(key, slot);
            Due::Ignore
        }
        None => Due::Ignore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn lazy_rearm() {
        let mut t = Timers::default();
        let now = Instant::now();
        let mut slot = TimerSlot { deadline: Some((now + Duration::from_millis(10), 'a')), queued: None };
        t.arm(1, &mut slot);
        slot.deadline = Some((now + Duration::from_millis(50), 'b'));
        t.arm(1, &mut slot);
        assert_eq!(t.len(), 1, "a later deadline does not push");
        let (q, k) = t.pop_due(now + Duration::from_millis(20)).expect("due");
        assert!(matches!(settle(&mut t, k, q, &mut slot, now + Duration::from_millis(20)), Due::Ignore));
        assert_eq!(t.len(), 1, "re-queued at the real deadline");
        let (q, k) = t.pop_due(now + Duration::from_millis(60)).expect("due");
        assert!(matches!(settle(&mut t, k, q, &mut slot, now + Duration::from_millis(60)), Due::Fire('b')), "the wait of the real deadline");
    }

    #[test]
    fn purge_drops_entries_of_closed_sessions() {
        let mut t = Timers::default();
        let now = Instant::now();
        let mut slots: Vec<TimerSlot<()>> = Vec::new();
        for key in 0..3000 {
            let mut slot = TimerSlot { deadline: Some((now + Duration::from_secs(60) + Duration::from_nanos(key as u64), ())), queued: None };
            t.arm(key, &mut slot);
            slots.push(slot);
        }
        // Below the slack for 3,000 sessions: nothing to do.
        assert_eq!(t.purge(3000, |_, _| true), 0);
        // All but ten closed (their slots gone): the ten stay, the rest go.
        let live = |key: usize, at: Instant| key < 10 && slots[key].waits_on(at);
        assert_eq!(t.purge(10, live), 2990);
        assert_eq!(t.len(), 10);
        assert!(t.heap.capacity() <= 2 * 10 + PURGE_SLACK, "memory handed back: {}", t.heap.capacity());
        // What is left still fires.
        let (q, k) = t.pop_due(now + Duration::from_secs(61)).expect("due");
        assert!(matches!(settle(&mut t, k, q, &mut slots[k], now + Duration::from_secs(61)), Due::Fire(())));
    }
}
