//! The SMTP server against a raw client: exact replies, state, limits,
//! pipelining, smuggling, and what reaches CDB and qmgr.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Client, Harness, QmgrScript, code, config};
use smx_conf::value::{KbSize, Time};

async fn greet(c: &mut Client) {
    code(&c.reply().await, "220 mx.test.example");
    code(&c.cmd("EHLO client.example").await, "250");
}

#[tokio::test]
async fn one_message_end_to_end() {
    let h = Harness::start(config(), QmgrScript::default()).await;
    let mut c = h.client().await;
    code(&c.reply().await, "220 mx.test.example ESMTP");
    let ehlo = c.cmd("EHLO client.example").await;
    for k in [
        "PIPELINING",
        "SIZE 52428800",
        "8BITMIME",
        "CHUNKING",
        "ENHANCEDSTATUSCODES",
        "SMTPUTF8",
        "DSN",
        "DELIVERBY",
        "ETRN",
    ] {
        assert!(
            ehlo.contains(&format!("-{k}\r\n")) || ehlo.contains(&format!(" {k}\r\n")),
            "{k} missing from {ehlo:?}"
        );
    }
    assert!(
        !ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );
    code(
        &c.cmd("MAIL FROM:<sender@client.example> SIZE=100 BODY=8BITMIME")
            .await,
        "250 2.1.0",
    );
    code(
        &c.cmd("RCPT TO:<a@local.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@local.example")
            .await,
        "250 2.1.5",
    );
    code(&c.cmd("RCPT TO:<b@local.example>").await, "250 2.1.5");
    code(&c.cmd("DATA").await, "354");
    c.send(b"Subject: hi\r\nMessage-ID: <m1@client.example>\r\n\r\n..dot line\r\nbody\r\n.\r\n")
        .await;
    let r = c.reply().await;
    code(&r, "250 2.0.0");
    code(&c.cmd("QUIT").await, "221");
    assert!(c.closed().await);

    let envs = h.envelopes();
    assert_eq!(envs.len(), 1);
    let e = &envs[0];
    assert!(r.contains(&e.id.to_string()), "{r} names the id");
    assert_eq!(e.sender, "sender@client.example");
    assert!(
        e.params.contains("SIZE=100") && e.params.contains("BODY=8BITMIME"),
        "{}",
        e.params
    );
    assert_eq!(e.recipients.len(), 2);
    assert_eq!(e.recipients[0].address, "a@local.example");
    assert!(
        e.recipients[0]
            .params
            .contains("ORCPT=rfc822;a@local.example"),
        "{}",
        e.recipients[0].params
    );
    assert_eq!(e.recipients[1].index, 1);
    let content = h.content(e);
    let text = String::from_utf8(content.clone()).unwrap();
    assert!(
        text.starts_with(
            "Received: from client.example ([127.0.0.1])\r\n\tby mx.test.example (smx "
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!("with ESMTP\r\n\tid {};", e.id)),
        "{text}"
    );
    let body = "Subject: hi\r\nMessage-ID: <m1@client.example>\r\n\r\n.dot line\r\nbody\r\n";
    assert!(text.ends_with(body), "{text}");
    assert_eq!(e.size, body.len() as u64);
    h.stop().await;
}

#[tokio::test]
async fn pipelined_transaction_and_bdat() {
    let h = Harness::start(config(), QmgrScript::default()).await;
    let mut c = h.client().await;
    greet(&mut c).await;
    // One group: MAIL, RCPT, RCPT, BDAT chunk, BDAT LAST with data.
    c.send(b"MAIL FROM:<s@x.example> BODY=BINARYMIME\r\nRCPT TO:<a@y.example>\r\nRCPT TO:<reject@y.example>\r\nBDAT 5\r\nab\r\ncBDAT 4 LAST\r\n\x00\r\x0a\xff").await;
    code(&c.reply().await, "250 2.1.0");
    code(&c.reply().await, "250 2.1.5");
    let rej = c.reply().await;
    code(&rej, "550 5.7.1");
    assert!(
        rej.contains("<reject@y.example>"),
        "the reply quotes the address: {rej}"
    );
    code(&c.reply().await, "250 2.0.0 5 octets");
    code(&c.reply().await, "250 2.0.0");
    let envs = h.envelopes();
    assert_eq!(envs.len(), 1);
    assert_eq!(envs[0].recipients.len(), 1);
    let content = h.content(&envs[0]);
    assert!(
        content.ends_with(b"\r\n\r\nab\r\nc\x00\r\x0a\xff")
            || content.ends_with(b"ab\r\nc\x00\r\n\xff"),
        "{content:?}"
    );
    assert_eq!(envs[0].size, 9);

    // BDAT without a transaction: the chunk is read and refused, the
    // session stays in step.
    c.send(b"BDAT 10\r\nMAIL FROM:").await;
    code(&c.reply().await, "503 5.5.1");
    code(&c.cmd("NOOP").await, "250");
    // DATA is refused after BODY=BINARYMIME.
    code(
        &c.cmd("MAIL FROM:<s@x.example> BODY=BINARYMIME").await,
        "250",
    );
    code(&c.cmd("RCPT TO:<a@y.example>").await, "250");
    code(&c.cmd("DATA").await, "503 5.5.1");
    h.stop().await;
}

#[tokio::test]
async fn bdat_with_bare_lf_is_refused_unless_binary() {
    let h = Harness::start(config(), QmgrScript::default()).await;
    let mut c = h.client().await;
    greet(&mut c).await;
    code(&c.cmd("MAIL FROM:<s@x.example>").await, "250");
    code(&c.cmd("RCPT TO:<a@y.example>").await, "250");
    c.send(b"BDAT 7 LAST\r\na\n.\nb\r\n").await;
    code(&c.reply().await, "554 5.6.0");
    assert!(h.envelopes().is_empty());
    assert_eq!(h.cdb_files(), 0, "the refused content file is removed");
    h.stop().await;
}

/// SMTP smuggling: none of these sequences ends the message; the message
/// is refused (bare CR/LF) and the smuggled MAIL never becomes a second
/// transaction.
#[tokio::test]
async fn smuggling_never_ends_data_early() {
    let h = Harness::start(config(), QmgrScript::default()).await;
    for fake in [
        &b"\n.\n"[..],
        b"\r.\r",
        b"\n.\r\n",
        b"\r\n.\n",
        b"\r\n.\r",
        b"\r\n.\r\r\n",
    ] {
        let mut c = h.client().await;
        greet(&mut c).await;
        code(&c.cmd("MAIL FROM:<s@x.example>").await, "250");
        code(&c.cmd("RCPT TO:<a@y.example>").await, "250");
        code(&c.cmd("DATA").await, "354");
        let mut msg = b"Subject: x\r\n\r\nhello".to_vec();
        msg.extend_from_slice(fake);
        msg.extend_from_slice(b"MAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@y.example>\r\nDATA\r\nsmuggled\r\n.\r\n");
        c.send(&msg).await;
        let r = c.reply().await;
        code(&r, "554 5.6.0");
        // Nothing else was answered: the next reply is to our NOOP.
        code(&c.cmd("NOOP").await, "250 2.0.0 OK");
        code(&c.cmd("QUIT").await, "221");
    }
    assert!(
        h.envelopes().is_empty(),
        "no transaction came out of smuggled data"
    );
    assert_eq!(h.cdb_files(), 0);
    h.stop().await;
}

#[tokio::test]
async fn illegal_pipelining_and_data_before_greeting() {
    let script = QmgrScript {
        session_delay: Duration::from_millis(300),
        ..QmgrScript::default()
    };
    let h = Harness::start(config(), script).await;
    // Commands before the greeting.
    let mut c = h.client().await;
    c.send(b"EHLO early.example\r\n").await;
    code(&c.reply().await, "421 4.5.0");
    assert!(c.closed().await);
    // A command after EHLO in the same packet.
    let mut c = h.client().await;
    code(&c.reply().await, "220");
    c.send(b"EHLO a.example\r\nMAIL FROM:<s@x.example>\r\n")
        .await;
    code(&c.reply().await, "421 4.5.0");
    assert!(c.closed().await);
    // Content sent together with DATA, before the 354.
    let mut c = h.client().await;
    greet(&mut c).await;
    c.send(b"MAIL FROM:<s@x.example>\r\nRCPT TO:<a@y.example>\r\nDATA\r\nSubject: x\r\n\r\n.\r\n")
        .await;
    code(&c.reply().await, "250");
    code(&c.reply().await, "250");
    code(&c.reply().await, "421 4.5.0");
    // Without PIPELINING (HELO), any command group is illegal.
    let mut c = h.client().await;
    code(&c.reply().await, "220");
    code(&c.cmd("HELO a.example").await, "250");
    c.send(b"MAIL FROM:<s@x.example>\r\nRCPT TO:<a@y.example>\r\n")
        .await;
    code(&c.reply().await, "421 4.5.0");
    assert!(h.envelopes().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn allow_data_before_greeting() {
    let mut cfg = config();
    cfg.flags.allow_data_before_greeting = true;
    let script = QmgrScript {
        session_delay: Duration::from_millis(200),
        ..QmgrScript::default()
    };
    let h = Harness::start(cfg, script).await;
    let mut c = h.client().await;
    c.send(b"EHLO early.example\r\n").await;
    code(&c.reply().await, "220");
    code(&c.reply().await, "250");
    h.stop().await;
}

#[tokio::test]
async fn sequence_and_parameter_errors() {
    let h = Harness::start(config(), QmgrScript::default()).await;
    let mut c = h.client().await;
    code(&c.reply().await, "220");
    code(&c.cmd("MAIL FROM:<s@x.example>").await, "503 5.5.1");
    code(&c.cmd("RCPT TO:<a@y.example>").await, "503 5.5.1");
    code(&c.cmd("DATA").await, "503 5.5.1");
    code(&c.cmd("EHLO c.example").await, "250");
    code(
        &c.cmd("MAIL FROM:<s@x.example> FROBNICATE=1").await,
        "555 5.5.4",
    );
    code(
        &c.cmd("MAIL FROM:<s@x.example> SIZE=999999999999").await,
        "552 5.3.4",
    );
    code(&c.cmd("MAIL FROM: <s@x.example>").await, "501");
    code(&c.cmd("MAIL FROM:<jörg@x.example>").await, "553 5.6.7");
    code(&c.cmd("MAIL FROM:<jörg@x.example> SMTPUTF8").await, "250");
    code(&c.cmd("MAIL FROM:<s@x.example>").await, "503 5.5.1");
    code(&c.cmd("RCPT TO:<zoë@y.example>").await, "250");
    code(&c.cmd("DATA").await, "354");
    c.send(b"Subject: =?utf-8?q?x?=\r\n\r\nhej\r\n.\r\n").await;
    code(&c.reply().await, "250");
    let env = &h.envelopes()[0];
    assert_eq!(env.recipients[0].address, "zoë@y.example");
    assert!(
        String::from_utf8(h.content(env))
            .unwrap()
            .contains("with UTF8ESMTP")
    );
    code(&c.cmd("MAIL FROM:<s@x.example>").await, "250");
    code(&c.cmd("RCPT TO:<a@y.example>").await, "250");
    code(&c.cmd("RSET").await, "250");
    code(&c.cmd("RCPT TO:<a@y.example>").await, "503");
    code(&c.cmd("VRFY root").await, "502 5.5.1");
    code(&c.cmd("EXPN list").await, "502 5.5.1");
    let help = c.cmd("HELP").await;
    code(&help, "214");
    code(&c.cmd("STARTTLS").await, "502");
    code(&c.cmd("FOO").await, "500 5.5.1");
    let long = format!("NOOP {}", "x".repeat(5000));
    code(&c.cmd(&long).await, "500 5.5.2");
    code(&c.cmd("NOOP").await, "250");
    code(&c.cmd("ETRN example.org").await, "250");
    assert_eq!(h.seen.lock().unwrap().etrn, vec!["example.org".to_string()]);
    h.stop().await;
}

#[tokio::test]
async fn helo_sessions_get_no_extensions() {
    let h = Harness::start(config(), QmgrScript::default()).await;
    let mut c = h.client().await;
    code(&c.reply().await, "220");
    code(&c.cmd("HELO c.example").await, "250 mx.test.example");
    code(&c.cmd("MAIL FROM:<s@x.example> BODY=8BITMIME").await, "555");
    code(&c.cmd("MAIL FROM:<s@x.example>").await, "250");
    code(&c.cmd("RCPT TO:<a@y.example> NOTIFY=NEVER").await, "555");
    code(&c.cmd("BDAT 0 LAST").await, "502");
    code(&c.cmd("ETRN x.example").await, "502");
    h.stop().await;
}

#[tokio::test]
async fn policy_verdicts_from_smar() {
    let mut cfg = config();
    cfg.flags.access = true;
    let h = Harness::start(cfg, QmgrScript::default()).await;
    let mut c = h.client().await;
    greet(&mut c).await;
    code(
        &c.cmd("MAIL FROM:<spammer@bad.example>").await,
        "553 5.7.1 sender blocked",
    );
    code(&c.cmd("MAIL FROM:<s@x.example>").await, "250");
    code(&c.cmd("RCPT TO:<temp@y.example>").await, "450 4.7.1");
    code(&c.cmd("RCPT TO:<discard@y.example>").await, "250");
    code(&c.cmd("DATA").await, "354");
    c.send(b"Subject: x\r\n\r\nx\r\n.\r\n").await;
    code(&c.reply().await, "250");
    assert!(
        h.envelopes().is_empty(),
        "a discarded message does not reach qmgr"
    );
    assert_eq!(h.cdb_files(), 0);
    h.stop().await;
}

#[tokio::test]
async fn connect_check_with_access_flag() {
    let mut cfg = config();
    cfg.flags.access = true;
    let h = Harness::start(cfg, QmgrScript::default()).await;
    let mut c = h.client().await;
    greet(&mut c).await;
    assert_eq!(h.seen.lock().unwrap().connect_checks, 1);
    h.stop().await;
}

#[tokio::test]
async fn qmgr_decides_the_final_reply() {
    // Temporary failure: 4xx and the content is removed.
    let h = Harness::start(
        config(),
        QmgrScript {
            tempfail_commits: true,
            ..QmgrScript::default()
        },
    )
    .await;
    let mut c = h.client().await;
    greet(&mut c).await;
    code(&c.cmd("MAIL FROM:<s@x.example>").await, "250");
    code(&c.cmd("RCPT TO:<a@y.example>").await, "250");
    code(&c.cmd("DATA").await, "354");
    c.send(b"Subject: x\r\n\r\nx\r\n.\r\n").await;
    code(&c.reply().await, "452 4.3.1 queue full");
    assert_eq!(h.cdb_files(), 0);
    h.stop().await;

    // No answer: 451 after module_timeout, Abort sent, content kept for
    // qmgr's recovery.
    let mut cfg = config();
    cfg.module_timeout = Time::secs(1);
    let h = Harness::start(
        cfg,
        QmgrScript {
            swallow_commits: true,
            ..QmgrScript::default()
        },
    )
    .await;
    let mut c = h.client().await;
    greet(&mut c).await;
    code(&c.cmd("MAIL FROM:<s@x.example>").await, "250");
    code(&c.cmd("RCPT TO:<a@y.example>").await, "250");
    code(&c.cmd("DATA").await, "354");
    c.send(b"Subject: x\r\n\r\nx\r\n.\r\n").await;
    code(&c.reply().await, "451 4.3.0");
    assert_eq!(h.seen.lock().unwrap().aborts, 1);
    assert_eq!(h.cdb_files(), 1);
    h.stop().await;

    // Refused session.
    let h = Harness::start(
        config(),
        QmgrScript {
            refuse_sessions: true,
            ..QmgrScript::default()
        },
    )
    .await;
    let mut c = h.client().await;
    code(&c.reply().await, "421 4.7.0 connection rate exceeded");
    assert!(c.closed().await);
    h.stop().await;
}

#[tokio::test]
async fn throttle_notice_limits_sessions() {
    let h = Harness::start(config(), QmgrScript::default()).await;
    let mut c = h.client().await;
    greet(&mut c).await;
    h.notices
        .send(smx_ipc::smtps_qmgr::QmgrNotice::Throttle {
            max_sessions: 1,
            reason: smx_ipc::smtps_qmgr::ThrottleReason::DiskSpace,
        })
        .unwrap();
    // The notice travels asynchronously; a NOOP round trip on the link
    // happens with the next session, so poll.
    let mut refused = false;
    for _ in 0..50 {
        let mut d = h.client().await;
        let r = d.reply().await;
        if r.starts_with("421 4.3.2") {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "a second session is refused while throttled to 1");
    h.notices
        .send(smx_ipc::smtps_qmgr::QmgrNotice::Unthrottle)
        .unwrap();
    let mut ok = false;
    for _ in 0..50 {
        let mut d = h.client().await;
        if d.reply().await.starts_with("220") {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "sessions are accepted again after Unthrottle");
    h.stop().await;
}

// ---- limits --------------------------------------------------------------

#[tokio::test]
async fn limit_bad_commands() {
    let mut cfg = config();
    cfg.max_bad_commands_per_session = 3;
    let h = Harness::start(cfg, QmgrScript::default()).await;
    let mut c = h.client().await;
    greet(&mut c).await;
    for _ in 0..3 {
        code(&c.cmd("BOGUS").await, "500");
    }
    code(&c.cmd("BOGUS").await, "421 4.7.0");
    assert!(c.closed().await);
    h.stop().await;
}

#[tokio::test]
async fn limit_invalid_addresses() {
    let mut cfg = config();
    cfg.max_invalid_addresses_per_transaction = 2;
    let h = Harness::start(cfg, QmgrScript::default()).await;
    let mut c = h.client().await;
    greet(&mut c).await;
    code(&c.cmd("MAIL FROM:<s@x.example>").await, "250");
    code(&c.cmd("RCPT TO:<reject1@y.example>").await, "550");
    code(&c.cmd("RCPT TO:<bad address>").await, "501 5.1.3");
    code(&c.cmd("RCPT TO:<reject2@y.example>").await, "421 4.7.0");
    assert!(c.closed().await);
    h.stop().await;
}

#[tokio::test]
async fn limit_nop_commands() {
    let mut cfg = config();
    cfg.max_nop_commands_between_transactions = 2;
    let h = Harness::start(cfg, QmgrScript::default()).await;
    let mut c = h.client().await;
    code(&c.reply().await, "220");
    code(&c.cmd("NOOP").await, "250");
    code(&c.cmd("RSET").await, "250");
    code(&c.cmd("NOOP").await, "421 4.7.0");
    h.stop().await;
}

#[tokio::test]
async fn limit_recipients_and_transactions() {
    let mut cfg = config();
    cfg.max_recipients_per_transaction = 100;
    cfg.max_recipients_per_session = 150;
    cfg.max_transactions = 2;
    let h = Harness::start(cfg, QmgrScript::default()).await;
    let mut c = h.client().await;
    greet(&mut c).await;
    code(&c.cmd("MAIL FROM:<s@x.example>").await, "250");
    for i in 0..100 {
        code(&c.cmd(&format!("RCPT TO:<r{i}@y.example>")).await, "250");
    }
    code(&c.cmd("RCPT TO:<r100@y.example>").await, "452 4.5.3");
    code(&c.cmd("RSET").await, "250");
    code(&c.cmd("MAIL FROM:<s@x.example>").await, "250");
    for i in 0..50 {
        code(&c.cmd(&format!("RCPT TO:<q{i}@y.example>")).await, "250");
    }
    code(&c.cmd("RCPT TO:<q50@y.example>").await, "452 4.5.3");
    code(&c.cmd("RSET").await, "250");
    code(&c.cmd("MAIL FROM:<s@x.example>").await, "421 4.7.0");
    h.stop().await;
}

#[tokio::test]
async fn limit_error_recipients() {
    let mut cfg = config();
    cfg.max_error_recipients = 1;
    let h = Harness::start(cfg, QmgrScript::default()).await;
    let mut c = h.client().await;
    greet(&mut c).await;
    code(&c.cmd("MAIL FROM:<>").await, "250");
    code(&c.cmd("RCPT TO:<a@y.example>").await, "250");
    code(&c.cmd("RCPT TO:<b@y.example>").await, "550 5.7.1");
    h.stop().await;
}

#[tokio::test]
async fn limit_message_size() {
    let mut cfg = config();
    cfg.max_message_size = KbSize::kb(64);
    let h = Harness::start(cfg, QmgrScript::default()).await;
    let mut c = h.client().await;
    let ehlo = {
        code(&c.reply().await, "220");
        c.cmd("EHLO c.example").await
    };
    assert!(ehlo.contains("SIZE 65536"), "{ehlo}");
    code(&c.cmd("MAIL FROM:<s@x.example>").await, "250");
    code(&c.cmd("RCPT TO:<a@y.example>").await, "250");
    code(&c.cmd("DATA").await, "354");
    let line = format!("{}\r\n", "x".repeat(998));
    for _ in 0..100 {
        c.send(line.as_bytes()).await;
    }
    c.send(b".\r\n").await;
    code(&c.reply().await, "552 5.3.4");
    // BDAT beyond the limit.
    code(&c.cmd("MAIL FROM:<s@x.example>").await, "250");
    code(&c.cmd("RCPT TO:<a@y.example>").await, "250");
    c.send(b"BDAT 70000 LAST\r\n").await;
    c.send(&vec![b'a'; 70000]).await;
    code(&c.reply().await, "552 5.3.4");
    code(&c.cmd("NOOP").await, "250");
    assert!(h.envelopes().is_empty());
    assert_eq!(h.cdb_files(), 0);
    h.stop().await;
}

#[tokio::test]
async fn limit_hops() {
    let mut cfg = config();
    cfg.max_hops = 3;
    let h = Harness::start(cfg, QmgrScript::default()).await;
    let mut c = h.client().await;
    greet(&mut c).await;
    for (n, want) in [(3, "250"), (4, "554 5.4.6")] {
        code(&c.cmd("MAIL FROM:<s@x.example>").await, "250");
        code(&c.cmd("RCPT TO:<a@y.example>").await, "250");
        code(&c.cmd("DATA").await, "354");
        for i in 0..n {
            c.send(format!("Received: from hop{i}\r\n\tby x; date\r\n").as_bytes())
                .await;
        }
        c.send(b"Subject: loop\r\n\r\nReceived: in the body does not count\r\n.\r\n")
            .await;
        code(&c.reply().await, want);
    }
    assert_eq!(h.envelopes().len(), 1);
    h.stop().await;
}

#[tokio::test]
async fn limit_io_timeout() {
    let mut cfg = config();
    cfg.io_timeout = Time::secs(1);
    let h = Harness::start(cfg, QmgrScript::default()).await;
    let mut c = h.client().await;
    code(&c.reply().await, "220");
    code(&c.reply().await, "421 4.4.2");
    assert!(c.closed().await);
    h.stop().await;
}

#[tokio::test]
async fn limit_connections_per_ip() {
    let mut cfg = config();
    cfg.max_connections_per_ip = 2;
    let h = Harness::start(cfg, QmgrScript::default()).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = h.client().await;
        code(&c.reply().await, "220");
        held.push(c);
    }
    // Refusals: 450 and the server closes its side.
    let mut refused = Vec::new();
    for _ in 0..6 {
        let mut c = h.client().await;
        code(&c.reply().await, "450 4.7.0");
        assert!(c.closed().await);
        refused.push(c);
    }
    // The client keeps those 6 open: with the 2 sessions that is 4 times
    // the limit, and the next connection is closed without a reply.
    let mut c = h.client().await;
    assert_eq!(c.reply().await, "", "silent close beyond 4 times the limit");
    // Once the client lets go, it gets replies again.
    drop(refused);
    let mut back = false;
    for _ in 0..50 {
        let mut c = h.client().await;
        if c.reply().await.starts_with("450") {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back);
    drop(held);
    h.stop().await;
}

#[tokio::test]
async fn ehlo_checks() {
    let mut cfg = config();
    cfg.flags.strict_ehlo_checks = true;
    let h = Harness::start(cfg, QmgrScript::default()).await;
    let mut c = h.client().await;
    code(&c.reply().await, "220");
    code(&c.cmd("EHLO localhostonly").await, "501 5.5.4");
    code(&c.cmd("EHLO [192.0.2.9]").await, "501 5.5.4");
    code(&c.cmd("EHLO [127.0.0.1]").await, "250");
    // Our own name from another address: identity theft (seed 6.3.2);
    // 127.0.0.1 itself is exempt.
    code(&c.cmd("EHLO mx.test.example").await, "250");
    let mut c = Client::connect_from(h.addr, "127.0.0.2".parse().unwrap()).await;
    code(&c.reply().await, "220");
    code(&c.cmd("EHLO mx.test.example").await, "550 5.7.1");
    code(&c.cmd("EHLO other.example").await, "250");
    h.stop().await;
}

#[tokio::test]
async fn soft_bounce_and_contact_pointer() {
    let mut cfg = config();
    cfg.flags.soft_bounce = true;
    cfg.contact_pointer_message = Some("see https://policy.example".into());
    let h = Harness::start(cfg, QmgrScript::default()).await;
    let mut c = h.client().await;
    greet(&mut c).await;
    code(&c.cmd("MAIL FROM:<s@x.example>").await, "250");
    let r = c.cmd("RCPT TO:<reject@y.example>").await;
    code(&r, "450 4.7.1");
    assert!(r.contains("see https://policy.example"), "{r}");
    h.stop().await;
}

#[tokio::test]
async fn require_ehlo_off_and_sloppy_clients() {
    let mut cfg = config();
    cfg.flags.require_ehlo_before_mail = false;
    cfg.sloppy_clients = vec!["*.sloppy.example".into()];
    let h = Harness::start(cfg, QmgrScript::default()).await;
    let mut c = h.client().await;
    code(&c.reply().await, "220");
    code(&c.cmd("MAIL FROM:<s@x.example>").await, "250");
    code(&c.cmd("RSET").await, "250");
    code(&c.cmd("EHLO strict.example").await, "250");
    code(&c.cmd("MAIL FROM: s@x.example").await, "501");
    code(&c.cmd("EHLO pc.sloppy.example").await, "250");
    code(&c.cmd("MAIL FROM: s@x.example").await, "250");
    h.stop().await;
}

#[tokio::test]
async fn tarpit_slows_error_replies() {
    let mut cfg = config();
    cfg.tarpit.initial = Time(Duration::from_millis(200));
    cfg.tarpit.exponent = 1.0;
    cfg.tarpit.max = Time::secs(1);
    let h = Harness::start(cfg, QmgrScript::default()).await;
    let mut c = h.client().await;
    greet(&mut c).await;
    let t = std::time::Instant::now();
    code(&c.cmd("NOOP").await, "250");
    let ok = t.elapsed();
    let t = std::time::Instant::now();
    code(&c.cmd("BOGUS").await, "500");
    code(&c.cmd("BOGUS").await, "500");
    let slow = t.elapsed();
    // 200 ms, then 400 ms.
    assert!(slow >= Duration::from_millis(550), "{slow:?}");
    assert!(ok < Duration::from_millis(200), "{ok:?}");
    h.stop().await;
}

#[tokio::test]
async fn shutdown_tells_idle_clients() {
    let h = Harness::start(config(), QmgrScript::default()).await;
    let mut c = h.client().await;
    greet(&mut c).await;
    let t = std::time::Instant::now();
    let stop = tokio::spawn(h.stop());
    code(&c.reply().await, "421 4.3.2");
    assert!(c.closed().await);
    stop.await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[tokio::test]
async fn prdr_per_recipient_replies() {
    let mut cfg = config();
    cfg.flags.prdr = true;
    let h = Harness::start(cfg, QmgrScript::default()).await;
    let mut c = h.client().await;
    code(&c.reply().await, "220");
    let ehlo = c.cmd("EHLO c.example").await;
    assert!(ehlo.contains("250-PRDR\r\n"), "{ehlo}");
    code(&c.cmd("MAIL FROM:<s@x.example> PRDR").await, "250");
    code(&c.cmd("RCPT TO:<a@y.example>").await, "250");
    code(&c.cmd("RCPT TO:<b@y.example>").await, "250");
    code(&c.cmd("DATA").await, "354");
    c.send(b"Subject: x\r\n\r\nx\r\n.\r\n").await;
    code(&c.reply().await, "353");
    let a = c.reply().await;
    code(&a, "250 2.1.5 <a@y.example>");
    code(&c.reply().await, "250 2.1.5 <b@y.example>");
    code(&c.reply().await, "250 2.0.0");
    // Without the flag, PRDR is an unknown extension.
    h.stop().await;
    let h = Harness::start(config(), QmgrScript::default()).await;
    let mut c = h.client().await;
    greet(&mut c).await;
    code(&c.cmd("MAIL FROM:<s@x.example> PRDR").await, "555 5.5.4");
    h.stop().await;
}
