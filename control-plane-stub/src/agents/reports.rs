//! What agents send on their sessions: state changes, payload acks and heartbeats; and the task
//! manifest they are sent.

use crate::clock::now_ms;
use crate::domain::task::AgentChange;
use crate::state::{ChangeOutcome, StoreError, TaskFilter};

use super::Agents;

impl Agents {
    /// The ARNs of the tasks the instance should know about: every task placed on it whose
    /// lastStatus is not STOPPED, whatever its desiredStatus (a task being stopped is still
    /// the agent's to stop). Read from the store on every call, never cached: the agent stops
    /// what consecutive manifests leave out.
    pub fn manifest(&self, instance_id: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .store
            .list_tasks(&TaskFilter {
                instance_id: Some(instance_id.to_string()),
                not_stopped: true,
                ..TaskFilter::default()
            })?
            .iter()
            .map(|t| self.arns.task(&t.cluster, &t.id))
            .collect())
    }

    pub fn apply_change(
        &self,
        instance_id: &str,
        seq: u64,
        change: &AgentChange,
    ) -> Result<ChangeOutcome, StoreError> {
        let outcome = self
            .store
            .apply_state_change(instance_id, seq, change, now_ms())?;
        if outcome == ChangeOutcome::Applied {
            self.changed.notify_one();
        }
        Ok(outcome)
    }

    pub fn ack_payloads(&self, instance_id: &str, seq: u64) -> Result<(), StoreError> {
        self.store.ack_payloads(instance_id, seq)
    }

    /// Payloads continue after `agent_last` when this store is behind the agent (see
    /// [`crate::state::PayloadStore::rebase_payloads`]).
    pub fn rebase_payloads(
        &self,
        instance_id: &str,
        agent_last: u64,
    ) -> Result<Option<usize>, StoreError> {
        self.store.rebase_payloads(instance_id, agent_last)
    }

    pub fn heartbeat(&self, instance_id: &str, containerd_healthy: bool) -> Result<(), StoreError> {
        let health = self
            .store
            .record_heartbeat(instance_id, containerd_healthy, now_ms())?;
        // Logged when it changes (or is first known), not on every heartbeat.
        if let Some(h) = health.filter(|h| h.changed_at_ms == h.updated_at_ms) {
            if h.containerd_healthy {
                tracing::info!(instance.id = instance_id, "containerd reported healthy");
            } else {
                tracing::warn!(
                    instance.id = instance_id,
                    "containerd reported not healthy: instance IMPAIRED"
                );
            }
        }
        Ok(())
    }

    /// Registers a session and sends it every stored payload after `last_payload_seq`.
    pub fn attach(
        &self,
        instance_id: &str,
        last_payload_seq: u64,
        tx: super::sessions::Outbound,
    ) -> Result<super::sessions::Attached, StoreError> {
        self.sessions
            .attach(instance_id, last_payload_seq, tx, &*self.store)
    }
}
