//! The STARTTLS log lines (`where=connection, starttls=successful` or the
//! failure reason) through smx-log installed as the global subscriber: its
//! own test binary.
#![allow(clippy::unwrap_used)]

mod common;

use common::tls_peer::*;
use smx_ipc::qmgr_smtpc::RecipientStatus::*;
use smx_smtpc::tls::TlsRequirements;

#[tokio::test]
async fn starttls_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("smtpc.log");
    smx_log::init(&smx_log::LogSettings {
        component: "smtpc".into(),
        level: 9,
        destination: smx_log::Destination::File(log.clone()),
    })
    .unwrap();
    let pki = pki();
    let p = peer(opts(Some(&pki.good))).await;
    let (status, _) = deliver(&p, client(&pki, false, TlsRequirements::default())).await;
    assert_eq!(status, Delivered);
    let p = peer(Opts {
        break_handshake: true,
        ..opts(Some(&pki.good))
    })
    .await;
    let (status, _) = deliver(&p, client(&pki, false, TlsRequirements::default())).await;
    assert_eq!(status, Delivered);
    let p = peer(opts(Some(&pki.expired))).await;
    let (status, _) = deliver(&p, client(&pki, false, verified())).await;
    assert_eq!(status, TempFail);
    let text = std::fs::read_to_string(&log).unwrap();
    let has = |parts: &[&str]| text.lines().any(|l| parts.iter().all(|p| l.contains(p)));
    assert!(
        has(&[
            "where=connection",
            "starttls=successful",
            "version=TLSv1.3",
            "verified=true",
            "cn=mx.test.example"
        ]),
        "{text}"
    );
    assert!(
        has(&[
            "where=connection",
            "starttls=failed: handshake",
            "retry without STARTTLS"
        ]),
        "{text}"
    );
    assert!(
        has(&["tls_requirements=certificate not verified"]),
        "{text}"
    );
}
