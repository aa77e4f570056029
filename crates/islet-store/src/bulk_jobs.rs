//! Bulk operations on a tenant's sandboxes (`POST /bulk/sandboxes/{op}`). The sandboxes are
//! fixed when the job is accepted, one item each, and every item's outcome is written as it is
//! done: the worker takes the next pending item (tenants in turn, each one's oldest job first),
//! so after a restart a job carries on where it stood, and an item cut short by a crash is done
//! again (every operation is safe to repeat). A tenant has at most [`MAX_OPEN_JOBS`] unfinished
//! jobs; finished ones are kept [`KEEP_FINISHED_MS`].

use islet_types::time::{now_millis, UnixMillis};
use islet_types::{BulkJobId, TenantId};
use rusqlite::{params, Connection, OptionalExtension};

use crate::rows::parse;
use crate::sandboxes::ListFilter;
use crate::{Store, StoreError};

/// The most sandboxes one job names.
pub const MAX_BULK_ITEMS: usize = 1000;
/// The most unfinished jobs one tenant has at once.
pub const MAX_OPEN_JOBS: u64 = 5;
/// How long a finished job stays readable.
pub(crate) const KEEP_FINISHED_MS: i64 = 7 * 24 * 3600 * 1000;

/// What a job does to each sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkOp {
    Pause,
    Resume,
    Stop,
    Destroy,
}

impl BulkOp {
    pub const ALL: [BulkOp; 4] = [BulkOp::Pause, BulkOp::Resume, BulkOp::Stop, BulkOp::Destroy];

    pub fn as_str(self) -> &'static str {
        match self {
            BulkOp::Pause => "pause",
            BulkOp::Resume => "resume",
            BulkOp::Stop => "stop",
            BulkOp::Destroy => "destroy",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.as_str() == raw)
    }
}

/// How one item ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemStatus {
    Pending,
    Succeeded,
    /// The operation did not apply (the sandbox was not there, or not in a state it applies to).
    Skipped,
    Failed,
}

impl ItemStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemStatus::Pending => "pending",
            ItemStatus::Succeeded => "succeeded",
            ItemStatus::Skipped => "skipped",
            ItemStatus::Failed => "failed",
        }
    }

    fn parse(raw: &str) -> Self {
        match raw {
            "succeeded" => ItemStatus::Succeeded,
            "skipped" => ItemStatus::Skipped,
            "failed" => ItemStatus::Failed,
            _ => ItemStatus::Pending,
        }
    }
}

/// One sandbox of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkItem {
    pub sandbox_id: String,
    pub status: ItemStatus,
    pub code: Option<String>,
    pub message: Option<String>,
    pub done_at: Option<UnixMillis>,
}

/// A job and its items, in the order they are done.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkJob {
    pub id: BulkJobId,
    pub tenant_id: TenantId,
    pub op: BulkOp,
    pub filter: Option<serde_json::Value>,
    pub created_at: UnixMillis,
    pub finished_at: Option<UnixMillis>,
    pub items: Vec<BulkItem>,
}

/// What the job names: sandbox ids, or a filter over the tenant's sandboxes.
#[derive(Debug, Clone)]
pub enum BulkTarget {
    /// Ids as given (one that is not the tenant's sandbox is skipped as not found).
    Ids(Vec<String>),
    Filter {
        filter: ListFilter,
        as_json: serde_json::Value,
    },
}

/// The next item to do.
#[derive(Debug, Clone)]
pub struct BulkWork {
    pub job_id: BulkJobId,
    pub tenant_id: TenantId,
    pub op: BulkOp,
    pub position: i64,
    pub sandbox_id: String,
}

fn job_tx(conn: &Connection, tenant: &str, id: &str) -> Result<Option<BulkJob>, StoreError> {
    let head = conn
        .prepare_cached(
            "SELECT id, tenant_id, op, filter, created_at, finished_at FROM bulk_jobs
             WHERE tenant_id = ?1 AND id = ?2",
        )?
        .query_row([tenant, id], |r| {
            let op: String = r.get(2)?;
            let filter: Option<String> = r.get(3)?;
            Ok((
                parse::<BulkJobId>(r.get(0)?)?,
                parse::<TenantId>(r.get(1)?)?,
                op,
                filter,
                r.get::<_, i64>(4)?,
                r.get::<_, Option<i64>>(5)?,
            ))
        })
        .optional()?;
    let Some((id, tenant_id, op, filter, created_at, finished_at)) = head else {
        return Ok(None);
    };
    let op = BulkOp::parse(&op).ok_or_else(|| StoreError::corrupt(format!("bulk op {op}")))?;
    let filter =
        filter.map(|f| serde_json::from_str(&f)).transpose().map_err(StoreError::corrupt)?;
    let items = conn
        .prepare_cached(
            "SELECT sandbox_id, status, code, message, done_at FROM bulk_job_items
             WHERE job_id = ?1 ORDER BY position",
        )?
        .query_map([id.as_str()], |r| {
            Ok(BulkItem {
                sandbox_id: r.get(0)?,
                status: ItemStatus::parse(&r.get::<_, String>(1)?),
                code: r.get(2)?,
                message: r.get(3)?,
                done_at: r.get(4)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(Some(BulkJob { id, tenant_id, op, filter, created_at, finished_at, items }))
}

/// The tenant's sandbox ids a filter matches (not destroyed unless it asks by state).
fn matching_tx(
    conn: &Connection,
    tenant: &str,
    filter: &ListFilter,
) -> Result<Vec<String>, StoreError> {
    let (where_sql, args) = crate::sandboxes::filter_sql(tenant, filter);
    let sql = format!(
        "SELECT id FROM sandboxes WHERE {where_sql} ORDER BY created_at, id LIMIT {}",
        MAX_BULK_ITEMS + 1
    );
    let ids = conn
        .prepare(&sql)?
        .query_map(rusqlite::params_from_iter(args.iter()), |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(ids)
}

impl Store {
    /// Accept a job: its sandboxes are fixed now. `Conflict` past [`MAX_BULK_ITEMS`].
    pub async fn create_bulk_job(
        &self,
        tenant_id: &TenantId,
        op: BulkOp,
        target: BulkTarget,
    ) -> Result<BulkJob, StoreError> {
        let tenant = tenant_id.to_string();
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let (ids, filter) = match target {
                BulkTarget::Ids(ids) => {
                    let mut seen = std::collections::HashSet::new();
                    (ids.into_iter().filter(|i| seen.insert(i.clone())).collect(), None)
                }
                BulkTarget::Filter { filter, as_json } => {
                    (matching_tx(&tx, &tenant, &filter)?, Some(as_json.to_string()))
                }
            };
            let open: u64 = tx.query_row(
                "SELECT COUNT(*) FROM bulk_jobs WHERE tenant_id = ?1 AND finished_at IS NULL",
                [&tenant],
                |r| r.get(0),
            )?;
            if open >= MAX_OPEN_JOBS {
                return Err(StoreError::Conflict(format!(
                    "{MAX_OPEN_JOBS} bulk jobs are still running; wait for one to finish"
                )));
            }
            if ids.len() > MAX_BULK_ITEMS {
                return Err(StoreError::Conflict(format!(
                    "a bulk job covers at most {MAX_BULK_ITEMS} sandboxes; narrow the filter"
                )));
            }
            let id = BulkJobId::generate();
            let now = now_millis();
            tx.execute(
                "INSERT INTO bulk_jobs (id, tenant_id, op, filter, created_at, finished_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, CASE WHEN ?6 THEN ?5 END)",
                params![id.as_str(), tenant, op.as_str(), filter, now, ids.is_empty()],
            )?;
            for (position, sandbox) in ids.iter().enumerate() {
                tx.execute(
                    "INSERT INTO bulk_job_items (job_id, position, sandbox_id, status)
                     VALUES (?1, ?2, ?3, 'pending')",
                    params![id.as_str(), position as i64, sandbox],
                )?;
            }
            let job = job_tx(&tx, &tenant, id.as_str())?.ok_or(StoreError::NotFound("bulk job"))?;
            tx.commit()?;
            Ok(job)
        })
        .await
    }

    pub async fn bulk_job(
        &self,
        tenant_id: &TenantId,
        id: &BulkJobId,
    ) -> Result<BulkJob, StoreError> {
        let (tenant, id) = (tenant_id.to_string(), id.to_string());
        self.with(move |conn| job_tx(conn, &tenant, &id)?.ok_or(StoreError::NotFound("bulk job")))
            .await
    }

    /// The next item to do: tenants take turns (the first tenant after `after` with pending
    /// work, in id order, wrapping around), and within a tenant the oldest job's next item.
    pub async fn next_bulk_work(
        &self,
        after: Option<&TenantId>,
    ) -> Result<Option<BulkWork>, StoreError> {
        let after = after.map(|t| t.to_string()).unwrap_or_default();
        self.with(move |conn| {
            let work = conn
                .prepare_cached(
                    "SELECT j.id, j.tenant_id, j.op, i.position, i.sandbox_id
                     FROM bulk_jobs j JOIN bulk_job_items i ON i.job_id = j.id
                     WHERE j.finished_at IS NULL AND i.status = 'pending'
                     ORDER BY j.tenant_id <= ?1, j.tenant_id, j.created_at, j.id, i.position
                     LIMIT 1",
                )?
                .query_row([&after], |r| {
                    Ok((
                        parse::<BulkJobId>(r.get(0)?)?,
                        parse::<TenantId>(r.get(1)?)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                })
                .optional()?;
            work.map(|(job_id, tenant_id, op, position, sandbox_id)| {
                let op = BulkOp::parse(&op)
                    .ok_or_else(|| StoreError::corrupt(format!("bulk op {op}")))?;
                Ok(BulkWork { job_id, tenant_id, op, position, sandbox_id })
            })
            .transpose()
        })
        .await
    }

    /// Record an item's outcome; the job is finished with its last item.
    pub async fn finish_bulk_item(
        &self,
        work: &BulkWork,
        status: ItemStatus,
        code: Option<String>,
        message: Option<String>,
    ) -> Result<(), StoreError> {
        let (job, position) = (work.job_id.to_string(), work.position);
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let now = now_millis();
            tx.execute(
                "UPDATE bulk_job_items SET status = ?3, code = ?4, message = ?5, done_at = ?6
                 WHERE job_id = ?1 AND position = ?2",
                params![job, position, status.as_str(), code, message, now],
            )?;
            tx.execute(
                "UPDATE bulk_jobs SET finished_at = ?2 WHERE id = ?1 AND finished_at IS NULL
                   AND NOT EXISTS (SELECT 1 FROM bulk_job_items
                                   WHERE job_id = ?1 AND status = 'pending')",
                params![job, now],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

impl Store {
    /// Forget jobs finished more than [`KEEP_FINISHED_MS`] ago; how many went.
    pub async fn prune_bulk_jobs(&self) -> Result<usize, StoreError> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            let before = now_millis() - KEEP_FINISHED_MS;
            tx.execute(
                "DELETE FROM bulk_job_items WHERE job_id IN
                   (SELECT id FROM bulk_jobs WHERE finished_at < ?1)",
                [before],
            )?;
            let gone = tx.execute("DELETE FROM bulk_jobs WHERE finished_at < ?1", [before])?;
            tx.commit()?;
            Ok(gone)
        })
        .await
    }
}
