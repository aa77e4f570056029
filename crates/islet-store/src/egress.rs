//! A tenant's egress rules (kept with its settings), and all tenants' for the node to load.

use crate::tenant_settings::JsonSetting;
use crate::{Store, StoreError};
use islet_types::egress::EgressPolicy;
use islet_types::TenantId;

impl Store {
    /// The tenant's egress rules (empty when it set none).
    pub async fn egress(&self, tenant_id: &TenantId) -> Result<EgressPolicy, StoreError> {
        Ok(self.json_setting(tenant_id, JsonSetting::Egress).await?.unwrap_or_default())
    }

    /// Replace the tenant's egress rules (already validated; empty clears them).
    pub async fn set_egress(
        &self,
        tenant_id: &TenantId,
        policy: &EgressPolicy,
    ) -> Result<(), StoreError> {
        let value = (!policy.is_empty()).then_some(policy);
        self.set_json_setting(tenant_id, JsonSetting::Egress, value).await
    }

    /// Every tenant that has egress rules, with them.
    pub async fn all_egress(&self) -> Result<Vec<(TenantId, EgressPolicy)>, StoreError> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT tenant_id, egress FROM tenant_settings WHERE egress IS NOT NULL",
            )?;
            let rows: Vec<(String, String)> =
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
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
