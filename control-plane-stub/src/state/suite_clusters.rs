//! The store suite's cases for clusters, task definition revisions, account settings and the
//! audit log
//! (`cluster_suite!`), apart from `suite.rs` so each file stays readable; they share its
//! helpers and its [`Backend`].

use super::suite::*;
use crate::domain::audit::AuditEvent;
use crate::domain::cluster::{
    ClusterConfig, ClusterContents, ClusterSetting, ClusterStatus, DeleteRefusal,
};
use crate::domain::instance::ActivationCode;
use crate::domain::settings::{AccountSetting, SettingName};
use crate::domain::tags::Tag;
use crate::domain::taskdef::TaskDefinitionStatus;

/// One `#[test]` per case, each on a fresh backend from `$make` (as `store_suite!`).
macro_rules! cluster_suite {
    ($make:expr) => {
        #[test]
        fn clusters_are_deleted_when_empty_and_created_again() {
            $crate::state::suite_clusters::clusters_are_deleted_when_empty_and_created_again(
                &$make,
            );
        }
        #[test]
        fn task_definitions_are_deleted_once_inactive_and_families_listed() {
            $crate::state::suite_clusters::task_definitions_are_deleted_once_inactive_and_families_listed(
                &$make,
            );
        }
        #[test]
        fn account_settings_are_put_replaced_listed_and_deleted() {
            $crate::state::suite_clusters::account_settings_are_put_replaced_listed_and_deleted(&$make);
        }
        #[test]
        fn audit_records_are_appended_in_order_and_paged() {
            $crate::state::suite_clusters::audit_records_are_appended_in_order_and_paged(&$make);
        }
    };
}
pub(crate) use cluster_suite;

pub(crate) fn clusters_are_deleted_when_empty_and_created_again(backend: &dyn Backend) {
    let store = backend.open();
    assert!(store.ensure_cluster("empty", 1).unwrap());
    let seen = std::cell::Cell::new(None);
    let record = store
        .deactivate_cluster("empty", &|c| {
            seen.set(Some(*c));
            None
        })
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(seen.get(), Some(ClusterContents::default()));
    assert_eq!(record.status, ClusterStatus::Inactive);
    assert!(!store.cluster_exists("empty").unwrap());
    assert!(!store
        .list_clusters()
        .unwrap()
        .contains(&"empty".to_string()));
    // Deleted is not missing: still described, and first use at a restart leaves it deleted.
    assert!(!store.ensure_cluster("empty", 2).unwrap());
    assert_eq!(
        store.get_cluster("empty").unwrap().map(|c| c.status),
        Some(ClusterStatus::Inactive)
    );
    assert_eq!(store.deactivate_cluster("empty", &|_| None).unwrap(), None);
    assert_eq!(store.deactivate_cluster("never", &|_| None).unwrap(), None);
    assert_eq!(store.get_cluster("never").unwrap(), None);
    // Created again: ACTIVE, as new.
    // Created again: ACTIVE, as new, with the new configuration and none of the old tags.
    store
        .set_tags(&[(
            "cluster/empty".into(),
            vec![Tag {
                key: "team".into(),
                value: "a".into(),
            }],
        )])
        .unwrap();
    let config = ClusterConfig {
        settings: vec![ClusterSetting {
            name: "containerInsights".into(),
            value: "enabled".into(),
        }],
        ..Default::default()
    };
    let (again, created) = store.create_cluster("empty", 5, &config).unwrap();
    assert!(created);
    assert_eq!(
        (again.status, again.created_at_ms, &again.config),
        (ClusterStatus::Active, 5, &config)
    );
    assert_eq!(store.tags_of("cluster/empty").unwrap(), vec![]);
    let (same, created) = store
        .create_cluster("empty", 9, &ClusterConfig::default())
        .unwrap();
    assert!(!created);
    assert_eq!((same.created_at_ms, same.config), (5, config.clone()));
    assert!(store.cluster_exists("empty").unwrap());

    // A configuration change is all or nothing, and only on an ACTIVE cluster.
    let refused = store
        .change_cluster_config("empty", &mut |c| {
            c.settings.clear();
            Err("no".into())
        })
        .unwrap();
    assert_eq!(refused, Some(Err("no".into())));
    assert_eq!(store.get_cluster("empty").unwrap().unwrap().config, config);
    let changed = store
        .change_cluster_config("empty", &mut |c| {
            c.service_connect_namespace = Some("lab".into());
            Ok(())
        })
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        changed.config.service_connect_namespace.as_deref(),
        Some("lab")
    );
    assert_eq!(
        store.get_cluster("empty").unwrap().unwrap().config,
        changed.config
    );
    assert_eq!(
        store
            .change_cluster_config("never", &mut |_| Ok(()))
            .unwrap(),
        None
    );

    // What is left in a cluster is counted in the transaction that would delete it.
    with_task(store.as_ref());
    assert_eq!(store.insert_service(&service("web", 1)).unwrap(), None);
    let refused = store
        .deactivate_cluster("default", &|c| {
            seen.set(Some(*c));
            Some(DeleteRefusal::Services)
        })
        .unwrap()
        .unwrap();
    assert_eq!(refused, Err(DeleteRefusal::Services));
    assert_eq!(
        seen.get(),
        Some(ClusterContents {
            live_services: 1,
            instances: 1,
            live_tasks: 1
        })
    );
    assert!(store.cluster_exists("default").unwrap());
    assert_eq!(store.cluster_counts("default").unwrap().active_services, 1);

    // An activation code's use makes its deleted cluster ACTIVE again.
    store.deactivate_cluster("empty", &|_| None).unwrap();
    let code = ActivationCode {
        cluster: "empty".into(),
        uses_left: 1,
        expires_at_ms: i64::MAX,
        revoked: false,
    };
    store.insert_activation("code-empty", &code, 1).unwrap();
    let mut i = instance("i-empty");
    i.cluster = "empty".into();
    store
        .register_with_activation("code-empty", &i, 10)
        .unwrap()
        .unwrap();
    drop(store);
    let store = backend.open();
    assert_eq!(
        store.get_cluster("empty").unwrap().map(|c| c.status),
        Some(ClusterStatus::Active)
    );
}

pub(crate) fn task_definitions_are_deleted_once_inactive_and_families_listed(
    backend: &dyn Backend,
) {
    let store = backend.open();
    for family in ["web", "web", "web_x", "webby", "api"] {
        store
            .insert_task_definition(family, &serde_json::json!({"family": family}), 1)
            .unwrap();
    }
    store.deregister_task_definition("web", 1, 2).unwrap();
    store.deregister_task_definition("api", 1, 2).unwrap();
    let deleted = store.delete_task_definition("web", 1, 3).unwrap().unwrap();
    assert_eq!(
        (deleted.status(), deleted.delete_requested_at_ms),
        (TaskDefinitionStatus::DeleteInProgress, Some(3))
    );
    // Deleting again keeps the first request's time; an ACTIVE revision is left as it is.
    let again = store.delete_task_definition("web", 1, 4).unwrap().unwrap();
    assert_eq!(again.delete_requested_at_ms, Some(3));
    let active = store.delete_task_definition("web", 2, 4).unwrap().unwrap();
    assert_eq!(active.status(), TaskDefinitionStatus::Active);
    assert_eq!(store.delete_task_definition("web", 9, 4).unwrap(), None);
    drop(store);
    let store = backend.open();
    let list = |family: Option<&str>, status| store.list_task_definitions(family, status).unwrap();
    let web = |revs: &[i64]| -> Vec<(String, i64)> {
        revs.iter().map(|r| ("web".to_string(), *r)).collect()
    };
    assert_eq!(
        list(Some("web"), Some(TaskDefinitionStatus::Active)),
        web(&[2])
    );
    assert_eq!(
        list(Some("web"), Some(TaskDefinitionStatus::Inactive)),
        web(&[])
    );
    assert_eq!(
        list(Some("web"), Some(TaskDefinitionStatus::DeleteInProgress)),
        web(&[1])
    );
    assert_eq!(list(Some("web"), None), web(&[1, 2]));
    assert_eq!(
        list(None, Some(TaskDefinitionStatus::Inactive)),
        [("api".to_string(), 1)]
    );
    // A deleted revision is still found by revision (a task's definition always is).
    assert_eq!(
        store
            .get_task_definition("web", Some(1))
            .unwrap()
            .unwrap()
            .status(),
        TaskDefinitionStatus::DeleteInProgress
    );
    let families = |prefix| store.list_task_definition_families(prefix).unwrap();
    let all: Vec<(String, bool)> = [
        ("api", false),
        ("web", true),
        ("web_x", true),
        ("webby", true),
    ]
    .into_iter()
    .map(|(f, a)| (f.to_string(), a))
    .collect();
    assert_eq!(families(None), all);
    // A prefix is a prefix, `_` included.
    assert_eq!(families(Some("web_")), all[2..3]);
    assert_eq!(families(Some("web")), all[1..]);
    assert_eq!(families(Some("nope")), []);
}

pub(crate) fn account_settings_are_put_replaced_listed_and_deleted(backend: &dyn Backend) {
    let store = backend.open();
    let setting = |name, value: &str, principal: &str| AccountSetting {
        name,
        value: value.into(),
        principal_arn: principal.into(),
    };
    let (root, alice) = ("arn:aws:iam::0:root", "arn:aws:iam::0:user/alice");
    assert_eq!(store.list_account_settings().unwrap(), []);
    store
        .put_account_setting(&setting(SettingName::ContainerInsights, "enabled", root))
        .unwrap();
    store
        .put_account_setting(&setting(SettingName::ContainerInsights, "disabled", alice))
        .unwrap();
    store
        .put_account_setting(&setting(SettingName::ContainerInsights, "enhanced", root))
        .unwrap();
    store
        .put_account_setting(&setting(SettingName::AwsvpcTrunking, "enabled", root))
        .unwrap();
    drop(store);
    let store = backend.open();
    assert_eq!(
        store.list_account_settings().unwrap(),
        [
            setting(SettingName::AwsvpcTrunking, "enabled", root),
            setting(SettingName::ContainerInsights, "enhanced", root),
            setting(SettingName::ContainerInsights, "disabled", alice),
        ]
    );
    assert_eq!(
        store
            .delete_account_setting(SettingName::ContainerInsights, alice)
            .unwrap(),
        Some(setting(SettingName::ContainerInsights, "disabled", alice))
    );
    assert_eq!(
        store
            .delete_account_setting(SettingName::ContainerInsights, alice)
            .unwrap(),
        None
    );
    assert_eq!(store.list_account_settings().unwrap().len(), 2);
}

pub(crate) fn audit_records_are_appended_in_order_and_paged(backend: &dyn Backend) {
    let store = backend.open();
    assert_eq!(store.list_audit(0, 10).unwrap(), []);
    let record = |n: i64| AuditEvent {
        id: 0,
        at_ms: 1000 + n,
        principal: "AKIDEXAMPLE".into(),
        action: "ExecuteCommand".into(),
        resource: format!("arn:aws:ecs:us-east-1:0:task/c/t{n}"),
        detail: serde_json::json!({"command": ["sh", "-c", format!("echo {n}")]}),
    };
    let ids: Vec<i64> = (0..5)
        .map(|n| store.append_audit(&record(n)).unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    drop(store);
    let store = backend.open();
    let first = store.list_audit(0, 3).unwrap();
    assert_eq!(first.len(), 3);
    assert_eq!(
        first[0],
        AuditEvent {
            id: ids[0],
            ..record(0)
        }
    );
    let rest = store.list_audit(first[2].id, 10).unwrap();
    assert_eq!(
        rest.iter().map(|e| e.id).collect::<Vec<_>>(),
        ids[3..].to_vec()
    );
    assert_eq!(
        rest[1],
        AuditEvent {
            id: ids[4],
            ..record(4)
        }
    );
}
