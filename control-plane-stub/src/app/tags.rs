//! TagResource, UntagResource, ListTagsForResource for clusters, task definitions, tasks,
//! services and container instances, and the tags those get when created (their own, those
//! propagated to a task, ECS's managed tags). The rules are `domain::tags`'.

use std::sync::Arc;

use super::CpError;
use crate::domain::ids::Arns;
use crate::domain::service::ServiceStatus;
use crate::domain::tags::{self, Propagate, Resource, Tag};
use crate::state::Store;

/// Where a new task's tags come from (RunTask's, StartTask's or a service's settings).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewTaskTags {
    pub own: Vec<Tag>,
    pub propagate: Propagate,
    /// enableECSManagedTags.
    pub managed: bool,
    /// The service starting the task, when a service does.
    pub service: Option<String>,
}

#[derive(Clone)]
pub struct Tags {
    store: Arc<dyn Store>,
    arns: Arns,
}

impl Tags {
    pub fn new(store: Arc<dyn Store>, arns: Arns) -> Self {
        Self { store, arns }
    }

    /// The resource an ARN names, which must exist.
    fn existing(&self, arn: &str) -> Result<Resource, CpError> {
        let part = self.arns.resource_part(arn).ok_or_else(|| {
            CpError::InvalidParameter(format!(
                "resourceArn {arn:?} is not an ECS ARN of this region and account ({})",
                self.arns.cluster("NAME")
            ))
        })?;
        let resource = Resource::parse(part).map_err(CpError::InvalidParameter)?;
        let exists = match &resource {
            Resource::Cluster { name } => self.store.cluster_exists(name)?,
            Resource::TaskDefinition { family, revision } => self
                .store
                .get_task_definition(family, Some(*revision))?
                .is_some(),
            Resource::Task { cluster, id } => self
                .store
                .get_task(id)?
                .is_some_and(|t| t.cluster == *cluster),
            Resource::Service { cluster, name } => self
                .store
                .get_service(cluster, name)?
                .is_some_and(|s| s.status != ServiceStatus::Inactive),
            Resource::ContainerInstance { cluster, id } => self
                .store
                .get_instance(id)?
                .is_some_and(|i| i.cluster == *cluster),
        };
        if !exists {
            return Err(CpError::ResourceNotFound(arn.to_string()));
        }
        Ok(resource)
    }

    pub fn tag(&self, arn: &str, new: &[Tag]) -> Result<(), CpError> {
        if new.is_empty() {
            return Err(CpError::InvalidParameter(
                "tags: at least one tag is required".into(),
            ));
        }
        tags::check_user_tags(new).map_err(CpError::InvalidParameter)?;
        let resource = self.existing(arn)?;
        self.store
            .change_tags(&resource.key(), &mut |t| tags::apply(t, new))?
            .map_err(CpError::InvalidParameter)?;
        Ok(())
    }

    pub fn untag(&self, arn: &str, keys: &[String]) -> Result<(), CpError> {
        if keys.is_empty() {
            return Err(CpError::InvalidParameter(
                "tagKeys: at least one key is required".into(),
            ));
        }
        let resource = self.existing(arn)?;
        self.store
            .change_tags(&resource.key(), &mut |t| tags::remove(t, keys))?
            .map_err(CpError::InvalidParameter)?;
        Ok(())
    }

    pub fn list(&self, arn: &str) -> Result<Vec<Tag>, CpError> {
        let resource = self.existing(arn)?;
        Ok(self.store.tags_of(&resource.key())?)
    }

    /// A resource's tags (for the Describe calls' `include: TAGS`).
    pub fn of(&self, resource: &Resource) -> Result<Vec<Tag>, CpError> {
        Ok(self.store.tags_of(&resource.key())?)
    }

    /// Checks the tags a resource is created with.
    pub fn check_new(own: &[Tag]) -> Result<(), CpError> {
        tags::check_user_tags(own).map_err(CpError::InvalidParameter)
    }

    /// Records the tags of resources just created (after `check_new`), replacing what an
    /// older resource of the same name left (a service created again after its deletion).
    pub fn set_new(&self, entries: Vec<(Resource, Vec<Tag>)>) -> Result<(), CpError> {
        let entries: Vec<(String, Vec<Tag>)> =
            entries.into_iter().map(|(r, t)| (r.key(), t)).collect();
        Ok(self.store.set_tags(&entries)?)
    }

    /// The tags new tasks of `family:revision` in `cluster` get; refused (InvalidParameter)
    /// before anything is created when they break ECS's rules.
    pub fn for_new_tasks(
        &self,
        cluster: &str,
        family: &str,
        revision: i64,
        spec: &NewTaskTags,
    ) -> Result<Vec<Tag>, CpError> {
        Self::check_new(&spec.own)?;
        let propagated = match (spec.propagate, &spec.service) {
            (Propagate::None, _) => Vec::new(),
            (Propagate::TaskDefinition, _) => self.of(&Resource::TaskDefinition {
                family: family.to_string(),
                revision,
            })?,
            (Propagate::Service, Some(service)) => self.of(&Resource::Service {
                cluster: cluster.to_string(),
                name: service.clone(),
            })?,
            (Propagate::Service, None) => {
                return Err(CpError::InvalidParameter(
                    "propagateTags SERVICE: only a service's tasks can take their service's tags; RunTask and StartTask take TASK_DEFINITION or NONE".into(),
                ))
            }
        };
        let managed = spec.managed.then_some((cluster, spec.service.as_deref()));
        tags::for_new_task(&spec.own, &propagated, managed).map_err(CpError::InvalidParameter)
    }
}
