//! SMTP AUTH through Dovecot's auth socket: a real Dovecot configured by
//! the test with a passwd-file, smtps passing the SASL exchanges through
//! (swaks for PLAIN, LOGIN and CRAM-MD5, the Python client for
//! SCRAM-SHA-256, a raw client for failures).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::pki::{self, Pki};
use common::{Client, Harness, QmgrScript, code, config};
use smx_conf::model::smtps::{AuthConfig, SmtpsConfig, SmtpsTls};

const HOST: &str = "mx.test.example";

/// Dovecot with only its auth service, stopped on drop.
struct Dovecot {
    child: Child,
    socket: PathBuf,
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dovecot {
    fn start(base: &Path) -> Dovecot {
        let run = base.join("dovecot-run");
        std::fs::create_dir_all(&run).unwrap();
        for p in [base, run.as_path()] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let users = base.join("dovecot-users");
        std::fs::write(&users, "alice:{PLAIN}wonderland\n").unwrap();
        let socket = base.join("auth-client");
        let conf = format!(
            "base_dir = {r}\nstate_dir = {r}\nlog_path = {b}/dovecot.log\n\
             protocols =\nssl = no\ndisable_plaintext_auth = no\n\
             auth_mechanisms = plain login cram-md5 scram-sha-256\n\
             auth_failure_delay = 0\nfirst_valid_uid = 0\n\
             passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN {u}\n}}\n\
             userdb {{\n  driver = static\n  args = uid=nobody gid=nogroup home={b}/home/%u\n}}\n\
             service auth {{\n  unix_listener {s} {{\n    mode = 0666\n  }}\n}}\n",
            r = run.display(),
            b = base.display(),
            u = users.display(),
            s = socket.display(),
        );
        let conf_path = base.join("dovecot.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new("/usr/sbin/dovecot")
            .arg("-F")
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let d = Dovecot { child, socket };
        let start = Instant::now();
        while !d.socket.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "dovecot did not create its auth socket"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }
}

fn cfg(pki: &Pki, socket: &Path) -> SmtpsConfig {
    let mut t = SmtpsTls::default();
    t.files.cert_file = Some(pki.server.cert.clone());
    t.files.key_file = Some(pki.server.key.clone());
    t.files.ca_cert_file = Some(pki.ca.cert.clone());
    SmtpsConfig {
        tls: Some(t),
        auth: Some(AuthConfig {
            dovecot_socket: Some(socket.to_path_buf()),
            fail_rate: 3,
            ..AuthConfig::default()
        }),
        ..config()
    }
}

async fn tls_client(h: &Harness, pki: &Pki) -> Client {
    let mut c = h.client().await;
    code(&c.reply().await, "220");
    code(&c.cmd("EHLO client.example").await, "250");
    code(&c.cmd("STARTTLS").await, "220");
    let conn = pki::connector(&pki.ca.cert, None);
    let (mut c, _) = c
        .upgrade(|s| async move {
            Box::new(pki::tls_connect(&conn, HOST, s).await.unwrap()) as Box<dyn common::Io>
        })
        .await;
    code(&c.cmd("EHLO client.example").await, "250");
    c
}

async fn run(mut cmd: tokio::process::Command) -> (bool, String) {
    cmd.kill_on_drop(true).stdin(Stdio::null());
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("client within 60 s")
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn auth_through_dovecot() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::make(dir.path(), HOST);
    let dovecot = Dovecot::start(dir.path());
    let h = Harness::start(cfg(&pki, &dovecot.socket), QmgrScript::default()).await;
    for mech in ["PLAIN", "LOGIN", "CRAM-MD5"] {
        let mut cmd = tokio::process::Command::new("swaks");
        cmd.arg("--server")
            .arg(h.addr.ip().to_string())
            .arg("--port")
            .arg(h.addr.port().to_string())
            .args([
                "--from",
                "s@client.example",
                "--to",
                "relaydenied@remote.example",
            ])
            .args(["--helo", "client.example", "--timeout", "20", "--tls"])
            .args(["--auth", mech, "--auth-user", "alice"])
            .args(["--auth-password", "wonderland"]);
        let (ok, out) = run(cmd).await;
        assert!(ok, "{mech}: {out}");
        assert!(out.contains("235 2.7.0"), "{out}");
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scripts/scram_client.py");
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg(script)
        .arg(h.addr.ip().to_string())
        .arg(h.addr.port().to_string())
        .arg(&pki.ca.cert)
        .args(["alice", "wonderland"]);
    let (ok, out) = run(cmd).await;
    assert!(ok, "SCRAM-SHA-256: {out}");
    assert_eq!(h.envelopes().len(), 4);
    let content = String::from_utf8(h.content(&h.envelopes()[0])).unwrap();
    assert!(content.contains(" with ESMTPSA\r\n"), "{content}");

    // Wrong passwords fail, count towards the rate limit, then 454.
    let mut c = tls_client(&h, &pki).await;
    for _ in 0..3 {
        code(
            &c.cmd(&format!("AUTH PLAIN {}", B64.encode("\0alice\0guess")))
                .await,
            "535 5.7.8",
        );
    }
    code(
        &c.cmd(&format!("AUTH PLAIN {}", B64.encode("\0alice\0wonderland")))
            .await,
        "454 4.7.0",
    );
    h.stop().await;
}

#[tokio::test]
async fn dovecot_down_is_a_temporary_failure() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::make(dir.path(), HOST);
    let socket = dir.path().join("no-such-socket");
    let h = Harness::start(cfg(&pki, &socket), QmgrScript::default()).await;
    let mut c = tls_client(&h, &pki).await;
    code(
        &c.cmd(&format!("AUTH PLAIN {}", B64.encode("\0alice\0wonderland")))
            .await,
        "454 4.7.0",
    );
    code(&c.cmd("QUIT").await, "221");
    h.stop().await;
}
