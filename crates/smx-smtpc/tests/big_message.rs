//! A 50 MiB message streamed from CDB into smtp-sink with bounded memory.
//! In its own test binary so that nothing else runs in the process while
//! the peak resident set size (`VmHWM` in /proc/self/status) is measured.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use smx_ipc::qmgr_smtpc::RecipientStatus::*;

const SIZE: usize = 50 * 1024 * 1024;

fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_mib_message_with_bounded_memory() {
    let mut store = Store::new();
    let line = b"0123456789 abcdefghijklmnopqrstuvwxyz .dots. ABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n";
    let c = store.put_with(SIZE as u64, |w| {
        let mut piece = Vec::with_capacity(64 * 1024);
        let mut left = SIZE;
        while left > 0 {
            piece.clear();
            while piece.len() < 64 * 1024 - line.len() && piece.len() < left {
                piece.extend_from_slice(line);
            }
            piece.truncate(left);
            w.write(&piece).unwrap();
            left -= piece.len();
        }
    });
    let sink = Sink::start(&[]);
    let d = deliverer(&store, config());
    // Reset the peak to the current size (Linux: "5" > clear_refs).
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let before = if reset {
        status_kib("VmRSS:")
    } else {
        status_kib("VmHWM:")
    };
    let start = std::time::Instant::now();
    let r = d
        .deliver(&delivery(
            c,
            "s@example.org",
            "",
            &[("a@example.org", "")],
            tcp(sink.addr, false),
        ))
        .await;
    let took = start.elapsed();
    let peak = status_kib("VmHWM:");
    assert_eq!(statuses(&r), vec![Delivered], "{r:?}");
    let delta = peak.saturating_sub(before);
    println!(
        "50 MiB message: delivered in {took:?}; peak RSS {peak} KiB, {delta} KiB above the {before} KiB before the delivery (peak reset: {reset})"
    );
    assert!(delta < 16 * 1024, "peak RSS grew by {delta} KiB");
}
