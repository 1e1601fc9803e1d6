//! cpu and memory: the rules ECS applies at registration and to a task with its overrides.

use super::*;

/// The resource rules ECS applies at registration, and again to a task's definition with its
/// RunTask overrides applied. `field(Some(i), key)` names container `i`'s field `key`,
/// `field(None, key)` the task-level one. ECS answers all of these with a ClientException.
pub(super) fn check_resources(
    p: &mut Problems,
    task_cpu: Option<i64>,
    task_memory: Option<i64>,
    containers: &[ContainerDef],
    field: &dyn Fn(Option<usize>, &str) -> String,
) {
    if let Some(cpu) = task_cpu {
        if !TASK_CPU_UNITS.contains(&cpu) {
            p.client(
                &field(None, "cpu"),
                format!(
                    "{cpu} CPU units is outside the range for EC2 and external instances: \
                     {} (0.125 vCPU) to {} (192 vCPU)",
                    TASK_CPU_UNITS.start(),
                    TASK_CPU_UNITS.end()
                ),
            );
        }
    }
    if let Some(memory) = task_memory {
        if memory < MIN_MEMORY_MIB {
            p.client(
                &field(None, "memory"),
                format!("{memory} MiB is below the minimum of {MIN_MEMORY_MIB} MiB"),
            );
        }
    }
    for (i, c) in containers.iter().enumerate() {
        for (key, value) in [
            ("memory", c.memory),
            ("memoryReservation", c.memory_reservation),
        ] {
            if let Some(v) = value.filter(|v| *v < MIN_MEMORY_MIB) {
                p.client(
                    &field(Some(i), key),
                    format!("{v} MiB is below the minimum of {MIN_MEMORY_MIB} MiB"),
                );
            }
        }
        if let (Some(m), Some(r)) = (c.memory, c.memory_reservation) {
            if r > m {
                p.invalid(
                    &field(Some(i), "memoryReservation"),
                    format!("{r} must not be greater than memory ({m})"),
                );
            }
        }
        if let (Some(m), Some(task)) = (c.memory, task_memory) {
            if m > task {
                p.client(
                    &field(Some(i), "memory"),
                    format!("{m} MiB is more than the task's memory ({task} MiB)"),
                );
            }
        }
    }
    // What the containers reserve together must fit in the task: each container reserves its
    // memoryReservation, else its memory (hard limits may add up to more, as in ECS).
    if let Some(task) = task_memory {
        let reserved: i64 = containers
            .iter()
            .map(|c| c.memory_reservation.or(c.memory).unwrap_or(0))
            .sum();
        if reserved > task {
            p.client(
                &field(None, "memory"),
                format!(
                    "the containers reserve {reserved} MiB together (memoryReservation, else \
                     memory), more than the task's {task} MiB"
                ),
            );
        }
    }
    if let Some(task) = task_cpu {
        let sum: i64 = containers.iter().map(|c| c.cpu.unwrap_or(0)).sum();
        if sum > task {
            p.client(
                &field(None, "cpu"),
                format!("the containers' cpu adds up to {sum} units, more than the task's {task}"),
            );
        }
    }
}

/// Task-level cpu/memory: ECS sends strings; numbers are accepted too since people write them.
pub(super) fn opt_units(
    p: &mut Problems,
    obj: &Map<String, Value>,
    key: &str,
    parse: fn(&str) -> Result<i64, units::UnitError>,
) -> Option<i64> {
    let text = match obj.get(key) {
        None | Some(Value::Null) => return None,
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => {
            p.invalid(key, "must be a string");
            return None;
        }
    };
    match parse(&text) {
        Ok(v) => Some(v),
        Err(e) => {
            p.invalid(key, e);
            None
        }
    }
}
