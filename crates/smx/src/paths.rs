//! `smx conf-check --paths [--fix]`: checks the directories of the queue
//! (seed 2.4.1, the seed's `sm.check.sh`) and optionally creates and
//! repairs them.
//!
//! [`layout`] computes, from the configuration alone, the directories smx
//! uses below (or outside) the queue directory, each with its mode and the
//! component whose user and group must own it. [`check`] compares that list
//! with the file system; [`fix`] creates what is missing and corrects modes
//! and owners, after which the caller checks again.
//!
//! # The layout
//!
//! | directory | mode | owner | group |
//! | --- | --- | --- | --- |
//! | queue directory | 0755 | qmgr | qmgr |
//! | `CDB_base_directory` (when set) | any | — | — |
//! | CDB `0` … `9`, `A` … `F` | 0771 | smtps | qmgr |
//! | `ibdb` | 0700 | qmgr | qmgr |
//! | DEFEDB `base_directory` | 0700 | qmgr | qmgr |
//! | directory of `SMTPS_socket` (`qmsmtps`) | 02770 | qmgr | smtps |
//! | directory of `SMTPC_socket` (`qmsmtpc`) | 02770 | qmgr | smtpc |
//! | directory of `SMAR_socket` (`qmsmar`) | 02771 | qmgr | smar |
//! | `smtps` (id state) and each smtps `pass_fd_socket` directory | 0750 | smtps | smtps |
//! | lda `pass_fd_socket` directory (`lda`) | 0750 | lda | lda |
//! | lda `mail_directory` (`mail`) | 0700 | lda | lda |
//!
//! Relative paths are below the queue directory. A directory configured
//! outside the queue directory (an absolute path, or one with `..`) other
//! than the CDB directories may be shared with other programs (`/run`,
//! `/var/mail`), so it is only checked to exist; its mode and owner are
//! neither checked nor changed. A socket directory that is
//! the queue directory itself is not listed again; when two entries name the
//! same directory, the first one counts. The socket directories follow the
//! seed (setgid, so sockets made in them get the directory's group), except
//! that `qmsmar` lets others traverse it: in smx the SMTP server talks to the
//! address resolver directly, and access is governed by the socket's own
//! mode. The queue directory belongs to qmgr because qmgr keeps its id state
//! there.
//!
//! # Owners
//!
//! "smtps", "qmgr" and so on above mean the `user` (and `group`, default the
//! user's primary group) of that component's section. Owners are checked
//! and changed only when this process runs as root and the section names a
//! user or group; a user or group that does not exist is itself a problem.
//! Without users (a test or single-user installation) only existence, type
//! and mode are checked.
//!
//! # Rules
//!
//! Paths are followed through symbolic links (a CDB directory may be a link
//! to another disk, seed 9.2). Nothing is ever removed: a path of the wrong
//! type is reported and left for the operator. Problems are reported one
//! per line, `PATH: what is wrong`.

use std::collections::HashMap;
use std::collections::hash_map::Entry as Slot;
use std::fmt;
use std::fs::{self, DirBuilder, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use smx_conf::Config;
use smx_conf::model::common::{McpOptions, StartAction};

use crate::EX_CONFIG;

/// Mode given to a created directory whose entry does not fix one.
const DEFAULT_DIR_MODE: u32 = 0o755;

/// The user and group a component runs as, from its section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The component (section) name, for messages.
    pub component: String,
    /// `user`, if configured.
    pub user: Option<String>,
    /// `group`, if configured; otherwise the user's primary group.
    pub group: Option<String>,
}

impl Identity {
    fn of(component: &str, mcp: &McpOptions) -> Identity {
        Identity {
            component: component.to_owned(),
            user: mcp.user.clone(),
            group: mcp.group.clone(),
        }
    }
}

/// One directory of the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Where it is.
    pub path: PathBuf,
    /// What it is (e.g. "CDB directory"), for messages.
    pub purpose: &'static str,
    /// Required permission bits (including setgid); `None`: any.
    pub mode: Option<u32>,
    /// The component whose user must own it.
    pub owner: Option<Identity>,
    /// The component whose group it must have.
    pub group: Option<Identity>,
}

/// The directories smx uses for `config`, parents before children.
pub fn layout(config: &Config) -> Vec<Entry> {
    let q = &config.queue_directory;
    let qmgr = Identity::of("qmgr", &config.qmgr.mcp);
    let smtps = config
        .smtps
        .items
        .first()
        .map(|s| Identity::of(&smtps_name(&s.name), &s.body.mcp))
        .unwrap_or_else(|| Identity {
            component: "smtps".into(),
            user: None,
            group: None,
        });
    let smtpc = Identity::of("smtpc", &config.smtpc.mcp);
    let smar = Identity::of("smar", &config.smar.mcp);
    let lda = Identity::of("lda", &config.lda.mcp);

    let mut out: Vec<Entry> = Vec::new();
    let mut push = |e: Entry| {
        if !out.iter().any(|o| o.path == e.path) {
            out.push(e);
        }
    };
    let dir = |path: PathBuf,
               purpose: &'static str,
               mode: Option<u32>,
               owner: &Identity,
               group: &Identity| {
        // A directory outside the queue may be shared with other programs
        // (`/run`, `/var/mail`): only its existence is checked.
        let ours = inside(q, &path);
        Entry {
            path,
            purpose,
            mode: mode.filter(|_| ours),
            owner: Some(owner.clone()).filter(|_| ours),
            group: Some(group.clone()).filter(|_| ours),
        }
    };

    push(dir(q.clone(), "queue directory", Some(0o755), &qmgr, &qmgr));

    let cdb_base = if config.cdb_base_directory.is_empty() {
        q.clone()
    } else {
        q.join(&config.cdb_base_directory)
    };
    if cdb_base != *q {
        push(Entry {
            path: cdb_base.clone(),
            purpose: "CDB base directory",
            mode: None,
            owner: None,
            group: None,
        });
    }
    // The sixteen CDB directories are smx's own wherever they are (seed
    // 9.2 spreads them over disks).
    for i in 0..smx_store::cdb::SUBDIRS {
        push(Entry {
            path: cdb_base.join(format!("{i:X}")),
            purpose: "CDB directory",
            mode: Some(smx_store::cdb::DIR_MODE),
            owner: Some(smtps.clone()),
            group: Some(qmgr.clone()),
        });
    }
    push(dir(
        q.join("ibdb"),
        "IBDB directory",
        Some(0o700),
        &qmgr,
        &qmgr,
    ));
    push(dir(
        q.join(&config.qmgr.defedb.base_directory),
        "DEFEDB directory",
        Some(0o700),
        &qmgr,
        &qmgr,
    ));

    let sockets = [
        (
            &config.smtps_socket,
            "SMTPS_socket directory",
            0o2770,
            &smtps,
        ),
        (
            &config.smtpc_socket,
            "SMTPC_socket directory",
            0o2770,
            &smtpc,
        ),
        (&config.smar_socket, "SMAR_socket directory", 0o2771, &smar),
    ];
    for (socket, purpose, mode, peer) in sockets {
        if let Some(parent) = socket_dir(q, socket) {
            push(dir(parent, purpose, Some(mode), &qmgr, peer));
        }
    }

    push(dir(
        q.join("smtps"),
        "smtps id state directory",
        Some(0o750),
        &smtps,
        &smtps,
    ));
    for s in &config.smtps.items {
        let who = Identity::of(&smtps_name(&s.name), &s.body.mcp);
        if let Some(parent) = fd_socket_dir(q, &s.body.mcp) {
            push(dir(
                parent,
                "smtps pass_fd_socket directory",
                Some(0o750),
                &who,
                &who,
            ));
        }
    }
    if config.lda.enabled {
        if let Some(parent) = fd_socket_dir(q, &config.lda.mcp) {
            push(dir(
                parent,
                "lda pass_fd_socket directory",
                Some(0o750),
                &lda,
                &lda,
            ));
        }
        push(dir(
            q.join(&config.lda.mail_directory),
            "mailbox directory",
            Some(0o700),
            &lda,
            &lda,
        ));
    }
    out
}

fn smtps_name(name: &Option<String>) -> String {
    match name {
        Some(n) => format!("smtps {n}"),
        None => "smtps".into(),
    }
}

/// Whether `path` is the queue directory or below it (no `..` step).
fn inside(queue: &Path, path: &Path) -> bool {
    path.strip_prefix(queue).is_ok_and(|rest| {
        !rest
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    })
}

/// The directory of a socket, unless it is the queue directory itself.
fn socket_dir(queue: &Path, socket: &Path) -> Option<PathBuf> {
    let parent = queue.join(socket).parent()?.to_path_buf();
    (parent != queue && !parent.as_os_str().is_empty()).then_some(parent)
}

fn fd_socket_dir(queue: &Path, mcp: &McpOptions) -> Option<PathBuf> {
    if mcp.start_action != StartAction::Pass {
        return None;
    }
    socket_dir(queue, mcp.pass_fd_socket.as_deref()?)
}

/// User and group lookups (the system's, or a table in tests).
pub trait Accounts {
    /// The uid and primary gid of user `name`.
    fn user(&self, name: &str) -> Option<(u32, u32)>;
    /// The gid of group `name`.
    fn group(&self, name: &str) -> Option<u32>;
}

/// The system's users and groups (passwd and group databases).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemAccounts;

impl Accounts for SystemAccounts {
    fn user(&self, name: &str) -> Option<(u32, u32)> {
        match nix::unistd::User::from_name(name) {
            Ok(Some(u)) => Some((u.uid.as_raw(), u.gid.as_raw())),
            _ => None,
        }
    }

    fn group(&self, name: &str) -> Option<u32> {
        match nix::unistd::Group::from_name(name) {
            Ok(Some(g)) => Some(g.gid.as_raw()),
            _ => None,
        }
    }
}

/// Something wrong with the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The directory does not exist.
    Missing {
        /// The path.
        path: PathBuf,
        /// What it is for.
        purpose: &'static str,
        /// Its required mode.
        mode: Option<u32>,
    },
    /// The path exists but is not a directory.
    NotADirectory {
        /// The path.
        path: PathBuf,
        /// What it is for.
        purpose: &'static str,
    },
    /// The permission bits differ.
    Mode {
        /// The path.
        path: PathBuf,
        /// Its mode.
        found: u32,
        /// The required mode.
        expected: u32,
    },
    /// The owner differs.
    Owner {
        /// The path.
        path: PathBuf,
        /// Its uid.
        found: u32,
        /// The required user.
        expected: String,
        /// Its uid.
        uid: u32,
    },
    /// The group differs.
    Group {
        /// The path.
        path: PathBuf,
        /// Its gid.
        found: u32,
        /// The required group (a name, or the user whose primary group it is).
        expected: String,
        /// Its gid.
        gid: u32,
    },
    /// A configured user does not exist.
    NoSuchUser {
        /// The user.
        name: String,
        /// The section that names it.
        component: String,
    },
    /// A configured group does not exist.
    NoSuchGroup {
        /// The group.
        name: String,
        /// The section that names it.
        component: String,
    },
    /// The path cannot be examined.
    Unreadable {
        /// The path.
        path: PathBuf,
        /// Why.
        error: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Missing {
                path,
                purpose,
                mode,
            } => {
                write!(f, "{}: missing ({purpose}", path.display())?;
                if let Some(m) = mode {
                    write!(f, ", mode {m:04o}")?;
                }
                write!(f, ")")
            }
            Problem::NotADirectory { path, purpose } => {
                write!(
                    f,
                    "{}: not a directory (expected: {purpose})",
                    path.display()
                )
            }
            Problem::Mode {
                path,
                found,
                expected,
            } => write!(
                f,
                "{}: mode {found:04o}, expected {expected:04o}",
                path.display()
            ),
            Problem::Owner {
                path,
                found,
                expected,
                uid,
            } => write!(
                f,
                "{}: owner uid {found}, expected {expected} (uid {uid})",
                path.display()
            ),
            Problem::Group {
                path,
                found,
                expected,
                gid,
            } => write!(
                f,
                "{}: group gid {found}, expected {expected} (gid {gid})",
                path.display()
            ),
            Problem::NoSuchUser { name, component } => {
                write!(
                    f,
                    "{component}: user '{}' does not exist",
                    name.escape_debug()
                )
            }
            Problem::NoSuchGroup { name, component } => {
                write!(
                    f,
                    "{component}: group '{}' does not exist",
                    name.escape_debug()
                )
            }
            Problem::Unreadable { path, error } => {
                write!(f, "{}: cannot examine: {error}", path.display())
            }
        }
    }
}

/// The uid and gid an entry must have (each `None`: not checked).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Wanted {
    uid: Option<(u32, usize)>,
    gid: Option<(u32, usize)>,
}

/// Resolved owners: per entry, and the names for messages.
struct Owners {
    wanted: Vec<Wanted>,
    names: Vec<String>,
    problems: Vec<Problem>,
}

/// Resolves every entry's owner and group; unknown names become problems
/// (once per name). With `with_owners` false nothing is resolved.
fn resolve(entries: &[Entry], accounts: &dyn Accounts, with_owners: bool) -> Owners {
    let mut o = Owners {
        wanted: vec![Wanted::default(); entries.len()],
        names: Vec::new(),
        problems: Vec::new(),
    };
    if !with_owners {
        return o;
    }
    let mut cache: HashMap<String, Option<(u32, usize)>> = HashMap::new();
    let name_index = |label: String, names: &mut Vec<String>| -> usize {
        if let Some(i) = names.iter().position(|n| *n == label) {
            i
        } else {
            names.push(label);
            names.len() - 1
        }
    };
    for (i, e) in entries.iter().enumerate() {
        if let Some(id) = &e.owner
            && let Some(user) = &id.user
        {
            let key = format!("u:{user}");
            let found = match cache.get(&key) {
                Some(v) => *v,
                None => {
                    let v = match accounts.user(user) {
                        Some((uid, _)) => Some((uid, name_index(user.clone(), &mut o.names))),
                        None => {
                            o.problems.push(Problem::NoSuchUser {
                                name: user.clone(),
                                component: id.component.clone(),
                            });
                            None
                        }
                    };
                    cache.insert(key, v);
                    v
                }
            };
            o.wanted[i].uid = found;
        }
        if let Some(id) = &e.group {
            let (key, label) = match (&id.group, &id.user) {
                (Some(g), _) => (format!("g:{g}"), g.clone()),
                (None, Some(u)) => (format!("p:{u}"), format!("{u}'s group")),
                (None, None) => continue,
            };
            let found = match cache.get(&key) {
                Some(v) => *v,
                None => {
                    let gid = match (&id.group, &id.user) {
                        (Some(g), _) => {
                            let gid = accounts.group(g);
                            if gid.is_none() {
                                o.problems.push(Problem::NoSuchGroup {
                                    name: g.clone(),
                                    component: id.component.clone(),
                                });
                            }
                            gid
                        }
                        // The user's absence is reported with the owner.
                        (None, Some(u)) => match accounts.user(u) {
                            Some((_, gid)) => Some(gid),
                            None => {
                                if let Slot::Vacant(v) = cache.entry(format!("u:{u}")) {
                                    o.problems.push(Problem::NoSuchUser {
                                        name: u.clone(),
                                        component: id.component.clone(),
                                    });
                                    v.insert(None);
                                }
                                None
                            }
                        },
                        (None, None) => None,
                    };
                    let v = gid.map(|g| (g, name_index(label, &mut o.names)));
                    cache.insert(key, v);
                    v
                }
            };
            o.wanted[i].gid = found;
        }
    }
    o
}

/// Checks `entries` against the file system. Owners are checked only when
/// `with_owners` (this process runs as root).
pub fn check(entries: &[Entry], accounts: &dyn Accounts, with_owners: bool) -> Vec<Problem> {
    let owners = resolve(entries, accounts, with_owners);
    let mut problems = owners.problems.clone();
    for (e, w) in entries.iter().zip(&owners.wanted) {
        check_one(e, w, &owners.names, &mut problems);
    }
    problems
}

fn check_one(e: &Entry, w: &Wanted, names: &[String], problems: &mut Vec<Problem>) {
    let path = e.path.clone();
    let meta = match fs::metadata(&e.path) {
        Ok(m) => m,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            problems.push(Problem::Missing {
                path,
                purpose: e.purpose,
                mode: e.mode,
            });
            return;
        }
        Err(err) => {
            problems.push(Problem::Unreadable {
                path,
                error: err.to_string(),
            });
            return;
        }
    };
    if !meta.is_dir() {
        problems.push(Problem::NotADirectory {
            path,
            purpose: e.purpose,
        });
        return;
    }
    let found = meta.mode() & 0o7777;
    if let Some(expected) = e.mode
        && found != expected
    {
        problems.push(Problem::Mode {
            path: path.clone(),
            found,
            expected,
        });
    }
    let name = |i: usize| names.get(i).cloned().unwrap_or_default();
    if let Some((uid, n)) = w.uid
        && meta.uid() != uid
    {
        problems.push(Problem::Owner {
            path: path.clone(),
            found: meta.uid(),
            expected: name(n),
            uid,
        });
    }
    if let Some((gid, n)) = w.gid
        && meta.gid() != gid
    {
        problems.push(Problem::Group {
            path,
            found: meta.gid(),
            expected: name(n),
            gid,
        });
    }
}

/// What [`fix`] did or could not do, one line each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Created the directory.
    Created(PathBuf),
    /// Changed its mode.
    Chmod(PathBuf, u32),
    /// Changed its owner and/or group.
    Chown(PathBuf, Option<u32>, Option<u32>),
    /// Could not repair it.
    Failed(PathBuf, String),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Created(p) => write!(f, "{}: created", p.display()),
            Action::Chmod(p, m) => write!(f, "{}: mode set to {m:04o}", p.display()),
            Action::Chown(p, u, g) => {
                write!(f, "{}: owner set to", p.display())?;
                if let Some(u) = u {
                    write!(f, " uid {u}")?;
                }
                if let Some(g) = g {
                    write!(f, " gid {g}")?;
                }
                Ok(())
            }
            Action::Failed(p, e) => write!(f, "{}: cannot fix: {e}", p.display()),
        }
    }
}

/// Creates missing directories and corrects modes (and, with `with_owners`,
/// owners and groups). Paths of the wrong type are left alone. Returns what
/// was done, in order.
pub fn fix(entries: &[Entry], accounts: &dyn Accounts, with_owners: bool) -> Vec<Action> {
    let owners = resolve(entries, accounts, with_owners);
    let mut actions = Vec::new();
    for (e, w) in entries.iter().zip(&owners.wanted) {
        fix_one(e, w, &mut actions);
    }
    actions
}

fn fix_one(e: &Entry, w: &Wanted, actions: &mut Vec<Action>) {
    let failed = |err: io::Error| Action::Failed(e.path.clone(), err.to_string());
    let meta = match fs::metadata(&e.path) {
        Ok(m) => m,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            let mode = e.mode.unwrap_or(DEFAULT_DIR_MODE);
            match DirBuilder::new()
                .recursive(true)
                .mode(mode & 0o777)
                .create(&e.path)
            {
                Ok(()) => actions.push(Action::Created(e.path.clone())),
                Err(err) => {
                    actions.push(failed(err));
                    return;
                }
            }
            match fs::metadata(&e.path) {
                Ok(m) => m,
                Err(err) => {
                    actions.push(failed(err));
                    return;
                }
            }
        }
        Err(err) => {
            actions.push(failed(err));
            return;
        }
    };
    if !meta.is_dir() {
        actions.push(Action::Failed(
            e.path.clone(),
            "not a directory (left alone)".into(),
        ));
        return;
    }
    // Owner first: changing it may clear the setgid bit, which the mode
    // then sets again.
    let uid = w.uid.map(|(u, _)| u).filter(|u| *u != meta.uid());
    let gid = w.gid.map(|(g, _)| g).filter(|g| *g != meta.gid());
    if uid.is_some() || gid.is_some() {
        match nix::unistd::chown(
            &e.path,
            uid.map(nix::unistd::Uid::from_raw),
            gid.map(nix::unistd::Gid::from_raw),
        ) {
            Ok(()) => actions.push(Action::Chown(e.path.clone(), uid, gid)),
            Err(err) => actions.push(failed(err.into())),
        }
    }
    // The mode given to mkdir(2) is reduced by the umask and loses the
    // setgid bit; set it exactly, also on a directory just created.
    if let Some(mode) = e.mode {
        let now = fs::metadata(&e.path).map(|m| m.mode() & 0o7777);
        if now.as_ref().ok() != Some(&mode) {
            match fs::set_permissions(&e.path, Permissions::from_mode(mode)) {
                Ok(()) => actions.push(Action::Chmod(e.path.clone(), mode)),
                Err(err) => actions.push(failed(err)),
            }
        }
    }
}

/// `smx conf-check --paths [--fix]`: prints every problem (one per line,
/// on standard output) or `OK`; with `fix`, repairs first and prints what
/// it did. Exit status 0 when the layout is right, EX_CONFIG otherwise.
pub fn conf_check(config: &Config, fix_it: bool) -> ExitCode {
    let entries = layout(config);
    let root = nix::unistd::geteuid().is_root();
    let accounts = SystemAccounts;
    if fix_it {
        for a in fix(&entries, &accounts, root) {
            println!("{a}");
        }
    }
    let problems = check(&entries, &accounts, root);
    if problems.is_empty() {
        println!("OK");
        return ExitCode::SUCCESS;
    }
    for p in &problems {
        println!("{p}");
    }
    let n = problems.len();
    eprintln!(
        "{n} problem{} in the queue layout{}",
        if n == 1 { "" } else { "s" },
        if fix_it { "" } else { " (--fix repairs them)" }
    );
    ExitCode::from(EX_CONFIG)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn config(text: &str, queue: &Path) -> Config {
        let mut c = smx_conf::load_str("test.conf", text).unwrap();
        c.queue_directory = queue.to_path_buf();
        c
    }

    struct Table;

    impl Accounts for Table {
        fn user(&self, name: &str) -> Option<(u32, u32)> {
            match name {
                "smxq" => Some((4001, 5001)),
                "smxs" => Some((4002, 5002)),
                _ => None,
            }
        }
        fn group(&self, name: &str) -> Option<u32> {
            (name == "smxgrp").then_some(5100)
        }
    }

    fn find<'a>(entries: &'a [Entry], path: &Path) -> &'a Entry {
        entries.iter().find(|e| e.path == path).unwrap()
    }

    #[test]
    fn default_layout_has_every_directory_once() {
        let q = Path::new("/q");
        let entries = layout(&config("", q));
        let paths: Vec<_> = entries.iter().map(|e| e.path.clone()).collect();
        let mut expected = vec![PathBuf::from("/q")];
        for d in "0123456789ABCDEF".chars() {
            expected.push(q.join(d.to_string()));
        }
        for d in [
            "ibdb", "defedb", "qmsmtps", "qmsmtpc", "qmsmar", "smtps", "lda", "mail",
        ] {
            expected.push(q.join(d));
        }
        assert_eq!(paths, expected);
        assert_eq!(find(&entries, &q.join("A")).mode, Some(0o771));
        assert_eq!(find(&entries, &q.join("qmsmtps")).mode, Some(0o2770));
        assert_eq!(find(&entries, &q.join("ibdb")).mode, Some(0o700));
        let cdb = find(&entries, &q.join("F"));
        assert_eq!(cdb.owner.as_ref().unwrap().component, "smtps");
        assert_eq!(cdb.group.as_ref().unwrap().component, "qmgr");
    }

    #[test]
    fn configured_paths_move_entries() {
        let q = Path::new("/q");
        let entries = layout(&config(
            "CDB_base_directory = /disk/cdb/; SMAR_socket = smarsock; \
             qmgr { defedb { base_directory = db/defedb; } }\n\
             lda { enabled = false; }\n\
             smtps MTA { listen_socket { type = inet; port = 25; } }\n\
             smtps MSA { id = 1; listen_socket { type = inet; port = 587; } pass_fd_socket = msa/fd; user = smxs; }\n",
            q,
        ));
        let paths: Vec<_> = entries.iter().map(|e| e.path.clone()).collect();
        assert!(paths.contains(&PathBuf::from("/disk/cdb/")));
        assert!(paths.contains(&PathBuf::from("/disk/cdb/7")));
        assert!(!paths.contains(&q.join("7")));
        assert!(paths.contains(&q.join("db/defedb")));
        assert!(!paths.iter().any(|p| p.ends_with("qmsmar")));
        assert!(!paths.contains(&q.join("mail")));
        assert!(!paths.contains(&q.join("lda")));
        let cdb = find(&entries, Path::new("/disk/cdb/7"));
        assert_eq!(cdb.mode, Some(0o771));
        let outside = layout(&config(
            "SMTPS_socket = /run/smtps.sock; lda { mail_directory = ../mail; }",
            q,
        ));
        for p in ["/run", "/q/../mail"] {
            let e = find(&outside, Path::new(p));
            assert_eq!((e.mode, &e.owner, &e.group), (None, &None, &None), "{p}");
        }
        let msa = find(&entries, &q.join("msa"));
        assert_eq!(msa.owner.as_ref().unwrap().user.as_deref(), Some("smxs"));
    }

    #[test]
    fn owners_are_resolved_and_unknown_names_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        let q = dir.path().join("q");
        let c = config(
            "qmgr { user = smxq; } smtps { user = nobody_here; } smar { user = smxs; group = nogroup_here; }",
            &q,
        );
        let entries = layout(&c);
        let o = resolve(&entries, &Table, true);
        assert_eq!(
            o.problems,
            vec![
                Problem::NoSuchUser {
                    name: "nobody_here".into(),
                    component: "smtps".into()
                },
                Problem::NoSuchGroup {
                    name: "nogroup_here".into(),
                    component: "smar".into()
                },
            ]
        );
        let i = entries
            .iter()
            .position(|e| e.path == q.join("ibdb"))
            .unwrap();
        assert_eq!(o.wanted[i].uid.map(|w| w.0), Some(4001));
        assert_eq!(o.wanted[i].gid.map(|w| w.0), Some(5001));
        let i = entries.iter().position(|e| e.path == q.join("3")).unwrap();
        assert_eq!(o.wanted[i].uid, None);
        assert_eq!(o.wanted[i].gid.map(|w| w.0), Some(5001));
        // Without root nothing is resolved.
        assert!(resolve(&entries, &Table, false).problems.is_empty());
    }

    #[test]
    fn check_reports_owner_and_fix_leaves_wrong_types() {
        let dir = tempfile::tempdir().unwrap();
        let q = dir.path().join("q");
        let entries = layout(&config("", &q));
        assert!(
            fix(&entries, &Table, false)
                .iter()
                .all(|a| !matches!(a, Action::Failed(..)))
        );
        assert!(check(&entries, &Table, false).is_empty());
        // A file where a directory belongs is reported and not removed.
        fs::remove_dir(q.join("mail")).unwrap();
        fs::write(q.join("mail"), b"x").unwrap();
        let p = check(&entries, &Table, false);
        assert_eq!(
            p,
            vec![Problem::NotADirectory {
                path: q.join("mail"),
                purpose: "mailbox directory"
            }]
        );
        let a = fix(&entries, &Table, false);
        assert!(matches!(&a[..], [Action::Failed(path, _)] if *path == q.join("mail")));
        assert_eq!(fs::read(q.join("mail")).unwrap(), b"x");
        // An owner that differs is reported with the expected user.
        let mut owned = entries.clone();
        owned.retain(|e| e.path == q.join("ibdb"));
        owned[0].owner = Some(Identity {
            component: "qmgr".into(),
            user: Some("smxq".into()),
            group: None,
        });
        owned[0].group = None;
        let uid = fs::metadata(q.join("ibdb")).unwrap().uid();
        assert_ne!(uid, 4001, "the test needs a uid other than 4001");
        let p = check(&owned, &Table, true);
        assert_eq!(
            p,
            vec![Problem::Owner {
                path: q.join("ibdb"),
                found: uid,
                expected: "smxq".into(),
                uid: 4001
            }]
        );
        assert_eq!(
            p[0].to_string(),
            format!(
                "{}: owner uid {uid}, expected smxq (uid 4001)",
                q.join("ibdb").display()
            )
        );
    }
}
