//! Framing and message encoding: every message type round-trips through
//! the codec; arbitrary bytes, truncated, oversized and garbage frames give
//! `None` or a typed error, never a panic.

use std::fmt::Debug;
use std::net::IpAddr;

use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use smx_ipc::frame::HEADER_LEN;
use smx_ipc::link::{RequestFrame, ServerFrame};
use smx_ipc::smtps_qmgr::{
    Envelope, EnvelopeRecipient, NewSession, QmgrNotice, QmgrReply, SmtpsRequest, ThrottleReason,
};
use smx_ipc::smtps_smar::{NoNotice, SmarReply, SmarRequest};
use smx_ipc::types::{EnhancedCode, SessionId, SmtpReply, TransactionId};
use smx_ipc::{FrameCodec, Hello, HelloRejection, HelloReply, IpcError, ServiceName};
use tokio_util::bytes::{BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

type QmgrReq = RequestFrame<SmtpsRequest>;
type QmgrSrv = ServerFrame<QmgrReply, QmgrNotice>;
type SmarReq = RequestFrame<SmarRequest>;
type SmarSrv = ServerFrame<SmarReply, NoNotice>;

fn round_trip<T>(msg: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let mut codec = FrameCodec::<T, T>::new();
    let mut buf = BytesMut::new();
    codec.encode(msg, &mut buf).expect("encodes");
    let total = buf.len();
    // Every strict prefix is incomplete.
    for cut in 0..total {
        let mut part = BytesMut::from(&buf[..cut]);
        assert!(
            matches!(codec.decode(&mut part), Ok(None)),
            "prefix {cut}/{total} not incomplete"
        );
    }
    let got = codec.decode(&mut buf).expect("decodes").expect("complete");
    assert_eq!(&got, msg);
    assert!(buf.is_empty(), "decoder left {} bytes", buf.len());
}

/// Feeds `bytes` to a decoder of `T` until it stops producing messages.
fn decode_all<T: DeserializeOwned>(bytes: &[u8], max: u32) {
    let mut codec = FrameCodec::<T, T>::with_max(max);
    let mut buf = BytesMut::from(bytes);
    while let Ok(Some(_)) = codec.decode(&mut buf) {}
}

fn text() -> impl Strategy<Value = String> {
    ".{0,40}"
}

fn session() -> impl Strategy<Value = SessionId> {
    (any::<u64>(), any::<u8>()).prop_map(|(counter, process)| SessionId { counter, process })
}

fn transaction() -> impl Strategy<Value = TransactionId> {
    (any::<u64>(), any::<u8>()).prop_map(|(counter, process)| TransactionId { counter, process })
}

fn ip() -> impl Strategy<Value = IpAddr> {
    any::<IpAddr>()
}

fn reply() -> impl Strategy<Value = SmtpReply> {
    (
        any::<u16>(),
        proptest::option::of((any::<u8>(), any::<u16>(), any::<u16>())),
        text(),
    )
        .prop_map(|(code, enhanced, text)| SmtpReply {
            code,
            enhanced: enhanced.map(|(class, subject, detail)| EnhancedCode {
                class,
                subject,
                detail,
            }),
            text,
        })
}

fn service() -> impl Strategy<Value = ServiceName> {
    prop_oneof![
        Just(ServiceName::SmtpsQmgr),
        Just(ServiceName::SmtpsSmar),
        Just(ServiceName::QmgrSmar),
        Just(ServiceName::QmgrSmtpc)
    ]
}

fn smtps_request() -> impl Strategy<Value = SmtpsRequest> {
    let recipient =
        (any::<u32>(), text(), text()).prop_map(|(index, address, params)| EnvelopeRecipient {
            index,
            address,
            params,
        });
    prop_oneof![
        (session(), ip(), any::<u16>(), ip(), any::<u16>()).prop_map(
            |(session, client_ip, client_port, server_ip, server_port)| {
                SmtpsRequest::NewSession(NewSession {
                    session,
                    client_ip,
                    client_port,
                    server_ip,
                    server_port,
                })
            }
        ),
        (
            session(),
            transaction(),
            text(),
            text(),
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(recipient, 0..8)
        )
            .prop_map(
                |(session, id, sender, params, size, arrival_us, recipients)| {
                    SmtpsRequest::Commit(Envelope {
                        session,
                        id,
                        sender,
                        params,
                        size,
                        arrival_us,
                        recipients,
                    })
                }
            ),
        (session(), transaction()).prop_map(|(session, transaction)| SmtpsRequest::Abort {
            session,
            transaction
        }),
        session().prop_map(|session| SmtpsRequest::CloseSession { session }),
        (session(), "[ -~]{0,64}").prop_map(|(session, node)| SmtpsRequest::Etrn { session, node }),
    ]
}

fn qmgr_frame() -> impl Strategy<Value = QmgrSrv> {
    let body = prop_oneof![
        Just(QmgrReply::SessionAccepted),
        reply().prop_map(QmgrReply::SessionRefused),
        Just(QmgrReply::Committed),
        reply().prop_map(QmgrReply::TempFail),
        reply().prop_map(QmgrReply::PermFail),
        Just(QmgrReply::Done),
    ];
    let reason = prop_oneof![
        Just(ThrottleReason::DiskSpace),
        Just(ThrottleReason::QueueFull),
        Just(ThrottleReason::Resources),
    ];
    prop_oneof![
        (any::<u64>(), body).prop_map(|(id, body)| ServerFrame::Reply { id, body }),
        (any::<u32>(), reason).prop_map(|(max_sessions, reason)| ServerFrame::Notice(
            QmgrNotice::Throttle {
                max_sessions,
                reason
            }
        )),
        Just(ServerFrame::Notice(QmgrNotice::Unthrottle)),
    ]
}

fn smar_request() -> impl Strategy<Value = SmarRequest> {
    prop_oneof![
        (ip(), proptest::option::of(text())).prop_map(|(client_ip, client_name)| {
            SmarRequest::ConnectCheck {
                client_ip,
                client_name,
            }
        }),
        (text(), ip()).prop_map(|(sender, client_ip)| SmarRequest::MailCheck { sender, client_ip }),
        (text(), text(), ip()).prop_map(|(rcpt, sender, client_ip)| SmarRequest::RcptCheck {
            rcpt,
            sender,
            client_ip
        }),
        (ip(), proptest::option::of(text())).prop_map(|(client_ip, client_name)| {
            SmarRequest::SessionConf {
                client_ip,
                client_name,
            }
        }),
    ]
}

fn smar_reply() -> impl Strategy<Value = SmarReply> {
    prop_oneof![
        any::<bool>().prop_map(|quick| SmarReply::Accept { quick }),
        any::<bool>().prop_map(|quick| SmarReply::Relay { quick }),
        reply().prop_map(SmarReply::Reject),
        reply().prop_map(SmarReply::TempFail),
        Just(SmarReply::Discard),
        proptest::option::of(text()).prop_map(SmarReply::SessionConf),
    ]
}

fn hello_reply() -> impl Strategy<Value = HelloReply> {
    prop_oneof![
        (service(), any::<u32>())
            .prop_map(|(service, version)| HelloReply::Ack { service, version }),
        (service(), service()).prop_map(|(offered, requested)| HelloReply::Reject(
            HelloRejection::WrongService { offered, requested }
        )),
        (any::<u32>(), any::<u32>()).prop_map(|(supported, requested)| HelloReply::Reject(
            HelloRejection::UnsupportedVersion {
                supported,
                requested
            }
        )),
    ]
}

proptest! {
    #[test]
    fn smtps_requests_round_trip(id in any::<u64>(), body in smtps_request()) {
        round_trip(&QmgrReq { id, body });
    }

    #[test]
    fn qmgr_frames_round_trip(frame in qmgr_frame()) {
        round_trip(&frame);
    }

    #[test]
    fn smar_requests_round_trip(id in any::<u64>(), body in smar_request()) {
        round_trip(&SmarReq { id, body });
    }

    #[test]
    fn smar_replies_round_trip(id in any::<u64>(), body in smar_reply()) {
        round_trip(&SmarSrv::Reply { id, body });
    }

    #[test]
    fn hellos_round_trip(service in service(), version in any::<u32>(), reply in hello_reply()) {
        round_trip(&Hello { service, version });
        round_trip(&reply);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        for max in [16, 1 << 20] {
            decode_all::<QmgrReq>(&bytes, max);
            decode_all::<QmgrSrv>(&bytes, max);
            decode_all::<SmarReq>(&bytes, max);
            decode_all::<SmarSrv>(&bytes, max);
            decode_all::<Hello>(&bytes, max);
            decode_all::<HelloReply>(&bytes, max);
        }
    }

    /// A valid length with random payload: `None`, a message or a typed
    /// error.
    #[test]
    fn framed_garbage_never_panics(payload in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut bytes = (payload.len() as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(&payload);
        decode_all::<QmgrReq>(&bytes, 1 << 20);
        decode_all::<QmgrSrv>(&bytes, 1 << 20);
        decode_all::<SmarReq>(&bytes, 1 << 20);
        decode_all::<SmarSrv>(&bytes, 1 << 20);
    }
}

#[test]
fn oversized_length_is_an_error_before_allocating() {
    let mut codec = FrameCodec::<QmgrReq, QmgrReq>::with_max(1024);
    let mut buf = BytesMut::with_capacity(8);
    buf.put_u32(u32::MAX);
    let before = buf.capacity();
    match codec.decode(&mut buf) {
        Err(IpcError::FrameTooLarge { len, max }) => {
            assert_eq!(len, u64::from(u32::MAX));
            assert_eq!(max, 1024);
        }
        other => panic!("want FrameTooLarge, got {other:?}"),
    }
    assert_eq!(buf.capacity(), before, "decoder reserved memory");

    // One byte over the limit is refused too; exactly the limit is waited for.
    let mut buf = BytesMut::new();
    buf.put_u32(1025);
    assert!(matches!(
        codec.decode(&mut buf),
        Err(IpcError::FrameTooLarge { len: 1025, .. })
    ));
    let mut buf = BytesMut::new();
    buf.put_u32(1024);
    assert!(matches!(codec.decode(&mut buf), Ok(None)));
}

#[test]
fn encoding_above_the_limit_is_refused() {
    let mut codec = FrameCodec::<SmarReq, SmarReq>::with_max(64);
    let msg = SmarReq {
        id: 1,
        body: SmarRequest::MailCheck {
            sender: "x".repeat(100),
            client_ip: IpAddr::from([127, 0, 0, 1]),
        },
    };
    let mut buf = BytesMut::new();
    assert!(matches!(
        codec.encode(&msg, &mut buf),
        Err(IpcError::FrameTooLarge { max: 64, .. })
    ));
    assert!(buf.is_empty());
}

#[test]
fn truncated_frames_are_incomplete() {
    let mut codec = FrameCodec::<QmgrReq, QmgrReq>::new();
    for bytes in [
        &[][..],
        &[0],
        &[0, 0, 0],
        &[0, 0, 0, 5],
        &[0, 0, 0, 5, 1, 2],
    ] {
        let mut buf = BytesMut::from(bytes);
        assert!(matches!(codec.decode(&mut buf), Ok(None)), "{bytes:?}");
    }
}

#[test]
fn garbage_payload_is_a_typed_error() {
    let mut codec = FrameCodec::<QmgrReq, QmgrReq>::new();
    // id 1, then variant index 200: no such request.
    let mut buf = BytesMut::from(&[0, 0, 0, 3, 1, 200, 1][..]);
    assert!(matches!(
        codec.decode(&mut buf),
        Err(IpcError::BadFrame { len: 3, .. })
    ));
    // A payload that ends inside the message.
    let mut buf = BytesMut::from(&[0, 0, 0, 1, 1][..]);
    assert!(matches!(
        codec.decode(&mut buf),
        Err(IpcError::BadFrame { len: 1, .. })
    ));
    // An empty payload.
    let mut buf = BytesMut::from(&[0, 0, 0, 0][..]);
    assert!(matches!(
        codec.decode(&mut buf),
        Err(IpcError::BadFrame { .. })
    ));
    // The empty notice type of smtps↔smar cannot be decoded.
    let mut codec = FrameCodec::<SmarSrv, SmarSrv>::new();
    let mut buf = BytesMut::from(&[0, 0, 0, 2, 1, 0][..]);
    assert!(matches!(
        codec.decode(&mut buf),
        Err(IpcError::BadFrame { .. })
    ));
}

#[test]
fn trailing_bytes_are_a_typed_error() {
    let mut codec = FrameCodec::<Hello, Hello>::new();
    let mut buf = BytesMut::new();
    codec
        .encode(
            &Hello {
                service: ServiceName::SmtpsQmgr,
                version: 1,
            },
            &mut buf,
        )
        .expect("encodes");
    // Append one byte to the payload and fix the length.
    buf.put_u8(0);
    let len = (buf.len() - HEADER_LEN) as u32;
    buf[..HEADER_LEN].copy_from_slice(&len.to_be_bytes());
    assert!(matches!(
        codec.decode(&mut buf),
        Err(IpcError::TrailingBytes { extra: 1 })
    ));
}

#[test]
fn two_frames_in_one_buffer_decode_in_order() {
    let mut codec = FrameCodec::<SmarSrv, SmarSrv>::new();
    let mut buf = BytesMut::new();
    let a = SmarSrv::Reply {
        id: 7,
        body: SmarReply::Discard,
    };
    let b = SmarSrv::Reply {
        id: 8,
        body: SmarReply::Accept { quick: true },
    };
    codec.encode(&a, &mut buf).expect("encodes");
    codec.encode(&b, &mut buf).expect("encodes");
    assert_eq!(codec.decode(&mut buf).expect("ok"), Some(a));
    assert_eq!(codec.decode(&mut buf).expect("ok"), Some(b));
    assert_eq!(codec.decode(&mut buf).expect("ok"), None);
}

#[test]
fn ids_print_like_the_store() {
    let s = SessionId {
        counter: 0x407E_AE38,
        process: 0,
    };
    assert_eq!(s.to_string(), "S00000000407EAE3800");
    let t = TransactionId {
        counter: 0x407E_AE4E,
        process: 0x1A,
    };
    assert_eq!(t.to_string(), "S00000000407EAE4E1A");
}

/// The handshake encoding is frozen across protocol versions (crate doc):
/// these bytes must never change.
#[test]
fn handshake_wire_bytes_are_frozen() {
    let mut buf = BytesMut::new();
    FrameCodec::<Hello, Hello>::new()
        .encode(
            &Hello {
                service: ServiceName::SmtpsSmar,
                version: 1,
            },
            &mut buf,
        )
        .expect("encodes");
    assert_eq!(&buf[..], &[0, 0, 0, 2, 1, 1]);
    let mut buf = BytesMut::new();
    FrameCodec::<HelloReply, HelloReply>::new()
        .encode(
            &HelloReply::Reject(HelloRejection::UnsupportedVersion {
                supported: 1,
                requested: 300,
            }),
            &mut buf,
        )
        .expect("encodes");
    // Reject (1), UnsupportedVersion (1), varint 1, varint 300.
    assert_eq!(&buf[..], &[0, 0, 0, 5, 1, 1, 1, 0xAC, 0x02]);
}

#[test]
fn error_classes() {
    use smx_proto::Class;
    let table: Vec<(IpcError, Class)> = vec![
        (IpcError::Closed, Class::Temporary),
        (
            IpcError::LinkDown(smx_ipc::LinkDown::BadFrame),
            Class::Temporary,
        ),
        (
            IpcError::Timeout {
                id: 1,
                after: std::time::Duration::from_secs(1),
            },
            Class::Temporary,
        ),
        (
            IpcError::UnsupportedVersion {
                got: 2,
                supported: 1,
            },
            Class::Permanent,
        ),
        (
            IpcError::Rejected(HelloRejection::WrongService {
                offered: ServiceName::SmtpsQmgr,
                requested: ServiceName::SmtpsSmar,
            }),
            Class::Permanent,
        ),
    ];
    for (error, want) in table {
        assert_eq!(error.class(), want, "{error}");
    }
}

/// Postcard writes an enum's variant index first: the variants added for
/// the session configuration come last, and the older ones keep their
/// indices, so peers of the same protocol version still agree.
#[test]
fn smtps_smar_variant_indices_are_stable() {
    let ip: IpAddr = "192.0.2.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let first = |b: Vec<u8>| b.first().copied();
    let req = |r: SmarRequest| first(postcard::to_allocvec(&r).unwrap_or_default());
    assert_eq!(
        req(SmarRequest::EhloCheck {
            helo: "x".into(),
            client_ip: ip
        }),
        Some(5)
    );
    assert_eq!(
        req(SmarRequest::SessionConf {
            client_ip: ip,
            client_name: None
        }),
        Some(6)
    );
    let rep = |r: SmarReply| first(postcard::to_allocvec(&r).unwrap_or_default());
    assert_eq!(rep(SmarReply::Discard), Some(4));
    assert_eq!(rep(SmarReply::SessionConf(None)), Some(5));
}
