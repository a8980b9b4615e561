//! SMTP AUTH: what is offered when, the mechanisms against the password
//! file's hash forms (raw client, swaks, and a Python SCRAM-SHA-256
//! client), relaying after AUTH, the MAIL AUTH= parameter, the failure
//! rate limit, and submission's required AUTH.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::pki::{self, Pki};
use common::{Client, Harness, QmgrScript, code, config};
use smx_conf::model::smtps::{AuthConfig, SmtpsConfig, SmtpsTls};

const HOST: &str = "mx.test.example";

/// "erinpw" hashed by libxcrypt's yescrypt
/// (`crypt.crypt("erinpw", "$y$j9T$0123456789abcdef")` in Python).
const YESCRYPT: &str = "$y$j9T$0123456789abcdef$yz1Tqlik.rnn0lkGgwUzkOLMB0mBls6kApA2NaEgxU8";

fn password_file(dir: &Path) -> std::path::PathBuf {
    use argon2::PasswordHasher as _;
    let salt = argon2::password_hash::SaltString::from_b64("c29tZXNhbHQxMjM0").unwrap();
    let argon = argon2::Argon2::default()
        .hash_password(b"bobpw", &salt)
        .unwrap()
        .to_string();
    let sha =
        sha_crypt::sha512_simple("carolpw", &sha_crypt::Sha512Params::new(5000).unwrap()).unwrap();
    let scram = smx_smtps::auth::ScramKeys::derive(b"davepw", b"davesalt", 4096).to_file_form();
    let p = dir.join("passwd");
    std::fs::write(
        &p,
        format!(
            "alice:{{PLAIN}}wonderland\nbob:{argon}\ncarol:{sha}\ndave:{scram}\nerin:{YESCRYPT}\n"
        ),
    )
    .unwrap();
    p
}

fn auth_config(dir: &Path) -> AuthConfig {
    AuthConfig {
        password_file: Some(password_file(dir)),
        ..AuthConfig::default()
    }
}

fn cfg(pki: &Pki, auth: AuthConfig) -> SmtpsConfig {
    let mut t = SmtpsTls::default();
    t.files.cert_file = Some(pki.server.cert.clone());
    t.files.key_file = Some(pki.server.key.clone());
    t.files.ca_cert_file = Some(pki.ca.cert.clone());
    SmtpsConfig {
        tls: Some(t),
        auth: Some(auth),
        ..config()
    }
}

async fn setup(f: impl FnOnce(&mut AuthConfig)) -> (tempfile::TempDir, Pki, Harness) {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::make(dir.path(), HOST);
    let mut a = auth_config(dir.path());
    f(&mut a);
    let h = Harness::start(cfg(&pki, a), QmgrScript::default()).await;
    (dir, pki, h)
}

/// Greeting, EHLO, STARTTLS, EHLO again; returns the client and the
/// second EHLO reply.
async fn tls_client(h: &Harness, pki: &Pki) -> (Client, String) {
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
    let ehlo = c.cmd("EHLO client.example").await;
    code(&ehlo, "250");
    (c, ehlo)
}

fn plain(user: &str, pw: &str) -> String {
    B64.encode(format!("\0{user}\0{pw}"))
}

#[tokio::test]
async fn auth_not_offered_in_clear_by_default() {
    let (_d, pki, h) = setup(|_| {}).await;
    let mut c = h.client().await;
    code(&c.reply().await, "220");
    let ehlo = c.cmd("EHLO client.example").await;
    assert!(!ehlo.contains("AUTH"), "{ehlo}");
    code(
        &c.cmd(&format!("AUTH PLAIN {}", plain("alice", "wonderland")))
            .await,
        "538 5.7.11",
    );
    code(&c.cmd("QUIT").await, "221");
    let (mut c, ehlo) = tls_client(&h, &pki).await;
    assert!(
        ehlo.contains("250-AUTH PLAIN LOGIN CRAM-MD5 SCRAM-SHA-256\r\n"),
        "{ehlo}"
    );
    code(&c.cmd("QUIT").await, "221");
    h.stop().await;
}

#[tokio::test]
async fn auth_in_clear_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = auth_config(dir.path());
    a.flags.allow_plaintext_without_tls = true;
    let h = Harness::start(
        SmtpsConfig {
            auth: Some(a),
            ..config()
        },
        QmgrScript::default(),
    )
    .await;
    let mut c = h.client().await;
    code(&c.reply().await, "220");
    let ehlo = c.cmd("EHLO client.example").await;
    assert!(ehlo.contains("AUTH PLAIN"), "{ehlo}");
    code(&c.cmd("AUTH LOGIN").await, "334 VXNlcm5hbWU6");
    code(&c.cmd(&B64.encode("alice")).await, "334 UGFzc3dvcmQ6");
    code(&c.cmd(&B64.encode("wonderland")).await, "235 2.7.0");
    h.stop().await;
}

#[tokio::test]
async fn auth_allows_relaying_and_marks_received() {
    let (_d, pki, h) = setup(|_| {}).await;
    let (mut c, _) = tls_client(&h, &pki).await;
    code(&c.cmd("MAIL FROM:<s@client.example>").await, "250");
    code(&c.cmd("RCPT TO:<relaydenied@remote.example>").await, "550");
    code(&c.cmd("RSET").await, "250");
    code(&c.cmd("AUTH PLAIN").await, "334");
    code(&c.cmd(&plain("bob", "bobpw")).await, "235 2.7.0");
    code(
        &c.cmd(&format!("AUTH PLAIN {}", plain("bob", "bobpw")))
            .await,
        "503",
    );
    let ehlo = c.cmd("EHLO client.example").await;
    assert!(!ehlo.contains("AUTH"), "offered again after login: {ehlo}");
    code(&c.cmd("MAIL FROM:<s@client.example>").await, "250");
    code(&c.cmd("RCPT TO:<relaydenied@remote.example>").await, "250");
    code(&c.cmd("DATA").await, "354");
    c.send(b"Subject: t\r\n\r\nbody\r\n.\r\n").await;
    code(&c.reply().await, "250");
    let envs = h.envelopes();
    assert_eq!(envs.len(), 1);
    assert!(envs[0].params.contains("AUTH=bob"), "{:?}", envs[0].params);
    let content = String::from_utf8(h.content(&envs[0])).unwrap();
    assert!(content.contains(" with ESMTPSA\r\n"), "{content}");
    h.stop().await;
}

#[tokio::test]
async fn auth_param_of_unauthenticated_client_is_not_believed() {
    let (_d, pki, h) = setup(|_| {}).await;
    let (mut c, _) = tls_client(&h, &pki).await;
    code(
        &c.cmd("MAIL FROM:<s@client.example> AUTH=boss@client.example")
            .await,
        "250",
    );
    code(&c.cmd("RCPT TO:<r@local.example>").await, "250");
    code(&c.cmd("DATA").await, "354");
    c.send(b"Subject: t\r\n\r\nbody\r\n.\r\n").await;
    code(&c.reply().await, "250");
    let envs = h.envelopes();
    assert!(envs[0].params.contains("AUTH=<>"), "{:?}", envs[0].params);
    assert!(!envs[0].params.contains("boss"), "{:?}", envs[0].params);
    h.stop().await;
}

#[tokio::test]
async fn every_hash_form_and_mechanism() {
    let (_d, pki, h) = setup(|_| {}).await;
    for (user, pw) in [
        ("alice", "wonderland"),
        ("bob", "bobpw"),
        ("carol", "carolpw"),
        ("dave", "davepw"),
        ("erin", "erinpw"),
    ] {
        let (mut c, _) = tls_client(&h, &pki).await;
        code(
            &c.cmd(&format!("AUTH PLAIN {}", plain(user, pw))).await,
            "235",
        );
        let (mut c, _) = tls_client(&h, &pki).await;
        code(
            &c.cmd(&format!("AUTH PLAIN {}", plain(user, "wrong"))).await,
            "535 5.7.8",
        );
    }
    // CRAM-MD5 needs a clear-text entry.
    let (mut c, _) = tls_client(&h, &pki).await;
    let ch = c.cmd("AUTH CRAM-MD5").await;
    code(&ch, "334 ");
    let challenge = B64.decode(ch[4..].trim()).unwrap();
    assert!(challenge.starts_with(b"<") && challenge.ends_with(b"@mx.test.example>"));
    use hmac::Mac as _;
    let mut m = hmac::Hmac::<md5::Md5>::new_from_slice(b"wonderland").unwrap();
    m.update(&challenge);
    let hex: String = m
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    code(&c.cmd(&B64.encode(format!("alice {hex}"))).await, "235");
    // A canceled exchange.
    let (mut c, _) = tls_client(&h, &pki).await;
    code(&c.cmd("AUTH LOGIN").await, "334");
    code(&c.cmd("*").await, "501");
    code(&c.cmd("AUTH FOO").await, "504 5.5.4");
    h.stop().await;
}

#[tokio::test]
async fn failure_rate_limit() {
    let (_d, pki, h) = setup(|a| a.fail_rate = 3).await;
    let (mut c, _) = tls_client(&h, &pki).await;
    for _ in 0..3 {
        code(
            &c.cmd(&format!("AUTH PLAIN {}", plain("alice", "guess")))
                .await,
            "535",
        );
    }
    code(
        &c.cmd(&format!("AUTH PLAIN {}", plain("alice", "wonderland")))
            .await,
        "454 4.7.0",
    );
    // Per address, not per session.
    let (mut c, _) = tls_client(&h, &pki).await;
    code(
        &c.cmd(&format!("AUTH PLAIN {}", plain("alice", "wonderland")))
            .await,
        "454 4.7.0",
    );
    h.stop().await;
}

#[tokio::test]
async fn submission_requires_auth() {
    let (_d, pki, h) = setup(|a| a.flags.require = true).await;
    let (mut c, _) = tls_client(&h, &pki).await;
    code(&c.cmd("MAIL FROM:<s@client.example>").await, "530 5.7.0");
    code(
        &c.cmd(&format!("AUTH PLAIN {}", plain("alice", "wonderland")))
            .await,
        "235",
    );
    code(&c.cmd("MAIL FROM:<s@client.example>").await, "250");
    h.stop().await;
}

async fn run(mut cmd: tokio::process::Command) -> (bool, String) {
    cmd.kill_on_drop(true).stdin(std::process::Stdio::null());
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

async fn swaks(h: &Harness, mech: &str, user: &str, pw: &str) -> (bool, String) {
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
        .args(["--auth", mech, "--auth-user", user, "--auth-password", pw]);
    run(cmd).await
}

#[tokio::test]
async fn swaks_auth_mechanisms() {
    let (_d, _pki, h) = setup(|_| {}).await;
    for (mech, user, pw) in [
        ("PLAIN", "alice", "wonderland"),
        ("LOGIN", "carol", "carolpw"),
        ("CRAM-MD5", "alice", "wonderland"),
        ("PLAIN", "bob", "bobpw"),
    ] {
        let (ok, out) = swaks(&h, mech, user, pw).await;
        assert!(ok, "{mech} {user}: {out}");
        assert!(out.contains("235 2.7.0"), "{out}");
    }
    assert_eq!(h.envelopes().len(), 4);
    let (ok, out) = swaks(&h, "LOGIN", "alice", "wrong").await;
    assert!(!ok, "{out}");
    assert!(out.contains("535 5.7.8"), "{out}");
    assert_eq!(h.envelopes().len(), 4);
    h.stop().await;
}

#[tokio::test]
async fn python_scram_sha256() {
    let (_d, pki, h) = setup(|_| {}).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scripts/scram_client.py");
    for (user, pw, want) in [
        ("alice", "wonderland", true),
        ("dave", "davepw", true),
        ("dave", "wrong", false),
        ("nobody", "x", false),
    ] {
        let mut cmd = tokio::process::Command::new("python3");
        cmd.arg(script)
            .arg(h.addr.ip().to_string())
            .arg(h.addr.port().to_string())
            .arg(&pki.ca.cert)
            .args([user, pw]);
        let (ok, out) = run(cmd).await;
        assert_eq!(ok, want, "{user}: {out}");
    }
    assert_eq!(h.envelopes().len(), 2);
    h.stop().await;
}

#[tokio::test]
async fn endless_auth_attempts_close_the_session() {
    let (_d, pki, h) = setup(|a| a.fail_rate = 0).await;
    let (mut c, _) = tls_client(&h, &pki).await;
    let mut last = String::new();
    for _ in 0..30 {
        last = c
            .cmd(&format!("AUTH PLAIN {}", plain("alice", "guess")))
            .await;
        if !last.starts_with("535") {
            break;
        }
    }
    code(&last, "421 4.7.0");
    assert!(c.closed().await);
    h.stop().await;
}
