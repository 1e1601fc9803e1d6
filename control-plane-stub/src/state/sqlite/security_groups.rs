//! Security groups for awsvpc tasks.

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::*;

impl SecurityGroupStore for SqliteStore {
    fn put_security_group(
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

    fn get_security_group(&self, reference: &str) -> Result<Option<SecurityGroup>> {
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

    fn list_security_groups(&self) -> Result<Vec<SecurityGroup>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT body_json FROM security_groups ORDER BY name")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|r| Ok(serde_json::from_str(&r?)?)).collect()
    }

    fn delete_security_group(&self, id: &str) -> Result<bool> {
        let n = self
            .conn()
            .execute("DELETE FROM security_groups WHERE id = ?1", [id])?;
        Ok(n == 1)
    }
}
