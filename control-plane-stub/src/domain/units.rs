//! ECS's task-level `cpu` and `memory` strings ("1 vCPU", "0.5 vCPU", "2 GB", "512") as CPU units
//! and MiB. Pure.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum UnitError {
    #[error("{0:?} is not a CPU amount (expected units like \"256\" or vCPUs like \"0.5 vCPU\")")]
    Cpu(String),
    #[error("{0:?} is not a memory amount (expected MiB like \"512\" or \"2 GB\", \"512 MiB\")")]
    Memory(String),
}

/// CPU units: 1024 per vCPU.
pub fn parse_cpu(s: &str) -> Result<i64, UnitError> {
    let err = || UnitError::Cpu(s.to_string());
    let (number, unit) = split_number(s).ok_or_else(err)?;
    let factor = match unit.to_ascii_lowercase().as_str() {
        "" | "unit" | "units" => 1.0,
        "vcpu" | "vcpus" => 1024.0,
        _ => return Err(err()),
    };
    to_integer(number * factor).ok_or_else(err)
}

/// MiB. ECS treats "GB" as GiB, so do we.
pub fn parse_memory(s: &str) -> Result<i64, UnitError> {
    let err = || UnitError::Memory(s.to_string());
    let (number, unit) = split_number(s).ok_or_else(err)?;
    let factor = match unit.to_ascii_lowercase().as_str() {
        "" | "mb" | "mib" => 1.0,
        "gb" | "gib" => 1024.0,
        _ => return Err(err()),
    };
    to_integer(number * factor).ok_or_else(err)
}

fn split_number(s: &str) -> Option<(f64, &str)> {
    let s = s.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let number: f64 = s[..end].parse().ok()?;
    Some((number, s[end..].trim()))
}

fn to_integer(v: f64) -> Option<i64> {
    (v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < i32::MAX as f64).then_some(v as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_units_and_vcpus() {
        assert_eq!(parse_cpu("256"), Ok(256));
        assert_eq!(parse_cpu("1 vCPU"), Ok(1024));
        assert_eq!(parse_cpu("0.5 vCPU"), Ok(512));
        assert_eq!(parse_cpu("2vcpu"), Ok(2048));
        assert_eq!(parse_cpu(" 512 "), Ok(512));
        assert!(parse_cpu("lots").is_err());
        assert!(parse_cpu("1 GB").is_err());
        assert!(parse_cpu("-1").is_err());
        assert!(parse_cpu("0.1").is_err());
    }

    #[test]
    fn memory_mib_and_gb() {
        assert_eq!(parse_memory("512"), Ok(512));
        assert_eq!(parse_memory("2 GB"), Ok(2048));
        assert_eq!(parse_memory("0.5 GB"), Ok(512));
        assert_eq!(parse_memory("512 MiB"), Ok(512));
        assert_eq!(parse_memory("1gb"), Ok(1024));
        assert!(parse_memory("1 vCPU").is_err());
        assert!(parse_memory("").is_err());
    }
}
