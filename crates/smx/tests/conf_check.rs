//! Runs the built `smx conf-check` on good and bad files and checks exit
//! codes and messages.

use assert_cmd::Command;
use std::path::Path;

const EX_CONFIG: i32 = 78;
const EX_NOINPUT: i32 = 66;

fn smx() -> Command {
    let mut c = Command::cargo_bin("smx").expect("the smx binary is built");
    c.env_remove("SMX_HOME");
    c
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write test file");
    p
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn version() {
    let o = smx().arg("--version").output().unwrap();
    assert!(o.status.success());
    assert_eq!(stdout(&o), format!("smx {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn embedded_default_is_ok() {
    let o = smx().arg("conf-check").output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "OK\n");
    assert_eq!(stderr(&o), "");
}

#[test]
fn good_file_is_ok() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "good.conf",
        "# a small configuration\nhostname = mx.example.org;\nqmgr { AQ_max_entries = 4096; }\n\
         smtps MTA { id = 0; listen_socket { type = inet; port = 25; } }\n\
         smtps MSA { id = 1; listen_socket { type = inet; port = 587; } pass_fd_socket = smtps/msafd; }\n",
    );
    let o = smx().args(["conf-check", "-f"]).arg(&f).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "OK\n");
}

#[test]
fn bad_file_lists_every_error_and_exits_ex_config() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "bad.conf",
        "qmgr {\n  AQ_max_entries = many;\n  colour = blue;\n}\nsmtps { id = 999; }\n",
    );
    let o = smx().args(["conf-check", "-f"]).arg(&f).output().unwrap();
    assert_eq!(o.status.code(), Some(EX_CONFIG));
    assert_eq!(stdout(&o), "");
    let p = f.display();
    assert_eq!(
        stderr(&o),
        format!(
            "{p}:2:20: invalid value for 'AQ_max_entries': expected a number (decimal, 0x hexadecimal or 0 octal), found 'many'\n\
             {p}:3:3: unknown option 'colour' in 'qmgr'\n\
             {p}:5:14: invalid value for 'id': 999 is out of range (at most 255)\n\
             3 errors\n"
        )
    );
}

#[test]
fn syntax_error_and_semantic_error() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "syntax.conf",
        "qmgr { log_level = 9 }\nsmtpc {\n",
    );
    let o = smx().args(["conf-check", "-f"]).arg(&f).output().unwrap();
    assert_eq!(o.status.code(), Some(EX_CONFIG));
    assert_eq!(
        stderr(&o),
        format!(
            "{}:3:1: expected '}}' before end of input\n1 error\n",
            f.display()
        )
    );

    let f = write(
        dir.path(),
        "check.conf",
        "qmgr {\n  min_disk_space = 2GB;\n  ok_disk_space = 1GB;\n}\n",
    );
    let o = smx().args(["conf-check", "-f"]).arg(&f).output().unwrap();
    assert_eq!(o.status.code(), Some(EX_CONFIG));
    assert_eq!(
        stderr(&o),
        format!(
            "{}:3:3: ok_disk_space (1073741824 bytes) must be larger than min_disk_space (2147483648 bytes)\n1 error\n",
            f.display()
        )
    );
}

#[test]
fn missing_file_exits_ex_noinput() {
    let o = smx()
        .args(["conf-check", "-f", "/nonexistent/smx.conf"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(EX_NOINPUT));
    assert!(
        stderr(&o).starts_with("smx: cannot read configuration file /nonexistent/smx.conf: "),
        "{}",
        stderr(&o)
    );
}

#[test]
fn usage_error_exits_64() {
    let o = smx()
        .args(["conf-check", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64));
    assert!(stderr(&o).contains("--no-such-flag"), "{}", stderr(&o));
    let o = smx().arg("bogus-subcommand").output().unwrap();
    assert_eq!(o.status.code(), Some(64));
    let o = smx().arg("--help").output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("conf-check"));
}

#[test]
fn vvvvv_prints_effective_configuration_that_loads_back() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "in.conf",
        "qmgr { AQ_max_entries = 4096; IBDB { max_commit_delay = 500; } }\n\
         smar { map users { type = cdb; file = users.cdb; } local_user_map { name = users; } }\n",
    );
    let o = smx()
        .args(["conf-check", "-VVVVV", "-f"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o), "OK\n");
    let printed = stdout(&o);
    assert!(printed.starts_with(&format!("# smx {}\n", env!("CARGO_PKG_VERSION"))));
    // Defaults are included, values from the file are there.
    for line in [
        "    AQ_max_entries = 4096;",
        "        max_commit_delay = 500us;",
        "    queue_return_timeout = 5d;",
        "    map users {",
        "        type = cdb;",
    ] {
        assert!(
            printed.lines().any(|l| l == line),
            "missing {line:?} in:\n{printed}"
        );
    }
    // The printed text is itself a valid configuration equal to the input.
    let again = write(dir.path(), "again.conf", &printed);
    let o2 = smx()
        .args(["conf-check", "-VVVVV", "-f"])
        .arg(&again)
        .output()
        .unwrap();
    assert_eq!(o2.status.code(), Some(0), "{}", stderr(&o2));
    let reprinted = stdout(&o2).replace(&again.display().to_string(), &f.display().to_string());
    assert_eq!(reprinted, printed);
}

#[test]
fn smx_home_overrides_embedded_queue_directory() {
    let o = smx()
        .env("SMX_HOME", "/srv/mail/spool")
        .args(["conf-check", "-VVVVV"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o).contains("\nqueue_directory = \"/srv/mail/spool\";\n"),
        "{}",
        stdout(&o)
    );
    let o = smx().args(["conf-check", "-VVVVV"]).output().unwrap();
    assert!(stdout(&o).contains("\nqueue_directory = \"./smx-spool\";\n"));
}

#[test]
fn reference_lists_options() {
    let o = smx().args(["conf-check", "--reference"]).output().unwrap();
    assert!(o.status.success());
    let r = stdout(&o);
    for needle in [
        "## Global options / qmgr",
        "| `AQ_max_entries` | number | `8192` |",
        "## Global options / smtps [NAME] (repeatable)",
    ] {
        assert!(r.contains(needle), "missing {needle:?}");
    }
}

#[test]
fn docs_configuration_reference_is_current() {
    let o = smx().args(["conf-check", "--reference"]).output().unwrap();
    let generated = stdout(&o);
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/configuration.md"
    ))
    .expect("docs/configuration.md exists");
    let marker = "<!-- generated by `smx conf-check --reference`; do not edit below -->\n";
    let Some((_, tail)) = docs.split_once(marker) else {
        panic!("docs/configuration.md lacks the generated-reference marker");
    };
    assert!(
        tail == generated,
        "docs/configuration.md is out of date: regenerate the part below the marker with `smx conf-check --reference`"
    );
}

#[test]
fn run_with_a_bad_configuration_exits_78_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("bad.conf");
    std::fs::write(
        &conf,
        "queue_directory = \"spool\";\nsmtps { no_such_option = 1; }\n",
    )
    .unwrap();
    let o = smx()
        .args(["run", "-f"])
        .arg(&conf)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(78), "{}", stderr(&o));
    assert!(stderr(&o).contains("no_such_option"), "{}", stderr(&o));
    assert!(!dir.path().join("spool").exists(), "nothing was started");
}

#[test]
fn run_with_bad_configuration_exits_ex_config() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "bad.conf", "qmgr { nonsense = 1; }\n");
    let o = smx().args(["run", "-f"]).arg(&f).output().unwrap();
    assert_eq!(o.status.code(), Some(EX_CONFIG));
    assert!(stderr(&o).contains("unknown option 'nonsense' in 'qmgr'"));
}
