//! Per-sandbox network namespace: a named netns file, a veth pair (host side `isl<slot>`,
//! sandbox side `eth0`), one /30 per sandbox and a default route via the host side. Done over
//! rtnetlink; no `ip` processes.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use futures::TryStreamExt;
use netlink_packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkInfo};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use rtnetlink::Handle;

use crate::error::RuntimeError;

fn nl(e: rtnetlink::Error) -> RuntimeError {
    RuntimeError::Netlink(e.to_string())
}

/// Create the netns file at `path` and return a netlink handle that talks to the new namespace.
///
/// A dedicated thread unshares its network namespace, pins it with a bind mount and opens the
/// netlink socket there (a socket stays in the namespace it was created in).
async fn create_namespace(path: &Path) -> Result<Handle, RuntimeError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(RuntimeError::io("mkdir netns dir"))?;
    }
    std::fs::File::create(path).map_err(RuntimeError::io("create netns file"))?;
    let path = path.to_owned();
    let runtime = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let result = (|| {
            unshare(CloneFlags::CLONE_NEWNET).map_err(RuntimeError::sys("unshare netns"))?;
            mount(
                Some("/proc/thread-self/ns/net"),
                &path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(RuntimeError::sys("pin netns"))?;
            // Sandboxes run as an unprivileged user namespace that does not own this netns;
            // let them bind low ports all the same.
            std::fs::write("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0")
                .map_err(RuntimeError::io("set ip_unprivileged_port_start"))?;
            std::fs::write("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1")
                .map_err(RuntimeError::io("disable ipv6"))?;
            let _guard = runtime.enter();
            let (connection, handle, _) =
                rtnetlink::new_connection().map_err(RuntimeError::io("netlink socket"))?;
            runtime.spawn(connection);
            Ok(handle)
        })();
        let _ = tx.send(result);
    });
    rx.await.map_err(|_| RuntimeError::Netlink("netns thread vanished".into()))?
}

async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>, RuntimeError> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(Some(link.header.index)),
        Ok(None) => Ok(None),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(nl(e)),
    }
}

/// Build the sandbox's network: netns, veth, addresses, routes.
pub(crate) async fn create(
    host: &Handle,
    netns_path: &Path,
    host_veth: &str,
    host_ip: Ipv4Addr,
    sandbox_ip: Ipv4Addr,
) -> Result<(), RuntimeError> {
    let inner = create_namespace(netns_path).await?;
    // A leftover from a crashed run would make the add fail.
    if let Some(index) = link_index(host, host_veth).await? {
        host.link().del(index).execute().await.map_err(nl)?;
    }
    // The sandbox end is created inside the namespace, already named eth0: moving a link
    // between namespaces waits for an RCU grace period (~17 ms here), creating it there does not.
    let netns_file = std::fs::File::open(netns_path).map_err(RuntimeError::io("open netns"))?;
    let mut request = host.link().add().veth("eth0".into(), host_veth.to_owned());
    for attribute in &mut request.message_mut().attributes {
        if let LinkAttribute::LinkInfo(infos) = attribute {
            for info in infos {
                if let LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))) = info {
                    peer.attributes.push(LinkAttribute::NetNsFd(netns_file.as_raw_fd()));
                }
            }
        }
    }
    request.execute().await.map_err(nl)?;
    drop(netns_file);
    let host_index = link_index(host, host_veth)
        .await?
        .ok_or_else(|| RuntimeError::Netlink("host veth missing".into()))?;
    host.address().add(host_index, IpAddr::V4(host_ip), 30).execute().await.map_err(nl)?;
    host.link().set(host_index).up().execute().await.map_err(nl)?;

    for name in ["lo", "eth0"] {
        let index = link_index(&inner, name)
            .await?
            .ok_or_else(|| RuntimeError::Netlink(format!("{name} missing in netns")))?;
        if name == "eth0" {
            inner.address().add(index, IpAddr::V4(sandbox_ip), 30).execute().await.map_err(nl)?;
        }
        inner.link().set(index).up().execute().await.map_err(nl)?;
    }
    inner.route().add().v4().gateway(host_ip).execute().await.map_err(nl)?;
    Ok(())
}

/// Remove the host veth (its peer dies with it) and the netns file. Missing pieces are fine.
pub(crate) async fn destroy(
    host: &Handle,
    netns_path: &Path,
    host_veth: &str,
) -> Result<(), RuntimeError> {
    if let Some(index) = link_index(host, host_veth).await? {
        match host.link().del(index).execute().await {
            Ok(()) => {}
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => {}
            Err(e) => return Err(nl(e)),
        }
    }
    match umount2(netns_path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(RuntimeError::sys("unmount netns")(e)),
    }
    match std::fs::remove_file(netns_path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RuntimeError::io("remove netns file")(e)),
    }
}

/// Names of host links this node owns (`<prefix><digits>`), for reconciliation.
pub(crate) async fn owned_links(host: &Handle, prefix: &str) -> Result<Vec<String>, RuntimeError> {
    let mut names = Vec::new();
    let mut links = host.link().get().execute();
    while let Some(link) = links.try_next().await.map_err(nl)? {
        for attr in link.attributes {
            if let LinkAttribute::IfName(name) = attr {
                let owned = name.strip_prefix(prefix).is_some_and(|rest| {
                    !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit())
                });
                if owned {
                    names.push(name);
                }
            }
        }
    }
    Ok(names)
}
