//! The agent-facing side: the berth.agent.v1 gRPC service, live sessions, registration with
//! activation codes and instance credentials, the task manifest, payload delivery, the agents'
//! reports, and the wire <-> domain conversion.
//!
//! [`Agents`] is what the rest of berth-cp sees of it: the application layer records payloads
//! in the store and calls [`Agents::deliver`]; the logs and exec endpoints route requests
//! through `sessions` and `replies`.

mod registration;
pub mod replies;
mod reports;
pub mod service;
pub mod sessions;
pub mod wire;

use std::sync::Arc;

use crate::domain::ids::Arns;
use crate::state::{Store, StoreError};
use replies::{ExecRouter, LogRouter};
use sessions::Sessions;

pub use registration::Registered;

pub struct Agents {
    store: Arc<dyn Store>,
    pub sessions: Sessions,
    /// Log requests waiting for their agent's chunks.
    pub logs: LogRouter,
    /// Exec sessions waiting for their agent's output.
    pub execs: ExecRouter,
    arns: Arns,
    pub heartbeat_interval_ms: u32,
    /// How often each session gets a fresh TaskManifest.
    pub manifest_interval_ms: u32,
    /// Notified when an agent's report changed a task, or a service changed: the service
    /// controller reconciles then, not only on its timer.
    pub changed: Arc<tokio::sync::Notify>,
}

impl Agents {
    pub fn new(
        store: Arc<dyn Store>,
        arns: Arns,
        heartbeat_interval_ms: u32,
        manifest_interval_ms: u32,
    ) -> Self {
        Self {
            store,
            sessions: Sessions::default(),
            logs: LogRouter::default(),
            execs: ExecRouter::default(),
            arns,
            heartbeat_interval_ms,
            manifest_interval_ms,
            changed: Arc::default(),
        }
    }

    /// Sends the instance's live session (if any) every payload recorded since its last send.
    /// Called after each write that adds payloads to an instance's outbox.
    pub fn deliver(&self, instance_id: &str) -> Result<(), StoreError> {
        self.sessions.flush(instance_id, &*self.store)
    }

    /// Which instances have a live session now.
    pub fn connected(&self) -> std::collections::HashSet<String> {
        self.sessions.connected()
    }
}
