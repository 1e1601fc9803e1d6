//! Pure types and validation: task definitions, tasks and their status rules, container
//! instances, ids and ARNs, security groups, secrets' metadata. No I/O, no async.

pub mod audit;
pub mod cluster;
pub mod compat;
pub mod exec;
pub mod ids;
pub mod instance;
pub mod placement;
pub mod query;
pub mod secrets;
pub mod security;
pub mod service;
pub mod settings;
pub mod tags;
pub mod task;
pub mod taskdef;
pub mod units;
