//! The per-worker pool of fixed-size buffers.
//!
//! Every byte pounce moves sits in one of these: the client side, the HTTP adapter and the
//! AJP adapter all check buffers out of the same pool; a buffer goes back when its holder
//! drops it (RAII), so an idle keep-alive connection holds no buffer at all and no error path
//! can leak one.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// Size of every pooled buffer. Large enough for a request or response head (8 KiB default
/// limit plus rewriting room) and for a full default-size AJP packet.
pub const BUF_SIZE: usize = 16 * 1024;

/// A buffer: bytes `start..end` are filled and not yet consumed. One checked out of a pool
/// goes back to it when dropped, so no path can forget to return it.
pub struct Buf {
    data: Box<[u8]>,
    start: usize,
    end: usize,
    /// The pool it came from (none for a standalone buffer).
    home: Option<Rc<PoolInner>>,
}

impl Buf {
    /// A buffer outside any pool (tests and one-off uses).
    pub fn standalone(size: usize) -> Buf {
        Buf { data: vec![0; size].into_boxed_slice(), start: 0, end: 0, home: None }
    }

    pub fn data(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub fn capacity(&self) -> usize {
        self.data.len()
    }

    /// Bytes that could still be appended (after compaction).
    pub fn room(&self) -> usize {
        self.data.len() - self.len()
    }

    pub fn is_full(&self) -> bool {
        self.room() == 0
    }

    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Drops filled bytes past `len` (undoes a partly written message).
    pub fn truncate(&mut self, len: usize) {
        if len < self.len() {
            self.end = self.start + len;
        }
    }

    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// The free tail to read into; moves pending bytes to the front first when that frees room.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 && self.end == self.data.len() {
            self.compact();
        }
        &mut self.data[self.end..]
    }

    pub fn commit(&mut self, n: usize) {
        debug_assert!(self.end + n <= self.data.len());
        self.end += n;
    }

    pub fn compact(&mut self) {
        if self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// Appends as much of `bytes` as fits; returns how much was taken.
    pub fn put(&mut self, bytes: &[u8]) -> usize {
        if self.data.len() - self.end < bytes.len() {
            self.compact();
        }
        let n = bytes.len().min(self.data.len() - self.end);
        self.data[self.end..self.end + n].copy_from_slice(&bytes[..n]);
        self.end += n;
        n
    }

    /// Appends all of `bytes` or nothing. Inlined: heads are built from many short pieces,
    /// and a piece of known length becomes a plain store.
    #[inline(always)]
    pub fn put_all(&mut self, bytes: &[u8]) -> bool {
        let end = self.end + bytes.len();
        if end <= self.data.len() {
            self.data[self.end..end].copy_from_slice(bytes);
            self.end = end;
            return true;
        }
        if self.room() < bytes.len() {
            return false;
        }
        self.put(bytes);
        true
    }

    /// Mutable access to the filled bytes (for in-place patching of a built message).
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.start..self.end]
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        if let Some(home) = self.home.take() {
            home.give_back(std::mem::take(&mut self.data));
        }
    }
}

/// Numbers and addresses written as text without the formatting machinery (which costs
/// about a microsecond an address on the hot path): for `Buf` and `StackText`.
pub trait PutText {
    /// Appends all of `bytes` or nothing.
    fn put_bytes(&mut self, bytes: &[u8]) -> bool;

    /// Appends `n` in decimal, all or nothing.
    fn put_num(&mut self, n: u64) -> bool {
        let mut digits = [0u8; 20];
        let at = decimal(n, &mut digits);
        self.put_bytes(&digits[at..])
    }

    /// Appends an IP address as text (`Display`'s form), all or nothing.
    fn put_ip(&mut self, ip: std::net::IpAddr) -> bool {
        match ip {
            std::net::IpAddr::V4(v4) => {
                // Built on the stack, appended in one piece.
                let mut text = [0u8; 15];
                let mut len = 0;
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text[len] = b'.';
                        len += 1;
                    }
                    let mut digits = [0u8; 20];
                    let at = decimal(octet as u64, &mut digits);
                    text[len..len + 20 - at].copy_from_slice(&digits[at..]);
                    len += 20 - at;
                }
                self.put_bytes(&text[..len])
            }
            v6 => {
                let t = StackText::<64>::of(v6);
                self.put_bytes(t.as_bytes())
            }
        }
    }
}

/// Writes `n` in decimal at the end of `digits`; returns where it starts.
fn decimal(mut n: u64, digits: &mut [u8; 20]) -> usize {
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return at;
        }
    }
}

impl PutText for Buf {
    #[inline(always)]
    fn put_bytes(&mut self, bytes: &[u8]) -> bool {
        self.put_all(bytes)
    }
}

impl<const N: usize> PutText for StackText<N> {
    /// All or nothing, cut at N bytes. Bytes, not text: nothing here needs valid UTF-8.
    fn put_bytes(&mut self, bytes: &[u8]) -> bool {
        let Some(room) = self.buf.get_mut(self.len..self.len + bytes.len()) else { return false };
        room.copy_from_slice(bytes);
        self.len += bytes.len();
        true
    }
}

impl std::fmt::Write for Buf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.put_all(s.as_bytes()) {
            Ok(())
        } else {
            Err(std::fmt::Error)
        }
    }
}

/// Small text formatted on the stack (`write!` into it, then `as_bytes`): numbers and
/// addresses for headers and packets without a heap allocation.
pub struct StackText<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackText<N> {
    pub fn new() -> Self {
        StackText { buf: [0; N], len: 0 }
    }

    /// `v` formatted (cut off at N bytes).
    pub fn of(v: impl std::fmt::Display) -> Self {
        let mut t = Self::new();
        let _ = std::fmt::Write::write_fmt(&mut t, format_args!("{}", v));
        t
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl<const N: usize> Default for StackText<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> std::fmt::Write for StackText<N> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.put_bytes(s.as_bytes()) {
            Ok(())
        } else {
            Err(std::fmt::Error)
        }
    }
}

/// Usage figures of one worker's pool, for the debug log and the status page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub in_use: usize,
    pub free: usize,
    pub high_water: usize,
    pub limit: usize,
}

/// A worker's pool. Not shared between threads: each worker owns one, checkout is a
/// `Vec::pop` and a buffer's drop a `Vec::push`. Cloning the handle shares the same pool.
#[derive(Clone)]
pub struct BufferPool(Rc<PoolInner>);

struct PoolInner {
    free: RefCell<Vec<Box<[u8]>>>,
    in_use: Cell<usize>,
    high_water: Cell<usize>,
    limit: usize,
}

impl PoolInner {
    fn give_back(&self, data: Box<[u8]>) {
        self.in_use.set(self.in_use.get() - 1);
        self.free.borrow_mut().push(data);
    }
}

impl BufferPool {
    /// A pool that hands out at most `limit` buffers at once.
    pub fn new(limit: usize) -> BufferPool {
        BufferPool(Rc::new(PoolInner { free: RefCell::new(Vec::new()), in_use: Cell::new(0), high_water: Cell::new(0), limit }))
    }

    /// Checks a buffer out; `None` when the limit is reached (the caller answers 503).
    pub fn get(&self) -> Option<Buf> {
        let p = &*self.0;
        let in_use = p.in_use.get();
        if in_use >= p.limit {
            return None;
        }
        let data = p.free.borrow_mut().pop().unwrap_or_else(|| vec![0; BUF_SIZE].into_boxed_slice());
        p.in_use.set(in_use + 1);
        if in_use + 1 > p.high_water.get() {
            p.high_water.set(in_use + 1);
            if (in_use + 1).is_power_of_two() {
                log::debug!("buffer pool: high-water mark {} buffers of {} bytes", in_use + 1, BUF_SIZE);
            }
        }
        Some(Buf { data, start: 0, end: 0, home: Some(self.0.clone()) })
    }

    /// Buffers that can still be handed out before the limit.
    pub fn available(&self) -> usize {
        self.0.limit.saturating_sub(self.0.in_use.get())
    }

    /// Frees idle buffers beyond `keep`, so a burst does not pin its memory for good.
    /// Returns how many were freed.
    pub fn trim(&self, keep: usize) -> usize {
        let mut free = self.0.free.borrow_mut();
        let extra = free.len().saturating_sub(keep);
        if extra > 0 {
            free.truncate(keep);
            free.shrink_to(keep);
        }
        extra
    }

    pub fn stats(&self) -> PoolStats {
        let p = &*self.0;
        PoolStats { in_use: p.in_use.get(), free: p.free.borrow().len(), high_water: p.high_water.get(), limit: p.limit }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_addresses_as_text() {
        let mut b = Buf::standalone(64);
        for n in [0u64, 7, 10, 65535, u64::MAX] {
            b.clear();
            assert!(b.put_num(n));
            assert_eq!(b.data(), n.to_string().as_bytes());
        }
        for ip in ["0.0.0.0", "127.0.0.1", "255.255.255.255", "10.20.3.4", "::1", "2001:db8::ff00:42:8329"] {
            let ip: std::net::IpAddr = ip.parse().expect("ip");
            b.clear();
            assert!(b.put_ip(ip));
            assert_eq!(b.data(), ip.to_string().as_bytes());
            let mut t = StackText::<64>::new();
            assert!(t.put_ip(ip));
            assert_eq!(t.as_bytes(), ip.to_string().as_bytes());
        }
        let mut small = Buf::standalone(3);
        assert!(!small.put_num(1234) && small.is_empty(), "all or nothing");
    }

    #[test]
    fn put_consume_compact() {
        let mut b = Buf::standalone(8);
        assert_eq!(b.put(b"abcdef"), 6);
        b.consume(4);
        assert_eq!(b.data(), b"ef");
        assert_eq!(b.put(b"ghijkl"), 6);
        assert_eq!(b.data(), b"efghijkl");
        assert!(b.is_full());
        assert!(!b.put_all(b"x"));
        b.consume(8);
        assert!(b.is_empty());
        assert_eq!(b.spare().len(), 8);
    }

    #[test]
    fn pool_limit_and_reuse_by_drop() {
        let p = BufferPool::new(2);
        let a = p.get().expect("first");
        let b = p.get().expect("second");
        assert!(p.get().is_none());
        drop(a);
        assert_eq!(p.stats().free, 1);
        let c = p.get().expect("reused");
        assert_eq!(p.stats().in_use, 2);
        assert_eq!(p.stats().high_water, 2);
        drop((b, c));
        assert_eq!(p.stats().in_use, 0);
        assert_eq!(p.stats().free, 2);
        drop(Buf::standalone(16));
        assert_eq!(p.stats().free, 2, "a standalone buffer goes nowhere");
    }
}
