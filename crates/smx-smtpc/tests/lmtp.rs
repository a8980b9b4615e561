//! LMTP delivery into Dovecot (its LMTP service configured in a temporary
//! directory), over the Unix socket and over TCP, checked in the Maildirs.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use smx_ipc::qmgr_smtpc::{Destination, RecipientStatus::*};

fn body_of(file: &[u8]) -> String {
    String::from_utf8_lossy(file).replace("\r\n", "\n")
}

#[tokio::test]
async fn dovecot_lmtp_over_unix_socket_and_tcp_delivers_to_maildirs() {
    let dovecot = Dovecot::start();
    let mut store = Store::new();
    let mut msg = message(20_000);
    msg.extend_from_slice(b"MARKER-UNIX\r\n.leading dot\r\n");
    let c = store.put(&msg);
    let d = deliverer(&store, config());

    let dest = Destination::LmtpSocket {
        path: Some(dovecot.socket.display().to_string()),
    };
    let r = d
        .deliver(&delivery(
            c,
            "sender@example.org",
            "",
            &[("joe@example.org", ""), ("ann@example.org", "")],
            dest,
        ))
        .await;
    assert_eq!(statuses(&r), vec![Delivered, Delivered], "{r:?}");
    for x in &r.recipients {
        assert_eq!(x.reply.code, 250);
        assert!(x.reply.lines[0].contains("Saved"), "{:?}", x.reply);
        assert!(!x.relayed);
    }
    assert!(r.recipients[0].reply.lines[0].contains("joe@example.org"));
    assert!(r.recipients[1].reply.lines[0].contains("ann@example.org"));
    for user in ["joe", "ann"] {
        let files = dovecot.maildir(user);
        assert_eq!(files.len(), 1, "{user}");
        let text = body_of(&files[0]);
        assert!(text.contains("MARKER-UNIX\n.leading dot\n"), "{text}");
        assert!(text.contains("Subject: test"));
    }

    // Over TCP (inet LMTP), a second message to joe; a large one so the
    // BDAT path (Dovecot offers CHUNKING) sends several chunks.
    let mut big = message(300_000);
    big.extend_from_slice(b"MARKER-TCP\r\n");
    let c2 = store.put(&big);
    let r = d
        .deliver(&delivery(
            c2,
            "sender@example.org",
            "BODY=8BITMIME",
            &[("joe@example.org", "")],
            tcp(dovecot.addr, true),
        ))
        .await;
    assert_eq!(statuses(&r), vec![Delivered], "{r:?}");
    let files = dovecot.maildir("joe");
    assert_eq!(files.len(), 2);
    let tcp_file = files
        .iter()
        .find(|f| body_of(f).contains("MARKER-TCP"))
        .expect("the TCP message");
    // The whole message arrived: its end and its size.
    assert!(body_of(tcp_file).ends_with("MARKER-TCP\n"));
    assert!(tcp_file.len() >= big.len() - big.iter().filter(|b| **b == b'\r').count());
    d.close_idle().await;
}

#[tokio::test]
async fn dovecot_refuses_an_invalid_recipient_and_takes_the_other() {
    let dovecot = Dovecot::start();
    let mut store = Store::new();
    let c = store.put(&message(1000));
    let d = deliverer(&store, config());
    let dest = Destination::LmtpSocket {
        path: Some(dovecot.socket.display().to_string()),
    };
    let r = d
        .deliver(&delivery(
            c,
            "sender@example.org",
            "",
            &[("bad user\"@@", ""), ("ok@example.org", "")],
            dest,
        ))
        .await;
    assert_eq!(r.recipients[1].status, Delivered, "{r:?}");
    assert_ne!(r.recipients[0].status, Delivered, "{r:?}");
    assert!(r.recipients[0].host.is_some());
    assert_eq!(dovecot.maildir("ok").len(), 1);
}
