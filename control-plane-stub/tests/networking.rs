//! Networking through the control plane: host ports as a placement resource, security groups
//! and their endpoints, RunTask's networkConfiguration, and the agent's reported network in
//! DescribeTasks.

mod common;

use std::net::SocketAddr;

use berth_cp::admin;
use berth_proto::v1 as pb;
use common::*;
use pb::control_message::Msg;
use serde_json::{json, Value};

/// Registers and connects an agent that runs every network mode and reserves tcp/22.
async fn agent(dir: &std::path::Path, g: SocketAddr) -> (String, FakeAgent) {
    let code = admin::create_activation(&data_dir(dir), "default", 1, 3600).unwrap();
    let mut req = register_request("default", code_auth(&code));
    req.attributes[0].value = "bridge,host,none,awsvpc".into();
    req.attributes.push(pb::Attribute {
        name: "ecs.capability.task-eni".into(),
        value: String::new(),
    });
    req.resources.push(pb::Resource {
        name: "PORTS".into(),
        r#type: "STRINGSET".into(),
        integer_value: 0,
        string_set_value: vec!["22".into()],
    });
    let reg = grpc(g).await.register(req).await.unwrap().into_inner();
    let mut agent = FakeAgent::connect(g, &reg.instance_id, &reg.secret, 0)
        .await
        .unwrap();
    assert!(matches!(agent.expect().await, Msg::Welcome(_)));
    assert!(matches!(agent.expect().await, Msg::Manifest(_)));
    (reg.instance_id, agent)
}

fn definition(family: &str, mode: &str, port_mappings: Value) -> Value {
    json!({
        "family": family,
        "networkMode": mode,
        "containerDefinitions": [{
            "name": "app", "image": "busybox", "memory": 64,
            "portMappings": port_mappings
        }]
    })
}

async fn next_spec(agent: &mut FakeAgent) -> pb::TaskSpec {
    next_payload(agent)
        .await
        .tasks
        .into_iter()
        .next()
        .expect("a task in the payload")
}

#[tokio::test]
async fn host_ports_are_a_placement_resource() {
    let dir = TempDir::new("ports");
    let server = start(dir.path()).await;
    let (api, g) = (server.api_addr, server.grpc_addr);
    let (id, mut agent) = agent(dir.path(), g).await;
    let instance_arn =
        format!("arn:aws:ecs:us-east-1:000000000000:container-instance/default/{id}");

    // bridge with a fixed hostPort: one copy fits, the second fails as ECS says.
    ecs_ok(
        api,
        "RegisterTaskDefinition",
        definition(
            "fixed",
            "bridge",
            json!([{"containerPort": 80, "hostPort": 8080}]),
        ),
    )
    .await;
    let run = ecs_ok(
        api,
        "RunTask",
        json!({"taskDefinition": "fixed", "count": 2}),
    )
    .await;
    assert_eq!(run["tasks"].as_array().unwrap().len(), 1, "{run}");
    assert_eq!(run["failures"][0]["arn"], instance_arn.as_str());
    assert_eq!(run["failures"][0]["reason"], "RESOURCE:PORTS");
    let fixed = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    next_spec(&mut agent).await;
    // Still held on the next RunTask.
    let run = ecs_ok(api, "RunTask", json!({"taskDefinition": "fixed"})).await;
    assert_eq!(run["failures"][0]["reason"], "RESOURCE:PORTS", "{run}");

    // Dynamic host ports and awsvpc tasks need none.
    ecs_ok(
        api,
        "RegisterTaskDefinition",
        definition("dynamic", "bridge", json!([{"containerPort": 8080}])),
    )
    .await;
    let run = ecs_ok(
        api,
        "RunTask",
        json!({"taskDefinition": "dynamic", "count": 2}),
    )
    .await;
    assert_eq!(run["tasks"].as_array().unwrap().len(), 2, "{run}");
    next_spec(&mut agent).await;
    ecs_ok(
        api,
        "RegisterTaskDefinition",
        definition("vpc", "awsvpc", json!([{"containerPort": 8080}])),
    )
    .await;
    let run = ecs_ok(api, "RunTask", json!({"taskDefinition": "vpc", "count": 2})).await;
    assert_eq!(run["tasks"].as_array().unwrap().len(), 2, "{run}");
    next_spec(&mut agent).await;

    // host mode: the container port is the host port, and the instance's reserved 22 counts.
    ecs_ok(
        api,
        "RegisterTaskDefinition",
        definition("ssh", "host", json!([{"containerPort": 22}])),
    )
    .await;
    let run = ecs_ok(api, "RunTask", json!({"taskDefinition": "ssh"})).await;
    assert_eq!(run["failures"][0]["reason"], "RESOURCE:PORTS", "{run}");
    assert!(
        run["failures"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("22/tcp"),
        "{run}"
    );
    ecs_ok(
        api,
        "RegisterTaskDefinition",
        definition(
            "h8080",
            "host",
            json!([{"containerPort": 8080, "protocol": "udp"}]),
        ),
    )
    .await;
    let run = ecs_ok(api, "RunTask", json!({"taskDefinition": "h8080"})).await;
    assert_eq!(
        run["tasks"].as_array().unwrap().len(),
        1,
        "udp/8080 is free: {run}"
    );
    next_spec(&mut agent).await;

    // remainingResources PORTS lists what is taken.
    let v = ecs_ok(
        api,
        "DescribeContainerInstances",
        json!({"containerInstances": [id.clone()]}),
    )
    .await;
    let ports = |list: &str, name: &str| -> Value {
        v["containerInstances"][0][list]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap()["stringSetValue"]
            .clone()
    };
    assert_eq!(ports("registeredResources", "PORTS"), json!(["22"]));
    assert_eq!(ports("remainingResources", "PORTS"), json!(["22", "8080"]));

    // Once the fixed task stops, its port is free again.
    agent
        .state_change(
            1,
            task_change(
                &fixed,
                pb::TaskStatus::Stopped,
                "EssentialContainerExited",
                1,
            ),
        )
        .await;
    let run = ecs_ok(api, "RunTask", json!({"taskDefinition": "fixed"})).await;
    assert_eq!(run["tasks"].as_array().unwrap().len(), 1, "{run}");

    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn security_groups_and_awsvpc_tasks() {
    let dir = TempDir::new("sg");
    let server = start(dir.path()).await;
    let (api, g) = (server.api_addr, server.grpc_addr);
    let (_, mut agent) = agent(dir.path(), g).await;
    use reqwest::Method;

    // Create, replace (same id), read, list.
    let (status, created) = berth(
        api,
        Method::PUT,
        "/berth/v1/security-groups/web",
        Some(json!({
            "description": "web servers",
            "ingress": [{"protocol": "tcp", "fromPort": 80, "toPort": 80, "cidr": "0.0.0.0/0"}]
        })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let sg = created["securityGroup"]["groupId"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(sg.starts_with("sg-"));
    let (status, replaced) = berth(
        api,
        Method::PUT,
        "/berth/v1/security-groups/web",
        Some(json!({
            "ingress": [
                {"protocol": "tcp", "fromPort": 80, "toPort": 80, "cidr": "0.0.0.0/0"},
                {"protocol": "tcp", "fromPort": 8000, "toPort": 8010, "cidr": "10.0.0.0/8"}
            ]
        })),
    )
    .await;
    assert_eq!((status, replaced["created"].clone()), (200, json!(false)));
    assert_eq!(replaced["securityGroup"]["groupId"], sg.as_str());
    assert_eq!(
        replaced["securityGroup"]["ingress"][1],
        json!({"protocol": "tcp", "fromPort": 8000, "toPort": 8010, "cidr": "10.0.0.0/8"})
    );
    let (status, _) = berth(
        api,
        Method::PUT,
        "/berth/v1/security-groups/dns",
        Some(json!({
            "ingress": [{"protocol": "udp", "fromPort": 53, "cidr": "10.0.0.0/8"}]
        })),
    )
    .await;
    assert_eq!(status, 201);
    let (status, got) = berth(
        api,
        Method::GET,
        &format!("/berth/v1/security-groups/{sg}"),
        None,
    )
    .await;
    assert_eq!(
        (status, got["securityGroup"]["groupName"].clone()),
        (200, json!("web"))
    );
    let (_, list) = berth(api, Method::GET, "/berth/v1/security-groups", None).await;
    let names: Vec<&str> = list["securityGroups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["groupName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dns", "web"]);

    // Refusals name the problem.
    let (status, bad) = berth(
        api,
        Method::PUT,
        "/berth/v1/security-groups/sg-x",
        Some(json!({
            "ingress": [{"protocol": "tcp", "fromPort": 80, "cidr": "10.0.0.1/8"}]
        })),
    )
    .await;
    assert_eq!(
        (status, bad["__type"].as_str()),
        (400, Some("InvalidParameterException"))
    );
    let message = bad["message"].as_str().unwrap();
    assert!(
        message.contains("cannot start with \"sg-\"")
            && message.contains("did you mean 10.0.0.0/8"),
        "{message}"
    );
    let (status, bad) = berth(
        api,
        Method::PUT,
        "/berth/v1/security-groups/x",
        Some(json!("nope")),
    )
    .await;
    assert_eq!(status, 400, "{bad}");
    let (status, missing) = berth(api, Method::GET, "/berth/v1/security-groups/ghost", None).await;
    assert_eq!(
        (status, missing["__type"].as_str()),
        (404, Some("ResourceNotFoundException"))
    );

    // RunTask: groups by name or id become the task's ingress rules (their union).
    ecs_ok(
        api,
        "RegisterTaskDefinition",
        definition(
            "vpc",
            "awsvpc",
            json!([{"containerPort": 80}, {"containerPortRange": "9000-9001", "protocol": "udp"}]),
        ),
    )
    .await;
    let run = ecs_ok(api, "RunTask", json!({
        "taskDefinition": "vpc",
        "networkConfiguration": {"awsvpcConfiguration": {
            "subnets": ["subnet-ignored"], "securityGroups": ["web", sg.clone(), "dns"], "assignPublicIp": "DISABLED"
        }}
    })).await;
    let task = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    let spec = next_spec(&mut agent).await;
    assert_eq!(spec.network_mode, "awsvpc");
    assert!(spec.ingress_restricted);
    let rules: Vec<(String, u32, u32, String)> = spec
        .ingress
        .iter()
        .map(|r| (r.protocol.clone(), r.from_port, r.to_port, r.cidr.clone()))
        .collect();
    assert_eq!(
        rules,
        [
            ("tcp".to_string(), 80, 80, "0.0.0.0/0".to_string()),
            ("tcp".to_string(), 8000, 8010, "10.0.0.0/8".to_string()),
            ("udp".to_string(), 53, 53, "10.0.0.0/8".to_string()),
        ]
    );
    // Before the agent reports the network: the attachment is PRECREATED.
    let d = ecs_ok(api, "DescribeTasks", json!({"tasks": [task.clone()]})).await;
    assert_eq!(
        d["tasks"][0]["attachments"][0]["status"], "PRECREATED",
        "{d}"
    );
    assert_eq!(d["tasks"][0]["containers"][0]["networkBindings"], json!([]));

    // The agent reports the network with RUNNING.
    agent
        .state_change(
            1,
            pb::state_change::Change::Task(pb::TaskStateChange {
                task_arn: task.clone(),
                status: pb::TaskStatus::Running as i32,
                at_ms: 1_700_000_000_000,
                network: Some(pb::TaskNetwork {
                    mode: "awsvpc".into(),
                    private_ipv4: "10.233.0.2".into(),
                    prefix_length: 32,
                    gateway_ipv4: "10.233.0.1".into(),
                    mac_address: "02:42:0a:e9:00:02".into(),
                    bindings: vec![],
                }),
                ..Default::default()
            }),
        )
        .await;
    let d = ecs_ok(api, "DescribeTasks", json!({"tasks": [task.clone()]})).await;
    let t = &d["tasks"][0];
    let attachment = &t["attachments"][0];
    assert_eq!(attachment["type"], "ElasticNetworkInterface");
    assert_eq!(attachment["status"], "ATTACHED");
    let detail = |name: &str| -> Value {
        attachment["details"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name)
            .map(|d| d["value"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(detail("subnetId"), "berth-task-subnet");
    assert!(detail("networkInterfaceId")
        .as_str()
        .unwrap()
        .starts_with("eni-"));
    assert_eq!(detail("macAddress"), "02:42:0a:e9:00:02");
    assert_eq!(detail("privateIPv4Address"), "10.233.0.2");
    let c = &t["containers"][0];
    assert_eq!(
        c["networkInterfaces"],
        json!([{"attachmentId": attachment["id"], "privateIpv4Address": "10.233.0.2"}])
    );
    assert_eq!(
        c["networkBindings"],
        json!([
            {"bindIP": "10.233.0.2", "containerPort": 80, "hostPort": 80, "protocol": "tcp"},
            {"bindIP": "10.233.0.2", "containerPortRange": "9000-9001", "hostPortRange": "9000-9001", "protocol": "udp"}
        ])
    );

    // A group in use cannot be deleted; once the task stopped it can.
    let (status, in_use) = berth(api, Method::DELETE, "/berth/v1/security-groups/web", None).await;
    assert_eq!(
        (status, in_use["__type"].as_str()),
        (409, Some("ResourceInUseException")),
        "{in_use}"
    );
    agent
        .state_change(
            2,
            task_change(
                &task,
                pb::TaskStatus::Stopped,
                "EssentialContainerExited",
                1_700_000_001_000,
            ),
        )
        .await;
    let d = ecs_ok(api, "DescribeTasks", json!({"tasks": [task.clone()]})).await;
    assert_eq!(d["tasks"][0]["attachments"][0]["status"], "DELETED");
    assert_eq!(
        d["tasks"][0]["containers"][0]["networkInterfaces"][0]["privateIpv4Address"], "10.233.0.2",
        "the network is kept after STOPPED without one"
    );
    let (status, deleted) = berth(
        api,
        Method::DELETE,
        &format!("/berth/v1/security-groups/{sg}"),
        None,
    )
    .await;
    assert_eq!(
        (status, deleted["securityGroup"]["groupName"].clone()),
        (200, json!("web"))
    );

    // Unknown groups, and networkConfiguration on a task that is not awsvpc, are refused.
    let (status, e) = ecs(api, "RunTask", json!({"taskDefinition": "vpc", "networkConfiguration": {"awsvpcConfiguration": {"securityGroups": ["web"]}}})).await;
    assert_eq!(
        (status, e["__type"].as_str()),
        (400, Some("InvalidParameterException"))
    );
    assert!(e["message"].as_str().unwrap().contains("\"web\""), "{e}");
    ecs_ok(
        api,
        "RegisterTaskDefinition",
        sample_task_definition("plain"),
    )
    .await;
    let (status, e) = ecs(api, "RunTask", json!({"taskDefinition": "plain", "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["s"]}}})).await;
    assert_eq!(
        (status, e["__type"].as_str()),
        (400, Some("InvalidParameterException"))
    );
    assert_eq!(
        e["message"],
        "Network Configuration is not valid for the given networkMode of this task definition."
    );

    // awsvpc without networkConfiguration: all ingress allowed.
    ecs_ok(api, "RunTask", json!({"taskDefinition": "vpc"})).await;
    let spec = next_spec(&mut agent).await;
    assert!(!spec.ingress_restricted && spec.ingress.is_empty());

    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn bridge_bindings_are_shown_per_container() {
    let dir = TempDir::new("bindings");
    let server = start(dir.path()).await;
    let (api, g) = (server.api_addr, server.grpc_addr);
    let (_, mut agent) = agent(dir.path(), g).await;

    ecs_ok(api, "RegisterTaskDefinition", json!({
        "family": "two",
        "containerDefinitions": [
            {"name": "web", "image": "busybox", "memory": 64, "portMappings": [{"containerPort": 80}]},
            {"name": "dns", "image": "busybox", "memory": 64, "portMappings": [{"containerPort": 53, "hostPort": 5353, "protocol": "udp"}]}
        ]
    })).await;
    let run = ecs_ok(api, "RunTask", json!({"taskDefinition": "two"})).await;
    let task = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    assert_eq!(next_spec(&mut agent).await.network_mode, "bridge");
    let binding = |c: &str, proto: &str, cp: u32, hp: u32| pb::NetworkBinding {
        container_name: c.into(),
        protocol: proto.into(),
        container_port: cp,
        host_port: hp,
        bind_ip: "0.0.0.0".into(),
    };
    agent
        .state_change(
            1,
            pb::state_change::Change::Task(pb::TaskStateChange {
                task_arn: task.clone(),
                status: pb::TaskStatus::Running as i32,
                at_ms: 1,
                network: Some(pb::TaskNetwork {
                    mode: "bridge".into(),
                    private_ipv4: "10.232.0.5".into(),
                    prefix_length: 24,
                    gateway_ipv4: "10.232.0.1".into(),
                    mac_address: "02:42:0a:e8:00:05".into(),
                    bindings: vec![
                        binding("web", "tcp", 80, 49153),
                        binding("dns", "udp", 53, 5353),
                    ],
                }),
                ..Default::default()
            }),
        )
        .await;
    let d = ecs_ok(api, "DescribeTasks", json!({"tasks": [task]})).await;
    let t = &d["tasks"][0];
    assert_eq!(
        t["attachments"],
        json!([]),
        "bridge tasks have no ENI attachment"
    );
    assert_eq!(
        t["containers"][0]["networkBindings"],
        json!([{"bindIP": "0.0.0.0", "containerPort": 80, "hostPort": 49153, "protocol": "tcp"}])
    );
    assert_eq!(
        t["containers"][1]["networkBindings"],
        json!([{"bindIP": "0.0.0.0", "containerPort": 53, "hostPort": 5353, "protocol": "udp"}])
    );
    // ECS shows no interface for a bridge task; Berth's extension has its bridge address.
    assert_eq!(t["containers"][1]["networkInterfaces"], json!([]));
    assert_eq!(
        t["containers"][1]["berth"]["privateIpv4Address"],
        "10.232.0.5"
    );

    // The dynamic port the agent bound is taken: a fixed hostPort 49153 cannot go there.
    ecs_ok(
        api,
        "RegisterTaskDefinition",
        definition(
            "fixed",
            "bridge",
            json!([{"containerPort": 80, "hostPort": 49153}]),
        ),
    )
    .await;
    let run = ecs_ok(api, "RunTask", json!({"taskDefinition": "fixed"})).await;
    assert_eq!(run["failures"][0]["reason"], "RESOURCE:PORTS", "{run}");

    server.shutdown().await.unwrap();
}
