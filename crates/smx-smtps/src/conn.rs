//! Open-connection limits (ZMailer `MaxSameIpSource` and
//! `MaxParallelConnections`, as `max_connections_per_ip` and
//! `max_parallel_connections`).
//!
//! Every accepted connection asks [`ConnTable::admit`] before anything else
//! is done for it. Within the limits it gets a [`ConnGuard`] that counts the
//! connection until dropped. Over a limit the answer is
//! [`Admission::Refuse`]: send `450 4.7.0` and close; a client that keeps
//! more than [`SILENT_FACTOR`] times a limit open (it ignores the 450s) is
//! [`Admission::Drop`]ped without a word, so a flood costs no writes. The
//! table holds one entry per address with open connections, so its size is
//! bounded by the number of open connections. Refused connections are
//! counted too while they are open, which is what makes the silent close
//! reachable.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

/// Beyond this many times a limit, connections are closed silently.
pub const SILENT_FACTOR: u32 = 4;

/// What to do with a new connection.
#[derive(Debug)]
pub enum Admission {
    /// Serve it.
    Accept(ConnGuard),
    /// Answer 450 and close; the guard counts it until then.
    Refuse(ConnGuard, RefuseReason),
    /// Close without a reply.
    Drop,
}

/// Which limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseReason {
    /// `max_connections_per_ip`.
    PerIp,
    /// `max_parallel_connections`.
    Total,
}

#[derive(Debug, Default)]
struct Counts {
    total: u32,
    per_ip: HashMap<IpAddr, u32>,
}

/// The table; cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct ConnTable {
    inner: Arc<Mutex<Counts>>,
    max_per_ip: u32,
    max_total: u32,
}

impl ConnTable {
    /// A table with these limits (0 is treated as 1).
    pub fn new(max_per_ip: u32, max_total: u32) -> Self {
        ConnTable {
            inner: Arc::new(Mutex::new(Counts::default())),
            max_per_ip: max_per_ip.max(1),
            max_total: max_total.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        // A panic while holding this lock cannot leave the counts
        // inconsistent (each update is one statement), so poisoning is
        // ignored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Decides about a new connection from `ip`.
    pub fn admit(&self, ip: IpAddr) -> Admission {
        let mut c = self.lock();
        let have_ip = c.per_ip.get(&ip).copied().unwrap_or(0);
        let have_total = c.total;
        if have_ip >= self.max_per_ip.saturating_mul(SILENT_FACTOR)
            || have_total >= self.max_total.saturating_mul(SILENT_FACTOR)
        {
            return Admission::Drop;
        }
        c.total += 1;
        *c.per_ip.entry(ip).or_insert(0) += 1;
        drop(c);
        let guard = ConnGuard {
            table: self.clone(),
            ip,
        };
        if have_ip >= self.max_per_ip {
            Admission::Refuse(guard, RefuseReason::PerIp)
        } else if have_total >= self.max_total {
            Admission::Refuse(guard, RefuseReason::Total)
        } else {
            Admission::Accept(guard)
        }
    }

    /// Open connections in all.
    pub fn total(&self) -> u32 {
        self.lock().total
    }

    /// Open connections from `ip`.
    pub fn from_ip(&self, ip: IpAddr) -> u32 {
        self.lock().per_ip.get(&ip).copied().unwrap_or(0)
    }

    fn release(&self, ip: IpAddr) {
        let mut c = self.lock();
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_ip.remove(&ip);
            }
        }
    }
}

/// Counts one open connection until dropped.
#[derive(Debug)]
pub struct ConnGuard {
    table: ConnTable,
    ip: IpAddr,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.table.release(self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    #[test]
    fn per_ip_limit_then_silent() {
        let t = ConnTable::new(2, 100);
        let mut held = Vec::new();
        for _ in 0..2 {
            match t.admit(ip(1)) {
                Admission::Accept(g) => held.push(g),
                other => panic!("{other:?}"),
            }
        }
        for _ in 2..8 {
            match t.admit(ip(1)) {
                Admission::Refuse(g, RefuseReason::PerIp) => held.push(g),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(t.admit(ip(1)), Admission::Drop));
        // Another address is not affected.
        assert!(matches!(t.admit(ip(2)), Admission::Accept(_)));
        held.clear();
        assert_eq!(t.total(), 0);
        assert_eq!(t.from_ip(ip(1)), 0);
        assert!(matches!(t.admit(ip(1)), Admission::Accept(_)));
    }

    #[test]
    fn total_limit() {
        let t = ConnTable::new(10, 3);
        let held: Vec<_> = (0..3).map(|n| t.admit(ip(n))).collect();
        assert!(held.iter().all(|a| matches!(a, Admission::Accept(_))));
        assert!(matches!(
            t.admit(ip(9)),
            Admission::Refuse(_, RefuseReason::Total)
        ));
        assert_eq!(
            t.total(),
            3,
            "a refused connection is released when its guard drops"
        );
    }
}
