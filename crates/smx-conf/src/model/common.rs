//! Options shared by several component sections: the `log` subsection (seed
//! 3.5), the MCP options that say how the supervisor starts a component
//! (seed 3.7, 8.2), and socket and TLS file subsections.

use crate::conf_enum;
use crate::schema::{Checker, Section, Visitor};
use crate::value::{Time, Words};
use std::net::IpAddr;
use std::path::PathBuf;

conf_enum! {
    /// Where log lines go.
    pub enum LogDestination {
        /// Standard error (the supervisor may redirect it to a file).
        Stderr = "stderr",
        /// A log file (`file`), reopened on SIGUSR2.
        File = "file",
        /// syslog(3) through /dev/log.
        Syslog = "syslog",
    }
}

/// `log { ... }`: where and how a component logs (seed 3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// stderr, file or syslog.
    pub destination: LogDestination,
    /// Log file for destination = file; relative paths are below the queue
    /// directory. Unset: `<component>.log`.
    pub file: Option<PathBuf>,
    /// syslog facility.
    pub facility: String,
    /// syslog identifier; unset: the component name.
    pub ident: Option<String>,
    /// openlog(3) options without the LOG_ prefix, e.g. pid, ndelay.
    pub options: Words,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            destination: LogDestination::Stderr,
            file: None,
            facility: "mail".into(),
            ident: None,
            options: Words(vec!["pid".into()]),
        }
    }
}

/// syslog(3) facility names accepted by `facility`.
pub const FACILITIES: &[&str] = &[
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
];

/// openlog(3) option names accepted by `options`.
pub const LOG_OPTIONS: &[&str] = &["pid", "cons", "ndelay", "odelay", "nowait", "perror"];

impl Section for LogConfig {
    fn visit(&mut self, v: &mut dyn Visitor) {
        v.option(
            "destination",
            "Where log lines go: stderr, file or syslog.",
            &mut self.destination,
        );
        v.option(
            "file",
            "Log file for `destination = file` (relative to the queue directory); \
             default `<component>.log`. Reopened on SIGUSR2 for rotation.",
            &mut self.file,
        );
        v.option(
            "facility",
            "syslog facility, e.g. mail, daemon, local0.",
            &mut self.facility,
        );
        v.option(
            "ident",
            "syslog identifier; default: the component name.",
            &mut self.ident,
        );
        v.option(
            "options",
            "openlog(3) options without LOG_, e.g. pid, ndelay.",
            &mut self.options,
        );
    }

    fn check(&self, c: &mut Checker<'_>) {
        if !FACILITIES
            .iter()
            .any(|f| f.eq_ignore_ascii_case(&self.facility))
        {
            c.error(
                &["facility"],
                format!(
                    "unknown syslog facility '{}' (valid: {})",
                    self.facility.escape_debug(),
                    FACILITIES.join(", ")
                ),
            );
        }
        for o in &self.options.0 {
            if !LOG_OPTIONS.iter().any(|x| x.eq_ignore_ascii_case(o)) {
                c.error(
                    &["options"],
                    format!(
                        "unknown openlog option '{}' (valid: {})",
                        o.escape_debug(),
                        LOG_OPTIONS.join(", ")
                    ),
                );
            }
        }
    }
}

conf_enum! {
    /// How MCP starts a component (seed 3.7 item 1).
    pub enum StartAction {
        /// Start the processes; they open no listening socket from MCP.
        Wait = "wait",
        /// MCP binds `listen_socket` and passes it over `pass_fd_socket`.
        Pass = "pass",
        /// MCP binds the socket and starts the process at once with it.
        Accept = "accept",
        /// MCP waits for a connection, then starts a process for it.
        NoStartAccept = "nostartaccept",
    }
}

conf_enum! {
    /// Socket families for `listen_socket` and client sockets.
    pub enum SocketType {
        /// TCP (IPv4 or IPv6).
        Inet = "inet",
        /// Unix domain stream socket.
        Unix = "unix",
    }
}

/// `listen_socket { ... }` (seed 3.7 item 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSocket {
    /// inet or unix.
    pub kind: SocketType,
    /// TCP port (inet).
    pub port: Option<u16>,
    /// Address to bind (inet); unset: all IPv4 addresses.
    pub address: Option<IpAddr>,
    /// Socket path (unix).
    pub path: Option<PathBuf>,
    /// umask for the socket file (unix).
    pub umask: u32,
    /// Owner of the socket file (unix).
    pub user: Option<String>,
    /// Group of the socket file (unix).
    pub group: Option<String>,
}

impl Default for ListenSocket {
    fn default() -> Self {
        ListenSocket {
            kind: SocketType::Inet,
            port: None,
            address: None,
            path: None,
            umask: 0o007,
            user: None,
            group: None,
        }
    }
}

impl ListenSocket {
    /// An inet socket on `address:port`.
    pub fn inet(address: Option<IpAddr>, port: u16) -> Self {
        ListenSocket {
            port: Some(port),
            address,
            ..Default::default()
        }
    }

    /// A unix socket at `path`.
    pub fn unix(path: &str) -> Self {
        ListenSocket {
            kind: SocketType::Unix,
            path: Some(PathBuf::from(path)),
            ..Default::default()
        }
    }
}

impl Section for ListenSocket {
    fn visit(&mut self, v: &mut dyn Visitor) {
        v.option("type", "inet or unix.", &mut self.kind);
        v.option("port", "TCP port to listen on (type inet).", &mut self.port);
        v.option(
            "address",
            "IP address to listen on (type inet; IPv6 allowed); unset: all IPv4 addresses.",
            &mut self.address,
        );
        v.option(
            "path",
            "Path of the Unix domain socket (type unix).",
            &mut self.path,
        );
        v.option(
            "umask",
            "umask for the socket (type unix).",
            &mut self.umask,
        );
        v.option("user", "Owner of the socket (type unix).", &mut self.user);
        v.option("group", "Group of the socket (type unix).", &mut self.group);
    }

    fn check(&self, c: &mut Checker<'_>) {
        match self.kind {
            SocketType::Inet => {
                if self.port.is_none() {
                    c.error(
                        &["type"],
                        format!("{}: type inet needs a port", c.section_desc()),
                    );
                }
                if self.path.is_some() {
                    c.error(&["path"], "path is only valid with type unix".into());
                }
            }
            SocketType::Unix => {
                if self.path.is_none() {
                    c.error(
                        &["type"],
                        format!("{}: type unix needs a path", c.section_desc()),
                    );
                }
                if self.port.is_some() || self.address.is_some() {
                    c.error(
                        &["port"],
                        "port and address are only valid with type inet".into(),
                    );
                }
            }
        }
        if self.umask > 0o777 {
            c.error(
                &["umask"],
                format!("umask {:o} is larger than 0777", self.umask),
            );
        }
    }
}

/// The MCP options of a component section (seed 3.7, 8.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpOptions {
    /// start_action.
    pub start_action: StartAction,
    /// listen_socket subsection.
    pub listen_socket: Option<ListenSocket>,
    /// Socket over which MCP passes the listening descriptor (pass).
    pub pass_fd_socket: Option<PathBuf>,
    /// User to run as.
    pub user: Option<String>,
    /// Group to run as.
    pub group: Option<String>,
    /// Components restarted together with this one.
    pub restart_dependencies: Vec<String>,
    /// Program to execute; unset: this smx binary.
    pub path: Option<PathBuf>,
    /// argv (starting with the program name); unset: the component's
    /// subcommand with `-f` and the configuration file.
    pub arguments: Option<Words>,
    /// Option that passes a unique numeric id as first argument.
    pub pass_id: Option<String>,
    /// Minimum number of processes.
    pub min_processes: u32,
    /// Maximum number of processes.
    pub max_processes: u32,
    /// Add the id to the log file name.
    pub use_id_in_logfile_name: bool,
    /// chdir(2) here before exec.
    pub working_directory: Option<PathBuf>,
}

impl McpOptions {
    /// Defaults for a component started with `start_action`.
    pub fn new(start_action: StartAction) -> Self {
        McpOptions {
            start_action,
            listen_socket: None,
            pass_fd_socket: None,
            user: None,
            group: None,
            restart_dependencies: Vec::new(),
            path: None,
            arguments: None,
            pass_id: None,
            min_processes: 1,
            max_processes: 1,
            use_id_in_logfile_name: false,
            working_directory: None,
        }
    }

    /// Lists the MCP options into a component section's visitor.
    pub fn visit(&mut self, v: &mut dyn Visitor) {
        v.option(
            "start_action",
            "How MCP starts the component: wait, pass, accept or nostartaccept.",
            &mut self.start_action,
        );
        v.optional(
            "listen_socket",
            "The socket MCP binds for the component; required unless start_action is wait.",
            &mut self.listen_socket,
        );
        v.option(
            "pass_fd_socket",
            "Unix socket over which MCP passes the listening descriptor (start_action pass).",
            &mut self.pass_fd_socket,
        );
        v.option(
            "user",
            "User to run the process as (MCP drops privileges).",
            &mut self.user,
        );
        v.option("group", "Group to run the process as.", &mut self.group);
        v.option(
            "restart_dependencies",
            "Components to restart together with this one when it restarts or crashes.",
            &mut self.restart_dependencies,
        );
        v.option(
            "path",
            "Program to execute; default: this smx binary.",
            &mut self.path,
        );
        v.option(
            "arguments",
            "argv, starting with the program name; default: the component's subcommand \
             with -f and the configuration file.",
            &mut self.arguments,
        );
        v.option(
            "pass_id",
            "Command-line option used to pass each process a unique numeric id.",
            &mut self.pass_id,
        );
        v.option(
            "min_processes",
            "Minimum number of processes.",
            &mut self.min_processes,
        );
        v.option(
            "max_processes",
            "Maximum number of processes.",
            &mut self.max_processes,
        );
        v.option(
            "use_id_in_logfile_name",
            "Include the process id (see pass_id) in the log file name.",
            &mut self.use_id_in_logfile_name,
        );
        v.option(
            "working_directory",
            "chdir(2) here before starting the process.",
            &mut self.working_directory,
        );
    }

    /// Rules of seed 3.7 and 8.2.
    pub fn check(&self, c: &mut Checker<'_>) {
        if self.start_action != StartAction::Wait && self.listen_socket.is_none() {
            c.error(
                &["start_action"],
                format!(
                    "{}: start_action {} needs a listen_socket section",
                    c.section_desc(),
                    self.start_action.as_str()
                ),
            );
        }
        if self.start_action == StartAction::Pass && self.pass_fd_socket.is_none() {
            c.error(
                &["start_action"],
                format!(
                    "{}: start_action pass needs pass_fd_socket",
                    c.section_desc()
                ),
            );
        }
        if self.min_processes > self.max_processes {
            c.error(
                &["min_processes"],
                format!(
                    "min_processes ({}) is larger than max_processes ({})",
                    self.min_processes, self.max_processes
                ),
            );
        }
        if self.max_processes == 0 {
            c.error(
                &["max_processes"],
                "max_processes must be at least 1".into(),
            );
        }
        if self.max_processes > 256 {
            c.error(
                &["max_processes"],
                "max_processes must be at most 256".into(),
            );
        }
        if self.use_id_in_logfile_name && self.pass_id.is_none() {
            c.error(
                &["use_id_in_logfile_name"],
                "use_id_in_logfile_name needs pass_id".into(),
            );
        }
        if let Some(a) = &self.arguments
            && a.0.is_empty()
        {
            c.error(
                &["arguments"],
                "arguments must start with the program name".into(),
            );
        }
    }

    /// Checks that a component requires exactly one process.
    pub fn check_single(&self, c: &mut Checker<'_>) {
        if self.max_processes != 1 || self.min_processes != 1 {
            c.error(
                &["max_processes"],
                format!(
                    "{}: this component must run as exactly one process",
                    c.section_desc()
                ),
            );
        }
    }
}

/// TLS certificate files (seed 3.10 item 21, 3.11 item 4, 8.5, 8.6).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsFiles {
    /// Certificate (PEM).
    pub cert_file: Option<PathBuf>,
    /// Private key of the certificate (PEM).
    pub key_file: Option<PathBuf>,
    /// CA certificates (PEM).
    pub ca_cert_file: Option<PathBuf>,
    /// Directory of CA certificates (PEM).
    pub ca_cert_directory: Option<PathBuf>,
    /// DSA certificate (PEM); accepted for compatibility, DSA is not used.
    pub dsa_cert_file: Option<PathBuf>,
    /// DSA key (PEM); accepted for compatibility, DSA is not used.
    pub dsa_key_file: Option<PathBuf>,
}

impl TlsFiles {
    /// Lists the file options.
    pub fn visit(&mut self, v: &mut dyn Visitor) {
        v.option(
            "cert_file",
            "Certificate chain in PEM format (relative to the configuration directory).",
            &mut self.cert_file,
        );
        v.option(
            "key_file",
            "Private key for cert_file in PEM format.",
            &mut self.key_file,
        );
        v.option(
            "CAcert_file",
            "CA certificates in PEM format.",
            &mut self.ca_cert_file,
        );
        v.option(
            "CAcert_directory",
            "Directory with CA certificates in PEM format.",
            &mut self.ca_cert_directory,
        );
        v.option(
            "DSA_cert_file",
            "DSA certificate; accepted for compatibility and ignored (DSA is obsolete).",
            &mut self.dsa_cert_file,
        );
        v.option(
            "DSA_key_file",
            "DSA key; accepted for compatibility and ignored.",
            &mut self.dsa_key_file,
        );
    }

    /// cert_file and key_file go together.
    pub fn check(&self, c: &mut Checker<'_>) {
        if self.cert_file.is_some() != self.key_file.is_some() {
            c.error(
                &["cert_file"],
                format!(
                    "{}: cert_file and key_file must be set together",
                    c.section_desc()
                ),
            );
        }
    }
}

/// A socket a component connects to (policy milter, seed 3.10 item 17a).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSocket {
    /// inet or unix.
    pub kind: SocketType,
    /// Port (inet).
    pub port: Option<u16>,
    /// Address (inet).
    pub address: Option<IpAddr>,
    /// Path (unix).
    pub path: Option<PathBuf>,
}

impl Default for ClientSocket {
    fn default() -> Self {
        ClientSocket {
            kind: SocketType::Unix,
            port: None,
            address: None,
            path: None,
        }
    }
}

impl Section for ClientSocket {
    fn visit(&mut self, v: &mut dyn Visitor) {
        v.option("type", "inet or unix.", &mut self.kind);
        v.option("port", "Port to connect to (type inet).", &mut self.port);
        v.option(
            "address",
            "Address to connect to (type inet).",
            &mut self.address,
        );
        v.option("path", "Unix socket path (type unix).", &mut self.path);
    }

    fn check(&self, c: &mut Checker<'_>) {
        let ok = match self.kind {
            SocketType::Inet => self.port.is_some() && self.address.is_some(),
            SocketType::Unix => self.path.is_some(),
        };
        if !ok {
            c.error(
                &["type"],
                format!(
                    "{}: type inet needs address and port, type unix needs path",
                    c.section_desc()
                ),
            );
        }
    }
}

/// Checks that a timeout is not zero.
pub fn check_nonzero_time(c: &mut Checker<'_>, name: &str, t: Time) {
    if t.0.is_zero() {
        c.error(&[name], format!("{name} must be larger than 0"));
    }
}
