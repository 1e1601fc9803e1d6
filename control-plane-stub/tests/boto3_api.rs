//! boto3 against berth-cp: tests/boto3/cluster_ops.py runs its assertions through the real
//! SDK (BERTH_PYTHON, else `python3`, with boto3 installed) and prints a summary this test
//! checks. Without that Python this test fails loudly.

mod common;

use common::clients::*;
use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn boto3_deletes_clusters_task_definitions_and_account_settings() {
    let dir = TempDir::new("boto3");
    let server = start(dir.path()).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/boto3/cluster_ops.py");
    let endpoint = format!("http://{}", server.api_addr);
    let stdout = python_stdout(dir.path(), &[script, endpoint.as_str()]).await;
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
