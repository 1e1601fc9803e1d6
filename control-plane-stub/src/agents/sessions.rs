//! The live agent sessions: instance id -> the sender of its control stream.
//!
//! Payloads are never pushed by value: whoever has added to an instance's outbox calls `flush`,
//! which sends everything past what this session has already sent, in sequence order. That keeps
//! the resend at Hello and concurrent RunTask/StopTask pushes from reordering or duplicating.
//! Stored payloads hold no registry password: each send fills the containers' registry
//! credentials from the secrets as they are then (`wire::fill_registry_credentials`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use berth_proto::v1 as pb;
use tokio::sync::{mpsc, oneshot};

use crate::state::{Store, StoreError};

pub type Outbound = mpsc::UnboundedSender<Result<pb::ControlMessage, tonic::Status>>;

struct Session {
    id: u64,
    tx: Outbound,
    last_sent_payload_seq: u64,
    /// Fired when a newer session for the same instance replaces this one, or at shutdown.
    replaced: Option<oneshot::Sender<()>>,
}

#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, Session>>,
    next_id: AtomicU64,
}

/// A session's identity in the registry, used to detach only itself.
pub struct Attached {
    pub session_id: u64,
    pub replaced: oneshot::Receiver<()>,
}

impl Sessions {
    fn live(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a session (ending an older one of the same instance) and sends it every stored
    /// payload after `last_payload_seq`.
    pub fn attach(
        &self,
        instance_id: &str,
        last_payload_seq: u64,
        tx: Outbound,
        store: &dyn Store,
    ) -> Result<Attached, StoreError> {
        let session_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (replaced_tx, replaced_rx) = oneshot::channel();
        let mut live = self.live();
        if let Some(mut old) = live.insert(
            instance_id.to_string(),
            Session {
                id: session_id,
                tx,
                last_sent_payload_seq: last_payload_seq,
                replaced: Some(replaced_tx),
            },
        ) {
            let _ = old.tx.send(Err(tonic::Status::aborted(
                "replaced by a newer session of the same instance",
            )));
            if let Some(r) = old.replaced.take() {
                let _ = r.send(());
            }
        }
        flush_locked(&mut live, instance_id, store)?;
        Ok(Attached {
            session_id,
            replaced: replaced_rx,
        })
    }

    /// Removes the session unless a newer one has replaced it.
    pub fn detach(&self, instance_id: &str, session_id: u64) {
        let mut live = self.live();
        if live.get(instance_id).is_some_and(|s| s.id == session_id) {
            live.remove(instance_id);
        }
    }

    /// Sends the instance's new outbox entries, if it is connected.
    pub fn flush(&self, instance_id: &str, store: &dyn Store) -> Result<(), StoreError> {
        flush_locked(&mut self.live(), instance_id, store)
    }

    /// Ends every session, so a graceful shutdown is not held open by long-lived streams.
    pub fn close_all(&self, why: &str) {
        for (_, mut s) in self.live().drain() {
            let _ = s.tx.send(Err(tonic::Status::unavailable(why.to_string())));
            if let Some(r) = s.replaced.take() {
                let _ = r.send(());
            }
        }
    }

    /// Ends the instance's live session, if any, with `status` (the agent sees why).
    pub fn end(&self, instance_id: &str, status: tonic::Status) {
        if let Some(mut s) = self.live().remove(instance_id) {
            let _ = s.tx.send(Err(status));
            if let Some(r) = s.replaced.take() {
                let _ = r.send(());
            }
        }
    }

    pub fn connected(&self) -> HashSet<String> {
        self.live().keys().cloned().collect()
    }

    pub fn is_connected(&self, instance_id: &str) -> bool {
        self.live().contains_key(instance_id)
    }

    /// The id of the instance's live session, if it is connected.
    pub fn session_id(&self, instance_id: &str) -> Option<u64> {
        self.live().get(instance_id).map(|s| s.id)
    }

    /// Sends a TaskManifest computed by `manifest` on session `session_id` of the instance, if
    /// that session is still the live one. Returns whether it was sent.
    ///
    /// The manifest is computed while holding the registry lock, which `flush` holds while
    /// sending payloads: a payload sent before this manifest has its task committed before the
    /// manifest is read, so the agent is never sent a manifest that misses a task it was already
    /// told to run.
    pub fn send_manifest<E>(
        &self,
        instance_id: &str,
        session_id: u64,
        manifest: impl FnOnce() -> Result<Vec<String>, E>,
    ) -> Result<bool, E> {
        let live = self.live();
        let Some(s) = live.get(instance_id).filter(|s| s.id == session_id) else {
            return Ok(false);
        };
        let task_arns = manifest()?;
        let msg = pb::ControlMessage {
            msg: Some(pb::control_message::Msg::Manifest(pb::TaskManifest {
                task_arns,
            })),
        };
        Ok(s.tx.send(Ok(msg)).is_ok())
    }

    /// Sends one message on the instance's live session; returns that session's id, or None if
    /// the instance is not connected. For messages outside the payload sequence (log requests).
    pub fn send(&self, instance_id: &str, msg: pb::ControlMessage) -> Option<u64> {
        let live = self.live();
        let s = live.get(instance_id)?;
        s.tx.send(Ok(msg)).ok().map(|()| s.id)
    }
}

fn flush_locked(
    live: &mut HashMap<String, Session>,
    instance_id: &str,
    store: &dyn Store,
) -> Result<(), StoreError> {
    let Some(session) = live.get_mut(instance_id) else {
        return Ok(());
    };
    for (seq, bytes) in store.outbox_after(instance_id, session.last_sent_payload_seq)? {
        match crate::agents::wire::payload_message(&bytes) {
            Ok(mut msg) => {
                if let Some(pb::control_message::Msg::Payload(p)) = &mut msg.msg {
                    p.seq = seq;
                    let unresolved =
                        crate::agents::wire::fill_registry_credentials(p, |parameter| {
                            Ok::<_, StoreError>(
                                store.get_secret(parameter)?.map(|(_, login)| login),
                            )
                        })?;
                    for u in unresolved {
                        tracing::warn!(
                            instance.id = instance_id,
                            seq,
                            task.arn = %u.task_arn,
                            container = %u.container,
                            "repositoryCredentials: no secret named {} in berth-cp any more; \
                             the task is sent without a registry login",
                            u.parameter
                        );
                    }
                }
                if session.tx.send(Ok(msg)).is_err() {
                    // The stream is gone; its session task will detach it.
                    return Ok(());
                }
            }
            Err(e) => tracing::error!(instance.id = instance_id, seq, "skipping payload: {e}"),
        }
        session.last_sent_payload_seq = seq;
    }
    Ok(())
}
