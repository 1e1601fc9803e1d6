//! Pure decisions about a task's network: its names, its address (IPAM), its MAC and its host
//! ports. The `Allocator` is rebuilt at start from the networks recorded in the store, which
//! is what makes leases and port reservations survive an agent restart.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::Ipv4Addr;

use super::{Cidr, NetworkConfig, PortBinding, Protocol, TaskNetwork};
use crate::model::{NetworkMode, TaskSpec};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
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

/// One subnet's leases, and a cursor so that addresses are handed out in rotation.
#[derive(Debug)]
struct Pool {
    subnet: Cidr,
    used: HashSet<Ipv4Addr>,
    /// The offset last handed out; the next search starts after it.
    cursor: u64,
}

impl Pool {
    fn new(subnet: Cidr) -> Self {
        Self {
            subnet,
            used: HashSet::new(),
            cursor: 1,
        }
    }

    fn offset(&self, ip: Ipv4Addr) -> Option<u64> {
        self.subnet
            .contains(ip)
            .then(|| u64::from(u32::from(ip) - u32::from(self.subnet.network())))
    }

    /// Records a lease found in the store; the cursor moves to the highest one.
    fn seed(&mut self, ip: Ipv4Addr) {
        if let Some(off) = self.offset(ip) {
            self.used.insert(ip);
            let (first, last) = self.subnet.task_offsets();
            if (first..=last).contains(&off) {
                self.cursor = self.cursor.max(off);
            }
        }
    }

    /// The next free address after the cursor, wrapping round.
    fn next_free(&self) -> Result<Ipv4Addr, PlanError> {
        let (first, last) = self.subnet.task_offsets();
        let exhausted = || PlanError::AddressesExhausted(self.subnet.to_string());
        if first > last {
            return Err(exhausted());
        }
        let capacity = last - first + 1;
        if self.used.len() as u64 >= capacity {
            return Err(exhausted());
        }
        let start = if (first..last).contains(&self.cursor) {
            self.cursor + 1
        } else {
            first
        };
        (0..capacity)
            .map(|i| first + (start - first + i) % capacity)
            .map(|off| self.subnet.host(off as u32))
            .find(|ip| !self.used.contains(ip))
            .ok_or_else(exhausted)
    }

    fn lease(&mut self, ip: Ipv4Addr) {
        if let Some(off) = self.offset(ip) {
            self.used.insert(ip);
            self.cursor = off;
        }
    }

    fn release(&mut self, ip: Ipv4Addr) {
        self.used.remove(&ip);
    }
}

/// Host ports of one protocol held by tasks, and where the next dynamic search starts.
#[derive(Debug, Default)]
struct PortTable {
    used: BTreeSet<u16>,
    /// The dynamic port last handed out.
    cursor: Option<u16>,
}

/// Decides task networks and keeps the agent's leases and port reservations.
#[derive(Debug)]
pub struct Allocator {
    cfg: NetworkConfig,
    bridge: Pool,
    task: Pool,
    tcp: PortTable,
    udp: PortTable,
}

/// A port mapping as the allocator sees it: one container port or a range of them.
struct Wanted<'a> {
    container: &'a str,
    protocol: Protocol,
    /// Inclusive container ports.
    ports: (u16, u16),
    /// A fixed host port (for a single container port only); None: dynamic, or, in host and
    /// awsvpc mode, the container port.
    host_port: Option<u16>,
}

type Picked = BTreeSet<(Protocol, u16)>;

impl Allocator {
    /// An allocator holding the leases and ports of `active` (the store's networks).
    pub fn new(cfg: &NetworkConfig, active: &[TaskNetwork]) -> Self {
        let mut a = Self {
            cfg: cfg.clone(),
            bridge: Pool::new(cfg.bridge_subnet),
            task: Pool::new(cfg.task_subnet),
            tcp: PortTable::default(),
            udp: PortTable::default(),
        };
        for net in active {
            match (net.mode, net.address) {
                (NetworkMode::Bridge, Some(ip)) => a.bridge.seed(ip),
                (NetworkMode::Awsvpc, Some(ip)) => a.task.seed(ip),
                _ => {}
            }
            if net.mode != NetworkMode::Awsvpc {
                for b in &net.bindings {
                    a.ports_mut(b.protocol).used.insert(b.host_port);
                }
            }
        }
        // Resume dynamic ports after the highest one held.
        let (first, last) = cfg.dynamic_ports;
        if first <= last {
            for table in [&mut a.tcp, &mut a.udp] {
                table.cursor = table.used.range(first..=last).next_back().copied();
            }
        }
        a
    }

    /// Decides `spec`'s network and reserves its address and host ports. None for `none`
    /// mode, which needs nothing from the agent. Nothing is reserved unless all of it can be.
    pub fn allocate(&mut self, spec: &TaskSpec) -> Result<Option<TaskNetwork>, PlanError> {
        let mode = spec.network_mode;
        if mode == NetworkMode::None {
            return Ok(None);
        }
        let task_id = spec.id().to_string();
        let wanted = wanted_ports(spec)?;
        let mut net = TaskNetwork {
            mode,
            task_id: task_id.clone(),
            netns: None,
            host_veth: None,
            address: None,
            prefix_len: 0,
            gateway: None,
            mac: None,
            bindings: Vec::new(),
            ingress: None,
        };
        // Mistakes in the task's mappings are reported before a shortage of addresses.
        let mut cursors = (self.tcp.cursor, self.udp.cursor);
        net.bindings = match mode {
            NetworkMode::Bridge => self.bridge_bindings(&wanted, &mut cursors)?,
            _ => self.same_port_bindings(&wanted, mode)?,
        };
        if mode.has_task_netns() {
            let prefix = &self.cfg.name_prefix;
            let pool = match mode {
                NetworkMode::Bridge => &self.bridge,
                _ => &self.task,
            };
            net.netns = Some(netns_name(prefix, &task_id));
            net.host_veth = Some(host_veth_name(prefix, &task_id));
            net.mac = Some(task_mac(&task_id));
            net.address = Some(pool.next_free()?);
            net.gateway = Some(pool.subnet.gateway());
            net.prefix_len = match mode {
                NetworkMode::Bridge => pool.subnet.prefix_len,
                _ => 32,
            };
        }
        if mode == NetworkMode::Awsvpc {
            net.ingress = spec.ingress.clone();
        }
        // All decided: reserve it.
        match (mode, net.address) {
            (NetworkMode::Bridge, Some(ip)) => self.bridge.lease(ip),
            (NetworkMode::Awsvpc, Some(ip)) => self.task.lease(ip),
            _ => {}
        }
        if mode != NetworkMode::Awsvpc {
            for b in &net.bindings {
                self.ports_mut(b.protocol).used.insert(b.host_port);
            }
        }
        (self.tcp.cursor, self.udp.cursor) = cursors;
        Ok(Some(net))
    }

    /// Gives back `net`'s address and host ports.
    pub fn release(&mut self, net: &TaskNetwork) {
        match (net.mode, net.address) {
            (NetworkMode::Bridge, Some(ip)) => self.bridge.release(ip),
            (NetworkMode::Awsvpc, Some(ip)) => self.task.release(ip),
            _ => {}
        }
        if net.mode != NetworkMode::Awsvpc {
            for b in &net.bindings {
                self.ports_mut(b.protocol).used.remove(&b.host_port);
            }
        }
    }

    /// Whether `ip` is leased to a bridge or awsvpc task.
    pub fn is_leased(&self, ip: Ipv4Addr) -> bool {
        self.bridge.used.contains(&ip) || self.task.used.contains(&ip)
    }

    /// Whether a task holds host port `port` for `protocol`.
    pub fn is_port_in_use(&self, protocol: Protocol, port: u16) -> bool {
        self.ports(protocol).used.contains(&port)
    }

    fn ports(&self, protocol: Protocol) -> &PortTable {
        match protocol {
            Protocol::Tcp => &self.tcp,
            Protocol::Udp => &self.udp,
        }
    }

    fn ports_mut(&mut self, protocol: Protocol) -> &mut PortTable {
        match protocol {
            Protocol::Tcp => &mut self.tcp,
            Protocol::Udp => &mut self.udp,
        }
    }

    fn reserved(&self, protocol: Protocol) -> &[u16] {
        match protocol {
            Protocol::Tcp => &self.cfg.reserved_tcp_ports,
            Protocol::Udp => &self.cfg.reserved_udp_ports,
        }
    }

    /// Whether a host port may go to the task being planned: not reserved, not held by
    /// another task, not already picked for this one.
    fn is_free(&self, protocol: Protocol, port: u16, picked: &Picked) -> bool {
        !self.reserved(protocol).contains(&port)
            && !self.ports(protocol).used.contains(&port)
            && !picked.contains(&(protocol, port))
    }

    /// Checks a host port the task names, and adds it to `picked`.
    fn take_fixed(
        &self,
        protocol: Protocol,
        port: u16,
        picked: &mut Picked,
    ) -> Result<(), PlanError> {
        let p = protocol.as_str();
        if self.reserved(protocol).contains(&port) {
            return Err(PlanError::PortReserved { port, protocol: p });
        }
        if self.ports(protocol).used.contains(&port) {
            return Err(PlanError::PortInUse { port, protocol: p });
        }
        if !picked.insert((protocol, port)) {
            return Err(PlanError::Invalid(format!(
                "host port {port}/{p} is mapped twice in the task"
            )));
        }
        Ok(())
    }

    /// host and awsvpc: every host port is its container port. Host mode takes them on the
    /// host; awsvpc tasks have an address of their own, so their ports are only recorded.
    fn same_port_bindings(
        &self,
        wanted: &[Wanted],
        mode: NetworkMode,
    ) -> Result<Vec<PortBinding>, PlanError> {
        let mut picked = Picked::new();
        let mut out = Vec::new();
        for w in wanted {
            if let Some(h) = w.host_port.filter(|h| *h != w.ports.0) {
                return Err(PlanError::Invalid(format!(
                    "container {:?}: hostPort {h} differs from containerPort {}; in {} network mode a container's ports are the host's, so hostPort must equal containerPort or be left out",
                    w.container,
                    w.ports.0,
                    mode.as_str(),
                )));
            }
            for port in w.ports.0..=w.ports.1 {
                if mode == NetworkMode::Host {
                    self.take_fixed(w.protocol, port, &mut picked)?;
                }
                out.push(PortBinding {
                    container: w.container.to_string(),
                    protocol: w.protocol,
                    container_port: port,
                    host_port: port,
                });
            }
        }
        Ok(out)
    }

    /// bridge: a named host port as given; hostPort 0 or none, and ranges, from
    /// `dynamic_ports`, searched after the (tcp, udp) `cursors`, which move on.
    fn bridge_bindings(
        &self,
        wanted: &[Wanted],
        cursors: &mut (Option<u16>, Option<u16>),
    ) -> Result<Vec<PortBinding>, PlanError> {
        let mut picked = Picked::new();
        // Named ports first, so that a dynamic pick never takes one the task names itself.
        for w in wanted {
            if let Some(h) = w.host_port {
                self.take_fixed(w.protocol, h, &mut picked)?;
            }
        }
        let mut out = Vec::new();
        for w in wanted {
            let len = w.ports.1 - w.ports.0;
            let first_host = match w.host_port {
                Some(h) => h,
                None => {
                    let cursor = match w.protocol {
                        Protocol::Tcp => &mut cursors.0,
                        Protocol::Udp => &mut cursors.1,
                    };
                    let h = self.dynamic_run(w.protocol, len, *cursor, &picked)?;
                    for port in h..=h + len {
                        picked.insert((w.protocol, port));
                    }
                    *cursor = Some(h + len);
                    h
                }
            };
            for i in 0..=len {
                out.push(PortBinding {
                    container: w.container.to_string(),
                    protocol: w.protocol,
                    container_port: w.ports.0 + i,
                    host_port: first_host + i,
                });
            }
        }
        Ok(out)
    }

    /// The first of `extra + 1` contiguous free dynamic ports, searched after `cursor`, then
    /// from the start of the range.
    fn dynamic_run(
        &self,
        protocol: Protocol,
        extra: u16,
        cursor: Option<u16>,
        picked: &Picked,
    ) -> Result<u16, PlanError> {
        let (first, last) = self.cfg.dynamic_ports;
        let exhausted = PlanError::PortsExhausted {
            first,
            last,
            protocol: protocol.as_str(),
        };
        if first == 0 || first > last {
            return Err(exhausted);
        }
        let start = match cursor {
            Some(c) if (first..last).contains(&c) => c + 1,
            _ => first,
        };
        let scan = |from: u16, to: u16| -> Option<u16> {
            let mut run = 0u32;
            for port in from..=to {
                if self.is_free(protocol, port, picked) {
                    run += 1;
                    if run > u32::from(extra) {
                        return Some(port - extra);
                    }
                } else {
                    run = 0;
                }
            }
            None
        };
        scan(start, last)
            .or_else(|| scan(first, last))
            .ok_or(exhausted)
    }
}

/// The task's port mappings, checked: each names one container port or a range, and no
/// container port+protocol is mapped twice (a task's containers share one namespace).
fn wanted_ports(spec: &TaskSpec) -> Result<Vec<Wanted<'_>>, PlanError> {
    let mut seen: BTreeMap<(Protocol, u16), &str> = BTreeMap::new();
    let mut out = Vec::new();
    for c in &spec.containers {
        for m in &c.extra.port_mappings {
            let invalid =
                |msg: String| PlanError::Invalid(format!("container {:?}: {msg}", c.name));
            let host_port = m.host_port.filter(|h| *h != 0);
            let ports = match (m.container_port, m.container_port_range) {
                (Some(0), None) => return Err(invalid("containerPort 0 is not a port".into())),
                (Some(p), None) => (p, p),
                (None, Some((a, b))) if a == 0 || a > b => {
                    return Err(invalid(format!(
                        "containerPortRange {a}-{b} is not a range of ports"
                    )))
                }
                (None, Some((a, b))) if host_port.is_some() => {
                    return Err(invalid(format!(
                    "containerPortRange {a}-{b} takes no hostPort: the agent picks its host ports"
                )))
                }
                (None, Some(range)) => range,
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        "a port mapping has both containerPort and containerPortRange".into(),
                    ))
                }
                (None, None) => {
                    return Err(invalid(
                        "a port mapping needs containerPort or containerPortRange".into(),
                    ))
                }
            };
            for port in ports.0..=ports.1 {
                if let Some(other) = seen.insert((m.protocol, port), &c.name) {
                    return Err(PlanError::Invalid(format!(
                        "container port {port}/{} is mapped twice in the task (containers {other:?} and {:?}); a task's containers share one network namespace",
                        m.protocol.as_str(),
                        c.name
                    )));
                }
            }
            out.push(Wanted {
                container: &c.name,
                protocol: m.protocol,
                ports,
                host_port,
            });
        }
    }
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContainerExtra, ContainerSpec, PortMapping};
    use crate::network::{IngressProtocol, IngressRule};

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn cfg() -> NetworkConfig {
        NetworkConfig {
            bridge: "berth0".into(),
            bridge_subnet: cidr("10.231.0.0/16"),
            gateway_device: "berth-tasks".into(),
            task_subnet: cidr("10.232.0.0/16"),
            nft_table: "berth".into(),
            name_prefix: "bth".into(),
            netns_dir: "/run/netns".into(),
            dynamic_ports: (49153, 65535),
            reserved_tcp_ports: vec![22, 2375, 2376, 51678, 51679],
            reserved_udp_ports: vec![53],
        }
    }

    fn small_cfg() -> NetworkConfig {
        NetworkConfig {
            bridge_subnet: cidr("10.0.0.0/29"), // .2 - .6: five task addresses
            task_subnet: cidr("10.0.1.0/30"),   // .2 only
            dynamic_ports: (50000, 50004),
            ..cfg()
        }
    }

    fn port(container_port: u16, host_port: Option<u16>) -> PortMapping {
        PortMapping {
            container_port: Some(container_port),
            host_port,
            protocol: Protocol::Tcp,
            container_port_range: None,
        }
    }

    fn udp(m: PortMapping) -> PortMapping {
        PortMapping {
            protocol: Protocol::Udp,
            ..m
        }
    }

    fn range(first: u16, last: u16) -> PortMapping {
        PortMapping {
            container_port: None,
            host_port: None,
            protocol: Protocol::Tcp,
            container_port_range: Some((first, last)),
        }
    }

    fn container(name: &str, ports: Vec<PortMapping>) -> ContainerSpec {
        ContainerSpec {
            name: name.into(),
            image: "i".into(),
            essential: true,
            entry_point: None,
            command: None,
            environment: Vec::new(),
            working_directory: None,
            user: None,
            cpu: 0,
            memory_mib: 0,
            memory_reservation_mib: 0,
            stop_timeout_secs: 30,
            extra: ContainerExtra {
                port_mappings: ports,
                ..ContainerExtra::default()
            },
        }
    }

    fn task(id: &str, mode: NetworkMode, containers: Vec<ContainerSpec>) -> TaskSpec {
        TaskSpec {
            arn: format!("arn:aws:ecs:r:1:task/c/{id}"),
            family: "f".into(),
            revision: 1,
            network_mode: mode,
            cpu: 0,
            memory_mib: 0,
            containers,
            volumes: Vec::new(),
            ingress: None,
        }
    }

    fn one(id: &str, mode: NetworkMode, ports: Vec<PortMapping>) -> TaskSpec {
        task(id, mode, vec![container("c", ports)])
    }

    fn hosts(net: &TaskNetwork) -> Vec<u16> {
        net.bindings.iter().map(|b| b.host_port).collect()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_parsing_and_helpers() {
        let c = cidr("10.231.7.9/16");
        assert_eq!(c.addr, ip("10.231.0.0"));
        assert_eq!(c.prefix_len, 16);
        assert_eq!(c.to_string(), "10.231.0.0/16");
        assert_eq!(c.gateway(), ip("10.231.0.1"));
        assert_eq!(c.host(258), ip("10.231.1.2"));
        assert_eq!(c.size(), 65536);
        assert_eq!(c.broadcast(), ip("10.231.255.255"));
        assert!(c.contains(ip("10.231.255.255")));
        assert!(!c.contains(ip("10.232.0.0")));
        assert_eq!(cidr("0.0.0.0/0").size(), 1 << 32);
        assert!(cidr("0.0.0.0/0").contains(ip("1.2.3.4")));
        assert_eq!(cidr("1.2.3.4/32").size(), 1);
        assert!(cidr("10.0.0.0/8").overlaps(&cidr("10.5.0.0/16")));
        assert!(cidr("10.5.0.0/16").overlaps(&cidr("10.0.0.0/8")));
        assert!(!cidr("10.231.0.0/16").overlaps(&cidr("10.232.0.0/16")));
        for bad in [
            "10.0.0.0",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0/8",
            "10.0.0.0/+8",
            "10.0.0.0/008",
            "x/8",
            "",
        ] {
            assert_eq!(
                bad.parse::<Cidr>(),
                Err(crate::netdef::CidrError(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn none_mode_needs_nothing() {
        let mut a = Allocator::new(&cfg(), &[]);
        let spec = one("t", NetworkMode::None, vec![]);
        assert_eq!(a.allocate(&spec).unwrap(), None);
    }

    #[test]
    fn bridge_task_gets_names_address_and_gateway() {
        let mut a = Allocator::new(&cfg(), &[]);
        let net = a
            .allocate(&one("t1", NetworkMode::Bridge, vec![port(80, None)]))
            .unwrap()
            .unwrap();
        assert_eq!(net.mode, NetworkMode::Bridge);
        assert_eq!(net.task_id, "t1");
        assert_eq!(net.netns.as_deref(), Some("bth-t1"));
        assert_eq!(net.host_veth, Some(host_veth_name("bth", "t1")));
        assert_eq!(net.mac, Some(task_mac("t1")));
        assert_eq!(net.address, Some(ip("10.231.0.2")));
        assert_eq!(net.prefix_len, 16);
        assert_eq!(net.gateway, Some(ip("10.231.0.1")));
        assert_eq!(net.ingress, None);
        assert_eq!(
            net.bindings,
            [PortBinding {
                container: "c".into(),
                protocol: Protocol::Tcp,
                container_port: 80,
                host_port: 49153,
            }]
        );
        assert!(a.is_leased(ip("10.231.0.2")));
        assert!(a.is_port_in_use(Protocol::Tcp, 49153));
        assert!(!a.is_port_in_use(Protocol::Udp, 49153));
    }

    #[test]
    fn addresses_rotate_exhaust_and_come_back_after_release() {
        let mut a = Allocator::new(&small_cfg(), &[]);
        let mut nets = Vec::new();
        for i in 0..5 {
            let net = a
                .allocate(&one(&format!("t{i}"), NetworkMode::Bridge, vec![]))
                .unwrap()
                .unwrap();
            assert_eq!(net.address, Some(Ipv4Addr::new(10, 0, 0, 2 + i)));
            nets.push(net);
        }
        assert_eq!(
            a.allocate(&one("t5", NetworkMode::Bridge, vec![])),
            Err(PlanError::AddressesExhausted("10.0.0.0/29".into()))
        );
        a.release(&nets[1]);
        let net = a
            .allocate(&one("t6", NetworkMode::Bridge, vec![]))
            .unwrap()
            .unwrap();
        assert_eq!(net.address, Some(ip("10.0.0.3")));

        // A released address is not handed out again at once.
        let mut a = Allocator::new(&small_cfg(), &[]);
        let first = a
            .allocate(&one("a", NetworkMode::Bridge, vec![]))
            .unwrap()
            .unwrap();
        a.release(&first);
        let second = a
            .allocate(&one("b", NetworkMode::Bridge, vec![]))
            .unwrap()
            .unwrap();
        assert_eq!(first.address, Some(ip("10.0.0.2")));
        assert_eq!(second.address, Some(ip("10.0.0.3")));
        // ... and the cursor wraps round to the start after the last address.
        for id in ["c", "d", "e"] {
            a.allocate(&one(id, NetworkMode::Bridge, vec![])).unwrap();
        }
        let wrapped = a
            .allocate(&one("f", NetworkMode::Bridge, vec![]))
            .unwrap()
            .unwrap();
        assert_eq!(wrapped.address, Some(ip("10.0.0.2")));
    }

    #[test]
    fn a_failed_allocation_reserves_nothing() {
        let mut a = Allocator::new(&small_cfg(), &[]);
        // The address would be free, but port 22 is reserved.
        let err = a
            .allocate(&one(
                "t",
                NetworkMode::Bridge,
                vec![port(80, Some(8080)), port(81, Some(22))],
            ))
            .unwrap_err();
        assert_eq!(
            err,
            PlanError::PortReserved {
                port: 22,
                protocol: "tcp"
            }
        );
        assert!(!a.is_leased(ip("10.0.0.2")));
        assert!(!a.is_port_in_use(Protocol::Tcp, 8080));
        let net = a
            .allocate(&one("t", NetworkMode::Bridge, vec![port(80, Some(8080))]))
            .unwrap()
            .unwrap();
        assert_eq!(net.address, Some(ip("10.0.0.2")));
    }

    #[test]
    fn restart_keeps_leases_and_ports() {
        let mut a = Allocator::new(&cfg(), &[]);
        let spec = |id: &str| {
            one(
                id,
                NetworkMode::Bridge,
                vec![port(80, None), port(81, Some(8081))],
            )
        };
        let n1 = a.allocate(&spec("t1")).unwrap().unwrap();
        let n2 = a.allocate(&spec("t2")).unwrap_err();
        assert_eq!(
            n2,
            PlanError::PortInUse {
                port: 8081,
                protocol: "tcp"
            }
        );
        let aws = a
            .allocate(&one("t3", NetworkMode::Awsvpc, vec![port(80, None)]))
            .unwrap()
            .unwrap();
        let host = a
            .allocate(&one("t4", NetworkMode::Host, vec![udp(port(5000, None))]))
            .unwrap()
            .unwrap();

        // A new allocator from the recorded networks: same leases, same ports.
        let active = [n1.clone(), aws.clone(), host.clone()];
        let mut b = Allocator::new(&cfg(), &active);
        assert!(b.is_leased(n1.address.unwrap()));
        assert!(b.is_leased(aws.address.unwrap()));
        assert!(b.is_port_in_use(Protocol::Tcp, 49153));
        assert!(b.is_port_in_use(Protocol::Tcp, 8081));
        assert!(b.is_port_in_use(Protocol::Udp, 5000));
        // awsvpc ports were never taken on the host.
        assert!(!b.is_port_in_use(Protocol::Tcp, 80));
        let next = b
            .allocate(&one("t5", NetworkMode::Bridge, vec![port(80, None)]))
            .unwrap()
            .unwrap();
        assert_eq!(next.address, Some(ip("10.231.0.3")));
        assert_eq!(hosts(&next), [49154]);
        let next = b
            .allocate(&one("t6", NetworkMode::Awsvpc, vec![]))
            .unwrap()
            .unwrap();
        assert_eq!(next.address, Some(ip("10.232.0.3")));
        assert_eq!(
            b.allocate(&one("t7", NetworkMode::Host, vec![udp(port(5000, None))])),
            Err(PlanError::PortInUse {
                port: 5000,
                protocol: "udp"
            })
        );
    }

    #[test]
    fn fixed_ports_conflict_between_tasks_until_released() {
        let mut a = Allocator::new(&cfg(), &[]);
        let web = |id: &str| one(id, NetworkMode::Bridge, vec![port(80, Some(8080))]);
        let n1 = a.allocate(&web("t1")).unwrap().unwrap();
        assert_eq!(hosts(&n1), [8080]);
        assert_eq!(
            a.allocate(&web("t2")),
            Err(PlanError::PortInUse {
                port: 8080,
                protocol: "tcp"
            })
        );
        // The same number on udp is another port; host mode competes for the same ports.
        a.allocate(&one(
            "t3",
            NetworkMode::Bridge,
            vec![udp(port(80, Some(8080)))],
        ))
        .unwrap();
        assert_eq!(
            a.allocate(&one("t4", NetworkMode::Host, vec![port(8080, None)])),
            Err(PlanError::PortInUse {
                port: 8080,
                protocol: "tcp"
            })
        );
        a.release(&n1);
        assert!(!a.is_leased(n1.address.unwrap()));
        assert_eq!(hosts(&a.allocate(&web("t2")).unwrap().unwrap()), [8080]);
    }

    #[test]
    fn reserved_ports_are_refused_and_skipped() {
        let mut a = Allocator::new(&cfg(), &[]);
        assert_eq!(
            a.allocate(&one("t", NetworkMode::Host, vec![port(22, None)])),
            Err(PlanError::PortReserved {
                port: 22,
                protocol: "tcp"
            })
        );
        assert_eq!(
            a.allocate(&one(
                "t",
                NetworkMode::Bridge,
                vec![udp(port(53, Some(53)))]
            )),
            Err(PlanError::PortReserved {
                port: 53,
                protocol: "udp"
            })
        );
        // 22/udp is not reserved.
        a.allocate(&one("t", NetworkMode::Host, vec![udp(port(22, None))]))
            .unwrap();
        // Dynamic ports step over reserved ones.
        let cfg = NetworkConfig {
            dynamic_ports: (51677, 51680),
            ..cfg()
        };
        let mut a = Allocator::new(&cfg, &[]);
        let net = a
            .allocate(&one(
                "t",
                NetworkMode::Bridge,
                vec![port(1, None), port(2, None)],
            ))
            .unwrap()
            .unwrap();
        assert_eq!(hosts(&net), [51677, 51680]);
        // Nor may an awsvpc task name a reserved port? It may: it has its own address.
        let net = a
            .allocate(&one("a", NetworkMode::Awsvpc, vec![port(22, None)]))
            .unwrap()
            .unwrap();
        assert_eq!(hosts(&net), [22]);
    }

    #[test]
    fn dynamic_ports_rotate_exhaust_and_return() {
        let mut a = Allocator::new(&small_cfg(), &[]);
        let n1 = a
            .allocate(&one("t1", NetworkMode::Bridge, vec![port(80, None)]))
            .unwrap()
            .unwrap();
        assert_eq!(hosts(&n1), [50000]);
        a.release(&n1);
        // Not 50000 again at once.
        let n2 = a
            .allocate(&one(
                "t2",
                NetworkMode::Bridge,
                vec![port(80, Some(0)), port(81, None)],
            ))
            .unwrap()
            .unwrap();
        assert_eq!(hosts(&n2), [50001, 50002]);
        let n3 = a
            .allocate(&one(
                "t3",
                NetworkMode::Bridge,
                vec![port(80, None), port(81, None)],
            ))
            .unwrap()
            .unwrap();
        assert_eq!(hosts(&n3), [50003, 50004]);
        let n4 = a
            .allocate(&one("t4", NetworkMode::Bridge, vec![port(80, None)]))
            .unwrap()
            .unwrap();
        assert_eq!(hosts(&n4), [50000]);
        assert_eq!(
            a.allocate(&one("t5", NetworkMode::Bridge, vec![port(80, None)])),
            Err(PlanError::PortsExhausted {
                first: 50000,
                last: 50004,
                protocol: "tcp"
            })
        );
        // udp has its own ports.
        let n5 = a
            .allocate(&one("t5", NetworkMode::Bridge, vec![udp(port(80, None))]))
            .unwrap()
            .unwrap();
        assert_eq!(hosts(&n5), [50000]);
        a.release(&n3);
        let n6 = a
            .allocate(&one("t6", NetworkMode::Bridge, vec![port(80, None)]))
            .unwrap()
            .unwrap();
        assert_eq!(hosts(&n6), [50003]);
    }

    #[test]
    fn a_fixed_port_in_the_dynamic_range_is_not_picked_twice() {
        let mut a = Allocator::new(&small_cfg(), &[]);
        let net = a
            .allocate(&one(
                "t",
                NetworkMode::Bridge,
                vec![port(80, None), port(81, Some(50000))],
            ))
            .unwrap()
            .unwrap();
        assert_eq!(hosts(&net), [50001, 50000]);
        assert_eq!(
            a.allocate(&one("u", NetworkMode::Bridge, vec![port(80, Some(50001))])),
            Err(PlanError::PortInUse {
                port: 50001,
                protocol: "tcp"
            })
        );
    }

    #[test]
    fn container_port_ranges() {
        let cfg = NetworkConfig {
            dynamic_ports: (50000, 50009),
            ..small_cfg()
        };
        let mut a = Allocator::new(&cfg, &[]);
        // 50002 is held by another task, so a run of four starts after it.
        a.allocate(&one("x", NetworkMode::Bridge, vec![port(1, Some(50002))]))
            .unwrap();
        let net = a
            .allocate(&one("t", NetworkMode::Bridge, vec![range(7000, 7003)]))
            .unwrap()
            .unwrap();
        assert_eq!(hosts(&net), [50003, 50004, 50005, 50006]);
        let cports: Vec<u16> = net.bindings.iter().map(|b| b.container_port).collect();
        assert_eq!(cports, [7000, 7001, 7002, 7003]);
        // Three left after the cursor (50007-50009), none contiguous before: 50000-50001.
        let net = a
            .allocate(&one("u", NetworkMode::Bridge, vec![range(1, 3)]))
            .unwrap()
            .unwrap();
        assert_eq!(hosts(&net), [50007, 50008, 50009]);
        let net = a
            .allocate(&one("v", NetworkMode::Bridge, vec![range(1, 2)]))
            .unwrap()
            .unwrap();
        assert_eq!(hosts(&net), [50000, 50001]);
        assert!(matches!(
            a.allocate(&one("w", NetworkMode::Bridge, vec![range(1, 1)])),
            Err(PlanError::PortsExhausted { .. })
        ));

        // Host mode: each port of the range on the host.
        let mut a = Allocator::new(&cfg, &[]);
        let net = a
            .allocate(&one("h", NetworkMode::Host, vec![range(8000, 8002)]))
            .unwrap()
            .unwrap();
        assert_eq!(hosts(&net), [8000, 8001, 8002]);
        assert_eq!(
            a.allocate(&one("i", NetworkMode::Host, vec![port(8001, Some(8001))])),
            Err(PlanError::PortInUse {
                port: 8001,
                protocol: "tcp"
            })
        );

        // Not a range, or a range with a hostPort.
        let bad = PortMapping {
            host_port: Some(9000),
            ..range(1, 2)
        };
        for m in [range(5, 4), range(0, 3), bad] {
            assert!(matches!(
                a.allocate(&one("j", NetworkMode::Bridge, vec![m])),
                Err(PlanError::Invalid(_))
            ));
        }
    }

    #[test]
    fn host_mode_binds_container_ports() {
        let mut a = Allocator::new(&cfg(), &[]);
        let net = a
            .allocate(&task(
                "h",
                NetworkMode::Host,
                vec![
                    container("a", vec![port(80, None), port(443, Some(443))]),
                    container("b", vec![udp(port(80, Some(0)))]),
                ],
            ))
            .unwrap()
            .unwrap();
        assert_eq!(net.netns, None);
        assert_eq!(net.host_veth, None);
        assert_eq!(net.address, None);
        assert_eq!(net.gateway, None);
        assert_eq!(net.mac, None);
        assert_eq!(hosts(&net), [80, 443, 80]);
        assert_eq!(net.bindings[2].container, "b");
        assert_eq!(net.bindings[2].protocol, Protocol::Udp);
        let err = a
            .allocate(&one("h2", NetworkMode::Host, vec![port(80, Some(8080))]))
            .unwrap_err();
        let PlanError::Invalid(msg) = err else {
            panic!("{err:?}")
        };
        assert!(
            msg.contains("hostPort 8080") && msg.contains("host network mode"),
            "{msg}"
        );
        a.release(&net);
        assert!(!a.is_port_in_use(Protocol::Tcp, 80));
    }

    #[test]
    fn awsvpc_gets_a_host_route_address_and_records_ports() {
        let mut a = Allocator::new(&small_cfg(), &[]);
        let mut spec = one(
            "a1",
            NetworkMode::Awsvpc,
            vec![port(80, None), port(22, Some(22))],
        );
        let rules = vec![IngressRule {
            protocol: IngressProtocol::Tcp,
            from_port: 80,
            to_port: 80,
            source: cidr("0.0.0.0/0"),
        }];
        spec.ingress = Some(rules.clone());
        let net = a.allocate(&spec).unwrap().unwrap();
        assert_eq!(net.address, Some(ip("10.0.1.2")));
        assert_eq!(net.prefix_len, 32);
        assert_eq!(net.gateway, Some(ip("10.0.1.1")));
        assert_eq!(net.netns.as_deref(), Some("bth-a1"));
        assert!(net.host_veth.is_some() && net.mac.is_some());
        assert_eq!(hosts(&net), [80, 22]);
        assert_eq!(net.ingress, Some(rules));
        assert!(!a.is_port_in_use(Protocol::Tcp, 80));
        // A second awsvpc task may use the same ports, but the /30 has one address only.
        assert_eq!(
            a.allocate(&one("a2", NetworkMode::Awsvpc, vec![port(80, None)])),
            Err(PlanError::AddressesExhausted("10.0.1.0/30".into()))
        );
        // Host and bridge tasks are not affected by awsvpc ports.
        a.allocate(&one("h", NetworkMode::Host, vec![port(80, None)]))
            .unwrap();
        a.release(&net);
        assert!(
            a.is_port_in_use(Protocol::Tcp, 80),
            "awsvpc release freed a host port"
        );
        let net = a
            .allocate(&one("a3", NetworkMode::Awsvpc, vec![]))
            .unwrap()
            .unwrap();
        assert_eq!(net.address, Some(ip("10.0.1.2")));
        assert!(matches!(
            a.allocate(&one("a4", NetworkMode::Awsvpc, vec![port(80, Some(81))])),
            Err(PlanError::Invalid(_))
        ));
    }

    #[test]
    fn a_container_port_mapped_twice_in_a_task_is_refused() {
        let mut a = Allocator::new(&cfg(), &[]);
        for mode in [NetworkMode::Bridge, NetworkMode::Awsvpc, NetworkMode::Host] {
            let err = a
                .allocate(&task(
                    "t",
                    mode,
                    vec![
                        container("a", vec![port(80, None)]),
                        container("b", vec![range(79, 81)]),
                    ],
                ))
                .unwrap_err();
            let PlanError::Invalid(msg) = err else {
                panic!("{err:?}")
            };
            assert!(msg.contains("80/tcp") && msg.contains("\"a\""), "{msg}");
        }
        // Twice the same host port, on different container ports.
        assert!(matches!(
            a.allocate(&one(
                "t",
                NetworkMode::Bridge,
                vec![port(80, Some(8080)), port(81, Some(8080))]
            )),
            Err(PlanError::Invalid(_))
        ));
        // The same container port on tcp and udp is fine.
        a.allocate(&one(
            "t",
            NetworkMode::Bridge,
            vec![port(53, None), udp(port(53, None))],
        ))
        .unwrap();
        // A mapping must name a port.
        let empty = PortMapping {
            container_port: None,
            ..port(1, None)
        };
        assert!(matches!(
            a.allocate(&one("u", NetworkMode::Bridge, vec![empty])),
            Err(PlanError::Invalid(_))
        ));
    }
}
