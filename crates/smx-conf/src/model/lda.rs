//! The `lda` section: the built-in local delivery agent, an LMTP server
//! that delivers into Maildir (the seeds' procmail-over-LMTP slot).

use super::common::{ListenSocket, LogConfig, McpOptions, StartAction};
use crate::schema::{Checker, Section, Visitor};
use std::path::PathBuf;

/// `lda { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdaConfig {
    /// Whether mcp starts the local delivery agent.
    pub enabled: bool,
    /// How MCP starts it.
    pub mcp: McpOptions,
    /// Logging.
    pub log: LogConfig,
    /// Logging level.
    pub log_level: u32,
    /// Base directory of mailboxes: `<mail_directory>/<user>/Maildir`.
    pub mail_directory: PathBuf,
    /// Name of a declared smar map of valid local users; unset: every local
    /// part that is a valid user name.
    pub local_user_map: Option<String>,
    /// Largest message delivered.
    pub max_message_size: crate::value::KbSize,
}

impl Default for LdaConfig {
    fn default() -> Self {
        let mut mcp = McpOptions::new(StartAction::Pass);
        mcp.listen_socket = Some(ListenSocket::unix("lmtpsock"));
        mcp.pass_fd_socket = Some(PathBuf::from("lda/ldafd"));
        LdaConfig {
            enabled: true,
            mcp,
            log: LogConfig::default(),
            log_level: 9,
            mail_directory: PathBuf::from("mail"),
            local_user_map: None,
            max_message_size: crate::value::KbSize::mb(50),
        }
    }
}

impl Section for LdaConfig {
    fn visit(&mut self, v: &mut dyn Visitor) {
        v.option(
            "enabled",
            "Whether mcp starts the built-in local delivery agent.",
            &mut self.enabled,
        );
        self.mcp.visit(v);
        v.section("log", "Logging (seed 3.5).", &mut self.log);
        v.option("log_level", "Amount of logging.", &mut self.log_level);
        v.option(
            "mail_directory",
            "Base directory of mailboxes, relative to the queue directory: <mail_directory>/<user>/Maildir.",
            &mut self.mail_directory,
        );
        v.option(
            "local_user_map",
            "Name of a declared smar map of valid local users.",
            &mut self.local_user_map,
        );
        v.option(
            "max_message_size",
            "Largest message delivered (default unit KB).",
            &mut self.max_message_size,
        );
    }

    fn check(&self, c: &mut Checker<'_>) {
        self.mcp.check(c);
    }
}
