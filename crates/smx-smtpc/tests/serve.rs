//! The service: qmgr's link over a Unix socket, concurrent deliveries into
//! smtp-sink, one reply per request.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use smx_ipc::qmgr_smtpc::{QmgrSmtpc, RecipientStatus::*, SmtpcReply, SmtpcRequest};
use smx_ipc::{Client, DEFAULT_MAX_FRAME};
use tokio::net::{UnixListener, UnixStream};

#[tokio::test]
async fn serve_answers_concurrent_requests_over_the_link() {
    let mut store = Store::new();
    let c = store.put(&message(4096));
    let sink = Sink::start(&[]);
    let sock = store.dir.path().join("smtpc.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let d = Arc::new(deliverer(&store, config()));
    let server = tokio::spawn(smx_smtpc::serve(listener, Arc::clone(&d)));

    let stream = UnixStream::connect(&sock).await.unwrap();
    let (client, _notices) = Client::<QmgrSmtpc>::connect(stream, DEFAULT_MAX_FRAME)
        .await
        .unwrap();
    let client = Arc::new(client);
    let closed = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..30u32 {
        let client = Arc::clone(&client);
        let to = if i % 10 == 9 { closed } else { sink.addr };
        let mut req = delivery(
            c,
            "s@example.org",
            "",
            &[("a@example.org", ""), ("b@example.org", "")],
            tcp(to, false),
        );
        req.da_ta.index = i;
        set.spawn(async move {
            let r = client
                .request(SmtpcRequest::Deliver(req), Duration::from_secs(30))
                .await
                .unwrap();
            (i, r)
        });
    }
    let mut seen = 0;
    while let Some(x) = set.join_next().await {
        let (i, SmtpcReply::Delivered(r)) = x.unwrap();
        assert_eq!(r.da_ta.index, i);
        let want = if i % 10 == 9 { TempFail } else { Delivered };
        assert_eq!(statuses(&r), vec![want, want], "{i}: {r:?}");
        assert_eq!(r.recipients[1].index, 1);
        seen += 1;
    }
    assert_eq!(seen, 30);
    server.abort();
}
