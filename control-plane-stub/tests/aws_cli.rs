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

/// Health as the AWS CLI shows it: ECS's healthStatus members parse, and Berth's berthHealth
/// extension is dropped by botocore (it ignores members it does not know) without an error.
#[tokio::test]
async fn aws_cli_reads_health_and_ignores_berths_extension() {
    use berth_proto::v1 as pb;
    use pb::control_message::Msg;

    let dir = TempDir::new("awscli-health");
    let server = start(dir.path()).await;
    let (api, g) = (server.api_addr, server.grpc_addr);
    let code =
        berth_cp::admin::create_activation(&data_dir(dir.path()), "default", 1, 3600).unwrap();
    let reg = grpc(g)
        .await
        .register(register_request("default", code_auth(&code)))
        .await
        .unwrap()
        .into_inner();
    let mut agent = FakeAgent::connect(g, &reg.instance_id, &reg.secret, 0)
        .await
        .unwrap();
    assert!(matches!(agent.expect().await, Msg::Welcome(_)));
    assert!(matches!(agent.expect().await, Msg::Manifest(_)));

    let containers = serde_json::json!([{
        "name": "web", "image": "busybox", "memory": 64,
        "healthCheck": {"command": ["CMD-SHELL", "true"], "interval": 5, "retries": 1}
    }]);
    let registered = aws(
        dir.path(),
        api,
        &[
            "register-task-definition",
            "--family",
            "checked",
            "--container-definitions",
            &containers.to_string(),
        ],
    )
    .await;
    assert_eq!(
        registered["taskDefinition"]["containerDefinitions"][0]["healthCheck"]["interval"],
        5
    );
    let run = aws(
        dir.path(),
        api,
        &["run-task", "--task-definition", "checked"],
    )
    .await;
    let task = &run["tasks"][0];
    assert_eq!(task["healthStatus"], "UNKNOWN", "{run}");
    assert!(task["containers"][0].get("berthHealth").is_none(), "{run}");
    let arn = task["taskArn"].as_str().unwrap().to_string();
    assert!(matches!(agent.expect().await, Msg::Payload(_)));

    let pb::state_change::Change::Container(mut change) =
        container_change(&arn, "web", pb::ContainerStatus::Running, None)
    else {
        unreachable!()
    };
    change.health = Some(pb::ContainerHealth {
        status: "HEALTHY".into(),
        checked_at_ms: 1_700_000_000_000,
        exit_code: 0,
        output: String::new(),
    });
    agent
        .state_change(1, pb::state_change::Change::Container(change))
        .await;
    let described = aws(dir.path(), api, &["describe-tasks", "--tasks", &arn]).await;
    let task = &described["tasks"][0];
    assert_eq!(task["healthStatus"], "HEALTHY", "{described}");
    assert_eq!(task["containers"][0]["healthStatus"], "HEALTHY");
    assert!(task["containers"][0].get("berthHealth").is_none());

    server.shutdown().await.unwrap();
}
