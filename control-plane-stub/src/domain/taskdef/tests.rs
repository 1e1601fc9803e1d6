use super::*;
use serde_json::json;

fn ok_def() -> Value {
    json!({
        "family": "web",
        "containerDefinitions": [
            {"name": "app", "image": "nginx", "memory": 128},
            {"name": "side", "image": "busybox", "memoryReservation": 64, "essential": false}
        ]
    })
}

fn err(v: Value) -> TaskDefError {
    parse(&v).expect_err("should be refused")
}

#[test]
fn accepts_a_plain_definition_with_defaults() {
    let d = parse(&ok_def()).unwrap();
    assert_eq!(d.family, "web");
    assert_eq!(d.network_mode, "bridge");
    assert!(d.containers[0].essential);
    assert!(!d.containers[1].essential);
    assert_eq!(
        d.needs(),
        Needs {
            cpu: 0,
            memory: 192
        }
    );
}

#[test]
fn task_level_units_win() {
    let mut v = ok_def();
    v["cpu"] = json!("0.5 vCPU");
    v["memory"] = json!("1 GB");
    let d = parse(&v).unwrap();
    assert_eq!(
        d.needs(),
        Needs {
            cpu: 512,
            memory: 1024
        }
    );
}

#[test]
fn family_required_and_well_formed() {
    let mut v = ok_def();
    v.as_object_mut().unwrap().remove("family");
    let e = err(v);
    assert_eq!(e.kind, ProblemKind::Client);
    assert_eq!(e.problems, vec!["family: required"]);
    let mut v = ok_def();
    v["family"] = json!("bad name!");
    assert!(err(v).problems[0].starts_with("family:"));
}

#[test]
fn containers_required() {
    let e = err(json!({"family": "x", "containerDefinitions": []}));
    assert!(e.problems[0].starts_with("containerDefinitions:"));
    let e = err(json!({"family": "x"}));
    assert_eq!(e.problems, vec!["containerDefinitions: required"]);
}

#[test]
fn image_and_name_required() {
    let mut v = ok_def();
    v["containerDefinitions"][1]
        .as_object_mut()
        .unwrap()
        .remove("image");
    assert_eq!(
        err(v).problems,
        vec!["containerDefinitions[1].image: required"]
    );
    let mut v = ok_def();
    v["containerDefinitions"][0]
        .as_object_mut()
        .unwrap()
        .remove("name");
    assert_eq!(
        err(v).problems,
        vec!["containerDefinitions[0].name: required"]
    );
}

#[test]
fn repository_credentials_name_a_secret() {
    let mut v = ok_def();
    v["containerDefinitions"][0]["repositoryCredentials"] =
        json!({"credentialsParameter": "arn:aws:secretsmanager:r:a:secret:reg"});
    let d = parse(&v).unwrap();
    assert_eq!(
        d.containers[0].repository_credentials.as_deref(),
        Some("arn:aws:secretsmanager:r:a:secret:reg")
    );
    assert_eq!(d.containers[1].repository_credentials, None);
    for (bad, why) in [
        (
            json!("reg"),
            "containerDefinitions[0].repositoryCredentials: must be an object",
        ),
        (
            json!({}),
            "containerDefinitions[0].repositoryCredentials.credentialsParameter: required",
        ),
        (
            json!({"credentialsParameter": ""}),
            "containerDefinitions[0].repositoryCredentials.credentialsParameter: must not be empty",
        ),
        (
            json!({"credentialsParameter": 5}),
            "containerDefinitions[0].repositoryCredentials.credentialsParameter: must be a string",
        ),
    ] {
        let mut v = ok_def();
        v["containerDefinitions"][0]["repositoryCredentials"] = bad.clone();
        let e = err(v);
        assert_eq!(e.kind, ProblemKind::Client, "{bad}");
        assert!(e.problems[0].starts_with(why), "{bad}: {:?}", e.problems);
    }
}

#[test]
fn duplicate_names_refused() {
    let mut v = ok_def();
    v["containerDefinitions"][1]["name"] = json!("app");
    assert_eq!(
        err(v).problems,
        vec!["containerDefinitions[1].name: duplicate container name \"app\""]
    );
}

#[test]
fn negative_memory_is_an_invalid_parameter() {
    let mut v = ok_def();
    v["containerDefinitions"][0]["memory"] = json!(-5);
    let e = err(v);
    assert_eq!(e.kind, ProblemKind::InvalidParameter);
    assert!(e.problems[0].starts_with("containerDefinitions[0].memory:"));
}

#[test]
fn non_integer_cpu_refused() {
    let mut v = ok_def();
    v["containerDefinitions"][0]["cpu"] = json!("lots");
    assert!(err(v).problems[0].starts_with("containerDefinitions[0].cpu:"));
}

#[test]
fn needs_an_essential_container() {
    let mut v = ok_def();
    v["containerDefinitions"][0]["essential"] = json!(false);
    assert!(err(v).problems[0].contains("no essential container"));
}

#[test]
fn reservation_not_above_memory() {
    let mut v = ok_def();
    v["containerDefinitions"][0]["memoryReservation"] = json!(256);
    assert!(err(v).problems[0].starts_with("containerDefinitions[0].memoryReservation:"));
}

#[test]
fn memory_required_somewhere() {
    let mut v = ok_def();
    v["containerDefinitions"][0]
        .as_object_mut()
        .unwrap()
        .remove("memory");
    assert!(err(v.clone()).problems[0].starts_with("containerDefinitions[0].memory:"));
    v["memory"] = json!("512");
    assert!(parse(&v).is_ok());
}

#[test]
fn network_mode_and_stop_timeout_checked() {
    let mut v = ok_def();
    v["networkMode"] = json!("overlay");
    assert!(err(v).problems[0].starts_with("networkMode:"));
    let mut v = ok_def();
    v["containerDefinitions"][0]["stopTimeout"] = json!(121);
    assert!(err(v).problems[0].starts_with("containerDefinitions[0].stopTimeout:"));
}

#[test]
fn bad_task_memory_units() {
    let mut v = ok_def();
    v["memory"] = json!("2 parsecs");
    let e = err(v);
    assert_eq!(e.kind, ProblemKind::InvalidParameter);
    assert!(e.problems[0].starts_with("memory:"));
}

fn problem_fields(e: &TaskDefError) -> Vec<&str> {
    e.problems
        .iter()
        .map(|m| m.split(':').next().unwrap())
        .collect()
}

#[test]
fn container_memory_not_above_task_memory() {
    let mut v = ok_def();
    v["memory"] = json!("100");
    let e = err(v.clone());
    assert_eq!(e.kind, ProblemKind::Client);
    assert_eq!(
        problem_fields(&e),
        vec!["containerDefinitions[0].memory", "memory"]
    );
    assert!(e.problems[0].contains("128 MiB is more than the task's memory (100 MiB)"));
    v["memory"] = json!("192");
    assert!(
        parse(&v).is_ok(),
        "reservations summing to the task memory fit exactly"
    );
}

#[test]
fn reservations_together_not_above_task_memory() {
    let mut v = ok_def();
    v["memory"] = json!("160");
    // app reserves its memory (128), side its reservation (64): 192 > 160.
    let e = err(v.clone());
    assert_eq!(e.kind, ProblemKind::Client);
    assert_eq!(problem_fields(&e), vec!["memory"]);
    assert!(e.problems[0].contains("192 MiB"), "{e}");
    // Hard limits may add up to more than the task, as long as the reservations fit.
    v["containerDefinitions"][0]["memoryReservation"] = json!(96);
    v["containerDefinitions"][1]["memory"] = json!(160);
    assert!(parse(&v).is_ok());
}

#[test]
fn container_cpu_together_not_above_task_cpu() {
    let mut v = ok_def();
    v["cpu"] = json!("256");
    v["containerDefinitions"][0]["cpu"] = json!(128);
    v["containerDefinitions"][1]["cpu"] = json!(128);
    assert!(parse(&v).is_ok(), "an exact fit is accepted");
    v["containerDefinitions"][1]["cpu"] = json!(129);
    let e = err(v);
    assert_eq!(e.kind, ProblemKind::Client);
    assert_eq!(
        e.problems,
        vec!["cpu: the containers' cpu adds up to 257 units, more than the task's 256"]
    );
}

#[test]
fn task_cpu_within_the_ec2_range() {
    for (cpu, ok) in [
        ("127", false),
        ("128", true),
        ("192 vCPU", true),
        ("196609", false),
    ] {
        let mut v = ok_def();
        v["cpu"] = json!(cpu);
        match parse(&v) {
            Ok(_) => assert!(ok, "{cpu} accepted"),
            Err(e) => {
                assert!(!ok, "{cpu} refused: {e}");
                assert_eq!(problem_fields(&e), vec!["cpu"]);
                assert_eq!(e.kind, ProblemKind::Client);
            }
        }
    }
}

#[test]
fn memory_and_reservation_at_least_6_mib() {
    let mut v = ok_def();
    v["containerDefinitions"][0]["memory"] = json!(5);
    v["containerDefinitions"][1]["memoryReservation"] = json!(0);
    let e = err(v.clone());
    assert_eq!(e.kind, ProblemKind::Client);
    assert_eq!(
        problem_fields(&e),
        vec![
            "containerDefinitions[0].memory",
            "containerDefinitions[1].memoryReservation"
        ]
    );
    assert!(e.problems[0].contains("5 MiB is below the minimum of 6 MiB"));
    v["containerDefinitions"][0]["memory"] = json!(6);
    v["containerDefinitions"][1]["memoryReservation"] = json!(6);
    assert!(parse(&v).is_ok());
    let mut v = ok_def();
    v["memory"] = json!("5");
    assert!(problem_fields(&err(v)).contains(&"memory"));
}

#[test]
fn overrides_are_checked_with_the_same_rules() {
    let mut v = ok_def();
    v["memory"] = json!("512");
    v["cpu"] = json!("256");
    let d = parse(&v).unwrap();
    let run = |o: Value| apply_overrides(&d, &parse_overrides(Some(&o)).unwrap());

    let e = run(json!({"containerOverrides": [{"name": "app", "memory": 1024}]})).unwrap_err();
    assert_eq!(e.kind, ProblemKind::Client);
    assert_eq!(
        problem_fields(&e),
        vec!["overrides.containerOverrides[0].memory", "memory"]
    );
    let e = run(json!({"memory": "100"})).unwrap_err();
    assert_eq!(
        problem_fields(&e),
        vec!["containerDefinitions[0].memory", "overrides.memory"]
    );
    let e =
        run(json!({"containerOverrides": [{"name": "side", "memoryReservation": 4}]})).unwrap_err();
    assert_eq!(
        problem_fields(&e),
        vec!["overrides.containerOverrides[0].memoryReservation"]
    );
    let e = run(json!({"containerOverrides": [{"name": "app", "cpu": 512}]})).unwrap_err();
    assert_eq!(problem_fields(&e), vec!["cpu"]);
    assert!(run(json!({"cpu": "64"})).is_err());
    let ok = run(json!({"cpu": "1 vCPU", "containerOverrides": [{"name": "app", "cpu": 512, "memory": 448}]}))
        .unwrap();
    assert_eq!(
        ok.needs(),
        Needs {
            cpu: 1024,
            memory: 512
        }
    );
}

#[test]
fn all_problems_reported_together() {
    let e = err(json!({"containerDefinitions": [{"name": "a"}]}));
    assert_eq!(e.problems.len(), 3, "{:?}", e.problems);
}

#[test]
fn overrides_apply_and_merge_environment() {
    let mut v = ok_def();
    v["containerDefinitions"][0]["environment"] =
        json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]);
    let d = parse(&v).unwrap();
    let o = parse_overrides(Some(&json!({
        "containerOverrides": [{"name": "app", "command": [], "memory": 256,
            "environment": [{"name": "B", "value": "x"}, {"name": "C", "value": "3"}]}],
        "cpu": "1 vCPU"
    })))
    .unwrap();
    let e = apply_overrides(&d, &o).unwrap();
    let app = &e.containers[0];
    assert_eq!(app.command, Some(vec![]));
    assert_eq!(app.memory, Some(256));
    assert_eq!(
        app.environment,
        vec![
            ("A".into(), "1".into()),
            ("B".into(), "x".into()),
            ("C".into(), "3".into())
        ]
    );
    assert_eq!(e.cpu, Some(1024));
    let bad = parse_overrides(Some(&json!({"containerOverrides": [{"name": "nope"}]}))).unwrap();
    assert!(apply_overrides(&d, &bad).is_err());
}

fn with_deps(app_deps: Value, side_deps: Value) -> Value {
    let mut v = ok_def();
    v["containerDefinitions"][0]["dependsOn"] = app_deps;
    v["containerDefinitions"][1]["dependsOn"] = side_deps;
    v
}

#[test]
fn depends_on_start_timeout_and_restart_policy_are_accepted() {
    let mut v = with_deps(
        json!([{"containerName": "side", "condition": "SUCCESS"}]),
        Value::Null,
    );
    v["containerDefinitions"][0]["startTimeout"] = json!(30);
    v["containerDefinitions"][0]["restartPolicy"] =
        json!({"enabled": true, "ignoredExitCodes": [0], "restartAttemptPeriod": 60});
    parse(&v).unwrap();
}

#[test]
fn depends_on_names_unknown_self_and_cycles() {
    let e = err(with_deps(
        json!([{"containerName": "nope", "condition": "START"}]),
        json!([{"containerName": "side", "condition": "START"}]),
    ));
    assert_eq!(e.kind, ProblemKind::Client);
    assert!(
        e.problems[0].starts_with("containerDefinitions[0].dependsOn[0].containerName:"),
        "{e:?}"
    );
    assert!(e.problems[1].contains("itself"), "{e:?}");
    let e = err(with_deps(
        json!([{"containerName": "side", "condition": "START"}]),
        json!([{"containerName": "app", "condition": "START"}]),
    ));
    assert!(
        e.problems
            .iter()
            .any(|p| p.contains("cycle: app -> side -> app")),
        "{e:?}"
    );
}

#[test]
fn complete_or_success_on_an_essential_container_is_refused() {
    let e = err(with_deps(
        Value::Null,
        json!([{"containerName": "app", "condition": "COMPLETE"}]),
    ));
    assert!(e.problems[0].starts_with("containerDefinitions[1].dependsOn[0].condition:"));
    assert!(e.problems[0].contains("essential"), "{e:?}");
    // START on an essential container is fine.
    assert!(parse(&with_deps(
        Value::Null,
        json!([{"containerName": "app", "condition": "START"}])
    ))
    .is_ok());
}

#[test]
fn bad_conditions_are_invalid_parameters() {
    let e = err(with_deps(
        json!([{"containerName": "side", "condition": "SOON"}]),
        Value::Null,
    ));
    assert_eq!(e.kind, ProblemKind::InvalidParameter);
    assert!(e.problems[0].starts_with("containerDefinitions[0].dependsOn[0].condition:"));
}

#[test]
fn healthy_needs_a_container_with_a_health_check() {
    let healthy_on_side = || {
        with_deps(
            json!([{"containerName": "side", "condition": "HEALTHY"}]),
            Value::Null,
        )
    };
    let e = err(healthy_on_side());
    assert_eq!(e.kind, ProblemKind::Client);
    assert_eq!(
        e.problems,
        vec![
            "containerDefinitions[0].dependsOn[0].condition: HEALTHY on \"side\" can never be met: \"side\" has no healthCheck; give \"side\" a healthCheck, or use START"
        ]
    );
    let mut v = healthy_on_side();
    v["containerDefinitions"][1]["healthCheck"] = json!({"command": ["NONE"]});
    assert!(err(v).problems[0].contains("is [\"NONE\"], which disables it"));
    let mut v = healthy_on_side();
    v["containerDefinitions"][1]["healthCheck"] = json!({"command": ["CMD-SHELL", "pg_isready"]});
    let d = parse(&v).unwrap();
    assert!(d.containers[1].health_check.is_some());
    // A container with an invalid healthCheck gets one problem, not two.
    let mut v = healthy_on_side();
    v["containerDefinitions"][1]["healthCheck"] = json!({"command": ["pg_isready"]});
    assert_eq!(
        problem_fields(&err(v)),
        vec!["containerDefinitions[1].healthCheck.command"]
    );
}

fn with_check(check: Value) -> Value {
    let mut v = ok_def();
    v["containerDefinitions"][0]["healthCheck"] = check;
    v
}

#[test]
fn health_checks_get_ecs_defaults() {
    let d = parse(&with_check(
        json!({"command": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"]}),
    ))
    .unwrap();
    assert_eq!(
        d.containers[0].health_check,
        Some(HealthCheck {
            command: vec![
                "CMD-SHELL".into(),
                "curl -f http://localhost/ || exit 1".into()
            ],
            interval: 30,
            timeout: 5,
            retries: 3,
            start_period: 0,
        })
    );
    assert_eq!(d.containers[1].health_check, None);
    let d = parse(&with_check(json!({
        "command": ["CMD", "/bin/check", "--quick"],
        "interval": 5, "timeout": 60, "retries": 10, "startPeriod": 300
    })))
    .unwrap();
    let h = d.containers[0].health_check.as_ref().unwrap();
    assert_eq!(
        (h.interval, h.timeout, h.retries, h.start_period),
        (5, 60, 10, 300)
    );
    // ["NONE"] disables the check (as it disables the image's HEALTHCHECK).
    let d = parse(&with_check(json!({"command": ["NONE"]}))).unwrap();
    assert_eq!(d.containers[0].health_check, None);
}

#[test]
fn health_check_values_outside_ecs_limits_are_refused() {
    let e = err(with_check(json!({
        "command": ["CMD", "true"],
        "interval": 4, "timeout": 61, "retries": 0, "startPeriod": 301
    })));
    assert_eq!(e.kind, ProblemKind::InvalidParameter);
    assert_eq!(
        e.problems,
        vec![
            "containerDefinitions[0].healthCheck.interval: 4 must be between 5 and 300 seconds",
            "containerDefinitions[0].healthCheck.timeout: 61 must be between 2 and 60 seconds",
            "containerDefinitions[0].healthCheck.retries: 0 must be between 1 and 10",
            "containerDefinitions[0].healthCheck.startPeriod: 301 must be between 0 and 300 seconds",
        ]
    );
    let e = err(with_check(
        json!({"command": ["CMD", "true"], "interval": "30"}),
    ));
    assert_eq!(
        e.problems,
        vec!["containerDefinitions[0].healthCheck.interval: \"30\" must be between 5 and 300 seconds"]
    );
    let e = err(with_check(
        json!({"command": ["CMD", "true"], "startPeriod": -1}),
    ));
    assert_eq!(
        problem_fields(&e),
        vec!["containerDefinitions[0].healthCheck.startPeriod"]
    );
}

#[test]
fn health_check_commands_take_ecs_forms() {
    let command_problem = |command: Value| -> TaskDefError {
        let e = err(with_check(json!({"command": command})));
        assert_eq!(
            problem_fields(&e),
            vec!["containerDefinitions[0].healthCheck.command"],
            "{command}"
        );
        e
    };
    for (command, kind, says) in [
        (json!(["CMD"]), ProblemKind::Client, "CMD needs the program"),
        (
            json!(["CMD", " "]),
            ProblemKind::Client,
            "CMD needs the program",
        ),
        (
            json!(["CMD-SHELL"]),
            ProblemKind::Client,
            "CMD-SHELL needs the shell command",
        ),
        (
            json!(["CMD-SHELL", ""]),
            ProblemKind::Client,
            "CMD-SHELL needs the shell command",
        ),
        (
            json!(["NONE", "x"]),
            ProblemKind::InvalidParameter,
            "takes nothing after NONE",
        ),
        (json!([]), ProblemKind::Client, "empty"),
        (
            json!(["curl", "-f", "http://localhost/"]),
            ProblemKind::InvalidParameter,
            "\"curl\" is not CMD, CMD-SHELL or NONE",
        ),
        (
            json!("CMD-SHELL true"),
            ProblemKind::InvalidParameter,
            "must be a list of strings",
        ),
        (json!(null), ProblemKind::Client, "required"),
    ] {
        let e = command_problem(command.clone());
        assert_eq!(e.kind, kind, "{command}: {e}");
        assert!(e.problems[0].contains(says), "{command}: {e}");
    }
    let mut v = ok_def();
    v["containerDefinitions"][0]["healthCheck"] = json!(["CMD", "true"]);
    assert_eq!(
        err(v).problems,
        vec!["containerDefinitions[0].healthCheck: must be an object"]
    );
    // Docker joins what follows CMD-SHELL with spaces; so does the agent.
    assert!(parse(&with_check(
        json!({"command": ["CMD-SHELL", "test", "-f", "/ready"]})
    ))
    .is_ok());
}

#[test]
fn health_defs_read_stored_definitions_leniently() {
    let mut v = ok_def();
    v["containerDefinitions"][0]["healthCheck"] =
        json!({"command": ["CMD", "true"], "interval": 1});
    v["containerDefinitions"][1]["healthCheck"] = json!({"command": ["NONE"]});
    v["containerDefinitions"].as_array_mut().unwrap().push(
        json!({"name": "odd", "essential": "yes", "healthCheck": {"command": ["CMD-SHELL", "x"]}}),
    );
    assert_eq!(
        health_defs(&v),
        vec![
            HealthDef {
                name: "app".into(),
                essential: true,
                health_check: true
            },
            HealthDef {
                name: "side".into(),
                essential: false,
                health_check: false
            },
            HealthDef {
                name: "odd".into(),
                essential: true,
                health_check: true
            },
        ]
    );
    assert!(health_defs(&json!({})).is_empty());
}

#[test]
fn restart_policy_and_start_timeout_are_checked() {
    let mut v = ok_def();
    v["containerDefinitions"][0]["restartPolicy"] =
        json!({"enabled": true, "restartAttemptPeriod": 59, "ignoredExitCodes": ["x"]});
    v["containerDefinitions"][0]["startTimeout"] = json!(-1);
    let e = err(v);
    assert_eq!(e.kind, ProblemKind::InvalidParameter);
    for field in ["startTimeout", "restartAttemptPeriod", "ignoredExitCodes"] {
        assert!(
            e.problems.iter().any(|p| p.contains(field)),
            "{field}: {e:?}"
        );
    }
    let mut v = ok_def();
    v["containerDefinitions"][0]["restartPolicy"] = json!({});
    assert_eq!(
        err(v).problems,
        vec!["containerDefinitions[0].restartPolicy.enabled: required"]
    );
}

fn with_ports(mode: &str, app: Value, side: Value) -> Value {
    let mut v = ok_def();
    v["networkMode"] = json!(mode);
    v["containerDefinitions"][0]["portMappings"] = app;
    v["containerDefinitions"][1]["portMappings"] = side;
    v
}

fn tcp(first: u16, last: u16) -> PortRange {
    PortRange {
        protocol: Protocol::Tcp,
        first,
        last,
    }
}

#[test]
fn port_mappings_give_the_fixed_host_ports_of_each_mode() {
    let bridge = parse(&with_ports(
        "bridge",
        json!([{"containerPort": 80, "hostPort": 8080}, {"containerPort": 443},
               {"containerPortRange": "9000-9010"}]),
        json!([{"containerPort": 53, "hostPort": 53, "protocol": "udp"}]),
    ))
    .unwrap();
    assert_eq!(
        bridge.host_ports(),
        vec![tcp(8080, 8080), PortRange::single(Protocol::Udp, 53)]
    );
    assert_eq!(
        bridge.containers[0].port_mappings[2].container_port_range,
        Some((9000, 9010))
    );
    let host = parse(&with_ports(
        "host",
        json!([{"containerPort": 80, "hostPort": 80}, {"containerPortRange": "9000-9010"}]),
        json!([{"containerPort": 81}]),
    ))
    .unwrap();
    assert_eq!(
        host.host_ports(),
        vec![tcp(80, 80), tcp(81, 81), tcp(9000, 9010)]
    );
    let awsvpc = parse(&with_ports(
        "awsvpc",
        json!([{"containerPort": 80, "hostPort": 80}]),
        json!([{"containerPortRange": "9000-9010", "protocol": "udp"}]),
    ))
    .unwrap();
    assert!(
        awsvpc.host_ports().is_empty(),
        "awsvpc tasks have their own address"
    );
}

#[test]
fn port_mapping_values_are_checked() {
    let e = err(with_ports(
        "bridge",
        json!([{"containerPort": 0}, {"containerPort": 70000}, {"containerPort": 80, "hostPort": -1},
               {"containerPort": 81, "protocol": "sctp"}, {"containerPortRange": "90-80"},
               {"containerPortRange": "x"}]),
        Value::Null,
    ));
    assert_eq!(e.kind, ProblemKind::InvalidParameter);
    assert_eq!(
        problem_fields(&e),
        vec![
            "containerDefinitions[0].portMappings[0].containerPort",
            "containerDefinitions[0].portMappings[1].containerPort",
            "containerDefinitions[0].portMappings[2].hostPort",
            "containerDefinitions[0].portMappings[3].protocol",
            "containerDefinitions[0].portMappings[4].containerPortRange",
            "containerDefinitions[0].portMappings[5].containerPortRange",
        ]
    );
    assert!(
        e.problems[1].contains("70000 must be a port number from 1 to 65535"),
        "{e}"
    );
    assert!(e.problems[3].contains("\"sctp\" is not tcp or udp"), "{e}");
    let e = err(with_ports(
        "bridge",
        json!([{"hostPort": 80}, {"containerPort": 80, "containerPortRange": "81-82"}]),
        json!({"containerPort": 80}),
    ));
    assert_eq!(e.kind, ProblemKind::Client);
    assert_eq!(
        problem_fields(&e),
        vec![
            "containerDefinitions[0].portMappings[0].containerPort",
            "containerDefinitions[0].portMappings[1]",
            "containerDefinitions[1].portMappings",
        ]
    );
}

#[test]
fn host_ports_follow_the_network_mode() {
    for mode in ["host", "awsvpc"] {
        let e = err(with_ports(
            mode,
            json!([{"containerPort": 80, "hostPort": 8080}]),
            Value::Null,
        ));
        assert_eq!(
            e.problems,
            vec![format!(
                "containerDefinitions[0].portMappings[0].hostPort: 8080 must be omitted or equal to containerPort (80) in {mode} network mode"
            )]
        );
        assert!(parse(&with_ports(
            mode,
            json!([{"containerPort": 80, "hostPort": 0}]),
            Value::Null
        ))
        .is_ok());
    }
    for mode in ["bridge", "host", "awsvpc"] {
        let e = err(with_ports(
            mode,
            json!([{"containerPortRange": "9000-9010", "hostPort": 9000}]),
            Value::Null,
        ));
        assert_eq!(e.kind, ProblemKind::Client);
        assert!(
            e.problems[0].starts_with("containerDefinitions[0].portMappings[0].hostPort: must be omitted with containerPortRange 9000-9010"),
            "{e}"
        );
    }
    let e = err(with_ports(
        "none",
        json!([{"containerPort": 80}]),
        Value::Null,
    ));
    assert_eq!(
        problem_fields(&e),
        vec!["containerDefinitions[0].portMappings"]
    );
    assert!(parse(&with_ports("none", json!([]), Value::Null)).is_ok());
}

#[test]
fn a_port_is_mapped_once_per_task() {
    let e = err(with_ports(
        "bridge",
        json!([{"containerPort": 80, "hostPort": 8080}, {"containerPortRange": "9000-9010"}]),
        json!([{"containerPort": 81, "hostPort": 8080}, {"containerPort": 9005},
               {"containerPort": 80, "protocol": "udp"}]),
    ));
    assert_eq!(e.kind, ProblemKind::Client);
    assert_eq!(
        e.problems,
        vec![
            "containerDefinitions[1].portMappings[0].hostPort: 8080/tcp is already the hostPort of containerDefinitions[0].portMappings[0]",
            "containerDefinitions[1].portMappings[1].containerPort: 9005/tcp is already mapped by containerDefinitions[0].portMappings[1]: a task's containers share one network namespace",
        ]
    );
    let e = err(with_ports(
        "host",
        json!([{"containerPort": 80}]),
        json!([{"containerPort": 80}]),
    ));
    assert_eq!(
        problem_fields(&e),
        vec!["containerDefinitions[1].portMappings[0].containerPort"]
    );
}

#[test]
fn dns_and_extra_hosts_are_checked() {
    let mut v = ok_def();
    v["containerDefinitions"][0]["dnsServers"] = json!(["10.0.0.2", "::1", "dns.local"]);
    v["containerDefinitions"][0]["dnsSearchDomains"] = json!(["corp.example", "bad domain"]);
    v["containerDefinitions"][0]["extraHosts"] = json!([
        {"hostname": "db", "ipAddress": "10.0.0.5"},
        {"hostname": "cache", "ipAddress": "fe80::1"},
        {"ipAddress": "10.0.0.6"}
    ]);
    let e = err(v);
    assert_eq!(
        problem_fields(&e),
        vec![
            "containerDefinitions[0].dnsServers[1]",
            "containerDefinitions[0].dnsServers[2]",
            "containerDefinitions[0].dnsSearchDomains[1]",
            "containerDefinitions[0].extraHosts[1].ipAddress",
            "containerDefinitions[0].extraHosts[2].hostname",
        ]
    );
    assert!(
        e.problems[0].contains("\"::1\" is not an IPv4 address"),
        "{e}"
    );
    let mut v = ok_def();
    v["containerDefinitions"][0]["extraHosts"] = json!({"db": "10.0.0.5"});
    assert_eq!(
        problem_fields(&err(v)),
        vec!["containerDefinitions[0].extraHosts"]
    );
}

#[test]
fn hostname_is_refused_in_awsvpc_mode_only() {
    let mut v = ok_def();
    v["containerDefinitions"][0]["hostname"] = json!("web");
    for mode in ["bridge", "host"] {
        v["networkMode"] = json!(mode);
        assert!(parse(&v).is_ok(), "{mode}");
    }
    v["networkMode"] = json!("awsvpc");
    let e = err(v);
    assert_eq!(e.kind, ProblemKind::Client);
    assert_eq!(problem_fields(&e), vec!["containerDefinitions[0].hostname"]);
    assert!(e.problems[0].contains("not supported when networkMode is awsvpc"));
}
