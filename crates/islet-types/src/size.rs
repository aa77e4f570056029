//! Sandbox resources: the MIOSA size tiers and explicit CPU / memory / disk values.

use serde::{Deserialize, Serialize};

/// CPU, memory and disk granted to one sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub cpu_count: u32,
    pub memory_mb: u32,
    pub disk_mb: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("unknown size `{0}`: expected one of xs, small, medium, large, xl")]
    UnknownTier(String),
    #[error("{field} must be between {min} and {max}")]
    OutOfRange { field: &'static str, min: u32, max: u32 },
}

/// The tiers the SDK knows: name, vCPUs, memory in MiB.
pub const TIERS: [(&str, u32, u32); 5] = [
    ("xs", 1, 2048),
    ("small", 2, 4096),
    ("medium", 4, 8192),
    ("large", 8, 16384),
    ("xl", 16, 32768),
];

pub const DEFAULT_DISK_MB: u32 = 10_240;
const CPU_RANGE: (u32, u32) = (1, 64);
const MEMORY_RANGE: (u32, u32) = (64, 262_144);
const DISK_RANGE: (u32, u32) = (64, 1_048_576);

impl SizeError {
    /// The request field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            SizeError::UnknownTier(_) => "size",
            SizeError::OutOfRange { field, .. } => field,
        }
    }
}

impl Resources {
    /// Resolve a request: a tier name gives defaults, explicit fields override them.
    pub fn resolve(
        size: Option<&str>,
        cpu_count: Option<u32>,
        memory_mb: Option<u32>,
        disk_mb: Option<u32>,
    ) -> Result<Self, SizeError> {
        let (tier_cpu, tier_mem) = match size {
            None => (TIERS[0].1, TIERS[0].2),
            Some(name) => TIERS
                .iter()
                .find(|(tier, _, _)| *tier == name)
                .map(|(_, cpu, mem)| (*cpu, *mem))
                .ok_or_else(|| SizeError::UnknownTier(name.to_owned()))?,
        };
        let resources = Self {
            cpu_count: cpu_count.unwrap_or(tier_cpu),
            memory_mb: memory_mb.unwrap_or(tier_mem),
            disk_mb: disk_mb.unwrap_or(DEFAULT_DISK_MB),
        };
        check("cpu_count", resources.cpu_count, CPU_RANGE)?;
        check("memory_mb", resources.memory_mb, MEMORY_RANGE)?;
        check("disk_mb", resources.disk_mb, DISK_RANGE)?;
        Ok(resources)
    }

    /// These resources with CPU and memory changed (a resize); the bounds are a create's.
    pub fn resized(
        self,
        cpu_count: Option<u32>,
        memory_mb: Option<u32>,
    ) -> Result<Self, SizeError> {
        let resized = Self {
            cpu_count: cpu_count.unwrap_or(self.cpu_count),
            memory_mb: memory_mb.unwrap_or(self.memory_mb),
            disk_mb: self.disk_mb,
        };
        check("cpu_count", resized.cpu_count, CPU_RANGE)?;
        check("memory_mb", resized.memory_mb, MEMORY_RANGE)?;
        Ok(resized)
    }

    /// The largest CPU count and memory a sandbox may have.
    pub const MAX_CPU: u32 = CPU_RANGE.1;
    pub const MAX_MEMORY_MB: u32 = MEMORY_RANGE.1;

    /// The tier name whose CPU and memory match exactly, if any.
    pub fn tier(&self) -> Option<&'static str> {
        TIERS
            .iter()
            .find(|(_, cpu, mem)| *cpu == self.cpu_count && *mem == self.memory_mb)
            .map(|(name, _, _)| *name)
    }
}

fn check(field: &'static str, value: u32, (min, max): (u32, u32)) -> Result<(), SizeError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(SizeError::OutOfRange { field, min, max })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tier_then_overrides() {
        let r = Resources::resolve(Some("small"), None, Some(1024), None).expect("valid");
        assert_eq!((r.cpu_count, r.memory_mb, r.disk_mb), (2, 1024, DEFAULT_DISK_MB));
        assert_eq!(r.tier(), None);
        let xs = Resources::resolve(None, None, None, None).expect("valid");
        assert_eq!(xs.tier(), Some("xs"));
    }

    #[test]
    fn rejects_unknown_tier_and_out_of_range() {
        assert!(matches!(
            Resources::resolve(Some("huge"), None, None, None),
            Err(SizeError::UnknownTier(_))
        ));
        assert!(Resources::resolve(None, Some(0), None, None).is_err());
        assert!(Resources::resolve(None, None, Some(1), None).is_err());
    }
}
