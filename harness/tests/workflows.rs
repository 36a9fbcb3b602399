//! The GitHub workflows cannot run here, so their files are checked instead: each parses
//! as YAML, has least permissions, a concurrency group, jobs with a runner, a time limit
//! and steps, every action pinned to a full commit with its version in a comment, no
//! workflow input pasted into a shell script, and the triggers and commands the issue asks
//! of each workflow.

mod common;

use std::path::PathBuf;

use yaml_rust2::{Yaml, YamlLoader};

fn workflow(name: &str) -> (String, Yaml) {
    let path: PathBuf = common::repo_root().join(".github/workflows").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(docs.len(), 1, "{name}: one YAML document");
    (text, docs.remove(0))
}

fn key<'a>(y: &'a Yaml, k: &str) -> &'a Yaml {
    &y[k]
}

/// Checks every workflow must pass; returns the concatenated `run:` scripts.
fn common_rules(name: &str) -> (Yaml, String) {
    let (text, wf) = workflow(name);
    assert!(key(&wf, "name").as_str().is_some(), "{name}: no name");
    assert!(!key(&wf, "on").is_badvalue(), "{name}: no `on` triggers");
    let permissions = key(&wf, "permissions");
    assert_eq!(
        permissions["contents"].as_str(),
        Some("read"),
        "{name}: top-level permissions must be contents: read"
    );
    assert_eq!(
        permissions.as_hash().map(|h| h.len()),
        Some(1),
        "{name}: only contents: read at the top"
    );
    assert!(
        key(&wf, "concurrency")["group"].as_str().is_some(),
        "{name}: no concurrency group"
    );
    let jobs = key(&wf, "jobs").as_hash().unwrap_or_else(|| panic!("{name}: no jobs"));
    assert!(!jobs.is_empty());
    let mut scripts = String::new();
    for (job_name, job) in jobs {
        let job_name = job_name.as_str().unwrap_or_default();
        assert!(job["runs-on"].as_str().is_some(), "{name}/{job_name}: no runs-on");
        assert!(
            job["timeout-minutes"].as_i64().is_some(),
            "{name}/{job_name}: no timeout-minutes"
        );
        if let Some(p) = job["permissions"].as_hash() {
            for (scope, level) in p {
                let scope = scope.as_str().unwrap_or_default();
                let level = level.as_str().unwrap_or_default();
                assert!(
                    level == "read" || ["checks", "pull-requests"].contains(&scope),
                    "{name}/{job_name}: {scope}: {level} is more than the job needs"
                );
            }
        }
        let steps = job["steps"]
            .as_vec()
            .unwrap_or_else(|| panic!("{name}/{job_name}: no steps"));
        assert!(!steps.is_empty());
        for step in steps {
            let uses = step["uses"].as_str();
            let run = step["run"].as_str();
            assert!(
                uses.is_some() != run.is_some(),
                "{name}/{job_name}: a step needs `uses` or `run`"
            );
            if let Some(run) = run {
                // Inputs go through env:, never straight into a script (script injection).
                assert!(
                    !run.contains("${{"),
                    "{name}/{job_name}: expression inside a run script: {run}"
                );
                scripts.push_str(run);
                scripts.push('\n');
            }
        }
    }
    // Every action is pinned to a full commit, with the version it stands for.
    for line in text
        .lines()
        .filter(|l| l.trim_start().starts_with("- uses:") || l.trim_start().starts_with("uses:"))
    {
        let reference = line.split("uses:").nth(1).unwrap_or_default().trim();
        let (action, rest) = reference
            .split_once('@')
            .unwrap_or_else(|| panic!("{name}: unpinned: {line}"));
        let sha = rest.split_whitespace().next().unwrap_or_default();
        assert!(
            sha.len() == 40 && sha.chars().all(|c| c.is_ascii_hexdigit()),
            "{name}: {action} is not pinned to a commit: {line}"
        );
        assert!(
            rest.contains("# v"),
            "{name}: {action}: say which version the commit is: {line}"
        );
    }
    (wf, scripts)
}

#[test]
fn ci_lints_tests_and_uploads() {
    let (wf, scripts) = common_rules("ci.yml");
    let on = key(&wf, "on");
    assert!(
        !on["push"].is_badvalue() && !on["pull_request"].is_badvalue(),
        "ci runs on push and pull_request"
    );
    assert!(scripts.contains("cargo fmt --all -- --check"));
    assert!(scripts.contains("cargo clippy --all-targets -- -D warnings"));
    assert!(scripts.contains(".ci/run"));
    // A pull request from a fork has no `checks: write`: the JUnit check is not published.
    let steps = wf["jobs"]["test"]["steps"].as_vec().expect("test steps");
    let junit = steps
        .iter()
        .find(|s| s["uses"].as_str().is_some_and(|u| u.contains("action-junit-report")))
        .expect("a JUnit step");
    assert!(
        junit["if"]
            .as_str()
            .is_some_and(|c| c.contains("head.repo.full_name == github.repository")),
        "the JUnit step must skip pull requests from forks"
    );
    assert!(
        std::fs::read_to_string(common::repo_root().join(".github/workflows/ci.yml"))
            .unwrap()
            .contains("actions/upload-artifact@")
    );
}

#[test]
fn nightly_drills_a_matrix_of_images_and_compares_with_the_last_night() {
    let (wf, scripts) = common_rules("nightly-drill.yml");
    let on = key(&wf, "on");
    assert!(on["schedule"][0]["cron"].as_str().is_some(), "nightly needs a schedule");
    assert!(
        on["workflow_dispatch"]["inputs"]["image_tags"]["default"]
            .as_str()
            .is_some(),
        "nightly takes image tags on demand"
    );
    let matrix = &wf["jobs"]["drill"]["strategy"]["matrix"]["image"];
    assert!(
        matrix.as_str().is_some_and(|m| m.contains("inputs.image_tags")),
        "matrix over the image tags"
    );
    // By default the upstream images users pull: a 3.4, a 3.5 and a 3.6 tag, 3.6 allowed
    // to fail (not drilled where the harness is developed).
    let default = on["workflow_dispatch"]["inputs"]["image_tags"]["default"]
        .as_str()
        .unwrap_or_default();
    let tags: Vec<String> = serde_json::from_str(default).expect("the default tags are a JSON list");
    for minor in [":v3.4.", ":v3.5.", ":v3.6."] {
        assert!(
            tags.iter()
                .any(|t| t.starts_with("gcr.io/etcd-development/etcd") && t.contains(minor)),
            "no upstream {minor} image in {tags:?}"
        );
    }
    assert!(
        matrix.as_str().is_some_and(|m| m.contains(default)),
        "the scheduled run uses the same default tags"
    );
    assert!(
        wf["jobs"]["drill"]["continue-on-error"]
            .as_str()
            .is_some_and(|c| c.contains("v3.6")),
        "the 3.6 leg must not fail the workflow"
    );
    assert!(scripts.contains("docker pull \"$IMAGE\""), "upstream images are pulled");
    assert!(scripts.contains("etcd-drill run --all --image \"$IMAGE\""));
    assert!(scripts.contains("etcd-drill report compare reports/previous reports/nightly"));
    assert!(scripts.contains("GITHUB_STEP_SUMMARY") && scripts.contains("report.md"));
    let text = workflow("nightly-drill.yml").0;
    assert!(text.contains("action-junit-report@") && text.contains("junit.xml"));
    assert!(text.contains("report.html") && text.contains("report.json"));
    assert!(
        text.contains("reports/nightly/index.html"),
        "the suite's index.html is uploaded"
    );
}

#[test]
fn release_validation_compares_the_candidate_with_the_baseline() {
    let (wf, scripts) = common_rules("release-validation.yml");
    let inputs = &key(&wf, "on")["workflow_dispatch"]["inputs"];
    assert_eq!(inputs["baseline"]["required"].as_bool(), Some(true));
    assert_eq!(inputs["candidate"]["required"].as_bool(), Some(true));
    assert!(
        key(&wf, "on")["schedule"].is_badvalue(),
        "release validation runs on demand only"
    );
    assert!(scripts.contains("etcd-drill release --baseline \"$BASELINE\" --candidate \"$CANDIDATE\" --perf-load s"));
    assert!(scripts.contains("release.md"));
    assert!(scripts.contains("exit $status"), "a failed check fails the job");
}

/// The commands the workflows call exist in the binary, with the flags they pass.
#[test]
fn the_commands_the_workflows_call_exist() {
    let bin = env!("CARGO_BIN_EXE_etcd-drill");
    for args in [
        vec!["run", "--help"],
        vec!["report", "compare", "--help"],
        vec!["release", "--help"],
        vec!["image", "ensure", "--help"],
    ] {
        let out = std::process::Command::new(bin).args(&args).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{args:?}: {help}");
        for flag in ["--all", "--image", "--out"] {
            if args[0] == "run" {
                assert!(help.contains(flag), "run has no {flag}");
            }
        }
        if args[0] == "release" {
            for flag in ["--baseline", "--candidate", "--perf-load", "--out"] {
                assert!(help.contains(flag), "release has no {flag}");
            }
        }
        if args[0] == "report" {
            assert!(help.contains("--out") && help.contains("--budgets"), "{help}");
        }
    }
}
