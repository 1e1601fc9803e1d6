//! What Berth does with each field of an ECS task definition: act on it, accept it and say it is
//! ignored, or refuse it with a reason. Pure; the one table behind RegisterTaskDefinition's
//! notices and the support table in docs/task-definitions.md (keep the two in step).

use serde_json::Value;

/// Task-definition fields Berth acts on.
const TASK_SUPPORTED: &[&str] = &[
    "family",
    "containerDefinitions",
    "networkMode",
    "cpu",
    "memory",
    "volumes",
    "requiresCompatibilities",
    "tags",
    "placementConstraints",
];

/// Accepted, kept, and not acted on, with why.
const TASK_IGNORED: &[(&str, &str)] = &[
    (
        "executionRoleArn",
        "no IAM on a Berth host: images must be reachable without it",
    ),
    ("taskRoleArn", "no IAM credentials endpoint on a Berth host"),
    (
        "ephemeralStorage",
        "containers use the host's snapshotter storage",
    ),
    ("runtimePlatform", "tasks run on the host's own platform"),
    ("pidMode", "not supported yet"),
    ("ipcMode", "not supported yet"),
    ("enableFaultInjection", "AWS-only"),
];

/// Refused: a task that relies on them cannot behave as it would on ECS.
const TASK_REFUSED: &[(&str, &str)] = &[
    ("proxyConfiguration", "App Mesh proxies are AWS-only"),
    ("inferenceAccelerators", "Elastic Inference is AWS-only"),
];

pub const CONTAINER_SUPPORTED: &[&str] = &[
    "name",
    "image",
    "essential",
    "entryPoint",
    "command",
    "environment",
    "workingDirectory",
    "user",
    "cpu",
    "memory",
    "memoryReservation",
    "stopTimeout",
    "startTimeout",
    "hostname",
    "readonlyRootFilesystem",
    "ulimits",
    "dockerLabels",
    "privileged",
    "linuxParameters",
    "mountPoints",
    "volumesFrom",
    "dependsOn",
    "restartPolicy",
    "logConfiguration",
    "portMappings",
    "dnsServers",
    "dnsSearchDomains",
    "extraHosts",
    "healthCheck",
    "repositoryCredentials",
];

const CONTAINER_IGNORED: &[(&str, &str)] = &[
    ("pseudoTerminal", "no terminal is attached to tasks"),
    ("interactive", "no stdin is attached to tasks"),
    ("disableNetworking", "use networkMode none"),
    ("links", "legacy Docker links are not needed: a task's containers share one network namespace on Berth and reach each other on localhost"),
    ("firelensConfiguration", "FireLens is AWS-only; logs go to the agent's local files"),
    ("systemControls", "not supported yet"),
    ("resourceRequirements", "GPUs are not supported yet"),
    ("environmentFiles", "S3 objects cannot be fetched on a Berth host"),
    ("credentialSpecs", "Windows-only"),
    ("dockerSecurityOptions", "Docker-only"),
    ("versionConsistency", "images are resolved on the host"),
];

const CONTAINER_REFUSED: &[(&str, &str)] = &[(
    "secrets",
    "Secrets Manager and SSM ARNs cannot be resolved on a Berth host; pass values in environment",
)];

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Review {
    /// Field paths with the reason each is refused.
    pub refused: Vec<String>,
    /// Field paths accepted and not acted on, with why.
    pub ignored: Vec<String>,
    /// Field paths Berth does not know at all (kept and echoed back).
    pub unknown: Vec<String>,
}

fn lookup<'a>(table: &'a [(&str, &str)], key: &str) -> Option<&'a str> {
    table.iter().find(|(k, _)| *k == key).map(|(_, why)| *why)
}

/// Sorts every field of a RegisterTaskDefinition request into the three kinds.
pub fn review(raw: &Value) -> Review {
    let mut r = Review::default();
    let Some(obj) = raw.as_object() else {
        return r;
    };
    for key in obj.keys() {
        if let Some(why) = lookup(TASK_REFUSED, key) {
            r.refused.push(format!("{key}: {why}"));
        } else if let Some(why) = lookup(TASK_IGNORED, key) {
            r.ignored.push(format!("{key} ({why})"));
        } else if !TASK_SUPPORTED.contains(&key.as_str()) {
            r.unknown.push(key.clone());
        }
    }
    if let Some(Value::Array(volumes)) = obj.get("volumes") {
        for (i, v) in volumes.iter().enumerate() {
            review_volume(&format!("volumes[{i}]"), v, &mut r);
        }
    }
    if let Some(Value::Array(defs)) = obj.get("containerDefinitions") {
        for (i, def) in defs.iter().enumerate() {
            let Some(c) = def.as_object() else { continue };
            let path = format!("containerDefinitions[{i}]");
            for key in c.keys() {
                if let Some(why) = lookup(CONTAINER_REFUSED, key) {
                    r.refused.push(format!("{path}.{key}: {why}"));
                } else if let Some(why) = lookup(CONTAINER_IGNORED, key) {
                    r.ignored.push(format!("{path}.{key} ({why})"));
                } else if !CONTAINER_SUPPORTED.contains(&key.as_str()) {
                    r.unknown.push(format!("{path}.{key}"));
                }
            }
            if let Some(lc) = c.get("logConfiguration") {
                if lc.get("secretOptions").is_some() {
                    r.ignored.push(format!(
                        "{path}.logConfiguration.secretOptions (logs go to the agent's local files)"
                    ));
                }
            }
        }
    }
    r
}

fn review_volume(path: &str, v: &Value, r: &mut Review) {
    if v.get("efsVolumeConfiguration").is_some() {
        r.refused.push(format!(
            "{path}.efsVolumeConfiguration: EFS is AWS-only; use host.sourcePath on an NFS mount"
        ));
    }
    if v.get("fsxWindowsFileServerVolumeConfiguration").is_some() {
        r.refused.push(format!(
            "{path}.fsxWindowsFileServerVolumeConfiguration: FSx for Windows is AWS-only"
        ));
    }
    if v.get("configuredAtLaunch") == Some(&Value::Bool(true)) {
        r.refused.push(format!(
            "{path}.configuredAtLaunch: EBS volumes are AWS-only"
        ));
    }
    if let Some(d) = v.get("dockerVolumeConfiguration") {
        let driver = d.get("driver").and_then(Value::as_str).unwrap_or("local");
        let scope = d.get("scope").and_then(Value::as_str).unwrap_or("task");
        if driver != "local" || scope != "task" {
            r.refused.push(format!(
                "{path}.dockerVolumeConfiguration: only driver \"local\" with scope \"task\" is supported (an empty directory owned by the task)"
            ));
        } else {
            r.ignored.push(format!(
                "{path}.dockerVolumeConfiguration (a task-scoped empty directory; driverOpts and labels are not used)"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_fields_into_supported_ignored_refused_and_unknown() {
        let r = review(&json!({
            "family": "f",
            "executionRoleArn": "arn:aws:iam::1:role/x",
            "proxyConfiguration": {},
            "frobnicate": 1,
            "volumes": [
                {"name": "a", "efsVolumeConfiguration": {"fileSystemId": "fs-1"}},
                {"name": "b", "dockerVolumeConfiguration": {"scope": "task", "driver": "local"}},
                {"name": "c", "dockerVolumeConfiguration": {"scope": "shared"}}
            ],
            "containerDefinitions": [{
                "name": "c", "image": "i", "secrets": [], "pseudoTerminal": true,
                "logConfiguration": {"logDriver": "awslogs", "secretOptions": []},
                "mystery": true
            }]
        }));
        assert_eq!(r.refused.len(), 4, "{:?}", r.refused);
        assert!(r
            .refused
            .iter()
            .any(|m| m.starts_with("proxyConfiguration")));
        assert!(r
            .refused
            .iter()
            .any(|m| m.starts_with("containerDefinitions[0].secrets")));
        assert!(r.refused.iter().any(|m| m.starts_with("volumes[0].efs")));
        assert!(r.refused.iter().any(|m| m.starts_with("volumes[2].docker")));
        assert_eq!(r.ignored.len(), 4, "{:?}", r.ignored);
        assert_eq!(r.unknown, ["frobnicate", "containerDefinitions[0].mystery"]);
    }

    #[test]
    fn a_plain_definition_has_nothing_to_say() {
        let r = review(&json!({
            "family": "f", "networkMode": "host",
            "containerDefinitions": [{"name": "c", "image": "i", "memory": 64,
                "mountPoints": [], "dependsOn": [], "restartPolicy": {"enabled": true},
                "repositoryCredentials": {"credentialsParameter": "reg"},
                "healthCheck": {"command": ["CMD-SHELL", "true"], "interval": 10}}]
        }));
        assert_eq!(r, Review::default());
    }
}
