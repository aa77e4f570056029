//! Rollups read whole days from the daily rows and partial days from the hourly ones: over
//! usage spread across several days, every way of asking gives what the hourly rows alone say.
#![allow(clippy::unwrap_used)]

mod common;

use islet_store::{BeginCreate, GroupBy, Store, TransitionFacts, UsageQuery, UsageSample};
use islet_types::sandbox::{Isolation, Transition};
use islet_types::time::now_millis;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// A running sandbox of `user` (metered from now on).
async fn started(
    store: &Store,
    tenant: &islet_types::TenantId,
    user: &str,
    project: Option<&str>,
) -> islet_types::SandboxId {
    let BeginCreate::New(record) = store
        .begin_create(tenant, None, common::request(user, project), Isolation::Container, None)
        .await
        .unwrap()
    else {
        panic!("not admitted");
    };
    store.transition(&record.id, Transition::Started, TransitionFacts::default()).await.unwrap();
    record.id
}

type Measures = [f64; 4];

/// What a total says of running time, CPU, storage and bytes sent.
fn measures(t: &islet_store::UsageTotals) -> Measures {
    [t.sandbox_seconds, t.cpu_seconds, t.storage_gib_hours, t.network_egress_bytes]
}

/// Those measures per user over `[start, end)`, from the hourly rows alone.
fn hourly_truth(path: &std::path::Path, start: i64, end: i64) -> Vec<(String, Measures)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT external_user_id, SUM(sandbox_seconds), SUM(cpu_seconds),
                    SUM(storage_gib_hours), SUM(network_egress_bytes) FROM usage_hourly
             WHERE hour >= ?1 AND hour < ?2 GROUP BY 1 ORDER BY 1",
        )
        .unwrap();
    stmt.query_map([start - start.rem_euclid(HOUR_MS), end], |r| {
        Ok((r.get(0)?, [r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?]))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

#[tokio::test]
async fn whole_days_and_edges_add_up_to_the_hourly_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("islet.db");
    let store = Store::open(&path).unwrap();
    let tenant = store.create_tenant("t".into(), None).await.unwrap().tenant_id;
    let mut ids = Vec::new();
    for (user, project) in [("ann", Some("alpha")), ("bob", None)] {
        ids.push(started(&store, &tenant, user, project).await);
    }
    // Samples reaching four days ahead: each interval is spread over the hours it covers.
    let t0 = now_millis();
    for (k, step) in [7, 20, 31, 50, 77, 96].iter().enumerate() {
        let samples = ids
            .iter()
            .map(|id| UsageSample {
                sandbox_id: id.clone(),
                at: t0 + step * HOUR_MS + k as i64 * 1234,
                cpu_usec: Some(1_000_000 * (k as u64 + 1)),
                memory_bytes: 1 << 30,
                network: Some((1000 * k as u64, 2000 * k as u64)),
            })
            .collect();
        store.record_usage(samples).await.unwrap();
    }
    let day0 = t0 - t0.rem_euclid(DAY_MS);
    let periods = [
        (t0 - HOUR_MS, t0 + 5 * DAY_MS),        // edges on both sides
        (day0, day0 + 3 * DAY_MS),              // whole days only
        (t0 + 10 * HOUR_MS, t0 + 30 * HOUR_MS), // less than a day
        (day0 + DAY_MS + 5 * HOUR_MS, t0 + 90 * HOUR_MS),
    ];
    for (start, end) in periods {
        for bucket_ms in [None, Some(DAY_MS), Some(HOUR_MS)] {
            let rows = store
                .usage_rollup(
                    &tenant,
                    UsageQuery {
                        start,
                        end,
                        group_by: GroupBy::ExternalUser,
                        external_user_id: None,
                        bucket_ms,
                    },
                )
                .await
                .unwrap();
            let mut by_user: Vec<(String, Measures)> = Vec::new();
            for r in rows {
                let user = r.group.unwrap();
                let m = measures(&r.totals);
                match by_user.iter_mut().find(|(u, _)| *u == user) {
                    Some((_, s)) => s.iter_mut().zip(m).for_each(|(a, b)| *a += b),
                    None => by_user.push((user, m)),
                }
            }
            by_user.sort_by(|a, b| a.0.cmp(&b.0));
            let truth = hourly_truth(&path, start, end);
            assert_eq!(by_user.len(), truth.len(), "{start}..{end} {bucket_ms:?}");
            for ((u, got), (tu, want)) in by_user.iter().zip(&truth) {
                assert_eq!(u, tu);
                for (g, w) in got.iter().zip(want) {
                    assert!(
                        (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                        "{u} {start}..{end} {bucket_ms:?}: {got:?} vs {want:?}"
                    );
                }
            }
            assert!(truth.iter().all(|(_, m)| m.iter().all(|x| *x > 0.0)), "{truth:?}");
        }
        // One user alone, and by project (bob has none: a null group).
        let ann = store
            .usage_rollup(
                &tenant,
                UsageQuery {
                    start,
                    end,
                    group_by: GroupBy::ExternalProject,
                    external_user_id: Some("ann".into()),
                    bucket_ms: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(ann.len(), 1);
        assert_eq!(ann[0].group.as_deref(), Some("alpha"));
        let want = hourly_truth(&path, start, end).into_iter().find(|(u, _)| u == "ann").unwrap().1;
        assert!((ann[0].totals.sandbox_seconds - want[0]).abs() < 1e-6);
        let projects = store
            .usage_rollup(
                &tenant,
                UsageQuery {
                    start,
                    end,
                    group_by: GroupBy::ExternalProject,
                    external_user_id: None,
                    bucket_ms: None,
                },
            )
            .await
            .unwrap();
        let groups: Vec<Option<String>> = projects.into_iter().map(|r| r.group).collect();
        assert_eq!(groups, vec![None, Some("alpha".to_owned())]);
    }
}

#[tokio::test]
async fn a_sample_older_than_what_is_accounted_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("islet.db")).unwrap();
    let tenant = store.create_tenant("t".into(), None).await.unwrap().tenant_id;
    let id = started(&store, &tenant, "ann", None).await;
    let t0 = now_millis();
    let sample = |at: i64, cpu: u64, bytes: u64| UsageSample {
        sandbox_id: id.clone(),
        at,
        cpu_usec: Some(cpu),
        memory_bytes: 0,
        network: Some((bytes, bytes)),
    };
    // The meter read at t0 + 1 s, but a stop's sample (t0 + 2 s) was accounted first.
    store.record_usage(vec![sample(t0 + 2_000, 2_000_000, 2_000)]).await.unwrap();
    let (_, before) = store.sandbox_usage(&tenant, &id).await.unwrap();
    store.record_usage(vec![sample(t0 + 1_000, 1_000_000, 1_000)]).await.unwrap();
    let (_, after) = store.sandbox_usage(&tenant, &id).await.unwrap();
    assert_eq!(before, after, "the late sample counted again");
    assert!((after.cpu_seconds - 2.0).abs() < 1e-9, "{after:?}");
    assert_eq!(after.network_egress_bytes, 2_000.0);
    // The marks did not move back: the next sample counts only what is new.
    store.record_usage(vec![sample(t0 + 3_000, 2_500_000, 2_600)]).await.unwrap();
    let (_, later) = store.sandbox_usage(&tenant, &id).await.unwrap();
    assert!((later.cpu_seconds - 2.5).abs() < 1e-9, "{later:?}");
    assert_eq!(later.network_egress_bytes, 2_600.0);
}
