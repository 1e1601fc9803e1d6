//! Registry logins for repositoryCredentials.

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::*;

impl SecretStore for SqliteStore {
    fn put_secret(
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

    fn get_secret(&self, reference: &str) -> Result<Option<(SecretInfo, Login)>> {
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

    fn list_secrets(&self) -> Result<Vec<SecretInfo>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT name, arn, created_at_ms FROM secrets ORDER BY name")?;
        let rows = stmt.query_map([], secret_info_row)?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    fn delete_secret(&self, name: &str) -> Result<bool> {
        let n = self
            .conn()
            .execute("DELETE FROM secrets WHERE name = ?1", [name])?;
        Ok(n == 1)
    }
}

pub(super) fn secret_info_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SecretInfo> {
    Ok(SecretInfo {
        name: r.get(0)?,
        arn: r.get(1)?,
        created_at_ms: r.get(2)?,
    })
}
