//! smx benchmarks and load/fault harnesses. Each binary in `src/bin`
//! measures smx beside a reference (the raw disk, or a peer such as
//! Postfix) in the same run and prints both, so figures are ratios that
//! hold on any machine.

pub mod crashload;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// The raw rate of the disk for durable small files: create a file, write
/// `size` bytes, fdatasync, close — one at a time, for at least `min_time`
/// and at least `min_files` files. Returns files per second.
pub fn one_fsync_per_file_rate(
    dir: &Path,
    size: usize,
    min_files: usize,
    min_time: Duration,
) -> std::io::Result<f64> {
    std::fs::create_dir_all(dir)?;
    let data = vec![b'x'; size];
    let start = Instant::now();
    let mut n = 0usize;
    while n < min_files || start.elapsed() < min_time {
        let p = dir.join(format!("raw-{n}"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(&p)?;
        f.write_all(&data)?;
        f.sync_data()?;
        drop(f);
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    for i in 0..n {
        let _ = std::fs::remove_file(dir.join(format!("raw-{i}")));
    }
    Ok(rate)
}

/// Whether `dir` is on tmpfs or ramfs, where fsync costs nothing and
/// durability figures mean nothing.
pub fn on_memory_fs(dir: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return false;
    };
    let Ok(dir) = dir.canonicalize() else {
        return false;
    };
    let mut best: Option<(usize, String)> = None;
    for line in mounts.lines() {
        let mut f = line.split_whitespace();
        let (Some(_dev), Some(mnt), Some(fstype)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if dir.starts_with(mnt) && best.as_ref().is_none_or(|(l, _)| mnt.len() > *l) {
            best = Some((mnt.len(), fstype.to_owned()));
        }
    }
    matches!(best, Some((_, t)) if t == "tmpfs" || t == "ramfs")
}
