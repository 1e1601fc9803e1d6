//! What an instance's tasks hold of it, and the placement candidates of a cluster: pure
//! functions of a snapshot (its instances, its tasks not STOPPED, which agents are connected).

use std::collections::{HashMap, HashSet};

use super::placement::Candidate;
use crate::domain::ids::Arns;
use crate::domain::instance::{Instance, InstanceInfo};
use crate::domain::task::Task;
use crate::domain::taskdef::{Needs, PortRange, Protocol};

/// A cluster's state as placement sees it.
pub struct Snapshot<'a> {
    pub instances: Vec<Instance>,
    /// The cluster's tasks whose lastStatus is not STOPPED.
    pub active_tasks: &'a [Task],
    pub connected: &'a HashSet<String>,
}

/// One candidate per instance of the snapshot, with what its tasks hold.
pub fn candidates(snapshot: Snapshot<'_>, arns: &Arns) -> Vec<Candidate> {
    snapshot
        .instances
        .into_iter()
        .map(|i| {
            let mine = || {
                snapshot
                    .active_tasks
                    .iter()
                    .filter(|t| t.instance_id == i.id)
            };
            Candidate {
                instance_arn: arns.container_instance(&i.cluster, &i.id),
                connected: snapshot.connected.contains(&i.id),
                active: i.takes_tasks(),
                network_modes: i.info.network_modes(),
                registered: Needs {
                    cpu: i.info.integer_resource("CPU"),
                    memory: i.info.integer_resource("MEMORY"),
                },
                used: sum_needs(mine()),
                used_ports: used_ports(&i.info, mine()),
                groups: mine().fold(HashMap::new(), |mut m, t| {
                    *m.entry(t.group.clone()).or_default() += 1;
                    m
                }),
                running_tasks: mine().count() as u64,
                agent_version: i.info.agent_version.clone(),
                registered_at_ms: i.registered_at_ms,
                attributes: i.attributes(),
                instance_id: i.id,
            }
        })
        .collect()
}

/// What a set of tasks holds of an instance.
pub fn sum_needs<'a>(tasks: impl Iterator<Item = &'a Task>) -> Needs {
    tasks.fold(Needs::default(), |acc, t| Needs {
        cpu: acc.cpu + t.needs.cpu,
        memory: acc.memory + t.needs.memory,
    })
}

/// The host ports an instance holds: those it registered as reserved (its PORTS and PORTS_UDP
/// resources, as ECS's), and the fixed host ports of `tasks` (its tasks not STOPPED) and the
/// host ports their agent reported bound.
pub fn used_ports<'a>(
    info: &InstanceInfo,
    tasks: impl Iterator<Item = &'a Task>,
) -> Vec<PortRange> {
    let mut out: Vec<PortRange> = Vec::new();
    for (name, protocol) in [("PORTS", Protocol::Tcp), ("PORTS_UDP", Protocol::Udp)] {
        for r in info.resources.iter().filter(|r| r.name == name) {
            out.extend(
                r.string_set_value
                    .iter()
                    .filter_map(|p| p.trim().parse::<u16>().ok())
                    .map(|p| PortRange::single(protocol, p)),
            );
        }
    }
    for t in tasks {
        out.extend(t.host_ports.iter().copied());
        // Dynamic host ports the agent bound (bridge) are taken too, once reported.
        let bound = t.network.iter().filter(|n| n.mode != "awsvpc");
        out.extend(bound.flat_map(|n| &n.bindings).filter_map(|b| {
            let protocol = Protocol::parse(&b.protocol)?;
            let port = u16::try_from(b.host_port).ok().filter(|p| *p != 0)?;
            Some(PortRange::single(protocol, port))
        }));
    }
    out.sort();
    out.dedup();
    out
}
