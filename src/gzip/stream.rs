//! One response's gzip stream, written straight into the client's buffer: deflate output goes
//! into the buffer's free tail (framed as one HTTP chunk per call for a chunked response), so
//! nothing is copied through an intermediate buffer and nothing waits in pounce but what
//! zlib itself holds. Back-pressure is the buffer's: when it is full, input is not taken.
//!
//! The allocations are this box and zlib-rs's state, made when a response is actually
//! compressed. Measured with a counting allocator: 371 KiB for a body of unknown or large
//! length (`wbits` 15), 259 KiB at `wbits` 12, 245 KiB for a small body (`wbits` sized down
//! from Content-Length as nginx does, to 9 at least); the level does not change it. zlib
//! zeroes a new state, which costs more than compressing a small body, so each worker keeps a
//! few states whose stream ended whole (`SPARE`) and resets one of the same level and window
//! for the next compressed response instead.

use crate::buffer::Buf;
use flate2::{Compress, Compression, FlushCompress, Status};
use std::cell::RefCell;

/// Deflate states this worker thread keeps for its next compressed responses: (level,
/// `wbits`, state).
type Spare = Vec<(u32, u8, Compress)>;

thread_local! {
    static SPARE: RefCell<Spare> = const { RefCell::new(Vec::new()) };
}

/// At most this many states wait per worker (about 1.5 MiB at the largest window).
const SPARE_MAX: usize = 4;

/// Room kept for a chunk's size line (8 hex digits and CRLF) and its closing CRLF.
const LINE: usize = 10;
const CHUNK_OVERHEAD: usize = LINE + 2;
/// Less free room than this: wait for the client to drain (no tiny chunks).
const MIN_ROOM: usize = 64;
/// The end of a chunked body (no trailers).
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

pub struct GzipStream {
    /// Always Some until dropped, when the state goes back to `SPARE`.
    z: Option<Compress>,
    level: u32,
    wbits: u8,
    /// Input went in since the last flush.
    dirty: bool,
    /// Chunk framing (HTTP/1.1) or the bytes as they are (close-delimited, HTTP/1.0).
    chunked: bool,
    /// `finish` began: zlib takes nothing but finishing calls from now on.
    finishing: bool,
    /// zlib wrote the gzip trailer.
    stream_end: bool,
    /// The trailer is in the buffer, and for a chunked body the last chunk.
    ended: bool,
}

impl GzipStream {
    /// A stream at `level` (1..9), its window sized for `length` when it is known.
    pub fn new(level: u32, length: Option<u64>, chunked: bool) -> Box<GzipStream> {
        let wbits = window_bits(length);
        let spare = SPARE
            .try_with(|spare| {
                let mut spare = spare.borrow_mut();
                let at = spare.iter().position(|(l, w, _)| *l == level && *w == wbits)?;
                Some(spare.swap_remove(at).2)
            })
            .ok()
            .flatten();
        let z = match spare {
            Some(mut z) => {
                z.reset();
                z
            }
            None => Compress::new_gzip(Compression::new(level), wbits),
        };
        Box::new(GzipStream { z: Some(z), level, wbits, dirty: false, chunked, finishing: false, stream_end: false, ended: false })
    }

    /// Compresses as much of `data` as `out` has room for; returns (bytes of `data` taken,
    /// bytes written to `out` without framing).
    pub fn write(&mut self, out: &mut Buf, data: &[u8]) -> (usize, usize) {
        let (taken, produced, _) = self.run(out, data, FlushCompress::None);
        self.dirty |= taken > 0;
        (taken, produced)
    }

    /// Pushes out what zlib holds of the input so far (a sync flush: the client can
    /// decompress everything sent). Returns whether it is complete (else call again once
    /// `out` drains) and the bytes written.
    pub fn flush(&mut self, out: &mut Buf) -> (bool, usize) {
        let mut total = 0;
        while self.dirty && !self.finishing {
            let (_, produced, room_left) = self.run(out, &[], FlushCompress::Sync);
            total += produced;
            match room_left {
                // zlib's flush is complete once it leaves output space unused.
                Some(true) => self.dirty = false,
                Some(false) if produced > 0 => {}
                _ => return (false, total),
            }
        }
        (true, total)
    }

    /// Ends the stream: the rest of the deflate data, the gzip trailer and, chunked, the last
    /// chunk. Returns whether it is complete (else call again once `out` drains) and the
    /// bytes written (framing excluded).
    pub fn finish(&mut self, out: &mut Buf) -> (bool, usize) {
        self.finishing = true;
        let mut total = 0;
        while !self.stream_end {
            let (_, produced, room_left) = self.run(out, &[], FlushCompress::Finish);
            total += produced;
            if !self.stream_end && (room_left.is_none() || produced == 0) {
                return (false, total);
            }
        }
        if !self.ended {
            if self.chunked && !out.put_all(LAST_CHUNK) {
                return (false, total);
            }
            self.ended = true;
        }
        (true, total)
    }

    /// The compression ratio in hundredths (bytes in over bytes out, gzip header and trailer
    /// included, as nginx's `$gzip_ratio`); None before any output.
    pub fn ratio_x100(&self) -> Option<u32> {
        self.z.as_ref().and_then(|z| ratio_x100(z.total_in(), z.total_out()))
    }

    /// Output is owed: input went in that has not been flushed out, or an end begun by
    /// `finish` is not all written (the caller must come back even with no new input).
    pub fn pending(&self) -> bool {
        !self.ended && (self.dirty || self.finishing)
    }

    /// One deflate call into `out`'s free tail. Returns (input taken, output written,
    /// Some(whether output room was left unused), or None when there was too little room to
    /// try).
    fn run(&mut self, out: &mut Buf, input: &[u8], flush: FlushCompress) -> (usize, usize, Option<bool>) {
        let overhead = if self.chunked { CHUNK_OVERHEAD } else { 0 };
        let room = out.room();
        if self.stream_end || room < overhead + MIN_ROOM {
            return (0, 0, None);
        }
        if out.spare().len() < room.min(room / 2 + MIN_ROOM) {
            out.compact();
        }
        let spare = out.spare();
        let first = if self.chunked { LINE } else { 0 };
        let area_end = spare.len() - overhead + first;
        let Some(z) = self.z.as_mut() else { return (0, 0, None) };
        let (in0, out0) = (z.total_in(), z.total_out());
        let status = z.compress(input, &mut spare[first..area_end], flush);
        let taken = (z.total_in() - in0) as usize;
        let produced = (z.total_out() - out0) as usize;
        let room_left = produced < area_end - first;
        self.stream_end = status.is_ok_and(|s| s == Status::StreamEnd);
        if produced > 0 && self.chunked {
            let mut line = [0u8; 18];
            let l = crate::http::chunked::size_line(produced, &mut line);
            spare.copy_within(LINE..LINE + produced, l);
            spare[..l].copy_from_slice(&line[..l]);
            spare[l + produced..l + produced + 2].copy_from_slice(b"\r\n");
            out.commit(l + produced + 2);
        } else {
            out.commit(produced);
        }
        (taken, produced, Some(room_left))
    }
}

impl Drop for GzipStream {
    /// A state whose stream ended whole waits for the next compressed response on this
    /// worker (reset then), if fewer than `SPARE_MAX` wait. One abandoned mid-stream (a
    /// client that left) is freed: zlib-rs's reset was seen to leave such a state producing
    /// a corrupt next stream.
    fn drop(&mut self) {
        if !self.stream_end {
            return;
        }
        let Some(z) = self.z.take() else { return };
        let _ = SPARE.try_with(|spare| {
            if let Ok(mut spare) = spare.try_borrow_mut() {
                if spare.len() < SPARE_MAX {
                    spare.push((self.level, self.wbits, z));
                }
            }
        });
    }
}

/// `original / compressed` in hundredths, rounded half up from the thousandths as nginx's
/// `$gzip_ratio` (2.125 is 2.13), saturating; None when nothing came out.
pub fn ratio_x100(original: u64, compressed: u64) -> Option<u32> {
    if compressed == 0 {
        return None;
    }
    let x1000 = original.saturating_mul(1000) / compressed;
    Some(u32::try_from(x1000 / 10 + u64::from(x1000 % 10 > 4)).unwrap_or(u32::MAX))
}

/// zlib's window for a body of `length` bytes: the smallest that holds it (nginx's rule:
/// `wbits` down while the length is below `2^(wbits-1) - 262`), 15 when unknown.
pub fn window_bits(length: Option<u64>) -> u8 {
    let mut wbits = 15u8;
    if let Some(n) = length.filter(|&n| n > 0) {
        while wbits > 9 && n < (1u64 << (wbits - 1)) - 262 {
            wbits -= 1;
        }
    }
    wbits
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        let mut d = Decompress::new_gzip(15);
        let mut out = vec![0u8; 1 << 22];
        let st = d.decompress(gz, &mut out, FlushDecompress::Finish).expect("valid gzip");
        assert_eq!(st, Status::StreamEnd);
        out.truncate(d.total_out() as usize);
        out
    }

    /// Undoes chunked framing (sizes as `size_line` writes them).
    fn dechunk(mut b: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let eol = b.windows(2).position(|w| w == b"\r\n").expect("size line");
            let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).expect("hex"), 16).expect("hex");
            b = &b[eol + 2..];
            if n == 0 {
                assert_eq!(b, b"\r\n");
                return body;
            }
            body.extend_from_slice(&b[..n]);
            assert_eq!(&b[n..n + 2], b"\r\n");
            b = &b[n + 2..];
        }
    }

    fn sample(n: usize) -> Vec<u8> {
        (0..n).map(|i| b"pounce gzip test line 0123456789\n"[i % 33] ^ ((i / 977) as u8 & 7)).collect()
    }

    /// Streams `data` through a small client buffer drained at every step: what comes out
    /// (de-chunked, gunzipped) is the input, whatever the buffer sizes.
    #[test]
    fn streams_through_a_small_buffer() {
        for (chunked, cap, len) in [(true, 200, 100_000), (false, 300, 50_000), (true, 16384, 1_000_000), (true, 100, 0)] {
            let data = sample(len);
            let mut gz = GzipStream::new(1, None, chunked);
            let mut out = Buf::standalone(cap);
            let mut wire = Vec::new();
            let mut at = 0;
            while at < data.len() {
                let (taken, _) = gz.write(&mut out, &data[at..(at + 7000).min(data.len())]);
                at += taken;
                if taken == 0 || out.room() < 100 {
                    wire.extend_from_slice(out.data());
                    out.clear();
                }
                if at % 3 == 0 {
                    while !gz.flush(&mut out).0 {
                        wire.extend_from_slice(out.data());
                        out.clear();
                    }
                }
            }
            while !gz.finish(&mut out).0 {
                assert!(gz.pending(), "an end not all written is owed");
                wire.extend_from_slice(out.data());
                out.clear();
            }
            assert!(!gz.pending());
            wire.extend_from_slice(out.data());
            let gzip = if chunked { dechunk(&wire) } else { wire };
            assert_eq!(gunzip(&gzip), data, "chunked {chunked} cap {cap} len {len}");
        }
    }

    #[test]
    fn flush_makes_everything_so_far_readable() {
        let mut gz = GzipStream::new(6, None, false);
        let mut out = Buf::standalone(16384);
        assert_eq!(gz.write(&mut out, b"hello, ").0, 7);
        assert!(matches!(gz.flush(&mut out), (true, n) if n > 0));
        let mut d = Decompress::new_gzip(15);
        let mut plain = [0u8; 64];
        d.decompress(out.data(), &mut plain, FlushDecompress::Sync).expect("valid");
        assert_eq!(&plain[..d.total_out() as usize], b"hello, ");
        assert_eq!(gz.flush(&mut out), (true, 0), "nothing new: nothing written");
    }

    /// An end that does not fit is owed even when everything before it was flushed: the
    /// caller is told to come back (`pending`) though no input is left to wake it.
    #[test]
    fn an_unwritten_end_is_pending() {
        let mut gz = GzipStream::new(9, None, true);
        let mut out = Buf::standalone(4096);
        assert_eq!(gz.write(&mut out, &sample(3000)).0, 3000);
        assert!(gz.pending() && gz.flush(&mut out).0 && !gz.pending(), "flushed: nothing owed");
        out.put(&vec![0u8; out.room() - 40]);
        assert!(!gz.finish(&mut out).0, "no room for the end");
        assert!(gz.pending(), "the end is owed");
        out.clear();
        assert!(gz.finish(&mut out).0 && !gz.pending());
    }

    #[test]
    fn windows_follow_the_length() {
        assert_eq!(window_bits(None), 15);
        assert_eq!(window_bits(Some(1 << 20)), 15);
        assert_eq!(window_bits(Some(100)), 9);
        assert_eq!(window_bits(Some(3000)), 12);
    }

    #[test]
    fn ratio_rounds_as_nginx() {
        assert_eq!(ratio_x100(2125, 1000), Some(213));
        assert_eq!(ratio_x100(2124, 1000), Some(212));
        assert_eq!(ratio_x100(9995, 10000), Some(100));
        assert_eq!(ratio_x100(0, 20), Some(0), "an empty body compressed: 0.00, as nginx");
        assert_eq!(ratio_x100(5, 0), None);
        assert_eq!(ratio_x100(u64::MAX, 1), Some(u32::MAX));
    }

    fn spare() -> usize {
        SPARE.with(|s| s.borrow().len())
    }

    /// Compresses `data` whole into a fresh buffer (close-delimited framing).
    fn compress(gz: &mut GzipStream, data: &[u8]) -> Vec<u8> {
        let mut out = Buf::standalone(1 << 16);
        assert_eq!(gz.write(&mut out, data).0, data.len());
        assert!(gz.finish(&mut out).0);
        out.data().to_vec()
    }

    #[test]
    fn an_ended_state_is_reset_and_used_again() {
        // Each test runs on its own thread: its own SPARE.
        let mut first = GzipStream::new(6, Some(200), false);
        assert_eq!(gunzip(&compress(&mut first, &sample(200))), sample(200));
        drop(first);
        assert_eq!(spare(), 1, "kept for the next response");
        let mut second = GzipStream::new(6, Some(150), false);
        assert_eq!(spare(), 0, "same level and window: taken");
        let body = b"a different body, compressed by a reset state".repeat(4);
        assert_eq!(gunzip(&compress(&mut second, &body)), body);
        drop(second);
        let mut third = GzipStream::new(6, Some(180), false);
        assert_eq!(gunzip(&compress(&mut third, &body)), body);
        // Another level or window: a state of its own.
        let mut other = GzipStream::new(1, Some(180), false);
        assert_eq!(spare(), 0);
        assert_eq!(gunzip(&compress(&mut other, &body)), body);
        drop((third, other));
        assert_eq!(spare(), 2);
        let mut many: Vec<_> = (0..SPARE_MAX + 2).map(|_| GzipStream::new(9, None, false)).collect();
        for gz in many.iter_mut() {
            assert_eq!(gunzip(&compress(gz, &body)), body);
        }
        drop(many);
        assert_eq!(spare(), SPARE_MAX, "no more than SPARE_MAX wait");
    }

    #[test]
    fn a_state_abandoned_mid_stream_is_never_used_again() {
        // Abandoned with output pending in zlib (its client buffer full): reusing such a
        // state gave a corrupt next stream ("invalid code lengths set").
        let data = sample(1 << 20);
        let mut gz = GzipStream::new(1, Some(data.len() as u64), false);
        let mut out = Buf::standalone(300);
        let mut at = 0;
        for _ in 0..7 {
            at += gz.write(&mut out, &data[at..]).0;
            out.clear();
        }
        let _ = gz.write(&mut out, &data[at..]);
        drop(gz);
        assert_eq!(spare(), 0, "freed, not kept");
        let mut next = GzipStream::new(1, Some(data.len() as u64), false);
        let mut out = Buf::standalone(16 * 1024);
        let (mut wire, mut at) = (Vec::new(), 0);
        while at < data.len() {
            at += next.write(&mut out, &data[at..]).0;
            wire.extend_from_slice(out.data());
            out.clear();
        }
        while !next.finish(&mut out).0 {
            wire.extend_from_slice(out.data());
            out.clear();
        }
        wire.extend_from_slice(out.data());
        assert!(gunzip(&wire) == data);
    }
}
