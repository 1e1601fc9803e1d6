//! berth-cp's Prometheus metrics, in the OpenMetrics text format (prometheus-client). Events are
//! counted where they happen (API requests, controller passes); the fleet's state (clusters,
//! services, deployments, connected agents) is a [`FleetSnapshot`] taken at scrape time, so a
//! gauge never drifts from the store. Names are listed in README.md ("Metrics").

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The Content-Type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Label of requests whose operation berth-cp does not know: the operation name comes from the
/// client and would otherwise make a series per typo.
pub const UNKNOWN_OPERATION: &str = "unknown";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: String,
    /// The HTTP status: 200, or 400 / 404 / 500 ... with the ECS error shape.
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabels {
    cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    cluster: String,
    /// RUNNING or PENDING, as DescribeClusters counts them.
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    cluster: String,
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeploymentLabels {
    cluster: String,
    service: String,
    /// IN_PROGRESS, COMPLETED or FAILED.
    rollout_state: String,
}

/// The fleet's state at one moment, for the gauges.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetSnapshot {
    pub agents_connected: u64,
    pub clusters: Vec<ClusterGauges>,
    pub services: Vec<ServiceGauges>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterGauges {
    pub cluster: String,
    pub container_instances: i64,
    pub running_tasks: i64,
    pub pending_tasks: i64,
    pub active_services: i64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceGauges {
    pub cluster: String,
    pub service: String,
    pub desired: u32,
    pub running: u32,
    pub pending: u32,
    /// (rolloutState, how many of the service's deployments are in it).
    pub deployments: Vec<(&'static str, u32)>,
}

struct Gauges {
    agents_connected: Gauge,
    container_instances: Family<ClusterLabels, Gauge>,
    tasks: Family<TaskLabels, Gauge>,
    active_services: Family<ClusterLabels, Gauge>,
    service_desired: Family<ServiceLabels, Gauge>,
    service_running: Family<ServiceLabels, Gauge>,
    service_pending: Family<ServiceLabels, Gauge>,
    deployments: Family<DeploymentLabels, Gauge>,
}

pub struct Metrics {
    /// Held while a scrape sets the gauges and encodes, so two scrapes do not interleave.
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<OperationLabels, Histogram>,
    controller_passes: Counter,
    controller_pass_seconds: Histogram,
    gauges: Gauges,
}

/// 1 ms to about 16 s: an API call or a controller pass.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("berth");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "api_requests",
            "ECS API requests answered, by operation and HTTP status",
            requests.clone(),
        );
        let request_seconds = Family::<OperationLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "api_request_duration_seconds",
            "Time to answer an ECS API request, by operation",
            request_seconds.clone(),
        );
        let controller_passes = Counter::default();
        registry.register(
            "service_controller_passes",
            "Passes of the service controller over every service",
            controller_passes.clone(),
        );
        let controller_pass_seconds = latency_histogram();
        registry.register(
            "service_controller_pass_duration_seconds",
            "Time one service-controller pass took",
            controller_pass_seconds.clone(),
        );
        let gauges = Gauges {
            agents_connected: Gauge::default(),
            container_instances: Family::default(),
            tasks: Family::default(),
            active_services: Family::default(),
            service_desired: Family::default(),
            service_running: Family::default(),
            service_pending: Family::default(),
            deployments: Family::default(),
        };
        registry.register(
            "agents_connected",
            "Agents with an open session to this berth-cp",
            gauges.agents_connected.clone(),
        );
        registry.register(
            "cluster_container_instances",
            "Registered container instances, by cluster",
            gauges.container_instances.clone(),
        );
        registry.register(
            "cluster_tasks",
            "Tasks by cluster and status (RUNNING, PENDING), as DescribeClusters counts them",
            gauges.tasks.clone(),
        );
        registry.register(
            "cluster_active_services",
            "ACTIVE services, by cluster",
            gauges.active_services.clone(),
        );
        registry.register(
            "service_desired_tasks",
            "A service's desiredCount",
            gauges.service_desired.clone(),
        );
        registry.register(
            "service_running_tasks",
            "A service's runningCount",
            gauges.service_running.clone(),
        );
        registry.register(
            "service_pending_tasks",
            "A service's pendingCount",
            gauges.service_pending.clone(),
        );
        registry.register(
            "service_deployments",
            "A service's deployments, by rolloutState",
            gauges.deployments.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            requests,
            request_seconds,
            controller_passes,
            controller_pass_seconds,
            gauges,
        }
    }

    /// One answered ECS API request. `operation` must be a known operation's name or
    /// [`UNKNOWN_OPERATION`].
    pub fn api_request(&self, operation: &str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                operation: operation.to_string(),
                status: status.to_string(),
            })
            .inc();
        self.request_seconds
            .get_or_create(&OperationLabels {
                operation: operation.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn controller_pass(&self, took: Duration) {
        self.controller_passes.inc();
        self.controller_pass_seconds.observe(took.as_secs_f64());
    }

    /// The exposition, with the gauges set from `fleet` (series of clusters and services that
    /// are gone disappear).
    pub fn render(&self, fleet: &FleetSnapshot) -> String {
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let g = &self.gauges;
        g.agents_connected
            .set(i64::try_from(fleet.agents_connected).unwrap_or(i64::MAX));
        for family in [&g.container_instances, &g.active_services] {
            family.clear();
        }
        g.tasks.clear();
        for family in [&g.service_desired, &g.service_running, &g.service_pending] {
            family.clear();
        }
        g.deployments.clear();
        for c in &fleet.clusters {
            let cluster = ClusterLabels {
                cluster: c.cluster.clone(),
            };
            g.container_instances
                .get_or_create(&cluster)
                .set(c.container_instances);
            g.active_services
                .get_or_create(&cluster)
                .set(c.active_services);
            for (status, n) in [("RUNNING", c.running_tasks), ("PENDING", c.pending_tasks)] {
                g.tasks
                    .get_or_create(&TaskLabels {
                        cluster: c.cluster.clone(),
                        status: status.into(),
                    })
                    .set(n);
            }
        }
        for s in &fleet.services {
            let service = ServiceLabels {
                cluster: s.cluster.clone(),
                service: s.service.clone(),
            };
            g.service_desired
                .get_or_create(&service)
                .set(i64::from(s.desired));
            g.service_running
                .get_or_create(&service)
                .set(i64::from(s.running));
            g.service_pending
                .get_or_create(&service)
                .set(i64::from(s.pending));
            for (state, n) in &s.deployments {
                g.deployments
                    .get_or_create(&DeploymentLabels {
                        cluster: s.cluster.clone(),
                        service: s.service.clone(),
                        rollout_state: (*state).into(),
                    })
                    .set(i64::from(*n));
            }
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn requests_are_counted_and_timed_per_operation_and_status() {
        let m = Metrics::new();
        m.api_request("RunTask", 200, Duration::from_millis(3));
        m.api_request("RunTask", 200, Duration::from_millis(5));
        m.api_request("RunTask", 400, Duration::from_millis(1));
        let text = m.render(&FleetSnapshot::default());
        assert_eq!(
            line_value(
                &text,
                r#"berth_api_requests_total{operation="RunTask",status="200"}"#
            ),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            line_value(
                &text,
                r#"berth_api_requests_total{operation="RunTask",status="400"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            line_value(
                &text,
                r#"berth_api_request_duration_seconds_count{operation="RunTask"}"#
            ),
            Some(3.0)
        );
        assert!(text.contains("# TYPE berth_api_request_duration_seconds histogram"));
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn gauges_follow_the_snapshot_and_forget_what_is_gone() {
        let m = Metrics::new();
        let fleet = FleetSnapshot {
            agents_connected: 3,
            clusters: vec![ClusterGauges {
                cluster: "lab".into(),
                container_instances: 3,
                running_tasks: 5,
                pending_tasks: 1,
                active_services: 1,
            }],
            services: vec![ServiceGauges {
                cluster: "lab".into(),
                service: "web".into(),
                desired: 6,
                running: 5,
                pending: 1,
                deployments: vec![("IN_PROGRESS", 1), ("COMPLETED", 1)],
            }],
        };
        let text = m.render(&fleet);
        for (series, value) in [
            ("berth_agents_connected", 3.0),
            (
                r#"berth_cluster_tasks{cluster="lab",status="RUNNING"}"#,
                5.0,
            ),
            (
                r#"berth_cluster_tasks{cluster="lab",status="PENDING"}"#,
                1.0,
            ),
            (r#"berth_cluster_container_instances{cluster="lab"}"#, 3.0),
            (
                r#"berth_service_desired_tasks{cluster="lab",service="web"}"#,
                6.0,
            ),
            (
                r#"berth_service_running_tasks{cluster="lab",service="web"}"#,
                5.0,
            ),
            (
                r#"berth_service_deployments{cluster="lab",service="web",rollout_state="IN_PROGRESS"}"#,
                1.0,
            ),
        ] {
            assert_eq!(line_value(&text, series), Some(value), "{series} in {text}");
        }
        let text = m.render(&FleetSnapshot::default());
        assert_eq!(line_value(&text, "berth_agents_connected"), Some(0.0));
        assert!(!text.contains(r#"service="web""#), "{text}");
        assert!(!text.contains(r#"cluster="lab""#), "{text}");
    }

    #[test]
    fn controller_passes_are_counted() {
        let m = Metrics::new();
        m.controller_pass(Duration::from_millis(2));
        let text = m.render(&FleetSnapshot::default());
        assert_eq!(
            line_value(&text, "berth_service_controller_passes_total"),
            Some(1.0)
        );
        assert_eq!(
            line_value(
                &text,
                "berth_service_controller_pass_duration_seconds_count"
            ),
            Some(1.0)
        );
    }
}
