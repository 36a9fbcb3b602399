//! A report.json given to `report compare`: never a panic; a rejection names the file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = etcd_drill::report::compare::parse_report(&text, Path::new("fuzz/report.json")) {
        let message = e.to_string();
        assert!(message.contains("fuzz/report.json"), "the error does not name the file: {message}");
    }
});
