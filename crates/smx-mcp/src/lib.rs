//! smx-mcp: the master control program (seed 3.7, 4.1, 8.2).
//!
//! | module | what |
//! | --- | --- |
//! | [`plan`] | the components to run, worked out from the configuration (pure) |
//! | [`backoff`] | when a process that exited is started again (pure) |
//! | [`supervisor`] | sockets, processes, restarts, signals |
//! | [`listener`] | the component side: getting the socket mcp passes |
//!
//! mcp is the only process that may run as root: it binds the listening
//! sockets and starts the other components under their configured users.

pub mod backoff;
pub mod listener;
pub mod plan;
pub mod supervisor;

pub use backoff::Timing;
pub use plan::{Component, Kind, Listen, plan};
pub use supervisor::Supervisor;

/// What can go wrong in mcp.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// A listening socket could not be bound.
    #[error("cannot bind {what}: {source}")]
    Bind {
        /// The address or path.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// A process could not be started.
    #[error("cannot start {component}: {source}")]
    Spawn {
        /// The component.
        component: String,
        /// The error.
        source: std::io::Error,
    },
    /// A configured user does not exist.
    #[error("no such user: {0}")]
    NoSuchUser(String),
    /// A configured group does not exist.
    #[error("no such group: {0}")]
    NoSuchGroup(String),
    /// The supplementary groups of a user could not be read.
    #[error("cannot read the groups of user {user}: {source}")]
    Groups {
        /// The user.
        user: String,
        /// The error.
        source: std::io::Error,
    },
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// The passed socket could not be received.
    #[error("cannot receive the listening socket from mcp ({path}): {reason}")]
    Receive {
        /// The fd socket.
        path: String,
        /// Why.
        reason: String,
    },
}
