//! Every input the harness reads from a user or a file, fed arbitrary and mutated bytes
//! (proptest): scenario files, `--budgets` files, `report compare`'s report.json files,
//! backup store file names, delta files (compressed or not), `snapshot status` output,
//! Prometheus metrics, `/version` bodies and `--endpoints` lists. Nothing may panic, and a
//! rejected file's error names the file. Each property runs 256 cases by default;
//! `PROPTEST_CASES=100000 cargo test --test inputs_fuzzed` runs a longer campaign.

use std::path::Path;

use etcd_drill::backup::naming::{Compression, StoredName};
use etcd_drill::backup::record::decode;
use etcd_drill::cluster::snapshot::parse_snapshot_status;
use etcd_drill::etcd::http::parse_versions;
use etcd_drill::etcd::parse_endpoints;
use etcd_drill::perf::metrics::parse_exposition;
use etcd_drill::report::compare::{load_budgets, load_reports};
use etcd_drill::scenario::{self, BUILTIN};
use proptest::prelude::*;

/// A built-in scenario's text with bytes replaced, inserted and cut at seeded places: the
/// near-misses a person makes, which reach deeper than random text.
fn mutated_scenario() -> impl Strategy<Value = String> {
    (
        0..BUILTIN.len(),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    )
        .prop_map(|(which, edits)| {
            let mut bytes = BUILTIN[which].1.as_bytes().to_vec();
            for (at, byte, kind) in edits {
                if bytes.is_empty() {
                    break;
                }
                let i = at.index(bytes.len());
                match kind {
                    0 => bytes[i] = byte,
                    1 => bytes.insert(i, byte),
                    _ => bytes.truncate(i),
                }
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
}

fn written(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

proptest! {
    #[test]
    fn scenario_files_never_panic_and_errors_name_the_file(text in "\\PC{0,400}") {
        if let Err(e) = scenario::parse(&text, Path::new("fuzz/scenario.toml")) {
            prop_assert!(e.to_string().contains("fuzz/scenario.toml"), "{e}");
        }
    }

    #[test]
    fn mutated_scenarios_never_panic_and_errors_name_the_file(text in mutated_scenario()) {
        if let Err(e) = scenario::parse(&text, Path::new("fuzz/mutated.toml")) {
            let message = e.to_string();
            prop_assert!(message.contains("fuzz/mutated.toml"), "{message}");
            prop_assert!(message.len() > "fuzz/mutated.toml: ".len(), "an empty reason: {message}");
        }
    }

    #[test]
    fn budgets_files_never_panic(text in "\\PC{0,200}", known in proptest::sample::select(vec![
        "rto_worse_pct", "procedure_worse_pct", "throughput_worse_pct", "allow_new_data_loss", "lost_worse_pct", "noise_ms",
    ]), value in "[-0-9a-z\"]{0,12}") {
        let dir = tempfile::tempdir().unwrap();
        for content in [text.clone(), format!("{known} = {value}\n")] {
            let path = written(dir.path(), "budgets.toml", &content);
            if let Err(e) = load_budgets(&path) {
                prop_assert!(e.to_string().contains("budgets.toml"), "{e}");
            }
        }
    }

    #[test]
    fn report_files_never_panic(text in "\\PC{0,300}", rto in any::<i64>(), version in any::<i64>()) {
        let dir = tempfile::tempdir().unwrap();
        let near_miss = format!(
            "{{\"format_version\": {version}, \"run_id\": \"r\", \"started_at\": \"x\", \"outcome\": \"pass\", \"scenario\": {{\"name\": \"s\", \"definition\": {text:?}}}, \"recovery\": {{\"rto_ms\": {rto}, \"procedure_ms\": null}}, \"data\": {{\"acked_writes\": 1, \"lost_acked_writes\": 0}}}}"
        );
        for content in [text.clone(), near_miss] {
            let path = written(dir.path(), "report.json", &content);
            if let Err(e) = load_reports(&path) {
                prop_assert!(e.to_string().contains("report.json"), "{e}");
            }
        }
    }

    #[test]
    fn store_file_names_never_panic_and_parse_back(name in "\\PC{0,80}", rev in any::<i64>(), suffix in "(\\.gz|\\.sha256|)") {
        let _ = StoredName::parse(&name);
        for candidate in [format!("full-{rev:020}.db{suffix}"), format!("delta-{rev}-{rev}{suffix}")] {
            if let Some(parsed) = StoredName::parse(&candidate) {
                prop_assert_eq!(StoredName::parse(&parsed.file()), Some(parsed));
            }
        }
    }

    #[test]
    fn delta_files_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode(&bytes);
        let _ = Compression::Gzip.decompress(&bytes);
        let _ = Compression::None.decompress(&bytes);
    }

    #[test]
    fn tool_and_server_outputs_never_panic(text in "\\PC{0,300}", lines in proptest::collection::vec("[a-z_]{1,20}(\\{[a-z=\\\",]{0,20}\\})? [-+0-9.eE]{0,12}", 0..8)) {
        let _ = parse_snapshot_status(&text);
        let _ = parse_versions(&text);
        let _ = parse_exposition(&text, &["process_resident_memory_bytes"]);
        let _ = parse_exposition(&lines.join("\n"), &["a", "process_resident_memory_bytes"]);
        let table = format!("+-----+\n| HASH | REVISION | TOTAL KEYS | TOTAL SIZE |\n| {} |\n", lines.join(" | "));
        let _ = parse_snapshot_status(&table);
    }

    #[test]
    fn endpoint_lists_never_panic_and_errors_name_the_flag(list in proptest::collection::vec("\\PC{0,30}", 0..4)) {
        if let Err(e) = parse_endpoints(&list) {
            prop_assert!(e.to_string().contains("--endpoints"), "{e}");
        }
    }
}
