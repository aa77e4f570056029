//! Templates: root filesystems built reproducibly from Debian packages with mmdebstrap, cached
//! under the template directory and shared read-only by every sandbox of that template.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::error::RuntimeError;

/// The default template's canonical name and its alias.
pub const DEFAULT_TEMPLATE: &str = "miosa-sandbox";
pub const DEFAULT_ALIAS: &str = "default";

/// Packages of the default template (on top of Debian's minbase).
pub const DEFAULT_PACKAGES: &[&str] = &[
    "bash",
    "coreutils",
    "procps",
    "python3",
    "nodejs",
    "npm",
    "git",
    "curl",
    "ca-certificates",
    "iproute2",
];

/// Canonical template name for a requested `template_id`, or `None` if unknown.
pub fn resolve(name: &str) -> Option<&'static str> {
    match name {
        DEFAULT_TEMPLATE | DEFAULT_ALIAS | "" => Some(DEFAULT_TEMPLATE),
        _ => None,
    }
}

pub fn rootfs(template_dir: &Path, name: &str) -> PathBuf {
    template_dir.join(name).join("rootfs")
}

/// What a template's `READY` file says once built: its name and the revision of what Islet
/// puts in it. A template built by an earlier revision is built again.
const REVISION: &str = "2: /workspace";

fn ready_mark(name: &str) -> String {
    format!("{name}\nrevision {REVISION}\n")
}

pub fn is_built(template_dir: &Path, name: &str) -> bool {
    std::fs::read_to_string(template_dir.join(name).join("READY"))
        .is_ok_and(|mark| mark == ready_mark(name))
}

/// Build `name` with mmdebstrap into `<template_dir>/<name>/rootfs`, printing progress lines
/// through `progress`. Built into a temporary directory and renamed, so a half-built template
/// is never used. Files are shifted by `uid_base` so the sandbox's mapped root owns them.
pub async fn build(
    template_dir: &Path,
    name: &str,
    mirror: &str,
    uid_base: u32,
    progress: impl Fn(&str),
) -> Result<(), RuntimeError> {
    if resolve(name) != Some(DEFAULT_TEMPLATE) {
        return Err(RuntimeError::TemplateMissing(name.to_owned()));
    }
    let final_dir = template_dir.join(name);
    let staging = template_dir.join(format!(".{name}.building"));
    // An earlier build cut short may have left mmdebstrap's mounts of the host's /proc and
    // /sys in there: unmounted first, never walked into.
    crate::staging::clear(&staging)?;
    std::fs::create_dir_all(&staging).map_err(RuntimeError::io("mkdir template staging"))?;
    let staging_root = staging.join("rootfs");
    progress(&format!("building template {name} from {mirror} (mmdebstrap, minbase)"));
    let mut child = Command::new("mmdebstrap")
        .args([
            "--variant=minbase",
            "--mode=root",
            "--format=directory",
            &format!("--include={}", DEFAULT_PACKAGES.join(",")),
            // Reproducible: no apt lists or caches in the image, fixed timestamps.
            "--aptopt=APT::Install-Recommends \"false\"",
            "--customize-hook=rm -rf \"$1\"/var/lib/apt/lists/* \"$1\"/var/cache/apt/*",
            // Where the SDKs' file and exec defaults point: empty, owned by the sandbox's root
            // (after the shift below).
            "--customize-hook=mkdir -m 0755 \"$1\"/workspace",
            "bookworm",
        ])
        .arg(&staging_root)
        .arg(mirror)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(RuntimeError::io("run mmdebstrap (apt-get install mmdebstrap)"))?;
    if let Some(stderr) = child.stderr.take() {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            progress(&line);
        }
    }
    let status = child.wait().await.map_err(RuntimeError::io("wait mmdebstrap"))?;
    if !status.success() {
        if let Err(e) = crate::staging::clear(&staging) {
            progress(&format!("could not clear {}: {e}", staging.display()));
        }
        return Err(RuntimeError::Command {
            tool: "mmdebstrap".into(),
            status: status.to_string(),
            stderr: "see the lines above".into(),
        });
    }
    progress(&format!("shifting file owners by {uid_base} for the sandbox user namespace"));
    let root = staging_root.clone();
    tokio::task::spawn_blocking(move || shift_owners(&root, uid_base))
        .await
        .map_err(|e| RuntimeError::Spec(e.to_string()))??;
    let _ = std::fs::remove_dir_all(&final_dir);
    std::fs::rename(&staging, &final_dir).map_err(RuntimeError::io("install template"))?;
    std::fs::write(final_dir.join("READY"), ready_mark(name))
        .map_err(RuntimeError::io("mark template ready"))?;
    progress(&format!("template {name} ready at {}", final_dir.display()));
    Ok(())
}

/// Add `base` to every file's uid and gid (not following symlinks), keeping mode bits.
fn shift_owners(dir: &Path, base: u32) -> Result<(), RuntimeError> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path)
            .map_err(RuntimeError::io(format!("stat {}", path.display())))?;
        if meta.uid() < base {
            let mode = meta.mode();
            std::os::unix::fs::lchown(&path, Some(meta.uid() + base), Some(meta.gid() + base))
                .map_err(RuntimeError::io(format!("chown {}", path.display())))?;
            // chown clears setuid/setgid bits; put them back.
            if !meta.file_type().is_symlink() && mode & 0o6000 != 0 {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))
                    .map_err(RuntimeError::io(format!("chmod {}", path.display())))?;
            }
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)
                .map_err(RuntimeError::io(format!("read {}", path.display())))?
            {
                stack.push(entry.map_err(RuntimeError::io("read dir entry"))?.path());
            }
        }
    }
    Ok(())
}
