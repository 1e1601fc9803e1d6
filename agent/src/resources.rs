//! The agent's own accounting of its registered resources: a task that does not fit what is
//! left is refused rather than overcommitted. Pure; the needs are computed as the control plane
//! computes them (`control-plane-stub/src/domain/taskdef/`: task-level values, else the sum over
//! containers of memoryReservation-else-memory and of cpu).

use crate::model::TaskSpec;

/// CPU units and MiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    pub cpu: u64,
    pub memory_mib: u64,
}

pub fn needs(spec: &TaskSpec) -> Needs {
    let memory_mib = if spec.memory_mib > 0 {
        u64::from(spec.memory_mib)
    } else {
        spec.containers
            .iter()
            .map(|c| {
                let m = if c.memory_reservation_mib > 0 {
                    c.memory_reservation_mib
                } else {
                    c.memory_mib
                };
                u64::from(m)
            })
            .sum()
    };
    let cpu = if spec.cpu > 0 {
        u64::from(spec.cpu)
    } else {
        spec.containers.iter().map(|c| u64::from(c.cpu)).sum()
    };
    Needs { cpu, memory_mib }
}

/// Why `task` does not fit beside `used` in `registered`, in ECS's manner
/// ("RESOURCE:MEMORY: ..."); memory is checked first, as placement does.
pub fn refusal(task: Needs, used: Needs, registered: Needs) -> Option<String> {
    let mem_left = registered.memory_mib.saturating_sub(used.memory_mib);
    if task.memory_mib > mem_left {
        return Some(format!(
            "RESOURCE:MEMORY: needs {} MiB, {mem_left} MiB remaining",
            task.memory_mib
        ));
    }
    let cpu_left = registered.cpu.saturating_sub(used.cpu);
    if task.cpu > cpu_left {
        return Some(format!(
            "RESOURCE:CPU: needs {} CPU units, {cpu_left} remaining",
            task.cpu
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContainerSpec, NetworkMode};

    fn c(cpu: u32, memory_mib: u32, memory_reservation_mib: u32) -> ContainerSpec {
        ContainerSpec {
            name: "c".into(),
            image: "i".into(),
            essential: true,
            entry_point: None,
            command: None,
            environment: vec![],
            working_directory: None,
            user: None,
            cpu,
            memory_mib,
            memory_reservation_mib,
            stop_timeout_secs: 1,
            extra: Default::default(),
        }
    }

    fn task(cpu: u32, memory_mib: u32, containers: Vec<ContainerSpec>) -> TaskSpec {
        TaskSpec {
            arn: "arn".into(),
            family: "f".into(),
            revision: 1,
            network_mode: NetworkMode::None,
            cpu,
            memory_mib,
            containers,
            volumes: vec![],
            ingress: None,
        }
    }

    #[test]
    fn needs_follow_the_control_plane() {
        let t = task(0, 0, vec![c(256, 128, 64), c(0, 32, 0)]);
        assert_eq!(
            needs(&t),
            Needs {
                cpu: 256,
                memory_mib: 96
            }
        );
        let t = task(1024, 512, vec![c(256, 128, 64)]);
        assert_eq!(
            needs(&t),
            Needs {
                cpu: 1024,
                memory_mib: 512
            }
        );
    }

    #[test]
    fn refuses_what_does_not_fit() {
        let reg = Needs {
            cpu: 2048,
            memory_mib: 1024,
        };
        let used = Needs {
            cpu: 1024,
            memory_mib: 768,
        };
        let n = |cpu, memory_mib| Needs { cpu, memory_mib };
        assert_eq!(refusal(n(1024, 256), used, reg), None);
        assert_eq!(
            refusal(n(0, 512), used, reg).unwrap(),
            "RESOURCE:MEMORY: needs 512 MiB, 256 MiB remaining"
        );
        assert_eq!(
            refusal(n(1025, 1), used, reg).unwrap(),
            "RESOURCE:CPU: needs 1025 CPU units, 1024 remaining"
        );
    }
}
