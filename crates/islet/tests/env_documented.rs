//! Repository rule: every environment variable the binary reads is documented.
#![allow(clippy::unwrap_used)]

use std::path::Path;

#[test]
fn every_env_var_is_in_docs_configuration() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = std::fs::read_to_string(root.join("../../docs/configuration.md")).unwrap();
    let mut found = Vec::new();
    for file in std::fs::read_dir(root.join("src")).unwrap() {
        let text = std::fs::read_to_string(file.unwrap().path()).unwrap();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("\"ISLET_") {
            let tail = &rest[at + 1..];
            let end = tail.find('"').unwrap();
            found.push(tail[..end].to_owned());
            rest = &tail[end..];
        }
    }
    assert!(found.len() >= 10, "the scan found the variables: {found:?}");
    for var in &found {
        assert!(
            docs.contains(&format!("`{var}`")),
            "{var} is not documented in docs/configuration.md"
        );
    }
}
