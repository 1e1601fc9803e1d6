//! ExecuteCommand: a user's command in a task's container, through the agent that runs it.
//! A session is made here, checked against `domain::exec`'s rules, and kept in memory until the
//! user's stream (`api::berth::exec`) claims it with its token, once, within
//! [`SESSION_TTL`]; the stream then talks to the agent through `agents`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::tasks::Tasks;
use super::CpError;
use crate::agents::Agents;
use crate::domain::exec::{command_words, exec_container};
use crate::domain::ids::{self, Arns};

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
}

pub struct Execs {
    tasks: Tasks,
    agents: Arc<Agents>,
    arns: Arns,
    pending: Mutex<HashMap<String, (ExecSession, Instant)>>,
}

impl Execs {
    pub fn new(tasks: Tasks, agents: Arc<Agents>, arns: Arns) -> Self {
        Self {
            tasks,
            agents,
            arns,
            pending: Mutex::new(HashMap::new()),
        }
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<String, (ExecSession, Instant)>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// ExecuteCommand: checks the task, container and command and makes a session.
    pub fn start(
        &self,
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
        };
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
