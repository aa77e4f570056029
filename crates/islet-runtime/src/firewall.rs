//! Host firewall for sandbox traffic, installed once at start-up in chains this node owns.
//!
//! Policy: a sandbox may open connections to the internet (NAT), to its configured resolvers on
//! port 53, and nowhere else: not the host (any of its addresses), not other sandboxes, not
//! private, loopback, link-local (metadata), CGNAT, multicast or reserved ranges. Nothing from
//! outside may open a connection into a sandbox except the host itself (the preview proxy and
//! health checks). Refusals are REJECTs so in-sandbox clients fail fast instead of hanging.
//! One sandbox holds at most `max_egress_connections` connections at once. After the
//! platform's refusals, the tenants' own (see `egress`) may refuse more, never less.

use std::net::Ipv4Addr;

use tokio::process::Command;

use crate::config::Config;
use crate::error::RuntimeError;

/// Ranges a sandbox may never reach unless the operator allows private egress.
const DENIED_RANGES: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
];

async fn iptables(args: &[&str]) -> Result<bool, RuntimeError> {
    let out = Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .await
        .map_err(RuntimeError::io("run iptables"))?;
    Ok(out.status.success())
}

async fn must(args: &[&str]) -> Result<(), RuntimeError> {
    let out = Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .await
        .map_err(RuntimeError::io("run iptables"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(RuntimeError::Command {
            tool: format!("iptables {}", args.join(" ")),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Create (or reset) our chains and hook them into the built-in ones.
pub(crate) async fn install(config: &Config) -> Result<(), RuntimeError> {
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
        .map_err(RuntimeError::io("enable ip_forward"))?;
    let prefix = config.net_prefix.to_uppercase();
    let ifaces = format!("{}+", config.net_prefix);
    let subnet = format!("10.{}.0.0/16", config.subnet_octet);
    let input = format!("{prefix}-INPUT");
    let forward = format!("{prefix}-FORWARD");
    let nat = format!("{prefix}-NAT");

    for (table, chain) in [("filter", &input), ("filter", &forward), ("nat", &nat)] {
        if !iptables(&["-t", table, "-N", chain]).await? {
            must(&["-t", table, "-F", chain]).await?;
        }
    }
    // The tenants' rules are kept as they are (not flushed): a restarted server's sandboxes
    // stay restricted until it reloads them.
    let egress = crate::egress::Egress::main_chain(&config.net_prefix);
    let _ = iptables(&["-N", &egress]).await?;
    let hooks: [(&str, &str, Vec<&str>); 4] = [
        ("filter", "INPUT", vec!["-i", &ifaces, "-j", &input]),
        ("filter", "FORWARD", vec!["-i", &ifaces, "-j", &forward]),
        ("filter", "FORWARD", vec!["-o", &ifaces, "-j", &forward]),
        ("nat", "POSTROUTING", vec!["-s", &subnet, "-j", &nat]),
    ];
    for (table, builtin, rule) in &hooks {
        let mut check = vec!["-t", table, "-C", builtin];
        check.extend(rule.iter().copied());
        if !iptables(&check).await? {
            let mut insert = vec!["-t", table, "-I", builtin, "1"];
            insert.extend(rule.iter().copied());
            must(&insert).await?;
        }
    }

    // Sandbox -> host: only replies to connections the host opened.
    must(&["-A", &input, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"])
        .await?;
    must(&["-A", &input, "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"]).await?;
    must(&["-A", &input, "-j", "REJECT", "--reject-with", "icmp-port-unreachable"]).await?;

    // Forwarded traffic.
    must(&["-A", &forward, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"])
        .await?;
    // Nobody outside opens connections into a sandbox through us, and sandboxes not to each other.
    must(&[
        "-A",
        &forward,
        "-o",
        &ifaces,
        "-j",
        "REJECT",
        "--reject-with",
        "icmp-port-unreachable",
    ])
    .await?;
    for ns in &config.nameservers {
        let ns = ns.to_string();
        for proto in ["udp", "tcp"] {
            must(&["-A", &forward, "-d", &ns, "-p", proto, "--dport", "53", "-j", "ACCEPT"])
                .await?;
        }
    }
    if let Some(cap) = config.max_egress_connections {
        let cap = cap.to_string();
        let limit = [
            "-m",
            "conntrack",
            "--ctstate",
            "NEW",
            "-m",
            "connlimit",
            "--connlimit-above",
            &cap,
            "--connlimit-mask",
            "32",
            "--connlimit-saddr",
        ];
        let mut tcp = vec!["-A", &forward, "-p", "tcp"];
        tcp.extend(limit);
        tcp.extend(["-j", "REJECT", "--reject-with", "tcp-reset"]);
        must(&tcp).await.map_err(|e| {
            RuntimeError::Spec(format!(
                "the per-sandbox connection cap needs the kernel's connlimit match \
                 (xt_connlimit); --egress-max-connections 0 runs without the cap: {e}"
            ))
        })?;
        let mut other = vec!["-A", &forward];
        other.extend(limit);
        other.extend(["-j", "REJECT", "--reject-with", "icmp-port-unreachable"]);
        must(&other).await?;
    }
    if !config.allow_private_egress {
        for range in DENIED_RANGES {
            must(&[
                "-A",
                &forward,
                "-d",
                range,
                "-p",
                "tcp",
                "-j",
                "REJECT",
                "--reject-with",
                "tcp-reset",
            ])
            .await?;
            must(&[
                "-A",
                &forward,
                "-d",
                range,
                "-j",
                "REJECT",
                "--reject-with",
                "icmp-port-unreachable",
            ])
            .await?;
        }
    }
    must(&["-A", &forward, "-j", &egress]).await?;
    must(&["-A", &forward, "-j", "ACCEPT"]).await?;

    // NAT egress, but never rewrite traffic that stays on our veths.
    must(&["-t", "nat", "-A", &nat, "-o", &ifaces, "-j", "RETURN"]).await?;
    must(&["-t", "nat", "-A", &nat, "-j", "MASQUERADE"]).await?;
    Ok(())
}

/// Whether the kernel takes a connlimit rule (tried in a scratch chain, removed again).
pub(crate) async fn connlimit_works(prefix: &str) -> bool {
    let chain = format!("{}-PROBE", prefix.to_uppercase());
    let _ = iptables(&["-N", &chain]).await;
    let works =
        iptables(&["-A", &chain, "-m", "connlimit", "--connlimit-above", "1", "-j", "RETURN"])
            .await
            .unwrap_or(false);
    let _ = iptables(&["-F", &chain]).await;
    let _ = iptables(&["-X", &chain]).await;
    works
}

/// The resolvers in the host's `/etc/resolv.conf` that sandboxes can use (IPv4, not loopback).
pub fn host_nameservers() -> Vec<Ipv4Addr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .filter_map(|addr| addr.trim().parse::<Ipv4Addr>().ok())
        .filter(|addr| !addr.is_loopback())
        .collect()
}
