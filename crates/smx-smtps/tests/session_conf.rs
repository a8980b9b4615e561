//! Per-session configuration from the access map (`smtps_session_conf:`,
//! seed 3.10.1) through the scripted smar: `session_features` classes
//! that change the session's flags, and `tls_requirements` checked at
//! MAIL with each `requirements_violation`, against client certificates
//! made by rcgen.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::IpAddr;

use common::pki::{self, Pem, Pki};
use common::{Client, Harness, QmgrScript, code};
use smx_conf::model::smtps::{RequirementsViolation, SmtpsConfig, SmtpsTls};

const HOST: &str = "mx.test.example";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// An smtps section with `lookup_session_conf` on (unless `lookup` is
/// false), the given extra text, and TLS with the test PKI.
fn conf(pki: &Pki, lookup: bool, extra: &str) -> SmtpsConfig {
    let flags = if lookup {
        "flags = { lookup_session_conf };"
    } else {
        ""
    };
    let text = format!("smtps {{ {flags} {extra} }}");
    let c = smx_conf::load_str("test", &text).unwrap();
    let mut s = c.smtps.iter().next().unwrap().body.clone();
    let mut t = SmtpsTls::default();
    t.files.cert_file = Some(pki.server.cert.clone());
    t.files.key_file = Some(pki.server.key.clone());
    t.files.ca_cert_file = Some(pki.ca.cert.clone());
    s.tls = Some(t);
    s.io_timeout = smx_conf::value::Time::secs(10);
    s
}

/// Starts the server with these `smtps_session_conf:` entries.
async fn start(cfg: SmtpsConfig, entries: &[(&str, &str)]) -> Harness {
    let h = Harness::start(cfg, QmgrScript::default()).await;
    h.seen
        .lock()
        .unwrap()
        .session_confs
        .extend(entries.iter().map(|(a, v)| (ip(a), v.to_string())));
    h
}

/// Connects from `from`, reads the greeting, says EHLO; returns the
/// client and the EHLO reply.
async fn hello(h: &Harness, from: &str) -> (Client, String) {
    let mut c = Client::connect_from(h.addr, ip(from)).await;
    code(&c.reply().await, "220 mx.test.example");
    let ehlo = c.cmd("EHLO client.example").await;
    code(&ehlo, "250");
    (c, ehlo)
}

/// Connects from `from` and starts TLS, presenting `cert`; EHLO again.
async fn tls_from(h: &Harness, pki: &Pki, from: &str, cert: Option<&Pem>) -> Client {
    let (mut c, ehlo) = hello(h, from).await;
    assert!(ehlo.contains("250-STARTTLS\r\n"), "{ehlo}");
    code(&c.cmd("STARTTLS").await, "220 2.0.0");
    let conn = pki::connector(&pki.ca.cert, cert);
    let (mut c, rest) = c
        .upgrade(|s| async move {
            let t = pki::tls_connect(&conn, HOST, s).await.unwrap();
            Box::new(t) as Box<dyn common::Io>
        })
        .await;
    assert!(rest.is_empty());
    code(&c.cmd("EHLO client.example").await, "250");
    c
}

async fn message(c: &mut Client) {
    code(&c.cmd("RCPT TO:<r@local.example>").await, "250");
    code(&c.cmd("DATA").await, "354");
    c.send(b"Subject: t\r\n\r\nbody\r\n.\r\n").await;
    code(&c.reply().await, "250 2.0.0");
}

#[tokio::test]
async fn notls_class_hides_starttls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::make(dir.path(), HOST);
    let cfg = conf(
        &pki,
        true,
        "session_features notls { flags = { -starttls } }
         session_features relaxed { flags = { -require_EHLO_before_MAIL } }",
    );
    let h = start(
        cfg,
        &[
            ("127.0.0.2", "session_feature=notls;"),
            ("127.0.0.3", "session_feature = NoSuchClass;"),
            ("127.0.0.4", "tls_requirements { flags = { bogus } }"),
            ("127.0.0.5", "session_feature=relaxed # no EHLO needed"),
        ],
    )
    .await;

    // No entry: STARTTLS is offered.
    let (mut c, ehlo) = hello(&h, "127.0.0.1").await;
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    code(&c.cmd("QUIT").await, "221");

    // notls: not offered, and refused when asked for.
    let (mut c, ehlo) = hello(&h, "127.0.0.2").await;
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    code(&c.cmd("STARTTLS").await, "502 5.5.1");
    // Nothing else changed: the session delivers.
    code(&c.cmd("MAIL FROM:<s@client.example>").await, "250");
    message(&mut c).await;
    code(&c.cmd("QUIT").await, "221");

    // An unknown class or a value that does not parse: the server's
    // settings, never a refusal.
    for from in ["127.0.0.3", "127.0.0.4"] {
        let (mut c, ehlo) = hello(&h, from).await;
        assert!(ehlo.contains("STARTTLS"), "{from}: {ehlo}");
        code(&c.cmd("MAIL FROM:<s@client.example>").await, "250");
        code(&c.cmd("QUIT").await, "221");
    }

    // relaxed: MAIL without EHLO; the default session still needs it.
    let mut c = Client::connect_from(h.addr, ip("127.0.0.5")).await;
    code(&c.reply().await, "220");
    code(&c.cmd("MAIL FROM:<s@client.example>").await, "250");
    code(&c.cmd("QUIT").await, "221");
    let mut c = Client::connect_from(h.addr, ip("127.0.0.1")).await;
    code(&c.reply().await, "220");
    code(&c.cmd("MAIL FROM:<s@client.example>").await, "503 5.5.1");
    code(&c.cmd("QUIT").await, "221");

    assert_eq!(h.seen.lock().unwrap().session_conf_lookups, 6);
    h.stop().await;
}

#[tokio::test]
async fn no_lookup_without_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::make(dir.path(), HOST);
    let cfg = conf(
        &pki,
        false,
        "session_features notls { flags = { -starttls } }",
    );
    let h = start(cfg, &[("127.0.0.2", "session_feature=notls;")]).await;
    let (mut c, ehlo) = hello(&h, "127.0.0.2").await;
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    code(&c.cmd("QUIT").await, "221");
    assert_eq!(h.seen.lock().unwrap().session_conf_lookups, 0);
    h.stop().await;
}

#[tokio::test]
async fn verified_requirement() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::make(dir.path(), HOST);
    let h = start(
        conf(&pki, true, ""),
        &[(
            "127.0.0.2",
            "tls_requirements { flags = { verified }; requirements_violation = permfail; }",
        )],
    )
    .await;
    // Without TLS.
    let (mut c, _) = hello(&h, "127.0.0.2").await;
    let r = c.cmd("MAIL FROM:<s@client.example>").await;
    code(&r, "530 5.7.0");
    assert!(r.contains("TLS requirements not met"), "{r}");
    // The session goes on: STARTTLS is still possible.
    code(&c.cmd("NOOP").await, "250");
    code(&c.cmd("QUIT").await, "221");
    // TLS without a certificate, with a self-signed one, with a good one.
    for (cert, want) in [
        (None, "530 5.7.0"),
        (Some(&pki.rogue_client), "530 5.7.0"),
        (Some(&pki.client), "250"),
    ] {
        let mut c = tls_from(&h, &pki, "127.0.0.2", cert).await;
        code(&c.cmd("MAIL FROM:<s@client.example>").await, want);
        if want == "250" {
            message(&mut c).await;
        }
        code(&c.cmd("QUIT").await, "221");
    }
    // Another client without an entry needs nothing.
    let (mut c, _) = hello(&h, "127.0.0.1").await;
    code(&c.cmd("MAIL FROM:<s@client.example>").await, "250");
    code(&c.cmd("QUIT").await, "221");
    assert_eq!(h.envelopes().len(), 1);
    h.stop().await;
}

#[tokio::test]
async fn common_name_and_cert_issuer_requirements() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::make(dir.path(), HOST);
    let h = start(
        conf(&pki, true, ""),
        &[
            ("127.0.0.2", "tls_requirements { common_name = client.example; }"),
            ("127.0.0.3", "tls_requirements { common_name = other.example; }"),
            // The seed's +XX encoding of the DN, in another case.
            (
                "127.0.0.4",
                r#"tls_requirements { cert_issuer = "/CN=SMX+20test+20CA/O=smx+20test"; }"#,
            ),
            (
                "127.0.0.5",
                r#"tls_requirements { cert_issuer = "/CN=another CA"; }"#,
            ),
            (
                "127.0.0.6",
                r#"tls_requirements { cert_subject = "/CN=client.example/O=smx test"; min_cipher_bits = 128; flags = { encrypted } }"#,
            ),
        ],
    )
    .await;
    for (from, cert, want) in [
        ("127.0.0.2", &pki.client, "250"),
        ("127.0.0.2", &pki.rogue_client, "454 4.7.0"),
        ("127.0.0.3", &pki.client, "454 4.7.0"),
        ("127.0.0.4", &pki.client, "250"),
        ("127.0.0.4", &pki.rogue_client, "454 4.7.0"),
        ("127.0.0.5", &pki.client, "454 4.7.0"),
        ("127.0.0.6", &pki.client, "250"),
        ("127.0.0.6", &pki.rogue_client, "454 4.7.0"),
    ] {
        let mut c = tls_from(&h, &pki, from, Some(cert)).await;
        let r = c.cmd("MAIL FROM:<s@client.example>").await;
        assert!(r.starts_with(want), "{from} {}: {r}", cert.cert.display());
        code(&c.cmd("QUIT").await, "221");
    }
    // Without TLS every one of them is refused.
    for from in ["127.0.0.2", "127.0.0.4", "127.0.0.6"] {
        let (mut c, _) = hello(&h, from).await;
        code(&c.cmd("MAIL FROM:<s@client.example>").await, "454 4.7.0");
        code(&c.cmd("QUIT").await, "221");
    }
    h.stop().await;
}

#[tokio::test]
async fn each_requirements_violation() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::make(dir.path(), HOST);
    let req = |v: &str| format!("tls_requirements {{ flags = {{ verified }}; {v} }}");
    let (perm, temp, abort) = (
        req("requirements_violation = permfail;"),
        req("requirements_violation = tempfail;"),
        req("requirements_violation = abort;"),
    );
    let none = req("");
    let h = start(
        conf(&pki, true, ""),
        &[
            ("127.0.0.2", perm.as_str()),
            ("127.0.0.3", temp.as_str()),
            ("127.0.0.4", abort.as_str()),
            ("127.0.0.5", none.as_str()),
        ],
    )
    .await;
    let (mut c, _) = hello(&h, "127.0.0.2").await;
    code(&c.cmd("MAIL FROM:<s@client.example>").await, "530 5.7.0");
    code(&c.cmd("QUIT").await, "221");
    let (mut c, _) = hello(&h, "127.0.0.3").await;
    code(&c.cmd("MAIL FROM:<s@client.example>").await, "454 4.7.0");
    code(&c.cmd("QUIT").await, "221");
    // abort: 421 and the connection is closed.
    let (mut c, _) = hello(&h, "127.0.0.4").await;
    let r = c.cmd("MAIL FROM:<s@client.example>").await;
    code(&r, "421 4.7.0 mx.test.example TLS requirements not met");
    assert!(c.closed().await);
    // The entry says nothing: the tls section's (default tempfail).
    let (mut c, _) = hello(&h, "127.0.0.5").await;
    code(&c.cmd("MAIL FROM:<s@client.example>").await, "454 4.7.0");
    code(&c.cmd("QUIT").await, "221");
    h.stop().await;

    // With tls { requirements_violation = permfail; } the same entry
    // fails permanently.
    let mut cfg = conf(&pki, true, "");
    if let Some(t) = cfg.tls.as_mut() {
        t.requirements_violation = RequirementsViolation::PermFail;
    }
    let h = start(cfg, &[("127.0.0.5", none.as_str())]).await;
    let (mut c, _) = hello(&h, "127.0.0.5").await;
    code(&c.cmd("MAIL FROM:<s@client.example>").await, "530 5.7.0");
    code(&c.cmd("QUIT").await, "221");
    h.stop().await;
}
