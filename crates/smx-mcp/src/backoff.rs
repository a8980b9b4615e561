//! When to restart a process that exited (seed 4.1: mcp restarts
//! components that stop; it must not spin when one crashes at once).
//!
//! * Exit status 64 (`EX_USAGE`) or 78 (`EX_CONFIG`): not restarted; the
//!   command line or configuration must be fixed first. A restart of the
//!   whole system (SIGHUP) tries again.
//! * Any other exit or death by a signal: restarted after a delay that
//!   starts at `initial` and doubles with each quick failure up to `max`.
//!   A process that ran at least `stable` before it exited counts as
//!   healthy: its next restart is after `initial` again.

use std::time::Duration;

/// Exit status for a command line error (sysexits.h).
pub const EX_USAGE: i32 = 64;
/// Exit status for a configuration error (sysexits.h).
pub const EX_CONFIG: i32 = 78;

/// Restart timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// First restart delay.
    pub initial: Duration,
    /// Longest restart delay.
    pub max: Duration,
    /// Run time after which a process counts as healthy.
    pub stable: Duration,
    /// How long stopping processes get between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            stable: Duration::from_secs(60),
            stop_grace: Duration::from_secs(8),
        }
    }
}

/// The restart state of one process slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

/// What to do after an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start again after this delay.
    Restart(Duration),
    /// Do not start again.
    GiveUp,
}

impl Backoff {
    /// A fresh state.
    pub fn new(t: &Timing) -> Self {
        Backoff { next: t.initial }
    }

    /// Decides about an exit with `code` (`None`: killed by a signal)
    /// after running for `ran`.
    pub fn on_exit(&mut self, t: &Timing, code: Option<i32>, ran: Duration) -> Decision {
        if matches!(code, Some(EX_USAGE) | Some(EX_CONFIG)) {
            return Decision::GiveUp;
        }
        if ran >= t.stable {
            self.next = t.initial;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(t.max);
        Decision::Restart(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_resets() {
        let t = Timing::default();
        let mut b = Backoff::new(&t);
        let quick = Duration::from_millis(10);
        let delays: Vec<_> = (0..8)
            .map(|_| match b.on_exit(&t, Some(1), quick) {
                Decision::Restart(d) => d.as_secs(),
                Decision::GiveUp => 0,
            })
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(
            b.on_exit(&t, None, Duration::from_secs(61)),
            Decision::Restart(t.initial)
        );
    }

    #[test]
    fn config_errors_are_not_restarted() {
        let t = Timing::default();
        let mut b = Backoff::new(&t);
        assert_eq!(
            b.on_exit(&t, Some(EX_CONFIG), Duration::ZERO),
            Decision::GiveUp
        );
        assert_eq!(
            b.on_exit(&t, Some(EX_USAGE), Duration::ZERO),
            Decision::GiveUp
        );
        assert!(matches!(
            b.on_exit(&t, Some(0), Duration::ZERO),
            Decision::Restart(_)
        ));
    }
}
