//! Domain <-> berth_proto conversion. The protobuf types stop here and at the session edge.

use berth_proto::v1 as pb;
use prost::Message;
use thiserror::Error;

use crate::domain::instance::{InstanceInfo, Resource};
use crate::domain::secrets::{credentials_parameter, Login};
use crate::domain::security::IngressRule;
use crate::domain::task::{
    AgentChange, ContainerStatus, HealthReport, HealthStatus, NetworkBinding, Task, TaskNetwork,
    TaskStatus, MAX_HEALTH_OUTPUT_BYTES,
};
use crate::domain::taskdef::TaskDefSpec;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    #[error("state change {seq} carries no change")]
    EmptyChange { seq: u64 },
    #[error("state change {seq}: task status {value} is not a status")]
    BadTaskStatus { seq: u64, value: i32 },
    #[error("state change {seq}: container status {value} is not a status")]
    BadContainerStatus { seq: u64, value: i32 },
    #[error("stored payload is not decodable: {0}")]
    Payload(String),
}

pub fn instance_info(req: &pb::RegisterRequest) -> InstanceInfo {
    let version = req.version_info.clone().unwrap_or_default();
    InstanceInfo {
        hostname: req.hostname.clone(),
        resources: req
            .resources
            .iter()
            .map(|r| Resource {
                name: r.name.clone(),
                kind: r.r#type.clone(),
                integer_value: r.integer_value,
                string_set_value: r.string_set_value.clone(),
            })
            .collect(),
        attributes: req
            .attributes
            .iter()
            .map(|a| (a.name.clone(), a.value.clone()))
            .collect(),
        agent_version: version.agent_version,
        agent_hash: version.agent_hash,
        containerd_version: version.containerd_version,
    }
}

/// The agent's sequence number and its change in domain terms.
pub fn agent_change(sc: &pb::StateChange) -> Result<(u64, AgentChange), WireError> {
    let seq = sc.seq;
    let change = match &sc.change {
        None => return Err(WireError::EmptyChange { seq }),
        Some(pb::state_change::Change::Task(t)) => AgentChange::Task {
            task_arn: t.task_arn.clone(),
            status: match pb::TaskStatus::try_from(t.status) {
                Ok(pb::TaskStatus::Provisioning) => TaskStatus::Provisioning,
                Ok(pb::TaskStatus::Pending) => TaskStatus::Pending,
                Ok(pb::TaskStatus::Running) => TaskStatus::Running,
                Ok(pb::TaskStatus::Stopped) => TaskStatus::Stopped,
                Ok(pb::TaskStatus::Unspecified) | Err(_) => {
                    return Err(WireError::BadTaskStatus {
                        seq,
                        value: t.status,
                    })
                }
            },
            stop_code: t.stop_code.clone(),
            stopped_reason: t.stopped_reason.clone(),
            at_ms: t.at_ms,
            network: t.network.as_ref().map(task_network),
            pull: (t.pull_started_at_ms > 0 && t.pull_stopped_at_ms >= t.pull_started_at_ms)
                .then_some((t.pull_started_at_ms, t.pull_stopped_at_ms)),
        },
        Some(pb::state_change::Change::Container(c)) => AgentChange::Container {
            task_arn: c.task_arn.clone(),
            container_name: c.container_name.clone(),
            status: match pb::ContainerStatus::try_from(c.status) {
                Ok(pb::ContainerStatus::None) => ContainerStatus::Pending,
                Ok(pb::ContainerStatus::Pulled) => ContainerStatus::Pulled,
                Ok(pb::ContainerStatus::Created) => ContainerStatus::Created,
                Ok(pb::ContainerStatus::Running) => ContainerStatus::Running,
                Ok(pb::ContainerStatus::Stopped) => ContainerStatus::Stopped,
                Err(_) => {
                    return Err(WireError::BadContainerStatus {
                        seq,
                        value: c.status,
                    })
                }
            },
            exit_code: c.exit_code,
            reason: c.reason.clone(),
            runtime_id: c.runtime_id.clone(),
            at_ms: c.at_ms,
            restart_count: i64::from(c.restart_count.max(0)),
            health: c.health.as_ref().map(health_report),
            image_digest: c.image_digest.chars().take(256).collect(),
        },
    };
    Ok((seq, change))
}

/// An agent's ContainerHealth. A zero checked_at_ms means no check has ended yet (the agent
/// reports UNKNOWN from RUNNING on), and then there is no exit code either. The output is cut to
/// the contract's 1 KiB whatever the agent sent.
fn health_report(h: &pb::ContainerHealth) -> HealthReport {
    let checked = h.checked_at_ms > 0;
    HealthReport {
        status: HealthStatus::parse(&h.status),
        checked_at_ms: checked.then_some(h.checked_at_ms),
        exit_code: checked.then_some(h.exit_code),
        output: truncate(&h.output, MAX_HEALTH_OUTPUT_BYTES),
    }
}

/// The start of `s`, at most `max` bytes, cut at a character boundary.
fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn task_network(n: &pb::TaskNetwork) -> TaskNetwork {
    TaskNetwork {
        mode: n.mode.clone(),
        private_ipv4: n.private_ipv4.clone(),
        prefix_length: n.prefix_length,
        gateway_ipv4: n.gateway_ipv4.clone(),
        mac_address: n.mac_address.clone(),
        bindings: n
            .bindings
            .iter()
            .map(|b| NetworkBinding {
                container_name: b.container_name.clone(),
                protocol: b.protocol.clone(),
                container_port: b.container_port,
                host_port: b.host_port,
                bind_ip: b.bind_ip.clone(),
            })
            .collect(),
    }
}

fn to_i32(v: Option<i64>) -> i32 {
    v.unwrap_or(0).clamp(0, i32::MAX as i64) as i32
}

/// The spec the agent runs: `spec` is the definition with the task's overrides applied.
/// `ingress`: the rules of an awsvpc task's security groups; None allows all ingress.
/// `registry_credentials` is left empty: stored payloads hold no password, and
/// [`fill_registry_credentials`] adds the logins each time the payload is sent.
pub fn task_spec(
    task_arn: &str,
    task: &Task,
    spec: &TaskDefSpec,
    ingress: Option<&[IngressRule]>,
) -> pb::TaskSpec {
    pb::TaskSpec {
        ingress_restricted: ingress.is_some(),
        ingress: ingress
            .unwrap_or_default()
            .iter()
            .map(|r| pb::IngressRule {
                protocol: r.protocol.as_str().to_string(),
                from_port: u32::from(r.from_port),
                to_port: u32::from(r.to_port),
                cidr: r.cidr.clone(),
            })
            .collect(),
        task_arn: task_arn.to_string(),
        service_name: task
            .group
            .strip_prefix("service:")
            .unwrap_or_default()
            .to_string(),
        family: task.family.clone(),
        revision: task.revision as i32,
        desired_status: pb::TaskStatus::Running as i32,
        network_mode: spec.network_mode.clone(),
        cpu: to_i32(spec.cpu),
        memory_mib: to_i32(spec.memory),
        created_at_ms: task.created_at_ms,
        volumes_json: if spec.volumes.is_null() {
            String::new()
        } else {
            spec.volumes.to_string()
        },
        containers: spec
            .containers
            .iter()
            .map(|c| pb::ContainerSpec {
                name: c.name.clone(),
                image: c.image.clone(),
                essential: c.essential,
                entry_point: c.entry_point.clone(),
                command: c.command.clone().unwrap_or_default(),
                has_command: c.command.is_some(),
                environment: c
                    .environment
                    .iter()
                    .map(|(name, value)| pb::KeyValue {
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect(),
                working_directory: c.working_directory.clone().unwrap_or_default(),
                user: c.user.clone().unwrap_or_default(),
                cpu: to_i32(c.cpu),
                memory_mib: to_i32(c.memory),
                memory_reservation_mib: to_i32(c.memory_reservation),
                stop_timeout_seconds: to_i32(c.stop_timeout),
                definition_json: c.raw.to_string(),
                registry_credentials: None,
            })
            .collect(),
    }
}

pub fn start_payload(seq: u64, specs: Vec<pb::TaskSpec>) -> Vec<u8> {
    pb::TaskPayload {
        seq,
        tasks: specs,
        stops: Vec::new(),
    }
    .encode_to_vec()
}

pub fn stop_payload(seq: u64, task_arn: &str, reason: &str) -> Vec<u8> {
    pb::TaskPayload {
        seq,
        tasks: Vec::new(),
        stops: vec![pb::StopTask {
            task_arn: task_arn.to_string(),
            reason: reason.to_string(),
        }],
    }
    .encode_to_vec()
}

/// A container whose repositoryCredentials named a secret that could not be found when its
/// payload was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnresolvedCredentials {
    pub task_arn: String,
    pub container: String,
    pub parameter: String,
}

/// Sets each container's `registry_credentials` from the secret its definition's
/// `repositoryCredentials.credentialsParameter` names, as `lookup` finds it now (by name or
/// ARN), so a resent payload carries the secret's current login. Containers whose secret is
/// gone are sent without one and returned.
pub fn fill_registry_credentials<E>(
    payload: &mut pb::TaskPayload,
    mut lookup: impl FnMut(&str) -> Result<Option<Login>, E>,
) -> Result<Vec<UnresolvedCredentials>, E> {
    let mut unresolved = Vec::new();
    for task in &mut payload.tasks {
        for c in &mut task.containers {
            c.registry_credentials = None;
            if !c.definition_json.contains("repositoryCredentials") {
                continue;
            }
            let Ok(def) = serde_json::from_str::<serde_json::Value>(&c.definition_json) else {
                continue;
            };
            let Some(parameter) = credentials_parameter(&def) else {
                continue;
            };
            match lookup(parameter)? {
                Some(login) => {
                    c.registry_credentials = Some(pb::RegistryCredentials {
                        username: login.username,
                        password: login.password,
                    })
                }
                None => unresolved.push(UnresolvedCredentials {
                    task_arn: task.task_arn.clone(),
                    container: c.name.clone(),
                    parameter: parameter.to_string(),
                }),
            }
        }
    }
    Ok(unresolved)
}

pub fn payload_message(bytes: &[u8]) -> Result<pb::ControlMessage, WireError> {
    let payload = pb::TaskPayload::decode(bytes).map_err(|e| WireError::Payload(e.to_string()))?;
    Ok(pb::ControlMessage {
        msg: Some(pb::control_message::Msg::Payload(payload)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_task_status_is_refused() {
        let sc = pb::StateChange {
            seq: 4,
            change: Some(pb::state_change::Change::Task(
                pb::TaskStateChange::default(),
            )),
        };
        assert_eq!(
            agent_change(&sc),
            Err(WireError::BadTaskStatus { seq: 4, value: 0 })
        );
    }

    fn container_change(health: Option<pb::ContainerHealth>) -> pb::StateChange {
        pb::StateChange {
            seq: 9,
            change: Some(pb::state_change::Change::Container(
                pb::ContainerStateChange {
                    task_arn: "arn".into(),
                    container_name: "app".into(),
                    status: pb::ContainerStatus::Running as i32,
                    health,
                    ..Default::default()
                },
            )),
        }
    }

    fn health_of(sc: &pb::StateChange) -> Option<HealthReport> {
        match agent_change(sc).unwrap().1 {
            AgentChange::Container { health, .. } => health,
            other => panic!("not a container change: {other:?}"),
        }
    }

    #[test]
    fn container_health_is_converted() {
        assert_eq!(health_of(&container_change(None)), None);
        let checked = container_change(Some(pb::ContainerHealth {
            status: "UNHEALTHY".into(),
            checked_at_ms: 1_700_000_000_000,
            exit_code: -1,
            output: format!("a{}", "é".repeat(600)),
        }));
        let h = health_of(&checked).unwrap();
        assert_eq!(h.status, HealthStatus::Unhealthy);
        assert_eq!(h.checked_at_ms, Some(1_700_000_000_000));
        assert_eq!(h.exit_code, Some(-1));
        assert_eq!(
            h.output,
            format!("a{}", "é".repeat(511)),
            "cut to 1 KiB, on a character boundary"
        );
        // Reported from RUNNING on, before any check ended: no check to show.
        let unchecked = container_change(Some(pb::ContainerHealth {
            status: "UNKNOWN".into(),
            ..Default::default()
        }));
        assert_eq!(
            health_of(&unchecked),
            Some(HealthReport {
                status: HealthStatus::Unknown,
                checked_at_ms: None,
                exit_code: None,
                output: String::new(),
            })
        );
    }

    fn container(name: &str, def: serde_json::Value) -> pb::ContainerSpec {
        pb::ContainerSpec {
            name: name.into(),
            definition_json: def.to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn registry_credentials_are_filled_when_sent() {
        let mut payload = pb::TaskPayload {
            seq: 1,
            tasks: vec![pb::TaskSpec {
                task_arn: "t".into(),
                containers: vec![
                    container(
                        "app",
                        serde_json::json!({"name": "app", "repositoryCredentials": {"credentialsParameter": "reg"}}),
                    ),
                    container("plain", serde_json::json!({"name": "plain"})),
                    container(
                        "gone",
                        serde_json::json!({"name": "gone", "repositoryCredentials": {"credentialsParameter": "old"}}),
                    ),
                ],
                ..Default::default()
            }],
            stops: Vec::new(),
        };
        // What is stored holds no login: a round trip through bytes, as the outbox does.
        let bytes = payload.encode_to_vec();
        let mut asked = Vec::new();
        let unresolved = fill_registry_credentials(&mut payload, |p| {
            asked.push(p.to_string());
            Ok::<_, ()>((p == "reg").then(|| Login {
                username: "robot".into(),
                password: "hunter2".into(),
            }))
        })
        .unwrap();
        assert_eq!(asked, ["reg", "old"]);
        let c = &payload.tasks[0].containers;
        assert_eq!(
            c[0].registry_credentials,
            Some(pb::RegistryCredentials {
                username: "robot".into(),
                password: "hunter2".into()
            })
        );
        assert_eq!(
            (&c[1].registry_credentials, &c[2].registry_credentials),
            (&None, &None)
        );
        assert_eq!(
            unresolved,
            [UnresolvedCredentials {
                task_arn: "t".into(),
                container: "gone".into(),
                parameter: "old".into()
            }]
        );
        assert!(!String::from_utf8_lossy(&bytes).contains("hunter2"));
    }

    #[test]
    fn payload_round_trip() {
        let bytes = stop_payload(7, "arn", "because");
        let Some(pb::control_message::Msg::Payload(p)) = payload_message(&bytes).unwrap().msg
        else {
            panic!("not a payload")
        };
        assert_eq!(p.seq, 7);
        assert_eq!(p.stops[0].reason, "because");
    }
}
