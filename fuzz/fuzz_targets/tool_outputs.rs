//! What tools and servers print back: `etcdutl snapshot status` tables, Prometheus
//! metrics, `/version` bodies and `--endpoints` lists; parsing never panics.
#![no_main]

use etcd_drill::cluster::snapshot::parse_snapshot_status;
use etcd_drill::etcd::http::parse_versions;
use etcd_drill::etcd::parse_endpoints;
use etcd_drill::perf::metrics::parse_exposition;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse_snapshot_status(&text);
    let _ = parse_versions(&text);
    let _ = parse_exposition(&text, &["process_resident_memory_bytes", "etcd_mvcc_db_total_size_in_bytes"]);
    let list: Vec<String> = text.split('\n').map(String::from).collect();
    if let Err(e) = parse_endpoints(&list) {
        assert!(e.to_string().contains("--endpoints"), "{e}");
    }
});
