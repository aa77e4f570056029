//! Disk limits: every sandbox's writable layer lives on a filesystem of its own, the size of its
//! `disk_mb`. Writes beyond it fail with ENOSPC inside the sandbox, deleting files frees the
//! space again, and `df` inside shows the sandbox's own disk.
//!
//! The filesystem is ext4 in a sparse image file (`<sandbox dir>/disk.img`), formatted on first
//! use and mounted through an auto-clearing loop device at `<sandbox dir>/disk`. The overlay's
//! upper and work dirs, the agent's socket directory (writable from inside) and the agent's log
//! are all under it, so nothing the sandbox can write escapes the limit. The image costs host
//! space only for what is written (it is mounted with `discard`, so deleted blocks are punched
//! out of the image again); removing the sandbox's directory removes the disk.
//!
//! Why not project quotas on one shared volume: they need a kernel with `CONFIG_QFMT_V2` (ext4)
//! or `CONFIG_XFS_QUOTA` (xfs); our development host's kernel has neither (mounting with
//! `prjquota` fails there), while loop devices and ext4 are everywhere. If the host cannot do this (no `mkfs.ext4`, no loop devices), `probe` says so
//! once at start and sandboxes run without disk limits, with a warning.

use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::process::Stdio;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::config::Config;
use crate::error::RuntimeError;
use crate::layout::SandboxPaths;
use crate::loopdev;

/// `mkfs.ext4` options: 4 KiB blocks and the ordinary inode ratio whatever the size (small
/// images would otherwise get the "small" profile), no blocks reserved for root (the sandbox
/// gets all of its disk), no zeroing or discarding (a fresh sparse file already reads as zeros)
/// and no blocks reserved for growing the filesystem online (`resize_inode`: writing them was
/// half the formatting time and 4 MiB of a 10 GiB image's 4.3). Formatting a 10 GiB disk takes
/// ~9 ms and ~240 KiB of host disk.
const MKFS_ARGS: &[&str] = &[
    "-q",
    "-F",
    "-T",
    "default",
    "-b",
    "4096",
    "-m",
    "0",
    "-O",
    "^resize_inode",
    "-E",
    "lazy_itable_init=1,lazy_journal_init=1,nodiscard",
];

/// Mount options: return freed blocks to the host, and no background zeroing of inode tables
/// (they are zero already, see `MKFS_ARGS`).
const MOUNT_OPTIONS: &str = "discard,noinit_itable";

/// Size of the image `probe` formats and mounts (the smallest disk a sandbox may ask for).
const PROBE_MB: u32 = 64;

/// Can this host give sandboxes disks of their own? Tries the whole path once (format, loop,
/// mount, unmount) in `state_dir`, so a host that cannot is noticed at start rather than on
/// every create.
pub(crate) async fn probe(config: &Config) -> Result<(), RuntimeError> {
    let state_dir = &config.layout.state_dir;
    let image = state_dir.join(".disk-probe.img");
    let target = state_dir.join(".disk-probe");
    let _ = umount2(&target, MntFlags::MNT_DETACH);
    let result = async {
        std::fs::create_dir_all(&target)
            .map_err(RuntimeError::io(format!("mkdir {}", target.display())))?;
        format(config, &image, PROBE_MB).await?;
        mount_image(&image, &target)?;
        umount2(&target, MntFlags::MNT_DETACH).map_err(RuntimeError::sys("umount disk probe"))
    }
    .await;
    let _ = std::fs::remove_file(&image);
    let _ = std::fs::remove_dir(&target);
    result
}

/// Give the sandbox its disk at `paths.disk`: format the image if the sandbox has none yet
/// (a restarted sandbox keeps its files), and mount it unless it is mounted already. Without
/// disk limits, `paths.disk` is a plain directory.
pub(crate) async fn attach(
    config: &Config,
    paths: &SandboxPaths,
    disk_mb: u32,
    enforced: bool,
) -> Result<(), RuntimeError> {
    std::fs::create_dir_all(&paths.disk)
        .map_err(RuntimeError::io(format!("mkdir {}", paths.disk.display())))?;
    if !enforced || is_mounted(paths)? {
        return Ok(());
    }
    if !paths.disk_image.exists() {
        // Format under another name and rename, so an image that exists is a complete one
        // even if we are killed halfway.
        let fresh = paths.disk_image.with_extension("img.new");
        format(config, &fresh, disk_mb).await?;
        std::fs::rename(&fresh, &paths.disk_image)
            .map_err(RuntimeError::io("rename formatted disk image"))?;
    }
    mount_image(&paths.disk_image, &paths.disk)
}

/// Unmount the sandbox's disk if it is mounted; its loop device goes with it. Lazily, so a
/// busy mount never blocks cleanup (the overlay above it is detached just before).
pub(crate) fn detach(paths: &SandboxPaths) -> Result<(), RuntimeError> {
    match umount2(&paths.disk, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
        Err(e) => {
            Err(RuntimeError::Sys { what: format!("umount {}", paths.disk.display()), source: e })
        }
    }
}

/// A sparse file of `size_mb` MiB with an empty ext4 filesystem on it.
async fn format(config: &Config, image: &Path, size_mb: u32) -> Result<(), RuntimeError> {
    let _ = std::fs::remove_file(image);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600) // the sandbox's files: for root's eyes only
        .open(image)
        .map_err(RuntimeError::io(format!("create {}", image.display())))?;
    file.set_len(u64::from(size_mb) * 1024 * 1024)
        .map_err(RuntimeError::io(format!("size {}", image.display())))?;
    drop(file);
    let out = tokio::process::Command::new(&config.mkfs_ext4)
        .args(MKFS_ARGS)
        .arg(image)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(RuntimeError::io(format!("run {}", config.mkfs_ext4.display())))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(RuntimeError::Command {
            tool: "mkfs.ext4".into(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

fn mount_image(image: &Path, target: &Path) -> Result<(), RuntimeError> {
    let device = loopdev::attach(image)
        .map_err(RuntimeError::io(format!("loop device for {}", image.display())))?;
    // Tenant-written data, on the host: no setuid file or device node of it works here.
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount(Some(&device.path), target, Some("ext4"), flags, Some(MOUNT_OPTIONS))
        .map_err(RuntimeError::sys(format!("mount disk at {}", target.display())))
    // `device` is dropped here: mounted, the device stays until the unmount; if the mount
    // failed, it detaches at once.
}

/// Whether something is mounted at `paths.disk` (it is on another device than its parent).
fn is_mounted(paths: &SandboxPaths) -> Result<bool, RuntimeError> {
    let dev = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.dev())
            .map_err(RuntimeError::io(format!("stat {}", p.display())))
    };
    Ok(dev(&paths.disk)? != dev(&paths.dir)?)
}
