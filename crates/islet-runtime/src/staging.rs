//! Clearing a template build's staging directory safely. A build cut short (Ctrl-C, a kill)
//! can leave mmdebstrap's mounts inside it — the host's `/proc`, `/sys`, `/dev/pts`, a tmpfs —
//! and a plain recursive delete would walk into them. So: unmount everything below the
//! directory first (deepest first, lazily), then delete without ever leaving its filesystem.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{umount2, MntFlags};

use crate::error::RuntimeError;

/// Mount points at or below `dir`, deepest first (from `/proc/self/mountinfo`, whose octal
/// escapes are decoded).
fn mounts_below(dir: &Path) -> Result<Vec<PathBuf>, RuntimeError> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(RuntimeError::io("read /proc/self/mountinfo"))?;
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    Ok(found)
}

/// mountinfo writes space, tab, newline and backslash as `\NNN` (octal).
fn unescape(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .and_then(|d| std::str::from_utf8(d).ok().and_then(|d| u8::from_str_radix(d, 8).ok()));
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Delete `path` (a file or a tree) without crossing into another filesystem: a directory on
/// another device than `root_dev` is an error, never entered.
fn remove_on_device(path: &Path, root_dev: u64) -> Result<(), RuntimeError> {
    let meta = std::fs::symlink_metadata(path)
        .map_err(RuntimeError::io(format!("stat {}", path.display())))?;
    if !meta.is_dir() {
        return std::fs::remove_file(path)
            .map_err(RuntimeError::io(format!("remove {}", path.display())));
    }
    if meta.dev() != root_dev {
        return Err(RuntimeError::Spec(format!(
            "{} is still a mount point; not deleting across it",
            path.display()
        )));
    }
    for entry in
        std::fs::read_dir(path).map_err(RuntimeError::io(format!("list {}", path.display())))?
    {
        let entry = entry.map_err(RuntimeError::io(format!("list {}", path.display())))?;
        remove_on_device(&entry.path(), root_dev)?;
    }
    std::fs::remove_dir(path).map_err(RuntimeError::io(format!("remove {}", path.display())))
}

/// Unmount whatever is mounted below `dir`, then delete it. Absent is fine.
pub fn clear(dir: &Path) -> Result<(), RuntimeError> {
    let Ok(meta) = std::fs::symlink_metadata(dir) else { return Ok(()) };
    for mount in mounts_below(dir)? {
        match umount2(&mount, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
            Err(e) => {
                return Err(RuntimeError::Sys {
                    what: format!("umount {}", mount.display()),
                    source: e,
                })
            }
        }
    }
    remove_on_device(dir, meta.dev())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_decode() {
        assert_eq!(unescape(r"/a\040b/c\134d"), "/a b/c\\d");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape(r"/trailing\04"), r"/trailing\04");
    }

    #[test]
    fn a_tree_on_one_filesystem_is_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tree = dir.path().join("staging");
        std::fs::create_dir_all(tree.join("rootfs/etc")).expect("mkdir");
        std::fs::write(tree.join("rootfs/etc/x"), "x").expect("write");
        std::os::unix::fs::symlink("/etc", tree.join("rootfs/link")).expect("symlink");
        clear(&tree).expect("cleared");
        assert!(!tree.exists());
        assert!(Path::new("/etc").exists(), "a symlink is removed, not followed");
    }
}
