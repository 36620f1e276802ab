//! What starting a compressed response costs: pounce's `GzipStream` (a worker's ended deflate
//! state reset and used again) against a fresh zlib-rs state per response (what pounce did
//! before), for a small body at each window size the Content-Length rule picks. Run it when
//! asked, in release mode, on a quiet machine:
//!
//!     cargo run --release --example deflate [-- RESPONSES]
//!
//! Not part of `make test`: timings are never asserted in tests.

use flate2::{Compress, Compression, FlushCompress};
use pounce::buffer::Buf;
use pounce::gzip::stream::{window_bits, GzipStream};
use std::hint::black_box;
use std::time::Instant;

fn main() {
    let n: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let mut out = Buf::standalone(16 * 1024);
    let mut raw = vec![0u8; 16 * 1024];
    println!("| body | window | fresh state per response | pounce (reset state) |\n|---|---|---|---|");
    for len in [100usize, 2_000, 30_000] {
        let body: Vec<u8> = (0..len).map(|i| b"pounce deflate bench 0123456789\n"[i % 32]).collect();
        for rep in 0..2 {
            let t = Instant::now();
            for _ in 0..n {
                let wbits = window_bits(Some(len as u64));
                let mut z = Compress::new_gzip(Compression::new(1), wbits);
                let _ = black_box(z.compress(&body, &mut raw, FlushCompress::Finish));
            }
            let fresh = t.elapsed().as_nanos() as f64 / n as f64;
            let t = Instant::now();
            for _ in 0..n {
                out.clear();
                let mut gz = GzipStream::new(1, Some(len as u64), false);
                let _ = black_box(gz.write(&mut out, &body));
                let _ = black_box(gz.finish(&mut out));
            }
            let reused = t.elapsed().as_nanos() as f64 / n as f64;
            if rep == 1 {
                println!("| {} bytes | {} | {:.1} µs | {:.1} µs |", len, window_bits(Some(len as u64)), fresh / 1000.0, reused / 1000.0);
            }
        }
    }
}
