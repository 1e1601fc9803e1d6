//! Tasks, their payloads, and the state changes agents report, each applied once.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::outbox::{insert_outbox, next_payload_seq};
use super::*;
use crate::domain::task::EventKind;

impl TaskStore for SqliteStore {
    fn insert_tasks(
        &self,
        tasks: &[Task],
        encode_payload: &dyn Fn(u64, &[&Task]) -> Vec<u8>,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for t in tasks {
            tx.execute(
                "INSERT INTO tasks (id, cluster, instance_id, family, last_status, desired_status, started_by, created_at_ms, body_json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    t.id,
                    t.cluster,
                    t.instance_id,
                    t.family,
                    t.last_status.as_str(),
                    t.desired_status.as_str(),
                    t.started_by,
                    t.created_at_ms,
                    serde_json::to_string(t)?
                ],
            )?;
        }
        let mut instances: Vec<&str> = tasks.iter().map(|t| t.instance_id.as_str()).collect();
        instances.sort();
        instances.dedup();
        for instance in instances {
            let group: Vec<&Task> = tasks.iter().filter(|t| t.instance_id == instance).collect();
            let seq = next_payload_seq(&tx, instance)?;
            insert_outbox(&tx, instance, seq, &encode_payload(seq, &group))?;
        }
        tx.commit()?;
        Ok(())
    }

    fn get_task(&self, id: &str) -> Result<Option<Task>> {
        let conn = self.conn();
        load_task(&conn, id)
    }

    fn list_tasks(&self, f: &TaskFilter) -> Result<Vec<Task>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT body_json FROM tasks
             WHERE (?1 IS NULL OR cluster = ?1)
               AND (?2 IS NULL OR instance_id = ?2)
               AND (?3 IS NULL OR family = ?3)
               AND (?4 IS NULL OR started_by = ?4)
               AND (?5 IS NULL OR desired_status = ?5)
               AND (?6 = 0 OR last_status != 'STOPPED')
             ORDER BY created_at_ms, id",
        )?;
        let rows = stmt.query_map(
            params![
                f.cluster,
                f.instance_id,
                f.family,
                f.started_by,
                f.desired_status,
                f.not_stopped
            ],
            |r| r.get::<_, String>(0),
        )?;
        rows.map(|r| Ok(serde_json::from_str(&r?)?)).collect()
    }

    fn stop_task(
        &self,
        id: &str,
        stop_code: &str,
        reason: Option<&str>,
        now_ms: i64,
        encode_payload: &dyn Fn(u64, &Task) -> Vec<u8>,
    ) -> Result<Option<Task>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(mut task) = load_task(&tx, id)? else {
            return Ok(None);
        };
        if task.request_stop_as(stop_code, reason, now_ms) {
            save_task(&tx, &task)?;
            let seq = next_payload_seq(&tx, &task.instance_id)?;
            insert_outbox(&tx, &task.instance_id, seq, &encode_payload(seq, &task))?;
        }
        tx.commit()?;
        Ok(Some(task))
    }

    fn apply_state_change(
        &self,
        instance_id: &str,
        seq: u64,
        change: &AgentChange,
        now_ms: i64,
    ) -> Result<ChangeOutcome> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let last: i64 = tx.query_row(
            "SELECT last_state_change_seq FROM instances WHERE id = ?1",
            [instance_id],
            |r| r.get(0),
        )?;
        if seq <= last as u64 {
            return Ok(ChangeOutcome::Duplicate);
        }
        let task_id = crate::domain::ids::resource_id(change.task_arn());
        let outcome = match load_task(&tx, task_id)? {
            None => ChangeOutcome::Ignored(format!("unknown task {}", change.task_arn())),
            Some(t) if t.instance_id != instance_id => ChangeOutcome::Ignored(format!(
                "task {} is not placed on this instance",
                change.task_arn()
            )),
            Some(mut t) => {
                if t.apply(change, now_ms) {
                    save_task(&tx, &t)?;
                    // In the same transaction as the sequence number: exactly one event per
                    // applied sequence, never one for a duplicate.
                    insert_event(&tx, &t.id, &TaskEvent::of(seq, instance_id, change, now_ms))?;
                    ChangeOutcome::Applied
                } else {
                    ChangeOutcome::Ignored(format!(
                        "task {} has no such container",
                        change.task_arn()
                    ))
                }
            }
        };
        tx.execute(
            "UPDATE instances SET last_state_change_seq = ?2 WHERE id = ?1",
            params![instance_id, seq as i64],
        )?;
        tx.commit()?;
        Ok(outcome)
    }

    fn set_task_protection(&self, id: &str, until_ms: Option<i64>) -> Result<Option<Task>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(mut t) = load_task(&tx, id)? else {
            return Ok(None);
        };
        t.protected_until_ms = until_ms;
        save_task(&tx, &t)?;
        tx.commit()?;
        Ok(Some(t))
    }

    fn task_events(&self, task_id: &str) -> Result<Option<Vec<TaskEvent>>> {
        let conn = self.conn();
        let exists = conn
            .query_row("SELECT 1 FROM tasks WHERE id = ?1", [task_id], |_| Ok(()))
            .optional()?
            .is_some();
        if !exists {
            return Ok(None);
        }
        let mut stmt = conn.prepare(
            "SELECT seq, instance_id, kind, container_name, status, exit_code, reason, at_ms,
                    received_at_ms
             FROM task_events WHERE task_id = ?1 ORDER BY seq",
        )?;
        let rows = stmt.query_map([task_id], |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<i32>>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, i64>(8)?,
            ))
        })?;
        let mut events = Vec::new();
        for row in rows {
            let (seq, instance_id, kind, container_name, status, exit_code, reason, at_ms, recv) =
                row?;
            let kind = EventKind::parse(&kind).ok_or_else(|| StoreError::BadEventKind {
                task_id: task_id.to_string(),
                seq,
                kind: kind.clone(),
            })?;
            events.push(TaskEvent {
                seq,
                instance_id,
                kind,
                container_name,
                status,
                exit_code,
                reason,
                at_ms,
                received_at_ms: recv,
            });
        }
        Ok(Some(events))
    }
}

pub(super) fn load_task(conn: &Connection, id: &str) -> Result<Option<Task>> {
    let body: Option<String> = conn
        .query_row("SELECT body_json FROM tasks WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(body.map(|b| serde_json::from_str(&b)).transpose()?)
}

pub(super) fn save_task(conn: &Connection, t: &Task) -> Result<()> {
    conn.execute(
        "UPDATE tasks SET last_status = ?2, desired_status = ?3, body_json = ?4 WHERE id = ?1",
        params![
            t.id,
            t.last_status.as_str(),
            t.desired_status.as_str(),
            serde_json::to_string(t)?
        ],
    )?;
    Ok(())
}

pub(super) fn insert_event(conn: &Connection, task_id: &str, e: &TaskEvent) -> Result<()> {
    conn.execute(
        "INSERT INTO task_events (task_id, seq, instance_id, kind, container_name, status,
             exit_code, reason, at_ms, received_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            task_id,
            e.seq as i64,
            e.instance_id,
            e.kind.as_str(),
            e.container_name,
            e.status,
            e.exit_code,
            e.reason,
            e.at_ms,
            e.received_at_ms
        ],
    )?;
    Ok(())
}
