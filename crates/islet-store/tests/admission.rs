//! Admission and the state machine on a real SQLite file, no root needed: limits hold under
//! concurrency, a refused resume writes its event, suspension refuses every way in, released
//! network slots are held back, and every transition writes the event it promises.
#![allow(clippy::unwrap_used)]

mod common;

use islet_store::{BeginCreate, Store, StoreError, Subject, SuspendedBy, TransitionFacts};
use islet_types::sandbox::{Isolation, Transition};
use islet_types::{SandboxId, SandboxState, TenantId};
use serde_json::json;

async fn store_and_tenant() -> (tempfile::TempDir, Store, TenantId) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("islet.db")).unwrap();
    let tenant = store.create_tenant("t".into(), None).await.unwrap().tenant_id;
    (dir, store, tenant)
}

async fn quotas(store: &Store, tenant: &TenantId, user: &str, quotas: serde_json::Value) {
    let doc = json!({ "quotas": quotas }).as_object().cloned();
    store.set_policy(tenant, Subject::User(user.into()), doc).await.unwrap();
}

async fn create(store: &Store, tenant: &TenantId, user: &str) -> BeginCreate {
    store
        .begin_create(tenant, None, common::request(user, None), Isolation::Container, None)
        .await
        .unwrap()
}

/// A sandbox of `user`, created and started.
async fn running(store: &Store, tenant: &TenantId, user: &str) -> SandboxId {
    let BeginCreate::New(record) = create(store, tenant, user).await else {
        panic!("not admitted")
    };
    store.transition(&record.id, Transition::Started, TransitionFacts::default()).await.unwrap();
    record.id
}

/// `(type, data)` of the tenant's events, oldest first.
async fn events(store: &Store, tenant: &TenantId) -> Vec<(String, serde_json::Value)> {
    let rows = store.events_after(tenant, 0, 10_000).await.unwrap();
    rows.into_iter().map(|e| (e.event_type, e.payload["data"].clone())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_holds_under_concurrent_creates() {
    let (_dir, store, tenant) = store_and_tenant().await;
    quotas(&store, &tenant, "u", json!({"max_sandboxes": 5})).await;
    let attempts = (0..60).map(|_| {
        let (store, tenant) = (store.clone(), tenant.clone());
        tokio::spawn(async move { create(&store, &tenant, "u").await })
    });
    let (mut admitted, mut refused) = (0, 0);
    for attempt in attempts {
        match attempt.await.unwrap() {
            BeginCreate::New(_) => admitted += 1,
            BeginCreate::Refused { refusal, external_user_id } => {
                assert_eq!(
                    (refusal.limit, refusal.max, external_user_id.as_str()),
                    ("max_sandboxes", 5, "u")
                );
                refused += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((admitted, refused), (5, 55));
    let exceeded: Vec<_> =
        events(&store, &tenant).await.into_iter().filter(|(t, _)| t == "quota.exceeded").collect();
    assert_eq!(exceeded.len(), 55);
    assert_eq!(exceeded[0].1["action"], "create");
    assert_eq!(exceeded[0].1["sandbox_id"], serde_json::Value::Null);
    assert_eq!(store.user_holding(&tenant, "u").await.unwrap().sandboxes, 5);
}

#[tokio::test]
async fn a_refused_resume_writes_its_event_and_leaves_the_sandbox_stopped() {
    let (_dir, store, tenant) = store_and_tenant().await;
    quotas(&store, &tenant, "u", json!({"max_concurrent": 1})).await;
    let first = running(&store, &tenant, "u").await;
    store.transition(&first, Transition::Stop, TransitionFacts::default()).await.unwrap();
    let _second = running(&store, &tenant, "u").await;
    let refused = store.transition(&first, Transition::Resume, TransitionFacts::default()).await;
    let Err(StoreError::QuotaExceeded { refusal, external_user_id }) = refused else {
        panic!("resume admitted past max_concurrent: {refused:?}")
    };
    assert_eq!(
        (refusal.limit, refusal.max, refusal.current, external_user_id.as_str()),
        ("max_concurrent", 1, 1, "u")
    );
    let (kind, data) = events(&store, &tenant).await.pop().unwrap();
    assert_eq!(kind, "quota.exceeded");
    assert_eq!(
        (data["action"].as_str(), data["sandbox_id"].as_str()),
        (Some("resume"), Some(first.as_str()))
    );
    assert_eq!(store.get_sandbox(&tenant, &first).await.unwrap().state, SandboxState::Stopped);
    // With room again, the same resume is admitted and takes a network slot.
    quotas(&store, &tenant, "u", json!({"max_concurrent": 2})).await;
    let resumed =
        store.transition(&first, Transition::Resume, TransitionFacts::default()).await.unwrap();
    assert_eq!(resumed.state, SandboxState::Creating);
    assert!(resumed.net_index.is_some());
}

#[tokio::test]
async fn a_suspended_user_is_refused_every_way_in() {
    let (_dir, store, tenant) = store_and_tenant().await;
    let paused = running(&store, &tenant, "u").await;
    store.transition(&paused, Transition::Pause, TransitionFacts::default()).await.unwrap();
    let stopped = running(&store, &tenant, "u").await;
    store.transition(&stopped, Transition::Stop, TransitionFacts::default()).await.unwrap();
    store.suspend_user(&tenant, "u", None, SuspendedBy::Tenant).await.unwrap();
    let create = store
        .begin_create(&tenant, None, common::request("u", None), Isolation::Container, None)
        .await;
    assert!(matches!(create, Err(StoreError::Suspended(ref u)) if u == "u"), "{create:?}");
    for id in [&paused, &stopped] {
        let resume = store.transition(id, Transition::Resume, TransitionFacts::default()).await;
        assert!(matches!(resume, Err(StoreError::Suspended(_))), "{resume:?}");
    }
    // Another user of the tenant is not affected.
    assert!(matches!(create_other(&store, &tenant).await, BeginCreate::New(_)));
}

async fn create_other(store: &Store, tenant: &TenantId) -> BeginCreate {
    create(store, tenant, "someone-else").await
}

#[tokio::test]
async fn a_released_network_slot_is_held_back() {
    let (_dir, store, tenant) = store_and_tenant().await;
    let first = running(&store, &tenant, "u").await;
    let slot = store.get_sandbox(&tenant, &first).await.unwrap().net_index.unwrap();
    store.transition(&first, Transition::Stop, TransitionFacts::default()).await.unwrap();
    let BeginCreate::New(next) = create(&store, &tenant, "u").await else { panic!() };
    assert_ne!(next.net_index, Some(slot), "a slot released a moment ago was handed out again");
    let resumed =
        store.transition(&first, Transition::Resume, TransitionFacts::default()).await.unwrap();
    assert!(!matches!(resumed.net_index, Some(s) if s == slot || Some(s) == next.net_index));
}

#[tokio::test]
async fn every_transition_writes_its_event() {
    let (_dir, store, tenant) = store_and_tenant().await;
    let id = running(&store, &tenant, "u").await;
    let step = |t: Transition, facts: TransitionFacts| {
        let (store, id) = (store.clone(), id.clone());
        async move { store.transition(&id, t, facts).await.unwrap().state }
    };
    assert_eq!(step(Transition::Pause, Default::default()).await, SandboxState::Paused);
    assert_eq!(step(Transition::Resume, Default::default()).await, SandboxState::Running);
    assert_eq!(step(Transition::Stop, Default::default()).await, SandboxState::Stopped);
    assert_eq!(step(Transition::Resume, Default::default()).await, SandboxState::Creating);
    assert_eq!(step(Transition::Started, Default::default()).await, SandboxState::Running);
    let failed = TransitionFacts { error: Some("boom".into()), ..Default::default() };
    assert_eq!(step(Transition::Failed, failed).await, SandboxState::Error);
    assert_eq!(step(Transition::Destroy, Default::default()).await, SandboxState::Destroying);
    assert_eq!(step(Transition::Destroyed, Default::default()).await, SandboxState::Destroyed);
    // A timeout's destroy is an event of its own.
    let timed = running(&store, &tenant, "u").await;
    let timeout = TransitionFacts { timed_out: true, ..Default::default() };
    store.transition(&timed, Transition::Destroy, timeout).await.unwrap();
    let of = |sandbox: &SandboxId, all: &[(String, serde_json::Value)]| -> Vec<String> {
        all.iter().filter(|(_, d)| d["id"] == sandbox.as_str()).map(|(t, _)| t.clone()).collect()
    };
    let all = events(&store, &tenant).await;
    assert_eq!(
        of(&id, &all),
        [
            "sandbox.created",
            "sandbox.running",
            "sandbox.paused",
            "sandbox.resumed",
            "sandbox.stopped",
            "sandbox.resumed",
            "sandbox.running",
            "sandbox.error",
            // Destroy (not a timeout) writes none: its event is `sandbox.destroyed`.
            "sandbox.destroyed",
        ]
    );
    assert_eq!(of(&timed, &all), ["sandbox.created", "sandbox.running", "sandbox.timeout"]);
    let destroyed = all.iter().find(|(t, _)| t == "sandbox.destroyed").unwrap();
    assert_eq!(destroyed.1["error"], "boom");
    assert!(destroyed.1["usage"]["sandbox_seconds"].is_number());
    // A change the machine does not allow writes nothing.
    let before = all.len();
    let refused = store.transition(&id, Transition::Resume, TransitionFacts::default()).await;
    assert!(matches!(refused, Err(StoreError::Transition(_))), "{refused:?}");
    assert_eq!(events(&store, &tenant).await.len(), before);
}
