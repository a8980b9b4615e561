//! Fuzzes the configuration language: any input must parse or fail with
//! errors, never panic; a configuration that loads must print and load back
//! to an equal configuration.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = smx_conf::syntax::parse_braced_body("fuzz", text);
    if let Ok(config) = smx_conf::load_str("fuzz", text) {
        let printed = smx_conf::print(&config);
        match smx_conf::load_str("printed", &printed) {
            Ok(again) => assert_eq!(config, again, "printed form differs:\n{printed}"),
            Err(e) => panic!("printed configuration does not load: {e}\n{printed}"),
        }
    }
});
