//! Services: one JSON body each, keyed by cluster and name.

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::*;

impl ServiceStore for SqliteStore {
    fn insert_service(&self, service: &Service) -> Result<Option<Service>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existing: Option<String> = tx
            .query_row(
                "SELECT body_json FROM services WHERE cluster = ?1 AND name = ?2",
                params![service.cluster, service.name],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(body) = existing {
            let existing: Service = serde_json::from_str(&body)?;
            if existing.status != ServiceStatus::Inactive {
                return Ok(Some(existing));
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO services (cluster, name, status, body_json)
             VALUES (?1, ?2, ?3, ?4)",
            params![
                service.cluster,
                service.name,
                service.status.as_str(),
                serde_json::to_string(service)?
            ],
        )?;
        tx.commit()?;
        Ok(None)
    }

    fn get_service(&self, cluster: &str, name: &str) -> Result<Option<Service>> {
        let body: Option<String> = self
            .conn()
            .query_row(
                "SELECT body_json FROM services WHERE cluster = ?1 AND name = ?2",
                params![cluster, name],
                |r| r.get(0),
            )
            .optional()?;
        Ok(body.map(|b| serde_json::from_str(&b)).transpose()?)
    }

    fn list_services(&self, cluster: &str) -> Result<Vec<Service>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT body_json FROM services WHERE cluster = ?1 ORDER BY name")?;
        let rows = stmt.query_map([cluster], |r| r.get::<_, String>(0))?;
        rows.map(|r| Ok(serde_json::from_str(&r?)?)).collect()
    }

    fn live_services(&self) -> Result<Vec<Service>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT body_json FROM services WHERE status != 'INACTIVE' ORDER BY cluster, name",
        )?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|r| Ok(serde_json::from_str(&r?)?)).collect()
    }

    fn save_service(&self, service: &Service) -> Result<()> {
        self.conn().execute(
            "UPDATE services SET status = ?3, body_json = ?4 WHERE cluster = ?1 AND name = ?2",
            params![
                service.cluster,
                service.name,
                service.status.as_str(),
                serde_json::to_string(service)?
            ],
        )?;
        Ok(())
    }

    fn replace_service(&self, expected: &Service, new: &Service) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let stored: Option<String> = tx
            .query_row(
                "SELECT body_json FROM services WHERE cluster = ?1 AND name = ?2",
                params![expected.cluster, expected.name],
                |r| r.get(0),
            )
            .optional()?;
        let current: Option<Service> = stored.map(|b| serde_json::from_str(&b)).transpose()?;
        if current.as_ref() != Some(expected) {
            return Ok(false);
        }
        tx.execute(
            "UPDATE services SET status = ?3, body_json = ?4 WHERE cluster = ?1 AND name = ?2",
            params![
                new.cluster,
                new.name,
                new.status.as_str(),
                serde_json::to_string(new)?
            ],
        )?;
        tx.commit()?;
        Ok(true)
    }
}
