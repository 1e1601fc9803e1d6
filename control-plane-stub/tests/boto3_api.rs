//! boto3 against berth-cp: tests/boto3/cluster_ops.py runs its assertions through the real
//! SDK (BERTH_PYTHON, else `python3`, with boto3 installed) and prints a summary this test
//! checks. Without that Python this test fails loudly.

mod common;

use std::process::Stdio;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn boto3_deletes_clusters_task_definitions_and_account_settings() {
    let dir = TempDir::new("boto3");
    let server = start(dir.path()).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/boto3/cluster_ops.py");
    let python = std::env::var_os("BERTH_PYTHON").unwrap_or_else(|| "python3".into());
    let out = tokio::process::Command::new(&python)
        .arg(script)
        .arg(format!("http://{}", server.api_addr))
        // No profile, credentials file or instance metadata of the machine's.
        .env("AWS_CONFIG_FILE", dir.path().join("aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.path().join("aws-credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("cannot run {python:?} ({e}); set BERTH_PYTHON to a Python with boto3")
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("no JSON summary ({e}): {stdout}"));
    assert_eq!(
        summary,
        json!({
            "deleted_cluster_status": "INACTIVE",
            "families": ["py-web", "py-worker"],
            "delete_failures": 1,
            "effective_settings": 11,
            "errors": {
                "list_tasks_deleted": "ClusterNotFoundException",
                "delete_cluster_again": "ClusterNotFoundException",
                "delete_too_many": "InvalidParameterException",
                "bad_family_status": "InvalidParameterException",
                "bad_setting_value": "InvalidParameterException",
                "read_only_setting": "InvalidParameterException",
                "value_without_name": "InvalidParameterException",
            }
        })
    );
    server.shutdown().await.unwrap();
}
