//! The running supervisor: binds the listening sockets, starts every
//! component's processes, restarts them, passes sockets, forwards signals
//! and stops everything.
//!
//! # Sockets
//!
//! mcp binds each component's `listen_socket` itself (it may be the only
//! process allowed to bind port 25) and keeps it open for its whole life,
//! so connections queue in the backlog while a component restarts. How a
//! process gets it depends on `start_action`:
//!
//! * `pass`: mcp listens on the Unix socket `pass_fd_socket` (mode 0600;
//!   a stale file is replaced) and sends the listening descriptor with
//!   `SCM_RIGHTS` (smx-ipc's fd module: one marker byte per descriptor) to
//!   every process that connects. The process finds the path in the
//!   environment variable [`ENV_FD_SOCKET`].
//! * `accept`: the process gets the listening socket as its standard input
//!   (as inetd's `wait` services do); [`ENV_LISTEN_FD`] is set to `0`.
//! * `nostartaccept`: mcp accepts a connection and starts a process for it
//!   with the connection as standard input and output (inetd's `nowait`);
//!   [`ENV_CONN_FD`] is set to `0`. At most [`MAX_NOSTART`] run at a time,
//!   further connections are closed. These processes are not restarted.
//! * `wait`: nothing is passed.
//!
//! Every process also gets [`ENV_COMPONENT`] (its component's name) and
//! [`ENV_PROCESS_ID`] (its slot number, the same as `pass_id` gives).
//!
//! # Privileges
//!
//! When mcp runs as root and a component names `user` (and `group`), its
//! processes run with that user's uid, with `group` (default: the user's
//! primary group) as their gid, and with the supplementary groups the group
//! database gives the user (getgrouplist(3), as login programs do with
//! initgroups(3)): the seed's installation makes the SMTP server a member of
//! the delivery agent's group so that it can give content files that group,
//! and the queue manager a member of the address resolver's group to reach
//! its socket. The credentials are looked up before the fork and set in the
//! child between fork and exec (setgroups, setgid, setuid, in that order;
//! no allocation happens there). That hook (`pre_exec`) is the one use of
//! `unsafe` in this crate: the standard library's own uid and gid options
//! clear the supplementary groups and offer no stable way to set them.
//!
//! Without root, `user` is ignored with a warning, so a non-root
//! installation runs everything as the invoking user. An smx component
//! started by a root mcp without a configured `user` runs as root, with a
//! warning in the log and `--allow-root` on its command line (the
//! components refuse root otherwise): configure users for production.
//!
//! # Restarts
//!
//! A process that exits is restarted per [`crate::backoff`]. When it was
//! not asked to stop, the components listed in its component's
//! `restart_dependencies` are stopped (SIGTERM) and started again at once.
//!
//! # Signals
//!
//! SIGTERM and SIGINT stop the system: SIGTERM to every process, SIGKILL to
//! those still running after `stop_grace`, then mcp returns. SIGHUP asks
//! the caller's reload function for a new plan (the configuration read
//! again); if it succeeds every process is stopped and the new plan
//! started, keeping listening sockets whose address did not change; if it
//! fails the error is logged and nothing changes. SIGUSR1 (reload maps) and
//! SIGUSR2 (reopen log files) are forwarded to every process.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::net::UnixListener;
use tokio::process::Command;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::McpError;
use crate::backoff::{Backoff, Decision, Timing};
use crate::plan::{Component, Listen};
use smx_conf::model::common::StartAction;

/// Environment variable: the pass_fd_socket path (start_action pass).
pub const ENV_FD_SOCKET: &str = "SMX_FD_SOCKET";
/// Environment variable: the inherited listening descriptor (accept).
pub const ENV_LISTEN_FD: &str = "SMX_LISTEN_FD";
/// Environment variable: the inherited connection (nostartaccept).
pub const ENV_CONN_FD: &str = "SMX_CONN_FD";
/// Environment variable: the component's name.
pub const ENV_COMPONENT: &str = "SMX_COMPONENT";
/// Environment variable: the process's slot number.
pub const ENV_PROCESS_ID: &str = "SMX_PROCESS_ID";

/// Produces a new plan on SIGHUP.
pub type Reload = Box<dyn Fn() -> Result<Vec<Component>, String> + Send + Sync>;

/// What the main loop hears.
#[derive(Debug)]
enum Event {
    Exited {
        key: Key,
        pid: u32,
        status: std::io::Result<ExitStatus>,
    },
    Connection {
        component: usize,
        conn: OwnedFd,
    },
}

/// (component index, slot) of a long-running process; slots of
/// nostartaccept processes count up from `u32::MAX / 2`.
type Key = (usize, u32);

#[derive(Debug)]
struct Running {
    pid: u32,
    started: Instant,
    /// Asked to stop for a dependency restart: start again at once.
    restart_now: bool,
}

/// A bound listening socket and, for pass, the fd-passing server.
#[derive(Debug)]
struct Bound {
    listen: Listen,
    fd: Arc<OwnedFd>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Bound {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The supervisor; see the module doc.
pub struct Supervisor {
    components: Vec<Component>,
    timing: Timing,
    reload: Option<Reload>,
    env: Vec<(String, String)>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("components", &self.components)
            .field("timing", &self.timing)
            .finish()
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn bind(listen: &Listen) -> Result<OwnedFd, McpError> {
    match listen {
        Listen::Inet(addr) => {
            let sock = if addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()
            } else {
                tokio::net::TcpSocket::new_v6()
            }
            .and_then(|s| {
                s.set_reuseaddr(true)?;
                s.bind(*addr)?;
                s.listen(1024)
            })
            .map_err(|e| McpError::Bind {
                what: addr.to_string(),
                source: e,
            })?;
            // Processes get the socket in blocking mode, as from socket(2);
            // O_NONBLOCK is shared by every copy of the descriptor.
            let std = sock
                .into_std()
                .and_then(|l| l.set_nonblocking(false).map(|()| l))
                .map_err(|e| McpError::Bind {
                    what: addr.to_string(),
                    source: e,
                })?;
            Ok(OwnedFd::from(std))
        }
        Listen::Unix {
            path,
            umask,
            user,
            group,
        } => {
            let err = |e| McpError::Bind {
                what: path.display().to_string(),
                source: e,
            };
            prepare_socket_path(path).map_err(err)?;
            let l = std::os::unix::net::UnixListener::bind(path).map_err(err)?;
            use std::os::unix::fs::PermissionsExt;
            let mode = 0o777 & !umask;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(err)?;
            if is_root() && (user.is_some() || group.is_some()) {
                let uid = user
                    .as_deref()
                    .map(lookup_user)
                    .transpose()?
                    .map(|(u, _)| u);
                let gid = group.as_deref().map(lookup_group).transpose()?;
                nix::unistd::chown(
                    path,
                    uid.map(nix::unistd::Uid::from_raw),
                    gid.map(nix::unistd::Gid::from_raw),
                )
                .map_err(|e| err(e.into()))?;
            }
            Ok(OwnedFd::from(l))
        }
    }
}

/// Creates the parent directory and removes a stale socket file (only a
/// socket: any other file there is an error, not something to delete).
fn prepare_socket_path(path: &Path) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) => {
            use std::os::unix::fs::FileTypeExt;
            if m.file_type().is_socket() {
                std::fs::remove_file(path)
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "exists and is not a socket",
                ))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The identity a component's processes get when mcp runs as root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user id.
    pub uid: u32,
    /// The group id: the configured group, else the user's primary group.
    pub gid: u32,
    /// The supplementary groups (including `gid`), from the group database.
    pub groups: Vec<u32>,
}

/// Most supplementary groups accepted for one user (Linux's NGROUPS_MAX).
const MAX_GROUPS: usize = 65_536;

/// Looks up the credentials of `user` with `group` (default: the user's
/// primary group) and the user's supplementary groups.
pub fn credentials(user: &str, group: Option<&str>) -> Result<Credentials, McpError> {
    let (uid, primary) = lookup_user(user)?;
    let gid = match group {
        Some(g) => lookup_group(g)?,
        None => primary,
    };
    let name = std::ffi::CString::new(user).map_err(|_| McpError::NoSuchUser(user.to_string()))?;
    let mut groups: Vec<u32> = nix::unistd::getgrouplist(&name, nix::unistd::Gid::from_raw(gid))
        .map_err(|e| McpError::Groups {
            user: user.to_string(),
            source: e.into(),
        })?
        .into_iter()
        .map(nix::unistd::Gid::as_raw)
        .collect();
    groups.truncate(MAX_GROUPS);
    if !groups.contains(&gid) {
        groups.push(gid);
    }
    Ok(Credentials { uid, gid, groups })
}

/// Makes `cmd`'s process take `creds` between fork and exec.
#[allow(unsafe_code)]
fn drop_privileges(cmd: &mut Command, creds: &Credentials) {
    use nix::unistd::{Gid, Uid, setgid, setgroups, setuid};
    let groups: Vec<Gid> = creds.groups.iter().copied().map(Gid::from_raw).collect();
    let (uid, gid) = (Uid::from_raw(creds.uid), Gid::from_raw(creds.gid));
    // SAFETY: the closure runs in the child after fork(2), where only
    // async-signal-safe work is allowed. It makes three system calls on
    // values computed before the fork (the group list is moved in, not
    // built there), allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            setgroups(&groups)?;
            setgid(gid)?;
            setuid(uid)?;
            Ok(())
        });
    }
}

fn lookup_user(name: &str) -> Result<(u32, u32), McpError> {
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => Ok((u.uid.as_raw(), u.gid.as_raw())),
        _ => Err(McpError::NoSuchUser(name.to_string())),
    }
}

fn lookup_group(name: &str) -> Result<u32, McpError> {
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        _ => Err(McpError::NoSuchGroup(name.to_string())),
    }
}

/// Serves the listening fd on `path` to every process that connects. As
/// root, the socket belongs to the component's user (`owner`), so that
/// only that user (and root) can fetch the descriptor.
fn serve_fd(
    path: &Path,
    fd: Arc<OwnedFd>,
    owner: Option<(u32, u32)>,
) -> Result<tokio::task::JoinHandle<()>, McpError> {
    let err = |e| McpError::Bind {
        what: path.display().to_string(),
        source: e,
    };
    prepare_socket_path(path).map_err(err)?;
    let listener = UnixListener::bind(path).map_err(err)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    if let Some((uid, gid)) = owner {
        nix::unistd::chown(
            path,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .map_err(|e| err(e.into()))?;
    }
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let fd = Arc::clone(&fd);
            tokio::spawn(async move {
                let sent = tokio::time::timeout(
                    Duration::from_secs(10),
                    smx_ipc::fd::send_fd_async(&stream, fd.as_fd()),
                )
                .await;
                if !matches!(sent, Ok(Ok(()))) {
                    warn!("could not pass a listening socket");
                }
            });
        }
    }))
}

/// Accepts connections for a nostartaccept component.
fn accept_loop(
    component: usize,
    fd: &OwnedFd,
    events: mpsc::UnboundedSender<Event>,
) -> Result<tokio::task::JoinHandle<()>, McpError> {
    let dup = fd.try_clone().map_err(|e| McpError::Bind {
        what: "listening socket".into(),
        source: e,
    })?;
    let std = std::net::TcpListener::from(dup);
    std.set_nonblocking(true).map_err(|e| McpError::Bind {
        what: "listening socket".into(),
        source: e,
    })?;
    let listener = tokio::net::TcpListener::from_std(std).map_err(|e| McpError::Bind {
        what: "listening socket".into(),
        source: e,
    })?;
    Ok(tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let Ok(std) = stream.into_std() else { continue };
                    let _ = std.set_nonblocking(false);
                    if events
                        .send(Event::Connection {
                            component,
                            conn: OwnedFd::from(std),
                        })
                        .is_err()
                    {
                        return;
                    }
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }))
}

impl Supervisor {
    /// A supervisor for `components`.
    pub fn new(components: Vec<Component>, timing: Timing) -> Self {
        Supervisor {
            components,
            timing,
            reload: None,
            env: Vec::new(),
        }
    }

    /// Adds an environment variable for every process (e.g. the absolute
    /// queue directory).
    pub fn with_env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Sets the function that re-reads the configuration on SIGHUP.
    pub fn with_reload(mut self, reload: Reload) -> Self {
        self.reload = Some(reload);
        self
    }

    /// Runs until SIGTERM or SIGINT (or `stop` completes), then stops every
    /// process. Errors: a socket that cannot be bound, a user that does not
    /// exist, signal handlers that cannot be installed.
    pub async fn run(
        mut self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), McpError> {
        let sig = |k| signal(k).map_err(McpError::Signals);
        let (mut term, mut int, mut hup, mut usr1, mut usr2) = (
            sig(SignalKind::terminate())?,
            sig(SignalKind::interrupt())?,
            sig(SignalKind::hangup())?,
            sig(SignalKind::user_defined1())?,
            sig(SignalKind::user_defined2())?,
        );
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let mut bound: HashMap<usize, Bound> = HashMap::new();
        self.bind_all(&mut bound, &events_tx, HashMap::new())?;
        let mut running: HashMap<Key, Running> = HashMap::new();
        let mut backoff: HashMap<Key, Backoff> = HashMap::new();
        let mut pending: Vec<(Instant, Key)> = Vec::new();
        let mut next_conn_slot = u32::MAX / 2;
        for (i, c) in self.components.iter().enumerate() {
            if c.start_action != StartAction::NoStartAccept {
                for slot in 0..c.processes {
                    pending.push((Instant::now(), (i, slot)));
                }
            }
        }
        tokio::pin!(stop);
        loop {
            // Start what is due.
            let now = Instant::now();
            let (due, later): (Vec<_>, Vec<_>) = pending.drain(..).partition(|(t, _)| *t <= now);
            pending = later;
            for (_, key) in due {
                if running.contains_key(&key) {
                    continue;
                }
                match self.spawn(key, &bound, None, &events_tx) {
                    Ok(pid) => {
                        running.insert(
                            key,
                            Running {
                                pid,
                                started: Instant::now(),
                                restart_now: false,
                            },
                        );
                    }
                    Err(e) => {
                        error!(component = %self.components[key.0].name, error = %e, "cannot start");
                        let b = backoff
                            .entry(key)
                            .or_insert_with(|| Backoff::new(&self.timing));
                        if let Decision::Restart(d) = b.on_exit(&self.timing, None, Duration::ZERO)
                        {
                            pending.push((Instant::now() + d, key));
                        }
                    }
                }
            }
            let next_due = pending.iter().map(|(t, _)| *t).min();
            let sleep = async {
                match next_due {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut stop => break,
                _ = term.recv() => { info!("SIGTERM: stopping"); break }
                _ = int.recv() => { info!("SIGINT: stopping"); break }
                _ = usr1.recv() => forward(&running, Signal::SIGUSR1),
                _ = usr2.recv() => forward(&running, Signal::SIGUSR2),
                _ = hup.recv() => {
                    let Some(reload) = &self.reload else {
                        warn!("SIGHUP: no configuration to reload");
                        continue;
                    };
                    match reload() {
                        Err(e) => error!(error = %e, "SIGHUP: configuration not reloaded"),
                        Ok(plan) => {
                            info!("SIGHUP: configuration reloaded, restarting the components");
                            self.stop_all(&mut running, &mut events).await;
                            pending.clear();
                            backoff.clear();
                            let old: HashMap<Listen, Arc<OwnedFd>> = bound
                                .drain()
                                .map(|(_, b)| (b.listen.clone(), Arc::clone(&b.fd)))
                                .collect();
                            self.components = plan;
                            if let Err(e) = self.bind_all(&mut bound, &events_tx, old) {
                                error!(error = %e, "SIGHUP: cannot bind the new sockets; stopping");
                                return Err(e);
                            }
                            for (i, c) in self.components.iter().enumerate() {
                                if c.start_action != StartAction::NoStartAccept {
                                    for slot in 0..c.processes {
                                        pending.push((Instant::now(), (i, slot)));
                                    }
                                }
                            }
                        }
                    }
                }
                () = sleep => {}
                Some(ev) = events.recv() => match ev {
                    Event::Exited { key, pid, status } => {
                        if running.get(&key).map(|r| r.pid) != Some(pid) {
                            continue;
                        }
                        let Some(r) = running.remove(&key) else { continue };
                        let c = &self.components[key.0];
                        let code = status.as_ref().ok().and_then(|s| s.code());
                        if key.1 >= u32::MAX / 2 {
                            continue;
                        }
                        if r.restart_now {
                            info!(component = %c.name, pid, "restarting as a dependency");
                            pending.push((Instant::now(), key));
                            continue;
                        }
                        let ran = r.started.elapsed();
                        let b = backoff.entry(key).or_insert_with(|| Backoff::new(&self.timing));
                        match b.on_exit(&self.timing, code, ran) {
                            Decision::GiveUp => {
                                error!(component = %c.name, pid, status = ?code, "exited with a usage or configuration error; not restarted");
                            }
                            Decision::Restart(d) => {
                                warn!(component = %c.name, pid, status = ?status.as_ref().ok(), restart_in_ms = d.as_millis() as u64, "exited; restarting");
                                pending.push((Instant::now() + d, key));
                            }
                        }
                        // Its dependencies restart with it.
                        let deps = c.restart_dependencies.clone();
                        for (k, other) in running.iter_mut() {
                            let oc = &self.components[k.0];
                            if deps.iter().any(|d| oc.matches(d)) && !other.restart_now {
                                other.restart_now = true;
                                send(other.pid, Signal::SIGTERM);
                            }
                        }
                    }
                    Event::Connection { component, conn } => {
                        let c = &self.components[component];
                        let active = running.keys().filter(|k| k.0 == component && k.1 >= u32::MAX / 2).count();
                        if active >= MAX_NOSTART {
                            warn!(component = %c.name, "too many connection processes; connection closed");
                            continue;
                        }
                        next_conn_slot = next_conn_slot.wrapping_add(1).max(u32::MAX / 2);
                        let key = (component, next_conn_slot);
                        match self.spawn(key, &bound, Some(&conn), &events_tx) {
                            Ok(pid) => {
                                running.insert(key, Running { pid, started: Instant::now(), restart_now: false });
                            }
                            Err(e) => error!(component = %c.name, error = %e, "cannot start a process for a connection"),
                        }
                    }
                },
            }
        }
        self.stop_all(&mut running, &mut events).await;
        drop(bound);
        Ok(())
    }

    /// Binds every component's socket; reuses `old` sockets with the same
    /// address.
    fn bind_all(
        &self,
        bound: &mut HashMap<usize, Bound>,
        events: &mpsc::UnboundedSender<Event>,
        mut old: HashMap<Listen, Arc<OwnedFd>>,
    ) -> Result<(), McpError> {
        for (i, c) in self.components.iter().enumerate() {
            if c.start_action == StartAction::Wait {
                continue;
            }
            let Some(listen) = &c.listen else { continue };
            let fd = match old.remove(listen) {
                Some(fd) => fd,
                None => Arc::new(bind(listen)?),
            };
            let mut tasks = Vec::new();
            match c.start_action {
                StartAction::Pass => {
                    if let Some(p) = &c.pass_fd_socket {
                        let owner = match (&c.user, is_root()) {
                            (Some(u), true) => {
                                let creds = credentials(u, c.group.as_deref())?;
                                Some((creds.uid, creds.gid))
                            }
                            _ => None,
                        };
                        tasks.push(serve_fd(p, Arc::clone(&fd), owner)?);
                    }
                }
                StartAction::NoStartAccept => tasks.push(accept_loop(i, &fd, events.clone())?),
                StartAction::Accept | StartAction::Wait => {}
            }
            info!(component = %c.name, socket = ?listen, "listening");
            bound.insert(
                i,
                Bound {
                    listen: listen.clone(),
                    fd,
                    tasks,
                },
            );
        }
        Ok(())
    }

    /// Starts process `key`; `conn` is the connection of a nostartaccept
    /// process.
    fn spawn(
        &self,
        key: Key,
        bound: &HashMap<usize, Bound>,
        conn: Option<&OwnedFd>,
        events: &mpsc::UnboundedSender<Event>,
    ) -> Result<u32, McpError> {
        let c = &self.components[key.0];
        let mut cmd = Command::new(&c.program);
        let mut args = c.args_for(key.1);
        if is_root() && c.user.is_none() && c.kind != crate::plan::Kind::Service {
            // Components refuse root unless told; mcp tells them when the
            // configuration asks for no other user.
            warn!(component = %c.name, "running as root: no user is configured for it");
            args.push("--allow-root".into());
        }
        cmd.arg0(&c.argv0)
            .args(args)
            .current_dir(&c.working_directory)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(ENV_COMPONENT, &c.name)
            .env(ENV_PROCESS_ID, key.1.to_string())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(false);
        if let Err(e) = std::fs::create_dir_all(&c.working_directory) {
            return Err(McpError::Spawn {
                component: c.name.clone(),
                source: e,
            });
        }
        if let Some(user) = &c.user {
            if is_root() {
                drop_privileges(&mut cmd, &credentials(user, c.group.as_deref())?);
            } else {
                warn!(component = %c.name, user, "not root: user ignored");
            }
        }
        let dup = |fd: &OwnedFd| {
            fd.try_clone().map_err(|e| McpError::Spawn {
                component: c.name.clone(),
                source: e,
            })
        };
        match c.start_action {
            StartAction::Pass => {
                if let Some(p) = &c.pass_fd_socket {
                    cmd.env(ENV_FD_SOCKET, p);
                }
            }
            StartAction::Accept => {
                if let Some(b) = bound.get(&key.0) {
                    cmd.stdin(std::process::Stdio::from(dup(&b.fd)?));
                    cmd.env(ENV_LISTEN_FD, "0");
                }
            }
            StartAction::NoStartAccept => {
                if let Some(conn) = conn {
                    cmd.stdin(std::process::Stdio::from(dup(conn)?));
                    cmd.stdout(std::process::Stdio::from(dup(conn)?));
                    cmd.env(ENV_CONN_FD, "0");
                }
            }
            StartAction::Wait => {}
        }
        let mut child = cmd.spawn().map_err(|e| McpError::Spawn {
            component: c.name.clone(),
            source: e,
        })?;
        let pid = child.id().unwrap_or(0);
        info!(component = %c.name, pid, process = key.1, "started");
        let events = events.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            let _ = events.send(Event::Exited { key, pid, status });
        });
        Ok(pid)
    }

    /// SIGTERM to every process, SIGKILL after the grace time, and wait
    /// for all of them.
    async fn stop_all(
        &self,
        running: &mut HashMap<Key, Running>,
        events: &mut mpsc::UnboundedReceiver<Event>,
    ) {
        for r in running.values() {
            send(r.pid, Signal::SIGTERM);
        }
        let deadline = Instant::now() + self.timing.stop_grace;
        let mut killed = false;
        while !running.is_empty() {
            let wait = if killed {
                Instant::now() + Duration::from_secs(5)
            } else {
                deadline
            };
            match tokio::time::timeout_at(wait, events.recv()).await {
                Ok(Some(Event::Exited { key, pid, .. })) => {
                    if running.get(&key).is_some_and(|r| r.pid == pid) {
                        running.remove(&key);
                    }
                }
                Ok(Some(Event::Connection { .. })) => {}
                Ok(None) => break,
                Err(_) if !killed => {
                    for r in running.values() {
                        warn!(pid = r.pid, "did not stop in time; killing");
                        send(r.pid, Signal::SIGKILL);
                    }
                    killed = true;
                }
                Err(_) => {
                    error!(left = running.len(), "processes did not die after SIGKILL");
                    break;
                }
            }
        }
    }
}

/// Most nostartaccept processes of one component at a time.
pub const MAX_NOSTART: usize = 256;

fn send(pid: u32, sig: Signal) {
    if let Ok(p) = i32::try_from(pid)
        && p > 0
    {
        let _ = kill(Pid::from_raw(p), sig);
    }
}

fn forward(running: &HashMap<Key, Running>, sig: Signal) {
    info!(signal = ?sig, processes = running.len(), "forwarding signal");
    for r in running.values() {
        send(r.pid, sig);
    }
}

/// Where a component's pass_fd_socket is, for the process side.
pub fn fd_socket_from_env() -> Option<PathBuf> {
    std::env::var_os(ENV_FD_SOCKET).map(PathBuf::from)
}
