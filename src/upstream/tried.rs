//! The servers one request has tried, so a retry goes elsewhere. It lives inline in the
//! exchange (and so in every session slot): a bit set for upstreams of up to 128 servers, a
//! short list for larger ones, and only a request that has tried more servers of a large
//! upstream than the list holds pays for a heap bit set.

/// Upstreams up to this size keep their tried set as one 128-bit mask.
pub(crate) const SMALL: usize = 128;

/// Tries a large upstream's request records without allocating.
const FEW: usize = 7;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tried {
    /// An upstream of at most `SMALL` servers: bit i = server i.
    Bits([u64; 2]),
    /// A larger upstream, fewer than `FEW` servers tried so far.
    Few { ids: [u16; FEW], len: u8 },
    /// A larger upstream after many tries: one bit per server.
    Many(Box<[u64]>),
}

impl Tried {
    /// Nothing tried yet, for an upstream of `servers` servers.
    pub(crate) fn new(servers: usize) -> Tried {
        if servers <= SMALL {
            Tried::Bits([0; 2])
        } else {
            Tried::Few { ids: [0; FEW], len: 0 }
        }
    }

    pub(crate) fn contains(&self, peer: usize) -> bool {
        match self {
            Tried::Bits(b) => peer < SMALL && b[peer / 64] & (1 << (peer % 64)) != 0,
            Tried::Few { ids, len } => ids[..*len as usize].iter().any(|&i| i as usize == peer),
            Tried::Many(b) => b.get(peer / 64).is_some_and(|w| w & (1 << (peer % 64)) != 0),
        }
    }

    /// Records `peer` (one of `servers`).
    pub(crate) fn insert(&mut self, peer: usize, servers: usize) {
        match self {
            Tried::Bits(b) => {
                if peer < SMALL {
                    b[peer / 64] |= 1 << (peer % 64);
                }
            }
            Tried::Few { ids, len } => {
                if ids[..*len as usize].iter().any(|&i| i as usize == peer) {
                    return;
                }
                if (*len as usize) < FEW {
                    ids[*len as usize] = peer as u16;
                    *len += 1;
                    return;
                }
                let mut bits = vec![0u64; servers.max(peer + 1).div_ceil(64)].into_boxed_slice();
                for &i in ids.iter().chain(std::iter::once(&(peer as u16))) {
                    bits[i as usize / 64] |= 1 << (i % 64);
                }
                *self = Tried::Many(bits);
            }
            Tried::Many(b) => {
                if let Some(w) = b.get_mut(peer / 64) {
                    *w |= 1 << (peer % 64);
                }
            }
        }
    }

    /// The servers among the first 128 as one mask (the smooth round-robin's candidates).
    pub(crate) fn mask(&self) -> u128 {
        match self {
            Tried::Bits(b) => (b[1] as u128) << 64 | b[0] as u128,
            _ => (0..SMALL).filter(|&p| self.contains(p)).fold(0, |m, p| m | 1 << p),
        }
    }

    /// How many distinct servers were tried.
    pub(crate) fn count(&self) -> usize {
        match self {
            Tried::Bits(b) => (b[0].count_ones() + b[1].count_ones()) as usize,
            Tried::Few { len, .. } => *len as usize,
            Tried::Many(b) => b.iter().map(|w| w.count_ones() as usize).sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_upstreams_use_the_mask() {
        let mut t = Tried::new(128);
        assert!(matches!(t, Tried::Bits(_)));
        for p in [0, 63, 64, 127] {
            assert!(!t.contains(p));
            t.insert(p, 128);
            assert!(t.contains(p));
        }
        assert_eq!(t.count(), 4);
        assert!(!t.contains(1) && !t.contains(126));
        assert_eq!(t.mask(), 1 | 1 << 63 | 1 << 64 | 1 << 127);
    }

    #[test]
    fn large_upstreams_spill_to_a_bit_set_after_a_few_tries() {
        let mut t = Tried::new(1024);
        for (n, p) in [5usize, 1023, 700, 5, 128, 0, 1, 2].into_iter().enumerate() {
            t.insert(p, 1024);
            assert!(t.contains(p));
            assert!(matches!(t, Tried::Few { .. }), "after {} inserts", n + 1);
        }
        assert_eq!(t.count(), 7, "a repeat is not counted twice");
        t.insert(999, 1024);
        assert!(matches!(t, Tried::Many(_)));
        for p in [5, 1023, 700, 128, 0, 1, 2, 999] {
            assert!(t.contains(p), "{p}");
        }
        assert!(!t.contains(3) && !t.contains(1022) && !t.contains(5000));
        assert_eq!(t.count(), 8);
        for p in 0..1024 {
            t.insert(p, 1024);
        }
        assert_eq!(t.count(), 1024);
    }

    #[test]
    fn it_stays_small_inline() {
        assert!(std::mem::size_of::<Tried>() <= 24, "{}", std::mem::size_of::<Tried>());
    }
}
