//! Task definitions: registered after validation and the compatibility review, found by
//! family, family:revision or ARN, deregistered, deleted (DELETE_IN_PROGRESS) but never removed.

use std::collections::HashMap;
use std::sync::Arc;

use super::tags::Tags;
use super::CpError;
use crate::clock::now_ms;
use crate::domain::compat;
use crate::domain::ids::{self, Arns};
use crate::domain::tags::{Resource, Tag};
use crate::domain::task::Task;
use crate::domain::taskdef::{
    self, FamilyStatus, HealthDef, TaskDefinitionStatus, MAX_DELETE_REVISIONS,
};
use crate::state::{Store, TaskDefRecord};

/// What DeleteTaskDefinitions did.
#[derive(Debug, Default)]
pub struct Deleted {
    /// The revisions now DELETE_IN_PROGRESS.
    pub deleted: Vec<TaskDefRecord>,
    /// (ARN, ECS's reason) of each revision not deleted.
    pub failures: Vec<(String, String)>,
}

#[derive(Clone)]
pub struct TaskDefinitions {
    store: Arc<dyn Store>,
    arns: Arns,
    tags: Tags,
}

/// What the task definitions of some tasks say about their containers' health (essential,
/// has a healthCheck): what a task's healthStatus is decided over.
#[derive(Debug, Default)]
pub struct HealthDefs(HashMap<(String, i64), Vec<HealthDef>>);

impl HealthDefs {
    /// The task's containers, as its definition has them; empty when it cannot be found.
    pub fn of(&self, t: &Task) -> &[HealthDef] {
        self.0
            .get(&(t.family.clone(), t.revision))
            .map_or(&[], Vec::as_slice)
    }
}

impl TaskDefinitions {
    pub fn new(store: Arc<dyn Store>, arns: Arns) -> Self {
        Self {
            tags: Tags::new(store.clone(), arns.clone()),
            store,
            arns,
        }
    }

    /// Registers the next revision of the definition's family, with `tags`.
    pub fn register(
        &self,
        raw: &serde_json::Value,
        tags: Vec<Tag>,
    ) -> Result<TaskDefRecord, CpError> {
        let spec = taskdef::parse(raw)?;
        Tags::check_new(&tags)?;
        let review = compat::review(raw);
        if !review.refused.is_empty() {
            return Err(CpError::Client(format!(
                "not supported on Berth: {}",
                review.refused.join("; ")
            )));
        }
        let record = self
            .store
            .insert_task_definition(&spec.family, raw, now_ms())?;
        let resource = Resource::TaskDefinition {
            family: record.family.clone(),
            revision: record.revision,
        };
        self.tags.set_new(vec![(resource, tags)])?;
        if !review.ignored.is_empty() {
            tracing::warn!(
                family = %spec.family,
                revision = record.revision,
                "accepted and ignored: {}",
                review.ignored.join(", ")
            );
        }
        if !review.unknown.is_empty() {
            tracing::warn!(
                family = %spec.family,
                revision = record.revision,
                "unknown fields, kept and echoed back: {}",
                review.unknown.join(", ")
            );
        }
        Ok(record)
    }

    /// A definition by family (its latest ACTIVE revision), family:revision or ARN.
    pub fn get(&self, reference: &str) -> Result<TaskDefRecord, CpError> {
        let (family, revision) = ids::parse_task_definition_ref(reference).ok_or_else(|| {
            CpError::Client(format!(
                "taskDefinition: {reference:?} is not a family, family:revision or task definition ARN"
            ))
        })?;
        self.store
            .get_task_definition(&family, revision)?
            .ok_or_else(|| CpError::TaskDefinitionNotFound(reference.to_string()))
    }

    /// The definition a task was made from (a revision is never removed).
    pub fn of_task(&self, t: &Task) -> Result<Option<TaskDefRecord>, CpError> {
        Ok(self
            .store
            .get_task_definition(&t.family, Some(t.revision))?)
    }

    /// A definition that RunTask may start: found and ACTIVE.
    pub fn runnable(&self, reference: &str) -> Result<TaskDefRecord, CpError> {
        let record = self.get(reference)?;
        if !record.active {
            return Err(CpError::TaskDefinitionInactive(
                self.arns.task_definition(&record.family, record.revision),
            ));
        }
        Ok(record)
    }

    pub fn list(
        &self,
        family: Option<&str>,
        status: TaskDefinitionStatus,
    ) -> Result<Vec<(String, i64)>, CpError> {
        Ok(self.store.list_task_definitions(family, Some(status))?)
    }

    /// ListTaskDefinitionFamilies: the families whose name starts with `prefix`, by name.
    pub fn families(
        &self,
        prefix: Option<&str>,
        status: FamilyStatus,
    ) -> Result<Vec<String>, CpError> {
        Ok(self
            .store
            .list_task_definition_families(prefix)?
            .into_iter()
            .filter(|(_, has_active)| status.includes(*has_active))
            .map(|(family, _)| family)
            .collect())
    }

    /// DeleteTaskDefinitions: each INACTIVE revision becomes DELETE_IN_PROGRESS; the others
    /// are failures (ARN, ECS's reason). Tasks already started from one are not touched.
    pub fn delete(&self, references: &[String]) -> Result<Deleted, CpError> {
        if references.is_empty() || references.len() > MAX_DELETE_REVISIONS {
            return Err(CpError::InvalidParameter(format!(
                "taskDefinitions: 1 to {MAX_DELETE_REVISIONS} task definitions, {} given",
                references.len()
            )));
        }
        let revisions = references
            .iter()
            .map(|r| revision_ref(r))
            .collect::<Result<Vec<_>, _>>()?;
        let (mut deleted, mut failures) = (Vec::new(), Vec::new());
        let now = now_ms();
        for (family, revision) in revisions {
            let arn = self.arns.task_definition(&family, revision);
            match self.store.delete_task_definition(&family, revision, now)? {
                None => failures.push((
                    arn,
                    "The specified task definition does not exist. Specify a valid account, family, revision and try again.".to_string(),
                )),
                Some(record) => match record.status().deletion_failure() {
                    Some(reason) => failures.push((arn, reason.to_string())),
                    None => deleted.push(record),
                },
            }
        }
        Ok(Deleted { deleted, failures })
    }

    pub fn deregister(&self, reference: &str) -> Result<TaskDefRecord, CpError> {
        let (family, revision) = revision_ref(reference)?;
        self.store
            .deregister_task_definition(&family, revision, now_ms())?
            .ok_or_else(|| CpError::TaskDefinitionNotFound(reference.to_string()))
    }

    /// The health-relevant part of the task definitions `tasks` were made from, each read once.
    /// Task definitions are never removed (deregistering and deleting keep them), so each is
    /// found.
    pub fn health_defs(&self, tasks: &[Task]) -> Result<HealthDefs, CpError> {
        let mut out = HashMap::new();
        for t in tasks {
            let key = (t.family.clone(), t.revision);
            if out.contains_key(&key) {
                continue;
            }
            let defs = self
                .of_task(t)?
                .map(|r| taskdef::health_defs(&r.raw))
                .unwrap_or_default();
            out.insert(key, defs);
        }
        Ok(HealthDefs(out))
    }
}

/// A reference that must name one revision (family:revision or ARN), as DeregisterTaskDefinition
/// and DeleteTaskDefinitions require.
fn revision_ref(reference: &str) -> Result<(String, i64), CpError> {
    ids::parse_task_definition_ref(reference)
        .and_then(|(f, r)| Some((f, r?)))
        .ok_or_else(|| {
            CpError::InvalidParameter(format!(
                "taskDefinition: {reference:?} must name a revision (family:revision or ARN)"
            ))
        })
}
