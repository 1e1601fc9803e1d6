//! The real AWS CLI pointed at berth-cp, to prove that stock ECS tooling works against it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

pub struct AwsCli {
    program: PathBuf,
    endpoint: String,
    home: PathBuf,
    /// Searched before PATH: programs the CLI runs (the Session Manager plugin).
    path_prefix: Option<PathBuf>,
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
            path_prefix: None,
        })
    }

    /// The CLI finds the programs it runs in `dir` first.
    pub fn with_path_prefix(mut self, dir: &Path) -> AwsCli {
        self.path_prefix = Some(dir.to_owned());
        self
    }

    /// Runs `aws ecs ARGS... --endpoint-url ... --output json` and parses its output (`Null`
    /// for commands that print nothing, such as the waiters).
    pub fn ecs(&self, args: &[&str]) -> Result<Value> {
        let mut command = Command::new(&self.program);
        if let Some(dir) = &self.path_prefix {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let mut dirs = vec![dir.clone()];
            dirs.extend(std::env::split_paths(&path));
            command.env("PATH", std::env::join_paths(dirs)?);
        }
        let out = command
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

/// Runs the boto3 script `script` (Python source) with `args` in a scratch `home`; the JSON
/// it prints on its last line. AWS settings come only from `home`.
pub fn boto3(home: &Path, script: &str, args: &[&str]) -> Result<Value> {
    python_json(home, script, args, |cmd| {
        cmd.env("AWS_CONFIG_FILE", home.join("config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", home.join("credentials"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_ENDPOINT_URL_ECS");
    })
}

/// Runs the Python script `script` with `args` in a scratch `home`, with BERTH_PYTHON (the
/// venv .ci/run makes: boto3, prometheus_client) or else python3; the JSON it prints on its
/// last line. `setup` adjusts the command's environment.
pub fn python_json(
    home: &Path,
    script: &str,
    args: &[&str],
    setup: impl FnOnce(&mut Command),
) -> Result<Value> {
    let python = std::env::var("BERTH_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    std::fs::create_dir_all(home)?;
    let file = home.join("script.py");
    std::fs::write(&file, script)?;
    let mut cmd = Command::new(&python);
    cmd.arg(&file)
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    setup(&mut cmd);
    let out = cmd
        .output()
        .with_context(|| format!("running {python} (BERTH_PYTHON)"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "the Python script failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            stdout
        );
    }
    serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .with_context(|| format!("the Python script printed no JSON: {stdout}"))
}
