//! A template build cut short leaves the host's filesystems mounted in its staging directory;
//! clearing it unmounts them and deletes nothing of the host's (needs root: real mounts).
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn mount(args: &[&str]) {
    let status = Command::new("mount").args(args).status().unwrap();
    assert!(status.success(), "mount {args:?}");
}

#[test]
fn a_staging_dir_with_mounts_inside_is_cleared_without_touching_them() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    // Stand-ins for the host's /sys (a directory with a file we must keep) and a tmpfs.
    let host = dir.path().join("host-sys");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("keep-me"), "host data").unwrap();
    let staging = dir.path().join(".miosa-sandbox.building");
    let root = staging.join("rootfs");
    for sub in ["sys", "dev/shm", "sys/nested"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    std::fs::write(root.join("etc-file"), "staged").unwrap();
    let (sys, shm) = (root.join("sys"), root.join("dev/shm"));
    mount(&["--bind", host.to_str().unwrap(), sys.to_str().unwrap()]);
    mount(&["-t", "tmpfs", "tmpfs", shm.to_str().unwrap()]);
    std::fs::write(shm.join("in-tmpfs"), "x").unwrap();

    islet_runtime::staging::clear(&staging).unwrap();

    assert!(!staging.exists(), "the staging directory is gone");
    assert_eq!(std::fs::read_to_string(host.join("keep-me")).unwrap(), "host data");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(staging.to_str().unwrap()), "no mount left below it");
    // Absent is fine.
    islet_runtime::staging::clear(&staging).unwrap();
}
