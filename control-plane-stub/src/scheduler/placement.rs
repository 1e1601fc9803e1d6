//! Where a task runs. Pure: the caller gathers the candidates and records the outcome.
//!
//! Strategy: spread by memory, i.e. the instance with the most remaining memory wins. A task that
//! fits nowhere fails at once (never queued), with the reason ECS would give. Host ports are a
//! resource as in ECS (RESOURCE:PORTS): a task's fixed host ports must all be free.

use crate::domain::taskdef::{Needs, PortRange};

#[derive(Debug, Clone, PartialEq)]
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementFailure {
    /// An instance ARN when an instance was considered, otherwise the task-definition ARN.
    pub arn: String,
    pub reason: &'static str,
    pub detail: String,
}

/// Places `count` copies of a task, each seeing the resources taken by the previous ones.
/// Returns, per copy, the chosen instance id or the failure.
/// `ports` are the task's fixed host ports (none for dynamic ports and awsvpc tasks).
pub fn place(
    needs: Needs,
    ports: &[PortRange],
    network_mode: &str,
    count: usize,
    candidates: &[Candidate],
    task_definition_arn: &str,
) -> Vec<Result<String, PlacementFailure>> {
    let mut pool: Vec<Candidate> = candidates.to_vec();
    (0..count)
        .map(|_| {
            let i = choose(needs, ports, network_mode, &pool, task_definition_arn)?;
            pool[i].used.cpu += needs.cpu;
            pool[i].used.memory += needs.memory;
            pool[i].used_ports.extend_from_slice(ports);
            Ok(pool[i].instance_id.clone())
        })
        .collect()
}

/// The candidate with the most remaining memory; the first one on a tie, so placement is stable.
fn roomiest<'a>(cands: &[(usize, &'a Candidate)]) -> Option<(usize, &'a Candidate)> {
    cands
        .iter()
        .copied()
        .max_by_key(|(i, c)| (c.remaining().memory, std::cmp::Reverse(*i)))
}

fn choose(
    needs: Needs,
    ports: &[PortRange],
    network_mode: &str,
    pool: &[Candidate],
    task_definition_arn: &str,
) -> Result<usize, PlacementFailure> {
    let live: Vec<(usize, &Candidate)> = pool
        .iter()
        .enumerate()
        .filter(|(_, c)| c.active && c.connected)
        .collect();
    if live.is_empty() {
        return Err(PlacementFailure {
            arn: task_definition_arn.to_string(),
            reason: "AGENT",
            detail: "no container instance with a connected agent in the cluster".to_string(),
        });
    }
    let supporting: Vec<(usize, &Candidate)> = live
        .iter()
        .copied()
        .filter(|(_, c)| c.network_modes.iter().any(|m| m == network_mode))
        .collect();
    if supporting.is_empty() {
        return Err(PlacementFailure {
            arn: live[0].1.instance_arn.clone(),
            reason: "ATTRIBUTE",
            detail: format!(
                "network mode {network_mode} is not supported by any connected instance \
                 (attribute {})",
                crate::domain::instance::NETWORK_MODES_ATTRIBUTE
            ),
        });
    }
    let with_memory: Vec<(usize, &Candidate)> = supporting
        .iter()
        .copied()
        .filter(|(_, c)| c.remaining().memory >= needs.memory)
        .collect();
    if with_memory.is_empty() {
        let (_, best) = roomiest(&supporting).expect("supporting is not empty");
        return Err(PlacementFailure {
            arn: best.instance_arn.clone(),
            reason: "RESOURCE:MEMORY",
            detail: format!(
                "task needs {} MiB, at most {} MiB remaining",
                needs.memory,
                best.remaining().memory
            ),
        });
    }
    let fitting: Vec<(usize, &Candidate)> = with_memory
        .iter()
        .copied()
        .filter(|(_, c)| c.remaining().cpu >= needs.cpu)
        .collect();
    let Some((_, best)) = roomiest(&fitting) else {
        let best = with_memory
            .iter()
            .map(|(_, c)| c)
            .max_by_key(|c| c.remaining().cpu)
            .expect("with_memory is not empty");
        return Err(PlacementFailure {
            arn: best.instance_arn.clone(),
            reason: "RESOURCE:CPU",
            detail: format!(
                "task needs {} CPU units, at most {} remaining",
                needs.cpu,
                best.remaining().cpu
            ),
        });
    };
    let free: Vec<(usize, &Candidate)> = fitting
        .iter()
        .copied()
        .filter(|(_, c)| c.port_conflict(ports).is_none())
        .collect();
    if let Some((i, _)) = roomiest(&free) {
        return Ok(i);
    }
    let (wanted, held) = best
        .port_conflict(ports)
        .expect("no fitting candidate has the ports free");
    let detail = if wanted == held {
        format!("host port {wanted} is already in use")
    } else {
        format!("host ports {wanted} overlap {held}, already in use")
    };
    Err(PlacementFailure {
        arn: best.instance_arn.clone(),
        reason: "RESOURCE:PORTS",
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        }
    }

    const NEEDS: Needs = Needs {
        cpu: 256,
        memory: 512,
    };

    #[test]
    fn spreads_by_remaining_memory() {
        let c = [cand("a", 2048, 1024), cand("b", 2048, 0)];
        let r = place(NEEDS, &[], "bridge", 3, &c, "td");
        let ids: Vec<_> = r.into_iter().map(Result::unwrap).collect();
        assert_eq!(ids, vec!["b", "b", "a"]);
    }

    #[test]
    fn no_connected_agent() {
        let mut c = cand("a", 2048, 0);
        c.connected = false;
        let r = place(NEEDS, &[], "bridge", 1, &[c], "td-arn");
        let f = r[0].clone().unwrap_err();
        assert_eq!((f.reason, f.arn.as_str()), ("AGENT", "td-arn"));
        assert_eq!(
            place(NEEDS, &[], "bridge", 1, &[], "td")[0]
                .as_ref()
                .unwrap_err()
                .reason,
            "AGENT"
        );
    }

    #[test]
    fn network_mode_must_be_supported() {
        let f = place(NEEDS, &[], "awsvpc", 1, &[cand("a", 2048, 0)], "td")[0]
            .clone()
            .unwrap_err();
        assert_eq!(f.reason, "ATTRIBUTE");
        assert!(f.detail.contains("awsvpc"));
        let mut silent = cand("a", 2048, 0);
        silent.network_modes.clear();
        assert_eq!(
            place(NEEDS, &[], "bridge", 1, &[silent], "td")[0]
                .as_ref()
                .unwrap_err()
                .reason,
            "ATTRIBUTE"
        );
    }

    #[test]
    fn memory_then_cpu() {
        let r = place(NEEDS, &[], "bridge", 2, &[cand("a", 1000, 0)], "td");
        assert!(r[0].is_ok());
        assert_eq!(r[1].as_ref().unwrap_err().reason, "RESOURCE:MEMORY");
        let big_cpu = Needs {
            cpu: 4096,
            memory: 1,
        };
        assert_eq!(
            place(big_cpu, &[], "bridge", 1, &[cand("a", 1000, 0)], "td")[0]
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
            place(NEEDS, &[], "bridge", 1, &[c.clone()], "td")[0].as_deref(),
            Ok("a")
        );
        // A second copy finds nothing left.
        let r = place(NEEDS, &[], "bridge", 2, &[c], "td");
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
        let f = place(more_memory, &[], "bridge", 1, &[c.clone()], "td")[0]
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
        let f = place(more_cpu, &[], "bridge", 1, &[c], "td")[0]
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
        let r = place(NEEDS, &[], "bridge", 1, &[a, cand("b", 1024, 0)], "td");
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
        let r = place(NEEDS, &[tcp(80)], "bridge", 2, &[a.clone(), b], "td");
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
            place(NEEDS, &[udp], "bridge", 1, &[a.clone()], "td")[0].as_deref(),
            Ok("a")
        );
        assert_eq!(
            place(NEEDS, &[tcp(81)], "bridge", 1, &[a], "td")[0].as_deref(),
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
        let f = place(NEEDS, &[range], "host", 1, &[a], "td")[0]
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
        let f = place(NEEDS, &[tcp(80)], "bridge", 1, &[a], "td")[0]
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
            let r = place(NEEDS, &[], mode, 1, &[a.clone(), b.clone()], "td");
            assert_eq!(r[0].as_deref(), Ok("b"), "{mode}");
        }
    }
}
