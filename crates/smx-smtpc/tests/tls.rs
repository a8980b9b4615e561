//! STARTTLS against a small rustls SMTP server written here: opportunistic
//! TLS, the retry in clear after a failed handshake, the injection of
//! replies after the 220, client certificates, and each TLS requirement
//! (from the configuration and from the delivery) against good, expired,
//! wrong-name and self-signed certificates made by rcgen, each
//! `requirements_violation`, and the idle session cache's respect for the
//! requirements.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::tls_peer::*;
use smx_ipc::qmgr_smtpc::RecipientStatus::*;
use smx_ipc::qmgr_smtpc::{
    RequirementsViolation as Violation, TlsRequirements as IpcTlsRequirements,
};
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
        common_name: vec![v.into()],
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

// ---- requirements given through the delivery (smtpc_rcpt_conf:) ----

fn ipc(f: impl FnOnce(&mut IpcTlsRequirements)) -> Option<IpcTlsRequirements> {
    let mut r = IpcTlsRequirements::default();
    f(&mut r);
    Some(r)
}

#[tokio::test]
async fn delivery_requirements_against_each_certificate() {
    let pki = pki();
    let certs = [
        ("good", &pki.good),
        ("expired", &pki.expired),
        ("wrong_name", &pki.wrong_name),
        ("self_signed", &pki.self_signed),
    ];
    // (requirement, delivered for good, expired, wrong_name, self_signed)
    let table: Vec<(&str, Option<IpcTlsRequirements>, [bool; 4])> = vec![
        (
            "verified",
            ipc(|r| r.verified = true),
            [true, false, false, false],
        ),
        (
            "common_name",
            ipc(|r| r.common_name = Some(HOST.into())),
            [true, true, false, true],
        ),
        (
            "cert_subject",
            Some(from_map(
                r#"tls_requirements { cert_subject="/CN=MX.test.example"; }"#,
            )),
            [true, true, false, true],
        ),
        (
            "cert_issuer (seed +XX form)",
            Some(from_map(
                r#"tls_requirements { cert_issuer="/CN=smtpc+20test+20CA"; }"#,
            )),
            [true, true, true, false],
        ),
        (
            "cert_issuer of another CA",
            ipc(|r| r.cert_issuer = Some("/CN=another CA".into())),
            [false, false, false, false],
        ),
        (
            "min_cipher_bits 128",
            ipc(|r| r.min_cipher_bits = 128),
            [true, true, true, true],
        ),
        (
            "min_cipher_bits 512",
            ipc(|r| r.min_cipher_bits = 512),
            [false, false, false, false],
        ),
        (
            "encrypted",
            Some(from_map("tls_requirements { flags = { encrypted }; }")),
            [true, true, true, true],
        ),
    ];
    for (what, req, want) in &table {
        for ((name, cert), want) in certs.iter().zip(want) {
            let p = peer(opts(Some(cert))).await;
            let mut store = common::Store::new();
            let d = common::deliverer(
                &store,
                smx_smtpc::ClientConfig {
                    reuse_connection: false,
                    ..client(&pki, false, TlsRequirements::default())
                },
            );
            let r = deliver_with(&d, &mut store, &[&p], req.clone()).await;
            let conns = ended(&p, 1).await;
            if *want {
                assert_eq!(r.status, Delivered, "{what} / {name}: {}", r.reply);
            } else {
                assert_eq!(r.status, TempFail, "{what} / {name}: {}", r.reply);
                assert_eq!(r.reply.code, 451, "{what} / {name}: {}", r.reply);
                assert!(r.reply.to_string().contains("4.7.5"), "{}", r.reply);
            }
            assert_eq!(
                conns.iter().any(|c| c.delivered),
                *want,
                "{what} / {name}: {conns:?}"
            );
            assert!(conns.iter().all(|c| c.tls), "{what} / {name}: {conns:?}");
        }
    }
}

#[tokio::test]
async fn encrypted_requirement_refuses_clear_text() {
    let pki = pki();
    let req = ipc(|r| r.encrypted = true);
    // STARTTLS not offered.
    let p = peer(opts(None)).await;
    let mut store = common::Store::new();
    let d = common::deliverer(&store, client(&pki, false, TlsRequirements::default()));
    let r = deliver_with(&d, &mut store, &[&p], req.clone()).await;
    assert_eq!(r.status, TempFail, "{}", r.reply);
    assert!(ended(&p, 1).await.iter().all(|c| !c.delivered));
    // A broken handshake is not followed by a clear-text connection.
    let p = peer(Opts {
        break_handshake: true,
        ..opts(Some(&pki.good))
    })
    .await;
    let r = deliver_with(&d, &mut store, &[&p], req.clone()).await;
    assert_eq!(r.status, TempFail, "{}", r.reply);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(p.accepted(), 1);
    // No TLS configured at all.
    let p = peer(opts(Some(&pki.good))).await;
    let d = common::deliverer(
        &store,
        smx_smtpc::ClientConfig {
            tls: None,
            ..common::config()
        },
    );
    let r = deliver_with(&d, &mut store, &[&p], req).await;
    assert_eq!(r.status, TempFail, "{}", r.reply);
    assert!(ended(&p, 1).await.iter().all(|c| !c.delivered && !c.tls));
    // Without requirements the same client delivers in clear.
    let p = peer(opts(Some(&pki.good))).await;
    let r = deliver_with(&d, &mut store, &[&p], None).await;
    assert_eq!(r.status, Delivered, "{}", r.reply);
}

#[tokio::test]
async fn each_requirements_violation() {
    let pki = pki();
    // The first target's certificate names another host; the second's is
    // good.
    let cn = |v: Option<Violation>| {
        ipc(|r| {
            r.common_name = Some(HOST.into());
            r.violation = v;
        })
    };
    let cfg = || smx_smtpc::ClientConfig {
        reuse_connection: false,
        ..client(&pki, false, TlsRequirements::default())
    };

    for v in [None, Some(Violation::TempFail)] {
        let (bad, good) = (
            peer(opts(Some(&pki.wrong_name))).await,
            peer(opts(Some(&pki.good))).await,
        );
        let mut store = common::Store::new();
        let d = common::deliverer(&store, cfg());
        let r = deliver_with(&d, &mut store, &[&bad, &good], cn(v)).await;
        // tempfail: the next target is tried, and it meets them.
        assert_eq!(r.status, Delivered, "{v:?}: {}", r.reply);
        let c = ended(&bad, 1).await;
        assert!(c[0].tls && !c[0].delivered && c[0].quit, "{c:?}");
        // Only target: a temporary failure.
        let bad = peer(opts(Some(&pki.wrong_name))).await;
        let r = deliver_with(&d, &mut store, &[&bad], cn(v)).await;
        assert_eq!(r.status, TempFail);
        assert_eq!(r.reply.code, 451);
        assert!(
            r.reply
                .to_string()
                .contains("4.7.5 TLS requirements not met")
        );
        assert!(r.host.is_some());
    }

    // permfail: permanent, the next target is not tried.
    let (bad, good) = (
        peer(opts(Some(&pki.wrong_name))).await,
        peer(opts(Some(&pki.good))).await,
    );
    let mut store = common::Store::new();
    let d = common::deliverer(&store, cfg());
    let r = deliver_with(
        &d,
        &mut store,
        &[&bad, &good],
        cn(Some(Violation::PermFail)),
    )
    .await;
    assert_eq!(r.status, PermFail, "{}", r.reply);
    assert_eq!(r.reply.code, 550);
    assert!(r.reply.to_string().contains("5.7.5"), "{}", r.reply);
    let c = ended(&bad, 1).await;
    assert!(c[0].quit && !c[0].delivered, "{c:?}");
    assert_eq!(good.accepted(), 0);

    // abort: temporary, the session is dropped without QUIT, the next
    // target is not tried.
    let (bad, good) = (
        peer(opts(Some(&pki.wrong_name))).await,
        peer(opts(Some(&pki.good))).await,
    );
    let r = deliver_with(&d, &mut store, &[&bad, &good], cn(Some(Violation::Abort))).await;
    assert_eq!(r.status, TempFail, "{}", r.reply);
    assert_eq!(r.reply.code, 421);
    assert!(r.reply.to_string().contains("4.7.5"), "{}", r.reply);
    let c = ended(&bad, 1).await;
    assert!(c[0].tls && !c[0].quit && !c[0].delivered, "{c:?}");
    assert_eq!(good.accepted(), 0);

    // The configuration's violation applies when the delivery has none;
    // the delivery's wins over it.
    let global = TlsRequirements {
        violation: Some(Violation::PermFail),
        ..TlsRequirements::default()
    };
    let d = common::deliverer(
        &store,
        smx_smtpc::ClientConfig {
            reuse_connection: false,
            ..client(&pki, false, global)
        },
    );
    let bad = peer(opts(Some(&pki.wrong_name))).await;
    let r = deliver_with(&d, &mut store, &[&bad], cn(None)).await;
    assert_eq!(r.status, PermFail, "{}", r.reply);
    let bad = peer(opts(Some(&pki.wrong_name))).await;
    let r = deliver_with(&d, &mut store, &[&bad], cn(Some(Violation::TempFail))).await;
    assert_eq!(r.status, TempFail, "{}", r.reply);
}

#[tokio::test]
async fn global_and_delivery_requirements_both_hold() {
    let pki = pki();
    let global = TlsRequirements {
        common_name: vec![HOST.into()],
        ..TlsRequirements::default()
    };
    let mut store = common::Store::new();
    let d = common::deliverer(
        &store,
        smx_smtpc::ClientConfig {
            reuse_connection: false,
            ..client(&pki, false, global)
        },
    );
    // The expired certificate has the right name but does not verify.
    let p = peer(opts(Some(&pki.expired))).await;
    let r = deliver_with(&d, &mut store, &[&p], None).await;
    assert_eq!(r.status, Delivered, "{}", r.reply);
    let p = peer(opts(Some(&pki.expired))).await;
    let r = deliver_with(&d, &mut store, &[&p], ipc(|r| r.verified = true)).await;
    assert_eq!(r.status, TempFail, "{}", r.reply);
    // A delivery naming another CN cannot loosen the configuration's.
    let p = peer(opts(Some(&pki.wrong_name))).await;
    let r = deliver_with(
        &d,
        &mut store,
        &[&p],
        ipc(|r| r.common_name = Some("other.example".into())),
    )
    .await;
    assert_eq!(r.status, TempFail, "{}", r.reply);
}

#[tokio::test]
async fn idle_sessions_are_reused_only_when_they_meet_the_requirements() {
    let pki = pki();
    let mut store = common::Store::new();
    let d = common::deliverer(
        &store,
        smx_smtpc::ClientConfig {
            reuse_connection: true,
            ..client(&pki, false, TlsRequirements::default())
        },
    );
    // A self-signed certificate: opportunistic TLS, the session is cached.
    let p = peer(opts(Some(&pki.self_signed))).await;
    let r = deliver_with(&d, &mut store, &[&p], None).await;
    assert_eq!(r.status, Delivered);
    assert_eq!((p.accepted(), d.idle_sessions()), (1, 1));
    // A delivery that needs a verified certificate does not take it: a new
    // session is opened (and fails); the cached one stays.
    let r = deliver_with(&d, &mut store, &[&p], ipc(|r| r.verified = true)).await;
    assert_eq!(r.status, TempFail, "{}", r.reply);
    assert_eq!((p.accepted(), d.idle_sessions()), (2, 1));
    // A requirement the cached session meets: it is reused.
    let r = deliver_with(
        &d,
        &mut store,
        &[&p],
        ipc(|r| r.common_name = Some(HOST.into())),
    )
    .await;
    assert_eq!(r.status, Delivered, "{}", r.reply);
    assert_eq!((p.accepted(), d.idle_sessions()), (2, 1));

    // A session in clear text is not reused for a delivery that requires
    // encryption.
    let clear = peer(opts(None)).await;
    let r = deliver_with(&d, &mut store, &[&clear], None).await;
    assert_eq!(r.status, Delivered);
    assert_eq!(clear.accepted(), 1);
    let r = deliver_with(&d, &mut store, &[&clear], ipc(|r| r.encrypted = true)).await;
    assert_eq!(r.status, TempFail, "{}", r.reply);
    assert_eq!(clear.accepted(), 2);
    assert!(
        clear.conns.lock().unwrap().iter().all(|c| !c.tls),
        "the clear session was not used for the encrypted delivery"
    );
    d.close_idle().await;
}

/// Requirements of a target (qmgr's `smtpc_session_conf:` for its address)
/// hold for sessions with that target only: a self-signed first target that
/// must be verified is skipped (temporary violation), the second target
/// without requirements gets the message; with the requirement on both,
/// nothing is delivered; with none, the first target takes it.
#[tokio::test]
async fn target_requirements_apply_to_their_target() {
    let pki = pki();
    let run = |first: bool, second: bool| {
        let pki = &pki;
        async move {
            let a = peer(opts(Some(&pki.self_signed))).await;
            let b = peer(opts(Some(&pki.self_signed))).await;
            let mut store = common::Store::new();
            let d = common::deliverer(
                &store,
                smx_smtpc::ClientConfig {
                    reuse_connection: false,
                    ..client(pki, false, TlsRequirements::default())
                },
            );
            let c = store.put(&common::message(2000));
            let mut targets = vec![a.target(), b.target()];
            targets[0].tls_requirements = ipc(|r| r.verified = true).filter(|_| first);
            targets[1].tls_requirements = ipc(|r| r.verified = true).filter(|_| second);
            let dest = smx_ipc::qmgr_smtpc::Destination::Hosts {
                protocol: smx_ipc::qmgr_smtpc::Protocol::Esmtp,
                targets,
            };
            let request = common::delivery(c, "s@example.org", "", &[("r@example.org", "")], dest);
            let r = d.deliver(&request).await.recipients.remove(0);
            let delivered =
                |p: &common::tls_peer::Peer| p.conns.lock().unwrap().iter().any(|c| c.delivered);
            tokio::time::sleep(Duration::from_millis(100)).await;
            (r, delivered(&a), delivered(&b))
        }
    };
    let (r, a, b) = run(true, false).await;
    assert_eq!(r.status, Delivered, "{}", r.reply);
    assert!(!a && b);
    let (r, a, b) = run(true, true).await;
    assert_eq!(r.status, TempFail, "{}", r.reply);
    assert!(r.reply.to_string().contains("4.7.5"), "{}", r.reply);
    assert!(!a && !b);
    let (r, a, b) = run(false, false).await;
    assert_eq!(r.status, Delivered, "{}", r.reply);
    assert!(a && !b);
}
