//! The SQLite state store: the only SQL in berth-cp.
//!
//! WAL and a busy timeout let `berth-cp activation create` write while `serve` runs. Tasks and
//! instance details are kept as JSON bodies next to the columns we query by, so the domain types
//! can grow without a migration for every field. Each change that must be atomic (a task and its
//! payload, a state change and its sequence number) is one IMMEDIATE transaction.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use thiserror::Error;

use crate::domain::instance::{
    check_activation, ActivationCode, Instance, InstanceInfo, Refusal, RuntimeHealth,
};
use crate::domain::secrets::{Login, SecretInfo};
use crate::domain::security::{GroupContent, SecurityGroup};
use crate::domain::task::{AgentChange, EventKind, Task, TaskEvent};

pub const DB_FILE: &str = "berth-cp.db";
const SCHEMA_VERSION: i64 = 4;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("creating data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored record is not readable: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("database schema version {found} is newer than this berth-cp ({SCHEMA_VERSION}); upgrade berth-cp")]
    SchemaTooNew { found: i64 },
    #[error("stored task event of task {task_id} (seq {seq}) has unknown kind {kind:?}")]
    BadEventKind {
        task_id: String,
        seq: u64,
        kind: String,
    },
}

type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, Clone, PartialEq)]
pub struct TaskDefRecord {
    pub family: String,
    pub revision: i64,
    pub active: bool,
    pub raw: serde_json::Value,
    pub registered_at_ms: i64,
    pub deregistered_at_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterCounts {
    pub instances: i64,
    pub running_tasks: i64,
    pub pending_tasks: i64,
}

#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub cluster: Option<String>,
    pub instance_id: Option<String>,
    pub family: Option<String>,
    pub started_by: Option<String>,
    pub desired_status: Option<String>,
    /// Only tasks whose lastStatus is not STOPPED.
    pub not_stopped: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeOutcome {
    /// Already applied under this sequence number.
    Duplicate,
    Applied,
    /// Recorded as seen but not applied; the reason is for the log.
    Ignored(String),
}

/// One outbox entry: the payload body as the session layer encoded it.
pub type OutboxEntry = (u64, Vec<u8>);

pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    pub fn open(data_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let conn = Connection::open(data_dir.join(DB_FILE))?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        migrate(&conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back on
        // drop), so a poisoned lock is safe to keep using.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ------------------------------------------------------------ clusters

    /// Creates the cluster unless it exists; returns whether it was created.
    pub fn ensure_cluster(&self, name: &str, now_ms: i64) -> Result<bool> {
        let n = self.conn().execute(
            "INSERT OR IGNORE INTO clusters (name, created_at_ms) VALUES (?1, ?2)",
            params![name, now_ms],
        )?;
        Ok(n == 1)
    }

    pub fn cluster_exists(&self, name: &str) -> Result<bool> {
        Ok(self
            .conn()
            .query_row("SELECT 1 FROM clusters WHERE name = ?1", [name], |_| Ok(()))
            .optional()?
            .is_some())
    }

    pub fn list_clusters(&self) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT name FROM clusters ORDER BY name")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    pub fn cluster_counts(&self, name: &str) -> Result<ClusterCounts> {
        let conn = self.conn();
        let instances = conn.query_row(
            "SELECT COUNT(*) FROM instances WHERE cluster = ?1 AND revoked = 0",
            [name],
            |r| r.get(0),
        )?;
        let count = |status: &str| -> Result<i64> {
            Ok(conn.query_row(
                "SELECT COUNT(*) FROM tasks WHERE cluster = ?1 AND last_status = ?2",
                params![name, status],
                |r| r.get(0),
            )?)
        };
        Ok(ClusterCounts {
            instances,
            running_tasks: count("RUNNING")?,
            pending_tasks: count("PENDING")?,
        })
    }

    // ------------------------------------------------------------ task definitions

    /// Stores a new revision of `family` (the next after the highest ever registered).
    pub fn insert_task_definition(
        &self,
        family: &str,
        raw: &serde_json::Value,
        now_ms: i64,
    ) -> Result<TaskDefRecord> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let revision: i64 = tx.query_row(
            "SELECT COALESCE(MAX(revision), 0) + 1 FROM task_definitions WHERE family = ?1",
            [family],
            |r| r.get(0),
        )?;
        tx.execute(
            "INSERT INTO task_definitions (family, revision, active, raw_json, registered_at_ms)
             VALUES (?1, ?2, 1, ?3, ?4)",
            params![family, revision, raw.to_string(), now_ms],
        )?;
        tx.commit()?;
        Ok(TaskDefRecord {
            family: family.to_string(),
            revision,
            active: true,
            raw: raw.clone(),
            registered_at_ms: now_ms,
            deregistered_at_ms: None,
        })
    }

    /// A given revision, or the latest ACTIVE one.
    pub fn get_task_definition(
        &self,
        family: &str,
        revision: Option<i64>,
    ) -> Result<Option<TaskDefRecord>> {
        let conn = self.conn();
        let sql_by_rev =
            "SELECT family, revision, active, raw_json, registered_at_ms, deregistered_at_ms
             FROM task_definitions WHERE family = ?1 AND revision = ?2";
        let sql_latest =
            "SELECT family, revision, active, raw_json, registered_at_ms, deregistered_at_ms
             FROM task_definitions WHERE family = ?1 AND active = 1 ORDER BY revision DESC LIMIT 1";
        let row = match revision {
            Some(rev) => conn
                .query_row(sql_by_rev, params![family, rev], task_def_row)
                .optional()?,
            None => conn
                .query_row(sql_latest, params![family], task_def_row)
                .optional()?,
        };
        row.map(|(rec, raw)| {
            Ok(TaskDefRecord {
                raw: serde_json::from_str(&raw)?,
                ..rec
            })
        })
        .transpose()
    }

    /// (family, revision) pairs, sorted by family then revision.
    pub fn list_task_definitions(
        &self,
        family_prefix: Option<&str>,
        active: Option<bool>,
    ) -> Result<Vec<(String, i64)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT family, revision FROM task_definitions
             WHERE (?1 IS NULL OR substr(family, 1, length(?1)) = ?1)
               AND (?2 IS NULL OR active = ?2)
             ORDER BY family, revision",
        )?;
        let rows = stmt.query_map(params![family_prefix, active], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    pub fn deregister_task_definition(
        &self,
        family: &str,
        revision: i64,
        now_ms: i64,
    ) -> Result<Option<TaskDefRecord>> {
        self.conn().execute(
            "UPDATE task_definitions SET active = 0, deregistered_at_ms = COALESCE(deregistered_at_ms, ?3)
             WHERE family = ?1 AND revision = ?2",
            params![family, revision, now_ms],
        )?;
        self.get_task_definition(family, Some(revision))
    }

    // ------------------------------------------------------------ activation codes

    pub fn insert_activation(
        &self,
        code_sha256: &str,
        code: &ActivationCode,
        now_ms: i64,
    ) -> Result<()> {
        self.conn().execute(
            "INSERT INTO activation_codes (code_sha256, cluster, uses_left, expires_at_ms, revoked, created_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![code_sha256, code.cluster, code.uses_left, code.expires_at_ms, code.revoked, now_ms],
        )?;
        Ok(())
    }

    pub fn revoke_activation(&self, code_sha256: &str) -> Result<bool> {
        let n = self.conn().execute(
            "UPDATE activation_codes SET revoked = 1 WHERE code_sha256 = ?1",
            [code_sha256],
        )?;
        Ok(n == 1)
    }

    /// Checks and spends one use of the code and creates the instance, atomically, so two agents
    /// racing for the last use cannot both win.
    pub fn register_with_activation(
        &self,
        code_sha256: &str,
        instance: &Instance,
        now_ms: i64,
    ) -> Result<std::result::Result<(), Refusal>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let code = tx
            .query_row(
                "SELECT cluster, uses_left, expires_at_ms, revoked FROM activation_codes WHERE code_sha256 = ?1",
                [code_sha256],
                |r| {
                    Ok(ActivationCode {
                        cluster: r.get(0)?,
                        uses_left: r.get(1)?,
                        expires_at_ms: r.get(2)?,
                        revoked: r.get(3)?,
                    })
                },
            )
            .optional()?;
        if let Err(refusal) = check_activation(code.as_ref(), &instance.cluster, now_ms) {
            return Ok(Err(refusal));
        }
        tx.execute(
            "UPDATE activation_codes SET uses_left = uses_left - 1 WHERE code_sha256 = ?1",
            [code_sha256],
        )?;
        tx.execute(
            "INSERT OR IGNORE INTO clusters (name, created_at_ms) VALUES (?1, ?2)",
            params![instance.cluster, now_ms],
        )?;
        tx.execute(
            "INSERT INTO instances (id, cluster, secret_sha256, revoked, registered_at_ms, info_json)
             VALUES (?1, ?2, ?3, 0, ?4, ?5)",
            params![
                instance.id,
                instance.cluster,
                instance.secret_sha256,
                instance.registered_at_ms,
                serde_json::to_string(&instance.info)?
            ],
        )?;
        tx.commit()?;
        Ok(Ok(()))
    }

    // ------------------------------------------------------------ instances

    pub fn get_instance(&self, id: &str) -> Result<Option<Instance>> {
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

    pub fn list_instances(&self, cluster: &str) -> Result<Vec<Instance>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "{INSTANCE_SELECT} WHERE cluster = ?1 ORDER BY registered_at_ms, id"
        ))?;
        let rows = stmt.query_map([cluster], instance_row)?;
        rows.map(|r| finish_instance(r?)).collect()
    }

    pub fn update_instance_info(&self, id: &str, info: &InstanceInfo) -> Result<()> {
        self.conn().execute(
            "UPDATE instances SET info_json = ?2 WHERE id = ?1",
            params![id, serde_json::to_string(info)?],
        )?;
        Ok(())
    }

    pub fn revoke_instance(&self, id: &str) -> Result<bool> {
        let n = self
            .conn()
            .execute("UPDATE instances SET revoked = 1 WHERE id = ?1", [id])?;
        Ok(n == 1)
    }

    /// A heartbeat at `now_ms` saying whether containerd is healthy: updates the instance's
    /// runtime health (see [`RuntimeHealth::observe`]). Returns the new record, or None when
    /// there is no such instance.
    pub fn record_heartbeat(
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

    // ------------------------------------------------------------ tasks

    /// Inserts placed tasks and, per instance, one payload carrying them, in one transaction, so
    /// a task is never recorded without the payload that tells its agent.
    pub fn insert_tasks(
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

    pub fn get_task(&self, id: &str) -> Result<Option<Task>> {
        let conn = self.conn();
        load_task(&conn, id)
    }

    pub fn list_tasks(&self, f: &TaskFilter) -> Result<Vec<Task>> {
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

    /// A user's stop request: the task change and the payload telling the agent, atomically.
    /// None when there is no such task.
    pub fn stop_task(
        &self,
        id: &str,
        reason: Option<&str>,
        now_ms: i64,
        encode_payload: &dyn Fn(u64, &Task) -> Vec<u8>,
    ) -> Result<Option<Task>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(mut task) = load_task(&tx, id)? else {
            return Ok(None);
        };
        if task.request_stop(reason, now_ms) {
            save_task(&tx, &task)?;
            let seq = next_payload_seq(&tx, &task.instance_id)?;
            insert_outbox(&tx, &task.instance_id, seq, &encode_payload(seq, &task))?;
        }
        tx.commit()?;
        Ok(Some(task))
    }

    /// Applies an agent state change once, at `now_ms`: the change and its sequence number are
    /// stored in one transaction, so a resent change after a crash is recognised as a duplicate.
    pub fn apply_state_change(
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

    /// The task's event history in sequence order; None when there is no such task.
    pub fn task_events(&self, task_id: &str) -> Result<Option<Vec<TaskEvent>>> {
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

    // ------------------------------------------------------------ security groups

    /// Creates the group `name`, or replaces the content of the existing one (keeping its id).
    /// Returns the group and whether it was created.
    pub fn put_security_group(
        &self,
        name: &str,
        content: &GroupContent,
        now_ms: i64,
    ) -> Result<(SecurityGroup, bool)> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existing: Option<String> = tx
            .query_row(
                "SELECT body_json FROM security_groups WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?;
        let existing: Option<SecurityGroup> =
            existing.map(|b| serde_json::from_str(&b)).transpose()?;
        let created = existing.is_none();
        let group = match existing {
            Some(g) => SecurityGroup {
                description: content.description.clone(),
                ingress: content.ingress.clone(),
                updated_at_ms: now_ms,
                ..g
            },
            None => SecurityGroup {
                id: crate::domain::security::new_group_id(),
                name: name.to_string(),
                description: content.description.clone(),
                ingress: content.ingress.clone(),
                created_at_ms: now_ms,
                updated_at_ms: now_ms,
            },
        };
        tx.execute(
            "INSERT INTO security_groups (id, name, body_json) VALUES (?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET body_json = excluded.body_json",
            params![group.id, group.name, serde_json::to_string(&group)?],
        )?;
        tx.commit()?;
        Ok((group, created))
    }

    /// A group by id or name.
    pub fn get_security_group(&self, reference: &str) -> Result<Option<SecurityGroup>> {
        let body: Option<String> = self
            .conn()
            .query_row(
                "SELECT body_json FROM security_groups WHERE id = ?1 OR name = ?1",
                [reference],
                |r| r.get(0),
            )
            .optional()?;
        Ok(body.map(|b| serde_json::from_str(&b)).transpose()?)
    }

    pub fn list_security_groups(&self) -> Result<Vec<SecurityGroup>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT body_json FROM security_groups ORDER BY name")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|r| Ok(serde_json::from_str(&r?)?)).collect()
    }

    pub fn delete_security_group(&self, id: &str) -> Result<bool> {
        let n = self
            .conn()
            .execute("DELETE FROM security_groups WHERE id = ?1", [id])?;
        Ok(n == 1)
    }

    // ------------------------------------------------------------ secrets

    /// Creates the secret `name` with `arn`, or replaces the login of the existing one (keeping
    /// its ARN and creation time). Returns it and whether it was created.
    pub fn put_secret(
        &self,
        name: &str,
        arn: &str,
        login: &Login,
        now_ms: i64,
    ) -> Result<(SecretInfo, bool)> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existing = tx
            .query_row(
                "SELECT name, arn, created_at_ms FROM secrets WHERE name = ?1",
                [name],
                secret_info_row,
            )
            .optional()?;
        let created = existing.is_none();
        let info = match existing {
            Some(info) => {
                tx.execute(
                    "UPDATE secrets SET username = ?2, password = ?3 WHERE name = ?1",
                    params![name, login.username, login.password],
                )?;
                info
            }
            None => {
                tx.execute(
                    "INSERT INTO secrets (name, arn, username, password, created_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![name, arn, login.username, login.password, now_ms],
                )?;
                SecretInfo {
                    name: name.to_string(),
                    arn: arn.to_string(),
                    created_at_ms: now_ms,
                }
            }
        };
        tx.commit()?;
        Ok((info, created))
    }

    /// A secret and its login, by name or ARN.
    pub fn get_secret(&self, reference: &str) -> Result<Option<(SecretInfo, Login)>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT name, arn, created_at_ms, username, password FROM secrets
                 WHERE name = ?1 OR arn = ?1",
                [reference],
                |r| {
                    Ok((
                        secret_info_row(r)?,
                        Login {
                            username: r.get(3)?,
                            password: r.get(4)?,
                        },
                    ))
                },
            )
            .optional()?)
    }

    /// Every secret, by name; never their logins.
    pub fn list_secrets(&self) -> Result<Vec<SecretInfo>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT name, arn, created_at_ms FROM secrets ORDER BY name")?;
        let rows = stmt.query_map([], secret_info_row)?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    pub fn delete_secret(&self, name: &str) -> Result<bool> {
        let n = self
            .conn()
            .execute("DELETE FROM secrets WHERE name = ?1", [name])?;
        Ok(n == 1)
    }

    // ------------------------------------------------------------ payload outbox

    pub fn outbox_after(&self, instance_id: &str, seq: u64) -> Result<Vec<OutboxEntry>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT seq, payload FROM outbox WHERE instance_id = ?1 AND seq > ?2 ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![instance_id, seq as i64], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Makes the instance's payload sequence continue after `agent_last`, the highest the
    /// agent has recorded, when this store is behind it (restored from a backup): new payloads
    /// would otherwise carry sequences the agent has seen, and the session would not send them.
    /// Unsent payloads are renumbered in order. Returns how many, or None when not behind.
    pub fn rebase_payloads(&self, instance_id: &str, agent_last: u64) -> Result<Option<usize>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let next: i64 = tx.query_row(
            "SELECT next_payload_seq FROM instances WHERE id = ?1",
            [instance_id],
            |r| r.get(0),
        )?;
        if next as u64 > agent_last {
            return Ok(None);
        }
        let pending: Vec<(i64, Vec<u8>)> = {
            let mut stmt =
                tx.prepare("SELECT seq, payload FROM outbox WHERE instance_id = ?1 ORDER BY seq")?;
            let rows = stmt.query_map([instance_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<std::result::Result<_, _>>()?
        };
        tx.execute("DELETE FROM outbox WHERE instance_id = ?1", [instance_id])?;
        let mut seq = agent_last + 1;
        for (_, payload) in &pending {
            insert_outbox(&tx, instance_id, seq, payload)?;
            seq += 1;
        }
        tx.execute(
            "UPDATE instances SET next_payload_seq = ?2, acked_payload_seq = ?3 WHERE id = ?1",
            params![instance_id, seq as i64, agent_last as i64],
        )?;
        tx.commit()?;
        Ok(Some(pending.len()))
    }

    /// The agent has recorded every payload up to `seq`: they need never be sent again.
    pub fn ack_payloads(&self, instance_id: &str, seq: u64) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "DELETE FROM outbox WHERE instance_id = ?1 AND seq <= ?2",
            params![instance_id, seq as i64],
        )?;
        tx.execute(
            "UPDATE instances SET acked_payload_seq = MAX(acked_payload_seq, ?2) WHERE id = ?1",
            params![instance_id, seq as i64],
        )?;
        tx.commit()?;
        Ok(())
    }
}

fn migrate(conn: &Connection) -> Result<()> {
    migrate_to(conn, SCHEMA_VERSION)
}

fn schema_version(conn: &Connection) -> Result<i64> {
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}

/// Brings the schema up to `target` (below SCHEMA_VERSION only in tests, to build an older
/// database).
fn migrate_to(conn: &Connection, target: i64) -> Result<()> {
    let version = schema_version(conn)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew { found: version });
    }
    if version < 1 && target >= 1 {
        conn.execute_batch(
            "BEGIN IMMEDIATE;
             CREATE TABLE IF NOT EXISTS clusters (
                 name TEXT PRIMARY KEY,
                 created_at_ms INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS task_definitions (
                 family TEXT NOT NULL,
                 revision INTEGER NOT NULL,
                 active INTEGER NOT NULL,
                 raw_json TEXT NOT NULL,
                 registered_at_ms INTEGER NOT NULL,
                 deregistered_at_ms INTEGER,
                 PRIMARY KEY (family, revision));
             CREATE TABLE IF NOT EXISTS activation_codes (
                 code_sha256 TEXT PRIMARY KEY,
                 cluster TEXT NOT NULL,
                 uses_left INTEGER NOT NULL,
                 expires_at_ms INTEGER NOT NULL,
                 revoked INTEGER NOT NULL,
                 created_at_ms INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS instances (
                 id TEXT PRIMARY KEY,
                 cluster TEXT NOT NULL REFERENCES clusters(name),
                 secret_sha256 TEXT NOT NULL,
                 revoked INTEGER NOT NULL,
                 registered_at_ms INTEGER NOT NULL,
                 last_heartbeat_ms INTEGER,
                 last_state_change_seq INTEGER NOT NULL DEFAULT 0,
                 next_payload_seq INTEGER NOT NULL DEFAULT 1,
                 acked_payload_seq INTEGER NOT NULL DEFAULT 0,
                 info_json TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS tasks (
                 id TEXT PRIMARY KEY,
                 cluster TEXT NOT NULL,
                 instance_id TEXT NOT NULL REFERENCES instances(id),
                 family TEXT NOT NULL,
                 last_status TEXT NOT NULL,
                 desired_status TEXT NOT NULL,
                 started_by TEXT,
                 created_at_ms INTEGER NOT NULL,
                 body_json TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS tasks_by_cluster ON tasks (cluster, last_status);
             CREATE INDEX IF NOT EXISTS tasks_by_instance ON tasks (instance_id, last_status);
             CREATE TABLE IF NOT EXISTS outbox (
                 instance_id TEXT NOT NULL REFERENCES instances(id),
                 seq INTEGER NOT NULL,
                 payload BLOB NOT NULL,
                 PRIMARY KEY (instance_id, seq));
             PRAGMA user_version = 1;
             COMMIT;",
        )?;
    }
    if version < 2 && target >= 2 {
        conn.execute_batch(
            "BEGIN IMMEDIATE;
             CREATE TABLE IF NOT EXISTS security_groups (
                 id TEXT PRIMARY KEY,
                 name TEXT NOT NULL UNIQUE,
                 body_json TEXT NOT NULL);
             PRAGMA user_version = 2;
             COMMIT;",
        )?;
    }
    if version < 3 && target >= 3 {
        // Version 3: the instances' runtime health (from heartbeats) and the tasks' event
        // history. ADD COLUMN has no IF NOT EXISTS, so the version is read again inside the
        // transaction: another process (`berth-cp activation create`) may have just migrated.
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let step = || -> Result<()> {
            if schema_version(conn)? < 3 {
                conn.execute_batch(
                    "ALTER TABLE instances ADD COLUMN containerd_healthy INTEGER;
                     ALTER TABLE instances ADD COLUMN health_changed_at_ms INTEGER;
                     CREATE TABLE IF NOT EXISTS task_events (
                         task_id TEXT NOT NULL REFERENCES tasks(id),
                         seq INTEGER NOT NULL,
                         instance_id TEXT NOT NULL,
                         kind TEXT NOT NULL,
                         container_name TEXT,
                         status TEXT NOT NULL,
                         exit_code INTEGER,
                         reason TEXT NOT NULL,
                         at_ms INTEGER NOT NULL,
                         received_at_ms INTEGER NOT NULL,
                         PRIMARY KEY (instance_id, seq));
                     CREATE INDEX IF NOT EXISTS task_events_by_task ON task_events (task_id, seq);
                     PRAGMA user_version = 3;",
                )?;
            }
            Ok(())
        };
        match step() {
            Ok(()) => conn.execute_batch("COMMIT")?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
    }
    if version < 4 && target >= 4 {
        // Version 4: registry logins for repositoryCredentials.
        conn.execute_batch(
            "BEGIN IMMEDIATE;
             CREATE TABLE IF NOT EXISTS secrets (
                 name TEXT PRIMARY KEY,
                 arn TEXT NOT NULL UNIQUE,
                 username TEXT NOT NULL,
                 password TEXT NOT NULL,
                 created_at_ms INTEGER NOT NULL);
             PRAGMA user_version = 4;
             COMMIT;",
        )?;
    }
    Ok(())
}

fn secret_info_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SecretInfo> {
    Ok(SecretInfo {
        name: r.get(0)?,
        arn: r.get(1)?,
        created_at_ms: r.get(2)?,
    })
}

type TaskDefRow = (TaskDefRecord, String);

fn task_def_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TaskDefRow> {
    Ok((
        TaskDefRecord {
            family: r.get(0)?,
            revision: r.get(1)?,
            active: r.get(2)?,
            raw: serde_json::Value::Null,
            registered_at_ms: r.get(4)?,
            deregistered_at_ms: r.get(5)?,
        },
        r.get(3)?,
    ))
}

const INSTANCE_SELECT: &str = "SELECT id, cluster, secret_sha256, revoked, registered_at_ms,
    last_heartbeat_ms, last_state_change_seq, info_json, containerd_healthy,
    health_changed_at_ms FROM instances";

/// The stored runtime health: none until a heartbeat has said something (heartbeats recorded
/// before schema version 3 did not).
fn runtime_health(
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

fn instance_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Instance, String)> {
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
        },
        r.get(7)?,
    ))
}

fn finish_instance((instance, info): (Instance, String)) -> Result<Instance> {
    Ok(Instance {
        info: serde_json::from_str(&info)?,
        ..instance
    })
}

fn load_task(conn: &Connection, id: &str) -> Result<Option<Task>> {
    let body: Option<String> = conn
        .query_row("SELECT body_json FROM tasks WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(body.map(|b| serde_json::from_str(&b)).transpose()?)
}

fn save_task(conn: &Connection, t: &Task) -> Result<()> {
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

fn insert_event(conn: &Connection, task_id: &str, e: &TaskEvent) -> Result<()> {
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

fn next_payload_seq(conn: &Connection, instance_id: &str) -> Result<u64> {
    let seq: i64 = conn.query_row(
        "UPDATE instances SET next_payload_seq = next_payload_seq + 1 WHERE id = ?1
         RETURNING next_payload_seq - 1",
        [instance_id],
        |r| r.get(0),
    )?;
    Ok(seq as u64)
}

fn insert_outbox(conn: &Connection, instance_id: &str, seq: u64, payload: &[u8]) -> Result<()> {
    conn.execute(
        "INSERT INTO outbox (instance_id, seq, payload) VALUES (?1, ?2, ?3)",
        params![instance_id, seq as i64, payload],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::security::parse_ingress_spec;
    use crate::domain::task::{ContainerStatus, TaskStatus};

    struct TempDir(PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn temp_dir() -> TempDir {
        TempDir(
            std::env::temp_dir().join(format!("berth-cp-store-{}", crate::domain::ids::new_id())),
        )
    }

    fn content(rules: &[&str]) -> GroupContent {
        GroupContent {
            description: String::new(),
            ingress: rules
                .iter()
                .map(|r| parse_ingress_spec(r).unwrap())
                .collect(),
        }
    }

    #[test]
    fn security_groups_persist_and_keep_their_id_when_replaced() {
        let dir = temp_dir();
        let store = Store::open(&dir.0).unwrap();
        let (g, created) = store
            .put_security_group("web", &content(&["tcp:80:0.0.0.0/0"]), 1)
            .unwrap();
        assert!(created);
        let (g2, created) = store
            .put_security_group("web", &content(&["tcp:443:0.0.0.0/0"]), 2)
            .unwrap();
        assert!(!created);
        assert_eq!(
            (g2.id.as_str(), g2.created_at_ms, g2.updated_at_ms),
            (g.id.as_str(), 1, 2)
        );
        drop(store);
        let store = Store::open(&dir.0).unwrap();
        let by_name = store.get_security_group("web").unwrap().unwrap();
        assert_eq!(
            store.get_security_group(&g.id).unwrap(),
            Some(by_name.clone())
        );
        assert_eq!(by_name.ingress[0].spec(), "tcp:443:0.0.0.0/0");
        assert_eq!(store.list_security_groups().unwrap().len(), 1);
        assert!(store.delete_security_group(&g.id).unwrap());
        assert!(!store.delete_security_group(&g.id).unwrap());
        assert_eq!(store.get_security_group("web").unwrap(), None);
    }

    fn instance(id: &str) -> Instance {
        Instance {
            id: id.into(),
            cluster: "default".into(),
            secret_sha256: "x".into(),
            revoked: false,
            registered_at_ms: 1,
            last_heartbeat_ms: None,
            last_state_change_seq: 0,
            info: InstanceInfo::default(),
            health: None,
        }
    }

    /// Instance `i1` with task `t1` (container `app`) placed on it.
    fn with_task(store: &Store) -> Task {
        let code = ActivationCode {
            cluster: "default".into(),
            uses_left: 5,
            expires_at_ms: i64::MAX,
            revoked: false,
        };
        store.insert_activation("code", &code, 1).unwrap();
        store
            .register_with_activation("code", &instance("i1"), 1)
            .unwrap()
            .unwrap();
        let t = crate::domain::task::tests::sample_task();
        store
            .insert_tasks(std::slice::from_ref(&t), &|_, _| Vec::new())
            .unwrap();
        t
    }

    fn task_change(status: TaskStatus, at_ms: i64) -> AgentChange {
        AgentChange::Task {
            task_arn: "arn:aws:ecs:us-east-1:0:task/default/t1".into(),
            status,
            stop_code: String::new(),
            stopped_reason: String::new(),
            at_ms,
            network: None,
            pull: None,
        }
    }

    fn container_change(name: &str, status: ContainerStatus, exit: Option<i32>) -> AgentChange {
        AgentChange::Container {
            task_arn: "t1".into(),
            container_name: name.into(),
            status,
            exit_code: exit,
            reason: "why".into(),
            runtime_id: String::new(),
            at_ms: 5,
            restart_count: 0,
            health: None,
        }
    }

    #[test]
    fn each_applied_change_is_one_event_and_duplicates_none() {
        let dir = temp_dir();
        let store = Store::open(&dir.0).unwrap();
        with_task(&store);
        let seqs = |store: &Store| -> Vec<u64> {
            store
                .task_events("t1")
                .unwrap()
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect()
        };
        assert_eq!(seqs(&store), Vec::<u64>::new());
        let apply =
            |seq, c: &AgentChange, now| store.apply_state_change("i1", seq, c, now).unwrap();
        let running = container_change("app", ContainerStatus::Running, None);
        assert_eq!(apply(1, &running, 100), ChangeOutcome::Applied);
        assert_eq!(apply(1, &running, 101), ChangeOutcome::Duplicate);
        assert_eq!(
            apply(2, &task_change(TaskStatus::Running, 7), 102),
            ChangeOutcome::Applied
        );
        // A resent older sequence, even with other content, is a duplicate: no event.
        assert_eq!(
            apply(1, &task_change(TaskStatus::Stopped, 8), 103),
            ChangeOutcome::Duplicate
        );
        // Ignored changes (no such container) are not events.
        assert!(matches!(
            apply(
                3,
                &container_change("nope", ContainerStatus::Running, None),
                104
            ),
            ChangeOutcome::Ignored(_)
        ));
        // Sequences may skip (the agent's other tasks); events keep the agent's numbers.
        let stopped = container_change("app", ContainerStatus::Stopped, Some(137));
        assert_eq!(apply(5, &stopped, 105), ChangeOutcome::Applied);
        assert_eq!(
            apply(6, &task_change(TaskStatus::Stopped, 9), 106),
            ChangeOutcome::Applied
        );
        assert_eq!(apply(6, &stopped, 107), ChangeOutcome::Duplicate);
        assert_eq!(seqs(&store), vec![1, 2, 5, 6]);

        drop(store);
        let store = Store::open(&dir.0).unwrap();
        let events = store.task_events("t1").unwrap().unwrap();
        assert_eq!(seqs(&store), vec![1, 2, 5, 6]);
        assert_eq!(
            events[2],
            TaskEvent {
                seq: 5,
                instance_id: "i1".into(),
                kind: EventKind::Container,
                container_name: Some("app".into()),
                status: "STOPPED".into(),
                exit_code: Some(137),
                reason: "why".into(),
                at_ms: 5,
                received_at_ms: 105,
            }
        );
        assert_eq!(
            (
                events[1].kind,
                events[1].status.as_str(),
                events[1].at_ms,
                events[1].received_at_ms
            ),
            (EventKind::Task, "RUNNING", 7, 102)
        );
        assert_eq!(store.task_events("ghost").unwrap(), None);
    }

    #[test]
    fn the_manifest_query_keeps_tasks_being_stopped() {
        let dir = temp_dir();
        let store = Store::open(&dir.0).unwrap();
        with_task(&store);
        let not_stopped = || {
            store
                .list_tasks(&TaskFilter {
                    instance_id: Some("i1".into()),
                    not_stopped: true,
                    ..TaskFilter::default()
                })
                .unwrap()
                .iter()
                .map(|t| t.id.clone())
                .collect::<Vec<_>>()
        };
        store
            .apply_state_change("i1", 1, &task_change(TaskStatus::Running, 1), 1)
            .unwrap();
        store.stop_task("t1", None, 2, &|_, _| Vec::new()).unwrap();
        let t = store.get_task("t1").unwrap().unwrap();
        assert_eq!(
            (t.desired_status, t.last_status),
            (TaskStatus::Stopped, TaskStatus::Running)
        );
        assert_eq!(not_stopped(), vec!["t1"]);
        store
            .apply_state_change("i1", 2, &task_change(TaskStatus::Stopped, 3), 3)
            .unwrap();
        assert_eq!(not_stopped(), Vec::<String>::new());
    }

    #[test]
    fn payloads_are_renumbered_after_an_agent_that_is_ahead() {
        let dir = temp_dir();
        let store = Store::open(&dir.0).unwrap();
        with_task(&store);
        // with_task placed t1: one payload queued.
        store
            .stop_task("t1", None, 2, &|seq, _| vec![seq as u8])
            .unwrap();
        let queued = |store: &Store| -> Vec<u64> {
            store
                .outbox_after("i1", 0)
                .unwrap()
                .iter()
                .map(|(seq, _)| *seq)
                .collect()
        };
        let before = queued(&store);
        assert_eq!(before.len(), 2);
        // An agent that has recorded no more than we sent: nothing to do.
        assert_eq!(store.rebase_payloads("i1", 0).unwrap(), None);
        assert_eq!(queued(&store), before);
        // This store was restored from a backup: the agent has recorded up to 40.
        assert_eq!(store.rebase_payloads("i1", 40).unwrap(), Some(2));
        assert_eq!(queued(&store), vec![41, 42]);
        // The next payload follows them: the store is no longer behind.
        assert_eq!(store.rebase_payloads("i1", 40).unwrap(), None);
    }

    #[test]
    fn heartbeats_record_runtime_health() {
        let dir = temp_dir();
        let store = Store::open(&dir.0).unwrap();
        with_task(&store);
        assert_eq!(store.get_instance("i1").unwrap().unwrap().health, None);
        assert_eq!(store.record_heartbeat("ghost", true, 1).unwrap(), None);
        store.record_heartbeat("i1", true, 10).unwrap();
        store.record_heartbeat("i1", true, 20).unwrap();
        let h = store.record_heartbeat("i1", false, 30).unwrap().unwrap();
        assert_eq!((h.updated_at_ms, h.changed_at_ms), (30, 30));
        store.record_heartbeat("i1", false, 40).unwrap();
        drop(store);
        let store = Store::open(&dir.0).unwrap();
        let i = store.get_instance("i1").unwrap().unwrap();
        assert_eq!(i.last_heartbeat_ms, Some(40));
        assert_eq!(
            i.health,
            Some(RuntimeHealth {
                containerd_healthy: false,
                updated_at_ms: 40,
                changed_at_ms: 30
            })
        );
    }

    #[test]
    fn a_version_2_database_migrates_to_3_keeping_its_data() {
        let dir = temp_dir();
        std::fs::create_dir_all(&dir.0).unwrap();
        {
            let conn = Connection::open(dir.0.join(DB_FILE)).unwrap();
            migrate_to(&conn, 2).unwrap();
            assert_eq!(schema_version(&conn).unwrap(), 2);
            conn.execute_batch(
                "INSERT INTO clusters VALUES ('default', 1);
                 INSERT INTO instances (id, cluster, secret_sha256, revoked, registered_at_ms,
                     last_heartbeat_ms, last_state_change_seq, info_json)
                     VALUES ('i1', 'default', 'x', 0, 1, 50, 4, '{\"hostname\":\"h\",\"resources\":[],\"attributes\":[],\"agent_version\":\"\",\"agent_hash\":\"\",\"containerd_version\":\"\"}');",
            )
            .unwrap();
            let t = crate::domain::task::tests::sample_task();
            conn.execute(
                "INSERT INTO tasks (id, cluster, instance_id, family, last_status, desired_status,
                     created_at_ms, body_json) VALUES ('t1', 'default', 'i1', 'web', 'PENDING',
                     'RUNNING', 1, ?1)",
                [serde_json::to_string(&t).unwrap()],
            )
            .unwrap();
        }
        let store = Store::open(&dir.0).unwrap();
        assert_eq!(schema_version(&store.conn()).unwrap(), SCHEMA_VERSION);
        let i = store.get_instance("i1").unwrap().unwrap();
        // A heartbeat recorded by version 2 said nothing about containerd.
        assert_eq!(
            (i.last_heartbeat_ms, i.health, i.last_state_change_seq),
            (Some(50), None, 4)
        );
        assert_eq!(i.info.hostname, "h");
        assert_eq!(store.task_events("t1").unwrap(), Some(Vec::new()));
        // Sequences already applied stay duplicates; new ones are events.
        let c = container_change("app", ContainerStatus::Running, None);
        assert_eq!(
            store.apply_state_change("i1", 4, &c, 60).unwrap(),
            ChangeOutcome::Duplicate
        );
        assert_eq!(
            store.apply_state_change("i1", 5, &c, 61).unwrap(),
            ChangeOutcome::Applied
        );
        assert_eq!(store.task_events("t1").unwrap().unwrap().len(), 1);
        store.record_heartbeat("i1", true, 70).unwrap();
        assert_eq!(
            store
                .get_instance("i1")
                .unwrap()
                .unwrap()
                .health
                .map(|h| h.changed_at_ms),
            Some(70)
        );
        // Opening again (another process, or a restart) migrates nothing twice.
        drop(store);
        let again = Store::open(&dir.0).unwrap();
        assert_eq!(again.task_events("t1").unwrap().unwrap().len(), 1);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = temp_dir();
        drop(Store::open(&dir.0).unwrap());
        let conn = Connection::open(dir.0.join(DB_FILE)).unwrap();
        conn.execute_batch("PRAGMA user_version = 5;").unwrap();
        drop(conn);
        assert!(matches!(
            Store::open(&dir.0),
            Err(StoreError::SchemaTooNew { found: 5 })
        ));
    }

    #[test]
    fn a_version_1_database_gains_the_security_group_table() {
        let dir = temp_dir();
        std::fs::create_dir_all(&dir.0).unwrap();
        let conn = Connection::open(dir.0.join(DB_FILE)).unwrap();
        migrate_to(&conn, 1).unwrap();
        drop(conn);
        let store = Store::open(&dir.0).unwrap();
        store.put_security_group("web", &content(&[]), 1).unwrap();
        let version: i64 = store
            .conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    fn login(username: &str, password: &str) -> Login {
        Login {
            username: username.into(),
            password: password.into(),
        }
    }

    #[test]
    fn secrets_are_put_listed_found_and_deleted() {
        let dir = temp_dir();
        let store = Store::open(&dir.0).unwrap();
        let arn = "arn:aws:secretsmanager:r:a:secret:reg";
        let (info, created) = store.put_secret("reg", arn, &login("u", "p1"), 10).unwrap();
        assert!(created);
        assert_eq!(
            info,
            SecretInfo {
                name: "reg".into(),
                arn: arn.into(),
                created_at_ms: 10
            }
        );
        // Replacing keeps the ARN and creation time, and changes the login.
        let (again, created) = store
            .put_secret("reg", "ignored", &login("u2", "p2"), 20)
            .unwrap();
        assert!(!created);
        assert_eq!(again, info);
        store
            .put_secret(
                "a/other",
                "arn:aws:secretsmanager:r:a:secret:a/other",
                &login("x", "y"),
                30,
            )
            .unwrap();
        drop(store);
        let store = Store::open(&dir.0).unwrap();
        assert_eq!(
            store.get_secret("reg").unwrap(),
            Some((info.clone(), login("u2", "p2")))
        );
        assert_eq!(store.get_secret(arn).unwrap().unwrap().0, info);
        assert_eq!(store.get_secret("ghost").unwrap(), None);
        let names: Vec<String> = store
            .list_secrets()
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["a/other", "reg"]);
        assert!(store.delete_secret("reg").unwrap());
        assert!(!store.delete_secret("reg").unwrap());
        assert_eq!(store.get_secret("reg").unwrap(), None);
        assert_eq!(store.list_secrets().unwrap().len(), 1);
    }

    #[test]
    fn a_version_3_database_migrates_to_4_keeping_its_data() {
        let dir = temp_dir();
        std::fs::create_dir_all(&dir.0).unwrap();
        {
            let conn = Connection::open(dir.0.join(DB_FILE)).unwrap();
            migrate_to(&conn, 3).unwrap();
            assert_eq!(schema_version(&conn).unwrap(), 3);
            conn.execute_batch(
                "INSERT INTO clusters VALUES ('default', 1);
                 INSERT INTO task_definitions VALUES ('web', 1, 1, '{\"family\":\"web\"}', 5, NULL);
                 INSERT INTO security_groups VALUES ('sg-1', 'web', '{\"id\":\"sg-1\",\"name\":\"web\",\"ingress\":[],\"created_at_ms\":1,\"updated_at_ms\":1}');",
            )
            .unwrap();
        }
        let store = Store::open(&dir.0).unwrap();
        assert_eq!(schema_version(&store.conn()).unwrap(), 4);
        assert_eq!(store.list_clusters().unwrap(), ["default"]);
        assert_eq!(
            store
                .get_task_definition("web", Some(1))
                .unwrap()
                .unwrap()
                .registered_at_ms,
            5
        );
        assert_eq!(store.get_security_group("web").unwrap().unwrap().id, "sg-1");
        assert_eq!(store.list_secrets().unwrap(), Vec::new());
        store
            .put_secret(
                "reg",
                "arn:aws:secretsmanager:r:a:secret:reg",
                &login("u", "p"),
                1,
            )
            .unwrap();
        drop(store);
        // Opening again migrates nothing twice and keeps the secret.
        let store = Store::open(&dir.0).unwrap();
        assert_eq!(store.get_secret("reg").unwrap().unwrap().1, login("u", "p"));
    }
}
