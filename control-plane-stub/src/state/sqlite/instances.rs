//! Container instances: their credentials, details and runtime health.

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::*;

impl InstanceStore for SqliteStore {
    fn get_instance(&self, id: &str) -> Result<Option<Instance>> {
        let conn = self.conn();
        let row = conn
            .query_row(
                &format!("{INSTANCE_SELECT} WHERE id = ?1"),
                [id],
                instance_row,
            )
            .optional()?;
        row.map(finish_instance).transpose()
    }

    fn list_instances(&self, cluster: &str) -> Result<Vec<Instance>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "{INSTANCE_SELECT} WHERE cluster = ?1 ORDER BY registered_at_ms, id"
        ))?;
        let rows = stmt.query_map([cluster], instance_row)?;
        rows.map(|r| finish_instance(r?)).collect()
    }

    fn update_instance_info(&self, id: &str, info: &InstanceInfo) -> Result<()> {
        self.conn().execute(
            "UPDATE instances SET info_json = ?2 WHERE id = ?1",
            params![id, serde_json::to_string(info)?],
        )?;
        Ok(())
    }

    fn modify_instance_states(
        &self,
        ids: &[&str],
        change: &mut dyn FnMut(&str, &mut InstanceState) -> std::result::Result<(), String>,
    ) -> Result<Option<std::result::Result<Vec<InstanceState>, String>>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut states = Vec::with_capacity(ids.len());
        for id in ids {
            let current: Option<String> = tx
                .query_row(
                    "SELECT state_json FROM instances WHERE id = ?1",
                    [id],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(current) = current else {
                return Ok(None);
            };
            let mut state: InstanceState = serde_json::from_str(&current)?;
            if let Err(refused) = change(id, &mut state) {
                return Ok(Some(Err(refused)));
            }
            tx.execute(
                "UPDATE instances SET state_json = ?2 WHERE id = ?1",
                params![id, serde_json::to_string(&state)?],
            )?;
            states.push(state);
        }
        tx.commit()?;
        Ok(Some(Ok(states)))
    }

    fn revoke_instance(&self, id: &str) -> Result<bool> {
        let n = self
            .conn()
            .execute("UPDATE instances SET revoked = 1 WHERE id = ?1", [id])?;
        Ok(n == 1)
    }

    fn deregister_instance(&self, id: &str, force: bool, now_ms: i64) -> Result<Deregistration> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let exists = tx
            .query_row("SELECT 1 FROM instances WHERE id = ?1", [id], |_| Ok(()))
            .optional()?
            .is_some();
        if !exists {
            return Ok(Deregistration::NoSuchInstance);
        }
        let live: Vec<String> = tx
            .prepare("SELECT id FROM tasks WHERE instance_id = ?1 AND last_status != 'STOPPED'")?
            .query_map([id], |r| r.get(0))?
            .collect::<std::result::Result<_, _>>()?;
        if !force && !live.is_empty() {
            return Ok(Deregistration::HasTasks(live.len()));
        }
        let mut orphaned = Vec::new();
        for task_id in &live {
            if let Some(mut t) = super::tasks::load_task(&tx, task_id)? {
                if t.orphan(now_ms) {
                    super::tasks::save_task(&tx, &t)?;
                    orphaned.push(t);
                }
            }
        }
        tx.execute("UPDATE instances SET revoked = 1 WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(Deregistration::Done(orphaned))
    }

    fn record_heartbeat(
        &self,
        id: &str,
        containerd_healthy: bool,
        now_ms: i64,
    ) -> Result<Option<RuntimeHealth>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let prev = tx
            .query_row(
                "SELECT containerd_healthy, health_changed_at_ms, last_heartbeat_ms
                 FROM instances WHERE id = ?1",
                [id],
                |r| Ok(runtime_health(r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some(prev) = prev else {
            return Ok(None);
        };
        let health = RuntimeHealth::observe(prev, containerd_healthy, now_ms);
        tx.execute(
            "UPDATE instances SET last_heartbeat_ms = ?2, containerd_healthy = ?3,
                 health_changed_at_ms = ?4 WHERE id = ?1",
            params![
                id,
                health.updated_at_ms,
                health.containerd_healthy,
                health.changed_at_ms
            ],
        )?;
        tx.commit()?;
        Ok(Some(health))
    }
}

pub(super) const INSTANCE_SELECT: &str =
    "SELECT id, cluster, secret_sha256, revoked, registered_at_ms,
    last_heartbeat_ms, last_state_change_seq, info_json, containerd_healthy,
    health_changed_at_ms, state_json FROM instances";

/// The stored runtime health: none until a heartbeat has said something (heartbeats recorded
/// before schema version 3 did not).
pub(super) fn runtime_health(
    containerd_healthy: Option<bool>,
    changed_at_ms: Option<i64>,
    last_heartbeat_ms: Option<i64>,
) -> Option<RuntimeHealth> {
    let containerd_healthy = containerd_healthy?;
    let updated_at_ms = last_heartbeat_ms.or(changed_at_ms)?;
    Some(RuntimeHealth {
        containerd_healthy,
        updated_at_ms,
        changed_at_ms: changed_at_ms.unwrap_or(updated_at_ms),
    })
}

pub(super) fn instance_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Instance, String, String)> {
    Ok((
        Instance {
            id: r.get(0)?,
            cluster: r.get(1)?,
            secret_sha256: r.get(2)?,
            revoked: r.get(3)?,
            registered_at_ms: r.get(4)?,
            last_heartbeat_ms: r.get(5)?,
            last_state_change_seq: r.get::<_, i64>(6)? as u64,
            info: InstanceInfo::default(),
            health: runtime_health(r.get(8)?, r.get(9)?, r.get(5)?),
            state: InstanceState::default(),
        },
        r.get(7)?,
        r.get(10)?,
    ))
}

pub(super) fn finish_instance(
    (instance, info, state): (Instance, String, String),
) -> Result<Instance> {
    Ok(Instance {
        info: serde_json::from_str(&info)?,
        state: serde_json::from_str(&state)?,
        ..instance
    })
}
