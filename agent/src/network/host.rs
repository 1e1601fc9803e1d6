//! `HostNetwork`: the real `NetworkDriver`, carrying recorded `TaskNetwork`s out on this host
//! with `netns`, `link` and `nft`.
//!
//! Every step is idempotent or undoes what a crashed earlier attempt left (a stale veth is
//! deleted and made again, an existing namespace reused), so the engine can simply call `setup`
//! again after a restart. The nftables table is rendered from the in-memory set of active
//! networks, which `init` seeds from the store; renders and applies are serialized so the last
//! one applied always reflects the latest set.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;

use super::link::{sysctl, Netlink};
use super::plan::{is_agent_link, is_agent_netns, peer_veth_name};
use super::{netns, nft, Cidr, NetworkConfig, NetworkDriver, NetworkError, PlanError, TaskNetwork};
use crate::model::NetworkMode;

/// The name the task side of the veth gets inside its namespace.
pub const TASK_IFNAME: &str = "eth0";

/// The first host address of `cidr` (its network address + 1): the bridge's own address and
/// the awsvpc gateway.
pub fn first_host(cidr: &Cidr) -> Ipv4Addr {
    let mask = match cidr.prefix_len {
        0 => 0,
        n if n >= 32 => u32::MAX,
        n => u32::MAX << (32 - n),
    };
    Ipv4Addr::from((u32::from(cidr.addr) & mask).wrapping_add(1))
}

/// What a bridge or awsvpc network must have been planned with.
struct Routed<'a> {
    netns: &'a str,
    host_veth: &'a str,
    address: Ipv4Addr,
    gateway: Ipv4Addr,
    mac: &'a str,
}

fn routed(net: &TaskNetwork) -> Result<Routed<'_>, NetworkError> {
    let missing = |what: &str| {
        NetworkError::Plan(PlanError::Invalid(format!(
            "task {}: {:?} network has no {what}",
            net.task_id, net.mode
        )))
    };
    Ok(Routed {
        netns: net.netns.as_deref().ok_or_else(|| missing("namespace"))?,
        host_veth: net
            .host_veth
            .as_deref()
            .ok_or_else(|| missing("host veth"))?,
        address: net.address.ok_or_else(|| missing("address"))?,
        gateway: net.gateway.ok_or_else(|| missing("gateway"))?,
        mac: net.mac.as_deref().ok_or_else(|| missing("MAC address"))?,
    })
}

/// Task networking on this host.
pub struct HostNetwork {
    cfg: NetworkConfig,
    /// The networks the nftables table is rendered from, by task id.
    active: Mutex<BTreeMap<String, TaskNetwork>>,
    /// Held from render to apply, so a slower apply never overwrites a newer table; holds the
    /// table last applied, so a change that leaves it as it was (a host-mode task without
    /// ports) costs no `nft` run (≈10 ms of a launch).
    nft_lock: tokio::sync::Mutex<Option<String>>,
}

impl HostNetwork {
    pub fn new(cfg: NetworkConfig) -> Self {
        Self {
            cfg,
            active: Mutex::new(BTreeMap::new()),
            nft_lock: tokio::sync::Mutex::new(None),
        }
    }

    pub fn config(&self) -> &NetworkConfig {
        &self.cfg
    }

    fn with_active<T>(&self, f: impl FnOnce(&mut BTreeMap<String, TaskNetwork>) -> T) -> T {
        let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut active)
    }

    /// Renders the table from the current active set and applies it.
    async fn apply_nft(&self) -> Result<(), NetworkError> {
        let mut applied = self.nft_lock.lock().await;
        let nets: Vec<TaskNetwork> = self.with_active(|a| a.values().cloned().collect());
        let table = nft::render(&self.cfg, &nets);
        if applied.as_deref() == Some(table.as_str()) {
            return Ok(());
        }
        // Unknown until this apply succeeds: a failed one is retried by the next change.
        *applied = None;
        nft::apply(&table).await?;
        *applied = Some(table);
        Ok(())
    }

    /// Deletes agent links and namespaces that no active network owns.
    async fn sweep(&self, nl: &Netlink, active: &[TaskNetwork]) -> Result<(), NetworkError> {
        let prefix = &self.cfg.name_prefix;
        let mut keep_links = std::collections::BTreeSet::new();
        let mut keep_netns = std::collections::BTreeSet::new();
        for net in active {
            if let Some(veth) = &net.host_veth {
                keep_links.insert(veth.clone());
                keep_links.insert(peer_veth_name(prefix, &net.task_id));
            }
            if let Some(ns) = &net.netns {
                keep_netns.insert(ns.clone());
            }
        }
        for link in nl.links().await? {
            if is_agent_link(prefix, &link.name) && !keep_links.contains(&link.name) {
                tracing::info!(link = %link.name, "removing a leftover task link");
                nl.delete_link(&link.name).await?;
            }
        }
        for name in netns::list(&self.cfg.netns_dir)? {
            if is_agent_netns(prefix, &name) && !keep_netns.contains(&name) {
                tracing::info!(netns = %name, "removing a leftover task namespace");
                netns::delete(&self.cfg.netns_dir, &name).await?;
            }
        }
        Ok(())
    }

    async fn setup_routed(&self, net: &TaskNetwork) -> Result<(), NetworkError> {
        let r = routed(net)?;
        let prefix = &self.cfg.name_prefix;
        let peer = peer_veth_name(prefix, &net.task_id);
        let ns_path = netns::create(&self.cfg.netns_dir, r.netns).await?;

        let host = Netlink::host()?;
        // Whatever an earlier attempt left: deleting either end removes the pair, and with it
        // an `eth0` already moved into the namespace.
        host.delete_link(r.host_veth).await?;
        host.delete_link(&peer).await?;
        host.create_veth(r.host_veth, &peer).await?;
        host.set_mac(&peer, r.mac).await?;
        let ns_file = netns::open(&ns_path)?;
        host.move_to_netns(&peer, &ns_file).await?;
        drop(ns_file);

        // The host side first, so the task's routes go onto a link with a carrier.
        match net.mode {
            NetworkMode::Bridge => {
                host.set_master(r.host_veth, &self.cfg.bridge).await?;
                host.set_up(r.host_veth).await?;
            }
            _ => {
                host.set_up(r.host_veth).await?;
                host.add_device_route(r.address, 32, r.host_veth, r.gateway)
                    .await?;
            }
        }

        let inner = Netlink::in_netns(&ns_path).await?;
        inner.rename(&peer, TASK_IFNAME).await?;
        inner.set_up("lo").await?;
        match net.mode {
            NetworkMode::Bridge => {
                inner
                    .add_address(TASK_IFNAME, r.address, net.prefix_len)
                    .await?;
                inner.set_up(TASK_IFNAME).await?;
                inner
                    .add_default_route(r.gateway, TASK_IFNAME, false)
                    .await?;
            }
            _ => {
                inner.add_address(TASK_IFNAME, r.address, 32).await?;
                inner.set_up(TASK_IFNAME).await?;
                inner
                    .add_default_route(r.gateway, TASK_IFNAME, true)
                    .await?;
            }
        }
        Ok(())
    }
}

impl NetworkDriver for HostNetwork {
    async fn init(&self, active: &[TaskNetwork]) -> Result<(), NetworkError> {
        let cfg = &self.cfg;
        let nl = Netlink::host()?;
        nl.ensure_bridge(
            &cfg.bridge,
            first_host(&cfg.bridge_subnet),
            cfg.bridge_subnet.prefix_len,
        )
        .await?;
        // DNAT of the host's own 127.0.0.1:hostPort traffic sends loopback-sourced packets out
        // of the bridge; the kernel drops those as martians unless this is set.
        sysctl(&format!("net/ipv4/conf/{}/route_localnet", cfg.bridge), "1")?;
        nl.ensure_dummy(&cfg.gateway_device, first_host(&cfg.task_subnet))
            .await?;
        sysctl("net/ipv4/ip_forward", "1")?;

        self.with_active(|a| {
            a.clear();
            for net in active {
                if net.mode != NetworkMode::None {
                    a.insert(net.task_id.clone(), net.clone());
                }
            }
        });
        // Always written at start: the table may have changed or gone while the agent was away.
        *self.nft_lock.lock().await = None;
        self.apply_nft().await?;
        self.sweep(&nl, active).await
    }

    async fn setup(&self, net: &TaskNetwork) -> Result<(), NetworkError> {
        match net.mode {
            NetworkMode::None => return Ok(()),
            NetworkMode::Host => {}
            NetworkMode::Bridge | NetworkMode::Awsvpc => self.setup_routed(net).await?,
        }
        self.with_active(|a| a.insert(net.task_id.clone(), net.clone()));
        self.apply_nft().await
    }

    async fn teardown(&self, net: &TaskNetwork) -> Result<(), NetworkError> {
        if net.mode == NetworkMode::None {
            return Ok(());
        }
        self.with_active(|a| a.remove(&net.task_id));
        // Every step runs even when an earlier one failed; the first error is reported.
        let mut first: Result<(), NetworkError> = self.apply_nft().await;
        let mut keep = |r: Result<(), NetworkError>| {
            if let Err(e) = r {
                tracing::warn!(task = %net.task_id, error = %e, "network teardown step failed");
                if first.is_ok() {
                    first = Err(e);
                }
            }
        };
        if net.host_veth.is_some() || net.netns.is_some() {
            match Netlink::host() {
                Ok(nl) => {
                    if let Some(veth) = &net.host_veth {
                        keep(nl.delete_link(veth).await.map(drop));
                    }
                    let peer = peer_veth_name(&self.cfg.name_prefix, &net.task_id);
                    keep(nl.delete_link(&peer).await.map(drop));
                }
                Err(e) => keep(Err(e)),
            }
        }
        if let Some(ns) = &net.netns {
            keep(netns::delete(&self.cfg.netns_dir, ns).await);
        }
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_host_is_network_plus_one() {
        let c = |a: [u8; 4], p| Cidr {
            addr: Ipv4Addr::from(a),
            prefix_len: p,
        };
        assert_eq!(
            first_host(&c([10, 0, 0, 0], 24)),
            Ipv4Addr::new(10, 0, 0, 1)
        );
        assert_eq!(
            first_host(&c([10, 0, 5, 77], 16)),
            Ipv4Addr::new(10, 0, 0, 1)
        );
        assert_eq!(
            first_host(&c([172, 30, 1, 0], 22)),
            Ipv4Addr::new(172, 30, 0, 1)
        );
    }
}
