//! The `qmgr` section: the queue manager (seed 3.8, 3.8.1, 8.3).

use super::common::{LogConfig, McpOptions, StartAction, check_nonzero_time};
use crate::conf_flags;
use crate::schema::{Checker, Section, Visitor};
use crate::value::{KbSize, MicroTime, Size, Time};
use std::path::PathBuf;

/// `qmgr { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QmgrConfig {
    /// How MCP starts the queue manager.
    pub mcp: McpOptions,
    /// Logging.
    pub log: LogConfig,
    /// Logging level.
    pub log_level: u32,
    /// Maximum entries in the active queue.
    pub aq_max_entries: u32,
    /// The qmgr_conf map (seed 3.8.1).
    pub conf: Option<PathBuf>,
    /// Control socket for `smx ctl` and `smx mailq`.
    pub control_socket: PathBuf,
    /// DEFEDB options.
    pub defedb: DefedbConfig,
    /// DSN options.
    pub dsn_handling: DsnHandling,
    /// Address for double bounces; unset: postmaster@hostname.
    pub double_bounce_address: Option<String>,
    /// IBDB options.
    pub ibdb: IbdbConfig,
    /// IQDB options.
    pub iqdb: IqdbConfig,
    /// Free disk space below which new mail is refused.
    pub min_disk_space: KbSize,
    /// Free disk space at which normal operation resumes.
    pub ok_disk_space: KbSize,
    /// Size of the outgoing connection cache.
    pub occ_max_entries: u32,
    /// Maximum time in the queue before a bounce.
    pub queue_return_timeout: Time,
    /// Time after which a delay DSN is sent.
    pub queue_delay_timeout: Time,
    /// Longest retry interval.
    pub retry_max_delay: Time,
    /// Shortest retry interval.
    pub retry_min_delay: Time,
    /// Outgoing connection limits.
    pub smtpc: QmgrSmtpc,
    /// Incoming connection limits.
    pub smtps: QmgrSmtps,
    /// Longest wait for a delivery agent to become available.
    pub wait_for_client: Time,
    /// Longest wait for a server to become available.
    pub wait_for_server: Time,
    /// Size of the connection-control hash table.
    pub connection_control_hash_table_size: u32,
    /// Debug level.
    pub debug_level: u32,
    /// Timeout for one delivery attempt.
    pub delivery_timeout: Time,
    /// Flags.
    pub flags: QmgrFlags,
    /// Maximum file descriptors (clients of qmgr).
    pub max_fds: u32,
    /// Maximum worker threads.
    pub max_threads: u32,
    /// Minimum worker threads.
    pub min_threads: u32,
    /// Safety timeout for an item in the active queue.
    pub scheduler_timeout: Time,
    /// Timeout for an answer from smar.
    pub smar_timeout: Time,
}

impl Default for QmgrConfig {
    fn default() -> Self {
        let mut mcp = McpOptions::new(StartAction::Wait);
        mcp.restart_dependencies = vec!["smtps".into(), "smtpc".into(), "smar".into()];
        QmgrConfig {
            mcp,
            log: LogConfig::default(),
            log_level: 9,
            aq_max_entries: 8192,
            conf: None,
            control_socket: PathBuf::from("qmgr/ctlsock"),
            defedb: DefedbConfig::default(),
            dsn_handling: DsnHandling::default(),
            double_bounce_address: None,
            ibdb: IbdbConfig::default(),
            iqdb: IqdbConfig::default(),
            min_disk_space: KbSize::mb(50),
            ok_disk_space: KbSize::mb(100),
            occ_max_entries: 1024,
            queue_return_timeout: Time::days(5),
            queue_delay_timeout: Time::hours(4),
            retry_max_delay: Time::hours(4),
            retry_min_delay: Time::mins(5),
            smtpc: QmgrSmtpc::default(),
            smtps: QmgrSmtps::default(),
            wait_for_client: Time::secs(30),
            wait_for_server: Time::secs(30),
            connection_control_hash_table_size: 4096,
            debug_level: 0,
            delivery_timeout: Time::hours(1),
            flags: QmgrFlags::default(),
            max_fds: 1024,
            max_threads: 8,
            min_threads: 1,
            scheduler_timeout: Time::hours(2),
            smar_timeout: Time::secs(60),
        }
    }
}

impl Section for QmgrConfig {
    fn visit(&mut self, v: &mut dyn Visitor) {
        self.mcp.visit(v);
        v.section("log", "Logging (seed 3.5).", &mut self.log);
        v.option(
            "log_level",
            "Amount of logging: 9 for normal operation, 12-14 for testing.",
            &mut self.log_level,
        );
        v.option(
            "AQ_max_entries",
            "Maximum number of entries in the active queue; must be larger than the \
             largest number of recipients in one transaction.",
            &mut self.aq_max_entries,
        );
        v.option(
            "conf",
            "The qmgr_conf map (per-IP connection limits, seed 3.8.1), relative to the \
             configuration directory.",
            &mut self.conf,
        );
        v.option(
            "control_socket",
            "Unix socket for queries and requests (smx ctl, smx mailq), relative to the queue directory.",
            &mut self.control_socket,
        );
        v.section(
            "DEFEDB",
            "The deferred envelope database.",
            &mut self.defedb,
        );
        v.section(
            "DSN_handling",
            "Delivery status notifications (bounces).",
            &mut self.dsn_handling,
        );
        v.alias(
            "max_errors_per_DSN",
            &mut self.dsn_handling.max_errors_per_dsn,
        );
        v.option(
            "double_bounce_address",
            "Address that receives bounces that cannot be returned; default <postmaster@hostname>.",
            &mut self.double_bounce_address,
        );
        v.section(
            "IBDB",
            "The incoming backup database (envelope log).",
            &mut self.ibdb,
        );
        v.section("IQDB", "The incoming queue in memory.", &mut self.iqdb);
        v.option(
            "min_disk_space",
            "Free disk space below which new mail is refused (default unit KB).",
            &mut self.min_disk_space,
        );
        v.option(
            "ok_disk_space",
            "Free disk space at which normal operation continues (default unit KB); \
             must be larger than min_disk_space.",
            &mut self.ok_disk_space,
        );
        v.option(
            "OCC_max_entries",
            "Size of the outgoing connection cache (entries).",
            &mut self.occ_max_entries,
        );
        v.option(
            "queue_return_timeout",
            "Maximum time in the queue; then the mail bounces.",
            &mut self.queue_return_timeout,
        );
        v.option(
            "queue_delay_timeout",
            "Send a delay DSN when mail is still queued after this long; larger than \
             queue_return_timeout turns delay DSNs off.",
            &mut self.queue_delay_timeout,
        );
        v.option(
            "retry_max_delay",
            "Longest time between two delivery attempts.",
            &mut self.retry_max_delay,
        );
        v.option(
            "retry_min_delay",
            "Shortest time between two delivery attempts.",
            &mut self.retry_min_delay,
        );
        v.section("smtpc", "Outgoing connections.", &mut self.smtpc);
        v.section("smtps", "Incoming connection control.", &mut self.smtps);
        v.option(
            "wait_for_client",
            "Longest wait for a delivery agent to become available.",
            &mut self.wait_for_client,
        );
        v.option(
            "wait_for_server",
            "Longest wait for a server to become available.",
            &mut self.wait_for_server,
        );
        v.option(
            "connection_control_hash_table_size",
            "Size of the hash table for incoming connection control.",
            &mut self.connection_control_hash_table_size,
        );
        v.option("debug_level", "Debug level.", &mut self.debug_level);
        v.option(
            "delivery_timeout",
            "Timeout for one delivery attempt; large enough for big mail over slow links.",
            &mut self.delivery_timeout,
        );
        v.option("flags", "Queue manager flags.", &mut self.flags);
        v.option(
            "max_fds",
            "Maximum number of file descriptors (clients of qmgr).",
            &mut self.max_fds,
        );
        v.option(
            "max_threads",
            "Maximum number of worker threads.",
            &mut self.max_threads,
        );
        v.option(
            "min_threads",
            "Minimum number of worker threads.",
            &mut self.min_threads,
        );
        v.option(
            "scheduler_timeout",
            "Safety timeout after which an item is removed from the active queue.",
            &mut self.scheduler_timeout,
        );
        v.option(
            "SMAR_timeout",
            "How long to wait for an answer from smar; larger than the total DNS timeout.",
            &mut self.smar_timeout,
        );
    }

    fn check(&self, c: &mut Checker<'_>) {
        self.mcp.check(c);
        self.mcp.check_single(c);
        if self.ok_disk_space <= self.min_disk_space {
            c.error(
                &["ok_disk_space"],
                format!(
                    "ok_disk_space ({} bytes) must be larger than min_disk_space ({} bytes)",
                    self.ok_disk_space.0, self.min_disk_space.0
                ),
            );
        }
        if self.retry_min_delay > self.retry_max_delay {
            c.error(
                &["retry_min_delay"],
                format!(
                    "retry_min_delay ({}s) must not be larger than retry_max_delay ({}s)",
                    self.retry_min_delay.0.as_secs(),
                    self.retry_max_delay.0.as_secs()
                ),
            );
        }
        check_nonzero_time(c, "retry_min_delay", self.retry_min_delay);
        check_nonzero_time(c, "queue_return_timeout", self.queue_return_timeout);
        check_nonzero_time(c, "delivery_timeout", self.delivery_timeout);
        check_nonzero_time(c, "SMAR_timeout", self.smar_timeout);
        if self.min_threads > self.max_threads {
            c.error(
                &["min_threads"],
                format!(
                    "min_threads ({}) is larger than max_threads ({})",
                    self.min_threads, self.max_threads
                ),
            );
        }
        if self.aq_max_entries == 0 {
            c.error(
                &["AQ_max_entries"],
                "AQ_max_entries must be at least 1".into(),
            );
        }
    }
}

/// `DEFEDB { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefedbConfig {
    /// Directory of the database.
    pub base_directory: PathBuf,
    /// Log directory; accepted for compatibility (the store keeps no
    /// separate log).
    pub log_directory: Option<PathBuf>,
    /// Page size; accepted for compatibility.
    pub page_size: Option<Size>,
    /// Cache size of the database.
    pub cache_size: Size,
    /// Checkpoint after this much log; accepted for compatibility.
    pub kbytes_written_for_checkpointing: KbSize,
    /// Minimum delay between checkpoints; accepted for compatibility.
    pub delay_between_2_checkpoints: Time,
    /// Flags.
    pub flags: DefedbFlags,
}

impl Default for DefedbConfig {
    fn default() -> Self {
        DefedbConfig {
            base_directory: PathBuf::from("defedb"),
            log_directory: None,
            page_size: None,
            cache_size: Size::mb(64),
            kbytes_written_for_checkpointing: KbSize(0),
            delay_between_2_checkpoints: Time::secs(60),
            flags: DefedbFlags::default(),
        }
    }
}

conf_flags! {
    /// DEFEDB flags.
    pub struct DefedbFlags {
        /// Remove log files that are no longer needed (on by default).
        remove_unused_logfiles: "remove_unused_logfiles" = true,
    }
}

impl Section for DefedbConfig {
    fn visit(&mut self, v: &mut dyn Visitor) {
        v.option(
            "base_directory",
            "Directory of the deferred envelope database (relative to the queue directory).",
            &mut self.base_directory,
        );
        v.option(
            "log_directory",
            "Accepted for compatibility; the embedded database keeps its log in its own file.",
            &mut self.log_directory,
        );
        v.option(
            "page_size",
            "Accepted for compatibility; no effect.",
            &mut self.page_size,
        );
        v.option("cache_size", "Database cache size.", &mut self.cache_size);
        v.option(
            "KBytes_written_for_checkpointing",
            "Accepted for compatibility; every commit is durable.",
            &mut self.kbytes_written_for_checkpointing,
        );
        v.option(
            "delay_between_2_checkpoints",
            "Accepted for compatibility; every commit is durable.",
            &mut self.delay_between_2_checkpoints,
        );
        v.option("flags", "DEFEDB flags.", &mut self.flags);
    }
}

/// `DSN_handling { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsnHandling {
    /// Longest wait to merge several failures into one DSN.
    pub merge_delay_max: Time,
    /// Flags.
    pub flags: DsnFlags,
    /// Most failed recipients in one DSN.
    pub max_errors_per_dsn: u32,
}

impl Default for DsnHandling {
    fn default() -> Self {
        DsnHandling {
            merge_delay_max: Time::mins(5),
            flags: DsnFlags::default(),
            max_errors_per_dsn: 100,
        }
    }
}

conf_flags! {
    /// DSN flags.
    pub struct DsnFlags {
        /// Include only the headers of the original message.
        header_only: "header_only" = false,
        /// Send DSNs in MIME format (smx always sends RFC 3464 multipart/report).
        mime_format: "MIME_Format" = true,
    }
}

impl Section for DsnHandling {
    fn visit(&mut self, v: &mut dyn Visitor) {
        v.option(
            "merge_delay_max",
            "Longest time to wait for merging several failed recipients into one DSN.",
            &mut self.merge_delay_max,
        );
        v.option("flags", "DSN flags.", &mut self.flags);
        v.option(
            "max_errors_per_DSN",
            "Most failed recipients listed in one DSN (also accepted directly in qmgr).",
            &mut self.max_errors_per_dsn,
        );
    }

    fn check(&self, c: &mut Checker<'_>) {
        if self.max_errors_per_dsn == 0 {
            c.error(
                &["max_errors_per_DSN"],
                "max_errors_per_DSN must be at least 1".into(),
            );
        }
    }
}

/// `IBDB { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IbdbConfig {
    /// Longest time between commits (group commit window).
    pub max_commit_delay: MicroTime,
    /// Size at which a file is rotated.
    pub size: Size,
    /// Open transactions that force a commit.
    pub max_open_tas: u32,
}

impl Default for IbdbConfig {
    fn default() -> Self {
        IbdbConfig {
            max_commit_delay: MicroTime(std::time::Duration::from_millis(2)),
            size: Size::mb(64),
            max_open_tas: 1024,
        }
    }
}

impl Section for IbdbConfig {
    fn visit(&mut self, v: &mut dyn Visitor) {
        v.option(
            "max_commit_delay",
            "Longest time between group commits (default unit: microseconds).",
            &mut self.max_commit_delay,
        );
        v.option(
            "size",
            "Size at which an IBDB file is rotated.",
            &mut self.size,
        );
        v.option(
            "max_open_TAs",
            "Number of open transactions that forces a commit.",
            &mut self.max_open_tas,
        );
    }

    fn check(&self, c: &mut Checker<'_>) {
        if self.size.0 < 64 * 1024 {
            c.error(
                &["size"],
                format!("IBDB size ({} bytes) must be at least 64KB", self.size.0),
            );
        }
        if self.max_open_tas == 0 {
            c.error(&["max_open_TAs"], "max_open_TAs must be at least 1".into());
        }
        if self.max_commit_delay.0 > std::time::Duration::from_secs(1) {
            c.error(
                &["max_commit_delay"],
                "max_commit_delay must be at most 1s".into(),
            );
        }
    }
}

/// `IQDB { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IqdbConfig {
    /// Maximum entries in the incoming queue cache.
    pub max_cache_entries: u32,
    /// Hash table size; larger than max_cache_entries.
    pub hash_table_entries: u32,
}

impl Default for IqdbConfig {
    fn default() -> Self {
        IqdbConfig {
            max_cache_entries: 16384,
            hash_table_entries: 32768,
        }
    }
}

impl Section for IqdbConfig {
    fn visit(&mut self, v: &mut dyn Visitor) {
        v.option(
            "max_cache_entries",
            "Maximum entries in the incoming queue; larger than all recipients of open transactions.",
            &mut self.max_cache_entries,
        );
        v.option(
            "hash_table_entries",
            "Size of the incoming queue's hash table; larger than max_cache_entries.",
            &mut self.hash_table_entries,
        );
    }

    fn check(&self, c: &mut Checker<'_>) {
        if self.hash_table_entries <= self.max_cache_entries {
            c.error(
                &["hash_table_entries"],
                format!(
                    "IQDB hash_table_entries ({}) must be larger than max_cache_entries ({})",
                    self.hash_table_entries, self.max_cache_entries
                ),
            );
        }
    }
}

conf_flags! {
    /// The lookup steps of seed 3.12.1.
    pub struct LookupFlags {
        /// Look up the full address.
        full_address: "full_address" | "full_adress" = true,
        /// Look up user++@domain.
        detail_plus: "detail_plus" = true,
        /// Look up user+*@domain.
        detail_star: "detail_star" = true,
        /// Look up user*@domain.
        star: "star" = true,
        /// Look up the domain part.
        domain: "domain" = true,
        /// Iterate through subdomains.
        dotsubdomain: "dotsubdomain" = true,
        /// Look up ".".
        dot: "dot" = true,
    }
}

conf_flags! {
    /// qmgr smtpc flags.
    pub struct QmgrSmtpcFlags {
        /// Look up recipient configuration (smtpc_rcpt_conf) in the access map.
        lookup_rcpt_conf: "lookup_rcpt_conf" = false,
        /// Look up session configuration (smtpc_session_conf) in qmgr_conf.
        lookup_session_conf: "lookup_session_conf" = false,
    }
}

/// `qmgr { smtpc { ... } }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QmgrSmtpc {
    /// Initial outgoing connections to one host (slow start window).
    pub initial_connections: u32,
    /// Maximum outgoing connections to one host.
    pub max_connections: u32,
    /// Recipients per LMTP transaction.
    pub lmtp_max_rcpts_per_transaction: u32,
    /// Recipients per SMTP transaction.
    pub smtp_max_rcpts_per_transaction: u32,
    /// Flags.
    pub flags: QmgrSmtpcFlags,
    /// Lookup steps for recipient configuration.
    pub rcpt_conf_lookup_flags: LookupFlags,
}

impl Default for QmgrSmtpc {
    fn default() -> Self {
        QmgrSmtpc {
            initial_connections: 10,
            max_connections: 100,
            lmtp_max_rcpts_per_transaction: 100,
            smtp_max_rcpts_per_transaction: 100,
            flags: QmgrSmtpcFlags::default(),
            rcpt_conf_lookup_flags: LookupFlags::default(),
        }
    }
}

impl Section for QmgrSmtpc {
    fn visit(&mut self, v: &mut dyn Visitor) {
        v.option(
            "initial_connections",
            "Initial number of concurrent connections to one host (slow start).",
            &mut self.initial_connections,
        );
        v.option(
            "max_connections",
            "Maximum number of concurrent connections to one host.",
            &mut self.max_connections,
        );
        v.option(
            "lmtp_max_rcpts_per_transaction",
            "Most recipients in one LMTP transaction.",
            &mut self.lmtp_max_rcpts_per_transaction,
        );
        v.option(
            "smtp_max_rcpts_per_transaction",
            "Most recipients in one SMTP transaction.",
            &mut self.smtp_max_rcpts_per_transaction,
        );
        v.option("flags", "Flags.", &mut self.flags);
        v.option(
            "rcpt_conf_lookup_flags",
            "Lookup steps for recipient configuration in the access map (default: all).",
            &mut self.rcpt_conf_lookup_flags,
        );
    }

    fn check(&self, c: &mut Checker<'_>) {
        if self.initial_connections == 0 || self.initial_connections > self.max_connections {
            c.error(
                &["initial_connections"],
                format!(
                    "initial_connections ({}) must be between 1 and max_connections ({})",
                    self.initial_connections, self.max_connections
                ),
            );
        }
        if self.lmtp_max_rcpts_per_transaction == 0 || self.smtp_max_rcpts_per_transaction == 0 {
            c.error(
                &["smtp_max_rcpts_per_transaction"],
                "recipients per transaction must be at least 1".into(),
            );
        }
    }
}

/// `qmgr { smtps { ... } }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QmgrSmtps {
    /// Incoming connections per 60 s from one host.
    pub max_connection_rate: u32,
    /// Open incoming connections from one host.
    pub max_connections: u32,
    /// Size of the connection-control cache.
    pub connection_control_cache_size: u32,
}

impl Default for QmgrSmtps {
    fn default() -> Self {
        QmgrSmtps {
            max_connection_rate: 100,
            max_connections: 100,
            connection_control_cache_size: 8192,
        }
    }
}

impl Section for QmgrSmtps {
    fn visit(&mut self, v: &mut dyn Visitor) {
        v.option(
            "max_connection_rate",
            "Maximum incoming connection rate from one host (per 60 s).",
            &mut self.max_connection_rate,
        );
        v.option(
            "max_connections",
            "Maximum open incoming connections from one host.",
            &mut self.max_connections,
        );
        v.option(
            "connection_control_cache_size",
            "Size of the connection-control cache.",
            &mut self.connection_control_cache_size,
        );
    }
}

conf_flags! {
    /// qmgr flags.
    pub struct QmgrFlags {
        /// Reuse open SMTP connections for delivery.
        reuse_connection: "reuse_connection" = true,
    }
}
