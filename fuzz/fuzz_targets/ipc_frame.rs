//! Fuzzes the IPC frame decoder with the smtps↔qmgr and smtps↔smar message
//! types and the handshake: arbitrary bytes never panic, a decoded message
//! encodes and decodes to itself.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use serde::{Serialize, de::DeserializeOwned};
use smx_ipc::link::{Link, RequestFrame, ServerFrame};
use smx_ipc::smtps_qmgr::SmtpsQmgr;
use smx_ipc::smtps_smar::SmtpsSmar;
use smx_ipc::{FrameCodec, Hello, HelloReply};
use tokio_util::codec::{Decoder, Encoder};

fn round_trip<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(data: &[u8]) {
    let mut codec: FrameCodec<T, T> = FrameCodec::with_max(64 * 1024);
    let mut src = BytesMut::from(data);
    while let Ok(Some(msg)) = codec.decode(&mut src) {
        let mut out = BytesMut::new();
        if codec.encode(&msg, &mut out).is_ok() {
            let mut check: FrameCodec<T, T> = FrameCodec::with_max(64 * 1024);
            match check.decode(&mut out) {
                Ok(Some(again)) => assert_eq!(again, msg),
                other => panic!("re-encoded frame does not decode: {other:?}"),
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<Hello>(data);
    round_trip::<HelloReply>(data);
    round_trip::<RequestFrame<<SmtpsQmgr as Link>::Request>>(data);
    round_trip::<ServerFrame<<SmtpsQmgr as Link>::Reply, <SmtpsQmgr as Link>::Notice>>(data);
    round_trip::<RequestFrame<<SmtpsSmar as Link>::Request>>(data);
    round_trip::<ServerFrame<<SmtpsSmar as Link>::Reply, <SmtpsSmar as Link>::Notice>>(data);
});
