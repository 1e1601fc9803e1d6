//! The schema and its migrations, one step per version (`PRAGMA user_version`).

use rusqlite::Connection;

use super::*;

pub(super) fn migrate(conn: &Connection) -> Result<()> {
    migrate_to(conn, SCHEMA_VERSION)
}

pub(super) fn schema_version(conn: &Connection) -> Result<i64> {
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}

/// Brings the schema up to `target` (below SCHEMA_VERSION only in tests, to build an older
/// database).
pub(super) fn migrate_to(conn: &Connection, target: i64) -> Result<()> {
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
    if version < 5 && target >= 5 {
        // Version 5: services, one JSON body each (deployments and events inside), and their
        // tasks found by deployment (startedBy).
        conn.execute_batch(
            "BEGIN IMMEDIATE;
             CREATE TABLE IF NOT EXISTS services (
                 cluster TEXT NOT NULL REFERENCES clusters(name),
                 name TEXT NOT NULL,
                 status TEXT NOT NULL,
                 body_json TEXT NOT NULL,
                 PRIMARY KEY (cluster, name));
             -- A service's controller reads its tasks deployment by deployment.
             CREATE INDEX IF NOT EXISTS tasks_by_started_by ON tasks (started_by);
             PRAGMA user_version = 5;
             COMMIT;",
        )?;
    }
    if version < 6 && target >= 6 {
        // Version 6: what users set on an instance (status, custom attributes), apart from what
        // its agent reports (info_json), so that neither overwrites the other.
        conn.execute_batch(
            "BEGIN IMMEDIATE;
             ALTER TABLE instances ADD COLUMN state_json TEXT NOT NULL DEFAULT '{}';
             PRAGMA user_version = 6;
             COMMIT;",
        )?;
    }
    if version < 7 && target >= 7 {
        // Version 7: tags of every resource in one place (TagResource changes any of them),
        // by the resource part of the ARN. The tags services and task definitions were created
        // with (kept in their bodies until now) move here.
        conn.execute_batch(
            "BEGIN IMMEDIATE;
             CREATE TABLE IF NOT EXISTS tags (
                 resource TEXT PRIMARY KEY,
                 tags_json TEXT NOT NULL);
             INSERT OR IGNORE INTO tags (resource, tags_json)
                 SELECT 'service/' || cluster || '/' || name, json_extract(body_json, '$.tags')
                 FROM services
                 WHERE status != 'INACTIVE' AND json_array_length(body_json, '$.tags') > 0;
             INSERT OR IGNORE INTO tags (resource, tags_json)
                 SELECT 'task-definition/' || family || ':' || revision,
                        json_extract(raw_json, '$.tags')
                 FROM task_definitions
                 WHERE json_type(raw_json, '$.tags') = 'array'
                   AND json_array_length(raw_json, '$.tags') > 0;
             PRAGMA user_version = 7;
             COMMIT;",
        )?;
    }
    if version < 8 && target >= 8 {
        // Version 8: a cluster's status (DeleteCluster makes it INACTIVE) and its settings and
        // configuration (one JSON body); a task definition revision's delete request
        // (DeleteTaskDefinitions: DELETE_IN_PROGRESS); the account settings, per principal.
        // ADD COLUMN has no IF NOT EXISTS: the version is read again inside the transaction, as
        // for version 3.
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let step = || -> Result<()> {
            if schema_version(conn)? < 8 {
                conn.execute_batch(
                    "ALTER TABLE clusters ADD COLUMN status TEXT NOT NULL DEFAULT 'ACTIVE';
                     ALTER TABLE clusters ADD COLUMN config_json TEXT NOT NULL DEFAULT '{}';
                     ALTER TABLE task_definitions ADD COLUMN delete_requested_at_ms INTEGER;
                     CREATE TABLE IF NOT EXISTS account_settings (
                         name TEXT NOT NULL,
                         principal_arn TEXT NOT NULL,
                         value TEXT NOT NULL,
                         PRIMARY KEY (name, principal_arn));
                     PRAGMA user_version = 8;",
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
    if version < 9 && target >= 9 {
        // Version 9: the audit log (ExecuteCommand sessions, so far).
        conn.execute_batch(
            "BEGIN IMMEDIATE;
             CREATE TABLE IF NOT EXISTS audit_log (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 at_ms INTEGER NOT NULL,
                 principal TEXT NOT NULL,
                 action TEXT NOT NULL,
                 resource TEXT NOT NULL,
                 detail_json TEXT NOT NULL);
             PRAGMA user_version = 9;
             COMMIT;",
        )?;
    }
    Ok(())
}
