//! A cluster's settings, configuration and Service Connect defaults (CreateCluster,
//! UpdateCluster, UpdateClusterSettings, DescribeClusters' include), its capacity providers
//! (none can exist), and DiscoverPollEndpoint: through the JSON API, then through boto3
//! (tests/boto3/cluster_config.py).

mod common;

use common::clients::*;
use common::*;
use serde_json::{json, Value};

fn code(body: &Value) -> &str {
    body["__type"].as_str().unwrap_or("")
}

#[tokio::test]
async fn cluster_settings_and_configuration_are_kept_changed_and_shown_when_asked() {
    let dir = TempDir::new("cluster-config");
    let server = start(dir.path()).await;
    let api = server.api_addr;

    // Without a setting of its own a cluster takes the account's containerInsights.
    let plain = ecs_ok(api, "CreateCluster", json!({"clusterName": "a"})).await;
    assert_eq!(
        plain["cluster"]["settings"],
        json!([{"name": "containerInsights", "value": "disabled"}])
    );
    ecs_ok(
        api,
        "PutAccountSettingDefault",
        json!({"name": "containerInsights", "value": "enabled"}),
    )
    .await;
    let created = ecs_ok(
        api,
        "CreateCluster",
        json!({
            "clusterName": "b",
            "tags": [{"key": "env", "value": "lab"}],
            "configuration": {"executeCommandConfiguration": {"logging": "NONE"}},
        }),
    )
    .await;
    let c = &created["cluster"];
    assert_eq!(
        c["settings"],
        json!([{"name": "containerInsights", "value": "enabled"}])
    );
    assert_eq!(
        c["configuration"],
        json!({"executeCommandConfiguration": {"logging": "NONE"}})
    );
    assert_eq!(c["tags"], json!([{"key": "env", "value": "lab"}]));
    // CreateCluster of an ACTIVE cluster answers it as it is.
    let again = ecs_ok(
        api,
        "CreateCluster",
        json!({"clusterName": "b", "settings": [{"name": "containerInsights", "value": "disabled"}]}),
    )
    .await;
    assert_eq!(again["cluster"]["settings"][0]["value"], "enabled");

    // UpdateClusterSettings replaces the named setting; UpdateCluster each member given.
    let updated = ecs_ok(
        api,
        "UpdateClusterSettings",
        json!({"cluster": "b", "settings": [{"name": "containerInsights", "value": "enhanced"}]}),
    )
    .await;
    assert_eq!(updated["cluster"]["settings"][0]["value"], "enhanced");
    let updated = ecs_ok(
        api,
        "UpdateCluster",
        json!({
            "cluster": "arn:aws:ecs:us-east-1:000000000000:cluster/b",
            "serviceConnectDefaults": {"namespace": "arn:aws:servicediscovery:us-east-1:000000000000:namespace/edge"},
        }),
    )
    .await;
    let c = &updated["cluster"];
    assert_eq!(c["settings"][0]["value"], "enhanced");
    assert_eq!(
        c["configuration"]["executeCommandConfiguration"]["logging"],
        "NONE"
    );
    assert_eq!(
        c["serviceConnectDefaults"]["namespace"],
        "arn:aws:servicediscovery:us-east-1:000000000000:namespace/edge"
    );

    // DescribeClusters: each optional member only when included.
    let d = ecs_ok(api, "DescribeClusters", json!({"clusters": ["b"]})).await;
    for member in ["settings", "configuration", "tags"] {
        assert!(d["clusters"][0].get(member).is_none(), "{member}: {d}");
    }
    let d = ecs_ok(
        api,
        "DescribeClusters",
        json!({"clusters": ["b"], "include": ["SETTINGS", "TAGS", "STATISTICS"]}),
    )
    .await;
    assert_eq!(d["clusters"][0]["settings"][0]["value"], "enhanced");
    assert_eq!(d["clusters"][0]["tags"][0]["key"], "env");
    assert!(d["clusters"][0].get("configuration").is_none());

    // Refusals change nothing.
    for (op, body, want) in [
        (
            "UpdateClusterSettings",
            json!({"cluster": "b", "settings": [{"name": "containerInsights", "value": "on"}]}),
            "InvalidParameterException",
        ),
        (
            "UpdateClusterSettings",
            json!({"cluster": "b", "settings": [{"name": "insights", "value": "enabled"}]}),
            "InvalidParameterException",
        ),
        (
            "UpdateClusterSettings",
            json!({"cluster": "b", "settings": []}),
            "InvalidParameterException",
        ),
        (
            "UpdateCluster",
            json!({"cluster": "b", "configuration": {"executeCommandConfiguration": {"logging": "OVERRIDE"}}}),
            "InvalidParameterException",
        ),
        (
            "UpdateCluster",
            json!({"cluster": "b", "configuration": {"executeCommandConfiguration": {"verbose": true}}}),
            "SerializationException",
        ),
        (
            "UpdateCluster",
            json!({"cluster": "ghost", "settings": []}),
            "ClusterNotFoundException",
        ),
        (
            "DescribeClusters",
            json!({"clusters": ["b"], "include": ["EVERYTHING"]}),
            "InvalidParameterException",
        ),
        (
            "CreateCluster",
            json!({"clusterName": "c", "capacityProviders": ["FARGATE"]}),
            "InvalidParameterException",
        ),
    ] {
        let (status, body) = ecs(api, op, body).await;
        assert_eq!((status, code(&body)), (400, want), "{op}: {body}");
    }
    let d = ecs_ok(
        api,
        "DescribeClusters",
        json!({"clusters": ["b", "c"], "include": ["SETTINGS", "CONFIGURATIONS"]}),
    )
    .await;
    assert_eq!(d["clusters"][0]["settings"][0]["value"], "enhanced");
    assert_eq!(
        d["clusters"][0]["configuration"]["executeCommandConfiguration"]["logging"],
        "NONE"
    );
    assert_eq!(d["failures"][0]["reason"], "MISSING", "c was never created");

    // Settings outlive a restart.
    server.shutdown().await.unwrap();
    let server = start(dir.path()).await;
    let d = ecs_ok(
        server.api_addr,
        "DescribeClusters",
        json!({"clusters": ["b"], "include": ["SETTINGS"]}),
    )
    .await;
    assert_eq!(d["clusters"][0]["settings"][0]["value"], "enhanced");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn no_capacity_provider_exists_and_poll_endpoint_is_the_agents_address() {
    let dir = TempDir::new("capacity");
    let server = start(dir.path()).await;
    let api = server.api_addr;

    let put = ecs_ok(
        api,
        "PutClusterCapacityProviders",
        json!({"cluster": "default", "capacityProviders": [], "defaultCapacityProviderStrategy": []}),
    )
    .await;
    assert_eq!(put["cluster"]["capacityProviders"], json!([]));
    let (status, body) = ecs(
        api,
        "PutClusterCapacityProviders",
        json!({"cluster": "default", "capacityProviders": ["mine"], "defaultCapacityProviderStrategy": []}),
    )
    .await;
    assert_eq!((status, code(&body)), (400, "InvalidParameterException"));
    assert!(body["message"].as_str().unwrap().contains("mine"), "{body}");
    let (status, body) = ecs(
        api,
        "PutClusterCapacityProviders",
        json!({"cluster": "ghost", "capacityProviders": [], "defaultCapacityProviderStrategy": []}),
    )
    .await;
    assert_eq!((status, code(&body)), (400, "ClusterNotFoundException"));

    let none = ecs_ok(api, "DescribeCapacityProviders", json!({})).await;
    assert_eq!(none, json!({"capacityProviders": [], "failures": []}));
    let named = ecs_ok(
        api,
        "DescribeCapacityProviders",
        json!({"capacityProviders": ["FARGATE", "arn:aws:ecs:us-east-1:000000000000:capacity-provider/mine"]}),
    )
    .await;
    assert_eq!(
        named["failures"],
        json!([
            {"arn": "arn:aws:ecs:us-east-1:000000000000:capacity-provider/FARGATE", "reason": "MISSING"},
            {"arn": "arn:aws:ecs:us-east-1:000000000000:capacity-provider/mine", "reason": "MISSING"},
        ])
    );

    let polled = ecs_ok(api, "DiscoverPollEndpoint", json!({})).await;
    assert_eq!(
        polled,
        json!({"endpoint": format!("http://{}", server.grpc_addr)})
    );
    // An instance that registered is known; one that did not is refused.
    let _agent = ReportingAgent::register(dir.path(), server.grpc_addr).await;
    let listed = ecs_ok(api, "ListContainerInstances", json!({})).await;
    let polled = ecs_ok(
        api,
        "DiscoverPollEndpoint",
        json!({"cluster": "default", "containerInstance": listed["containerInstanceArns"][0]}),
    )
    .await;
    assert_eq!(polled["endpoint"], format!("http://{}", server.grpc_addr));
    let (status, body) = ecs(
        api,
        "DiscoverPollEndpoint",
        json!({"containerInstance": "0123"}),
    )
    .await;
    assert_eq!((status, code(&body)), (400, "InvalidParameterException"));
    let (status, body) = ecs(api, "DiscoverPollEndpoint", json!({"cluster": "ghost"})).await;
    assert_eq!((status, code(&body)), (400, "ClusterNotFoundException"));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn boto3_keeps_cluster_settings_and_configuration() {
    let dir = TempDir::new("boto3-cluster-config");
    let server = start(dir.path()).await;
    let summary = boto3_summary(dir.path(), server.api_addr, "cluster_config.py").await;
    assert_eq!(
        summary,
        json!({
            "insights_after_update": "enhanced",
            "logging": "OVERRIDE",
            "described": ["configuration", "settings", "tags"],
            "provider_failure": "MISSING",
            "poll_endpoint_scheme": "http",
            "tags_after_recreate": [],
            "in_namespace": ["joined"],
            "errors": {
                "unknown_namespace": "NamespaceNotFoundException",
                "bad_setting": "InvalidParameterException",
                "override_without_log_configuration": "InvalidParameterException",
                "a_capacity_provider": "InvalidParameterException",
                "update_missing_cluster": "ClusterNotFoundException",
                "poll_unknown_instance": "InvalidParameterException",
            }
        })
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn services_are_listed_by_the_service_connect_namespace_they_join() {
    let dir = TempDir::new("namespace");
    let server = start(dir.path()).await;
    let api = server.api_addr;
    ecs_ok(api, "RegisterTaskDefinition", sample_task_definition("web")).await;
    ecs_ok(
        api,
        "CreateCluster",
        json!({"clusterName": "lab", "serviceConnectDefaults": {"namespace": "lab-ns"}}),
    )
    .await;
    // The cluster's default makes the namespace known before any service joins it.
    let empty = ecs_ok(
        api,
        "ListServicesByNamespace",
        json!({"namespace": "lab-ns"}),
    )
    .await;
    assert_eq!(empty, json!({"serviceArns": []}));

    let create = |cluster: &str, name: &str, sc: Value| {
        json!({"cluster": cluster, "serviceName": name, "taskDefinition": "web",
               "desiredCount": 0, "serviceConnectConfiguration": sc})
    };
    ecs_ok(
        api,
        "CreateService",
        create("lab", "a", json!({"enabled": true})),
    )
    .await;
    ecs_ok(
        api,
        "CreateService",
        create("lab", "off", json!({"enabled": false})),
    )
    .await;
    let other_arn = "arn:aws:servicediscovery:us-east-1:000000000000:namespace/shared";
    ecs_ok(
        api,
        "CreateService",
        create(
            "default",
            "b",
            json!({"enabled": true, "namespace": other_arn}),
        ),
    )
    .await;
    ecs_ok(
        api,
        "CreateService",
        create("lab", "c", json!({"enabled": true, "namespace": "shared"})),
    )
    .await;

    let lab = ecs_ok(
        api,
        "ListServicesByNamespace",
        json!({"namespace": "lab-ns"}),
    )
    .await;
    assert_eq!(
        lab["serviceArns"],
        json!(["arn:aws:ecs:us-east-1:000000000000:service/lab/a"])
    );
    let shared = ecs_ok(
        api,
        "ListServicesByNamespace",
        json!({"namespace": other_arn}),
    )
    .await;
    let mut arns: Vec<&str> = shared["serviceArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    arns.sort();
    assert_eq!(
        arns,
        vec![
            "arn:aws:ecs:us-east-1:000000000000:service/default/b",
            "arn:aws:ecs:us-east-1:000000000000:service/lab/c",
        ]
    );
    let paged = ecs_ok(
        api,
        "ListServicesByNamespace",
        json!({"namespace": "shared", "maxResults": 1}),
    )
    .await;
    assert_eq!(paged["serviceArns"].as_array().unwrap().len(), 1);
    assert!(paged["nextToken"].is_string(), "{paged}");

    let described = ecs_ok(
        api,
        "DescribeServices",
        json!({"cluster": "lab", "services": ["a"]}),
    )
    .await;
    assert_eq!(
        described["services"][0]["deployments"][0]["serviceConnectConfiguration"],
        json!({"enabled": true, "namespace": "arn:aws:servicediscovery:us-east-1:000000000000:namespace/lab-ns"})
    );

    // UpdateService moves a service to another namespace.
    ecs_ok(
        api,
        "UpdateService",
        json!({"cluster": "lab", "service": "a", "serviceConnectConfiguration": {"enabled": true, "namespace": "shared"}}),
    )
    .await;
    let lab = ecs_ok(
        api,
        "ListServicesByNamespace",
        json!({"namespace": "lab-ns"}),
    )
    .await;
    assert_eq!(lab["serviceArns"], json!([]));

    for (op, body, want) in [
        (
            "ListServicesByNamespace",
            json!({"namespace": "nowhere"}),
            "NamespaceNotFoundException",
        ),
        (
            "ListServicesByNamespace",
            json!({}),
            "SerializationException",
        ),
        (
            "CreateService",
            create("default", "d", json!({"enabled": true})),
            "InvalidParameterException",
        ),
        (
            "CreateService",
            create("default", "e", json!({"namespace": "shared"})),
            "InvalidParameterException",
        ),
    ] {
        let (status, body) = ecs(api, op, body).await;
        assert_eq!((status, code(&body)), (400, want), "{op}: {body}");
    }
    server.shutdown().await.unwrap();
}
