//! Clusters: created on first use or by CreateCluster, counted for DescribeClusters, deleted
//! (INACTIVE) by DeleteCluster.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::*;

impl ClusterStore for SqliteStore {
    fn ensure_cluster(&self, name: &str, now_ms: i64) -> Result<bool> {
        let n = self.conn().execute(
            "INSERT OR IGNORE INTO clusters (name, created_at_ms) VALUES (?1, ?2)",
            params![name, now_ms],
        )?;
        Ok(n == 1)
    }

    fn create_cluster(
        &self,
        name: &str,
        now_ms: i64,
        config: &ClusterConfig,
    ) -> Result<(ClusterRecord, bool)> {
        let config_json = serde_json::to_string(config)?;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let created = tx.execute(
            "INSERT INTO clusters (name, created_at_ms, status, config_json)
             VALUES (?1, ?2, 'ACTIVE', ?3)
             ON CONFLICT (name) DO UPDATE SET status = 'ACTIVE', created_at_ms = ?2,
                 config_json = ?3
                 WHERE status != 'ACTIVE'",
            params![name, now_ms, config_json],
        )? == 1;
        if created {
            // A cluster created again is a new cluster: the deleted one's tags are not its.
            tx.execute(
                "DELETE FROM tags WHERE resource = ?1",
                [format!("cluster/{name}")],
            )?;
        }
        let record = cluster_row(&tx, name)?;
        tx.commit()?;
        let record =
            record.ok_or_else(|| StoreError::BadValue(format!("cluster {name:?} vanished")))?;
        Ok((record, created))
    }

    fn change_cluster_config(
        &self,
        name: &str,
        change: &mut dyn FnMut(&mut ClusterConfig) -> std::result::Result<(), String>,
    ) -> Result<Option<std::result::Result<ClusterRecord, String>>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut record = match cluster_row(&tx, name)? {
            Some(c) if c.status == ClusterStatus::Active => c,
            _ => return Ok(None),
        };
        if let Err(refused) = change(&mut record.config) {
            return Ok(Some(Err(refused)));
        }
        tx.execute(
            "UPDATE clusters SET config_json = ?2 WHERE name = ?1",
            params![name, serde_json::to_string(&record.config)?],
        )?;
        tx.commit()?;
        Ok(Some(Ok(record)))
    }

    fn get_cluster(&self, name: &str) -> Result<Option<ClusterRecord>> {
        cluster_row(&self.conn(), name)
    }

    fn cluster_exists(&self, name: &str) -> Result<bool> {
        Ok(self
            .conn()
            .query_row(
                "SELECT 1 FROM clusters WHERE name = ?1 AND status = 'ACTIVE'",
                [name],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    fn list_clusters(&self) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT name FROM clusters WHERE status = 'ACTIVE' ORDER BY name")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    fn cluster_counts(&self, name: &str) -> Result<ClusterCounts> {
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
        let active_services = conn.query_row(
            "SELECT COUNT(*) FROM services WHERE cluster = ?1 AND status = 'ACTIVE'",
            [name],
            |r| r.get(0),
        )?;
        Ok(ClusterCounts {
            instances,
            running_tasks: count("RUNNING")?,
            pending_tasks: count("PENDING")?,
            active_services,
        })
    }

    fn deactivate_cluster(
        &self,
        name: &str,
        refuse: &dyn Fn(&ClusterContents) -> Option<DeleteRefusal>,
    ) -> Result<Option<std::result::Result<ClusterRecord, DeleteRefusal>>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        match cluster_row(&tx, name)? {
            Some(c) if c.status == ClusterStatus::Active => {}
            _ => return Ok(None),
        }
        let count = |sql: &str| -> Result<u64> { Ok(tx.query_row(sql, [name], |r| r.get(0))?) };
        let contents = ClusterContents {
            live_services: count(
                "SELECT COUNT(*) FROM services WHERE cluster = ?1 AND status != 'INACTIVE'",
            )?,
            instances: count("SELECT COUNT(*) FROM instances WHERE cluster = ?1 AND revoked = 0")?,
            live_tasks: count(
                "SELECT COUNT(*) FROM tasks WHERE cluster = ?1 AND last_status != 'STOPPED'",
            )?,
        };
        if let Some(refusal) = refuse(&contents) {
            return Ok(Some(Err(refusal)));
        }
        tx.execute(
            "UPDATE clusters SET status = 'INACTIVE' WHERE name = ?1",
            [name],
        )?;
        let record = cluster_row(&tx, name)?;
        tx.commit()?;
        Ok(record.map(Ok))
    }
}

fn cluster_row(conn: &Connection, name: &str) -> Result<Option<ClusterRecord>> {
    let row: Option<(String, i64, String)> = conn
        .query_row(
            "SELECT status, created_at_ms, config_json FROM clusters WHERE name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    row.map(|(status, created_at_ms, config_json)| {
        Ok(ClusterRecord {
            name: name.to_string(),
            status: ClusterStatus::parse(&status)
                .ok_or_else(|| StoreError::BadValue(format!("cluster status {status:?}")))?,
            created_at_ms,
            config: serde_json::from_str(&config_json)?,
        })
    })
    .transpose()
}
