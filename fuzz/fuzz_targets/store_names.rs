//! A file name found in a backup store: never a panic; a name that parses renders back to
//! a name that parses to the same thing.
#![no_main]

use etcd_drill::backup::naming::StoredName;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let name = String::from_utf8_lossy(data);
    if let Some(parsed) = StoredName::parse(&name) {
        assert_eq!(StoredName::parse(&parsed.file()), Some(parsed), "{name:?} does not round-trip");
    }
});
