//! Where a webhook may be sent. An endpoint URL is parsed as a browser would (so `2852039166`,
//! `0xa9fea9fe` and `0251.0376.0251.0376` are all 169.254.169.254), and every address it names
//! or resolves to is checked; the connection then goes only to the addresses that passed (the
//! resolver below is the HTTP client's), so a name cannot be re-resolved somewhere else between
//! the check and the connect.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::{Host, Url};

/// The operator's choice for endpoints on private networks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetPolicy {
    /// Allow loopback, private, link-local and ULA targets, and plain `http` (local receivers,
    /// tests). Cloud metadata addresses stay refused even then.
    pub allow_private: bool,
    /// The sandboxes' subnet (address, prefix length): refused always, so no tenant's webhook
    /// can POST into another tenant's sandbox past its preview tokens.
    pub sandbox_net: Option<(std::net::Ipv4Addr, u8)>,
}

impl TargetPolicy {
    fn in_sandbox_net(&self, ip: std::net::Ipv4Addr) -> bool {
        self.sandbox_net.is_some_and(|(net, len)| {
            let mask = u32::MAX.checked_shl(32 - u32::from(len.min(32))).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        })
    }
}

/// Why an endpoint URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("url is not a valid absolute URL")]
    Invalid,
    #[error("url must use https")]
    Scheme,
    #[error("url must name a host")]
    NoHost,
    #[error("url points at a private, loopback, link-local or reserved address ({0})")]
    Private(IpAddr),
    #[error("url host `{0}` does not resolve")]
    Unresolvable(String),
    #[error("url host `{0}` resolves only to private, loopback, link-local or reserved addresses")]
    ResolvesPrivate(String),
}

/// Addresses never reachable, whatever the operator allows: instance metadata services.
fn is_metadata(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            // AWS/GCP/Azure/OpenStack, AWS ECS task metadata, AWS time and DNS, Oracle,
            // Alibaba.
            o == [169, 254, 169, 254]
                || o == [169, 254, 170, 2]
                || o == [169, 254, 169, 123]
                || o == [169, 254, 169, 253]
                || o == [192, 0, 0, 192]
                || o == [100, 100, 100, 200]
        }
        IpAddr::V6(v6) => v6 == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254),
    }
}

fn v4_is_public(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(o[0] == 0                                     // "this network"
        || o[0] == 10                               // private
        || (o[0] == 100 && (o[1] & 0xc0) == 64)     // carrier-grade NAT 100.64/10
        || o[0] == 127                              // loopback
        || (o[0] == 169 && o[1] == 254)             // link-local, metadata
        || (o[0] == 172 && (o[1] & 0xf0) == 16)     // private 172.16/12
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)  // IETF protocol assignments
        || (o[0] == 192 && o[1] == 0 && o[2] == 2)  // documentation
        || (o[0] == 192 && o[1] == 88 && o[2] == 99) // 6to4 relay anycast
        || (o[0] == 192 && o[1] == 168)             // private
        || (o[0] == 198 && (o[1] & 0xfe) == 18)     // benchmarking 198.18/15
        || (o[0] == 198 && o[1] == 51 && o[2] == 100) // documentation
        || (o[0] == 203 && o[1] == 0 && o[2] == 113) // documentation
        || o[0] >= 224) // multicast, reserved, broadcast
}

/// The IPv4 address an IPv6 address carries, for the forms that reach IPv4 hosts:
/// IPv4-mapped, IPv4-compatible, NAT64 and 6to4.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if s[..5] == [0, 0, 0, 0, 0] && (s[5] == 0xffff || s[5] == 0) {
        return Some(tail); // ::ffff:a.b.c.d and ::a.b.c.d
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(tail); // NAT64 64:ff9b::/96
    }
    if s[0] == 0x2002 {
        // 6to4 2002:AABB:CCDD::/48
        return Some(Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8));
    }
    None
}

fn v6_is_public(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return v4_is_public(v4);
    }
    let s = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || (s[0] & 0xfe00) == 0xfc00                 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80                 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0                 // site-local (deprecated) fec0::/10
        || (s[0] & 0xff00) == 0xff00                 // multicast
        || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) // local-use NAT64 64:ff9b:1::/48
        || (s[0] == 0x100 && s[1..4] == [0, 0, 0])   // discard 100::/64
        || (s[0] == 0x2001 && s[1] < 0x200)          // IETF protocol assignments 2001::/23
        || (s[0] == 0x2001 && s[1] == 0xdb8)         // documentation
        || (s[0] == 0x3fff && s[1] < 0x1000)) // documentation 3fff::/20
}

/// Whether a connection to `ip` is allowed under `policy`.
pub fn address_allowed(ip: IpAddr, policy: TargetPolicy) -> bool {
    if is_metadata(ip) || ip.is_unspecified() || ip.is_multicast() {
        return false;
    }
    if let IpAddr::V6(v6) = ip {
        if let Some(v4) = embedded_v4(v6) {
            if is_metadata(IpAddr::V4(v4)) || v4.is_unspecified() || v4.is_broadcast() {
                return false;
            }
        }
    }
    let v4 = match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => embedded_v4(v6),
    };
    if let Some(v4) = v4 {
        if v4.is_broadcast() || policy.in_sandbox_net(v4) {
            return false;
        }
    }
    policy.allow_private
        || match ip {
            IpAddr::V4(v4) => v4_is_public(v4),
            IpAddr::V6(v6) => v6_is_public(v6),
        }
}

/// Parse and check an endpoint URL without resolving it: scheme, host, and the address when the
/// host is one. Names are checked again, resolved, on every delivery.
pub fn check_url(raw: &str, policy: TargetPolicy) -> Result<Url, TargetError> {
    let url = Url::parse(raw.trim()).map_err(|_| TargetError::Invalid)?;
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_private => {}
        _ => return Err(TargetError::Scheme),
    }
    match url.host() {
        None => Err(TargetError::NoHost),
        Some(Host::Ipv4(ip)) => check_ip(IpAddr::V4(ip), policy).map(|_| url),
        Some(Host::Ipv6(ip)) => check_ip(IpAddr::V6(ip), policy).map(|_| url),
        Some(Host::Domain(name)) => {
            // A trailing dot, `localhost` and friends are names that always mean this host.
            let bare = name.trim_end_matches('.').to_ascii_lowercase();
            if !policy.allow_private
                && (bare == "localhost" || bare.ends_with(".localhost") || bare.is_empty())
            {
                return Err(TargetError::Private(IpAddr::V4(Ipv4Addr::LOCALHOST)));
            }
            Ok(url)
        }
    }
}

fn check_ip(ip: IpAddr, policy: TargetPolicy) -> Result<(), TargetError> {
    if address_allowed(ip, policy) {
        Ok(())
    } else {
        Err(TargetError::Private(ip))
    }
}

/// Resolve `host` and keep only the addresses `policy` allows.
pub async fn resolve_checked(
    host: &str,
    policy: TargetPolicy,
) -> Result<Vec<SocketAddr>, TargetError> {
    let found: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|_| TargetError::Unresolvable(host.to_owned()))?
        .collect();
    if found.is_empty() {
        return Err(TargetError::Unresolvable(host.to_owned()));
    }
    let allowed: Vec<SocketAddr> =
        found.into_iter().filter(|a| address_allowed(a.ip(), policy)).collect();
    if allowed.is_empty() {
        return Err(TargetError::ResolvesPrivate(host.to_owned()));
    }
    Ok(allowed)
}

/// The HTTP client's resolver: only checked addresses come out of it.
#[derive(Debug, Clone, Copy)]
pub struct CheckedResolver(pub TargetPolicy);

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0;
        Box::pin(async move {
            let addrs = resolve_checked(name.as_str(), policy).await?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: TargetPolicy = TargetPolicy { allow_private: false, sandbox_net: None };
    const LOCAL: TargetPolicy = TargetPolicy { allow_private: true, sandbox_net: None };

    #[test]
    fn the_sandbox_subnet_is_refused_even_with_private_targets_allowed() {
        let policy = TargetPolicy {
            allow_private: true,
            sandbox_net: Some((std::net::Ipv4Addr::new(10, 213, 0, 0), 16)),
        };
        for refused in
            ["http://10.213.0.6:8000/", "http://10.213.255.1/", "http://[::ffff:10.213.0.6]/"]
        {
            assert!(check_url(refused, policy).is_err(), "{refused}");
        }
        for fine in ["http://10.214.0.6:8000/", "http://127.0.0.1:9000/", "http://192.168.1.2/"] {
            assert!(check_url(fine, policy).is_ok(), "{fine}");
        }
    }

    #[test]
    fn refuses_every_spelling_of_internal_addresses() {
        let refused = [
            "https://127.0.0.1/",
            "https://127.1/",
            "https://2130706433/",
            "https://0x7f000001/",
            "https://0177.0.0.1/",
            "https://localhost/",
            "https://LOCALHOST./",
            "https://app.localhost/",
            "https://0.0.0.0/",
            "https://0/",
            "https://10.1.2.3/",
            "https://172.16.0.1/",
            "https://172.31.255.255/",
            "https://192.168.1.1/",
            "https://100.64.0.1/",
            "https://169.254.169.254/latest/meta-data/",
            "https://2852039166/",
            "https://0xa9fea9fe/",
            "https://0xA9.0xFE.0xA9.0xFE/",
            "https://0251.0376.0251.0376/",
            "https://169.254.43518/",
            "https://[::1]/",
            "https://[::]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[::ffff:a9fe:a9fe]/",
            "https://[::ffff:169.254.169.254]/",
            "https://[::127.0.0.1]/",
            "https://[64:ff9b::a9fe:a9fe]/",
            "https://[2002:a9fe:a9fe::1]/",
            "https://[2002:7f00:1::]/",
            "https://[fc00::1]/",
            "https://[fd00:ec2::254]/",
            "https://[fe80::1]/",
            "https://[fec0::1]/",
            "https://[ff02::1]/",
            "https://224.0.0.1/",
            "https://255.255.255.255/",
            "https://198.18.0.1/",
            "https://192.0.0.170/",
        ];
        for url in refused {
            assert!(check_url(url, STRICT).is_err(), "{url} was accepted");
        }
    }

    #[test]
    fn accepts_public_https_and_refuses_other_schemes() {
        assert!(check_url("https://hooks.example.com/islet", STRICT).is_ok());
        assert!(check_url("https://93.184.216.34:8443/x", STRICT).is_ok());
        assert!(check_url("https://[2606:4700::1111]/", STRICT).is_ok());
        assert_eq!(check_url("http://hooks.example.com/", STRICT), Err(TargetError::Scheme));
        for bad in
            ["ftp://example.com/", "file:///etc/passwd", "gopher://x/", "/relative", "https://"]
        {
            assert!(check_url(bad, STRICT).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn allow_private_opens_local_targets_but_never_metadata() {
        assert!(check_url("http://127.0.0.1:9000/hook", LOCAL).is_ok());
        assert!(check_url("http://localhost:9000/hook", LOCAL).is_ok());
        assert!(check_url("http://10.0.0.5/", LOCAL).is_ok());
        for url in [
            "http://169.254.169.254/",
            "http://2852039166/",
            "http://[::ffff:169.254.169.254]/",
            "http://[fd00:ec2::254]/",
            "http://100.100.100.200/",
            "http://0.0.0.0/",
        ] {
            assert!(check_url(url, LOCAL).is_err(), "{url} accepted");
        }
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused_after_resolution() {
        assert_eq!(
            resolve_checked("localhost", STRICT).await,
            Err(TargetError::ResolvesPrivate("localhost".into()))
        );
        let local = resolve_checked("localhost", LOCAL).await.expect("allowed");
        assert!(local.iter().all(|a| a.ip().is_loopback()));
    }
}
