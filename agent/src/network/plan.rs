//! Pure decisions about a task's network: its names, its address (IPAM), its MAC and its host
//! ports. The `Allocator` is rebuilt at start from the networks recorded in the store, which
//! is what makes leases and port reservations survive an agent restart.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::{NetworkConfig, TaskNetwork};
use crate::model::TaskSpec;

/// An IPv4 network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("invalid CIDR {0:?}: expected a.b.c.d/n")]
    BadCidr(String),
    #[error("no free address left in {0}")]
    AddressesExhausted(String),
    #[error("host port {port}/{protocol} is already in use")]
    PortInUse { port: u16, protocol: &'static str },
    #[error("host port {port}/{protocol} is reserved on this instance")]
    PortReserved { port: u16, protocol: &'static str },
    #[error("no free host port left in {first}-{last} for {protocol}")]
    PortsExhausted {
        first: u16,
        last: u16,
        protocol: &'static str,
    },
    #[error("{0}")]
    Invalid(String),
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Decides task networks and keeps the agent's leases and port reservations.
#[derive(Debug)]
pub struct Allocator {
    cfg: NetworkConfig,
}

impl Allocator {
    /// An allocator holding the leases and ports of `active` (the store's networks).
    pub fn new(cfg: &NetworkConfig, active: &[TaskNetwork]) -> Self {
        let _ = active;
        Self { cfg: cfg.clone() }
    }

    /// Decides `spec`'s network and reserves its address and host ports. None for `none`
    /// mode, which needs nothing from the agent.
    pub fn allocate(&mut self, spec: &TaskSpec) -> Result<Option<TaskNetwork>, PlanError> {
        let _ = (spec, &self.cfg);
        Err(PlanError::Invalid("not yet".into()))
    }

    /// Gives back `net`'s address and ports.
    pub fn release(&mut self, net: &TaskNetwork) {
        let _ = net;
    }
}

/// Names of what the agent creates for a task. Every host-side link is `<prefix>_<hex>`, 15
/// characters in all, and every namespace `<prefix>-<task id>`: the separator keeps agents with
/// prefixes `t1` and `t12` from mistaking each other's leftovers for their own.
pub fn netns_name(prefix: &str, task_id: &str) -> String {
    format!("{prefix}-{task_id}")
}

/// The host side of the task's veth.
pub fn host_veth_name(prefix: &str, task_id: &str) -> String {
    link_name(prefix, task_id, "host")
}

/// The task side's name until it is moved into the namespace and renamed `eth0`.
pub fn peer_veth_name(prefix: &str, task_id: &str) -> String {
    link_name(prefix, task_id, "peer")
}

fn link_name(prefix: &str, task_id: &str, side: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{task_id}/{side}").as_bytes());
    let hex = hex::encode(digest);
    let keep = 15usize.saturating_sub(prefix.len() + 1);
    format!("{prefix}_{}", &hex[..keep])
}

/// Whether a host link is one the agent with this prefix creates for tasks.
pub fn is_agent_link(prefix: &str, name: &str) -> bool {
    name.len() == 15
        && name
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('_'))
            .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether a file under the netns directory is a namespace of this agent's tasks.
pub fn is_agent_netns(prefix: &str, name: &str) -> bool {
    name.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|id| !id.is_empty())
}

/// A locally administered, unicast MAC derived from the task id.
pub fn task_mac(task_id: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!("{task_id}/mac").as_bytes());
    format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        d[0], d[1], d[2], d[3], d[4]
    )
}
