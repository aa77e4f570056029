//! `islet-checker [--connect HOST:PORT]... [--absent PATH]... [--process-marker TEXT] [--own ID]`
//!
//! Prints one JSON object describing the sandbox as seen from inside: hostname, PID 1, the
//! processes it can see, the user namespace mapping, whether given host paths are visible,
//! whether given TCP addresses can be reached, which socket families it may open and whether
//! a 32-bit (`int 0x80`) system call runs; with `--own`, the ids of other sandboxes it finds
//! under `/sys` and in its mount table, and the network links `/sys/class/net` lists.

mod probes;
mod scan;

use std::net::{SocketAddr, TcpStream};

use probes::{int80_getpid, open_socket, FAMILIES};
use std::time::Duration;

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn processes() -> Vec<(u32, String)> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Ok(pid) = name.parse::<u32>() {
                let cmdline = read(&format!("/proc/{pid}/cmdline")).replace('\0', " ");
                found.push((pid, cmdline.trim().to_owned()));
            }
        }
    }
    found.sort();
    found
}

fn connect(target: &str) -> &'static str {
    let Ok(addr) = target.parse::<SocketAddr>() else {
        return "bad-address";
    };
    match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Ok(_) => "connected",
        Err(e) => match e.kind() {
            std::io::ErrorKind::ConnectionRefused => "refused",
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => "timeout",
            _ if e.raw_os_error() == Some(113) || e.raw_os_error() == Some(101) => "unreachable",
            _ => "error",
        },
    }
}

/// Whether a 32-bit system call ran: `allowed` when it returned our pid, else how it was
/// refused (`killed` by the filter or a missing compat layer, or the error it returned).
fn compat_syscall() -> String {
    let Ok(me) = std::env::current_exe() else { return "error".into() };
    let Ok(out) = std::process::Command::new(me).arg("--int80").output() else {
        return "error".into();
    };
    if !out.status.success() || out.stdout.is_empty() {
        return "killed".into();
    }
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    // The child's pid is not known here, but a refusal is a negative errno.
    match answer.parse::<i32>() {
        Ok(n) if n > 0 => "allowed".into(),
        Ok(n) => format!("errno {}", -n),
        Err(_) => "error".into(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--int80") {
        int80_getpid();
        return;
    }
    let mut connects = serde_json::Map::new();
    let mut absent = serde_json::Map::new();
    let mut marker = None;
    let mut own = None;
    let mut i = 0;
    while i + 1 < args.len() {
        let value = args[i + 1].clone();
        match args[i].as_str() {
            "--connect" => {
                connects.insert(value.clone(), connect(&value).into());
            }
            "--absent" => {
                absent.insert(value.clone(), (!std::path::Path::new(&value).exists()).into());
            }
            "--process-marker" => marker = Some(value),
            "--own" => own = Some(value),
            _ => {}
        }
        i += 2;
    }
    let procs = processes();
    let marker_seen = marker.as_deref().is_some_and(|m| {
        procs.iter().any(|(_, cmd)| cmd.contains(m) && !cmd.contains("islet-checker"))
    });
    let report = serde_json::json!({
        "hostname": read("/proc/sys/kernel/hostname").trim(),
        "pid": std::process::id(),
        "pid1": procs.iter().find(|(p, _)| *p == 1).map(|(_, c)| c.clone()),
        "process_count": procs.len(),
        "host_process_visible": marker_seen,
        "uid_map": read("/proc/self/uid_map").split_whitespace().collect::<Vec<_>>(),
        "absent": absent,
        "connect": connects,
        "sockets": FAMILIES
            .iter()
            .map(|(name, family, kind)| ((*name).to_owned(), open_socket(*family, *kind).into()))
            .collect::<serde_json::Map<_, _>>(),
        "compat_syscall": compat_syscall(),
    });
    let mut report = report;
    if let Some(own) = own {
        let (foreign, links) = scan::foreign_sandboxes(&own);
        report["foreign_sandboxes"] = foreign.into();
        report["net_links"] = links.into();
    }
    println!("{report}");
}
