//! A `report compare --budgets` file: never a panic; a rejection names the file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = etcd_drill::report::compare::parse_budgets(&text, Path::new("fuzz/budgets.toml")) {
        let message = e.to_string();
        assert!(message.contains("fuzz/budgets.toml"), "the error does not name the file: {message}");
    }
});
