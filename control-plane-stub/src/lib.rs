//! berth-cp: the reference control plane for Berth agents, speaking Amazon ECS's API to users
//! and berth.agent.v1 to agents; and berthctl, its command-line client.

pub mod admin;
pub mod agents;
pub mod api;
pub mod app;
pub mod cli;
pub mod clock;
pub mod cmd;
pub mod config;
pub mod contract;
pub mod domain;
pub mod metrics;
pub mod scheduler;
pub mod sd_notify;
pub mod server;
pub mod state;
