//! The audit log: one row per record, ids from SQLite's AUTOINCREMENT (never reused).

use rusqlite::params;

use super::*;

impl AuditStore for SqliteStore {
    fn append_audit(&self, e: &AuditEvent) -> Result<i64> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO audit_log (at_ms, principal, action, resource, detail_json)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                e.at_ms,
                e.principal,
                e.action,
                e.resource,
                e.detail.to_string()
            ],
        )?;
        Ok(conn.last_insert_rowid())
    }

    fn list_audit(&self, after: i64, limit: usize) -> Result<Vec<AuditEvent>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, at_ms, principal, action, resource, detail_json FROM audit_log
             WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(
            params![after, i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| {
                Ok((
                    AuditEvent {
                        id: r.get(0)?,
                        at_ms: r.get(1)?,
                        principal: r.get(2)?,
                        action: r.get(3)?,
                        resource: r.get(4)?,
                        detail: serde_json::Value::Null,
                    },
                    r.get::<_, String>(5)?,
                ))
            },
        )?;
        rows.map(|row| {
            let (mut event, detail) = row?;
            event.detail = serde_json::from_str(&detail)?;
            Ok(event)
        })
        .collect()
    }
}
