//! Back-pressure towards smtps (seed 9.1): when the incoming queue (IQDB),
//! the active queue (AQ) or the disk run short, qmgr tells smtps to accept
//! fewer sessions, and to accept none while a resource is exhausted; it
//! lifts the limit when the resource has recovered well past the point
//! where the limit was set (hysteresis), so smtps is not switched back and
//! forth at every message.
//!
//! [`Throttle::update`] takes the current [`Levels`] and returns the
//! notice for smtps ([`QmgrNotice`] of the smtps↔qmgr link) when, and only
//! when, the decision changes.
//!
//! # Rules
//!
//! 1. **Queues.** IQDB and AQ each have a level: *ok*, *high* or *full*.
//!    Ok becomes high when the fill reaches `high_percent` of the capacity,
//!    high becomes ok when it drops to `low_percent` or below. Any level
//!    becomes full at 100 %; full drops back to high when the fill is at
//!    or below `high_percent`, and straight to ok at or below
//!    `low_percent`.
//! 2. **Disk.** The disk is short when the free space is below
//!    `min_disk_space` and recovers when it reaches `ok_disk_space`
//!    (seed 3.8 items 10, 12). An unknown free space keeps the last state.
//! 3. **Decision**, most severe first: disk short → stop
//!    ([`ThrottleReason::DiskSpace`], 0 sessions); IQDB full → stop
//!    ([`ThrottleReason::QueueFull`]); IQDB or AQ high or AQ full → reduce
//!    to `reduced_sessions` ([`ThrottleReason::QueueFull`]); otherwise
//!    normal. A full AQ only reduces: IQDB still buffers what the AQ
//!    cannot take.
//! 4. **Notices.** A change to *reduce* or *stop* (or between them, or of
//!    reason) yields `Throttle { max_sessions, reason }`; a change back to
//!    normal yields `Unthrottle`. No change yields nothing.
//! 5. While stopped, [`Throttle::accepts_transactions`] is false: qmgr
//!    answers new transactions with a temporary failure.

use smx_conf::model::qmgr::QmgrConfig;
use smx_ipc::smtps_qmgr::{QmgrNotice, ThrottleReason};

/// Thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Fill (percent) at which a queue is high (default 90).
    pub high_percent: u8,
    /// Fill (percent) at which a high queue is ok again (default 70).
    pub low_percent: u8,
    /// Free bytes below which the disk is short (`min_disk_space`).
    pub min_disk_bytes: u64,
    /// Free bytes at which the disk is ok again (`ok_disk_space`).
    pub ok_disk_bytes: u64,
    /// Sessions smtps accepts while reduced (at least 1).
    pub reduced_sessions: u32,
}

impl ThrottleConfig {
    /// From the `qmgr` section; `reduced_sessions` is a quarter of
    /// `normal_sessions` (smtps' own session limit), at least 1.
    pub fn from_conf(c: &QmgrConfig, normal_sessions: u32) -> Self {
        ThrottleConfig {
            high_percent: 90,
            low_percent: 70,
            min_disk_bytes: c.min_disk_space.0,
            ok_disk_bytes: c.ok_disk_space.0,
            reduced_sessions: (normal_sessions / 4).max(1),
        }
    }
}

/// Current resource use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Levels {
    /// IQDB entries in use.
    pub iqdb_used: usize,
    /// IQDB capacity (`max_cache_entries`).
    pub iqdb_max: usize,
    /// AQ entries in use.
    pub aq_used: usize,
    /// AQ capacity (`AQ_max_entries`).
    pub aq_max: usize,
    /// Free bytes on the queue file system, if known.
    pub disk_free: Option<u64>,
}

/// The level of one queue (rule 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Below the thresholds.
    Ok,
    /// Filling up.
    High,
    /// At capacity.
    Full,
}

/// The decision (rule 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No limit beyond smtps' configuration.
    Normal,
    /// Fewer sessions.
    Reduced(ThrottleReason),
    /// No new sessions, no new transactions.
    Stopped(ThrottleReason),
}

/// The back-pressure state machine.
#[derive(Debug, Clone)]
pub struct Throttle {
    cfg: ThrottleConfig,
    iqdb: Level,
    aq: Level,
    disk_short: bool,
    state: State,
}

impl Throttle {
    /// Starts in the normal state. `low_percent` is kept below
    /// `high_percent` and both at most 100.
    pub fn new(cfg: ThrottleConfig) -> Self {
        let mut cfg = cfg;
        cfg.high_percent = cfg.high_percent.clamp(1, 100);
        cfg.low_percent = cfg.low_percent.min(cfg.high_percent - 1);
        cfg.reduced_sessions = cfg.reduced_sessions.max(1);
        Throttle {
            cfg,
            iqdb: Level::Ok,
            aq: Level::Ok,
            disk_short: false,
            state: State::Normal,
        }
    }

    /// The current decision.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether new transactions are accepted (rule 5).
    pub fn accepts_transactions(&self) -> bool {
        !matches!(self.state, State::Stopped(_))
    }

    /// Takes new levels; returns the notice for smtps if the decision
    /// changed (rule 4).
    pub fn update(&mut self, l: Levels) -> Option<QmgrNotice> {
        self.iqdb = next_level(self.iqdb, l.iqdb_used, l.iqdb_max, &self.cfg);
        self.aq = next_level(self.aq, l.aq_used, l.aq_max, &self.cfg);
        if let Some(free) = l.disk_free {
            if free < self.cfg.min_disk_bytes {
                self.disk_short = true;
            } else if free >= self.cfg.ok_disk_bytes {
                self.disk_short = false;
            }
        }
        let state = if self.disk_short {
            State::Stopped(ThrottleReason::DiskSpace)
        } else if self.iqdb == Level::Full {
            State::Stopped(ThrottleReason::QueueFull)
        } else if self.iqdb > Level::Ok || self.aq > Level::Ok {
            State::Reduced(ThrottleReason::QueueFull)
        } else {
            State::Normal
        };
        if state == self.state {
            return None;
        }
        self.state = state;
        Some(match state {
            State::Normal => QmgrNotice::Unthrottle,
            State::Reduced(reason) => QmgrNotice::Throttle {
                max_sessions: self.cfg.reduced_sessions,
                reason,
            },
            State::Stopped(reason) => QmgrNotice::Throttle {
                max_sessions: 0,
                reason,
            },
        })
    }
}

fn next_level(cur: Level, used: usize, max: usize, cfg: &ThrottleConfig) -> Level {
    if max == 0 {
        return Level::Ok;
    }
    // Percent of capacity, in u128 so no count overflows.
    let pct = (used as u128 * 100) / max as u128;
    let (high, low) = (u128::from(cfg.high_percent), u128::from(cfg.low_percent));
    if used >= max {
        return Level::Full;
    }
    match cur {
        Level::Ok if pct >= high => Level::High,
        Level::Ok => Level::Ok,
        Level::High if pct <= low => Level::Ok,
        Level::High => Level::High,
        Level::Full if pct > high => Level::Full,
        Level::Full if pct > low => Level::High,
        Level::Full => Level::Ok,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg() -> ThrottleConfig {
        ThrottleConfig {
            high_percent: 90,
            low_percent: 70,
            min_disk_bytes: 1000,
            ok_disk_bytes: 2000,
            reduced_sessions: 5,
        }
    }

    fn lv(iqdb: usize, aq: usize, disk: Option<u64>) -> Levels {
        Levels {
            iqdb_used: iqdb,
            iqdb_max: 100,
            aq_used: aq,
            aq_max: 100,
            disk_free: disk,
        }
    }

    fn reduce() -> Option<QmgrNotice> {
        Some(QmgrNotice::Throttle {
            max_sessions: 5,
            reason: ThrottleReason::QueueFull,
        })
    }

    #[test]
    fn iqdb_hysteresis_sequence() {
        let mut t = Throttle::new(cfg());
        let steps: [(usize, Option<QmgrNotice>); 9] = [
            (50, None),
            (89, None),
            (90, reduce()),
            (80, None),
            (
                100,
                Some(QmgrNotice::Throttle {
                    max_sessions: 0,
                    reason: ThrottleReason::QueueFull,
                }),
            ),
            (95, None),
            (90, reduce()),
            (71, None),
            (70, Some(QmgrNotice::Unthrottle)),
        ];
        for (i, (fill, want)) in steps.into_iter().enumerate() {
            assert_eq!(t.update(lv(fill, 0, None)), want, "step {i} fill {fill}");
        }
        assert!(t.accepts_transactions());
    }

    #[test]
    fn aq_only_reduces_and_disk_stops() {
        let mut t = Throttle::new(cfg());
        assert_eq!(t.update(lv(0, 100, None)), reduce());
        assert!(t.accepts_transactions());
        // Disk short takes precedence.
        assert_eq!(
            t.update(lv(0, 100, Some(999))),
            Some(QmgrNotice::Throttle {
                max_sessions: 0,
                reason: ThrottleReason::DiskSpace
            })
        );
        assert!(!t.accepts_transactions());
        // Between min and ok the disk stays short; unknown keeps it.
        assert_eq!(t.update(lv(0, 100, Some(1500))), None);
        assert_eq!(t.update(lv(0, 100, None)), None);
        assert_eq!(t.update(lv(0, 100, Some(2000))), reduce());
        assert_eq!(
            t.update(lv(0, 10, Some(2000))),
            Some(QmgrNotice::Unthrottle)
        );
        assert_eq!(t.state(), State::Normal);
    }

    #[test]
    fn from_conf_and_zero_capacity() {
        let c = QmgrConfig::default();
        let tc = ThrottleConfig::from_conf(&c, 100);
        assert_eq!(tc.reduced_sessions, 25);
        assert_eq!(tc.min_disk_bytes, c.min_disk_space.0);
        let mut t = Throttle::new(tc);
        assert_eq!(t.update(Levels::default()), None);
    }

    proptest! {
        /// Notices alternate sensibly: never two identical in a row, and
        /// the state always matches the last notice.
        #[test]
        fn notices_only_on_change(steps in proptest::collection::vec((0usize..=110, 0usize..=110, proptest::option::of(0u64..3000)), 1..200)) {
            let mut t = Throttle::new(cfg());
            let mut last: Option<QmgrNotice> = None;
            for (i, a, d) in steps {
                if let Some(n) = t.update(lv(i, a, d)) {
                    prop_assert!(last.as_ref() != Some(&n));
                    last = Some(n);
                }
                let expect = match t.state() {
                    State::Normal => None,
                    State::Reduced(r) => Some(QmgrNotice::Throttle { max_sessions: 5, reason: r }),
                    State::Stopped(r) => Some(QmgrNotice::Throttle { max_sessions: 0, reason: r }),
                };
                match (&last, expect) {
                    (None, None) => {}
                    (Some(QmgrNotice::Unthrottle), None) => {}
                    (Some(l), Some(e)) => prop_assert_eq!(l, &e),
                    (l, e) => prop_assert!(false, "last {:?} state {:?}", l, e),
                }
                if i >= 100 { prop_assert!(!t.accepts_transactions()); }
            }
        }
    }
}
