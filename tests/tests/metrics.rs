//! Prometheus `/metrics` (issue #22), read by the real Prometheus Python client's OpenMetrics
//! parser (strict: a malformed exposition fails the parse): berth-cp's API counters and
//! latency histograms, its fleet gauges (agents, tasks, services, deployments); and the agent's,
//! on its introspection listener: usage per container and task, launch and stop latencies, the
//! session.

use anyhow::{ensure, Context, Result};
use berth_e2e::{
    python_json, register, run_task, stop_and_wait, task_id, timeout, wait_running, wait_until,
    TestEnv, TEST_IMAGE,
};
use serde_json::{json, Value};

/// Fetches `url` and parses it with prometheus_client's OpenMetrics parser; every sample as
/// `{"name", "labels", "value"}`, and the Content-Type.
const SCRAPE: &str = r#"
import json, sys, urllib.request
from prometheus_client.openmetrics.parser import text_string_to_metric_families
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
with opener.open(sys.argv[1], timeout=10) as response:
    content_type = response.headers.get("Content-Type")
    text = response.read().decode()
samples = []
for family in text_string_to_metric_families(text):
    for s in family.samples:
        samples.append({"family": family.name, "type": family.type, "name": s.name,
                        "labels": s.labels, "value": s.value})
print(json.dumps({"contentType": content_type, "samples": samples}))
"#;

/// A sample's name, some of its labels, and its value.
type Expected<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

struct Scrape {
    content_type: String,
    samples: Vec<Value>,
}

impl Scrape {
    /// The value of the sample `name` whose labels include all of `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
            .and_then(|s| s["value"].as_f64())
    }

    fn family_type(&self, family: &str) -> Option<&str> {
        self.samples
            .iter()
            .find(|s| s["family"] == family)
            .and_then(|s| s["type"].as_str())
    }
}

fn scrape(env: &TestEnv, url: &str) -> Result<Scrape> {
    let out = python_json(&env.dir().join("scrape"), SCRAPE, &[url], |_| {})
        .with_context(|| format!("scraping {url}"))?;
    Ok(Scrape {
        content_type: out["contentType"].as_str().unwrap_or("").to_string(),
        samples: out["samples"].as_array().cloned().unwrap_or_default(),
    })
}

#[tokio::test]
async fn berth_cp_metrics_parse_and_count_requests_and_the_fleet() -> Result<()> {
    let mut env = TestEnv::new("metrics")?;
    env.start_cp().await?;
    let code = env.create_activation(1)?;
    env.start_agent(Some(&code))?;
    env.wait_agent_connected().await?;
    let api = env.api();
    let family = format!("metrics-{}", env.id);
    register(
        &api,
        json!({
            "family": family,
            "networkMode": "none",
            "containerDefinitions": [{
                "name": "app", "image": TEST_IMAGE, "memory": 32, "stopTimeout": 2,
                "entryPoint": ["sleep", "600"]
            }]
        }),
    )
    .await?;
    // The standalone task on a bridge network, for the agent's network counters.
    let bridged = format!("{family}-bridge");
    register(
        &api,
        json!({
            "family": bridged,
            "networkMode": "bridge",
            "containerDefinitions": [{
                "name": "app", "image": TEST_IMAGE, "memory": 32, "stopTimeout": 2,
                "entryPoint": ["sleep", "600"]
            }]
        }),
    )
    .await?;
    let task = run_task(&env, &bridged, Value::Null).await?;
    wait_running(&env, &task).await?;
    api.call(
        "CreateService",
        json!({"cluster": env.cluster, "serviceName": "web", "taskDefinition": family,
               "desiredCount": 1, "launchType": "EXTERNAL"}),
    )
    .await?;
    wait_until("the service's task running", timeout(90), || async {
        let d = api
            .call(
                "DescribeServices",
                json!({"cluster": env.cluster, "services": ["web"]}),
            )
            .await?;
        Ok((d["services"][0]["runningCount"] == 1).then_some(()))
    })
    .await?;
    // A refused request and one of an operation berth-cp does not have.
    let refused = api
        .call("RunTask", json!({"cluster": env.cluster}))
        .await
        .expect_err("RunTask without a task definition");
    ensure!(refused.status == 400, "{refused}");
    let unknown = api
        .call("NoSuchOperation", json!({}))
        .await
        .expect_err("unknown");
    ensure!(unknown.code == "UnknownOperationException", "{unknown}");

    let m = scrape(&env, &format!("{}/metrics", env.api_url()))?;
    ensure!(
        m.content_type.starts_with("application/openmetrics-text"),
        "Content-Type {:?}",
        m.content_type
    );
    let cluster = env.cluster.as_str();
    let checks: &[Expected] = &[
        ("berth_agents_connected", &[], 1.0),
        (
            "berth_cluster_tasks",
            &[("cluster", cluster), ("status", "RUNNING")],
            2.0,
        ),
        (
            "berth_cluster_container_instances",
            &[("cluster", cluster)],
            1.0,
        ),
        (
            "berth_cluster_active_services",
            &[("cluster", cluster)],
            1.0,
        ),
        (
            "berth_service_desired_tasks",
            &[("cluster", cluster), ("service", "web")],
            1.0,
        ),
        (
            "berth_service_running_tasks",
            &[("cluster", cluster), ("service", "web")],
            1.0,
        ),
        (
            "berth_api_requests_total",
            &[("operation", "RunTask"), ("status", "400")],
            1.0,
        ),
        (
            "berth_api_requests_total",
            &[("operation", "unknown"), ("status", "400")],
            1.0,
        ),
    ];
    for (name, labels, want) in checks {
        let got = m.value(name, labels);
        ensure!(got == Some(*want), "{name}{labels:?}: {got:?}, want {want}");
    }
    // One deployment, IN_PROGRESS or already COMPLETED (it completes once it has settled).
    let deployments: f64 = ["IN_PROGRESS", "COMPLETED"]
        .iter()
        .filter_map(|state| {
            m.value(
                "berth_service_deployments",
                &[
                    ("cluster", cluster),
                    ("service", "web"),
                    ("rollout_state", state),
                ],
            )
        })
        .sum();
    ensure!(deployments == 1.0, "one deployment: {deployments}");
    ensure!(
        m.value(
            "berth_api_requests_total",
            &[("operation", "RunTask"), ("status", "200")]
        ) == Some(1.0),
        "one RunTask answered 200"
    );
    ensure!(
        m.value(
            "berth_api_request_duration_seconds_count",
            &[("operation", "RunTask")]
        ) == Some(2.0),
        "both RunTasks timed"
    );
    ensure!(
        m.family_type("berth_api_request_duration_seconds") == Some("histogram"),
        "a histogram"
    );
    ensure!(
        m.value("berth_service_controller_passes_total", &[])
            .is_some_and(|n| n >= 1.0),
        "controller passes counted"
    );

    // The agent's own metrics.
    let agent_url = format!("{}/metrics", env.introspection_url(0));
    let a = scrape(&env, &agent_url)?;
    ensure!(
        a.content_type.starts_with("application/openmetrics-text"),
        "Content-Type {:?}",
        a.content_type
    );
    let id = task_id(&task);
    let container = [("task_id", id), ("container", "app")];
    ensure!(
        a.value("berth_agent_tasks", &[("status", "RUNNING")]) == Some(2.0),
        "two running tasks"
    );
    ensure!(
        a.value("berth_agent_session_connected", &[]) == Some(1.0),
        "session up"
    );
    ensure!(
        a.value("berth_agent_task_launch_duration_seconds_count", &[]) == Some(2.0),
        "two launches timed"
    );
    ensure!(
        a.value("berth_agent_container_memory_bytes", &container)
            .is_some_and(|b| b > 0.0),
        "the container's memory"
    );
    ensure!(
        a.value("berth_agent_container_cpu_seconds_total", &container)
            .is_some_and(|s| s >= 0.0),
        "the container's CPU time"
    );
    ensure!(
        a.value("berth_agent_container_restarts_total", &container) == Some(0.0),
        "no restarts"
    );
    ensure!(
        a.value(
            "berth_agent_task_network_receive_bytes_total",
            &[("task_id", id)]
        )
        .is_some(),
        "the bridge task's network counters"
    );
    ensure!(
        a.family_type("berth_agent_task_launch_duration_seconds") == Some("histogram"),
        "a histogram"
    );
    stop_and_wait(&env, &task).await?;
    let a = scrape(&env, &agent_url)?;
    ensure!(
        a.value("berth_agent_task_stop_duration_seconds_count", &[]) == Some(1.0),
        "the stop timed"
    );
    // Once the agent has cleaned the task up (task_cleanup_wait_secs is 0 here), it is gone.
    wait_until("the stopped task's series to go", timeout(30), || async {
        let a = scrape(&env, &agent_url)?;
        Ok(a.value("berth_agent_container_restarts_total", &container)
            .is_none()
            .then_some(()))
    })
    .await?;
    env.pass();
    Ok(())
}
