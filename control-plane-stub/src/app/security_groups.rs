//! Security groups: the ingress rules of awsvpc tasks, by id or name.

use std::sync::Arc;

use super::CpError;
use crate::clock::now_ms;
use crate::domain::ids::Arns;
use crate::domain::security::{self, SecurityGroup};
use crate::domain::task::Task;
use crate::domain::taskdef::TaskDefSpec;
use crate::state::{Store, TaskFilter};

/// RunTask's `networkConfiguration.awsvpcConfiguration`, as far as Berth acts on it: subnets
/// and assignPublicIp are accepted and ignored (Berth's task subnet is the agent's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkConfiguration {
    /// Security group ids or names.
    pub security_groups: Vec<String>,
}

/// The message ECS answers a networkConfiguration for a task that is not awsvpc with.
pub const NETWORK_CONFIGURATION_NOT_AWSVPC: &str =
    "Network Configuration is not valid for the given networkMode of this task definition.";

#[derive(Clone)]
pub struct SecurityGroups {
    store: Arc<dyn Store>,
    arns: Arns,
}

impl SecurityGroups {
    pub fn new(store: Arc<dyn Store>, arns: Arns) -> Self {
        Self { store, arns }
    }

    /// Creates or replaces the group `name`; returns it and whether it was created.
    pub fn put(
        &self,
        name: &str,
        body: &serde_json::Value,
    ) -> Result<(SecurityGroup, bool), CpError> {
        let mut problems = Vec::new();
        if let Err(e) = security::check_name(name) {
            problems.push(e);
        }
        let content = match security::parse_content(body) {
            Ok(c) => Some(c),
            Err(p) => {
                problems.extend(p);
                None
            }
        };
        let Some(content) = content.filter(|_| problems.is_empty()) else {
            return Err(CpError::InvalidParameter(problems.join("; ")));
        };
        let (group, created) = self.store.put_security_group(name, &content, now_ms())?;
        tracing::info!(group.id = %group.id, group.name = %group.name, rules = group.ingress.len(), created, "security group saved");
        Ok((group, created))
    }

    pub fn list(&self) -> Result<Vec<SecurityGroup>, CpError> {
        Ok(self.store.list_security_groups()?)
    }

    pub fn get(&self, reference: &str) -> Result<SecurityGroup, CpError> {
        self.store
            .get_security_group(reference)?
            .ok_or_else(|| CpError::SecurityGroupNotFound(reference.to_string()))
    }

    /// Deletes a group no task that is not stopped uses (as EC2 refuses to delete a group in use).
    pub fn delete(&self, reference: &str) -> Result<SecurityGroup, CpError> {
        let group = self.get(reference)?;
        let users: Vec<Task> = self
            .store
            .list_tasks(&TaskFilter {
                not_stopped: true,
                ..TaskFilter::default()
            })?
            .into_iter()
            .filter(|t| t.security_groups.contains(&group.id))
            .collect();
        if let Some(t) = users.first() {
            return Err(CpError::SecurityGroupInUse {
                group: format!("{} ({})", group.id, group.name),
                tasks: users.len(),
                example: self.arns.task(&t.cluster, &t.id),
            });
        }
        if !self.store.delete_security_group(&group.id)? {
            return Err(CpError::SecurityGroupNotFound(reference.to_string()));
        }
        tracing::info!(group.id = %group.id, group.name = %group.name, "security group deleted");
        Ok(group)
    }

    /// The security groups a RunTask names, checked against the task's network mode.
    pub fn for_task(
        &self,
        spec: &TaskDefSpec,
        config: Option<&NetworkConfiguration>,
    ) -> Result<Vec<SecurityGroup>, CpError> {
        let Some(config) = config else {
            return Ok(Vec::new());
        };
        if spec.network_mode != "awsvpc" {
            return Err(CpError::InvalidParameter(
                NETWORK_CONFIGURATION_NOT_AWSVPC.to_string(),
            ));
        }
        if config.security_groups.len() > security::MAX_GROUPS_PER_TASK {
            return Err(CpError::InvalidParameter(format!(
                "networkConfiguration.awsvpcConfiguration.securityGroups: at most {} security groups per task, got {}",
                security::MAX_GROUPS_PER_TASK,
                config.security_groups.len()
            )));
        }
        let mut groups: Vec<SecurityGroup> = Vec::new();
        for reference in &config.security_groups {
            let group = self.store.get_security_group(reference)?.ok_or_else(|| {
                CpError::InvalidParameter(format!(
                    "networkConfiguration.awsvpcConfiguration.securityGroups: no security group \
                     with id or name {reference:?} (create it with berthctl create-security-group)"
                ))
            })?;
            if !groups.iter().any(|g| g.id == group.id) {
                groups.push(group);
            }
        }
        Ok(groups)
    }
}
