//! The log lines of seed 10.3 (da_sess, da_ta, ss_ta, mail, rcpt, stat,
//! reply), through smx-log installed as the global subscriber: its own test
//! binary.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use smx_ipc::qmgr_smtpc::RecipientStatus::*;

#[tokio::test]
async fn delivery_logs_session_mail_rcpt_and_final_dot() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("smtpc.log");
    smx_log::init(&smx_log::LogSettings {
        component: "smtpc".into(),
        level: 9,
        destination: smx_log::Destination::File(log.clone()),
    })
    .unwrap();
    let mut store = Store::new();
    let c = store.put(&message(100));
    let srv = Scripted::start(|cmd| {
        if cmd.starts_with("RCPT TO:<b@") {
            Act::Send("550 5.1.1 no, not now, 99% usage\r\n".into())
        } else {
            esmtp("peer.test", &["PIPELINING"])(cmd)
        }
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
    assert_eq!(statuses(&r), vec![Delivered, PermFail]);
    let text = std::fs::read_to_string(&log).unwrap();
    let ss_ta = format!("S{:016X}{:02X}", c.0.counter, c.0.process);
    let da_ta = r.da_ta.to_string();
    let has = |parts: &[&str]| text.lines().any(|l| parts.iter().all(|p| l.contains(p)));
    assert!(
        has(&[
            "da_sess=C01",
            "status=connected",
            &format!("port={}", srv.addr.port()),
            "addr=127.0.0.1"
        ]),
        "{text}"
    );
    assert!(
        has(&[
            &format!("da_ta={da_ta}"),
            &format!("ss_ta={ss_ta}"),
            "mail=<s@x.org>",
            "stat=0",
            "reply=250 2.1.0 sender ok"
        ]),
        "{text}"
    );
    assert!(has(&["rcpt=<a@x.org>", "stat=0"]), "{text}");
    // Peer text is encoded: commas and percent signs as %XX.
    assert!(
        has(&[
            "rcpt=<b@x.org>",
            "stat=550",
            "reply=550 5.1.1 no%2C not now%2C 99%25 usage"
        ]),
        "{text}"
    );
    assert!(has(&["where=final_dot", "size=", "stat=0"]), "{text}");
}
