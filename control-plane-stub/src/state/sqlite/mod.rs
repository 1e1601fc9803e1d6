//! The SQLite state store: the only SQL in berth-cp.
//!
//! WAL and a busy timeout let `berth-cp activation create` write while `serve` runs. Tasks and
//! instance details are kept as JSON bodies next to the columns we query by, so the domain types
//! can grow without a migration for every field. Each change that must be atomic (a task and its
//! payload, a state change and its sequence number) is one IMMEDIATE transaction.

mod account_settings;
mod activations;
mod audit;
mod clusters;
mod instances;
mod outbox;
mod schema;
mod secrets;
mod security_groups;
mod services;
mod tags;
mod task_definitions;
mod tasks;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::Connection;

use super::*;

pub const DB_FILE: &str = "berth-cp.db";
pub const SCHEMA_VERSION: i64 = 9;

pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl SqliteStore {
    pub fn open(data_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let conn = Connection::open(data_dir.join(DB_FILE))?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        schema::migrate(&conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back on
        // drop), so a poisoned lock is safe to keep using.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}
