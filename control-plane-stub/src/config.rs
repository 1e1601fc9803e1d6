//! berth-cp serve's configuration: TOML file, then flags; every problem reported at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

pub const DEFAULT_DATA_DIR: &str = "/var/lib/berth-cp";
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:7080";
pub const DEFAULT_GRPC_LISTEN: &str = "127.0.0.1:7081";
pub const DEFAULT_REGION: &str = "us-east-1";
pub const DEFAULT_ACCOUNT: &str = "000000000000";
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 10_000;
pub const DEFAULT_MANIFEST_INTERVAL_MS: u64 = 60_000;
/// How often the service scheduler looks at every service besides when tasks change.
pub const DEFAULT_SERVICE_INTERVAL_MS: u64 = 1_000;
/// How long a task without health checks must be RUNNING before a service counts it healthy
/// (ECS waits 40 s).
pub const DEFAULT_SERVICE_SETTLE_MS: u64 = 40_000;
pub const DEFAULT_SERVICE_THROTTLE_BASE_MS: u64 = 10_000;
/// About 27 minutes, ECS's cap.
pub const DEFAULT_SERVICE_THROTTLE_MAX_MS: u64 = 27 * 60 * 1000;
const MAX_SERVICE_THROTTLE_MS: u64 = 24 * 60 * 60 * 1000;
/// The range both intervals must lie in.
pub const INTERVAL_RANGE_MS: std::ops::RangeInclusive<u64> = 100..=3_600_000;

/// One layer of settings (the file, or the flags); unset means "not given here".
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub data_dir: Option<PathBuf>,
    pub api_listen: Option<String>,
    pub grpc_listen: Option<String>,
    pub region: Option<String>,
    pub account: Option<String>,
    pub heartbeat_interval_ms: Option<u64>,
    /// How often a session gets a fresh TaskManifest (besides the one after Welcome).
    pub manifest_interval_ms: Option<u64>,
    pub service_interval_ms: Option<u64>,
    pub service_settle_ms: Option<u64>,
    /// The service throttle's first wait and its cap (ECS's is about 27 minutes).
    pub service_throttle_base_ms: Option<u64>,
    pub service_throttle_max_ms: Option<u64>,
    pub allow_non_loopback: Option<bool>,
    pub ready_file: Option<PathBuf>,
}

impl Settings {
    /// `over` wins field by field.
    pub fn merged_with(self, over: Settings) -> Settings {
        Settings {
            data_dir: over.data_dir.or(self.data_dir),
            api_listen: over.api_listen.or(self.api_listen),
            grpc_listen: over.grpc_listen.or(self.grpc_listen),
            region: over.region.or(self.region),
            account: over.account.or(self.account),
            heartbeat_interval_ms: over.heartbeat_interval_ms.or(self.heartbeat_interval_ms),
            manifest_interval_ms: over.manifest_interval_ms.or(self.manifest_interval_ms),
            service_interval_ms: over.service_interval_ms.or(self.service_interval_ms),
            service_settle_ms: over.service_settle_ms.or(self.service_settle_ms),
            service_throttle_base_ms: over
                .service_throttle_base_ms
                .or(self.service_throttle_base_ms),
            service_throttle_max_ms: over
                .service_throttle_max_ms
                .or(self.service_throttle_max_ms),
            allow_non_loopback: over.allow_non_loopback.or(self.allow_non_loopback),
            ready_file: over.ready_file.or(self.ready_file),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub data_dir: PathBuf,
    pub api_listen: SocketAddr,
    pub grpc_listen: SocketAddr,
    pub region: String,
    pub account: String,
    pub heartbeat_interval_ms: u32,
    pub manifest_interval_ms: u32,
    pub service_interval_ms: u32,
    pub service_settle_ms: u32,
    pub service_throttle_base_ms: u32,
    pub service_throttle_max_ms: u32,
    pub ready_file: Option<PathBuf>,
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// Reads the optional file and layers the flags over it.
pub fn load(file: Option<&Path>, flags: Settings) -> Result<Config, ConfigError> {
    let from_file = match file {
        None => Settings::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            toml::from_str(&text).map_err(|e| ConfigError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?
        }
    };
    resolve(from_file.merged_with(flags))
}

/// Defaults and validation. Pure.
pub fn resolve(s: Settings) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();
    let allow_non_loopback = s.allow_non_loopback.unwrap_or(false);
    let mut addr = |key: &str, value: Option<String>, default: &str| -> Option<SocketAddr> {
        let text = value.unwrap_or_else(|| default.to_string());
        match text.parse::<SocketAddr>() {
            Err(_) => {
                problems.push(format!("{key}: {text:?} is not an IP:port address"));
                None
            }
            Ok(a) if !a.ip().is_loopback() && !allow_non_loopback => {
                problems.push(format!(
                    "{key}: {a} is not a loopback address; the API can run containers as root, \
                     so listening beyond this host needs allow_non_loopback = true (or --allow-non-loopback)"
                ));
                None
            }
            Ok(a) => Some(a),
        }
    };
    let api = addr("api_listen", s.api_listen, DEFAULT_API_LISTEN);
    let grpc = addr("grpc_listen", s.grpc_listen, DEFAULT_GRPC_LISTEN);
    if let (Some(a), Some(g)) = (api, grpc) {
        if a == g && a.port() != 0 {
            problems.push(format!("api_listen and grpc_listen are both {a}"));
        }
    }

    let data_dir = s
        .data_dir
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    if data_dir.as_os_str().is_empty() {
        problems.push("data_dir: must not be empty".into());
    }
    let region = s.region.unwrap_or_else(|| DEFAULT_REGION.into());
    if region.is_empty()
        || !region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        problems.push(format!(
            "region: {region:?} must be lowercase letters, digits and hyphens"
        ));
    }
    let account = s.account.unwrap_or_else(|| DEFAULT_ACCOUNT.into());
    if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) {
        problems.push(format!("account: {account:?} must be 12 digits"));
    }
    let mut interval = |key: &str, value: Option<u64>, default: u64| -> u64 {
        let v = value.unwrap_or(default);
        if !INTERVAL_RANGE_MS.contains(&v) {
            problems.push(format!(
                "{key}: {v} must be between {} and {}",
                INTERVAL_RANGE_MS.start(),
                INTERVAL_RANGE_MS.end()
            ));
        }
        v
    };
    let heartbeat = interval(
        "heartbeat_interval_ms",
        s.heartbeat_interval_ms,
        DEFAULT_HEARTBEAT_INTERVAL_MS,
    );
    let manifest = interval(
        "manifest_interval_ms",
        s.manifest_interval_ms,
        DEFAULT_MANIFEST_INTERVAL_MS,
    );

    let service_interval = interval(
        "service_interval_ms",
        s.service_interval_ms,
        DEFAULT_SERVICE_INTERVAL_MS,
    );
    let service_settle = s.service_settle_ms.unwrap_or(DEFAULT_SERVICE_SETTLE_MS);
    if service_settle > *INTERVAL_RANGE_MS.end() {
        problems.push(format!(
            "service_settle_ms: {service_settle} must be at most {}",
            INTERVAL_RANGE_MS.end()
        ));
    }

    let throttle_base = s
        .service_throttle_base_ms
        .unwrap_or(DEFAULT_SERVICE_THROTTLE_BASE_MS);
    let throttle_max = s
        .service_throttle_max_ms
        .unwrap_or(DEFAULT_SERVICE_THROTTLE_MAX_MS);
    if throttle_max > MAX_SERVICE_THROTTLE_MS {
        problems.push(format!(
            "service_throttle_max_ms: {throttle_max} must be at most {MAX_SERVICE_THROTTLE_MS} (a day)"
        ));
    }
    if throttle_base == 0 || throttle_base > throttle_max {
        problems.push(format!(
            "service_throttle_base_ms: {throttle_base} must be between 1 and service_throttle_max_ms ({throttle_max})"
        ));
    }

    match (api, grpc) {
        (Some(api_listen), Some(grpc_listen)) if problems.is_empty() => Ok(Config {
            data_dir,
            api_listen,
            grpc_listen,
            region,
            account,
            heartbeat_interval_ms: heartbeat as u32,
            manifest_interval_ms: manifest as u32,
            service_interval_ms: service_interval as u32,
            service_settle_ms: service_settle as u32,
            service_throttle_base_ms: throttle_base as u32,
            service_throttle_max_ms: throttle_max as u32,
            ready_file: s.ready_file,
        }),
        _ => Err(ConfigError::Invalid(problems)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example configuration we ship must load: install.sh copies it to /etc/berth.
    #[test]
    fn the_packaged_example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/cp.toml");
        let cfg = load(Some(&path), Settings::default()).unwrap();
        assert_eq!(cfg.api_listen.to_string(), "127.0.0.1:7080");
    }

    #[test]
    fn defaults() {
        let c = resolve(Settings::default()).unwrap();
        assert_eq!(c.api_listen.to_string(), DEFAULT_API_LISTEN);
        assert_eq!(c.grpc_listen.to_string(), DEFAULT_GRPC_LISTEN);
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(c.heartbeat_interval_ms, 10_000);
        assert_eq!(c.manifest_interval_ms, 60_000);
    }

    #[test]
    fn manifest_interval_from_file_and_flag_within_bounds() {
        let file: Settings = toml::from_str("manifest_interval_ms = 5000").unwrap();
        assert_eq!(resolve(file.clone()).unwrap().manifest_interval_ms, 5000);
        let flags = Settings {
            manifest_interval_ms: Some(250),
            ..Settings::default()
        };
        assert_eq!(
            resolve(file.merged_with(flags))
                .unwrap()
                .manifest_interval_ms,
            250
        );
        for (v, ok) in [
            (99, false),
            (100, true),
            (3_600_000, true),
            (3_600_001, false),
            (0, false),
        ] {
            let r = resolve(Settings {
                manifest_interval_ms: Some(v),
                ..Settings::default()
            });
            match r {
                Ok(c) => {
                    assert!(ok, "{v} accepted");
                    assert_eq!(u64::from(c.manifest_interval_ms), v);
                }
                Err(ConfigError::Invalid(p)) => {
                    assert!(!ok, "{v} refused: {p:?}");
                    assert_eq!(
                        p,
                        vec![format!(
                            "manifest_interval_ms: {v} must be between 100 and 3600000"
                        )]
                    );
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn flags_override_file() {
        let file: Settings =
            toml::from_str("region = \"eu-west-1\"\napi_listen = \"127.0.0.1:1\"").unwrap();
        let flags = Settings {
            api_listen: Some("127.0.0.1:2".into()),
            ..Settings::default()
        };
        let c = resolve(file.merged_with(flags)).unwrap();
        assert_eq!(c.region, "eu-west-1");
        assert_eq!(c.api_listen.port(), 2);
    }

    #[test]
    fn non_loopback_needs_explicit_permission() {
        let s = Settings {
            api_listen: Some("0.0.0.0:7080".into()),
            ..Settings::default()
        };
        let ConfigError::Invalid(p) = resolve(s.clone()).unwrap_err() else {
            panic!()
        };
        assert!(p[0].contains("allow_non_loopback"));
        let allowed = Settings {
            allow_non_loopback: Some(true),
            ..s
        };
        assert!(resolve(allowed).is_ok());
    }

    #[test]
    fn all_problems_reported_together() {
        let s = Settings {
            api_listen: Some("nope".into()),
            account: Some("12".into()),
            heartbeat_interval_ms: Some(0),
            manifest_interval_ms: Some(1),
            region: Some("US East".into()),
            ..Settings::default()
        };
        let ConfigError::Invalid(p) = resolve(s).unwrap_err() else {
            panic!()
        };
        assert_eq!(p.len(), 5, "{p:?}");
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        assert!(toml::from_str::<Settings>("api_listn = \"x\"").is_err());
    }
}
