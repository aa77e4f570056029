//! Per-member caps (the SDK's `member_caps`): on Islet an organization's members who spend are
//! its end users, so a member's caps are two fields of their policy's `quotas` section —
//! `usage_cap_cents` is `max_credit_cents` (this calendar month) and `max_concurrent_sandboxes`
//! is `max_concurrent` — read and written in place, never a second copy.

use islet_types::time::{month_start, now_millis};
use islet_types::TenantId;
use rusqlite::params;
use serde_json::{Map, Value};

use crate::admission::holding_tx;
use crate::policies::{policy_tx, put_tx, Subject};
use crate::usage::user_totals_tx;
use crate::{Store, StoreError};

/// One end user's caps and what they use now.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberCaps {
    pub external_user_id: String,
    pub usage_cap_cents: Option<u64>,
    pub max_concurrent_sandboxes: Option<u64>,
    /// Credit spent this calendar month (UTC), at the tenant's prices.
    pub spent_cents: f64,
    /// Sandboxes holding compute.
    pub concurrent_sandboxes: u64,
}

/// The quota fields the caps are.
const CREDIT: &str = "max_credit_cents";
const CONCURRENT: &str = "max_concurrent";

fn caps_of(doc: &Map<String, Value>) -> (Option<u64>, Option<u64>) {
    let quotas = doc.get("quotas");
    let get = |f: &str| quotas.and_then(|q| q.get(f)).and_then(Value::as_u64);
    (get(CREDIT), get(CONCURRENT))
}

fn member_tx(
    conn: &rusqlite::Connection,
    tenant: &TenantId,
    pricing: &crate::Pricing,
    user: &str,
    doc: &Map<String, Value>,
) -> Result<MemberCaps, StoreError> {
    let (usage_cap_cents, max_concurrent_sandboxes) = caps_of(doc);
    let month = user_totals_tx(conn, tenant.as_str(), user, month_start(now_millis()))?;
    Ok(MemberCaps {
        external_user_id: user.to_owned(),
        usage_cap_cents,
        max_concurrent_sandboxes,
        spent_cents: pricing.cents(&month),
        concurrent_sandboxes: holding_tx(conn, tenant, user, None)?.concurrent,
    })
}

impl Store {
    /// Every end user with a cap set, by id.
    pub async fn member_caps(&self, tenant_id: &TenantId) -> Result<Vec<MemberCaps>, StoreError> {
        let tenant = tenant_id.clone();
        self.with(move |conn| {
            let docs: Vec<(String, String)> = conn
                .prepare_cached(
                    "SELECT substr(subject, 6), document FROM policies
                     WHERE tenant_id = ?1 AND subject LIKE 'user:%' ORDER BY subject",
                )?
                .query_map(params![tenant.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            // One price list for every member.
            let pricing = crate::pricing::pricing_tx(conn, tenant.as_str())?;
            let mut out = Vec::new();
            for (user, raw) in docs {
                let doc: Map<String, Value> =
                    serde_json::from_str(&raw).map_err(StoreError::corrupt)?;
                if caps_of(&doc) != (None, None) {
                    out.push(member_tx(conn, &tenant, &pricing, &user, &doc)?);
                }
            }
            Ok(out)
        })
        .await
    }

    /// Change one end user's caps: `Some(Some(n))` sets, `Some(None)` clears, `None` leaves a
    /// cap as it is. Answers the caps after.
    pub async fn set_member_caps(
        &self,
        tenant_id: &TenantId,
        user: &str,
        usage_cap_cents: Option<Option<u64>>,
        max_concurrent_sandboxes: Option<Option<u64>>,
    ) -> Result<MemberCaps, StoreError> {
        let (tenant, user) = (tenant_id.clone(), user.to_owned());
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let subject = Subject::User(user.clone());
            let mut doc = policy_tx(&tx, &tenant, &subject)?.unwrap_or_default();
            let mut quotas =
                doc.get("quotas").and_then(Value::as_object).cloned().unwrap_or_default();
            for (field, change) in
                [(CREDIT, usage_cap_cents), (CONCURRENT, max_concurrent_sandboxes)]
            {
                match change {
                    Some(Some(v)) => {
                        quotas.insert(field.to_owned(), Value::from(v));
                    }
                    Some(None) => {
                        quotas.remove(field);
                    }
                    None => {}
                }
            }
            if quotas.is_empty() {
                doc.remove("quotas");
            } else {
                doc.insert("quotas".to_owned(), Value::Object(quotas));
            }
            put_tx(&tx, &tenant, &subject, Some(&doc))?;
            let pricing = crate::pricing::pricing_tx(&tx, tenant.as_str())?;
            let caps = member_tx(&tx, &tenant, &pricing, &user, &doc)?;
            tx.commit()?;
            Ok(caps)
        })
        .await
    }
}
