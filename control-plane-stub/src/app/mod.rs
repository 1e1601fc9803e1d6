//! The application layer: one module per resource, each owning its invariants and using
//! `state` (what is recorded) and `agents` (what is delivered) through narrow calls. Both user
//! APIs (`api::ecs`, `api::berth`) decode a request, call one operation here, and encode.
//! Domain types in and out; the edges translate to JSON and protobuf and map [`CpError`] in
//! their own single place.

mod account_settings;
mod attributes;
mod audit;
mod clusters;
mod exec;
mod instances;
mod metrics;
mod secrets;
mod security_groups;
mod service_controller;
mod service_deployments;
mod services;
mod tags;
mod task_definitions;
mod task_protection;
mod tasks;

use std::sync::Arc;

use thiserror::Error;

use crate::agents::Agents;
use crate::domain::cluster::DeleteRefusal;
use crate::domain::ids::Arns;
use crate::domain::taskdef::TaskDefError;
use crate::state::{Store, StoreError};

pub use account_settings::{AccountSettings, ListInput as AccountSettingsList};
pub use attributes::{Attribute, AttributeInput, Attributes, CONTAINER_INSTANCE};
pub use audit::Audit;
pub use clusters::{ClusterUpdate, ClusterView, Clusters, NewCluster};
pub use exec::{ExecEnd, ExecSession, Execs, SESSION_TTL as EXEC_SESSION_TTL};
pub use instances::{InstanceView, Instances};
pub use secrets::Secrets;
pub use security_groups::{NetworkConfiguration, SecurityGroups, NETWORK_CONFIGURATION_NOT_AWSVPC};
pub use service_controller::{ServiceController, ServiceSettings};
pub use service_deployments::{DeploymentFilter, StopType};
pub use services::{CreateServiceInput, Services, TaskCounts, UpdateServiceInput};
pub use tags::{NewTaskTags, Tags};
pub use task_definitions::{HealthDefs, TaskDefinitions};
pub use task_protection::ProtectionFailure;
pub use tasks::{RunTaskInput, Tasks};

#[derive(Debug, Error)]
pub enum CpError {
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    Client(String),
    #[error(transparent)]
    TaskDefinition(#[from] TaskDefError),
    #[error("Cluster not found: {0}")]
    ClusterNotFound(String),
    /// DeleteCluster of a cluster with something left in it.
    #[error("{}", .0.message())]
    ClusterNotEmpty(DeleteRefusal),
    #[error("Unable to describe task definition: {0} not found")]
    TaskDefinitionNotFound(String),
    #[error("TaskDefinition {0} is inactive")]
    TaskDefinitionInactive(String),
    #[error("The referenced task was not found: {0}")]
    TaskNotFound(String),
    /// A Berth endpoint's task (by id or ARN) that does not exist: 404, unlike ECS's
    /// operations, which answer an unknown task with a 400.
    #[error("The referenced task was not found: {0}")]
    NoSuchTask(String),
    #[error("The security group {0:?} does not exist")]
    SecurityGroupNotFound(String),
    #[error("The secret {0:?} does not exist")]
    SecretNotFound(String),
    #[error("The security group {group} is in use by {tasks} task(s) that are not stopped (e.g. {example}); stop them first")]
    SecurityGroupInUse {
        group: String,
        tasks: usize,
        example: String,
    },
    #[error("Service not found.")]
    ServiceNotFound(String),
    #[error("Service was not ACTIVE.")]
    ServiceNotActive(String),
    #[error("The service deployment {0} does not exist")]
    ServiceDeploymentNotFound(String),
    /// The request conflicts with the resource's state (ECS's ConflictException).
    #[error("{0}")]
    Conflict(String),
    #[error("The specified target could not be found: {0}")]
    TargetNotFound(String),
    #[error("{0}")]
    AttributeLimitExceeded(String),
    #[error("The specified resource could not be found: {0}")]
    ResourceNotFound(String),
    #[error("The specified namespace could not be found: {0}")]
    NamespaceNotFound(String),
    /// ExecuteCommand: the task's agent is not connected.
    #[error("{0}")]
    TargetNotConnected(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Every resource's operations, as the API handlers and the agent service reach them.
pub struct ControlPlane {
    pub account_settings: AccountSettings,
    pub attributes: Attributes,
    pub tags: Tags,
    pub clusters: Clusters,
    pub task_definitions: TaskDefinitions,
    pub tasks: Tasks,
    pub instances: Instances,
    pub security_groups: SecurityGroups,
    pub secrets: Secrets,
    pub services: Services,
    /// ExecuteCommand's sessions.
    pub execs: Execs,
    /// The audit log.
    pub audit: Audit,
    /// What Prometheus scrapes at `/metrics`.
    pub metrics: crate::metrics::Metrics,
    /// Keeps each service at its desired count (run by `server.rs`'s loop).
    pub controller: ServiceController,
    pub agents: Arc<Agents>,
    /// The agents' endpoint (berth-cp's gRPC address), as DiscoverPollEndpoint gives it.
    pub agent_endpoint: String,
    /// The user API's address (host:port), for the stream URLs of exec sessions.
    pub api_endpoint: String,
    pub arns: Arns,
}

impl ControlPlane {
    pub fn new(
        store: Arc<dyn Store>,
        arns: Arns,
        heartbeat_interval_ms: u32,
        manifest_interval_ms: u32,
        agent_endpoint: String,
        api_endpoint: String,
        service_settings: ServiceSettings,
    ) -> Arc<Self> {
        let agents = Arc::new(Agents::new(
            store.clone(),
            arns.clone(),
            heartbeat_interval_ms,
            manifest_interval_ms,
        ));
        let tags = Tags::new(store.clone(), arns.clone());
        let clusters = Clusters::new(store.clone(), tags.clone(), arns.account());
        let task_definitions = TaskDefinitions::new(store.clone(), arns.clone());
        let instances = Instances::new(
            store.clone(),
            agents.clone(),
            clusters.clone(),
            arns.clone(),
        );
        let security_groups = SecurityGroups::new(store.clone(), arns.clone());
        let secrets = Secrets::new(store.clone(), arns.clone());
        let tasks = Tasks {
            tags: tags.clone(),
            store: store.clone(),
            agents: agents.clone(),
            arns: arns.clone(),
            clusters: clusters.clone(),
            task_definitions: task_definitions.clone(),
            instances: instances.clone(),
            security_groups: security_groups.clone(),
            secrets: secrets.clone(),
        };
        let services = Services::new(
            store.clone(),
            arns.clone(),
            clusters.clone(),
            task_definitions.clone(),
            security_groups.clone(),
            tags.clone(),
            agents.changed.clone(),
        );
        let controller = ServiceController {
            store: store.clone(),
            tasks: tasks.clone(),
            task_definitions: task_definitions.clone(),
            settle_ms: i64::from(service_settings.settle_ms),
            throttle: service_settings.throttle,
        };
        let execs = Execs::new(store.clone(), tasks.clone(), agents.clone(), arns.clone());
        let audit = Audit::new(store.clone());
        Arc::new(Self {
            audit,
            metrics: crate::metrics::Metrics::new(),
            execs,
            account_settings: AccountSettings::new(store.clone(), arns.account()),
            attributes: Attributes::new(store.clone(), clusters.clone()),
            tags,
            controller,
            services,
            clusters,
            task_definitions,
            tasks,
            instances,
            security_groups,
            secrets,
            agents,
            agent_endpoint,
            api_endpoint,
            arns,
        })
    }
}
