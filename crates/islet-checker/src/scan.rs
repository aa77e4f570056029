//! Looking for other sandboxes from inside one: any name or text carrying a sandbox id that is
//! not this sandbox's own.

use std::collections::BTreeSet;
use std::path::Path;

/// The 20-character id bodies after `sbx_` or `sbx-` in `text`.
fn ids_in(text: &str) -> impl Iterator<Item = &str> {
    text.match_indices("sbx").filter_map(move |(at, _)| {
        let rest = text.get(at + 3..)?;
        let sep = rest.chars().next()?;
        let body = rest.get(1..21)?;
        let valid = (sep == '_' || sep == '-')
            && body.bytes().all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b));
        valid.then_some(body)
    })
}

/// Walks `dir` (no symlinks followed, at most `depth` levels, at most `budget` entries) and
/// collects every sandbox id body in an entry's name that is not `own`.
fn walk(dir: &Path, own: &str, depth: usize, budget: &mut usize, found: &mut BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        found.extend(
            ids_in(&name).filter(|b| *b != own).map(|b| format!("{b} in {}", path.display())),
        );
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir && depth > 0 {
            walk(&path, own, depth - 1, budget, found);
        }
    }
}

/// Other sandboxes' ids seen under `/sys` and in this sandbox's mount table (each with where
/// it was seen), and the network interfaces `/sys/class/net` lists.
pub(crate) fn foreign_sandboxes(own: &str) -> (Vec<String>, Vec<String>) {
    let own = own.trim_start_matches("sbx_").trim_start_matches("sbx-");
    let mut found = BTreeSet::new();
    let mut budget = 300_000;
    walk(Path::new("/sys"), own, 10, &mut budget, &mut found);
    for file in ["/proc/self/mountinfo", "/proc/self/cgroup", "/proc/net/dev"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        found.extend(ids_in(&text).filter(|b| *b != own).map(|b| format!("{b} in {file}")));
    }
    let links = std::fs::read_dir("/sys/class/net")
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    (found.into_iter().take(10).collect(), links)
}
