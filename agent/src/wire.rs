//! Conversions between the wire (`berth_proto::v1`) and the agent's domain types. The agent
//! validates what it receives as the control plane does: a task it cannot run is still recorded,
//! and stops at once with a reason, so the control plane hears about it.

use berth_proto::v1 as pb;

use crate::ecs_json;
use crate::engine::IncomingTask;
use crate::exec::{ExecQuery, ExecReport};
use crate::host::Registration;
use crate::model::{
    ContainerSpec, ContainerStatus, Credentials, DependencyCondition, NetworkMode, TaskSpec,
    TaskStatus, Volume, DEFAULT_STOP_TIMEOUT_SECS,
};
use crate::network::{Cidr, IngressProtocol, IngressRule, TaskNetwork};
use crate::runtime::{AttachedInput, AttachedOutput};
use crate::store::{OutboxEntry, StoredReport};

/// ECS's upper bound for stopTimeout.
const MAX_STOP_TIMEOUT_SECS: i32 = 120;

/// A task from a payload, and why it cannot run if it cannot.
pub fn task_from_wire(t: pb::TaskSpec) -> IncomingTask {
    let mut problems = Vec::new();
    if t.task_arn.is_empty() {
        problems.push("task_arn is empty".to_string());
    }
    let network_mode = NetworkMode::parse(&t.network_mode).unwrap_or_else(|| {
        problems.push(format!(
            "network mode {:?} is not supported by this agent (supported: {})",
            t.network_mode,
            NetworkMode::SUPPORTED.join(", ")
        ));
        NetworkMode::None
    });
    let ingress = ingress_from_wire(t.ingress_restricted, &t.ingress, &mut problems);
    if t.containers.is_empty() {
        problems.push("the task has no containers".into());
    }
    let volumes = ecs_json::volumes(&t.volumes_json, &mut problems);
    let mut seen = std::collections::HashSet::new();
    // Each container's registry login, in the containers' order (kept out of the JSON).
    let auths: Vec<Option<Credentials>> = t
        .containers
        .iter()
        .map(|c| {
            c.registry_credentials
                .as_ref()
                .map(|r| Credentials::new(&r.username, &r.password))
        })
        .collect();
    let mut containers: Vec<ContainerSpec> = t
        .containers
        .into_iter()
        .map(|c| {
            if !c.definition_json.is_empty() {
                let name = c.name.clone();
                if let Some(spec) = ecs_json::container(&c.definition_json, &mut problems) {
                    if !seen.insert(spec.name.clone()) || spec.name.is_empty() {
                        problems.push(format!(
                            "container name {:?} is empty or repeated",
                            spec.name
                        ));
                    }
                    if spec.image.is_empty() {
                        problems.push(format!("container {:?} has no image", spec.name));
                    }
                    return spec;
                }
                // Unreadable definition: fall back to the typed fields so the task can still
                // be recorded and reported as failed.
                problems.push(format!("container {name:?}: unreadable definition"));
            }
            if c.name.is_empty() || !seen.insert(c.name.clone()) {
                problems.push(format!("container name {:?} is empty or repeated", c.name));
            }
            if c.image.is_empty() {
                problems.push(format!("container {:?} has no image", c.name));
            }
            if c.cpu < 0 || c.memory_mib < 0 || c.memory_reservation_mib < 0 {
                problems.push(format!("container {:?} has a negative limit", c.name));
            }
            if !(0..=MAX_STOP_TIMEOUT_SECS).contains(&c.stop_timeout_seconds) {
                problems.push(format!(
                    "container {:?}: stopTimeout {} is outside 0-{MAX_STOP_TIMEOUT_SECS}",
                    c.name, c.stop_timeout_seconds
                ));
            }
            container_from_wire(c)
        })
        .collect();
    for (c, auth) in containers.iter_mut().zip(auths) {
        c.extra.registry_auth = auth;
    }
    for c in &containers {
        let min = crate::cgroups::MIN_CONTAINER_MEMORY_MIB;
        if c.memory_mib > 0 && c.memory_mib < min {
            problems.push(format!(
                "container {:?}: memory {} MiB is below the minimum of {min} MiB",
                c.name, c.memory_mib
            ));
        }
    }
    if !containers.is_empty() && !containers.iter().any(|c| c.essential) {
        problems.push("the task has no essential container".into());
    }
    check_references(&containers, &volumes, &mut problems);
    let desired = match pb::TaskStatus::try_from(t.desired_status) {
        Ok(pb::TaskStatus::Stopped) => TaskStatus::Stopped,
        _ => TaskStatus::Running,
    };
    IncomingTask {
        spec: TaskSpec {
            arn: t.task_arn,
            family: t.family,
            revision: t.revision,
            network_mode,
            cpu: t.cpu.max(0) as u32,
            memory_mib: t.memory_mib.max(0) as u32,
            containers,
            volumes,
            ingress,
        },
        desired,
        rejection: (!problems.is_empty()).then(|| problems.join("; ")),
        service_name: (!t.service_name.is_empty()).then_some(t.service_name),
    }
}

/// A security group's rules as the agent enforces them; None when ingress is not restricted.
fn ingress_from_wire(
    restricted: bool,
    rules: &[pb::IngressRule],
    problems: &mut Vec<String>,
) -> Option<Vec<IngressRule>> {
    if !restricted {
        return None;
    }
    let mut out = Vec::with_capacity(rules.len());
    for r in rules {
        let protocol = match r.protocol.as_str() {
            "tcp" => IngressProtocol::Tcp,
            "udp" => IngressProtocol::Udp,
            "all" | "-1" => IngressProtocol::All,
            p => {
                problems.push(format!("ingress rule: unknown protocol {p:?}"));
                continue;
            }
        };
        let source = match r.cidr.parse::<Cidr>() {
            Ok(c) => c,
            Err(e) => {
                problems.push(format!("ingress rule: {e}"));
                continue;
            }
        };
        let ports = u16::try_from(r.from_port)
            .ok()
            .zip(u16::try_from(r.to_port).ok());
        let (from_port, to_port) = match (protocol, ports) {
            (IngressProtocol::All, _) => (0, u16::MAX),
            (_, Some((from, to))) if from >= 1 && from <= to => (from, to),
            _ => {
                problems.push(format!(
                    "ingress rule: bad port range {}-{}",
                    r.from_port, r.to_port
                ));
                continue;
            }
        };
        out.push(IngressRule {
            protocol,
            from_port,
            to_port,
            source,
        });
    }
    Some(out)
}

fn container_from_wire(c: pb::ContainerSpec) -> ContainerSpec {
    let non_empty = |s: String| (!s.is_empty()).then_some(s);
    ContainerSpec {
        entry_point: (!c.entry_point.is_empty()).then_some(c.entry_point),
        command: (c.has_command || !c.command.is_empty()).then_some(c.command),
        environment: c
            .environment
            .into_iter()
            .map(|kv| (kv.name, kv.value))
            .collect(),
        working_directory: non_empty(c.working_directory),
        user: non_empty(c.user),
        cpu: c.cpu.max(0) as u32,
        memory_mib: c.memory_mib.max(0) as u32,
        memory_reservation_mib: c.memory_reservation_mib.max(0) as u32,
        stop_timeout_secs: if c.stop_timeout_seconds > 0 {
            c.stop_timeout_seconds.min(MAX_STOP_TIMEOUT_SECS) as u32
        } else {
            DEFAULT_STOP_TIMEOUT_SECS
        },
        name: c.name,
        image: c.image,
        essential: c.essential,
        extra: Default::default(),
    }
}

/// Names that must exist within the task: volumes of mount points, containers of volumesFrom
/// and dependsOn.
fn check_references(containers: &[ContainerSpec], volumes: &[Volume], problems: &mut Vec<String>) {
    let has_container = |n: &str| containers.iter().any(|c| c.name == n);
    for c in containers {
        for m in &c.extra.mount_points {
            if !volumes.iter().any(|v| v.name == m.source_volume) {
                problems.push(format!(
                    "container {:?}: mountPoints sourceVolume {:?} is not a volume of the task",
                    c.name, m.source_volume
                ));
            }
            if !m.container_path.starts_with('/') {
                problems.push(format!(
                    "container {:?}: mountPoints containerPath {:?} must be absolute",
                    c.name, m.container_path
                ));
            }
        }
        for v in &c.extra.volumes_from {
            if v.source_container == c.name || !has_container(&v.source_container) {
                problems.push(format!(
                    "container {:?}: volumesFrom sourceContainer {:?} is not another container of the task",
                    c.name, v.source_container
                ));
            }
        }
        for d in &c.extra.depends_on {
            if d.container_name == c.name || !has_container(&d.container_name) {
                problems.push(format!(
                    "container {:?}: dependsOn containerName {:?} is not another container of the task",
                    c.name, d.container_name
                ));
            }
            let essential = containers
                .iter()
                .any(|o| o.name == d.container_name && o.essential);
            let checked = containers
                .iter()
                .any(|o| o.name == d.container_name && o.extra.health_check.is_some());
            match d.condition {
                DependencyCondition::Healthy if !checked => problems.push(format!(
                    "container {:?}: dependsOn {:?} with condition HEALTHY, but {:?} has no healthCheck",
                    c.name, d.container_name, d.container_name
                )),
                DependencyCondition::Complete | DependencyCondition::Success if essential => {
                    problems.push(format!(
                        "container {:?}: dependsOn {:?} with condition {}: an essential container's exit stops the task",
                        c.name,
                        d.container_name,
                        crate::task_state::condition_name(d.condition)
                    ))
                }
                _ => {}
            }
        }
    }
    if let Some(cycle) = dependency_cycle(containers) {
        problems.push(format!("dependsOn forms a cycle: {}", cycle.join(" -> ")));
    }
}

/// A dependsOn cycle, as the names along it, if there is one (a cycle could never start, and
/// would never stop in reverse order).
fn dependency_cycle(containers: &[ContainerSpec]) -> Option<Vec<String>> {
    fn visit<'a>(
        name: &'a str,
        containers: &'a [ContainerSpec],
        path: &mut Vec<&'a str>,
        done: &mut std::collections::HashSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| *n == name) {
            let mut cycle: Vec<String> = path[at..].iter().map(|n| n.to_string()).collect();
            cycle.push(name.to_string());
            return Some(cycle);
        }
        if !done.insert(name) {
            return None;
        }
        path.push(name);
        let deps = containers
            .iter()
            .find(|c| c.name == name)
            .map_or(&[][..], |c| &c.extra.depends_on[..]);
        for d in deps {
            if d.container_name != name {
                if let Some(c) = visit(&d.container_name, containers, path, done) {
                    return Some(c);
                }
            }
        }
        path.pop();
        None
    }
    let mut done = std::collections::HashSet::new();
    containers
        .iter()
        .find_map(|c| visit(&c.name, containers, &mut Vec::new(), &mut done))
}

fn task_status(s: TaskStatus) -> pb::TaskStatus {
    match s {
        TaskStatus::Pending => pb::TaskStatus::Pending,
        TaskStatus::Running => pb::TaskStatus::Running,
        TaskStatus::Stopped => pb::TaskStatus::Stopped,
    }
}

fn container_status(s: ContainerStatus) -> pb::ContainerStatus {
    match s {
        ContainerStatus::None => pb::ContainerStatus::None,
        ContainerStatus::Pulled => pb::ContainerStatus::Pulled,
        ContainerStatus::Created => pb::ContainerStatus::Created,
        ContainerStatus::Running => pb::ContainerStatus::Running,
        ContainerStatus::Stopped => pb::ContainerStatus::Stopped,
    }
}

pub fn state_change(e: OutboxEntry) -> pb::StateChange {
    let change = match e.report {
        StoredReport::Task {
            status,
            stop_code,
            stopped_reason,
            network,
            pull,
        } => pb::state_change::Change::Task(pb::TaskStateChange {
            task_arn: e.task_arn,
            status: task_status(status) as i32,
            stop_code: stop_code
                .map(|c| c.as_str().to_string())
                .unwrap_or_default(),
            stopped_reason: stopped_reason.unwrap_or_default(),
            at_ms: e.at_ms,
            network: network.map(network_to_wire),
            pull_started_at_ms: pull.map_or(0, |p| p.started_at_ms as i64),
            pull_stopped_at_ms: pull.map_or(0, |p| p.stopped_at_ms as i64),
        }),
        StoredReport::Container {
            name,
            runtime_id,
            status,
            exit_code,
            reason,
            restart_count,
            health,
            image_digest,
        } => pb::state_change::Change::Container(pb::ContainerStateChange {
            image_digest: image_digest.unwrap_or_default(),
            task_arn: e.task_arn,
            container_name: name,
            status: container_status(status) as i32,
            exit_code,
            reason: reason.unwrap_or_default(),
            runtime_id,
            at_ms: e.at_ms,
            restart_count: restart_count.min(i32::MAX as u32) as i32,
            health: health.map(|h| pb::ContainerHealth {
                status: h.status.as_str().to_string(),
                checked_at_ms: h
                    .last
                    .as_ref()
                    .map_or(0, |l| l.ended_at_ms.min(i64::MAX as u64) as i64),
                exit_code: h.last.as_ref().map_or(0, |l| l.exit_code.unwrap_or(-1)),
                output: h.last.map(|l| l.output).unwrap_or_default(),
            }),
        }),
    };
    pb::StateChange {
        seq: e.seq,
        change: Some(change),
    }
}

pub fn register_request(
    cluster: &str,
    auth: pb::register_request::Auth,
    r: &Registration,
    containerd_version: &str,
) -> pb::RegisterRequest {
    let int = |name: &str, v: i64| pb::Resource {
        name: name.into(),
        r#type: "INTEGER".into(),
        integer_value: v,
        string_set_value: vec![],
    };
    let ports = |name: &str, p: &[u16]| pb::Resource {
        name: name.into(),
        r#type: "STRINGSET".into(),
        integer_value: 0,
        string_set_value: p.iter().map(|p| p.to_string()).collect(),
    };
    pb::RegisterRequest {
        cluster: cluster.into(),
        auth: Some(auth),
        hostname: r.hostname.clone(),
        resources: vec![
            int("CPU", r.cpu_units),
            int("MEMORY", r.memory_mib),
            ports("PORTS", &r.reserved_tcp_ports),
            ports("PORTS_UDP", &r.reserved_udp_ports),
        ],
        attributes: r
            .attributes
            .iter()
            .map(|(name, value)| pb::Attribute {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        version_info: Some(pb::VersionInfo {
            agent_version: env!("CARGO_PKG_VERSION").into(),
            agent_hash: String::new(),
            containerd_version: containerd_version.into(),
        }),
    }
}

fn network_to_wire(n: TaskNetwork) -> pb::TaskNetwork {
    pb::TaskNetwork {
        mode: n.mode.as_str().to_string(),
        private_ipv4: n.address.map(|a| a.to_string()).unwrap_or_default(),
        prefix_length: u32::from(n.prefix_len),
        gateway_ipv4: n.gateway.map(|a| a.to_string()).unwrap_or_default(),
        mac_address: n.mac.unwrap_or_default(),
        bindings: n
            .bindings
            .into_iter()
            .map(|b| pb::NetworkBinding {
                container_name: b.container,
                protocol: b.protocol.as_str().to_string(),
                container_port: u32::from(b.container_port),
                host_port: u32::from(b.host_port),
                bind_ip: "0.0.0.0".to_string(),
            })
            .collect(),
    }
}

/// An ExecStart, as the agent's exec service takes it. A terminal size of zero (an older
/// control plane, or a size the user's side did not know) is 24x80.
pub fn exec_query(e: pb::ExecStart) -> ExecQuery {
    let size = |v: u32, default: u16| match u16::try_from(v) {
        Ok(0) | Err(_) => default,
        Ok(v) => v,
    };
    ExecQuery {
        terminal: e.tty.then(|| (size(e.rows, 24), size(e.cols, 80))),
        exec_id: e.exec_id,
        task_arn: e.task_arn,
        container: e.container_name,
        command: e.command,
    }
}

/// What one ExecInput asks, in order: stdin, a resize, end-of-file, the end.
pub fn exec_inputs(i: &pb::ExecInput) -> Vec<AttachedInput> {
    let mut out = Vec::new();
    if !i.stdin.is_empty() {
        out.push(AttachedInput::Stdin(i.stdin.clone()));
    }
    if let (Ok(rows @ 1..), Ok(cols @ 1..)) = (u16::try_from(i.rows), u16::try_from(i.cols)) {
        out.push(AttachedInput::Resize { rows, cols });
    }
    if i.stdin_eof {
        out.push(AttachedInput::StdinEof);
    }
    if i.cancel {
        out.push(AttachedInput::Kill);
    }
    out
}

pub fn exec_output(exec_id: &str, r: ExecReport) -> pb::ExecOutput {
    let mut o = pb::ExecOutput {
        exec_id: exec_id.to_string(),
        ..Default::default()
    };
    match r {
        ExecReport::Output(AttachedOutput::Started) => o.started = true,
        ExecReport::Output(AttachedOutput::Stdout(b)) => o.stdout = b,
        ExecReport::Output(AttachedOutput::Stderr(b)) => o.stderr = b,
        ExecReport::Exited(code) => o.exit_code = Some(code),
        ExecReport::Failed(e) => o.error = e,
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire_container(name: &str) -> pb::ContainerSpec {
        pb::ContainerSpec {
            name: name.into(),
            image: "busybox".into(),
            essential: true,
            ..Default::default()
        }
    }

    #[test]
    fn converts_a_valid_task() {
        let mut c = wire_container("web");
        c.has_command = true;
        c.stop_timeout_seconds = 0;
        let t = task_from_wire(pb::TaskSpec {
            task_arn: "arn:aws:ecs:r:a:task/c/id".into(),
            network_mode: "host".into(),
            containers: vec![c],
            ..Default::default()
        });
        assert_eq!(t.rejection, None);
        assert_eq!(t.spec.network_mode, NetworkMode::Host);
        let c = &t.spec.containers[0];
        assert_eq!(c.command, Some(vec![]), "an explicit empty command is kept");
        assert_eq!(c.entry_point, None);
        assert_eq!(c.stop_timeout_secs, DEFAULT_STOP_TIMEOUT_SECS);
        assert_eq!(t.desired, TaskStatus::Running);
        assert_eq!(t.service_name, None, "a standalone task");
        let s = task_from_wire(pb::TaskSpec {
            task_arn: "arn:aws:ecs:r:a:task/c/id2".into(),
            network_mode: "host".into(),
            containers: vec![wire_container("web")],
            service_name: "web-svc".into(),
            ..Default::default()
        });
        assert_eq!(s.service_name.as_deref(), Some("web-svc"));
    }

    #[test]
    fn ingress_rules_become_the_tasks_security_group() {
        let rule = |protocol: &str, from, to, cidr: &str| pb::IngressRule {
            protocol: protocol.into(),
            from_port: from,
            to_port: to,
            cidr: cidr.into(),
        };
        let t = task_from_wire(pb::TaskSpec {
            task_arn: "arn:aws:ecs:r:a:task/c/id".into(),
            network_mode: "awsvpc".into(),
            containers: vec![wire_container("a")],
            ingress_restricted: true,
            ingress: vec![
                rule("tcp", 8080, 8080, "10.0.0.0/8"),
                rule("all", 0, 0, "192.168.1.7/32"),
            ],
            ..Default::default()
        });
        assert_eq!(t.rejection, None);
        assert_eq!(t.spec.network_mode, NetworkMode::Awsvpc);
        let rules = t.spec.ingress.unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].protocol, IngressProtocol::Tcp);
        assert_eq!((rules[0].from_port, rules[0].to_port), (8080, 8080));
        assert_eq!(rules[0].source.to_string(), "10.0.0.0/8");
        assert_eq!(rules[1].protocol, IngressProtocol::All);
        // Unrestricted: no rules at all, every ingress allowed.
        let open = task_from_wire(pb::TaskSpec {
            task_arn: "arn:aws:ecs:r:a:task/c/id".into(),
            network_mode: "awsvpc".into(),
            containers: vec![wire_container("a")],
            ..Default::default()
        });
        assert_eq!(open.spec.ingress, None);
        // ECS's default mode when a definition names none.
        let default = task_from_wire(pb::TaskSpec {
            task_arn: "arn:aws:ecs:r:a:task/c/id".into(),
            containers: vec![wire_container("a")],
            ..Default::default()
        });
        assert_eq!(default.spec.network_mode, NetworkMode::Bridge);
    }

    #[test]
    fn names_every_problem() {
        let mut bad = wire_container("a");
        bad.essential = false;
        bad.memory_mib = -1;
        let t = task_from_wire(pb::TaskSpec {
            task_arn: "arn".into(),
            network_mode: "overlay".into(),
            containers: vec![bad.clone(), bad],
            ingress_restricted: true,
            ingress: vec![pb::IngressRule {
                protocol: "icmp".into(),
                from_port: 0,
                to_port: 0,
                cidr: "0.0.0.0/0".into(),
            }],
            ..Default::default()
        });
        let p = t.rejection.unwrap();
        for needle in ["overlay", "icmp", "repeated", "negative", "no essential"] {
            assert!(p.contains(needle), "{needle} not in {p}");
        }
    }

    #[test]
    fn refuses_a_hard_limit_below_4_mib() {
        let mut small = wire_container("a");
        small.memory_mib = 3;
        let t = task_from_wire(pb::TaskSpec {
            task_arn: "arn:aws:ecs:r:a:task/c/id".into(),
            containers: vec![small.clone()],
            ..Default::default()
        });
        assert_eq!(
            t.rejection.as_deref(),
            Some("container \"a\": memory 3 MiB is below the minimum of 4 MiB")
        );
        small.memory_mib = 4;
        let t = task_from_wire(pb::TaskSpec {
            task_arn: "arn:aws:ecs:r:a:task/c/id".into(),
            containers: vec![small],
            ..Default::default()
        });
        assert_eq!(t.rejection, None);
    }

    #[test]
    fn refuses_impossible_dependencies() {
        use crate::model::{Dependency, DependencyCondition as C};
        let spec = |name: &str, essential: bool, deps: &[(&str, C)]| {
            let mut c = container_from_wire(wire_container(name));
            c.essential = essential;
            c.extra.depends_on = deps
                .iter()
                .map(|(n, cond)| Dependency {
                    container_name: n.to_string(),
                    condition: *cond,
                })
                .collect();
            c
        };
        let check = |containers: Vec<ContainerSpec>| {
            let mut problems = Vec::new();
            check_references(&containers, &[], &mut problems);
            problems.join("; ")
        };
        let ok = check(vec![
            spec("db", true, &[]),
            spec("init", false, &[]),
            spec("app", true, &[("db", C::Start), ("init", C::Success)]),
        ]);
        assert_eq!(ok, "");
        let p = check(vec![
            spec("a", true, &[("b", C::Start)]),
            spec("b", false, &[("a", C::Start)]),
        ]);
        assert!(p.contains("cycle: a -> b -> a"), "{p}");
        let p = check(vec![
            spec("a", true, &[]),
            spec("b", false, &[("a", C::Complete)]),
        ]);
        assert!(p.contains("essential"), "{p}");
        let p = check(vec![
            spec("a", true, &[]),
            spec("b", false, &[("a", C::Healthy)]),
        ]);
        assert!(p.contains("HEALTHY"), "{p}");
    }

    #[test]
    fn exec_messages_convert_both_ways() {
        let q = exec_query(pb::ExecStart {
            exec_id: "e1".into(),
            task_arn: "arn".into(),
            container_name: "app".into(),
            command: vec!["sh".into()],
            tty: true,
            rows: 0,
            cols: 132,
        });
        assert_eq!(q.terminal, Some((24, 132)), "an unknown size is 24 rows");
        let i = pb::ExecInput {
            exec_id: "e1".into(),
            stdin: b"ls\n".to_vec(),
            stdin_eof: true,
            rows: 40,
            cols: 100,
            cancel: false,
        };
        assert_eq!(
            exec_inputs(&i),
            [
                AttachedInput::Stdin(b"ls\n".to_vec()),
                AttachedInput::Resize {
                    rows: 40,
                    cols: 100
                },
                AttachedInput::StdinEof
            ]
        );
        let o = exec_output("e1", ExecReport::Exited(3));
        assert_eq!((o.exec_id.as_str(), o.exit_code), ("e1", Some(3)));
        assert!(exec_output("e1", ExecReport::Output(AttachedOutput::Started)).started);
    }
}
