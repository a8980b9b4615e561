//! Real SMTP clients against the running server: swaks, Python's smtplib
//! and Postfix's smtp-source (installed by .ci/run).
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{Harness, QmgrScript, config};
use tokio::process::Command;

/// Runs a peer program to its end (at most 120 s) and returns its output.
async fn run(cmd: &mut Command) -> (bool, String) {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?} (installed by .ci/run): {e}"));
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("peer finished within 120 s")
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn swaks_plain_and_pipelined() {
    let h = Harness::start(config(), QmgrScript::default()).await;
    let server = h.addr.to_string();
    let (ok, out) = run(Command::new("swaks").args([
        "--server",
        &server,
        "--from",
        "s@client.example",
        "--to",
        "a@local.example",
        "--helo",
        "client.example",
        "--header",
        "Subject: plain",
        "--body",
        "hello from swaks",
    ]))
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("<-  250 2.0.0"), "{out}");
    let (ok, out) = run(Command::new("swaks").args([
        "--server",
        &server,
        "--from",
        "s@client.example",
        "--to",
        "a@local.example,b@local.example,reject@local.example",
        "--pipeline",
        "--helo",
        "client.example",
        "--header",
        "Subject: pipelined",
        "--body",
        "caf\u{e9} 8-bit body",
    ]))
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("PIPELINING"), "{out}");
    let envs = h.envelopes();
    assert_eq!(envs.len(), 2, "{out}");
    let rcpts: Vec<_> = envs[1]
        .recipients
        .iter()
        .map(|r| r.address.as_str())
        .collect();
    assert_eq!(rcpts, ["a@local.example", "b@local.example"]);
    let content = String::from_utf8(h.content(&envs[1])).unwrap();
    assert!(content.contains("Subject: pipelined"), "{content}");
    assert!(content.contains("caf\u{e9} 8-bit body"), "{content}");
    h.stop().await;
}

#[tokio::test]
async fn python_smtplib_many_recipients_smtputf8_8bitmime() {
    let h = Harness::start(config(), QmgrScript::default()).await;
    let script = format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {port}, local_hostname="py.example", timeout=30)
s.ehlo()
assert s.has_extn("smtputf8") and s.has_extn("8bitmime") and s.has_extn("pipelining")
rcpts = ["user%d@local.example" % i for i in range(300)]
refused = s.sendmail("s@client.example", rcpts, b"Subject: many\r\n\r\nbody\r\n")
assert refused == {{}}, refused
msg = "From: j\u00f6rg@client.example\r\nSubject: utf8\r\n\r\nGr\u00fc\u00dfe\r\n".encode("utf-8")
refused = s.sendmail("j\u00f6rg@client.example", ["z\u00f6e@local.example"], msg, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
assert refused == {{}}, refused
try:
    s.sendmail("j\u00f6rg@client.example", ["a@local.example"], b"x\r\n")
    raise SystemExit("non-ASCII sender without SMTPUTF8 was accepted")
except smtplib.SMTPSenderRefused as e:
    assert e.smtp_code == 553, e
s.quit()
print("ok")
"#,
        port = h.addr.port()
    );
    let (ok, out) = run(Command::new("python3").args(["-c", &script])).await;
    assert!(ok && out.contains("ok"), "{out}");
    let envs = h.envelopes();
    assert_eq!(envs.len(), 2);
    assert_eq!(envs[0].recipients.len(), 300);
    assert_eq!(envs[1].sender, "jörg@client.example");
    assert_eq!(envs[1].recipients[0].address, "zöe@local.example");
    assert!(envs[1].params.contains("SMTPUTF8"), "{}", envs[1].params);
    let content = String::from_utf8(h.content(&envs[1])).unwrap();
    assert!(content.ends_with("Grüße\r\n"), "{content}");
    h.stop().await;
}

#[tokio::test]
async fn smtp_source_20_sessions() {
    // smtp-source opens a session's successor as soon as it has read 221,
    // while the server may still be finishing the old one: allow more than
    // 20 connections from the one address.
    let mut cfg = config();
    cfg.max_connections_per_ip = 100;
    let h = Harness::start(cfg, QmgrScript::default()).await;
    let target = format!("127.0.0.1:{}", h.addr.port());
    let (ok, out) = run(Command::new("/usr/sbin/smtp-source").args([
        "-s",
        "20",
        "-m",
        "400",
        "-l",
        "4096",
        "-f",
        "s@client.example",
        "-t",
        "a@local.example",
        "-M",
        "client.example",
        &target,
    ]))
    .await;
    assert!(ok, "{out}");
    let envs = h.envelopes();
    assert_eq!(envs.len(), 400, "{out}");
    for e in &envs {
        assert_eq!(e.recipients.len(), 1);
        assert!(e.size >= 4096, "{}", e.size);
    }
    h.stop().await;
}
