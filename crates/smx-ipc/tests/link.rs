//! Handshake and request multiplexing over `UnixStream::pair()` with a
//! scripted peer (STYLE habit 8).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use smx_ipc::frame::{FrameReader, FrameWriter};
use smx_ipc::smtps_qmgr::{
    NewSession, QmgrNotice, QmgrReply, SmtpsQmgr, SmtpsRequest, ThrottleReason,
};
use smx_ipc::smtps_smar::{SmarReply, SmarRequest, SmtpsSmar};
use smx_ipc::types::{SessionId, SmtpReply};
use smx_ipc::{
    Client, DEFAULT_MAX_FRAME, Hello, HelloRejection, HelloReply, IpcError, LinkDown,
    PROTOCOL_VERSION, Server, ServiceName,
};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::task::JoinSet;

const MAX: u32 = DEFAULT_MAX_FRAME;
const LONG: Duration = Duration::from_secs(30);

fn localhost() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}

fn mail_check(i: usize) -> SmarRequest {
    SmarRequest::MailCheck {
        sender: format!("user{i}@example.org"),
        client_ip: localhost(),
    }
}

fn reject(text: String) -> SmarReply {
    SmarReply::Reject(SmtpReply {
        code: 550,
        enhanced: None,
        text,
    })
}

/// A connected client and server of link `L`.
async fn linked<L: smx_ipc::Link>() -> (Client<L>, tokio::sync::mpsc::Receiver<L::Notice>, Server<L>)
{
    let (a, b) = UnixStream::pair().expect("socketpair");
    let server = tokio::spawn(Server::<L>::accept(b, MAX));
    let (client, notices) = Client::<L>::connect(a, MAX)
        .await
        .expect("client handshake");
    let server = server.await.expect("join").expect("server handshake");
    (client, notices, server)
}

#[tokio::test]
async fn handshake_succeeds() {
    let (client, _notices, mut server) = linked::<SmtpsQmgr>().await;
    assert_eq!(client.down(), None);
    drop(client);
    // The client closing is a clean end of the link for the server.
    assert!(matches!(server.recv().await, Ok(None)));
}

#[tokio::test]
async fn wrong_service_fails_both_sides() {
    let (a, b) = UnixStream::pair().expect("socketpair");
    let server = tokio::spawn(Server::<SmtpsQmgr>::accept(b, MAX));
    let client = Client::<SmtpsSmar>::connect(a, MAX).await;
    match client {
        Err(IpcError::Rejected(HelloRejection::WrongService { offered, requested })) => {
            assert_eq!(offered, ServiceName::SmtpsQmgr);
            assert_eq!(requested, ServiceName::SmtpsSmar);
        }
        other => panic!("client: want Rejected(WrongService), got {other:?}"),
    }
    match server.await.expect("join") {
        Err(IpcError::WrongService { expected, got }) => {
            assert_eq!(expected, ServiceName::SmtpsQmgr);
            assert_eq!(got, ServiceName::SmtpsSmar);
        }
        other => panic!("server: want WrongService, got {other:?}"),
    }
}

/// A raw client (no `Client`) shows what is on the wire: the rejection
/// frame, then the end of the stream.
#[tokio::test]
async fn wrong_version_is_rejected_and_the_link_closed() {
    let (a, b) = UnixStream::pair().expect("socketpair");
    let server = tokio::spawn(Server::<SmtpsQmgr>::accept(b, MAX));
    let (rd, wr) = a.into_split();
    let mut writer = FrameWriter::<_, Hello>::new(wr, MAX);
    let mut reader = FrameReader::<_, HelloReply>::new(rd, MAX);
    writer
        .write(&Hello {
            service: ServiceName::SmtpsQmgr,
            version: PROTOCOL_VERSION + 98,
        })
        .await
        .expect("write hello");
    assert_eq!(
        reader.read().await.expect("reply"),
        Some(HelloReply::Reject(HelloRejection::UnsupportedVersion {
            supported: PROTOCOL_VERSION,
            requested: PROTOCOL_VERSION + 98,
        }))
    );
    assert!(matches!(
        server.await.expect("join"),
        Err(IpcError::UnsupportedVersion { got, supported })
            if got == PROTOCOL_VERSION + 98 && supported == PROTOCOL_VERSION
    ));
    // The server closed the link.
    assert!(matches!(reader.read().await, Ok(None)));
}

/// A server that acks with another version: the client refuses and closes.
#[tokio::test]
async fn client_refuses_a_server_of_another_version() {
    let (a, b) = UnixStream::pair().expect("socketpair");
    let peer = tokio::spawn(async move {
        let (rd, wr) = b.into_split();
        let mut reader = FrameReader::<_, Hello>::new(rd, MAX);
        let mut writer = FrameWriter::<_, HelloReply>::new(wr, MAX);
        let hello = reader.read().await.expect("hello").expect("a frame");
        assert_eq!(hello.service, ServiceName::SmtpsSmar);
        assert_eq!(hello.version, PROTOCOL_VERSION);
        writer
            .write(&HelloReply::Ack {
                service: ServiceName::SmtpsSmar,
                version: 7,
            })
            .await
            .expect("write ack");
        // The client closes the link.
        assert!(matches!(reader.read().await, Ok(None)));
    });
    match Client::<SmtpsSmar>::connect(a, MAX).await {
        Err(IpcError::UnsupportedVersion { got: 7, supported }) => {
            assert_eq!(supported, PROTOCOL_VERSION);
        }
        other => panic!("want UnsupportedVersion, got {other:?}"),
    }
    peer.await.expect("peer");
}

#[tokio::test]
async fn peer_closing_during_handshake_is_closed() {
    let (a, b) = UnixStream::pair().expect("socketpair");
    drop(b);
    assert!(matches!(
        Client::<SmtpsQmgr>::connect(a, MAX).await,
        Err(IpcError::Closed) | Err(IpcError::Io(_))
    ));
}

#[tokio::test]
async fn hundred_concurrent_requests_answered_out_of_order() {
    let (client, _notices, mut server) = linked::<SmtpsSmar>().await;
    let client = Arc::new(client);
    let mut tasks = JoinSet::new();
    for i in 0..100 {
        let client = Arc::clone(&client);
        tasks.spawn(async move {
            let reply = client.request(mail_check(i), LONG).await.expect("reply");
            assert_eq!(reply, reject(format!("user{i}@example.org")));
        });
    }
    // Read all 100, then answer in a scrambled order.
    let mut requests = Vec::new();
    for _ in 0..100 {
        requests.push(server.recv().await.expect("read").expect("a request"));
    }
    let mut order: Vec<usize> = (0..100).map(|k| (k * 37) % 100).collect();
    order.reverse();
    for k in order {
        let req = &requests[k];
        let SmarRequest::MailCheck { sender, .. } = &req.body else {
            panic!("unexpected request {req:?}");
        };
        server
            .reply(req.id, reject(sender.clone()))
            .await
            .expect("reply");
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("request task");
    }
    assert_eq!(client.outstanding(), 0);
}

#[tokio::test]
async fn peer_closing_fails_outstanding_requests() {
    let (client, _notices, mut server) = linked::<SmtpsSmar>().await;
    let client = Arc::new(client);
    let mut tasks = JoinSet::new();
    for i in 0..10 {
        let client = Arc::clone(&client);
        tasks.spawn(async move { (i, client.request(mail_check(i), LONG).await) });
    }
    let mut answered = Vec::new();
    for n in 0..10 {
        let req = server.recv().await.expect("read").expect("a request");
        if n % 2 == 0 {
            let SmarRequest::MailCheck { sender, .. } = req.body else {
                panic!("unexpected request");
            };
            answered.push(sender.clone());
            server.reply(req.id, reject(sender)).await.expect("reply");
        }
    }
    drop(server);
    let (mut ok, mut failed) = (0, 0);
    while let Some(done) = tasks.join_next().await {
        match done.expect("request task") {
            (i, Ok(reply)) => {
                assert!(answered.contains(&format!("user{i}@example.org")));
                assert_eq!(reply, reject(format!("user{i}@example.org")));
                ok += 1;
            }
            (_, Err(IpcError::LinkDown(LinkDown::Closed))) => failed += 1,
            (_, Err(e)) => panic!("want LinkDown(Closed), got {e:?}"),
        }
    }
    assert_eq!((ok, failed), (5, 5));
    assert_eq!(client.down(), Some(LinkDown::Closed));
    // Later requests fail at once.
    assert!(matches!(
        client.request(mail_check(99), LONG).await,
        Err(IpcError::LinkDown(LinkDown::Closed))
    ));
}

#[tokio::test(start_paused = true)]
async fn timeout_fails_one_request_and_keeps_the_link() {
    let (client, _notices, mut server) = linked::<SmtpsSmar>().await;
    let started = tokio::time::Instant::now();
    let client = Arc::new(client);
    let slow = {
        let client = Arc::clone(&client);
        tokio::spawn(async move { client.request(mail_check(1), Duration::from_secs(5)).await })
    };
    let first = server.recv().await.expect("read").expect("a request");
    match slow.await.expect("join") {
        Err(IpcError::Timeout { id, after }) => {
            assert_eq!(id, first.id);
            assert_eq!(after, Duration::from_secs(5));
        }
        other => panic!("want Timeout, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_secs(5));
    assert_eq!(client.outstanding(), 0);
    // A late reply is dropped; the link still works.
    server
        .reply(first.id, SmarReply::Discard)
        .await
        .expect("late reply");
    let next = {
        let client = Arc::clone(&client);
        tokio::spawn(async move { client.request(mail_check(2), LONG).await })
    };
    let second = server.recv().await.expect("read").expect("a request");
    assert_ne!(second.id, first.id);
    server
        .reply(second.id, SmarReply::Accept { quick: false })
        .await
        .expect("reply");
    assert_eq!(
        next.await.expect("join").expect("reply"),
        SmarReply::Accept { quick: false }
    );
    assert_eq!(client.down(), None);
}

#[tokio::test]
async fn bad_frame_from_peer_fails_the_link_and_closes_it() {
    let (client, _notices, server) = linked::<SmtpsQmgr>().await;
    let client = Arc::new(client);
    let pending = {
        let client = Arc::clone(&client);
        tokio::spawn(async move {
            client
                .request(SmtpsRequest::CloseSession { session: sid(1) }, LONG)
                .await
        })
    };
    let (mut reader, writer) = server.into_split();
    let req = reader.read().await.expect("read").expect("a request");
    assert!(matches!(req.body, SmtpsRequest::CloseSession { .. }));
    // A reply frame with an unknown reply variant.
    let mut raw = writer.into_inner();
    raw.write_all(&[0, 0, 0, 3, 0, 1, 250])
        .await
        .expect("write garbage");
    assert!(matches!(
        pending.await.expect("join"),
        Err(IpcError::LinkDown(LinkDown::BadFrame))
    ));
    // The client closed its side of the link.
    assert!(matches!(reader.read().await, Ok(None)));
}

#[tokio::test]
async fn oversized_frame_from_peer_fails_the_link() {
    let (client, _notices, server) = linked::<SmtpsQmgr>().await;
    let (_reader, writer) = server.into_split();
    let mut raw = writer.into_inner();
    raw.write_all(&(MAX + 1).to_be_bytes())
        .await
        .expect("write header");
    assert!(matches!(
        client
            .request(SmtpsRequest::CloseSession { session: sid(2) }, LONG)
            .await,
        Err(IpcError::LinkDown(LinkDown::BadFrame))
    ));
}

#[tokio::test]
async fn session_request_and_throttle_notice() {
    let (client, mut notices, mut server) = linked::<SmtpsQmgr>().await;
    let client = Arc::new(client);
    let asked = {
        let client = Arc::clone(&client);
        tokio::spawn(async move {
            client
                .request(
                    SmtpsRequest::NewSession(NewSession {
                        session: sid(3),
                        client_ip: localhost(),
                        client_port: 40000,
                        server_ip: localhost(),
                        server_port: 25,
                    }),
                    LONG,
                )
                .await
        })
    };
    let req = server.recv().await.expect("read").expect("a request");
    let refused = SmtpReply {
        code: 421,
        enhanced: Some(smx_ipc::types::EnhancedCode {
            class: 4,
            subject: 3,
            detail: 2,
        }),
        text: "too many connections".into(),
    };
    server
        .notice(QmgrNotice::Throttle {
            max_sessions: 0,
            reason: ThrottleReason::DiskSpace,
        })
        .await
        .expect("notice");
    server
        .reply(req.id, QmgrReply::SessionRefused(refused.clone()))
        .await
        .expect("reply");
    assert_eq!(
        asked.await.expect("join").expect("reply"),
        QmgrReply::SessionRefused(refused)
    );
    assert_eq!(
        notices.recv().await,
        Some(QmgrNotice::Throttle {
            max_sessions: 0,
            reason: ThrottleReason::DiskSpace
        })
    );
}

#[tokio::test]
async fn request_above_the_frame_limit_is_refused_and_the_link_stays() {
    let (a, b) = UnixStream::pair().expect("socketpair");
    let server = tokio::spawn(Server::<SmtpsSmar>::accept(b, 128));
    let (client, _notices) = Client::<SmtpsSmar>::connect(a, 128).await.expect("connect");
    let _server = server.await.expect("join").expect("accept");
    let big = SmarRequest::MailCheck {
        sender: "x".repeat(500),
        client_ip: localhost(),
    };
    assert!(matches!(
        client.request(big, LONG).await,
        Err(IpcError::FrameTooLarge { max: 128, .. })
    ));
    assert_eq!(client.down(), None);
    assert_eq!(client.outstanding(), 0);
}

fn sid(counter: u64) -> SessionId {
    SessionId {
        counter,
        process: 0,
    }
}
