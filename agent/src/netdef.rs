//! The network vocabulary a task spec and the network layer share: transport protocols, IPv4
//! networks and ingress rules. Pure, and below both `model` (what a task asks for) and
//! `network` (what the agent builds for it).

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// The link-local address ECS gives the task metadata endpoint (`crate::task_metadata`).
pub const METADATA_ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 170, 2);
/// Where the agent serves that endpoint, on the bridge address and the awsvpc gateway (ECS's
/// port); the nftables table DNATs the address's port 80 here.
pub const METADATA_PORT: u16 = 51679;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tcp" => Some(Self::Tcp),
            "udp" => Some(Self::Udp),
            _ => None,
        }
    }
}

/// Which protocols an ingress rule allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IngressProtocol {
    Tcp,
    Udp,
    /// Every protocol and port.
    All,
}

/// One allowed ingress to an awsvpc task (a security group rule).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressRule {
    pub protocol: IngressProtocol,
    pub from_port: u16,
    pub to_port: u16,
    pub source: Cidr,
}

/// An IPv4 network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CIDR {0:?}: expected a.b.c.d/n")]
pub struct CidrError(pub String);

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl std::str::FromStr for Cidr {
    type Err = CidrError;

    /// `a.b.c.d/n` with n in 0..=32; host bits are cleared, so `10.0.0.7/24` is `10.0.0.0/24`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || CidrError(s.to_string());
        let (addr, len) = s.trim().split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        if len.is_empty() || len.len() > 2 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let prefix_len: u8 = len.parse().map_err(|_| bad())?;
        if prefix_len > 32 {
            return Err(bad());
        }
        Ok(Self {
            addr: Ipv4Addr::from(u32::from(addr) & mask(prefix_len)),
            prefix_len,
        })
    }
}

fn mask(prefix_len: u8) -> u32 {
    match prefix_len.min(32) {
        0 => 0,
        n => u32::MAX << (32 - u32::from(n)),
    }
}

impl Cidr {
    /// The netmask as a number (`/24` -> `0xffffff00`).
    pub fn mask(&self) -> u32 {
        mask(self.prefix_len)
    }

    /// The network address (host bits cleared, even if `addr` was built by hand with them set).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// The last address of the network.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()) | !self.mask())
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }

    /// The n-th address of the network: the network address plus `n` (wrapping at the end of
    /// the address space; callers keep `n < size()`).
    pub fn host(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()).wrapping_add(n))
    }

    /// The first host address, which the agent gives its bridge or gateway device.
    pub fn gateway(&self) -> Ipv4Addr {
        self.host(1)
    }

    /// How many addresses the network spans, network and broadcast addresses included.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix_len.min(32)))
    }

    /// Whether the two networks share an address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        let m = mask(self.prefix_len.min(other.prefix_len));
        u32::from(self.addr) & m == u32::from(other.addr) & m
    }

    /// Offsets of the addresses handed to tasks: not the network address, the gateway
    /// (offset 1) nor the broadcast address. Empty for /31 and /32.
    pub fn task_offsets(&self) -> (u64, u64) {
        (2, self.size().saturating_sub(2))
    }
}
