//! The agent side: registration, the session, payloads, state changes, restart.

mod common;

use berth_cp::admin;
use berth_cp::domain::ids;
use berth_cp::domain::instance::ActivationCode;
use berth_cp::state::{ActivationStore, SqliteStore};
use berth_proto::v1 as pb;
use common::*;
use pb::control_message::Msg;
use serde_json::json;

async fn refused(addr: std::net::SocketAddr, req: pb::RegisterRequest) -> tonic::Status {
    grpc(addr)
        .await
        .register(req)
        .await
        .expect_err("registration refused")
}

#[tokio::test]
async fn registration_refusals_say_why() {
    let dir = TempDir::new("register");
    let server = start(dir.path()).await;
    let g = server.grpc_addr;
    let data = data_dir(dir.path());

    let s = refused(g, register_request("default", code_auth("NOPE"))).await;
    assert_eq!(
        (s.code(), s.message()),
        (tonic::Code::Unauthenticated, "activation code unknown")
    );

    let mut missing = register_request("default", code_auth("x"));
    missing.auth = None;
    assert_eq!(
        refused(g, missing).await.code(),
        tonic::Code::InvalidArgument
    );
    assert_eq!(
        refused(g, register_request("", code_auth("x")))
            .await
            .code(),
        tonic::Code::InvalidArgument
    );
    // An attribute registered twice has no one value to place by.
    let mut twice = register_request("default", code_auth("x"));
    let first = twice.attributes[0].clone();
    twice.attributes.push(first);
    let s = refused(g, twice).await;
    assert_eq!(s.code(), tonic::Code::InvalidArgument);
    assert!(s.message().contains("registered twice"), "{}", s.message());

    // Expired: written directly with an expiry in the past, so the test does not wait.
    let expired = "EXPIREDCODE";
    SqliteStore::open(&data)
        .unwrap()
        .insert_activation(
            &ids::sha256_hex(expired),
            &ActivationCode {
                cluster: "default".into(),
                uses_left: 1,
                expires_at_ms: 1,
                revoked: false,
            },
            1,
        )
        .unwrap();
    assert_eq!(
        refused(g, register_request("default", code_auth(expired)))
            .await
            .message(),
        "activation code expired"
    );

    let once = admin::create_activation(&data, "default", 1, 3600).unwrap();
    let ok = grpc(g)
        .await
        .register(register_request("default", code_auth(&once)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.instance_id.len(), 32);
    assert_eq!(ok.secret.len(), 64);
    assert_eq!(ok.heartbeat_interval_ms, 1000);
    assert_eq!(
        ok.container_instance_arn,
        format!(
            "arn:aws:ecs:us-east-1:000000000000:container-instance/default/{}",
            ok.instance_id
        )
    );
    assert_eq!(
        refused(g, register_request("default", code_auth(&once)))
            .await
            .message(),
        "activation code has no uses left"
    );

    let revoked = admin::create_activation(&data, "default", 5, 3600).unwrap();
    admin::revoke_activation(&data, &revoked).unwrap();
    let s = refused(g, register_request("default", code_auth(&revoked))).await;
    assert_eq!(
        (s.code(), s.message()),
        (tonic::Code::PermissionDenied, "activation code revoked")
    );

    let other = admin::create_activation(&data, "prod", 1, 3600).unwrap();
    assert_eq!(
        refused(g, register_request("default", code_auth(&other)))
            .await
            .message(),
        "activation code is for cluster prod, not default"
    );

    // Re-registration with the credential keeps the identity and returns no secret.
    let cred = |secret: &str| {
        pb::register_request::Auth::Credential(pb::InstanceCredential {
            instance_id: ok.instance_id.clone(),
            secret: secret.into(),
        })
    };
    let again = grpc(g)
        .await
        .register(register_request("default", cred(&ok.secret)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (again.instance_id.as_str(), again.secret.as_str()),
        (ok.instance_id.as_str(), "")
    );
    assert_eq!(
        refused(g, register_request("default", cred("wrong")))
            .await
            .message(),
        "instance credential rejected"
    );

    // A session must start with a valid Hello.
    let err = FakeAgent::connect(g, &ok.instance_id, "wrong", 0)
        .await
        .err()
        .expect("refused");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);

    // Revocation: refused at the next message and at reconnect.
    let mut agent = FakeAgent::connect(g, &ok.instance_id, &ok.secret, 0)
        .await
        .unwrap();
    assert!(matches!(agent.expect().await, Msg::Welcome(_)));
    admin::revoke_instance(&data, &ok.instance_id).unwrap();
    agent
        .send(pb::agent_message::Msg::Heartbeat(pb::Heartbeat {
            sent_at_ms: 1,
            ..Default::default()
        }))
        .await;
    let end = loop {
        match agent.next().await {
            Ok(_) => continue,
            Err(s) => break s,
        }
    };
    assert_eq!(
        (end.code(), end.message()),
        (tonic::Code::PermissionDenied, "instance revoked")
    );
    assert_eq!(
        refused(g, register_request("default", cred(&ok.secret)))
            .await
            .message(),
        "instance revoked"
    );

    server.shutdown().await.unwrap();
}

fn task_of(v: &serde_json::Value) -> &serde_json::Value {
    &v["tasks"][0]
}

#[tokio::test]
async fn session_runs_tasks_and_survives_a_restart() {
    let dir = TempDir::new("session");
    let data = data_dir(dir.path());
    let server = start(dir.path()).await;
    let (api, g) = (server.api_addr, server.grpc_addr);

    let code = admin::create_activation(&data, "default", 1, 3600).unwrap();
    let reg = grpc(g)
        .await
        .register(register_request("default", code_auth(&code)))
        .await
        .unwrap()
        .into_inner();
    let (id, secret) = (reg.instance_id.clone(), reg.secret.clone());

    let mut agent = FakeAgent::connect(g, &id, &secret, 0).await.unwrap();
    match agent.expect().await {
        Msg::Welcome(w) => {
            assert_eq!(w.instance_id, id);
            assert_eq!(w.last_state_change_seq, 0);
            assert_eq!(w.heartbeat_interval_ms, 1000);
        }
        other => panic!("expected Welcome, got {other:?}"),
    }
    assert!(matches!(agent.expect().await, Msg::Manifest(m) if m.task_arns.is_empty()));

    agent
        .send(pb::agent_message::Msg::Heartbeat(pb::Heartbeat {
            sent_at_ms: 42,
            running_tasks: 0,
            containerd_healthy: true,
        }))
        .await;
    assert!(matches!(agent.expect().await, Msg::HeartbeatAck(a) if a.sent_at_ms == 42));

    let instances = ecs_ok(
        api,
        "DescribeContainerInstances",
        json!({"containerInstances": [id]}),
    )
    .await;
    let ci = &instances["containerInstances"][0];
    assert_eq!(ci["agentConnected"], true);
    assert_eq!(ci["versionInfo"]["dockerVersion"], "containerd 2.0.0");

    // An unsupported network mode fails placement with ATTRIBUTE.
    let mut vpc = sample_task_definition("vpc");
    vpc["networkMode"] = json!("awsvpc");
    ecs_ok(api, "RegisterTaskDefinition", vpc).await;
    let run = ecs_ok(api, "RunTask", json!({"taskDefinition": "vpc"})).await;
    assert_eq!(run["failures"][0]["reason"], "ATTRIBUTE", "{run}");

    // RunTask: the agent receives payload 1 with overrides applied.
    ecs_ok(api, "RegisterTaskDefinition", sample_task_definition("web")).await;
    let run = ecs_ok(api, "RunTask", json!({
        "taskDefinition": "web",
        "startedBy": "test",
        "overrides": {"containerOverrides": [{"name": "app", "command": ["echo", "hi"], "environment": [{"name": "B", "value": "2"}]}]}
    })).await;
    let task_a = task_of(&run)["taskArn"].as_str().unwrap().to_string();
    assert_eq!(task_of(&run)["lastStatus"], "PENDING");
    assert_eq!(task_of(&run)["desiredStatus"], "RUNNING");
    assert_eq!(task_of(&run)["group"], "family:web");
    let payload = match agent.expect().await {
        Msg::Payload(p) => p,
        other => panic!("expected payload, got {other:?}"),
    };
    assert_eq!(payload.seq, 1);
    let spec = &payload.tasks[0];
    assert_eq!(spec.task_arn, task_a);
    assert_eq!(spec.network_mode, "bridge");
    let c = &spec.containers[0];
    assert_eq!(
        (c.command.clone(), c.has_command, c.essential, c.memory_mib),
        (vec!["echo".to_string(), "hi".to_string()], true, true, 128)
    );
    assert_eq!(c.environment.len(), 2);
    agent
        .send(pb::agent_message::Msg::PayloadAck(pb::PayloadAck {
            seq: 1,
        }))
        .await;

    // State changes, and a duplicate sequence that must not be applied.
    agent
        .state_change(
            1,
            container_change(&task_a, "app", pb::ContainerStatus::Running, None),
        )
        .await;
    agent
        .state_change(
            2,
            task_change(&task_a, pb::TaskStatus::Running, "", 1_700_000_000_000),
        )
        .await;
    agent
        .state_change(
            2,
            task_change(&task_a, pb::TaskStatus::Stopped, "Bogus", 1_700_000_000_500),
        )
        .await;
    let d = ecs_ok(api, "DescribeTasks", json!({"tasks": [task_a]})).await;
    let t = task_of(&d);
    assert_eq!(t["lastStatus"], "RUNNING", "duplicate seq 2 applied: {t}");
    assert_eq!(t["startedAt"], 1_700_000_000.0);
    assert_eq!(t["containers"][0]["lastStatus"], "RUNNING");
    assert_eq!(t["containers"][0]["runtimeId"], "rt-1");
    assert_eq!(t["startedBy"], "test");
    let listed = ecs_ok(api, "ListTasks", json!({"startedBy": "test"})).await;
    assert_eq!(listed["taskArns"], json!([task_a]));

    // A change for a task that is not ours is acked and ignored.
    agent
        .state_change(
            3,
            task_change(
                "arn:aws:ecs:us-east-1:000000000000:task/default/ffffffffffffffffffffffffffffffff",
                pb::TaskStatus::Running,
                "",
                1,
            ),
        )
        .await;

    // StopTask: payload 2 carries the stop; the user's stop code wins over the agent's.
    let stopped = ecs_ok(api, "StopTask", json!({"task": task_a, "reason": "enough"})).await;
    assert_eq!(stopped["task"]["desiredStatus"], "STOPPED");
    assert_eq!(stopped["task"]["stopCode"], "UserInitiated");
    match agent.expect().await {
        Msg::Payload(p) => {
            assert_eq!(p.seq, 2);
            assert_eq!(p.stops[0].task_arn, task_a);
            assert_eq!(p.stops[0].reason, "enough");
        }
        other => panic!("expected stop payload, got {other:?}"),
    }
    agent
        .state_change(
            4,
            container_change(&task_a, "app", pb::ContainerStatus::Stopped, Some(137)),
        )
        .await;
    agent
        .state_change(
            5,
            task_change(
                &task_a,
                pb::TaskStatus::Stopped,
                "EssentialContainerExited",
                1_700_000_001_000,
            ),
        )
        .await;
    let d = ecs_ok(api, "DescribeTasks", json!({"tasks": [task_a]})).await;
    let t = task_of(&d);
    assert_eq!(t["lastStatus"], "STOPPED");
    assert_eq!(t["stopCode"], "UserInitiated");
    assert_eq!(t["stoppedReason"], "enough");
    assert_eq!(t["containers"][0]["exitCode"], 137);

    // Task B is placed; payload 3 is sent but the agent "loses" it (records only up to 2).
    let run_b = ecs_ok(api, "RunTask", json!({"taskDefinition": "web"})).await;
    let task_b = task_of(&run_b)["taskArn"].as_str().unwrap().to_string();
    assert!(matches!(agent.expect().await, Msg::Payload(p) if p.seq == 3));

    // Restart berth-cp on the same data directory: the session ends, the agent reconnects.
    server.shutdown().await.unwrap();
    let ended = loop {
        match agent.next().await {
            Ok(_) => continue,
            Err(s) => break s,
        }
    };
    assert_ne!(ended.code(), tonic::Code::Ok);
    let server = start(dir.path()).await;
    let (api, g) = (server.api_addr, server.grpc_addr);
    let mut agent = FakeAgent::connect(g, &id, &secret, 2).await.unwrap();
    assert!(matches!(agent.expect().await, Msg::Welcome(w) if w.last_state_change_seq == 5));
    match agent.expect().await {
        Msg::Manifest(m) => assert_eq!(m.task_arns, vec![task_b.clone()]),
        other => panic!("expected manifest, got {other:?}"),
    }
    match agent.expect().await {
        Msg::Payload(p) => {
            assert_eq!(p.seq, 3, "only the unacknowledged payload is resent");
            assert_eq!(p.tasks[0].task_arn, task_b);
        }
        other => panic!("expected payload 3, got {other:?}"),
    }
    let d = ecs_ok(
        api,
        "DescribeTasks",
        json!({"tasks": [task_a.clone(), task_b.clone()]}),
    )
    .await;
    assert_eq!(d["tasks"][0]["lastStatus"], "STOPPED");
    assert_eq!(d["tasks"][0]["containers"][0]["exitCode"], 137);
    assert_eq!(d["tasks"][1]["lastStatus"], "PENDING");

    // Remaining resources account for task B only (A is stopped).
    let ci = eventually("agent shown connected", || async {
        let v = ecs_ok(
            api,
            "DescribeContainerInstances",
            json!({"containerInstances": [id]}),
        )
        .await;
        let ci = v["containerInstances"][0].clone();
        (ci["agentConnected"] == true).then_some(ci)
    })
    .await;
    let mem = ci["remainingResources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "MEMORY")
        .unwrap();
    assert_eq!(mem["integerValue"], 4096 - 128);
    assert_eq!(ci["pendingTasksCount"], 1);

    // A newer session replaces the older one.
    let mut newer = FakeAgent::connect(g, &id, &secret, 3).await.unwrap();
    assert!(matches!(newer.expect().await, Msg::Welcome(_)));
    let old_end = loop {
        match agent.next().await {
            Ok(_) => continue,
            Err(s) => break s,
        }
    };
    assert_eq!(old_end.code(), tonic::Code::Aborted);
    drop(newer);
    eventually("agent shown disconnected", || async {
        let v = ecs_ok(
            api,
            "DescribeContainerInstances",
            json!({"containerInstances": [id]}),
        )
        .await;
        (v["containerInstances"][0]["agentConnected"] == false).then_some(())
    })
    .await;

    server.shutdown().await.unwrap();
}
