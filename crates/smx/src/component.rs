//! The component subcommands (`smx smtps`, `smx smtpc`, `smx smar`,
//! `smx lda`) and `smx run`: each sets up logging and its runtime, builds
//! its component from the configuration and runs it until SIGTERM.
//!
//! Components other than mcp refuse to run as root (mcp drops privileges
//! before starting them) unless `--allow-root` is given, for tests and
//! containers.
//!
//! Every component sets its umask to [`COMPONENT_UMASK`] first, so that
//! what it creates without an explicit mode (sockets, state files, the
//! DEFEDB database) is open to its own group at most: the setgid socket
//! directories give each socket the group of its peer (seed 2.4.1).
//!
//! `smx run` prepares the queue layout (crate::paths) before it starts
//! anything: as root it creates and repairs every directory with its mode
//! and owner and refuses to start when something cannot be repaired;
//! without root it creates what is missing. Problems with the files the
//! configuration names (maps, logs, TLS files) are logged as warnings; the
//! component that opens such a file reports the failure itself.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use smx_conf::Config;
use smx_conf::model::common::{LogConfig, LogDestination};
use tokio::signal::unix::{SignalKind, signal};

use crate::EX_CONFIG;

/// Resolves a path of the configuration: relative paths are below the
/// queue directory.
pub fn in_queue(config: &Config, p: &Path) -> PathBuf {
    config.queue_directory.join(p)
}

/// The host name: the configured one, else the kernel's.
pub fn hostname(config: &Config) -> String {
    if let Some(h) = &config.hostname {
        return h.clone();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Logging settings of a component from its section.
pub fn log_settings(
    component: &str,
    log: &LogConfig,
    level: u32,
    config: &Config,
) -> anyhow::Result<smx_log::LogSettings> {
    let destination = match log.destination {
        LogDestination::Stderr => smx_log::Destination::Stderr,
        LogDestination::File => smx_log::Destination::File(in_queue(
            config,
            log.file
                .as_deref()
                .unwrap_or(Path::new(&format!("{component}.log"))),
        )),
        LogDestination::Syslog => smx_log::Destination::Syslog {
            facility: log
                .facility
                .parse()
                .map_err(|e| anyhow!("log facility: {e}"))?,
            ident: log.ident.clone().unwrap_or_default(),
            options: log
                .options
                .0
                .iter()
                .map(|o| o.parse().map_err(|e| anyhow!("log option {o}: {e}")))
                .collect::<anyhow::Result<_>>()?,
            socket: PathBuf::from(smx_log::DEFAULT_SYSLOG_SOCKET),
        },
    };
    Ok(smx_log::LogSettings {
        component: component.into(),
        level,
        destination,
    })
}

/// Starts logging for `component`; on failure says why on stderr and
/// returns EX_CONFIG (a log destination that cannot be used is a
/// configuration problem).
fn start_log(
    component: &str,
    log: &LogConfig,
    level: u32,
    config: &Config,
) -> Result<smx_log::LogHandle, ExitCode> {
    log_settings(component, log, level, config)
        .and_then(|s| smx_log::init(&s).map_err(|e| anyhow!("cannot start logging: {e}")))
        .map_err(|e| {
            eprintln!("smx {component}: {e:#}");
            ExitCode::from(EX_CONFIG)
        })
}

/// The umask of every smx component (see the module doc).
pub const COMPONENT_UMASK: u32 = 0o007;

/// Sets [`COMPONENT_UMASK`].
fn set_umask() {
    use nix::sys::stat::{Mode, umask};
    umask(Mode::from_bits_truncate(COMPONENT_UMASK));
}

/// Refuses root unless allowed.
pub fn check_root(allow_root: bool, what: &str) -> anyhow::Result<()> {
    if nix::unistd::geteuid().is_root() && !allow_root {
        bail!(
            "{what} does not run as root: configure a user for it (mcp starts it with \
             that user's rights), or pass --allow-root"
        );
    }
    Ok(())
}

/// A future that completes on SIGTERM or SIGINT.
pub fn termination() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// How many threads a component's runtime runs its tasks on.
///
/// qmgr, smar, smtpc, lda and mcp run on one thread: each is one process
/// among several sharing the machine's cores, the parallelism comes from
/// the processes, and a single-threaded event loop wakes no other thread
/// when one task hands work to another (measured: a third fewer system
/// calls per relayed message in qmgr, mostly futex wake-ups). smtps, the
/// component that does the most work per message, uses one thread per core.
/// Blocking file-system calls run on tokio's blocking pool in both cases.
#[derive(Debug, Clone, Copy)]
enum Threads {
    One,
    PerCore,
}

fn runtime(threads: Threads) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = match threads {
        Threads::One => tokio::runtime::Builder::new_current_thread(),
        Threads::PerCore => tokio::runtime::Builder::new_multi_thread(),
    };
    builder
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

/// Runs `f` and maps its error to a logged message and exit status 1
/// (mcp restarts it) or EX_CONFIG.
pub fn exit_code(what: &str, r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "{what} stopped");
            eprintln!("smx {what}: {e:#}");
            if e.downcast_ref::<ConfigProblem>().is_some() {
                ExitCode::from(EX_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// A configuration problem found at start (exit status EX_CONFIG, not
/// restarted by mcp).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigProblem(pub String);

/// Creates `dir` and its parents.
fn mkdir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// Binds a Unix socket at `path`, replacing a stale socket file.
fn bind_unix(path: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    if let Some(parent) = path.parent() {
        mkdir(parent)?;
    }
    if let Ok(m) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if m.file_type().is_socket() {
            let _ = std::fs::remove_file(path);
        } else {
            bail!("{} exists and is not a socket", path.display());
        }
    }
    tokio::net::UnixListener::bind(path).with_context(|| format!("cannot bind {}", path.display()))
}

fn cdb(config: &Config, gid: Option<u32>) -> anyhow::Result<smx_store::cdb::Cdb> {
    let base = if config.cdb_base_directory.is_empty() {
        config.queue_directory.clone()
    } else {
        in_queue(config, Path::new(&config.cdb_base_directory))
    };
    smx_store::cdb::Cdb::open(base, smx_store::cdb::CdbOptions { gid })
        .context("cannot open the content database")
}

// ---- smtps -------------------------------------------------------------------

/// `smx smtps [--name NAME]`.
pub fn smtps(config: Config, name: Option<String>, allow_root: bool) -> ExitCode {
    set_umask();
    let section = match &name {
        Some(n) => config.smtps.get(n).cloned(),
        None => config.smtps.iter().next().map(|s| s.body.clone()),
    };
    let Some(section) = section else {
        eprintln!(
            "smx smtps: no smtps section {}",
            name.as_deref().unwrap_or("")
        );
        return ExitCode::from(EX_CONFIG);
    };
    let log = match start_log("smtps", &section.log, section.log_level, &config) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let r = check_root(allow_root, "smtps").and_then(|()| {
        runtime(Threads::PerCore)?.block_on(async {
            let settings = smx_smtps::Settings::load(&section, hostname(&config))
                .map_err(|e| ConfigProblem(e.to_string()))?;
            let ids_dir = in_queue(&config, Path::new("smtps"));
            mkdir(&ids_dir)?;
            let ids = smx_store::id::IdSource::open(ids_dir.join(format!("ids.{}", section.id)))
                .context("cannot open the id state")?;
            let parts = smx_smtps::ServerParts {
                settings,
                cdb: Arc::new(cdb(&config, section.cdb_gid)?),
                ids: Arc::new(ids),
                qmgr_socket: in_queue(&config, &config.smtps_socket),
                smar_socket: in_queue(&config, &config.smar_socket),
            };
            let server = match smx_mcp::listener::from_mcp().await? {
                Some(smx_mcp::listener::Handed::Listener(fd)) => {
                    smx_smtps::Server::new(parts, vec![std::net::TcpListener::from(fd)])?
                }
                Some(smx_mcp::listener::Handed::Connection(_)) => {
                    return Err(ConfigProblem("smtps cannot run with start_action nostartaccept".into()).into());
                }
                None => {
                    let mut addrs = Vec::new();
                    for a in &section.daemon_address {
                        let (host, port) = smx_conf::model::smtps::parse_daemon_address(a)
                            .map_err(ConfigProblem)?;
                        let ip = host.unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
                        addrs.push(std::net::SocketAddr::new(ip, port));
                    }
                    if addrs.is_empty() {
                        return Err(ConfigProblem(
                            "smtps has no socket: start it from mcp (smx run) or set daemon_address".into(),
                        )
                        .into());
                    }
                    smx_smtps::Server::bind(parts, &addrs, section.listen_queue).await?
                }
            };
            tracing::info!(addresses = ?server.local_addrs(), "smtps ready");
            server.run(termination()?).await;
            Ok(())
        })
    });
    drop(log);
    exit_code("smtps", r)
}

// ---- smtpc -------------------------------------------------------------------

/// `smx smtpc`.
pub fn smtpc(config: Config, allow_root: bool) -> ExitCode {
    set_umask();
    let c = &config.smtpc;
    let log = match start_log("smtpc", &c.log, c.log_level, &config) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let r = check_root(allow_root, "smtpc").and_then(|()| {
        runtime(Threads::One)?.block_on(async {
            let reuse = config.qmgr.flags.reuse_connection;
            let mut cfg = smx_smtpc::ClientConfig::load(c, &hostname(&config), reuse)
                .map_err(|e| ConfigProblem(e.to_string()))?;
            cfg.lmtp_socket = in_queue(&config, &c.lmtp_socket);
            let deliverer = Arc::new(smx_smtpc::Deliverer::new(cfg, cdb(&config, None)?));
            let listener = bind_unix(&in_queue(&config, &config.smtpc_socket))?;
            tracing::info!("smtpc ready");
            tokio::select! {
                r = smx_smtpc::serve(listener, deliverer) => r.context("smtpc service")?,
                () = termination()? => {}
            }
            Ok(())
        })
    });
    drop(log);
    exit_code("smtpc", r)
}

// ---- qmgr --------------------------------------------------------------------

/// `smx qmgr`.
pub fn qmgr(config: Config, config_file: Option<&Path>, allow_root: bool) -> ExitCode {
    set_umask();
    let q = &config.qmgr;
    let log = match start_log("qmgr", &q.log, q.log_level, &config) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let r = check_root(allow_root, "qmgr").and_then(|()| {
        let mut settings = smx_qmgr::Settings::from_config(&config);
        settings.hostname = hostname(&config);
        if let Some(file) = &q.conf {
            // Map files are relative to the configuration file's directory.
            let base = config_file
                .and_then(Path::parent)
                .map_or_else(|| config.queue_directory.clone(), Path::to_path_buf);
            let path = base.join(file);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| ConfigProblem(format!("qmgr_conf {}: {e}", path.display())))?;
            settings.limits = smx_qmgr::limits::LimitTable::parse(&text)
                .map_err(|e| ConfigProblem(format!("qmgr_conf {}: {e}", path.display())))?;
            settings.session_confs = smx_qmgr::limits::SessionConfTable::parse(&text)
                .map_err(|e| ConfigProblem(format!("qmgr_conf {}: {e}", path.display())))?;
        }
        runtime(Threads::One)?.block_on(async {
            tracing::info!("qmgr starting");
            smx_qmgr::serve(settings, termination()?)
                .await
                .context("qmgr")?;
            Ok(())
        })
    });
    drop(log);
    exit_code("qmgr", r)
}

// ---- smar --------------------------------------------------------------------

/// `smx smar`.
pub fn smar(config: Config, config_file: Option<&Path>, allow_root: bool) -> ExitCode {
    set_umask();
    let s = &config.smar;
    let log = match start_log("smar", &s.log, s.log_level, &config) {
        Ok(l) => l,
        Err(code) => return code,
    };
    // Map files named in the configuration are relative to its directory.
    let base = config_file
        .and_then(Path::parent)
        .map_or_else(|| config.queue_directory.clone(), Path::to_path_buf);
    let r = check_root(allow_root, "smar").and_then(|()| {
        runtime(Threads::One)?.block_on(async {
            let dns = smx_smar::dns::HickoryDns::new(&smx_smar::dns::DnsSettings::from_config(&s.dns))
                .map_err(|e| ConfigProblem(format!("DNS resolver: {e}")))?;
            let smar = Arc::new(
                smx_smar::Smar::from_config(&config, &base, dns).map_err(|e| ConfigProblem(e.to_string()))?,
            );
            let listener = bind_unix(&in_queue(&config, &config.smar_socket))?;
            let mut usr1 = signal(SignalKind::user_defined1()).context("SIGUSR1 handler")?;
            let reloader = Arc::clone(&smar);
            tokio::spawn(async move {
                while usr1.recv().await.is_some() {
                    for (name, e) in reloader.reload() {
                        tracing::error!(map = %name, error = %e, "map not reloaded; the old contents stay in use");
                    }
                    tracing::info!("maps reloaded");
                }
            });
            tracing::info!("smar ready");
            smx_smar::serve(listener, smar, termination()?).await.context("smar service")?;
            Ok(())
        })
    });
    drop(log);
    exit_code("smar", r)
}

// ---- lda ---------------------------------------------------------------------

/// `smx lda`.
pub fn lda(config: Config, config_file: Option<&Path>, allow_root: bool) -> ExitCode {
    set_umask();
    let l = &config.lda;
    let log = match start_log("lda", &l.log, l.log_level, &config) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let r = check_root(allow_root, "lda").and_then(|()| {
        runtime(Threads::One)?.block_on(async {
            let users = match &l.local_user_map {
                None => None,
                Some(name) => {
                    // Declared maps are relative to the configuration
                    // file's directory, as in smar.
                    let base = config_file
                        .and_then(Path::parent)
                        .map_or_else(|| config.queue_directory.clone(), Path::to_path_buf);
                    let maps = smx_maps::MapSet::open(&config.smar.maps, &base)
                        .map_err(|e| ConfigProblem(e.to_string()))?;
                    Some(
                        maps.get(name)
                            .ok_or_else(|| ConfigProblem(format!("map {name} not declared")))?,
                    )
                }
            };
            let mail_dir = in_queue(&config, &l.mail_directory);
            mkdir(&mail_dir)?;
            let lda = Arc::new(smx_lda::Lda::new(
                hostname(&config),
                smx_lda::Users::new(mail_dir, users),
                l.max_message_size.0,
            ));
            let stop = termination()?;
            match smx_mcp::listener::from_mcp().await? {
                Some(smx_mcp::listener::Handed::Listener(fd)) => {
                    let listener = unix_or_tcp(fd)?;
                    tracing::info!("lda ready");
                    match listener {
                        Either::Unix(u) => lda.serve_unix(u, stop).await,
                        Either::Tcp(t) => lda.serve_tcp(t, stop).await,
                    }
                }
                Some(smx_mcp::listener::Handed::Connection(fd)) => {
                    let std = std::os::unix::net::UnixStream::from(fd);
                    std.set_nonblocking(true)?;
                    let stream = tokio::net::UnixStream::from_std(std)?;
                    lda.session(stream, "mcp".into()).await;
                }
                None => {
                    let listener = bind_unix(&in_queue(&config, &config.smtpc.lmtp_socket))?;
                    tracing::info!("lda ready");
                    lda.serve_unix(listener, stop).await;
                }
            }
            Ok(())
        })
    });
    drop(log);
    exit_code("lda", r)
}

enum Either {
    Unix(tokio::net::UnixListener),
    Tcp(tokio::net::TcpListener),
}

/// A passed listening socket as a tokio listener of its family.
fn unix_or_tcp(fd: OwnedFd) -> anyhow::Result<Either> {
    use nix::sys::socket::{AddressFamily, SockaddrLike, SockaddrStorage, getsockname};
    use std::os::fd::AsRawFd;
    let addr: SockaddrStorage = getsockname(fd.as_raw_fd()).context("passed socket")?;
    if addr.family() == Some(AddressFamily::Unix) {
        let l = std::os::unix::net::UnixListener::from(fd);
        l.set_nonblocking(true)?;
        Ok(Either::Unix(tokio::net::UnixListener::from_std(l)?))
    } else {
        let l = std::net::TcpListener::from(fd);
        l.set_nonblocking(true)?;
        Ok(Either::Tcp(tokio::net::TcpListener::from_std(l)?))
    }
}

// ---- run ---------------------------------------------------------------------

/// Environment variable by which mcp gives its components the absolute
/// queue directory (a relative `queue_directory` is relative to where
/// `smx run` was started, not to the components' working directory).
pub const ENV_QUEUE_DIRECTORY: &str = "SMX_QUEUE_DIRECTORY";

/// `smx run`: the supervisor in the foreground.
pub fn run(mut config: Config, config_file: Option<&Path>) -> ExitCode {
    let log = match smx_log::init(&smx_log::LogSettings {
        component: "mcp".into(),
        level: 9,
        destination: smx_log::Destination::Stderr,
    }) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("smx run: cannot start logging: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let r = (|| -> anyhow::Result<()> {
        let root = nix::unistd::geteuid().is_root();
        prepare_layout(&config, root)?;
        for p in crate::paths::check_files(&config, config_file, root) {
            tracing::warn!(problem = %p, "file named in the configuration");
        }
        mkdir(&config.queue_directory)?;
        config.queue_directory = std::fs::canonicalize(&config.queue_directory)
            .with_context(|| format!("{}", config.queue_directory.display()))?;
        let exe = std::env::current_exe().context("cannot find this program")?;
        let config_file = config_file
            .map(|p| std::path::absolute(p).with_context(|| format!("{}", p.display())))
            .transpose()?;
        let components = smx_mcp::plan(&config, &exe, config_file.as_deref());
        let reload_file = config_file.clone();
        let reload_exe = exe.clone();
        let reload_queue = config.queue_directory.clone();
        let reload: smx_mcp::supervisor::Reload = Box::new(move || {
            let home = std::env::var_os(smx_conf::HOME_ENV).map(PathBuf::from);
            let mut c = match &reload_file {
                Some(f) => smx_conf::load_file(f).map_err(|e| e.to_string())?,
                None => {
                    smx_conf::embedded_default(home.as_deref()).map_err(|e| format!("{e:?}"))?
                }
            };
            // The queue directory cannot move while running.
            c.queue_directory = reload_queue.clone();
            crate::paths::prepare(&c, root).map_err(|lines| lines.join("; "))?;
            Ok(smx_mcp::plan(&c, &reload_exe, reload_file.as_deref()))
        });
        tracing::info!(
            queue_directory = %config.queue_directory.display(),
            components = components.len(),
            "starting"
        );
        let queue = config.queue_directory.display().to_string();
        let sup = smx_mcp::Supervisor::new(components, smx_mcp::Timing::default())
            .with_reload(reload)
            .with_env(ENV_QUEUE_DIRECTORY, queue);
        runtime(Threads::One)?.block_on(sup.run(std::future::pending()))?;
        tracing::info!("stopped");
        Ok(())
    })();
    drop(log);
    exit_code("run", r)
}

/// Prepares the queue layout (crate::paths::prepare), logging what was done
/// and what is left; an unusable layout is a configuration problem.
fn prepare_layout(config: &Config, root: bool) -> anyhow::Result<()> {
    match crate::paths::prepare(config, root) {
        Ok(p) => {
            for a in &p.actions {
                tracing::info!(action = %a, "queue layout");
            }
            for w in &p.warnings {
                tracing::warn!(problem = %w, "queue layout");
            }
            Ok(())
        }
        Err(lines) => {
            for l in &lines {
                tracing::error!(problem = %l, "queue layout");
            }
            Err(ConfigProblem(format!(
                "the queue layout cannot be used (`smx conf-check --paths` lists the problems):\n  {}",
                lines.join("\n  ")
            ))
            .into())
        }
    }
}

// ---- start / stop ------------------------------------------------------------

/// The pid file of `smx start`.
fn pid_file(config: &Config) -> PathBuf {
    in_queue(config, Path::new("smx.pid"))
}

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|p| *p > 0)
}

/// `smx start`: `smx run` in the background, its output appended to
/// `smx.log` in the queue directory, its pid in `smx.pid`.
pub fn start(config: Config, config_file: Option<&Path>) -> ExitCode {
    let r = (|| -> anyhow::Result<()> {
        mkdir(&config.queue_directory)?;
        let pidf = pid_file(&config);
        if let Some(pid) = read_pid(&pidf)
            && alive(pid)
        {
            bail!("smx is already running (pid {pid}, {})", pidf.display());
        }
        let log_path = in_queue(&config, Path::new("smx.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let exe = std::env::current_exe().context("cannot find this program")?;
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("run");
        if let Some(f) = config_file {
            cmd.arg("-f").arg(std::path::absolute(f)?);
        }
        use std::os::unix::process::CommandExt;
        let child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("cannot start smx run")?;
        let pid = child.id();
        std::fs::write(&pidf, format!("{pid}\n"))
            .with_context(|| format!("cannot write {}", pidf.display()))?;
        // A configuration or socket error ends it at once: say so.
        std::thread::sleep(std::time::Duration::from_millis(500));
        if !alive(i32::try_from(pid).unwrap_or(0)) {
            let _ = std::fs::remove_file(&pidf);
            bail!("smx run exited at once; see {}", log_path.display());
        }
        println!("smx started (pid {pid}); log: {}", log_path.display());
        Ok(())
    })();
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("smx start: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `smx stop`: SIGTERM to the pid in `smx.pid`, then wait (at most 30 s)
/// until it is gone.
pub fn stop(config: Config) -> ExitCode {
    let pidf = pid_file(&config);
    let Some(pid) = read_pid(&pidf) else {
        eprintln!("smx stop: not running (no pid in {})", pidf.display());
        return ExitCode::FAILURE;
    };
    if !alive(pid) {
        let _ = std::fs::remove_file(&pidf);
        eprintln!("smx stop: not running (stale pid {pid} removed)");
        return ExitCode::FAILURE;
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    );
    for _ in 0..300 {
        if !alive(pid) {
            let _ = std::fs::remove_file(&pidf);
            println!("smx stopped");
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    eprintln!("smx stop: pid {pid} still running after 30 s");
    ExitCode::FAILURE
}
