//! Where formatted lines go: stderr, an append-mode file that can be
//! reopened for rotation, syslog, or (for tests) any writer.
//!
//! The layer hands each sink a level, the time and the line body
//! (`sev=..., field=value, ...`); the sink adds the header. Local
//! destinations get `TIMESTAMP component[pid]: ` (RFC 3339 UTC); syslog gets
//! its own header (see [`crate::syslog`]).
//!
//! A logger has nowhere to report its own failures, so write errors are not
//! returned: when the file or syslog cannot take a line, the line is written
//! to stderr instead, and the first such failure also writes one warning
//! line (in the same format) saying why. Only [`LogHandle::reopen`] returns
//! an error, because someone (the SIGUSR2 handler) is there to act on it.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tracing::Level;

use crate::LogError;
use crate::encode_value;
use crate::syslog::SyslogClient;

/// Handle on the log destination, for the signal handler: [`reopen`]
/// rotates a log file. Cheap to clone.
///
/// [`reopen`]: LogHandle::reopen
#[derive(Debug, Clone)]
pub struct LogHandle {
    pub(crate) sink: Arc<Sink>,
}

impl LogHandle {
    /// Reopens the destination (seed 4.8.1, SIGUSR2).
    ///
    /// For a file, opens the path again (creating it if it was renamed away)
    /// and switches to it; on error the old file stays in use. For syslog,
    /// reconnects the socket. For stderr and writers, does nothing.
    pub fn reopen(&self) -> Result<(), LogError> {
        match &self.sink.target {
            Target::File { path, file } => {
                let new = open_log_file(path)?;
                *file.lock().unwrap_or_else(PoisonError::into_inner) = new;
                Ok(())
            }
            Target::Syslog(client) => client.reconnect().map_err(|source| LogError::Connect {
                path: client.path().to_path_buf(),
                source,
            }),
            Target::Stderr | Target::Writer(_) => Ok(()),
        }
    }
}

/// A destination plus what is needed to write local headers.
#[derive(Debug)]
pub(crate) struct Sink {
    target: Target,
    component: String,
    pid: u32,
    /// Set once the fallback warning has been written.
    warned: AtomicBool,
}

pub(crate) enum Target {
    Stderr,
    File { path: PathBuf, file: Mutex<File> },
    Syslog(SyslogClient),
    Writer(Mutex<Box<dyn Write + Send>>),
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Stderr => f.write_str("Stderr"),
            Target::File { path, .. } => f.debug_struct("File").field("path", path).finish(),
            Target::Syslog(c) => f.debug_tuple("Syslog").field(c).finish(),
            Target::Writer(_) => f.write_str("Writer"),
        }
    }
}

impl Sink {
    pub(crate) fn new(target: Target, component: String) -> Sink {
        Sink {
            target,
            component,
            pid: std::process::id(),
            warned: AtomicBool::new(false),
        }
    }

    /// Writes one line; never fails, never panics (see the module doc).
    pub(crate) fn write(&self, level: Level, now: u64, body: &str) {
        match &self.target {
            Target::Stderr => write_stderr(&self.local_line(now, body)),
            Target::File { path, file } => {
                let line = self.local_line(now, body);
                let mut f = file.lock().unwrap_or_else(PoisonError::into_inner);
                if let Err(e) = f.write_all(line.as_bytes()) {
                    drop(f);
                    self.fall_back(now, "file", path, &e);
                    write_stderr(&line);
                }
            }
            Target::Syslog(client) => {
                if client.perror {
                    write_stderr(&self.local_line(now, body));
                }
                if let Err(e) = client.send(level, now, self.pid, body) {
                    self.fall_back(now, "syslog", client.path(), &e);
                    if !client.perror {
                        write_stderr(&self.local_line(now, body));
                    }
                }
            }
            Target::Writer(w) => {
                let line = self.local_line(now, body);
                let mut w = w.lock().unwrap_or_else(PoisonError::into_inner);
                // A test writer has no fallback worth taking.
                let _ = w.write_all(line.as_bytes());
            }
        }
    }

    /// Writes the one-time warning about falling back to stderr.
    pub(crate) fn fall_back(&self, now: u64, kind: &str, path: &Path, error: &io::Error) {
        if self.warned.swap(true, Ordering::Relaxed) {
            return;
        }
        let body = format!(
            "sev=WARN, log={kind}, path={}, error={}, action=logging to stderr",
            encode_value(&path.display().to_string()),
            encode_value(&error.to_string()),
        );
        write_stderr(&self.local_line(now, &body));
    }

    fn local_line(&self, now: u64, body: &str) -> String {
        format!(
            "{} {}[{}]: {body}\n",
            crate::time::rfc3339(now),
            self.component,
            self.pid
        )
    }
}

/// Opens a log file for appending, creating it (mode 0640 before umask)
/// if needed.
pub(crate) fn open_log_file(path: &Path) -> Result<File, LogError> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .map_err(|source| LogError::Open {
            path: path.to_path_buf(),
            source,
        })
}

fn write_stderr(line: &str) {
    // Nothing is left to tell if stderr fails.
    let _ = io::stderr().lock().write_all(line.as_bytes());
}
