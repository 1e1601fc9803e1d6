//! The agent's durable state: SQLite (WAL) under the data dir. The only module with SQL.
//!
//! Invariants:
//! - a task's state and the status reports it produced are written in one transaction, so a
//!   crash can neither lose a report nor report a state that was not saved;
//! - a payload's tasks and stop requests are written, with the payload's sequence, before the
//!   payload is acked;
//! - finished tasks stay recorded, so a payload that is delivered again never reruns one.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::model::{ContainerStatus, StopCode, TaskStatus};
use crate::task_state::{Report, TaskState};

const SCHEMA_VERSION: i32 = 1;
/// Reports queued per task at most (see `Store::bound_outbox`): with a task's few transitions
/// this is only reached by a container restarting or a health status flipping many times while
/// the control plane is away.
pub const OUTBOX_PER_TASK: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("state store: corrupt record for {what}: {message}")]
    Corrupt { what: String, message: String },
    #[error("state store {path}: schema version {found} is newer than this agent ({supported})")]
    TooNew {
        path: String,
        found: i32,
        supported: i32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub instance_id: String,
    pub secret: String,
    pub container_instance_arn: String,
}

/// A status report waiting for the control plane's ack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub seq: u64,
    pub task_arn: String,
    pub at_ms: i64,
    pub report: StoredReport,
}

/// `Report` as stored: plain data, independent of the state machine's types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoredReport {
    Container {
        name: String,
        runtime_id: String,
        status: ContainerStatus,
        exit_code: Option<i32>,
        reason: Option<String>,
        /// Absent in entries written by older agents.
        #[serde(default)]
        restart_count: u32,
        #[serde(default)]
        health: Option<crate::health::HealthState>,
        #[serde(default)]
        image_digest: Option<String>,
    },
    Task {
        status: TaskStatus,
        stop_code: Option<StopCode>,
        stopped_reason: Option<String>,
        /// Absent in entries written by older agents.
        #[serde(default)]
        network: Option<crate::network::TaskNetwork>,
        #[serde(default)]
        pull: Option<crate::task_state::PullTimes>,
    },
}

impl From<Report> for StoredReport {
    fn from(r: Report) -> Self {
        match r {
            Report::Container {
                name,
                runtime_id,
                status,
                exit_code,
                reason,
                restart_count,
                health,
                image_digest,
            } => Self::Container {
                name,
                runtime_id,
                status,
                exit_code,
                reason,
                restart_count,
                health,
                image_digest,
            },
            Report::Task {
                status,
                stop_code,
                stopped_reason,
                network,
                pull,
            } => Self::Task {
                status,
                stop_code,
                stopped_reason,
                network,
                pull,
            },
        }
    }
}

/// A stop the control plane asked for, recorded apart from the task's state so that the worker
/// owning the state never races with the session writing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopRequest {
    pub reason: String,
}

pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // NORMAL in WAL mode survives a crash of the process, which is what we guard against;
        // FULL would add an fsync to every state change.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i32 = conn
            .prepare_cached("PRAGMA user_version")?
            .query_row([], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: path.display().to_string(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if version < 1 {
            conn.execute_batch(
                "BEGIN;
                 CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS tasks (
                     arn TEXT PRIMARY KEY,
                     state TEXT NOT NULL,
                     stop_reason TEXT,
                     finished INTEGER NOT NULL DEFAULT 0,
                     updated_at_ms INTEGER NOT NULL
                 );
                 CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, body TEXT NOT NULL);
                 PRAGMA user_version = 1;
                 COMMIT;",
            )?;
        }
        // Recovery, payloads and the manifest read the unfinished tasks; finished ones pile up
        // until pruned. Without the index each of those reads walks every task ever run.
        conn.execute_batch(
            "CREATE INDEX IF NOT EXISTS tasks_unfinished ON tasks (arn) WHERE finished = 0;",
        )?;
        // SQLite's default page cache (2 MiB) would fill with finished tasks' pages: the
        // agent's hot data is a few unfinished rows and the outbox.
        conn.pragma_update(None, "cache_size", -512)?;
        // Every statement the store runs is prepared once and kept: parsing SQL was a tenth of
        // the agent's CPU per launch (BENCHMARKS.md, launch).
        conn.set_prepared_statement_cache_capacity(32);
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // SQLite keeps its own consistency; a panic elsewhere must not make the store unusable.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn meta(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
        Ok(conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?)
    }

    fn set_meta(conn: &Connection, key: &str, value: &str) -> Result<(), StoreError> {
        conn.prepare_cached(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        )?
        .execute(params![key, value])?;
        Ok(())
    }

    fn meta_u64(conn: &Connection, key: &str) -> Result<u64, StoreError> {
        Ok(Self::meta(conn, key)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    pub fn credential(&self) -> Result<Option<Credential>, StoreError> {
        let conn = self.conn();
        let id = Self::meta(&conn, "instance_id")?;
        let secret = Self::meta(&conn, "secret")?;
        let arn = Self::meta(&conn, "container_instance_arn")?;
        Ok(match (id, secret) {
            (Some(instance_id), Some(secret)) => Some(Credential {
                instance_id,
                secret,
                container_instance_arn: arn.unwrap_or_default(),
            }),
            _ => None,
        })
    }

    pub fn set_credential(&self, c: &Credential) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        Self::set_meta(&tx, "instance_id", &c.instance_id)?;
        Self::set_meta(&tx, "secret", &c.secret)?;
        Self::set_meta(&tx, "container_instance_arn", &c.container_instance_arn)?;
        tx.commit()?;
        Ok(())
    }

    pub fn last_payload_seq(&self) -> Result<u64, StoreError> {
        Self::meta_u64(&self.conn(), "last_payload_seq")
    }

    /// Records a payload: new tasks (known ones are left alone) and stop requests, with the
    /// payload's sequence. Returns the ARNs whose workers must be told.
    pub fn record_payload(
        &self,
        seq: u64,
        tasks: &[TaskState],
        stops: &[(String, String)],
        now_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut touched = Vec::new();
        for t in tasks {
            let inserted = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO tasks (arn, state, updated_at_ms) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![t.spec.arn, to_json(t)?, now_ms])?;
            if inserted > 0 {
                touched.push(t.spec.arn.clone());
            }
        }
        for (arn, reason) in stops {
            let updated = tx
                .prepare_cached(
                    "UPDATE tasks SET stop_reason = ?2 WHERE arn = ?1 AND stop_reason IS NULL
                 AND finished = 0",
                )?
                .execute(params![arn, reason])?;
            if updated > 0 {
                touched.push(arn.clone());
            }
        }
        if seq > Self::meta_u64(&tx, "last_payload_seq")? {
            Self::set_meta(&tx, "last_payload_seq", &seq.to_string())?;
        }
        tx.commit()?;
        Ok(touched)
    }

    /// Saves a task's state and queues its reports, atomically.
    pub fn save_task(
        &self,
        state: &TaskState,
        reports: Vec<Report>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.prepare_cached(
            "UPDATE tasks SET state = ?2, finished = ?3, updated_at_ms = ?4 WHERE arn = ?1",
        )?
        .execute(params![
            state.spec.arn,
            to_json(state)?,
            state.is_finished(),
            now_ms
        ])?;
        Self::queue_reports(&tx, &state.spec.arn, reports, now_ms)?;
        tx.commit()?;
        Ok(())
    }

    fn queue_reports(
        tx: &rusqlite::Transaction<'_>,
        task_arn: &str,
        reports: Vec<Report>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut seq = Self::meta_u64(tx, "next_state_seq")?.max(1);
        for report in reports {
            let entry = OutboxEntry {
                seq,
                task_arn: task_arn.to_owned(),
                at_ms: now_ms,
                report: report.into(),
            };
            tx.prepare_cached("INSERT INTO outbox (seq, body) VALUES (?1, ?2)")?
                .execute(params![seq as i64, to_json(&entry)?])?;
            seq += 1;
        }
        Self::set_meta(tx, "next_state_seq", &seq.to_string())?;
        Self::bound_outbox(tx, task_arn)
    }

    /// Keeps a task's queued reports bounded while the control plane is away: beyond
    /// [`OUTBOX_PER_TASK`], its oldest intermediate container reports (a container restarted
    /// by its policy, or a health status flipping, again and again) are dropped. Task reports
    /// and containers' STOPPED reports are never dropped, and what is kept stays in order, so
    /// the control plane still sees every task transition and every container's end.
    fn bound_outbox(tx: &rusqlite::Transaction<'_>, task_arn: &str) -> Result<(), StoreError> {
        let queued: i64 = tx
            .prepare_cached(
                "SELECT COUNT(*) FROM outbox WHERE json_extract(body, '$.task_arn') = ?1",
            )?
            .query_row([task_arn], |r| r.get(0))?;
        let excess = queued - OUTBOX_PER_TASK as i64;
        if excess <= 0 {
            return Ok(());
        }
        let dropped = tx
            .prepare_cached(
                "DELETE FROM outbox WHERE seq IN (
                 SELECT seq FROM outbox
                 WHERE json_extract(body, '$.task_arn') = ?1
                   AND json_extract(body, '$.report.Container.status') IS NOT NULL
                   AND json_extract(body, '$.report.Container.status') != 'Stopped'
                 ORDER BY seq LIMIT ?2)",
            )?
            .execute(params![task_arn, excess])?;
        if dropped > 0 {
            tracing::warn!(
                task.arn = task_arn,
                dropped,
                "outbox full for this task: oldest intermediate container reports dropped"
            );
        }
        Ok(())
    }

    /// Records a stop the agent itself decided (the task manifest), like a payload's stop but
    /// without a payload sequence. Returns whether the task was still to be stopped.
    pub fn request_stop(&self, arn: &str, reason: &str) -> Result<bool, StoreError> {
        let updated = self
            .conn()
            .prepare_cached(
                "UPDATE tasks SET stop_reason = ?2 WHERE arn = ?1 AND stop_reason IS NULL
             AND finished = 0",
            )?
            .execute(params![arn, reason])?;
        Ok(updated > 0)
    }

    /// Records a task the agent never ran, already finished, with the reports that tell the
    /// control plane so; one transaction. A task already recorded is left alone (false).
    pub fn record_finished_task(
        &self,
        state: &TaskState,
        reports: Vec<Report>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let inserted = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO tasks (arn, state, finished, updated_at_ms)
             VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                state.spec.arn,
                to_json(state)?,
                state.is_finished(),
                now_ms
            ])?;
        if inserted == 0 {
            return Ok(false);
        }
        Self::queue_reports(&tx, &state.spec.arn, reports, now_ms)?;
        tx.commit()?;
        Ok(true)
    }

    /// Forgets finished tasks last changed before `before_ms` whose reports the control plane
    /// has all acked. Until then a finished task is kept so that a payload delivered again
    /// never runs it twice; afterwards no payload can name it any more (payloads are only
    /// redelivered after the last one recorded). Returns how many were forgotten.
    pub fn prune_finished(&self, before_ms: i64) -> Result<usize, StoreError> {
        let n = self
            .conn()
            .prepare_cached(
                "DELETE FROM tasks WHERE finished = 1 AND updated_at_ms < ?1
             AND arn NOT IN (SELECT json_extract(body, '$.task_arn') FROM outbox)",
            )?
            .execute([before_ms])?;
        Ok(n)
    }

    /// The ARNs of every task recorded, finished or not.
    pub fn task_arns(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT arn FROM tasks")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The ARNs of unfinished tasks with a stop request recorded.
    pub fn stop_requested_arns(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT arn FROM tasks WHERE finished = 0 AND stop_reason IS NOT NULL",
        )?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn stop_request(&self, arn: &str) -> Result<Option<StopRequest>, StoreError> {
        let conn = self.conn();
        let reason: Option<Option<String>> = conn
            .prepare_cached("SELECT stop_reason FROM tasks WHERE arn = ?1")?
            .query_row([arn], |r| r.get(0))
            .optional()?;
        Ok(reason.flatten().map(|reason| StopRequest { reason }))
    }

    /// Tasks that still need a worker.
    pub fn unfinished_tasks(&self) -> Result<Vec<TaskState>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT arn, state FROM tasks WHERE finished = 0")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (arn, json) = row?;
            out.push(from_json(&arn, &json)?);
        }
        Ok(out)
    }

    pub fn task(&self, arn: &str) -> Result<Option<TaskState>, StoreError> {
        let conn = self.conn();
        let json: Option<String> = conn
            .prepare_cached("SELECT state FROM tasks WHERE arn = ?1")?
            .query_row([arn], |r| r.get(0))
            .optional()?;
        json.map(|j| from_json(arn, &j)).transpose()
    }

    /// Reports after `after`, oldest first.
    pub fn outbox_after(&self, after: u64, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT seq, body FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
        let rows = stmt.query_map(params![after as i64, limit as i64], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, body) = row?;
            out.push(from_json(&format!("outbox entry {seq}"), &body)?);
        }
        Ok(out)
    }

    /// Makes the outbox's sequence numbers start after `applied`, the highest the control
    /// plane has applied, when the store is behind it: a data dir restored from a backup, or a
    /// lost one, would otherwise number new reports with sequences the control plane already
    /// applied, and it would drop them as duplicates. Reports keep their order. Returns how
    /// many were renumbered, or None when the store was not behind.
    pub fn rebase_outbox(&self, applied: u64) -> Result<Option<usize>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let next = Self::meta_u64(&tx, "next_state_seq")?.max(1);
        if next > applied {
            return Ok(None);
        }
        let mut entries: Vec<OutboxEntry> = Vec::new();
        {
            let mut stmt = tx.prepare_cached("SELECT seq, body FROM outbox ORDER BY seq")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
            for row in rows {
                let (seq, body) = row?;
                entries.push(from_json(&format!("outbox entry {seq}"), &body)?);
            }
        }
        tx.prepare_cached("DELETE FROM outbox")?.execute([])?;
        let mut seq = applied + 1;
        for mut entry in entries.iter().cloned() {
            entry.seq = seq;
            tx.prepare_cached("INSERT INTO outbox (seq, body) VALUES (?1, ?2)")?
                .execute(params![seq as i64, to_json(&entry)?])?;
            seq += 1;
        }
        Self::set_meta(&tx, "next_state_seq", &seq.to_string())?;
        tx.commit()?;
        Ok(Some(entries.len()))
    }

    /// The control plane has applied every report up to `seq`.
    pub fn ack_outbox(&self, seq: u64) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached("DELETE FROM outbox WHERE seq <= ?1")?
            .execute([seq as i64])?;
        Ok(())
    }

    pub fn outbox_len(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn()
            .prepare_cached("SELECT COUNT(*) FROM outbox")?
            .query_row([], |r| r.get(0))?;
        Ok(n as u64)
    }
}

fn to_json<T: Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt {
        what: "a record being written".into(),
        message: e.to_string(),
    })
}

fn from_json<T: for<'de> Deserialize<'de>>(what: &str, json: &str) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
        what: what.to_string(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContainerSpec, NetworkMode, TaskSpec};
    use crate::task_state::Event;

    fn temp_store() -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("berth-store-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        (Store::open(&dir.join("agent.db")).unwrap(), dir)
    }

    fn state(arn: &str) -> TaskState {
        TaskState::new(
            TaskSpec {
                arn: arn.into(),
                family: "f".into(),
                revision: 1,
                network_mode: NetworkMode::None,
                cpu: 0,
                memory_mib: 0,
                containers: vec![ContainerSpec {
                    name: "a".into(),
                    image: "i".into(),
                    essential: true,
                    entry_point: None,
                    command: None,
                    environment: vec![],
                    working_directory: None,
                    user: None,
                    cpu: 0,
                    memory_mib: 0,
                    memory_reservation_mib: 0,
                    stop_timeout_secs: 1,
                    extra: Default::default(),
                }],
                volumes: vec![],
                ingress: None,
            },
            TaskStatus::Running,
            0,
        )
    }

    #[test]
    fn payloads_are_idempotent_and_stops_recorded() {
        let (store, dir) = temp_store();
        let t = state("arn:1");
        assert_eq!(
            store
                .record_payload(1, std::slice::from_ref(&t), &[], 0)
                .unwrap(),
            ["arn:1"]
        );
        assert!(store.record_payload(2, &[t], &[], 0).unwrap().is_empty());
        assert_eq!(store.last_payload_seq().unwrap(), 2);
        let touched = store
            .record_payload(3, &[], &[("arn:1".into(), "bye".into())], 0)
            .unwrap();
        assert_eq!(touched, ["arn:1"]);
        assert_eq!(store.stop_request("arn:1").unwrap().unwrap().reason, "bye");
        // An older payload delivered late does not move the sequence back.
        store.record_payload(1, &[], &[], 0).unwrap();
        assert_eq!(store.last_payload_seq().unwrap(), 3);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn state_and_reports_commit_together_and_survive_reopen() {
        let (store, dir) = temp_store();
        let mut t = state("arn:1");
        store.record_payload(1, &[t.clone()], &[], 0).unwrap();
        t.apply(
            Event::ImageResolved {
                container: "a".into(),
            },
            0,
        );
        let reports = t.take_reports();
        store.save_task(&t, reports, 5).unwrap();
        drop(store);
        let store = Store::open(&dir.join("agent.db")).unwrap();
        assert_eq!(store.task("arn:1").unwrap().unwrap(), t);
        let out = store.outbox_after(0, 10).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].seq, 1);
        store.ack_outbox(1).unwrap();
        assert_eq!(store.outbox_len().unwrap(), 0);
        // Sequences keep increasing after an ack.
        t.apply(
            Event::Created {
                container: "a".into(),
            },
            0,
        );
        store.save_task(&t, t.clone().take_reports(), 6).unwrap();
        assert_eq!(store.outbox_after(0, 10).unwrap()[0].seq, 2);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_store_behind_the_control_plane_renumbers_its_reports_after_what_was_applied() {
        let (store, dir) = temp_store();
        let mut t = state("arn:1");
        store.record_payload(1, &[t.clone()], &[], 0).unwrap();
        for event in [
            Event::ImageResolved {
                container: "a".into(),
            },
            Event::Created {
                container: "a".into(),
            },
        ] {
            t.apply(event, 0);
            let reports = t.take_reports();
            store.save_task(&t, reports, 5).unwrap();
        }
        let before: Vec<StoredReport> = store
            .outbox_after(0, 10)
            .unwrap()
            .into_iter()
            .map(|e| e.report)
            .collect();
        assert_eq!(before.len(), 2);
        // Not behind: nothing changes.
        assert_eq!(store.rebase_outbox(0).unwrap(), None);
        assert_eq!(store.outbox_after(0, 10).unwrap()[0].seq, 1);
        // The control plane has applied up to 40 (this store was restored from a backup).
        assert_eq!(store.rebase_outbox(40).unwrap(), Some(2));
        let after = store.outbox_after(40, 10).unwrap();
        assert_eq!(after.iter().map(|e| e.seq).collect::<Vec<_>>(), [41, 42]);
        assert_eq!(
            after.into_iter().map(|e| e.report).collect::<Vec<_>>(),
            before
        );
        store.ack_outbox(40).unwrap();
        assert_eq!(store.outbox_len().unwrap(), 2);
        // New reports follow.
        let (gone, reports) = TaskState::never_received("arn:2", "lost", 0);
        assert!(store.record_finished_task(&gone, reports, 7).unwrap());
        assert_eq!(store.outbox_after(42, 10).unwrap()[0].seq, 43);
        // Recorded once.
        let (again, reports) = TaskState::never_received("arn:2", "lost", 0);
        assert!(!store.record_finished_task(&again, reports, 8).unwrap());
        assert_eq!(store.outbox_len().unwrap(), 3);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_tasks_outbox_is_bounded_by_dropping_only_intermediate_container_reports() {
        let (store, dir) = temp_store();
        let t = state("arn:1");
        store
            .record_payload(1, std::slice::from_ref(&t), &[], 0)
            .unwrap();
        let container = |status: ContainerStatus, restart_count: u32| Report::Container {
            name: "a".into(),
            runtime_id: "r".into(),
            status,
            exit_code: None,
            reason: None,
            restart_count,
            health: None,
            image_digest: None,
        };
        let task = |status: TaskStatus| Report::Task {
            status,
            stop_code: None,
            stopped_reason: None,
            network: None,
            pull: None,
        };
        store
            .save_task(
                &t,
                vec![
                    container(ContainerStatus::Running, 0),
                    task(TaskStatus::Running),
                ],
                0,
            )
            .unwrap();
        // A crash loop while the control plane is away.
        for n in 1..=200 {
            store
                .save_task(&t, vec![container(ContainerStatus::Running, n)], 0)
                .unwrap();
        }
        store
            .save_task(
                &t,
                vec![
                    container(ContainerStatus::Stopped, 200),
                    task(TaskStatus::Stopped),
                ],
                0,
            )
            .unwrap();
        let out = store.outbox_after(0, 1000).unwrap();
        assert!(out.len() <= OUTBOX_PER_TASK, "{}", out.len());
        let seqs: Vec<u64> = out.iter().map(|e| e.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        let tasks: Vec<TaskStatus> = out
            .iter()
            .filter_map(|e| match &e.report {
                StoredReport::Task { status, .. } => Some(*status),
                _ => None,
            })
            .collect();
        assert_eq!(tasks, [TaskStatus::Running, TaskStatus::Stopped]);
        // The newest restarts and the end are kept.
        assert!(matches!(
            out.last().map(|e| &e.report),
            Some(StoredReport::Task {
                status: TaskStatus::Stopped,
                ..
            })
        ));
        assert!(out.iter().any(|e| matches!(
            &e.report,
            StoredReport::Container {
                status: ContainerStatus::Stopped,
                restart_count: 200,
                ..
            }
        )));
        assert!(out.iter().any(|e| matches!(
            &e.report,
            StoredReport::Container {
                status: ContainerStatus::Running,
                restart_count: 199,
                ..
            }
        )));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn finished_tasks_are_pruned_only_when_old_and_acked() {
        let (store, dir) = temp_store();
        let (old, reports) = TaskState::never_received("arn:old", "gone", 0);
        store.record_finished_task(&old, reports, 1_000).unwrap();
        let (recent, reports) = TaskState::never_received("arn:recent", "gone", 0);
        store.record_finished_task(&recent, reports, 9_000).unwrap();
        let running = state("arn:running");
        store.record_payload(1, &[running], &[], 1_000).unwrap();
        // Reports not acked yet: nothing goes.
        assert_eq!(store.prune_finished(5_000).unwrap(), 0);
        store.ack_outbox(u64::MAX >> 1).unwrap();
        assert_eq!(store.prune_finished(5_000).unwrap(), 1);
        assert!(store.task("arn:old").unwrap().is_none());
        assert!(store.task("arn:recent").unwrap().is_some());
        assert!(store.task("arn:running").unwrap().is_some());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn credential_round_trip() {
        let (store, dir) = temp_store();
        assert!(store.credential().unwrap().is_none());
        let c = Credential {
            instance_id: "i".into(),
            secret: "s".into(),
            container_instance_arn: "arn".into(),
        };
        store.set_credential(&c).unwrap();
        assert_eq!(store.credential().unwrap(), Some(c));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
