//! Clusters: created on first use, counted for DescribeClusters.

use rusqlite::{params, OptionalExtension};

use super::*;

impl ClusterStore for SqliteStore {
    fn ensure_cluster(&self, name: &str, now_ms: i64) -> Result<bool> {
        let n = self.conn().execute(
            "INSERT OR IGNORE INTO clusters (name, created_at_ms) VALUES (?1, ?2)",
            params![name, now_ms],
        )?;
        Ok(n == 1)
    }

    fn cluster_exists(&self, name: &str) -> Result<bool> {
        Ok(self
            .conn()
            .query_row("SELECT 1 FROM clusters WHERE name = ?1", [name], |_| Ok(()))
            .optional()?
            .is_some())
    }

    fn list_clusters(&self) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT name FROM clusters ORDER BY name")?;
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
        Ok(ClusterCounts {
            instances,
            running_tasks: count("RUNNING")?,
            pending_tasks: count("PENDING")?,
        })
    }
}
