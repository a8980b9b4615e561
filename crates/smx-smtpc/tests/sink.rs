//! Delivery into Postfix's smtp-sink: plain, without PIPELINING, without
//! ESMTP, and with injected 4xx/5xx replies and disconnects.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use smx_ipc::qmgr_smtpc::RecipientStatus::*;

const RCPTS: &[(&str, &str)] = &[("a@example.org", ""), ("b@example.org", "NOTIFY=SUCCESS")];

#[tokio::test]
async fn plain_sink_takes_the_message_and_the_dump_has_it() {
    let mut store = Store::new();
    let dump = tempfile::tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dump.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let template = format!("{}/msg", dump.path().display());
    let sink = Sink::start(&["-d", &template]);
    let mut msg = message(10_000);
    msg.extend_from_slice(b"UNIQUE-MARKER-4711\r\n.\r\n..\r\nend\r\n");
    let c = store.put(&msg);
    let d = deliverer(&store, config());
    let r = d
        .deliver(&delivery(
            c,
            "s@example.org",
            "BODY=8BITMIME RET=FULL",
            RCPTS,
            tcp(sink.addr, false),
        ))
        .await;
    assert_eq!(statuses(&r), vec![Delivered, Delivered]);
    for x in &r.recipients {
        assert_eq!(x.reply.code, 250);
        assert!(
            x.host
                .as_deref()
                .unwrap()
                .contains(&sink.addr.port().to_string())
        );
        // smtp-sink offers DSN: not relayed.
        assert!(!x.relayed);
    }
    // The dump file holds the content, dot-stuffing undone.
    let start = std::time::Instant::now();
    let mut found = None;
    while found.is_none() && start.elapsed() < Duration::from_secs(5) {
        for e in std::fs::read_dir(dump.path()).unwrap() {
            let data = std::fs::read(e.unwrap().path()).unwrap();
            if data.windows(18).any(|w| w == b"UNIQUE-MARKER-4711") {
                found = Some(data);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let data = found.expect("dump file with the message");
    let needle = b"UNIQUE-MARKER-4711\r\n.\r\n..\r\nend\r\n";
    let text = String::from_utf8_lossy(&data).replace("\r\n", "\n");
    let needle = String::from_utf8_lossy(needle).replace("\r\n", "\n");
    assert!(text.contains(&needle), "{text}");
}

#[tokio::test]
async fn sink_without_pipelining_and_without_esmtp() {
    let mut store = Store::new();
    let c = store.put(&message(4096));
    let d = deliverer(&store, config());
    for opts in [&["-p"][..], &["-e"][..], &["-p", "-8", "-E"][..]] {
        let sink = Sink::start(opts);
        let r = d
            .deliver(&delivery(
                c,
                "s@example.org",
                "BODY=8BITMIME",
                RCPTS,
                tcp(sink.addr, false),
            ))
            .await;
        assert_eq!(statuses(&r), vec![Delivered, Delivered], "{opts:?}");
        // A peer without ESMTP has no DSN: relayed.
        if opts == ["-e"] {
            assert!(r.recipients.iter().all(|x| x.relayed));
        }
        d.close_idle().await;
    }
}

#[tokio::test]
async fn injected_rcpt_errors() {
    let mut store = Store::new();
    let c = store.put(&message(1000));
    let d = deliverer(&store, config());

    let sink = Sink::start(&["-r", "rcpt", "-b", "452 4.2.2 mailbox full"]);
    let r = d
        .deliver(&delivery(
            c,
            "s@example.org",
            "",
            RCPTS,
            tcp(sink.addr, false),
        ))
        .await;
    assert_eq!(statuses(&r), vec![TempFail, TempFail]);
    assert_eq!(r.recipients[0].reply.code, 452);
    assert_eq!(r.recipients[0].reply.enhanced.unwrap().to_string(), "4.2.2");
    assert_eq!(r.recipients[0].reply.lines, vec!["mailbox full"]);

    let sink = Sink::start(&["-f", "rcpt", "-B", "550 5.1.1 no such user"]);
    let r = d
        .deliver(&delivery(
            c,
            "s@example.org",
            "",
            RCPTS,
            tcp(sink.addr, false),
        ))
        .await;
    assert_eq!(statuses(&r), vec![PermFail, PermFail]);
    assert_eq!(r.recipients[1].reply.code, 550);
    assert!(r.recipients[1].host.is_some());
}

#[tokio::test]
async fn injected_mail_data_and_dot_errors() {
    let mut store = Store::new();
    let c = store.put(&message(1000));
    let d = deliverer(&store, config());
    let cases: &[(&[&str], _, u16)] = &[
        (&["-f", "mail"], PermFail, 500),
        (&["-r", "mail"], TempFail, 450),
        (&["-f", "data"], PermFail, 500),
        (&["-r", "data"], TempFail, 450),
        (&["-f", "."], PermFail, 500),
        (&["-r", "."], TempFail, 450),
        (&["-p", "-f", "data"], PermFail, 500),
        (&["-p", "-r", "."], TempFail, 450),
    ];
    for (opts, status, code) in cases {
        let sink = Sink::start(opts);
        let r = d
            .deliver(&delivery(
                c,
                "s@example.org",
                "",
                RCPTS,
                tcp(sink.addr, false),
            ))
            .await;
        assert_eq!(statuses(&r), vec![*status, *status], "{opts:?} {r:?}");
        assert_eq!(r.recipients[0].reply.code, *code, "{opts:?}");
        d.close_idle().await;
    }
}

#[tokio::test]
async fn injected_disconnects() {
    let mut store = Store::new();
    let c = store.put(&message(1000));
    let d = deliverer(&store, config());
    for cmd in ["connect", "ehlo", "mail", "rcpt", "data", "."] {
        let sink = Sink::start(&["-q", cmd]);
        let r = d
            .deliver(&delivery(
                c,
                "s@example.org",
                "",
                RCPTS,
                tcp(sink.addr, false),
            ))
            .await;
        assert_eq!(statuses(&r), vec![TempFail, TempFail], "{cmd}");
        assert_eq!(r.recipients[0].reply.code / 100, 4, "{cmd}");
        assert_eq!(d.idle_sessions(), 0, "{cmd}");
    }
}

#[tokio::test]
async fn reuse_against_sink_and_many_concurrent_deliveries() {
    let mut store = Store::new();
    let c = store.put(&message(4096));
    let sink = Sink::start(&[]);
    let d = std::sync::Arc::new(deliverer(&store, config()));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let d = std::sync::Arc::clone(&d);
        let req = delivery(c, "s@example.org", "", RCPTS, tcp(sink.addr, false));
        set.spawn(async move { d.deliver(&req).await });
    }
    let mut n = 0;
    while let Some(r) = set.join_next().await {
        assert_eq!(statuses(&r.unwrap()), vec![Delivered, Delivered]);
        n += 1;
    }
    assert_eq!(n, 40);
    assert!(d.idle_sessions() >= 1);
    // Idle sessions are used again.
    let before = d.idle_sessions();
    let r = d
        .deliver(&delivery(
            c,
            "s@example.org",
            "",
            RCPTS,
            tcp(sink.addr, false),
        ))
        .await;
    assert_eq!(statuses(&r), vec![Delivered, Delivered]);
    assert_eq!(d.idle_sessions(), before);
    d.close_idle().await;
}
