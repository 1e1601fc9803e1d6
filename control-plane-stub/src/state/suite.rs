//! The store test suite: what every backend must do, written against the `Store` traits only.
//! A backend's tests run it with `store_suite!` and a [`Backend`] that opens that backend's
//! store (SQLite in `sqlite/tests.rs`; PostgreSQL next, issue #23).

use super::*;
use crate::domain::instance::{ActivationCode, Instance, InstanceInfo, RuntimeHealth};
use crate::domain::security::parse_ingress_spec;
use crate::domain::service::{Service, ServiceStatus};
use crate::domain::task::{
    AgentChange, ContainerStatus, EventKind, TaskEvent, TaskStatus, USER_STOP_CODE,
};

/// Opens a backend's store on the same data each time (a reopen sees what was written).
pub(crate) trait Backend {
    fn open(&self) -> Box<dyn Store>;
}

/// One `#[test]` per case of the suite, each on a fresh backend from `$make`.
macro_rules! store_suite {
    ($make:expr) => {
        #[test]
        fn security_groups_persist_and_keep_their_id_when_replaced() {
            $crate::state::suite::security_groups_persist_and_keep_their_id_when_replaced(&$make);
        }
        #[test]
        fn each_applied_change_is_one_event_and_duplicates_none() {
            $crate::state::suite::each_applied_change_is_one_event_and_duplicates_none(&$make);
        }
        #[test]
        fn the_manifest_query_keeps_tasks_being_stopped() {
            $crate::state::suite::the_manifest_query_keeps_tasks_being_stopped(&$make);
        }
        #[test]
        fn payloads_are_renumbered_after_an_agent_that_is_ahead() {
            $crate::state::suite::payloads_are_renumbered_after_an_agent_that_is_ahead(&$make);
        }
        #[test]
        fn instance_state_changes_atomically_and_survives_reopening() {
            $crate::state::suite::instance_state_changes_atomically_and_survives_reopening(&$make);
        }
        #[test]
        fn deregistering_refuses_an_instance_with_tasks_unless_forced() {
            $crate::state::suite::deregistering_refuses_an_instance_with_tasks_unless_forced(
                &$make,
            );
        }
        #[test]
        fn tags_change_atomically_in_order_and_survive_reopening() {
            $crate::state::suite::tags_change_atomically_in_order_and_survive_reopening(&$make);
        }
        #[test]
        fn heartbeats_record_runtime_health() {
            $crate::state::suite::heartbeats_record_runtime_health(&$make);
        }
        #[test]
        fn services_are_created_once_saved_listed_and_replaced_when_inactive() {
            $crate::state::suite::services_are_created_once_saved_listed_and_replaced_when_inactive(
                &$make,
            );
        }
        #[test]
        fn secrets_are_put_listed_found_and_deleted() {
            $crate::state::suite::secrets_are_put_listed_found_and_deleted(&$make);
        }
    };
}
pub(crate) use store_suite;

pub(crate) fn content(rules: &[&str]) -> GroupContent {
    GroupContent {
        description: String::new(),
        ingress: rules
            .iter()
            .map(|r| parse_ingress_spec(r).unwrap())
            .collect(),
    }
}

pub(crate) fn security_groups_persist_and_keep_their_id_when_replaced(backend: &dyn Backend) {
    let store = backend.open();
    let (g, created) = store
        .put_security_group("web", &content(&["tcp:80:0.0.0.0/0"]), 1)
        .unwrap();
    assert!(created);
    let (g2, created) = store
        .put_security_group("web", &content(&["tcp:443:0.0.0.0/0"]), 2)
        .unwrap();
    assert!(!created);
    assert_eq!(
        (g2.id.as_str(), g2.created_at_ms, g2.updated_at_ms),
        (g.id.as_str(), 1, 2)
    );
    drop(store);
    let store = backend.open();
    let by_name = store.get_security_group("web").unwrap().unwrap();
    assert_eq!(
        store.get_security_group(&g.id).unwrap(),
        Some(by_name.clone())
    );
    assert_eq!(by_name.ingress[0].spec(), "tcp:443:0.0.0.0/0");
    assert_eq!(store.list_security_groups().unwrap().len(), 1);
    assert!(store.delete_security_group(&g.id).unwrap());
    assert!(!store.delete_security_group(&g.id).unwrap());
    assert_eq!(store.get_security_group("web").unwrap(), None);
}

pub(crate) fn instance(id: &str) -> Instance {
    Instance {
        id: id.into(),
        cluster: "default".into(),
        secret_sha256: "x".into(),
        revoked: false,
        registered_at_ms: 1,
        last_heartbeat_ms: None,
        last_state_change_seq: 0,
        info: InstanceInfo::default(),
        health: None,
        state: Default::default(),
    }
}

/// Instance `i1` with task `t1` (container `app`) placed on it.
pub(crate) fn with_task(store: &dyn Store) -> Task {
    let code = ActivationCode {
        cluster: "default".into(),
        uses_left: 5,
        expires_at_ms: i64::MAX,
        revoked: false,
    };
    store.insert_activation("code", &code, 1).unwrap();
    store
        .register_with_activation("code", &instance("i1"), 1)
        .unwrap()
        .unwrap();
    let t = crate::domain::task::tests::sample_task();
    store
        .insert_tasks(std::slice::from_ref(&t), &|_, _| Vec::new())
        .unwrap();
    t
}

pub(crate) fn task_change(status: TaskStatus, at_ms: i64) -> AgentChange {
    AgentChange::Task {
        task_arn: "arn:aws:ecs:us-east-1:0:task/default/t1".into(),
        status,
        stop_code: String::new(),
        stopped_reason: String::new(),
        at_ms,
        network: None,
        pull: None,
    }
}

pub(crate) fn container_change(
    name: &str,
    status: ContainerStatus,
    exit: Option<i32>,
) -> AgentChange {
    AgentChange::Container {
        task_arn: "t1".into(),
        container_name: name.into(),
        status,
        exit_code: exit,
        reason: "why".into(),
        runtime_id: String::new(),
        at_ms: 5,
        restart_count: 0,
        health: None,
        image_digest: String::new(),
    }
}

pub(crate) fn each_applied_change_is_one_event_and_duplicates_none(backend: &dyn Backend) {
    let store = backend.open();
    with_task(&*store);
    let seqs = |store: &dyn Store| -> Vec<u64> {
        store
            .task_events("t1")
            .unwrap()
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect()
    };
    assert_eq!(seqs(&*store), Vec::<u64>::new());
    let apply = |seq, c: &AgentChange, now| store.apply_state_change("i1", seq, c, now).unwrap();
    let running = container_change("app", ContainerStatus::Running, None);
    assert_eq!(apply(1, &running, 100), ChangeOutcome::Applied);
    assert_eq!(apply(1, &running, 101), ChangeOutcome::Duplicate);
    assert_eq!(
        apply(2, &task_change(TaskStatus::Running, 7), 102),
        ChangeOutcome::Applied
    );
    // A resent older sequence, even with other content, is a duplicate: no event.
    assert_eq!(
        apply(1, &task_change(TaskStatus::Stopped, 8), 103),
        ChangeOutcome::Duplicate
    );
    // Ignored changes (no such container) are not events.
    assert!(matches!(
        apply(
            3,
            &container_change("nope", ContainerStatus::Running, None),
            104
        ),
        ChangeOutcome::Ignored(_)
    ));
    // Sequences may skip (the agent's other tasks); events keep the agent's numbers.
    let stopped = container_change("app", ContainerStatus::Stopped, Some(137));
    assert_eq!(apply(5, &stopped, 105), ChangeOutcome::Applied);
    assert_eq!(
        apply(6, &task_change(TaskStatus::Stopped, 9), 106),
        ChangeOutcome::Applied
    );
    assert_eq!(apply(6, &stopped, 107), ChangeOutcome::Duplicate);
    assert_eq!(seqs(&*store), vec![1, 2, 5, 6]);

    drop(store);
    let store = backend.open();
    let events = store.task_events("t1").unwrap().unwrap();
    assert_eq!(seqs(&*store), vec![1, 2, 5, 6]);
    assert_eq!(
        events[2],
        TaskEvent {
            seq: 5,
            instance_id: "i1".into(),
            kind: EventKind::Container,
            container_name: Some("app".into()),
            status: "STOPPED".into(),
            exit_code: Some(137),
            reason: "why".into(),
            at_ms: 5,
            received_at_ms: 105,
        }
    );
    assert_eq!(
        (
            events[1].kind,
            events[1].status.as_str(),
            events[1].at_ms,
            events[1].received_at_ms
        ),
        (EventKind::Task, "RUNNING", 7, 102)
    );
    assert_eq!(store.task_events("ghost").unwrap(), None);
}

pub(crate) fn the_manifest_query_keeps_tasks_being_stopped(backend: &dyn Backend) {
    let store = backend.open();
    with_task(&*store);
    let not_stopped = || {
        store
            .list_tasks(&TaskFilter {
                instance_id: Some("i1".into()),
                not_stopped: true,
                ..TaskFilter::default()
            })
            .unwrap()
            .iter()
            .map(|t| t.id.clone())
            .collect::<Vec<_>>()
    };
    store
        .apply_state_change("i1", 1, &task_change(TaskStatus::Running, 1), 1)
        .unwrap();
    store
        .stop_task("t1", USER_STOP_CODE, None, 2, &|_, _| Vec::new())
        .unwrap();
    let t = store.get_task("t1").unwrap().unwrap();
    assert_eq!(
        (t.desired_status, t.last_status),
        (TaskStatus::Stopped, TaskStatus::Running)
    );
    assert_eq!(not_stopped(), vec!["t1"]);
    store
        .apply_state_change("i1", 2, &task_change(TaskStatus::Stopped, 3), 3)
        .unwrap();
    assert_eq!(not_stopped(), Vec::<String>::new());
}

pub(crate) fn payloads_are_renumbered_after_an_agent_that_is_ahead(backend: &dyn Backend) {
    let store = backend.open();
    with_task(&*store);
    // with_task placed t1: one payload queued.
    store
        .stop_task("t1", USER_STOP_CODE, None, 2, &|seq, _| vec![seq as u8])
        .unwrap();
    let queued = |store: &dyn Store| -> Vec<u64> {
        store
            .outbox_after("i1", 0)
            .unwrap()
            .iter()
            .map(|(seq, _)| *seq)
            .collect()
    };
    let before = queued(&*store);
    assert_eq!(before.len(), 2);
    // An agent that has recorded no more than we sent: nothing to do.
    assert_eq!(store.rebase_payloads("i1", 0).unwrap(), None);
    assert_eq!(queued(&*store), before);
    // This store was restored from a backup: the agent has recorded up to 40.
    assert_eq!(store.rebase_payloads("i1", 40).unwrap(), Some(2));
    assert_eq!(queued(&*store), vec![41, 42]);
    // The next payload follows them: the store is no longer behind.
    assert_eq!(store.rebase_payloads("i1", 40).unwrap(), None);
}

pub(crate) fn heartbeats_record_runtime_health(backend: &dyn Backend) {
    let store = backend.open();
    with_task(&*store);
    assert_eq!(store.get_instance("i1").unwrap().unwrap().health, None);
    assert_eq!(store.record_heartbeat("ghost", true, 1).unwrap(), None);
    store.record_heartbeat("i1", true, 10).unwrap();
    store.record_heartbeat("i1", true, 20).unwrap();
    let h = store.record_heartbeat("i1", false, 30).unwrap().unwrap();
    assert_eq!((h.updated_at_ms, h.changed_at_ms), (30, 30));
    store.record_heartbeat("i1", false, 40).unwrap();
    drop(store);
    let store = backend.open();
    let i = store.get_instance("i1").unwrap().unwrap();
    assert_eq!(i.last_heartbeat_ms, Some(40));
    assert_eq!(
        i.health,
        Some(RuntimeHealth {
            containerd_healthy: false,
            updated_at_ms: 40,
            changed_at_ms: 30
        })
    );
}

pub(crate) fn instance_state_changes_atomically_and_survives_reopening(backend: &dyn Backend) {
    use crate::domain::instance::{InstanceState, InstanceStatus};
    let store = backend.open();
    with_task(&*store);
    assert_eq!(
        store.get_instance("i1").unwrap().unwrap().state,
        InstanceState::default()
    );
    assert_eq!(
        store
            .modify_instance_state("ghost", &mut |_| Ok(()))
            .unwrap(),
        None
    );
    let changed = store
        .modify_instance_state("i1", &mut |s| {
            s.status = InstanceStatus::Draining;
            s.attributes.push(("rack".into(), "r1".into()));
            Ok(())
        })
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(changed.status, InstanceStatus::Draining);
    // A refusal writes nothing.
    let refused = store
        .modify_instance_state("i1", &mut |s| {
            s.attributes.clear();
            Err("no".into())
        })
        .unwrap()
        .unwrap();
    assert_eq!(refused, Err("no".to_string()));
    // Several instances change together or not at all.
    store
        .register_with_activation("code", &instance("i2"), 1)
        .unwrap()
        .unwrap();
    let refused = store
        .modify_instance_states(&["i2", "i1"], &mut |id, s| {
            s.attributes.push(("rack".into(), "r2".into()));
            if id == "i1" {
                return Err("full".into());
            }
            Ok(())
        })
        .unwrap()
        .unwrap();
    assert_eq!(refused, Err("full".to_string()));
    assert!(store
        .get_instance("i2")
        .unwrap()
        .unwrap()
        .state
        .attributes
        .is_empty());
    assert_eq!(
        store
            .modify_instance_states(&["i2", "ghost"], &mut |_, s| {
                s.status = InstanceStatus::Draining;
                Ok(())
            })
            .unwrap(),
        None
    );
    assert_eq!(
        store.get_instance("i2").unwrap().unwrap().status(),
        "ACTIVE"
    );
    // The agent's own report does not touch it.
    store
        .update_instance_info("i1", &InstanceInfo::default())
        .unwrap();
    drop(store);
    let store = backend.open();
    let i = store.get_instance("i1").unwrap().unwrap();
    assert_eq!(i.state, changed);
    assert_eq!(i.status(), "DRAINING");
    assert!(!i.takes_tasks());
}

pub(crate) fn deregistering_refuses_an_instance_with_tasks_unless_forced(backend: &dyn Backend) {
    let store = backend.open();
    let t = with_task(&*store);
    assert_eq!(
        store.deregister_instance("ghost", true, 5).unwrap(),
        Deregistration::NoSuchInstance
    );
    assert_eq!(
        store.deregister_instance("i1", false, 5).unwrap(),
        Deregistration::HasTasks(1)
    );
    assert!(!store.get_instance("i1").unwrap().unwrap().revoked);
    let Deregistration::Done(orphaned) = store.deregister_instance("i1", true, 5).unwrap() else {
        panic!("forced deregistration refused");
    };
    assert_eq!(orphaned.len(), 1);
    assert_eq!(orphaned[0].id, t.id);
    drop(store);
    let store = backend.open();
    let i = store.get_instance("i1").unwrap().unwrap();
    assert_eq!(i.status(), "INACTIVE");
    let stored = store.get_task(&t.id).unwrap().unwrap();
    assert_eq!(stored.last_status, TaskStatus::Stopped);
    assert_eq!(stored.stopped_at_ms, Some(5));
    assert_eq!(
        stored.stopped_reason.as_deref(),
        Some(crate::domain::task::ORPHANED_REASON)
    );
    // Nothing left to orphan the second time.
    assert_eq!(
        store.deregister_instance("i1", false, 6).unwrap(),
        Deregistration::Done(Vec::new())
    );
}

pub(crate) fn tags_change_atomically_in_order_and_survive_reopening(backend: &dyn Backend) {
    use crate::domain::tags::Tag;
    let store = backend.open();
    assert_eq!(store.tags_of("task/default/t1").unwrap(), Vec::new());
    store
        .set_tags(&[
            (
                "task/default/t1".into(),
                vec![Tag::new("b", "1"), Tag::new("a", "2")],
            ),
            ("task/default/t2".into(), vec![Tag::new("c", "3")]),
        ])
        .unwrap();
    let changed = store
        .change_tags("task/default/t1", &mut |t| {
            t.push(Tag::new("z", ""));
            Ok(())
        })
        .unwrap()
        .unwrap();
    assert_eq!(
        changed,
        vec![Tag::new("b", "1"), Tag::new("a", "2"), Tag::new("z", "")]
    );
    let refused = store
        .change_tags("task/default/t1", &mut |t| {
            t.clear();
            Err("no".into())
        })
        .unwrap();
    assert_eq!(refused, Err("no".to_string()));
    // Emptied, a resource has no tags left behind.
    store
        .change_tags("task/default/t2", &mut |t| {
            t.clear();
            Ok(())
        })
        .unwrap()
        .unwrap();
    drop(store);
    let store = backend.open();
    assert_eq!(store.tags_of("task/default/t1").unwrap(), changed);
    assert_eq!(store.tags_of("task/default/t2").unwrap(), Vec::new());
}

pub(crate) fn login(username: &str, password: &str) -> Login {
    Login {
        username: username.into(),
        password: password.into(),
    }
}

pub(crate) fn secrets_are_put_listed_found_and_deleted(backend: &dyn Backend) {
    let store = backend.open();
    let arn = "arn:aws:secretsmanager:r:a:secret:reg";
    let (info, created) = store.put_secret("reg", arn, &login("u", "p1"), 10).unwrap();
    assert!(created);
    assert_eq!(
        info,
        SecretInfo {
            name: "reg".into(),
            arn: arn.into(),
            created_at_ms: 10
        }
    );
    // Replacing keeps the ARN and creation time, and changes the login.
    let (again, created) = store
        .put_secret("reg", "ignored", &login("u2", "p2"), 20)
        .unwrap();
    assert!(!created);
    assert_eq!(again, info);
    store
        .put_secret(
            "a/other",
            "arn:aws:secretsmanager:r:a:secret:a/other",
            &login("x", "y"),
            30,
        )
        .unwrap();
    drop(store);
    let store = backend.open();
    assert_eq!(
        store.get_secret("reg").unwrap(),
        Some((info.clone(), login("u2", "p2")))
    );
    assert_eq!(store.get_secret(arn).unwrap().unwrap().0, info);
    assert_eq!(store.get_secret("ghost").unwrap(), None);
    let names: Vec<String> = store
        .list_secrets()
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["a/other", "reg"]);
    assert!(store.delete_secret("reg").unwrap());
    assert!(!store.delete_secret("reg").unwrap());
    assert_eq!(store.get_secret("reg").unwrap(), None);
    assert_eq!(store.list_secrets().unwrap().len(), 1);
}

pub(crate) fn service(name: &str, desired: u32) -> Service {
    Service {
        desired_count: desired,
        ..crate::domain::service::test_service(name)
    }
}

pub(crate) fn services_are_created_once_saved_listed_and_replaced_when_inactive(
    backend: &dyn Backend,
) {
    let store = backend.open();
    store.ensure_cluster("default", 1).unwrap();
    assert_eq!(store.insert_service(&service("web", 2)).unwrap(), None);
    assert_eq!(store.insert_service(&service("api", 1)).unwrap(), None);
    // A second create of an ACTIVE name writes nothing and returns the first.
    let again = store.insert_service(&service("web", 5)).unwrap().unwrap();
    assert_eq!(again.desired_count, 2);
    let mut web = store.get_service("default", "web").unwrap().unwrap();
    web.desired_count = 3;
    web.record("(service web) has reached a steady state.".into(), 7);
    store.save_service(&web).unwrap();
    drop(store);
    let store = backend.open();
    assert_eq!(
        store.get_service("default", "web").unwrap(),
        Some(web.clone())
    );
    let names: Vec<String> = store
        .list_services("default")
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["api", "web"]);
    assert_eq!(store.get_service("default", "nope").unwrap(), None);
    // A replace that read an older version writes nothing.
    let stale = service("web", 2);
    let mut bigger = web.clone();
    bigger.desired_count = 9;
    assert!(!store.replace_service(&stale, &bigger).unwrap());
    assert_eq!(
        store.get_service("default", "web").unwrap(),
        Some(web.clone())
    );
    assert!(store.replace_service(&web, &bigger).unwrap());
    assert_eq!(store.get_service("default", "web").unwrap(), Some(bigger));
    store.save_service(&web).unwrap();
    // INACTIVE services leave the controller's list, and their name can be used again.
    web.status = ServiceStatus::Inactive;
    store.save_service(&web).unwrap();
    let live: Vec<String> = store
        .live_services()
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(live, ["api"]);
    assert_eq!(store.insert_service(&service("web", 4)).unwrap(), None);
    assert_eq!(
        store
            .get_service("default", "web")
            .unwrap()
            .unwrap()
            .desired_count,
        4
    );
}
