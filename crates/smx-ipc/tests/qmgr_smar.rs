//! The qmgr → smar link: every message round-trips through the codec,
//! garbage never panics, and a Client and Server talk over a socket pair.

use std::net::IpAddr;
use std::time::Duration;

use proptest::prelude::*;
use smx_ipc::link::{RequestFrame, ServerFrame};
use smx_ipc::qmgr_smar::{
    FailedRcpt, Hop, Protocol, QmgrSmar, Route, RouteReply, RouteRequest, RoutedRcpt,
};
use smx_ipc::smtps_smar::NoNotice;
use smx_ipc::types::{EnhancedCode, SmtpReply};
use smx_ipc::{Client, DEFAULT_MAX_FRAME, FrameCodec, Server};
use tokio_util::bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

type Req = RequestFrame<RouteRequest>;
type Srv = ServerFrame<RouteReply, NoNotice>;

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ]
}

fn reply() -> impl Strategy<Value = SmtpReply> {
    (400u16..600, any::<bool>(), ".{0,30}").prop_map(|(code, e, text)| SmtpReply {
        code,
        enhanced: e.then_some(EnhancedCode {
            class: (code / 100) as u8,
            subject: 1,
            detail: 2,
        }),
        text,
    })
}

fn route() -> impl Strategy<Value = Route> {
    let hop = (
        proptest::option::of("[a-z.]{1,20}"),
        any::<u16>(),
        proptest::collection::vec(ip(), 1..4),
    )
        .prop_map(|(name, preference, addrs)| Hop {
            name,
            preference,
            addrs,
        });
    prop_oneof![
        Just(Route::LmtpSocket),
        (
            any::<bool>(),
            any::<u16>(),
            proptest::collection::vec(hop, 1..4)
        )
            .prop_map(|(lmtp, port, hops)| Route::Hosts {
                protocol: if lmtp {
                    Protocol::Lmtp
                } else {
                    Protocol::Esmtp
                },
                port,
                hops,
            }),
    ]
}

fn route_reply() -> impl Strategy<Value = RouteReply> {
    prop_oneof![
        (
            proptest::collection::vec(
                (".{0,30}", route()).prop_map(|(address, route)| RoutedRcpt { address, route }),
                1..4
            ),
            proptest::option::of(".{0,20}"),
            any::<bool>(),
            proptest::collection::vec(
                (".{0,30}", reply()).prop_map(|(address, reply)| FailedRcpt { address, reply }),
                0..3
            ),
        )
            .prop_map(|(rcpts, owner, verp, failed)| RouteReply::Routed {
                rcpts,
                owner,
                verp,
                failed
            }),
        reply().prop_map(RouteReply::TempFail),
        reply().prop_map(RouteReply::PermFail),
        proptest::option::of(".{0,40}").prop_map(RouteReply::RcptConf),
    ]
}

fn round_trip<T>(msg: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let mut codec = FrameCodec::<T, T>::new();
    let mut buf = BytesMut::new();
    codec.encode(msg, &mut buf).expect("encodes");
    let got = codec.decode(&mut buf).expect("decodes").expect("complete");
    assert_eq!(&got, msg);
    assert!(buf.is_empty());
}

proptest! {
    #[test]
    fn requests_round_trip(id in any::<u64>(), rcpt in ".{0,60}", sender in ".{0,60}") {
        round_trip(&Req { id, body: RouteRequest::Route { rcpt: rcpt.clone(), sender } });
        round_trip(&Req { id, body: RouteRequest::RcptConf { rcpt: rcpt.clone() } });
        let batch = vec![
            RouteRequest::Route { rcpt: rcpt.clone(), sender: String::new() },
            RouteRequest::RcptConf { rcpt },
        ];
        round_trip(&Req { id, body: RouteRequest::Batch(batch) });
    }

    #[test]
    fn batch_replies_round_trip(id in any::<u64>(), body in proptest::collection::vec(route_reply(), 0..5)) {
        round_trip(&Srv::Reply { id, body: RouteReply::Batch(body) });
    }

    #[test]
    fn replies_round_trip(id in any::<u64>(), body in route_reply()) {
        round_trip(&Srv::Reply { id, body });
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        for codec_bytes in [bytes.clone(), {
            let mut v = (bytes.len() as u32).to_be_bytes().to_vec();
            v.extend(&bytes);
            v
        }] {
            let mut c = FrameCodec::<Srv, Srv>::new();
            let mut buf = BytesMut::from(&codec_bytes[..]);
            while let Ok(Some(_)) = c.decode(&mut buf) {}
            let mut c = FrameCodec::<Req, Req>::new();
            let mut buf = BytesMut::from(&codec_bytes[..]);
            while let Ok(Some(_)) = c.decode(&mut buf) {}
        }
    }
}

#[tokio::test]
async fn client_and_server_over_a_socket_pair() {
    let (a, b) = tokio::net::UnixStream::pair().expect("pair");
    let server = tokio::spawn(async move {
        let mut s = Server::<QmgrSmar>::accept(b, DEFAULT_MAX_FRAME)
            .await
            .expect("handshake");
        while let Ok(Some(req)) = s.recv().await {
            let (RouteRequest::Route { rcpt, .. } | RouteRequest::RcptConf { rcpt }) = req.body
            else {
                continue;
            };
            let body = if rcpt.ends_with("@local") {
                RouteReply::Routed {
                    rcpts: vec![RoutedRcpt {
                        address: rcpt,
                        route: Route::LmtpSocket,
                    }],
                    owner: None,
                    verp: false,
                    failed: Vec::new(),
                }
            } else {
                RouteReply::PermFail(SmtpReply {
                    code: 550,
                    enhanced: None,
                    text: "no".into(),
                })
            };
            s.reply(req.id, body).await.expect("reply");
        }
    });
    let (client, _notices) = Client::<QmgrSmar>::connect(a, DEFAULT_MAX_FRAME)
        .await
        .expect("connect");
    let t = Duration::from_secs(5);
    let got = client
        .request(
            RouteRequest::Route {
                rcpt: "u@local".into(),
                sender: String::new(),
            },
            t,
        )
        .await
        .expect("reply");
    assert!(matches!(got, RouteReply::Routed { .. }));
    let got = client
        .request(
            RouteRequest::Route {
                rcpt: "u@remote".into(),
                sender: String::new(),
            },
            t,
        )
        .await
        .expect("reply");
    assert!(matches!(got, RouteReply::PermFail(r) if r.code == 550));
    drop(client);
    server.await.expect("server ends");
}
