//! The store suite's cases for clusters, task definition revisions and account settings
//! (`cluster_suite!`), apart from `suite.rs` so each file stays readable; they share its
//! helpers and its [`Backend`].

use super::suite::*;
use crate::domain::cluster::{ClusterContents, ClusterStatus, DeleteRefusal};
use crate::domain::instance::ActivationCode;

/// One `#[test]` per case, each on a fresh backend from `$make` (as `store_suite!`).
macro_rules! cluster_suite {
    ($make:expr) => {
        #[test]
        fn clusters_are_deleted_when_empty_and_created_again() {
            $crate::state::suite_clusters::clusters_are_deleted_when_empty_and_created_again(
                &$make,
            );
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
    let again = store.create_cluster("empty", 5).unwrap();
    assert_eq!(
        (again.status, again.created_at_ms),
        (ClusterStatus::Active, 5)
    );
    assert_eq!(store.create_cluster("empty", 9).unwrap().created_at_ms, 5);
    assert!(store.cluster_exists("empty").unwrap());

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
