//! Clusters: their status, their settings and configuration, and what keeps one from being
//! deleted, as ECS decides it. Pure.

use serde::{Deserialize, Serialize};

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

/// What a cluster is created with and UpdateCluster / UpdateClusterSettings change, kept as
/// one JSON body. The members are botocore's, so what is stored is what DescribeClusters shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClusterConfig {
    pub settings: Vec<ClusterSetting>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub configuration: Option<ClusterConfiguration>,
    /// The Service Connect namespace a service of the cluster uses when its own
    /// serviceConnectConfiguration names none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_connect_namespace: Option<String>,
}

/// botocore's ClusterSetting; `containerInsights` is the only name ECS defines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSetting {
    pub name: String,
    pub value: String,
}

/// botocore's ClusterConfiguration. Berth stores and shows it: the execute-command logging it
/// describes applies once exec exists, and managed storage is Fargate's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterConfiguration {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execute_command_configuration: Option<ExecuteCommandConfiguration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub managed_storage_configuration: Option<ManagedStorageConfiguration>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecuteCommandConfiguration {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logging: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_configuration: Option<ExecuteCommandLogConfiguration>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecuteCommandLogConfiguration {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud_watch_log_group_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud_watch_encryption_enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_bucket_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_encryption_enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_key_prefix: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManagedStorageConfiguration {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fargate_ephemeral_storage_kms_key_id: Option<String>,
}

/// The one cluster setting ECS defines, and the values it takes.
pub const CONTAINER_INSIGHTS: &str = "containerInsights";
const CONTAINER_INSIGHTS_VALUES: [&str; 3] = ["enhanced", "enabled", "disabled"];

/// Checks settings given to CreateCluster, UpdateCluster or UpdateClusterSettings.
pub fn check_settings(settings: &[ClusterSetting]) -> Result<(), String> {
    for (i, s) in settings.iter().enumerate() {
        if s.name != CONTAINER_INSIGHTS {
            return Err(format!(
                "settings[{i}].name: {:?} is not a cluster setting (the one ECS defines is {CONTAINER_INSIGHTS})",
                cap(&s.name)
            ));
        }
        if !CONTAINER_INSIGHTS_VALUES.contains(&s.value.as_str()) {
            return Err(format!(
                "settings[{i}].value: {CONTAINER_INSIGHTS} takes one of {}, not {:?}",
                CONTAINER_INSIGHTS_VALUES.join(", "),
                cap(&s.value)
            ));
        }
        if settings[..i].iter().any(|earlier| earlier.name == s.name) {
            return Err(format!("settings[{i}]: {} is given twice", s.name));
        }
    }
    Ok(())
}

/// Checks a configuration as ECS does: logging is one of its values, and a log configuration
/// goes with OVERRIDE and only with it.
pub fn check_configuration(c: &ClusterConfiguration) -> Result<(), String> {
    let Some(exec) = &c.execute_command_configuration else {
        return Ok(());
    };
    let logging = exec.logging.as_deref().unwrap_or("DEFAULT");
    match (logging, exec.log_configuration.is_some()) {
        ("NONE" | "DEFAULT", false) | ("OVERRIDE", true) => Ok(()),
        ("NONE" | "DEFAULT", true) => Err(format!(
            "configuration.executeCommandConfiguration.logConfiguration: given only with logging OVERRIDE, not {logging}"
        )),
        ("OVERRIDE", false) => Err(
            "configuration.executeCommandConfiguration.logConfiguration: logging OVERRIDE needs one".into(),
        ),
        (other, _) => Err(format!(
            "configuration.executeCommandConfiguration.logging: one of NONE, DEFAULT, OVERRIDE, not {:?}",
            cap(other)
        )),
    }
}

/// Settings given replace those of the same name; the others stay (UpdateClusterSettings).
pub fn merge_settings(current: &mut Vec<ClusterSetting>, given: &[ClusterSetting]) {
    for g in given {
        match current.iter_mut().find(|c| c.name == g.name) {
            Some(c) => c.value = g.value.clone(),
            None => current.push(g.clone()),
        }
    }
}

/// A new cluster's settings: those given, and containerInsights from the account setting of
/// that name when not given (ECS: "If this value is specified, it overrides the
/// containerInsights value set with PutAccountSetting or PutAccountSettingDefault").
pub fn settings_at_creation(
    given: &[ClusterSetting],
    account_insights: &str,
) -> Vec<ClusterSetting> {
    let mut settings = vec![ClusterSetting {
        name: CONTAINER_INSIGHTS.into(),
        value: account_insights.into(),
    }];
    merge_settings(&mut settings, given);
    settings
}

/// Berth has no capacity providers (they need an Auto Scaling group or ECS Managed Instances),
/// so a cluster can be given none: the lists must be empty.
pub fn check_capacity_providers(
    providers: &[String],
    strategy_providers: &[String],
) -> Result<(), String> {
    if let Some(p) = providers.iter().chain(strategy_providers).next() {
        return Err(format!(
            "The specified capacity provider {:?} does not exist: Berth's instances are external hosts, which no capacity provider manages",
            cap(p)
        ));
    }
    Ok(())
}

/// Error messages quote what they were given, cut short: a request may be large.
fn cap(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insights(v: &str) -> ClusterSetting {
        ClusterSetting {
            name: CONTAINER_INSIGHTS.into(),
            value: v.into(),
        }
    }

    #[test]
    fn container_insights_is_the_one_setting() {
        assert!(check_settings(&[insights("enhanced")]).is_ok());
        assert!(check_settings(&[insights("on")])
            .unwrap_err()
            .contains("enhanced, enabled, disabled"));
        let other = ClusterSetting {
            name: "logs".into(),
            value: "enabled".into(),
        };
        assert!(check_settings(&[other])
            .unwrap_err()
            .contains("settings[0].name"));
        assert!(check_settings(&[insights("enabled"), insights("disabled")])
            .unwrap_err()
            .contains("twice"));
    }

    #[test]
    fn a_new_cluster_takes_the_account_setting_unless_given_one() {
        assert_eq!(
            settings_at_creation(&[], "enabled"),
            vec![insights("enabled")]
        );
        assert_eq!(
            settings_at_creation(&[insights("enhanced")], "enabled"),
            vec![insights("enhanced")]
        );
        let mut current = vec![insights("disabled")];
        merge_settings(&mut current, &[insights("enabled")]);
        assert_eq!(current, vec![insights("enabled")]);
    }

    #[test]
    fn a_log_configuration_goes_with_override_only() {
        let with = |logging: &str, log: bool| ClusterConfiguration {
            execute_command_configuration: Some(ExecuteCommandConfiguration {
                logging: Some(logging.into()),
                log_configuration: log.then(ExecuteCommandLogConfiguration::default),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(check_configuration(&with("OVERRIDE", true)).is_ok());
        assert!(check_configuration(&with("DEFAULT", false)).is_ok());
        assert!(check_configuration(&with("OVERRIDE", false)).is_err());
        assert!(check_configuration(&with("NONE", true)).is_err());
        assert!(check_configuration(&with("LOUD", false))
            .unwrap_err()
            .contains("NONE, DEFAULT, OVERRIDE"));
        assert!(check_configuration(&ClusterConfiguration::default()).is_ok());
    }

    #[test]
    fn no_capacity_provider_can_be_named() {
        assert!(check_capacity_providers(&[], &[]).is_ok());
        assert!(check_capacity_providers(&["FARGATE".into()], &[])
            .unwrap_err()
            .contains("FARGATE"));
        assert!(check_capacity_providers(&[], &["x".into()]).is_err());
    }

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
