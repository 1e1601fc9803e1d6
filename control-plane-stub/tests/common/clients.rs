//! The real AWS clients, run against a test server: the aws CLI (BERTH_AWS_CLI, else `aws` on
//! PATH) and Python with boto3 and botocore (BERTH_PYTHON, else `python3`). .ci/run installs
//! both; a test that needs one and cannot run it fails loudly rather than passing unchecked.
//!
//! Both run with a scratch `home`: no profile, credentials file or instance metadata of the
//! machine's may change what a test sees.

use std::ffi::{OsStr, OsString};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Output, Stdio};

use serde_json::Value;

/// The Python with boto3 and botocore.
pub fn python() -> OsString {
    std::env::var_os("BERTH_PYTHON").unwrap_or_else(|| "python3".into())
}

/// Runs Python with `args` (a script and its arguments, or `-c CODE ...`); its output whatever
/// the exit status.
pub async fn python_output<A: AsRef<OsStr>>(home: &Path, args: &[A]) -> Output {
    let python = python();
    isolated(tokio::process::Command::new(&python), home)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("cannot run {python:?} ({e}); set BERTH_PYTHON to a Python with boto3")
        })
}

/// Runs Python with `args`, which must succeed; what it printed on stdout.
pub async fn python_stdout<A: AsRef<OsStr>>(home: &Path, args: &[A]) -> String {
    let out = python_output(home, args).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{:?} {:?} failed: {}\n{stdout}",
        python(),
        args.iter().map(AsRef::as_ref).collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs the boto3 script `tests/boto3/NAME` against `api` and returns the JSON summary it
/// prints on its last line.
pub async fn boto3_summary(home: &Path, api: SocketAddr, name: &str) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/boto3")
        .join(name);
    let endpoint = format!("http://{api}");
    let stdout = python_stdout(home, &[script.as_os_str(), OsStr::new(&endpoint)]).await;
    serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{name}: no JSON summary ({e}): {stdout}"))
}

/// Runs `aws ecs ARGS` against `api`; its output whatever the exit status.
pub async fn aws_output(home: &Path, api: SocketAddr, args: &[&str]) -> Output {
    let program = std::env::var_os("BERTH_AWS_CLI").unwrap_or_else(|| "aws".into());
    isolated(tokio::process::Command::new(&program), home)
        .arg("ecs")
        .args(args)
        .args([
            "--endpoint-url",
            &format!("http://{api}"),
            "--output",
            "json",
        ])
        // The CLI needs some credentials to sign with; berth-cp does not verify them.
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "x")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_PAGER", "")
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot run the aws CLI {program:?} ({e}); set BERTH_AWS_CLI, or install awscli \
                 (pip install awscli) and put `aws` on PATH"
            )
        })
}

/// Runs `aws ecs ARGS`, which must succeed; its stdout (JSON, or nothing for a waiter).
pub async fn aws_stdout(home: &Path, api: SocketAddr, args: &[&str]) -> Vec<u8> {
    let out = aws_output(home, api, args).await;
    assert!(
        out.status.success(),
        "aws ecs {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out.stdout
}

/// Runs `aws ecs ARGS`, which must fail; what it printed on stderr.
pub async fn aws_fails(home: &Path, api: SocketAddr, args: &[&str]) -> String {
    let out = aws_output(home, api, args).await;
    assert!(!out.status.success(), "aws ecs {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `aws ecs ARGS`, which must succeed and print JSON.
pub async fn aws(home: &Path, api: SocketAddr, args: &[&str]) -> Value {
    serde_json::from_slice(&aws_stdout(home, api, args).await).expect("aws printed JSON")
}

fn isolated(mut command: tokio::process::Command, home: &Path) -> tokio::process::Command {
    command
        .env("AWS_CONFIG_FILE", home.join("aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("aws-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        // The scripts import tests/boto3/berth_boto3.py: no __pycache__ left in the tree.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null());
    command
}
