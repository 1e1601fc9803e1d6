//! boto3 against berth-cp: tests/boto3/cluster_ops.py runs its assertions through the real
//! SDK (BERTH_PYTHON, else `python3`, with boto3 installed) and prints a summary this test
//! checks. Without that Python this test fails loudly.

mod common;

use common::clients::*;
use common::*;
use serde_json::json;

#[tokio::test]
async fn boto3_deletes_clusters_task_definitions_and_account_settings() {
    let dir = TempDir::new("boto3");
    let server = start(dir.path()).await;
    let summary = boto3_summary(dir.path(), server.api_addr, "cluster_ops.py").await;
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
