//! The CLI's machine-readable output without Docker: `list`, `validate` and `report
//! compare` with `-o json` (or etcdctl's `-w json`) print one JSON document that parses,
//! and `validate` lists every scenario and exits 2 when one is invalid; `chaos
//! --plan-only` prints the schedule a seed draws, the same for the same seed and for a
//! replay of its file.

use std::process::Command;

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_etcd-drill"))
}

fn json_of(args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let out = binary().args(args).output().expect("the binary runs");
    let value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: stdout is not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), value)
}

#[test]
fn list_in_json_names_every_built_in_scenario() {
    let (code, listed) = json_of(&["list", "-o", "json"]);
    assert_eq!(code, Some(0));
    let names: Vec<&str> = listed
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|l| l["name"].as_str())
        .collect();
    for (name, _) in etcd_drill::scenario::BUILTIN {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
}

#[test]
fn validate_in_json_lists_each_scenario_and_fails_on_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[faults]]\naction = \"kill\"\nrole = \"leaderz\"\n[recovery]\nprocedure = \"restart\"\n",
    )
    .unwrap();
    let (code, results) = json_of(&["validate", "-w", "json", "server-b-loss", bad.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    let results = results.as_array().expect("an array");
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["ok"], true);
    assert_eq!(results[0]["procedure"], "snapshot-restore");
    assert_eq!(results[1]["ok"], false);
    assert!(results[1]["error"].as_str().unwrap().contains("faults[0].role"));
    let (code, results) = json_of(&["validate", "--output", "json", "quota-exhaustion"]);
    assert_eq!(code, Some(0));
    assert_eq!(results[0]["ok"], true);
}

#[test]
fn report_compare_in_json_names_the_regression() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, rto: u64| {
        let folder = dir.path().join(name);
        std::fs::create_dir_all(&folder).unwrap();
        let report = serde_json::json!({
            "format_version": 1,
            "run_id": name,
            "started_at": format!("2026-12-04T06:00:0{}Z", rto / 5_000),
            "outcome": "pass",
            "image": "etcd-drill/etcd:3.5",
            "scenario": { "name": "server-b-loss", "definition": "" },
            "recovery": { "rto_ms": rto, "procedure_ms": 1000 },
            "data": { "lost_acked_writes": 0, "acked_writes": 500 }
        });
        std::fs::write(folder.join("report.json"), report.to_string()).unwrap();
        folder
    };
    let old = write("old", 5_000);
    let new = write("new", 9_000);
    let out = binary()
        .args([
            "report",
            "compare",
            old.to_str().unwrap(),
            new.to_str().unwrap(),
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    let comparison: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(out.status.code(), Some(1), "{comparison}");
    let changes = comparison["scenarios"][0]["changes"].as_array().expect("changes");
    let rto = changes.iter().find(|c| c["figure"] == "RTO").expect("an rto change");
    assert!(rto["regression"].is_string(), "{rto}");
}

#[test]
fn the_committed_scenario_schema_is_the_generated_one_and_fits_every_built_in_scenario() {
    let generated = etcd_drill::scenario::json_schema();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../reports/schema/scenario.schema.json");
    let committed: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(
        committed == generated,
        "{} is stale: regenerate it with `etcd-drill scenario schema > {}`",
        path.display(),
        path.display()
    );
    let validator = jsonschema::validator_for(&generated).expect("a valid schema");
    let mut texts: Vec<(String, String)> = etcd_drill::scenario::BUILTIN
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    texts.push(("template".into(), etcd_drill::scenario::TEMPLATE.to_string()));
    for (name, text) in texts {
        let value: serde_json::Value = serde_json::to_value(toml::from_str::<toml::Value>(&text).unwrap()).unwrap();
        let errors: Vec<String> = validator.iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{name}: {errors:?}");
    }
    // A key the parser refuses, the schema refuses too.
    let wrong = serde_json::json!({ "workload": { "writerz": 4 } });
    assert!(!validator.is_valid(&wrong));
}

#[test]
fn scenario_init_writes_a_runnable_file_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("night-drill.toml");
    let out = binary()
        .args(["scenario", "init", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&path).unwrap();
    let s = etcd_drill::scenario::parse(&text, &path).unwrap();
    assert_eq!(s.name, "night-drill");
    std::fs::write(&path, "mine").unwrap();
    let again = binary()
        .args(["scenario", "init", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "mine");
    let shown = binary()
        .args(["scenario", "show", "quota-exhaustion"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&shown.stdout).contains("quota_backend_bytes = 16777216"));
    let unknown = binary().args(["scenario", "show", "no-such"]).output().unwrap();
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn chaos_plans_the_same_schedule_for_the_same_seed_and_for_its_replay() {
    let dir = tempfile::tempdir().unwrap();
    let plan = |args: &[&str], out: &str| -> serde_json::Value {
        let out = dir.path().join(out);
        let mut all = vec!["chaos", "--plan-only", "--out", out.to_str().unwrap()];
        all.extend(args);
        let (code, schedule) = json_of(&all);
        assert_eq!(code, Some(0), "{all:?}");
        let written: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("schedule.json")).unwrap()).unwrap();
        assert_eq!(written, schedule, "schedule.json is what was printed");
        schedule
    };
    let first = plan(&["--seed", "11", "--duration", "90s", "--beyond-quorum"], "a");
    assert_eq!(first["seed"], 11);
    assert!(first["incidents"].as_array().unwrap().len() > 5, "{first}");
    assert_eq!(
        first,
        plan(&["--seed", "11", "--duration", "90s", "--beyond-quorum"], "b")
    );
    assert_ne!(
        first,
        plan(&["--seed", "12", "--duration", "90s", "--beyond-quorum"], "c")
    );
    let file = dir.path().join("a/schedule.json");
    assert_eq!(first, plan(&["--replay", file.to_str().unwrap()], "d"));

    // A schedule that takes down a majority before its ending is refused, by key.
    let mut crowded = first.clone();
    crowded["incidents"] = serde_json::json!([
        {"at_ms": 0, "hold_ms": 5000, "kind": "kill", "members": ["etcd1", "etcd2", "etcd3"]}
    ]);
    let bad = dir.path().join("crowded.json");
    std::fs::write(&bad, crowded.to_string()).unwrap();
    let out = binary()
        .args(["chaos", "--plan-only", "--replay", bad.to_str().unwrap(), "--out"])
        .arg(dir.path().join("e"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("crowded.json") && stderr.contains("more than a minority"),
        "{stderr}"
    );
}
