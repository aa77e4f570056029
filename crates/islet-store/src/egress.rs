//! A tenant's egress rules (kept with its settings), and all tenants' for the node to load.

use islet_types::egress::EgressPolicy;
use islet_types::TenantId;
use rusqlite::OptionalExtension;

use crate::{Store, StoreError};

impl Store {
    /// The tenant's egress rules (empty when it set none).
    pub async fn egress(&self, tenant_id: &TenantId) -> Result<EgressPolicy, StoreError> {
        let tenant = tenant_id.to_string();
        self.with(move |conn| {
            let raw: Option<String> = conn
                .prepare_cached("SELECT egress FROM tenant_settings WHERE tenant_id = ?1")?
                .query_row([tenant], |r| r.get(0))
                .optional()?
                .flatten();
            match raw {
                None => Ok(EgressPolicy::default()),
                Some(raw) => serde_json::from_str(&raw).map_err(StoreError::corrupt),
            }
        })
        .await
    }

    /// Replace the tenant's egress rules (already validated; empty clears them).
    pub async fn set_egress(
        &self,
        tenant_id: &TenantId,
        policy: &EgressPolicy,
    ) -> Result<(), StoreError> {
        let tenant = tenant_id.to_string();
        let raw = if policy.is_empty() {
            None
        } else {
            Some(serde_json::to_string(policy).map_err(StoreError::corrupt)?)
        };
        self.with(move |conn| {
            let tx = conn.transaction()?;
            crate::tenant_settings::ensure_row(&tx, &tenant)?;
            tx.execute(
                "UPDATE tenant_settings SET egress = ?2, updated_at = ?3 WHERE tenant_id = ?1",
                rusqlite::params![tenant, raw, islet_types::time::now_millis()],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Every tenant that has egress rules, with them.
    pub async fn all_egress(&self) -> Result<Vec<(TenantId, EgressPolicy)>, StoreError> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT tenant_id, egress FROM tenant_settings WHERE egress IS NOT NULL",
            )?;
            let rows: Vec<(String, String)> = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            rows.into_iter()
                .map(|(t, raw)| {
                    Ok((
                        t.parse().map_err(StoreError::corrupt)?,
                        serde_json::from_str(&raw).map_err(StoreError::corrupt)?,
                    ))
                })
                .collect()
        })
        .await
    }
}
