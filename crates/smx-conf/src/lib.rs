//! smx-conf: the configuration of smx.
//!
//! The MeTA1 configuration language (seed section 3.2) and the typed
//! configuration of every component with its compiled-in defaults:
//!
//! * [`syntax`] parses text into a tree of options and sections (pure, no
//!   I/O, bounded);
//! * [`model`] holds the typed sections; [`schema`] walks them to load,
//!   print, check and document;
//! * [`value`] turns option text into numbers, times, sizes and flags;
//! * [`session_conf`] parses the session and recipient configuration
//!   written in map values (`smtps_session_conf:`, `smtpc_rcpt_conf:`).
//!
//! Errors are [`ConfError`]s that name `file:line:column`; loading collects
//! every error it can find instead of stopping at the first. Nothing here
//! panics on any input.

pub mod error;
pub mod model;
pub mod schema;
pub mod session_conf;
pub mod syntax;
pub mod value;

pub use error::{ConfError, ConfErrors, ErrorKind, Location};
pub use model::Config;
pub use session_conf::{SessionConf, SessionConfError, TlsRequirementsConf};

use std::path::{Path, PathBuf};

/// The embedded default configuration, used when no file is given: queue
/// directory `./smx-spool` (or `$SMX_HOME`), SMTP on 127.0.0.1:2525, mail for
/// localhost delivered over LMTP to the built-in local delivery agent,
/// relaying from 127.0.0.1 only, other domains routed by DNS MX.
pub const EMBEDDED_DEFAULT: &str = include_str!("embedded.conf");

/// The name under which errors in the embedded configuration are reported.
pub const EMBEDDED_NAME: &str = "<embedded>";

/// The environment variable that overrides the embedded configuration's
/// queue directory.
pub const HOME_ENV: &str = "SMX_HOME";

/// Largest configuration file read.
pub const MAX_FILE_SIZE: u64 = syntax::MAX_INPUT as u64;

/// Why a configuration file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_FILE_SIZE`].
    #[error("configuration file {path} is larger than {MAX_FILE_SIZE} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The file is not valid UTF-8.
    #[error("configuration file {path} is not valid UTF-8 text (at byte {offset})")]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// First invalid byte.
        offset: usize,
    },
    /// The text has errors.
    #[error("{0}")]
    Invalid(ConfErrors),
}

/// Parses, loads and checks configuration text; `file` names it in errors.
///
/// Reports every syntax error; if there are none, every unknown name and
/// invalid value; if there are none, every broken cross-field rule.
pub fn load_str(file: &str, text: &str) -> Result<Config, ConfErrors> {
    let doc = syntax::parse(file, text).map_err(ConfErrors)?;
    let mut config = Config::default();
    let mut locs = schema::Locations::new();
    let mut errors = schema::load(file, &doc.entries, &mut config, &mut locs);
    // Rules across options only make sense once every value is valid;
    // checking half-loaded values would report consequences, not causes.
    if errors.is_empty() {
        let mut checker = schema::Checker::new(file, &locs);
        schema::check(&mut config, &mut checker);
        errors = checker.into_errors();
    }
    if errors.is_empty() {
        Ok(config)
    } else {
        errors.sort_by_key(|e| e.location.span);
        Err(ConfErrors(errors))
    }
}

/// Parses and loads configuration text without the cross-field checks
/// (for tools that inspect a configuration, and for tests of the printer).
pub fn load_str_unchecked(file: &str, text: &str) -> Result<Config, ConfErrors> {
    let doc = syntax::parse(file, text).map_err(ConfErrors)?;
    let mut config = Config::default();
    let mut locs = schema::Locations::new();
    let errors = schema::load(file, &doc.entries, &mut config, &mut locs);
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfErrors(errors))
    }
}

/// Reads and loads a configuration file.
pub fn load_file(path: &Path) -> Result<Config, LoadError> {
    use std::io::Read;
    let io = |source| LoadError::Io {
        path: path.to_owned(),
        source,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    f.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(LoadError::TooLarge {
            path: path.to_owned(),
        });
    }
    let text = String::from_utf8(bytes).map_err(|e| LoadError::NotUtf8 {
        path: path.to_owned(),
        offset: e.utf8_error().valid_up_to(),
    })?;
    load_str(&path.to_string_lossy(), &text).map_err(LoadError::Invalid)
}

/// Loads the embedded default configuration; `home` (normally the value of
/// `$SMX_HOME`) replaces its queue directory.
pub fn embedded_default(home: Option<&Path>) -> Result<Config, ConfErrors> {
    let mut c = load_str(EMBEDDED_NAME, EMBEDDED_DEFAULT)?;
    if let Some(h) = home
        && !h.as_os_str().is_empty()
    {
        c.queue_directory = h.to_owned();
    }
    Ok(c)
}

/// Prints a configuration, defaults included, in the configuration
/// language; the text loads back to an equal configuration.
pub fn print(config: &Config) -> String {
    let mut c = config.clone();
    schema::print(&mut c)
}

/// The Markdown reference of every option with its type and default.
pub fn reference() -> String {
    let mut c = Config::default();
    schema::reference(&mut c, "Global options")
}
