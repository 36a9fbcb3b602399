//! A delta file of the backup store, compressed or not: decoding never panics.
#![no_main]

use etcd_drill::backup::naming::Compression;
use etcd_drill::backup::record::decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode(data);
    if let Ok(plain) = Compression::Gzip.decompress(data) {
        let _ = decode(&plain);
    }
});
