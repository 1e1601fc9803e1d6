//! The ECS task metadata endpoint v4 (issue #22) from inside real tasks: a bridge task and an
//! awsvpc task read `${ECS_CONTAINER_METADATA_URI_V4}`, `/task`, `/stats` and `/task/stats`
//! at 169.254.170.2 with busybox wget and print them; the test checks ECS's field names against
//! what DescribeTasks says, and that one task cannot read the other's metadata.

use anyhow::{ensure, Context, Result};
use berth_e2e::{
    container_log, register, run_task, timeout, wait_running, wait_until, TestEnv, TEST_IMAGE,
};
use serde_json::{json, Value};

/// Prints the container's URI, then each path's answer on a line of its own after a marker;
/// with OTHER_URI set, also what fetching that (another task's) URI gives.
const READER: &str = r#"
# The process can run before the agent has recorded the container RUNNING: wait for that.
for i in $(seq 30); do
  wget -q -O - "$ECS_CONTAINER_METADATA_URI_V4" | grep -q '"KnownStatus":"RUNNING"' && break
  sleep 1
done
echo "URI=$ECS_CONTAINER_METADATA_URI_V4"
echo "V3=$ECS_CONTAINER_METADATA_URI"
for p in "" /task /stats /task/stats; do
  printf 'GET%s=' "$p"; wget -q -O - "$ECS_CONTAINER_METADATA_URI_V4$p" || printf 'failed'; echo
done
if [ -n "$OTHER_URI" ]; then
  printf 'OTHER='; wget -q -O - "$OTHER_URI/task" 2>/dev/null || printf 'refused'; echo
fi
echo DONE
sleep 600
"#;

fn reader(name: &str, other_uri: Option<&str>) -> Value {
    let mut c = json!({
        "name": name, "image": TEST_IMAGE, "essential": true, "memory": 32, "stopTimeout": 1,
        "entryPoint": ["sh", "-c", READER],
    });
    if let Some(uri) = other_uri {
        c["environment"] = json!([{"name": "OTHER_URI", "value": uri}]);
    }
    c
}

/// The log's `KEY=value` line, once the reader has printed DONE.
async fn printed(env: &TestEnv, task: &str) -> Result<std::collections::HashMap<String, String>> {
    wait_until("the reader's output", timeout(60), || async {
        let log = container_log(env, task, "reader").unwrap_or_default();
        if !log.lines().any(|l| l == "DONE") {
            return Ok(None);
        }
        Ok(Some(
            log.lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ))
    })
    .await
}

fn parsed(lines: &std::collections::HashMap<String, String>, key: &str) -> Result<Value> {
    let text = lines.get(key).with_context(|| format!("no {key} line"))?;
    serde_json::from_str(text).with_context(|| format!("{key}: not JSON: {text}"))
}

#[tokio::test]
async fn tasks_read_their_own_metadata_at_169_254_170_2() -> Result<()> {
    let mut env = TestEnv::new("task-metadata")?;
    env.start_cp().await?;
    let code = env.create_activation(1)?;
    env.start_agent(Some(&code))?;
    env.wait_agent_connected().await?;
    let api = env.api();

    let bridge_td = register(
        &api,
        json!({
            "family": "meta-bridge", "networkMode": "bridge",
            "containerDefinitions": [reader("reader", None)]
        }),
    )
    .await?;
    let bridge = run_task(&env, &bridge_td, Value::Null).await?;
    let described = wait_running(&env, &bridge).await?;
    let b = printed(&env, &bridge).await?;
    let uri = b.get("URI").context("URI")?.clone();
    ensure!(
        uri.starts_with("http://169.254.170.2/v4/"),
        "ECS_CONTAINER_METADATA_URI_V4 = {uri}"
    );
    ensure!(
        b.get("V3")
            .is_some_and(|v| v.starts_with("http://169.254.170.2/v3/")),
        "{b:?}"
    );

    let container = parsed(&b, "GET")?;
    ensure!(container["Name"] == "reader", "{container}");
    ensure!(
        container["DockerId"] == described["containers"][0]["runtimeId"],
        "DockerId {container} vs {described}"
    );
    ensure!(
        container["Labels"]["com.amazonaws.ecs.task-arn"] == bridge.as_str()
            && container["Labels"]["com.amazonaws.ecs.cluster"] == env.cluster.as_str()
            && container["Labels"]["com.amazonaws.ecs.task-definition-family"] == "meta-bridge",
        "{container}"
    );
    ensure!(container["KnownStatus"] == "RUNNING", "{container}");
    ensure!(
        container["Networks"][0]["NetworkMode"] == "bridge",
        "{container}"
    );
    ensure!(container["Limits"]["Memory"] == 32, "{container}");
    let task = parsed(&b, "GET/task")?;
    ensure!(task["TaskARN"] == bridge.as_str(), "{task}");
    ensure!(task["Cluster"] == env.cluster.as_str(), "{task}");
    ensure!(
        task["Family"] == "meta-bridge" && task["Revision"] == "1",
        "{task}"
    );
    ensure!(task["LaunchType"] == "EXTERNAL", "{task}");
    ensure!(task["AvailabilityZone"].is_string(), "{task}");
    ensure!(task["Containers"][0]["Name"] == "reader", "{task}");
    let stats = parsed(&b, "GET/stats")?;
    ensure!(
        stats["memory_stats"]["usage"]
            .as_u64()
            .is_some_and(|m| m > 0),
        "memory usage: {stats}"
    );
    ensure!(
        stats["memory_stats"]["limit"] == 32u64 << 20,
        "memory limit: {stats}"
    );
    ensure!(
        stats["cpu_stats"]["cpu_usage"]["total_usage"].is_u64(),
        "{stats}"
    );
    ensure!(stats["networks"]["eth0"]["rx_bytes"].is_u64(), "{stats}");
    let task_stats = parsed(&b, "GET/task/stats")?;
    ensure!(
        task_stats[container["DockerId"].as_str().unwrap_or("")]["memory_stats"].is_object(),
        "{task_stats}"
    );

    // An awsvpc task reads its own, and not the bridge task's.
    let awsvpc_td = register(
        &api,
        json!({
            "family": "meta-awsvpc", "networkMode": "awsvpc",
            "containerDefinitions": [reader("reader", Some(&uri))]
        }),
    )
    .await?;
    let awsvpc = run_task(
        &env,
        &awsvpc_td,
        json!({"networkConfiguration": {"awsvpcConfiguration": {"subnets": []}}}),
    )
    .await?;
    wait_running(&env, &awsvpc).await?;
    let a = printed(&env, &awsvpc).await?;
    let own = parsed(&a, "GET")?;
    ensure!(own["Networks"][0]["NetworkMode"] == "awsvpc", "{own}");
    ensure!(
        own["Networks"][0]["IPv4SubnetCIDRBlock"].is_string(),
        "{own}"
    );
    ensure!(
        parsed(&a, "GET/task")?["TaskARN"] == awsvpc.as_str(),
        "{a:?}"
    );
    ensure!(
        a.get("OTHER").map(String::as_str) == Some("refused"),
        "the awsvpc task read the bridge task's metadata: {a:?}"
    );
    ensure!(
        parsed(&b, "GET/task")?.get("ServiceName").is_none(),
        "a standalone task has no ServiceName"
    );

    // A service's task names its service.
    api.call(
        "CreateService",
        json!({"cluster": env.cluster, "serviceName": "meta-svc", "taskDefinition": bridge_td,
               "desiredCount": 1, "launchType": "EXTERNAL"}),
    )
    .await?;
    let service_task = wait_until("the service's task", timeout(60), || async {
        let listed = api
            .call(
                "ListTasks",
                json!({"cluster": env.cluster, "serviceName": "meta-svc"}),
            )
            .await?;
        Ok(listed["taskArns"][0].as_str().map(str::to_string))
    })
    .await?;
    wait_running(&env, &service_task).await?;
    let s = printed(&env, &service_task).await?;
    let service_view = parsed(&s, "GET/task")?;
    ensure!(service_view["ServiceName"] == "meta-svc", "{service_view}");
    env.pass();
    Ok(())
}
