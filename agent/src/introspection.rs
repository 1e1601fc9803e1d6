//! The ECS agent's introspection API (127.0.0.1:51678 by default): `/v1/metadata` and
//! `/v1/tasks` (all tasks, or one by `?taskarn=` or `?dockerid=`), in the shapes and with the
//! status codes the Amazon ECS container agent uses, so scripts written against it work here.
//! The answers are built from the agent's store by pure functions; `serve` is the only I/O.
//! The same listener serves the agent's Prometheus `/metrics` (`crate::metrics`).

use std::sync::{Arc, OnceLock};

use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::warn;

use crate::cgroups::TaskCgroups;
use crate::http_server::{self, Reply};
use crate::metrics::{self, AgentMetrics};
use crate::model::{TaskSpec, VolumeKind};
use crate::store::Store;
use crate::task_state::{ContainerState, TaskState};

/// The ECS agent treats a `dockerid` of at most this many characters as a prefix.
const SHORT_ID_LEN: usize = 12;

/// Who this agent is, for `/v1/metadata`. The instance ARN is known once registration is done;
/// until then it is null, as the ECS agent answers before it has registered.
#[derive(Debug)]
pub struct AgentIdentity {
    pub cluster: String,
    pub version: String,
    pub container_instance_arn: OnceLock<String>,
}

impl AgentIdentity {
    pub fn new(cluster: &str) -> Self {
        Self {
            cluster: cluster.to_string(),
            version: format!("Berth Agent - v{}", env!("CARGO_PKG_VERSION")),
            container_instance_arn: OnceLock::new(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct MetadataResponse<'a> {
    cluster: &'a str,
    container_instance_arn: Option<&'a str>,
    version: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TasksResponse {
    tasks: Vec<TaskResponse>,
}

/// ECS's v1 TaskResponse. An empty one (zero values, null containers) is also what the ECS
/// agent sends with its 400 and 404 answers.
#[derive(Serialize, Default)]
#[serde(rename_all = "PascalCase")]
struct TaskResponse {
    arn: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    desired_status: String,
    known_status: String,
    family: String,
    version: String,
    containers: Option<Vec<ContainerResponse>>,
}

#[derive(Serialize)]
struct ContainerResponse {
    #[serde(rename = "DockerId")]
    docker_id: String,
    #[serde(rename = "DockerName")]
    docker_name: String,
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Ports", skip_serializing_if = "Vec::is_empty")]
    ports: Vec<PortResponse>,
    #[serde(rename = "Networks", skip_serializing_if = "Vec::is_empty")]
    networks: Vec<NetworkResponse>,
    #[serde(rename = "Volumes", skip_serializing_if = "Vec::is_empty")]
    volumes: Vec<VolumeResponse>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PortResponse {
    container_port: u16,
    protocol: &'static str,
    host_port: u16,
}

#[derive(Serialize)]
struct NetworkResponse {
    #[serde(rename = "NetworkMode")]
    network_mode: &'static str,
    #[serde(rename = "IPv4Addresses", skip_serializing_if = "Vec::is_empty")]
    ipv4_addresses: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct VolumeResponse {
    docker_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    destination: String,
}

/// The answer to a GET of `path?query`, given the agent's identity and the tasks it holds.
pub fn respond(
    path: &str,
    query: Option<&str>,
    identity: &AgentIdentity,
    tasks: &[TaskState],
) -> Reply {
    match path.trim_end_matches('/') {
        "/v1/metadata" => json(
            200,
            &MetadataResponse {
                cluster: &identity.cluster,
                container_instance_arn: identity.container_instance_arn.get().map(String::as_str),
                version: &identity.version,
            },
        ),
        "/v1/tasks" => tasks_response(query, tasks),
        _ => Reply::json(
            404,
            r#"{"error":"no such path; this listener serves /v1/metadata, /v1/tasks and /metrics"}"#
                .into(),
        ),
    }
}

fn tasks_response(query: Option<&str>, tasks: &[TaskState]) -> Reply {
    let docker_id = query_value(query, "dockerid");
    let task_arn = query_value(query, "taskarn");
    let empty = || TaskResponse::default();
    match (docker_id, task_arn) {
        (Some(_), Some(_)) => json(400, &empty()),
        (Some(id), None) => {
            let matches: Vec<&TaskState> = tasks
                .iter()
                .filter(|t| {
                    t.containers.iter().any(|c| {
                        if id.len() > SHORT_ID_LEN {
                            c.runtime_id == id
                        } else {
                            !id.is_empty() && c.runtime_id.starts_with(&id)
                        }
                    })
                })
                .collect();
            match matches.as_slice() {
                [one] => json(200, &task_response(one)),
                [] => json(404, &empty()),
                _ => json(400, &empty()),
            }
        }
        (None, Some(arn)) => match tasks.iter().find(|t| t.spec.arn == arn) {
            Some(t) => json(200, &task_response(t)),
            None => json(404, &empty()),
        },
        (None, None) => json(
            200,
            &TasksResponse {
                tasks: tasks.iter().map(task_response).collect(),
            },
        ),
    }
}

fn task_response(task: &TaskState) -> TaskResponse {
    TaskResponse {
        arn: task.spec.arn.clone(),
        desired_status: task.desired.ecs_name().to_string(),
        known_status: task.known.ecs_name().to_string(),
        family: task.spec.family.clone(),
        version: task.spec.revision.to_string(),
        containers: Some(
            task.containers
                .iter()
                .map(|c| container_response(task, c))
                .collect(),
        ),
    }
}

fn container_response(task: &TaskState, container: &ContainerState) -> ContainerResponse {
    let spec = task
        .spec
        .containers
        .iter()
        .find(|s| s.name == container.name);
    let network = task.network.as_ref();
    let mode = task.spec.network_mode;
    let ports = match network {
        Some(n) if !n.bindings.is_empty() => n
            .bindings
            .iter()
            .filter(|b| b.container == container.name)
            .map(|b| PortResponse {
                container_port: b.container_port,
                protocol: b.protocol.as_str(),
                host_port: b.host_port,
            })
            .collect(),
        // awsvpc publishes nothing on the host: ECS shows each container port as its own.
        _ => spec
            .map(|s| {
                s.extra
                    .port_mappings
                    .iter()
                    .filter_map(|m| m.container_port.map(|p| (p, m.protocol)))
                    .map(|(port, protocol)| PortResponse {
                        container_port: port,
                        protocol: protocol.as_str(),
                        host_port: port,
                    })
                    .collect()
            })
            .unwrap_or_default(),
    };
    ContainerResponse {
        docker_id: container.runtime_id.clone(),
        docker_name: container.runtime_id.clone(),
        name: container.name.clone(),
        ports,
        networks: vec![NetworkResponse {
            network_mode: mode.as_str(),
            ipv4_addresses: network
                .and_then(|n| n.address)
                .map(|a| vec![a.to_string()])
                .unwrap_or_default(),
        }],
        volumes: spec
            .map(|s| volumes(&task.spec, &s.extra.mount_points))
            .unwrap_or_default(),
    }
}

fn volumes(spec: &TaskSpec, mounts: &[crate::model::MountPoint]) -> Vec<VolumeResponse> {
    mounts
        .iter()
        .map(|m| VolumeResponse {
            docker_name: m.source_volume.clone(),
            source: spec
                .volumes
                .iter()
                .find(|v| v.name == m.source_volume)
                .and_then(|v| match &v.kind {
                    VolumeKind::Host { source_path } => Some(source_path.clone()),
                    VolumeKind::Task => None,
                }),
            destination: m.container_path.clone(),
        })
        .collect()
}

fn json<T: Serialize>(status: u16, value: &T) -> Reply {
    Reply::json(
        status,
        serde_json::to_string(value).unwrap_or_else(|_| "{}".into()),
    )
}

/// The first value of `name` in a query string, percent-decoded (task ARNs arrive with their
/// colons and slashes encoded or not, depending on the client).
fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| percent_decode(value))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the listener reads from: the store's tasks, and for `/metrics` the agent's metrics
/// and the cgroups the tasks' usage is read from.
pub struct Sources {
    pub identity: Arc<AgentIdentity>,
    pub store: Arc<Store>,
    pub metrics: Arc<AgentMetrics>,
    pub cgroups: Arc<dyn TaskCgroups>,
}

/// Serves the introspection API and `/metrics` on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, sources: Sources, shutdown: watch::Receiver<bool>) {
    let handler: http_server::Handler = Arc::new(move |path, query, _peer| {
        let tasks = match sources.store.unfinished_tasks() {
            Ok(t) => t,
            Err(e) => {
                warn!(error = %e, "introspection: cannot read the store");
                return Reply::json(500, "{}".into());
            }
        };
        if path == "/metrics" {
            let host = metrics::host_snapshot(&tasks, sources.cgroups.as_ref());
            return Reply {
                status: 200,
                content_type: metrics::CONTENT_TYPE,
                body: sources.metrics.render(&host),
            };
        }
        respond(path, query, &sources.identity, &tasks)
    });
    http_server::serve(listener, "introspection", handler, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContainerSpec, NetworkMode, TaskStatus};
    use crate::netdef::Protocol;
    use crate::network::{PortBinding, TaskNetwork};
    use serde_json::Value;

    fn container(name: &str) -> ContainerSpec {
        serde_json::from_value(serde_json::json!({
            "name": name, "image": "busybox", "essential": true, "entry_point": null,
            "command": null, "environment": [], "working_directory": null, "user": null,
            "cpu": 0, "memory_mib": 0, "memory_reservation_mib": 0, "stop_timeout_secs": 30,
        }))
        .expect("a container spec")
    }

    fn task(id: &str, names: &[&str], mode: NetworkMode) -> TaskState {
        let spec = TaskSpec {
            arn: format!("arn:aws:ecs:local:000000000000:task/lab/{id}"),
            family: "web".into(),
            revision: 3,
            network_mode: mode,
            cpu: 0,
            memory_mib: 0,
            containers: names.iter().map(|n| container(n)).collect(),
            volumes: Vec::new(),
            ingress: None,
        };
        TaskState::new(spec, TaskStatus::Running, 0)
    }

    fn identity() -> AgentIdentity {
        AgentIdentity::new("lab")
    }

    fn body(r: &Reply) -> Value {
        serde_json::from_str(&r.body).expect("JSON")
    }

    #[test]
    fn metadata_shows_a_null_arn_until_registration_then_the_arn() {
        let id = identity();
        let before = respond("/v1/metadata", None, &id, &[]);
        assert_eq!(before.status, 200);
        assert_eq!(body(&before)["ContainerInstanceArn"], Value::Null);
        assert_eq!(body(&before)["Cluster"], "lab");
        assert!(body(&before)["Version"]
            .as_str()
            .unwrap()
            .starts_with("Berth Agent - v"));
        id.container_instance_arn
            .set("arn:aws:ecs:local:0:container-instance/lab/abc".into())
            .unwrap();
        let after = body(&respond("/v1/metadata", None, &id, &[]));
        assert_eq!(
            after["ContainerInstanceArn"],
            "arn:aws:ecs:local:0:container-instance/lab/abc"
        );
    }

    #[test]
    fn tasks_lists_every_task_in_ecs_shape() {
        let mut bridge = task(
            "0123456789abcdef0123456789abcdef",
            &["app"],
            NetworkMode::Bridge,
        );
        bridge.network = Some(TaskNetwork {
            mode: NetworkMode::Bridge,
            task_id: "0123".into(),
            netns: None,
            host_veth: None,
            address: Some("10.1.0.5".parse().unwrap()),
            prefix_len: 24,
            gateway: None,
            mac: None,
            bindings: vec![PortBinding {
                container: "app".into(),
                protocol: Protocol::Tcp,
                container_port: 80,
                host_port: 32768,
            }],
            ingress: None,
        });
        let host = task(
            "ffffffffffffffffffffffffffffffff",
            &["a", "b"],
            NetworkMode::Host,
        );
        let r = respond("/v1/tasks", None, &identity(), &[bridge, host]);
        assert_eq!(r.status, 200);
        let v = body(&r);
        let tasks = v["Tasks"].as_array().unwrap();
        assert_eq!(tasks.len(), 2);
        let t = &tasks[0];
        assert_eq!(
            t["Arn"],
            "arn:aws:ecs:local:000000000000:task/lab/0123456789abcdef0123456789abcdef"
        );
        assert_eq!(t["DesiredStatus"], "RUNNING");
        assert_eq!(t["KnownStatus"], "PENDING");
        assert_eq!(t["Family"], "web");
        assert_eq!(t["Version"], "3");
        let c = &t["Containers"][0];
        assert_eq!(c["Name"], "app");
        assert_eq!(c["DockerId"], "0123456789abcdef0123456789abcdef-app");
        assert_eq!(
            c["Ports"],
            serde_json::json!([{"ContainerPort": 80, "Protocol": "tcp", "HostPort": 32768}])
        );
        assert_eq!(
            c["Networks"],
            serde_json::json!([{"NetworkMode": "bridge", "IPv4Addresses": ["10.1.0.5"]}])
        );
        assert_eq!(tasks[1]["Containers"].as_array().unwrap().len(), 2);
        assert_eq!(
            tasks[1]["Containers"][1]["Networks"],
            serde_json::json!([{"NetworkMode": "host"}])
        );
    }

    #[test]
    fn one_task_by_arn_encoded_or_not_and_by_docker_id_or_its_prefix() {
        let a = task(
            "aaaaaaaaaaaa0000000000000000000a",
            &["web"],
            NetworkMode::None,
        );
        let b = task(
            "bbbbbbbbbbbb0000000000000000000b",
            &["web"],
            NetworkMode::None,
        );
        let tasks = [a, b];
        let arn = "arn:aws:ecs:local:000000000000:task/lab/bbbbbbbbbbbb0000000000000000000b";
        for query in [
            format!("taskarn={arn}"),
            format!("taskarn={}", arn.replace(':', "%3A").replace('/', "%2F")),
            "dockerid=bbbbbbbbbbbb0000000000000000000b-web".into(),
            "dockerid=bbbbbbbbbbbb".into(),
        ] {
            let r = respond("/v1/tasks", Some(&query), &identity(), &tasks);
            assert_eq!(r.status, 200, "{query}");
            assert_eq!(body(&r)["Arn"], arn, "{query}");
        }
    }

    #[test]
    fn bad_and_unknown_queries_get_the_ecs_agents_codes_and_an_empty_task() {
        let tasks = [
            task(
                "aaaaaaaaaaaa0000000000000000000a",
                &["web"],
                NetworkMode::None,
            ),
            task(
                "aaaaaaaaaaaa1111111111111111111a",
                &["web"],
                NetworkMode::None,
            ),
        ];
        let cases = [
            ("taskarn=x&dockerid=y", 400),
            ("taskarn=arn:aws:ecs:local:0:task/lab/nope", 404),
            ("dockerid=0000000000000000000000000000000000", 404),
            // A short id that two tasks' containers start with.
            ("dockerid=aaaaaaaaaaaa", 400),
        ];
        for (query, status) in cases {
            let r = respond("/v1/tasks", Some(query), &identity(), &tasks);
            assert_eq!(r.status, status, "{query}");
            let v = body(&r);
            assert_eq!(v["Arn"], "", "{query}");
            assert_eq!(v["Containers"], Value::Null, "{query}");
        }
        let r = respond("/v2/whatever", None, &identity(), &tasks);
        assert_eq!(r.status, 404);
        assert!(body(&r)["error"].as_str().unwrap().contains("/v1/tasks"));
    }

    #[test]
    fn percent_decoding_leaves_broken_escapes_alone() {
        assert_eq!(percent_decode("a%3Ab%2fc"), "a:b/c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("a+b"), "a b");
    }
}
