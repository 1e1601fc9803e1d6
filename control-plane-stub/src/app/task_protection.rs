//! Task scale-in protection (UpdateTaskProtection, GetTaskProtection): a protected task of a
//! service is never stopped by the service scheduler's scale-in or deployment (issue #17).
//! Only service tasks that have not stopped can be protected, as in ECS.

use super::tasks::Tasks;
use super::CpError;
use crate::clock::now_ms;
use crate::domain::task::{Task, TaskStatus, PROTECTION_DEFAULT_MINUTES, PROTECTION_MAX_MINUTES};

/// Why a task reference got no protection answer: ECS's failure reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectionFailure {
    pub reference: String,
    /// `TASK_NOT_VALID` or `MISSING`.
    pub reason: &'static str,
    pub detail: String,
}

impl Tasks {
    /// UpdateTaskProtection: protects (for `expires_in_minutes`, default 120, at most 2880) or
    /// unprotects each task.
    pub fn update_protection(
        &self,
        cluster: &str,
        references: &[String],
        enabled: bool,
        expires_in_minutes: Option<i64>,
    ) -> Result<(Vec<Task>, Vec<ProtectionFailure>), CpError> {
        self.clusters.require(cluster)?;
        check_references(references, 10)?;
        let minutes = expires_in_minutes.unwrap_or(PROTECTION_DEFAULT_MINUTES);
        if enabled && !(1..=PROTECTION_MAX_MINUTES).contains(&minutes) {
            return Err(CpError::InvalidParameter(format!(
                "expiresInMinutes: {minutes} must be between 1 and {PROTECTION_MAX_MINUTES}"
            )));
        }
        let until = enabled.then(|| now_ms() + minutes * 60_000);
        let mut done = Vec::new();
        let mut failures = Vec::new();
        for r in references {
            match self.find_task(cluster, r)? {
                None => failures.push(missing(r)),
                Some(t) if !t.group.starts_with("service:") => failures.push(ProtectionFailure {
                    reference: r.clone(),
                    reason: "TASK_NOT_VALID",
                    detail: "The task is not part of a service; only service tasks can be \
                             protected from scale-in"
                        .into(),
                }),
                Some(t) if t.last_status == TaskStatus::Stopped => {
                    failures.push(ProtectionFailure {
                        reference: r.clone(),
                        reason: "TASK_NOT_VALID",
                        detail: "The task is stopped".into(),
                    })
                }
                Some(t) => match self.store.set_task_protection(&t.id, until)? {
                    Some(t) => {
                        tracing::info!(task = %t.id, enabled, "task protection updated");
                        done.push(t)
                    }
                    None => failures.push(missing(r)),
                },
            }
        }
        Ok((done, failures))
    }

    /// GetTaskProtection: each task's protection as it stands.
    pub fn get_protection(
        &self,
        cluster: &str,
        references: &[String],
    ) -> Result<(Vec<Task>, Vec<ProtectionFailure>), CpError> {
        self.clusters.require(cluster)?;
        check_references(references, 100)?;
        let mut found = Vec::new();
        let mut failures = Vec::new();
        for r in references {
            match self.find_task(cluster, r)? {
                Some(t) => found.push(t),
                None => failures.push(missing(r)),
            }
        }
        Ok((found, failures))
    }
}

/// ECS takes 1 to 10 tasks per update, up to 100 per read.
fn check_references(references: &[String], max: usize) -> Result<(), CpError> {
    if references.is_empty() || references.len() > max {
        return Err(CpError::InvalidParameter(format!(
            "tasks: {} given; 1 to {max} may be",
            references.len()
        )));
    }
    Ok(())
}

fn missing(reference: &str) -> ProtectionFailure {
    ProtectionFailure {
        reference: reference.to_string(),
        reason: "MISSING",
        detail: "The task does not exist in this cluster".into(),
    }
}
