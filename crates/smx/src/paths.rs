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
//! # Files
//!
//! [`check_files`] looks at the files the configuration names, each from
//! the point of view of the component that opens it. `--fix` does not
//! change files.
//!
//! | file | checked |
//! | --- | --- |
//! | the configuration file | not writable by every user, nor by any component's user (mcp runs what it says as root); its directory likewise; readable by every component's user (each reads it) |
//! | smar's maps (`map NAME { file }`, `access_map`, `mailertable`, `aliases`) | exist (a default file that does not exist is not used and not reported); readable by smar's user |
//! | qmgr's `qmgr_conf` | exists, readable by qmgr's user |
//! | the declared maps, when the lda has a `local_user_map` (it opens them all) | readable by the lda's user |
//! | log files (`log { destination = file; }`) | an existing file is writable by the component's user and not by every user; a missing one can be created (its directory exists and is writable) |
//! | TLS files of smtps and smtpc (`cert_file`, `key_file`, `CAcert_file`, `CAcert_directory`) and smtps's AUTH `password_file` | exist, readable by the component's user; the key and the password file not readable by every user |
//! | the queue directory | every component's user can reach it |
//!
//! Map files are relative to the configuration file's directory (the queue
//! directory for the embedded configuration); log files to the queue
//! directory; TLS and password files to the component's working directory
//! (where the component reads them). "The component's user" is its
//! section's `user` with its groups when this runs as root; a section
//! without a `user` runs as root and can read everything. Without root
//! every component runs as the invoking user, so the files are checked for
//! that user.
//!
//! As root, the users and groups are also checked against what the
//! components need from each other ([`Problem::Peer`], one line per
//! component and need): the sockets smtpc and smar bind have mode 0770 and
//! their own group, so qmgr must be in smtpc's group, and qmgr and every
//! smtps in smar's group; the socket qmgr binds for smtps gets the group of
//! its setgid directory (the first smtps section's), which the other smtps
//! sections need; content files get `CDB_gid` (else the group of smtps's
//! user), of which smtps must be a member and which smtpc and qmgr must
//! have unless they are smtps's user; smtpc must be able to connect to the
//! lda's socket, which mcp binds with the `listen_socket` umask, user and
//! group.
//!
//! # Starting
//!
//! [`prepare`] is what `smx run` does before starting anything: as root,
//! the whole repair of `--fix` (refusing to start if anything is still
//! wrong); without root, only the creation of missing directories.
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
    /// A file the configuration names (or the configuration file itself)
    /// is missing, has a dangerous mode, or cannot be used by the
    /// component that needs it.
    File {
        /// The path.
        path: PathBuf,
        /// What the file is, e.g. "mailertable of smar".
        what: String,
        /// What is wrong.
        detail: String,
    },
    /// Two components that must work together cannot, with the users and
    /// groups configured (as root only).
    Peer {
        /// The component that would fail.
        component: String,
        /// What it cannot do and why.
        detail: String,
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
            Problem::File { path, what, detail } => {
                write!(f, "{}: {what}: {detail}", path.display())
            }
            Problem::Peer { component, detail } => write!(f, "{component}: {detail}"),
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
        fix_one(e, w, false, &mut actions);
    }
    actions
}

/// Creates the missing directories of `entries` with their modes; existing
/// ones are left as they are.
pub fn create_missing(entries: &[Entry]) -> Vec<Action> {
    let mut actions = Vec::new();
    for e in entries {
        fix_one(e, &Wanted::default(), true, &mut actions);
    }
    actions
}

fn fix_one(e: &Entry, w: &Wanted, only_missing: bool, actions: &mut Vec<Action>) {
    let failed = |err: io::Error| Action::Failed(e.path.clone(), err.to_string());
    let mut created = false;
    let meta = match fs::metadata(&e.path) {
        Ok(m) => m,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            created = true;
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
    if only_missing && !created {
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

/// What [`prepare`] did and what it let pass.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    /// What was created or repaired.
    pub actions: Vec<Action>,
    /// Problems that do not stop smx from starting (modes and owners that a
    /// process without root leaves as they are).
    pub warnings: Vec<Problem>,
}

/// Prepares the queue layout before `smx run` starts the components.
///
/// As root (`root`), everything [`fix`] can repair is repaired (missing
/// directories, modes, and the owners of sections that name a `user` or
/// `group`); whatever is still wrong afterwards is an error, one line per
/// problem. Without root, only missing directories are created (with the
/// layout's modes); a path that is missing still or is not a directory is
/// an error, other differences are warnings.
pub fn prepare(config: &Config, root: bool) -> Result<Prepared, Vec<String>> {
    let entries = layout(config);
    let accounts = SystemAccounts;
    let actions = if root {
        fix(&entries, &accounts, true)
    } else {
        create_missing(&entries)
    };
    let problems = check(&entries, &accounts, root);
    let fatal = |p: &Problem| {
        root || matches!(
            p,
            Problem::Missing { .. } | Problem::NotADirectory { .. } | Problem::Unreadable { .. }
        )
    };
    if problems.iter().any(fatal) {
        let mut lines: Vec<String> = actions
            .iter()
            .filter(|a| matches!(a, Action::Failed(..)))
            .map(ToString::to_string)
            .collect();
        lines.extend(
            problems
                .iter()
                .filter(|p| fatal(p))
                .map(ToString::to_string),
        );
        return Err(lines);
    }
    Ok(Prepared {
        actions,
        warnings: problems,
    })
}

/// `smx conf-check --paths [--fix]`: prints every problem (one per line,
/// on standard output) or `OK`; with `fix`, repairs the directories first
/// and prints what it did. Then checks the files (see [`check_files`]),
/// which `--fix` does not change. Exit status 0 when everything is right,
/// EX_CONFIG otherwise.
pub fn conf_check(config: &Config, fix_it: bool, config_file: Option<&Path>) -> ExitCode {
    let entries = layout(config);
    let root = nix::unistd::geteuid().is_root();
    let accounts = SystemAccounts;
    if fix_it {
        for a in fix(&entries, &accounts, root) {
            println!("{a}");
        }
    }
    let problems = check(&entries, &accounts, root);
    let files = check_files(config, config_file, root);
    if problems.is_empty() && files.is_empty() {
        println!("OK");
        return ExitCode::SUCCESS;
    }
    for p in problems.iter().chain(&files) {
        println!("{p}");
    }
    let n = problems.len() + files.len();
    let s = if n == 1 { "" } else { "s" };
    if files.is_empty() {
        eprintln!(
            "{n} problem{s} in the queue layout{}",
            if fix_it { "" } else { " (--fix repairs them)" }
        );
    } else {
        eprintln!(
            "{n} problem{s} in the queue layout and the files it uses (--fix repairs directories only)"
        );
    }
    ExitCode::from(EX_CONFIG)
}

// ---- files -------------------------------------------------------------------

/// The user a component runs as, for access checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    /// For messages, e.g. "smar (user smxm)".
    pub label: String,
    /// The user name, when a section names one.
    pub user: Option<String>,
    /// The uid.
    pub uid: u32,
    /// The gid (the group of what it creates).
    pub gid: u32,
    /// The gid and every supplementary group.
    pub groups: Vec<u32>,
}

/// What access is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Read,
    Write,
}

impl Who {
    /// The process running this check.
    fn current(component: &str) -> Who {
        let uid = nix::unistd::geteuid().as_raw();
        let mut groups: Vec<u32> = nix::unistd::getgroups()
            .unwrap_or_default()
            .into_iter()
            .map(nix::unistd::Gid::as_raw)
            .collect();
        let gid = nix::unistd::getegid().as_raw();
        groups.push(gid);
        Who {
            label: format!("{component} (uid {uid})"),
            user: None,
            uid,
            gid,
            groups,
        }
    }

    /// The user `component` runs as; `None` when its user or group does
    /// not exist (reported with the directories).
    fn of(component: &str, mcp: &McpOptions, root: bool) -> Option<Who> {
        if !root {
            return Some(Who::current(component));
        }
        let Some(user) = &mcp.user else {
            return Some(Who {
                label: format!("{component} (root)"),
                user: None,
                uid: 0,
                gid: 0,
                groups: vec![0],
            });
        };
        let c = smx_mcp::supervisor::credentials(user, mcp.group.as_deref()).ok()?;
        Some(Who {
            label: format!("{component} (user {user})"),
            user: Some(user.clone()),
            uid: c.uid,
            gid: c.gid,
            groups: c.groups,
        })
    }

    /// Whether the permission bits of `meta` give this user `bits`
    /// (4 read, 2 write, 1 search/execute).
    fn may(&self, meta: &fs::Metadata, bits: u32) -> bool {
        if self.uid == 0 {
            // Root reads and writes anything; it searches a directory and
            // executes a file with any x bit.
            return bits & 1 == 0 || meta.is_dir() || meta.mode() & 0o111 != 0;
        }
        let m = meta.mode();
        let class = if meta.uid() == self.uid {
            m >> 6
        } else if self.groups.contains(&meta.gid()) {
            m >> 3
        } else {
            m
        };
        class & 7 & bits == bits
    }

    /// Why this user cannot reach `path` (an existing, canonical path)
    /// through its directories, if it cannot.
    fn blocked_on(&self, path: &Path) -> Option<String> {
        let mut dirs: Vec<&Path> = path.ancestors().skip(1).collect();
        dirs.reverse();
        for d in dirs {
            match fs::metadata(d) {
                Ok(m) if self.may(&m, 1) => {}
                Ok(_) => return Some(format!("{} is not searchable for it", d.display())),
                Err(e) => return Some(format!("{}: {e}", d.display())),
            }
        }
        None
    }
}

/// Collects file problems, each line once.
#[derive(Debug, Default)]
struct FileReport {
    problems: Vec<Problem>,
}

impl FileReport {
    fn push(&mut self, path: &Path, what: &str, detail: String) {
        let p = Problem::File {
            path: path.to_path_buf(),
            what: what.to_owned(),
            detail,
        };
        if !self.problems.contains(&p) {
            self.problems.push(p);
        }
    }

    /// A file that `who` must open: it exists and `who` may read (or
    /// write) it. `secret`: it must not be readable by every user.
    /// Returns whether it exists.
    fn usable(
        &mut self,
        path: &Path,
        what: &str,
        who: Option<&Who>,
        want: Want,
        secret: bool,
    ) -> bool {
        let real = match fs::canonicalize(path) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.push(path, what, "missing".into());
                return false;
            }
            Err(e) => {
                self.push(path, what, format!("cannot examine: {e}"));
                return false;
            }
        };
        let meta = match fs::metadata(&real) {
            Ok(m) => m,
            Err(e) => {
                self.push(path, what, format!("cannot examine: {e}"));
                return false;
            }
        };
        let mode = meta.mode() & 0o7777;
        if secret && mode & 0o004 != 0 {
            self.push(
                path,
                what,
                format!("readable by every user (mode {mode:04o})"),
            );
        }
        if want == Want::Write && mode & 0o002 != 0 && !meta.is_dir() {
            self.push(
                path,
                what,
                format!("writable by every user (mode {mode:04o})"),
            );
        }
        if let Some(who) = who {
            let verb = match want {
                Want::Read => "read",
                Want::Write => "write",
            };
            if let Some(why) = who.blocked_on(&real) {
                self.push(path, what, format!("{} cannot {verb} it: {why}", who.label));
            } else {
                let bits = match (want, meta.is_dir()) {
                    (Want::Read, true) => 5,
                    (Want::Read, false) => 4,
                    (Want::Write, _) => 2,
                };
                if !who.may(&meta, bits) {
                    self.push(
                        path,
                        what,
                        format!("{} cannot {verb} it (mode {mode:04o})", who.label),
                    );
                }
            }
        }
        true
    }
}

/// Checks the files the configuration names (see the table above) and
/// returns the problems, one per file and finding.
pub fn check_files(config: &Config, config_file: Option<&Path>, root: bool) -> Vec<Problem> {
    let q = &config.queue_directory;
    let mut r = FileReport::default();
    let mut components: Vec<(String, &McpOptions, &smx_conf::model::common::LogConfig)> = vec![
        ("qmgr".into(), &config.qmgr.mcp, &config.qmgr.log),
        ("smar".into(), &config.smar.mcp, &config.smar.log),
        ("smtpc".into(), &config.smtpc.mcp, &config.smtpc.log),
    ];
    if config.lda.enabled {
        components.push(("lda".into(), &config.lda.mcp, &config.lda.log));
    }
    for s in &config.smtps.items {
        components.push((smtps_name(&s.name), &s.body.mcp, &s.body.log));
    }
    let who = |name: &str, mcp: &McpOptions| Who::of(name, mcp, root);

    // The configuration file.
    let config_file =
        config_file.map(|p| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()));
    if let Some(file) = &config_file {
        let what = "configuration file";
        if r.usable(file, what, None, Want::Read, false) {
            let meta = fs::metadata(file).ok();
            if let Some(m) = &meta
                && m.mode() & 0o002 != 0
            {
                r.push(
                    file,
                    what,
                    format!("writable by every user (mode {:04o})", m.mode() & 0o7777),
                );
            }
            let dir = fs::canonicalize(file)
                .ok()
                .and_then(|f| f.parent().map(Path::to_path_buf));
            for (name, mcp, _) in &components {
                let Some(w) = who(name, mcp) else { continue };
                r.usable(file, what, Some(&w), Want::Read, false);
                if !root || w.uid == 0 {
                    continue;
                }
                if let Some(m) = &meta
                    && w.may(m, 2)
                {
                    r.push(
                        file,
                        what,
                        format!("writable by {}; mcp runs what it says as root", w.label),
                    );
                }
                if let Some(d) = &dir
                    && let Ok(dm) = fs::metadata(d)
                    && w.may(&dm, 3)
                {
                    r.push(
                        d,
                        "directory of the configuration file",
                        format!("writable by {}, who could replace the file", w.label),
                    );
                }
            }
        }
    }

    // Maps.
    let base = config_file
        .as_deref()
        .and_then(Path::parent)
        .map_or_else(|| q.clone(), Path::to_path_buf);
    let smar = who("smar", &config.smar.mcp);
    let declared = declared_map_files(config, &base);
    for (name, file) in &declared {
        r.usable(
            file,
            &format!("map {name} of smar"),
            smar.as_ref(),
            Want::Read,
            false,
        );
    }
    let refs = [
        (&config.smar.access_map, "access map of smar"),
        (&config.smar.mailertable.map, "mailertable of smar"),
        (&config.smar.aliases.map, "aliases of smar"),
    ];
    for (m, what) in refs {
        let Some(file) = m.effective_file() else {
            continue;
        };
        let path = base.join(&file);
        // A default file that does not exist is not used.
        if m.file.is_none() && fs::symlink_metadata(&path).is_err() {
            continue;
        }
        r.usable(&path, what, smar.as_ref(), Want::Read, false);
    }
    if let Some(file) = &config.qmgr.conf {
        let qmgr = who("qmgr", &config.qmgr.mcp);
        r.usable(
            &base.join(file),
            "qmgr_conf of qmgr",
            qmgr.as_ref(),
            Want::Read,
            false,
        );
    }
    if config.lda.enabled && config.lda.local_user_map.is_some() {
        let lda = who("lda", &config.lda.mcp);
        for (name, file) in &declared {
            r.usable(
                file,
                &format!("map {name} (the lda opens every declared map for local_user_map)"),
                lda.as_ref(),
                Want::Read,
                false,
            );
        }
    }

    // Log files.
    for (name, mcp, log) in &components {
        if log.destination != smx_conf::model::common::LogDestination::File {
            continue;
        }
        let kind = name.split(' ').next().unwrap_or(name);
        let file = log
            .file
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{kind}.log")));
        let path = q.join(file);
        let what = format!("log file of {name}");
        let w = who(name, mcp);
        if fs::symlink_metadata(&path).is_ok() {
            r.usable(&path, &what, w.as_ref(), Want::Write, false);
            continue;
        }
        let Some(dir) = path.parent() else { continue };
        match fs::canonicalize(dir) {
            Err(e) => r.push(&path, &what, format!("directory {}: {e}", dir.display())),
            Ok(real) => {
                if let Some(w) = &w {
                    let blocked = w.blocked_on(&real).or_else(|| {
                        fs::metadata(&real)
                            .ok()
                            .filter(|m| !w.may(m, 3))
                            .map(|_| format!("{} is not writable for it", real.display()))
                    });
                    if let Some(why) = blocked {
                        r.push(&path, &what, format!("{} cannot create it: {why}", w.label));
                    }
                }
            }
        }
    }

    // TLS and AUTH files, where the component reads them.
    let workdir = |mcp: &McpOptions| {
        mcp.working_directory
            .as_ref()
            .map_or_else(|| q.clone(), |w| q.join(w))
    };
    let tls = |r: &mut FileReport,
               name: &str,
               files: &smx_conf::model::common::TlsFiles,
               mcp: &McpOptions| {
        let w = who(name, mcp);
        let dir = workdir(mcp);
        let list = [
            (&files.cert_file, "TLS cert_file", false),
            (&files.key_file, "TLS key_file", true),
            (&files.ca_cert_file, "TLS CAcert_file", false),
            (&files.ca_cert_directory, "TLS CAcert_directory", false),
        ];
        for (file, label, secret) in list {
            if let Some(f) = file {
                r.usable(
                    &dir.join(f),
                    &format!("{label} of {name}"),
                    w.as_ref(),
                    Want::Read,
                    secret,
                );
            }
        }
    };
    for s in &config.smtps.items {
        let name = smtps_name(&s.name);
        if let Some(t) = &s.body.tls {
            tls(&mut r, &name, &t.files, &s.body.mcp);
        }
        if let Some(a) = &s.body.auth
            && let Some(f) = &a.password_file
        {
            let w = who(&name, &s.body.mcp);
            let path = workdir(&s.body.mcp).join(f);
            r.usable(
                &path,
                &format!("AUTH password_file of {name}"),
                w.as_ref(),
                Want::Read,
                true,
            );
        }
    }
    tls(&mut r, "smtpc", &config.smtpc.tls, &config.smtpc.mcp);

    // Every component must reach the queue directory.
    if let Ok(real) = fs::canonicalize(q) {
        for (name, mcp, _) in &components {
            if let Some(w) = who(name, mcp)
                && let Some(why) = w.blocked_on(&real)
            {
                r.push(
                    q,
                    "queue directory",
                    format!("{} cannot reach it: {why}", w.label),
                );
            }
        }
    }
    if root {
        peers(config, &mut r.problems);
    }
    r.problems
}

/// As root: whether the users and groups let the components reach each
/// other's sockets and read the content files (the rules are in the module
/// doc). Components running as root are not checked; a user that does not
/// exist is reported with the directories.
fn peers(config: &Config, out: &mut Vec<Problem>) {
    let who = |name: &str, mcp: &McpOptions| Who::of(name, mcp, true).filter(|w| w.uid != 0);
    let qmgr = who("qmgr", &config.qmgr.mcp);
    let smar = who("smar", &config.smar.mcp);
    let smtpc = who("smtpc", &config.smtpc.mcp);
    let mut push = |component: &str, detail: String| {
        let p = Problem::Peer {
            component: component.to_owned(),
            detail,
        };
        if !out.contains(&p) {
            out.push(p);
        }
    };
    let user = |w: &Who| w.user.clone().unwrap_or_default();
    // A socket a component binds gets that component's group (mode 0770).
    let reaches = |client: &Who, server: &Who| {
        client.uid == server.uid || client.groups.contains(&server.gid)
    };
    let first_smtps = config
        .smtps
        .items
        .first()
        .and_then(|s| who(&smtps_name(&s.name), &s.body.mcp));
    let mut clients_of_smar: Vec<(String, Who)> = Vec::new();
    if let Some(q) = &qmgr {
        clients_of_smar.push(("qmgr".into(), q.clone()));
        if let Some(c) = &smtpc
            && !reaches(q, c)
        {
            push(
                "qmgr",
                format!(
                    "cannot connect to smtpc's socket: user {} is not in smtpc's group (gid {})",
                    user(q),
                    c.gid
                ),
            );
        }
    }
    for s in &config.smtps.items {
        let name = smtps_name(&s.name);
        let Some(w) = who(&name, &s.body.mcp) else {
            continue;
        };
        clients_of_smar.push((name.clone(), w.clone()));
        // qmgr's socket for smtps gets the group of its setgid directory:
        // the first smtps section's group, which later sections need too.
        if let (Some(q), Some(first)) = (&qmgr, &first_smtps)
            && w.uid != q.uid
            && !w.groups.contains(&first.gid)
        {
            push(
                &name,
                format!(
                    "cannot connect to qmgr's socket: user {} is not in group {} of the SMTPS_socket directory",
                    user(&w),
                    first.gid
                ),
            );
        }
        let content_group = s.body.cdb_gid.unwrap_or(w.gid);
        if s.body.cdb_gid.is_some() && !w.groups.contains(&content_group) {
            push(
                &name,
                format!(
                    "content files get group {content_group} (CDB_gid), which user {} is not a member of; storing mail fails",
                    user(&w)
                ),
            );
        }
        for (reader, r) in [("smtpc", &smtpc), ("qmgr", &qmgr)] {
            if let Some(r) = r
                && r.uid != w.uid
                && !r.groups.contains(&content_group)
            {
                push(
                    reader,
                    format!(
                        "cannot read the content files of {name}: user {} is not in their group (gid {content_group}, {})",
                        user(r),
                        if s.body.cdb_gid.is_some() {
                            "CDB_gid"
                        } else {
                            "no CDB_gid: the group of smtps's user"
                        }
                    ),
                );
            }
        }
    }
    // The lda's LMTP socket, bound by mcp: mode 0777 without the umask,
    // owner and group from listen_socket (root's when not set).
    if config.lda.enabled
        && let Some(c) = &smtpc
        && let Some(ls) = &config.lda.mcp.listen_socket
        && ls.kind == smx_conf::model::common::SocketType::Unix
    {
        let uid = ls
            .user
            .as_deref()
            .map(|u| SystemAccounts.user(u).map(|(u, _)| u));
        let gid = ls.group.as_deref().map(|g| SystemAccounts.group(g));
        if let (Some(uid), Some(gid)) = (uid.unwrap_or(Some(0)), gid.unwrap_or(Some(0))) {
            let mode = 0o777 & !ls.umask;
            let bits = if c.uid == uid {
                mode >> 6
            } else if c.groups.contains(&gid) {
                mode >> 3
            } else {
                mode
            };
            if bits & 2 == 0 {
                push(
                    "smtpc",
                    format!(
                        "cannot connect to the lda's socket (mode {mode:04o}, uid {uid}, gid {gid}): \
                         give the lda's listen_socket a group user {} is in",
                        user(c)
                    ),
                );
            }
        }
    }
    if let Some(m) = &smar {
        for (name, c) in &clients_of_smar {
            if !reaches(c, m) {
                push(
                    name,
                    format!(
                        "cannot connect to smar's socket: user {} is not in smar's group (gid {})",
                        user(c),
                        m.gid
                    ),
                );
            }
        }
    }
}

/// The files of the declared maps (`map NAME { file }`), relative to
/// `base`; a passwd map without a file reads /etc/passwd.
fn declared_map_files(config: &Config, base: &Path) -> Vec<(String, PathBuf)> {
    use smx_conf::model::smar::MapType;
    let mut out = Vec::new();
    for m in &config.smar.maps.items {
        let name = m.name.clone().unwrap_or_default();
        let file = match (m.body.kind, &m.body.file) {
            (MapType::Hash | MapType::Cdb | MapType::Text | MapType::Passwd, Some(f)) => {
                base.join(f)
            }
            (MapType::Passwd, None) => PathBuf::from("/etc/passwd"),
            _ => continue,
        };
        out.push((name, file));
    }
    out
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

    #[test]
    fn access_follows_the_permission_classes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        fs::write(&f, b"x").unwrap();
        fs::set_permissions(&f, Permissions::from_mode(0o640)).unwrap();
        let m = fs::metadata(&f).unwrap();
        let who = |uid: u32, groups: Vec<u32>| Who {
            label: String::new(),
            user: None,
            uid,
            gid: groups.first().copied().unwrap_or(0),
            groups,
        };
        let (owner, group) = (m.uid(), m.gid());
        let stranger = 4_000_000_000;
        assert!(who(0, vec![0]).may(&m, 6));
        assert!(
            !who(0, vec![0]).may(&m, 1),
            "root executes only with an x bit"
        );
        if owner != 0 {
            assert!(who(owner, vec![stranger]).may(&m, 6));
        }
        assert!(who(stranger, vec![stranger, group]).may(&m, 4));
        assert!(!who(stranger, vec![stranger, group]).may(&m, 2));
        assert!(!who(stranger, vec![stranger]).may(&m, 4));
        // A directory that others may only search.
        fs::set_permissions(dir.path(), Permissions::from_mode(0o711)).unwrap();
        let real = fs::canonicalize(&f).unwrap();
        assert_eq!(who(stranger, vec![stranger]).blocked_on(&real), None);
        fs::set_permissions(dir.path(), Permissions::from_mode(0o700)).unwrap();
        let why = who(stranger, vec![stranger]).blocked_on(&real).unwrap();
        assert!(why.ends_with("is not searchable for it"), "{why}");
    }

    #[test]
    fn create_missing_leaves_existing_modes() {
        let dir = tempfile::tempdir().unwrap();
        let q = dir.path().join("q");
        let entries = layout(&config("", &q));
        fs::create_dir_all(q.join("ibdb")).unwrap();
        fs::set_permissions(q.join("ibdb"), Permissions::from_mode(0o750)).unwrap();
        let actions = create_missing(&entries);
        assert!(!actions.iter().any(|a| matches!(a, Action::Failed(..))));
        assert!(!actions.contains(&Action::Created(q.join("ibdb"))));
        assert_eq!(fs::metadata(q.join("ibdb")).unwrap().mode() & 0o7777, 0o750);
        assert_eq!(
            fs::metadata(q.join("qmsmar")).unwrap().mode() & 0o7777,
            0o2771
        );
        assert_eq!(
            check(&entries, &Table, false),
            vec![Problem::Mode {
                path: q.join("ibdb"),
                found: 0o750,
                expected: 0o700
            }]
        );
    }
}
