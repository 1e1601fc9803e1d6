//! The audit log, as the Berth API lists it.

use std::sync::Arc;

use super::CpError;
use crate::domain::audit::{AuditEvent, MAX_PAGE};
use crate::state::Store;

pub struct Audit {
    store: Arc<dyn Store>,
}

impl Audit {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Records after `after` (an id; 0 for the first), at most `limit` (1 to [`MAX_PAGE`]).
    pub fn list(&self, after: i64, limit: usize) -> Result<Vec<AuditEvent>, CpError> {
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(CpError::InvalidParameter(format!(
                "limit: 1 to {MAX_PAGE} records, {limit} asked"
            )));
        }
        Ok(self.store.list_audit(after, limit)?)
    }
}
