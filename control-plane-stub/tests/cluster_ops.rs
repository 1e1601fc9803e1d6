//! DeleteCluster, and the cluster settings, account settings and task definition family
//! operations, through the ECS JSON API.

mod common;

use common::*;
use serde_json::{json, Value};

fn code(body: &Value) -> &str {
    body["__type"].as_str().unwrap_or("")
}

#[tokio::test]
async fn a_deleted_cluster_is_inactive_unlisted_not_found_and_created_again() {
    let dir = TempDir::new("delete-cluster");
    let server = start(dir.path()).await;
    let api = server.api_addr;

    ecs_ok(api, "CreateCluster", json!({"clusterName": "prod"})).await;
    let deleted = ecs_ok(api, "DeleteCluster", json!({"cluster": "prod"})).await;
    assert_eq!(deleted["cluster"]["status"], "INACTIVE");
    assert_eq!(
        deleted["cluster"]["clusterArn"],
        "arn:aws:ecs:us-east-1:000000000000:cluster/prod"
    );
    let described = ecs_ok(api, "DescribeClusters", json!({"clusters": ["prod"]})).await;
    assert_eq!(described["clusters"][0]["status"], "INACTIVE");
    assert_eq!(described["failures"], json!([]));
    let listed = ecs_ok(api, "ListClusters", json!({})).await;
    assert_eq!(
        listed["clusterArns"],
        json!(["arn:aws:ecs:us-east-1:000000000000:cluster/default"])
    );
    // Its contents are out of reach, and deleting it again finds nothing; by ARN as by name.
    ecs_ok(api, "RegisterTaskDefinition", sample_task_definition("web")).await;
    for (op, body) in [
        ("ListTasks", json!({"cluster": "prod"})),
        ("ListServices", json!({"cluster": "prod"})),
        ("ListContainerInstances", json!({"cluster": "prod"})),
        (
            "RunTask",
            json!({"cluster": "prod", "taskDefinition": "web"}),
        ),
        (
            "DeleteCluster",
            json!({"cluster": "arn:aws:ecs:us-east-1:000000000000:cluster/prod"}),
        ),
        ("DeleteCluster", json!({"cluster": "ghost"})),
    ] {
        let (status, body) = ecs(api, op, body).await;
        assert_eq!(
            (status, code(&body)),
            (400, "ClusterNotFoundException"),
            "{op}: {body}"
        );
    }
    let (status, body) = ecs(api, "DeleteCluster", json!({})).await;
    assert_eq!((status, code(&body)), (400, "SerializationException"));

    // Created again: ACTIVE and listed.
    let again = ecs_ok(api, "CreateCluster", json!({"clusterName": "prod"})).await;
    assert_eq!(again["cluster"]["status"], "ACTIVE");
    ecs_ok(api, "ListTasks", json!({"cluster": "prod"})).await;

    // The default cluster may be deleted too, and stays deleted across a restart.
    let deleted = ecs_ok(api, "DeleteCluster", json!({"cluster": "default"})).await;
    assert_eq!(deleted["cluster"]["clusterName"], "default");
    server.shutdown().await.unwrap();
    let server = start(dir.path()).await;
    let api = server.api_addr;
    let (status, body) = ecs(api, "RunTask", json!({"taskDefinition": "web"})).await;
    assert_eq!((status, code(&body)), (400, "ClusterNotFoundException"));
    let described = ecs_ok(api, "DescribeClusters", json!({})).await;
    assert_eq!(described["clusters"][0]["status"], "INACTIVE");
    let created = ecs_ok(api, "CreateCluster", json!({})).await;
    assert_eq!(
        (
            &created["cluster"]["clusterName"],
            &created["cluster"]["status"]
        ),
        (&json!("default"), &json!("ACTIVE"))
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn delete_cluster_is_refused_while_services_instances_or_tasks_remain() {
    let dir = TempDir::new("delete-cluster-refused");
    let server = start(dir.path()).await;
    let (api, g) = (server.api_addr, server.grpc_addr);
    let mut agent = ReportingAgent::register(dir.path(), g).await;
    ecs_ok(api, "RegisterTaskDefinition", sample_task_definition("web")).await;
    let run = ecs_ok(api, "RunTask", json!({"taskDefinition": "web"})).await;
    let task_arn = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    let (started, _) = agent.payloads(1, 0).await;
    assert_eq!(started, std::slice::from_ref(&task_arn));
    agent.run(&task_arn).await;
    ecs_ok(
        api,
        "CreateService",
        json!({"serviceName": "idle", "taskDefinition": "web", "desiredCount": 0}),
    )
    .await;

    let refused = |expected: &'static str| async move {
        let (status, body) = ecs(api, "DeleteCluster", json!({"cluster": "default"})).await;
        assert_eq!((status, code(&body)), (400, expected), "{body}");
        body
    };
    let body = refused("ClusterContainsServicesException").await;
    assert_eq!(
        body["message"],
        "The Cluster cannot be deleted while Services are active."
    );
    let described = ecs_ok(api, "DescribeClusters", json!({})).await;
    assert_eq!(described["clusters"][0]["activeServicesCount"], 1);

    // A deleted service counts until it is INACTIVE.
    ecs_ok(api, "DeleteService", json!({"service": "idle"})).await;
    eventually("the service to be INACTIVE", || async {
        let d = ecs_ok(api, "DescribeServices", json!({"services": ["idle"]})).await;
        (d["services"][0]["status"] == "INACTIVE").then_some(())
    })
    .await;
    refused("ClusterContainsContainerInstancesException").await;

    // With its instance gone, the task it still runs keeps the cluster.
    let instances = ecs_ok(api, "ListContainerInstances", json!({})).await;
    let instance = instances["containerInstanceArns"][0].as_str().unwrap();
    berth_cp::admin::revoke_instance(&data_dir(dir.path()), instance).unwrap();
    refused("ClusterContainsTasksException").await;
    let described = ecs_ok(api, "DescribeClusters", json!({})).await;
    assert_eq!(described["clusters"][0]["status"], "ACTIVE");
    server.shutdown().await.unwrap();
}
