//! A throughput harness for the scheduler with instant fake delivery
//! agents: every delivery started is completed successfully at once. A
//! bench binary (or `smx` itself) calls [`scheduler_throughput`] and prints
//! the [`BenchReport`]; the target is at least 50,000 recipients per
//! second on a small machine.
//!
//! The harness measures wall-clock time with [`std::time::Instant`]; the
//! scheduler itself runs on a fixed fake clock, as everywhere else.

use crate::limits::LimitTable;
use crate::scheduler::{
    Action, DeliveryResult, DestKey, Enqueued, Poll, Protocol, Scheduler, SchedulerConfig,
};
use crate::time::Timestamp;
use smx_store::id::{RecipientId, TransactionId};
use std::time::{Duration, Instant};

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchSpec {
    /// Recipients in total.
    pub recipients: u32,
    /// Destinations the recipients are spread over (round-robin by
    /// transaction).
    pub destinations: u32,
    /// Recipients per original transaction.
    pub rcpts_per_transaction: u32,
}

impl Default for BenchSpec {
    fn default() -> Self {
        BenchSpec {
            recipients: 200_000,
            destinations: 1_000,
            rcpts_per_transaction: 3,
        }
    }
}

/// The result of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BenchReport {
    /// Recipients scheduled and completed.
    pub recipients: u64,
    /// Deliveries started.
    pub deliveries: u64,
    /// Wall-clock time.
    pub elapsed: Duration,
}

impl BenchReport {
    /// Recipients per second.
    pub fn per_second(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.recipients as f64 / s
        } else {
            f64::INFINITY
        }
    }
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} recipients in {} deliveries in {:.3} s: {:.0} recipients/s",
            self.recipients,
            self.deliveries,
            self.elapsed.as_secs_f64(),
            self.per_second()
        )
    }
}

/// Runs the scheduler over `spec` with the default `qmgr` options and
/// instant successful deliveries. Recipients are fed as the AQ frees up,
/// as qmgr does when it moves them from IQDB.
pub fn scheduler_throughput(spec: BenchSpec) -> BenchReport {
    let cfg = SchedulerConfig::default();
    let mut s = Scheduler::new(cfg, LimitTable::new());
    let now = Timestamp::from_secs(1_700_000_000);
    let dests: Vec<DestKey> = (0..spec.destinations.max(1))
        .map(|i| DestKey::new(Protocol::Smtp, &format!("mx{i}.example")))
        .collect();
    let per_ta = spec.rcpts_per_transaction.clamp(1, 0xFF_FFFF);
    let total = u64::from(spec.recipients);
    let mut fed = 0u64;
    let mut done = 0u64;
    let mut deliveries = 0u64;
    let mut ta_counter = 0u64;
    let mut batch: Vec<RecipientId> = Vec::with_capacity(per_ta as usize);
    let start = Instant::now();
    // Each round feeds and drains at least one recipient, so the loop is
    // bounded by the number of recipients (plus slack).
    for _ in 0..(total + 1000) * 4 {
        while fed < total {
            let n = u64::from(per_ta).min(total - fed);
            if s.free_entries() < n as usize {
                break;
            }
            ta_counter += 1;
            let ta = TransactionId::new(ta_counter, 0);
            batch.clear();
            batch.extend((0..n as u32).filter_map(|i| RecipientId::new(ta, i).ok()));
            let dest = &dests[(ta_counter % dests.len() as u64) as usize];
            match s.enqueue_many(dest, &batch, now) {
                Ok(Enqueued::Queued) => fed += n,
                Ok(Enqueued::HostDown { .. }) | Err(_) => break,
            }
        }
        match s.poll(now) {
            Poll::Ready(actions) => {
                for a in actions {
                    if let Action::Start(d) = a {
                        deliveries += 1;
                        if let Ok(d) = s.complete(d.id, DeliveryResult::Success, now) {
                            done += d.recipients.len() as u64;
                        }
                    }
                }
            }
            Poll::Idle if fed >= total => break,
            Poll::Idle | Poll::Sleep(_) => {}
        }
    }
    BenchReport {
        recipients: done,
        deliveries,
        elapsed: start.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_run_completes_every_recipient() {
        let spec = BenchSpec {
            recipients: 20_000,
            destinations: 50,
            rcpts_per_transaction: 4,
        };
        let r = scheduler_throughput(spec);
        assert_eq!(r.recipients, 20_000);
        assert_eq!(r.deliveries, 5_000);
        // The figure depends on the machine and build; print it only.
        println!("scheduler throughput: {r}");
    }
}
