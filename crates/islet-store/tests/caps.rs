//! A tenant's live keys are capped (F17); a revoked key frees its place.
#![allow(clippy::unwrap_used)]

use islet_store::{NewKey, Store, StoreError, MAX_LIVE_KEYS};

#[tokio::test]
async fn live_keys_are_capped_per_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("islet.db")).unwrap();
    let tenant = store.create_tenant("t".into(), None).await.unwrap().tenant_id;
    let other = store.create_tenant("o".into(), None).await.unwrap().tenant_id;
    let key = |n: u64| NewKey {
        name: format!("k{n}"),
        scopes: None,
        external_user_id: None,
        description: None,
        expires_at: None,
    };
    // The tenant's first key exists already.
    let mut last = None;
    for n in 1..MAX_LIVE_KEYS {
        last = Some(store.create_api_key(&tenant, key(n)).await.unwrap().0.id);
    }
    let over = store.create_api_key(&tenant, key(0)).await;
    assert!(matches!(over, Err(StoreError::Conflict(_))), "{over:?}");
    // Another tenant is not held back; a revoked key makes room.
    store.create_api_key(&other, key(0)).await.unwrap();
    store.revoke_api_key(&tenant, &last.unwrap()).await.unwrap();
    store.create_api_key(&tenant, key(0)).await.unwrap();
}
