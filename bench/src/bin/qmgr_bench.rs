//! qmgr scheduling rate: recipients scheduled per second by qmgr's
//! scheduler with instant fake delivery agents (every delivery it starts
//! completes at once, successfully), for several shapes of queue.
//!
//! `cargo run --release -p smx-bench --bin qmgr_bench [RECIPIENTS]`
//!
//! The figure is the scheduler's own cost per recipient (queueing, fair
//! round robin over destinations, concurrency windows, grouping into
//! delivery transactions, completion), the part of qmgr that every
//! recipient passes through; the target is 50,000 recipients/s. Storage
//! and IPC costs are measured by `store_bench` and the end-to-end tests.

use smx_qmgr::bench::{BenchSpec, scheduler_throughput};

fn main() -> anyhow::Result<()> {
    let recipients: u32 = match std::env::args().nth(1) {
        Some(s) => s.parse()?,
        None => 1_000_000,
    };
    println!("qmgr scheduler, instant fake delivery agents, {recipients} recipients per run");
    for (destinations, per_ta) in [(1, 1), (100, 1), (10_000, 1), (100, 10), (1_000, 100)] {
        let spec = BenchSpec {
            recipients,
            destinations,
            rcpts_per_transaction: per_ta,
        };
        // Best of three: the machine may be shared.
        let best = (0..3)
            .map(|_| scheduler_throughput(spec).per_second())
            .fold(0.0, f64::max);
        println!(
            "{destinations:>6} destinations, {per_ta:>3} recipients/transaction: {best:>12.0} recipients/s"
        );
    }
    Ok(())
}
