//! Clusters: their status and what keeps one from being deleted, as ECS decides it. Pure.

/// ECS's cluster statuses that Berth has: no capacity providers, so never PROVISIONING,
/// DEPROVISIONING or FAILED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterStatus {
    Active,
    /// Deleted: still describable, not listed, and every operation on its contents answers
    /// ClusterNotFoundException. CreateCluster of its name makes it ACTIVE again.
    Inactive,
}

impl ClusterStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterStatus::Active => "ACTIVE",
            ClusterStatus::Inactive => "INACTIVE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ACTIVE" => Some(ClusterStatus::Active),
            "INACTIVE" => Some(ClusterStatus::Inactive),
            _ => None,
        }
    }
}

/// What is left in a cluster that DeleteCluster is asked to delete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterContents {
    /// Services that are ACTIVE or DRAINING (an INACTIVE one is gone for good).
    pub live_services: u64,
    /// Registered (not deregistered) container instances, ACTIVE or DRAINING.
    pub instances: u64,
    /// Tasks whose last status is not STOPPED.
    pub live_tasks: u64,
}

/// Why DeleteCluster refuses: each is its own ECS error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteRefusal {
    Services,
    ContainerInstances,
    Tasks,
}

impl DeleteRefusal {
    pub fn code(self) -> &'static str {
        match self {
            DeleteRefusal::Services => "ClusterContainsServicesException",
            DeleteRefusal::ContainerInstances => "ClusterContainsContainerInstancesException",
            DeleteRefusal::Tasks => "ClusterContainsTasksException",
        }
    }

    /// ECS's own wording.
    pub fn message(self) -> &'static str {
        match self {
            DeleteRefusal::Services => "The Cluster cannot be deleted while Services are active.",
            DeleteRefusal::ContainerInstances => {
                "The Cluster cannot be deleted while Container Instances are active or draining."
            }
            DeleteRefusal::Tasks => "The Cluster cannot be deleted while Tasks are active.",
        }
    }
}

/// Whether a cluster with these contents may be deleted. Services are named first, then
/// instances, then tasks: a service keeps starting tasks and needs instances to start them on,
/// so that is the order in which a cluster is emptied.
pub fn deletion_refusal(c: &ClusterContents) -> Option<DeleteRefusal> {
    if c.live_services > 0 {
        Some(DeleteRefusal::Services)
    } else if c.instances > 0 {
        Some(DeleteRefusal::ContainerInstances)
    } else if c.live_tasks > 0 {
        Some(DeleteRefusal::Tasks)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_cluster_may_be_deleted() {
        assert_eq!(deletion_refusal(&ClusterContents::default()), None);
    }

    #[test]
    fn services_then_instances_then_tasks_refuse_a_delete() {
        let all = ClusterContents {
            live_services: 1,
            instances: 2,
            live_tasks: 3,
        };
        assert_eq!(deletion_refusal(&all), Some(DeleteRefusal::Services));
        let no_services = ClusterContents {
            live_services: 0,
            ..all
        };
        assert_eq!(
            deletion_refusal(&no_services),
            Some(DeleteRefusal::ContainerInstances)
        );
        let only_tasks = ClusterContents {
            live_tasks: 1,
            ..ClusterContents::default()
        };
        assert_eq!(deletion_refusal(&only_tasks), Some(DeleteRefusal::Tasks));
        assert_eq!(DeleteRefusal::Tasks.code(), "ClusterContainsTasksException");
    }

    #[test]
    fn statuses_round_trip() {
        for s in [ClusterStatus::Active, ClusterStatus::Inactive] {
            assert_eq!(ClusterStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(ClusterStatus::parse("FAILED"), None);
    }
}
