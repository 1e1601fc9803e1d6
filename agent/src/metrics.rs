//! The agent's Prometheus metrics (prometheus-client, OpenMetrics text), served at `/metrics`
//! on the introspection listener. Events are recorded where they happen (launch and stop
//! latencies in the engine, the session's state in the session); per-task and per-container
//! usage is a [`HostSnapshot`] read at scrape time (cgroups, the host side of each task's
//! veth), so nothing is polled between scrapes. Names are listed in README.md ("Metrics").

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::cgroups::{CgroupUsage, TaskCgroups};
use crate::task_state::TaskState;

/// The Content-Type of [`AgentMetrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    task_id: String,
    family: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ContainerLabels {
    task_id: String,
    family: String,
    container: String,
}

/// What the host's tasks are using, at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostSnapshot {
    pub tasks: Vec<TaskUsage>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskUsage {
    pub task_id: String,
    pub family: String,
    /// The task's known status, as ECS names it.
    pub status: &'static str,
    pub containers: Vec<ContainerUsage>,
    /// Bytes the task received and sent (bridge and awsvpc tasks).
    pub network: Option<NetworkCounters>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerUsage {
    pub name: String,
    pub usage: CgroupUsage,
    pub restarts: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetworkCounters {
    pub received_bytes: u64,
    pub sent_bytes: u64,
}

type FloatCounter = Counter<f64, AtomicU64>;

pub struct AgentMetrics {
    /// Held while a scrape sets the usage series and encodes.
    registry: Mutex<Registry>,
    launch_seconds: Histogram,
    stop_seconds: Histogram,
    session_connected: Gauge,
    session_starts: Counter,
    tasks: Family<StatusLabels, Gauge>,
    cpu_seconds: Family<ContainerLabels, FloatCounter>,
    memory_bytes: Family<ContainerLabels, Gauge>,
    restarts: Family<ContainerLabels, Counter>,
    received_bytes: Family<TaskLabels, Counter>,
    sent_bytes: Family<TaskLabels, Counter>,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("berth_agent");
        // 50 ms to about 7 minutes: a launch includes pulls.
        let launch_seconds = Histogram::new(exponential_buckets(0.05, 2.0, 14));
        registry.register(
            "task_launch_duration_seconds",
            "From a task's arrival to RUNNING (tasks that reach it)",
            launch_seconds.clone(),
        );
        let stop_seconds = Histogram::new(exponential_buckets(0.05, 2.0, 14));
        registry.register(
            "task_stop_duration_seconds",
            "From the decision to stop a running task to STOPPED",
            stop_seconds.clone(),
        );
        let session_connected = Gauge::default();
        registry.register(
            "session_connected",
            "1 while the session with the control plane is established",
            session_connected.clone(),
        );
        let session_starts = Counter::default();
        registry.register(
            "session_starts",
            "Sessions established with the control plane",
            session_starts.clone(),
        );
        let tasks = Family::<StatusLabels, Gauge>::default();
        registry.register(
            "tasks",
            "Tasks this agent holds, by known status",
            tasks.clone(),
        );
        let cpu_seconds = Family::<ContainerLabels, FloatCounter>::default();
        registry.register(
            "container_cpu_seconds",
            "CPU time a container's cgroup has used",
            cpu_seconds.clone(),
        );
        let memory_bytes = Family::<ContainerLabels, Gauge>::default();
        registry.register(
            "container_memory_bytes",
            "Memory a container's cgroup uses now",
            memory_bytes.clone(),
        );
        let restarts = Family::<ContainerLabels, Counter>::default();
        registry.register(
            "container_restarts",
            "Times the agent restarted a container (restartPolicy)",
            restarts.clone(),
        );
        let received_bytes = Family::<TaskLabels, Counter>::default();
        registry.register(
            "task_network_receive_bytes",
            "Bytes a task received on its network interface",
            received_bytes.clone(),
        );
        let sent_bytes = Family::<TaskLabels, Counter>::default();
        registry.register(
            "task_network_transmit_bytes",
            "Bytes a task sent on its network interface",
            sent_bytes.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            launch_seconds,
            stop_seconds,
            session_connected,
            session_starts,
            tasks,
            cpu_seconds,
            memory_bytes,
            restarts,
            received_bytes,
            sent_bytes,
        }
    }

    pub fn task_launched(&self, took: Duration) {
        self.launch_seconds.observe(took.as_secs_f64());
    }

    pub fn task_stopped(&self, took: Duration) {
        self.stop_seconds.observe(took.as_secs_f64());
    }

    pub fn session_up(&self) {
        self.session_starts.inc();
        self.session_connected.set(1);
    }

    pub fn session_down(&self) {
        self.session_connected.set(0);
    }

    /// The exposition, with the usage series set from `host` (tasks that are gone leave none).
    pub fn render(&self, host: &HostSnapshot) -> String {
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        self.tasks.clear();
        self.cpu_seconds.clear();
        self.memory_bytes.clear();
        self.restarts.clear();
        self.received_bytes.clear();
        self.sent_bytes.clear();
        for status in ["PENDING", "RUNNING", "STOPPED"] {
            let n = host.tasks.iter().filter(|t| t.status == status).count();
            self.tasks
                .get_or_create(&StatusLabels {
                    status: status.into(),
                })
                .set(n as i64);
        }
        for task in &host.tasks {
            let labels = TaskLabels {
                task_id: task.task_id.clone(),
                family: task.family.clone(),
            };
            if let Some(net) = task.network {
                // Fresh after the clear: counting up from zero sets the value read.
                self.received_bytes
                    .get_or_create(&labels)
                    .inc_by(net.received_bytes);
                self.sent_bytes
                    .get_or_create(&labels)
                    .inc_by(net.sent_bytes);
            }
            for c in &task.containers {
                let labels = ContainerLabels {
                    task_id: task.task_id.clone(),
                    family: task.family.clone(),
                    container: c.name.clone(),
                };
                if let Some(cpu) = c.usage.cpu_seconds {
                    self.cpu_seconds.get_or_create(&labels).inc_by(cpu);
                }
                if let Some(memory) = c.usage.memory_bytes {
                    self.memory_bytes
                        .get_or_create(&labels)
                        .set(i64::try_from(memory).unwrap_or(i64::MAX));
                }
                self.restarts
                    .get_or_create(&labels)
                    .inc_by(u64::from(c.restarts));
            }
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// Reads what `tasks` use now: each container's cgroup (below the task's) and the counters
/// of the host side of the task's veth, whose receive is the task's transmit.
pub fn host_snapshot(tasks: &[TaskState], cgroups: &dyn TaskCgroups) -> HostSnapshot {
    HostSnapshot {
        tasks: tasks
            .iter()
            .map(|t| TaskUsage {
                task_id: t.spec.id().to_string(),
                family: t.spec.family.clone(),
                status: t.known.ecs_name(),
                containers: t
                    .containers
                    .iter()
                    .map(|c| ContainerUsage {
                        name: c.name.clone(),
                        usage: t
                            .cgroup
                            .as_deref()
                            .map(|task| cgroups.usage(&format!("{task}/{}", c.runtime_id)))
                            .unwrap_or_default(),
                        restarts: c.restart_count,
                    })
                    .collect(),
                network: t
                    .network
                    .as_ref()
                    .and_then(|n| n.host_veth.as_deref())
                    .and_then(veth_counters),
            })
            .collect(),
    }
}

fn veth_counters(host_side: &str) -> Option<NetworkCounters> {
    let read = |name: &str| -> Option<u64> {
        std::fs::read_to_string(format!("/sys/class/net/{host_side}/statistics/{name}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    Some(NetworkCounters {
        received_bytes: read("tx_bytes")?,
        sent_bytes: read("rx_bytes")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn usage_series_follow_the_snapshot() {
        let m = AgentMetrics::new();
        let host = HostSnapshot {
            tasks: vec![TaskUsage {
                task_id: "abc".into(),
                family: "web".into(),
                status: "RUNNING",
                containers: vec![ContainerUsage {
                    name: "app".into(),
                    usage: CgroupUsage {
                        cpu_seconds: Some(1.5),
                        memory_bytes: Some(4096),
                    },
                    restarts: 2,
                }],
                network: Some(NetworkCounters {
                    received_bytes: 100,
                    sent_bytes: 50,
                }),
            }],
        };
        let text = m.render(&host);
        let c = r#"{task_id="abc",family="web",container="app"}"#;
        let t = r#"{task_id="abc",family="web"}"#;
        for (series, want) in [
            (format!("berth_agent_container_cpu_seconds_total{c}"), 1.5),
            (format!("berth_agent_container_memory_bytes{c}"), 4096.0),
            (format!("berth_agent_container_restarts_total{c}"), 2.0),
            (
                format!("berth_agent_task_network_receive_bytes_total{t}"),
                100.0,
            ),
            (
                format!("berth_agent_task_network_transmit_bytes_total{t}"),
                50.0,
            ),
            (r#"berth_agent_tasks{status="RUNNING"}"#.into(), 1.0),
            (r#"berth_agent_tasks{status="PENDING"}"#.into(), 0.0),
        ] {
            assert_eq!(value(&text, &series), Some(want), "{series} in {text}");
        }
        // The same values again: the counters are set, not added to.
        let again = m.render(&host);
        assert_eq!(
            value(
                &again,
                &format!("berth_agent_container_cpu_seconds_total{c}")
            ),
            Some(1.5)
        );
        let empty = m.render(&HostSnapshot::default());
        assert!(!empty.contains("task_id="), "{empty}");
        assert!(empty.ends_with("# EOF\n"));
    }

    #[test]
    fn latencies_and_the_session_are_recorded() {
        let m = AgentMetrics::new();
        m.task_launched(Duration::from_millis(300));
        m.task_stopped(Duration::from_secs(2));
        m.session_up();
        let text = m.render(&HostSnapshot::default());
        assert_eq!(
            value(&text, "berth_agent_task_launch_duration_seconds_count"),
            Some(1.0)
        );
        assert_eq!(
            value(&text, "berth_agent_task_stop_duration_seconds_sum"),
            Some(2.0)
        );
        assert_eq!(value(&text, "berth_agent_session_connected"), Some(1.0));
        assert_eq!(value(&text, "berth_agent_session_starts_total"), Some(1.0));
        m.session_down();
        let text = m.render(&HostSnapshot::default());
        assert_eq!(value(&text, "berth_agent_session_connected"), Some(0.0));
    }
}
