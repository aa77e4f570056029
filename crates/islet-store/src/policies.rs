//! Policy documents (tenant defaults and per-user) and what an end user holds, read inside the
//! admission transaction so no concurrency can admit past a limit.

use islet_types::policy::{Holding, Limits};
use islet_types::time::now_millis;
use islet_types::TenantId;
use rusqlite::{params, OptionalExtension};
use serde_json::{Map, Value};

use crate::{Store, StoreError};

/// Whose policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Tenant,
    User(String),
}

impl Subject {
    fn key(&self) -> String {
        match self {
            Subject::Tenant => String::new(),
            Subject::User(uid) => format!("user:{uid}"),
        }
    }
}

pub(crate) fn policy_tx(
    conn: &rusqlite::Connection,
    tenant: &str,
    subject: &Subject,
) -> Result<Option<Map<String, Value>>, StoreError> {
    let raw: Option<String> = conn
        .prepare_cached("SELECT document FROM policies WHERE tenant_id = ?1 AND subject = ?2")?
        .query_row(params![tenant, subject.key()], |r| r.get(0))
        .optional()?;
    raw.map(|r| serde_json::from_str(&r).map_err(StoreError::corrupt))
        .transpose()
}

fn put_tx(
    conn: &rusqlite::Connection,
    tenant: &str,
    subject: &Subject,
    document: Option<&Map<String, Value>>,
) -> Result<(), StoreError> {
    match document {
        Some(doc) if !doc.is_empty() => {
            conn.execute(
                "INSERT INTO policies (tenant_id, subject, document, updated_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(tenant_id, subject)
                 DO UPDATE SET document = excluded.document, updated_at = excluded.updated_at",
                params![
                    tenant,
                    subject.key(),
                    Value::Object(doc.clone()).to_string(),
                    now_millis()
                ],
            )?;
        }
        _ => {
            conn.execute(
                "DELETE FROM policies WHERE tenant_id = ?1 AND subject = ?2",
                params![tenant, subject.key()],
            )?;
        }
    }
    Ok(())
}

/// The limits that apply to `user` of `tenant` (none when `user` is `None`).
pub(crate) fn limits_tx(
    conn: &rusqlite::Connection,
    tenant: &str,
    user: Option<&str>,
) -> Result<Limits, StoreError> {
    let Some(user) = user else {
        return Ok(Limits::default());
    };
    let t = policy_tx(conn, tenant, &Subject::Tenant)?.unwrap_or_default();
    let u = policy_tx(conn, tenant, &Subject::User(user.to_owned()))?.unwrap_or_default();
    Ok(Limits::of(&t, &u))
}

/// What `user` holds now, not counting `except` (a sandbox being resumed).
pub(crate) fn holding_tx(
    conn: &rusqlite::Connection,
    tenant: &str,
    user: &str,
    except: Option<&str>,
) -> Result<Holding, StoreError> {
    let row = conn
        .prepare_cached(
            "SELECT
                COUNT(*),
                COALESCE(SUM(state IN ('creating', 'running', 'paused')), 0),
                COALESCE(SUM(CASE WHEN state IN ('creating', 'running', 'paused') THEN cpu_count END), 0),
                COALESCE(SUM(CASE WHEN state IN ('creating', 'running', 'paused') THEN memory_mb END), 0),
                COALESCE(SUM(disk_mb), 0)
             FROM sandboxes
             WHERE tenant_id = ?1 AND external_user_id = ?2
               AND state NOT IN ('destroyed', 'error') AND id != ?3",
        )?
        .query_row(params![tenant, user, except.unwrap_or("")], |r| {
            Ok(Holding {
                sandboxes: r.get::<_, i64>(0)? as u64,
                concurrent: r.get::<_, i64>(1)? as u64,
                cpu: r.get::<_, i64>(2)? as u64,
                memory_mb: r.get::<_, i64>(3)? as u64,
                storage_mb: r.get::<_, i64>(4)? as u64,
            })
        })?;
    Ok(row)
}

/// The `data` of a `quota.exceeded` event.
pub(crate) fn refusal_data(
    refusal: &islet_types::policy::Refusal,
    user: &str,
    action: &str,
    sandbox: Option<&str>,
) -> Value {
    serde_json::json!({
        "external_user_id": user,
        "limit": refusal.limit,
        "max": refusal.max,
        "current": refusal.current,
        "requested": refusal.requested,
        "action": action,
        "sandbox_id": sandbox,
    })
}

impl Store {
    pub async fn policy(
        &self,
        tenant_id: &TenantId,
        subject: Subject,
    ) -> Result<Option<Map<String, Value>>, StoreError> {
        let tenant = tenant_id.to_string();
        self.with(move |conn| policy_tx(conn, &tenant, &subject))
            .await
    }

    /// Replace (or with `None` or an empty document, remove) a policy document.
    pub async fn set_policy(
        &self,
        tenant_id: &TenantId,
        subject: Subject,
        document: Option<Map<String, Value>>,
    ) -> Result<(), StoreError> {
        let tenant = tenant_id.to_string();
        self.with(move |conn| put_tx(conn, &tenant, &subject, document.as_ref()))
            .await
    }

    /// Change one section of a policy document in one transaction (`None` removes it);
    /// returns the document after.
    pub async fn set_policy_section(
        &self,
        tenant_id: &TenantId,
        subject: Subject,
        section: &'static str,
        value: Option<Map<String, Value>>,
    ) -> Result<Map<String, Value>, StoreError> {
        let tenant = tenant_id.to_string();
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let mut doc = policy_tx(&tx, &tenant, &subject)?.unwrap_or_default();
            match value {
                Some(v) => doc.insert(section.to_owned(), Value::Object(v)),
                None => doc.remove(section),
            };
            put_tx(&tx, &tenant, &subject, Some(&doc))?;
            tx.commit()?;
            Ok(doc)
        })
        .await
    }

    /// The limits that apply to an end user, and what they hold now.
    pub async fn user_standing(
        &self,
        tenant_id: &TenantId,
        user: &str,
    ) -> Result<(Limits, Holding), StoreError> {
        let (tenant, user) = (tenant_id.to_string(), user.to_owned());
        self.with(move |conn| {
            Ok((
                limits_tx(conn, &tenant, Some(&user))?,
                holding_tx(conn, &tenant, &user, None)?,
            ))
        })
        .await
    }
}
