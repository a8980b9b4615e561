//! The component side of socket passing: how a process started by mcp gets
//! the socket it serves (see [`crate::supervisor`] for mcp's side).
//!
//! * start_action `pass`: connect to the Unix socket named by
//!   `SMX_FD_SOCKET` and receive one descriptor (`SCM_RIGHTS`).
//! * start_action `accept`: the listening socket is standard input.
//! * start_action `nostartaccept`: the connection is standard input.
//!
//! [`from_mcp`] returns `None` when the process was not started that way
//! (no environment variable set): it then listens itself, e.g. on
//! `daemon_address`.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use crate::McpError;
use crate::supervisor::{ENV_CONN_FD, ENV_FD_SOCKET, ENV_LISTEN_FD};

/// What mcp handed over.
#[derive(Debug)]
pub enum Handed {
    /// A listening socket (pass or accept).
    Listener(OwnedFd),
    /// One accepted connection (nostartaccept).
    Connection(OwnedFd),
}

/// The socket mcp passed, if any; see the module doc.
pub async fn from_mcp() -> Result<Option<Handed>, McpError> {
    if let Some(path) = std::env::var_os(ENV_FD_SOCKET) {
        let shown = path.to_string_lossy().into_owned();
        let err = |reason: String| McpError::Receive {
            path: shown.clone(),
            reason,
        };
        let get = async {
            let stream = tokio::net::UnixStream::connect(&path)
                .await
                .map_err(|e| err(e.to_string()))?;
            smx_ipc::fd::recv_fd_async(&stream)
                .await
                .map_err(|e| err(e.to_string()))
        };
        let fd = tokio::time::timeout(Duration::from_secs(30), get)
            .await
            .map_err(|_| err("timeout".into()))??;
        return Ok(Some(Handed::Listener(fd)));
    }
    let stdin = || {
        std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| McpError::Receive {
                path: "standard input".into(),
                reason: e.to_string(),
            })
    };
    if std::env::var_os(ENV_LISTEN_FD).is_some() {
        return Ok(Some(Handed::Listener(stdin()?)));
    }
    if std::env::var_os(ENV_CONN_FD).is_some() {
        return Ok(Some(Handed::Connection(stdin()?)));
    }
    Ok(None)
}
