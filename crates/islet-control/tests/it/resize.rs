//! A running sandbox gets new CPU and memory at once, on both isolation levels, and never past
//! its end user's quota: asserted on the host's own cgroup files.

use islet_testkit::TestServer;
use islet_types::sandbox::Isolation;
use serde_json::json;

use super::metering::cgroup_read;

fn memory_limit(sandbox: &str) -> u64 {
    let raw =
        cgroup_read(std::process::id(), sandbox, ("memory", "memory.limit_in_bytes"), "memory.max");
    raw.trim().parse().unwrap()
}

fn cpu_quota(sandbox: &str) -> u64 {
    let raw = cgroup_read(std::process::id(), sandbox, ("cpu", "cpu.cfs_quota_us"), "cpu.max");
    raw.split_whitespace().next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_sandbox_is_resized_live_within_its_quota() {
    let server = TestServer::start().await;
    for isolation in [Isolation::Container, Isolation::Gvisor] {
        let tenant = server.tenant(Some(isolation)).await;
        let id = tenant.sandbox(json!({"external_user_id": "grower"})).await;
        assert_eq!(memory_limit(&id), 2048 << 20, "{isolation:?}: the create's memory");
        let grown = tenant
            .call(
                "PATCH",
                &format!("/sandboxes/{id}/resources"),
                Some(json!({"cpu_count": 2, "memory_mb": 3072})),
            )
            .await
            .expect(200);
        assert_eq!(grown.data()["applied_live"], true);
        assert_eq!(grown.data()["changes"]["memory_mb"], json!({"from": 2048, "to": 3072}));
        assert_eq!(memory_limit(&id), 3072 << 20, "{isolation:?}: the new memory is the cgroup's");
        assert_eq!(cpu_quota(&id), 200_000, "{isolation:?}: two CPUs of quota");
        let (code, out, _) = tenant.exec(&id, "echo still here").await;
        assert_eq!((code, out.as_str()), (0, "still here\n"), "{isolation:?}: it kept running");
        // Past the user's quota: refused, and the host keeps the old limits.
        tenant
            .call("PUT", "/quotas/external/grower", Some(json!({"max_memory_mb": 3500})))
            .await
            .expect(200);
        let refused = tenant
            .call("PATCH", &format!("/sandboxes/{id}/resources"), Some(json!({"memory_mb": 4096})))
            .await;
        assert_eq!((refused.status, refused.code()), (403, "QUOTA_EXCEEDED"), "{:?}", refused.body);
        assert_eq!(memory_limit(&id), 3072 << 20);
        let shown =
            tenant.call("GET", &format!("/sandboxes/{id}/resources"), None).await.expect(200);
        assert_eq!(shown.data()["resources"]["memory_mb"], 3072);
        // Shrinking is always within quota.
        tenant
            .call("PATCH", &format!("/sandboxes/{id}/resources"), Some(json!({"memory_mb": 1024})))
            .await
            .expect(200);
        assert_eq!(memory_limit(&id), 1024 << 20);
        // A paused sandbox is resized on the host too: it resumes at the size it is billed for.
        tenant.call("POST", &format!("/sandboxes/{id}/pause"), None).await.expect(200);
        let paused = tenant
            .call("PATCH", &format!("/sandboxes/{id}/resources"), Some(json!({"memory_mb": 1536})))
            .await
            .expect(200);
        assert_eq!(paused.data()["applied_live"], true);
        assert_eq!(memory_limit(&id), 1536 << 20, "{isolation:?}: paused, resized on the host");
        tenant.call("POST", &format!("/sandboxes/{id}/resume"), None).await.expect(200);
        // Below what it uses now: refused before anything changes.
        let hog = tenant.exec(&id, "python3 -c 'import time; b = bytearray(600 << 20); time.sleep(30)' & sleep 2; echo started").await;
        assert_eq!(hog.0, 0);
        let low = tenant
            .call("PATCH", &format!("/sandboxes/{id}/resources"), Some(json!({"memory_mb": 128})))
            .await;
        assert_eq!(low.status, 409, "{isolation:?}: {:?}", low.body);
        assert_eq!(memory_limit(&id), 1536 << 20);
        tenant.destroy(&id).await;
    }
    server.stop().await;
}
