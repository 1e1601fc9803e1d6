//! The real AWS CLI against berth-cp. CI installs it (BERTH_AWS_CLI); without it this test
//! fails loudly.

mod common;

use common::clients::*;
use common::*;

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
    assert!(
        task["containers"][0]["berth"].get("health").is_none(),
        "{run}"
    );
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
    assert!(task["containers"][0]["berth"].get("health").is_none());

    server.shutdown().await.unwrap();
}

/// A service driven by the AWS CLI (issue #17): create-service, botocore's own services-stable
/// and services-inactive waiters, update-service, list-services, delete-service --force.
#[tokio::test]
async fn aws_cli_runs_a_service_and_its_waiters_agree() {
    let dir = TempDir::new("awscli-service");
    let server = start_with(
        dir.path(),
        berth_cp::config::Settings {
            service_interval_ms: Some(100),
            service_settle_ms: Some(100),
            ..Default::default()
        },
    )
    .await;
    let (api, g) = (server.api_addr, server.grpc_addr);
    let mut agent = ReportingAgent::register(dir.path(), g).await;
    aws(
        dir.path(),
        api,
        &[
            "register-task-definition",
            "--family",
            "svc",
            "--container-definitions",
            r#"[{"name": "app", "image": "busybox", "memory": 64}]"#,
        ],
    )
    .await;
    let created = aws(
        dir.path(),
        api,
        &[
            "create-service",
            "--service-name",
            "svc",
            "--task-definition",
            "svc",
            "--desired-count",
            "2",
            "--launch-type",
            "EXTERNAL",
            "--deployment-configuration",
            "minimumHealthyPercent=50,maximumPercent=200,deploymentCircuitBreaker={enable=true,rollback=true}",
        ],
    )
    .await;
    assert_eq!(created["service"]["status"], "ACTIVE", "{created}");
    assert_eq!(
        created["service"]["deploymentConfiguration"]["deploymentCircuitBreaker"]["rollback"],
        true
    );
    let (started, _) = agent.payloads(2, 0).await;
    for arn in &started {
        agent.run(arn).await;
    }
    // botocore's waiter, unchanged: one deployment and runningCount == desiredCount.
    aws_stdout(
        dir.path(),
        api,
        &["wait", "services-stable", "--services", "svc"],
    )
    .await;
    let described = aws(dir.path(), api, &["describe-services", "--services", "svc"]).await;
    let s = &described["services"][0];
    assert_eq!(
        (s["runningCount"].as_i64(), s["desiredCount"].as_i64()),
        (Some(2), Some(2))
    );
    assert_eq!(s["deployments"].as_array().unwrap().len(), 1);
    assert_eq!(s["deployments"][0]["rolloutState"], "COMPLETED");

    let listed = aws(dir.path(), api, &["list-services"]).await;
    assert_eq!(
        listed["serviceArns"],
        serde_json::json!(["arn:aws:ecs:us-east-1:000000000000:service/default/svc"])
    );
    let tasks = aws(dir.path(), api, &["list-tasks", "--service-name", "svc"]).await;
    assert_eq!(tasks["taskArns"].as_array().unwrap().len(), 2);

    let scaled = aws(
        dir.path(),
        api,
        &["update-service", "--service", "svc", "--desired-count", "1"],
    )
    .await;
    assert_eq!(scaled["service"]["desiredCount"], 1);
    let (_, stopped) = agent.payloads(0, 1).await;
    agent.exit(&stopped[0], "ServiceSchedulerInitiated").await;
    aws_stdout(
        dir.path(),
        api,
        &["wait", "services-stable", "--services", "svc"],
    )
    .await;

    aws(
        dir.path(),
        api,
        &["delete-service", "--service", "svc", "--force"],
    )
    .await;
    let (_, stopped) = agent.payloads(0, 1).await;
    agent.exit(&stopped[0], "ServiceSchedulerInitiated").await;
    eventually("the service to be INACTIVE", || async {
        let d = ecs_ok(
            api,
            "DescribeServices",
            serde_json::json!({"services": ["svc"]}),
        )
        .await;
        (d["services"][0]["status"] == "INACTIVE").then_some(())
    })
    .await;
    aws_stdout(
        dir.path(),
        api,
        &["wait", "services-inactive", "--services", "svc"],
    )
    .await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn aws_cli_deletes_clusters_and_task_definitions_and_sets_account_settings() {
    let dir = TempDir::new("awscli-ops");
    let server = start(dir.path()).await;
    let (d, api) = (dir.path(), server.api_addr);

    aws(d, api, &["create-cluster", "--cluster-name", "cli"]).await;
    let deleted = aws(d, api, &["delete-cluster", "--cluster", "cli"]).await;
    assert_eq!(deleted["cluster"]["status"], "INACTIVE");
    let err = aws_fails(d, api, &["list-tasks", "--cluster", "cli"]).await;
    assert!(err.contains("(ClusterNotFoundException)"), "{err}");

    let file = d.join("taskdef.json");
    std::fs::write(&file, sample_task_definition("cli-web").to_string()).unwrap();
    let input = format!("file://{}", file.display());
    aws(
        d,
        api,
        &["register-task-definition", "--cli-input-json", &input],
    )
    .await;
    aws(
        d,
        api,
        &[
            "deregister-task-definition",
            "--task-definition",
            "cli-web:1",
        ],
    )
    .await;
    let families = aws(
        d,
        api,
        &["list-task-definition-families", "--family-prefix", "cli-"],
    )
    .await;
    assert_eq!(families["families"], serde_json::json!(["cli-web"]));
    let inactive = aws(
        d,
        api,
        &["list-task-definition-families", "--status", "INACTIVE"],
    )
    .await;
    assert_eq!(inactive["families"], serde_json::json!(["cli-web"]));
    let out = aws(
        d,
        api,
        &["delete-task-definitions", "--task-definitions", "cli-web:1"],
    )
    .await;
    assert_eq!(out["taskDefinitions"][0]["status"], "DELETE_IN_PROGRESS");

    let put = aws(
        d,
        api,
        &[
            "put-account-setting-default",
            "--name",
            "awsvpcTrunking",
            "--value",
            "enabled",
        ],
    )
    .await;
    assert_eq!(
        put["setting"]["principalArn"],
        "arn:aws:iam::000000000000:root"
    );
    let listed = aws(
        d,
        api,
        &[
            "list-account-settings",
            "--name",
            "awsvpcTrunking",
            "--effective-settings",
        ],
    )
    .await;
    assert_eq!(listed["settings"][0]["value"], "enabled");
    let err = aws_fails(
        d,
        api,
        &[
            "put-account-setting",
            "--name",
            "awsvpcTrunking",
            "--value",
            "maybe",
        ],
    )
    .await;
    assert!(err.contains("(InvalidParameterException)"), "{err}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn aws_cli_changes_cluster_settings_and_lists_services_by_namespace() {
    let dir = TempDir::new("awscli-cluster-settings");
    let server = start(dir.path()).await;
    let (d, api) = (dir.path(), server.api_addr);

    let created = aws(
        d,
        api,
        &[
            "create-cluster",
            "--cluster-name",
            "cli-sc",
            "--settings",
            "name=containerInsights,value=enabled",
            "--service-connect-defaults",
            "namespace=cli-ns",
            "--tags",
            "key=team,value=edge",
        ],
    )
    .await;
    assert_eq!(created["cluster"]["settings"][0]["value"], "enabled");
    let updated = aws(
        d,
        api,
        &[
            "update-cluster-settings",
            "--cluster",
            "cli-sc",
            "--settings",
            "name=containerInsights,value=enhanced",
        ],
    )
    .await;
    assert_eq!(updated["cluster"]["settings"][0]["value"], "enhanced");
    let updated = aws(
        d,
        api,
        &[
            "update-cluster",
            "--cluster",
            "cli-sc",
            "--configuration",
            "executeCommandConfiguration={logging=DEFAULT}",
        ],
    )
    .await;
    assert_eq!(
        updated["cluster"]["configuration"]["executeCommandConfiguration"]["logging"],
        "DEFAULT"
    );
    let described = aws(
        d,
        api,
        &[
            "describe-clusters",
            "--clusters",
            "cli-sc",
            "--include",
            "SETTINGS",
            "TAGS",
        ],
    )
    .await;
    let c = &described["clusters"][0];
    assert_eq!(c["settings"][0]["value"], "enhanced");
    assert_eq!(c["tags"][0]["key"], "team");

    std::fs::write(
        d.join("web.json"),
        sample_task_definition("cli-sc-web").to_string(),
    )
    .unwrap();
    let input = format!("file://{}", d.join("web.json").display());
    aws(
        d,
        api,
        &["register-task-definition", "--cli-input-json", &input],
    )
    .await;
    aws(
        d,
        api,
        &[
            "create-service",
            "--cluster",
            "cli-sc",
            "--service-name",
            "joined",
            "--task-definition",
            "cli-sc-web",
            "--desired-count",
            "0",
            "--service-connect-configuration",
            "enabled=true",
        ],
    )
    .await;
    let listed = aws(
        d,
        api,
        &["list-services-by-namespace", "--namespace", "cli-ns"],
    )
    .await;
    assert_eq!(
        listed["serviceArns"],
        serde_json::json!(["arn:aws:ecs:us-east-1:000000000000:service/cli-sc/joined"])
    );
    let polled = aws(d, api, &["discover-poll-endpoint", "--cluster", "cli-sc"]).await;
    assert_eq!(polled["endpoint"], format!("http://{}", server.grpc_addr));
    let providers = aws(d, api, &["describe-capacity-providers"]).await;
    assert_eq!(providers["capacityProviders"], serde_json::json!([]));

    let refusals: [(&[&str], &str); 4] = [
        (
            &["list-services-by-namespace", "--namespace", "nowhere"],
            "NamespaceNotFoundException",
        ),
        (
            &[
                "update-cluster-settings",
                "--cluster",
                "cli-sc",
                "--settings",
                "name=containerInsights,value=sometimes",
            ],
            "InvalidParameterException",
        ),
        (
            &[
                "put-cluster-capacity-providers",
                "--cluster",
                "cli-sc",
                "--capacity-providers",
                "FARGATE",
                "--default-capacity-provider-strategy",
                "capacityProvider=FARGATE,weight=1",
            ],
            "InvalidParameterException",
        ),
        (
            &[
                "create-capacity-provider",
                "--name",
                "x",
                "--auto-scaling-group-provider",
                "autoScalingGroupArn=arn:aws:autoscaling:us-east-1:000000000000:autoScalingGroup:x",
            ],
            "UnsupportedFeatureException",
        ),
    ];
    for (args, code) in refusals {
        let err = aws_fails(d, api, args).await;
        assert!(err.contains(&format!("({code})")), "{args:?}: {err}");
    }
    server.shutdown().await.unwrap();
}
