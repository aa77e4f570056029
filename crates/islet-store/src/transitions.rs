//! Every sandbox state change: [`next_record`] (pure: the state machine and the fields a
//! change sets), then in one transaction the admission of a resume, the network slot, the
//! row, the meter and the lifecycle event.

use islet_types::sandbox::{Transition, TransitionError};
use islet_types::time::{now_millis, UnixMillis};
use islet_types::{SandboxId, SandboxState};
use rusqlite::{params, Transaction};

use crate::admission::{admit_tx, Admission, Way};
use crate::events::insert_event;
use crate::net_slots::{free_net_index, hold_net_index};
use crate::sandbox_rows::{get_tx, SandboxRecord};
use crate::{Store, StoreError};

/// Extra facts recorded with a transition.
#[derive(Debug, Clone, Default)]
pub struct TransitionFacts {
    pub boot_ms: Option<i64>,
    pub error: Option<String>,
    /// The destroy was caused by the sandbox's timeout.
    pub timed_out: bool,
}

/// The event a transition writes. Every change has one but the start of a destroy that is
/// not a timeout: its event is `sandbox.destroyed`, written when the destroy finishes.
pub(crate) fn event_for(
    from: SandboxState,
    t: Transition,
    timed_out: bool,
) -> Option<&'static str> {
    Some(match t {
        Transition::Started if from == SandboxState::Creating => "sandbox.running",
        Transition::Started => return None,
        Transition::Failed => "sandbox.error",
        Transition::Pause => "sandbox.paused",
        Transition::Resume => "sandbox.resumed",
        Transition::Stop => "sandbox.stopped",
        Transition::Destroy if timed_out => "sandbox.timeout",
        Transition::Destroy => return None,
        Transition::Destroyed => "sandbox.destroyed",
    })
}

/// The record after `t` at `now`, or the state machine's refusal. A stopped or destroyed
/// sandbox gives its network slot up; a stopped sandbox that resumes needs a new one, which
/// the caller allocates (it is the one part that reads other rows).
pub(crate) fn next_record(
    record: &SandboxRecord,
    t: Transition,
    facts: &TransitionFacts,
    now: UnixMillis,
) -> Result<SandboxRecord, TransitionError> {
    let mut next = record.clone();
    next.state = record.state.transition(t)?;
    match t {
        Transition::Started => {
            next.started_at.get_or_insert(now);
            next.ready_at = Some(now);
            next.boot_ms = facts.boot_ms.or(record.boot_ms);
            next.last_activity_at = now;
        }
        // The slot stays with a failed sandbox until it is destroyed, so whatever its cleanup
        // left behind can still be found by name.
        Transition::Failed => next.error = facts.error.clone(),
        Transition::Resume => next.last_activity_at = now,
        // A stopped sandbox gives its address back; resume takes a fresh one.
        Transition::Stop => next.net_index = None,
        Transition::Destroyed => {
            next.destroyed_at = Some(now);
            next.net_index = None;
        }
        Transition::Pause | Transition::Destroy => {}
    }
    Ok(next)
}

/// Give the record a slot if it resumes from `stopped`, and hold back the one it released.
fn move_net_slot(
    tx: &Transaction<'_>,
    before: &SandboxRecord,
    next: &mut SandboxRecord,
    t: Transition,
) -> Result<(), StoreError> {
    if before.state == SandboxState::Stopped && t == Transition::Resume {
        next.net_index = Some(free_net_index(tx)?);
    }
    if let (Some(released), None) = (before.net_index, next.net_index) {
        hold_net_index(tx, released)?;
    }
    Ok(())
}

/// Start or stop the meter's running clock for the change.
fn meter(
    tx: &Transaction<'_>,
    before: &SandboxRecord,
    next: &SandboxRecord,
    t: Transition,
    now: UnixMillis,
) -> Result<(), StoreError> {
    match t {
        Transition::Started => crate::usage::mark_running(tx, next, now, true),
        Transition::Resume => {
            crate::usage::mark_running(tx, next, now, before.state == SandboxState::Stopped)
        }
        Transition::Pause | Transition::Stop | Transition::Failed | Transition::Destroy => {
            crate::usage::mark_not_running(tx, next.id.as_str())
        }
        Transition::Destroyed => crate::usage::forget_meter(tx, next.id.as_str()),
    }
}

impl Store {
    /// Apply a lifecycle transition, checked against the state machine, with its event. A
    /// resume is admitted as [`admit_tx`] says: a refusal is [`StoreError::QuotaExceeded`]
    /// (its `quota.exceeded` event committed), a suspended user [`StoreError::Suspended`].
    pub async fn transition(
        &self,
        id: &SandboxId,
        t: Transition,
        facts: TransitionFacts,
    ) -> Result<SandboxRecord, StoreError> {
        let id = id.clone();
        self.with_edge(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let record = get_tx(&tx, &id)?.ok_or(StoreError::NotFound("sandbox"))?;
            let now = now_millis();
            let mut next = next_record(&record, t, &facts, now)?;
            if let (Transition::Resume, Some(user)) = (t, &record.external_user_id) {
                let way = match record.state {
                    SandboxState::Stopped => Way::Resume,
                    _ => Way::Unpause,
                };
                let workspace = record.external_workspace_id.as_deref();
                let admission = admit_tx(
                    &tx,
                    &record.tenant_id,
                    user,
                    workspace,
                    way,
                    &record.resources,
                    Some(&id),
                )?;
                if let Admission::Refused(refusal) = admission {
                    tx.commit()?;
                    return Err(StoreError::QuotaExceeded {
                        refusal,
                        external_user_id: user.clone(),
                    });
                }
            }
            move_net_slot(&tx, &record, &mut next, t)?;
            tx.execute(
                "UPDATE sandboxes SET state = ?2, started_at = ?3, ready_at = ?4, boot_ms = ?5,
                    error = ?6, destroyed_at = ?7, net_index = ?8, last_activity_at = ?9
                 WHERE id = ?1",
                params![
                    id.as_str(),
                    next.state.as_str(),
                    next.started_at,
                    next.ready_at,
                    next.boot_ms,
                    next.error,
                    next.destroyed_at,
                    next.net_index,
                    next.last_activity_at,
                ],
            )?;
            meter(&tx, &record, &next, t, now)?;
            if let Some(event) = event_for(record.state, t, facts.timed_out) {
                insert_event(&tx, &next, event)?;
            }
            tx.commit()?;
            Ok(next)
        })
        .await
    }
}
