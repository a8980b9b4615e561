//! What mcp starts: the list of components, worked out from the
//! configuration without touching the system (seed 3.7, 8.2).
//!
//! One [`Component`] per section that mcp runs: `qmgr`, `smar`, `smtpc`,
//! `lda` (when `enabled`), every `smtps` section (the unnamed one is called
//! `smtps`, a named one by its name) and every `service NAME`. Each has:
//!
//! * its program: `path`, default this smx binary;
//! * its argv: `arguments` (whose first word is argv\[0\]), default
//!   `smx SUBCOMMAND -f CONFIG` (plus `--name NAME` for a named smtps);
//!   with `pass_id` the option and the process's number (0, 1, ...) are
//!   inserted as the first arguments;
//! * `min_processes` processes (mcp keeps that many running);
//! * the working directory: `working_directory`, default the queue
//!   directory; relative socket paths are below the queue directory;
//! * the MCP options as configured: start_action, listen_socket,
//!   pass_fd_socket, user, group, restart_dependencies.
//!
//! A name in `restart_dependencies` matches a component of that name, or
//! every smtps instance when it is `smtps` (case-insensitive).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use smx_conf::Config;
use smx_conf::model::common::{ListenSocket, McpOptions, SocketType, StartAction};

/// A component as mcp runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    /// Its name (for logs and restart_dependencies).
    pub name: String,
    /// What kind: qmgr, smar, smtpc, lda, smtps or service.
    pub kind: Kind,
    /// The program.
    pub program: PathBuf,
    /// argv\[0\].
    pub argv0: String,
    /// The arguments after argv\[0\] (without the pass_id option).
    pub args: Vec<String>,
    /// The option that passes the process number, if any.
    pub pass_id: Option<String>,
    /// Processes to keep running.
    pub processes: u32,
    /// chdir here before exec.
    pub working_directory: PathBuf,
    /// How it is started.
    pub start_action: StartAction,
    /// The socket mcp binds for it.
    pub listen: Option<Listen>,
    /// Where mcp passes the listening socket (start_action pass).
    pub pass_fd_socket: Option<PathBuf>,
    /// User to run as.
    pub user: Option<String>,
    /// Group to run as.
    pub group: Option<String>,
    /// Components restarted with it.
    pub restart_dependencies: Vec<String>,
}

/// Component kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The queue manager.
    Qmgr,
    /// The address resolver.
    Smar,
    /// The delivery agent.
    Smtpc,
    /// The local delivery agent.
    Lda,
    /// An SMTP server.
    Smtps,
    /// Another program.
    Service,
}

impl Kind {
    /// The smx subcommand that runs this kind.
    pub fn subcommand(self) -> Option<&'static str> {
        Some(match self {
            Kind::Qmgr => "qmgr",
            Kind::Smar => "smar",
            Kind::Smtpc => "smtpc",
            Kind::Lda => "lda",
            Kind::Smtps => "smtps",
            Kind::Service => return None,
        })
    }
}

/// A listening socket to bind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Listen {
    /// TCP.
    Inet(SocketAddr),
    /// A Unix socket file.
    Unix {
        /// The path.
        path: PathBuf,
        /// umask applied to the socket file's mode.
        umask: u32,
        /// Owner.
        user: Option<String>,
        /// Group.
        group: Option<String>,
    },
}

impl Component {
    /// Whether `dep` (a restart_dependencies entry) names this component.
    pub fn matches(&self, dep: &str) -> bool {
        self.name.eq_ignore_ascii_case(dep)
            || (self.kind == Kind::Smtps && dep.eq_ignore_ascii_case("smtps"))
    }

    /// The full argv after argv\[0\] for process number `id`.
    pub fn args_for(&self, id: u32) -> Vec<String> {
        let mut a = Vec::with_capacity(self.args.len() + 2);
        if let Some(opt) = &self.pass_id {
            a.push(opt.clone());
            a.push(id.to_string());
        }
        a.extend(self.args.iter().cloned());
        a
    }
}

fn listen(ls: &ListenSocket, queue: &Path) -> Option<Listen> {
    match ls.kind {
        SocketType::Inet => {
            let ip = ls.address.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            Some(Listen::Inet(SocketAddr::new(ip, ls.port?)))
        }
        SocketType::Unix => Some(Listen::Unix {
            path: queue.join(ls.path.as_ref()?),
            umask: ls.umask,
            user: ls.user.clone(),
            group: ls.group.clone(),
        }),
    }
}

fn component(
    name: String,
    kind: Kind,
    mcp: &McpOptions,
    queue: &Path,
    self_exe: &Path,
    config_file: Option<&Path>,
    extra: &[String],
) -> Component {
    let program = mcp.path.clone().unwrap_or_else(|| self_exe.to_path_buf());
    let (argv0, args) = match &mcp.arguments {
        Some(words) if !words.0.is_empty() => (words.0[0].clone(), words.0[1..].to_vec()),
        _ => {
            let mut args = Vec::new();
            if let Some(sub) = kind.subcommand() {
                args.push(sub.to_string());
            }
            if let Some(f) = config_file {
                args.push("-f".into());
                args.push(f.display().to_string());
            }
            args.extend(extra.iter().cloned());
            ("smx".to_string(), args)
        }
    };
    Component {
        name,
        kind,
        program,
        argv0,
        args,
        pass_id: mcp.pass_id.clone(),
        processes: mcp.min_processes.max(1),
        working_directory: mcp
            .working_directory
            .as_ref()
            .map_or_else(|| queue.to_path_buf(), |w| queue.join(w)),
        start_action: mcp.start_action,
        listen: mcp.listen_socket.as_ref().and_then(|l| listen(l, queue)),
        pass_fd_socket: mcp.pass_fd_socket.as_ref().map(|p| queue.join(p)),
        user: mcp.user.clone(),
        group: mcp.group.clone(),
        restart_dependencies: mcp.restart_dependencies.clone(),
    }
}

/// The components of `config`. `self_exe` is this binary; `config_file`
/// the configuration file to pass on (`None`: the embedded default).
pub fn plan(config: &Config, self_exe: &Path, config_file: Option<&Path>) -> Vec<Component> {
    let q = &config.queue_directory;
    let mut out = vec![
        component(
            "qmgr".into(),
            Kind::Qmgr,
            &config.qmgr.mcp,
            q,
            self_exe,
            config_file,
            &[],
        ),
        component(
            "smar".into(),
            Kind::Smar,
            &config.smar.mcp,
            q,
            self_exe,
            config_file,
            &[],
        ),
        component(
            "smtpc".into(),
            Kind::Smtpc,
            &config.smtpc.mcp,
            q,
            self_exe,
            config_file,
            &[],
        ),
    ];
    if config.lda.enabled {
        out.push(component(
            "lda".into(),
            Kind::Lda,
            &config.lda.mcp,
            q,
            self_exe,
            config_file,
            &[],
        ));
    }
    for s in config.smtps.iter() {
        let (name, extra) = match &s.name {
            Some(n) => (n.clone(), vec!["--name".to_string(), n.clone()]),
            None => ("smtps".to_string(), Vec::new()),
        };
        out.push(component(
            name,
            Kind::Smtps,
            &s.body.mcp,
            q,
            self_exe,
            config_file,
            &extra,
        ));
    }
    for s in config.services.iter() {
        let name = s.name.clone().unwrap_or_else(|| "service".into());
        out.push(component(
            name,
            Kind::Service,
            &s.body.mcp,
            q,
            self_exe,
            config_file,
            &[],
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_plan() {
        let cfg = smx_conf::embedded_default(Some(Path::new("/home/u"))).unwrap();
        let p = plan(&cfg, Path::new("/usr/bin/smx"), None);
        let names: Vec<_> = p.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["qmgr", "smar", "smtpc", "lda", "smtps"]);
        let smtps = &p[4];
        assert_eq!(smtps.program, PathBuf::from("/usr/bin/smx"));
        assert_eq!(smtps.args, ["smtps"]);
        assert_eq!(smtps.start_action, StartAction::Pass);
        assert_eq!(
            smtps.listen,
            Some(Listen::Inet("127.0.0.1:2525".parse().unwrap()))
        );
        assert!(
            smtps
                .pass_fd_socket
                .as_ref()
                .is_some_and(|p| p.starts_with(&cfg.queue_directory))
        );
        let lda = &p[3];
        assert!(
            matches!(&lda.listen, Some(Listen::Unix { path, .. }) if path.ends_with("lmtpsock"))
        );
        assert_eq!(p[0].start_action, StartAction::Wait);
        assert_eq!(p[0].working_directory, cfg.queue_directory);
    }

    #[test]
    fn configured_programs_and_ids() {
        let cfg = smx_conf::load_str(
            "t.conf",
            r#"
            queue_directory = /q;
            smtps MTA { listen_socket { type = inet; port = 25; } restart_dependencies = { qmgr }; }
            smtps MSA { id = 1; listen_socket { type = inet; port = 587; } pass_fd_socket = msafd; }
            service lmtpd { path = /usr/sbin/lmtpd; arguments = "lmtpd -d"; pass_id = "-i";
                            min_processes = 2; max_processes = 2; }
            "#,
        )
        .unwrap();
        let p = plan(
            &cfg,
            Path::new("/bin/smx"),
            Some(Path::new("/etc/smx.conf")),
        );
        let mta = p.iter().find(|c| c.name == "MTA").unwrap();
        assert_eq!(mta.args, ["smtps", "-f", "/etc/smx.conf", "--name", "MTA"]);
        assert!(mta.matches("smtps") && mta.matches("mta") && !mta.matches("qmgr"));
        let msa = p.iter().find(|c| c.name == "MSA").unwrap();
        assert_eq!(msa.pass_fd_socket, Some(PathBuf::from("/q/msafd")));
        let svc = p.iter().find(|c| c.name == "lmtpd").unwrap();
        assert_eq!(svc.program, PathBuf::from("/usr/sbin/lmtpd"));
        assert_eq!(svc.argv0, "lmtpd");
        assert_eq!(svc.processes, 2);
        assert_eq!(svc.args_for(1), ["-i", "1", "-d"]);
    }
}
