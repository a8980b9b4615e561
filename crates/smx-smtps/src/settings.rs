//! What a session needs from the configuration, in the types it uses
//! (durations, byte counts), plus the small pure helpers around it: the
//! greeting's metatags, the `sloppy_clients` patterns and the
//! `session_features` classes.
//!
//! # Session features (seed 3.10 item 22)
//!
//! A `session_features NAME { flags = { ... } }` class, chosen for a
//! client by its `smtps_session_conf:` entry (`session_feature=NAME;`),
//! changes the flags `starttls`, `auth`, `delay_checks`,
//! `allow_data_before_greeting`, `require_EHLO_before_MAIL`,
//! `strict_EHLO_checks` and `check_EHLO` for that session
//! ([`apply_features`]). Only the flags the class names change; the
//! others keep the server section's values, so `session_features notls {
//! flags = { -starttls } }` turns off STARTTLS and nothing else.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use smx_conf::model::smtps::{
    RequirementsViolation, SessionFeatureFlags, SmtpsConfig, SmtpsFlags, SyntaxMode,
};
use smx_proto::Syntax;

use crate::auth::{AuthError, AuthServer};
use crate::tls::{TlsError, TlsServer};

/// Settings of one SMTP server instance.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Our host name (greeting, Received:, identity checks).
    pub hostname: String,
    /// The instance id (0-255), part of session and transaction ids.
    pub id: u8,
    /// Greeting text template (see [`greeting`]).
    pub greeting: String,
    /// Extra HELP lines.
    pub help: Vec<String>,
    /// Flags.
    pub flags: SmtpsFlags,
    /// Syntax for clients not matched by `sloppy_clients`.
    pub syntax: Syntax,
    /// EHLO name patterns that get sloppy syntax.
    pub sloppy_clients: Vec<String>,
    /// Per-read and per-write timeout.
    pub io_timeout: Duration,
    /// Timeout of requests to qmgr.
    pub module_timeout: Duration,
    /// Timeout of requests to smar.
    pub wait_for_smar: Duration,
    /// Largest message in octets.
    pub max_message_size: u64,
    /// Limits of seed 3.10 items 10-16 and 20.
    pub limits: Limits,
    /// Tarpit: first delay, growth factor, longest delay.
    pub tarpit: (Duration, f64, Duration),
    /// Text appended to policy rejections.
    pub contact: Option<String>,
    /// Most concurrent sessions.
    pub max_sessions: u32,
    /// Open connections per client address.
    pub max_connections_per_ip: u32,
    /// Open connections in all.
    pub max_parallel_connections: u32,
    /// STARTTLS / implicit TLS, when the `tls` section is there and its
    /// files are loaded ([`Settings::load`]).
    pub tls: Option<TlsServer>,
    /// Implicit TLS (RFC 8314): the handshake starts at connect.
    pub implicit_tls: bool,
    /// SMTP AUTH, when the `auth` section is there and its password file
    /// is loaded ([`Settings::load`]).
    pub auth: Option<Arc<AuthServer>>,
    /// The `session_features` classes by name.
    pub session_features: Vec<(String, SessionFeatureFlags)>,
    /// What unmet `tls_requirements` do when the entry does not say
    /// (`tls { requirements_violation }`, `tempfail` without a `tls`
    /// section).
    pub requirements_violation: RequirementsViolation,
}

/// Why [`Settings::load`] failed.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The TLS files.
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    /// The AUTH password file.
    #[error("auth: {0}")]
    Auth(#[from] AuthError),
}

/// Per-session and per-transaction counters' limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bad commands per session.
    pub bad_commands_per_session: u32,
    /// Bad commands per transaction.
    pub bad_commands_per_transaction: u32,
    /// Invalid addresses per session.
    pub invalid_addresses_per_session: u32,
    /// Invalid addresses per transaction.
    pub invalid_addresses_per_transaction: u32,
    /// NOOP-like commands between transactions.
    pub nops_between_transactions: u32,
    /// NOOP-like commands in a transaction.
    pub nops_in_transaction: u32,
    /// Recipients per session.
    pub recipients_per_session: u32,
    /// Recipients per transaction.
    pub recipients_per_transaction: u32,
    /// Transactions per session.
    pub transactions: u32,
    /// Received: headers.
    pub hops: u32,
    /// Recipients with MAIL FROM:<>.
    pub error_recipients: u32,
}

impl Settings {
    /// Settings from a loaded configuration section, with the files it
    /// names (TLS certificates and keys) read.
    pub fn load(c: &SmtpsConfig, hostname: impl Into<String>) -> Result<Settings, SettingsError> {
        let mut s = Settings::from_config(c, hostname);
        if let Some(t) = &c.tls {
            s.tls = Some(TlsServer::load(t)?);
            s.implicit_tls = t.implicit;
        }
        if let Some(a) = &c.auth {
            s.auth = Some(Arc::new(AuthServer::load(a)?));
        }
        Ok(s)
    }

    /// Settings from a loaded configuration section without reading any
    /// file: no TLS and no AUTH (see [`Settings::load`]).
    pub fn from_config(c: &SmtpsConfig, hostname: impl Into<String>) -> Settings {
        let mut syntax = match c.syntax {
            SyntaxMode::Strict => Syntax::STRICT,
            SyntaxMode::Sloppy => Syntax::SLOPPY,
        };
        syntax.allow_source_route = c.allow_source_route;
        Settings {
            hostname: hostname.into(),
            id: c.id,
            greeting: c.greeting.clone(),
            help: c.help.clone(),
            flags: c.flags,
            syntax,
            sloppy_clients: c.sloppy_clients.clone(),
            io_timeout: c.io_timeout.0,
            module_timeout: c.module_timeout.0,
            wait_for_smar: c.wait_for_smar.0,
            max_message_size: c.max_message_size.0,
            limits: Limits {
                bad_commands_per_session: c.max_bad_commands_per_session,
                bad_commands_per_transaction: c.max_bad_commands_per_transaction,
                invalid_addresses_per_session: c.max_invalid_addresses_per_session,
                invalid_addresses_per_transaction: c.max_invalid_addresses_per_transaction,
                nops_between_transactions: c.max_nop_commands_between_transactions,
                nops_in_transaction: c.max_nop_commands_in_transaction,
                recipients_per_session: c.max_recipients_per_session,
                recipients_per_transaction: c.max_recipients_per_transaction,
                transactions: c.max_transactions,
                hops: c.max_hops,
                error_recipients: c.max_error_recipients,
            },
            tarpit: (c.tarpit.initial.0, c.tarpit.exponent, c.tarpit.max.0),
            contact: c.contact_pointer_message.clone(),
            max_sessions: c.max_threads,
            max_connections_per_ip: c.max_connections_per_ip,
            max_parallel_connections: c.max_parallel_connections,
            tls: None,
            implicit_tls: false,
            auth: None,
            session_features: c
                .session_features
                .iter()
                .filter_map(|n| Some((n.name.clone()?, n.body.flags)))
                .collect(),
            requirements_violation: c.tls.as_ref().map_or(RequirementsViolation::TempFail, |t| {
                t.requirements_violation
            }),
        }
    }

    /// The `session_features` class with this name (case-insensitive).
    pub fn session_feature(&self, name: &str) -> Option<&SessionFeatureFlags> {
        self.session_features
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, f)| f)
    }

    /// The syntax for a client that said EHLO/HELO `name`.
    pub fn syntax_for(&self, name: &str) -> Syntax {
        if self.sloppy_clients.iter().any(|p| glob_match(p, name)) {
            Syntax {
                strict: false,
                ..self.syntax
            }
        } else {
            self.syntax
        }
    }
}

/// Applies a `session_features` class to a session's flags: each flag the
/// class names explicitly takes the class's value; see the module doc.
pub fn apply_features(flags: &mut SmtpsFlags, class: &SessionFeatureFlags) {
    let pairs: [(&str, bool, &mut bool); 7] = [
        ("starttls", class.starttls, &mut flags.starttls),
        ("auth", class.auth, &mut flags.auth),
        ("delay_checks", class.delay_checks, &mut flags.delay_checks),
        (
            "allow_data_before_greeting",
            class.allow_data_before_greeting,
            &mut flags.allow_data_before_greeting,
        ),
        (
            "require_EHLO_before_MAIL",
            class.require_ehlo_before_mail,
            &mut flags.require_ehlo_before_mail,
        ),
        (
            "strict_EHLO_checks",
            class.strict_ehlo_checks,
            &mut flags.strict_ehlo_checks,
        ),
        ("check_EHLO", class.check_ehlo, &mut flags.check_ehlo),
    ];
    for (name, value, slot) in pairs {
        if class.explicitly_set(name) {
            *slot = value;
        }
    }
}

/// The greeting text with its metatags replaced: `%H` host name, `%V`
/// version, `%T` time (RFC 5322), `%i` client address, `%%` a percent
/// sign; any other `%x` stays as it is.
pub fn greeting(template: &str, hostname: &str, client: IpAddr, now: u64) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('H') => out.push_str(hostname),
            Some('V') => out.push_str(env!("CARGO_PKG_VERSION")),
            Some('T') => out.push_str(&crate::received::rfc5322_date(now)),
            Some('i') => out.push_str(&client.to_string()),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Shell-style pattern match, case-insensitive: `*` any run, `?` one
/// character. Iterative with one backtrack point, so linear-ish in time and
/// without recursion whatever the pattern.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let n: Vec<char> = name.to_lowercase().chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*.example.com", "mx.EXAMPLE.com"));
        assert!(!glob_match("*.example.com", "example.com"));
        assert!(glob_match("host?", "host1"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(glob_match("**x", "x"));
    }

    #[test]
    fn greeting_tags() {
        let g = greeting(
            "%H ESMTP %% %i %q",
            "mx.example",
            "192.0.2.1".parse().unwrap(),
            0,
        );
        assert_eq!(g, "mx.example ESMTP % 192.0.2.1 %q");
        assert!(greeting("%T", "h", "::1".parse().unwrap(), 0).starts_with("Thu, 01 Jan 1970"));
        assert_eq!(
            greeting("%V", "h", "::1".parse().unwrap(), 0),
            env!("CARGO_PKG_VERSION")
        );
    }

    #[test]
    fn session_feature_classes() {
        let c = smx_conf::load_str(
            "t",
            "smtps { flags = { delay_checks, check_EHLO }; \
             session_features notls { flags = { -starttls } } \
             session_features Strict { flags = { strict_EHLO_checks, -delay_checks, -auth, \
             allow_data_before_greeting, -require_EHLO_before_MAIL, -check_EHLO } } }",
        )
        .unwrap();
        let s = Settings::from_config(c.smtps.iter().next().map(|n| &n.body).unwrap(), "mx");
        assert_eq!(s.session_features.len(), 2);
        assert!(s.session_feature("NOTLS").is_some());
        assert!(s.session_feature("other").is_none());
        assert_eq!(s.requirements_violation, RequirementsViolation::TempFail);

        let mut f = s.flags;
        apply_features(&mut f, s.session_feature("notls").unwrap());
        assert!(!f.starttls);
        // Flags the class does not name keep the section's values.
        assert!(f.auth && f.delay_checks && f.check_ehlo && f.require_ehlo_before_mail);

        let mut f = s.flags;
        apply_features(&mut f, s.session_feature("strict").unwrap());
        assert!(f.starttls && !f.auth && !f.delay_checks && f.strict_ehlo_checks);
        assert!(f.allow_data_before_greeting && !f.require_ehlo_before_mail && !f.check_ehlo);
        // Other flags are not touched.
        assert_eq!(f.pipelining, s.flags.pipelining);
    }

    #[test]
    fn sloppy_clients() {
        let c = SmtpsConfig {
            sloppy_clients: vec!["*.broken.example".into()],
            ..SmtpsConfig::default()
        };
        let s = Settings::from_config(&c, "mx.example");
        assert!(s.syntax.strict);
        assert!(!s.syntax_for("pc.broken.example").strict);
        assert!(s.syntax_for("good.example").strict);
    }
}
