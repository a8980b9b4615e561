//! The syslog destination: facility and option names as in syslog(3), and
//! a client that sends RFC 3164-style datagrams to the local syslog socket.
//!
//! Each event becomes one datagram `<PRI>Mmm dd hh:mm:ss ident[pid]: line`
//! (without `[pid]` unless the `pid` option is set), where
//! `PRI = facility * 8 + severity` and severity is ERR (3) for `ERROR`,
//! WARNING (4) for `WARN`, INFO (6) for `INFO` and DEBUG (7) for `DEBUG` and
//! `TRACE`. The socket is an unbound [`UnixDatagram`] connected to the
//! configured path (normally [`DEFAULT_SYSLOG_SOCKET`]).
//!
//! Option names from the `log { options = ... }` configuration (seed 3.5)
//! are accepted in any case, without the `LOG_` prefix:
//!
//! | option   | effect in smx                                                  |
//! |----------|----------------------------------------------------------------|
//! | `pid`    | honoured: `[pid]` follows the ident                            |
//! | `perror` | honoured: every line is also written to stderr                 |
//! | `ndelay` | honoured: the socket is always connected when logging starts   |
//! | `odelay` | accepted, no effect (smx always connects at once, to warn early)|
//! | `cons`   | accepted; when syslog is unreachable lines go to stderr, not to the console |
//! | `nowait` | accepted, no effect (obsolete in syslog(3) too)                |
//!
//! Sending never blocks for long: the socket has a one-second write timeout.
//! A failed send is retried once on a fresh connection (syslogd may have
//! restarted); if that fails too, the caller writes the line to stderr.
//!
//! Unknown facility or option names are [`LogError`] values; send failures
//! are `io::Error`s handed to the sink, which falls back to stderr.

use std::fmt;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tracing::Level;

use crate::LogError;

/// The usual path of the local syslog socket.
pub const DEFAULT_SYSLOG_SOCKET: &str = "/dev/log";

/// How long one datagram may wait for room in the socket buffer.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// A syslog facility, as named in syslog(3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Facility {
    /// `kern` (0).
    Kern,
    /// `user` (1).
    User,
    /// `mail` (2).
    Mail,
    /// `daemon` (3).
    Daemon,
    /// `auth` (4).
    Auth,
    /// `syslog` (5).
    Syslog,
    /// `lpr` (6).
    Lpr,
    /// `news` (7).
    News,
    /// `uucp` (8).
    Uucp,
    /// `cron` (9).
    Cron,
    /// `authpriv` (10).
    Authpriv,
    /// `ftp` (11).
    Ftp,
    /// `local0` (16).
    Local0,
    /// `local1` (17).
    Local1,
    /// `local2` (18).
    Local2,
    /// `local3` (19).
    Local3,
    /// `local4` (20).
    Local4,
    /// `local5` (21).
    Local5,
    /// `local6` (22).
    Local6,
    /// `local7` (23).
    Local7,
}

impl Facility {
    /// Every facility, in code order.
    pub const ALL: [Facility; 20] = [
        Facility::Kern,
        Facility::User,
        Facility::Mail,
        Facility::Daemon,
        Facility::Auth,
        Facility::Syslog,
        Facility::Lpr,
        Facility::News,
        Facility::Uucp,
        Facility::Cron,
        Facility::Authpriv,
        Facility::Ftp,
        Facility::Local0,
        Facility::Local1,
        Facility::Local2,
        Facility::Local3,
        Facility::Local4,
        Facility::Local5,
        Facility::Local6,
        Facility::Local7,
    ];

    /// The facility number (`LOG_MAIL >> 3` is 2).
    pub fn code(self) -> u8 {
        match self {
            Facility::Kern => 0,
            Facility::User => 1,
            Facility::Mail => 2,
            Facility::Daemon => 3,
            Facility::Auth => 4,
            Facility::Syslog => 5,
            Facility::Lpr => 6,
            Facility::News => 7,
            Facility::Uucp => 8,
            Facility::Cron => 9,
            Facility::Authpriv => 10,
            Facility::Ftp => 11,
            Facility::Local0 => 16,
            Facility::Local1 => 17,
            Facility::Local2 => 18,
            Facility::Local3 => 19,
            Facility::Local4 => 20,
            Facility::Local5 => 21,
            Facility::Local6 => 22,
            Facility::Local7 => 23,
        }
    }

    /// The syslog(3) name, lower case.
    pub fn name(self) -> &'static str {
        match self {
            Facility::Kern => "kern",
            Facility::User => "user",
            Facility::Mail => "mail",
            Facility::Daemon => "daemon",
            Facility::Auth => "auth",
            Facility::Syslog => "syslog",
            Facility::Lpr => "lpr",
            Facility::News => "news",
            Facility::Uucp => "uucp",
            Facility::Cron => "cron",
            Facility::Authpriv => "authpriv",
            Facility::Ftp => "ftp",
            Facility::Local0 => "local0",
            Facility::Local1 => "local1",
            Facility::Local2 => "local2",
            Facility::Local3 => "local3",
            Facility::Local4 => "local4",
            Facility::Local5 => "local5",
            Facility::Local6 => "local6",
            Facility::Local7 => "local7",
        }
    }
}

impl fmt::Display for Facility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Facility {
    type Err = LogError;

    /// Parses a syslog(3) facility name, ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self, LogError> {
        Facility::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| LogError::UnknownFacility { name: s.to_owned() })
    }
}

/// An openlog(3) option, named without the `LOG_` prefix. See the module
/// documentation for which ones have an effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyslogOption {
    /// `pid`: put the process id after the ident.
    Pid,
    /// `cons`: accepted; the fallback is stderr, not the console.
    Cons,
    /// `ndelay`: connect at once (smx always does).
    Ndelay,
    /// `odelay`: accepted, no effect.
    Odelay,
    /// `nowait`: accepted, no effect.
    Nowait,
    /// `perror`: also write each line to stderr.
    Perror,
}

impl SyslogOption {
    /// Every option.
    pub const ALL: [SyslogOption; 6] = [
        SyslogOption::Pid,
        SyslogOption::Cons,
        SyslogOption::Ndelay,
        SyslogOption::Odelay,
        SyslogOption::Nowait,
        SyslogOption::Perror,
    ];

    /// The openlog(3) name without `LOG_`, lower case.
    pub fn name(self) -> &'static str {
        match self {
            SyslogOption::Pid => "pid",
            SyslogOption::Cons => "cons",
            SyslogOption::Ndelay => "ndelay",
            SyslogOption::Odelay => "odelay",
            SyslogOption::Nowait => "nowait",
            SyslogOption::Perror => "perror",
        }
    }
}

impl fmt::Display for SyslogOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SyslogOption {
    type Err = LogError;

    /// Parses an openlog(3) option name, ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self, LogError> {
        SyslogOption::ALL
            .into_iter()
            .find(|o| o.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| LogError::UnknownOption { name: s.to_owned() })
    }
}

/// Syslog severity for a tracing level.
pub(crate) fn severity(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// A connection to the syslog socket.
#[derive(Debug)]
pub(crate) struct SyslogClient {
    facility: Facility,
    ident: String,
    with_pid: bool,
    pub(crate) perror: bool,
    path: PathBuf,
    socket: Mutex<Option<UnixDatagram>>,
}

impl SyslogClient {
    /// Builds a client and tries to connect; the connection error, if any,
    /// is returned alongside so the caller can warn and fall back.
    pub(crate) fn new(
        facility: Facility,
        ident: String,
        options: &[SyslogOption],
        path: PathBuf,
    ) -> (SyslogClient, Option<io::Error>) {
        let (socket, err) = match connect(&path) {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(e)),
        };
        let client = SyslogClient {
            facility,
            ident,
            with_pid: options.contains(&SyslogOption::Pid),
            perror: options.contains(&SyslogOption::Perror),
            path,
            socket: Mutex::new(socket),
        };
        (client, err)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Formats and sends one line; on failure reconnects and tries once more.
    pub(crate) fn send(&self, level: Level, now: u64, pid: u32, line: &str) -> io::Result<()> {
        let pri = u32::from(self.facility.code()) * 8 + u32::from(severity(level));
        let stamp = crate::time::rfc3164(now);
        let datagram = if self.with_pid {
            format!("<{pri}>{stamp} {}[{pid}]: {line}", self.ident)
        } else {
            format!("<{pri}>{stamp} {}: {line}", self.ident)
        };
        // The socket is only replaced under the lock; a panic elsewhere
        // cannot leave it half-replaced, so a poisoned lock is usable.
        let mut socket = self.socket.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = socket.as_ref()
            && s.send(datagram.as_bytes()).is_ok()
        {
            return Ok(());
        }
        *socket = None;
        let s = connect(&self.path)?;
        let sent = s.send(datagram.as_bytes());
        *socket = Some(s);
        sent.map(|_| ())
    }

    /// Drops the connection and connects again.
    pub(crate) fn reconnect(&self) -> io::Result<()> {
        let mut socket = self.socket.lock().unwrap_or_else(PoisonError::into_inner);
        *socket = None;
        *socket = Some(connect(&self.path)?);
        Ok(())
    }
}

fn connect(path: &Path) -> io::Result<UnixDatagram> {
    let s = UnixDatagram::unbound()?;
    s.set_write_timeout(Some(SEND_TIMEOUT))?;
    s.connect(path)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facility_names_and_codes() {
        // Codes from <syslog.h>: LOG_KERN (0<<3) .. LOG_FTP (11<<3),
        // LOG_LOCAL0 (16<<3) .. LOG_LOCAL7 (23<<3).
        let want_codes = [
            0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 16, 17, 18, 19, 20, 21, 22, 23,
        ];
        for (f, code) in Facility::ALL.into_iter().zip(want_codes) {
            assert_eq!(f.code(), code, "{f}");
            assert_eq!(f.name().parse::<Facility>().unwrap(), f);
            assert_eq!(f.name().to_uppercase().parse::<Facility>().unwrap(), f);
            assert_eq!(f.to_string(), f.name());
        }
        assert_eq!("mail".parse::<Facility>().unwrap(), Facility::Mail);
        assert_eq!("local0".parse::<Facility>().unwrap(), Facility::Local0);
    }

    #[test]
    fn unknown_facility_is_an_error() {
        for bad in ["", "local8", "LOG_MAIL", "mail ", "localo"] {
            let err = bad.parse::<Facility>().unwrap_err();
            assert!(
                matches!(&err, LogError::UnknownFacility { name } if name == bad),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn option_names() {
        let cases = [
            ("pid", SyslogOption::Pid),
            ("PID", SyslogOption::Pid),
            ("ndelay", SyslogOption::Ndelay),
            ("cons", SyslogOption::Cons),
            ("odelay", SyslogOption::Odelay),
            ("nowait", SyslogOption::Nowait),
            ("perror", SyslogOption::Perror),
        ];
        for (name, want) in cases {
            assert_eq!(name.parse::<SyslogOption>().unwrap(), want);
        }
        for o in SyslogOption::ALL {
            assert_eq!(o.to_string().parse::<SyslogOption>().unwrap(), o);
        }
        assert!(matches!(
            "nodelay".parse::<SyslogOption>(),
            Err(LogError::UnknownOption { .. })
        ));
    }

    #[test]
    fn severities() {
        let cases = [
            (Level::ERROR, 3),
            (Level::WARN, 4),
            (Level::INFO, 6),
            (Level::DEBUG, 7),
            (Level::TRACE, 7),
        ];
        for (level, want) in cases {
            assert_eq!(severity(level), want, "{level}");
        }
    }
}
