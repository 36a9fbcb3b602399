//! The layering of `harness/src`, checked from the source text: every `crate::` path a file
//! names is an import of that module. The top-level modules form layers (listed bottom up
//! in [`LAYERS`]); a module may use its own layer's siblings only where no cycle results,
//! and lower layers never name upper ones. Inside a folder, sibling files never import each
//! other in a loop. A failure names the file and line of the import that breaks the rule.
//!
//! Hand-written rather than a crate: the rule is ours (which modules sit in which layer),
//! and reading `crate::` paths from the text is all it needs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level modules of `harness/src`, bottom layer first.
const LAYERS: &[&[&str]] = &[
    &["error", "clock", "history", "readiness", "topology", "version"],
    &["docker"],
    &["etcd"],
    &["cluster"],
    &["fault", "backup", "workload"],
    &["scenario"],
    &["procedure"],
    &["drill"],
    &["report", "perf", "chaos"],
];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::a::b` path in `text`, with its line number, as its segments.
fn crate_paths(text: &str) -> Vec<(usize, Vec<String>)> {
    paths_after(text, "crate::")
}

/// Every path that starts with `prefix` (`crate::` or `super::`) in `text`.
fn paths_after(text: &str, prefix: &str) -> Vec<(usize, Vec<String>)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find(prefix) {
            let before = rest[..at].chars().last();
            rest = &rest[at + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // e.g. `etcd_drill_crate::`, not ours
            }
            let mut segments = Vec::new();
            let mut tail = rest;
            loop {
                let end = tail
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
                if end == 0 {
                    break;
                }
                segments.push(tail[..end].to_string());
                tail = &tail[end..];
                match tail.strip_prefix("::") {
                    Some(t) if t.starts_with(|c: char| c.is_lowercase()) => tail = t,
                    _ => break,
                }
            }
            let group_at = match (tail.starts_with("::{"), segments.is_empty() && tail.starts_with('{')) {
                (true, _) => Some(3),
                (false, true) => Some(1),
                _ => None,
            };
            if let Some(open) = group_at {
                // `crate::a::{b, c}` (or `super::{b, c}`): the group names b and c below a.
                let group = &tail[open..tail.find('}').unwrap_or(tail.len())];
                for item in group.split(',') {
                    let name = item.trim().split("::").next().unwrap_or("").trim();
                    if name.starts_with(|c: char| c.is_lowercase()) && name != "self" {
                        let mut s = segments.clone();
                        s.push(name.to_string());
                        found.push((n + 1, s));
                    }
                }
            }
            if !segments.is_empty() {
                found.push((n + 1, segments));
            }
        }
    }
    found
}

/// The module path of a file under `src`: `cluster/verbs.rs` is `[cluster, verbs]`,
/// `cluster/mod.rs` is `[cluster]`.
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src_dir()).expect("a file under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

struct Import {
    from: Vec<String>,
    to: Vec<String>,
    at: String,
}

fn imports() -> Vec<Import> {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let mut out = Vec::new();
    for file in files {
        let from = module_of(&file);
        if from.first().is_some_and(|m| m == "bin" || m == "lib") {
            continue; // the binary and the crate root sit above every layer
        }
        let text = std::fs::read_to_string(&file).expect("a readable source file");
        let at = |line: usize| format!("{}:{line}", file.strip_prefix(src_dir()).unwrap_or(&file).display());
        for (line, to) in crate_paths(&text) {
            out.push(Import {
                from: from.clone(),
                to,
                at: at(line),
            });
        }
        // `super::x` in a file of a folder names the folder's `x`.
        if from.len() == 2 {
            for (line, rest) in paths_after(&text, "super::") {
                let mut to = vec![from[0].clone()];
                to.extend(rest);
                out.push(Import {
                    from: from.clone(),
                    to,
                    at: at(line),
                });
            }
        }
    }
    out
}

/// A cycle in `edges`, if any, as the list of its nodes.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(next, edges, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if state.get(node.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(node, edges, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

#[test]
fn every_top_level_module_has_a_layer() {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let missing: BTreeSet<String> = files
        .iter()
        .filter_map(|f| module_of(f).first().cloned())
        .filter(|m| m != "lib" && m != "bin" && layer_of(m).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "modules with no layer in tests/layers.rs LAYERS: {missing:?}"
    );
}

#[test]
fn lower_layers_never_import_upper_ones() {
    let mut wrong = Vec::new();
    for import in imports() {
        let (from, to) = (&import.from[0], &import.to[0]);
        if let (Some(a), Some(b)) = (layer_of(from), layer_of(to)) {
            if b > a {
                wrong.push(format!("{}: {from} (layer {a}) imports {to} (layer {b})", import.at));
            }
        }
    }
    assert!(wrong.is_empty(), "imports pointing up:\n{}", wrong.join("\n"));
}

#[test]
fn top_level_modules_import_each_other_in_no_loop() {
    let edges = imports()
        .into_iter()
        .map(|i| (i.from[0].clone(), i.to[0].clone(), i.at));
    assert_no_cycle(edges, "top-level modules");
}

#[test]
fn files_of_one_folder_import_each_other_in_no_loop() {
    // Sibling files of a folder (mod.rs, the folder's face, aside).
    let edges = imports()
        .into_iter()
        .filter(|i| i.from.len() == 2 && i.to.len() >= 2 && i.from[0] == i.to[0])
        .map(|i| (i.from.join("/"), i.to[..2].join("/"), i.at));
    assert_no_cycle(edges, "the files of one folder");
}

/// Fails, naming each import of the loop, when `edges` (from, to, where) hold a cycle.
fn assert_no_cycle(edges: impl Iterator<Item = (String, String, String)>, among: &str) {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut sites: BTreeMap<(String, String), String> = BTreeMap::new();
    for (from, to, at) in edges.filter(|(from, to, _)| from != to) {
        sites.entry((from.clone(), to.clone())).or_insert(at);
        graph.entry(from).or_default().insert(to);
    }
    if let Some(cycle) = find_cycle(&graph) {
        let at: Vec<String> = cycle
            .windows(2)
            .map(|w| format!("{} -> {} at {}", w[0], w[1], sites[&(w[0].clone(), w[1].clone())]))
            .collect();
        panic!("import cycle among {among}:\n{}", at.join("\n"));
    }
}

#[test]
fn the_reader_finds_grouped_and_nested_paths() {
    let found = crate_paths("use crate::cluster::{damage::Damage, Cluster};\nlet x = crate::docker::runtime::f();");
    let paths: Vec<String> = found.iter().map(|(_, s)| s.join("::")).collect();
    assert!(paths.contains(&"cluster::damage".to_string()), "{paths:?}");
    assert!(paths.contains(&"docker::runtime::f".to_string()), "{paths:?}");
    let found = paths_after("use super::{tools::probe, Cluster};", "super::");
    assert_eq!(found, vec![(1, vec!["tools".to_string()])]);
    let mut edges = BTreeMap::new();
    edges.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    edges.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    assert!(find_cycle(&edges).is_some(), "a loop a -> b -> a must be found");
    edges.insert("b".to_string(), BTreeSet::new());
    assert!(find_cycle(&edges).is_none());
}
