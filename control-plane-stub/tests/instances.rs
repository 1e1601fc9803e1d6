//! Container instances through berthctl against a fake agent: custom attributes put, listed and
//! filtered on, draining, deregistering, and the attributes a task definition requires, with
//! the API's answers checked.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn berthctl_puts_lists_and_filters_attributes_and_drains_an_instance() {
    let dir = TempDir::new("instances-berthctl");
    let server = start(dir.path()).await;
    let api = server.api_addr;
    let _agent = ReportingAgent::register(dir.path(), server.grpc_addr).await;
    let list = ecs_ok(api, "ListContainerInstances", json!({})).await;
    let arn = list["containerInstanceArns"][0].as_str().unwrap();
    let id = arn.rsplit('/').next().unwrap().to_string();

    let out = berthctl(api, &["put-attribute", &id, "rack=r1"])
        .await
        .unwrap();
    assert!(out.contains("rack") && out.contains("r1"), "{out}");
    berthctl(api, &["put-attribute", &id, "gpu"]).await.unwrap();
    let out = berthctl(api, &["list-attributes", "--name", "rack"])
        .await
        .unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[1].starts_with(&id), "{out}");
    let listed = ecs_ok(
        api,
        "ListAttributes",
        json!({"targetType": "container-instance", "attributeName": "gpu"}),
    )
    .await;
    assert_eq!(listed["attributes"][0]["name"], "gpu");
    assert!(listed["attributes"][0].get("value").is_none(), "{listed}");

    let out = berthctl(
        api,
        &[
            "list-container-instances",
            "--filter",
            "attribute:rack == r1",
        ],
    )
    .await
    .unwrap();
    assert!(out.contains(&id), "{out}");
    let out = berthctl(
        api,
        &[
            "list-container-instances",
            "--filter",
            "attribute:rack == r2",
        ],
    )
    .await
    .unwrap();
    assert!(!out.contains(&id), "{out}");
    let err = berthctl(api, &["list-container-instances", "--filter", "rack == r1"])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("position 1"), "{err}");

    // An eleventh custom attribute is over ECS's limit; nothing of the call is written.
    for i in 0..8 {
        berthctl(api, &["put-attribute", &id, &format!("a{i}=x")])
            .await
            .unwrap();
    }
    let err = berthctl(api, &["put-attribute", &id, "one-too-many=x"])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("AttributeLimitExceededException"),
        "{err}"
    );
    berthctl(api, &["delete-attribute", &id, "a0"])
        .await
        .unwrap();
    berthctl(api, &["put-attribute", &id, "now-it-fits=x"])
        .await
        .unwrap();
    // All or nothing: the change of rack is not written when the other attribute of the same
    // call is over the limit.
    let (status, body) = ecs(
        api,
        "PutAttributes",
        json!({"attributes": [
            {"name": "rack", "value": "r9", "targetId": id},
            {"name": "over", "value": "x", "targetId": id},
        ]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["__type"], "AttributeLimitExceededException", "{body}");
    let listed = ecs_ok(
        api,
        "ListAttributes",
        json!({"targetType": "container-instance", "attributeName": "rack"}),
    )
    .await;
    assert_eq!(listed["attributes"][0]["value"], "r1", "{listed}");

    let out = berthctl(api, &["drain", &id]).await.unwrap();
    assert!(out.contains("DRAINING"), "{out}");
    let d = ecs_ok(
        api,
        "DescribeContainerInstances",
        json!({"containerInstances": [id]}),
    )
    .await;
    assert_eq!(d["containerInstances"][0]["status"], "DRAINING");
    let out = berthctl(api, &["list-container-instances", "--status", "DRAINING"])
        .await
        .unwrap();
    assert!(out.contains(&id), "{out}");
    let out = berthctl(api, &["activate", &id]).await.unwrap();
    assert!(out.contains("ACTIVE"), "{out}");
    let (status, body) = ecs(
        api,
        "UpdateContainerInstancesState",
        json!({"containerInstances": ["nope"], "status": "DRAINING"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["failures"][0]["reason"], "MISSING", "{body}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn deregistering_refuses_tasks_unless_forced_then_orphans_them_and_ends_the_agent() {
    let dir = TempDir::new("instances-deregister");
    let server = start(dir.path()).await;
    let api = server.api_addr;
    let mut agent = ReportingAgent::register(dir.path(), server.grpc_addr).await;
    let list = ecs_ok(api, "ListContainerInstances", json!({})).await;
    let id = list["containerInstanceArns"][0]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    ecs_ok(api, "RegisterTaskDefinition", sample_task_definition("web")).await;
    let run = ecs_ok(api, "RunTask", json!({"taskDefinition": "web"})).await;
    let task = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    let (started, _) = agent.payloads(1, 0).await;
    assert_eq!(started, vec![task.clone()]);
    agent.run(&task).await;

    let (status, body) = ecs(
        api,
        "DeregisterContainerInstance",
        json!({"containerInstance": id}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["__type"], "InvalidParameterException", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("force"),
        "{body}"
    );

    let out = berthctl(api, &["deregister", &id, "--force"])
        .await
        .unwrap();
    assert!(out.contains("INACTIVE"), "{out}");
    // The agent is told: its session ends with PERMISSION_DENIED, which it takes as final.
    let ended = loop {
        match agent.session.next().await {
            Ok(_) => continue,
            Err(status) => break status,
        }
    };
    assert_eq!(ended.code(), tonic::Code::PermissionDenied, "{ended:?}");
    let d = ecs_ok(api, "DescribeTasks", json!({"tasks": [task]})).await;
    assert_eq!(d["tasks"][0]["lastStatus"], "STOPPED", "{d}");
    assert!(
        d["tasks"][0]["stoppedReason"]
            .as_str()
            .unwrap()
            .contains("deregistered"),
        "{d}"
    );
    let list = ecs_ok(api, "ListContainerInstances", json!({})).await;
    assert_eq!(list["containerInstanceArns"], json!([]), "{list}");
    let list = ecs_ok(api, "ListContainerInstances", json!({"status": "INACTIVE"})).await;
    assert_eq!(list["containerInstanceArns"].as_array().unwrap().len(), 1);
    let d = ecs_ok(
        api,
        "DescribeContainerInstances",
        json!({"containerInstances": [id]}),
    )
    .await;
    assert_eq!(d["containerInstances"][0]["status"], "INACTIVE", "{d}");
    // Nothing is placed on it any more, and it cannot be deregistered twice.
    let run = ecs_ok(api, "RunTask", json!({"taskDefinition": "web"})).await;
    assert_eq!(run["tasks"], json!([]), "{run}");
    let (status, body) = ecs(
        api,
        "DeregisterContainerInstance",
        json!({"containerInstance": id, "force": true}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_task_definition_requires_the_capabilities_it_uses_and_is_placed_only_where_they_are() {
    let dir = TempDir::new("instances-requires");
    let server = start(dir.path()).await;
    let api = server.api_addr;
    const HEALTH: &str = "ecs.capability.container-health-check";
    // An agent from before health checks: it does not report the capability.
    let mut old = ReportingAgent::register_with(dir.path(), server.grpc_addr, |r| {
        r.attributes.retain(|a| a.name != HEALTH)
    })
    .await;
    let mut checked = sample_task_definition("checked");
    checked["containerDefinitions"][0]["healthCheck"] = json!({"command": ["CMD", "true"]});
    let registered = ecs_ok(api, "RegisterTaskDefinition", checked).await;
    assert_eq!(
        registered["taskDefinition"]["requiresAttributes"],
        json!([{"name": HEALTH}])
    );
    ecs_ok(
        api,
        "RegisterTaskDefinition",
        sample_task_definition("plain"),
    )
    .await;
    let plain = ecs_ok(
        api,
        "DescribeTaskDefinition",
        json!({"taskDefinition": "plain"}),
    )
    .await;
    assert_eq!(plain["taskDefinition"]["requiresAttributes"], json!([]));

    let refused = ecs_ok(api, "RunTask", json!({"taskDefinition": "checked"})).await;
    assert_eq!(refused["tasks"], json!([]), "{refused}");
    let failure = &refused["failures"][0];
    assert_eq!(failure["reason"], "ATTRIBUTE", "{refused}");
    assert!(
        failure["arn"]
            .as_str()
            .unwrap()
            .contains(":container-instance/default/"),
        "{refused}"
    );
    assert!(
        failure["detail"].as_str().unwrap().contains(HEALTH),
        "{refused}"
    );
    let ran = ecs_ok(api, "RunTask", json!({"taskDefinition": "plain"})).await;
    assert_eq!(ran["tasks"].as_array().unwrap().len(), 1, "{ran}");
    old.payloads(1, 0).await;

    // A current agent reports it, and takes the task.
    let mut current = ReportingAgent::register(dir.path(), server.grpc_addr).await;
    let ran = ecs_ok(api, "RunTask", json!({"taskDefinition": "checked"})).await;
    assert_eq!(ran["failures"], json!([]), "{ran}");
    let task = ran["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    let (started, _) = current.payloads(1, 0).await;
    assert_eq!(started, vec![task]);
    server.shutdown().await.unwrap();
}
