//! STARTTLS and implicit TLS against a rustls client: what EHLO offers,
//! the reset after the handshake, the command-injection case, client
//! certificates, and the Received: field's TLS part.
#![allow(clippy::unwrap_used)]

mod common;

use common::pki::{self, Pem, Pki};
use common::{Client, Harness, QmgrScript, code, config};
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

async fn setup(implicit: bool) -> (tempfile::TempDir, Pki, Harness) {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::make(dir.path(), HOST);
    let h = Harness::start(tls_config(&pki, implicit), QmgrScript::default()).await;
    (dir, pki, h)
}

/// STARTTLS on a fresh connection; returns the client under TLS.
async fn starttls(h: &Harness, pki: &Pki, cert: Option<&Pem>) -> Client {
    let mut c = h.client().await;
    code(&c.reply().await, "220 mx.test.example");
    let ehlo = c.cmd("EHLO client.example").await;
    assert!(ehlo.contains("250-STARTTLS\r\n"), "{ehlo}");
    code(&c.cmd("STARTTLS").await, "220 2.0.0");
    let conn = pki::connector(&pki.ca.cert, cert);
    let (c, rest) = c
        .upgrade(|s| async move {
            let t = pki::tls_connect(&conn, HOST, s).await.unwrap();
            Box::new(t) as Box<dyn common::Io>
        })
        .await;
    assert!(rest.is_empty());
    c
}

async fn send_message(c: &mut Client) {
    code(&c.cmd("MAIL FROM:<s@client.example>").await, "250");
    code(&c.cmd("RCPT TO:<r@local.example>").await, "250");
    code(&c.cmd("DATA").await, "354");
    c.send(b"Subject: t\r\n\r\nbody\r\n.\r\n").await;
    code(&c.reply().await, "250 2.0.0");
}

fn received_of(h: &Harness) -> String {
    let envs = h.envelopes();
    assert_eq!(envs.len(), 1);
    let content = String::from_utf8(h.content(&envs[0])).unwrap();
    let end = content.find("\r\nSubject:").unwrap();
    content[..end].to_string()
}

#[tokio::test]
async fn starttls_then_message_with_tls_received() {
    let (_d, pki, h) = setup(false).await;
    let mut c = starttls(&h, &pki, None).await;
    // RFC 3207 4.2: the server forgot the EHLO.
    code(&c.cmd("MAIL FROM:<s@client.example>").await, "503 5.5.1");
    let ehlo = c.cmd("EHLO client.example").await;
    code(&ehlo, "250");
    assert!(!ehlo.contains("STARTTLS"), "offered twice: {ehlo}");
    code(&c.cmd("STARTTLS").await, "503 5.5.1");
    send_message(&mut c).await;
    code(&c.cmd("QUIT").await, "221");
    let rec = received_of(&h);
    assert!(rec.contains(" with ESMTPS\r\n"), "{rec}");
    assert!(rec.contains("\t(TLS=TLSv1.3, cipher=TLS13_"), "{rec}");
    assert!(rec.contains(", verify=NO)\r\n\tid "), "{rec}");
    h.stop().await;
}

#[tokio::test]
async fn commands_pipelined_after_starttls_are_discarded() {
    let (_d, pki, h) = setup(false).await;
    let mut c = h.client().await;
    code(&c.reply().await, "220");
    code(&c.cmd("EHLO client.example").await, "250");
    c.send(b"STARTTLS\r\nMAIL FROM:<evil@attacker.example>\r\n")
        .await;
    code(&c.reply().await, "220 2.0.0");
    let conn = pki::connector(&pki.ca.cert, None);
    let (mut c, rest) = c
        .upgrade(|s| async move {
            Box::new(pki::tls_connect(&conn, HOST, s).await.unwrap()) as Box<dyn common::Io>
        })
        .await;
    assert!(rest.is_empty(), "no clear-text reply to the injected MAIL");
    code(&c.cmd("EHLO client.example").await, "250");
    // Had the injected MAIL been executed, this would be 503 "Nested MAIL".
    code(&c.cmd("MAIL FROM:<s@client.example>").await, "250");
    code(&c.cmd("RSET").await, "250");
    code(&c.cmd("QUIT").await, "221");
    h.stop().await;
}

#[tokio::test]
async fn verified_client_certificate() {
    let (_d, pki, h) = setup(false).await;
    let mut c = starttls(&h, &pki, Some(&pki.client)).await;
    code(&c.cmd("EHLO client.example").await, "250");
    send_message(&mut c).await;
    let rec = received_of(&h);
    assert!(rec.contains(", verify=OK)"), "{rec}");
    h.stop().await;
}

#[tokio::test]
async fn unverifiable_client_certificate_is_fail_not_refused() {
    let (_d, pki, h) = setup(false).await;
    let mut c = starttls(&h, &pki, Some(&pki.rogue_client)).await;
    code(&c.cmd("EHLO client.example").await, "250");
    send_message(&mut c).await;
    let rec = received_of(&h);
    assert!(rec.contains(", verify=FAIL)"), "{rec}");
    h.stop().await;
}

#[tokio::test]
async fn implicit_tls_listener() {
    let (_d, pki, h) = setup(true).await;
    let conn = pki::connector(&pki.ca.cert, None);
    let tcp = pki::tcp(h.addr).await;
    let t = pki::tls_connect(&conn, HOST, Box::new(tcp)).await.unwrap();
    let mut c = Client::over(Box::new(t));
    code(&c.reply().await, "220 mx.test.example");
    let ehlo = c.cmd("EHLO client.example").await;
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    send_message(&mut c).await;
    let rec = received_of(&h);
    assert!(rec.contains(" with ESMTPS\r\n"), "{rec}");
    h.stop().await;
}

#[tokio::test]
async fn implicit_tls_listener_refuses_clear_text() {
    let (_d, _pki, h) = setup(true).await;
    let mut c = h.client().await;
    c.send(b"EHLO client.example\r\n").await;
    let r = c.reply().await;
    assert!(!r.starts_with("220") && !r.starts_with("250"), "{r:?}");
    assert!(c.closed().await);
    assert!(h.envelopes().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn starttls_not_offered_without_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::make(dir.path(), HOST);
    let mut cfg = tls_config(&pki, false);
    cfg.flags.starttls = false;
    let h = Harness::start(cfg, QmgrScript::default()).await;
    let mut c = h.client().await;
    code(&c.reply().await, "220");
    let ehlo = c.cmd("EHLO client.example").await;
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    code(&c.cmd("STARTTLS").await, "502 5.5.1");
    h.stop().await;
}

#[tokio::test]
async fn failed_handshake_closes() {
    let (_d, _pki, h) = setup(false).await;
    let mut c = h.client().await;
    code(&c.reply().await, "220");
    code(&c.cmd("EHLO client.example").await, "250");
    code(&c.cmd("STARTTLS").await, "220");
    c.send(b"this is not a TLS ClientHello\r\n").await;
    assert!(c.closed().await);
    h.stop().await;
}

async fn relay_try(h: &Harness, pki: &Pki, cert: Option<&Pem>) -> String {
    let mut c = starttls(h, pki, cert).await;
    code(&c.cmd("EHLO client.example").await, "250");
    code(&c.cmd("MAIL FROM:<s@client.example>").await, "250");
    let r = c.cmd("RCPT TO:<relaydenied@remote.example>").await;
    code(&c.cmd("QUIT").await, "221");
    r
}

#[tokio::test]
async fn relaying_allowed_by_a_verified_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::make(dir.path(), HOST);
    let mut cfg = tls_config(&pki, false);
    if let Some(t) = cfg.tls.as_mut() {
        t.flags.allow_relaying_if_verified = true;
    }
    let h = Harness::start(cfg, QmgrScript::default()).await;
    code(&relay_try(&h, &pki, Some(&pki.client)).await, "250");
    code(&relay_try(&h, &pki, Some(&pki.rogue_client)).await, "550");
    code(&relay_try(&h, &pki, None).await, "550");
    h.stop().await;
}

#[tokio::test]
async fn relaying_allowed_by_the_access_map_for_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::make(dir.path(), HOST);
    let mut cfg = tls_config(&pki, false);
    cfg.flags.access = true;
    if let Some(t) = cfg.tls.as_mut() {
        t.flags.check_access_map_for_relaying = true;
    }
    let h = Harness::start(cfg, QmgrScript::default()).await;
    code(&relay_try(&h, &pki, Some(&pki.client)).await, "250");
    let checks = h.seen.lock().unwrap().cert_checks.clone();
    assert_eq!(
        checks,
        vec![(
            "/CN=smx test CA/O=smx test".to_string(),
            "/CN=client.example/O=smx test".to_string()
        )]
    );
    // An unverified certificate is not even looked up.
    code(&relay_try(&h, &pki, Some(&pki.rogue_client)).await, "550");
    code(&relay_try(&h, &pki, None).await, "550");
    assert_eq!(h.seen.lock().unwrap().cert_checks.len(), 1);
    h.stop().await;
}

#[tokio::test]
async fn sessions_are_resumed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_d, pki, h) = setup(true).await;
    let conn = pki::connector(&pki.ca.cert, None);
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let tcp = pki::tcp(h.addr).await;
        let mut t = pki::tls_connect(&conn, HOST, Box::new(tcp)).await.unwrap();
        let mut buf = [0u8; 512];
        let n = t.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"220 "));
        t.write_all(b"QUIT\r\n").await.unwrap();
        let n = t.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"221 "));
        kinds.push(t.get_ref().1.handshake_kind());
    }
    assert_eq!(
        kinds,
        [
            Some(rustls::HandshakeKind::Full),
            Some(rustls::HandshakeKind::Resumed)
        ]
    );
    h.stop().await;
}
