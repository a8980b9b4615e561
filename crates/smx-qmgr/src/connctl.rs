//! Incoming connection control for smtps (seed 3.8 item 18, 3.8.1): qmgr
//! answers each `NewSession` from smtps with accept or refuse, based on
//! the client IP's connection rate and its number of open sessions.
//!
//! # Rules
//!
//! 1. **Limits.** The rate limit is `icr` from the `qmgr_conf` table for
//!    the client address, else `smtps.max_connection_rate`; the open
//!    session limit is `icm`, else `smtps.max_connections`. Limits apply to
//!    each single address (not added up over a net). A limit of 0 means no
//!    limit.
//! 2. **Rate.** Connection attempts per client are counted in a window of
//!    60 s that starts at the first attempt after the previous window
//!    ended. Every attempt counts, refused ones too, so a client that keeps
//!    hammering stays refused until it slows down. An attempt that makes the
//!    count exceed the limit is refused ([`Admission::RateExceeded`]).
//! 3. **Open sessions.** An accepted connection opens a session;
//!    [`ConnControl::close`] closes it. An attempt while the client already
//!    has `icm` open sessions is refused ([`Admission::TooManySessions`]).
//! 4. **Bounded memory.** The table holds at most `capacity` client
//!    entries (`smtps.connection_control_cache_size`). A new client that
//!    finds it full evicts the least recently seen client without open
//!    sessions, forgetting that client's rate window. Entries with open
//!    sessions are never evicted (their count must stay right for
//!    `close`); if every entry has open sessions, the new client is
//!    admitted untracked ([`Admission::Untracked`]) and its close is
//!    ignored, so a table smaller than the session limit of smtps only
//!    weakens the limits, it never refuses mail or grows.
//!
//! Time is passed in (`now`); nothing here reads a clock or does I/O.

use crate::limits::{LimitKind, LimitTable};
use crate::time::Timestamp;
use smx_conf::model::qmgr::QmgrConfig;
use smx_ipc::types::{EnhancedCode, SmtpReply};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Duration;

/// The length of a rate window.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Defaults for clients without a table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnControlConfig {
    /// Connections per 60 s (`max_connection_rate`); 0: unlimited.
    pub max_rate: u32,
    /// Open sessions (`max_connections`); 0: unlimited.
    pub max_open: u32,
    /// Clients tracked (`connection_control_cache_size`, at least 1).
    pub capacity: u32,
}

impl ConnControlConfig {
    /// From the `qmgr { smtps { ... } }` section.
    pub fn from_conf(c: &QmgrConfig) -> Self {
        ConnControlConfig {
            max_rate: c.smtps.max_connection_rate,
            max_open: c.smtps.max_connections,
            capacity: c.smtps.connection_control_cache_size,
        }
    }
}

/// The answer for a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Accepted; call [`ConnControl::close`] when the session ends.
    Accepted,
    /// Accepted without tracking (table full of open sessions, rule 4);
    /// closing it is a no-op.
    Untracked,
    /// Refused: more than `limit` connections in 60 s.
    RateExceeded {
        /// The limit.
        limit: u32,
    },
    /// Refused: already `limit` open sessions.
    TooManySessions {
        /// The limit.
        limit: u32,
    },
}

impl Admission {
    /// Whether the client may go on.
    pub fn is_accepted(self) -> bool {
        matches!(self, Admission::Accepted | Admission::Untracked)
    }

    /// The reply for smtps' `SessionRefused`: 421 with enhanced code
    /// 4.7.0 (RFC 3463: security or policy status); `None` when accepted.
    pub fn refusal(self) -> Option<SmtpReply> {
        let text = match self {
            Admission::Accepted | Admission::Untracked => return None,
            Admission::RateExceeded { limit } => {
                format!(
                    "too many connections from your address (limit {limit} per minute), try again later"
                )
            }
            Admission::TooManySessions { limit } => {
                format!("too many open sessions from your address (limit {limit}), try again later")
            }
        };
        Some(SmtpReply {
            code: 421,
            enhanced: Some(EnhancedCode {
                class: 4,
                subject: 7,
                detail: 0,
            }),
            text,
        })
    }
}

#[derive(Debug, Clone)]
struct Client {
    window_start: Timestamp,
    count: u32,
    open: u32,
    /// Position in the idle list when `open == 0`.
    idle_stamp: Option<u64>,
}

/// The connection control table; see the module documentation.
#[derive(Debug)]
pub struct ConnControl {
    cfg: ConnControlConfig,
    limits: LimitTable,
    clients: HashMap<IpAddr, Client>,
    /// Clients without open sessions, least recently seen first.
    idle: BTreeMap<u64, IpAddr>,
    next_stamp: u64,
}

impl ConnControl {
    /// An empty table.
    pub fn new(cfg: ConnControlConfig, limits: LimitTable) -> Self {
        let mut cfg = cfg;
        cfg.capacity = cfg.capacity.max(1);
        ConnControl {
            cfg,
            limits,
            clients: HashMap::new(),
            idle: BTreeMap::new(),
            next_stamp: 0,
        }
    }

    /// Replaces the limit table (a reloaded `qmgr_conf`).
    pub fn set_limits(&mut self, limits: LimitTable) {
        self.limits = limits;
    }

    /// Clients tracked.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether no client is tracked.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Open sessions of `ip` as tracked.
    pub fn open_sessions(&self, ip: IpAddr) -> u32 {
        self.clients.get(&ip.to_canonical()).map_or(0, |c| c.open)
    }

    /// The limits for `ip`: (rate per 60 s, open sessions); 0 is unlimited.
    pub fn limits_for(&self, ip: IpAddr) -> (u32, u32) {
        let ip = Some(ip.to_canonical());
        (
            self.limits
                .lookup(LimitKind::Icr, ip)
                .unwrap_or(self.cfg.max_rate),
            self.limits
                .lookup(LimitKind::Icm, ip)
                .unwrap_or(self.cfg.max_open),
        )
    }

    /// Decides on a new connection from `ip` at `now` (rules 1-4).
    pub fn open(&mut self, ip: IpAddr, now: Timestamp) -> Admission {
        let ip = ip.to_canonical();
        let (max_rate, max_open) = self.limits_for(ip);
        if !self.clients.contains_key(&ip) && !self.make_room() {
            return Admission::Untracked;
        }
        self.next_stamp += 1;
        let stamp = self.next_stamp;
        let c = self.clients.entry(ip).or_insert(Client {
            window_start: now,
            count: 0,
            open: 0,
            idle_stamp: None,
        });
        if now.since(c.window_start) >= RATE_WINDOW || now < c.window_start {
            c.window_start = now;
            c.count = 0;
        }
        c.count = c.count.saturating_add(1);
        let verdict = if max_rate != 0 && c.count > max_rate {
            Admission::RateExceeded { limit: max_rate }
        } else if max_open != 0 && c.open >= max_open {
            Admission::TooManySessions { limit: max_open }
        } else {
            c.open += 1;
            Admission::Accepted
        };
        // Keep the idle list in step.
        if let Some(old) = c.idle_stamp.take() {
            self.idle.remove(&old);
        }
        if c.open == 0 {
            c.idle_stamp = Some(stamp);
            self.idle.insert(stamp, ip);
        }
        verdict
    }

    /// A session of `ip` ended.
    pub fn close(&mut self, ip: IpAddr) {
        let ip = ip.to_canonical();
        let Some(c) = self.clients.get_mut(&ip) else {
            return;
        };
        if c.open == 0 {
            return;
        }
        c.open -= 1;
        if c.open == 0 {
            self.next_stamp += 1;
            c.idle_stamp = Some(self.next_stamp);
            self.idle.insert(self.next_stamp, ip);
        }
    }

    /// Makes room for one more client; false if every entry has open
    /// sessions.
    fn make_room(&mut self) -> bool {
        while self.clients.len() >= self.cfg.capacity as usize {
            let Some((_, victim)) = self.idle.pop_first() else {
                return false;
            };
            self.clients.remove(&victim);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse()
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_micros(1_700_000_000_000_000 + ms * 1000)
    }

    fn cc(rate: u32, open: u32, cap: u32, table: &str) -> ConnControl {
        let limits = LimitTable::parse(table).unwrap_or_default();
        ConnControl::new(
            ConnControlConfig {
                max_rate: rate,
                max_open: open,
                capacity: cap,
            },
            limits,
        )
    }

    #[test]
    fn rate_per_60s_window() {
        let mut c = cc(3, 100, 10, "");
        let a = ip("192.0.2.1");
        for i in 0..3 {
            assert_eq!(c.open(a, t(i * 1000)), Admission::Accepted);
            c.close(a);
        }
        let refused = c.open(a, t(10_000));
        assert_eq!(refused, Admission::RateExceeded { limit: 3 });
        let reply = refused.refusal().unwrap();
        assert_eq!(reply.code, 421);
        assert_eq!(
            reply.enhanced.map(|e| e.to_string()).as_deref(),
            Some("4.7.0")
        );
        assert_eq!(Admission::Accepted.refusal(), None);
        assert_eq!(c.open(a, t(59_999)), Admission::RateExceeded { limit: 3 });
        // A new window starts 60 s after the first attempt.
        assert_eq!(c.open(a, t(60_000)), Admission::Accepted);
        // Another client is not affected.
        assert_eq!(c.open(ip("192.0.2.2"), t(10_000)), Admission::Accepted);
    }

    #[test]
    fn open_sessions_and_overrides() {
        let mut c = cc(100, 2, 10, "icm:127.0.0.1 3\nicr:10 1\n");
        let a = ip("192.0.2.1");
        assert!(c.open(a, t(0)).is_accepted());
        assert!(c.open(a, t(1)).is_accepted());
        assert_eq!(c.open(a, t(2)), Admission::TooManySessions { limit: 2 });
        c.close(a);
        assert_eq!(c.open(a, t(3)), Admission::Accepted);
        assert_eq!(c.open_sessions(a), 2);
        // icm override for 127.0.0.1 (and its IPv4-mapped form).
        let l = ip("127.0.0.1");
        for i in 0..3 {
            assert_eq!(c.open(l, t(10 + i)), Admission::Accepted);
        }
        assert_eq!(
            c.open(ip("::ffff:127.0.0.1"), t(20)),
            Admission::TooManySessions { limit: 3 }
        );
        // icr override for the 10 net.
        assert_eq!(c.open(ip("10.1.1.1"), t(0)), Admission::Accepted);
        assert_eq!(
            c.open(ip("10.1.1.1"), t(1)),
            Admission::RateExceeded { limit: 1 }
        );
        assert_eq!(c.limits_for(ip("10.2.2.2")), (1, 2));
        // Zero means unlimited.
        let mut u = cc(0, 0, 10, "");
        for i in 0..1000 {
            assert_eq!(u.open(a, t(i)), Admission::Accepted);
        }
    }

    #[test]
    fn table_is_bounded() {
        let mut c = cc(100, 100, 4, "");
        // Three clients hold sessions; many others come and go.
        for i in 0..3 {
            assert!(c.open(ip(&format!("10.0.0.{i}")), t(0)).is_accepted());
        }
        for i in 0..1000u32 {
            let a = IpAddr::V4(std::net::Ipv4Addr::from(0xC000_0000 + i));
            assert_eq!(c.open(a, t(u64::from(i))), Admission::Accepted);
            c.close(a);
            assert!(c.len() <= 4);
        }
        // The session holders were never evicted.
        for i in 0..3 {
            assert_eq!(c.open_sessions(ip(&format!("10.0.0.{i}"))), 1);
        }
        // Full of open sessions: admitted untracked.
        let d = ip("10.0.0.9");
        assert!(c.open(d, t(2000)).is_accepted());
        assert_eq!(c.open(ip("10.0.0.10"), t(2001)), Admission::Untracked);
        c.close(ip("10.0.0.10"));
        assert_eq!(c.len(), 4);
    }

    proptest! {
        #[test]
        fn bounded_and_consistent(ops in proptest::collection::vec((0u8..20, any::<bool>(), 0u64..5000), 1..300)) {
            let mut c = cc(5, 2, 8, "");
            let mut now = t(0);
            let mut open: HashMap<IpAddr, u32> = HashMap::new();
            for (who, is_open, dt) in ops {
                now = now.plus(Duration::from_millis(dt));
                let a = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, who));
                if is_open {
                    match c.open(a, now) {
                        Admission::Accepted => *open.entry(a).or_default() += 1,
                        Admission::TooManySessions { .. } => prop_assert!(open.get(&a).copied().unwrap_or(0) >= 2),
                        Admission::RateExceeded { .. } | Admission::Untracked => {}
                    }
                } else if let Some(n) = open.get_mut(&a).filter(|n| **n > 0) {
                    *n -= 1;
                    c.close(a);
                }
                prop_assert!(c.len() <= 8);
                for (a, n) in &open {
                    prop_assert!(*n <= 2);
                    prop_assert_eq!(c.open_sessions(*a), *n);
                }
            }
        }
    }
}
