//! Runs the built `smx makemap` on good and bad text maps and reads the
//! result back with the cdb map.

use assert_cmd::Command;
use smx_maps::Map;

fn smx() -> Command {
    Command::cargo_bin("smx").expect("the smx binary is built")
}

#[test]
fn builds_a_cdb_that_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("access");
    std::fs::write(
        &input,
        "# access map\ncltaddr:127.0.0.1 relay\nFROM:@Spammer.Example error:551 5.7.1 No spammers\n\nto:abuse quick:ok\ncltaddr:127.0.0.1 reject\n",
    )
    .unwrap();
    let o = smx().arg("makemap").arg(&input).output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = dir.path().join("access.cdb");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("3 entries written to {}\n", out.display())
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!(
            "{}:6: duplicate key ignored (the first one wins)\n",
            input.display()
        )
    );
    let map = smx_maps::CdbMap::open(&out).expect("a cdb file");
    assert_eq!(
        map.lookup("cltaddr:127.0.0.1").unwrap().as_deref(),
        Some("relay")
    );
    // Keys are lower-cased (seed 6.5); values are kept.
    assert_eq!(
        map.lookup("from:@spammer.example").unwrap().as_deref(),
        Some("error:551 5.7.1 No spammers")
    );
    assert_eq!(map.lookup("to:abuse").unwrap().as_deref(), Some("quick:ok"));
    assert_eq!(map.lookup("to:root").unwrap(), None);
}

#[test]
fn reads_standard_input_with_an_output_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mt.cdb");
    let o = smx()
        .args(["makemap", "-o"])
        .arg(&out)
        .write_stdin("localhost lmtp:\n.example.org esmtp:[192.0.2.1]\n")
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let map = smx_maps::CdbMap::open(&out).unwrap();
    assert_eq!(
        map.lookup(".example.org").unwrap().as_deref(),
        Some("esmtp:[192.0.2.1]")
    );
    let o = smx().arg("makemap").write_stdin("a b\n").output().unwrap();
    assert_eq!(o.status.code(), Some(64));
}

#[test]
fn bad_lines_are_reported_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("aliases");
    std::fs::write(
        &input,
        "postmaster: root\nlonely\nok value\nalso-lonely   \n",
    )
    .unwrap();
    let out = dir.path().join("aliases.cdb");
    std::fs::write(&out, b"old").unwrap();
    let o = smx().arg("makemap").arg(&input).output().unwrap();
    assert_eq!(o.status.code(), Some(65));
    let p = input.display();
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!(
            "{p}:2: a key needs a value separated by white space\n\
             {p}:4: a key needs a value separated by white space\n\
             smx makemap: 2 bad line(s), {} not written\n",
            out.display()
        )
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"old", "the old map is kept");
    let o = smx()
        .args(["makemap", "/nonexistent/map"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(66));
}

#[test]
fn kind_checks_every_value_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("access");
    std::fs::write(
        &input,
        "cltaddr:127.0.0.1 relay\nfrom:a@b.example rejekt\nto:c@d.example error:250 fine\nto:e@f.example quick:ok\n",
    )
    .unwrap();
    let o = smx()
        .args(["makemap", "--kind", "access"])
        .arg(&input)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(65));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "{}:2: bad access map value 'rejekt'",
            input.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{}:3: bad access map value", input.display())),
        "{err}"
    );
    assert!(!dir.path().join("access.cdb").exists(), "nothing written");
    // Without --kind the same file is only checked for map syntax.
    let o = smx().arg("makemap").arg(&input).output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    // A mailertable.
    let mt = dir.path().join("mailertable");
    std::fs::write(
        &mt,
        "example.com esmtp:[10.1.2.3]\nlocal.example lmtp:\nbad.example esmtp:\n",
    )
    .unwrap();
    let o = smx()
        .args(["makemap", "--kind", "mailertable"])
        .arg(&mt)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&o.stderr).contains(":3: bad mailertable value"));
}
