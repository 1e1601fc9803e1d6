//! `requiresAttributes`: the container-instance attributes a task definition needs, as ECS
//! derives them at registration from the features it uses. Placement takes only instances
//! that have every one (an agent too old for a feature does not get its tasks), and
//! DescribeTaskDefinition shows them. Only capabilities berth-agent reports are derived
//! (agent/src/host.rs), so every definition Berth accepts can run on a current agent.

use serde_json::Value;

pub const HEALTH_CHECK: &str = "ecs.capability.container-health-check";
pub const CONTAINER_ORDERING: &str = "ecs.capability.container-ordering";
pub const TASK_CPU_MEM_LIMIT: &str = "ecs.capability.task-cpu-mem-limit";
pub const PRIVATE_REGISTRY_AUTH: &str =
    "ecs.capability.private-registry-authentication.secretsmanager";
pub const TASK_ENI: &str = "ecs.capability.task-eni";
pub const PRIVILEGED: &str = "com.amazonaws.ecs.capability.privileged-container";

/// The attribute names (no values: ECS's capabilities are names only) the registered task
/// definition `raw` requires, sorted.
pub fn required_attributes(raw: &Value) -> Vec<&'static str> {
    let mut names = Vec::new();
    if raw["networkMode"] == "awsvpc" {
        names.push(TASK_ENI);
    }
    if !raw["cpu"].is_null() || !raw["memory"].is_null() {
        names.push(TASK_CPU_MEM_LIMIT);
    }
    let containers = raw["containerDefinitions"].as_array().map(Vec::as_slice);
    for c in containers.unwrap_or_default() {
        if c["healthCheck"].is_object() {
            names.push(HEALTH_CHECK);
        }
        if c["dependsOn"].as_array().is_some_and(|d| !d.is_empty()) {
            names.push(CONTAINER_ORDERING);
        }
        if c["repositoryCredentials"].is_object() {
            names.push(PRIVATE_REGISTRY_AUTH);
        }
        if c["privileged"] == true {
            names.push(PRIVILEGED);
        }
    }
    names.sort_unstable();
    names.dedup();
    names
}

/// The first of `required` that an instance with `attributes` lacks.
pub fn first_missing<'a>(required: &[&'a str], attributes: &[(String, String)]) -> Option<&'a str> {
    required
        .iter()
        .copied()
        .find(|r| !attributes.iter().any(|(n, _)| n == r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_plain_definition_requires_nothing() {
        let raw =
            json!({"containerDefinitions": [{"name": "a", "image": "busybox", "memory": 64}]});
        assert!(required_attributes(&raw).is_empty());
    }

    #[test]
    fn each_feature_requires_its_capability_once() {
        let raw = json!({
            "networkMode": "awsvpc",
            "memory": "512",
            "containerDefinitions": [
                {"name": "a", "image": "x", "privileged": true,
                 "healthCheck": {"command": ["CMD", "true"]},
                 "repositoryCredentials": {"credentialsParameter": "login"}},
                {"name": "b", "image": "x", "privileged": false,
                 "healthCheck": {"command": ["CMD", "true"]},
                 "dependsOn": [{"containerName": "a", "condition": "HEALTHY"}]},
            ]
        });
        assert_eq!(
            required_attributes(&raw),
            vec![
                PRIVILEGED,
                HEALTH_CHECK,
                CONTAINER_ORDERING,
                PRIVATE_REGISTRY_AUTH,
                TASK_CPU_MEM_LIMIT,
                TASK_ENI,
            ]
        );
    }

    #[test]
    fn an_instance_missing_one_is_named() {
        let attributes = vec![(HEALTH_CHECK.to_string(), String::new())];
        assert_eq!(first_missing(&[HEALTH_CHECK], &attributes), None);
        assert_eq!(
            first_missing(&[CONTAINER_ORDERING, HEALTH_CHECK], &attributes),
            Some(CONTAINER_ORDERING)
        );
    }
}
