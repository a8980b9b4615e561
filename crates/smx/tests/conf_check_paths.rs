//! Runs the built `smx conf-check --paths [--fix]` on queue directories in
//! temporary directories: missing directories, wrong modes and (as root)
//! wrong owners are reported with exit status 78 and repaired by --fix.

#![allow(clippy::unwrap_used)]

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
