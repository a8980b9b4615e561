//! Runs the built `smx conf-check --paths [--fix]` on queue directories in
//! temporary directories: missing directories, wrong modes and (as root)
//! wrong owners are reported with exit status 78 and repaired by --fix.

#![allow(clippy::unwrap_used)]

mod common;
use common::free_port;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EX_CONFIG: i32 = 78;

/// The sixteen CDB directories, ibdb, defedb, the three socket directories,
/// smtps, lda and mail, and the queue directory itself.
const DIRECTORIES: usize = 25;

fn smx() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_smx"));
    c.env_remove("SMX_HOME").env_remove("SMX_QUEUE_DIRECTORY");
    c
}

/// A configuration in `dir` whose queue is `dir/spool`, plus `extra`.
fn setup(dir: &Path, extra: &str) -> (PathBuf, PathBuf) {
    let queue = dir.join("spool");
    let conf = dir.join("smx.conf");
    std::fs::write(
        &conf,
        format!(
            "queue_directory = \"{}\";\n\
             smtps {{ listen_socket {{ type = inet; address = 127.0.0.1; port = 2525; }} }}\n{extra}",
            queue.display()
        ),
    )
    .unwrap();
    (queue, conf)
}

fn run(conf: &Path, fix: bool) -> Output {
    let mut c = smx();
    c.args(["conf-check", "--paths", "-f"]).arg(conf);
    if fix {
        c.arg("--fix");
    }
    c.output().unwrap()
}

fn lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().mode() & 0o7777
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn fresh_directory_reports_every_missing_path() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, conf) = setup(dir.path(), "");
    let o = run(&conf, false);
    assert_eq!(o.status.code(), Some(EX_CONFIG), "{o:?}");
    let out = lines(&o);
    assert_eq!(out.len(), DIRECTORIES, "{out:#?}");
    assert!(out.iter().all(|l| l.contains(": missing (")), "{out:#?}");
    let q = queue.display();
    for expected in [
        format!("{q}: missing (queue directory, mode 0755)"),
        format!("{q}/0: missing (CDB directory, mode 0771)"),
        format!("{q}/F: missing (CDB directory, mode 0771)"),
        format!("{q}/ibdb: missing (IBDB directory, mode 0700)"),
        format!("{q}/defedb: missing (DEFEDB directory, mode 0700)"),
        format!("{q}/qmsmtps: missing (SMTPS_socket directory, mode 2770)"),
        format!("{q}/qmsmtpc: missing (SMTPC_socket directory, mode 2770)"),
        format!("{q}/qmsmar: missing (SMAR_socket directory, mode 2771)"),
        format!("{q}/smtps: missing (smtps id state directory, mode 0750)"),
        format!("{q}/lda: missing (lda pass_fd_socket directory, mode 0750)"),
        format!("{q}/mail: missing (mailbox directory, mode 0700)"),
    ] {
        assert!(out.contains(&expected), "{expected} not in {out:#?}");
    }
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!("{DIRECTORIES} problems in the queue layout (--fix repairs them)\n")
    );
    assert!(!queue.exists(), "a check without --fix creates nothing");
}

#[test]
fn fix_creates_the_layout_and_a_second_check_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, conf) = setup(dir.path(), "");
    let o = run(&conf, true);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = lines(&o);
    assert_eq!(out.last().map(String::as_str), Some("OK"), "{out:#?}");
    let created = out.iter().filter(|l| l.ends_with(": created")).count();
    assert_eq!(created, DIRECTORIES, "{out:#?}");

    for (d, m) in [
        ("", 0o755),
        ("0", 0o771),
        ("9", 0o771),
        ("A", 0o771),
        ("ibdb", 0o700),
        ("defedb", 0o700),
        ("qmsmtps", 0o2770),
        ("qmsmtpc", 0o2770),
        ("qmsmar", 0o2771),
        ("smtps", 0o750),
        ("lda", 0o750),
        ("mail", 0o700),
    ] {
        let p = queue.join(d);
        assert!(p.is_dir(), "{}", p.display());
        assert_eq!(mode(&p), m, "{}", p.display());
    }

    let o = run(&conf, false);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(lines(&o), vec!["OK"]);
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");
}

#[test]
fn wrong_mode_is_reported_and_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, conf) = setup(dir.path(), "");
    assert_eq!(run(&conf, true).status.code(), Some(0));
    let cdb = queue.join("7");
    let ibdb = queue.join("ibdb");
    std::fs::set_permissions(&cdb, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&ibdb, std::fs::Permissions::from_mode(0o777)).unwrap();

    let o = run(&conf, false);
    assert_eq!(o.status.code(), Some(EX_CONFIG), "{o:?}");
    assert_eq!(
        lines(&o),
        vec![
            format!("{}: mode 0755, expected 0771", cdb.display()),
            format!("{}: mode 0777, expected 0700", ibdb.display()),
        ]
    );

    let o = run(&conf, true);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(
        lines(&o),
        vec![
            format!("{}: mode set to 0771", cdb.display()),
            format!("{}: mode set to 0700", ibdb.display()),
            "OK".to_owned(),
        ]
    );
    assert_eq!(mode(&cdb), 0o771);
    assert_eq!(mode(&ibdb), 0o700);
}

#[test]
fn a_file_where_a_directory_belongs_is_reported_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, conf) = setup(dir.path(), "");
    assert_eq!(run(&conf, true).status.code(), Some(0));
    let defedb = queue.join("defedb");
    std::fs::remove_dir(&defedb).unwrap();
    std::fs::write(&defedb, b"not a directory").unwrap();

    let o = run(&conf, true);
    assert_eq!(o.status.code(), Some(EX_CONFIG), "{o:?}");
    let d = defedb.display();
    assert_eq!(
        lines(&o),
        vec![
            format!("{d}: cannot fix: not a directory (left alone)"),
            format!("{d}: not a directory (expected: DEFEDB directory)"),
        ]
    );
    assert_eq!(std::fs::read(&defedb).unwrap(), b"not a directory");
}

#[test]
fn configured_locations_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let cdb_base = dir.path().join("disk2");
    let (queue, conf) = setup(
        dir.path(),
        &format!(
            "CDB_base_directory = \"{}/\";\nSMAR_socket = sockets/smar;\n\
             qmgr {{ defedb {{ base_directory = db/deferred; }} }}\nlda {{ enabled = false; }}\n",
            cdb_base.display()
        ),
    );
    let o = run(&conf, true);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    for p in [
        cdb_base.join("0"),
        cdb_base.join("F"),
        queue.join("db/deferred"),
        queue.join("sockets"),
    ] {
        assert!(p.is_dir(), "{}", p.display());
    }
    assert_eq!(mode(&queue.join("sockets")), 0o2771);
    for p in ["0", "defedb", "qmsmar", "lda", "mail"] {
        assert!(!queue.join(p).exists(), "{p} is not part of this layout");
    }
}

/// As root, a configured user must own its directories: a wrong owner is
/// reported and --fix changes it. Without root, owners are not checked.
#[test]
fn owners_are_checked_as_root() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, conf) = setup(dir.path(), "lda { user = nobody; group = nogroup; }\n");
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let nogroup = nix::unistd::Group::from_name("nogroup").unwrap().unwrap();
    let mail = queue.join("mail");
    std::fs::create_dir_all(&mail).unwrap();
    std::fs::set_permissions(&mail, std::fs::Permissions::from_mode(0o700)).unwrap();
    let me = nix::unistd::geteuid().as_raw();
    let my_group = std::fs::metadata(&mail).unwrap().gid();

    let out = lines(&run(&conf, false));
    let owner_lines: Vec<_> = out
        .iter()
        .filter(|l| l.starts_with(&format!("{}:", mail.display())))
        .cloned()
        .collect();
    if is_root() {
        assert_eq!(
            owner_lines,
            vec![
                format!(
                    "{}: owner uid {me}, expected nobody (uid {})",
                    mail.display(),
                    nobody.uid
                ),
                format!(
                    "{}: group gid {my_group}, expected nogroup (gid {})",
                    mail.display(),
                    nogroup.gid
                ),
            ]
        );
        let o = run(&conf, true);
        assert_eq!(o.status.code(), Some(0), "{o:?}");
        let m = std::fs::metadata(&mail).unwrap();
        assert_eq!(m.uid(), nobody.uid.as_raw());
        assert_eq!(m.gid(), nogroup.gid.as_raw());
        let lda = std::fs::metadata(queue.join("lda")).unwrap();
        assert_eq!(lda.uid(), nobody.uid.as_raw());
        assert_eq!(lda.mode() & 0o7777, 0o750);
    } else {
        assert!(owner_lines.is_empty(), "{out:#?}");
        assert_eq!(run(&conf, true).status.code(), Some(0));
        assert_eq!(std::fs::metadata(&mail).unwrap().uid(), me);
    }
}

/// As root, a user that does not exist is a problem of its own.
#[test]
fn unknown_user_is_reported_as_root() {
    let dir = tempfile::tempdir().unwrap();
    let (_queue, conf) = setup(dir.path(), "qmgr { user = smx_no_such_user_x; }\n");
    let o = run(&conf, true);
    let out = lines(&o);
    let line = "qmgr: user 'smx_no_such_user_x' does not exist".to_owned();
    if is_root() {
        assert_eq!(o.status.code(), Some(EX_CONFIG), "{o:?}");
        assert_eq!(out.iter().filter(|l| **l == line).count(), 1, "{out:#?}");
    } else {
        assert_eq!(o.status.code(), Some(0), "{o:?}");
        assert!(!out.contains(&line));
    }
}

#[test]
fn fix_alone_implies_paths_and_bad_configuration_is_ex_config() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, conf) = setup(dir.path(), "");
    let o = smx()
        .args(["conf-check", "--fix", "-f"])
        .arg(&conf)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(queue.join("ibdb").is_dir());

    let bad = dir.path().join("bad.conf");
    std::fs::write(&bad, "qmgr { colour = blue; }\n").unwrap();
    let o = run(&bad, false);
    assert_eq!(o.status.code(), Some(EX_CONFIG), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown option 'colour'"));
}

fn write_mode(p: &Path, text: &str, mode: u32) {
    std::fs::write(p, text).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A configuration file every user may change is reported (mcp runs what
/// it says as root); fixing its mode makes the check clean.
#[test]
fn configuration_file_writable_by_everyone_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (_queue, conf) = setup(dir.path(), "");
    assert_eq!(run(&conf, true).status.code(), Some(0));
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o666)).unwrap();
    let o = run(&conf, false);
    assert_eq!(o.status.code(), Some(EX_CONFIG), "{o:?}");
    assert_eq!(
        lines(&o),
        vec![format!(
            "{}: configuration file: writable by every user (mode 0666)",
            conf.display()
        )]
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "1 problem in the queue layout and the files it uses (--fix repairs directories only)\n"
    );
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(lines(&run(&conf, false)), vec!["OK"]);
}

/// Map files named in the configuration must exist (relative to the
/// configuration's directory) and be readable by the component that opens
/// them; a default map file that does not exist is not used and not
/// reported.
#[test]
fn map_files_are_checked_for_their_reader() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let files = |user: &str| {
        format!(
            "smar {{ {user} map users {{ type = cdb; file = users.cdb; }}\n\
                     mailertable {{ file = mt; }} }}\n\
             qmgr {{ conf = qmgr_conf; }}\n"
        )
    };
    let (_queue, conf) = setup(d, &files(""));
    assert_eq!(
        run(&conf, true).status.code(),
        Some(EX_CONFIG),
        "files are not fixed"
    );
    let o = run(&conf, false);
    assert_eq!(o.status.code(), Some(EX_CONFIG), "{o:?}");
    let d = d.display();
    assert_eq!(
        lines(&o),
        vec![
            format!("{d}/users.cdb: map users of smar: missing"),
            format!("{d}/mt: mailertable of smar: missing"),
            format!("{d}/qmgr_conf: qmgr_conf of qmgr: missing"),
        ]
    );
    let dir = dir.path();
    write_mode(&dir.join("users.cdb"), "", 0o644);
    write_mode(&dir.join("mt"), "example.com esmtp:[127.0.0.1]\n", 0o600);
    write_mode(&dir.join("qmgr_conf"), "", 0o644);
    if !is_root() {
        assert_eq!(lines(&run(&conf, false)), vec!["OK"]);
        return;
    }
    // As root: smar runs as nobody, which cannot read a 0600 root file.
    setup(dir, &files("user = nobody; group = nogroup;"));
    let o = run(&conf, true);
    assert_eq!(o.status.code(), Some(EX_CONFIG), "{o:?}");
    let out = lines(&o);
    let files: Vec<_> = out
        .iter()
        .filter(|l| !l.contains(": owner set to"))
        .collect();
    assert_eq!(
        files,
        vec![&format!(
            "{d}/mt: mailertable of smar: smar (user nobody) cannot read it (mode 0600)"
        )],
        "{out:#?}"
    );
    std::fs::set_permissions(dir.join("mt"), std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(lines(&run(&conf, false)), vec!["OK"]);
}

/// A log file must be writable by its component, or creatable in an
/// existing directory the component may write.
#[test]
fn log_files_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let log_conf = |user: &str| {
        format!("qmgr {{ {user} log {{ destination = file; file = logs/qmgr.log; }} }}\n")
    };
    let (queue, conf) = setup(dir.path(), &log_conf(""));
    assert_eq!(
        run(&conf, true).status.code(),
        Some(EX_CONFIG),
        "files are not fixed"
    );
    let log = queue.join("logs/qmgr.log");
    let out = lines(&run(&conf, false));
    assert_eq!(out.len(), 1, "{out:#?}");
    assert!(
        out[0].starts_with(&format!(
            "{}: log file of qmgr: directory {}: ",
            log.display(),
            queue.join("logs").display()
        )),
        "{out:#?}"
    );
    std::fs::create_dir(queue.join("logs")).unwrap();
    assert_eq!(lines(&run(&conf, false)), vec!["OK"]);
    write_mode(&log, "", 0o666);
    assert_eq!(
        lines(&run(&conf, false)),
        vec![format!(
            "{}: log file of qmgr: writable by every user (mode 0666)",
            log.display()
        )]
    );
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o640)).unwrap();
    if !is_root() {
        assert_eq!(lines(&run(&conf, false)), vec!["OK"]);
        return;
    }
    // As root with a user: the root-owned file and directory are not the
    // user's to write.
    setup(dir.path(), &log_conf("user = nobody;"));
    let _ = run(&conf, true);
    assert_eq!(
        lines(&run(&conf, false)),
        vec![format!(
            "{}: log file of qmgr: qmgr (user nobody) cannot write it (mode 0640)",
            log.display()
        )]
    );
    std::fs::remove_file(&log).unwrap();
    assert_eq!(
        lines(&run(&conf, false)),
        vec![format!(
            "{}: log file of qmgr: qmgr (user nobody) cannot create it: {} is not writable for it",
            log.display(),
            queue.join("logs").display()
        )]
    );
}

/// TLS files must exist; the private key must not be readable by every
/// user.
#[test]
fn tls_key_readable_by_everyone_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (cert, key, ca) = (d.join("cert.pem"), d.join("key.pem"), d.join("ca.pem"));
    let queue = d.join("spool");
    let conf = d.join("smx.conf");
    std::fs::write(
        &conf,
        format!(
            "queue_directory = \"{}\";\n\
             smtps {{ listen_socket {{ type = inet; address = 127.0.0.1; port = 2525; }}\n\
               tls {{ cert_file = \"{}\"; key_file = \"{}\"; CAcert_file = \"{}\"; }} }}\n",
            queue.display(),
            cert.display(),
            key.display(),
            ca.display()
        ),
    )
    .unwrap();
    write_mode(&cert, "cert", 0o644);
    write_mode(&key, "key", 0o644);
    let o = run(&conf, true);
    assert_eq!(o.status.code(), Some(EX_CONFIG), "{o:?}");
    let out: Vec<_> = lines(&o)
        .into_iter()
        .filter(|l| !l.ends_with(": created") && !l.contains(": mode set to"))
        .collect();
    assert_eq!(
        out,
        vec![
            format!(
                "{}: TLS key_file of smtps: readable by every user (mode 0644)",
                key.display()
            ),
            format!("{}: TLS CAcert_file of smtps: missing", ca.display()),
        ]
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    write_mode(&ca, "ca", 0o644);
    assert_eq!(lines(&run(&conf, false)), vec!["OK"]);
}

/// As root, the users and groups must let the components work together:
/// smtps must be in the group `CDB_gid` names, smtpc (and qmgr, unless it
/// is smtps's user) in that group too, qmgr in smtpc's group, smtps and
/// qmgr in smar's group (their sockets are 0770), smtpc must reach the
/// lda's socket.
#[test]
fn components_that_cannot_reach_each_other_are_reported_as_root() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("smx.conf");
    std::fs::write(
        &conf,
        format!(
            "queue_directory = \"{}\";\n\
             smtps {{ listen_socket {{ type = inet; address = 127.0.0.1; port = 2525; }}\n\
                      user = nobody; CDB_gid = 0; }}\n\
             qmgr {{ user = nobody; }}\n\
             smar {{ user = daemon; }}\n\
             smtpc {{ user = daemon; }}\n",
            dir.path().join("spool").display()
        ),
    )
    .unwrap();
    let o = run(&conf, true);
    let out = lines(&o);
    let peers: Vec<&String> = out
        .iter()
        .filter(|l| !l.starts_with('/') && !l.contains("does not exist"))
        .collect();
    if !is_root() {
        assert_eq!(o.status.code(), Some(0), "{o:?}");
        assert!(peers.is_empty(), "{out:#?}");
        return;
    }
    assert_eq!(o.status.code(), Some(EX_CONFIG), "{o:?}");
    assert_eq!(
        peers,
        vec![
            "qmgr: cannot connect to smtpc's socket: user nobody is not in smtpc's group (gid 1)",
            "smtps: content files get group 0 (CDB_gid), which user nobody is not a member of; storing mail fails",
            "smtpc: cannot read the content files of smtps: user daemon is not in their group (gid 0, CDB_gid)",
            "smtpc: cannot connect to the lda's socket (mode 0770, uid 0, gid 0): give the lda's listen_socket a group user daemon is in",
            "qmgr: cannot connect to smar's socket: user nobody is not in smar's group (gid 1)",
            "smtps: cannot connect to smar's socket: user nobody is not in smar's group (gid 1)",
        ],
        "{out:#?}"
    );
}

/// `smx run` stopped with SIGINT on drop.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        for _ in 0..300 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The queue a first `smx run` lays out passes `--paths` without `--fix`.
#[test]
fn a_fresh_run_lays_out_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let queue = dir.path().join("spool");
    let conf = dir.path().join("smx.conf");
    std::fs::write(
        &conf,
        format!(
            "queue_directory = \"{}\";\n\
             smtps {{ listen_socket {{ type = inet; address = 127.0.0.1; port = {port}; }} }}\n\
             qmgr {{ min_disk_space = 1MB; ok_disk_space = 2MB; }}\n",
            queue.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("run.log");
    let mut child = Running(
        smx()
            .args(["run", "-f"])
            .arg(&conf)
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::options().append(true).open(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    // Up once smtps greets (qmgr and smar are running then).
    let start = std::time::Instant::now();
    let greeted = loop {
        if let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let mut line = String::new();
            let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(&s), &mut line);
            if line.starts_with("220") {
                break true;
            }
        }
        if start.elapsed() > std::time::Duration::from_secs(20) {
            break false;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(greeted, "{}", std::fs::read_to_string(&log).unwrap());
    assert!(child.0.try_wait().unwrap().is_none());
    let o = run(&conf, false);
    assert_eq!(lines(&o), vec!["OK"], "{o:?}");
    for (d, m) in [
        ("", 0o755),
        ("ibdb", 0o700),
        ("qmsmtpc", 0o2770),
        ("A", 0o771),
    ] {
        assert_eq!(mode(&queue.join(d)), m, "{d}");
    }
}

/// `smx run` refuses to start, with the reason, when a directory of the
/// layout is a file.
#[test]
fn run_refuses_a_layout_it_cannot_repair() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, conf) = setup(dir.path(), "");
    std::fs::create_dir_all(&queue).unwrap();
    std::fs::write(queue.join("ibdb"), b"not a directory").unwrap();
    let o = smx()
        .args(["run", "-f"])
        .arg(&conf)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(EX_CONFIG), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "{}: not a directory (expected: IBDB directory)",
            queue.join("ibdb").display()
        )),
        "{err}"
    );
    assert!(err.contains("the queue layout cannot be used"), "{err}");
    assert_eq!(
        std::fs::read(queue.join("ibdb")).unwrap(),
        b"not a directory"
    );
}
