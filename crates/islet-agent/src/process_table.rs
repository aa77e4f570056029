//! Background processes in memory: output log, live broadcast and exit state per process.

use crate::command::{Running, Step, StreamKind};
use crate::error::AgentError;
use crate::lines::LineSplitter;
use crate::lock::lock;
use crate::logbuf::{Entry, LogBuf, LOG_CAP};
use crate::time::now_rfc3339;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// Exited processes kept for inspection; the oldest are forgotten first.
const MAX_EXITED: usize = 256;

#[derive(Default)]
pub(crate) struct ProcessTable {
    procs: Mutex<HashMap<i32, Arc<Proc>>>,
    /// Every background process's output, in order: the sandbox's log.
    log: Arc<SandboxLog>,
}

/// A line of the sandbox's log: which process wrote it, and when.
#[derive(Clone, Debug)]
pub(crate) struct LogLine {
    pub at: String,
    pub pid: i32,
    pub entry: Entry,
}

/// The sandbox's output across its background processes: the last 1 MiB of lines, and a
/// broadcast of new ones.
pub(crate) struct SandboxLog {
    lines: Mutex<std::collections::VecDeque<LogLine>>,
    bytes: Mutex<usize>,
    live: broadcast::Sender<LogLine>,
}

impl Default for SandboxLog {
    fn default() -> Self {
        Self { lines: Mutex::default(), bytes: Mutex::new(0), live: broadcast::channel(1024).0 }
    }
}

impl SandboxLog {
    fn push(&self, pid: i32, entry: &Entry) {
        let line = LogLine { at: now_rfc3339(), pid, entry: entry.clone() };
        let mut lines = lock(&self.lines);
        let mut bytes = lock(&self.bytes);
        *bytes += line.entry.line.text.len() + 1;
        lines.push_back(line.clone());
        while *bytes > LOG_CAP {
            match lines.pop_front() {
                Some(old) => *bytes -= old.entry.line.text.len() + 1,
                None => break,
            }
        }
        let _ = self.live.send(line);
    }

    /// The last `n` lines (all kept when `None`), and a subscription to the ones after them,
    /// taken together so none is missed or repeated.
    pub(crate) fn tail_and_follow(
        &self,
        n: Option<usize>,
    ) -> (Vec<LogLine>, broadcast::Receiver<LogLine>) {
        let lines = lock(&self.lines);
        let skip = n.map_or(0, |n| lines.len().saturating_sub(n));
        (lines.iter().skip(skip).cloned().collect(), self.live.subscribe())
    }
}

#[derive(Clone)]
pub(crate) enum ProcEvent {
    Line(Entry),
    Exit(i32),
}

pub(crate) struct Proc {
    pub pid: i32,
    sandbox_log: Arc<SandboxLog>,
    command: String,
    name: Option<String>,
    started_at: String,
    inner: Mutex<Inner>,
    events: broadcast::Sender<ProcEvent>,
    done: watch::Sender<bool>,
}

struct Inner {
    log: LogBuf,
    exit_code: Option<i32>,
    ended_at: Option<String>,
}

/// What a new stream subscriber starts from.
pub(crate) struct Subscription {
    pub replay: Vec<Entry>,
    pub live: broadcast::Receiver<ProcEvent>,
    pub exit_code: Option<i32>,
}

impl Proc {
    pub(crate) fn view(&self) -> Value {
        let inner = lock(&self.inner);
        json!({
            "pid": self.pid,
            "state": if inner.exit_code.is_some() { "exited" } else { "running" },
            "exit_code": inner.exit_code,
            "command": self.command,
            "name": self.name,
            "started_at": self.started_at,
            "ended_at": inner.ended_at,
        })
    }

    pub(crate) fn exited(&self) -> bool {
        *self.done.borrow()
    }

    pub(crate) fn logs(&self, tail: Option<usize>) -> String {
        lock(&self.inner).log.tail(tail)
    }

    /// Snapshot and subscription under the lock `record` takes: no line is missed or repeated.
    pub(crate) fn subscribe(&self) -> Subscription {
        let inner = lock(&self.inner);
        Subscription {
            replay: inner.log.snapshot(),
            live: self.events.subscribe(),
            exit_code: inner.exit_code,
        }
    }

    fn record(&self, entry: Entry) {
        let mut inner = lock(&self.inner);
        self.sandbox_log.push(self.pid, &entry);
        inner.log.push(entry.clone());
        let _ = self.events.send(ProcEvent::Line(entry));
    }

    fn finish(&self, exit_code: i32) {
        let mut inner = lock(&self.inner);
        inner.exit_code = Some(exit_code);
        inner.ended_at = Some(now_rfc3339());
        let _ = self.events.send(ProcEvent::Exit(exit_code));
        self.done.send_replace(true);
    }

    pub(crate) async fn wait_exit(&self, limit: Duration) -> bool {
        let mut rx = self.done.subscribe();
        let exited = tokio::time::timeout(limit, rx.wait_for(|d| *d)).await;
        exited.is_ok()
    }
}

impl ProcessTable {
    pub(crate) fn get(&self, raw_pid: &str) -> Result<Arc<Proc>, AgentError> {
        raw_pid
            .parse::<i32>()
            .ok()
            .and_then(|pid| lock(&self.procs).get(&pid).cloned())
            .ok_or_else(|| AgentError::not_found(format!("no such process: {raw_pid}")))
    }

    pub(crate) fn all(&self) -> Vec<Arc<Proc>> {
        let mut procs: Vec<Arc<Proc>> = lock(&self.procs).values().cloned().collect();
        procs.sort_by_key(|p| p.pid);
        procs
    }

    /// The sandbox's log.
    pub(crate) fn log(&self) -> &SandboxLog {
        &self.log
    }

    pub(crate) fn remove(&self, pid: i32) {
        lock(&self.procs).remove(&pid);
    }

    /// Registers a freshly spawned process and starts collecting its output.
    pub(crate) fn adopt(
        &self,
        running: Running,
        command: String,
        name: Option<String>,
    ) -> Arc<Proc> {
        let proc = Arc::new(Proc {
            pid: running.pid,
            sandbox_log: self.log.clone(),
            command,
            name,
            started_at: now_rfc3339(),
            inner: Mutex::new(Inner { log: LogBuf::new(LOG_CAP), exit_code: None, ended_at: None }),
            events: broadcast::channel(1024).0,
            done: watch::channel(false).0,
        });
        self.insert(proc.clone());
        tokio::spawn(drive(proc.clone(), running));
        proc
    }

    fn insert(&self, proc: Arc<Proc>) {
        let mut procs = lock(&self.procs);
        let mut exited: Vec<(String, i32)> = procs
            .values()
            .filter_map(|p| lock(&p.inner).ended_at.clone().map(|t| (t, p.pid)))
            .collect();
        if exited.len() >= MAX_EXITED {
            exited.sort();
            for (_, pid) in exited.iter().take(exited.len() + 1 - MAX_EXITED) {
                procs.remove(pid);
            }
        }
        // A reused pid replaces the long-gone process that had it.
        procs.insert(proc.pid, proc);
    }
}

async fn drive(proc: Arc<Proc>, mut running: Running) {
    let mut splitters = [LineSplitter::default(), LineSplitter::default()];
    loop {
        match running.next().await {
            Step::Output(chunk) => {
                for line in splitters[chunk.kind as usize].push(&chunk.data) {
                    proc.record(Entry { kind: chunk.kind, line });
                }
            }
            Step::Exited { exit_code, .. } => {
                for (kind, s) in
                    [StreamKind::Stdout, StreamKind::Stderr].into_iter().zip(splitters.iter_mut())
                {
                    if let Some(line) = s.finish() {
                        proc.record(Entry { kind, line });
                    }
                }
                proc.finish(exit_code);
                return;
            }
        }
    }
}
