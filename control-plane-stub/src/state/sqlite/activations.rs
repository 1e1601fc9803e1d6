//! Activation codes, and the registration that spends one.

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::*;
use crate::domain::instance::check_activation;

impl ActivationStore for SqliteStore {
    fn insert_activation(
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

    fn revoke_activation(&self, code_sha256: &str) -> Result<bool> {
        let n = self.conn().execute(
            "UPDATE activation_codes SET revoked = 1 WHERE code_sha256 = ?1",
            [code_sha256],
        )?;
        Ok(n == 1)
    }

    fn register_with_activation(
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
        // The code names its cluster: using it makes that cluster exist, ACTIVE again (and as
        // new) when it was deleted after the code was made.
        tx.execute(
            "INSERT INTO clusters (name, created_at_ms) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET status = 'ACTIVE', created_at_ms = ?2,
                 config_json = '{}'
                 WHERE status != 'ACTIVE'",
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
}
