//! Domain -> ECS JSON response shapes (member names as in botocore's ECS model).

use serde_json::{json, Map, Value};

use crate::control::InstanceView;
use crate::ids::Arns;
use crate::instance::Resource;
use crate::placement::PlacementFailure;
use crate::store::{ClusterCounts, TaskDefRecord};
use crate::task::Task;

/// ECS timestamps are epoch seconds.
pub fn ts(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

fn put(m: &mut Map<String, Value>, key: &str, v: Option<Value>) {
    if let Some(v) = v {
        m.insert(key.to_string(), v);
    }
}

pub fn cluster(arns: &Arns, name: &str, c: ClusterCounts) -> Value {
    json!({
        "clusterArn": arns.cluster(name),
        "clusterName": name,
        "status": "ACTIVE",
        "registeredContainerInstancesCount": c.instances,
        "runningTasksCount": c.running_tasks,
        "pendingTasksCount": c.pending_tasks,
        "activeServicesCount": 0,
        "statistics": [],
        "tags": [],
        "settings": [],
        "capacityProviders": [],
        "defaultCapacityProviderStrategy": [],
    })
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
    m.insert(
        "status".into(),
        json!(if r.active { "ACTIVE" } else { "INACTIVE" }),
    );
    m.insert("compatibilities".into(), json!(["EC2"]));
    m.insert("registeredAt".into(), ts(r.registered_at_ms));
    put(&mut m, "deregisteredAt", r.deregistered_at_ms.map(ts));
    for (key, default) in [
        ("networkMode", json!("bridge")),
        ("volumes", json!([])),
        ("placementConstraints", json!([])),
        ("requiresAttributes", json!([])),
    ] {
        m.entry(key).or_insert(default);
    }
    Value::Object(m)
}

pub fn tags(r: &TaskDefRecord) -> Value {
    r.raw.get("tags").cloned().unwrap_or_else(|| json!([]))
}

pub fn task(arns: &Arns, t: &Task) -> Value {
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
            m.insert("lastStatus".into(), json!(c.last_status.as_str()));
            put(&mut m, "exitCode", c.exit_code.map(|v| json!(v)));
            put(&mut m, "reason", c.reason.as_ref().map(|v| json!(v)));
            m.insert("restartCount".into(), json!(c.restart_count));
            m.insert("networkBindings".into(), json!([]));
            m.insert("networkInterfaces".into(), json!([]));
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
    m.insert("createdAt".into(), ts(t.created_at_ms));
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
    m.insert("launchType".into(), json!("EC2"));
    put(&mut m, "cpu", t.cpu.map(|v| json!(v.to_string())));
    put(&mut m, "memory", t.memory.map(|v| json!(v.to_string())));
    m.insert("overrides".into(), t.overrides.clone());
    m.insert("version".into(), json!(t.version));
    m.insert("attachments".into(), json!([]));
    m.insert("tags".into(), json!([]));
    m.insert("containers".into(), Value::Array(containers));
    Value::Object(m)
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
            resource(r, r.integer_value - used)
        })
        .collect();
    json!({
        "containerInstanceArn": arns.container_instance(&i.cluster, &i.id),
        "ec2InstanceId": "",
        "version": 1,
        "versionInfo": {
            "agentVersion": info.agent_version,
            "agentHash": info.agent_hash,
            "dockerVersion": format!("containerd {}", info.containerd_version),
        },
        "remainingResources": remaining,
        "registeredResources": registered,
        "status": if i.revoked { "INACTIVE" } else { "ACTIVE" },
        "agentConnected": v.connected,
        "runningTasksCount": v.running_tasks,
        "pendingTasksCount": v.pending_tasks,
        "attributes": info.attributes.iter().map(|(n, val)| json!({"name": n, "value": val})).collect::<Vec<_>>(),
        "registeredAt": ts(i.registered_at_ms),
        "attachments": [],
        "tags": [],
    })
}
