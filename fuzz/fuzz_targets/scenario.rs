//! A scenario file: parsed and compiled, never a panic; a rejection names the file and
//! says what is wrong.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = etcd_drill::scenario::parse(&text, Path::new("fuzz/scenario.toml")) {
        let message = e.to_string();
        assert!(message.contains("fuzz/scenario.toml"), "the error does not name the file: {message}");
        assert!(message.len() > "fuzz/scenario.toml: ".len(), "the error gives no reason: {message}");
    }
});
