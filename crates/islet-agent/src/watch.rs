//! `GET /files/watch`: inotify changes as SSE, one frame per change.

use crate::error::AgentError;
use crate::exec::KEEPALIVE;
use crate::extract::{parse_bool, Params};
use crate::paths::{absolute, display};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream;
use notify::event::{CreateKind, ModifyKind, RemoveKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// inotify reports a move as MOVED_FROM then MOVED_TO; a FROM with no TO this soon after
/// means the file left the watched tree.
const RENAME_PAIRING: Duration = Duration::from_millis(50);

#[derive(Deserialize)]
pub(crate) struct WatchQuery {
    path: Option<String>,
    recursive: Option<String>,
}

pub(crate) async fn watch(Params(q): Params<WatchQuery>) -> Result<Response, AgentError> {
    let root = absolute(q.path.as_deref(), "path")?;
    let recursive = parse_bool(q.recursive.as_deref(), true)?;
    tokio::fs::symlink_metadata(&root).await.map_err(|e| AgentError::io(e, &root))?;
    let (tx, rx) = mpsc::channel(4096);
    // Runs on notify's own thread, so blocking when the client is slow is fine; it fails
    // at once when the stream (and with it the receiver) is gone.
    let mut watcher = notify::recommended_watcher(move |res| {
        let _ = tx.blocking_send(res);
    })
    .map_err(|e| AgentError::internal(format!("cannot start watcher: {e}")))?;
    let mode = if recursive { RecursiveMode::Recursive } else { RecursiveMode::NonRecursive };
    watcher
        .watch(&root, mode)
        .map_err(|e| AgentError::internal(format!("cannot watch {}: {e}", root.display())))?;
    let state =
        Session { rx, _watcher: watcher, translator: Translator::default(), ready: Vec::new() };
    let events = stream::unfold(state, |mut s| async move {
        let frame = s.next_frame().await?;
        Some((Ok::<_, Infallible>(Event::default().data(frame.to_string())), s))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEPALIVE).text("keepalive"))
        .into_response())
}

/// Owns the watcher: dropping the SSE stream on disconnect stops the inotify watch.
struct Session {
    rx: mpsc::Receiver<notify::Result<notify::Event>>,
    _watcher: notify::RecommendedWatcher,
    translator: Translator,
    ready: Vec<Value>,
}

impl Session {
    async fn next_frame(&mut self) -> Option<Value> {
        loop {
            if !self.ready.is_empty() {
                return Some(self.ready.remove(0));
            }
            let flush_at = self.translator.pending.as_ref().map(|p| p.since + RENAME_PAIRING);
            tokio::select! {
                ev = self.rx.recv() => match ev? {
                    Ok(ev) => self.ready = self.translator.translate(ev),
                    Err(e) => tracing::warn!(error = %e, "watch error"),
                },
                _ = tokio::time::sleep_until(flush_at.unwrap_or_else(Instant::now)), if flush_at.is_some() => {
                    self.ready = self.translator.flush();
                }
            }
        }
    }
}

struct PendingFrom {
    tracker: usize,
    path: PathBuf,
    since: Instant,
}

#[derive(Default)]
struct Translator {
    pending: Option<PendingFrom>,
    /// The tracker of a rename already reported, whose trailing `Both` event is a duplicate.
    paired: Option<usize>,
    last_deleted: Option<PathBuf>,
}

fn frame(event: &str, path: &Path, is_dir: bool, old: Option<&Path>) -> Value {
    let mut v = json!({"type": "file", "event": event, "path": display(path), "is_dir": is_dir});
    if let Some(old) = old {
        v["old_path"] = display(old).into();
    }
    v
}

fn is_dir_now(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

/// The agent's own atomic writes go through `.name.islet-tmp-*` siblings.
fn is_agent_temp(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.') && n.contains(".islet-tmp-"))
}

impl Translator {
    fn flush(&mut self) -> Vec<Value> {
        match self.pending.take() {
            Some(p) => self.deleted(&p.path, false),
            None => Vec::new(),
        }
    }

    fn deleted(&mut self, path: &Path, is_dir: bool) -> Vec<Value> {
        // A watched directory reports its removal twice (DELETE in the parent, DELETE_SELF).
        if self.last_deleted.as_deref() == Some(path) || is_agent_temp(path) {
            return Vec::new();
        }
        self.last_deleted = Some(path.to_path_buf());
        vec![frame("deleted", path, is_dir, None)]
    }

    fn translate(&mut self, ev: notify::Event) -> Vec<Value> {
        let Some(path) = ev.paths.first().cloned() else {
            return Vec::new();
        };
        let tracker = ev.tracker();
        let mut out = Vec::new();
        if let EventKind::Modify(ModifyKind::Name(RenameMode::From)) = ev.kind {
            out.extend(self.flush());
            if let Some(tracker) = tracker {
                self.pending = Some(PendingFrom { tracker, path, since: Instant::now() });
            }
            // Without a tracker it is MOVE_SELF, already reported through the parent.
            return out;
        }
        let pending = self.pending.take();
        if !matches!(ev.kind, EventKind::Remove(_)) {
            self.last_deleted = None;
        }
        match ev.kind {
            EventKind::Modify(ModifyKind::Name(RenameMode::To)) => match pending {
                Some(p) if Some(p.tracker) == tracker => {
                    self.paired = tracker;
                    if is_agent_temp(&p.path) {
                        let is_dir = is_dir_now(&path);
                        out.push(frame("created", &path, is_dir, None));
                        out.push(frame("modified", &path, is_dir, None));
                    } else {
                        out.push(frame("renamed", &path, is_dir_now(&path), Some(&p.path)));
                    }
                }
                other => {
                    self.pending = other;
                    out.extend(self.flush());
                    out.push(frame("created", &path, is_dir_now(&path), None));
                }
            },
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
                self.pending = pending;
                if tracker.is_none() || tracker != self.paired {
                    let new = ev.paths.get(1).cloned().unwrap_or_else(|| path.clone());
                    out.push(frame("renamed", &new, is_dir_now(&new), Some(&path)));
                }
                return out;
            }
            EventKind::Create(kind) if !is_agent_temp(&path) => {
                out.extend(self.flush_pending(pending));
                out.push(frame("created", &path, kind == CreateKind::Folder, None));
            }
            EventKind::Modify(_) if !is_agent_temp(&path) => {
                out.extend(self.flush_pending(pending));
                out.push(frame("modified", &path, is_dir_now(&path), None));
            }
            EventKind::Remove(kind) => {
                out.extend(self.flush_pending(pending));
                out.extend(self.deleted(&path, kind == RemoveKind::Folder));
            }
            _ => self.pending = pending,
        }
        out
    }

    fn flush_pending(&mut self, pending: Option<PendingFrom>) -> Vec<Value> {
        self.pending = pending;
        self.flush()
    }
}
