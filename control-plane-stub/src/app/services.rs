//! Services (issue #17): CreateService, UpdateService, DescribeServices, ListServices,
//! DeleteService. What a service should run is decided here; making it so is the service
//! controller's (`service_controller.rs`), which the changes here wake.

use std::sync::Arc;

use super::clusters::Clusters;
use super::security_groups::{NetworkConfiguration, SecurityGroups};
use super::tags::Tags;
use super::task_definitions::TaskDefinitions;
use super::CpError;
use crate::clock::now_ms;
use crate::domain::ids::{self, Arns};
use crate::domain::placement::{ConstraintSpec, Placement, StrategySpec};
use crate::domain::service::connect;
use crate::domain::service::history::{self, Revision};
use crate::domain::service::{
    self, Deployment, DeploymentSettings, SchedulingStrategy, Service, ServiceStatus,
};
use crate::domain::tags::{Resource, Tag};
use crate::domain::taskdef;
use crate::scheduler::service as rules;
use crate::state::Store;

/// CreateService's parameters, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateServiceInput {
    pub cluster: String,
    pub name: String,
    pub task_definition: String,
    pub desired_count: u32,
    pub launch_type: Option<String>,
    pub scheduling_strategy: Option<String>,
    pub deployment: DeploymentSettings,
    pub health_check_grace_period_seconds: Option<u32>,
    /// The request's networkConfiguration: echoed as given, acted on as parsed.
    pub network_configuration: Option<(serde_json::Value, NetworkConfiguration)>,
    pub tags: Vec<Tag>,
    /// TASK_DEFINITION, SERVICE or NONE (checked by the caller: `tags::Propagate`).
    pub propagate_tags: Option<String>,
    pub enable_ecs_managed_tags: bool,
    /// enableExecuteCommand for the tasks it starts.
    pub enable_execute_command: bool,
    pub client_token: Option<String>,
    pub placement_strategy: Vec<StrategySpec>,
    pub placement_constraints: Vec<ConstraintSpec>,
    /// serviceConnectConfiguration as given.
    pub service_connect: Option<serde_json::Value>,
}

/// UpdateService's parameters, decoded; None leaves a setting as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpdateServiceInput {
    pub cluster: String,
    pub service: String,
    pub desired_count: Option<u32>,
    pub task_definition: Option<String>,
    pub deployment: Option<DeploymentSettings>,
    pub health_check_grace_period_seconds: Option<u32>,
    pub network_configuration: Option<(serde_json::Value, NetworkConfiguration)>,
    pub force_new_deployment: bool,
    /// A list replaces the service's (an empty one restores ECS's defaults).
    pub placement_strategy: Option<Vec<StrategySpec>>,
    pub placement_constraints: Option<Vec<ConstraintSpec>>,
    /// For the tasks started from now on.
    pub propagate_tags: Option<String>,
    pub enable_ecs_managed_tags: Option<bool>,
    /// For the tasks started from now on (ECS: a new deployment applies it to all).
    pub enable_execute_command: Option<bool>,
    /// Replaces the service's serviceConnectConfiguration.
    pub service_connect: Option<serde_json::Value>,
}

/// A service's tasks that are not STOPPED, counted as ECS shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskCounts {
    pub running: u32,
    pub pending: u32,
    /// deployment id -> (running, pending).
    pub by_deployment: std::collections::HashMap<String, (u32, u32)>,
}

#[derive(Clone)]
pub struct Services {
    pub(super) store: Arc<dyn Store>,
    arns: Arns,
    pub(super) clusters: Clusters,
    task_definitions: TaskDefinitions,
    security_groups: SecurityGroups,
    tags: Tags,
    /// Wakes the service controller after a change.
    pub(super) changed: Arc<tokio::sync::Notify>,
}

impl Services {
    pub fn new(
        store: Arc<dyn Store>,
        arns: Arns,
        clusters: Clusters,
        task_definitions: TaskDefinitions,
        security_groups: SecurityGroups,
        tags: Tags,
        changed: Arc<tokio::sync::Notify>,
    ) -> Self {
        Self {
            tags,
            store,
            arns,
            clusters,
            task_definitions,
            security_groups,
            changed,
        }
    }

    /// The revision a deployment of `reference` would run: the runnable definition
    /// (`family:revision`), the security group ids its tasks get, its containers' images.
    fn resolve(
        &self,
        reference: &str,
        network: Option<&NetworkConfiguration>,
        network_raw: Option<&serde_json::Value>,
        launch_type: &str,
        now: i64,
    ) -> Result<Revision, CpError> {
        let record = self.task_definitions.runnable(reference)?;
        let spec = taskdef::parse(&record.raw)?;
        let groups = self.security_groups.for_task(&spec, network)?;
        Ok(Revision {
            id: String::new(),
            task_definition: format!("{}:{}", record.family, record.revision),
            launch_type: launch_type.to_string(),
            security_groups: groups.into_iter().map(|g| g.id).collect(),
            network_configuration: network_raw.cloned(),
            container_images: spec
                .containers
                .iter()
                .map(|c| (c.name.clone(), c.image.clone()))
                .collect(),
            created_at_ms: now,
        })
    }

    pub fn create(&self, input: CreateServiceInput) -> Result<Service, CpError> {
        self.clusters.require(&input.cluster)?;
        service::check_name(&input.name).map_err(CpError::InvalidParameter)?;
        let launch_type = input.launch_type.clone().unwrap_or_else(|| "EC2".into());
        service::check_launch_type(&launch_type).map_err(CpError::InvalidParameter)?;
        let strategy = match input.scheduling_strategy.as_deref() {
            None => SchedulingStrategy::Replica,
            Some(s) => SchedulingStrategy::parse(s).ok_or_else(|| {
                CpError::InvalidParameter(format!(
                    "schedulingStrategy: {s:?} is not REPLICA or DAEMON"
                ))
            })?,
        };
        match strategy {
            SchedulingStrategy::Replica => {
                rules::validate(&rules_of(&input.deployment), input.desired_count)
                    .map_err(CpError::InvalidParameter)?
            }
            SchedulingStrategy::Daemon => {
                check_daemon(&input.deployment, &input.placement_strategy)?
            }
        }
        check_placement(&input.placement_strategy, &input.placement_constraints)?;
        Tags::check_new(&input.tags)?;
        let service_connect =
            self.service_connect(&input.cluster, input.service_connect.as_ref())?;
        let network = input.network_configuration.as_ref().map(|(_, n)| n);
        let network_raw = input.network_configuration.as_ref().map(|(raw, _)| raw);
        let now = now_ms();
        let revision = self.resolve(
            &input.task_definition,
            network,
            network_raw,
            &launch_type,
            now,
        )?;
        let mut new = Service {
            cluster: input.cluster.clone(),
            name: input.name.clone(),
            status: ServiceStatus::Active,
            desired_count: input.desired_count,
            task_definition: revision.task_definition.clone(),
            launch_type,
            deployment: input.deployment,
            health_check_grace_period_seconds: input.health_check_grace_period_seconds,
            network_configuration: input.network_configuration.map(|(raw, _)| raw),
            propagate_tags: input.propagate_tags,
            enable_ecs_managed_tags: input.enable_ecs_managed_tags,
            enable_execute_command: input.enable_execute_command,
            client_token: input.client_token,
            created_at_ms: now,
            deployments: Vec::new(),
            events: Vec::new(),
            steady: false,
            revisions: Vec::new(),
            service_deployments: Vec::new(),
            throttle: Default::default(),
            placement_strategy: input.placement_strategy,
            placement_constraints: input.placement_constraints,
            scheduling_strategy: strategy,
            service_connect,
        };
        let (deployment, revision) = new_deployment(revision, now);
        history::begin(&mut new, deployment, revision, now);
        match self.store.insert_service(&new)? {
            None => {
                let resource = Resource::Service {
                    cluster: new.cluster.clone(),
                    name: new.name.clone(),
                };
                self.tags.set_new(vec![(resource, input.tags)])?;
                tracing::info!(service = %new.name, cluster = %new.cluster, desired = new.desired_count, "service created");
                self.changed.notify_one();
                Ok(new)
            }
            // As ECS: the same parameters again return the service, others are refused.
            Some(existing) if same_parameters(&existing, &new) => Ok(existing),
            Some(_) => Err(CpError::InvalidParameter(
                "Creation of service was not idempotent.".into(),
            )),
        }
    }

    /// A serviceConnectConfiguration checked and resolved against the cluster's defaults.
    fn service_connect(
        &self,
        cluster: &str,
        raw: Option<&serde_json::Value>,
    ) -> Result<Option<serde_json::Value>, CpError> {
        let Some(raw) = raw else { return Ok(None) };
        let default = self.clusters.service_connect_default(cluster)?;
        connect::check(raw, default.as_deref())
            .map(Some)
            .map_err(CpError::InvalidParameter)
    }

    /// ListServicesByNamespace: the services of every cluster, ACTIVE or DRAINING, that are in
    /// the namespace. A namespace no cluster default and no service names does not exist
    /// (NamespaceNotFoundException), as one Cloud Map does not have.
    pub fn in_namespace(&self, namespace: &str) -> Result<Vec<Service>, CpError> {
        let mut found = Vec::new();
        for cluster in self.store.list_clusters()? {
            found.extend(self.store.list_services(&cluster)?.into_iter().filter(|s| {
                s.status != ServiceStatus::Inactive
                    && s.service_connect.as_ref().and_then(connect::namespace) == Some(namespace)
            }));
        }
        if found.is_empty() && !self.clusters.namespace_is_a_default(namespace)? {
            return Err(CpError::NamespaceNotFound(namespace.to_string()));
        }
        Ok(found)
    }

    /// A service by name or ARN, in any status.
    pub fn get(&self, cluster: &str, reference: &str) -> Result<Option<Service>, CpError> {
        Ok(self
            .store
            .get_service(cluster, ids::resource_id(reference))?
            .filter(|_| service_arn_cluster(reference).is_none_or(|c| c == cluster)))
    }

    /// Found services, and the references that matched nothing.
    pub fn describe(
        &self,
        cluster: &str,
        references: &[String],
    ) -> Result<(Vec<Service>, Vec<String>), CpError> {
        self.clusters.require(cluster)?;
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for r in references {
            match self.get(cluster, r)? {
                Some(s) => found.push(s),
                None => missing.push(r.clone()),
            }
        }
        Ok((found, missing))
    }

    /// The cluster's ACTIVE services (ECS lists neither DRAINING nor INACTIVE ones).
    pub fn list(&self, cluster: &str, launch_type: Option<&str>) -> Result<Vec<Service>, CpError> {
        self.clusters.require(cluster)?;
        Ok(self
            .store
            .list_services(cluster)?
            .into_iter()
            .filter(|s| s.status == ServiceStatus::Active)
            .filter(|s| launch_type.is_none_or(|l| s.launch_type == l))
            .collect())
    }

    pub fn update(&self, input: UpdateServiceInput) -> Result<Service, CpError> {
        self.clusters.require(&input.cluster)?;
        let mut s = self
            .get(&input.cluster, &input.service)?
            .ok_or_else(|| CpError::ServiceNotFound(input.service.clone()))?;
        if s.status != ServiceStatus::Active {
            return Err(CpError::ServiceNotActive(input.service.clone()));
        }
        let desired = input.desired_count.unwrap_or(s.desired_count);
        let settings = input.deployment.unwrap_or(s.deployment);
        let strategies = input
            .placement_strategy
            .clone()
            .unwrap_or_else(|| s.placement_strategy.clone());
        let constraints = input
            .placement_constraints
            .clone()
            .unwrap_or_else(|| s.placement_constraints.clone());
        check_placement(&strategies, &constraints)?;
        match s.scheduling_strategy {
            SchedulingStrategy::Replica => {
                rules::validate(&rules_of(&settings), desired).map_err(CpError::InvalidParameter)?
            }
            SchedulingStrategy::Daemon => {
                if input.desired_count.is_some() {
                    return Err(CpError::InvalidParameter(
                        "desiredCount: a DAEMON service runs one task on each eligible container instance; its count cannot be set".into(),
                    ));
                }
                check_daemon(&settings, &strategies)?
            }
        }
        // A new task definition, a new network configuration or forceNewDeployment start a new
        // deployment; a desiredCount or grace-period change does not (as ECS).
        let network_changed = input
            .network_configuration
            .as_ref()
            .is_some_and(|(raw, _)| s.network_configuration.as_ref() != Some(raw));
        let reference = input
            .task_definition
            .clone()
            .unwrap_or_else(|| s.task_definition.clone());
        let network = match &input.network_configuration {
            Some((_, n)) => Some(n.clone()),
            None => s
                .network_configuration
                .as_ref()
                .map(security_groups_of)
                .transpose()
                .map_err(CpError::InvalidParameter)?,
        };
        let network_raw = match &input.network_configuration {
            Some((raw, _)) => Some(raw.clone()),
            None => s.network_configuration.clone(),
        };
        let now = now_ms();
        let revision = self.resolve(
            &reference,
            network.as_ref(),
            network_raw.as_ref(),
            &s.launch_type,
            now,
        )?;
        if let Some(raw) = &input.service_connect {
            s.service_connect = self.service_connect(&input.cluster, Some(raw))?;
        }
        s.desired_count = desired;
        s.deployment = settings;
        // New placements follow the new rules; running tasks stay where they are (as ECS).
        s.placement_strategy = strategies;
        s.placement_constraints = constraints;
        if let Some((raw, _)) = input.network_configuration {
            s.network_configuration = Some(raw);
        }
        if revision.task_definition != s.task_definition
            || network_changed
            || input.force_new_deployment
        {
            let (d, revision) = new_deployment(revision, now);
            tracing::info!(service = %s.name, deployment = %d.id, task_definition = %d.task_definition, "new deployment");
            history::begin(&mut s, d, revision, now);
            // A new deployment starts with no back-off (as ECS's throttle resets on one).
            s.throttle = Default::default();
        }
        if input.health_check_grace_period_seconds.is_some() {
            s.health_check_grace_period_seconds = input.health_check_grace_period_seconds;
        }
        if input.propagate_tags.is_some() {
            s.propagate_tags = input.propagate_tags;
        }
        if let Some(managed) = input.enable_ecs_managed_tags {
            s.enable_ecs_managed_tags = managed;
        }
        if let Some(exec) = input.enable_execute_command {
            s.enable_execute_command = exec;
        }
        self.store.save_service(&s)?;
        self.changed.notify_one();
        Ok(s)
    }

    /// DeleteService: refused while the service runs tasks unless `force`; the service drains
    /// (its tasks are stopped) and then turns INACTIVE.
    pub fn delete(&self, cluster: &str, reference: &str, force: bool) -> Result<Service, CpError> {
        self.clusters.require(cluster)?;
        let mut s = self
            .get(cluster, reference)?
            .ok_or_else(|| CpError::ServiceNotFound(reference.to_string()))?;
        if s.status != ServiceStatus::Active {
            return Err(CpError::ServiceNotActive(reference.to_string()));
        }
        // A daemon has no count to scale down first: deleting it is how it is stopped.
        if s.desired_count > 0 && !force && s.scheduling_strategy == SchedulingStrategy::Replica {
            return Err(CpError::InvalidParameter(
                "The service cannot be stopped while it is scaled above 0.".into(),
            ));
        }
        s.status = ServiceStatus::Draining;
        s.desired_count = 0;
        self.store.save_service(&s)?;
        tracing::info!(service = %s.name, cluster = %s.cluster, "service deleted: draining");
        self.changed.notify_one();
        Ok(s)
    }

    pub fn task_counts(&self, s: &Service) -> Result<TaskCounts, CpError> {
        let group = s.group();
        let mut counts = TaskCounts::default();
        let tasks = self.store.list_tasks(&crate::state::TaskFilter {
            cluster: Some(s.cluster.clone()),
            not_stopped: true,
            ..Default::default()
        })?;
        for t in tasks.iter().filter(|t| t.group == group) {
            let running = t.last_status == crate::domain::task::TaskStatus::Running;
            let entry = counts
                .by_deployment
                .entry(t.started_by.clone().unwrap_or_default())
                .or_default();
            if running {
                counts.running += 1;
                entry.0 += 1;
            } else {
                counts.pending += 1;
                entry.1 += 1;
            }
        }
        Ok(counts)
    }

    pub fn arn(&self, s: &Service) -> String {
        self.arns.service(&s.cluster, &s.name)
    }
}

/// The scheduler's view of a service's deployment settings.
pub fn rules_of(d: &DeploymentSettings) -> rules::DeploymentConfiguration {
    rules::DeploymentConfiguration {
        minimum_healthy_percent: d.minimum_healthy_percent,
        maximum_percent: d.maximum_percent,
        circuit_breaker: d.circuit_breaker_enable.then_some(rules::CircuitBreaker {
            rollback: d.circuit_breaker_rollback,
        }),
    }
}

/// The security groups a stored networkConfiguration names.
pub fn security_groups_of(raw: &serde_json::Value) -> Result<NetworkConfiguration, String> {
    let groups = &raw["awsvpcConfiguration"]["securityGroups"];
    let security_groups = match groups {
        serde_json::Value::Null => Vec::new(),
        serde_json::Value::Array(a) => a
            .iter()
            .map(|g| g.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or(
                "networkConfiguration.awsvpcConfiguration.securityGroups: not a list of strings",
            )?,
        _ => {
            return Err(
                "networkConfiguration.awsvpcConfiguration.securityGroups: not a list".into(),
            )
        }
    };
    Ok(NetworkConfiguration { security_groups })
}

/// A new deployment of a resolved revision; the revision takes the deployment id's digits.
fn new_deployment(mut revision: Revision, now: i64) -> (Deployment, Revision) {
    let mut deployment = Deployment::of_revision(&revision, String::new(), now);
    revision.id = history::revision_id_of(&deployment.id);
    deployment.revision = revision.id.clone();
    (deployment, revision)
}

/// Whether a CreateService repeats the one that made `existing` (idempotency).
fn same_parameters(existing: &Service, new: &Service) -> bool {
    if let (Some(a), Some(b)) = (&existing.client_token, &new.client_token) {
        if a == b {
            return true;
        }
    }
    existing.status == ServiceStatus::Active
        && existing.task_definition == new.task_definition
        && existing.desired_count == new.desired_count
        && existing.launch_type == new.launch_type
        && existing.deployment == new.deployment
        && existing.network_configuration == new.network_configuration
        && existing.health_check_grace_period_seconds == new.health_check_grace_period_seconds
        && existing.scheduling_strategy == new.scheduling_strategy
        && existing.placement_strategy == new.placement_strategy
        && existing.placement_constraints == new.placement_constraints
}

/// ECS's rules for a DAEMON service: each task is replaced in place (maximumPercent 100), and
/// there is nothing to choose between instances (no placement strategy).
fn check_daemon(settings: &DeploymentSettings, strategies: &[StrategySpec]) -> Result<(), CpError> {
    if settings.maximum_percent != 100 {
        return Err(CpError::InvalidParameter(format!(
            "deploymentConfiguration.maximumPercent: {} — a DAEMON service replaces each task in place, so it must be 100",
            settings.maximum_percent
        )));
    }
    if settings.minimum_healthy_percent > 100 {
        return Err(CpError::InvalidParameter(format!(
            "deploymentConfiguration.minimumHealthyPercent: {} must be between 0 and 100",
            settings.minimum_healthy_percent
        )));
    }
    if !strategies.is_empty() {
        return Err(CpError::InvalidParameter(
            "placementStrategy: a DAEMON service places one task on every eligible instance; strategies do not apply".into(),
        ));
    }
    Ok(())
}

fn check_placement(
    strategies: &[StrategySpec],
    constraints: &[ConstraintSpec],
) -> Result<(), CpError> {
    Placement::new(strategies, constraints, &[], true)
        .map(drop)
        .map_err(|e| CpError::InvalidParameter(e.0))
}

/// The cluster a service ARN names (`arn:…:service/CLUSTER/NAME`), if it is one.
fn service_arn_cluster(reference: &str) -> Option<&str> {
    let rest = reference.strip_prefix("arn:")?;
    let path = rest.split_once(":service/")?.1;
    path.split_once('/').map(|(c, _)| c)
}
