//! The `smtpc` section: the delivery agent (seed 3.11, 8.6).

use super::common::{LogConfig, McpOptions, StartAction, TlsFiles, check_nonzero_time};
use crate::conf_flags;
use crate::schema::{Checker, Section, Visitor};
use crate::value::Time;
use std::net::IpAddr;
use std::path::PathBuf;

conf_flags! {
    /// SMTP client flags (seed 8.6 item 3).
    pub struct SmtpcFlags {
        /// Read the reply to QUIT instead of closing right after sending it.
        read_quit_reply: "read_QUIT_reply" = false,
        /// Send the final dot and QUIT in separate packets.
        separate_final_dot_and_quit: "separate_final_dot_and_QUIT" = false,
        /// Do not refuse a server that greets with our own host name.
        talk_to_myself: "talk_to_myself" = false,
    }
}

/// `smtpc { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpcConfig {
    /// How MCP starts the delivery agent.
    pub mcp: McpOptions,
    /// Logging.
    pub log: LogConfig,
    /// Logging level.
    pub log_level: u32,
    /// Timeout of SMTP operations; unset: the RFC 5321 4.5.3.2 per-command
    /// timeouts.
    pub io_timeout: Option<Time>,
    /// Unix socket for LMTP delivery.
    pub lmtp_socket: PathBuf,
    /// STARTTLS client files.
    pub tls: TlsFiles,
    /// Longest wait for qmgr.
    pub wait_for_server: Time,
    /// Send all mail to this address (testing).
    pub connect_only_to: Option<IpAddr>,
    /// Debug level.
    pub debug_level: u32,
    /// Flags.
    pub flags: SmtpcFlags,
    /// Compatibility.
    pub max_wait_threads: u32,
    /// Compatibility.
    pub min_wait_threads: u32,
    /// Timeout for messages to qmgr.
    pub module_timeout: Time,
    /// Port to connect to.
    pub remote_port: u16,
    /// Maximum concurrent outgoing sessions in one process.
    pub max_threads: u32,
}

impl Default for SmtpcConfig {
    fn default() -> Self {
        SmtpcConfig {
            mcp: McpOptions::new(StartAction::Wait),
            log: LogConfig::default(),
            log_level: 9,
            io_timeout: None,
            lmtp_socket: PathBuf::from("lmtpsock"),
            tls: TlsFiles::default(),
            wait_for_server: Time::secs(30),
            connect_only_to: None,
            debug_level: 0,
            flags: SmtpcFlags::default(),
            max_wait_threads: 64,
            min_wait_threads: 4,
            module_timeout: Time::secs(60),
            remote_port: 25,
            max_threads: 1024,
        }
    }
}

/// Wrapper so the TLS file options form a `tls { ... }` subsection.
impl Section for TlsFiles {
    fn visit(&mut self, v: &mut dyn Visitor) {
        TlsFiles::visit(self, v);
    }
    fn check(&self, c: &mut Checker<'_>) {
        TlsFiles::check(self, c);
    }
}

impl Section for SmtpcConfig {
    fn visit(&mut self, v: &mut dyn Visitor) {
        self.mcp.visit(v);
        v.section("log", "Logging (seed 3.5).", &mut self.log);
        v.option("log_level", "Amount of logging.", &mut self.log_level);
        v.option(
            "io_timeout",
            "Timeout for every SMTP operation; unset: the RFC 5321 4.5.3.2 timeouts per command.",
            &mut self.io_timeout,
        );
        v.option(
            "LMTP_socket",
            "Unix socket for LMTP delivery (mailertable lmtp:), relative to the queue directory.",
            &mut self.lmtp_socket,
        );
        v.section(
            "tls",
            "STARTTLS client certificate and CA files.",
            &mut self.tls,
        );
        v.option(
            "wait_for_server",
            "Longest wait for qmgr to become available.",
            &mut self.wait_for_server,
        );
        v.option(
            "connect_only_to",
            "Send all SMTP mail to this address instead of the real destination (testing).",
            &mut self.connect_only_to,
        );
        v.option("debug_level", "Debug level.", &mut self.debug_level);
        v.option("flags", "SMTP client flags.", &mut self.flags);
        v.option(
            "max_wait_threads",
            "Accepted for compatibility.",
            &mut self.max_wait_threads,
        );
        v.option(
            "min_wait_threads",
            "Accepted for compatibility.",
            &mut self.min_wait_threads,
        );
        v.option(
            "module_timeout",
            "Timeout for messages to qmgr.",
            &mut self.module_timeout,
        );
        v.option(
            "remote_port",
            "Port to connect to for SMTP.",
            &mut self.remote_port,
        );
        v.option(
            "max_threads",
            "Maximum concurrent outgoing sessions in one process.",
            &mut self.max_threads,
        );
    }

    fn check(&self, c: &mut Checker<'_>) {
        self.mcp.check(c);
        if let Some(t) = self.io_timeout {
            check_nonzero_time(c, "io_timeout", t);
        }
        if self.remote_port == 0 {
            c.error(&["remote_port"], "remote_port must not be 0".into());
        }
    }
}
