//! RunTask overrides: parsed, and applied to a definition.

use super::*;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub containers: Vec<ContainerOverride>,
    pub cpu: Option<i64>,
    pub memory: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerOverride {
    pub name: String,
    pub command: Option<Vec<String>>,
    pub environment: Vec<(String, String)>,
    pub cpu: Option<i64>,
    pub memory: Option<i64>,
    pub memory_reservation: Option<i64>,
}

/// Parses RunTask's `overrides` member.
pub fn parse_overrides(raw: Option<&Value>) -> Result<Overrides, TaskDefError> {
    let mut p = Problems::default();
    let obj = match raw {
        None | Some(Value::Null) => return Ok(Overrides::default()),
        Some(Value::Object(o)) => o,
        Some(_) => {
            p.invalid("overrides", "must be an object");
            return p.finish(Overrides::default());
        }
    };
    let cpu = opt_units(&mut p, obj, "cpu", units::parse_cpu);
    let memory = opt_units(&mut p, obj, "memory", units::parse_memory);
    let mut containers = Vec::new();
    match obj.get("containerOverrides") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let path = format!("overrides.containerOverrides[{i}]");
                let Some(o) = item.as_object() else {
                    p.invalid(&path, "must be an object");
                    continue;
                };
                let f = |k: &str| format!("{path}.{k}");
                let name = opt_string(&mut p, o, "name", &f("name")).unwrap_or_default();
                if name.is_empty() {
                    p.invalid(&f("name"), "required");
                }
                containers.push(ContainerOverride {
                    name,
                    command: opt_string_list(&mut p, o, "command", &f("command")),
                    environment: key_values(&mut p, o.get("environment"), &f("environment")),
                    cpu: opt_non_negative(&mut p, o, "cpu", &f("cpu")),
                    memory: opt_non_negative(&mut p, o, "memory", &f("memory")),
                    memory_reservation: opt_non_negative(
                        &mut p,
                        o,
                        "memoryReservation",
                        &f("memoryReservation"),
                    ),
                });
            }
        }
        Some(_) => p.invalid("overrides.containerOverrides", "must be a list"),
    }
    p.finish(Overrides {
        containers,
        cpu,
        memory,
    })
}

/// The definition as this task will run it: overrides applied, environment merged by name.
pub fn apply_overrides(def: &TaskDefSpec, o: &Overrides) -> Result<TaskDefSpec, TaskDefError> {
    let mut p = Problems::default();
    let mut out = def.clone();
    out.cpu = o.cpu.or(def.cpu);
    out.memory = o.memory.or(def.memory);
    for (i, co) in o.containers.iter().enumerate() {
        let Some(c) = out.containers.iter_mut().find(|c| c.name == co.name) else {
            p.invalid(
                &format!("overrides.containerOverrides[{i}].name"),
                format!("no container named {:?} in {}", co.name, def.family),
            );
            continue;
        };
        if co.command.is_some() {
            c.command = co.command.clone();
        }
        for (name, value) in &co.environment {
            match c.environment.iter_mut().find(|(n, _)| n == name) {
                Some(kv) => kv.1 = value.clone(),
                None => c.environment.push((name.clone(), value.clone())),
            }
        }
        c.cpu = co.cpu.or(c.cpu);
        c.memory = co.memory.or(c.memory);
        c.memory_reservation = co.memory_reservation.or(c.memory_reservation);
        sync_raw(c);
    }
    // The same rules as at registration; a problem names the override when one set the field.
    let names: Vec<String> = out.containers.iter().map(|c| c.name.clone()).collect();
    check_resources(&mut p, out.cpu, out.memory, &out.containers, &|i, key| {
        let overridden = |set: &dyn Fn(&ContainerOverride) -> bool| {
            o.containers
                .iter()
                .position(|co| i.is_some_and(|i| co.name == names[i]) && set(co))
        };
        let by_override = match (i, key) {
            (None, "cpu") if o.cpu.is_some() => return "overrides.cpu".to_string(),
            (None, "memory") if o.memory.is_some() => return "overrides.memory".to_string(),
            (None, _) => return key.to_string(),
            (Some(_), "cpu") => overridden(&|co| co.cpu.is_some()),
            (Some(_), "memory") => overridden(&|co| co.memory.is_some()),
            (Some(_), _) => overridden(&|co| co.memory_reservation.is_some()),
        };
        match (by_override, i) {
            (Some(j), _) => format!("overrides.containerOverrides[{j}].{key}"),
            (None, Some(i)) => format!("containerDefinitions[{i}].{key}"),
            (None, None) => key.to_string(),
        }
    });
    p.finish(out)
}

/// Writes the overridable fields back into the raw definition the agent receives.
pub(super) fn sync_raw(c: &mut ContainerDef) {
    let Some(obj) = c.raw.as_object_mut() else {
        return;
    };
    if let Some(cmd) = &c.command {
        obj.insert("command".into(), serde_json::json!(cmd));
    }
    let env: Vec<Value> = c
        .environment
        .iter()
        .map(|(name, value)| serde_json::json!({"name": name, "value": value}))
        .collect();
    obj.insert("environment".into(), Value::Array(env));
    for (key, v) in [
        ("cpu", c.cpu),
        ("memory", c.memory),
        ("memoryReservation", c.memory_reservation),
    ] {
        if let Some(v) = v {
            obj.insert(key.into(), serde_json::json!(v));
        }
    }
}
