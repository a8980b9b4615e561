//! The settings of the queue manager process ([`crate::process`]): the
//! `qmgr` section of the configuration plus the global paths it works on,
//! resolved against the queue directory, and a few knobs of the process
//! itself (reconnect delay, polling intervals) that the configuration does
//! not name.
//!
//! # Paths
//!
//! | setting | from the configuration | default below the queue directory |
//! | --- | --- | --- |
//! | [`Settings::cdb_base`] | `CDB_base_directory` (empty: the queue directory) | `.` |
//! | [`Settings::ibdb_dir`] | (none) | `ibdb` |
//! | [`Settings::defedb_path`] | `qmgr.DEFEDB.base_directory` + [`smx_store::defedb::FILE_NAME`] | `defedb/defedb.redb` |
//! | [`Settings::id_state`] | (none) | `qmgr.ids`, the state file of qmgr's own id counter |
//! | [`Settings::smtps_socket`] | `SMTPS_socket` | `qmsmtps/smtpssock` |
//! | [`Settings::smar_socket`] | `SMAR_socket` | `qmsmar/smarsock` |
//! | [`Settings::smtpc_socket`] | `SMTPC_socket` | `qmsmtpc/smtpcsock` |
//!
//! Relative paths are taken relative to the queue directory; absolute ones
//! are used as they are.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use smx_conf::Config;
use smx_conf::model::qmgr::QmgrConfig;

use crate::limits::{LimitTable, SessionConfTable};

/// The process id byte of the transactions qmgr creates itself (DSNs,
/// alias expansions); smtps instances number themselves from 0, so the
/// default keeps clear of them.
pub const DEFAULT_PROCESS_ID: u8 = 0xFF;

/// Measures the free space (bytes) of the queue file systems; `None` when
/// it cannot be measured. The default measures the CDB, IBDB and DEFEDB
/// directories with `statvfs` and takes the smallest figure.
pub type DiskProbe = Arc<dyn Fn() -> Option<u64> + Send + Sync>;

/// Everything [`crate::process::serve`] needs.
#[derive(Clone)]
pub struct Settings {
    /// The `qmgr` section.
    pub qmgr: QmgrConfig,
    /// This host's name (DSNs).
    pub hostname: String,
    /// The queue directory.
    pub queue_dir: PathBuf,
    /// The CDB base directory.
    pub cdb_base: PathBuf,
    /// The IBDB directory.
    pub ibdb_dir: PathBuf,
    /// The DEFEDB file.
    pub defedb_path: PathBuf,
    /// The state file of qmgr's id counter.
    pub id_state: PathBuf,
    /// The socket smtps connects to (qmgr listens).
    pub smtps_socket: PathBuf,
    /// smar's socket (qmgr connects).
    pub smar_socket: PathBuf,
    /// smtpc's socket (qmgr connects).
    pub smtpc_socket: PathBuf,
    /// The process id byte of qmgr's own transaction ids.
    pub process_id: u8,
    /// Sessions smtps accepts normally (for the reduced throttle level).
    pub smtps_sessions: u32,
    /// Pause before reconnecting to smar or smtpc after a failure.
    pub reconnect_delay: Duration,
    /// How often the free disk space is measured.
    pub disk_check_interval: Duration,
    /// How often DEFEDB is scanned for due recipients even when no retry
    /// time is known in memory (a safety net).
    pub defedb_scan_interval: Duration,
    /// Largest IPC frame.
    pub max_frame: u32,
    /// How often a delivery is sent again to smtpc after the link failed
    /// under it, before its recipients are deferred.
    pub delivery_resends: u32,
    /// Free space probe; `None`: `statvfs` on the queue directories.
    pub disk_probe: Option<DiskProbe>,
    /// The `qmgr_conf` limit table (per-IP `oci`, `ocm`, `octo`, `icr`,
    /// `icm`); the caller reads the map named by `qmgr.conf`.
    pub limits: LimitTable,
    /// The group of content files qmgr writes itself (DSNs): the first
    /// smtps section's `CDB_gid`, so that smtpc can read them as it reads
    /// what smtps wrote. `None`: qmgr's own group.
    pub cdb_gid: Option<u32>,
    /// The `smtpc_session_conf:` entries of `qmgr_conf` (used with the
    /// smtpc flag `lookup_session_conf`).
    pub session_confs: SessionConfTable,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("hostname", &self.hostname)
            .field("queue_dir", &self.queue_dir)
            .field("cdb_base", &self.cdb_base)
            .field("ibdb_dir", &self.ibdb_dir)
            .field("defedb_path", &self.defedb_path)
            .field("smtps_socket", &self.smtps_socket)
            .field("smar_socket", &self.smar_socket)
            .field("smtpc_socket", &self.smtpc_socket)
            .field("process_id", &self.process_id)
            .field("disk_probe", &self.disk_probe.is_some())
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// The settings from a whole configuration.
    pub fn from_config(c: &Config) -> Settings {
        let q = &c.queue_directory;
        let cdb_base = if c.cdb_base_directory.is_empty() {
            q.clone()
        } else {
            resolve(q, Path::new(&c.cdb_base_directory))
        };
        let smtps_sessions = c
            .smtps
            .items
            .iter()
            .map(|s| s.body.max_threads)
            .max()
            .unwrap_or(100);
        let mut s = Settings::in_queue_dir(q, c.qmgr.clone());
        s.hostname = c.hostname.clone().unwrap_or_else(system_hostname);
        s.cdb_base = cdb_base;
        s.defedb_path =
            resolve(q, &c.qmgr.defedb.base_directory).join(smx_store::defedb::FILE_NAME);
        s.smtps_socket = resolve(q, &c.smtps_socket);
        s.smar_socket = resolve(q, &c.smar_socket);
        s.smtpc_socket = resolve(q, &c.smtpc_socket);
        s.smtps_sessions = smtps_sessions;
        s.cdb_gid = c.smtps.items.first().and_then(|s| s.body.cdb_gid);
        s
    }

    /// Settings with every path at its default below `queue_dir` and the
    /// given `qmgr` section (tests and tools).
    pub fn in_queue_dir(queue_dir: &Path, qmgr: QmgrConfig) -> Settings {
        let q = queue_dir.to_path_buf();
        Settings {
            defedb_path: resolve(&q, &qmgr.defedb.base_directory)
                .join(smx_store::defedb::FILE_NAME),
            qmgr,
            hostname: "localhost".into(),
            cdb_base: q.clone(),
            ibdb_dir: q.join("ibdb"),
            id_state: q.join("qmgr.ids"),
            smtps_socket: q.join("qmsmtps/smtpssock"),
            smar_socket: q.join("qmsmar/smarsock"),
            smtpc_socket: q.join("qmsmtpc/smtpcsock"),
            queue_dir: q,
            process_id: DEFAULT_PROCESS_ID,
            smtps_sessions: 100,
            reconnect_delay: Duration::from_secs(1),
            disk_check_interval: Duration::from_secs(10),
            defedb_scan_interval: Duration::from_secs(60),
            max_frame: smx_ipc::DEFAULT_MAX_FRAME,
            delivery_resends: 3,
            disk_probe: None,
            limits: LimitTable::new(),
            session_confs: SessionConfTable::default(),
            cdb_gid: None,
        }
    }
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        })
        .unwrap_or_else(|| "localhost".into())
}
