//! The real AWS CLI against berth-cp. CI installs `aws`; without it this test fails loudly.

mod common;

use std::process::Stdio;

use common::*;

async fn aws(dir: &std::path::Path, api: std::net::SocketAddr, args: &[&str]) -> serde_json::Value {
    let out = tokio::process::Command::new("aws")
        .args(["ecs"])
        .args(args)
        .args(["--endpoint-url", &format!("http://{api}"), "--output", "json"])
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "x")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", dir.join("aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("aws-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_PAGER", "")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("cannot run the `aws` CLI ({e}); install awscli (pip install awscli) and put `aws` on PATH")
        });
    assert!(
        out.status.success(),
        "aws ecs {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).expect("aws printed JSON")
}

#[tokio::test]
async fn aws_cli_registers_describes_and_lists() {
    let dir = TempDir::new("awscli");
    let server = start(dir.path()).await;
    let api = server.api_addr;

    let mut def = sample_task_definition("cli-web");
    def["memory"] = serde_json::json!("512");
    def["requiresCompatibilities"] = serde_json::json!(["EC2"]);
    let file = dir.path().join("taskdef.json");
    std::fs::write(&file, def.to_string()).unwrap();
    let input = format!("file://{}", file.display());

    let registered = aws(
        dir.path(),
        api,
        &["register-task-definition", "--cli-input-json", &input],
    )
    .await;
    let td = &registered["taskDefinition"];
    assert_eq!(td["family"], "cli-web");
    assert_eq!(td["revision"], 1);
    assert_eq!(
        td["containerDefinitions"][0]["image"],
        "docker.io/library/busybox:latest"
    );

    let described = aws(
        dir.path(),
        api,
        &["describe-task-definition", "--task-definition", "cli-web:1"],
    )
    .await;
    assert_eq!(
        described["taskDefinition"]["taskDefinitionArn"],
        td["taskDefinitionArn"]
    );
    assert_eq!(described["taskDefinition"]["memory"], "512");

    let clusters = aws(dir.path(), api, &["list-clusters"]).await;
    assert_eq!(
        clusters["clusterArns"],
        serde_json::json!(["arn:aws:ecs:us-east-1:000000000000:cluster/default"])
    );

    let missing = aws(
        dir.path(),
        api,
        &[
            "describe-tasks",
            "--tasks",
            "0123456789abcdef0123456789abcdef",
        ],
    )
    .await;
    assert_eq!(missing["failures"][0]["reason"], "MISSING");

    server.shutdown().await.unwrap();
}
