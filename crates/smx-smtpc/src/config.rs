//! The delivery agent's settings, taken from the `smtpc` configuration
//! section (seed 3.11, 8.6) plus what other sections decide (the host name,
//! qmgr's `reuse_connection` flag).
//!
//! # Timeouts
//!
//! Unless `io_timeout` is set, each step waits as long as RFC 5321 4.5.3.2
//! recommends: 5 minutes for the greeting, EHLO/HELO/LHLO, MAIL, RCPT,
//! RSET and QUIT; 2 minutes for the reply to DATA (and to each BDAT); 3
//! minutes for each block of content written; 10 minutes for the reply to
//! the final dot (or the last BDAT). A TCP or Unix connect waits 1 minute.
//! `io_timeout` replaces every one of these with its value.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use smx_conf::model::smtpc::SmtpcConfig;

use crate::tls::{TlsClient, TlsError, TlsRequirements};

/// How long each protocol step may take; see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Connecting.
    pub connect: Duration,
    /// The 220 greeting.
    pub greeting: Duration,
    /// EHLO, HELO, LHLO, RSET, QUIT and other small commands.
    pub command: Duration,
    /// MAIL FROM.
    pub mail: Duration,
    /// RCPT TO.
    pub rcpt: Duration,
    /// The reply to DATA (354) and to a non-last BDAT.
    pub data_init: Duration,
    /// Writing one block of content.
    pub data_block: Duration,
    /// The reply to the final dot or the last BDAT.
    pub data_final: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(60),
            greeting: Duration::from_secs(300),
            command: Duration::from_secs(300),
            mail: Duration::from_secs(300),
            rcpt: Duration::from_secs(300),
            data_init: Duration::from_secs(120),
            data_block: Duration::from_secs(180),
            data_final: Duration::from_secs(600),
        }
    }
}

impl Timeouts {
    /// Every step limited to `t` (`io_timeout`).
    pub fn uniform(t: Duration) -> Self {
        Timeouts {
            connect: t,
            greeting: t,
            command: t,
            mail: t,
            rcpt: t,
            data_init: t,
            data_block: t,
            data_final: t,
        }
    }
}

/// Everything the client needs to know besides the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Our host name: sent in EHLO/HELO/LHLO, compared with the peer's
    /// greeting (talk_to_myself).
    pub hostname: String,
    /// Per-step timeouts.
    pub timeouts: Timeouts,
    /// Port for targets that name none (`remote_port`).
    pub remote_port: u16,
    /// Connect to this address instead of any target (`connect_only_to`,
    /// testing); the port stays the target's.
    pub connect_only_to: Option<IpAddr>,
    /// The LMTP socket for destinations that name none (`LMTP_socket`).
    pub lmtp_socket: PathBuf,
    /// Read the reply to QUIT (`read_QUIT_reply`).
    pub read_quit_reply: bool,
    /// Send QUIT in its own packet after the final dot
    /// (`separate_final_dot_and_QUIT`).
    pub separate_final_dot_and_quit: bool,
    /// Talk to a peer that greets with our own host name (`talk_to_myself`).
    pub talk_to_myself: bool,
    /// Keep sessions open for later transactions (`reuse_connection`).
    pub reuse_connection: bool,
    /// Most idle sessions kept open, over all targets.
    pub max_idle_sessions: usize,
    /// How long an idle session is kept.
    pub idle_timeout: Duration,
    /// Most transactions sent over one session before it is closed.
    pub max_transactions_per_session: u32,
    /// Most deliveries in progress at once (`max_threads`).
    pub max_concurrent: usize,
    /// The process id part of session ids in the logs.
    pub process: u8,
    /// STARTTLS whenever offered (None: never); see [`crate::tls`].
    pub tls: Option<TlsClient>,
    /// What every TCP target requires of TLS (seed 3.13); nothing by
    /// default. Any requirement makes TLS mandatory.
    pub tls_requirements: TlsRequirements,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            hostname: "localhost".into(),
            timeouts: Timeouts::default(),
            remote_port: 25,
            connect_only_to: None,
            lmtp_socket: PathBuf::from("lmtpsock"),
            read_quit_reply: false,
            separate_final_dot_and_quit: false,
            talk_to_myself: false,
            reuse_connection: true,
            max_idle_sessions: 64,
            idle_timeout: Duration::from_secs(30),
            max_transactions_per_session: 100,
            max_concurrent: 1024,
            process: 1,
            tls: None,
            tls_requirements: TlsRequirements::default(),
        }
    }
}

impl ClientConfig {
    /// [`ClientConfig::from_conf`] plus the `tls` section's files (client
    /// certificate, CAs).
    pub fn load(
        conf: &SmtpcConfig,
        hostname: &str,
        reuse_connection: bool,
    ) -> Result<Self, TlsError> {
        let mut c = ClientConfig::from_conf(conf, hostname, reuse_connection);
        c.tls = Some(TlsClient::load(&conf.tls)?);
        Ok(c)
    }

    /// The settings of the `smtpc` section, with our `hostname` and qmgr's
    /// `reuse_connection` flag; opportunistic STARTTLS without reading the
    /// `tls` files (no client certificate, no CAs: see
    /// [`ClientConfig::load`]).
    pub fn from_conf(conf: &SmtpcConfig, hostname: &str, reuse_connection: bool) -> Self {
        let timeouts = match conf.io_timeout {
            Some(t) => Timeouts::uniform(t.0),
            None => Timeouts::default(),
        };
        ClientConfig {
            hostname: hostname.to_owned(),
            timeouts,
            remote_port: conf.remote_port,
            connect_only_to: conf.connect_only_to,
            lmtp_socket: conf.lmtp_socket.clone(),
            read_quit_reply: conf.flags.read_quit_reply,
            separate_final_dot_and_quit: conf.flags.separate_final_dot_and_quit,
            talk_to_myself: conf.flags.talk_to_myself,
            reuse_connection,
            max_concurrent: usize::try_from(conf.max_threads.max(1)).unwrap_or(1024),
            tls: TlsClient::opportunistic().ok(),
            ..ClientConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smx_conf::value::Time;

    #[test]
    fn rfc_5321_defaults_and_io_timeout_override() {
        let t = Timeouts::default();
        assert_eq!(t.greeting, Duration::from_secs(300));
        assert_eq!(t.mail, Duration::from_secs(300));
        assert_eq!(t.rcpt, Duration::from_secs(300));
        assert_eq!(t.data_init, Duration::from_secs(120));
        assert_eq!(t.data_block, Duration::from_secs(180));
        assert_eq!(t.data_final, Duration::from_secs(600));

        let mut conf = SmtpcConfig::default();
        let c = ClientConfig::from_conf(&conf, "mx.example.org", true);
        assert_eq!(c.timeouts, Timeouts::default());
        assert_eq!(c.remote_port, 25);
        assert!(!c.talk_to_myself && !c.read_quit_reply && !c.separate_final_dot_and_quit);

        conf.io_timeout = Some(Time::secs(7));
        conf.remote_port = 2525;
        conf.connect_only_to = Some("127.0.0.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0])));
        conf.flags.talk_to_myself = true;
        conf.flags.read_quit_reply = true;
        let c = ClientConfig::from_conf(&conf, "mx.example.org", false);
        assert_eq!(c.timeouts, Timeouts::uniform(Duration::from_secs(7)));
        assert_eq!(c.remote_port, 2525);
        assert_eq!(c.connect_only_to, Some(IpAddr::from([127, 0, 0, 1])));
        assert!(c.talk_to_myself && c.read_quit_reply && !c.reuse_connection);
        assert_eq!(c.hostname, "mx.example.org");
    }
}
