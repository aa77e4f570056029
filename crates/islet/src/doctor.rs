//! `islet doctor`: what this host has, what it lacks, and how to get it.

use std::path::Path;

struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
    fix: &'static str,
}

fn which(tool: &str) -> Option<String> {
    std::env::var("PATH")
        .ok()?
        .split(':')
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}

fn tool(name: &'static str, fix: &'static str) -> Check {
    let found = which(name);
    Check { name, ok: found.is_some(), detail: found.unwrap_or_else(|| "not found".into()), fix }
}

/// The connlimit match the per-sandbox connection cap is made of.
fn connlimit() -> Check {
    let ok = std::process::Command::new("iptables")
        .args(["-m", "connlimit", "-h"])
        .output()
        .is_ok_and(|o| o.status.success());
    Check {
        name: "iptables connlimit",
        ok,
        detail: if ok {
            "the connlimit match loads".into()
        } else {
            "iptables -m connlimit failed".into()
        },
        fix: "a kernel with xt_connlimit, or run with --egress-max-connections 0 (no per-sandbox cap)",
    }
}

/// The nftables backend, under which a tenant's unchanged egress chain keeps its connection
/// counts when other rules change (the legacy backend rewrites the whole table each time).
fn iptables_backend() -> Check {
    let version = std::process::Command::new("iptables")
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    Check {
        name: "iptables backend",
        ok: version.contains("nf_tables"),
        detail: if version.is_empty() {
            "unknown".into()
        } else {
            version
        },
        fix: "update-alternatives --set iptables /usr/sbin/iptables-nft (legacy restarts connection counts on every egress change)",
    }
}

/// Real KVM (VT-x / AMD-V) versus PVM, which stock guest kernels cannot boot.
fn kvm() -> Check {
    let dev = Path::new("/dev/kvm").exists();
    let real =
        Path::new("/sys/module/kvm_intel").exists() || Path::new("/sys/module/kvm_amd").exists();
    let pvm = Path::new("/sys/module/kvm_pvm").exists();
    let detail = match (dev, real, pvm) {
        (false, _, _) => "no /dev/kvm".to_owned(),
        (true, true, _) => "real KVM (kvm_intel/kvm_amd)".to_owned(),
        (true, false, true) => {
            "PVM: /dev/kvm works but stock guest kernels cannot boot under it".to_owned()
        }
        (true, false, false) => "/dev/kvm of unknown kind".to_owned(),
    };
    Check {
        name: "kvm (microvm isolation)",
        ok: dev && real,
        detail,
        fix: "only needed for microVMs; use container or gvisor isolation here",
    }
}

pub(crate) fn run() -> anyhow::Result<()> {
    let uid = nix_uid();
    let cgroup = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "v2".to_owned()
    } else if Path::new("/sys/fs/cgroup/unified").exists() {
        "hybrid (v1 controllers + cgroup2 at /sys/fs/cgroup/unified)".to_owned()
    } else {
        "v1".to_owned()
    };
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    let userns = std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap_or_default();
    let checks = vec![
        Check {
            name: "root",
            ok: uid == 0,
            detail: format!("uid {uid}"),
            fix: "run islet serve as root (namespaces, cgroups, veths need it)",
        },
        tool("runc", "apt-get install runc"),
        tool("runsc", "apt-get install runsc (for gvisor isolation)"),
        tool("mmdebstrap", "apt-get install mmdebstrap (to build templates)"),
        tool("iptables", "apt-get install iptables"),
        tool(
            "iptables-restore",
            "apt-get install iptables (tenants' egress rules are applied with it)",
        ),
        connlimit(),
        iptables_backend(),
        Check {
            name: "cgroups",
            ok: Path::new("/sys/fs/cgroup").exists(),
            detail: cgroup,
            fix: "mount cgroups at /sys/fs/cgroup",
        },
        Check {
            name: "overlayfs",
            ok: filesystems.contains("overlay"),
            detail: "overlay in /proc/filesystems".into(),
            fix: "a kernel with CONFIG_OVERLAY_FS",
        },
        Check {
            name: "network namespaces",
            ok: Path::new("/proc/self/ns/net").exists(),
            detail: "/proc/self/ns/net".into(),
            fix: "a kernel with CONFIG_NET_NS",
        },
        Check {
            name: "user namespaces",
            ok: userns.trim().parse::<u64>().unwrap_or(0) > 0,
            detail: format!("max_user_namespaces = {}", userns.trim()),
            fix: "sysctl user.max_user_namespaces=10000",
        },
        kvm(),
    ];
    let mut missing = 0;
    for c in &checks {
        let mark = if c.ok { "ok  " } else { "MISS" };
        println!("[{mark}] {:<26} {}", c.name, c.detail);
        if !c.ok {
            println!("       fix: {}", c.fix);
            missing += 1;
        }
    }
    if missing == 0 {
        println!("\nthis host can run Islet");
    }
    Ok(())
}

fn nix_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(u32::MAX)
}
