//! Disk limits: a sandbox cannot write past its `disk_mb`, deleting files frees the space
//! again, and a neighbour with a bigger disk is not held to the small one's limit.

use islet_testkit::TestServer;
use serde_json::json;

const MIB: u64 = 1024 * 1024;

async fn size_of(client: &islet_testkit::Client, id: &str, path: &str) -> u64 {
    let (code, out, err) = client.exec(id, &format!("stat -c %s {path}")).await;
    assert_eq!(code, 0, "stat {path}: {err}");
    out.trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_beyond_disk_mb_fail_and_deleting_frees_the_space() {
    let server = TestServer::start().await;
    assert!(
        server.state.runtime.disk_limits_enforced(),
        "this host cannot enforce disk limits (see the runtime's warning at start)"
    );
    let client = server.tenant(None).await;
    let small = client.sandbox(json!({"disk_mb": 64})).await;
    let large = client.sandbox(json!({})).await; // the default, 10240 MiB

    let (code, _, err) = client.exec(&small, "dd if=/dev/zero of=/root/big bs=1M count=200").await;
    assert_ne!(code, 0, "writing 200 MiB to a 64 MiB disk must fail");
    assert!(
        err.contains("No space") || err.contains("quota"),
        "the write fails for lack of space: {err}"
    );
    let written = size_of(&client, &small, "/root/big").await;
    assert!(written <= 64 * MIB, "at most the disk was written: {written}");

    // The same holds for the agent's socket directory, the one other writable host path.
    let (code, _, err) =
        client.exec(&small, "dd if=/dev/zero of=/run/islet/fill bs=1M count=100").await;
    assert_ne!(code, 0, "the agent's directory is on the same disk: {err}");
    let (code, _, err) = client.exec(&small, "rm -f /run/islet/fill").await;
    assert_eq!(code, 0, "{err}");

    // Deleting gives the space back.
    let (code, _, err) = client
        .exec(&small, "rm /root/big && dd if=/dev/zero of=/root/again bs=1M count=32 && sync")
        .await;
    assert_eq!(code, 0, "after rm, 32 MiB fit again: {err}");
    assert_eq!(size_of(&client, &small, "/root/again").await, 32 * MIB);

    // The neighbour with the default disk writes 200 MiB meanwhile.
    let (code, _, err) =
        client.exec(&large, "dd if=/dev/zero of=/root/big bs=1M count=200 && sync").await;
    assert_eq!(code, 0, "200 MiB fit on the default disk: {err}");
    assert_eq!(size_of(&client, &large, "/root/big").await, 200 * MIB);

    // And the small one still works.
    let (code, out, _) = client.exec(&small, "echo alive").await;
    assert_eq!((code, out.as_str()), (0, "alive\n"));
    server.stop().await;
}
