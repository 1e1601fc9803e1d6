//! Secrets held by berth-cp for repositoryCredentials: the endpoints, berthctl, RunTask's check,
//! and the login in the payload the agent receives (also when resent), never anywhere else.

mod common;

use std::net::SocketAddr;

use berth_cp::admin;
use berth_proto::v1 as pb;
use common::*;
use pb::control_message::Msg;
use reqwest::Method;
use serde_json::{json, Value};

const PASSWORD: &str = "hunter2-very-secret";

/// Calls the Berth-specific JSON API; returns the status and the raw body.
async fn berth(api: SocketAddr, method: Method, path: &str, body: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().request(method, format!("http://{api}{path}"));
    if let Some(b) = body {
        req = req.body(b.to_string());
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    assert_eq!(resp.headers()["content-type"], "application/json", "{path}");
    (status, resp.text().await.unwrap())
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

fn definition(family: &str, credentials: Value) -> Value {
    json!({
        "family": family,
        "containerDefinitions": [
            {"name": "app", "image": "registry.example.com/team/app:1", "memory": 64,
             "repositoryCredentials": credentials},
            {"name": "side", "image": "busybox", "memory": 64, "essential": false}
        ]
    })
}

/// The next payload's first task, not acknowledged.
async fn next_spec(agent: &mut FakeAgent) -> (u64, pb::TaskSpec) {
    match agent.expect().await {
        Msg::Payload(p) => (p.seq, p.tasks.into_iter().next().expect("a task")),
        _ => panic!("expected a payload"),
    }
}

fn login_of(spec: &pb::TaskSpec, container: &str) -> Option<(String, String)> {
    let c = spec.containers.iter().find(|c| c.name == container)?;
    c.registry_credentials
        .as_ref()
        .map(|l| (l.username.clone(), l.password.clone()))
}

#[tokio::test]
async fn secrets_endpoints_and_berthctl() {
    let dir = TempDir::new("secrets-api");
    let server = start(dir.path()).await;
    let api = server.api_addr;

    let body = json!({"username": "robot", "password": PASSWORD}).to_string();
    let (status, text) = berth(api, Method::PUT, "/berth/v1/secrets/reg", Some(&body)).await;
    assert_eq!(status, 201, "{text}");
    let created = parse(&text);
    assert_eq!(created["name"], "reg");
    assert_eq!(
        created["arn"],
        "arn:aws:secretsmanager:us-east-1:000000000000:secret:reg"
    );
    assert!(created["createdAt"].as_f64().unwrap() > 1.6e9);
    assert_eq!(created.as_object().unwrap().len(), 3, "{created}");
    // Replacing the login: 200, same secret.
    let body2 = json!({"username": "robot", "password": "rotated"}).to_string();
    let (status, text) = berth(api, Method::PUT, "/berth/v1/secrets/reg", Some(&body2)).await;
    assert_eq!((status, parse(&text)), (200, created.clone()));
    // A name with '/' travels percent-encoded.
    let (status, text) = berth(api, Method::PUT, "/berth/v1/secrets/team%2Fci", Some(&body)).await;
    assert_eq!(status, 201, "{text}");
    assert_eq!(parse(&text)["name"], "team/ci");

    let (status, text) = berth(api, Method::GET, "/berth/v1/secrets", None).await;
    assert_eq!(status, 200);
    assert!(
        !text.contains(PASSWORD) && !text.contains("robot"),
        "{text}"
    );
    let names: Vec<String> = parse(&text)["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["reg", "team/ci"]);

    // Refusals: ECS-style bodies that name the problem and never echo the password.
    for (path, body, code, needle) in [
        (
            "/berth/v1/secrets/bad%20name",
            body.as_str(),
            "InvalidParameterException",
            "must be 1-128 letters",
        ),
        (
            "/berth/v1/secrets/x",
            r#"{"username": "u"}"#,
            "InvalidParameterException",
            "password: required",
        ),
        (
            "/berth/v1/secrets/x",
            r#"{"username": "u", "password": ""}"#,
            "InvalidParameterException",
            "password: must not be empty",
        ),
        (
            "/berth/v1/secrets/x",
            "{\"password\": \"hunter2-very-secret",
            "SerializationException",
            "not valid JSON",
        ),
    ] {
        let (status, text) = berth(api, Method::PUT, path, Some(body)).await;
        let v = parse(&text);
        assert_eq!((status, v["__type"].as_str()), (400, Some(code)), "{text}");
        assert!(v["message"].as_str().unwrap().contains(needle), "{text}");
        assert!(!text.contains(PASSWORD), "{text}");
    }
    let (status, text) = berth(api, Method::DELETE, "/berth/v1/secrets/ghost", None).await;
    assert_eq!(
        (status, parse(&text)["__type"].as_str()),
        (404, Some("ResourceNotFoundException"))
    );

    // berthctl: list and delete (create reads stdin; its reading is unit-tested).
    let out = berthctl(api, &["list-secrets"]).await.unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("ARN") && lines[0].ends_with("CREATED")
    );
    assert!(
        lines[1].starts_with("reg ") && lines[1].contains(":secret:reg"),
        "{out}"
    );
    assert!(lines[2].starts_with("team/ci "), "{out}");
    let out = berthctl(api, &["delete-secret", "--name", "team/ci"])
        .await
        .unwrap();
    assert!(out.lines().nth(1).unwrap().starts_with("team/ci "), "{out}");
    let err = berthctl(api, &["delete-secret", "--name", "team/ci"])
        .await
        .unwrap_err();
    assert!(
        err.to_string().starts_with("ResourceNotFoundException"),
        "{err}"
    );
    let out = berthctl(api, &["--output", "json", "list-secrets"])
        .await
        .unwrap();
    assert_eq!(parse(&out)["secrets"].as_array().unwrap().len(), 1);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn run_task_resolves_repository_credentials_for_the_agent() {
    let dir = TempDir::new("secrets-run");
    let server = start(dir.path()).await;
    let (api, g) = (server.api_addr, server.grpc_addr);
    let code = admin::create_activation(&data_dir(dir.path()), "default", 1, 3600).unwrap();
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

    // Registration checks the shape, not that the secret exists (as ECS).
    let (status, bad) = ecs(
        api,
        "RegisterTaskDefinition",
        definition("bad", json!({"credentialsParameter": ""})),
    )
    .await;
    assert_eq!(
        (status, bad["__type"].as_str()),
        (400, Some("ClientException")),
        "{bad}"
    );
    assert!(bad["message"]
        .as_str()
        .unwrap()
        .contains("containerDefinitions[0].repositoryCredentials.credentialsParameter"));
    let (status, bad) = ecs(
        api,
        "RegisterTaskDefinition",
        definition("bad", json!("reg")),
    )
    .await;
    assert_eq!(
        (status, bad["__type"].as_str()),
        (400, Some("ClientException")),
        "{bad}"
    );
    ecs_ok(
        api,
        "RegisterTaskDefinition",
        definition("by-name", json!({"credentialsParameter": "reg"})),
    )
    .await;

    // RunTask: the secret must exist by then.
    let (status, refused) = ecs(api, "RunTask", json!({"taskDefinition": "by-name"})).await;
    assert_eq!(
        (status, refused["__type"].as_str()),
        (400, Some("ClientException")),
        "{refused}"
    );
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .starts_with("repositoryCredentials of container app: no secret named reg in berth-cp"),
        "{refused}"
    );
    let listed = ecs_ok(api, "ListTasks", json!({})).await;
    assert_eq!(listed["taskArns"], json!([]), "nothing was placed");

    let body = json!({"username": "robot", "password": PASSWORD}).to_string();
    let (status, text) = berth(api, Method::PUT, "/berth/v1/secrets/reg", Some(&body)).await;
    assert_eq!(status, 201, "{text}");
    let arn = parse(&text)["arn"].as_str().unwrap().to_string();
    ecs_ok(
        api,
        "RegisterTaskDefinition",
        definition("by-arn", json!({"credentialsParameter": arn})),
    )
    .await;

    // The payload carries the login for the container that names it, and only that one.
    let run = ecs_ok(api, "RunTask", json!({"taskDefinition": "by-name"})).await;
    let task = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    let (seq, spec) = next_spec(&mut agent).await;
    assert_eq!(spec.task_arn, task);
    assert_eq!(
        login_of(&spec, "app"),
        Some(("robot".into(), PASSWORD.into()))
    );
    assert_eq!(login_of(&spec, "side"), None);
    ecs_ok(api, "RunTask", json!({"taskDefinition": "by-arn"})).await;
    let (seq2, spec2) = next_spec(&mut agent).await;
    assert_eq!(
        login_of(&spec2, "app"),
        Some(("robot".into(), PASSWORD.into()))
    );

    // Nothing the user reads shows the login; the definition shows the parameter as given.
    let described = ecs_ok(api, "DescribeTasks", json!({"tasks": [task.clone()]}))
        .await
        .to_string();
    assert!(
        !described.contains(PASSWORD) && !described.contains("robot"),
        "{described}"
    );
    let td = ecs_ok(
        api,
        "DescribeTaskDefinition",
        json!({"taskDefinition": "by-arn"}),
    )
    .await;
    assert!(!td.to_string().contains(PASSWORD));
    assert_eq!(
        td["taskDefinition"]["containerDefinitions"][0]["repositoryCredentials"],
        json!({"credentialsParameter": arn})
    );

    // Redelivery: unacknowledged payloads are resent to a new session with the secret's login
    // as it is now (rotated in between).
    let rotated = json!({"username": "robot2", "password": "rotated-pw"}).to_string();
    let (status, _) = berth(api, Method::PUT, "/berth/v1/secrets/reg", Some(&rotated)).await;
    assert_eq!(status, 200);
    drop(agent);
    let mut agent = FakeAgent::connect(g, &reg.instance_id, &reg.secret, 0)
        .await
        .unwrap();
    assert!(matches!(agent.expect().await, Msg::Welcome(_)));
    assert!(matches!(agent.expect().await, Msg::Manifest(_)));
    let (again, spec) = next_spec(&mut agent).await;
    assert_eq!((again, spec.task_arn.as_str()), (seq, task.as_str()));
    assert_eq!(
        login_of(&spec, "app"),
        Some(("robot2".into(), "rotated-pw".into()))
    );
    let (again2, spec2) = next_spec(&mut agent).await;
    assert_eq!(again2, seq2);
    assert_eq!(
        login_of(&spec2, "app"),
        Some(("robot2".into(), "rotated-pw".into()))
    );

    // The outbox stores no password (both payloads are still there, unacknowledged): only the
    // secrets table holds it.
    let conn = rusqlite::Connection::open(data_dir(dir.path()).join("berth-cp.db")).unwrap();
    let payloads: Vec<Vec<u8>> = conn
        .prepare("SELECT payload FROM outbox")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(payloads.len(), 2);
    let holds = |p: &[u8], pw: &str| p.windows(pw.len()).any(|w| w == pw.as_bytes());
    assert!(payloads
        .iter()
        .all(|p| !holds(p, PASSWORD) && !holds(p, "rotated-pw")));
    let stored: String = conn
        .query_row("SELECT password FROM secrets WHERE name = 'reg'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(stored, "rotated-pw");
    server.shutdown().await.unwrap();
}
