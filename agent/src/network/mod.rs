//! Task networking: the four ECS network modes on netlink, network namespaces and one nftables
//! table that the agent owns.
//!
//! The split follows the rest of the agent: what a task's network will be is decided purely
//! (`plan`: addresses, names, host ports; `dns`: resolv.conf and hosts; `nft::render`: the
//! whole table), and recorded in the task's state before anything is created; the few modules
//! that touch the OS (`netns`, `link`, `nft::apply`, `host`) carry a recorded plan out and take
//! it down again, idempotently, so a plan can be re-applied or removed after a crash.
//!
//! - `host`: no namespace; port mappings are reservations (hostPort = containerPort).
//! - `none`: runc gives each container a namespace with loopback only; nothing to set up.
//! - `bridge`: one namespace per task, a veth into the agent's bridge, an address from the
//!   bridge subnet, outbound NAT, and DNAT from host ports to the task's ports.
//! - `awsvpc`: one namespace per task, a routed veth (a /32 route on the host side, the
//!   gateway address on the agent's gateway device), an address from the task subnet, ingress
//!   rules per task.

pub mod dns;
pub mod host;
pub mod link;
pub mod netns;
pub mod nft;
pub mod plan;

use std::future::Future;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::netdef::{Cidr, IngressProtocol, IngressRule, Protocol};
pub use plan::{Allocator, PlanError};

use crate::model::NetworkMode;

/// The agent's `[network]` configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// The bridge that bridge-mode tasks attach to.
    pub bridge: String,
    /// Bridge-mode addresses; the first host address is the bridge's own (the gateway).
    pub bridge_subnet: Cidr,
    /// A dummy device that holds the awsvpc gateway address (the first host address of
    /// `task_subnet`); awsvpc tasks are routed, not bridged.
    pub gateway_device: String,
    /// awsvpc task addresses.
    pub task_subnet: Cidr,
    /// The agent's nftables table (family ip). The agent replaces it as a whole.
    pub nft_table: String,
    /// Start of every host-side link and namespace the agent creates, so recovery can tell its
    /// own leftovers from anything else (1–5 characters: link names have 15).
    pub name_prefix: String,
    /// Where namespaces are bind-mounted (`ip netns` uses /run/netns).
    pub netns_dir: PathBuf,
    /// Host ports handed out for hostPort 0 (inclusive).
    pub dynamic_ports: (u16, u16),
    /// Host ports never handed out nor bound (ECS_RESERVED_PORTS).
    pub reserved_tcp_ports: Vec<u16>,
    pub reserved_udp_ports: Vec<u16>,
}

impl Default for NetworkConfig {
    /// The documented defaults; the dynamic range is ECS's fallback (the config reads the
    /// kernel's ephemeral range instead when it can).
    fn default() -> Self {
        let cidr = |a, b| Cidr {
            addr: Ipv4Addr::new(10, a, b, 0),
            prefix_len: 16,
        };
        Self {
            bridge: "berth0".into(),
            bridge_subnet: cidr(231, 0),
            gateway_device: "berth-tasks".into(),
            task_subnet: cidr(232, 0),
            nft_table: "berth".into(),
            name_prefix: "bth".into(),
            netns_dir: PathBuf::from("/run/netns"),
            dynamic_ports: (49153, 65535),
            reserved_tcp_ports: Vec::new(),
            reserved_udp_ports: Vec::new(),
        }
    }
}

/// A host port bound to a container's port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortBinding {
    pub container: String,
    pub protocol: Protocol,
    pub container_port: u16,
    pub host_port: u16,
}

/// Everything the agent creates for one task's network, decided (and persisted with the task)
/// before any of it is created. Teardown works from this alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskNetwork {
    pub mode: NetworkMode,
    /// The task id, for names and rule comments.
    pub task_id: String,
    /// The namespace's name under `netns_dir` (bridge, awsvpc).
    pub netns: Option<String>,
    /// The host-side veth (bridge, awsvpc); its peer is `eth0` inside the namespace.
    pub host_veth: Option<String>,
    /// The task's address and prefix length on its subnet (bridge, awsvpc).
    pub address: Option<Ipv4Addr>,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    /// The task side's MAC address, chosen here (locally administered) so it is known before
    /// the link exists.
    pub mac: Option<String>,
    /// Host ports reserved for the task (host, bridge); bridge ports are DNATed.
    pub bindings: Vec<PortBinding>,
    /// awsvpc: None allows every ingress; Some(rules) only what the rules allow.
    pub ingress: Option<Vec<IngressRule>>,
}

impl TaskNetwork {
    /// The namespace's path, for the OCI spec, when the task has one.
    pub fn netns_path(&self, cfg: &NetworkConfig) -> Option<PathBuf> {
        self.netns.as_ref().map(|n| cfg.netns_dir.join(n))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("netlink {op}: {message}")]
    Netlink { op: String, message: String },
    #[error("network namespace {name}: {message}")]
    Netns { name: String, message: String },
    #[error("nftables: {0}")]
    Nft(String),
    #[error("{0}")]
    Io(String),
}

/// The OS side of task networking. `HostNetwork` is the real one; `FakeNetwork` records calls
/// for the engine's tests.
pub trait NetworkDriver: Send + Sync + 'static {
    /// Once at start, with the networks of every task the store says is set up or being set
    /// up: creates the bridge and gateway device, enables forwarding, writes the nftables
    /// table for these networks, and removes every namespace and link with the agent's prefix
    /// that none of them owns (leftovers of a crash).
    fn init(&self, active: &[TaskNetwork])
        -> impl Future<Output = Result<(), NetworkError>> + Send;

    /// Creates what `net` describes; what already exists is reused or replaced, so this may
    /// run again after a crash part-way. Updates the nftables table.
    fn setup(&self, net: &TaskNetwork) -> impl Future<Output = Result<(), NetworkError>> + Send;

    /// Removes what `net` describes; missing pieces are skipped. Updates the nftables table.
    fn teardown(&self, net: &TaskNetwork) -> impl Future<Output = Result<(), NetworkError>> + Send;
}

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`NetworkDriver`] as a trait object, so the engine needs no extra type parameter.
pub trait DynNetworkDriver: Send + Sync + 'static {
    fn init<'a>(&'a self, active: &'a [TaskNetwork]) -> BoxFuture<'a, Result<(), NetworkError>>;
    fn setup<'a>(&'a self, net: &'a TaskNetwork) -> BoxFuture<'a, Result<(), NetworkError>>;
    fn teardown<'a>(&'a self, net: &'a TaskNetwork) -> BoxFuture<'a, Result<(), NetworkError>>;
}

impl<N: NetworkDriver> DynNetworkDriver for N {
    fn init<'a>(&'a self, active: &'a [TaskNetwork]) -> BoxFuture<'a, Result<(), NetworkError>> {
        Box::pin(NetworkDriver::init(self, active))
    }

    fn setup<'a>(&'a self, net: &'a TaskNetwork) -> BoxFuture<'a, Result<(), NetworkError>> {
        Box::pin(NetworkDriver::setup(self, net))
    }

    fn teardown<'a>(&'a self, net: &'a TaskNetwork) -> BoxFuture<'a, Result<(), NetworkError>> {
        Box::pin(NetworkDriver::teardown(self, net))
    }
}

/// Records calls instead of touching the host: for the engine's tests without root.
#[derive(Default)]
pub struct FakeNetwork {
    pub calls: std::sync::Mutex<Vec<String>>,
    /// When set, `setup` fails with this message.
    pub fail_setup: std::sync::Mutex<Option<String>>,
}

impl FakeNetwork {
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn record(&self, call: String) {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(call);
    }
}

impl NetworkDriver for FakeNetwork {
    async fn init(&self, active: &[TaskNetwork]) -> Result<(), NetworkError> {
        self.record(format!("init {}", active.len()));
        Ok(())
    }

    async fn setup(&self, net: &TaskNetwork) -> Result<(), NetworkError> {
        self.record(format!("setup {}", net.task_id));
        let fail = self
            .fail_setup
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match fail {
            Some(message) => Err(NetworkError::Io(message)),
            None => Ok(()),
        }
    }

    async fn teardown(&self, net: &TaskNetwork) -> Result<(), NetworkError> {
        self.record(format!("teardown {}", net.task_id));
        Ok(())
    }
}
