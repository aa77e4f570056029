//! A tenant's egress rules for its sandboxes: destinations they may not reach, and how many
//! connections one sandbox may hold open. They only ever take away: the platform's own denied
//! ranges (the host, private and metadata addresses) and its connection cap apply before them
//! and nothing here can reopen those.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The most destinations one tenant may deny.
pub const MAX_DENY: usize = 64;
/// The highest per-sandbox connection cap a tenant may set (the platform's applies anyway).
pub const MAX_CONNECTIONS: u32 = 65_536;

/// An IPv4 network, `a.b.c.d/n` (a bare address is a /32). Host bits must be zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Net {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix)) };
        u32::from(ip) & mask == u32::from(self.addr)
    }
}

impl FromStr for Ipv4Net {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let (addr, prefix) = match raw.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (raw, None),
        };
        // Only the dotted-quad spelling: `Ipv4Addr`'s parser already refuses octal, hex and
        // short forms.
        let addr: Ipv4Addr = addr.parse().map_err(|_| {
            format!("`{raw}` is not an IPv4 address or network (a.b.c.d or a.b.c.d/n)")
        })?;
        let prefix = match prefix {
            None => 32,
            Some(p) => Some(p)
                .filter(|p| !p.is_empty() && p.len() <= 2 && p.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|p| p.parse::<u8>().ok())
                .filter(|p| *p <= 32)
                .ok_or_else(|| format!("`{raw}`: the prefix length must be 0 to 32"))?,
        };
        let net = Ipv4Net { addr, prefix };
        if !net.contains(addr) {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            let base = Ipv4Addr::from(u32::from(addr) & mask);
            return Err(format!("`{raw}` has host bits set; the network is {base}/{prefix}"));
        }
        Ok(net)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Ipv4Net {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Net {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

/// What a tenant's sandboxes may not do on the network, beyond the platform's rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressPolicy {
    /// Destinations refused (TCP gets a reset, anything else an ICMP unreachable).
    #[serde(default)]
    pub deny: Vec<Ipv4Net>,
    /// Connections one sandbox may have open at once (counted by the host's connection
    /// tracking); new ones beyond it are refused.
    #[serde(default)]
    pub max_connections_per_sandbox: Option<u32>,
}

impl EgressPolicy {
    /// Sorted, without duplicates; refuses what is out of bounds (naming the field).
    pub fn normalised(mut self) -> Result<Self, (&'static str, String)> {
        if self.deny.len() > MAX_DENY {
            return Err(("deny", format!("at most {MAX_DENY} denied networks")));
        }
        if let Some(n) = self.max_connections_per_sandbox {
            if n == 0 || n > MAX_CONNECTIONS {
                return Err((
                    "max_connections_per_sandbox",
                    format!("max_connections_per_sandbox must be 1 to {MAX_CONNECTIONS}"),
                ));
            }
        }
        self.deny.sort();
        self.deny.dedup();
        Ok(self)
    }

    /// No rule at all: the platform's alone apply.
    pub fn is_empty(&self) -> bool {
        self.deny.is_empty() && self.max_connections_per_sandbox.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_parse_strictly() {
        let n: Ipv4Net = "203.0.113.0/24".parse().expect("parses");
        assert_eq!(n.to_string(), "203.0.113.0/24");
        assert!(n.contains("203.0.113.77".parse().expect("parses")));
        assert!(!n.contains("203.0.114.1".parse().expect("parses")));
        assert_eq!("8.8.8.8".parse::<Ipv4Net>().expect("parses").to_string(), "8.8.8.8/32");
        assert!("0.0.0.0/0"
            .parse::<Ipv4Net>()
            .expect("parses")
            .contains(Ipv4Addr::new(1, 2, 3, 4)));
        for bad in [
            "203.0.113.5/24",
            "300.1.1.1",
            "1.2.3.4/33",
            "1.2.3.4/",
            "1.2.3.4/+8",
            "::1",
            "010.1.1.1",
            "0x7f.0.0.1",
            "",
            "1.2.3",
        ] {
            assert!(bad.parse::<Ipv4Net>().is_err(), "{bad}");
        }
        assert!("203.0.113.5/24"
            .parse::<Ipv4Net>()
            .expect_err("host bits")
            .contains("203.0.113.0/24"));
    }

    #[test]
    fn policies_are_bounded_and_normalised() {
        let p = EgressPolicy {
            deny: vec![
                "9.9.9.9".parse().expect("parses"),
                "1.1.1.1".parse().expect("parses"),
                "9.9.9.9".parse().expect("parses"),
            ],
            max_connections_per_sandbox: Some(10),
        }
        .normalised()
        .expect("parses");
        assert_eq!(p.deny.len(), 2);
        assert_eq!(p.deny[0].to_string(), "1.1.1.1/32");
        let zero = EgressPolicy { max_connections_per_sandbox: Some(0), ..EgressPolicy::default() };
        assert_eq!(zero.normalised().expect_err("zero").0, "max_connections_per_sandbox");
        let many = EgressPolicy {
            deny: (0..=MAX_DENY as u32)
                .map(|i| format!("1.0.{}.{}", i / 256, i % 256).parse().expect("parses"))
                .collect(),
            ..EgressPolicy::default()
        };
        assert_eq!(many.normalised().expect_err("too many").0, "deny");
        assert!(EgressPolicy::default().is_empty());
    }
}
