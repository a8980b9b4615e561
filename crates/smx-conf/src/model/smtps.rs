//! The `smtps` section: the SMTP server (seed 3.10, 3.10.2, 8.5) and the
//! receive-side options taken from ZMailer's smtpserver (seed 002).
//!
//! Several `smtps NAME { ... }` sections define several servers (for
//! example MTA on port 25 and MSA on 587); each has a unique `id`.

use super::common::{
    ClientSocket, ListenSocket, LogConfig, McpOptions, StartAction, TlsFiles, check_nonzero_time,
};
use crate::conf_enum;
use crate::conf_flags;
use crate::schema::{Checker, Naming, Repeated, Section, Visitor};
use crate::value::{KbSize, Time, Words};
use std::path::PathBuf;

/// Most daemon addresses (seed: SS_MAX_BIND_ADDRS).
pub const MAX_DAEMON_ADDRESSES: usize = 16;
/// Most session feature classes.
pub const MAX_SESSION_FEATURES: usize = 64;
/// Most SMTP server instances.
pub const MAX_SMTPS_INSTANCES: usize = 16;

conf_flags! {
    /// SMTP server flags (seed 3.10 item 3, 8.5 item 2; extensions for the
    /// ESMTP keywords, as ZMailer's No*/...-OK parameters).
    pub struct SmtpsFlags {
        /// Offer 8BITMIME.
        eight_bit_mime: "8bitmime" = true,
        /// Use the access map (in smar).
        access: "access" = false,
        /// Delay rejections until RCPT.
        delay_checks: "delay_checks" = false,
        /// Report greylisting only at DATA.
        delay_greylisting_error_until_data: "delay_greylisting_error_until_DATA" = false,
        /// Simple greylisting (client address).
        greylisting: "greylisting" = false,
        /// Full greylisting (address, sender, recipient).
        fullgreylisting: "fullgreylisting" = false,
        /// Look up smtps_rcpt_conf for each recipient.
        rcpt_conf: "rcpt_conf" = false,
        /// lmtp: domains do not imply relaying.
        lmtp_does_not_imply_relaying: "lmtp_does_not_imply_relaying" = false,
        /// Turn 5xx replies into 4xx (testing).
        soft_bounce: "soft_bounce" = false,
        /// Require EHLO or HELO before MAIL.
        require_ehlo_before_mail: "require_EHLO_before_MAIL" = true,
        /// Strict syntax check of the EHLO/HELO argument.
        strict_ehlo_checks: "strict_EHLO_checks" = false,
        /// Offer XVERP.
        xverp: "xverp" = false,
        /// Allow data sent before the greeting.
        allow_data_before_greeting: "allow_data_before_greeting" = false,
        /// Offer PRDR.
        prdr: "prdr" = false,
        /// Look up smtps_session_conf in the access map.
        lookup_session_conf: "lookup_session_conf" = false,
        /// Look up the EHLO argument in the access map (tag ehlo:).
        check_ehlo: "check_EHLO" = false,
        /// Offer STARTTLS (when tls is configured).
        starttls: "starttls" = true,
        /// Offer AUTH (when auth is configured).
        auth: "auth" = true,
        /// Offer PIPELINING.
        pipelining: "pipelining" = true,
        /// Offer CHUNKING (BDAT).
        chunking: "chunking" = true,
        /// Offer DSN.
        dsn: "dsn" = true,
        /// Offer SMTPUTF8.
        smtputf8: "smtputf8" = true,
        /// Offer ENHANCEDSTATUSCODES.
        enhancedstatuscodes: "enhancedstatuscodes" = true,
        /// Offer ETRN.
        etrn: "etrn" = true,
        /// Offer DELIVERBY.
        deliverby: "deliverby" = true,
        /// Answer VRFY.
        vrfy: "vrfy" = false,
        /// Answer EXPN.
        expn: "expn" = false,
        /// Fork after start; not used (mcp supervises).
        background: "background" = false,
        /// Serialize accept(2); not needed.
        serialize_accept: "serialize_accept" = false,
    }
}

conf_enum! {
    /// SMTP syntax strictness (seed 6.3.1; ZMailer -s strict / sloppy).
    pub enum SyntaxMode {
        /// RFC 5321 syntax only: angle brackets, no space after the colon, CRLF.
        Strict = "strict",
        /// Accept common deviations (missing brackets, space after the colon).
        Sloppy = "sloppy",
    }
}

conf_enum! {
    /// What happens when TLS requirements are violated (seed 3.10 item 21h).
    pub enum RequirementsViolation {
        /// Permanent failure (5xx).
        PermFail = "permfail",
        /// Temporary failure (4xx).
        TempFail = "tempfail",
        /// Abort the session.
        Abort = "abort",
    }
}

/// `smtps [NAME] { ... }`.
#[derive(Debug, Clone, PartialEq)]
pub struct SmtpsConfig {
    /// How MCP starts this server.
    pub mcp: McpOptions,
    /// Logging.
    pub log: LogConfig,
    /// Logging level.
    pub log_level: u32,
    /// AUTH options.
    pub auth: Option<AuthConfig>,
    /// Group of CDB files.
    pub cdb_gid: Option<u32>,
    /// Flags.
    pub flags: SmtpsFlags,
    /// Unique server id (0..255), part of session ids.
    pub id: u8,
    /// Timeout of SMTP operations.
    pub io_timeout: Time,
    /// Maximum concurrent sessions handled by one process.
    pub max_threads: u32,
    /// Bad commands per session before 421.
    pub max_bad_commands_per_session: u32,
    /// Invalid addresses per session before 421.
    pub max_invalid_addresses_per_session: u32,
    /// NOOP-like commands between transactions before 421.
    pub max_nop_commands_between_transactions: u32,
    /// Bad commands per transaction before 421.
    pub max_bad_commands_per_transaction: u32,
    /// NOOP-like commands in one transaction before 421.
    pub max_nop_commands_in_transaction: u32,
    /// Invalid addresses per transaction before 421.
    pub max_invalid_addresses_per_transaction: u32,
    /// Recipients per session.
    pub max_recipients_per_session: u32,
    /// Recipients per transaction.
    pub max_recipients_per_transaction: u32,
    /// Received: headers before a mail is refused as looping.
    pub max_hops: u32,
    /// Largest message accepted.
    pub max_message_size: KbSize,
    /// Policy milter.
    pub policy_milter: Option<PolicyMilterConfig>,
    /// Processes to start.
    pub processes: u32,
    /// Protected recipients.
    pub protected_recipients: Option<ProtectedRecipients>,
    /// Transactions per session.
    pub max_transactions: u32,
    /// STARTTLS options.
    pub tls: Option<SmtpsTls>,
    /// Session feature classes.
    pub session_features: Repeated<SessionFeatures>,
    /// Addresses to listen on without MCP (host:port, :port, host).
    pub daemon_address: Vec<String>,
    /// listen(2) backlog.
    pub listen_queue: u32,
    /// Maximum idle sessions waiting (compatibility).
    pub max_wait_threads: u32,
    /// Minimum idle sessions waiting (compatibility).
    pub min_wait_threads: u32,
    /// Timeout of messages to other components.
    pub module_timeout: Time,
    /// Longest wait for a reply from smar.
    pub wait_for_smar: Time,
    /// Greeting text after `220 hostname`.
    pub greeting: String,
    /// Text added to HELP replies.
    pub help: Vec<String>,
    /// Strict or sloppy SMTP syntax.
    pub syntax: SyntaxMode,
    /// Clients (EHLO patterns) with their own syntax mode.
    pub sloppy_clients: Vec<String>,
    /// Keep source routes in paths instead of stripping them.
    pub allow_source_route: bool,
    /// Open connections from one IP address (ZMailer MaxSameIpSource).
    pub max_connections_per_ip: u32,
    /// Open connections in all (ZMailer MaxParallelConnections).
    pub max_parallel_connections: u32,
    /// Recipients allowed with MAIL FROM:<>.
    pub max_error_recipients: u32,
    /// Delay before replies after errors.
    pub tarpit: TarpitConfig,
    /// Text appended to rejections (ZMailer contact-pointer-message).
    pub contact_pointer_message: Option<String>,
}

impl Default for SmtpsConfig {
    fn default() -> Self {
        let mut mcp = McpOptions::new(StartAction::Pass);
        mcp.listen_socket = Some(ListenSocket::inet(None, 25));
        mcp.pass_fd_socket = Some(PathBuf::from("smtps/smtpsfd"));
        SmtpsConfig {
            mcp,
            log: LogConfig::default(),
            log_level: 9,
            auth: None,
            cdb_gid: None,
            flags: SmtpsFlags::default(),
            id: 0,
            io_timeout: Time::mins(5),
            max_threads: 1024,
            max_bad_commands_per_session: 20,
            max_invalid_addresses_per_session: 50,
            max_nop_commands_between_transactions: 20,
            max_bad_commands_per_transaction: 10,
            max_nop_commands_in_transaction: 20,
            max_invalid_addresses_per_transaction: 20,
            max_recipients_per_session: 10_000,
            max_recipients_per_transaction: 1000,
            max_hops: 50,
            max_message_size: KbSize::mb(50),
            policy_milter: None,
            processes: 1,
            protected_recipients: None,
            max_transactions: 1000,
            tls: None,
            session_features: Repeated::new(Naming::Required, MAX_SESSION_FEATURES),
            daemon_address: Vec::new(),
            listen_queue: 1024,
            max_wait_threads: 64,
            min_wait_threads: 4,
            module_timeout: Time::secs(60),
            wait_for_smar: Time::secs(60),
            greeting: "ESMTP".into(),
            help: Vec::new(),
            syntax: SyntaxMode::Strict,
            sloppy_clients: Vec::new(),
            allow_source_route: false,
            max_connections_per_ip: 20,
            max_parallel_connections: 800,
            max_error_recipients: 3,
            tarpit: TarpitConfig::default(),
            contact_pointer_message: None,
        }
    }
}

impl Section for SmtpsConfig {
    fn visit(&mut self, v: &mut dyn Visitor) {
        self.mcp.visit(v);
        v.section("log", "Logging (seed 3.5).", &mut self.log);
        v.option("log_level", "Amount of logging.", &mut self.log_level);
        v.optional("auth", "SMTP AUTH (seed 3.10 item 1).", &mut self.auth);
        v.option(
            "CDB_gid",
            "Numeric group id for CDB content files.",
            &mut self.cdb_gid,
        );
        v.option("flags", "SMTP server flags.", &mut self.flags);
        v.option(
            "id",
            "Unique identifier of this SMTP server (0-255); part of its session ids.",
            &mut self.id,
        );
        v.option(
            "io_timeout",
            "Timeout for SMTP operations.",
            &mut self.io_timeout,
        );
        v.option(
            "max_threads",
            "Maximum concurrent sessions in one process.",
            &mut self.max_threads,
        );
        v.option(
            "max_bad_commands_per_session",
            "Bad (unknown) commands per session; then 421 and close.",
            &mut self.max_bad_commands_per_session,
        );
        v.option(
            "max_invalid_addresses_per_session",
            "Invalid RCPT addresses per session; then 421 and close.",
            &mut self.max_invalid_addresses_per_session,
        );
        v.option(
            "max_nop_commands_between_transactions",
            "NOOP, RSET and similar commands between two transactions; then 421 and close.",
            &mut self.max_nop_commands_between_transactions,
        );
        v.option(
            "max_bad_commands_per_transaction",
            "Bad commands per transaction; then 421 and close.",
            &mut self.max_bad_commands_per_transaction,
        );
        v.option(
            "max_nop_commands_in_transaction",
            "NOOP and similar commands in one transaction; then 421 and close.",
            &mut self.max_nop_commands_in_transaction,
        );
        v.option(
            "max_invalid_addresses_per_transaction",
            "Invalid RCPT addresses per transaction; then 421 and close.",
            &mut self.max_invalid_addresses_per_transaction,
        );
        v.option(
            "max_recipients_per_session",
            "Recipients per session.",
            &mut self.max_recipients_per_session,
        );
        v.option(
            "max_recipients_per_transaction",
            "Recipients per transaction (at least 100, RFC 5321 4.5.3.1.8).",
            &mut self.max_recipients_per_transaction,
        );
        v.option(
            "max_hops",
            "Received: headers above which a mail is refused as a probable loop.",
            &mut self.max_hops,
        );
        v.option(
            "max_message_size",
            "Largest message accepted (default unit KB).",
            &mut self.max_message_size,
        );
        v.optional(
            "policy_milter",
            "Policy milter (seed 3.10 item 17, chapter 5).",
            &mut self.policy_milter,
        );
        v.option(
            "processes",
            "Number of processes to start.",
            &mut self.processes,
        );
        v.optional(
            "protected_recipients",
            "Restrict who may send to some recipients (seed 3.10.3).",
            &mut self.protected_recipients,
        );
        v.option(
            "max_transactions",
            "Transactions per session.",
            &mut self.max_transactions,
        );
        v.optional("tls", "STARTTLS (seed 3.10 item 21).", &mut self.tls);
        v.repeated(
            "session_features",
            "A class of session features, referred to by smtps_session_conf entries in the access map.",
            &mut self.session_features,
        );
        v.option(
            "daemon_address",
            "Addresses to listen on when not started by MCP with a passed socket: host:port, :port or host (port 8000); at most 16.",
            &mut self.daemon_address,
        );
        v.option(
            "listen_queue",
            "listen(2) backlog for daemon_address sockets.",
            &mut self.listen_queue,
        );
        v.option(
            "max_wait_threads",
            "Accepted for compatibility; sessions are async tasks.",
            &mut self.max_wait_threads,
        );
        v.option(
            "min_wait_threads",
            "Accepted for compatibility; sessions are async tasks.",
            &mut self.min_wait_threads,
        );
        v.option(
            "module_timeout",
            "Timeout for messages to other components.",
            &mut self.module_timeout,
        );
        v.option(
            "wait_for_smar",
            "Longest wait for a reply from smar.",
            &mut self.wait_for_smar,
        );
        v.option(
            "greeting",
            "Text of the 220 greeting after the host name; %H host name, %V version, %T time, %i client address, %% percent.",
            &mut self.greeting,
        );
        v.option("help", "Lines added to the reply to HELP.", &mut self.help);
        v.option(
            "syntax",
            "strict (RFC 5321 only) or sloppy SMTP syntax.",
            &mut self.syntax,
        );
        v.option(
            "sloppy_clients",
            "EHLO/HELO name patterns (shell globs) for which sloppy syntax is accepted.",
            &mut self.sloppy_clients,
        );
        v.option(
            "allow_source_route",
            "Keep source routes (<@a,@b:user@c>) instead of stripping them.",
            &mut self.allow_source_route,
        );
        v.option(
            "max_connections_per_ip",
            "Open connections from one IP address; beyond it 450 and close, silent close beyond 4 times it.",
            &mut self.max_connections_per_ip,
        );
        v.option(
            "max_parallel_connections",
            "Open connections in all; beyond it 450 and close.",
            &mut self.max_parallel_connections,
        );
        v.option(
            "max_error_recipients",
            "Recipients allowed in a transaction with MAIL FROM:<>.",
            &mut self.max_error_recipients,
        );
        v.section(
            "tarpit",
            "Slow down replies to misbehaving clients.",
            &mut self.tarpit,
        );
        v.option(
            "contact_pointer_message",
            "Text appended to rejections, e.g. a pointer to the local policy.",
            &mut self.contact_pointer_message,
        );
    }

    fn check(&self, c: &mut Checker<'_>) {
        self.mcp.check(c);
        if !self.daemon_address.is_empty() {
            // The seed: only one of daemon_address and pass_fd_socket. In
            // smx the start_action says whether mcp passes a socket, so the
            // rule is stated on it.
            if self.mcp.start_action != StartAction::Wait {
                c.error(
                    &["daemon_address"],
                    format!(
                        "set only one of daemon_address and pass_fd_socket: with daemon_address \
                         smtps listens itself, so start_action must be wait (found {})",
                        self.mcp.start_action.as_str()
                    ),
                );
            }
            if self.daemon_address.len() > MAX_DAEMON_ADDRESSES {
                c.error(
                    &["daemon_address"],
                    format!("at most {MAX_DAEMON_ADDRESSES} daemon addresses are allowed"),
                );
            }
            for a in &self.daemon_address {
                if let Err(e) = parse_daemon_address(a) {
                    c.error(&["daemon_address"], e);
                }
            }
        }
        if self.max_recipients_per_transaction < 100 {
            c.error(
                &["max_recipients_per_transaction"],
                format!(
                    "max_recipients_per_transaction ({}) must be at least 100 (RFC 5321 4.5.3.1.8)",
                    self.max_recipients_per_transaction
                ),
            );
        }
        if self.max_recipients_per_session < self.max_recipients_per_transaction {
            c.error(
                &["max_recipients_per_session"],
                "max_recipients_per_session must not be smaller than max_recipients_per_transaction".into(),
            );
        }
        if self.max_message_size.0 < 64 * 1024 {
            c.error(
                &["max_message_size"],
                "max_message_size must be at least 64KB".into(),
            );
        }
        if self.cdb_gid == Some(u32::MAX) {
            // chown(2) reads -1 as "leave the group alone".
            c.error(&["CDB_gid"], "CDB_gid 4294967295 is not a group id".into());
        }
        if self.max_hops == 0 {
            c.error(&["max_hops"], "max_hops must be at least 1".into());
        }
        check_nonzero_time(c, "io_timeout", self.io_timeout);
        if self.max_connections_per_ip == 0 || self.max_parallel_connections == 0 {
            c.error(
                &["max_parallel_connections"],
                "connection limits must be at least 1".into(),
            );
        }
        if self.processes == 0 {
            c.error(&["processes"], "processes must be at least 1".into());
        }
        if self.greeting.contains(['\r', '\n']) {
            c.error(&["greeting"], "greeting must be one line".into());
        }
        if self.help.iter().any(|l| l.contains(['\r', '\n'])) {
            c.error(&["help"], "help lines must not contain line breaks".into());
        }
        if (self.flags.greylisting || self.flags.fullgreylisting) && !self.flags.access {
            // The seed requires the access map for greylisting decisions.
            c.error(&["flags"], "greylisting needs the access flag".into());
        }
    }
}

/// Parses a daemon address: `host:port`, `:port`, `host` (port 8000),
/// `[ipv6]:port`. Returns (host or None for all addresses, port).
pub fn parse_daemon_address(a: &str) -> Result<(Option<std::net::IpAddr>, u16), String> {
    let bad = || {
        format!(
            "daemon_address '{}' is not host:port, :port or host",
            a.escape_debug()
        )
    };
    let (host, port) = if let Some(rest) = a.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(bad)?;
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => return Err(bad()),
        }
    } else if a.matches(':').count() > 1 {
        (a, None)
    } else {
        match a.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (a, None),
        }
    };
    let port = match port {
        Some(p) => p.parse::<u16>().map_err(|_| bad())?,
        None => 8000,
    };
    if port == 0 {
        return Err(bad());
    }
    let host = if host.is_empty() {
        None
    } else {
        Some(host.parse().map_err(|_| bad())?)
    };
    Ok((host, port))
}

conf_flags! {
    /// SASL flags (seed 3.10 item 1a).
    pub struct AuthFlags {
        /// No mechanisms that send plain text passwords.
        noplaintext: "noplaintext" = false,
        /// No mechanisms open to active attacks.
        noactive: "noactive" = false,
        /// No mechanisms open to dictionary attacks.
        nodictionary: "nodictionary" = false,
        /// Only mechanisms with forward secrecy.
        forward_secrecy: "forward_secrecy" = false,
        /// No anonymous login.
        noanonymous: "noanonymous" = true,
        /// Only mechanisms that pass credentials.
        pass_credentials: "pass_credentials" = false,
        /// Only mechanisms with mutual authentication.
        mutual_auth: "mutual_auth" = false,
        /// Offer AUTH also without TLS (ZMailer AUTH-LOGIN-also-without-TLS).
        allow_plaintext_without_tls: "allow_without_tls" = false,
        /// Require AUTH before MAIL (message submission).
        require: "require" = false,
    }
}

/// `auth { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Flags.
    pub flags: AuthFlags,
    /// Mechanisms that grant relaying after success.
    pub trusted_mechanisms: Words,
    /// Mechanisms offered.
    pub mechanisms: Words,
    /// Password file (user:hash lines).
    pub password_file: Option<PathBuf>,
    /// Dovecot auth socket.
    pub dovecot_socket: Option<PathBuf>,
    /// Failed attempts per client IP per hour before AUTH always fails.
    pub fail_rate: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            flags: AuthFlags::default(),
            trusted_mechanisms: Words::default(),
            mechanisms: Words(
                ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256"]
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect(),
            ),
            password_file: None,
            dovecot_socket: None,
            fail_rate: 20,
        }
    }
}

/// SASL mechanisms smx knows.
pub const MECHANISMS: &[&str] = &["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256", "DIGEST-MD5"];

impl Section for AuthConfig {
    fn visit(&mut self, v: &mut dyn Visitor) {
        v.option("flags", "AUTH flags.", &mut self.flags);
        v.option(
            "trusted_mechanisms",
            "Mechanisms for which a successful login allows relaying.",
            &mut self.trusted_mechanisms,
        );
        v.option("mechanisms", "Mechanisms offered.", &mut self.mechanisms);
        v.option(
            "password_file",
            "File of user:hash lines (argon2id, sha512-crypt, yescrypt).",
            &mut self.password_file,
        );
        v.option(
            "dovecot_socket",
            "Dovecot auth socket used instead of a password file.",
            &mut self.dovecot_socket,
        );
        v.option(
            "fail_rate",
            "Failed AUTH attempts per client address per hour; beyond it AUTH fails.",
            &mut self.fail_rate,
        );
    }

    fn check(&self, c: &mut Checker<'_>) {
        for m in self
            .mechanisms
            .0
            .iter()
            .chain(self.trusted_mechanisms.0.iter())
        {
            if !MECHANISMS.iter().any(|k| k.eq_ignore_ascii_case(m)) {
                c.error(
                    &["mechanisms"],
                    format!(
                        "unknown SASL mechanism '{}' (known: {})",
                        m.escape_debug(),
                        MECHANISMS.join(" ")
                    ),
                );
            }
        }
        if self.password_file.is_some() && self.dovecot_socket.is_some() {
            c.error(
                &["dovecot_socket"],
                "set only one of password_file and dovecot_socket".into(),
            );
        }
    }
}

conf_flags! {
    /// Policy milter flags.
    pub struct MilterFlags {
        /// Abort the session with 421 if the milter is unreachable.
        abort: "abort" = false,
        /// Go on but reconnect for the next session.
        accept_but_reconnect: "accept_but_reconnect" = false,
    }
}

/// `policy_milter { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyMilterConfig {
    /// Where the milter listens.
    pub socket: ClientSocket,
    /// Longest wait for a reply.
    pub timeout: Time,
    /// Flags.
    pub flags: MilterFlags,
}

impl Default for PolicyMilterConfig {
    fn default() -> Self {
        PolicyMilterConfig {
            socket: ClientSocket::default(),
            timeout: Time::secs(60),
            flags: MilterFlags::default(),
        }
    }
}

impl Section for PolicyMilterConfig {
    fn visit(&mut self, v: &mut dyn Visitor) {
        v.section("socket", "Where the milter listens.", &mut self.socket);
        v.option(
            "timeout",
            "Longest wait for a milter reply.",
            &mut self.timeout,
        );
        v.option(
            "flags",
            "What to do when the milter is unreachable.",
            &mut self.flags,
        );
    }
}

conf_flags! {
    /// What protected recipients may be allowed by.
    pub struct AllowBy {
        /// The envelope sender.
        sender: "sender" = false,
        /// The client IP address.
        client_ip: "client_ip" = false,
    }
}

conf_enum! {
    /// How protected-recipient restrictions are matched.
    pub enum MatchType {
        /// Exact matches.
        Exact = "exact",
        /// The lookup steps of seed 3.12.1.
        GenericLookup = "generic_lookup",
        /// Lookup steps plus implicit +detail matching.
        ImplicitlyMatchDetail = "implicitly_match_detail",
    }
}

/// `protected_recipients { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedRecipients {
    /// What a restriction may allow by.
    pub allow_by: AllowBy,
    /// How restrictions are matched.
    pub match_type: MatchType,
}

impl Default for ProtectedRecipients {
    fn default() -> Self {
        ProtectedRecipients {
            allow_by: AllowBy::default(),
            match_type: MatchType::Exact,
        }
    }
}

impl Section for ProtectedRecipients {
    fn visit(&mut self, v: &mut dyn Visitor) {
        v.option(
            "allow_by",
            "sender and/or client_ip (at least one).",
            &mut self.allow_by,
        );
        v.option(
            "match_type",
            "exact, generic_lookup or implicitly_match_detail.",
            &mut self.match_type,
        );
    }

    fn check(&self, c: &mut Checker<'_>) {
        if !self.allow_by.sender && !self.allow_by.client_ip {
            c.error(
                &["allow_by"],
                "protected_recipients needs allow_by with sender and/or client_ip".into(),
            );
        }
    }
}

conf_flags! {
    /// Server TLS flags.
    pub struct SmtpsTlsFlags {
        /// A verified client certificate allows relaying.
        allow_relaying_if_verified: "allow_relaying_if_verified" = false,
        /// Look up certissuer:/certsubject: for relaying.
        check_access_map_for_relaying: "check_access_map_for_relaying" = false,
        /// Ask clients for a certificate.
        ask_cert: "ask_cert" = true,
    }
}

/// `tls { ... }` in smtps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpsTls {
    /// Certificate files.
    pub files: TlsFiles,
    /// Session cache entry lifetime.
    pub cache_timeout: Time,
    /// Flags.
    pub flags: SmtpsTlsFlags,
    /// Handling of requirement violations.
    pub requirements_violation: RequirementsViolation,
    /// Implicit TLS: the handshake starts at connect (port 465).
    pub implicit: bool,
}

impl Default for SmtpsTls {
    fn default() -> Self {
        SmtpsTls {
            files: TlsFiles::default(),
            cache_timeout: Time::hours(1),
            flags: SmtpsTlsFlags::default(),
            requirements_violation: RequirementsViolation::TempFail,
            implicit: false,
        }
    }
}

impl Section for SmtpsTls {
    fn visit(&mut self, v: &mut dyn Visitor) {
        self.files.visit(v);
        v.option(
            "cache_timeout",
            "Lifetime of TLS session cache entries.",
            &mut self.cache_timeout,
        );
        v.option("flags", "TLS flags.", &mut self.flags);
        v.option(
            "requirements_violation",
            "permfail, tempfail or abort when tls_requirements are not met.",
            &mut self.requirements_violation,
        );
        v.option(
            "implicit",
            "Implicit TLS (RFC 8314, port 465): the handshake starts at connect.",
            &mut self.implicit,
        );
    }

    fn check(&self, c: &mut Checker<'_>) {
        self.files.check(c);
        if self.files.cert_file.is_none() {
            c.error(&["cert_file"], "tls needs cert_file and key_file".into());
        }
    }
}

conf_flags! {
    /// Features that a session class can change.
    pub struct SessionFeatureFlags {
        /// Offer STARTTLS.
        starttls: "starttls" = true,
        /// Offer AUTH.
        auth: "auth" = true,
        /// Delay checks to RCPT.
        delay_checks: "delay_checks" = false,
        /// Allow data before the greeting.
        allow_data_before_greeting: "allow_data_before_greeting" = false,
        /// Require EHLO before MAIL.
        require_ehlo_before_mail: "require_EHLO_before_MAIL" = true,
        /// Strict EHLO checks.
        strict_ehlo_checks: "strict_EHLO_checks" = false,
        /// Look up the EHLO argument.
        check_ehlo: "check_EHLO" = false,
    }
}

/// `session_features NAME { ... }`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionFeatures {
    /// Flags.
    pub flags: SessionFeatureFlags,
}

impl Section for SessionFeatures {
    fn visit(&mut self, v: &mut dyn Visitor) {
        v.option("flags", "Session features.", &mut self.flags);
    }
}

/// `tarpit { ... }`: next = prev + prev * exponent, capped at max.
#[derive(Debug, Clone, PartialEq)]
pub struct TarpitConfig {
    /// First delay (0 turns the tarpit off).
    pub initial: Time,
    /// Growth factor.
    pub exponent: f64,
    /// Longest delay.
    pub max: Time,
}

impl Default for TarpitConfig {
    fn default() -> Self {
        TarpitConfig {
            initial: Time::secs(0),
            exponent: 0.1,
            max: Time::mins(5),
        }
    }
}

impl Section for TarpitConfig {
    fn visit(&mut self, v: &mut dyn Visitor) {
        v.option(
            "initial",
            "First delay; 0 turns the tarpit off.",
            &mut self.initial,
        );
        v.option(
            "exponent",
            "Growth factor: next = prev + prev * exponent.",
            &mut self.exponent,
        );
        v.option("max", "Longest delay.", &mut self.max);
    }

    fn check(&self, c: &mut Checker<'_>) {
        if self.exponent > 100.0 {
            c.error(&["exponent"], "exponent must be at most 100".into());
        }
        if self.initial > self.max {
            c.error(&["initial"], "initial must not be larger than max".into());
        }
        if self.max > Time::mins(10) {
            c.error(
                &["max"],
                "max must be at most 10m (clients time out)".into(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_daemon_address;

    #[test]
    fn daemon_addresses() {
        assert_eq!(
            parse_daemon_address("127.0.0.1:2525"),
            Ok((Some([127, 0, 0, 1].into()), 2525))
        );
        assert_eq!(parse_daemon_address(":25"), Ok((None, 25)));
        assert_eq!(
            parse_daemon_address("10.0.0.1"),
            Ok((Some([10, 0, 0, 1].into()), 8000))
        );
        assert!(parse_daemon_address("[::1]:25").is_ok_and(|(h, p)| h.is_some() && p == 25));
        for bad in [
            "x:25",
            "1.2.3.4:0",
            "1.2.3.4:99999",
            "[::1",
            "1.2.3.4:",
            "[::1]x",
        ] {
            assert!(parse_daemon_address(bad).is_err(), "{bad}");
        }
    }
}
