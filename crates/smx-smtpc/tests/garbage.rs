//! Arbitrary bytes in place of any reply: every recipient still gets a
//! result, nothing panics, nothing hangs.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use proptest::prelude::*;
use smx_ipc::qmgr_smtpc::RecipientStatus;
use smx_smtpc::{ClientConfig, Timeouts};

const STEPS: [&str; 6] = ["CONNECT", "EHLO", "MAIL", "RCPT", "DATA", "."];

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn garbage_reply_at_any_step(
        step in 0usize..STEPS.len(),
        garbage in proptest::collection::vec(any::<u8>(), 0..600),
        pipelining in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let mut store = Store::new();
            let c = store.put(&message(2000));
            let garbage = String::from_utf8_lossy(&garbage).into_owned();
            let caps: &[&str] = if pipelining { &["PIPELINING"] } else { &[] };
            let base = esmtp("peer.test", caps);
            let srv = Scripted::start(move |cmd| {
                let up = cmd.to_ascii_uppercase();
                if up.starts_with(STEPS[step]) || (STEPS[step] == "." && up == ".") {
                    Act::Send(garbage.clone())
                } else {
                    base(cmd)
                }
            })
            .await;
            let cfg = ClientConfig {
                timeouts: Timeouts::uniform(Duration::from_millis(300)),
                ..config()
            };
            let d = deliverer(&store, cfg);
            let r = tokio::time::timeout(
                Duration::from_secs(20),
                d.deliver(&delivery(
                    c,
                    "s@x.org",
                    "",
                    &[("a@x.org", ""), ("b@x.org", "")],
                    tcp(srv.addr, false),
                )),
            )
            .await
            .expect("no hang");
            assert_eq!(r.recipients.len(), 2);
            for x in &r.recipients {
                match x.status {
                    RecipientStatus::Delivered => assert_eq!(x.reply.code / 100, 2),
                    RecipientStatus::TempFail => assert_eq!(x.reply.code / 100, 4),
                    RecipientStatus::PermFail => assert_eq!(x.reply.code / 100, 5),
                }
            }
        });
    }
}
