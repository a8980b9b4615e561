//! Delivery against a scripted server that misbehaves on purpose, and
//! protocol details that need a peer offering exactly some extensions.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use smx_ipc::qmgr_smtpc::{Destination, Protocol, RecipientStatus::*};
use smx_smtpc::Timeouts;

fn short_timeouts() -> smx_smtpc::ClientConfig {
    smx_smtpc::ClientConfig {
        timeouts: Timeouts::uniform(Duration::from_millis(700)),
        ..config()
    }
}

#[tokio::test]
async fn multi_line_replies_split_across_segments_are_kept_whole() {
    let mut store = Store::new();
    let msg = message(3000);
    let c = store.put(&msg);
    let ehlo = "250-peer.test hello\r\n250-PIPELINING\r\n250-SIZE 100000\r\n250 8BITMIME\r\n";
    let srv = Scripted::start(move |cmd| {
        let up = cmd.to_ascii_uppercase();
        if up.starts_with("EHLO") {
            Act::Trickle(ehlo.into())
        } else if up.starts_with("RCPT TO:<B@") {
            Act::Trickle(
                "550-5.1.1 first line\r\n550-5.1.1 second line\r\n550 5.1.1 no such user\r\n"
                    .into(),
            )
        } else if up == "." {
            Act::Trickle("250-2.0.0 queued\r\n250 2.0.0 as ABC\r\n".into())
        } else {
            standard(cmd, "220 peer.test ESMTP\r\n", "")
        }
    })
    .await;
    let d = deliverer(&store, config());
    let r = d
        .deliver(&delivery(
            c,
            "s@example.org",
            "BODY=8BITMIME",
            &[("a@example.org", ""), ("b@example.org", "")],
            tcp(srv.addr, false),
        ))
        .await;
    assert_eq!(statuses(&r), vec![Delivered, PermFail]);
    let bad = &r.recipients[1];
    assert_eq!(bad.reply.code, 550);
    assert_eq!(
        bad.reply.lines,
        vec!["first line", "second line", "no such user"]
    );
    assert_eq!(bad.reply.enhanced.unwrap().to_string(), "5.1.1");
    assert!(bad.host.as_deref().unwrap().contains("peer.test"));
    assert_eq!(r.recipients[0].reply.lines, vec!["queued", "as ABC"]);
    // Content arrives intact (dot-stuffing undone by the server).
    assert_eq!(srv.bodies(), vec![msg]);
    // SIZE and BODY were sent; the two RCPTs and DATA pipelined.
    let cmds = srv.commands();
    let mail = cmds.iter().find(|c| c.starts_with("MAIL")).unwrap();
    assert!(
        mail.contains("SIZE=") && mail.contains("BODY=8BITMIME"),
        "{mail}"
    );
}

#[tokio::test]
async fn slow_reply_past_the_timeout_is_a_temporary_failure() {
    let mut store = Store::new();
    let c = store.put(&message(500));
    let srv = Scripted::start(|cmd| {
        if cmd.to_ascii_uppercase().starts_with("MAIL") {
            Act::Delay(Duration::from_secs(3), "250 ok\r\n".into())
        } else {
            esmtp("peer.test", &[])(cmd)
        }
    })
    .await;
    let d = deliverer(&store, short_timeouts());
    let start = std::time::Instant::now();
    let r = d
        .deliver(&delivery(
            c,
            "s@x.org",
            "",
            &[("a@x.org", "")],
            tcp(srv.addr, false),
        ))
        .await;
    assert!(start.elapsed() < Duration::from_secs(3));
    assert_eq!(statuses(&r), vec![TempFail]);
    let reply = &r.recipients[0].reply;
    assert_eq!(reply.code, 451);
    assert!(reply.lines[0].contains("timeout"), "{reply:?}");
}

#[tokio::test]
async fn disconnect_in_mid_data_is_a_temporary_failure() {
    let mut store = Store::new();
    let c = store.put(&message(200_000));
    let srv = Scripted::start(|cmd| {
        if let Some(n) = cmd.strip_prefix("DATA-BYTES ")
            && n.parse::<usize>().unwrap() > 50_000
        {
            return Act::Close;
        }
        esmtp("peer.test", &["PIPELINING"])(cmd)
    })
    .await;
    let d = deliverer(&store, config());
    let r = d
        .deliver(&delivery(
            c,
            "s@x.org",
            "",
            &[("a@x.org", ""), ("b@x.org", "")],
            tcp(srv.addr, false),
        ))
        .await;
    assert_eq!(statuses(&r), vec![TempFail, TempFail]);
    assert_eq!(r.recipients[0].reply.code, 451);
    assert_eq!(d.idle_sessions(), 0);
}

#[tokio::test]
async fn greeting_421_is_a_temporary_failure_from_that_host() {
    let mut store = Store::new();
    let c = store.put(&message(100));
    let srv = Scripted::start(|cmd| {
        if cmd == "CONNECT" {
            Act::Send("421 4.3.2 too busy, try later\r\n".into())
        } else {
            Act::Close
        }
    })
    .await;
    let d = deliverer(&store, config());
    let r = d
        .deliver(&delivery(
            c,
            "s@x.org",
            "",
            &[("a@x.org", "")],
            tcp(srv.addr, false),
        ))
        .await;
    assert_eq!(statuses(&r), vec![TempFail]);
    assert_eq!(r.recipients[0].reply.code, 421);
    assert_eq!(r.recipients[0].reply.lines, vec!["too busy, try later"]);
    assert!(r.recipients[0].host.is_some());
}

#[tokio::test]
async fn garbage_replies_are_a_temporary_failure() {
    let mut store = Store::new();
    let c = store.put(&message(100));
    let srv = Scripted::start(|cmd| {
        if cmd.to_ascii_uppercase().starts_with("MAIL") {
            Act::Send("hello there, I am not SMTP\r\n".into())
        } else {
            esmtp("peer.test", &[])(cmd)
        }
    })
    .await;
    let d = deliverer(&store, config());
    let r = d
        .deliver(&delivery(
            c,
            "s@x.org",
            "",
            &[("a@x.org", "")],
            tcp(srv.addr, false),
        ))
        .await;
    assert_eq!(statuses(&r), vec![TempFail]);
    assert_eq!(r.recipients[0].reply.enhanced.unwrap().to_string(), "4.4.5");
    assert_eq!(d.idle_sessions(), 0);

    // Garbage as the greeting.
    let srv = Scripted::start(|cmd| {
        if cmd == "CONNECT" {
            Act::Send("\u{1}\u{2}xyz\r\n".into())
        } else {
            Act::Close
        }
    })
    .await;
    let r = d
        .deliver(&delivery(
            c,
            "s@x.org",
            "",
            &[("a@x.org", "")],
            tcp(srv.addr, false),
        ))
        .await;
    assert_eq!(statuses(&r), vec![TempFail]);
}

#[tokio::test]
async fn a_peer_greeting_with_our_name_is_a_loop() {
    let mut store = Store::new();
    let c = store.put(&message(100));
    let srv = Scripted::start(esmtp(HOSTNAME, &["PIPELINING"])).await;
    let d = deliverer(&store, config());
    let req = delivery(c, "s@x.org", "", &[("a@x.org", "")], tcp(srv.addr, false));
    let r = d.deliver(&req).await;
    assert_eq!(statuses(&r), vec![TempFail]);
    assert_eq!(r.recipients[0].reply.enhanced.unwrap().to_string(), "4.4.6");
    assert!(!srv.commands().iter().any(|c| c.starts_with("MAIL")));

    // talk_to_myself allows it.
    let d = deliverer(
        &store,
        smx_smtpc::ClientConfig {
            talk_to_myself: true,
            ..config()
        },
    );
    let r = d.deliver(&req).await;
    assert_eq!(statuses(&r), vec![Delivered]);

    // An LMTP peer with our name (our own lda) is final delivery, not a
    // loop.
    let lmtp = Scripted::start(|cmd| {
        if cmd == "." {
            Act::Send("250 2.0.0 delivered\r\n".into())
        } else {
            esmtp(HOSTNAME, &["PIPELINING"])(cmd)
        }
    })
    .await;
    let d = deliverer(&store, config());
    let req = delivery(c, "s@x.org", "", &[("a@x.org", "")], tcp(lmtp.addr, true));
    assert_eq!(statuses(&d.deliver(&req).await), vec![Delivered]);
}

#[tokio::test]
async fn size_limit_fails_permanently_without_sending() {
    let mut store = Store::new();
    let c = store.put(&message(5000));
    let srv = Scripted::start(esmtp("peer.test", &["SIZE 1000"])).await;
    let d = deliverer(&store, config());
    let r = d
        .deliver(&delivery(
            c,
            "s@x.org",
            "",
            &[("a@x.org", "")],
            tcp(srv.addr, false),
        ))
        .await;
    assert_eq!(statuses(&r), vec![PermFail]);
    assert_eq!(r.recipients[0].reply.code, 552);
    assert_eq!(r.recipients[0].reply.enhanced.unwrap().to_string(), "5.3.4");
    assert!(!srv.commands().iter().any(|c| c.starts_with("MAIL")));
}

#[tokio::test]
async fn smtputf8_needed_but_not_offered_fails_permanently() {
    let mut store = Store::new();
    let c = store.put(&message(100));
    let srv = Scripted::start(esmtp("peer.test", &["8BITMIME"])).await;
    let d = deliverer(&store, config());
    let r = d
        .deliver(&delivery(
            c,
            "s@x.org",
            "SMTPUTF8",
            &[("jörg@x.org", "")],
            tcp(srv.addr, false),
        ))
        .await;
    assert_eq!(statuses(&r), vec![PermFail]);
    assert_eq!(r.recipients[0].reply.enhanced.unwrap().to_string(), "5.6.7");

    let srv = Scripted::start(esmtp("peer.test", &["8BITMIME", "SMTPUTF8"])).await;
    let r = d
        .deliver(&delivery(
            c,
            "s@x.org",
            "",
            &[("jörg@x.org", "")],
            tcp(srv.addr, false),
        ))
        .await;
    assert_eq!(statuses(&r), vec![Delivered]);
    let cmds = srv.commands();
    assert!(
        cmds.iter()
            .any(|c| c.starts_with("MAIL") && c.ends_with(" SMTPUTF8")),
        "{cmds:?}"
    );
}

#[tokio::test]
async fn dsn_parameters_only_to_peers_offering_dsn() {
    let mut store = Store::new();
    let c = store.put(&message(100));
    let rcpts = [("a@x.org", "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@x.org")];
    let with = Scripted::start(esmtp("peer.test", &["DSN"])).await;
    let d = deliverer(&store, config());
    let r = d
        .deliver(&delivery(
            c,
            "s@x.org",
            "RET=HDRS ENVID=abc",
            &rcpts,
            tcp(with.addr, false),
        ))
        .await;
    assert_eq!(statuses(&r), vec![Delivered]);
    assert!(!r.recipients[0].relayed);
    let cmds = with.commands();
    assert!(
        cmds.iter()
            .any(|c| c == "MAIL FROM:<s@x.org> RET=HDRS ENVID=abc"),
        "{cmds:?}"
    );
    assert!(
        cmds.iter()
            .any(|c| c == "RCPT TO:<a@x.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@x.org"),
        "{cmds:?}"
    );

    let without = Scripted::start(esmtp("peer.test", &[])).await;
    let r = d
        .deliver(&delivery(
            c,
            "s@x.org",
            "RET=HDRS ENVID=abc",
            &rcpts,
            tcp(without.addr, false),
        ))
        .await;
    assert_eq!(statuses(&r), vec![Delivered]);
    assert!(r.recipients[0].relayed);
    let cmds = without.commands();
    assert!(cmds.iter().any(|c| c == "MAIL FROM:<s@x.org>"), "{cmds:?}");
    assert!(cmds.iter().any(|c| c == "RCPT TO:<a@x.org>"), "{cmds:?}");
}

#[tokio::test]
async fn chunking_sends_bdat_and_the_content_unstuffed() {
    let mut store = Store::new();
    let msg = message(150_000);
    let c = store.put(&msg);
    let srv = Scripted::start(esmtp("peer.test", &["PIPELINING", "CHUNKING", "8BITMIME"])).await;
    let d = deliverer(&store, config());
    let r = d
        .deliver(&delivery(
            c,
            "s@x.org",
            "",
            &[("a@x.org", "")],
            tcp(srv.addr, false),
        ))
        .await;
    assert_eq!(statuses(&r), vec![Delivered]);
    assert_eq!(srv.bodies(), vec![msg]);
    let cmds = srv.commands();
    let bdats: Vec<_> = cmds.iter().filter(|c| c.starts_with("BDAT")).collect();
    assert_eq!(bdats.len(), 3, "{cmds:?}");
    assert!(bdats[2].ends_with(" LAST"));
    assert!(!cmds.iter().any(|c| c == "DATA"));
}

#[tokio::test]
async fn ehlo_refused_falls_back_to_helo() {
    let mut store = Store::new();
    let msg = message(300);
    let c = store.put(&msg);
    let srv = Scripted::start(|cmd| {
        if cmd.to_ascii_uppercase().starts_with("EHLO") {
            Act::Send("502 5.5.2 what is EHLO\r\n".into())
        } else {
            esmtp("old.test", &[])(cmd)
        }
    })
    .await;
    let d = deliverer(&store, config());
    let r = d
        .deliver(&delivery(
            c,
            "s@x.org",
            "BODY=8BITMIME",
            &[("a@x.org", "NOTIFY=NEVER")],
            tcp(srv.addr, false),
        ))
        .await;
    assert_eq!(statuses(&r), vec![Delivered]);
    let cmds = srv.commands();
    assert!(cmds.iter().any(|c| c == &format!("HELO {HOSTNAME}")));
    assert!(cmds.iter().any(|c| c == "MAIL FROM:<s@x.org>"), "{cmds:?}");
    assert_eq!(srv.bodies(), vec![msg]);
}

#[tokio::test]
async fn lmtp_gives_one_reply_per_recipient() {
    let mut store = Store::new();
    let c = store.put(&message(1000));
    let srv = Scripted::start(|cmd| {
        if cmd == "." {
            Act::Trickle(
                "250 2.1.5 a delivered\r\n452 4.2.2 b over quota\r\n550-5.1.1 c unknown\r\n550 5.1.1 really\r\n"
                    .into(),
            )
        } else {
            esmtp("lmtp.test", &["PIPELINING", "ENHANCEDSTATUSCODES"])(cmd)
        }
    })
    .await;
    let d = deliverer(&store, config());
    let r = d
        .deliver(&delivery(
            c,
            "s@x.org",
            "",
            &[("a@x.org", ""), ("b@x.org", ""), ("c@x.org", "")],
            tcp(srv.addr, true),
        ))
        .await;
    assert_eq!(statuses(&r), vec![Delivered, TempFail, PermFail]);
    assert_eq!(r.recipients[2].reply.lines, vec!["c unknown", "really"]);
    assert!(srv.commands().iter().any(|c| c.starts_with("LHLO")));
}

#[tokio::test]
async fn next_target_after_a_failed_one_and_connect_only_to() {
    let mut store = Store::new();
    let c = store.put(&message(100));
    let good = Scripted::start(esmtp("good.test", &["PIPELINING"])).await;
    let busy = Scripted::start(|cmd| {
        if cmd == "CONNECT" {
            Act::Send("421 4.3.2 busy\r\n".into())
        } else {
            Act::Close
        }
    })
    .await;
    let closed = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let dest = Destination::Hosts {
        protocol: Protocol::Esmtp,
        targets: vec![target(closed), target(busy.addr), target(good.addr)],
    };
    let d = deliverer(&store, config());
    let r = d
        .deliver(&delivery(c, "s@x.org", "", &[("a@x.org", "")], dest))
        .await;
    assert_eq!(statuses(&r), vec![Delivered]);
    assert!(
        r.recipients[0]
            .host
            .as_deref()
            .unwrap()
            .contains(&good.addr.port().to_string())
    );

    // connect_only_to sends everything to one address, keeping the port.
    let dest = Destination::Hosts {
        protocol: Protocol::Esmtp,
        targets: vec![smx_ipc::qmgr_smtpc::Target {
            name: "mx.example.org".into(),
            addr: "192.0.2.1".parse().unwrap(),
            port: Some(good.addr.port()),
            tls_requirements: None,
        }],
    };
    let d = deliverer(
        &store,
        smx_smtpc::ClientConfig {
            connect_only_to: Some("127.0.0.1".parse().unwrap()),
            ..config()
        },
    );
    let r = d
        .deliver(&delivery(c, "s@x.org", "", &[("a@x.org", "")], dest))
        .await;
    assert_eq!(statuses(&r), vec![Delivered]);
}

#[tokio::test]
async fn bad_envelope_data_fails_without_connecting() {
    let mut store = Store::new();
    let c = store.put(&message(100));
    let srv = Scripted::start(esmtp("peer.test", &["PIPELINING"])).await;
    let d = deliverer(&store, config());
    let r = d
        .deliver(&delivery(
            c,
            "s@x.org",
            "",
            &[
                ("a@x.org\r\nRSET", ""),
                ("b@x.org", "BOGUS=1"),
                ("c@x.org", ""),
            ],
            tcp(srv.addr, false),
        ))
        .await;
    assert_eq!(statuses(&r), vec![PermFail, PermFail, Delivered]);
    assert!(r.recipients[0].host.is_none());
    let r = d
        .deliver(&delivery(
            c,
            "s@x.org",
            "SIZE=x",
            &[("c@x.org", "")],
            tcp(srv.addr, false),
        ))
        .await;
    assert_eq!(statuses(&r), vec![PermFail]);
    // Missing content: temporary, decided locally.
    let missing = (
        smx_ipc::types::TransactionId {
            counter: 999_999,
            process: 0,
        },
        10,
    );
    let r = d
        .deliver(&delivery(
            missing,
            "s@x.org",
            "",
            &[("c@x.org", "")],
            tcp(srv.addr, false),
        ))
        .await;
    assert_eq!(statuses(&r), vec![TempFail]);
    assert!(r.recipients[0].host.is_none());
}

#[tokio::test]
async fn sessions_are_reused_and_quit_when_reuse_is_off() {
    let mut store = Store::new();
    let c = store.put(&message(100));
    let srv = Scripted::start(esmtp("peer.test", &["PIPELINING"])).await;
    let d = deliverer(&store, config());
    for _ in 0..3 {
        let r = d
            .deliver(&delivery(
                c,
                "s@x.org",
                "",
                &[("a@x.org", "")],
                tcp(srv.addr, false),
            ))
            .await;
        assert_eq!(statuses(&r), vec![Delivered]);
    }
    assert_eq!(srv.transcript.lock().unwrap().connections, 1);
    assert_eq!(d.idle_sessions(), 1);
    d.close_idle().await;
    assert_eq!(d.idle_sessions(), 0);

    // Without reuse: one connection per delivery, QUIT pipelined with the dot.
    let srv = Scripted::start(esmtp("peer.test", &["PIPELINING"])).await;
    let d = deliverer(
        &store,
        smx_smtpc::ClientConfig {
            reuse_connection: false,
            read_quit_reply: true,
            ..config()
        },
    );
    for _ in 0..2 {
        let r = d
            .deliver(&delivery(
                c,
                "s@x.org",
                "",
                &[("a@x.org", "")],
                tcp(srv.addr, false),
            ))
            .await;
        assert_eq!(statuses(&r), vec![Delivered]);
    }
    let start = std::time::Instant::now();
    while srv.commands().iter().filter(|c| *c == "QUIT").count() < 2
        && start.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(srv.transcript.lock().unwrap().connections, 2);
    assert_eq!(srv.commands().iter().filter(|c| *c == "QUIT").count(), 2);
}

#[tokio::test]
async fn a_cached_session_closed_by_the_peer_is_replaced_transparently() {
    let mut store = Store::new();
    let c = store.put(&message(100));
    // The peer answers the final dot, then hangs up while the session
    // sits in the idle cache.
    let srv = Scripted::start(|cmd| {
        if cmd == "." {
            Act::SendClose("250 2.0.0 ok\r\n".into())
        } else {
            esmtp("peer.test", &["PIPELINING"])(cmd)
        }
    })
    .await;
    let d = deliverer(&store, config());
    for _ in 0..3 {
        let r = d
            .deliver(&delivery(
                c,
                "s@x.org",
                "",
                &[("a@x.org", "")],
                tcp(srv.addr, false),
            ))
            .await;
        assert_eq!(statuses(&r), vec![Delivered], "{r:?}");
        // Let the close arrive.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(srv.transcript.lock().unwrap().connections, 3);
}

#[tokio::test]
async fn a_failed_transaction_leaves_a_session_that_resets_before_reuse() {
    let mut store = Store::new();
    let c = store.put(&message(100));
    let srv = Scripted::start(|cmd| {
        if cmd.starts_with("MAIL FROM:<bad@") {
            Act::Send("550 5.7.1 not you\r\n".into())
        } else {
            esmtp("peer.test", &["PIPELINING"])(cmd)
        }
    })
    .await;
    let d = deliverer(&store, config());
    let r = d
        .deliver(&delivery(
            c,
            "bad@x.org",
            "",
            &[("a@x.org", "")],
            tcp(srv.addr, false),
        ))
        .await;
    assert_eq!(statuses(&r), vec![PermFail]);
    assert_eq!(r.recipients[0].reply.lines, vec!["not you"]);
    let r = d
        .deliver(&delivery(
            c,
            "good@x.org",
            "",
            &[("a@x.org", "")],
            tcp(srv.addr, false),
        ))
        .await;
    assert_eq!(statuses(&r), vec![Delivered]);
    let cmds = srv.commands();
    let rset = cmds.iter().position(|c| c == "RSET").expect("RSET sent");
    let good = cmds
        .iter()
        .position(|c| c.starts_with("MAIL FROM:<good@"))
        .unwrap();
    assert!(rset < good);
    assert_eq!(srv.transcript.lock().unwrap().connections, 1);
}

#[tokio::test]
async fn a_cached_session_answering_421_is_replaced_and_421_is_never_cached() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let mut store = Store::new();
    let c = store.put(&message(100));
    let mails = std::sync::Arc::new(AtomicUsize::new(0));
    let m = std::sync::Arc::clone(&mails);
    // The second MAIL (on the cached session) meets a peer that timed the
    // idle session out.
    let srv = Scripted::start(move |cmd| {
        if cmd.starts_with("MAIL") && m.fetch_add(1, Ordering::SeqCst) == 1 {
            Act::SendClose("421 4.4.2 idle timeout exceeded\r\n".into())
        } else {
            esmtp("peer.test", &["PIPELINING"])(cmd)
        }
    })
    .await;
    let d = deliverer(&store, config());
    for _ in 0..2 {
        let r = d
            .deliver(&delivery(
                c,
                "s@x.org",
                "",
                &[("a@x.org", "")],
                tcp(srv.addr, false),
            ))
            .await;
        assert_eq!(statuses(&r), vec![Delivered], "{r:?}");
    }
    assert_eq!(mails.load(Ordering::SeqCst), 3);
    assert_eq!(srv.transcript.lock().unwrap().connections, 2);

    // A 421 from a fresh session is a temporary failure, and the session
    // is not kept.
    let srv = Scripted::start(|cmd| {
        if cmd.starts_with("RCPT") {
            Act::Send("421 4.3.2 shutting down\r\n".into())
        } else {
            esmtp("peer.test", &[])(cmd)
        }
    })
    .await;
    let r = d
        .deliver(&delivery(
            c,
            "s@x.org",
            "",
            &[("a@x.org", "")],
            tcp(srv.addr, false),
        ))
        .await;
    assert_eq!(statuses(&r), vec![TempFail]);
    assert_eq!(r.recipients[0].reply.code, 421);
    assert_eq!(d.idle_sessions(), 1, "only the first server's session");
}

#[tokio::test]
async fn unexpected_reply_codes_never_count_as_delivered() {
    let mut store = Store::new();
    let c = store.put(&message(100));
    for (at, reply) in [
        ("DATA", "250 2.0.0 sure\r\n"),
        ("RCPT", "354 what\r\n"),
        (".", "354 more?\r\n"),
        ("MAIL", "334 eh\r\n"),
    ] {
        let srv = Scripted::start(move |cmd| {
            if cmd.to_ascii_uppercase().starts_with(at) {
                Act::Send(reply.into())
            } else {
                esmtp("peer.test", &[])(cmd)
            }
        })
        .await;
        let d = deliverer(&store, short_timeouts());
        let r = d
            .deliver(&delivery(
                c,
                "s@x.org",
                "",
                &[("a@x.org", "")],
                tcp(srv.addr, false),
            ))
            .await;
        assert_eq!(statuses(&r), vec![TempFail], "{at}: {r:?}");
    }
}

#[tokio::test]
async fn final_dot_and_quit_together_unless_separated() {
    let mut store = Store::new();
    let c = store.put(&message(300));
    for separate in [false, true] {
        let srv = Scripted::start(esmtp("peer.test", &["PIPELINING"])).await;
        let d = deliverer(
            &store,
            smx_smtpc::ClientConfig {
                reuse_connection: false,
                separate_final_dot_and_quit: separate,
                ..config()
            },
        );
        let r = d
            .deliver(&delivery(
                c,
                "s@x.org",
                "",
                &[("a@x.org", "")],
                tcp(srv.addr, false),
            ))
            .await;
        assert_eq!(statuses(&r), vec![Delivered]);
        let start = std::time::Instant::now();
        while !srv.commands().iter().any(|c| c == "QUIT")
            && start.elapsed() < Duration::from_secs(5)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(srv.commands().iter().any(|c| c == "QUIT"));
        let followed = srv.transcript.lock().unwrap().dot_followed.clone();
        assert_eq!(followed, vec![!separate], "separate={separate}");
    }
}

#[tokio::test]
async fn ipv6_then_ipv4_targets_in_the_given_order() {
    let mut store = Store::new();
    let c = store.put(&message(100));
    let v6 = Scripted::start_on("[::1]:0", esmtp("v6.test", &["PIPELINING"])).await;
    let v4 = Scripted::start(esmtp("v4.test", &["PIPELINING"])).await;
    let d = deliverer(&store, config());
    let dest = Destination::Hosts {
        protocol: Protocol::Esmtp,
        targets: vec![target(v6.addr), target(v4.addr)],
    };
    let r = d
        .deliver(&delivery(c, "s@x.org", "", &[("a@x.org", "")], dest))
        .await;
    assert_eq!(statuses(&r), vec![Delivered]);
    assert!(
        r.recipients[0].host.as_deref().unwrap().contains("[::1]"),
        "{r:?}"
    );
    assert_eq!(v4.transcript.lock().unwrap().connections, 0);

    // A target without a port uses remote_port.
    let d = deliverer(
        &store,
        smx_smtpc::ClientConfig {
            remote_port: v4.addr.port(),
            ..config()
        },
    );
    let dest = Destination::Hosts {
        protocol: Protocol::Esmtp,
        targets: vec![smx_ipc::qmgr_smtpc::Target {
            name: String::new(),
            addr: v4.addr.ip(),
            port: None,
            tls_requirements: None,
        }],
    };
    let r = d
        .deliver(&delivery(c, "s@x.org", "", &[("a@x.org", "")], dest))
        .await;
    assert_eq!(statuses(&r), vec![Delivered]);
    assert_eq!(v4.transcript.lock().unwrap().connections, 1);
}
