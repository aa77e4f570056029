//! Admission: the one rule that decides whether an end user may take compute, money and
//! capacity. Every way in (a create, a resume, and every later one: wake, fork, restore) calls
//! [`admit_tx`] inside its own `IMMEDIATE` transaction, so concurrent requests are serialised
//! and none is admitted past a limit. The order is fixed: suspension → limits → what the user
//! holds → what they spent → the limits' verdict → on refusal, a `quota.exceeded` event.
//!
//! The reaper's spending sweep ([`Store::over_spend`]) reads spend with the same
//! [`spend_tx`], so a cap refuses a create and stops a running sandbox at the same figure.

use islet_types::policy::{admit, Holding, Limits, Refusal};
use islet_types::time::{day_start, month_start, now_millis};
use islet_types::{Resources, SandboxId, TenantId};
use rusqlite::{params, Connection, Transaction};

use crate::events::insert_any;
use crate::policies::{check_not_suspended, limits_tx};
use crate::sandbox_rows::live_states;
use crate::usage::{user_totals_tx, UsageTotals};
use crate::{Pricing, Store, StoreError};

/// How a sandbox comes to hold compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Way {
    /// A new sandbox: it counts toward every limit.
    Create,
    /// A stopped sandbox runs again: it takes compute, but is already counted as a sandbox
    /// and for its storage.
    Resume,
    /// A paused sandbox runs again: it holds its compute already, so only a suspension
    /// refuses it.
    Unpause,
    /// A sandbox gets other CPU and memory: counted at its new size, without its old one.
    Resize,
}

impl Way {
    /// The `action` of its `quota.exceeded` event.
    fn action(self) -> &'static str {
        match self {
            Way::Create => "create",
            Way::Resume | Way::Unpause => "resume",
            Way::Resize => "resize",
        }
    }

    /// What a sandbox of `resources` adds to what its user holds.
    fn adding(self, resources: &Resources) -> Holding {
        let (cpu, memory_mb) = (u64::from(resources.cpu_count), u64::from(resources.memory_mb));
        match self {
            Way::Create => Holding {
                sandboxes: 1,
                concurrent: 1,
                cpu,
                memory_mb,
                storage_mb: u64::from(resources.disk_mb),
            },
            Way::Resume => Holding { sandboxes: 0, concurrent: 1, cpu, memory_mb, storage_mb: 0 },
            Way::Unpause => Holding::default(),
            Way::Resize => Holding { sandboxes: 0, concurrent: 0, cpu, memory_mb, storage_mb: 0 },
        }
    }
}

/// The verdict. A refusal's event is written in the caller's transaction, which the caller
/// commits (the refusal is an outcome, not a failure).
#[derive(Debug)]
pub(crate) enum Admission {
    /// Admitted under these limits (the create caps its timeout by them).
    Admitted(Limits),
    Refused(Refusal),
}

/// Admit `user`'s sandbox of `resources` into `tenant`'s compute. `sandbox` is the sandbox
/// being resumed (not counted as held, and named in the refusal's event). A suspended user is
/// [`StoreError::Suspended`].
pub(crate) fn admit_tx(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    user: &str,
    workspace: Option<&str>,
    way: Way,
    resources: &Resources,
    sandbox: Option<&SandboxId>,
) -> Result<Admission, StoreError> {
    check_not_suspended(tx, tenant, user)?;
    let limits = limits_tx(tx, tenant, Some(user), workspace)?;
    if way == Way::Unpause {
        return Ok(Admission::Admitted(limits));
    }
    let held = holding_tx(tx, tenant, user, sandbox)?;
    let verdict = spend_or_refuse(tx, tenant, user, &limits)
        .and_then(|()| admit(&limits, &held, &way.adding(resources)));
    match verdict {
        Ok(()) => Ok(Admission::Admitted(limits)),
        Err(refusal) => {
            refuse_tx(tx, tenant, user, &refusal, way.action(), sandbox)?;
            Ok(Admission::Refused(refusal))
        }
    }
}

/// What `user` holds now, not counting `except` (a sandbox being resumed).
pub(crate) fn holding_tx(
    conn: &Connection,
    tenant: &TenantId,
    user: &str,
    except: Option<&SandboxId>,
) -> Result<Holding, StoreError> {
    let except = except.map(SandboxId::as_str).unwrap_or("");
    holdings(
        conn,
        "INDEXED BY sandboxes_user_live WHERE tenant_id = ?1 AND external_user_id = ?2
           AND state != 'destroyed' AND id != ?3",
        params![tenant.as_str(), user, except],
    )
}

/// What the sandboxes `filter` selects hold (one query for a user's and a tenant's).
fn holdings(
    conn: &Connection,
    filter: &str,
    args: impl rusqlite::Params,
) -> Result<Holding, StoreError> {
    let live = live_states();
    let sql = format!(
        "SELECT
            COUNT(*),
            COALESCE(SUM(state IN ({live})), 0),
            COALESCE(SUM(CASE WHEN state IN ({live}) THEN cpu_count END), 0),
            COALESCE(SUM(CASE WHEN state IN ({live}) THEN memory_mb END), 0),
            COALESCE(SUM(disk_mb), 0)
         FROM sandboxes {filter}"
    );
    let row = conn.prepare_cached(&sql)?.query_row(args, |r| {
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

/// The spending cap `user` has reached, if any: running time for this UTC day, credit for
/// this calendar month. Reads nothing when the limits set no cap.
pub(crate) fn spend_tx(
    conn: &Connection,
    tenant: &TenantId,
    user: &str,
    limits: &Limits,
) -> Result<Option<Refusal>, StoreError> {
    if limits.max_sandbox_seconds_per_day.is_none() && limits.max_credit_cents.is_none() {
        return Ok(None);
    }
    let now = now_millis();
    let today = match limits.max_sandbox_seconds_per_day {
        Some(_) => user_totals_tx(conn, tenant.as_str(), user, day_start(now))?,
        None => UsageTotals::default(),
    };
    let (month, pricing) = match limits.max_credit_cents {
        Some(_) => (
            user_totals_tx(conn, tenant.as_str(), user, month_start(now))?,
            crate::pricing::pricing_tx(conn, tenant.as_str())?,
        ),
        None => Default::default(),
    };
    Ok(spend_refusal(limits, &today, &month, &pricing))
}

/// [`spend_tx`] for admission, which fails closed: a cap that cannot be read refuses.
fn spend_or_refuse(
    conn: &Connection,
    tenant: &TenantId,
    user: &str,
    limits: &Limits,
) -> Result<(), Refusal> {
    let refusal = spend_tx(conn, tenant, user, limits).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "reading what a user spent failed");
        let all = UsageTotals { sandbox_seconds: f64::INFINITY, ..Default::default() };
        let pricing = Pricing { sandbox_hour_cents: 1.0, ..Default::default() };
        spend_refusal(limits, &all, &all, &pricing)
    });
    refusal.map_or(Ok(()), Err)
}

/// The cap `today`'s and `month`'s usage has reached, if any.
fn spend_refusal(
    limits: &Limits,
    today: &UsageTotals,
    month: &UsageTotals,
    pricing: &Pricing,
) -> Option<Refusal> {
    let used = today.sandbox_seconds;
    if let Some(cap) = limits.max_sandbox_seconds_per_day {
        if used >= cap as f64 {
            return Some(Refusal {
                limit: "max_sandbox_seconds_per_day",
                max: cap,
                current: if used.is_finite() { used as u64 } else { cap },
                requested: 0,
            });
        }
    }
    let spent = pricing.cents(month);
    if let Some(cap) = limits.max_credit_cents {
        if spent >= cap as f64 {
            return Some(Refusal {
                limit: "max_credit_cents",
                max: cap,
                current: if spent.is_finite() { spent.ceil() as u64 } else { cap },
                requested: 0,
            });
        }
    }
    None
}

/// Write the `quota.exceeded` event of a refusal (`action`: create, resume or stop).
pub(crate) fn refuse_tx(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    user: &str,
    refusal: &Refusal,
    action: &str,
    sandbox: Option<&SandboxId>,
) -> Result<(), StoreError> {
    let data = serde_json::json!({
        "external_user_id": user,
        "limit": refusal.limit,
        "max": refusal.max,
        "current": refusal.current,
        "requested": refusal.requested,
        "action": action,
        "sandbox_id": sandbox,
    });
    insert_any(tx, tenant, None, "quota.exceeded", data)
}

impl Store {
    /// End users who have reached a spending cap (running time for the UTC day, credit for
    /// the month) and still hold compute, with the cap. A `quota.exceeded` event is written
    /// for each, once per sweep that finds them.
    pub async fn over_spend(&self) -> Result<Vec<(TenantId, String, Refusal)>, StoreError> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            let tenants: Vec<String> = tx
                .prepare_cached(
                    "SELECT DISTINCT tenant_id FROM policies
                     WHERE instr(document, 'max_sandbox_seconds_per_day') > 0
                        OR instr(document, 'max_credit_cents') > 0",
                )?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let users_sql = format!(
                "SELECT DISTINCT external_user_id FROM sandboxes INDEXED BY sandboxes_user_live
                 WHERE tenant_id = ?1 AND external_user_id IS NOT NULL
                   AND state != 'destroyed' AND state IN ({})",
                live_states()
            );
            let mut over = Vec::new();
            for tenant in tenants {
                let tenant_id: TenantId = tenant.parse().map_err(StoreError::corrupt)?;
                // Only users holding compute can run past a cap: each is one indexed read per
                // period, however much usage the tenant has recorded.
                let users: Vec<String> = tx
                    .prepare_cached(&users_sql)?
                    .query_map([&tenant], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                for user in users {
                    let limits = limits_tx(&tx, &tenant_id, Some(&user), None)?;
                    let Some(refusal) = spend_tx(&tx, &tenant_id, &user, &limits)? else {
                        continue;
                    };
                    refuse_tx(&tx, &tenant_id, &user, &refusal, "stop", None)?;
                    over.push((tenant_id.clone(), user, refusal));
                }
            }
            tx.commit()?;
            Ok(over)
        })
        .await
    }

    /// What all of a tenant's sandboxes hold now (its end users' and its own).
    pub async fn tenant_holding(&self, tenant_id: &TenantId) -> Result<Holding, StoreError> {
        let tenant = tenant_id.clone();
        self.with(move |conn| {
            holdings(conn, "WHERE tenant_id = ?1 AND state != 'destroyed'", [tenant.as_str()])
        })
        .await
    }

    /// What an end user holds now.
    pub async fn user_holding(
        &self,
        tenant_id: &TenantId,
        user: &str,
    ) -> Result<Holding, StoreError> {
        let (tenant, user) = (tenant_id.clone(), user.to_owned());
        self.with(move |conn| holding_tx(conn, &tenant, &user, None)).await
    }

    /// The limits that apply to an end user's sandboxes in `workspace`, and what they hold now.
    pub async fn user_standing(
        &self,
        tenant_id: &TenantId,
        user: &str,
        workspace: Option<&str>,
    ) -> Result<(Limits, Holding), StoreError> {
        let (tenant, user, ws) = (tenant_id.clone(), user.to_owned(), workspace.map(str::to_owned));
        self.with(move |conn| {
            let limits = limits_tx(conn, &tenant, Some(&user), ws.as_deref())?;
            Ok((limits, holding_tx(conn, &tenant, &user, None)?))
        })
        .await
    }
}
