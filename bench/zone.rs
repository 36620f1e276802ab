//! What a `limit_req` zone lookup costs a request, and what threads sharing a zone cost each
//! other: ns per lookup with 1, 2 and 4 threads, each a client population of its own (10,000
//! addresses), on pounce's 16-shard zone and on the same zone with one lock; and the share of
//! lookups that found their shard's lock held by another thread (the zone's `lock_waits`,
//! which, unlike the times, a busy machine does not distort much). Run it when asked, in
//! release mode, on a quiet machine:
//!
//!     cargo run --release --example zone [-- LOOKUPS_PER_THREAD]
//!
//! Not part of `make test`: timings are never asserted in tests.

use pounce::ZoneBench;
use std::hint::black_box;
use std::time::Instant;

fn run(zone: &ZoneBench, threads: usize, lookups: usize) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let z = zone.clone();
            s.spawn(move || {
                let base = 0x0a00_0000 + (t as u32) * 100_000;
                for i in 0..lookups {
                    black_box(z.request(base + (i % 10_000) as u32, i as u64 / 1000));
                }
            });
        }
    });
    start.elapsed().as_nanos() as f64 / lookups as f64
}

fn main() {
    let lookups: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2_000_000);
    println!("ns per lookup per thread (best of 5 runs of {} lookups per thread; 10m zone, 81,920 states)\n", lookups);
    println!("| zone | 1 thread | 2 threads | 4 threads | lock waits, 2 threads | lock waits, 4 threads |");
    println!("|---|---|---|---|---|---|");
    for (name, shards) in [("16 shards (pounce)", 16), ("1 lock", 1)] {
        let mut cells = Vec::new();
        let mut waits = Vec::new();
        for threads in [1, 2, 4] {
            let zone = ZoneBench::new(81_920, shards);
            run(&zone, threads, lookups / 10);
            let before = zone.lock_waits();
            let best = (0..5).map(|_| run(&zone, threads, lookups)).fold(f64::MAX, f64::min);
            cells.push(format!("{:.0}", best));
            if threads > 1 {
                let share = (zone.lock_waits() - before) as f64 / (5 * threads * lookups) as f64;
                waits.push(format!("{:.3}%", share * 100.0));
            }
        }
        println!("| {} | {} | {} |", name, cells.join(" | "), waits.join(" | "));
    }
}
