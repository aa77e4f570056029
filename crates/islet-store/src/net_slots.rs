//! Network slots: each live sandbox holds one /30 of the node's range, by index. A released
//! slot is held back for a while so no cached route can reach the next sandbox behind it.

use islet_types::time::now_millis;
use rusqlite::{params, OptionalExtension, Transaction};

use crate::StoreError;

/// Number of /30 slots a node hands out (10.213.0.0/16 holds 16384; slot 0 is never used).
pub(crate) const NET_SLOTS: i64 = 16_383;

/// How long a released network slot stays out of use: well past the preview edge's route
/// cache lifetime (1 s), so cached routes to a slot die before another sandbox gets it.
pub(crate) const NET_SLOT_HOLD_MS: i64 = 10_000;

/// The lowest network slot neither in use nor recently released, or an error when the node is
/// full.
pub(crate) fn free_net_index(tx: &Transaction<'_>) -> Result<u32, StoreError> {
    let now = now_millis();
    tx.execute("DELETE FROM net_slot_holds WHERE until <= ?1", [now])?;
    let taken = |slot: i64| -> Result<bool, StoreError> {
        Ok(tx
            .query_row(
                "SELECT 1 FROM sandboxes WHERE net_index = ?1
                 UNION ALL SELECT 1 FROM net_slot_holds WHERE net_index = ?1",
                [slot],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    };
    if !taken(1)? {
        return Ok(1);
    }
    let next: Option<i64> = tx.query_row(
        "SELECT MIN(c.slot + 1) FROM (
             SELECT net_index AS slot FROM sandboxes WHERE net_index IS NOT NULL
             UNION ALL SELECT net_index FROM net_slot_holds
         ) c
         WHERE c.slot + 1 <= ?1
           AND NOT EXISTS (SELECT 1 FROM sandboxes t WHERE t.net_index = c.slot + 1)
           AND NOT EXISTS (SELECT 1 FROM net_slot_holds h WHERE h.net_index = c.slot + 1)",
        [NET_SLOTS],
        |r| r.get(0),
    )?;
    next.map(|n| n as u32).ok_or(StoreError::NoNetworkSlot)
}

/// Keep a released slot out of use for [`NET_SLOT_HOLD_MS`].
pub(crate) fn hold_net_index(tx: &Transaction<'_>, slot: u32) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO net_slot_holds (net_index, until) VALUES (?1, ?2)
         ON CONFLICT (net_index) DO UPDATE SET until = ?2",
        params![slot, now_millis() + NET_SLOT_HOLD_MS],
    )?;
    Ok(())
}
