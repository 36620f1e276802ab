//! The servers a proxied request was sent to, one entry per try, for the access log's
//! `$upstream_addr`, `$upstream_status` and `$upstream_response_time` (nginx lists every try
//! the same way). Fixed arrays: no allocation per request.

use std::time::Duration;

/// Tries kept; beyond that the last slot is reused, so the try that answered is always there.
const MAX: usize = 8;
/// No time recorded for the try (yet).
const NO_TIME: u32 = u32::MAX;

#[derive(Clone, Copy)]
pub(crate) struct Tries {
    peer: [u16; MAX],
    /// The try's status: the response's, or 502/504 for a failure; 0 = none.
    status: [u16; MAX],
    /// Milliseconds from the try's connect to its end.
    ms: [u32; MAX],
    len: u8,
}

impl Default for Tries {
    fn default() -> Tries {
        Tries { peer: [0; MAX], status: [0; MAX], ms: [NO_TIME; MAX], len: 0 }
    }
}

/// One try, as the log shows it.
pub(crate) struct Try {
    pub(crate) peer: usize,
    pub(crate) status: Option<u16>,
    pub(crate) time: Option<Duration>,
}

impl Tries {
    /// A new try to server `peer` begins.
    pub(crate) fn start(&mut self, peer: usize) {
        let i = (self.len as usize).min(MAX - 1);
        self.peer[i] = peer as u16;
        self.status[i] = 0;
        self.ms[i] = NO_TIME;
        self.len = (i + 1) as u8;
    }

    fn last(&self) -> Option<usize> {
        (self.len as usize).checked_sub(1)
    }

    /// The current try's status (the response head's, or what its failure counts as).
    pub(crate) fn set_status(&mut self, status: u16) {
        if let Some(i) = self.last() {
            self.status[i] = status;
        }
    }

    /// The current try is over after `took` (only its first end counts).
    pub(crate) fn end(&mut self, took: Duration) {
        if let Some(i) = self.last().filter(|&i| self.ms[i] == NO_TIME) {
            let ms = took.as_secs().saturating_mul(1000).saturating_add(took.subsec_millis() as u64);
            self.ms[i] = ms.min(NO_TIME as u64 - 1) as u32;
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = Try> + '_ {
        (0..self.len as usize).map(|i| Try {
            peer: self.peer[i] as usize,
            status: (self.status[i] != 0).then_some(self.status[i]),
            time: (self.ms[i] != NO_TIME).then(|| Duration::from_millis(self.ms[i] as u64)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_try_and_the_last_when_there_are_many() {
        let mut t = Tries::default();
        assert!(t.is_empty());
        t.start(3);
        t.set_status(502);
        t.end(Duration::from_millis(4));
        t.start(1);
        t.set_status(200);
        t.end(Duration::from_millis(7));
        t.end(Duration::from_millis(9));
        let v: Vec<_> = t.iter().map(|t| (t.peer, t.status, t.time.map(|d| d.as_millis()))).collect();
        assert_eq!(v, vec![(3, Some(502), Some(4)), (1, Some(200), Some(7))]);
        for p in 0..20 {
            t.start(p);
        }
        let peers: Vec<_> = t.iter().map(|t| t.peer).collect();
        assert_eq!(peers, vec![3, 1, 0, 1, 2, 3, 4, 19]);
        assert_eq!(t.iter().last().map(|t| (t.status, t.time)), Some((None, None)));
    }
}
