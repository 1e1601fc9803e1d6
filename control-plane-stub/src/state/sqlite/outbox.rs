//! Each instance's payload outbox: what its agent has not acknowledged yet.

use rusqlite::{params, Connection, TransactionBehavior};

use super::*;

impl PayloadStore for SqliteStore {
    fn outbox_after(&self, instance_id: &str, seq: u64) -> Result<Vec<OutboxEntry>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT seq, payload FROM outbox WHERE instance_id = ?1 AND seq > ?2 ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![instance_id, seq as i64], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    fn rebase_payloads(&self, instance_id: &str, agent_last: u64) -> Result<Option<usize>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let next: i64 = tx.query_row(
            "SELECT next_payload_seq FROM instances WHERE id = ?1",
            [instance_id],
            |r| r.get(0),
        )?;
        if next as u64 > agent_last {
            return Ok(None);
        }
        let pending: Vec<(i64, Vec<u8>)> = {
            let mut stmt =
                tx.prepare("SELECT seq, payload FROM outbox WHERE instance_id = ?1 ORDER BY seq")?;
            let rows = stmt.query_map([instance_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<std::result::Result<_, _>>()?
        };
        tx.execute("DELETE FROM outbox WHERE instance_id = ?1", [instance_id])?;
        let mut seq = agent_last + 1;
        for (_, payload) in &pending {
            insert_outbox(&tx, instance_id, seq, payload)?;
            seq += 1;
        }
        tx.execute(
            "UPDATE instances SET next_payload_seq = ?2, acked_payload_seq = ?3 WHERE id = ?1",
            params![instance_id, seq as i64, agent_last as i64],
        )?;
        tx.commit()?;
        Ok(Some(pending.len()))
    }

    fn ack_payloads(&self, instance_id: &str, seq: u64) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "DELETE FROM outbox WHERE instance_id = ?1 AND seq <= ?2",
            params![instance_id, seq as i64],
        )?;
        tx.execute(
            "UPDATE instances SET acked_payload_seq = MAX(acked_payload_seq, ?2) WHERE id = ?1",
            params![instance_id, seq as i64],
        )?;
        tx.commit()?;
        Ok(())
    }
}

pub(super) fn next_payload_seq(conn: &Connection, instance_id: &str) -> Result<u64> {
    let seq: i64 = conn.query_row(
        "UPDATE instances SET next_payload_seq = next_payload_seq + 1 WHERE id = ?1
         RETURNING next_payload_seq - 1",
        [instance_id],
        |r| r.get(0),
    )?;
    Ok(seq as u64)
}

pub(super) fn insert_outbox(
    conn: &Connection,
    instance_id: &str,
    seq: u64,
    payload: &[u8],
) -> Result<()> {
    conn.execute(
        "INSERT INTO outbox (instance_id, seq, payload) VALUES (?1, ?2, ?3)",
        params![instance_id, seq as i64, payload],
    )?;
    Ok(())
}
