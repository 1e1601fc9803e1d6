//! Placement decisions: pure functions from a snapshot of cluster state to what to do.

pub mod placement;
