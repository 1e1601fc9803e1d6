use super::*;

fn deployment(id: &str, rollout: Rollout) -> DeploymentView {
    DeploymentView {
        id: id.into(),
        rollout,
        failed_tasks: 0,
    }
}

fn task(id: &str, deployment: &str, health: TaskHealth) -> TaskView {
    TaskView {
        id: id.into(),
        deployment_id: deployment.into(),
        health,
        stopping: false,
        protected: false,
        draining: false,
        spread: Vec::new(),
    }
}

fn tasks(deployment: &str, health: TaskHealth, n: usize) -> Vec<TaskView> {
    (0..n)
        .map(|i| task(&format!("{deployment}-{i}"), deployment, health))
        .collect()
}

fn config(min: u32, max: u32) -> DeploymentConfiguration {
    DeploymentConfiguration {
        minimum_healthy_percent: min,
        maximum_percent: max,
        circuit_breaker: None,
    }
}

fn plan_of(
    desired: u32,
    config: DeploymentConfiguration,
    deployments: &[DeploymentView],
    tasks: &[TaskView],
) -> Vec<Action> {
    plan(&ServiceView {
        desired_count: desired,
        config,
        deployments,
        tasks,
    })
}

fn start(deployment: &str, count: u32) -> Action {
    Action::Start {
        deployment: deployment.into(),
        count,
    }
}

fn stop(task: &str, reason: StopReason) -> Action {
    Action::Stop {
        task: task.into(),
        reason,
    }
}

/// A new deployment `new` over an old one with `old` healthy tasks.
fn rolling(new: Vec<TaskView>, old: usize) -> (Vec<DeploymentView>, Vec<TaskView>) {
    let deployments = vec![
        deployment("new", Rollout::InProgress),
        deployment("old", Rollout::Completed),
    ];
    let mut all = new;
    all.extend(tasks("old", TaskHealth::Healthy, old));
    (deployments, all)
}

#[test]
fn minimum_rounds_up_and_maximum_rounds_down() {
    assert_eq!(minimum_healthy(3, 50), 2); // 1.5
    assert_eq!(minimum_healthy(4, 50), 2);
    assert_eq!(minimum_healthy(3, 100), 3);
    assert_eq!(minimum_healthy(3, 0), 0);
    assert_eq!(maximum_tasks(3, 150), 4); // 4.5
    assert_eq!(maximum_tasks(3, 200), 6);
    assert_eq!(maximum_tasks(1, 150), 1);
    assert_eq!(maximum_tasks(0, 200), 0);
}

#[test]
fn the_circuit_breaker_threshold_is_half_the_desired_count_within_3_and_200() {
    assert_eq!(failure_threshold(0), 3);
    assert_eq!(failure_threshold(1), 3);
    assert_eq!(failure_threshold(7), 4);
    assert_eq!(failure_threshold(10), 5);
    assert_eq!(failure_threshold(399), 200);
    assert_eq!(failure_threshold(1000), 200);
}

#[test]
fn windows_that_cannot_make_progress_are_refused() {
    for (min, max) in [(0, 100), (50, 200), (100, 200), (50, 100), (0, 200)] {
        assert_eq!(validate(&config(min, max), 3), Ok(()), "{min}/{max}");
    }
    let err = validate(&config(100, 100), 3).unwrap_err();
    assert!(
        err.contains("could neither start a new task nor stop an old one"),
        "{err}"
    );
    // 150 % of one task is still one task.
    assert!(validate(&config(100, 150), 1).is_err());
    assert!(validate(&config(100, 150), 2).is_ok());
    assert!(validate(&config(101, 200), 3)
        .unwrap_err()
        .contains("minimumHealthyPercent: 101"));
    assert!(validate(&config(0, 50), 3)
        .unwrap_err()
        .contains("maximumPercent: 50"));
    // A service scaled to zero has nothing to roll.
    assert_eq!(validate(&config(100, 100), 0), Ok(()));
}

#[test]
fn a_new_service_starts_its_desired_count() {
    let d = [deployment("d1", Rollout::InProgress)];
    assert_eq!(plan_of(3, config(100, 200), &d, &[]), [start("d1", 3)]);
    // Within the maximum even when the desired count is large.
    assert_eq!(plan_of(3, config(0, 100), &d, &[]), [start("d1", 3)]);
}

#[test]
fn a_deployment_completes_when_every_desired_task_is_healthy() {
    let d = [deployment("d1", Rollout::InProgress)];
    let starting = tasks("d1", TaskHealth::Starting, 3);
    assert_eq!(plan_of(3, config(100, 200), &d, &starting), []);
    let healthy = tasks("d1", TaskHealth::Healthy, 3);
    assert_eq!(
        plan_of(3, config(100, 200), &d, &healthy),
        [Action::Complete {
            deployment: "d1".into()
        }]
    );
    // Once completed, a steady service needs nothing.
    let done = [deployment("d1", Rollout::Completed)];
    assert_eq!(plan_of(3, config(100, 200), &done, &healthy), []);
}

#[test]
fn rolling_100_200_starts_all_new_then_stops_the_old_once_healthy() {
    let (d, t) = rolling(Vec::new(), 3);
    assert_eq!(plan_of(3, config(100, 200), &d, &t), [start("new", 3)]);
    // New ones starting: nothing old may stop yet (3 healthy is the minimum).
    let (d, t) = rolling(tasks("new", TaskHealth::Starting, 3), 3);
    assert_eq!(plan_of(3, config(100, 200), &d, &t), []);
    // Two new healthy: two old may go.
    let mut new = tasks("new", TaskHealth::Healthy, 2);
    new.push(task("new-2", "new", TaskHealth::Starting));
    let (d, t) = rolling(new, 3);
    assert_eq!(
        plan_of(3, config(100, 200), &d, &t),
        [
            stop("old-0", StopReason::Replaced),
            stop("old-1", StopReason::Replaced)
        ]
    );
    // The old ones gone: complete, and the old deployment retires.
    let d = [
        deployment("new", Rollout::InProgress),
        deployment("old", Rollout::Completed),
    ];
    let t = tasks("new", TaskHealth::Healthy, 3);
    assert_eq!(
        plan_of(3, config(100, 200), &d, &t),
        [
            Action::Complete {
                deployment: "new".into()
            },
            Action::Retire {
                deployment: "old".into()
            }
        ]
    );
}

#[test]
fn rolling_0_100_stops_old_tasks_first() {
    let (d, t) = rolling(Vec::new(), 3);
    assert_eq!(
        plan_of(3, config(0, 100), &d, &t),
        [
            stop("old-0", StopReason::Replaced),
            stop("old-1", StopReason::Replaced),
            stop("old-2", StopReason::Replaced)
        ]
    );
    // While they are stopping they still hold their places: nothing starts.
    let (d, mut t) = rolling(Vec::new(), 3);
    t.iter_mut().for_each(|t| t.stopping = true);
    assert_eq!(plan_of(3, config(0, 100), &d, &t), []);
}

#[test]
fn rolling_50_200_keeps_half_healthy() {
    let (d, t) = rolling(Vec::new(), 4);
    assert_eq!(
        plan_of(4, config(50, 200), &d, &t),
        [
            start("new", 4),
            stop("old-0", StopReason::Replaced),
            stop("old-1", StopReason::Replaced)
        ]
    );
    // 50/150 with 4: 6 at most, so 2 new start while 2 old stop.
    let (d, t) = rolling(Vec::new(), 4);
    assert_eq!(
        plan_of(4, config(50, 150), &d, &t),
        [
            start("new", 2),
            stop("old-0", StopReason::Replaced),
            stop("old-1", StopReason::Replaced)
        ]
    );
}

#[test]
fn unhealthy_tasks_are_replaced_and_old_starting_ones_go_at_once() {
    let d = [deployment("d1", Rollout::Completed)];
    let mut t = tasks("d1", TaskHealth::Healthy, 3);
    t[1].health = TaskHealth::Unhealthy;
    assert_eq!(
        plan_of(3, config(100, 200), &d, &t),
        [stop("d1-1", StopReason::Unhealthy), start("d1", 1)]
    );
    // At 100 % maximum the replacement waits for the stop.
    assert_eq!(
        plan_of(3, config(0, 100), &d, &t),
        [stop("d1-1", StopReason::Unhealthy)]
    );
    let (d, mut t) = rolling(Vec::new(), 2);
    t[0].health = TaskHealth::Starting;
    assert_eq!(
        plan_of(2, config(100, 200), &d, &t),
        [start("new", 2), stop("old-0", StopReason::Replaced)]
    );
}

#[test]
fn scale_in_stops_the_newest_not_yet_healthy_first_and_never_a_protected_task() {
    let d = [deployment("d1", Rollout::Completed)];
    let mut t = tasks("d1", TaskHealth::Healthy, 4);
    t[1].health = TaskHealth::Starting;
    assert_eq!(
        plan_of(2, config(100, 200), &d, &t),
        [
            stop("d1-1", StopReason::ScaleIn),
            stop("d1-3", StopReason::ScaleIn)
        ]
    );
    t[3].protected = true;
    assert_eq!(
        plan_of(2, config(100, 200), &d, &t),
        [
            stop("d1-1", StopReason::ScaleIn),
            stop("d1-2", StopReason::ScaleIn)
        ]
    );
    // Scale up: only the missing ones.
    let t = tasks("d1", TaskHealth::Healthy, 3);
    assert_eq!(plan_of(6, config(100, 200), &d, &t), [start("d1", 3)]);
}

#[test]
fn scale_in_keeps_the_service_balanced_over_its_spread_keys() {
    let d = [deployment("d1", Rollout::Completed)];
    // Zones a, a, a, b, b, c on instances i1, i1, i2, i3, i3, i4 (oldest first).
    let at = [
        ("a", "i1"),
        ("a", "i1"),
        ("a", "i2"),
        ("b", "i3"),
        ("b", "i3"),
        ("c", "i4"),
    ];
    let t: Vec<TaskView> = at
        .iter()
        .enumerate()
        .map(|(i, (zone, instance))| {
            let mut v = task(&format!("t{i}"), "d1", TaskHealth::Healthy);
            v.spread = vec![zone.to_string(), instance.to_string()];
            v
        })
        .collect();
    // To 3: zone a is the most crowded, and in it instance i1 (its newest task, t1); then a
    // and b tie at two, i3 holding two: b's newest on i3 (t4); then a again (i1 and i2 tie at
    // one each: the newest, t2). One task is left in each zone.
    assert_eq!(
        plan_of(3, config(100, 200), &d, &t),
        [
            stop("t1", StopReason::ScaleIn),
            stop("t4", StopReason::ScaleIn),
            stop("t2", StopReason::ScaleIn),
        ]
    );
}

#[test]
fn the_circuit_breaker_fails_a_deployment_at_its_threshold() {
    let mut cfg = config(100, 200);
    cfg.circuit_breaker = Some(CircuitBreaker { rollback: true });
    let mut d = [
        deployment("new", Rollout::InProgress),
        deployment("old", Rollout::Completed),
    ];
    let t = tasks("old", TaskHealth::Healthy, 3);
    d[0].failed_tasks = 2;
    assert_eq!(plan_of(3, cfg, &d, &t), [start("new", 3)]);
    d[0].failed_tasks = 3;
    assert_eq!(
        plan_of(3, cfg, &d, &t),
        [Action::Fail {
            deployment: "new".into(),
            rollback: true
        }]
    );
    // Without the breaker the deployment keeps trying.
    assert_eq!(plan_of(3, config(100, 200), &d, &t), [start("new", 3)]);
    // A failed deployment (no rollback) starts nothing more and keeps the old tasks.
    d[0].rollout = Rollout::Failed;
    assert_eq!(plan_of(3, cfg, &d, &t), []);
}

#[test]
fn throttle_waits_from_the_third_failure_doubling_up_to_the_cap() {
    let settings = ThrottleSettings {
        after_failures: 3,
        base_ms: 1_000,
        max_ms: 5_000,
    };
    let (b, waits) = throttle(Backoff::default(), 2, false, 0, &settings);
    assert!(!waits && !b.holds_starts(0), "two failures: no wait yet");
    let (b, waits) = throttle(b, 1, false, 10, &settings);
    assert!(waits);
    assert_eq!(b.until_ms, 1_010);
    assert!(b.holds_starts(1_009) && !b.holds_starts(1_010));
    let (b, _) = throttle(b, 1, false, 2_000, &settings);
    assert_eq!(b.until_ms, 4_000, "doubled");
    let (b, _) = throttle(b, 1, false, 5_000, &settings);
    assert_eq!(b.until_ms, 9_000);
    let (b, _) = throttle(b, 10, false, 10_000, &settings);
    assert_eq!(b.until_ms, 15_000, "capped");
    // A pass with nothing new keeps the wait; a healthy task once the wait is over ends it.
    assert_eq!(throttle(b, 0, false, 11_000, &settings).0, b);
    assert_eq!(
        throttle(b, 0, true, 11_000, &settings).0,
        b,
        "not while waiting"
    );
    assert_eq!(
        throttle(b, 0, true, 15_000, &settings).0,
        Backoff::default()
    );
}

#[test]
fn a_failed_deployment_stays_listed_until_its_replacement_completes() {
    let tasks = [task("n1", "new", TaskHealth::Starting)];
    let rolling = [
        deployment("new", Rollout::InProgress),
        deployment("bad", Rollout::Failed),
    ];
    let view = ServiceView {
        desired_count: 1,
        config: DeploymentConfiguration::default(),
        deployments: &rolling,
        tasks: &tasks,
    };
    assert!(!plan(&view)
        .iter()
        .any(|a| matches!(a, Action::Retire { .. })));
    let done = [
        deployment("new", Rollout::Completed),
        deployment("bad", Rollout::Failed),
    ];
    let view = ServiceView {
        deployments: &done,
        ..view
    };
    assert!(plan(&view).contains(&Action::Retire {
        deployment: "bad".into()
    }));
}

/// Three healthy tasks, one instance draining two of them: 100/200 starts both replacements at
/// once, stops the draining ones only as the replacements turn healthy, never below 3 healthy.
#[test]
fn tasks_on_a_draining_instance_move_within_the_minimum_and_maximum() {
    let d = [deployment("d1", Rollout::Completed)];
    let mut ts = tasks("d1", TaskHealth::Healthy, 3);
    ts[0].draining = true;
    ts[1].draining = true;
    let a = plan_of(3, config(100, 200), &d, &ts);
    assert_eq!(
        a,
        vec![start("d1", 2)],
        "replacements first, nothing stopped"
    );
    // The replacements are starting: still nothing to stop.
    ts.extend(
        tasks("d1-new", TaskHealth::Starting, 2)
            .into_iter()
            .map(|mut t| {
                t.deployment_id = "d1".into();
                t
            }),
    );
    assert_eq!(plan_of(3, config(100, 200), &d, &ts), vec![]);
    // One replacement healthy: one draining task may go.
    ts[3].health = TaskHealth::Healthy;
    assert_eq!(
        plan_of(3, config(100, 200), &d, &ts),
        vec![stop("d1-0", StopReason::Draining)]
    );
    // A draining task not yet healthy stops at once.
    let mut pending = tasks("d1", TaskHealth::Healthy, 2);
    pending.push(task("p", "d1", TaskHealth::Starting));
    pending[2].draining = true;
    let a = plan_of(3, config(100, 200), &d, &pending);
    assert!(a.contains(&stop("p", StopReason::Draining)), "{a:?}");
    assert!(a.contains(&start("d1", 1)), "{a:?}");
    // 50/100: no room above the desired count, so one goes first (3 * 50% = 2 stay healthy).
    let mut tight = tasks("d1", TaskHealth::Healthy, 3);
    tight[0].draining = true;
    assert_eq!(
        plan_of(3, config(50, 100), &d, &tight),
        vec![stop("d1-0", StopReason::Draining)]
    );
}
