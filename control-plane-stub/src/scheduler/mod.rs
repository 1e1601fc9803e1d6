//! Placement decisions: pure functions from a snapshot of cluster state to what to do, tested
//! without a store or a network. The application layer gathers the snapshot and records the
//! outcome.

pub mod daemon;
pub mod placement;
pub mod service;
pub mod usage;
