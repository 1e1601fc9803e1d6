use super::*;

pub fn sample_task() -> Task {
    Task {
        id: "t1".into(),
        cluster: "default".into(),
        instance_id: "i1".into(),
        family: "web".into(),
        revision: 1,
        last_status: TaskStatus::Pending,
        desired_status: TaskStatus::Running,
        created_at_ms: 1,
        started_at_ms: None,
        stopping_at_ms: None,
        stopped_at_ms: None,
        execution_stopped_at_ms: None,
        stop_code: None,
        stopped_reason: None,
        group: "family:web".into(),
        started_by: None,
        cpu: None,
        memory: None,
        overrides: serde_json::json!({"containerOverrides": []}),
        version: 1,
        needs: Needs {
            cpu: 0,
            memory: 128,
        },
        host_ports: Vec::new(),
        network_mode: "bridge".into(),
        security_groups: Vec::new(),
        network: None,
        pull_started_at_ms: None,
        pull_stopped_at_ms: None,
        protected_until_ms: None,
        availability_zone: None,
        cpu_architecture: None,
        launch_type: "EC2".into(),
        enable_execute_command: false,
        containers: vec![Container {
            id: "c1".into(),
            name: "app".into(),
            image: "nginx".into(),
            runtime_id: None,
            last_status: ContainerStatus::Pending,
            exit_code: None,
            reason: None,
            cpu: None,
            memory: Some(128),
            memory_reservation: None,
            restart_count: 0,
            port_mappings: Vec::new(),
            health: None,
            image_digest: None,
        }],
    }
}

fn task_change(status: TaskStatus, code: &str, at_ms: i64) -> AgentChange {
    AgentChange::Task {
        task_arn: "arn".into(),
        status,
        stop_code: code.into(),
        stopped_reason: format!("{code} reason"),
        at_ms,
        network: None,
        pull: None,
    }
}

#[test]
fn running_then_stopped_records_times_and_code() {
    let mut t = sample_task();
    assert!(t.apply(&task_change(TaskStatus::Running, "", 10), 0));
    assert_eq!(t.started_at_ms, Some(10));
    t.apply(
        &task_change(TaskStatus::Stopped, "EssentialContainerExited", 20),
        0,
    );
    assert_eq!(t.last_status, TaskStatus::Stopped);
    assert_eq!(t.desired_status, TaskStatus::Stopped);
    assert_eq!(t.stopped_at_ms, Some(20));
    assert_eq!(t.execution_stopped_at_ms, Some(20));
    assert_eq!(t.stop_code.as_deref(), Some("EssentialContainerExited"));
    assert_eq!(t.version, 3);
}

#[test]
fn events_record_what_was_reported() {
    let e = TaskEvent::of(
        7,
        "i1",
        &task_change(TaskStatus::Stopped, "EssentialContainerExited", 20),
        25,
    );
    assert_eq!(
        e,
        TaskEvent {
            seq: 7,
            instance_id: "i1".into(),
            kind: EventKind::Task,
            container_name: None,
            status: "STOPPED".into(),
            exit_code: None,
            reason: "EssentialContainerExited reason".into(),
            at_ms: 20,
            received_at_ms: 25,
        }
    );
    let c = AgentChange::Container {
        task_arn: "arn".into(),
        container_name: "app".into(),
        status: ContainerStatus::Stopped,
        exit_code: Some(137),
        reason: "OutOfMemoryError".into(),
        runtime_id: "abc".into(),
        at_ms: 30,
        restart_count: 0,
        health: None,
        image_digest: String::new(),
    };
    let e = TaskEvent::of(8, "i1", &c, 31);
    assert_eq!(
        (e.kind, e.container_name.as_deref(), e.status.as_str()),
        (EventKind::Container, Some("app"), "STOPPED")
    );
    assert_eq!(
        (e.exit_code, e.reason.as_str(), e.at_ms),
        (Some(137), "OutOfMemoryError", 30)
    );
    assert_eq!(
        EventKind::parse(e.kind.as_str()),
        Some(EventKind::Container)
    );
    assert_eq!(EventKind::parse("x"), None);
}

#[test]
fn user_stop_code_wins_over_agent() {
    let mut t = sample_task();
    assert!(t.request_stop(None, 5));
    assert!(!t.request_stop(Some("again"), 6), "second stop is a no-op");
    t.apply(
        &task_change(TaskStatus::Stopped, "EssentialContainerExited", 9),
        0,
    );
    assert_eq!(t.stop_code.as_deref(), Some(USER_STOP_CODE));
    assert_eq!(t.stopped_reason.as_deref(), Some(DEFAULT_USER_STOP_REASON));
    assert_eq!(t.stopping_at_ms, Some(5));
}

#[test]
fn stopped_task_does_not_move_back() {
    let mut t = sample_task();
    t.apply(&task_change(TaskStatus::Stopped, "TaskFailedToStart", 9), 0);
    t.apply(&task_change(TaskStatus::Running, "", 10), 0);
    assert_eq!(t.last_status, TaskStatus::Stopped);
    assert_eq!(t.started_at_ms, None);
}

#[test]
fn container_changes() {
    let mut t = sample_task();
    let change = AgentChange::Container {
        task_arn: "arn".into(),
        container_name: "app".into(),
        status: ContainerStatus::Stopped,
        exit_code: Some(3),
        reason: "exited".into(),
        runtime_id: "abc".into(),
        at_ms: 1,
        restart_count: 2,
        health: None,
        image_digest: String::new(),
    };
    assert!(t.apply(&change, 0));
    let c = &t.containers[0];
    assert_eq!(
        (c.last_status, c.exit_code),
        (ContainerStatus::Stopped, Some(3))
    );
    assert_eq!(c.runtime_id.as_deref(), Some("abc"));
    let unknown = AgentChange::Container {
        task_arn: "arn".into(),
        container_name: "nope".into(),
        status: ContainerStatus::Running,
        exit_code: None,
        reason: String::new(),
        runtime_id: String::new(),
        at_ms: 1,
        restart_count: 0,
        health: None,
        image_digest: String::new(),
    };
    assert!(!t.apply(&unknown, 0));
    assert_eq!(t.containers[0].restart_count, 2);
}

fn health_change(status: ContainerStatus, health: Option<HealthReport>) -> AgentChange {
    AgentChange::Container {
        task_arn: "arn".into(),
        container_name: "app".into(),
        status,
        exit_code: None,
        reason: String::new(),
        runtime_id: String::new(),
        at_ms: 1,
        restart_count: 0,
        health,
        image_digest: String::new(),
    }
}

fn report(status: HealthStatus, exit_code: i32, output: &str) -> HealthReport {
    HealthReport {
        status,
        checked_at_ms: Some(5_000),
        exit_code: Some(exit_code),
        output: output.into(),
    }
}

#[test]
fn reported_health_is_kept_with_the_time_it_was_applied() {
    let mut t = sample_task();
    assert_eq!(
        container_health_status(&t.containers[0]),
        HealthStatus::Unknown
    );
    t.apply(
        &health_change(
            ContainerStatus::Running,
            Some(report(HealthStatus::Unhealthy, 7, "refused")),
        ),
        9_000,
    );
    let expected = ContainerHealth {
        status: HealthStatus::Unhealthy,
        checked_at_ms: Some(5_000),
        exit_code: Some(7),
        output: "refused".into(),
        received_at_ms: 9_000,
    };
    assert_eq!(t.containers[0].health.as_ref(), Some(&expected));
    // A later change without health keeps the last report (and when it came).
    t.apply(&health_change(ContainerStatus::Stopped, None), 10_000);
    assert_eq!(t.containers[0].last_status, ContainerStatus::Stopped);
    assert_eq!(t.containers[0].health.as_ref(), Some(&expected));
    assert_eq!(
        container_health_status(&t.containers[0]),
        HealthStatus::Unhealthy
    );
}

fn def(name: &str, essential: bool, health_check: bool) -> HealthDef {
    HealthDef {
        name: name.into(),
        essential,
        health_check,
    }
}

#[test]
fn task_health_is_decided_by_the_essential_checked_containers() {
    let mut t = sample_task();
    let mut side = t.containers[0].clone();
    side.name = "side".into();
    t.containers.push(side);
    let set = |t: &mut Task, i: usize, s: Option<HealthStatus>| {
        t.containers[i].health = s.map(|status| ContainerHealth {
            status,
            ..ContainerHealth::default()
        });
    };
    use HealthStatus::*;
    let both = [def("app", true, true), def("side", true, true)];
    assert_eq!(
        task_health_status(&t, &both),
        Unknown,
        "nothing reported yet"
    );
    set(&mut t, 0, Some(Healthy));
    assert_eq!(task_health_status(&t, &both), Unknown, "side not reported");
    set(&mut t, 1, Some(Healthy));
    assert_eq!(task_health_status(&t, &both), Healthy);
    set(&mut t, 1, Some(Unknown));
    assert_eq!(task_health_status(&t, &both), Unknown);
    set(&mut t, 0, Some(Unhealthy));
    assert_eq!(task_health_status(&t, &both), Unhealthy, "UNHEALTHY wins");

    // A non-essential container's health does not count, nor one without a check.
    let side_optional = [def("app", true, true), def("side", false, true)];
    set(&mut t, 0, Some(Healthy));
    set(&mut t, 1, Some(Unhealthy));
    assert_eq!(task_health_status(&t, &side_optional), Healthy);
    let unchecked = [def("app", true, false), def("side", false, true)];
    assert_eq!(task_health_status(&t, &unchecked), Unknown);
    assert_eq!(task_health_status(&t, &[]), Unknown);
}

#[test]
fn unknown_health_statuses_are_unknown() {
    assert_eq!(HealthStatus::parse("HEALTHY"), HealthStatus::Healthy);
    assert_eq!(HealthStatus::parse("UNHEALTHY"), HealthStatus::Unhealthy);
    for s in ["UNKNOWN", "", "STARTING", "healthy"] {
        assert_eq!(HealthStatus::parse(s), HealthStatus::Unknown, "{s:?}");
    }
}

#[test]
fn tasks_recorded_before_health_checks_still_load() {
    let mut v = serde_json::to_value(sample_task()).unwrap();
    v["containers"][0].as_object_mut().unwrap().remove("health");
    let t: Task = serde_json::from_value(v).unwrap();
    assert_eq!(t.containers[0].health, None);
}

#[test]
fn tasks_recorded_before_restart_counts_still_load() {
    let mut v = serde_json::to_value(sample_task()).unwrap();
    v["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("restart_count");
    let t: Task = serde_json::from_value(v).unwrap();
    assert_eq!(t.containers[0].restart_count, 0);
}

fn network(ip: &str) -> TaskNetwork {
    TaskNetwork {
        mode: "bridge".into(),
        private_ipv4: ip.into(),
        prefix_length: 24,
        gateway_ipv4: "10.232.0.1".into(),
        mac_address: "02:00:00:00:00:01".into(),
        bindings: vec![NetworkBinding {
            container_name: "app".into(),
            protocol: "tcp".into(),
            container_port: 80,
            host_port: 49153,
            bind_ip: "0.0.0.0".into(),
        }],
    }
}

#[test]
fn the_reported_network_is_kept_when_a_later_report_has_none() {
    let mut t = sample_task();
    let mut running = task_change(TaskStatus::Running, "", 10);
    if let AgentChange::Task { network: n, .. } = &mut running {
        *n = Some(network("10.232.0.5"));
    }
    t.apply(&running, 0);
    assert_eq!(t.network, Some(network("10.232.0.5")));
    // STOPPED without a network, or with an empty one, keeps it.
    let mut stopped = task_change(TaskStatus::Stopped, "EssentialContainerExited", 20);
    if let AgentChange::Task { network: n, .. } = &mut stopped {
        *n = Some(TaskNetwork::default());
    }
    t.apply(&stopped, 0);
    assert_eq!(t.network, Some(network("10.232.0.5")));
    // A late report for a stopped task changes nothing.
    let mut late = task_change(TaskStatus::Running, "", 30);
    if let AgentChange::Task { network: n, .. } = &mut late {
        *n = Some(network("10.232.0.9"));
    }
    t.apply(&late, 0);
    assert_eq!(t.network.unwrap().private_ipv4, "10.232.0.5");
}

#[test]
fn tasks_recorded_before_networking_still_load() {
    let mut v = serde_json::to_value(sample_task()).unwrap();
    let o = v.as_object_mut().unwrap();
    for key in ["host_ports", "network_mode", "security_groups", "network"] {
        o.remove(key);
    }
    v["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("port_mappings");
    let t: Task = serde_json::from_value(v).unwrap();
    assert!(t.host_ports.is_empty() && t.network.is_none() && t.security_groups.is_empty());
}

#[test]
fn an_orphaned_task_is_stopped_once_with_its_containers() {
    let mut t = sample_task();
    t.last_status = TaskStatus::Running;
    assert!(t.orphan(10));
    assert_eq!(
        (t.last_status, t.desired_status),
        (TaskStatus::Stopped, TaskStatus::Stopped)
    );
    assert_eq!((t.stopping_at_ms, t.stopped_at_ms), (Some(10), Some(10)));
    assert_eq!(t.stopped_reason.as_deref(), Some(ORPHANED_REASON));
    assert!(t
        .containers
        .iter()
        .all(|c| c.last_status == ContainerStatus::Stopped));
    let version = t.version;
    assert!(!t.orphan(20));
    assert_eq!((t.stopped_at_ms, t.version), (Some(10), version));
}
