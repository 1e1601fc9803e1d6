//! Account settings: one row per setting name and principal.

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::*;

impl AccountSettingStore for SqliteStore {
    fn put_account_setting(&self, s: &AccountSetting) -> Result<()> {
        self.conn().execute(
            "INSERT OR REPLACE INTO account_settings (name, principal_arn, value)
             VALUES (?1, ?2, ?3)",
            params![s.name.as_str(), s.principal_arn, s.value],
        )?;
        Ok(())
    }

    fn delete_account_setting(
        &self,
        name: SettingName,
        principal_arn: &str,
    ) -> Result<Option<AccountSetting>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value: Option<String> = tx
            .query_row(
                "SELECT value FROM account_settings WHERE name = ?1 AND principal_arn = ?2",
                params![name.as_str(), principal_arn],
                |r| r.get(0),
            )
            .optional()?;
        tx.execute(
            "DELETE FROM account_settings WHERE name = ?1 AND principal_arn = ?2",
            params![name.as_str(), principal_arn],
        )?;
        tx.commit()?;
        Ok(value.map(|value| AccountSetting {
            name,
            value,
            principal_arn: principal_arn.to_string(),
        }))
    }

    fn list_account_settings(&self) -> Result<Vec<AccountSetting>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT name, principal_arn, value FROM account_settings ORDER BY name, principal_arn",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        rows.map(|row| {
            let (name, principal_arn, value) = row?;
            Ok(AccountSetting {
                name: SettingName::parse(&name).map_err(StoreError::BadValue)?,
                value,
                principal_arn,
            })
        })
        .collect()
    }
}
