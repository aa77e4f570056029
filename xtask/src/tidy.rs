//! Repository rules checked by `cargo xtask ci lint`: no crate's module graph has a cycle, so
//! each crate reads as layers, one way. `cargo xtask tidy` prints every cycle it finds.
//!
//! The graph is read from the source, not the compiler: an edge `a → b` is a `crate::b…` or
//! `super::b…` path in module `a`'s files outside their `#[cfg(test)]` part, or a name that
//! the crate root re-exports from `b`. Good enough for a rule about layering; it sees every
//! `use` and every inline path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::Context;

/// Crates whose modules must form a one-way graph.
pub(crate) const ONE_WAY: &[&str] = &["islet-agent", "islet-store"];

/// Every crate's cycles (sets of top-level modules that reach each other), by crate name.
pub(crate) fn cycles(root: &Path) -> anyhow::Result<BTreeMap<String, Vec<Vec<String>>>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(root.join("crates"))? {
        let dir = entry?.path();
        let src = dir.join("src");
        if !src.is_dir() {
            continue;
        }
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let graph = module_graph(&src).with_context(|| format!("reading {}", src.display()))?;
        out.insert(name, strongly_connected(&graph));
    }
    Ok(out)
}

/// The rule: no cycle in the [`ONE_WAY`] crates.
pub(crate) fn check(root: &Path) -> anyhow::Result<Vec<String>> {
    let all = cycles(root)?;
    let mut problems = Vec::new();
    for krate in ONE_WAY {
        for cycle in all.get(*krate).into_iter().flatten() {
            problems.push(format!("{krate}: modules {} depend on each other", cycle.join(", ")));
        }
    }
    Ok(problems)
}

/// Top-level module → the top-level modules it names.
fn module_graph(src: &Path) -> anyhow::Result<BTreeMap<String, BTreeSet<String>>> {
    let mut files = Vec::new();
    collect(src, &mut files)?;
    let root_file = ["lib.rs", "main.rs"].iter().map(|f| src.join(f)).find(|p| p.is_file());
    let reexports = match &root_file {
        Some(path) => reexported_names(&std::fs::read_to_string(path)?),
        None => BTreeMap::new(),
    };
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let relative = file.strip_prefix(src)?;
        let Some(module) = top_module(relative) else {
            continue;
        };
        let text = std::fs::read_to_string(file)?;
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let edges = graph.entry(module.clone()).or_default();
        for target in named_modules(code, relative) {
            let target = reexports.get(&target).cloned().unwrap_or(target);
            if target != module {
                edges.insert(target);
            }
        }
    }
    // Keep only edges to modules that exist (the first segment may be a type or a function).
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for edges in graph.values_mut() {
        edges.retain(|m| modules.contains(m));
    }
    Ok(graph)
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// `api/keys.rs` → `api`; `store.rs` → `store`; the crate root → none.
fn top_module(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_string_lossy().into_owned();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
    (name != "lib" && name != "main").then_some(name)
}

/// Names re-exported by the crate root: `pub use module::{A, B}` → A and B come from `module`.
fn reexported_names(root: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for statement in root.split(';') {
        let Some(rest) = statement.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, names)) = rest.split_once("::") else {
            continue;
        };
        for name in
            names.trim_matches(|c| c == '{' || c == '}' || char::is_whitespace(c)).split(',')
        {
            let name = name.trim().rsplit("::").next().unwrap_or_default();
            let name = name.split(" as ").last().unwrap_or(name).trim();
            if !name.is_empty() {
                out.insert(name.to_owned(), module.trim().to_owned());
            }
        }
    }
    out
}

/// The first path segment after every `crate::` in `code`, and after `super::` in a file one
/// level down (whose parent is the crate root).
fn named_modules(code: &str, relative: &Path) -> BTreeSet<String> {
    let depth = relative.components().count();
    let mut out = BTreeSet::new();
    let mut prefixes = vec!["crate::"];
    if depth == 2 {
        prefixes.push("super::");
    }
    for prefix in prefixes {
        for (at, _) in code.match_indices(prefix) {
            let before = code[..at].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let rest = &code[at + prefix.len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let inner = group.split('}').next().unwrap_or_default();
                for item in inner.split(',') {
                    out.insert(ident(item.trim()));
                }
            } else {
                out.insert(ident(rest));
            }
        }
    }
    out.remove("");
    out.remove("self");
    out
}

fn ident(s: &str) -> String {
    s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
}

/// The graph's strongly connected components of more than one module, each sorted.
fn strongly_connected(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let reach = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(m) = stack.pop() {
            for next in graph.get(&m).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|m| (m, reach(m))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for m in graph.keys() {
        if done.contains(m) || !reaches[m].contains(m) {
            continue;
        }
        let component: Vec<String> = graph
            .keys()
            .filter(|o| reaches[m].contains(*o) && reaches[*o].contains(m))
            .cloned()
            .collect();
        done.extend(component.iter().cloned());
        out.push(component);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_groups_name_their_modules() {
        let code = "use crate::{events::insert, Store};\nfn f() { crate::usage::mark(); }\nuse super::rows;";
        let named = named_modules(code, Path::new("api/keys.rs"));
        assert_eq!(named, ["Store", "events", "rows", "usage"].map(String::from).into());
        let top = named_modules(code, Path::new("keys.rs"));
        assert!(!top.contains("rows"), "super:: in a top-level file is the crate root");
    }

    #[test]
    fn a_cycle_is_found_and_a_chain_is_not() {
        let graph: BTreeMap<String, BTreeSet<String>> =
            [("a", vec!["b"]), ("b", vec!["c"]), ("c", vec!["a"]), ("d", vec!["a"])]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.into_iter().map(String::from).collect()))
                .collect();
        assert_eq!(strongly_connected(&graph), vec![vec!["a", "b", "c"]]);
    }

    #[test]
    fn root_reexports_point_at_their_module() {
        let names = reexported_names(
            "mod a;\npub use connection::Store;\npub use usage::{GroupBy, UsageRow as Row};",
        );
        assert_eq!(names.get("Store").map(String::as_str), Some("connection"));
        assert_eq!(names.get("Row").map(String::as_str), Some("usage"));
    }
}
