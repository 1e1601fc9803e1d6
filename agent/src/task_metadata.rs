//! The ECS task metadata endpoint, version 4 (and version 3, with the same answers), as the
//! Amazon ECS container agent serves it: `${ECS_CONTAINER_METADATA_URI_V4}` is the container,
//! `/task` its task, `/stats` and `/task/stats` Docker-shaped statistics.
//!
//! How a task reaches it: containers of bridge and awsvpc tasks get the URIs
//! `http://169.254.170.2/v4/<endpoint id>` (and `/v3/`); the agent's nftables table DNATs that
//! address's port 80, from the bridge and task subnets, to the agent's listener on the bridge
//! address or the awsvpc gateway (`METADATA_PORT`), so a packet never leaves the host and the
//! listener sees the task's own address. A task sees only its own metadata: the endpoint id is
//! random (128 bits) and must belong to a task whose address is the client's.
//!
//! The answers are pure functions of the store's tasks and a stats reading; `serve` is the I/O.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::warn;

use crate::cgroups::TaskCgroups;
use crate::http_server::{self, Reply};
use crate::metrics::{self, TaskUsage};
use crate::model::{rfc3339, NetworkMode};
use crate::store::Store;
use crate::task_state::{ContainerState, TaskState};

pub use crate::netdef::{METADATA_ADDRESS, METADATA_PORT};

pub const URI_V4_VAR: &str = "ECS_CONTAINER_METADATA_URI_V4";
pub const URI_V3_VAR: &str = "ECS_CONTAINER_METADATA_URI";

/// A fresh endpoint id: 128 random bits, written as a UUID.
pub fn new_endpoint_id() -> String {
    let mut bytes = [0u8; 16];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_err()
    {
        // Not expected on Linux; still unique, if less unguessable.
        bytes[..8].copy_from_slice(&fastrand::u64(..).to_le_bytes());
        bytes[8..].copy_from_slice(&fastrand::u64(..).to_le_bytes());
    }
    let h = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Sets the metadata URIs in a container's environment (replacing any the definition set, as
/// ECS does), for the network modes whose tasks can reach the endpoint.
pub fn add_uris(env: &mut Vec<(String, String)>, mode: NetworkMode, endpoint_id: &str) {
    if endpoint_id.is_empty() || !matches!(mode, NetworkMode::Bridge | NetworkMode::Awsvpc) {
        return;
    }
    env.retain(|(k, _)| k != URI_V4_VAR && k != URI_V3_VAR);
    env.push((
        URI_V4_VAR.into(),
        format!("http://{METADATA_ADDRESS}/v4/{endpoint_id}"),
    ));
    env.push((
        URI_V3_VAR.into(),
        format!("http://{METADATA_ADDRESS}/v3/{endpoint_id}"),
    ));
}

/// What the agent knows about itself that the task answer carries.
#[derive(Debug, Clone)]
pub struct HostFacts {
    pub cluster: String,
    pub availability_zone: String,
    /// The host's memory in bytes: a container's memory limit when it has none of its own.
    pub memory_bytes: u64,
    pub online_cpus: u64,
}

/// What to answer to a GET of `path` from `peer`. `stats` reads a task's usage (only called
/// for the stats paths).
pub fn respond(
    path: &str,
    peer: IpAddr,
    host: &HostFacts,
    tasks: &[TaskState],
    stats: &dyn Fn(&TaskState) -> TaskUsage,
    now: SystemTime,
) -> Reply {
    let mut parts = path.trim_end_matches('/').split('/').skip(1);
    let (version, id) = match (parts.next(), parts.next()) {
        (Some(v @ ("v3" | "v4")), Some(id)) if !id.is_empty() => (v, id),
        _ => return not_found("the task metadata endpoint serves /v4/<id> and /v3/<id>"),
    };
    let rest: Vec<&str> = parts.collect();
    let found = tasks.iter().find_map(|t| {
        t.containers
            .iter()
            .find(|c| c.metadata_endpoint_id == id)
            .map(|c| (t, c))
    });
    // An id of another task, asked by this one, is as unknown as a made-up id.
    let Some((task, container)) = found.filter(|(t, _)| owns(t, peer)) else {
        return not_found("no container has this metadata endpoint id");
    };
    let v4 = version == "v4";
    let body = match rest.as_slice() {
        [] => container_json(task, container, host, v4),
        ["task"] => task_json(task, host, v4),
        ["stats"] => {
            let usage = stats(task);
            stats_json(task, container, &usage, host, now)
        }
        ["task", "stats"] => {
            let usage = stats(task);
            let all: Map<String, Value> = task
                .containers
                .iter()
                .map(|c| (c.runtime_id.clone(), stats_json(task, c, &usage, host, now)))
                .collect();
            Value::Object(all)
        }
        _ => return not_found("the paths are <uri>, /task, /stats and /task/stats"),
    };
    Reply::json(200, body.to_string())
}

fn not_found(why: &str) -> Reply {
    Reply::json(404, json!({ "error": why }).to_string())
}

/// Whether `peer` is the task's own address (what its traffic carries after the DNAT).
fn owns(task: &TaskState, peer: IpAddr) -> bool {
    let address = task.network.as_ref().and_then(|n| n.address);
    matches!((address, peer), (Some(a), IpAddr::V4(p)) if a == p)
}

fn time_ms(ms: u64) -> String {
    rfc3339(UNIX_EPOCH + Duration::from_millis(ms))
}

fn task_json(task: &TaskState, host: &HostFacts, v4: bool) -> Value {
    let mut t = json!({
        "Cluster": host.cluster,
        "TaskARN": task.spec.arn,
        "Family": task.spec.family,
        "Revision": task.spec.revision.to_string(),
        "DesiredStatus": task.desired.ecs_name(),
        "KnownStatus": task.known.ecs_name(),
        "Containers": task.containers.iter()
            .map(|c| container_json(task, c, host, v4))
            .collect::<Vec<_>>(),
        "AvailabilityZone": host.availability_zone,
    });
    let mut limits = Map::new();
    if task.spec.cpu > 0 {
        // vCPUs, as ECS gives a task-level cpu here.
        limits.insert("CPU".into(), json!(f64::from(task.spec.cpu) / 1024.0));
    }
    if task.spec.memory_mib > 0 {
        limits.insert("Memory".into(), json!(task.spec.memory_mib));
    }
    if !limits.is_empty() {
        t["Limits"] = Value::Object(limits);
    }
    if let Some(pull) = task.pull {
        t["PullStartedAt"] = json!(time_ms(pull.started_at_ms));
        t["PullStoppedAt"] = json!(time_ms(pull.stopped_at_ms));
    }
    if let Some(stopped) = task.stopped_at_ms {
        t["ExecutionStoppedAt"] = json!(time_ms(stopped));
    }
    if v4 {
        t["LaunchType"] = json!("EXTERNAL");
        if let Some(service) = &task.service_name {
            t["ServiceName"] = json!(service);
        }
    }
    t
}

fn container_json(task: &TaskState, c: &ContainerState, host: &HostFacts, v4: bool) -> Value {
    let spec = task.spec.containers.iter().find(|s| s.name == c.name);
    let labels: BTreeMap<&str, String> = [
        ("com.amazonaws.ecs.cluster", host.cluster.clone()),
        ("com.amazonaws.ecs.container-name", c.name.clone()),
        ("com.amazonaws.ecs.task-arn", task.spec.arn.clone()),
        (
            "com.amazonaws.ecs.task-definition-family",
            task.spec.family.clone(),
        ),
        (
            "com.amazonaws.ecs.task-definition-version",
            task.spec.revision.to_string(),
        ),
    ]
    .into_iter()
    .collect();
    let mut v = json!({
        "DockerId": c.runtime_id,
        "Name": c.name,
        "DockerName": c.runtime_id,
        "Image": spec.map(|s| s.image.as_str()).unwrap_or(""),
        "ImageID": c.image_digest.as_deref().unwrap_or(""),
        "Labels": labels,
        "DesiredStatus": task.desired.ecs_name(),
        "KnownStatus": c.known.ecs_name(),
        "Limits": {
            "CPU": spec.map_or(0, |s| s.cpu),
            "Memory": spec.map_or(0, |s| s.memory_mib),
        },
        "Type": "NORMAL",
        "Networks": networks(task, v4),
    });
    if let Some(started) = c.started_at_ms {
        v["StartedAt"] = json!(time_ms(started));
    }
    if let Some(code) = c.exit_code {
        v["ExitCode"] = json!(code);
    }
    if let Some(spec) = spec {
        if spec.extra.restart_policy.is_some() {
            v["RestartCount"] = json!(c.restart_count);
        }
        if let Some(driver) = &spec.extra.log_driver {
            v["LogDriver"] = json!(driver);
            let options: BTreeMap<&str, &str> = spec
                .extra
                .log_options
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            v["LogOptions"] = json!(options);
        }
        if v4 {
            let ports = ports(task, &c.name);
            if !ports.is_empty() {
                v["Ports"] = Value::Array(ports);
            }
        }
    }
    if let Some(health) = &c.health {
        let mut h = json!({ "status": health.status.as_str() });
        if let Some(last) = &health.last {
            h["statusSince"] = json!(time_ms(last.ended_at_ms));
            if let Some(code) = last.exit_code {
                h["exitCode"] = json!(code);
            }
            h["output"] = json!(last.output);
        }
        v["Health"] = h;
    }
    v
}

fn networks(task: &TaskState, v4: bool) -> Value {
    let Some(net) = task.network.as_ref() else {
        return json!([{ "NetworkMode": task.spec.network_mode.as_str() }]);
    };
    let mut n = json!({ "NetworkMode": net.mode.as_str() });
    if let Some(address) = net.address {
        n["IPv4Addresses"] = json!([address.to_string()]);
    }
    if v4 && net.mode == NetworkMode::Awsvpc {
        n["AttachmentIndex"] = json!(0);
        if let Some(mac) = &net.mac {
            n["MACAddress"] = json!(mac);
        }
        if let Some(address) = net.address {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(net.prefix_len.min(32)))
                .unwrap_or(0);
            let subnet = Ipv4Addr::from(u32::from(address) & mask);
            n["IPv4SubnetCIDRBlock"] = json!(format!("{subnet}/{}", net.prefix_len));
        }
        if let Some(gateway) = net.gateway {
            n["SubnetGatewayIpv4Address"] = json!(format!("{gateway}/{}", net.prefix_len));
        }
    }
    json!([n])
}

fn ports(task: &TaskState, container: &str) -> Vec<Value> {
    let Some(net) = task.network.as_ref() else {
        return Vec::new();
    };
    net.bindings
        .iter()
        .filter(|b| b.container == container)
        .map(|b| {
            json!({
                "ContainerPort": b.container_port,
                "Protocol": b.protocol.as_str(),
                "HostPort": b.host_port,
                "HostIp": "0.0.0.0",
            })
        })
        .collect()
}

/// Docker's stats JSON (what `docker stats` and ECS return) for one container, from what the
/// cgroups and the task's veth say now. No earlier reading is kept: `precpu_stats` is zero, as
/// in Docker's first sample.
fn stats_json(
    task: &TaskState,
    c: &ContainerState,
    usage: &TaskUsage,
    host: &HostFacts,
    now: SystemTime,
) -> Value {
    let reading = usage
        .containers
        .iter()
        .find(|u| u.name == c.name)
        .map(|u| u.usage)
        .unwrap_or_default();
    let limit = task
        .spec
        .containers
        .iter()
        .find(|s| s.name == c.name)
        .map(|s| u64::from(s.memory_mib) * 1024 * 1024)
        .filter(|l| *l > 0)
        .unwrap_or(host.memory_bytes);
    let mut v = json!({
        "read": rfc3339(now),
        "preread": "0001-01-01T00:00:00Z",
        "id": c.runtime_id,
        "name": format!("/{}", c.runtime_id),
        "num_procs": 0,
        "pids_stats": {},
        "cpu_stats": {
            "cpu_usage": {
                "total_usage": reading.cpu_seconds.map_or(0, |s| (s * 1e9) as u64),
            },
            "online_cpus": host.online_cpus,
        },
        "precpu_stats": { "cpu_usage": { "total_usage": 0 }, "online_cpus": host.online_cpus },
        "memory_stats": {
            "usage": reading.memory_bytes.unwrap_or(0),
            "limit": limit,
        },
    });
    if let Some(net) = usage.network {
        v["networks"] = json!({
            crate::network::host::TASK_IFNAME: {
                "rx_bytes": net.received_bytes,
                "tx_bytes": net.sent_bytes,
            }
        });
    }
    v
}

/// What the listeners read from.
pub struct Sources {
    pub host: HostFacts,
    pub store: Arc<Store>,
    pub cgroups: Arc<dyn TaskCgroups>,
}

/// Serves the endpoint on `listener` (one of the bridge and gateway addresses) until
/// `shutdown`.
pub async fn serve(listener: TcpListener, sources: Arc<Sources>, shutdown: watch::Receiver<bool>) {
    let handler: http_server::Handler = Arc::new(move |path, _query, peer| {
        let tasks = match sources.store.unfinished_tasks() {
            Ok(t) => t,
            Err(e) => {
                warn!(error = %e, "task metadata: cannot read the store");
                return Reply::json(500, "{}".into());
            }
        };
        let stats = |task: &TaskState| {
            metrics::host_snapshot(std::slice::from_ref(task), sources.cgroups.as_ref())
                .tasks
                .pop()
                .unwrap_or_default()
        };
        respond(path, peer, &sources.host, &tasks, &stats, SystemTime::now())
    });
    http_server::serve(listener, "task metadata endpoint", handler, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::CgroupUsage;
    use crate::metrics::{ContainerUsage, NetworkCounters};
    use crate::model::{ContainerSpec, TaskSpec, TaskStatus};
    use crate::network::TaskNetwork;

    fn container(name: &str) -> ContainerSpec {
        serde_json::from_value(json!({
            "name": name, "image": "busybox:test", "essential": true, "entry_point": null,
            "command": null, "environment": [], "working_directory": null, "user": null,
            "cpu": 128, "memory_mib": 64, "memory_reservation_mib": 0, "stop_timeout_secs": 30,
        }))
        .expect("a container spec")
    }

    fn task(id: &str, address: &str, mode: NetworkMode) -> TaskState {
        let spec = TaskSpec {
            arn: format!("arn:aws:ecs:local:000000000000:task/lab/{id}"),
            family: "web".into(),
            revision: 7,
            network_mode: mode,
            cpu: 256,
            memory_mib: 128,
            containers: vec![container("app"), container("side")],
            volumes: Vec::new(),
            ingress: None,
        };
        let mut t = TaskState::new(spec, TaskStatus::Running, 0);
        for (i, c) in t.containers.iter_mut().enumerate() {
            c.metadata_endpoint_id = format!("{id}-endpoint-{i}");
        }
        t.network = Some(TaskNetwork {
            mode,
            task_id: id.into(),
            netns: None,
            host_veth: None,
            address: Some(address.parse().unwrap()),
            prefix_len: 24,
            gateway: Some("10.2.0.1".parse().unwrap()),
            mac: Some("0a:58:0a:02:00:05".into()),
            bindings: Vec::new(),
            ingress: None,
        });
        t
    }

    fn host() -> HostFacts {
        HostFacts {
            cluster: "lab".into(),
            availability_zone: "lab-1a".into(),
            memory_bytes: 8 << 30,
            online_cpus: 2,
        }
    }

    fn usage(_: &TaskState) -> TaskUsage {
        TaskUsage {
            containers: vec![ContainerUsage {
                name: "app".into(),
                usage: CgroupUsage {
                    cpu_seconds: Some(2.5),
                    memory_bytes: Some(1 << 20),
                },
                restarts: 0,
            }],
            network: Some(NetworkCounters {
                received_bytes: 10,
                sent_bytes: 20,
            }),
            ..Default::default()
        }
    }

    fn get(path: &str, peer: &str, tasks: &[TaskState]) -> (u16, Value) {
        let r = respond(
            path,
            peer.parse().unwrap(),
            &host(),
            tasks,
            &usage,
            UNIX_EPOCH,
        );
        (r.status, serde_json::from_str(&r.body).unwrap())
    }

    #[test]
    fn the_container_and_its_task_in_ecs_shape() {
        let mut tasks = [task("a1", "10.2.0.5", NetworkMode::Awsvpc)];
        tasks[0].service_name = Some("web".into());
        let (status, c) = get("/v4/a1-endpoint-0", "10.2.0.5", &tasks);
        assert_eq!(status, 200);
        assert_eq!(c["Name"], "app");
        assert_eq!(c["DockerId"], "a1-app");
        assert_eq!(c["Image"], "busybox:test");
        assert_eq!(c["Labels"]["com.amazonaws.ecs.cluster"], "lab");
        assert_eq!(
            c["Labels"]["com.amazonaws.ecs.task-definition-version"],
            "7"
        );
        assert_eq!(c["Limits"], json!({"CPU": 128, "Memory": 64}));
        assert_eq!(c["Type"], "NORMAL");
        let net = &c["Networks"][0];
        assert_eq!(net["NetworkMode"], "awsvpc");
        assert_eq!(net["IPv4Addresses"], json!(["10.2.0.5"]));
        assert_eq!(net["IPv4SubnetCIDRBlock"], "10.2.0.0/24");
        assert_eq!(net["MACAddress"], "0a:58:0a:02:00:05");

        let (status, t) = get("/v4/a1-endpoint-1/task", "10.2.0.5", &tasks);
        assert_eq!(status, 200);
        assert_eq!(t["Cluster"], "lab");
        assert_eq!(t["TaskARN"], "arn:aws:ecs:local:000000000000:task/lab/a1");
        assert_eq!(t["Revision"], "7");
        assert_eq!(t["AvailabilityZone"], "lab-1a");
        assert_eq!(t["LaunchType"], "EXTERNAL");
        assert_eq!(t["ServiceName"], "web");
        assert_eq!(t["Limits"], json!({"CPU": 0.25, "Memory": 128}));
        assert_eq!(t["Containers"].as_array().unwrap().len(), 2);
        // v3: the same container, without v4's extras.
        let (status, c3) = get("/v3/a1-endpoint-0", "10.2.0.5", &tasks);
        assert_eq!(status, 200);
        assert_eq!(c3["Name"], "app");
        assert!(c3["Networks"][0].get("MACAddress").is_none());
        let (_, t3) = get("/v3/a1-endpoint-0/task", "10.2.0.5", &tasks);
        assert!(t3.get("ServiceName").is_none(), "{t3}");
    }

    #[test]
    fn stats_in_dockers_shape() {
        let tasks = [task("a1", "10.2.0.5", NetworkMode::Bridge)];
        let (status, s) = get("/v4/a1-endpoint-0/stats", "10.2.0.5", &tasks);
        assert_eq!(status, 200);
        assert_eq!(s["cpu_stats"]["cpu_usage"]["total_usage"], 2_500_000_000u64);
        assert_eq!(s["memory_stats"]["usage"], 1 << 20);
        assert_eq!(s["memory_stats"]["limit"], 64u64 << 20);
        assert_eq!(s["networks"]["eth0"]["rx_bytes"], 10);
        assert_eq!(s["read"], "1970-01-01T00:00:00Z");
        let (status, all) = get("/v4/a1-endpoint-0/task/stats", "10.2.0.5", &tasks);
        assert_eq!(status, 200);
        let all = all.as_object().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all["a1-side"]["memory_stats"]["usage"], 0);
    }

    #[test]
    fn a_task_sees_only_its_own_metadata() {
        let tasks = [
            task("a1", "10.2.0.5", NetworkMode::Awsvpc),
            task("b2", "10.2.0.6", NetworkMode::Awsvpc),
        ];
        // b2 asking with a1's id, and anyone with a made-up id: the same 404.
        assert_eq!(get("/v4/a1-endpoint-0", "10.2.0.6", &tasks).0, 404);
        assert_eq!(get("/v4/a1-endpoint-0", "127.0.0.1", &tasks).0, 404);
        assert_eq!(get("/v4/nope", "10.2.0.5", &tasks).0, 404);
        assert_eq!(get("/v4/b2-endpoint-0", "10.2.0.6", &tasks).0, 200);
        assert_eq!(get("/v4/b2-endpoint-0/other", "10.2.0.6", &tasks).0, 404);
        assert_eq!(get("/v2/metadata", "10.2.0.6", &tasks).0, 404);
    }

    #[test]
    fn uris_go_to_bridge_and_awsvpc_containers_over_their_own() {
        let mut env = vec![
            ("A".to_string(), "1".to_string()),
            (URI_V4_VAR.to_string(), "http://elsewhere".to_string()),
        ];
        add_uris(&mut env, NetworkMode::Bridge, "abc");
        assert_eq!(
            env,
            vec![
                ("A".to_string(), "1".to_string()),
                (
                    URI_V4_VAR.to_string(),
                    "http://169.254.170.2/v4/abc".to_string()
                ),
                (
                    URI_V3_VAR.to_string(),
                    "http://169.254.170.2/v3/abc".to_string()
                ),
            ]
        );
        let mut host = Vec::new();
        add_uris(&mut host, NetworkMode::Host, "abc");
        assert!(host.is_empty());
        let id = new_endpoint_id();
        assert_eq!(id.len(), 36);
        assert_ne!(id, new_endpoint_id());
    }
}
