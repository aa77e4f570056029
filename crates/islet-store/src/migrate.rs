//! Forward-only schema migrations, applied in order at open, each in its own transaction.

use rusqlite::Connection;

use crate::StoreError;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/0001_core.sql")),
    (2, include_str!("migrations/0002_previews.sql")),
    (3, include_str!("migrations/0003_webhooks.sql")),
    (4, include_str!("migrations/0004_policies.sql")),
    (5, include_str!("migrations/0005_usage.sql")),
    (6, include_str!("migrations/0006_keys.sql")),
    (7, include_str!("migrations/0007_suspensions.sql")),
    (8, include_str!("migrations/0008_origins.sql")),
    (9, include_str!("migrations/0009_network_and_pricing.sql")),
    (10, include_str!("migrations/0010_usage_daily.sql")),
    (11, include_str!("migrations/0011_operator_suspensions.sql")),
    (12, include_str!("migrations/0012_key_presets_and_events.sql")),
    (13, include_str!("migrations/0013_slug_and_always_on.sql")),
    (14, include_str!("migrations/0014_custom_domains_and_bulk_jobs.sql")),
];

pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )?;
    let current: i64 =
        conn.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| {
            r.get(0)
        })?;
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            (version, islet_types::time::now_millis()),
        )?;
        tx.commit()?;
        tracing::info!(version, "applied store migration");
    }
    Ok(())
}
