//! The qmgr → smtpc link: messages survive the wire, replies match
//! requests, and the printed forms.

use std::time::Duration;

use smx_ipc::qmgr_smtpc::{
    DaTransactionId, Delivery, DeliveryRecipient, DeliveryResult, Destination, FullReply, Protocol,
    QmgrSmtpc, RecipientResult, RecipientStatus, RequirementsViolation, SmtpcReply, SmtpcRequest,
    Target, TlsRequirements,
};
use smx_ipc::types::{EnhancedCode, TransactionId};
use smx_ipc::{Client, DEFAULT_MAX_FRAME, Server};
use tokio::net::UnixStream;

fn request(i: u32) -> Delivery {
    Delivery {
        da_ta: DaTransactionId {
            process: 1,
            counter: 0x6C8,
            index: i,
        },
        content: TransactionId {
            counter: 0x407E_AE4E,
            process: 0,
        },
        size: 1177,
        sender: "sender@example.org".into(),
        params: "BODY=8BITMIME RET=HDRS".into(),
        recipients: vec![DeliveryRecipient {
            index: 3,
            address: "rcpt@example.org".into(),
            params: "NOTIFY=SUCCESS".into(),
        }],
        destination: if i.is_multiple_of(2) {
            Destination::Hosts {
                protocol: Protocol::Esmtp,
                targets: vec![Target {
                    name: "mx.example.org".into(),
                    addr: "2001:db8::1".parse().expect("addr"),
                    port: Some(2525),
                    tls_requirements: None,
                }],
            }
        } else {
            Destination::LmtpSocket { path: None }
        },
        tls_requirements: i.is_multiple_of(3).then(|| TlsRequirements {
            verified: true,
            encrypted: i == 0,
            common_name: Some("mx.example.org".into()),
            cert_subject: Some("/C=US/O=Example/CN=mx.example.org".into()),
            cert_issuer: Some("/C=US/O=Example CA".into()),
            min_cipher_bits: 128,
            violation: Some(RequirementsViolation::PermFail),
        }),
    }
}

#[tokio::test]
async fn deliveries_round_trip_and_replies_match() {
    let (a, b) = UnixStream::pair().expect("pair");
    let server = tokio::spawn(Server::<QmgrSmtpc>::accept(b, DEFAULT_MAX_FRAME));
    let (client, _n) = Client::<QmgrSmtpc>::connect(a, DEFAULT_MAX_FRAME)
        .await
        .expect("client");
    let mut server = server.await.expect("join").expect("server");
    let echo = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut pending = Vec::new();
        for _ in 0..4 {
            let req = server.recv().await.expect("recv").expect("request");
            let SmtpcRequest::Deliver(d) = &req.body;
            seen.push(d.clone());
            pending.push((req.id, d.clone()));
        }
        // Answer in reverse order.
        for (id, d) in pending.into_iter().rev() {
            let reply = SmtpcReply::Delivered(DeliveryResult {
                da_ta: d.da_ta,
                recipients: vec![RecipientResult {
                    index: d.recipients[0].index,
                    status: RecipientStatus::PermFail,
                    reply: FullReply {
                        code: 550,
                        enhanced: Some(EnhancedCode {
                            class: 5,
                            subject: 1,
                            detail: 1,
                        }),
                        lines: vec!["no such user".into(), "really".into()],
                    },
                    host: Some("mx.example.org[2001:db8::1]:2525".into()),
                    relayed: false,
                }],
            });
            server.reply(id, reply).await.expect("reply");
        }
        seen
    });
    let t = Duration::from_secs(10);
    let (r0, r1, r2, r3) = tokio::join!(
        client.request(SmtpcRequest::Deliver(request(0)), t),
        client.request(SmtpcRequest::Deliver(request(1)), t),
        client.request(SmtpcRequest::Deliver(request(2)), t),
        client.request(SmtpcRequest::Deliver(request(3)), t),
    );
    for (i, r) in [r0, r1, r2, r3].into_iter().enumerate() {
        let SmtpcReply::Delivered(r) = r.expect("reply");
        assert_eq!(r.da_ta.index, i as u32);
        assert_eq!(r.recipients[0].index, 3);
        assert_eq!(r.recipients[0].reply.lines.len(), 2);
    }
    let seen = echo.await.expect("join");
    for (i, d) in seen.into_iter().enumerate() {
        assert_eq!(d, request(i as u32));
    }
}

#[test]
fn printed_forms() {
    let id = DaTransactionId {
        process: 1,
        counter: 0x6C9,
        index: 2,
    };
    assert_eq!(id.to_string(), "C01000006C900000002");
    let r = FullReply {
        code: 250,
        enhanced: Some(EnhancedCode {
            class: 2,
            subject: 0,
            detail: 0,
        }),
        lines: vec!["first".into(), "second".into()],
    };
    assert_eq!(r.to_string(), "250-2.0.0 first\n250 2.0.0 second");
    let empty = FullReply {
        code: 421,
        enhanced: None,
        lines: vec![],
    };
    assert_eq!(empty.to_string(), "421 ");
}
