//! The ECS JSON API without agents.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn task_definitions_register_describe_list_deregister() {
    let dir = TempDir::new("taskdefs");
    let server = start(dir.path()).await;
    let api = server.api_addr;

    let ready: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("ready.json")).unwrap())
            .unwrap();
    assert_eq!(ready["api"], api.to_string());
    assert_eq!(ready["grpc"], server.grpc_addr.to_string());

    let mut def = sample_task_definition("web");
    def["cpu"] = json!("0.5 vCPU");
    def["tags"] = json!([{"key": "team", "value": "a"}]);
    let r1 = ecs_ok(api, "RegisterTaskDefinition", def.clone()).await;
    let td = &r1["taskDefinition"];
    assert_eq!(
        td["taskDefinitionArn"],
        "arn:aws:ecs:us-east-1:000000000000:task-definition/web:1"
    );
    assert_eq!(td["revision"], 1);
    assert_eq!(td["status"], "ACTIVE");
    assert_eq!(td["networkMode"], "bridge");
    assert_eq!(td["compatibilities"], json!(["EC2"]));
    assert_eq!(
        td["containerDefinitions"][0]["portMappings"],
        json!([{"containerPort": 80}])
    );
    assert!(td["registeredAt"].is_number());
    assert!(td.get("tags").is_none());
    assert_eq!(r1["tags"], json!([{"key": "team", "value": "a"}]));
    let r2 = ecs_ok(api, "RegisterTaskDefinition", def).await;
    assert_eq!(r2["taskDefinition"]["revision"], 2);

    let latest = ecs_ok(
        api,
        "DescribeTaskDefinition",
        json!({"taskDefinition": "web"}),
    )
    .await;
    assert_eq!(latest["taskDefinition"]["revision"], 2);
    let by_rev = ecs_ok(
        api,
        "DescribeTaskDefinition",
        json!({"taskDefinition": "web:1"}),
    )
    .await;
    assert_eq!(by_rev["taskDefinition"]["cpu"], "0.5 vCPU");
    let by_arn = ecs_ok(
        api,
        "DescribeTaskDefinition",
        json!({"taskDefinition": "arn:aws:ecs:us-east-1:000000000000:task-definition/web:1"}),
    )
    .await;
    assert_eq!(by_arn["taskDefinition"]["revision"], 1);

    let (status, missing) = ecs(
        api,
        "DescribeTaskDefinition",
        json!({"taskDefinition": "nope"}),
    )
    .await;
    assert_eq!(
        (status, missing["__type"].as_str()),
        (400, Some("ClientException"))
    );

    let dereg = ecs_ok(
        api,
        "DeregisterTaskDefinition",
        json!({"taskDefinition": "web:2"}),
    )
    .await;
    assert_eq!(dereg["taskDefinition"]["status"], "INACTIVE");
    let latest = ecs_ok(
        api,
        "DescribeTaskDefinition",
        json!({"taskDefinition": "web"}),
    )
    .await;
    assert_eq!(
        latest["taskDefinition"]["revision"], 1,
        "latest ACTIVE revision"
    );

    let list = ecs_ok(api, "ListTaskDefinitions", json!({})).await;
    assert_eq!(
        list["taskDefinitionArns"],
        json!(["arn:aws:ecs:us-east-1:000000000000:task-definition/web:1"])
    );
    let inactive = ecs_ok(api, "ListTaskDefinitions", json!({"status": "INACTIVE"})).await;
    assert_eq!(inactive["taskDefinitionArns"].as_array().unwrap().len(), 1);
    ecs_ok(
        api,
        "RegisterTaskDefinition",
        sample_task_definition("worker"),
    )
    .await;
    // familyPrefix names a whole family, as ECS's ListTaskDefinitions takes it.
    let family = ecs_ok(
        api,
        "ListTaskDefinitions",
        json!({"familyPrefix": "worker", "sort": "DESC"}),
    )
    .await;
    assert_eq!(family["taskDefinitionArns"].as_array().unwrap().len(), 1);
    let partial = ecs_ok(api, "ListTaskDefinitions", json!({"familyPrefix": "wor"})).await;
    assert_eq!(partial["taskDefinitionArns"], json!([]));

    let (status, run) = ecs(api, "RunTask", json!({"taskDefinition": "web:2"})).await;
    assert_eq!(
        (status, run["__type"].as_str()),
        (400, Some("ClientException")),
        "{run}"
    );

    server.shutdown().await.unwrap();
}

/// Breaks a valid definition in one way.
type Mutation = Box<dyn Fn(&mut serde_json::Value)>;

#[tokio::test]
async fn malformed_task_definitions_are_refused_with_the_field_named() {
    let dir = TempDir::new("malformed");
    let server = start(dir.path()).await;
    let api = server.api_addr;
    let base = sample_task_definition("bad");

    let cases: Vec<(&str, Mutation, &str, &str)> = vec![
        (
            "no family",
            Box::new(|d| {
                d.as_object_mut().unwrap().remove("family");
            }),
            "ClientException",
            "family: required",
        ),
        (
            "bad family",
            Box::new(|d| d["family"] = json!("a b")),
            "InvalidParameterException",
            "family:",
        ),
        (
            "no containers",
            Box::new(|d| d["containerDefinitions"] = json!([])),
            "ClientException",
            "containerDefinitions:",
        ),
        (
            "no image",
            Box::new(|d| {
                d["containerDefinitions"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("image");
            }),
            "ClientException",
            "containerDefinitions[0].image: required",
        ),
        (
            "duplicate name",
            Box::new(|d| {
                let c = d["containerDefinitions"][0].clone();
                d["containerDefinitions"].as_array_mut().unwrap().push(c);
            }),
            "ClientException",
            "containerDefinitions[1].name: duplicate container name \"app\"",
        ),
        (
            "negative memory",
            Box::new(|d| d["containerDefinitions"][0]["memory"] = json!(-1)),
            "InvalidParameterException",
            "containerDefinitions[0].memory:",
        ),
        (
            "no essential",
            Box::new(|d| d["containerDefinitions"][0]["essential"] = json!(false)),
            "ClientException",
            "no essential container",
        ),
        (
            "no memory",
            Box::new(|d| {
                d["containerDefinitions"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("memory");
            }),
            "ClientException",
            "containerDefinitions[0].memory:",
        ),
        (
            "reservation above memory",
            Box::new(|d| d["containerDefinitions"][0]["memoryReservation"] = json!(512)),
            "InvalidParameterException",
            "containerDefinitions[0].memoryReservation:",
        ),
        (
            "network mode",
            Box::new(|d| d["networkMode"] = json!("overlay")),
            "InvalidParameterException",
            "networkMode:",
        ),
        (
            "stop timeout",
            Box::new(|d| d["containerDefinitions"][0]["stopTimeout"] = json!(500)),
            "InvalidParameterException",
            "containerDefinitions[0].stopTimeout:",
        ),
        (
            "task memory units",
            Box::new(|d| d["memory"] = json!("3 bananas")),
            "InvalidParameterException",
            "memory:",
        ),
    ];
    for (what, mutate, code, text) in cases {
        let mut def = base.clone();
        mutate(&mut def);
        let (status, body) = ecs(api, "RegisterTaskDefinition", def).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(body["__type"], code, "{what}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains(text),
            "{what}: {body}"
        );
    }

    let list = ecs_ok(api, "ListTaskDefinitions", json!({})).await;
    assert_eq!(
        list["taskDefinitionArns"],
        json!([]),
        "nothing was registered"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_requests_are_400s() {
    let dir = TempDir::new("badreq");
    let server = start(dir.path()).await;
    let api = server.api_addr;
    let client = reqwest::Client::new();

    let resp = client
        .post(format!("http://{api}/"))
        .header(
            "X-Amz-Target",
            "AmazonEC2ContainerServiceV20141113.ListClusters",
        )
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["__type"], "SerializationException");

    // An operation ECS has and Berth refuses says why; one ECS does not have is unknown.
    let (status, body) = ecs(api, "CreateCapacityProvider", json!({})).await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("UnsupportedFeatureException"))
    );
    let (status, body) = ecs(api, "CreateWidget", json!({})).await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("UnknownOperationException"))
    );
    // CreateService exists (issue #17): without serviceName the request does not decode.
    let (status, body) = ecs(api, "CreateService", json!({})).await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("SerializationException"))
    );

    let (status, body) = ecs(api, "DescribeTasks", json!({"tasks": "not-a-list"})).await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("SerializationException"))
    );

    let (status, body) = ecs(api, "ListTasks", json!({"cluster": "ghost"})).await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("ClusterNotFoundException"))
    );

    // Every answer is in ECS's error shape: an unknown path, a wrong method, a body over the
    // limit, a content type that is not JSON.
    let target = (
        "X-Amz-Target",
        "AmazonEC2ContainerServiceV20141113.ListClusters",
    );
    for (resp, status) in [
        (
            client
                .get(format!("http://{api}/nowhere"))
                .send()
                .await
                .unwrap(),
            404,
        ),
        (
            client.get(format!("http://{api}/")).send().await.unwrap(),
            405,
        ),
        (
            client
                .post(format!("http://{api}/"))
                .header(target.0, target.1)
                .body(vec![b' '; 3 << 20])
                .send()
                .await
                .unwrap(),
            413,
        ),
        (
            client
                .post(format!("http://{api}/"))
                .header(target.0, target.1)
                .header("Content-Type", "text/plain")
                .body("{}")
                .send()
                .await
                .unwrap(),
            415,
        ),
    ] {
        assert_eq!(resp.status(), status);
        assert_eq!(resp.headers()["content-type"], "application/x-amz-json-1.1");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert!(
            body["__type"].is_string() && body["message"].is_string(),
            "{body}"
        );
    }
    // A message quoting a huge input is capped.
    let op = "Unknown".repeat(1000);
    let (status, body) = ecs(api, &op, json!({})).await;
    assert_eq!(status, 400);
    let message = body["message"].as_str().unwrap();
    assert!(
        message.len() < 1200 && message.ends_with("more characters)"),
        "{body}"
    );

    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn clusters_and_run_task_without_instances() {
    let dir = TempDir::new("clusters");
    let server = start(dir.path()).await;
    let api = server.api_addr;

    let created = ecs_ok(api, "CreateCluster", json!({"clusterName": "prod"})).await;
    assert_eq!(
        created["cluster"]["clusterArn"],
        "arn:aws:ecs:us-east-1:000000000000:cluster/prod"
    );
    let list = ecs_ok(api, "ListClusters", json!({})).await;
    assert_eq!(
        list["clusterArns"].as_array().unwrap().len(),
        2,
        "default and prod: {list}"
    );
    let described = ecs_ok(
        api,
        "DescribeClusters",
        json!({"clusters": ["prod", "ghost"]}),
    )
    .await;
    assert_eq!(described["clusters"][0]["status"], "ACTIVE");
    assert_eq!(
        described["clusters"][0]["registeredContainerInstancesCount"],
        0
    );
    assert_eq!(described["failures"][0]["reason"], "MISSING");

    ecs_ok(api, "RegisterTaskDefinition", sample_task_definition("web")).await;
    let run = ecs_ok(
        api,
        "RunTask",
        json!({"cluster": "prod", "taskDefinition": "web", "count": 2}),
    )
    .await;
    assert_eq!(run["tasks"], json!([]));
    let failures = run["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 2);
    assert_eq!(failures[0]["reason"], "AGENT");
    assert_eq!(
        failures[0]["arn"],
        "arn:aws:ecs:us-east-1:000000000000:task-definition/web:1"
    );

    let (status, body) = ecs(
        api,
        "RunTask",
        json!({"taskDefinition": "web", "count": 11}),
    )
    .await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("InvalidParameterException"))
    );
    let (status, body) = ecs(
        api,
        "RunTask",
        json!({"cluster": "ghost", "taskDefinition": "web"}),
    )
    .await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("ClusterNotFoundException"))
    );

    let described = ecs_ok(
        api,
        "DescribeTasks",
        json!({"tasks": ["0123456789abcdef0123456789abcdef"]}),
    )
    .await;
    assert_eq!(described["failures"][0]["reason"], "MISSING");
    server.shutdown().await.unwrap();
}

/// What ECS always shows of a task: its attributes, zone, launch type, execute-command flag,
/// cpu and memory (the containers' sum without task-level values); and ListTasks' filters.
#[tokio::test]
async fn tasks_show_ecs_members_and_list_by_launch_type_and_service() {
    let dir = TempDir::new("ecs-task-members");
    let server = start(dir.path()).await;
    let api = server.api_addr;
    let mut agent = ReportingAgent::register(dir.path(), server.grpc_addr).await;
    let mut def = sample_task_definition("sum");
    def["containerDefinitions"][0]["cpu"] = json!(100);
    def["containerDefinitions"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "side", "image": "busybox", "cpu": 28, "memoryReservation": 64}));
    ecs_ok(api, "RegisterTaskDefinition", def).await;
    let run = ecs_ok(
        api,
        "RunTask",
        json!({"taskDefinition": "sum", "launchType": "EXTERNAL"}),
    )
    .await;
    let t = &run["tasks"][0];
    assert_eq!(t["cpu"], "128", "{t}");
    assert_eq!(t["memory"], "192", "{t}");
    assert_eq!(t["launchType"], "EXTERNAL");
    assert_eq!(t["availabilityZone"], "lab-1a");
    assert_eq!(
        t["attributes"],
        json!([{"name": "ecs.cpu-architecture", "value": "x86_64"}])
    );
    assert_eq!(t["enableExecuteCommand"], false);
    assert!(t["containers"][0]["berth"]["restartCount"] == 0, "{t}");
    let external = t["taskArn"].as_str().unwrap().to_string();
    ecs_ok(api, "RunTask", json!({"taskDefinition": "sum"})).await;
    agent.payloads(2, 0).await;

    let list = |filter: serde_json::Value| async move {
        ecs_ok(api, "ListTasks", filter).await["taskArns"].clone()
    };
    assert_eq!(list(json!({})).await.as_array().unwrap().len(), 2);
    assert_eq!(
        list(json!({"launchType": "EXTERNAL"})).await,
        json!([external])
    );
    assert_eq!(
        list(json!({"launchType": "EC2"}))
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(list(json!({"serviceName": "nope"})).await, json!([]));
    let (status, body) = ecs(
        api,
        "RunTask",
        json!({"taskDefinition": "sum", "launchType": "FARGATE"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("FARGATE"),
        "{body}"
    );
    server.shutdown().await.unwrap();
}
