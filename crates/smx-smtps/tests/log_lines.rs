//! The TLS and AUTH log lines through smx-log installed as the global
//! subscriber: its own test binary.
#![allow(clippy::unwrap_used)]

mod common;

use base64::Engine as _;
use common::pki;
use common::{Harness, QmgrScript, code, config};
use smx_conf::model::smtps::{AuthConfig, SmtpsConfig, SmtpsTls};

const HOST: &str = "mx.test.example";

#[tokio::test]
async fn starttls_and_auth_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("smtps.log");
    smx_log::init(&smx_log::LogSettings {
        component: "smtps".into(),
        level: 9,
        destination: smx_log::Destination::File(log.clone()),
    })
    .unwrap();
    let pki = pki::make(dir.path(), HOST);
    let passwd = dir.path().join("passwd");
    std::fs::write(&passwd, "alice:{PLAIN}wonderland\n").unwrap();
    let mut t = SmtpsTls::default();
    t.files.cert_file = Some(pki.server.cert.clone());
    t.files.key_file = Some(pki.server.key.clone());
    t.files.ca_cert_file = Some(pki.ca.cert.clone());
    let cfg = SmtpsConfig {
        tls: Some(t),
        auth: Some(AuthConfig {
            password_file: Some(passwd),
            ..AuthConfig::default()
        }),
        ..config()
    };
    let h = Harness::start(cfg, QmgrScript::default()).await;

    let mut c = h.client().await;
    code(&c.reply().await, "220");
    code(&c.cmd("EHLO client.example").await, "250");
    code(&c.cmd("STARTTLS").await, "220");
    let conn = pki::connector(&pki.ca.cert, Some(&pki.client));
    let (mut c, _) = c
        .upgrade(|s| async move {
            Box::new(pki::tls_connect(&conn, HOST, s).await.unwrap()) as Box<dyn common::Io>
        })
        .await;
    code(&c.cmd("EHLO client.example").await, "250");
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    code(
        &c.cmd(&format!("AUTH PLAIN {}", b64("\0alice\0nope"))).await,
        "535",
    );
    code(
        &c.cmd(&format!("AUTH PLAIN {}", b64("\0alice\0wonderland")))
            .await,
        "235",
    );
    code(&c.cmd("QUIT").await, "221");

    let mut c = h.client().await;
    code(&c.reply().await, "220");
    code(&c.cmd("EHLO client.example").await, "250");
    code(&c.cmd("STARTTLS").await, "220");
    c.send(b"not a ClientHello\r\n").await;
    assert!(c.closed().await);
    h.stop().await;

    let text = std::fs::read_to_string(&log).unwrap();
    let has = |parts: &[&str]| text.lines().any(|l| parts.iter().all(|p| l.contains(p)));
    assert!(
        has(&[
            "ss_sess=",
            "where=connection",
            "starttls=successful",
            "version=TLSv1.3",
            "verify=OK",
            "cert_subject=/CN=client.example/O=smx test",
            "cert_issuer=/CN=smx test CA/O=smx test",
        ]),
        "{text}"
    );
    assert!(has(&["where=connection", "starttls=failed: "]), "{text}");
    assert!(
        has(&["mech=PLAIN", "stat=wrong password", "authentication failed"]),
        "{text}"
    );
    assert!(
        has(&["auth=alice", "mech=PLAIN", "relay=true", "authenticated"]),
        "{text}"
    );
    assert!(
        !text.contains("wonderland") && !text.contains("nope"),
        "{text}"
    );
}
