//! Writing, uploading and downloading file contents.

use crate::error::AgentError;
use crate::extract::{ok, JsonBody, Params};
use crate::paths::{absolute, display, temp_sibling};
use axum::body::Body;
use axum::extract::Path as UrlPath;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use tokio::fs;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio_util::io::ReaderStream;

const UPLOAD_LIMIT: u64 = 16 * 1024 * 1024 * 1024;
const DOWNLOAD_CHUNK: usize = 256 * 1024;

#[derive(Deserialize)]
pub(crate) struct WriteRequest {
    path: Option<String>,
    content_base64: Option<String>,
    content: Option<String>,
    data: Option<String>,
    mode: Option<u32>,
}

fn decode_b64(raw: &str) -> Result<Vec<u8>, AgentError> {
    let cleaned: String = raw.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(cleaned.as_bytes())
        .map_err(|e| AgentError::validation(format!("content is not valid base64: {e}")))
}

impl WriteRequest {
    /// `legacy`: the old `/files` route sends base64 in `content`.
    fn bytes(&self, legacy: bool) -> Result<Vec<u8>, AgentError> {
        match (&self.content_base64, &self.content, &self.data) {
            (Some(b64), _, _) => decode_b64(b64),
            (None, Some(text), _) if legacy => decode_b64(text),
            (None, Some(text), _) | (None, None, Some(text)) => Ok(text.clone().into_bytes()),
            (None, None, None) => Ok(Vec::new()),
        }
    }
}

/// Creates parents, writes a sibling temp file and renames it over `path`, so readers see
/// either the old or the new content, never a torn file.
async fn write_atomic(path: &Path, content: &[u8], mode: Option<u32>) -> Result<(), AgentError> {
    let tmp = prepare_temp(path).await?;
    let result = async {
        fs::write(&tmp, content).await.map_err(|e| AgentError::io(e, path))?;
        finish_temp(&tmp, path, mode).await
    }
    .await;
    if result.is_err() {
        let _ = fs::remove_file(&tmp).await;
    }
    result
}

async fn prepare_temp(path: &Path) -> Result<PathBuf, AgentError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).await.map_err(|e| AgentError::io(e, parent))?;
    }
    if fs::metadata(path).await.is_ok_and(|m| m.is_dir()) {
        return Err(AgentError::validation(format!("is a directory: {}", path.display())));
    }
    Ok(temp_sibling(path))
}

async fn finish_temp(tmp: &Path, path: &Path, mode: Option<u32>) -> Result<(), AgentError> {
    // Keep an existing file's permissions unless the caller asked for others.
    let mode = match mode {
        Some(m) => Some(m & 0o7777),
        None => fs::metadata(path).await.ok().map(|m| m.permissions().mode() & 0o7777),
    };
    if let Some(mode) = mode {
        fs::set_permissions(tmp, std::fs::Permissions::from_mode(mode))
            .await
            .map_err(|e| AgentError::io(e, path))?;
    }
    fs::rename(tmp, path).await.map_err(|e| AgentError::io(e, path))
}

async fn write_one(req: &WriteRequest, legacy: bool) -> Result<(PathBuf, usize), AgentError> {
    let path = absolute(req.path.as_deref(), "path")?;
    let content = req.bytes(legacy)?;
    write_atomic(&path, &content, req.mode).await?;
    Ok((path, content.len()))
}

pub(crate) async fn write(JsonBody(req): JsonBody<WriteRequest>) -> Result<Response, AgentError> {
    let (path, size) = write_one(&req, false).await?;
    Ok(ok(StatusCode::OK, json!({"path": display(&path), "size": size})))
}

pub(crate) async fn write_legacy(
    JsonBody(req): JsonBody<WriteRequest>,
) -> Result<Response, AgentError> {
    let (path, size) = write_one(&req, true).await?;
    Ok(ok(StatusCode::OK, json!({"path": display(&path), "size": size})))
}

#[derive(Deserialize)]
pub(crate) struct WriteManyRequest {
    files: Option<Vec<WriteRequest>>,
}

pub(crate) async fn write_many(
    JsonBody(req): JsonBody<WriteManyRequest>,
) -> Result<Response, AgentError> {
    let files = req.files.ok_or_else(|| AgentError::validation("files is required"))?;
    let (mut written, mut failed) = (Vec::new(), Vec::new());
    for file in &files {
        match write_one(file, false).await {
            Ok((path, _)) => written.push(display(&path)),
            Err(e) => failed.push(json!({
                "path": file.path.clone().unwrap_or_default(),
                "error": e.to_string(),
            })),
        }
    }
    Ok(ok(StatusCode::OK, json!({"written": written, "failed": failed})))
}

#[derive(Deserialize)]
pub(crate) struct PathQuery {
    path: Option<String>,
}

/// Streams the request body to disk chunk by chunk: uploads can be far larger than memory.
pub(crate) async fn upload(
    Params(q): Params<PathQuery>,
    body: Body,
) -> Result<Response, AgentError> {
    let path = absolute(q.path.as_deref(), "path")?;
    let tmp = prepare_temp(&path).await?;
    let result = async {
        let file = fs::File::create(&tmp).await.map_err(|e| AgentError::io(e, &path))?;
        let mut out = BufWriter::with_capacity(1024 * 1024, file);
        let size = copy_body(body, &mut out, &path).await?;
        out.flush().await.map_err(|e| AgentError::io(e, &path))?;
        drop(out);
        finish_temp(&tmp, &path, None).await?;
        Ok(size)
    }
    .await;
    match result {
        Ok(size) => Ok(ok(StatusCode::OK, json!({"path": display(&path), "size": size}))),
        Err(e) => {
            let _ = fs::remove_file(&tmp).await;
            Err(e)
        }
    }
}

async fn copy_body(
    body: Body,
    out: &mut (impl AsyncWrite + Unpin),
    path: &Path,
) -> Result<u64, AgentError> {
    let mut stream = body.into_data_stream();
    let mut size: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| AgentError::validation(format!("upload interrupted: {e}")))?;
        size += chunk.len() as u64;
        if size > UPLOAD_LIMIT {
            return Err(AgentError::TooLarge { limit: UPLOAD_LIMIT });
        }
        out.write_all(&chunk).await.map_err(|e| AgentError::io(e, path))?;
    }
    Ok(size)
}

pub(crate) async fn download(Params(q): Params<PathQuery>) -> Result<Response, AgentError> {
    send_file(absolute(q.path.as_deref(), "path")?).await
}

/// `GET /files/{*rest}`: the path without its leading slash, segments percent-decoded.
pub(crate) async fn download_legacy(
    UrlPath(rest): UrlPath<String>,
) -> Result<Response, AgentError> {
    let raw = format!("/{}", rest.trim_start_matches('/'));
    send_file(absolute(Some(&raw), "path")?).await
}

async fn send_file(path: PathBuf) -> Result<Response, AgentError> {
    let file = fs::File::open(&path).await.map_err(|e| AgentError::io(e, &path))?;
    let meta = file.metadata().await.map_err(|e| AgentError::io(e, &path))?;
    if meta.is_dir() {
        return Err(AgentError::validation(format!("is a directory: {}", path.display())));
    }
    // Pseudo-files (/proc) report size 0 yet have content: send those chunked. A file that
    // grows mid-download is cut at the length announced in the header.
    let len = meta.len();
    let mut headers = vec![(header::CONTENT_TYPE, "application/octet-stream".to_string())];
    let body = if len > 0 {
        headers.push((header::CONTENT_LENGTH, len.to_string()));
        Body::from_stream(ReaderStream::with_capacity(file.take(len), DOWNLOAD_CHUNK))
    } else {
        Body::from_stream(ReaderStream::with_capacity(file, DOWNLOAD_CHUNK))
    };
    let mut response = body.into_response();
    for (name, value) in headers {
        if let Ok(value) = value.parse() {
            response.headers_mut().insert(name, value);
        }
    }
    Ok(response)
}
