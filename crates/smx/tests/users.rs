//! As root: `smx run` with smtps, qmgr, smtpc, smar and the lda each under
//! its own user, created for the test with useradd/groupadd and removed
//! again (even when the test fails). Mail goes through with swaks to the
//! lda and to smtp-sink; then the test looks at the processes' credentials
//! in /proc, opens each component's private files as the other users, and
//! runs `smx conf-check --paths` on the queue that `smx run` laid out.
//!
//! The groups follow the seed's installation (2.4): the delivery agent's
//! group (whose gid is `CDB_gid`) has the SMTP server and the queue
//! manager as members, the address resolver's group has the SMTP server
//! and the queue manager.
//!
//! The test needs root (CI runs as root); without root it fails and says
//! so, it is not skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::{free_port, wait_port};

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Waits until `f` holds (at most `limit`).
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "tests/users.rs must run as root: it creates system users and groups \
         (useradd, groupadd) to run each component under its own user. CI runs \
         as root; run it with sudo elsewhere."
    );
}

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

/// Throwaway users (each with its own group) and their removal on drop.
/// Only accounts this test created are ever removed.
struct Accounts {
    users: Vec<String>,
}

impl Accounts {
    fn new() -> Accounts {
        Accounts { users: Vec::new() }
    }

    /// Creates system user `name` with a group of the same name.
    fn add(&mut self, name: &str) -> (u32, u32) {
        assert!(
            nix::unistd::User::from_name(name).unwrap().is_none()
                && nix::unistd::Group::from_name(name).unwrap().is_none(),
            "user or group {name} exists already; it is not this test's to use"
        );
        let o = run(
            "useradd",
            &[
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ],
        );
        assert!(o.status.success(), "useradd {name}: {o:?}");
        self.users.push(name.to_owned());
        let u = nix::unistd::User::from_name(name).unwrap().unwrap();
        (u.uid.as_raw(), u.gid.as_raw())
    }

    /// Adds user `name` to group `group` (both created by this test).
    fn join(&self, name: &str, group: &str) {
        assert!(self.users.iter().any(|u| u == name || u == group));
        let o = run("usermod", &["--append", "--groups", group, name]);
        assert!(o.status.success(), "usermod {name}: {o:?}");
    }
}

impl Drop for Accounts {
    fn drop(&mut self) {
        // Users first (a group cannot go while it is someone's primary
        // group), then the groups of the same names if userdel left them.
        for u in &self.users {
            let _ = run("userdel", &[u]);
        }
        for g in &self.users {
            if nix::unistd::Group::from_name(g).ok().flatten().is_some() {
                let _ = run("groupdel", &[g]);
            }
        }
    }
}

/// A process started by the test; killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `smx run`, stopped with SIGINT on drop.
struct Smx {
    child: Option<Child>,
    log: PathBuf,
}

impl Smx {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = run("kill", &["-INT", &child.id().to_string()]);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Smx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One component's account.
#[derive(Debug, Clone)]
struct Account {
    name: String,
    uid: u32,
    gid: u32,
}

/// Runs `args` as `who` (uid, gid and the groups of the group database).
fn as_user(who: &Account, args: &[&str]) -> Output {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={}", who.uid))
        .arg(format!("--regid={}", who.gid))
        .arg("--init-groups")
        .arg("--")
        .args(args);
    cmd.output().expect("setpriv (util-linux)")
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `who` cannot open `path` for reading: EACCES.
fn assert_denied(who: &Account, path: &Path) {
    let o = as_user(who, &["cat", path_str(path)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("Permission denied"),
        "{} could read {}: {o:?}",
        who.name,
        path.display()
    );
}

/// `who` can read `path`.
fn assert_readable(who: &Account, path: &Path) {
    let o = as_user(who, &["cat", path_str(path)]);
    assert!(
        o.status.success(),
        "{} cannot read {}: {o:?}",
        who.name,
        path.display()
    );
}

/// The Uid, Gid and Groups lines of /proc/PID/status.
fn credentials(pid: u32) -> Option<(Vec<u32>, Vec<u32>, Vec<u32>)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Vec<u32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|rest| {
                rest.split_whitespace()
                    .filter_map(|w| w.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    Some((field("Uid:"), field("Gid:"), field("Groups:")))
}

/// mcp's children: (pid, smx subcommand).
fn children(mcp: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let ppid = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))
            .and_then(|v| v.trim().parse::<u32>().ok());
        if ppid != Some(mcp) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if let Some(sub) = args.get(1) {
            out.push((pid, sub.clone()));
        }
    }
    out
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn swaks(port: u16, to: &str, subject: &str) -> String {
    let out = Command::new("swaks")
        .args(["--server", &format!("127.0.0.1:{port}")])
        .args(["--from", "sender@localhost", "--to", to])
        .args(["--helo", "client.users.test"])
        .args(["--header", &format!("Subject: {subject}")])
        .args(["--body", "separate users\n"])
        .output()
        .expect("swaks (installed by .ci/run)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && text.contains("<-  250 2.0.0"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn components_run_as_their_users_and_keep_their_files_private() {
    require_root();
    let tag = std::process::id();
    let mut accounts = Accounts::new();
    let mut account = |role: char| {
        let name = format!("smxt{tag}{role}");
        let (uid, gid) = accounts.add(&name);
        Account { name, uid, gid }
    };
    let qmgr = account('q');
    let smtps = account('s');
    let smtpc = account('c');
    let smar = account('m');
    let lda = account('l');
    for member in [&smtps, &qmgr] {
        accounts.join(&member.name, &smtpc.name);
        accounts.join(&member.name, &smar.name);
    }

    // The test directory must be reachable by the component users.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let spool = dir.path().join("spool");
    let dump = dir.path().join("dump");
    std::fs::create_dir(&dump).unwrap();
    std::fs::set_permissions(&dump, std::fs::Permissions::from_mode(0o777)).unwrap();

    let port = free_port();
    let sink_port = free_port();
    let closed_port = free_port();
    let _sink = Proc(
        Command::new("/usr/sbin/smtp-sink")
            .args(["-u", "nobody", "-d"])
            .arg(format!("{}/%Y%m%d%H%M%S.", dump.display()))
            .arg(format!("127.0.0.1:{sink_port}"))
            .arg("10")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("smtp-sink (installed by .ci/run)"),
    );
    assert!(wait_port(sink_port, Duration::from_secs(10)));

    let conf = format!(
        r#"
queue_directory = "{spool}";
hostname = "mx.users.test";
smtps {{
    user = {s};
    CDB_gid = {cdb_gid};
    listen_socket {{ type = inet; address = 127.0.0.1; port = {port}; }}
    flags = {{ access }};
}}
smar {{
    user = {m};
    mailertable {{ entries = {{ "localhost lmtp:",
        "sink.users.test {sink_port}:esmtp:[127.0.0.1]",
        "later.users.test {closed_port}:esmtp:[127.0.0.1]" }}; }}
    access_map {{ entries = {{ "cltaddr:127.0.0.1 relay" }}; }}
}}
qmgr {{
    user = {q};
    min_disk_space = 1MB;
    ok_disk_space = 2MB;
    retry_min_delay = 30s;
    retry_max_delay = 60s;
}}
smtpc {{ user = {c}; }}
lda {{
    user = {l};
    listen_socket {{ type = unix; path = lmtpsock; group = {c}; }}
}}
"#,
        spool = spool.display(),
        s = smtps.name,
        m = smar.name,
        q = qmgr.name,
        c = smtpc.name,
        l = lda.name,
        cdb_gid = smtpc.gid,
    );
    let conf_path = dir.path().join("smx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    std::fs::set_permissions(&conf_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(!spool.exists());

    let log = dir.path().join("smx.log");
    let child = Command::new(env!("CARGO_BIN_EXE_smx"))
        .args(["run", "-f"])
        .arg(&conf_path)
        .env_remove("SMX_QUEUE_DIRECTORY")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::options().append(true).open(&log).unwrap())
        .spawn()
        .unwrap();
    let mut smx = Smx {
        child: Some(child),
        log,
    };
    assert!(
        wait_port(port, Duration::from_secs(20)),
        "{}",
        smx.log_text()
    );
    // The greeting comes once qmgr and smar are up.
    assert!(
        eventually(Duration::from_secs(20), || {
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
                return false;
            };
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut line = String::new();
            let _ = BufReader::new(&mut s).read_line(&mut line);
            let _ = std::io::Write::write_all(&mut s, b"QUIT\r\n");
            line.starts_with("220")
        }),
        "{}",
        smx.log_text()
    );

    // Every component runs as its user, with its groups.
    let expected = [
        ("qmgr", &qmgr, vec![smtpc.gid, smar.gid]),
        ("smtps", &smtps, vec![smtpc.gid, smar.gid]),
        ("smtpc", &smtpc, vec![]),
        ("smar", &smar, vec![]),
        ("lda", &lda, vec![]),
    ];
    assert!(
        eventually(Duration::from_secs(10), || {
            let kids = children(smx.pid());
            expected
                .iter()
                .all(|(sub, _, _)| kids.iter().any(|(_, s)| s == sub))
        }),
        "not every component is running: {:?}\n{}",
        children(smx.pid()),
        smx.log_text()
    );
    for (pid, sub) in children(smx.pid()) {
        let (_, who, extra) = expected
            .iter()
            .find(|(s, _, _)| *s == sub)
            .unwrap_or_else(|| panic!("unexpected child {sub}"));
        let (uids, gids, groups) = credentials(pid).unwrap();
        assert_eq!(uids, vec![who.uid; 4], "{sub} uids");
        assert_eq!(gids, vec![who.gid; 4], "{sub} gids");
        let mut want = extra.clone();
        want.push(who.gid);
        want.sort_unstable();
        let mut got = groups.clone();
        got.sort_unstable();
        assert_eq!(got, want, "{sub} supplementary groups");
    }

    // Mail goes through: to the lda, to smtp-sink, and one to a closed port
    // that stays in the queue.
    swaks(port, "user@localhost", "to the lda");
    swaks(port, "user@sink.users.test", "to the sink");
    swaks(port, "user@later.users.test", "deferred");
    let maildir = spool.join("mail/user/Maildir/new");
    assert!(
        eventually(Duration::from_secs(30), || files_in(&maildir).len() == 1),
        "{}",
        smx.log_text()
    );
    assert!(
        eventually(Duration::from_secs(30), || files_in(&dump).len() == 1),
        "{}",
        smx.log_text()
    );
    let delivered = std::fs::read_to_string(&files_in(&maildir)[0]).unwrap();
    assert!(delivered.contains("Subject: to the lda"), "{delivered}");
    let mailbox = std::fs::metadata(&files_in(&maildir)[0]).unwrap();
    assert_eq!(
        mailbox.uid(),
        lda.uid,
        "the mailbox file belongs to the lda"
    );

    // The deferred message's content stays in the CDB.
    let cdb_files = || -> Vec<PathBuf> {
        (0..16)
            .flat_map(|i| files_in(&spool.join(format!("{i:X}"))))
            .collect()
    };
    assert!(
        eventually(Duration::from_secs(30), || cdb_files().len() == 1),
        "{:?}\n{}",
        cdb_files(),
        smx.log_text()
    );
    let content = cdb_files().remove(0);
    let m = std::fs::metadata(&content).unwrap();
    assert_eq!(
        (m.uid(), m.gid(), m.mode() & 0o7777),
        (smtps.uid, smtpc.gid, 0o640),
        "content file owner, CDB_gid group and mode"
    );

    // Private files: IBDB and DEFEDB are qmgr's alone.
    let ibdb: Vec<PathBuf> = walk(&spool.join("ibdb"));
    assert!(!ibdb.is_empty(), "no IBDB file");
    let defedb = walk(&spool.join("defedb"));
    assert!(!defedb.is_empty(), "no DEFEDB file");
    for f in ibdb.iter().chain(&defedb) {
        let m = std::fs::metadata(f).unwrap();
        assert_eq!(m.uid(), qmgr.uid, "{}", f.display());
        assert_eq!(m.mode() & 0o007, 0, "{} is open to others", f.display());
        assert_readable(&qmgr, f);
        for other in [&smtps, &smtpc, &smar, &lda] {
            assert_denied(other, f);
        }
    }
    // The content: smtps wrote it, qmgr and smtpc read it, smar and the
    // lda cannot; smtpc cannot write into or remove from the CDB.
    for reader in [&smtps, &qmgr, &smtpc] {
        assert_readable(reader, &content);
    }
    for other in [&smar, &lda] {
        assert_denied(other, &content);
    }
    let cdb_dir = content.parent().unwrap();
    let o = as_user(&smtpc, &["touch", path_str(&cdb_dir.join("intruder"))]);
    assert!(!o.status.success(), "smtpc wrote into the CDB: {o:?}");
    let o = as_user(&smtpc, &["rm", "-f", path_str(&content)]);
    assert!(
        !o.status.success() && content.exists(),
        "smtpc removed content: {o:?}"
    );
    // The mailboxes are the lda's.
    for other in [&smtps, &qmgr, &smtpc, &smar] {
        assert_denied(other, &files_in(&maildir)[0]);
    }
    // The id state of smtps is its own.
    let ids = files_in(&spool.join("smtps"));
    assert!(!ids.is_empty(), "no smtps id state");
    for other in [&smtpc, &smar, &lda] {
        assert_denied(other, &ids[0]);
    }

    // Sockets: each in its setgid directory with the peer's group.
    for (dir, owner, group) in [
        ("qmsmtps", &qmgr, &smtps),
        ("qmsmtpc", &smtpc, &smtpc),
        ("qmsmar", &smar, &smar),
    ] {
        let sockets: Vec<_> = std::fs::read_dir(spool.join(dir))
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(sockets.len(), 1, "{dir}: {sockets:?}");
        let m = sockets[0].metadata().unwrap();
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o777),
            (owner.uid, group.gid, 0o770),
            "{dir} socket"
        );
    }

    // The layout smx run made passes the check, owners included.
    let check = Command::new(env!("CARGO_BIN_EXE_smx"))
        .args(["conf-check", "--paths", "-f"])
        .arg(&conf_path)
        .env_remove("SMX_QUEUE_DIRECTORY")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&check.stdout), "OK\n", "{check:?}");
    assert!(check.status.success());

    smx.stop();
    drop(accounts);
    for name in ["q", "s", "c", "m", "l"] {
        let n = format!("smxt{tag}{name}");
        assert!(nix::unistd::User::from_name(&n).unwrap().is_none(), "{n}");
        assert!(nix::unistd::Group::from_name(&n).unwrap().is_none(), "{n}");
    }
}

/// Every regular file below `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    let mut seen = 0;
    while let Some(d) = todo.pop() {
        seen += 1;
        if seen > 1000 {
            break;
        }
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    todo.push(p);
                } else if p.is_file() {
                    out.push(p);
                }
            }
        }
    }
    out.sort();
    out
}
