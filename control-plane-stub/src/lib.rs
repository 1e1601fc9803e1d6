//! berth-cp: the reference control plane for Berth agents, speaking Amazon ECS's API to users
//! and berth.agent.v1 to agents; and berthctl, its command-line client.
//!
//! Pure decisions: `taskdef`, `units`, `placement`, `task`, `instance`, `security`, `secrets`, `config`.
//! Edges: `store` (SQLite), `ecs_api` (HTTP/JSON; with `logs`, `security_api`, `secrets_api` and `events_api` under /berth/v1), `agent_service` + `sessions` + `wire` (gRPC).
//! `control` is the one place the operations are carried out.

pub mod admin;
pub mod agent_service;
pub mod cli;
pub mod cmd;
pub mod compat;
pub mod config;
pub mod control;
pub mod ecs_api;
pub mod events_api;
pub mod ids;
pub mod instance;
pub mod logs;
pub mod placement;
pub mod secrets;
pub mod secrets_api;
pub mod security;
pub mod security_api;
pub mod server;
pub mod sessions;
pub mod store;
pub mod task;
pub mod taskdef;
pub mod units;
pub mod wire;
