//! Tags: one JSON list per resource.

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::*;

fn load(conn: &Connection, resource: &str) -> Result<Vec<Tag>> {
    let json: Option<String> = conn
        .query_row(
            "SELECT tags_json FROM tags WHERE resource = ?1",
            [resource],
            |r| r.get(0),
        )
        .optional()?;
    Ok(match json {
        Some(j) => serde_json::from_str(&j)?,
        None => Vec::new(),
    })
}

fn save(conn: &Connection, resource: &str, tags: &[Tag]) -> Result<()> {
    if tags.is_empty() {
        conn.execute("DELETE FROM tags WHERE resource = ?1", [resource])?;
    } else {
        conn.execute(
            "INSERT INTO tags (resource, tags_json) VALUES (?1, ?2)
             ON CONFLICT (resource) DO UPDATE SET tags_json = excluded.tags_json",
            params![resource, serde_json::to_string(tags)?],
        )?;
    }
    Ok(())
}

impl TagStore for SqliteStore {
    fn tags_of(&self, resource: &str) -> Result<Vec<Tag>> {
        load(&self.conn(), resource)
    }

    fn change_tags(
        &self,
        resource: &str,
        change: &mut dyn FnMut(&mut Vec<Tag>) -> std::result::Result<(), String>,
    ) -> Result<std::result::Result<Vec<Tag>, String>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut tags = load(&tx, resource)?;
        if let Err(refused) = change(&mut tags) {
            return Ok(Err(refused));
        }
        save(&tx, resource, &tags)?;
        tx.commit()?;
        Ok(Ok(tags))
    }

    fn set_tags(&self, entries: &[(String, Vec<Tag>)]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (resource, tags) in entries {
            save(&tx, resource, tags)?;
        }
        tx.commit()?;
        Ok(())
    }
}
