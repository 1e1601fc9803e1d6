//! Domain -> ECS JSON response shapes (member names as in botocore's ECS model).

use serde_json::{json, Map, Value};

use crate::api::ts;

use crate::app::InstanceView;
use crate::domain::ids::Arns;
use crate::domain::instance::{overall_health, Resource, RuntimeHealth};
use crate::domain::task::{
    container_health_status, task_health_status, Container, Task, TaskStatus,
};
use crate::domain::taskdef::{required_attributes, HealthDef, Protocol};
use crate::scheduler::placement::PlacementFailure;
use crate::state::TaskDefRecord;

/// The subnet named in awsvpc attachments: the agent's task subnet, whatever it is.
pub const TASK_SUBNET_ID: &str = "berth-task-subnet";

fn put(m: &mut Map<String, Value>, key: &str, v: Option<Value>) {
    if let Some(v) = v {
        m.insert(key.to_string(), v);
    }
}

pub fn missing(arn: &str) -> Value {
    json!({"arn": arn, "reason": "MISSING"})
}

pub fn failure(f: &PlacementFailure) -> Value {
    json!({"arn": f.arn, "reason": f.reason, "detail": f.detail})
}

/// The registered JSON echoed back, with the members ECS adds.
pub fn task_definition(arns: &Arns, r: &TaskDefRecord) -> Value {
    let mut m = r.raw.as_object().cloned().unwrap_or_default();
    m.remove("tags");
    m.insert(
        "taskDefinitionArn".into(),
        json!(arns.task_definition(&r.family, r.revision)),
    );
    m.insert("revision".into(), json!(r.revision));
    m.insert("status".into(), json!(r.status().as_str()));
    m.insert("compatibilities".into(), json!(["EC2"]));
    m.insert("registeredAt".into(), ts(r.registered_at_ms));
    put(&mut m, "deregisteredAt", r.deregistered_at_ms.map(ts));
    put(
        &mut m,
        "deleteRequestedAt",
        r.delete_requested_at_ms.map(ts),
    );
    let required: Vec<Value> = required_attributes(&r.raw)
        .into_iter()
        .map(|name| json!({"name": name}))
        .collect();
    m.insert("requiresAttributes".into(), Value::Array(required));
    for (key, default) in [
        ("networkMode", json!("bridge")),
        ("volumes", json!([])),
        ("placementConstraints", json!([])),
    ] {
        m.entry(key).or_insert(default);
    }
    Value::Object(m)
}

/// One task. `defs`: what its task definition says about its containers' health (see
/// `ControlPlane::health_defs`).
pub fn task(arns: &Arns, t: &Task, defs: &[HealthDef]) -> Value {
    let task_arn = arns.task(&t.cluster, &t.id);
    let containers: Vec<Value> = t
        .containers
        .iter()
        .map(|c| {
            let mut m = Map::new();
            m.insert(
                "containerArn".into(),
                json!(arns.container(&t.cluster, &t.id, &c.id)),
            );
            m.insert("taskArn".into(), json!(task_arn));
            m.insert("name".into(), json!(c.name));
            m.insert("image".into(), json!(c.image));
            put(&mut m, "runtimeId", c.runtime_id.as_ref().map(|v| json!(v)));
            put(
                &mut m,
                "imageDigest",
                c.image_digest.as_ref().map(|v| json!(v)),
            );
            m.insert("lastStatus".into(), json!(c.last_status.as_str()));
            put(&mut m, "exitCode", c.exit_code.map(|v| json!(v)));
            put(&mut m, "reason", c.reason.as_ref().map(|v| json!(v)));
            m.insert(
                "healthStatus".into(),
                json!(container_health_status(c).as_str()),
            );
            let checked = defs.iter().any(|d| d.name == c.name && d.health_check);
            m.insert("berth".into(), berth_container(t, c, checked));
            m.insert(
                "networkBindings".into(),
                Value::Array(network_bindings(t, c)),
            );
            m.insert(
                "networkInterfaces".into(),
                Value::Array(network_interfaces(t)),
            );
            m.insert("cpu".into(), json!(c.cpu.unwrap_or(0).to_string()));
            put(&mut m, "memory", c.memory.map(|v| json!(v.to_string())));
            put(
                &mut m,
                "memoryReservation",
                c.memory_reservation.map(|v| json!(v.to_string())),
            );
            Value::Object(m)
        })
        .collect();
    let mut m = Map::new();
    m.insert("taskArn".into(), json!(task_arn));
    m.insert("clusterArn".into(), json!(arns.cluster(&t.cluster)));
    m.insert(
        "taskDefinitionArn".into(),
        json!(arns.task_definition(&t.family, t.revision)),
    );
    m.insert(
        "containerInstanceArn".into(),
        json!(arns.container_instance(&t.cluster, &t.instance_id)),
    );
    m.insert("lastStatus".into(), json!(t.last_status.as_str()));
    m.insert("desiredStatus".into(), json!(t.desired_status.as_str()));
    m.insert(
        "healthStatus".into(),
        json!(task_health_status(t, defs).as_str()),
    );
    m.insert("createdAt".into(), ts(t.created_at_ms));
    put(&mut m, "pullStartedAt", t.pull_started_at_ms.map(ts));
    put(&mut m, "pullStoppedAt", t.pull_stopped_at_ms.map(ts));
    put(&mut m, "startedAt", t.started_at_ms.map(ts));
    put(&mut m, "stoppingAt", t.stopping_at_ms.map(ts));
    put(&mut m, "stoppedAt", t.stopped_at_ms.map(ts));
    put(
        &mut m,
        "executionStoppedAt",
        t.execution_stopped_at_ms.map(ts),
    );
    put(&mut m, "stopCode", t.stop_code.as_ref().map(|v| json!(v)));
    put(
        &mut m,
        "stoppedReason",
        t.stopped_reason.as_ref().map(|v| json!(v)),
    );
    m.insert("group".into(), json!(t.group));
    put(&mut m, "startedBy", t.started_by.as_ref().map(|v| json!(v)));
    m.insert("launchType".into(), json!(t.launch_type));
    // Without task-level values ECS shows what the containers add up to.
    m.insert(
        "cpu".into(),
        json!(t.cpu.unwrap_or(t.needs.cpu).to_string()),
    );
    m.insert(
        "memory".into(),
        json!(t.memory.unwrap_or(t.needs.memory).to_string()),
    );
    m.insert("overrides".into(), t.overrides.clone());
    m.insert(
        "attributes".into(),
        Value::Array(
            t.cpu_architecture
                .iter()
                .map(|a| json!({"name": "ecs.cpu-architecture", "value": a}))
                .collect(),
        ),
    );
    put(
        &mut m,
        "availabilityZone",
        t.availability_zone.as_ref().map(|z| json!(z)),
    );
    m.insert(
        "enableExecuteCommand".into(),
        json!(t.enable_execute_command),
    );
    m.insert("version".into(), json!(t.version));
    m.insert(
        "attachments".into(),
        Value::Array(awsvpc_attachment(t).into_iter().collect()),
    );
    m.insert("containers".into(), Value::Array(containers));
    Value::Object(m)
}

/// Berth's extension with a checked container's last check, beside ECS's healthStatus (botocore
/// ignores members it does not know): `{"status", "output", "exitCode", "checkedAt",
/// "receivedAt"}`. exitCode and checkedAt (the agent's clock) once a check has ended, receivedAt
/// (berth-cp's clock) once the agent reported; for a container with a healthCheck not reported
/// yet, `{"status": "UNKNOWN", "output": ""}`. None for a container without a healthCheck.
/// Berth's members of a container, under the one key ECS leaves alone (botocore ignores members
/// it does not know): `restartCount` (restartPolicy), `health` (a checked container's last
/// check) and, for a bridge task, `privateIpv4Address` (its address on the host's bridge, which
/// ECS does not show).
fn berth_container(t: &Task, c: &Container, checked: bool) -> Value {
    let mut m = Map::new();
    m.insert("restartCount".into(), json!(c.restart_count));
    put(&mut m, "health", berth_health(c, checked));
    if network_mode(t) == "bridge" {
        put(
            &mut m,
            "privateIpv4Address",
            private_ipv4(t).map(|ip| json!(ip)),
        );
    }
    Value::Object(m)
}

fn berth_health(c: &Container, checked: bool) -> Option<Value> {
    if !checked && c.health.is_none() {
        return None;
    }
    let mut m = Map::new();
    m.insert("status".into(), json!(container_health_status(c).as_str()));
    let h = c.health.as_ref();
    m.insert("output".into(), json!(h.map_or("", |h| h.output.as_str())));
    put(
        &mut m,
        "exitCode",
        h.and_then(|h| h.exit_code).map(|v| json!(v)),
    );
    put(&mut m, "checkedAt", h.and_then(|h| h.checked_at_ms).map(ts));
    put(&mut m, "receivedAt", h.map(|h| ts(h.received_at_ms)));
    Some(Value::Object(m))
}

/// The task's network mode: as the agent reported it, else as it was started.
fn network_mode(t: &Task) -> &str {
    t.network
        .as_ref()
        .map(|n| n.mode.as_str())
        .filter(|m| !m.is_empty())
        .unwrap_or(&t.network_mode)
}

/// The task's own address (bridge, awsvpc), once the agent reported it.
fn private_ipv4(t: &Task) -> Option<&str> {
    t.network
        .as_ref()
        .map(|n| n.private_ipv4.as_str())
        .filter(|ip| !ip.is_empty())
}

/// ECS's NetworkBinding list of one container: the host ports the agent bound (host and bridge
/// mode). An awsvpc task is reached on its own address, on the container's own ports.
fn network_bindings(t: &Task, c: &Container) -> Vec<Value> {
    let reported: Vec<Value> = t
        .network
        .iter()
        .flat_map(|n| &n.bindings)
        .filter(|b| b.container_name == c.name)
        .map(|b| {
            json!({
                "bindIP": if b.bind_ip.is_empty() { "0.0.0.0" } else { b.bind_ip.as_str() },
                "containerPort": b.container_port,
                "hostPort": b.host_port,
                "protocol": b.protocol,
            })
        })
        .collect();
    if !reported.is_empty() || network_mode(t) != "awsvpc" {
        return reported;
    }
    let Some(ip) = private_ipv4(t) else {
        return Vec::new();
    };
    c.port_mappings
        .iter()
        .map(|m| match (m.container_port, m.container_port_range) {
            (_, Some((a, b))) => json!({
                "bindIP": ip,
                "containerPortRange": format!("{a}-{b}"),
                "hostPortRange": format!("{a}-{b}"),
                "protocol": m.protocol.as_str(),
            }),
            (port, None) => json!({
                "bindIP": ip,
                "containerPort": port.unwrap_or(0),
                "hostPort": port.unwrap_or(0),
                "protocol": m.protocol.as_str(),
            }),
        })
        .collect()
}

/// ECS's NetworkInterface list: the task's own address, for bridge and awsvpc tasks.
fn network_interfaces(t: &Task) -> Vec<Value> {
    match (network_mode(t), private_ipv4(t)) {
        // As ECS: only an awsvpc task's containers have an interface (its ENI attachment's).
        ("awsvpc", Some(ip)) => vec![json!({
            "attachmentId": crate::domain::ids::attachment_id(&t.id),
            "privateIpv4Address": ip,
        })],
        _ => Vec::new(),
    }
}

/// An awsvpc task's ElasticNetworkInterface attachment, as ECS shows it: PRECREATED until the
/// agent reports the network, ATTACHED while the task runs, DELETED once it stopped.
fn awsvpc_attachment(t: &Task) -> Option<Value> {
    if network_mode(t) != "awsvpc" {
        return None;
    }
    let network = t.network.as_ref();
    let status = match (t.last_status, private_ipv4(t)) {
        (TaskStatus::Stopped, _) => "DELETED",
        (_, Some(_)) => "ATTACHED",
        (_, None) => "PRECREATED",
    };
    let mut details = vec![
        json!({"name": "subnetId", "value": TASK_SUBNET_ID}),
        json!({"name": "networkInterfaceId", "value": crate::domain::ids::eni_id(&t.id)}),
    ];
    if let Some(mac) = network.map(|n| &n.mac_address).filter(|m| !m.is_empty()) {
        details.push(json!({"name": "macAddress", "value": mac}));
    }
    if let Some(ip) = private_ipv4(t) {
        details.push(json!({"name": "privateIPv4Address", "value": ip}));
    }
    if !t.security_groups.is_empty() {
        details.push(json!({"name": "securityGroupIds", "value": t.security_groups.join(",")}));
    }
    Some(json!({
        "id": crate::domain::ids::attachment_id(&t.id),
        "type": "ElasticNetworkInterface",
        "status": status,
        "details": details,
    }))
}

fn resource(r: &Resource, integer_value: i64) -> Value {
    let mut v = json!({
        "name": r.name,
        "type": r.kind,
        "doubleValue": 0.0,
        "longValue": 0,
        "integerValue": integer_value,
    });
    if r.kind == "STRINGSET" {
        v["stringSetValue"] = json!(r.string_set_value);
    }
    v
}

/// ECS's ContainerInstanceHealthStatus, from the heartbeats' containerd health. Shown whether or
/// not the request asked for CONTAINER_INSTANCE_HEALTH (ECS's `include`): an extra member costs
/// clients nothing. The CONTAINER_RUNTIME detail is the last report, shown from the first
/// heartbeat on, also while the agent is away (its lastUpdated tells how old it is); the
/// overallStatus is INSUFFICIENT_DATA then.
pub fn instance_health(health: Option<&RuntimeHealth>, connected: bool) -> Value {
    let details: Vec<Value> = health
        .map(|h| {
            json!({
                "type": "CONTAINER_RUNTIME",
                "status": h.check_status().as_str(),
                "lastUpdated": ts(h.updated_at_ms),
                "lastStatusChange": ts(h.changed_at_ms),
            })
        })
        .into_iter()
        .collect();
    json!({
        "overallStatus": overall_health(health, connected).as_str(),
        "details": details,
    })
}

pub fn container_instance(arns: &Arns, v: &InstanceView) -> Value {
    let i = &v.instance;
    let info = &i.info;
    let registered: Vec<Value> = info
        .resources
        .iter()
        .map(|r| resource(r, r.integer_value))
        .collect();
    let remaining: Vec<Value> = info
        .resources
        .iter()
        .map(|r| {
            let used = match r.name.as_str() {
                "CPU" => v.used.cpu,
                "MEMORY" => v.used.memory,
                _ => 0,
            };
            let mut out = resource(r, r.integer_value - used);
            // As in ECS, the remaining PORTS list the ports taken: reserved and in use.
            let protocol = match r.name.as_str() {
                "PORTS" => Some(Protocol::Tcp),
                "PORTS_UDP" => Some(Protocol::Udp),
                _ => None,
            };
            if let Some(protocol) = protocol {
                let mut ports: Vec<u16> = v
                    .used_ports
                    .iter()
                    .filter(|p| p.protocol == protocol)
                    .flat_map(|p| p.first..=p.last)
                    .collect();
                ports.sort_unstable();
                ports.dedup();
                out["stringSetValue"] = json!(ports.iter().map(u16::to_string).collect::<Vec<_>>());
            }
            out
        })
        .collect();
    json!({
        "containerInstanceArn": arns.container_instance(&i.cluster, &i.id),
        "version": 1,
        "versionInfo": {
            "agentVersion": info.agent_version,
            "agentHash": info.agent_hash,
            "dockerVersion": format!("containerd {}", info.containerd_version),
        },
        "remainingResources": remaining,
        "registeredResources": registered,
        "status": i.status(),
        "agentConnected": v.connected,
        "healthStatus": instance_health(i.health.as_ref(), v.connected),
        "runningTasksCount": v.running_tasks,
        "pendingTasksCount": v.pending_tasks,
        "attributes": i.attributes().iter().map(|(n, val)| attribute(n, val)).collect::<Vec<_>>(),
        "registeredAt": ts(i.registered_at_ms),
        "attachments": [],
    })
}

/// ECS's Attribute: a capability has a name and no value.
fn attribute(name: &str, value: &str) -> Value {
    if value.is_empty() {
        json!({"name": name})
    } else {
        json!({"name": name, "value": value})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::task::tests::sample_task;
    use crate::domain::task::{ContainerHealth, HealthStatus};

    fn def(name: &str, essential: bool, health_check: bool) -> HealthDef {
        HealthDef {
            name: name.into(),
            essential,
            health_check,
        }
    }

    #[test]
    fn instance_health_shape() {
        assert_eq!(
            instance_health(None, true),
            json!({"overallStatus": "INSUFFICIENT_DATA", "details": []})
        );
        let h = RuntimeHealth {
            containerd_healthy: false,
            updated_at_ms: 1_700_000_002_500,
            changed_at_ms: 1_700_000_001_000,
        };
        let detail = json!({"type": "CONTAINER_RUNTIME", "status": "IMPAIRED",
            "lastUpdated": 1_700_000_002.5, "lastStatusChange": 1_700_000_001.0});
        assert_eq!(
            instance_health(Some(&h), true),
            json!({"overallStatus": "IMPAIRED", "details": [detail.clone()]})
        );
        assert_eq!(
            instance_health(Some(&h), false),
            json!({"overallStatus": "INSUFFICIENT_DATA", "details": [detail]})
        );
        let ok = RuntimeHealth {
            containerd_healthy: true,
            ..h
        };
        let v = instance_health(Some(&ok), true);
        assert_eq!(
            (&v["overallStatus"], &v["details"][0]["status"]),
            (&json!("OK"), &json!("OK"))
        );
    }

    #[test]
    fn health_shows_ecs_fields_and_berths_extension() {
        let arns = Arns::new("us-east-1", "000000000000");
        let mut t = sample_task();
        let mut side = t.containers[0].clone();
        side.name = "side".into();
        t.containers.push(side);

        // Not checked: ECS's UNKNOWN and no extension.
        let v = task(
            &arns,
            &t,
            &[def("app", true, false), def("side", true, false)],
        );
        assert_eq!(v["healthStatus"], "UNKNOWN");
        assert_eq!(v["containers"][0]["healthStatus"], "UNKNOWN");
        assert!(v["containers"][0]["berth"].get("health").is_none(), "{v}");

        // Checked, not reported yet.
        let defs = [def("app", true, true), def("side", false, false)];
        let v = task(&arns, &t, &defs);
        assert_eq!(
            v["containers"][0]["berth"]["health"],
            json!({"status": "UNKNOWN", "output": ""})
        );
        assert!(v["containers"][1]["berth"].get("health").is_none());

        t.containers[0].health = Some(ContainerHealth {
            status: HealthStatus::Unhealthy,
            checked_at_ms: Some(1_700_000_000_500),
            exit_code: Some(-1),
            output: "timed out".into(),
            received_at_ms: 1_700_000_001_000,
        });
        let v = task(&arns, &t, &defs);
        assert_eq!(v["healthStatus"], "UNHEALTHY");
        assert_eq!(v["containers"][0]["healthStatus"], "UNHEALTHY");
        assert_eq!(
            v["containers"][0]["berth"]["health"],
            json!({"status": "UNHEALTHY", "output": "timed out", "exitCode": -1,
                   "checkedAt": 1_700_000_000.5, "receivedAt": 1_700_000_001.0})
        );
    }
}
