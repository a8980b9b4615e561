//! The typed configuration: global options (seed 3.4) and one section per
//! component, with every default compiled in.
//!
//! A file only needs the options that differ from the defaults; an empty
//! file is a valid configuration. Names are case-insensitive. Rules that
//! span sections (unique smtps ids, restart dependencies that exist, the
//! active queue larger than any transaction) are checked in
//! [`Config::check`](crate::schema::Section::check).

pub mod common;
pub mod lda;
pub mod qmgr;
pub mod smar;
pub mod smtpc;
pub mod smtps;

use crate::schema::{Checker, Named, Naming, Repeated, Section, Visitor};
use common::{McpOptions, StartAction};
use std::path::PathBuf;

/// Most `service` sections.
pub const MAX_SERVICES: usize = 64;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Host name used in greetings, Received: headers and DSNs; unset: the
    /// system's host name.
    pub hostname: Option<String>,
    /// The queue directory; the components run in it and relative paths of
    /// queue files and sockets are below it.
    pub queue_directory: PathBuf,
    /// Base directory of CDB (empty: the queue directory).
    pub cdb_base_directory: String,
    /// smar's socket.
    pub smar_socket: PathBuf,
    /// Socket between smtpc and qmgr.
    pub smtpc_socket: PathBuf,
    /// Socket between smtps and qmgr.
    pub smtps_socket: PathBuf,
    /// The queue manager.
    pub qmgr: qmgr::QmgrConfig,
    /// The address resolver.
    pub smar: smar::SmarConfig,
    /// The SMTP servers (one by default).
    pub smtps: Repeated<smtps::SmtpsConfig>,
    /// The delivery agent.
    pub smtpc: smtpc::SmtpcConfig,
    /// The local delivery agent.
    pub lda: lda::LdaConfig,
    /// Other programs started by mcp.
    pub services: Repeated<ServiceConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hostname: None,
            queue_directory: PathBuf::from("/var/spool/smx"),
            cdb_base_directory: String::new(),
            smar_socket: PathBuf::from("qmsmar/smarsock"),
            smtpc_socket: PathBuf::from("qmsmtpc/smtpcsock"),
            smtps_socket: PathBuf::from("qmsmtps/smtpssock"),
            qmgr: qmgr::QmgrConfig::default(),
            smar: smar::SmarConfig::default(),
            smtps: Repeated::with(
                Naming::Optional,
                smtps::MAX_SMTPS_INSTANCES,
                vec![Named {
                    name: None,
                    body: smtps::SmtpsConfig::default(),
                }],
            ),
            smtpc: smtpc::SmtpcConfig::default(),
            lda: lda::LdaConfig::default(),
            services: Repeated::new(Naming::Required, MAX_SERVICES),
        }
    }
}

impl Section for Config {
    fn visit(&mut self, v: &mut dyn Visitor) {
        v.option(
            "hostname",
            "Host name for greetings, Received: headers and DSNs; default: the system's fully qualified host name.",
            &mut self.hostname,
        );
        v.option(
            "queue_directory",
            "The queue directory: components run in it; relative paths of queue files and sockets are below it.",
            &mut self.queue_directory,
        );
        v.option(
            "CDB_base_directory",
            "Base directory of the content database (CDB); empty: the queue directory. With a value, end it with '/'.",
            &mut self.cdb_base_directory,
        );
        v.option(
            "SMAR_socket",
            "Socket of the address resolver.",
            &mut self.smar_socket,
        );
        v.option(
            "SMTPC_socket",
            "Socket between the delivery agent and qmgr.",
            &mut self.smtpc_socket,
        );
        v.option(
            "SMTPS_socket",
            "Socket between the SMTP server and qmgr.",
            &mut self.smtps_socket,
        );
        v.section("qmgr", "The queue manager (seed 3.8, 8.3).", &mut self.qmgr);
        v.section(
            "smar",
            "The address resolver (seed 3.9, 8.4).",
            &mut self.smar,
        );
        v.repeated(
            "smtps",
            "An SMTP server (seed 3.10, 8.5); several named sections define several servers.",
            &mut self.smtps,
        );
        v.section(
            "smtpc",
            "The delivery agent (seed 3.11, 8.6).",
            &mut self.smtpc,
        );
        v.section(
            "lda",
            "The built-in local delivery agent (LMTP to Maildir).",
            &mut self.lda,
        );
        v.repeated(
            "service",
            "Another program started by mcp (seed 3.3).",
            &mut self.services,
        );
    }

    fn check(&self, c: &mut Checker<'_>) {
        if let Some(h) = &self.hostname
            && !valid_hostname(h)
        {
            c.error(
                &["hostname"],
                format!("hostname '{}' is not a valid domain name", h.escape_debug()),
            );
        }
        if !self.cdb_base_directory.is_empty() && !self.cdb_base_directory.ends_with('/') {
            c.error(
                &["CDB_base_directory"],
                "CDB_base_directory must end with '/' (the subdirectory names are appended)".into(),
            );
        }
        if self.smtps.items.is_empty() {
            c.error(&["smtps"], "at least one smtps section is needed".into());
        }
        let mut ids: Vec<(u8, usize)> = Vec::new();
        for (i, s) in self.smtps.iter().enumerate() {
            let part = format!("smtps#{i}");
            if let Some((_, j)) = ids.iter().find(|(id, _)| *id == s.body.id) {
                c.error(
                    &[&part, "id"],
                    format!(
                        "smtps id {} is used by two servers ({} and {}); each needs a unique id",
                        s.body.id,
                        describe(&self.smtps.items[*j].name),
                        describe(&s.name)
                    ),
                );
            }
            ids.push((s.body.id, i));
            let aq = self.qmgr.aq_max_entries;
            if aq <= s.body.max_recipients_per_transaction {
                c.error(
                    &["qmgr", "AQ_max_entries"],
                    format!(
                        "qmgr AQ_max_entries ({aq}) must be larger than max_recipients_per_transaction ({}) of {}",
                        s.body.max_recipients_per_transaction,
                        describe(&s.name)
                    ),
                );
            }
            if (s.body.flags.greylisting || s.body.flags.fullgreylisting)
                && self.smar.greylisting.is_none()
            {
                c.error(
                    &[&part, "flags"],
                    "greylisting in smtps needs a greylisting section in smar".into(),
                );
            }
        }
        // restart_dependencies name components or services.
        let known = |n: &str| {
            ["qmgr", "smar", "smtpc", "smtps", "lda"]
                .iter()
                .any(|k| k.eq_ignore_ascii_case(n))
                || self.smtps.get(n).is_some()
                || self.services.get(n).is_some()
        };
        let mut deps: Vec<(String, &McpOptions)> = vec![
            ("qmgr".into(), &self.qmgr.mcp),
            ("smar".into(), &self.smar.mcp),
            ("smtpc".into(), &self.smtpc.mcp),
            ("lda".into(), &self.lda.mcp),
        ];
        for (i, s) in self.smtps.iter().enumerate() {
            deps.push((format!("smtps#{i}"), &s.body.mcp));
        }
        for (i, s) in self.services.iter().enumerate() {
            deps.push((format!("service#{i}"), &s.body.mcp));
        }
        for (part, mcp) in deps {
            for d in &mcp.restart_dependencies {
                if !known(d) {
                    c.error(
                        &[&part, "restart_dependencies"],
                        format!(
                            "restart_dependencies names '{}', which is not a component or service",
                            d.escape_debug()
                        ),
                    );
                }
            }
        }
        if let Some(m) = &self.lda.local_user_map
            && self.smar.maps.get(m).is_none()
        {
            c.error(
                &["lda", "local_user_map"],
                format!("map '{}' is not declared in smar", m.escape_debug()),
            );
        }
    }
}

fn describe(name: &Option<String>) -> String {
    match name {
        Some(n) => format!("smtps {n}"),
        None => "the unnamed smtps".into(),
    }
}

/// Whether `h` is a syntactically valid domain name (RFC 1035 letters,
/// digits, hyphens; 63-octet labels; 253 in all).
pub fn valid_hostname(h: &str) -> bool {
    let h = h.strip_suffix('.').unwrap_or(h);
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// `service NAME { ... }`: another program started by mcp, e.g. an
/// external LMTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    /// MCP options; path and arguments are required.
    pub mcp: McpOptions,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            mcp: McpOptions::new(StartAction::Wait),
        }
    }
}

impl Section for ServiceConfig {
    fn visit(&mut self, v: &mut dyn Visitor) {
        self.mcp.visit(v);
    }

    fn check(&self, c: &mut Checker<'_>) {
        self.mcp.check(c);
        if self.mcp.path.is_none() || self.mcp.arguments.is_none() {
            c.error(
                &["path"],
                format!("{}: a service needs path and arguments", c.section_desc()),
            );
        }
    }
}
