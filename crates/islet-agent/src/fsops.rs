//! Metadata and namespace operations: stat, mkdir, move, remove.

use crate::error::AgentError;
use crate::extract::{ok, parse_bool, JsonBody, Params};
use crate::paths::{absolute, display};
use crate::time::time_rfc3339;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use tokio::fs;

pub(crate) fn modified_at(meta: &Metadata) -> Option<String> {
    meta.modified().ok().map(time_rfc3339)
}

#[derive(Deserialize)]
pub(crate) struct PathBody {
    path: Option<String>,
}

pub(crate) async fn stat(JsonBody(req): JsonBody<PathBody>) -> Result<Response, AgentError> {
    let path = absolute(req.path.as_deref(), "path")?;
    let meta = fs::symlink_metadata(&path).await.map_err(|e| AgentError::io(e, &path))?;
    let is_symlink = meta.file_type().is_symlink();
    let target =
        if is_symlink { fs::read_link(&path).await.ok().map(|t| display(&t)) } else { None };
    let body: Value = json!({
        "path": display(&path),
        "size": meta.len(),
        "mode": meta.mode(),
        "is_dir": meta.is_dir(),
        "is_symlink": is_symlink,
        "symlink_target": target,
        "modified_at": modified_at(&meta),
    });
    Ok(ok(StatusCode::OK, body))
}

#[derive(Deserialize)]
pub(crate) struct MkdirRequest {
    path: Option<String>,
    parents: Option<bool>,
}

pub(crate) async fn mkdir(JsonBody(req): JsonBody<MkdirRequest>) -> Result<Response, AgentError> {
    let path = absolute(req.path.as_deref(), "path")?;
    if req.parents.unwrap_or(true) {
        if let Ok(meta) = fs::metadata(&path).await {
            if !meta.is_dir() {
                return Err(AgentError::already_exists(format!(
                    "a file already exists at {}",
                    path.display()
                )));
            }
        }
        fs::create_dir_all(&path).await
    } else {
        fs::create_dir(&path).await
    }
    .map_err(|e| AgentError::io(e, &path))?;
    Ok(ok(StatusCode::CREATED, json!({"path": display(&path)})))
}

#[derive(Deserialize)]
pub(crate) struct MoveRequest {
    #[serde(alias = "source", alias = "old_path")]
    from: Option<String>,
    #[serde(alias = "destination", alias = "new_path")]
    to: Option<String>,
    overwrite: Option<bool>,
}

pub(crate) async fn rename(JsonBody(req): JsonBody<MoveRequest>) -> Result<Response, AgentError> {
    let from = absolute(req.from.as_deref(), "from")?;
    let to = absolute(req.to.as_deref(), "to")?;
    let src = fs::symlink_metadata(&from).await.map_err(|e| AgentError::io(e, &from))?;
    if from != to {
        if let Ok(dst) = fs::symlink_metadata(&to).await {
            if !req.overwrite.unwrap_or(false) {
                return Err(AgentError::already_exists(format!(
                    "destination already exists: {}",
                    to.display()
                )));
            }
            // rename(2) only replaces file-with-file or empty-dir-with-dir in place.
            if dst.is_dir() || src.is_dir() {
                remove_path(&to, &dst, true).await?;
            }
        }
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).await.map_err(|e| AgentError::io(e, parent))?;
        }
        match fs::rename(&from, &to).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
                copy_across(from.clone(), to.clone()).await?;
                remove_path(&from, &src, true).await?;
            }
            Err(e) => return Err(AgentError::io(e, &to)),
        }
    }
    Ok(ok(StatusCode::OK, json!({"from": display(&from), "to": display(&to)})))
}

/// Bind mounts (e.g. a volume at /workspace) make rename fail with EXDEV; copy instead.
async fn copy_across(from: PathBuf, to: PathBuf) -> Result<(), AgentError> {
    let dst = to.clone();
    tokio::task::spawn_blocking(move || copy_tree(&from, &to))
        .await
        .map_err(AgentError::internal)?
        .map_err(|e| AgentError::io(e, &dst))
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(from)?;
    if meta.file_type().is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(from)?, to)
    } else if meta.is_dir() {
        std::fs::create_dir(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        std::fs::set_permissions(to, meta.permissions())
    } else {
        std::fs::copy(from, to).map(|_| ())
    }
}

async fn remove_path(path: &Path, meta: &Metadata, recursive: bool) -> Result<(), AgentError> {
    let result = if meta.is_dir() {
        if recursive {
            fs::remove_dir_all(path).await
        } else {
            fs::remove_dir(path).await
        }
    } else {
        fs::remove_file(path).await
    };
    result.map_err(|e| AgentError::io(e, path))
}

async fn remove(raw: Option<&str>, recursive: bool) -> Result<Response, AgentError> {
    let path = absolute(raw, "path")?;
    let meta = fs::symlink_metadata(&path).await.map_err(|e| AgentError::io(e, &path))?;
    remove_path(&path, &meta, recursive).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
pub(crate) struct RemoveRequest {
    path: Option<String>,
    recursive: Option<bool>,
}

pub(crate) async fn remove_body(
    JsonBody(req): JsonBody<RemoveRequest>,
) -> Result<Response, AgentError> {
    remove(req.path.as_deref(), req.recursive.unwrap_or(false)).await
}

#[derive(Deserialize)]
pub(crate) struct RemoveQuery {
    path: Option<String>,
    recursive: Option<String>,
}

pub(crate) async fn remove_query(Params(q): Params<RemoveQuery>) -> Result<Response, AgentError> {
    let recursive = parse_bool(q.recursive.as_deref(), false)?;
    remove(q.path.as_deref(), recursive).await
}
