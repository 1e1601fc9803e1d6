//! The real AWS CLI pointed at berth-cp, to prove that stock ECS tooling works against it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

pub struct AwsCli {
    program: PathBuf,
    endpoint: String,
    home: PathBuf,
}

impl AwsCli {
    /// `aws` from BERTH_AWS_CLI or PATH, talking to `endpoint`; `home` is a scratch directory,
    /// so the user's own AWS configuration cannot change what the tests do.
    pub fn new(endpoint: &str, home: &Path) -> Result<AwsCli> {
        let program = std::env::var_os("BERTH_AWS_CLI")
            .map(PathBuf::from)
            .unwrap_or_else(|| "aws".into());
        let probe = Command::new(&program).arg("--version").output();
        match probe {
            Ok(out) if out.status.success() => {}
            _ => bail!(
                "the AWS CLI ({}) does not run: install it (pip install awscli) or set \
                 BERTH_AWS_CLI; .ci/run does both",
                program.display()
            ),
        }
        std::fs::create_dir_all(home)?;
        Ok(AwsCli {
            program,
            endpoint: endpoint.to_owned(),
            home: home.to_owned(),
        })
    }

    /// Runs `aws ecs ARGS... --endpoint-url ... --output json` and parses its output (`Null`
    /// for commands that print nothing, such as the waiters).
    pub fn ecs(&self, args: &[&str]) -> Result<Value> {
        let out = Command::new(&self.program)
            .arg("ecs")
            .args(args)
            .args(["--endpoint-url", &self.endpoint, "--output", "json"])
            .env("AWS_ACCESS_KEY_ID", "berth")
            .env("AWS_SECRET_ACCESS_KEY", "berth")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", self.home.join("config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", self.home.join("credentials"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_PAGER", "")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_ENDPOINT_URL_ECS")
            .output()
            .with_context(|| format!("cannot run {}", self.program.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "`aws ecs {}` failed ({}): {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                stdout.trim()
            );
        }
        if stdout.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&stdout)
            .with_context(|| format!("`aws ecs {}` printed no JSON: {stdout}", args.join(" ")))
    }
}
