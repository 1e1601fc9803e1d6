//! dependsOn, startTimeout and restartPolicy: their shape in one container, and dependencies across containers.

use super::*;

/// ECS's bounds for restartPolicy.restartAttemptPeriod (seconds) and its default.
pub const RESTART_ATTEMPT_PERIOD: std::ops::RangeInclusive<i64> = 60..=1800;
pub(super) const MAX_IGNORED_EXIT_CODES: usize = 50;
pub(super) const DEPENDENCY_CONDITIONS: &[&str] = &["START", "COMPLETE", "SUCCESS", "HEALTHY"];

/// The shape of dependsOn, startTimeout and restartPolicy in one container definition.
pub(super) fn lifecycle_fields(
    p: &mut Problems,
    obj: &Map<String, Value>,
    f: &dyn Fn(&str) -> String,
) {
    opt_non_negative(p, obj, "startTimeout", &f("startTimeout"));
    match obj.get("dependsOn") {
        None | Some(Value::Null) => {}
        Some(Value::Array(deps)) => {
            for (i, d) in deps.iter().enumerate() {
                let path = f(&format!("dependsOn[{i}]"));
                let Some(d) = d.as_object() else {
                    p.invalid(&path, "must be an object");
                    continue;
                };
                if opt_string(p, d, "containerName", &format!("{path}.containerName")).is_none() {
                    p.client(&format!("{path}.containerName"), "required");
                }
                match opt_string(p, d, "condition", &format!("{path}.condition")) {
                    None => p.client(&format!("{path}.condition"), "required"),
                    Some(c) if DEPENDENCY_CONDITIONS.contains(&c.as_str()) => {}
                    Some(c) => p.invalid(
                        &format!("{path}.condition"),
                        format!("{c:?} is not one of START, COMPLETE, SUCCESS, HEALTHY"),
                    ),
                }
            }
        }
        Some(_) => p.invalid(&f("dependsOn"), "must be a list"),
    }
    match obj.get("restartPolicy") {
        None | Some(Value::Null) => {}
        Some(Value::Object(r)) => {
            match r.get("enabled") {
                Some(Value::Bool(_)) => {}
                None | Some(Value::Null) => p.client(&f("restartPolicy.enabled"), "required"),
                Some(_) => p.invalid(&f("restartPolicy.enabled"), "must be true or false"),
            }
            match r.get("ignoredExitCodes") {
                None | Some(Value::Null) => {}
                Some(Value::Array(codes))
                    if codes
                        .iter()
                        .all(|c| c.as_i64().is_some_and(|c| i32::try_from(c).is_ok())) =>
                {
                    if codes.len() > MAX_IGNORED_EXIT_CODES {
                        p.invalid(
                            &f("restartPolicy.ignoredExitCodes"),
                            format!("at most {MAX_IGNORED_EXIT_CODES} exit codes"),
                        );
                    }
                }
                Some(_) => p.invalid(
                    &f("restartPolicy.ignoredExitCodes"),
                    "must be a list of integers",
                ),
            }
            match r.get("restartAttemptPeriod") {
                None | Some(Value::Null) => {}
                Some(v) => match v.as_i64() {
                    Some(n) if RESTART_ATTEMPT_PERIOD.contains(&n) => {}
                    _ => p.invalid(
                        &f("restartPolicy.restartAttemptPeriod"),
                        format!("{v} must be between 60 and 1800 seconds"),
                    ),
                },
            }
        }
        Some(_) => p.invalid(&f("restartPolicy"), "must be an object"),
    }
}

/// dependsOn across containers: names that exist, no self-dependency, no cycle, no COMPLETE or
/// SUCCESS on an essential container (its exit stops the task, so nothing could ever start
/// after it), and HEALTHY only on a container with a healthCheck.
pub(super) fn check_dependencies(p: &mut Problems, containers: &[ContainerDef]) {
    let deps_of = |c: &ContainerDef| -> Vec<(String, String)> {
        c.raw
            .get("dependsOn")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|d| {
                Some((
                    d.get("containerName")?.as_str()?.to_string(),
                    d.get("condition")?.as_str()?.to_string(),
                ))
            })
            .collect()
    };
    for (i, c) in containers.iter().enumerate() {
        for (j, (name, condition)) in deps_of(c).into_iter().enumerate() {
            let path = format!("containerDefinitions[{i}].dependsOn[{j}]");
            if name == c.name {
                p.client(
                    &format!("{path}.containerName"),
                    format!("container {name:?} cannot depend on itself"),
                );
                continue;
            }
            let Some(dep) = containers.iter().find(|o| o.name == name) else {
                p.client(
                    &format!("{path}.containerName"),
                    format!("no container named {name:?} in the task definition"),
                );
                continue;
            };
            if condition == "HEALTHY" && dep.health_check.is_none() {
                // As ECS: HEALTHY needs a container with a health check. An invalid healthCheck
                // is reported with it.
                let why = match dep.raw.get("healthCheck") {
                    None | Some(Value::Null) => Some(format!("{name:?} has no healthCheck")),
                    Some(h) if h.get("command") == Some(&serde_json::json!(["NONE"])) => Some(
                        format!("the healthCheck of {name:?} is [\"NONE\"], which disables it"),
                    ),
                    Some(_) => None,
                };
                if let Some(why) = why {
                    p.client(
                        &format!("{path}.condition"),
                        format!(
                            "HEALTHY on {name:?} can never be met: {why}; give {name:?} a healthCheck, or use START"
                        ),
                    );
                }
            }
            if dep.essential && (condition == "COMPLETE" || condition == "SUCCESS") {
                p.client(
                    &format!("{path}.condition"),
                    format!(
                        "{condition} on {name:?} can never be met: {name:?} is essential, so its exit stops the task; make it non-essential"
                    ),
                );
            }
        }
    }
    // Depth-first search over the names; a name met again on the current path closes a cycle.
    let graph: Vec<(String, Vec<String>)> = containers
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                deps_of(c).into_iter().map(|d| d.0).collect(),
            )
        })
        .collect();
    fn visit(
        name: &str,
        graph: &[(String, Vec<String>)],
        path: &mut Vec<String>,
        done: &mut std::collections::HashSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == name) {
            let mut cycle = path[at..].to_vec();
            cycle.push(name.to_string());
            return Some(cycle);
        }
        if !done.insert(name.to_string()) {
            return None;
        }
        path.push(name.to_string());
        let next = graph
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d.clone());
        for d in next.unwrap_or_default() {
            if d != name {
                if let Some(c) = visit(&d, graph, path, done) {
                    return Some(c);
                }
            }
        }
        path.pop();
        None
    }
    let mut done = std::collections::HashSet::new();
    if let Some(cycle) = graph
        .iter()
        .find_map(|(n, _)| visit(n, &graph, &mut Vec::new(), &mut done))
    {
        p.client(
            "containerDefinitions.dependsOn",
            format!("dependencies form a cycle: {}", cycle.join(" -> ")),
        );
    }
}
