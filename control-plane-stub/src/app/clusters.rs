//! Clusters: named on creation (or first use by an activation code), deleted (INACTIVE) once
//! empty, and ACTIVE again when created anew.

use std::sync::Arc;

use super::tags::Tags;
use super::CpError;
use crate::clock::now_ms;
use crate::domain::cluster::{
    self, deletion_refusal, ClusterConfig, ClusterConfiguration, ClusterSetting,
};
use crate::domain::ids::{namespace_name, valid_cluster_name};
use crate::domain::settings::{self, SettingName};
use crate::domain::tags::{Resource, Tag};
use crate::state::{ClusterCounts, ClusterRecord, Store};

#[derive(Clone)]
pub struct Clusters {
    store: Arc<dyn Store>,
    tags: Tags,
    /// The account's root user, whose containerInsights account setting a new cluster takes.
    root: String,
}

/// CreateCluster's request, as decoded at the edge.
#[derive(Debug, Default)]
pub struct NewCluster {
    pub name: String,
    pub settings: Vec<ClusterSetting>,
    pub configuration: Option<ClusterConfiguration>,
    pub service_connect_namespace: Option<String>,
    pub tags: Vec<Tag>,
    pub capacity_providers: Vec<String>,
    pub strategy_providers: Vec<String>,
}

/// UpdateCluster's request: each member given replaces what the cluster had.
#[derive(Debug, Default)]
pub struct ClusterUpdate {
    pub settings: Option<Vec<ClusterSetting>>,
    pub configuration: Option<ClusterConfiguration>,
    pub service_connect_namespace: Option<String>,
}

/// A cluster as DescribeClusters shows it.
#[derive(Debug, Clone)]
pub struct ClusterView {
    pub record: ClusterRecord,
    pub counts: ClusterCounts,
}

impl Clusters {
    pub fn new(store: Arc<dyn Store>, tags: Tags, account: &str) -> Self {
        Self {
            store,
            tags,
            root: settings::root_arn(account),
        }
    }

    /// Every operation on a cluster's contents first checks the cluster exists (and is ACTIVE:
    /// ECS answers a deleted cluster as one not found).
    pub fn require(&self, name: &str) -> Result<(), CpError> {
        if self.store.cluster_exists(name)? {
            Ok(())
        } else {
            Err(CpError::ClusterNotFound(name.to_string()))
        }
    }

    /// CreateCluster: a new cluster, or one deleted made ACTIVE again as new; an ACTIVE one
    /// is answered as it is (ECS's CreateCluster is idempotent).
    pub fn create(&self, new: NewCluster) -> Result<ClusterView, CpError> {
        let name = new.name.as_str();
        if !valid_cluster_name(name) {
            return Err(CpError::InvalidParameter(format!(
                "clusterName: {:?} must be 1-255 letters, digits, hyphens or underscores",
                name.chars().take(64).collect::<String>()
            )));
        }
        cluster::check_settings(&new.settings).map_err(CpError::InvalidParameter)?;
        if let Some(c) = &new.configuration {
            cluster::check_configuration(c).map_err(CpError::InvalidParameter)?;
        }
        let service_connect_namespace = new
            .service_connect_namespace
            .as_deref()
            .map(checked_namespace)
            .transpose()?;
        cluster::check_capacity_providers(&new.capacity_providers, &new.strategy_providers)
            .map_err(CpError::InvalidParameter)?;
        Tags::check_new(&new.tags)?;
        let stored = self.store.list_account_settings()?;
        let insights = settings::effective(
            SettingName::ContainerInsights,
            &self.root,
            &self.root,
            &stored,
        );
        let config = ClusterConfig {
            settings: cluster::settings_at_creation(&new.settings, &insights.value),
            configuration: new.configuration,
            service_connect_namespace,
        };
        let (record, created) = self.store.create_cluster(name, now_ms(), &config)?;
        if created && !new.tags.is_empty() {
            let resource = Resource::Cluster {
                name: name.to_string(),
            };
            self.tags.set_new(vec![(resource, new.tags)])?;
        }
        self.view(record)
    }

    /// UpdateCluster.
    pub fn update(&self, name: &str, update: ClusterUpdate) -> Result<ClusterView, CpError> {
        if let Some(s) = &update.settings {
            cluster::check_settings(s).map_err(CpError::InvalidParameter)?;
        }
        if let Some(c) = &update.configuration {
            cluster::check_configuration(c).map_err(CpError::InvalidParameter)?;
        }
        let namespace = update
            .service_connect_namespace
            .as_deref()
            .map(checked_namespace)
            .transpose()?;
        self.change(name, &mut |config| {
            if let Some(s) = &update.settings {
                cluster::merge_settings(&mut config.settings, s);
            }
            if let Some(c) = &update.configuration {
                config.configuration = Some(c.clone());
            }
            if let Some(ns) = &namespace {
                config.service_connect_namespace = Some(ns.clone());
            }
            Ok(())
        })
    }

    /// UpdateClusterSettings: the settings given replace those of their names.
    pub fn update_settings(
        &self,
        name: &str,
        given: &[ClusterSetting],
    ) -> Result<ClusterView, CpError> {
        if given.is_empty() {
            return Err(CpError::InvalidParameter(
                "settings: at least one setting is required".into(),
            ));
        }
        cluster::check_settings(given).map_err(CpError::InvalidParameter)?;
        self.change(name, &mut |config| {
            cluster::merge_settings(&mut config.settings, given);
            Ok(())
        })
    }

    /// PutClusterCapacityProviders: no capacity provider exists on Berth, so the cluster's
    /// lists can only be set to empty, which they are.
    pub fn put_capacity_providers(
        &self,
        name: &str,
        providers: &[String],
        strategy_providers: &[String],
    ) -> Result<ClusterView, CpError> {
        self.require(name)?;
        cluster::check_capacity_providers(providers, strategy_providers)
            .map_err(CpError::InvalidParameter)?;
        self.describe(name)?
            .ok_or_else(|| CpError::ClusterNotFound(name.to_string()))
    }

    /// The Service Connect namespace of the cluster's serviceConnectDefaults.
    pub fn service_connect_default(&self, name: &str) -> Result<Option<String>, CpError> {
        Ok(self
            .store
            .get_cluster(name)?
            .and_then(|c| c.config.service_connect_namespace))
    }

    /// Whether any cluster names `namespace` in its serviceConnectDefaults.
    pub fn namespace_is_a_default(&self, namespace: &str) -> Result<bool, CpError> {
        for name in self.store.list_clusters()? {
            if self.service_connect_default(&name)?.as_deref() == Some(namespace) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A cluster's tags, for DescribeClusters' include TAGS.
    pub fn tags(&self, name: &str) -> Result<Vec<Tag>, CpError> {
        self.tags.of(&Resource::Cluster {
            name: name.to_string(),
        })
    }

    fn change(
        &self,
        name: &str,
        change: &mut dyn FnMut(&mut ClusterConfig) -> Result<(), String>,
    ) -> Result<ClusterView, CpError> {
        match self.store.change_cluster_config(name, change)? {
            None => Err(CpError::ClusterNotFound(name.to_string())),
            Some(Err(refused)) => Err(CpError::InvalidParameter(refused)),
            Some(Ok(record)) => self.view(record),
        }
    }

    pub fn list(&self) -> Result<Vec<String>, CpError> {
        Ok(self.store.list_clusters()?)
    }

    /// The cluster, ACTIVE or INACTIVE, or None when there never was one of the name.
    pub fn describe(&self, name: &str) -> Result<Option<ClusterView>, CpError> {
        self.store
            .get_cluster(name)?
            .map(|record| self.view(record))
            .transpose()
    }

    /// DeleteCluster: the cluster becomes INACTIVE when nothing is left in it.
    pub fn delete(&self, name: &str) -> Result<ClusterView, CpError> {
        match self.store.deactivate_cluster(name, &deletion_refusal)? {
            None => Err(CpError::ClusterNotFound(name.to_string())),
            Some(Err(refusal)) => Err(CpError::ClusterNotEmpty(refusal)),
            Some(Ok(record)) => self.view(record),
        }
    }

    fn view(&self, record: ClusterRecord) -> Result<ClusterView, CpError> {
        let counts = self.store.cluster_counts(&record.name)?;
        Ok(ClusterView { record, counts })
    }
}

/// A Service Connect namespace is named as a Cloud Map namespace is, by name or ARN; Berth
/// keeps the name (namespaces themselves come with service discovery).
fn checked_namespace(name_or_arn: &str) -> Result<String, CpError> {
    let name = namespace_name(name_or_arn);
    if name.is_empty() || name.len() > 1024 {
        return Err(CpError::InvalidParameter(
            "serviceConnectDefaults.namespace: a name or ARN of 1 to 1024 characters".into(),
        ));
    }
    Ok(name.to_string())
}
