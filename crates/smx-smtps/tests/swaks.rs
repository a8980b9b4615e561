//! smtps against swaks, a real SMTP client: STARTTLS (`--tls`), implicit
//! TLS (`--tlsc`), client certificates (`--tls-cert`).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::pki::{self, Pki};
use common::{Harness, QmgrScript, config};
use smx_conf::model::smtps::{SmtpsConfig, SmtpsTls};

const HOST: &str = "mx.test.example";

fn tls_config(pki: &Pki, implicit: bool) -> SmtpsConfig {
    let mut t = SmtpsTls::default();
    t.files.cert_file = Some(pki.server.cert.clone());
    t.files.key_file = Some(pki.server.key.clone());
    t.files.ca_cert_file = Some(pki.ca.cert.clone());
    t.implicit = implicit;
    SmtpsConfig {
        tls: Some(t),
        ..config()
    }
}

/// Runs swaks against the harness with extra arguments; returns its exit
/// status and transcript.
async fn swaks(h: &Harness, extra: &[&str]) -> (bool, String) {
    let mut cmd = tokio::process::Command::new("swaks");
    cmd.arg("--server")
        .arg(h.addr.ip().to_string())
        .arg("--port")
        .arg(h.addr.port().to_string())
        .args(["--from", "s@client.example", "--to", "r@local.example"])
        .args(["--helo", "client.example", "--timeout", "20"])
        .args(extra)
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("swaks within 60 s")
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn received_of(h: &Harness) -> String {
    let envs = h.envelopes();
    assert_eq!(envs.len(), 1);
    let content = String::from_utf8(h.content(&envs[0])).unwrap();
    let end = content.find("\r\nDate:").unwrap_or(content.len().min(400));
    content[..end].to_string()
}

#[tokio::test]
async fn swaks_starttls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::make(dir.path(), HOST);
    let h = Harness::start(tls_config(&pki, false), QmgrScript::default()).await;
    let (ok, out) = swaks(&h, &["--tls"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("TLS started"), "{out}");
    let rec = received_of(&h);
    assert!(rec.contains(" with ESMTPS\r\n"), "{rec}");
    assert!(rec.contains("verify=NO)"), "{rec}");
    h.stop().await;
}

#[tokio::test]
async fn swaks_implicit_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::make(dir.path(), HOST);
    let h = Harness::start(tls_config(&pki, true), QmgrScript::default()).await;
    let (ok, out) = swaks(&h, &["--tlsc"]).await;
    assert!(ok, "{out}");
    assert!(h.envelopes().len() == 1, "{out}");
    assert!(received_of(&h).contains(" with ESMTPS\r\n"));
    h.stop().await;
}

#[tokio::test]
async fn swaks_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::make(dir.path(), HOST);
    let h = Harness::start(tls_config(&pki, false), QmgrScript::default()).await;
    let cert = pki.client.cert.to_str().unwrap();
    let key = pki.client.key.to_str().unwrap();
    let (ok, out) = swaks(&h, &["--tls", "--tls-cert", cert, "--tls-key", key]).await;
    assert!(ok, "{out}");
    assert!(received_of(&h).contains("verify=OK)"), "{out}");
    h.stop().await;

    let h = Harness::start(tls_config(&pki, false), QmgrScript::default()).await;
    let cert = pki.rogue_client.cert.to_str().unwrap();
    let key = pki.rogue_client.key.to_str().unwrap();
    let (ok, out) = swaks(&h, &["--tls", "--tls-cert", cert, "--tls-key", key]).await;
    assert!(ok, "{out}");
    assert!(received_of(&h).contains("verify=FAIL)"), "{out}");
    h.stop().await;
}
