//! The sandbox's root: overlayfs with the read-only template below and a private upper dir.

use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::RuntimeError;
use crate::layout::SandboxPaths;

/// Mount the overlay at `paths.rootfs`. The upper and work dirs are created owned by the
/// sandbox's mapped root so that root inside can write everywhere.
pub(crate) fn mount_root(
    paths: &SandboxPaths,
    template_rootfs: &Path,
    uid_base: u32,
) -> Result<(), RuntimeError> {
    for dir in [&paths.upper, &paths.work, &paths.rootfs] {
        std::fs::create_dir_all(dir)
            .map_err(RuntimeError::io(format!("mkdir {}", dir.display())))?;
    }
    for dir in [&paths.upper, &paths.work] {
        chown(dir, uid_base)?;
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        template_rootfs.display(),
        paths.upper.display(),
        paths.work.display()
    );
    // The sandbox's writes are tenant data: a setuid file planted inside is inert on the host
    // (and inside), and no device node works.
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount(Some("overlay"), &paths.rootfs, Some("overlay"), flags, Some(options.as_str()))
        .map_err(RuntimeError::sys("mount overlay"))
}

/// Unmount the overlay if it is mounted (lazily, so a busy mount never blocks cleanup).
pub(crate) fn unmount_root(paths: &SandboxPaths) -> Result<(), RuntimeError> {
    match umount2(&paths.rootfs, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
        Err(e) => {
            Err(RuntimeError::Sys { what: format!("umount {}", paths.rootfs.display()), source: e })
        }
    }
}

pub(crate) fn chown(path: &Path, uid_base: u32) -> Result<(), RuntimeError> {
    std::os::unix::fs::chown(path, Some(uid_base), Some(uid_base))
        .map_err(RuntimeError::io(format!("chown {}", path.display())))
}
