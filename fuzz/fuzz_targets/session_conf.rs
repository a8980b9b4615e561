//! Fuzzes the session/recipient configuration of map values
//! (`smtps_session_conf:`, `smtpc_rcpt_conf:`): any input must parse or
//! fail with a typed error, never panic; a value that parses must print
//! and parse back to an equal value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smx_conf::SessionConf;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(conf) = SessionConf::parse(text) {
        let printed = conf.to_string();
        match SessionConf::parse(&printed) {
            Ok(again) => assert_eq!(conf, again, "printed form differs:\n{printed}"),
            Err(e) => panic!("printed value does not parse: {e}\n{printed}"),
        }
    }
});
