//! Directory listings: flat (`GET /files`) and nested (`GET /files/tree`).

use crate::error::AgentError;
use crate::extract::{ok, Params};
use crate::paths::{absolute, display};
use crate::time::time_rfc3339;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::fs::{self, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const MAX_DEPTH: u32 = 10;
const MAX_LIST_ENTRIES: usize = 10_000;
const MAX_TREE_NODES: usize = 2_000;

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    path: Option<String>,
    depth: Option<u32>,
}

fn name_of(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| display(path))
}

/// lstat, so symlinked directories are reported as links and never descended into.
fn sorted_children(dir: &Path) -> std::io::Result<Vec<(PathBuf, Metadata)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        // An entry deleted between readdir and lstat is simply not listed.
        if let Ok(meta) = entry.metadata() {
            out.push((entry.path(), meta));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn entry_json(path: &Path, meta: &Metadata) -> Value {
    json!({
        "name": name_of(path),
        "path": display(path),
        "is_dir": meta.is_dir(),
        "is_symlink": meta.file_type().is_symlink(),
        "size": meta.len(),
        "mode": meta.mode(),
        "modified_at": meta.modified().ok().map(time_rfc3339),
    })
}

fn open_dir(path: &Path) -> Result<(), AgentError> {
    let meta = fs::metadata(path).map_err(|e| AgentError::io(e, path))?;
    if !meta.is_dir() {
        return Err(AgentError::validation(format!("not a directory: {}", path.display())));
    }
    Ok(())
}

fn list_blocking(root: &Path, depth: u32) -> Result<Value, AgentError> {
    open_dir(root)?;
    let mut entries: Vec<(PathBuf, Value)> = Vec::new();
    let mut truncated = false;
    let mut stack = vec![(root.to_path_buf(), 1u32)];
    while let Some((dir, level)) = stack.pop() {
        let children = match sorted_children(&dir) {
            Ok(c) => c,
            Err(e) if dir == root => return Err(AgentError::io(e, &dir)),
            // Unreadable subdirectories are listed but not descended into.
            Err(_) => continue,
        };
        for (path, meta) in children {
            if entries.len() >= MAX_LIST_ENTRIES {
                truncated = true;
                break;
            }
            if meta.is_dir() && level < depth {
                stack.push((path.clone(), level + 1));
            }
            entries.push((path.clone(), entry_json(&path, &meta)));
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let entries: Vec<Value> = entries.into_iter().map(|(_, v)| v).collect();
    let mut body = json!({"path": display(root), "entries": entries});
    if truncated {
        body["truncated"] = Value::Bool(true);
    }
    Ok(body)
}

pub(crate) async fn list(Params(q): Params<ListQuery>) -> Result<Response, AgentError> {
    let root = absolute(q.path.as_deref(), "path")?;
    let depth = q.depth.unwrap_or(1).clamp(1, MAX_DEPTH);
    let body = tokio::task::spawn_blocking(move || list_blocking(&root, depth))
        .await
        .map_err(AgentError::internal)??;
    Ok(ok(StatusCode::OK, body))
}

struct TreeBudget {
    left: usize,
    truncated: bool,
}

fn tree_node(path: &Path, meta: &Metadata, depth: u32, budget: &mut TreeBudget) -> Value {
    let mut node = Map::new();
    node.insert("name".into(), name_of(path).into());
    node.insert("path".into(), display(path).into());
    node.insert("is_dir".into(), meta.is_dir().into());
    node.insert("size".into(), meta.len().into());
    if meta.is_dir() && depth > 0 {
        let mut children = Vec::new();
        for (child, child_meta) in sorted_children(path).unwrap_or_default() {
            if budget.left == 0 {
                budget.truncated = true;
                break;
            }
            budget.left -= 1;
            children.push(tree_node(&child, &child_meta, depth - 1, budget));
        }
        node.insert("children".into(), Value::Array(children));
    }
    Value::Object(node)
}

fn tree_blocking(root: &Path, depth: u32) -> Result<Value, AgentError> {
    let meta = fs::symlink_metadata(root).map_err(|e| AgentError::io(e, root))?;
    if meta.is_dir() {
        fs::read_dir(root).map_err(|e| AgentError::io(e, root))?;
    }
    let mut budget = TreeBudget { left: MAX_TREE_NODES - 1, truncated: false };
    let mut node = tree_node(root, &meta, depth, &mut budget);
    if budget.truncated {
        node["truncated"] = Value::Bool(true);
    }
    Ok(node)
}

pub(crate) async fn tree(Params(q): Params<ListQuery>) -> Result<Response, AgentError> {
    let root = absolute(q.path.as_deref(), "path")?;
    let depth = q.depth.unwrap_or(3).min(MAX_DEPTH);
    let body = tokio::task::spawn_blocking(move || tree_blocking(&root, depth))
        .await
        .map_err(AgentError::internal)??;
    Ok(ok(StatusCode::OK, body))
}
