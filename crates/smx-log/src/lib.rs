//! smx-log: logging for every smx process, on `tracing`, in the MeTA1 line
//! format (seed 4.8, 10.3).
//!
//! # Line format
//!
//! Each event is one line of comma-separated `name=value` fields:
//!
//! ```text
//! 2026-11-21T07:05:00Z smtps[1234]: sev=INFO, ss_sess=S00000000407EAE3800, client_ipv4=127.0.0.1, msg=connected
//! ```
//!
//! The header (`TIMESTAMP component[pid]: `, RFC 3339 UTC) is written for
//! stderr and file destinations; syslog gets `<PRI>Mmm dd hh:mm:ss
//! ident[pid]: ` instead ([`syslog`]). The body starts with `sev=` (`ERR`,
//! `WARN`, `INFO`, `DEBUG`, `TRACE`), then the fields of the enclosing spans,
//! then the event's fields, then `msg=` ([`SmxLayer`]). Every value is
//! encoded with [`encode_value`]: non-printable bytes, `,` and `%` become
//! `%XX`, so a line can be split on `,` safely whatever a peer sent.
//!
//! # Verbosity
//!
//! MeTA1's `log_level` is an integer; larger logs more (9 is recommended
//! for normal operation, 12 to 14 for testing; seed 3.5). [`level_filter`]
//! maps it to the most verbose tracing level written:
//!
//! | `log_level` | events written        |
//! |-------------|-----------------------|
//! | 0           | none                  |
//! | 1–3         | ERROR                 |
//! | 4–7         | WARN and above        |
//! | 8–11        | INFO and above        |
//! | 12–13       | DEBUG and above       |
//! | 14 and more | everything (TRACE)    |
//!
//! # Destinations
//!
//! [`Destination::Stderr`] (what mcp redirects to `PROG.log`),
//! [`Destination::File`] (append mode, created with mode 0640 if missing,
//! reopened by [`LogHandle::reopen`] for rotation on SIGUSR2, seed 4.8.1), or
//! [`Destination::Syslog`] (datagrams to `/dev/log`; facility and openlog
//! options from the `log` configuration section, seed 3.5). If the syslog
//! socket or the file cannot take a line, the line goes to stderr and one
//! warning line says why; logging never panics and never blocks for long.
//!
//! # Errors
//!
//! Setting up returns [`LogError`]: a file that cannot be opened, an
//! unknown facility or option name, or a second global initialisation.
//! Failures while writing lines are not reported to the caller (there is
//! nowhere to report them); they fall back to stderr as above.

mod encode;
mod layer;
mod sink;
pub mod syslog;
mod time;

use std::io;
use std::path::PathBuf;
use std::sync::Mutex;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;

pub use encode::encode_value;
pub use layer::SmxLayer;
pub use sink::LogHandle;
pub use syslog::{DEFAULT_SYSLOG_SOCKET, Facility, SyslogOption};

use sink::{Sink, Target};

/// How one process logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// Name in the line header, e.g. `smtps`.
    pub component: String,
    /// MeTA1 `log_level`; see [`level_filter`].
    pub level: u32,
    /// Where lines go.
    pub destination: Destination,
}

/// Where log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Standard error.
    Stderr,
    /// A file, opened in append mode and created if missing.
    File(PathBuf),
    /// The local syslog daemon.
    Syslog {
        /// Facility, e.g. [`Facility::Mail`].
        facility: Facility,
        /// openlog(3) ident; empty means the component name.
        ident: String,
        /// openlog(3) options; see [`syslog`] for which have an effect.
        options: Vec<SyslogOption>,
        /// Socket path, normally [`DEFAULT_SYSLOG_SOCKET`].
        socket: PathBuf,
    },
}

/// Errors from setting up logging.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The log file cannot be opened (missing directory, permissions). At
    /// start-up this is fatal for the process; from [`LogHandle::reopen`] the
    /// old file is still in use.
    #[error("cannot open log file {path}: {source}")]
    Open {
        /// The log file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// [`LogHandle::reopen`] could not reconnect to the syslog socket; lines
    /// go to stderr until a later send or reopen succeeds.
    #[error("cannot connect to syslog socket {path}: {source}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A facility name that syslog(3) does not define; a configuration error.
    #[error("unknown syslog facility {name:?}")]
    UnknownFacility {
        /// The name as given.
        name: String,
    },
    /// An openlog(3) option name that is not known; a configuration error.
    #[error("unknown syslog option {name:?}")]
    UnknownOption {
        /// The name as given.
        name: String,
    },
    /// [`init`] was called when a global subscriber was already installed.
    #[error("a global tracing subscriber is already installed")]
    AlreadyInitialised,
}

/// Maps MeTA1's `log_level` to the most verbose level that is written; see
/// the crate documentation for the table.
pub fn level_filter(log_level: u32) -> LevelFilter {
    match log_level {
        0 => LevelFilter::OFF,
        1..=3 => LevelFilter::ERROR,
        4..=7 => LevelFilter::WARN,
        8..=11 => LevelFilter::INFO,
        12..=13 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

/// Builds the layer for `settings` without installing it, plus a handle for
/// [`LogHandle::reopen`]. Use this to combine it with other layers or to
/// install it with `tracing::subscriber::with_default` in tests.
///
/// A syslog socket that cannot be reached is not an error: a warning goes to
/// stderr and lines follow it there until the socket accepts them.
pub fn layer(settings: &LogSettings) -> Result<(SmxLayer, LogHandle), LogError> {
    let component = settings.component.clone();
    let mut unreachable = None;
    let target = match &settings.destination {
        Destination::Stderr => Target::Stderr,
        Destination::File(path) => Target::File {
            path: path.clone(),
            file: Mutex::new(sink::open_log_file(path)?),
        },
        Destination::Syslog {
            facility,
            ident,
            options,
            socket,
        } => {
            let ident = if ident.is_empty() {
                component.clone()
            } else {
                ident.clone()
            };
            let (client, err) =
                syslog::SyslogClient::new(*facility, ident, options, socket.clone());
            unreachable = err.map(|e| (socket, e));
            Target::Syslog(client)
        }
    };
    let layer = SmxLayer::new(Sink::new(target, component), settings.level);
    if let Some((socket, err)) = unreachable {
        layer.sink().fall_back(layer.now(), "syslog", socket, &err);
    }
    let handle = layer.handle();
    Ok((layer, handle))
}

/// Builds the layer for `settings` and installs it as the process-wide
/// default subscriber. Call once, early in `main`.
pub fn init(settings: &LogSettings) -> Result<LogHandle, LogError> {
    let (layer, handle) = layer(settings)?;
    let subscriber = tracing_subscriber::registry::Registry::default().with(layer);
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|_| LogError::AlreadyInitialised)?;
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_table() {
        let cases = [
            (0, LevelFilter::OFF),
            (1, LevelFilter::ERROR),
            (3, LevelFilter::ERROR),
            (4, LevelFilter::WARN),
            (7, LevelFilter::WARN),
            (8, LevelFilter::INFO),
            (9, LevelFilter::INFO),
            (11, LevelFilter::INFO),
            (12, LevelFilter::DEBUG),
            (13, LevelFilter::DEBUG),
            (14, LevelFilter::TRACE),
            (u32::MAX, LevelFilter::TRACE),
        ];
        for (level, want) in cases {
            assert_eq!(level_filter(level), want, "log_level {level}");
        }
    }
}
