//! What a local user of the host can read of Islet (F3): the database and a sandbox's spec are
//! root's alone, the state directories are searchable but not listable, and tenant-written
//! data is mounted `nosuid,nodev`, so a setuid file planted inside a sandbox is inert here.

use std::os::unix::fs::PermissionsExt;

use islet_testkit::TestServer;
use serde_json::json;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// The options of the mount at `target`, from this process's mountinfo.
fn mount_options(target: &std::path::Path) -> String {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let target = target.to_str().unwrap();
    info.lines()
        .find(|l| l.split(' ').nth(4) == Some(target))
        .map(|l| l.split(' ').nth(5).unwrap_or_default().to_owned())
        .unwrap_or_else(|| panic!("{target} is not mounted"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_files_are_roots_and_tenant_data_is_inert() {
    let server = TestServer::start().await;
    let client = server.tenant(None).await;
    let id = client.sandbox(json!({"env": {"SECRET_TOKEN": "s3cr3t"}})).await;

    let db = server.data_dir.join("islet.db");
    for file in [db.clone(), server.data_dir.join("islet.db-wal")] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    let sandboxes = server.data_dir.join("sandboxes");
    let dir = sandboxes.join(&id);
    assert_eq!(mode(&sandboxes), 0o711, "the state dir is not listable");
    assert_eq!(mode(&dir), 0o711, "a sandbox's dir is not listable");
    let spec = dir.join("bundle").join("config.json");
    assert_eq!(mode(&spec), 0o600, "the spec holds the tenant's env");
    assert!(std::fs::read_to_string(&spec).unwrap().contains("SECRET_TOKEN"));

    for mount in [dir.join("rootfs"), dir.join("disk")] {
        let options = mount_options(&mount);
        assert!(
            options.contains("nosuid") && options.contains("nodev"),
            "{}: {options}",
            mount.display()
        );
    }
    // A setuid shell planted inside, owned by the sandbox's root (uid 100000 here), gives a
    // local user nothing: run as nobody it stays nobody.
    let (code, _, err) =
        client.exec(&id, "cp /bin/sh /tmp/suid-sh && chmod 4755 /tmp/suid-sh").await;
    assert_eq!(code, 0, "{err}");
    let planted = dir.join("rootfs").join("tmp").join("suid-sh");
    assert_eq!(mode(&planted) & 0o4000, 0o4000, "the file is setuid");
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&planted)
        .args(["-c", "id -u"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "65534", "the setuid bit took effect");
    client.destroy(&id).await;
    server.stop().await;
}
