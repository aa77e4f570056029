//! A tenant's price list: what its end users' metered usage costs, in cents. `credit_cents` in
//! usage reports is computed with it, and `quotas.max_credit_cents` caps it per calendar month.
//! A tenant that sets no prices has free usage (every `credit_cents` is 0, and a credit cap
//! never bites).

use serde::{Deserialize, Serialize};

use crate::tenant_settings::{json_setting_tx, JsonSetting};
use crate::usage::UsageTotals;
use crate::StoreError;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
/// The highest price of one unit, in cents ($10,000): beyond it a value is surely a mistake.
pub const MAX_PRICE_CENTS: f64 = 1_000_000.0;

/// Cents per unit of each metered quantity. Fractions of a cent are kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pricing {
    /// Per hour a sandbox runs (wall time, whatever its size).
    pub sandbox_hour_cents: f64,
    /// Per allocated vCPU per hour of running.
    pub vcpu_hour_cents: f64,
    /// Per hour of CPU time actually used.
    pub cpu_hour_cents: f64,
    /// Per GiB of memory in use per hour.
    pub memory_gib_hour_cents: f64,
    /// Per GiB of allocated disk per hour it exists (running or not).
    pub storage_gib_hour_cents: f64,
    /// Per GiB the sandbox sent.
    pub network_egress_gib_cents: f64,
    /// Per GiB the sandbox received.
    pub network_ingress_gib_cents: f64,
}

impl Pricing {
    fn prices(&self) -> [(&'static str, f64); 7] {
        [
            ("sandbox_hour_cents", self.sandbox_hour_cents),
            ("vcpu_hour_cents", self.vcpu_hour_cents),
            ("cpu_hour_cents", self.cpu_hour_cents),
            ("memory_gib_hour_cents", self.memory_gib_hour_cents),
            ("storage_gib_hour_cents", self.storage_gib_hour_cents),
            ("network_egress_gib_cents", self.network_egress_gib_cents),
            ("network_ingress_gib_cents", self.network_ingress_gib_cents),
        ]
    }

    /// Every price is a finite number in `0..=MAX_PRICE_CENTS`; the first that is not is named.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for (field, price) in self.prices() {
            if !price.is_finite() || !(0.0..=MAX_PRICE_CENTS).contains(&price) {
                return Err((
                    field,
                    format!("{field} must be a number of cents from 0 to {MAX_PRICE_CENTS}"),
                ));
            }
        }
        Ok(())
    }

    pub fn is_free(&self) -> bool {
        self.prices().iter().all(|(_, p)| *p == 0.0)
    }

    /// What `t` costs, in cents (not rounded).
    pub fn cents(&self, t: &UsageTotals) -> f64 {
        t.sandbox_seconds / 3600.0 * self.sandbox_hour_cents
            + t.vcpu_seconds / 3600.0 * self.vcpu_hour_cents
            + t.cpu_seconds / 3600.0 * self.cpu_hour_cents
            + t.memory_gib_seconds / 3600.0 * self.memory_gib_hour_cents
            + t.storage_gib_hours * self.storage_gib_hour_cents
            + t.network_egress_bytes / GIB * self.network_egress_gib_cents
            + t.network_ingress_bytes / GIB * self.network_ingress_gib_cents
    }
}

/// The tenant's price list (all zero when it set none).
pub(crate) fn pricing_tx(conn: &rusqlite::Connection, tenant: &str) -> Result<Pricing, StoreError> {
    Ok(json_setting_tx(conn, tenant, JsonSetting::Pricing)?.unwrap_or_default())
}

impl crate::Store {
    pub async fn pricing(&self, tenant_id: &islet_types::TenantId) -> Result<Pricing, StoreError> {
        Ok(self.json_setting(tenant_id, JsonSetting::Pricing).await?.unwrap_or_default())
    }

    /// Replace the tenant's price list (`None` clears it: usage is free).
    pub async fn set_pricing(
        &self,
        tenant_id: &islet_types::TenantId,
        pricing: Option<Pricing>,
    ) -> Result<(), StoreError> {
        self.set_json_setting(tenant_id, JsonSetting::Pricing, pricing.as_ref()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_priced_per_unit() {
        let p = Pricing {
            sandbox_hour_cents: 1.0,
            vcpu_hour_cents: 2.0,
            memory_gib_hour_cents: 0.5,
            storage_gib_hour_cents: 0.01,
            network_egress_gib_cents: 9.0,
            ..Pricing::default()
        };
        let t = UsageTotals {
            sandbox_seconds: 7200.0,
            vcpu_seconds: 14_400.0,
            cpu_seconds: 10.0,
            memory_gib_seconds: 3600.0,
            storage_gib_hours: 100.0,
            network_ingress_bytes: GIB,
            network_egress_bytes: 2.0 * GIB,
        };
        // 2 h × 1 + 4 vCPU-h × 2 + 1 GiB-h × 0.5 + 100 GiB-h × 0.01 + 2 GiB × 9
        assert!((p.cents(&t) - (2.0 + 8.0 + 0.5 + 1.0 + 18.0)).abs() < 1e-9);
        assert!(Pricing::default().is_free());
        assert_eq!(Pricing::default().cents(&t), 0.0);
    }

    #[test]
    fn prices_must_be_sane() {
        assert!(Pricing::default().validate().is_ok());
        for bad in [-1.0, f64::NAN, f64::INFINITY, MAX_PRICE_CENTS * 2.0] {
            let p = Pricing { cpu_hour_cents: bad, ..Pricing::default() };
            assert_eq!(p.validate().expect_err("a bad price").0, "cpu_hour_cents");
        }
    }
}
