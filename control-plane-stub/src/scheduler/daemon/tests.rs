use super::*;

fn inst(id: &str) -> DaemonInstance {
    DaemonInstance {
        id: id.into(),
        eligible: true,
        connected: true,
        draining: false,
        other_tasks: 0,
    }
}

fn task(id: &str, deployment: &str, instance: &str, health: TaskHealth) -> DaemonTask {
    DaemonTask {
        id: id.into(),
        deployment_id: deployment.into(),
        instance_id: instance.into(),
        health,
        stopping: false,
        protected: false,
    }
}

fn dep(id: &str, rollout: Rollout) -> DeploymentView {
    DeploymentView {
        id: id.into(),
        rollout,
        failed_tasks: 0,
    }
}

fn plan_of(
    instances: &[DaemonInstance],
    deployments: &[DeploymentView],
    tasks: &[DaemonTask],
    min: u32,
) -> Vec<Action> {
    plan(&DaemonView {
        instances,
        deployments,
        tasks,
        minimum_healthy_percent: min,
        circuit_breaker: None,
    })
}

fn start_on(d: &str, i: &str) -> Action {
    Action::StartOn {
        deployment: d.into(),
        instance: i.into(),
    }
}

fn stop(t: &str, reason: StopReason) -> Action {
    Action::Stop {
        task: t.into(),
        reason,
    }
}

#[test]
fn one_task_per_eligible_connected_instance() {
    let mut off = inst("c");
    off.connected = false;
    let mut no = inst("d");
    no.eligible = false;
    let instances = [inst("a"), inst("b"), off, no];
    assert_eq!(desired_count(&instances), 3);
    let d = [dep("d1", Rollout::InProgress)];
    let a = plan_of(&instances, &d, &[], 0);
    assert_eq!(a, vec![start_on("d1", "a"), start_on("d1", "b")]);
    // Once each has its healthy task the deployment completes; c (disconnected) still counts.
    let tasks = [
        task("t1", "d1", "a", TaskHealth::Healthy),
        task("t2", "d1", "b", TaskHealth::Healthy),
        task("t3", "d1", "c", TaskHealth::Healthy),
    ];
    assert_eq!(
        plan_of(&instances, &d, &tasks, 0),
        vec![Action::Complete {
            deployment: "d1".into()
        }]
    );
}

#[test]
fn a_new_instance_gets_one_and_a_steady_daemon_does_nothing() {
    let d = [dep("d1", Rollout::Completed)];
    let tasks = [task("t1", "d1", "a", TaskHealth::Healthy)];
    assert_eq!(plan_of(&[inst("a")], &d, &tasks, 0), vec![]);
    assert_eq!(
        plan_of(&[inst("a"), inst("new")], &d, &tasks, 0),
        vec![start_on("d1", "new")]
    );
}

#[test]
fn a_deployment_replaces_in_place_old_first_within_the_minimum() {
    let d = [
        dep("d2", Rollout::InProgress),
        dep("d1", Rollout::Completed),
    ];
    let instances = [inst("a"), inst("b"), inst("c"), inst("e")];
    let old: Vec<DaemonTask> = ["a", "b", "c", "e"]
        .iter()
        .map(|i| task(&format!("o-{i}"), "d1", i, TaskHealth::Healthy))
        .collect();
    // minimumHealthyPercent 0: every old task stops at once, nothing starts yet.
    let a = plan_of(&instances, &d, &old, 0);
    assert_eq!(a.len(), 4, "{a:?}");
    assert!(a.iter().all(|x| matches!(
        x,
        Action::Stop {
            reason: StopReason::Replaced,
            ..
        }
    )));
    // 50 %: two of four stay healthy.
    let a = plan_of(&instances, &d, &old, 50);
    assert_eq!(
        a,
        vec![
            stop("o-a", StopReason::Replaced),
            stop("o-b", StopReason::Replaced)
        ]
    );
    // An old task still stopping holds its instance: no start there until it has stopped.
    let mut stopping = old.clone();
    stopping[0].stopping = true;
    let a = plan_of(&instances, &d, &stopping[..1], 0);
    assert!(!a.contains(&start_on("d2", "a")), "{a:?}");
    assert!(
        a.contains(&start_on("d2", "b")),
        "empty instances start at once: {a:?}"
    );
    // Gone: the new one starts.
    let a = plan_of(&[inst("a")], &d, &[], 0);
    assert_eq!(
        a,
        vec![
            start_on("d2", "a"),
            Action::Retire {
                deployment: "d1".into()
            }
        ]
    );
}

#[test]
fn on_a_draining_instance_the_daemon_stops_last() {
    let mut draining = inst("a");
    draining.eligible = false;
    draining.draining = true;
    draining.other_tasks = 2;
    let d = [dep("d1", Rollout::Completed)];
    let tasks = [task("t1", "d1", "a", TaskHealth::Healthy)];
    assert_eq!(plan_of(&[draining.clone()], &d, &tasks, 0), vec![]);
    draining.other_tasks = 0;
    assert_eq!(
        plan_of(&[draining], &d, &tasks, 0),
        vec![stop("t1", StopReason::Draining)]
    );
    assert_eq!(desired_count(&[]), 0);
}

#[test]
fn unhealthy_and_duplicate_tasks_are_replaced_on_their_instance() {
    let d = [dep("d1", Rollout::Completed)];
    let tasks = [
        task("sick", "d1", "a", TaskHealth::Unhealthy),
        task("one", "d1", "b", TaskHealth::Healthy),
        task("two", "d1", "b", TaskHealth::Starting),
    ];
    let a = plan_of(&[inst("a"), inst("b")], &d, &tasks, 0);
    assert_eq!(
        a,
        vec![
            stop("sick", StopReason::Unhealthy),
            stop("two", StopReason::ScaleIn)
        ],
        "the replacement of sick waits until it has stopped"
    );
}

#[test]
fn the_circuit_breaker_counts_against_the_instance_count() {
    let mut d = [
        dep("d2", Rollout::InProgress),
        dep("d1", Rollout::Completed),
    ];
    d[0].failed_tasks = 3;
    let a = plan(&DaemonView {
        instances: &[inst("a")],
        deployments: &d,
        tasks: &[],
        minimum_healthy_percent: 0,
        circuit_breaker: Some(true),
    });
    assert_eq!(
        a,
        vec![Action::Fail {
            deployment: "d2".into(),
            rollback: true
        }]
    );
}

#[test]
fn a_task_on_an_instance_no_longer_listed_stops_and_holds_the_deployment() {
    let actions = plan_of(
        &[inst("a")],
        &[dep("d1", Rollout::InProgress)],
        &[
            task("t-a", "d1", "a", TaskHealth::Healthy),
            task("t-gone", "d1", "gone", TaskHealth::Healthy),
        ],
        0,
    );
    assert_eq!(actions, vec![stop("t-gone", StopReason::ScaleIn)]);
    let mut stopping = task("t-gone", "d1", "gone", TaskHealth::Healthy);
    stopping.stopping = true;
    let actions = plan_of(
        &[inst("a")],
        &[dep("d1", Rollout::InProgress)],
        &[task("t-a", "d1", "a", TaskHealth::Healthy), stopping],
        0,
    );
    assert_eq!(
        actions,
        vec![],
        "already stopping, and not complete until it has"
    );
}
