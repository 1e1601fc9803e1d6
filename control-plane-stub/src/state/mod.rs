//! The control plane's state behind a set of traits, one per resource, so a second backend
//! (PostgreSQL, issue #23) slots in beside SQLite and runs the same store tests. Each method that
//! must be atomic (a task and its payload, a state change and its sequence number) is one
//! transaction in every backend.

mod sqlite;
#[cfg(test)]
mod suite;
#[cfg(test)]
mod suite_clusters;

pub use sqlite::{SqliteStore, DB_FILE, SCHEMA_VERSION};

use std::path::PathBuf;

use thiserror::Error;

use crate::domain::audit::AuditEvent;
use crate::domain::cluster::{ClusterConfig, ClusterContents, ClusterStatus, DeleteRefusal};
use crate::domain::instance::{
    ActivationCode, Instance, InstanceInfo, InstanceState, Refusal, RuntimeHealth,
};
use crate::domain::secrets::{Login, SecretInfo};
use crate::domain::security::{GroupContent, SecurityGroup};
use crate::domain::service::{Service, ServiceStatus};
use crate::domain::settings::{AccountSetting, SettingName};
use crate::domain::tags::Tag;
use crate::domain::task::{AgentChange, Task, TaskEvent};
use crate::domain::taskdef::TaskDefinitionStatus;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("creating data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored record is not readable: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("database schema version {found} is newer than this berth-cp ({SCHEMA_VERSION}); upgrade berth-cp")]
    SchemaTooNew { found: i64 },
    #[error("stored value is not one this berth-cp knows: {0}")]
    BadValue(String),
    #[error("stored task event of task {task_id} (seq {seq}) has unknown kind {kind:?}")]
    BadEventKind {
        task_id: String,
        seq: u64,
        kind: String,
    },
}

type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, Clone, PartialEq)]
pub struct TaskDefRecord {
    pub family: String,
    pub revision: i64,
    pub active: bool,
    pub raw: serde_json::Value,
    pub registered_at_ms: i64,
    pub deregistered_at_ms: Option<i64>,
    /// DeleteTaskDefinitions: the revision is DELETE_IN_PROGRESS.
    pub delete_requested_at_ms: Option<i64>,
}

impl TaskDefRecord {
    pub fn status(&self) -> TaskDefinitionStatus {
        TaskDefinitionStatus::of(self.active, self.delete_requested_at_ms.is_some())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterRecord {
    pub name: String,
    pub status: ClusterStatus,
    pub created_at_ms: i64,
    pub config: ClusterConfig,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterCounts {
    pub instances: i64,
    pub running_tasks: i64,
    pub pending_tasks: i64,
    pub active_services: i64,
}

#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub cluster: Option<String>,
    pub instance_id: Option<String>,
    pub family: Option<String>,
    pub started_by: Option<String>,
    pub desired_status: Option<String>,
    /// Only tasks whose lastStatus is not STOPPED.
    pub not_stopped: bool,
}

/// What DeregisterContainerInstance did to the store.
#[derive(Debug, Clone, PartialEq)]
pub enum Deregistration {
    NoSuchInstance,
    /// Not forced, and this many of its tasks are not STOPPED: nothing written.
    HasTasks(usize),
    /// The instance is INACTIVE; these tasks of it were recorded STOPPED (orphaned).
    Done(Vec<Task>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeOutcome {
    /// Already applied under this sequence number.
    Duplicate,
    Applied,
    /// Recorded as seen but not applied; the reason is for the log.
    Ignored(String),
}

/// One outbox entry: the payload body as the session layer encoded it.
pub type OutboxEntry = (u64, Vec<u8>);

/// Everything berth-cp keeps: what the application layer and the agent service are given.
pub trait Store:
    AuditStore
    + ClusterStore
    + TaskDefinitionStore
    + ActivationStore
    + InstanceStore
    + TaskStore
    + SecurityGroupStore
    + SecretStore
    + PayloadStore
    + ServiceStore
    + TagStore
    + AccountSettingStore
    + Send
    + Sync
{
}

impl<T> Store for T where
    T: AuditStore
        + ClusterStore
        + TaskDefinitionStore
        + ActivationStore
        + InstanceStore
        + TaskStore
        + SecurityGroupStore
        + SecretStore
        + PayloadStore
        + ServiceStore
        + TagStore
        + AccountSettingStore
        + Send
        + Sync
{
}

/// Tags of every taggable resource, by the resource part of its ARN (`tags::Resource::key`),
/// in the order they were added. Whether the resource exists is the caller's to check.
pub trait TagStore {
    /// The resource's tags; none when it has none (or does not exist).
    fn tags_of(&self, resource: &str) -> Result<Vec<Tag>>;

    /// Changes a resource's tags atomically: `change` sees the stored tags and edits them, or
    /// refuses (nothing is written). Returns the tags as written.
    fn change_tags(
        &self,
        resource: &str,
        change: &mut dyn FnMut(&mut Vec<Tag>) -> std::result::Result<(), String>,
    ) -> Result<std::result::Result<Vec<Tag>, String>>;

    /// Sets the tags of resources just created, in one transaction (replacing any there).
    fn set_tags(&self, entries: &[(String, Vec<Tag>)]) -> Result<()>;
}

/// Clusters: created on first use or by CreateCluster, counted for DescribeClusters, deleted
/// (INACTIVE) by DeleteCluster.
pub trait ClusterStore {
    /// Creates the cluster unless it exists, ACTIVE or INACTIVE (a deleted `default` stays
    /// deleted across restarts); returns whether it was created.
    fn ensure_cluster(&self, name: &str, now_ms: i64) -> Result<bool>;

    /// Creates the cluster with `config`, or makes an INACTIVE one ACTIVE again as new (with
    /// `config`, and without the tags it had); an ACTIVE one is returned unchanged. Says
    /// whether the cluster is new.
    fn create_cluster(
        &self,
        name: &str,
        now_ms: i64,
        config: &ClusterConfig,
    ) -> Result<(ClusterRecord, bool)>;

    /// Changes an ACTIVE cluster's configuration atomically: `change` edits it or refuses
    /// (nothing is written). None when there is no ACTIVE cluster of the name.
    fn change_cluster_config(
        &self,
        name: &str,
        change: &mut dyn FnMut(&mut ClusterConfig) -> std::result::Result<(), String>,
    ) -> Result<Option<std::result::Result<ClusterRecord, String>>>;

    /// A cluster of either status.
    fn get_cluster(&self, name: &str) -> Result<Option<ClusterRecord>>;

    /// Whether the cluster exists and is ACTIVE.
    fn cluster_exists(&self, name: &str) -> Result<bool>;

    /// The ACTIVE clusters, by name.
    fn list_clusters(&self) -> Result<Vec<String>>;

    /// Makes the ACTIVE cluster INACTIVE unless `refuse` says no, judging its contents as read
    /// in the same transaction. None when there is no ACTIVE cluster of the name.
    fn deactivate_cluster(
        &self,
        name: &str,
        refuse: &dyn Fn(&ClusterContents) -> Option<DeleteRefusal>,
    ) -> Result<Option<std::result::Result<ClusterRecord, DeleteRefusal>>>;

    fn cluster_counts(&self, name: &str) -> Result<ClusterCounts>;
}

/// Task definitions: revisions per family, never removed (deregistering and deleting keep them,
/// so a task's definition is always found).
pub trait TaskDefinitionStore {
    /// Stores a new revision of `family` (the next after the highest ever registered).
    fn insert_task_definition(
        &self,
        family: &str,
        raw: &serde_json::Value,
        now_ms: i64,
    ) -> Result<TaskDefRecord>;

    /// A given revision, or the latest ACTIVE one.
    fn get_task_definition(
        &self,
        family: &str,
        revision: Option<i64>,
    ) -> Result<Option<TaskDefRecord>>;

    /// (family, revision) pairs of the status (every status: None), sorted by family then
    /// revision.
    fn list_task_definitions(
        &self,
        family: Option<&str>,
        status: Option<TaskDefinitionStatus>,
    ) -> Result<Vec<(String, i64)>>;

    /// Every family whose name starts with `prefix`, by name, and whether it has an ACTIVE
    /// revision.
    fn list_task_definition_families(&self, prefix: Option<&str>) -> Result<Vec<(String, bool)>>;

    /// Marks an INACTIVE revision DELETE_IN_PROGRESS (an ACTIVE one is left as it is). Returns
    /// the revision as it now is, or None when there is no such revision.
    fn delete_task_definition(
        &self,
        family: &str,
        revision: i64,
        now_ms: i64,
    ) -> Result<Option<TaskDefRecord>>;

    fn deregister_task_definition(
        &self,
        family: &str,
        revision: i64,
        now_ms: i64,
    ) -> Result<Option<TaskDefRecord>>;
}

/// Activation codes, and the registration that spends one.
pub trait ActivationStore {
    fn insert_activation(
        &self,
        code_sha256: &str,
        code: &ActivationCode,
        now_ms: i64,
    ) -> Result<()>;

    fn revoke_activation(&self, code_sha256: &str) -> Result<bool>;

    /// Checks and spends one use of the code and creates the instance, atomically, so two agents
    /// racing for the last use cannot both win.
    fn register_with_activation(
        &self,
        code_sha256: &str,
        instance: &Instance,
        now_ms: i64,
    ) -> Result<std::result::Result<(), Refusal>>;
}

/// Container instances: their credentials, details and runtime health.
pub trait InstanceStore {
    fn get_instance(&self, id: &str) -> Result<Option<Instance>>;

    fn list_instances(&self, cluster: &str) -> Result<Vec<Instance>>;

    fn update_instance_info(&self, id: &str, info: &InstanceInfo) -> Result<()>;

    /// Changes the user-set state of several instances in one transaction: `change` sees each
    /// one's stored state (with its id) and edits it, or refuses, and then nothing is written
    /// for any of them. None: one of the instances does not exist (nothing written).
    fn modify_instance_states(
        &self,
        ids: &[&str],
        change: &mut dyn FnMut(&str, &mut InstanceState) -> std::result::Result<(), String>,
    ) -> Result<Option<std::result::Result<Vec<InstanceState>, String>>>;

    /// `modify_instance_states` for one instance.
    fn modify_instance_state(
        &self,
        id: &str,
        change: &mut dyn FnMut(&mut InstanceState) -> std::result::Result<(), String>,
    ) -> Result<Option<std::result::Result<InstanceState, String>>> {
        let changed = self.modify_instance_states(&[id], &mut |_, state| change(state))?;
        Ok(changed.map(|r| r.map(|mut states| states.remove(0))))
    }

    fn revoke_instance(&self, id: &str) -> Result<bool>;

    /// DeregisterContainerInstance in one transaction: the instance becomes INACTIVE (revoked:
    /// its agent can no longer connect) and, when `force`, each of its tasks not STOPPED is
    /// orphaned ([`Task::orphan`]) at `now_ms`; without `force` an instance with such tasks is
    /// left as it was.
    fn deregister_instance(&self, id: &str, force: bool, now_ms: i64) -> Result<Deregistration>;

    /// A heartbeat at `now_ms` saying whether containerd is healthy: updates the instance's
    /// runtime health (see [`RuntimeHealth::observe`]). Returns the new record, or None when
    /// there is no such instance.
    fn record_heartbeat(
        &self,
        id: &str,
        containerd_healthy: bool,
        now_ms: i64,
    ) -> Result<Option<RuntimeHealth>>;
}

/// Tasks, their payloads, and the state changes agents report, each applied once.
pub trait TaskStore {
    /// Inserts placed tasks and, per instance, one payload carrying them, in one transaction, so
    /// a task is never recorded without the payload that tells its agent.
    fn insert_tasks(
        &self,
        tasks: &[Task],
        encode_payload: &dyn Fn(u64, &[&Task]) -> Vec<u8>,
    ) -> Result<()>;

    fn get_task(&self, id: &str) -> Result<Option<Task>>;

    fn list_tasks(&self, f: &TaskFilter) -> Result<Vec<Task>>;

    /// A stop request (the user's, or a service scheduler's: `stop_code`): the task change and
    /// the payload telling the agent, atomically. None when there is no such task.
    fn stop_task(
        &self,
        id: &str,
        stop_code: &str,
        reason: Option<&str>,
        now_ms: i64,
        encode_payload: &dyn Fn(u64, &Task) -> Vec<u8>,
    ) -> Result<Option<Task>>;

    /// Applies an agent state change once, at `now_ms`: the change and its sequence number are
    /// stored in one transaction, so a resent change after a crash is recognised as a duplicate.
    fn apply_state_change(
        &self,
        instance_id: &str,
        seq: u64,
        change: &AgentChange,
        now_ms: i64,
    ) -> Result<ChangeOutcome>;

    /// The task's event history in sequence order; None when there is no such task.
    fn task_events(&self, task_id: &str) -> Result<Option<Vec<TaskEvent>>>;

    /// Sets (Some: until then, ms) or clears a task's scale-in protection; nothing the agent
    /// needs to know. None when there is no such task.
    fn set_task_protection(&self, id: &str, until_ms: Option<i64>) -> Result<Option<Task>>;
}

/// Security groups for awsvpc tasks.
pub trait SecurityGroupStore {
    /// Creates the group `name`, or replaces the content of the existing one (keeping its id).
    /// Returns the group and whether it was created.
    fn put_security_group(
        &self,
        name: &str,
        content: &GroupContent,
        now_ms: i64,
    ) -> Result<(SecurityGroup, bool)>;

    /// A group by id or name.
    fn get_security_group(&self, reference: &str) -> Result<Option<SecurityGroup>>;

    fn list_security_groups(&self) -> Result<Vec<SecurityGroup>>;

    fn delete_security_group(&self, id: &str) -> Result<bool>;
}

/// Registry logins for repositoryCredentials.
pub trait SecretStore {
    /// Creates the secret `name` with `arn`, or replaces the login of the existing one (keeping
    /// its ARN and creation time). Returns it and whether it was created.
    fn put_secret(
        &self,
        name: &str,
        arn: &str,
        login: &Login,
        now_ms: i64,
    ) -> Result<(SecretInfo, bool)>;

    /// A secret and its login, by name or ARN.
    fn get_secret(&self, reference: &str) -> Result<Option<(SecretInfo, Login)>>;

    /// Every secret, by name; never their logins.
    fn list_secrets(&self) -> Result<Vec<SecretInfo>>;

    fn delete_secret(&self, name: &str) -> Result<bool>;
}

/// Each instance's payload outbox: what its agent has not acknowledged yet.
pub trait PayloadStore {
    fn outbox_after(&self, instance_id: &str, seq: u64) -> Result<Vec<OutboxEntry>>;

    /// Makes the instance's payload sequence continue after `agent_last`, the highest the
    /// agent has recorded, when this store is behind it (restored from a backup): new payloads
    /// would otherwise carry sequences the agent has seen, and the session would not send them.
    /// Unsent payloads are renumbered in order. Returns how many, or None when not behind.
    fn rebase_payloads(&self, instance_id: &str, agent_last: u64) -> Result<Option<usize>>;

    /// The agent has recorded every payload up to `seq`: they need never be sent again.
    fn ack_payloads(&self, instance_id: &str, seq: u64) -> Result<()>;
}

/// Services: one record each, by cluster and name (deployments and events inside).
pub trait ServiceStore {
    /// Creates the service unless one of its name is ACTIVE or DRAINING in its cluster: then
    /// that one is returned and nothing is written. An INACTIVE one of the name is replaced.
    fn insert_service(&self, service: &Service) -> Result<Option<Service>>;

    fn get_service(&self, cluster: &str, name: &str) -> Result<Option<Service>>;

    /// The cluster's services of every status, by name.
    fn list_services(&self, cluster: &str) -> Result<Vec<Service>>;

    /// Every service that is not INACTIVE, in every cluster: what the controller reconciles.
    fn live_services(&self) -> Result<Vec<Service>>;

    fn save_service(&self, service: &Service) -> Result<()>;

    /// Saves `new` only if the stored service is still `expected`, in one transaction; says
    /// whether it was saved (false: someone else changed it meanwhile).
    fn replace_service(&self, expected: &Service, new: &Service) -> Result<bool>;
}

/// Account settings (PutAccountSetting): one value per setting name and principal.
pub trait AccountSettingStore {
    /// Sets the principal's value of the setting, replacing any it had.
    fn put_account_setting(&self, setting: &AccountSetting) -> Result<()>;

    /// Removes the principal's value of the setting; returns it, or None when none was set.
    fn delete_account_setting(
        &self,
        name: SettingName,
        principal_arn: &str,
    ) -> Result<Option<AccountSetting>>;

    /// Every principal's settings, by name then principal.
    fn list_account_settings(&self) -> Result<Vec<AccountSetting>>;
}

/// The audit log: records appended, never changed, listed in the order written.
pub trait AuditStore {
    /// Appends `event` (its `id` is ignored); returns the id it was given.
    fn append_audit(&self, event: &AuditEvent) -> Result<i64>;

    /// At most `limit` records with ids above `after`, oldest first.
    fn list_audit(&self, after: i64, limit: usize) -> Result<Vec<AuditEvent>>;
}
