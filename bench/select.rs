//! Selection cost per request for upstreams of 2, 128 and 1,024 servers: what picking a
//! server (round_robin, least_conn, by_traffic, a sticky route) costs a request, in
//! nanoseconds, one worker, warm caches. Run it when asked, in release mode:
//!
//!     cargo run --release --example select [-- ROUNDS]
//!
//! Not part of `make test`: timings are never asserted in tests. The 1,024-server upstream
//! must add less than 1 µs per request over the 2-server one (issue 16).

use pounce::SelectBench;
use std::hint::black_box;
use std::time::Instant;

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2_000_000);
    // SIZES=2,16,128 to look at others; the first is the baseline of the last column.
    let sizes: Vec<usize> = std::env::var("SIZES").ok().map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect()).unwrap_or_else(|| vec![2, 128, 1024]);
    let head: Vec<String> = sizes.iter().map(|n| format!("{} servers", n)).collect();
    println!("ns per request (best of 5 runs of {} requests)\n", rounds);
    println!("| method | {} | {} over {} |", head.join(" | "), sizes[sizes.len() - 1], sizes[0]);
    println!("|---|{}---|", "---|".repeat(sizes.len()));
    for method in ["round_robin", "least_conn", "by_traffic", "sticky"] {
        let mut cells = Vec::new();
        for &n in &sizes {
            let mut b = SelectBench::new(n, method);
            for i in 0..rounds / 10 {
                black_box(b.pick(i, 1));
            }
            // The best of five runs: the machine is shared, the cost is what it is unhindered.
            let best = (0..5)
                .map(|_| {
                    let t = Instant::now();
                    for i in 0..rounds {
                        black_box(b.pick(black_box(i), 1));
                    }
                    t.elapsed().as_nanos() as f64 / rounds as f64
                })
                .fold(f64::MAX, f64::min);
            cells.push(best);
        }
        let text: Vec<String> = cells.iter().map(|c| format!("{:.1}", c)).collect();
        println!("| {} | {} | {:+.1} ns |", method, text.join(" | "), cells[cells.len() - 1] - cells[0]);
    }
}
