//! Where a task runs. Pure: the caller gathers the candidates and records the outcome.
//!
//! As ECS: first the instances that can take the task (a connected agent, the network mode,
//! memory, CPU, free host ports), then the constraints (distinctInstance, memberOf), then the
//! strategies in order, each one ranking what the previous ones left tied (spread, binpack,
//! random); what is still tied after the last is broken at random. A task that fits nowhere
//! fails at once (never queued), with the reason ECS would give. Each copy of a batch sees what
//! the previous copies took.

use std::collections::HashMap;

use crate::domain::placement::{Constraint, Placement, Resource, SpreadOn, Strategy};
use crate::domain::query::Facts;
use crate::domain::taskdef::{first_missing, Needs, PortRange};

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Candidate {
    pub instance_id: String,
    pub instance_arn: String,
    pub connected: bool,
    pub active: bool,
    pub network_modes: Vec<String>,
    pub registered: Needs,
    /// Sum of the needs of this instance's tasks that are not STOPPED.
    pub used: Needs,
    /// Host ports in use: the instance's reserved ports and its tasks' fixed host ports.
    pub used_ports: Vec<PortRange>,
    /// The instance's attributes, by name (what its agent registered and what PutAttributes
    /// added).
    pub attributes: Vec<(String, String)>,
    pub agent_version: String,
    pub registered_at_ms: i64,
    /// How many of its tasks (not STOPPED) are in each task group.
    pub groups: HashMap<String, u64>,
    /// Its tasks that are not STOPPED.
    pub running_tasks: u64,
}

impl Candidate {
    fn remaining(&self) -> Needs {
        Needs {
            cpu: self.registered.cpu - self.used.cpu,
            memory: self.registered.memory - self.used.memory,
        }
    }

    /// The first of `ports` already in use here, with what holds it.
    fn port_conflict(&self, ports: &[PortRange]) -> Option<(PortRange, PortRange)> {
        ports.iter().find_map(|p| {
            self.used_ports
                .iter()
                .find(|u| u.overlaps(p))
                .map(|u| (*p, *u))
        })
    }

    fn in_group(&self, group: &str) -> u64 {
        self.groups.get(group).copied().unwrap_or(0)
    }

    fn attribute_value(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Facts for Candidate {
    fn agent_connected(&self) -> bool {
        self.connected
    }
    fn agent_version(&self) -> Option<&str> {
        Some(self.agent_version.as_str()).filter(|v| !v.is_empty())
    }
    fn attribute(&self, name: &str) -> Option<&str> {
        self.attribute_value(name)
    }
    /// Berth's instances are external (on-premises): none has an EC2 instance id.
    fn ec2_instance_id(&self) -> Option<&str> {
        None
    }
    fn registered_at_ms(&self) -> i64 {
        self.registered_at_ms
    }
    fn running_tasks_count(&self) -> u64 {
        self.running_tasks
    }
    fn any_task_group(&self, pred: &mut dyn FnMut(&str) -> bool) -> bool {
        self.groups.iter().any(|(g, n)| *n > 0 && pred(g))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementFailure {
    /// An instance ARN when an instance was considered, otherwise the task-definition ARN.
    pub arn: String,
    pub reason: &'static str,
    pub detail: String,
}

pub const DISTINCT_INSTANCE_UNSATISFIED: &str = "DistinctInstance placement constraint unsatisfied";
pub const MEMBER_OF_UNSATISFIED: &str = "MemberOf placement constraint unsatisfied";

/// One placement request: `count` copies of a task.
pub struct Request<'a> {
    pub needs: Needs,
    /// The task's fixed host ports (none for dynamic ports and awsvpc tasks).
    pub ports: &'a [PortRange],
    pub network_mode: &'a str,
    /// The task definition's requiresAttributes: an instance lacking one cannot run it.
    pub required_attributes: &'a [&'a str],
    pub count: usize,
    /// The task group (`service:NAME`, `family:NAME` or RunTask's group): what spread and
    /// distinctInstance count.
    pub group: &'a str,
    pub task_definition_arn: &'a str,
    pub placement: &'a Placement,
    /// Seeds `random` and the final tie-break; the same seed gives the same placement.
    pub seed: u64,
}

/// Places the copies of a request, each seeing the resources taken by the previous ones.
/// Returns, per copy, the chosen instance id or the failure.
pub fn place(req: &Request<'_>, candidates: &[Candidate]) -> Vec<Result<String, PlacementFailure>> {
    let mut pool: Vec<Candidate> = candidates.to_vec();
    // spread(attribute) counts the group's tasks per value over the whole cluster, not only
    // over the instances that could take this task.
    let mut per_value: Vec<HashMap<Option<String>, u64>> = req
        .placement
        .strategies
        .iter()
        .map(|s| match s {
            Strategy::Spread(SpreadOn::Attribute(a)) => {
                let mut m = HashMap::new();
                for c in &pool {
                    *m.entry(c.attribute_value(a).map(str::to_string))
                        .or_default() += c.in_group(req.group);
                }
                m
            }
            _ => HashMap::new(),
        })
        .collect();
    (0..req.count)
        .map(|copy| {
            let i = choose(req, &pool, &per_value, copy as u64)?;
            for (s, m) in req.placement.strategies.iter().zip(per_value.iter_mut()) {
                if let Strategy::Spread(SpreadOn::Attribute(a)) = s {
                    *m.entry(pool[i].attribute_value(a).map(str::to_string))
                        .or_default() += 1;
                }
            }
            let c = &mut pool[i];
            c.used.cpu += req.needs.cpu;
            c.used.memory += req.needs.memory;
            c.used_ports.extend_from_slice(req.ports);
            *c.groups.entry(req.group.to_string()).or_default() += 1;
            c.running_tasks += 1;
            Ok(c.instance_id.clone())
        })
        .collect()
}

/// A deterministic 64-bit mix (splitmix64), for random choices reproducible from a seed.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn shuffle_key(seed: u64, copy: u64, instance_id: &str) -> u64 {
    let id = instance_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    mix(seed ^ mix(copy) ^ id)
}

/// The candidate with the most remaining memory; the first one on a tie.
fn roomiest<'a>(pool: &'a [Candidate], cands: &[usize]) -> &'a Candidate {
    let i = cands
        .iter()
        .copied()
        .max_by_key(|i| (pool[*i].remaining().memory, std::cmp::Reverse(*i)))
        .expect("not empty");
    &pool[i]
}

fn choose(
    req: &Request<'_>,
    pool: &[Candidate],
    per_value: &[HashMap<Option<String>, u64>],
    copy: u64,
) -> Result<usize, PlacementFailure> {
    let needs = req.needs;
    let fail = |arn: &str, reason: &'static str, detail: String| PlacementFailure {
        arn: arn.to_string(),
        reason,
        detail,
    };
    let live: Vec<usize> = (0..pool.len())
        .filter(|i| pool[*i].active && pool[*i].connected)
        .collect();
    if live.is_empty() {
        return Err(fail(
            req.task_definition_arn,
            "AGENT",
            "no container instance with a connected agent in the cluster".to_string(),
        ));
    }
    let supporting: Vec<usize> = live
        .iter()
        .copied()
        .filter(|i| pool[*i].network_modes.iter().any(|m| m == req.network_mode))
        .collect();
    if supporting.is_empty() {
        return Err(fail(
            &pool[live[0]].instance_arn,
            "ATTRIBUTE",
            format!(
                "network mode {} is not supported by any connected instance (attribute {})",
                req.network_mode,
                crate::domain::instance::NETWORK_MODES_ATTRIBUTE
            ),
        ));
    }
    let capable: Vec<usize> = supporting
        .iter()
        .copied()
        .filter(|i| first_missing(req.required_attributes, &pool[*i].attributes).is_none())
        .collect();
    if capable.is_empty() {
        let first = &pool[supporting[0]];
        let missing = first_missing(req.required_attributes, &first.attributes).unwrap_or("");
        return Err(fail(
            &first.instance_arn,
            "ATTRIBUTE",
            format!(
                "the task definition requires attribute {missing}, which no connected instance that runs network mode {} has",
                req.network_mode
            ),
        ));
    }
    let supporting = capable;
    let with_memory: Vec<usize> = supporting
        .iter()
        .copied()
        .filter(|i| pool[*i].remaining().memory >= needs.memory)
        .collect();
    if with_memory.is_empty() {
        let best = roomiest(pool, &supporting);
        return Err(fail(
            &best.instance_arn,
            "RESOURCE:MEMORY",
            format!(
                "task needs {} MiB, at most {} MiB remaining",
                needs.memory,
                best.remaining().memory
            ),
        ));
    }
    let fitting: Vec<usize> = with_memory
        .iter()
        .copied()
        .filter(|i| pool[*i].remaining().cpu >= needs.cpu)
        .collect();
    if fitting.is_empty() {
        let best = with_memory
            .iter()
            .map(|i| &pool[*i])
            .max_by_key(|c| c.remaining().cpu)
            .expect("with_memory is not empty");
        return Err(fail(
            &best.instance_arn,
            "RESOURCE:CPU",
            format!(
                "task needs {} CPU units, at most {} remaining",
                needs.cpu,
                best.remaining().cpu
            ),
        ));
    }
    let mut eligible: Vec<usize> = fitting
        .iter()
        .copied()
        .filter(|i| pool[*i].port_conflict(req.ports).is_none())
        .collect();
    if eligible.is_empty() {
        let best = roomiest(pool, &fitting);
        let (wanted, held) = best
            .port_conflict(req.ports)
            .expect("no fitting candidate has the ports free");
        let detail = if wanted == held {
            format!("host port {wanted} is already in use")
        } else {
            format!("host ports {wanted} overlap {held}, already in use")
        };
        return Err(fail(&best.instance_arn, "RESOURCE:PORTS", detail));
    }
    for constraint in &req.placement.constraints {
        let before = pool[eligible[0]].instance_arn.clone();
        let (reason, detail) = match constraint {
            Constraint::DistinctInstance => {
                eligible.retain(|i| pool[*i].in_group(req.group) == 0);
                (
                    DISTINCT_INSTANCE_UNSATISFIED,
                    format!(
                        "every eligible instance already runs a task of {}",
                        req.group
                    ),
                )
            }
            Constraint::MemberOf(expr) => {
                eligible.retain(|i| expr.matches(&pool[*i]));
                (
                    MEMBER_OF_UNSATISFIED,
                    format!("no eligible instance matches {expr}"),
                )
            }
        };
        if eligible.is_empty() {
            return Err(fail(&before, reason, detail));
        }
    }
    let key = |i: usize| -> Vec<i64> {
        let c = &pool[i];
        let mut k: Vec<i64> = req
            .placement
            .strategies
            .iter()
            .zip(per_value)
            .map(|(s, values)| match s {
                Strategy::Spread(SpreadOn::Instance) => c.in_group(req.group) as i64,
                Strategy::Spread(SpreadOn::Attribute(a)) => values
                    .get(&c.attribute_value(a).map(str::to_string))
                    .copied()
                    .unwrap_or(0)
                    as i64,
                Strategy::Binpack(Resource::Memory) => c.remaining().memory,
                Strategy::Binpack(Resource::Cpu) => c.remaining().cpu,
                Strategy::Random => (shuffle_key(req.seed, copy, &c.instance_id) >> 1) as i64,
            })
            .collect();
        k.push((shuffle_key(!req.seed, copy, &c.instance_id) >> 1) as i64);
        k
    };
    Ok(eligible
        .into_iter()
        .min_by_key(|i| key(*i))
        .expect("eligible is not empty"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Places with RunTask's default (random), seed 7.
    fn place_n(
        needs: Needs,
        ports: &[PortRange],
        mode: &str,
        count: usize,
        cands: &[Candidate],
        td: &str,
    ) -> Vec<Result<String, PlacementFailure>> {
        let placement = Placement::new(&[], &[], &[], false).unwrap();
        let req = Request {
            needs,
            ports,
            network_mode: mode,
            required_attributes: &[],
            count,
            group: "family:web",
            task_definition_arn: td,
            placement: &placement,
            seed: 7,
        };
        place(&req, cands)
    }

    fn cand(id: &str, memory: i64, used_memory: i64) -> Candidate {
        Candidate {
            instance_id: id.into(),
            instance_arn: format!("arn:{id}"),
            connected: true,
            active: true,
            network_modes: vec!["bridge".into(), "host".into()],
            registered: Needs { cpu: 2048, memory },
            used: Needs {
                cpu: 0,
                memory: used_memory,
            },
            used_ports: Vec::new(),
            ..Default::default()
        }
    }

    const NEEDS: Needs = Needs {
        cpu: 256,
        memory: 512,
    };

    #[test]
    fn no_connected_agent() {
        let mut c = cand("a", 2048, 0);
        c.connected = false;
        let r = place_n(NEEDS, &[], "bridge", 1, &[c], "td-arn");
        let f = r[0].clone().unwrap_err();
        assert_eq!((f.reason, f.arn.as_str()), ("AGENT", "td-arn"));
        assert_eq!(
            place_n(NEEDS, &[], "bridge", 1, &[], "td")[0]
                .as_ref()
                .unwrap_err()
                .reason,
            "AGENT"
        );
    }

    #[test]
    fn network_mode_must_be_supported() {
        let f = place_n(NEEDS, &[], "awsvpc", 1, &[cand("a", 2048, 0)], "td")[0]
            .clone()
            .unwrap_err();
        assert_eq!(f.reason, "ATTRIBUTE");
        assert!(f.detail.contains("awsvpc"));
        let mut silent = cand("a", 2048, 0);
        silent.network_modes.clear();
        assert_eq!(
            place_n(NEEDS, &[], "bridge", 1, &[silent], "td")[0]
                .as_ref()
                .unwrap_err()
                .reason,
            "ATTRIBUTE"
        );
    }

    #[test]
    fn only_instances_with_every_required_attribute_take_the_task() {
        let placement = Placement::new(&[], &[], &[], false).unwrap();
        let required = ["ecs.capability.container-health-check"];
        let req = Request {
            needs: NEEDS,
            ports: &[],
            network_mode: "bridge",
            required_attributes: &required,
            count: 2,
            group: "family:web",
            task_definition_arn: "td",
            placement: &placement,
            seed: 7,
        };
        let old = cand("old", 8192, 0);
        let mut new = cand("new", 8192, 0);
        new.attributes.push((
            "ecs.capability.container-health-check".into(),
            String::new(),
        ));
        let placed = place(&req, &[old.clone(), new]);
        assert_eq!(placed, vec![Ok("new".to_string()), Ok("new".to_string())]);
        let f = place(&req, &[old])[0].clone().unwrap_err();
        assert_eq!((f.reason, f.arn.as_str()), ("ATTRIBUTE", "arn:old"));
        assert!(f.detail.contains("container-health-check"), "{}", f.detail);
    }

    #[test]
    fn memory_then_cpu() {
        let r = place_n(NEEDS, &[], "bridge", 2, &[cand("a", 1000, 0)], "td");
        assert!(r[0].is_ok());
        assert_eq!(r[1].as_ref().unwrap_err().reason, "RESOURCE:MEMORY");
        let big_cpu = Needs {
            cpu: 4096,
            memory: 1,
        };
        assert_eq!(
            place_n(big_cpu, &[], "bridge", 1, &[cand("a", 1000, 0)], "td")[0]
                .as_ref()
                .unwrap_err()
                .reason,
            "RESOURCE:CPU"
        );
    }

    #[test]
    fn a_task_that_exactly_fits_is_placed() {
        let mut c = cand("a", 1024, 512);
        c.used.cpu = 1792;
        // 512 MiB and 256 CPU units remain: exactly NEEDS.
        assert_eq!(
            place_n(NEEDS, &[], "bridge", 1, &[c.clone()], "td")[0].as_deref(),
            Ok("a")
        );
        // A second copy finds nothing left.
        let r = place_n(NEEDS, &[], "bridge", 2, &[c], "td");
        let f = r[1].as_ref().unwrap_err();
        assert_eq!(f.reason, "RESOURCE:MEMORY");
        assert_eq!(f.detail, "task needs 512 MiB, at most 0 MiB remaining");
    }

    #[test]
    fn one_unit_too_many_does_not_fit() {
        let mut c = cand("a", 1024, 512);
        c.used.cpu = 1792;
        let more_memory = Needs {
            cpu: 256,
            memory: 513,
        };
        let f = place_n(more_memory, &[], "bridge", 1, &[c.clone()], "td")[0]
            .clone()
            .unwrap_err();
        assert_eq!(
            (f.reason, f.detail.as_str()),
            (
                "RESOURCE:MEMORY",
                "task needs 513 MiB, at most 512 MiB remaining"
            )
        );
        let more_cpu = Needs {
            cpu: 257,
            memory: 512,
        };
        let f = place_n(more_cpu, &[], "bridge", 1, &[c], "td")[0]
            .clone()
            .unwrap_err();
        assert_eq!(
            (f.reason, f.detail.as_str()),
            (
                "RESOURCE:CPU",
                "task needs 257 CPU units, at most 256 remaining"
            )
        );
    }

    #[test]
    fn inactive_instances_are_skipped() {
        let mut a = cand("a", 8192, 0);
        a.active = false;
        let r = place_n(NEEDS, &[], "bridge", 1, &[a, cand("b", 1024, 0)], "td");
        assert_eq!(r[0].as_deref(), Ok("b"));
    }

    fn tcp(port: u16) -> PortRange {
        PortRange::single(crate::domain::taskdef::Protocol::Tcp, port)
    }

    #[test]
    fn a_fixed_host_port_in_use_goes_elsewhere_or_fails() {
        let mut a = cand("a", 8192, 0);
        a.used_ports = vec![tcp(80)];
        let b = cand("b", 1024, 0);
        // a has more memory, but port 80 is taken there.
        let r = place_n(NEEDS, &[tcp(80)], "bridge", 2, &[a.clone(), b], "td");
        assert_eq!(r[0].as_deref(), Ok("b"));
        let f = r[1].as_ref().unwrap_err();
        assert_eq!(
            (f.arn.as_str(), f.reason, f.detail.as_str()),
            (
                "arn:a",
                "RESOURCE:PORTS",
                "host port 80/tcp is already in use"
            )
        );
        // Another protocol, or another port, is free.
        let udp = PortRange::single(crate::domain::taskdef::Protocol::Udp, 80);
        assert_eq!(
            place_n(NEEDS, &[udp], "bridge", 1, &[a.clone()], "td")[0].as_deref(),
            Ok("a")
        );
        assert_eq!(
            place_n(NEEDS, &[tcp(81)], "bridge", 1, &[a], "td")[0].as_deref(),
            Ok("a")
        );
    }

    #[test]
    fn port_ranges_conflict_when_they_overlap() {
        let mut a = cand("a", 8192, 0);
        a.used_ports = vec![tcp(22)];
        let range = PortRange {
            protocol: crate::domain::taskdef::Protocol::Tcp,
            first: 20,
            last: 30,
        };
        let f = place_n(NEEDS, &[range], "host", 1, &[a], "td")[0]
            .clone()
            .unwrap_err();
        assert_eq!(f.reason, "RESOURCE:PORTS");
        assert_eq!(
            f.detail,
            "host ports 20-30/tcp overlap 22/tcp, already in use"
        );
    }

    #[test]
    fn memory_and_cpu_are_reported_before_ports() {
        let mut a = cand("a", 100, 0);
        a.used_ports = vec![tcp(80)];
        let f = place_n(NEEDS, &[tcp(80)], "bridge", 1, &[a], "td")[0]
            .clone()
            .unwrap_err();
        assert_eq!(f.reason, "RESOURCE:MEMORY");
    }

    #[test]
    fn bridge_and_awsvpc_go_where_they_are_advertised() {
        let mut a = cand("a", 2048, 0);
        a.network_modes = vec!["host".into()];
        let mut b = cand("b", 1024, 0);
        b.network_modes = vec![
            "bridge".into(),
            "host".into(),
            "none".into(),
            "awsvpc".into(),
        ];
        for mode in ["bridge", "awsvpc"] {
            let r = place_n(NEEDS, &[], mode, 1, &[a.clone(), b.clone()], "td");
            assert_eq!(r[0].as_deref(), Ok("b"), "{mode}");
        }
    }
}

#[cfg(test)]
mod strategy_tests;
