//! The free disk space guard: refuse new mail while the spool's file system
//! is nearly full (seed 3.8 items 10 and 12, 4.10.1).
//!
//! qmgr measures the free space of the file systems that hold CDB, IBDB and
//! DEFEDB with [`free_space`] and feeds the smallest figure to a
//! [`DiskGuard`]; when the guard says [`DiskState::Refuse`], it throttles
//! smtps, which then answers new transactions with a temporary error. The
//! guard itself does no I/O: it is a two-state machine with hysteresis, so
//! that the decision does not flap while the free space hovers around one
//! threshold.
//!
//! # Rules
//!
//! - In [`DiskState::Accept`], a measurement strictly below `min`
//!   (`min_disk_space`) switches to [`DiskState::Refuse`]; exactly `min` still
//!   accepts.
//! - In [`DiskState::Refuse`], a measurement of at least `ok`
//!   (`ok_disk_space`) switches back to [`DiskState::Accept`]; anything below
//!   `ok` keeps refusing.
//! - `ok` must be larger than `min` ([`DiskError::Thresholds`] otherwise).
//! - A new guard accepts: the hysteresis only matters after a refusal. The
//!   first [`DiskGuard::update`] applies the rules above.
//!
//! Thresholds and measurements are in bytes; the configuration's KB values
//! are converted by the caller. Nothing here touches the disk except
//! [`free_space`].
//!
//! # Errors
//!
//! [`DiskError`]: bad thresholds (a configuration error) or a failed
//! `statvfs` (temporary; the caller keeps its last decision or refuses).
//! Nothing on disk is read or written.

use std::io;
use std::path::{Path, PathBuf};

use crate::ErrorClass;

/// Whether mail may be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiskState {
    /// Enough free space: accept new mail.
    Accept,
    /// Too little free space: refuse new mail until `ok` is free again.
    Refuse,
}

/// Errors of the disk space guard.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// `ok_disk_space` is not larger than `min_disk_space`.
    #[error("ok_disk_space ({ok} bytes) must be larger than min_disk_space ({min} bytes)")]
    Thresholds {
        /// The refusal threshold.
        min: u64,
        /// The resume threshold.
        ok: u64,
    },
    /// `statvfs` on the path failed.
    #[error("measuring free space of {path}: {source}")]
    Statvfs {
        /// The path measured.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

impl DiskError {
    /// Whether retrying can help: thresholds are a permanent configuration
    /// error, a failed measurement is temporary.
    pub fn class(&self) -> ErrorClass {
        match self {
            DiskError::Thresholds { .. } => ErrorClass::Permanent,
            DiskError::Statvfs { .. } => ErrorClass::Temporary,
        }
    }
}

/// The hysteresis between `min_disk_space` and `ok_disk_space`; see the
/// module documentation for the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskGuard {
    min: u64,
    ok: u64,
    state: DiskState,
}

impl DiskGuard {
    /// A guard that refuses below `min_bytes` free and resumes at
    /// `ok_bytes`; starts in [`DiskState::Accept`]. `ok_bytes` must be
    /// larger than `min_bytes`.
    pub fn new(min_bytes: u64, ok_bytes: u64) -> Result<Self, DiskError> {
        if ok_bytes <= min_bytes {
            return Err(DiskError::Thresholds {
                min: min_bytes,
                ok: ok_bytes,
            });
        }
        Ok(DiskGuard {
            min: min_bytes,
            ok: ok_bytes,
            state: DiskState::Accept,
        })
    }

    /// Feeds a measurement of free bytes and returns the resulting state.
    pub fn update(&mut self, free_bytes: u64) -> DiskState {
        self.state = match self.state {
            DiskState::Accept if free_bytes < self.min => DiskState::Refuse,
            DiskState::Refuse if free_bytes >= self.ok => DiskState::Accept,
            unchanged => unchanged,
        };
        self.state
    }

    /// The current state.
    pub fn state(&self) -> DiskState {
        self.state
    }

    /// The refusal threshold in bytes.
    pub fn min_bytes(&self) -> u64 {
        self.min
    }

    /// The resume threshold in bytes.
    pub fn ok_bytes(&self) -> u64 {
        self.ok
    }
}

/// Bytes available to unprivileged users on the file system holding `path`
/// (`f_bavail * f_frsize`, saturating at `u64::MAX`).
pub fn free_space(path: impl AsRef<Path>) -> Result<u64, DiskError> {
    let path = path.as_ref();
    let st = nix::sys::statvfs::statvfs(path).map_err(|errno| DiskError::Statvfs {
        path: path.to_path_buf(),
        source: io::Error::from(errno),
    })?;
    // Both are u64 on 64-bit Linux but narrower on some other targets.
    #[allow(clippy::useless_conversion)]
    let (blocks, size) = (
        u64::from(st.blocks_available()),
        u64::from(st.fragment_size()),
    );
    Ok(blocks.saturating_mul(size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use DiskState::{Accept, Refuse};
    use proptest::prelude::*;

    #[test]
    fn thresholds_must_be_ordered() {
        for (min, ok) in [(10, 10), (10, 9), (0, 0), (u64::MAX, 0)] {
            let err = DiskGuard::new(min, ok).unwrap_err();
            assert!(matches!(err, DiskError::Thresholds { min: m, ok: o } if m == min && o == ok));
            assert_eq!(err.class(), ErrorClass::Permanent);
        }
        let g = DiskGuard::new(0, 1).unwrap();
        assert_eq!((g.min_bytes(), g.ok_bytes(), g.state()), (0, 1, Accept));
    }

    #[test]
    fn hysteresis_table() {
        // (free bytes fed, state wanted after it), min = 100, ok = 200.
        let steps: [(u64, DiskState); 16] = [
            (1000, Accept),
            (100, Accept), // exactly min still accepts
            (150, Accept), // between the thresholds, coming from above
            (99, Refuse),  // just below min
            (100, Refuse), // back to min: not enough
            (199, Refuse), // just below ok
            (0, Refuse),
            (200, Accept), // exactly ok resumes
            (199, Accept), // between, coming from below after resuming
            (101, Accept),
            (100, Accept),
            (0, Refuse),
            (u64::MAX, Accept),
            (99, Refuse),
            (201, Accept),
            (u64::MAX, Accept),
        ];
        let mut g = DiskGuard::new(100, 200).unwrap();
        for (i, (free, want)) in steps.into_iter().enumerate() {
            assert_eq!(g.update(free), want, "step {i}: free {free}");
            assert_eq!(g.state(), want, "step {i}");
        }
    }

    #[test]
    fn first_measurement_between_thresholds_accepts() {
        let mut g = DiskGuard::new(100, 200).unwrap();
        assert_eq!(g.update(150), Accept);
        let mut g = DiskGuard::new(100, 200).unwrap();
        assert_eq!(g.update(50), Refuse);
    }

    #[test]
    fn free_space_of_a_tempdir() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_space(dir.path()).unwrap();
        // The test itself just created a directory there.
        assert!(free > 0);
        let err = free_space(dir.path().join("missing")).unwrap_err();
        assert!(
            matches!(&err, DiskError::Statvfs { source, .. }
            if source.kind() == io::ErrorKind::NotFound),
            "{err}"
        );
        assert_eq!(err.class(), ErrorClass::Temporary);
        assert!(err.to_string().contains("missing"), "{err}");
    }

    proptest! {
        #[test]
        fn state_flips_only_at_the_thresholds(
            min in 0..1000_u64,
            gap in 1..1000_u64,
            frees in prop::collection::vec(0..2500_u64, 0..100),
        ) {
            let ok = min + gap;
            let mut g = DiskGuard::new(min, ok).unwrap();
            for free in frees {
                let before = g.state();
                let after = g.update(free);
                match (before, after) {
                    (Accept, Refuse) => prop_assert!(free < min),
                    (Refuse, Accept) => prop_assert!(free >= ok),
                    (Accept, Accept) => prop_assert!(free >= min),
                    (Refuse, Refuse) => prop_assert!(free < ok),
                }
                // Outside the band the state is determined by the measurement.
                if free < min {
                    prop_assert_eq!(after, Refuse);
                }
                if free >= ok {
                    prop_assert_eq!(after, Accept);
                }
            }
        }
    }
}
