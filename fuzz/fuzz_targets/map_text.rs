//! Fuzzes the map parsers that read files and peers: text maps (a parsed
//! map written as text parses to the same entries), netstrings (a decoded
//! payload encodes to the same bytes) and socket map replies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smx_maps::{netstring, text};

fuzz_target!(|data: &[u8]| {
    if let Ok(parsed) = text::parse(data) {
        let mut again = Vec::new();
        for e in &parsed.entries {
            again.extend_from_slice(e.key.as_bytes());
            again.push(b' ');
            again.extend_from_slice(e.value.as_bytes());
            again.push(b'\n');
        }
        match text::parse(&again) {
            Ok(p) => {
                let kv = |es: &[text::Entry]| -> Vec<(String, String)> {
                    es.iter().map(|e| (e.key.clone(), e.value.clone())).collect()
                };
                assert_eq!(kv(&p.entries), kv(&parsed.entries));
            }
            Err(e) => panic!("re-written map does not parse: {e:?}"),
        }
    }
    if let Ok(netstring::Decoded::Complete { payload, consumed }) = netstring::decode(data, 1 << 16) {
        assert!(consumed <= data.len());
        assert_eq!(netstring::encode(payload), data[..consumed].to_vec());
        let _ = netstring::parse_reply(payload);
    }
});
