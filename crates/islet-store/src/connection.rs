//! Opening the database and running blocking SQL off the async runtime.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::hooks::Action;
use rusqlite::Connection;
use tokio::sync::watch;

use crate::migrate::migrate;
use crate::StoreError;

/// A handle to the store. Cheap to clone.
///
/// SQLite allows one writer at a time; all statements go through one connection behind a mutex,
/// on tokio's blocking pool, so a slow fsync never stalls the async workers.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    /// Set by SQLite when a statement inserts into `events`; turned into a signal after the
    /// statement's closure returns (by then committed or rolled back).
    event_written: Arc<AtomicBool>,
    /// Bumped after any store call that wrote an event, for outbox readers that wait.
    events: Arc<watch::Sender<u64>>,
    /// Bumped after every committed change of what the preview edge serves (a preview, a
    /// grant or revocation, a sandbox's state, a domain, branding, a certificate), so an edge
    /// sharing this handle sees the change before the API call that made it answers.
    edge_version: Arc<AtomicU64>,
}

impl Store {
    /// Open (creating if needed) the database file and bring its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        private_files(path)?;
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // WAL lets readers proceed during a write; FULL makes every acknowledged commit durable.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn)?;
        let event_written = Arc::new(AtomicBool::new(false));
        let flag = event_written.clone();
        conn.update_hook(Some(move |action, _db: &str, table: &str, _row| {
            if action == Action::SQLITE_INSERT && table == "events" {
                flag.store(true, Ordering::Relaxed);
            }
        }));
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            event_written,
            events: Arc::new(watch::channel(0).0),
            edge_version: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Moves on every committed change of what the preview edge serves (see the field).
    pub fn edge_version(&self) -> u64 {
        self.edge_version.load(Ordering::Acquire)
    }

    /// [`Store::with`] for a change the edge serves: the version moves once it is committed.
    pub(crate) async fn with_edge<F, R>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        // Moved inside the blocking work, right after it: a caller that goes away while it
        // runs still leaves the version moved past what it committed.
        let version = self.edge_version.clone();
        self.with(move |conn| {
            let result = f(conn);
            version.fetch_add(1, Ordering::AcqRel);
            result
        })
        .await
    }

    /// Changes whenever this handle has written an event to the outbox. Readers wait on it
    /// instead of polling tightly; a missed change costs them only their fallback poll.
    pub fn event_signal(&self) -> watch::Receiver<u64> {
        self.events.subscribe()
    }

    /// Run `f` with the connection on the blocking pool.
    pub(crate) async fn with<F, R>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let conn = self.conn.clone();
        let (written, events) = (self.event_written.clone(), self.events.clone());
        tokio::task::spawn_blocking(move || {
            let mut guard =
                conn.lock().map_err(|_| StoreError::Join("store mutex poisoned".into()))?;
            let result = f(&mut guard);
            if written.swap(false, Ordering::Relaxed) {
                events.send_modify(|n| *n = n.wrapping_add(1));
            }
            result
        })
        .await
        .map_err(|e| StoreError::Join(e.to_string()))?
    }
}

/// The database holds signing keys, webhook secrets and tenants' private keys: it is created
/// `0600` before SQLite opens it (its WAL and shared-memory files take the database's mode),
/// and an existing one, with its companions, is brought to `0600`.
fn private_files(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io = |e: std::io::Error| StoreError::File(format!("{}: {e}", path.display()));
    std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path).map_err(io)?;
    for suffix in ["", "-wal", "-shm"] {
        let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
    }
    Ok(())
}
