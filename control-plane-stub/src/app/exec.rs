//! ExecuteCommand: a user's command in a task's container, through the agent that runs it.
//! A session is made here, checked against `domain::exec`'s rules, and kept in memory until the
//! user's stream (`api::berth::exec`) claims it with its token, once, within
//! [`SESSION_TTL`]; the stream then talks to the agent through `agents`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::json;

use super::tasks::Tasks;
use super::CpError;
use crate::agents::Agents;
use crate::clock::now_ms;
use crate::domain::audit::{AuditEvent, EXECUTE_COMMAND, EXEC_SESSION_ENDED};
use crate::domain::exec::{command_words, exec_container};
use crate::domain::ids::{self, Arns};
use crate::state::Store;

/// How long an ExecuteCommand session waits for its stream.
pub const SESSION_TTL: Duration = Duration::from_secs(120);

/// An exec session ExecuteCommand made: what runs where, and the token its stream presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSession {
    pub session_id: String,
    pub token: String,
    pub cluster: String,
    pub task_id: String,
    pub task_arn: String,
    pub container: String,
    pub container_arn: String,
    pub instance_id: String,
    pub command: Vec<String>,
    /// Who asked for it (the audit log's principal).
    pub principal: String,
}

/// How an exec session ended, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEnd {
    Exited(i32),
    /// The user went away before the command ended (it was killed).
    Abandoned,
    Failed(String),
}

pub struct Execs {
    store: Arc<dyn Store>,
    tasks: Tasks,
    agents: Arc<Agents>,
    arns: Arns,
    pending: Mutex<HashMap<String, (ExecSession, Instant)>>,
}

impl Execs {
    pub fn new(store: Arc<dyn Store>, tasks: Tasks, agents: Arc<Agents>, arns: Arns) -> Self {
        Self {
            store,
            tasks,
            agents,
            arns,
            pending: Mutex::new(HashMap::new()),
        }
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<String, (ExecSession, Instant)>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// ExecuteCommand by `principal`: checks the task, container and command, makes a session
    /// and records it in the audit log.
    pub fn start(
        &self,
        principal: &str,
        cluster: &str,
        task: &str,
        container: Option<&str>,
        command: &str,
        interactive: bool,
    ) -> Result<ExecSession, CpError> {
        let words = command_words(command).map_err(|e| CpError::InvalidParameter(e.to_string()))?;
        let (found, _) = self.tasks.describe(cluster, &[task.to_string()])?;
        let task = found
            .into_iter()
            .next()
            .ok_or_else(|| CpError::TaskNotFound(task.to_string()))?;
        let name = exec_container(&task, container, interactive)
            .map_err(|e| CpError::InvalidParameter(e.to_string()))?;
        if self.agents.sessions.session_id(&task.instance_id).is_none() {
            return Err(CpError::TargetNotConnected(format!(
                "The execute command failed because the agent of container instance {} is not connected. Try again later.",
                task.instance_id
            )));
        }
        let container_id = task
            .containers
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.id.clone())
            .unwrap_or_default();
        let session = ExecSession {
            session_id: format!("ecs-execute-command-{}", ids::new_id()),
            token: ids::new_secret(),
            task_arn: self.arns.task(&task.cluster, &task.id),
            container_arn: self.arns.container(&task.cluster, &task.id, &container_id),
            cluster: task.cluster,
            task_id: task.id,
            container: name,
            instance_id: task.instance_id,
            command: words,
            principal: principal.to_string(),
        };
        self.store.append_audit(&AuditEvent {
            id: 0,
            at_ms: now_ms(),
            principal: session.principal.clone(),
            action: EXECUTE_COMMAND.into(),
            resource: session.task_arn.clone(),
            detail: json!({
                "sessionId": session.session_id,
                "container": session.container,
                "command": session.command,
            }),
        })?;
        let mut pending = self.pending();
        let now = Instant::now();
        pending.retain(|_, (_, made)| now.duration_since(*made) < SESSION_TTL);
        pending.insert(session.session_id.clone(), (session.clone(), now));
        tracing::info!(
            session = %session.session_id,
            task.arn = %session.task_arn,
            container = %session.container,
            command = ?session.command,
            "exec session made"
        );
        Ok(session)
    }

    /// The session `session_id`, for the stream that presents its token: once, and only
    /// within [`SESSION_TTL`]. A wrong token leaves the session for the right one.
    pub fn claim(&self, session_id: &str, token: &str) -> Option<ExecSession> {
        let mut pending = self.pending();
        let (session, made) = pending.get(session_id)?;
        if !ids::digests_equal(&ids::sha256_hex(&session.token), &ids::sha256_hex(token)) {
            return None;
        }
        let fresh = made.elapsed() < SESSION_TTL;
        let (session, _) = pending.remove(session_id)?;
        fresh.then_some(session)
    }
}

impl Execs {
    /// Records how a session's command ended. A record that cannot be written is logged: the
    /// command has run either way.
    pub fn ended(&self, session: &ExecSession, end: &ExecEnd) {
        let detail = match end {
            ExecEnd::Exited(code) => json!({"exitCode": code}),
            ExecEnd::Abandoned => json!({"abandoned": true}),
            ExecEnd::Failed(e) => json!({"error": e}),
        };
        let mut detail = detail;
        detail["sessionId"] = json!(session.session_id);
        detail["container"] = json!(session.container);
        let written = self.store.append_audit(&AuditEvent {
            id: 0,
            at_ms: now_ms(),
            principal: session.principal.clone(),
            action: EXEC_SESSION_ENDED.into(),
            resource: session.task_arn.clone(),
            detail,
        });
        if let Err(e) = written {
            tracing::error!(session = %session.session_id, error = %e, "cannot record the end of an exec session in the audit log");
        }
    }
}
