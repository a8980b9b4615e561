//! STARTTLS against a small rustls SMTP server written here: opportunistic
//! TLS, the retry in clear after a failed handshake, the injection of
//! replies after the 220, client certificates, and each TLS requirement
//! against good, expired, wrong-name and self-signed certificates made by
//! rcgen.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::tls_peer::*;
use smx_ipc::qmgr_smtpc::RecipientStatus::*;
use smx_smtpc::tls::TlsRequirements;

#[tokio::test]
async fn opportunistic_starttls_whatever_the_certificate() {
    let pki = pki();
    for cert in [&pki.good, &pki.expired, &pki.wrong_name, &pki.self_signed] {
        let p = peer(opts(Some(cert))).await;
        let (status, conns) = deliver(&p, client(&pki, false, TlsRequirements::default())).await;
        assert_eq!(status, Delivered);
        assert_eq!(conns.len(), 1);
        assert!(conns[0].tls && conns[0].delivered, "{conns:?}");
    }
}

#[tokio::test]
async fn verified_requirement() {
    let pki = pki();
    let p = peer(opts(Some(&pki.good))).await;
    let (status, conns) = deliver(&p, client(&pki, false, verified())).await;
    assert_eq!(status, Delivered);
    assert!(conns[0].tls && conns[0].delivered);
    for bad in [&pki.expired, &pki.wrong_name, &pki.self_signed] {
        let p = peer(opts(Some(bad))).await;
        let (status, conns) = deliver(&p, client(&pki, false, verified())).await;
        assert_eq!(status, TempFail);
        assert!(conns.iter().all(|c| !c.delivered), "{conns:?}");
    }
}

#[tokio::test]
async fn common_name_and_cipher_bits_requirements() {
    let pki = pki();
    let cn = |v: &str| TlsRequirements {
        common_name: Some(v.into()),
        ..TlsRequirements::default()
    };
    let bits = |b: u32| TlsRequirements {
        min_cipher_bits: b,
        ..TlsRequirements::default()
    };
    for (cert, req, want) in [
        (&pki.good, cn(HOST), Delivered),
        (&pki.self_signed, cn(HOST), Delivered),
        (&pki.wrong_name, cn(HOST), TempFail),
        (&pki.expired, cn(HOST), Delivered),
        (&pki.good, bits(128), Delivered),
        (&pki.good, bits(512), TempFail),
    ] {
        let p = peer(opts(Some(cert))).await;
        let (status, conns) = deliver(&p, client(&pki, false, req.clone())).await;
        assert_eq!(status, want, "{req:?} {conns:?}");
        assert_eq!(conns.iter().any(|c| c.delivered), want == Delivered);
    }
}

#[tokio::test]
async fn failed_handshake_is_retried_in_clear() {
    let pki = pki();
    let p = peer(Opts {
        break_handshake: true,
        ..opts(Some(&pki.good))
    })
    .await;
    let (status, _) = deliver(&p, client(&pki, false, TlsRequirements::default())).await;
    assert_eq!(status, Delivered);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let conns = p.conns.lock().unwrap().clone();
    assert_eq!(conns.len(), 2, "{conns:?}");
    assert!(conns.iter().any(|c| c.delivered && !c.tls));
}

#[tokio::test]
async fn failed_handshake_with_requirements_is_not_retried_in_clear() {
    let pki = pki();
    let p = peer(Opts {
        break_handshake: true,
        ..opts(Some(&pki.good))
    })
    .await;
    let (status, conns) = deliver(&p, client(&pki, false, verified())).await;
    assert_eq!(status, TempFail);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(conns.iter().all(|c| !c.delivered));
    assert_eq!(p.conns.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn replies_injected_after_the_220_are_not_trusted() {
    let pki = pki();
    let p = peer(Opts {
        inject: true,
        ..opts(Some(&pki.good))
    })
    .await;
    let (status, _) = deliver(&p, client(&pki, false, TlsRequirements::default())).await;
    assert_eq!(status, Delivered);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let conns = p.conns.lock().unwrap().clone();
    assert_eq!(conns.len(), 2, "{conns:?}");
    assert!(conns.iter().all(|c| !c.tls));
}

#[tokio::test]
async fn starttls_not_offered() {
    let pki = pki();
    let p = peer(opts(None)).await;
    let (status, conns) = deliver(&p, client(&pki, false, TlsRequirements::default())).await;
    assert_eq!(status, Delivered);
    assert!(!conns[0].tls);
    let p = peer(opts(None)).await;
    let (status, conns) = deliver(&p, client(&pki, false, verified())).await;
    assert_eq!(status, TempFail);
    assert!(!conns[0].delivered);
}

#[tokio::test]
async fn client_certificate() {
    let pki = pki();
    let p = peer(Opts {
        client_ca: Some(pki.ca.clone()),
        ..opts(Some(&pki.good))
    })
    .await;
    let (status, conns) = deliver(&p, client(&pki, true, verified())).await;
    assert_eq!(status, Delivered);
    assert!(conns[0].tls && conns[0].client_cert, "{conns:?}");
    let p = peer(Opts {
        client_ca: Some(pki.ca.clone()),
        ..opts(Some(&pki.good))
    })
    .await;
    let (_, conns) = deliver(&p, client(&pki, false, verified())).await;
    assert!(conns[0].tls && !conns[0].client_cert, "{conns:?}");
}
