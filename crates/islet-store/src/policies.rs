//! Policy documents (tenant defaults, per workspace and per user), the limits they merge into,
//! and end-user suspensions. What the limits admit is `admission.rs`'s.

use islet_types::policy::{Documents, Limits};
use islet_types::time::now_millis;
use islet_types::TenantId;
use rusqlite::{params, OptionalExtension};
use serde_json::{Map, Value};

use crate::{Store, StoreError};

/// Whose policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Tenant,
    /// An `external_workspace_id`: the defaults of the sandboxes created in it.
    Workspace(String),
    User(String),
}

impl Subject {
    fn key(&self) -> String {
        match self {
            Subject::Tenant => String::new(),
            Subject::Workspace(ws) => format!("workspace:{ws}"),
            Subject::User(uid) => format!("user:{uid}"),
        }
    }
}

pub(crate) fn policy_tx(
    conn: &rusqlite::Connection,
    tenant: &TenantId,
    subject: &Subject,
) -> Result<Option<Map<String, Value>>, StoreError> {
    let raw: Option<String> = conn
        .prepare_cached("SELECT document FROM policies WHERE tenant_id = ?1 AND subject = ?2")?
        .query_row(params![tenant.as_str(), subject.key()], |r| r.get(0))
        .optional()?;
    raw.map(|r| serde_json::from_str(&r).map_err(StoreError::corrupt)).transpose()
}

pub(crate) fn put_tx(
    conn: &rusqlite::Connection,
    tenant: &TenantId,
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
                    tenant.as_str(),
                    subject.key(),
                    Value::Object(doc.clone()).to_string(),
                    now_millis()
                ],
            )?;
        }
        _ => {
            conn.execute(
                "DELETE FROM policies WHERE tenant_id = ?1 AND subject = ?2",
                params![tenant.as_str(), subject.key()],
            )?;
        }
    }
    Ok(())
}

/// Who suspended an end user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuspendedBy {
    /// The tenant, through the API.
    Tenant,
    /// The platform's operator (`islet user suspend`); only the operator lifts it.
    Operator,
}

impl SuspendedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            SuspendedBy::Tenant => "tenant",
            SuspendedBy::Operator => "operator",
        }
    }
}

/// An end user's suspension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspension {
    pub reason: Option<String>,
    pub at: i64,
    pub by: SuspendedBy,
}

/// The documents that apply to `user`'s sandboxes in `workspace` (or outside any).
pub(crate) fn documents_tx(
    conn: &rusqlite::Connection,
    tenant: &TenantId,
    user: &str,
    workspace: Option<&str>,
) -> Result<Documents, StoreError> {
    let read = |subject: Subject| {
        Ok::<_, StoreError>(policy_tx(conn, tenant, &subject)?.unwrap_or_default())
    };
    Ok(Documents {
        tenant: read(Subject::Tenant)?,
        workspace: match workspace {
            Some(ws) => read(Subject::Workspace(ws.to_owned()))?,
            None => Default::default(),
        },
        user: read(Subject::User(user.to_owned()))?,
    })
}

/// The limits that apply to `user`'s sandboxes in `workspace` (none when `user` is `None`).
pub(crate) fn limits_tx(
    conn: &rusqlite::Connection,
    tenant: &TenantId,
    user: Option<&str>,
    workspace: Option<&str>,
) -> Result<Limits, StoreError> {
    let Some(user) = user else {
        return Ok(Limits::default());
    };
    Ok(Limits::of(&documents_tx(conn, tenant, user, workspace)?))
}

/// Refuse admission for a suspended end user.
pub(crate) fn check_not_suspended(
    conn: &rusqlite::Connection,
    tenant: &TenantId,
    user: &str,
) -> Result<(), StoreError> {
    let suspended: Option<i64> = conn
        .prepare_cached(
            "SELECT suspended_at FROM suspended_users WHERE tenant_id = ?1 AND external_user_id = ?2",
        )?
        .query_row(params![tenant.as_str(), user], |r| r.get(0))
        .optional()?;
    match suspended {
        Some(_) => Err(StoreError::Suspended(user.to_owned())),
        None => Ok(()),
    }
}

impl Store {
    /// The documents that apply to `user`'s sandboxes in `workspace`, read together.
    pub async fn policy_documents(
        &self,
        tenant_id: &TenantId,
        user: &str,
        workspace: Option<&str>,
    ) -> Result<Documents, StoreError> {
        let (tenant, user, workspace) =
            (tenant_id.clone(), user.to_owned(), workspace.map(str::to_owned));
        self.with(move |conn| documents_tx(conn, &tenant, &user, workspace.as_deref())).await
    }

    pub async fn policy(
        &self,
        tenant_id: &TenantId,
        subject: Subject,
    ) -> Result<Option<Map<String, Value>>, StoreError> {
        let tenant = tenant_id.clone();
        self.with(move |conn| policy_tx(conn, &tenant, &subject)).await
    }

    /// Replace (or with `None` or an empty document, remove) a policy document.
    pub async fn set_policy(
        &self,
        tenant_id: &TenantId,
        subject: Subject,
        document: Option<Map<String, Value>>,
    ) -> Result<(), StoreError> {
        let tenant = tenant_id.clone();
        self.with(move |conn| put_tx(conn, &tenant, &subject, document.as_ref())).await
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
        let tenant = tenant_id.clone();
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

    /// Suspend an end user: recorded, their user-bound keys and browser tokens revoked, and a
    /// `user.suspended` event, in one transaction. Their sandboxes are stopped by the caller
    /// (and by the reaper, which stops any that run while they are suspended).
    pub async fn suspend_user(
        &self,
        tenant_id: &TenantId,
        user: &str,
        reason: Option<String>,
        by: SuspendedBy,
    ) -> Result<(), StoreError> {
        let (tenant, user) = (tenant_id.clone(), user.to_owned());
        let by_operator = by == SuspendedBy::Operator;
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let now = now_millis();
            // The tenant's and the operator's suspensions are kept apart, each with its reason.
            tx.execute(
                "INSERT INTO suspended_users (tenant_id, external_user_id, reason, suspended_at,
                    by_tenant, by_operator, operator_reason)
                 VALUES (?1, ?2, CASE WHEN ?5 THEN NULL ELSE ?3 END, ?4, NOT ?5, ?5,
                    CASE WHEN ?5 THEN ?3 END)
                 ON CONFLICT(tenant_id, external_user_id) DO UPDATE SET
                    reason = CASE WHEN excluded.by_operator THEN reason ELSE excluded.reason END,
                    by_tenant = by_tenant OR excluded.by_tenant,
                    by_operator = by_operator OR excluded.by_operator,
                    operator_reason = CASE WHEN excluded.by_operator
                                           THEN excluded.operator_reason ELSE operator_reason END",
                params![tenant.as_str(), user, reason, now, by_operator],
            )?;
            let revoked: Vec<String> = tx
                .prepare_cached(
                    "SELECT id FROM api_keys
                     WHERE tenant_id = ?1 AND external_user_id = ?2 AND revoked_at IS NULL",
                )?
                .query_map(params![tenant.as_str(), user], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            tx.execute(
                "UPDATE api_keys SET revoked_at = ?3
                 WHERE tenant_id = ?1 AND external_user_id = ?2 AND revoked_at IS NULL",
                params![tenant.as_str(), user, now],
            )?;
            for key in &revoked {
                let why = serde_json::json!({ "reason": "end user suspended", "by": by.as_str() });
                crate::key_presets::key_event_tx(&tx, tenant.as_str(), key, "revoked", why)?;
            }
            tx.execute(
                "UPDATE browser_tokens SET revoked_at = ?3
                 WHERE tenant_id = ?1 AND external_user_id = ?2 AND revoked_at IS NULL",
                params![tenant.as_str(), user, now],
            )?;
            crate::events::insert_any(
                &tx,
                &tenant,
                None,
                "user.suspended",
                serde_json::json!({ "external_user_id": user, "reason": reason, "by": by.as_str() }),
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Lift `by`'s suspension: `(was suspended by them, still suspended by the other)`. The
    /// tenant cannot lift anything while the operator's suspension stands (409).
    pub async fn unsuspend_user(
        &self,
        tenant_id: &TenantId,
        user: &str,
        by: SuspendedBy,
    ) -> Result<(bool, bool), StoreError> {
        let (tenant, user) = (tenant_id.clone(), user.to_owned());
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let flags: Option<(bool, bool)> = tx
                .query_row(
                    "SELECT by_tenant, by_operator FROM suspended_users
                     WHERE tenant_id = ?1 AND external_user_id = ?2",
                    params![tenant.as_str(), user],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((by_tenant, by_operator)) = flags else {
                return Ok((false, false));
            };
            let (was, other) = match by {
                SuspendedBy::Tenant if by_operator => {
                    return Err(StoreError::Conflict(format!(
                        "{user} is suspended by the platform's operator; only the operator can lift it"
                    )));
                }
                SuspendedBy::Tenant => (by_tenant, false),
                SuspendedBy::Operator => (by_operator, by_tenant),
            };
            if other {
                // The tenant's own suspension stands.
                tx.execute(
                    "UPDATE suspended_users SET by_operator = 0, operator_reason = NULL
                     WHERE tenant_id = ?1 AND external_user_id = ?2",
                    params![tenant.as_str(), user],
                )?;
                tx.commit()?;
                return Ok((was, true));
            }
            let removed = tx.execute(
                "DELETE FROM suspended_users WHERE tenant_id = ?1 AND external_user_id = ?2",
                params![tenant.as_str(), user],
            )?;
            if removed > 0 {
                crate::events::insert_any(
                    &tx,
                    &tenant,
                    None,
                    "user.unsuspended",
                    serde_json::json!({ "external_user_id": user, "by": by.as_str() }),
                )?;
            }
            tx.commit()?;
            Ok((was, false))
        })
        .await
    }

    /// When, why and by whom an end user was suspended, if they are.
    pub async fn suspension(
        &self,
        tenant_id: &TenantId,
        user: &str,
    ) -> Result<Option<Suspension>, StoreError> {
        let (tenant, user) = (tenant_id.to_string(), user.to_owned());
        self.with(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT reason, suspended_at, by_operator, operator_reason FROM suspended_users
                     WHERE tenant_id = ?1 AND external_user_id = ?2",
                    params![tenant, user],
                    |r| {
                        // The operator's outranks the tenant's: it is the one shown.
                        Ok(if r.get::<_, bool>(2)? {
                            Suspension {
                                reason: r.get(3)?,
                                at: r.get(1)?,
                                by: SuspendedBy::Operator,
                            }
                        } else {
                            Suspension { reason: r.get(0)?, at: r.get(1)?, by: SuspendedBy::Tenant }
                        })
                    },
                )
                .optional()?)
        })
        .await
    }

    /// Sandboxes holding compute whose end user is suspended (for the reaper to stop).
    pub async fn suspended_running(
        &self,
    ) -> Result<Vec<(TenantId, islet_types::SandboxId)>, StoreError> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT s.tenant_id, s.id FROM sandboxes s JOIN suspended_users u
                   ON u.tenant_id = s.tenant_id AND u.external_user_id = s.external_user_id
                 WHERE s.state IN ('running', 'paused')",
            )?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(t, s)| {
                    Ok((
                        t.parse().map_err(StoreError::corrupt)?,
                        s.parse().map_err(StoreError::corrupt)?,
                    ))
                })
                .collect()
        })
        .await
    }

    /// The sandboxes of one end user that hold compute.
    pub async fn user_running(
        &self,
        tenant_id: &TenantId,
        user: &str,
    ) -> Result<Vec<islet_types::SandboxId>, StoreError> {
        let (tenant, user) = (tenant_id.to_string(), user.to_owned());
        self.with(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id FROM sandboxes WHERE tenant_id = ?1 AND external_user_id = ?2
                   AND state IN ('running', 'paused')",
            )?;
            let ids: Vec<String> =
                stmt.query_map(params![tenant, user], |r| r.get(0))?.collect::<Result<_, _>>()?;
            ids.into_iter().map(|i| i.parse().map_err(StoreError::corrupt)).collect()
        })
        .await
    }
}
