//! Bulk jobs on a real SQLite file: the set is fixed when the job is accepted, outcomes are
//! kept item by item, and a store reopened after a crash hands out the next pending item.
#![allow(clippy::unwrap_used)]

mod common;

use islet_store::{BeginCreate, BulkOp, BulkTarget, ItemStatus, ListFilter, Store};
use islet_types::sandbox::Isolation;
use islet_types::SandboxId;

#[tokio::test]
async fn a_reopened_store_carries_a_job_on_where_it_stood() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("islet.db");
    let store = Store::open(&path).unwrap();
    let tenant = store.create_tenant("t".into(), None).await.unwrap().tenant_id;
    let other = store.create_tenant("o".into(), None).await.unwrap().tenant_id;
    let mut ids: Vec<SandboxId> = Vec::new();
    for (who, user) in [(&tenant, "u1"), (&tenant, "u1"), (&tenant, "u2"), (&other, "u1")] {
        let req = common::request(user, None);
        let BeginCreate::New(r) =
            store.begin_create(who, None, req, Isolation::Container, None).await.unwrap()
        else {
            panic!("not admitted")
        };
        ids.push(r.id);
    }
    // A filter sees the tenant's own sandboxes only, fixed now: a later sandbox is not added.
    let filter = ListFilter { external_user_id: Some("u1".into()), ..Default::default() };
    let target =
        BulkTarget::Filter { filter, as_json: serde_json::json!({"external_user_id": "u1"}) };
    let job = store.create_bulk_job(&tenant, BulkOp::Stop, target).await.unwrap();
    let named: Vec<&str> = job.items.iter().map(|i| i.sandbox_id.as_str()).collect();
    assert_eq!(named, [ids[0].as_str(), ids[1].as_str()]);
    assert!(store.bulk_job(&other, &job.id).await.is_err(), "another tenant cannot read it");

    let first = store.next_bulk_work(None).await.unwrap().unwrap();
    assert_eq!(first.sandbox_id, ids[0].as_str());
    store.finish_bulk_item(&first, ItemStatus::Succeeded, None, None).await.unwrap();
    // The second item is taken, then the process dies before recording it.
    let second = store.next_bulk_work(None).await.unwrap().unwrap();
    assert_eq!(second.sandbox_id, ids[1].as_str());
    drop(store);

    let store = Store::open(&path).unwrap();
    let again = store.next_bulk_work(None).await.unwrap().unwrap();
    assert_eq!((again.job_id.clone(), again.position), (job.id.clone(), second.position));
    store
        .finish_bulk_item(
            &again,
            ItemStatus::Skipped,
            Some("CONFLICT".into()),
            Some("stopped".into()),
        )
        .await
        .unwrap();
    assert!(store.next_bulk_work(None).await.unwrap().is_none());
    let done = store.bulk_job(&tenant, &job.id).await.unwrap();
    assert!(done.finished_at.is_some());
    let outcomes: Vec<ItemStatus> = done.items.iter().map(|i| i.status).collect();
    assert_eq!(outcomes, [ItemStatus::Succeeded, ItemStatus::Skipped]);
    assert_eq!(done.items[1].code.as_deref(), Some("CONFLICT"));

    // Ids are kept as given, once each; an empty set is finished at once.
    let ids_job = store
        .create_bulk_job(
            &tenant,
            BulkOp::Pause,
            BulkTarget::Ids(vec!["a".into(), "a".into(), "b".into()]),
        )
        .await
        .unwrap();
    assert_eq!(ids_job.items.len(), 2);
    let none = ListFilter { external_user_id: Some("nobody".into()), ..Default::default() };
    let empty = store
        .create_bulk_job(
            &tenant,
            BulkOp::Pause,
            BulkTarget::Filter { filter: none, as_json: serde_json::json!({}) },
        )
        .await
        .unwrap();
    assert!(empty.items.is_empty() && empty.finished_at.is_some());
}

#[tokio::test]
async fn tenants_take_turns_and_open_jobs_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("islet.db")).unwrap();
    let a = store.create_tenant("a".into(), None).await.unwrap().tenant_id;
    let b = store.create_tenant("b".into(), None).await.unwrap().tenant_id;
    let ids = |n: usize| BulkTarget::Ids((0..n).map(|i| format!("sbx_{i}")).collect());
    store.create_bulk_job(&a, BulkOp::Stop, ids(3)).await.unwrap();
    store.create_bulk_job(&b, BulkOp::Stop, ids(1)).await.unwrap();
    // After serving a tenant, the next item is the other's, whichever job is older.
    let first = store.next_bulk_work(None).await.unwrap().unwrap();
    let other = if first.tenant_id == a { &b } else { &a };
    let next = store.next_bulk_work(Some(&first.tenant_id)).await.unwrap().unwrap();
    assert_eq!(&next.tenant_id, other);
    // With only one tenant's work left, it gets it again.
    let b_work = if first.tenant_id == b { first } else { next };
    store.finish_bulk_item(&b_work, ItemStatus::Succeeded, None, None).await.unwrap();
    let again = store.next_bulk_work(Some(&a)).await.unwrap().unwrap();
    assert_eq!(again.tenant_id, a);
    // At most MAX_OPEN_JOBS unfinished jobs per tenant; another tenant is not held back.
    for _ in 1..islet_store::MAX_OPEN_JOBS {
        store.create_bulk_job(&a, BulkOp::Stop, ids(1)).await.unwrap();
    }
    assert!(matches!(
        store.create_bulk_job(&a, BulkOp::Stop, ids(1)).await,
        Err(islet_store::StoreError::Conflict(_))
    ));
    store.create_bulk_job(&b, BulkOp::Stop, ids(1)).await.unwrap();
}
