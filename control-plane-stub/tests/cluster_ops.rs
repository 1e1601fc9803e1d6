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

#[tokio::test]
async fn task_definition_families_are_listed_and_inactive_revisions_deleted() {
    let dir = TempDir::new("taskdef-families");
    let server = start(dir.path()).await;
    let (api, g) = (server.api_addr, server.grpc_addr);
    let mut agent = ReportingAgent::register(dir.path(), g).await;
    for family in ["web", "web", "web_api", "webby", "db"] {
        ecs_ok(
            api,
            "RegisterTaskDefinition",
            sample_task_definition(family),
        )
        .await;
    }
    // A task of web:1 runs before web:1 is deleted.
    let run = ecs_ok(api, "RunTask", json!({"taskDefinition": "web:1"})).await;
    let task_arn = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    agent.payloads(1, 0).await;
    agent.run(&task_arn).await;
    ecs_ok(
        api,
        "DeregisterTaskDefinition",
        json!({"taskDefinition": "web:1"}),
    )
    .await;
    ecs_ok(
        api,
        "DeregisterTaskDefinition",
        json!({"taskDefinition": "db:1"}),
    )
    .await;

    let families = |body: Value| async move {
        ecs_ok(api, "ListTaskDefinitionFamilies", body).await["families"].clone()
    };
    assert_eq!(
        families(json!({})).await,
        json!(["db", "web", "web_api", "webby"])
    );
    assert_eq!(
        families(json!({"status": "ALL", "familyPrefix": "web"})).await,
        json!(["web", "web_api", "webby"])
    );
    assert_eq!(
        families(json!({"familyPrefix": "web_"})).await,
        json!(["web_api"])
    );
    assert_eq!(families(json!({"status": "INACTIVE"})).await, json!(["db"]));
    assert_eq!(
        families(json!({"status": "ACTIVE"})).await,
        json!(["web", "web_api", "webby"])
    );
    // Pages of two, then one.
    let page = ecs_ok(api, "ListTaskDefinitionFamilies", json!({"maxResults": 3})).await;
    assert_eq!(page["families"], json!(["db", "web", "web_api"]));
    let rest = ecs_ok(
        api,
        "ListTaskDefinitionFamilies",
        json!({"maxResults": 3, "nextToken": page["nextToken"]}),
    )
    .await;
    assert_eq!(
        (rest["families"].clone(), rest.get("nextToken")),
        (json!(["webby"]), None)
    );
    for body in [
        json!({"status": "DELETE_IN_PROGRESS"}),
        json!({"maxResults": 0}),
        json!({"nextToken": "x"}),
    ] {
        let (status, err) = ecs(api, "ListTaskDefinitionFamilies", body).await;
        assert_eq!((status, code(&err)), (400, "InvalidParameterException"));
    }

    // Only INACTIVE revisions are deleted; the others are failures as ECS words them.
    let arn = |r: &str| format!("arn:aws:ecs:us-east-1:000000000000:task-definition/{r}");
    let deleted = ecs_ok(
        api,
        "DeleteTaskDefinitions",
        json!({"taskDefinitions": ["web:1", arn("web:2"), "web:9"]}),
    )
    .await;
    assert_eq!(deleted["taskDefinitions"].as_array().unwrap().len(), 1);
    assert_eq!(
        deleted["taskDefinitions"][0]["status"],
        "DELETE_IN_PROGRESS"
    );
    assert!(deleted["taskDefinitions"][0]["deleteRequestedAt"].is_number());
    assert_eq!(
        deleted["failures"],
        json!([
            {"arn": arn("web:2"), "reason": "The specified task definition is still in ACTIVE status. Please deregister the target and try again."},
            {"arn": arn("web:9"), "reason": "The specified task definition does not exist. Specify a valid account, family, revision and try again."},
        ])
    );
    let described = ecs_ok(
        api,
        "DescribeTaskDefinition",
        json!({"taskDefinition": "web:1"}),
    )
    .await;
    assert_eq!(described["taskDefinition"]["status"], "DELETE_IN_PROGRESS");
    let listed = |status: &'static str| async move {
        ecs_ok(
            api,
            "ListTaskDefinitions",
            json!({"familyPrefix": "web", "status": status}),
        )
        .await["taskDefinitionArns"]
            .clone()
    };
    assert_eq!(listed("INACTIVE").await, json!([]));
    assert_eq!(listed("ACTIVE").await, json!([arn("web:2")]));
    assert_eq!(listed("DELETE_IN_PROGRESS").await, json!([arn("web:1")]));
    // Still a family (ECS keeps showing it while a revision is DELETE_IN_PROGRESS).
    assert_eq!(families(json!({"familyPrefix": "web"})).await[0], "web");
    // The running task is untouched, and nothing new starts from the deleted revision.
    let tasks = ecs_ok(api, "DescribeTasks", json!({"tasks": [task_arn]})).await;
    assert_eq!(tasks["tasks"][0]["lastStatus"], "RUNNING");
    assert_eq!(tasks["tasks"][0]["taskDefinitionArn"], json!(arn("web:1")));
    let (status, err) = ecs(api, "RunTask", json!({"taskDefinition": "web:1"})).await;
    assert_eq!((status, code(&err)), (400, "ClientException"), "{err}");

    let eleven: Vec<String> = (1..=11).map(|r| format!("web:{r}")).collect();
    for body in [
        json!({"taskDefinitions": []}),
        json!({"taskDefinitions": eleven}),
        json!({"taskDefinitions": ["web"]}),
    ] {
        let (status, err) = ecs(api, "DeleteTaskDefinitions", body).await;
        assert_eq!(
            (status, code(&err)),
            (400, "InvalidParameterException"),
            "{err}"
        );
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn account_settings_are_put_listed_and_deleted_per_principal() {
    let dir = TempDir::new("account-settings");
    let server = start(dir.path()).await;
    let api = server.api_addr;
    let root = "arn:aws:iam::000000000000:root";
    let alice = "arn:aws:iam::000000000000:user/alice";

    // Nothing set: only the effective settings list anything, the account's defaults.
    let listed = ecs_ok(api, "ListAccountSettings", json!({})).await;
    assert_eq!(listed["settings"], json!([]));
    let effective = ecs_ok(
        api,
        "ListAccountSettings",
        json!({"effectiveSettings": true}),
    )
    .await;
    assert_eq!(effective["settings"].as_array().unwrap().len(), 10);
    assert!(effective["nextToken"].is_string(), "11 settings, 10 a page");
    let rest = ecs_ok(
        api,
        "ListAccountSettings",
        json!({"effectiveSettings": true, "nextToken": effective["nextToken"]}),
    )
    .await;
    assert_eq!(rest["settings"][0]["name"], "fargateEventWindows");
    assert_eq!(rest.get("nextToken"), None);
    assert_eq!(
        effective["settings"][4],
        json!({"name": "containerInsights", "value": "disabled", "principalArn": root, "type": "user"})
    );

    // The default (the root user's), and alice's own.
    let put = ecs_ok(
        api,
        "PutAccountSettingDefault",
        json!({"name": "containerInsights", "value": "enabled"}),
    )
    .await;
    assert_eq!(
        put["setting"],
        json!({"name": "containerInsights", "value": "enabled", "principalArn": root, "type": "user"})
    );
    let put = ecs_ok(
        api,
        "PutAccountSetting",
        json!({"name": "containerInsights", "value": "enhanced", "principalArn": alice}),
    )
    .await;
    assert_eq!(put["setting"]["principalArn"], alice);
    ecs_ok(
        api,
        "PutAccountSetting",
        json!({"name": "awsvpcTrunking", "value": "enabled"}),
    )
    .await;
    let mine = ecs_ok(api, "ListAccountSettings", json!({})).await;
    let names: Vec<&str> = mine["settings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["awsvpcTrunking", "containerInsights"]);
    let alices = ecs_ok(
        api,
        "ListAccountSettings",
        json!({"principalArn": alice, "name": "containerInsights", "effectiveSettings": true}),
    )
    .await;
    assert_eq!(alices["settings"][0]["value"], "enhanced");
    let bob = ecs_ok(
        api,
        "ListAccountSettings",
        json!({"principalArn": "arn:aws:iam::000000000000:role/bob",
               "effectiveSettings": true, "name": "containerInsights", "value": "enabled"}),
    )
    .await;
    assert_eq!(
        bob["settings"][0]["principalArn"], root,
        "bob inherits the default"
    );
    let paged = ecs_ok(
        api,
        "ListAccountSettings",
        json!({"effectiveSettings": true, "value": "enabled", "name": "awsvpcTrunking", "maxResults": 1}),
    )
    .await;
    assert_eq!(paged["settings"][0]["value"], "enabled");

    // Deleting alice's own makes the default hers again.
    let deleted = ecs_ok(
        api,
        "DeleteAccountSetting",
        json!({"name": "containerInsights", "principalArn": alice}),
    )
    .await;
    assert_eq!(deleted["setting"]["value"], "enhanced");
    let alices = ecs_ok(
        api,
        "ListAccountSettings",
        json!({"principalArn": alice, "name": "containerInsights", "effectiveSettings": true}),
    )
    .await;
    assert_eq!(alices["settings"][0]["value"], "enabled");
    // The settings survive a restart.
    server.shutdown().await.unwrap();
    let server = start(dir.path()).await;
    let api = server.api_addr;
    let mine = ecs_ok(
        api,
        "ListAccountSettings",
        json!({"name": "awsvpcTrunking"}),
    )
    .await;
    assert_eq!(mine["settings"][0]["value"], "enabled");

    for (op, body) in [
        (
            "PutAccountSetting",
            json!({"name": "dualStackIPv6", "value": "enabled"}),
        ),
        (
            "PutAccountSetting",
            json!({"name": "containerInsights", "value": "on"}),
        ),
        (
            "PutAccountSetting",
            json!({"name": "guardDutyActivate", "value": "on"}),
        ),
        (
            "PutAccountSetting",
            json!({"name": "fargateTaskRetirementWaitPeriod", "value": "7", "principalArn": alice}),
        ),
        (
            "PutAccountSetting",
            json!({"name": "awsvpcTrunking", "value": "enabled",
                   "principalArn": "arn:aws:iam::111111111111:root"}),
        ),
        (
            "PutAccountSettingDefault",
            json!({"name": "tagResourceAuthorization", "value": "enabled"}),
        ),
        ("DeleteAccountSetting", json!({"name": "nope"})),
        ("ListAccountSettings", json!({"value": "enabled"})),
        ("ListAccountSettings", json!({"maxResults": 11})),
        ("ListAccountSettings", json!({"principalArn": "alice"})),
    ] {
        let (status, err) = ecs(api, op, body.clone()).await;
        assert_eq!(
            (status, code(&err)),
            (400, "InvalidParameterException"),
            "{op} {body}: {err}"
        );
    }
    let (status, err) = ecs(api, "PutAccountSetting", json!({"name": "awsvpcTrunking"})).await;
    assert_eq!((status, code(&err)), (400, "SerializationException"));
    server.shutdown().await.unwrap();
}
