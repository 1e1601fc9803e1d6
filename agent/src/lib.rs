//! berth-agent: runs Amazon ECS task definitions on containerd.
//!
//! The map: `session` talks to the control plane and converts wire types (`wire`); `engine`
//! runs one worker per task over the pure state machine in `task_state`; `runtime` is the
//! containerd boundary; `store` is the durable state. `main.rs` only wires these together.

pub mod cgroups;
pub mod config;
pub mod ecs_json;
pub mod engine;
pub mod exec;
pub mod health;
pub mod host;
pub mod http_server;
pub mod images;
pub mod introspection;
pub mod logs;
pub mod manifest;
pub mod metrics;
pub mod model;
pub mod netdef;
pub mod network;
pub mod registry;
pub mod resources;
pub mod runtime;
pub mod sd_notify;
pub mod session;
pub mod store;
pub mod task_metadata;
pub mod task_state;
pub mod wire;
