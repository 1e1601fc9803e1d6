//! Task definitions: revisions per family, never removed (deregistering and deleting keep them).

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::*;

impl TaskDefinitionStore for SqliteStore {
    fn insert_task_definition(
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
            delete_requested_at_ms: None,
        })
    }

    fn get_task_definition(
        &self,
        family: &str,
        revision: Option<i64>,
    ) -> Result<Option<TaskDefRecord>> {
        let conn = self.conn();
        let sql_by_rev =
            "SELECT family, revision, active, raw_json, registered_at_ms, deregistered_at_ms,
                 delete_requested_at_ms
             FROM task_definitions WHERE family = ?1 AND revision = ?2";
        let sql_latest =
            "SELECT family, revision, active, raw_json, registered_at_ms, deregistered_at_ms,
                 delete_requested_at_ms
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

    fn list_task_definitions(
        &self,
        family: Option<&str>,
        status: Option<TaskDefinitionStatus>,
    ) -> Result<Vec<(String, i64)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT family, revision FROM task_definitions
             WHERE (?1 IS NULL OR family = ?1)
               AND (?2 IS NULL
                    OR (?2 = 'ACTIVE' AND active = 1)
                    OR (?2 = 'INACTIVE' AND active = 0 AND delete_requested_at_ms IS NULL)
                    OR (?2 = 'DELETE_IN_PROGRESS' AND delete_requested_at_ms IS NOT NULL))
             ORDER BY family, revision",
        )?;
        let rows = stmt.query_map(params![family, status.map(|s| s.as_str())], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    fn list_task_definition_families(&self, prefix: Option<&str>) -> Result<Vec<(String, bool)>> {
        let conn = self.conn();
        // substr, not LIKE: a family may hold `_`, which LIKE takes for a wildcard.
        let mut stmt = conn.prepare(
            "SELECT family, MAX(active) FROM task_definitions
             WHERE ?1 IS NULL OR substr(family, 1, length(?1)) = ?1
             GROUP BY family ORDER BY family",
        )?;
        let rows = stmt.query_map(params![prefix], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    fn delete_task_definition(
        &self,
        family: &str,
        revision: i64,
        now_ms: i64,
    ) -> Result<Option<TaskDefRecord>> {
        self.conn().execute(
            "UPDATE task_definitions SET delete_requested_at_ms = ?3
             WHERE family = ?1 AND revision = ?2 AND active = 0
               AND delete_requested_at_ms IS NULL",
            params![family, revision, now_ms],
        )?;
        self.get_task_definition(family, Some(revision))
    }

    fn deregister_task_definition(
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
}

pub(super) type TaskDefRow = (TaskDefRecord, String);

pub(super) fn task_def_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TaskDefRow> {
    Ok((
        TaskDefRecord {
            family: r.get(0)?,
            revision: r.get(1)?,
            active: r.get(2)?,
            raw: serde_json::Value::Null,
            registered_at_ms: r.get(4)?,
            deregistered_at_ms: r.get(5)?,
            delete_requested_at_ms: r.get(6)?,
        },
        r.get(3)?,
    ))
}
