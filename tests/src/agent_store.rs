//! Reading an agent's own store from a test, the way the durability suite and the network tests
//! check what the agent recorded.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

/// An agent's store (`<data dir>/agent.db`), read-only: the agent may be writing it.
pub fn agent_db(agent_data_dir: &Path) -> Result<rusqlite::Connection> {
    let path = agent_data_dir.join("agent.db");
    let conn = rusqlite::Connection::open_with_flags(
        &path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening {}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}
